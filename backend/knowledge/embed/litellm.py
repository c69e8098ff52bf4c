"""Any LiteLLM embedding model (OpenAI, Gemini, Bedrock, ...) named in models.yaml's embedding_list."""

from __future__ import annotations

import math
import os
from typing import Any

from backend.errors import UpstreamError
from backend.knowledge.chunk import approx_tokens


def _resolve(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("os.environ/"):
        return os.environ.get(value.removeprefix("os.environ/"))
    return value


class LiteLLMEmbedder:
    def __init__(self, name: str, *, params: dict[str, Any], batch_size: int = 96) -> None:
        self.name = name
        self.params = {k: _resolve(v) for k, v in params.items()}
        self.batch_size = batch_size
        self._dimension: int | None = None

    def warm(self) -> None:
        pass

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = len(self.embed(["dimension probe"])[0])
        return self._dimension

    def embed(self, texts: list[str]) -> list[list[float]]:
        import litellm

        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            try:
                response = litellm.embedding(input=batch, **self.params)
            except Exception as exc:
                raise UpstreamError(f"embedding model {self.name} failed: {type(exc).__name__}: "
                                    f"{str(exc)[:200]}", code="embedding_failed") from exc
            rows = sorted(response.data, key=lambda d: d["index"] if isinstance(d, dict) else d.index)
            for row in rows:
                vector = row["embedding"] if isinstance(row, dict) else row.embedding
                norm = math.sqrt(sum(v * v for v in vector)) or 1.0
                out.append([float(v) / norm for v in vector])
        if out and self._dimension is None:
            self._dimension = len(out[0])
        return out

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

"""The Embedder interface (blocking calls: run them in a worker thread, never on the event loop)."""

from __future__ import annotations

from typing import Protocol


class Embedder(Protocol):
    name: str  # recorded per tenant; vectors of two models are never mixed

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length vectors, one per text (so cosine similarity is a dot product)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def warm(self) -> None:
        """Load whatever is slow to load (called off the request path at start)."""
        ...

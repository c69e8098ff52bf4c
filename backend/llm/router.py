"""Build the LiteLLM Router from config/models.yaml: tiers, fallbacks, retries, env overrides."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backend.settings import Settings

log = logging.getLogger("atrium.llm")

TIERS = ("local", "fast", "smart")


@dataclass
class ModelsConfig:
    model_list: list[dict[str, Any]]
    router_settings: dict[str, Any] = field(default_factory=dict)
    embedding_list: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> ModelsConfig:
        if not path.is_file():
            raise FileNotFoundError(f"models config not found at {path}: set ATRIUM_CONFIG_DIR")
        raw = yaml.safe_load(path.read_text()) or {}
        return cls(
            model_list=list(raw.get("model_list") or []),
            router_settings=dict(raw.get("router_settings") or {}),
            embedding_list=list(raw.get("embedding_list") or []),
        )


def _env_ref(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("os.environ/"):
        return value.removeprefix("os.environ/")
    return None


def _key_missing(params: dict[str, Any]) -> str | None:
    """The env var a deployment needs but lacks, if any."""
    for key in ("api_key", "api_base"):
        ref = _env_ref(params.get(key))
        if ref and not os.environ.get(ref):
            return ref
    return None


@dataclass
class LiveModels:
    deployments: list[dict[str, Any]]
    live: dict[str, list[str]]  # tier -> concrete models
    excluded: dict[str, str]  # deployment -> reason


def live_deployments(config: ModelsConfig, settings: Settings, *, local_available: bool) -> LiveModels:
    deployments: list[dict[str, Any]] = []
    excluded: dict[str, str] = {}
    overridden: set[str] = set()
    for tier in TIERS:
        override = settings.model_override(tier)
        if override:
            overridden.add(tier)
            deployments.append(
                {"model_name": tier, "litellm_params": {"model": override}, "model_info": {"id": f"{tier}-env"}}
            )
    for dep in config.model_list:
        tier = dep["model_name"]
        model = dep["litellm_params"]["model"]
        label = f"{tier}:{model}"
        if tier in overridden:
            excluded[label] = f"ATRIUM_MODEL_{tier.upper()} overrides this tier"
            continue
        if model.startswith("local/") and not local_available:
            excluded[label] = "local model not installed (make bootstrap)"
            continue
        missing = _key_missing(dep["litellm_params"])
        if missing:
            excluded[label] = f"{missing} is not set"
            continue
        deployments.append(dep)
    live: dict[str, list[str]] = {}
    for dep in deployments:
        live.setdefault(dep["model_name"], []).append(dep["litellm_params"]["model"])
    return LiveModels(deployments=deployments, live=live, excluded=excluded)


def build_router(live: LiveModels, router_settings: dict[str, Any]) -> Any:
    from litellm import Router

    tiers = set(live.live)
    fallbacks = []
    for rule in router_settings.get("fallbacks") or []:
        for src, dsts in rule.items():
            kept = [d for d in dsts if d in tiers]
            if src in tiers and kept:
                fallbacks.append({src: kept})
    return Router(
        model_list=live.deployments,
        fallbacks=fallbacks,
        num_retries=int(router_settings.get("num_retries", 1)),
        timeout=float(router_settings.get("timeout", 120)),
        cooldown_time=float(router_settings.get("cooldown_time", 30)),
        allowed_fails=int(router_settings.get("allowed_fails", 2)),
    )

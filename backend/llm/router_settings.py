"""models.yaml `router_settings`: every keyword LiteLLM's Router constructor takes, checked when the file is loaded.

The accepted keys are read from the installed LiteLLM's `Router.__init__` signature, so a LiteLLM upgrade that adds
a setting makes it configurable without a change here, and one that removes a setting makes a models.yaml that
still names it stop at start-up (naming the key) instead of being ignored. Values are validated against the
signature's types and converted the way LiteLLM expects them: `retry_policy` becomes a `RetryPolicy`,
`allowed_fails_policy` an `AllowedFailsPolicy`, `model_group_retry_policy` a mapping of `RetryPolicy`, and a
misspelt field inside one of them is refused (pydantic would drop it silently).

Three things stay Atrium's: the deployments (`model_list` is the file's own top-level key), the fallback lists
(made transitive, restricted to live tiers and narrowed per request to a tenant's allowed tiers: see
router.fallback_chains), and the Redis connection when REDIS_URL is set (cooldowns and fail counts shared by
every replica) unless router_settings names its own `redis_*`.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from backend.config_files import ConfigError, unknown_key

# Fallback lists: Atrium builds these per live group (router.fallback_chains); `default_fallbacks` is folded
# into `fallbacks` there, so no rule reaches the Router that could answer a tenant from a tier it is not allowed.
FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
FOLDED_KEYS = ("default_fallbacks",)
# What Atrium has always run with when models.yaml says nothing (LiteLLM's own defaults differ: 2 retries,
# fallback on a provider's 400, ...).
DEFAULTS: dict[str, Any] = {"num_retries": 1, "timeout": 120.0, "cooldown_time": 30.0, "allowed_fails": 2,
                            "routing_strategy": "simple-shuffle", "fallback_on_unsupported_params": False}
NOT_HERE = {"model_list": "deployments go in models.yaml's top-level `model_list:`, not under router_settings"}
REDIS_KEYS = ("redis_url", "redis_host", "redis_port", "redis_password", "redis_db")
_FALLBACK_RULES = TypeAdapter(list[dict[str, list[str]]])


def _signature() -> dict[str, inspect.Parameter]:
    from litellm import Router

    params = inspect.signature(Router.__init__).parameters
    return {name: p for name, p in params.items() if name != "self" and not name.startswith("_")}


def accepted_keys() -> list[str]:
    """The router_settings keys the installed LiteLLM's Router takes (model_list excepted)."""
    return [name for name in _signature() if name not in NOT_HERE]


def _python_only(annotation: Any) -> bool:
    """A parameter only Python code can fill (a callable, a plugin object): YAML has no way to give one."""
    if annotation is inspect.Parameter.empty:
        return False
    origin = typing.get_origin(annotation)
    if origin is collections.abc.Callable or annotation is collections.abc.Callable:
        return True
    if isinstance(annotation, type) and getattr(annotation, "_is_protocol", False):
        return True
    if annotation.__class__.__name__ == "TypeAliasType":  # `type X = Callable[...]`
        return _python_only(annotation.__value__)
    return any(_python_only(arg) for arg in typing.get_args(annotation) if arg is not Ellipsis)


def _unknown_fields(given: Any, converted: Any, at: str) -> str | None:
    """`given` (from YAML) against its pydantic `converted` value: the first field the model does not have
    (e.g. `retry_policy.TimeoutErrorRetrys`), which pydantic would otherwise drop without a word."""
    if isinstance(converted, BaseModel) and isinstance(given, dict):
        fields = type(converted).model_fields
        valid = [*fields, *(f.alias for f in fields.values() if f.alias)]
        for key, value in given.items():
            if key not in valid:
                return f"{at}: {unknown_key(key, list(fields))}"
            if (inner := _unknown_fields(value, getattr(converted, str(key), None), f"{at}.{key}")) is not None:
                return inner
    elif isinstance(converted, dict) and isinstance(given, dict):
        for key, value in given.items():
            if (inner := _unknown_fields(value, converted.get(key), f"{at}.{key}")) is not None:
                return inner
    elif isinstance(converted, list) and isinstance(given, list):
        for i, (g, c) in enumerate(zip(given, converted, strict=False)):
            if (inner := _unknown_fields(g, c, f"{at}[{i}]")) is not None:
                return inner
    return None


def check_router_settings(raw: Any, *, source: Path) -> dict[str, Any]:
    """router_settings validated and converted for LiteLLM's Router, or a ConfigError naming the key, what is
    wrong and the accepted keys."""
    where = f"{source}: router_settings"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of LiteLLM Router settings (got {type(raw).__name__})")
    params = _signature()
    accepted = accepted_keys()
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in NOT_HERE:
            raise ConfigError(f"{where}: `{key}` is not a router setting: {NOT_HERE[key]}")
        if key not in params:
            raise ConfigError(f"{where}: {unknown_key(key, accepted)} (LiteLLM's Router takes: {', '.join(accepted)})")
        annotation = params[key].annotation
        if _python_only(annotation):
            raise ConfigError(f"{where}.{key}: takes a Python object (a callable or a plugin), which models.yaml "
                              "cannot give: remove it here, or set it in code on the Router")
        if key in FALLBACK_KEYS:
            annotation = list[dict[str, list[str]]]  # Atrium reads these rules itself (router.fallback_chains)
        try:
            adapter = TypeAdapter(annotation)
        except Exception:  # a type pydantic cannot describe (e.g. one holding an httpx.Timeout): LiteLLM checks it
            out[key] = value
            continue
        try:
            converted = adapter.validate_python(value)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or key}: {e['msg']}" for e in exc.errors()[:3])
            raise ConfigError(f"{where}.{key}: {problems} (got {value!r}): see LiteLLM's Router settings "
                              "(https://docs.litellm.ai/docs/routing)") from None
        if (extra := _unknown_fields(value, converted, f"{where}.{key}")) is not None:
            raise ConfigError(extra)
        out[key] = converted
    return out


def router_kwargs(settings: dict[str, Any], *, redis_url: str | None,
                  redis_prefix: str | None = None) -> dict[str, Any]:
    """The Router's keyword arguments from checked router_settings (fallback lists excepted: the caller builds
    them): Atrium's defaults, every setting given, and REDIS_URL for shared cooldowns unless `redis_*` are set.
    `redis_prefix` (ATRIUM_REDIS_PREFIX): the Router's keys go under `<prefix>:litellm:`, unless router_settings
    gives `cache_kwargs.namespace` itself."""
    kwargs = {**DEFAULTS, **{k: v for k, v in settings.items() if k not in FALLBACK_KEYS + FOLDED_KEYS}}
    if redis_url and not any(k in settings for k in REDIS_KEYS):
        # Cooldowns and allowed-fails counters live in Redis: a deployment one replica cooled down is skipped by
        # all of them, instead of each replica paying its own failures before it learns.
        kwargs["redis_url"] = redis_url
    if redis_prefix and any(k in kwargs for k in REDIS_KEYS):
        # LiteLLM's RedisCache prefixes every key it writes (and every key its Lua scripts touch) with its
        # `namespace`: without one, its cooldown and usage keys sit at the top of a Redis that several deployments
        # share (ATRIUM_REDIS_PREFIX exists for them), and two deployments would cool down each other's models.
        kwargs["cache_kwargs"] = {"namespace": f"{redis_prefix}:litellm", **(kwargs.get("cache_kwargs") or {})}
    return kwargs


def fallback_rules(settings: dict[str, Any], kind: str) -> list[dict[str, list[str]]]:
    """The configured rules of one fallback list ({group: [groups]}), validated at load."""
    return _FALLBACK_RULES.validate_python(settings.get(kind) or [])

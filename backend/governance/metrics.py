"""Prometheus metrics: one object, built by the container and handed to the services that count things.

`NoMetrics` is what a service holds when metrics are off (ATRIUM_METRICS_TOKEN unset): every method does nothing,
so the hot path pays one attribute lookup and a call. `PrometheusMetrics` keeps its own CollectorRegistry (tests
build many apps in one process; the global registry would refuse the second one) and is served by GET /metrics.

Label values are bounded: tenants are the configured ones (anything else is `other`), routes are the surface
table's templates, models, tiers and assistants come from the configuration, reasons and limits are codes. No user
ids, no free text. One process per pod (uvicorn runs one worker): no multiprocess mode is needed.

The names below are the public contract of deploy/monitoring (dashboard and alert rules; tests/governance/
test_metrics_contract.py checks that both use only these).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("atrium.metrics")

# Latency buckets (seconds): a cached answer in milliseconds, a long streamed answer in a minute or two.
_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SLOW = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# name -> (type, help): every metric this module exports (the contract deploy/monitoring is checked against).
EXPORTED: dict[str, tuple[str, str]] = {
    "atrium_http_requests_total": ("counter", "HTTP requests by route template, method, status and tenant"),
    "atrium_http_request_duration_seconds": ("histogram", "HTTP request latency by route template and status class"),
    "atrium_chat_turns_total": ("counter", "Chat turns by tenant, assistant, channel, tier, model and outcome"),
    "atrium_chat_turn_duration_seconds": ("histogram", "Chat turn latency, start to recorded"),
    "atrium_chat_time_to_first_token_seconds": ("histogram", "Chat turn start to the model's first text"),
    "atrium_llm_tokens_total": ("counter", "Model tokens by tenant, model and direction (input, output)"),
    "atrium_llm_cost_usd_total": ("counter", "Model cost in USD by tenant and model"),
    "atrium_model_fallbacks_total": ("counter", "Model calls answered by another tier than the one asked"),
    "atrium_model_errors_total": ("counter", "Model calls that failed, by tenant, tier and error class"),
    "atrium_quota_refusals_total": ("counter", "Requests refused by a quota or rate limit, by limit"),
    "atrium_quota_used_ratio": ("gauge", "Share of a tenant's daily tokens or monthly budget used (read when scraped)"),
    "atrium_access_denials_total": ("counter", "Audited access denials by tenant and reason"),
    "atrium_cache_requests_total": ("counter", "Response cache look-ups by tenant and result (hit, miss)"),
    "atrium_retrieval_duration_seconds": ("histogram", "Knowledge base search latency (embedding and search)"),
    "atrium_ingestion_jobs_total": ("counter", "Ingestion jobs finished by tenant and outcome"),
    "atrium_ingestion_chunks_total": ("counter", "Chunks embedded and stored by tenant"),
    "atrium_ingestion_job_duration_seconds": ("histogram", "Ingestion job run time"),
    "atrium_ingestion_queue_depth": ("gauge", "Documents waiting for or in ingestion, by tenant"),
    "atrium_ingestion_oldest_job_age_seconds": ("gauge", "Age of the oldest document waiting for ingestion"),
    "atrium_inflight": ("gauge", "Model calls and streaming answers in progress in this process, by tenant"),
}


def scraper_token_ok(authorization: str | None, expected: str | None) -> bool:
    """Whether an Authorization header carries the scraper's bearer token (web /metrics and the worker's port).
    Both sides are hashed first: compare_digest then always compares two 32-byte digests, so its time says nothing
    of the token's length or of how much of a guess was right, on any Python."""
    if not expected:
        return False
    scheme, _, token = (authorization or "").strip().partition(" ")
    given = hashlib.sha256(token.strip().encode()).digest()
    return hmac.compare_digest(given, hashlib.sha256(expected.encode()).digest()) and scheme.lower() == "bearer"


def code_label(value: object) -> str:
    """A reason, limit or error code as a label: codes pass, anything else (free text) is `other`."""
    text = "" if value is None else str(value)
    return text if _CODE.match(text) else ("" if not text else "other")


class NoMetrics:
    """Metrics off: every recording is a no-op."""

    enabled = False

    def http_request(self, *, route: str, method: str, status: int, tenant: str | None, seconds: float) -> None: ...
    def chat_turn(self, *, tenant: str, assistant: str | None, channel: str, tier: str | None, model: str | None,
                  outcome: str, seconds: float, first_token_s: float | None, input_tokens: int, output_tokens: int,
                  cost_usd: float, fallback_from: str | None) -> None: ...
    @staticmethod
    def _child(series: list[Any], index: int, metric: Any, *labels: str) -> Any:
        series[index] = metric.labels(*labels)
        return series[index]

    def model_error(self, *, tenant: str, tier: str, error: str) -> None: ...
    def quota_refusal(self, *, tenant: str, limit: str) -> None: ...
    def denial(self, *, tenant: str | None, reason: str | None) -> None: ...
    def cache_lookup(self, *, tenant: str, hit: bool) -> None: ...
    def retrieval(self, *, tenant: str, seconds: float) -> None: ...
    def ingestion_job(self, *, tenant: str, outcome: str, seconds: float, chunks: int) -> None: ...
    def watch_backlog(self, backlog: Callable[[], dict[str, tuple[int, float]]]) -> None: ...
    def watch_inflight(self, held: Callable[[], dict[tuple[str, str], int]]) -> None: ...
    def watch_quota(self, used: Callable[[], dict[tuple[str, str], float]]) -> None: ...
    def render(self) -> tuple[bytes, str]:
        return b"", "text/plain"


class PrometheusMetrics(NoMetrics):
    enabled = True

    def __init__(self, *, known_tenant: Callable[[str], bool] | None = None, process: bool = True) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # no `_created` twin of every counter and histogram: half the scrape's size
        self.registry = CollectorRegistry(auto_describe=True)
        self._known = known_tenant or (lambda _t: True)
        reg = self.registry

        def counter(name: str, labels: Iterable[str]) -> Any:
            return Counter(name.removesuffix("_total"), EXPORTED[name][1], list(labels), registry=reg)

        def histogram(name: str, labels: Iterable[str], buckets: tuple[float, ...]) -> Any:
            return Histogram(name, EXPORTED[name][1], list(labels), buckets=buckets, registry=reg)

        def gauge(name: str, labels: Iterable[str]) -> Any:
            return Gauge(name, EXPORTED[name][1], list(labels), registry=reg)

        self._http = counter("atrium_http_requests_total", ("route", "method", "status", "tenant"))
        self._http_s = histogram("atrium_http_request_duration_seconds", ("route", "method", "status_class"), _FAST)
        self._turns = counter("atrium_chat_turns_total",
                              ("tenant", "assistant", "channel", "tier", "model", "outcome"))
        self._turn_s = histogram("atrium_chat_turn_duration_seconds", ("tenant", "tier"), _SLOW)
        self._ttft = histogram("atrium_chat_time_to_first_token_seconds", ("tenant", "tier"), _SLOW)
        self._tokens = counter("atrium_llm_tokens_total", ("tenant", "model", "direction"))
        self._cost = counter("atrium_llm_cost_usd_total", ("tenant", "model"))
        self._fallbacks = counter("atrium_model_fallbacks_total", ("tenant", "requested", "answered_tier"))
        self._errors = counter("atrium_model_errors_total", ("tenant", "tier", "error"))
        self._refusals = counter("atrium_quota_refusals_total", ("tenant", "limit"))
        self._denials = counter("atrium_access_denials_total", ("tenant", "reason"))
        self._cache = counter("atrium_cache_requests_total", ("tenant", "result"))
        self._retrieval = histogram("atrium_retrieval_duration_seconds", ("tenant",), _FAST)
        self._jobs = counter("atrium_ingestion_jobs_total", ("tenant", "outcome"))
        self._chunks = counter("atrium_ingestion_chunks_total", ("tenant",))
        self._job_s = histogram("atrium_ingestion_job_duration_seconds", ("tenant",), _SLOW)
        # (tenant, assistant, channel, tier, model, outcome) -> the children chat_turn counts on (labels bounded)
        self._turn_series: dict[tuple[str, ...], list[Any]] = {}
        self._http_series: dict[tuple[str, str, int, str], tuple[Any, Any]] = {}  # http_request's, the same way
        self._backlog: Callable[[], dict[str, tuple[int, float]]] | None = None
        self._held: Callable[[], dict[tuple[str, str], int]] | None = None
        self._quota: Callable[[], dict[tuple[str, str], float]] | None = None
        reg.register(_Sampled(self))
        if process:  # the process's own: CPU, memory, open files, GC, Python version
            from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
            GCCollector(registry=reg)

    def tenant(self, tenant: str | None) -> str:
        """A configured tenant's id; `""` for none; `other` for anything else (a made-up URL tenant)."""
        if not tenant:
            return ""
        return tenant if self._known(tenant) else "other"

    def http_request(self, *, route: str, method: str, status: int, tenant: str | None, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        key = (route, method, status, self.tenant(tenant))
        series = self._http_series.get(key)
        if series is None:  # as chat_turn's: labels() once per label set (routes are the surface table's templates)
            series = self._http_series[key] = (self._http.labels(route, method, str(status), key[3]),
                                               self._http_s.labels(route, method, f"{status // 100}xx"))
        series[0].inc()
        series[1].observe(seconds)

    def chat_turn(self, *, tenant: str, assistant: str | None, channel: str, tier: str | None, model: str | None,
                  outcome: str, seconds: float, first_token_s: float | None, input_tokens: int, output_tokens: int,
                  cost_usd: float, fallback_from: str | None) -> None:
        tenant, tier, model = self.tenant(tenant), tier or "", model or ""
        key = (tenant, assistant or "", channel, tier, model, outcome)
        series = self._turn_series.get(key)
        if series is None:  # labels() validates and locks on every call: once per label set (they are bounded)
            series = self._turn_series[key] = [self._turns.labels(*key), self._turn_s.labels(tenant, tier),
                                               None, None, None, None]
        series[0].inc()
        series[1].observe(seconds)
        # The others only once they have something to count: a series appears in the scrape when first labelled.
        if first_token_s is not None:
            (series[2] or self._child(series, 2, self._ttft, tenant, tier)).observe(first_token_s)
        if input_tokens:
            (series[3] or self._child(series, 3, self._tokens, tenant, model, "input")).inc(input_tokens)
        if output_tokens:
            (series[4] or self._child(series, 4, self._tokens, tenant, model, "output")).inc(output_tokens)
        if cost_usd:
            (series[5] or self._child(series, 5, self._cost, tenant, model)).inc(cost_usd)
        if fallback_from:
            self._fallbacks.labels(tenant, fallback_from, tier).inc()

    @staticmethod
    def _child(series: list[Any], index: int, metric: Any, *labels: str) -> Any:
        series[index] = metric.labels(*labels)
        return series[index]

    def model_error(self, *, tenant: str, tier: str, error: str) -> None:
        self._errors.labels(self.tenant(tenant), tier, code_label(error)).inc()

    def quota_refusal(self, *, tenant: str, limit: str) -> None:
        self._refusals.labels(self.tenant(tenant), code_label(limit)).inc()

    def denial(self, *, tenant: str | None, reason: str | None) -> None:
        self._denials.labels(self.tenant(tenant), code_label(reason)).inc()

    def cache_lookup(self, *, tenant: str, hit: bool) -> None:
        self._cache.labels(self.tenant(tenant), "hit" if hit else "miss").inc()

    def retrieval(self, *, tenant: str, seconds: float) -> None:
        self._retrieval.labels(self.tenant(tenant)).observe(seconds)

    def ingestion_job(self, *, tenant: str, outcome: str, seconds: float, chunks: int) -> None:
        tenant = self.tenant(tenant)
        self._jobs.labels(tenant, outcome).inc()
        self._job_s.labels(tenant).observe(seconds)
        if chunks:
            self._chunks.labels(tenant).inc(chunks)

    def watch_backlog(self, backlog: Callable[[], dict[str, tuple[int, float]]]) -> None:
        """`backlog()`: tenant -> (documents queued or in ingestion, oldest one's age in seconds); read per scrape."""
        self._backlog = backlog

    def watch_inflight(self, held: Callable[[], dict[tuple[str, str], int]]) -> None:
        """`held()`: (tenant, kind) -> slots held now (governance/inflight.py); read per scrape."""
        self._held = held

    def watch_quota(self, used: Callable[[], dict[tuple[str, str], float]]) -> None:
        """`used()`: (tenant, limit) -> share of the limit used now (governance/quota_gauge.py); read per scrape."""
        self._quota = used

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Sampled:
    """Gauges read when scraped (nothing on the hot path): the ingestion backlog (one SQL query), the in-flight
    slots of this process and the share of each tenant's quotas used (one Redis read; SQL for a counter not made
    yet)."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list:
        return []

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        m = self.metrics
        depth = GaugeMetricFamily("atrium_ingestion_queue_depth", EXPORTED["atrium_ingestion_queue_depth"][1],
                                  labels=["tenant"])
        age = GaugeMetricFamily("atrium_ingestion_oldest_job_age_seconds",
                                EXPORTED["atrium_ingestion_oldest_job_age_seconds"][1], labels=["tenant"])
        try:  # a database that does not answer costs these two gauges, not the scrape (HTTP and error metrics
            # are what an operator needs most during that outage)
            backlog = m._backlog() if m._backlog is not None else {}
        except Exception:
            log.warning("metrics: the ingestion backlog could not be read; its gauges are left out", exc_info=True)
            backlog = {}
        if backlog:
            for tenant, (count, oldest) in sorted(backlog.items()):
                depth.add_metric([m.tenant(tenant)], count)
                age.add_metric([m.tenant(tenant)], oldest)
        inflight = GaugeMetricFamily("atrium_inflight", EXPORTED["atrium_inflight"][1], labels=["tenant", "kind"])
        if m._held is not None:
            for (tenant, kind), n in sorted(m._held().items()):
                inflight.add_metric([m.tenant(tenant), kind], n)
        used = GaugeMetricFamily("atrium_quota_used_ratio", EXPORTED["atrium_quota_used_ratio"][1],
                                 labels=["tenant", "limit"])
        try:  # as the backlog: Redis or the database away costs this gauge, not the scrape
            quota = m._quota() if m._quota is not None else {}
        except Exception:
            log.warning("metrics: the quota counters could not be read; their gauge is left out", exc_info=True)
            quota = {}
        for (tenant, limit), ratio in sorted(quota.items()):
            used.add_metric([m.tenant(tenant), limit], ratio)
        return [depth, age, inflight, used]

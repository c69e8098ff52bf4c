"""OpenTelemetry tracing: spans for a request's parts, exported over OTLP when the standard variables say where.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: then `tracer` is the API's
no-op tracer (no SDK, no exporter, nothing recorded). On: an SDK TracerProvider with a batching OTLP/HTTP exporter
configured by the standard OTEL_* variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER ...).
Spans carry the tenant as `atrium.tenant`; model calls follow the GenAI semantic conventions (gen_ai.*).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import StatusCode

TENANT = "atrium.tenant"
tracer = trace.get_tracer("atrium")  # a proxy: no-op until a provider is set (nothing happens at import)

log = logging.getLogger("atrium")
_configured = False


def otlp_endpoint() -> str | None:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")


def _checked_endpoint() -> str:
    """The OTLP endpoint as it may be logged (no credentials), or a ValueError naming the fix (container.py stops
    the start-up on it): a value the exporter cannot use would start fine and lose every span, an ERROR per batch."""
    name = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") \
        else "OTEL_EXPORTER_OTLP_ENDPOINT"
    value = os.environ[name].strip()
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"{name}={value!r}: {exc}: write the collector's URL, e.g. http://otel-collector:4318") \
            from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"{name}={value!r} is not an http(s) URL: write the collector's OTLP/HTTP URL with its "
                         "scheme, e.g. http://otel-collector:4318 (unset it to switch tracing off)")
    for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = os.environ.get(var)
        if protocol:
            if protocol.strip() != "http/protobuf":
                raise ValueError(f"{var}={protocol!r}: Atrium exports traces over OTLP/HTTP only: set it to "
                                 "http/protobuf (or unset it) and point the endpoint at the collector's HTTP port "
                                 "(4318)")
            break
    return f"{url.scheme}://{url.hostname}" + (f":{url.port}" if url.port else "") + url.path


def setup_tracing() -> bool:
    """Install the SDK and the OTLP exporter once per process when an endpoint is configured; True when on."""
    global _configured
    if _configured:
        return True
    if not otlp_endpoint() or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    endpoint = _checked_endpoint()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "atrium"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True
    log.info("tracing on", extra={"otlp_endpoint": endpoint})
    return True


def recording() -> bool:
    """Whether Atrium makes spans (setup_tracing installed the exporter): callers skip work only spans would use."""
    return _configured


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, hex, when there is a valid one."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


@contextmanager
def span(name: str, attributes: dict[str, Any] | None = None) -> Iterator[trace.Span]:
    """A child span of the current one, current inside the block; tracing off: the invalid span (no-op), for the
    price of one isinstance check."""
    if not recording():
        yield trace.INVALID_SPAN
        return
    # An exception is recorded by its class only: its message can quote a prompt, a document or a key in a URL.
    with tracer.start_as_current_span(name, attributes=attributes, record_exception=False,
                                      set_status_on_exception=False) as current:
        try:
            yield current
        except BaseException as exc:
            current.set_attribute("error.type", type(exc).__name__)
            current.set_status(StatusCode.ERROR, type(exc).__name__)
            raise


def start_span(name: str, attributes: dict[str, Any] | None = None) -> trace.Span | None:
    """A span that is not made current (for an async generator, which may be closed in another context); the
    caller ends it. None when tracing is off."""
    return tracer.start_span(name, attributes=attributes) if recording() else None

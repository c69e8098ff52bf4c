"""tenants.yaml `monitoring:`: who may scrape the pods' metrics and where their traces may go, for the manifests
`atrium deploy render` writes (the running app does not read it; it is checked when tenants.yaml loads, so a
mistake stops the start-up and the render alike, naming the key).

    monitoring:
      scraper:                 # whose pods may reach the metrics ports (web 8000 `http`, worker 9464 `metrics`)
        namespace: gmp-system  #   the default: GKE Managed Service for Prometheus' collectors
        pod_labels: {app.kubernetes.io/name: collector}
      pod_monitoring: true     # render PodMonitoring objects for GKE Managed Prometheus (needs its CRD)
      otlp_collector:          # an in-cluster OpenTelemetry collector the pods may send traces to (OTLP/HTTP)
        namespace: observability
        pod_labels: {app.kubernetes.io/name: otel-collector}
        port: 4318

`scraper: null` renders no scrape policy (nothing inside the cluster reaches the metrics ports), `pod_monitoring:
false` no PodMonitoring (a cluster without Managed Prometheus, whose apply would fail on the unknown kind), and
`otlp_collector` (absent by default) opens egress to that collector only.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Kubernetes' syntax (apimachinery validation): a namespace is a DNS label; a label key an optional DNS-subdomain
# prefix and a name of at most 63 characters; a value at most 63 characters, alphanumeric at both ends.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_NAME}")
_LABEL_VALUE = re.compile(rf"({_NAME})?")

GMP_NAMESPACE = "gmp-system"
GMP_COLLECTOR_LABELS = {"app.kubernetes.io/name": "collector"}
GMP_COLLECTOR_ACCOUNT = "collector"  # the collectors' ServiceAccount in gmp-system (reads the token Secret)


def _namespace(value: str) -> str:
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(f"{value!r} is not a Kubernetes namespace name (lowercase a-z, 0-9 and -, at most 63)")
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, label in value.items():
        if not _LABEL_KEY.fullmatch(key) or len(key.rpartition("/")[0]) > 253:
            raise ValueError(f"{key!r} is not a Kubernetes label key (e.g. app.kubernetes.io/name)")
        if not isinstance(label, str) or not _LABEL_VALUE.fullmatch(label):
            raise ValueError(f"{key}: {label!r} is not a Kubernetes label value (a string of at most 63 letters, "
                             "digits, - _ . beginning and ending with a letter or digit; quote numbers)")
    return value


Namespace = Annotated[str, AfterValidator(_namespace)]
Labels = Annotated[dict[str, str], AfterValidator(_labels)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Peer(_Strict):
    """Pods of another namespace: all of them when `pod_labels` is empty, else those carrying every label."""

    namespace: Namespace
    pod_labels: Labels = Field(default_factory=dict)


class OtlpCollector(Peer):
    port: int = Field(4318, ge=1, le=65535)  # OTLP/HTTP (Atrium exports over HTTP only: backend/tracing.py)


def _gmp() -> Peer:
    return Peer(namespace=GMP_NAMESPACE, pod_labels=dict(GMP_COLLECTOR_LABELS))


class MonitoringConfig(_Strict):
    scraper: Peer | None = Field(default_factory=_gmp)
    pod_monitoring: bool = True
    otlp_collector: OtlpCollector | None = None

"""What lets the cluster's monitoring reach the pods (deploy/base/monitoring.yaml), from tenants.yaml `monitoring:`
(backend/monitoring.py): the scraper's ingress to the metrics ports, GKE Managed Prometheus' PodMonitorings and
their read access to the token, and egress to an in-cluster OpenTelemetry collector.

The base's `atrium-default` policy shuts every pod's ingress and allows egress to DNS, SQL, Redis and 443 only;
NetworkPolicies add up, so each policy here opens one thing more, to one peer only.
"""

from __future__ import annotations

from typing import Any

from backend.deploy.kubernetes import METRICS_SECRET, METRICS_SECRET_KEY, _meta, _selector
from backend.monitoring import GMP_COLLECTOR_ACCOUNT, GMP_NAMESPACE, MonitoringConfig, Peer

# The containers' named ports (kubernetes.py): web `http` (8000, /metrics beside the app) and worker `metrics`
# (9464). A policy naming them opens each on the pods that declare it only: 8000 on the web pods, 9464 on the
# workers, and neither on the migration Job.
SCRAPED = (("web", "http"), ("worker", "metrics"))
SCRAPE_INTERVAL = "30s"
# The Prometheus label the pods' `atrium/group` becomes (GMP keeps only the target labels it is told to).
GROUP_TARGET_LABEL = "deployment_group"


def monitoring_objects(config: MonitoringConfig) -> list[dict[str, Any]]:
    """The objects of deploy/base/monitoring.yaml (none: the file is not rendered)."""
    objects: list[dict[str, Any]] = []
    if config.scraper is not None:
        objects.append(_scrape_policy(config.scraper))
    if config.otlp_collector is not None:
        c = config.otlp_collector
        objects.append(_policy("atrium-otlp-egress", {"matchLabels": {"app.kubernetes.io/name": "atrium"}}, "Egress",
                               [{"to": [_peer(c)], "ports": [{"protocol": "TCP", "port": c.port}]}]))
    if config.pod_monitoring:
        objects += [_pod_monitoring(component, port) for component, port in SCRAPED]
        objects += _token_reader()
    return objects


def _peer(peer: Peer) -> dict[str, Any]:
    out: dict[str, Any] = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": peer.namespace}}}
    if peer.pod_labels:  # in the same element as the namespace: those pods of that namespace (not either)
        out["podSelector"] = {"matchLabels": dict(peer.pod_labels)}
    return out


def _policy(name: str, selector: dict[str, Any], direction: str, rules: list[dict]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta(name),
            "spec": {"podSelector": selector, "policyTypes": [direction], direction.lower(): rules}}


def _scrape_policy(scraper: Peer) -> dict[str, Any]:
    selector = {"matchLabels": {"app.kubernetes.io/name": "atrium"},
                "matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "In",
                                      "values": [component for component, _ in SCRAPED]}]}
    return _policy("atrium-metrics-scrape", selector, "Ingress",
                   [{"from": [_peer(scraper)], "ports": [{"protocol": "TCP", "port": port} for _, port in SCRAPED]}])


def _pod_monitoring(component: str, port: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.googleapis.com/v1", "kind": "PodMonitoring",
        "metadata": _meta(f"atrium-{component}", **{"app.kubernetes.io/component": component}),
        "spec": {
            "selector": {"matchLabels": _selector(component)},
            "endpoints": [{
                "port": port, "path": "/metrics", "scheme": "http", "interval": SCRAPE_INTERVAL,
                # The Secret is read from the PodMonitoring's own namespace (atrium) by the collectors.
                "authorization": {"type": "Bearer", "credentials": {
                    "secret": {"name": METRICS_SECRET, "key": METRICS_SECRET_KEY}}},
            }],
            "targetLabels": {"metadata": ["pod", "container", "node"],
                             "fromPod": [{"from": "atrium/group", "to": GROUP_TARGET_LABEL}]},
        },
    }


def _token_reader() -> list[dict[str, Any]]:
    """GKE's collectors read the scrape token from the Secret themselves: their ServiceAccount may read that one
    Secret of the namespace (by name), and no other (atrium-secrets holds the database's password)."""
    name = "atrium-metrics-token-reader"
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(name),
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [METRICS_SECRET],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(name),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": GMP_COLLECTOR_ACCOUNT, "namespace": GMP_NAMESPACE}]},
    ]

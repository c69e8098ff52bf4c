"""Kubernetes objects from the routing table: a Kustomize base (what every group shares) and one overlay per
deployment group (its web and worker Deployments, Service, autoscaler, disruption budget, routes and load-balancer
policy). GKE first, through the Gateway API (README "Operations at scale" says why); every object but the two GKE
policies is plain Kubernetes or Gateway API, served by any conformant controller.

Each overlay includes the base, so `kubectl apply -k deploy/overlays/<group>` is a complete deployment of a group;
applying the base twice (once per overlay) is idempotent: its objects are the same whichever overlay applies them.
Names carry the group explicitly (no Kustomize namePrefix), so the overlays' objects never collide.
"""

from __future__ import annotations

from typing import Any

from backend.deploy.table import GroupRoute, RoutingTable
from backend.groups import Workload

NAMESPACE = "atrium"
IMAGE = "atrium"  # set at deploy time: `kustomize edit set image atrium=REGISTRY/atrium:TAG`
UID = 10001  # the image's `atrium` user (Dockerfile: useradd --uid 10001)
PORT = 8000
METRICS_PORT = 9464  # `atrium worker`'s /metrics (backend/worker_metrics.py; served when ATRIUM_METRICS_TOKEN is set)
GROUP_LABEL = "atrium/group"
COMMON_LABELS = {"app.kubernetes.io/name": "atrium", "app.kubernetes.io/part-of": "atrium"}
SECRET = "atrium-secrets"  # created by the operator (README): never rendered, never committed
SETTINGS = "atrium-settings"  # the operator's ConfigMap of site settings (optional), never rendered
# The scrape token (ATRIUM_METRICS_TOKEN), optional, in a Secret of its own: GKE's collectors are let read it by
# name (deploy/base/monitoring.yaml), which they must never be for atrium-secrets.
METRICS_SECRET, METRICS_SECRET_KEY = "atrium-metrics-token", "token"
PROVIDER_SECRET = "atrium-provider-keys"  # optional: ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY, DIFY_*...
TLS_SECRET = "atrium-tls"  # a certificate for every group's host (e.g. *.atrium.example.com)
GATEWAY = "atrium"
GATEWAY_CLASS = "gke-l7-global-external-managed"
# Google's front ends and health checkers: the only peers of the web pods behind a GKE external Application Load
# Balancer (container-native, NEGs), so the only ones whose X-Forwarded-For is believed and the only ingress.
LB_RANGES = ["35.191.0.0/16", "130.211.0.0/22"]
# What the pods reach: DNS, PostgreSQL, Redis, and HTTPS (model providers, the IdP's JWKS, Pinecone, OTLP/HTTPS).
EGRESS_PORTS = [("TCP", 5432), ("TCP", 6379), ("TCP", 443)]
# A websocket through Google's load balancer lives at most the backend service's timeout: one hour, after which
# Chainlit's client reconnects (its session_timeout, .chainlit/config.toml, keeps the session that long).
BACKEND_TIMEOUT_S = 3600
AFFINITY_COOKIE_TTL_S = 12 * 3600  # ATRIUM_SESSION_HOURS' default
# Gateway API caps: 16 rules per HTTPRoute, 8 matches per rule (v1.0; later versions allow more).
MAX_RULES, MAX_MATCHES = 16, 8


def _meta(name: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return meta


def _selector(component: str, group: str | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "atrium", "app.kubernetes.io/component": component}
    if group is not None:
        labels[GROUP_LABEL] = group
    return labels


# -- the base -------------------------------------------------------------------------------------------------------


def base_objects(table: RoutingTable) -> dict[str, list[dict]]:
    """file name -> objects of deploy/base/ (kustomization.yaml apart)."""
    return {
        "namespace.yaml": [{
            "apiVersion": "v1", "kind": "Namespace",
            # The restricted Pod Security Standard: non-root, no privilege escalation, no capabilities, seccomp.
            "metadata": {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted",
                                                       "pod-security.kubernetes.io/warn": "restricted"}},
        }],
        "serviceaccount.yaml": [{
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("atrium"),
            "automountServiceAccountToken": False,  # the app never calls the Kubernetes API
        }],
        "migrate-job.yaml": [_migrate_job()],
        "networkpolicy.yaml": _network_policies(),
        "gateway.yaml": _gateway(table),
    }


def base_kustomization(config_files: list[str], resources: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": NAMESPACE,
        "labels": [{"pairs": dict(COMMON_LABELS)}],
        "resources": resources,
        "configMapGenerator": [
            # config/ as files (tenants.yaml, models.yaml, ...): mounted at /etc/atrium. A change renames the
            # ConfigMap (its content hash), so the Deployments roll to it.
            {"name": "atrium-config", "files": [f"config/{name}" for name in config_files]},
            {"name": "atrium-env", "literals": [f"ATRIUM_TRUSTED_PROXIES={','.join(LB_RANGES)}",
                                                "ATRIUM_CONFIG_DIR=/etc/atrium",
                                                "ATRIUM_DATA_DIR=/data",
                                                "ATRIUM_LOG_LEVEL=INFO",
                                                # The demo accounts (every password "atrium", root a platform
                                                # admin) must not sign in on a public address just because
                                                # atrium-settings has no OIDC_ISSUER yet; a trial may set it true.
                                                "ATRIUM_DEV_LOGIN=false"]},
        ],
        "images": [{"name": IMAGE, "newName": IMAGE, "newTag": "latest"}],
    }


def _secret_env(*, database_only: bool = False) -> list[dict[str, Any]]:
    """References to the operator's Secret (never values). The migration needs the database only."""
    env = [{"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": name}}}
           for name in ("DATABASE_URL", "REDIS_URL", "CHAINLIT_AUTH_SECRET")]
    env.append({"name": "OIDC_CLIENT_SECRET",
                "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "OIDC_CLIENT_SECRET", "optional": True}}})
    return env[:1] if database_only else env


def _env_from() -> list[dict[str, Any]]:
    # atrium-settings: the operator's own non-secret settings (OIDC_ISSUER, OIDC_CLIENT_ID, OTEL_*...), optional;
    # listed after atrium-env, so it may also override the rendered ones. `env` entries win over both.
    return [{"configMapRef": {"name": "atrium-env"}},
            {"configMapRef": {"name": SETTINGS, "optional": True}},
            {"secretRef": {"name": PROVIDER_SECRET, "optional": True}}]


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def _pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


# What the app writes, on a read-only root filesystem: /tmp (uploads being parsed, libraries' temp files), the data
# dir (Chainlit's chat files and the usage spool; with PostgreSQL and pgvector nothing else) and the libraries'
# caches under $HOME/.cache. All per pod and disposable: nothing of the state lives on a pod's disk.
WRITABLE = {"tmp": ("/tmp", "1Gi"), "data": ("/data", "2Gi"), "cache": ("/home/atrium/.cache", "256Mi")}


def _volumes(config: bool) -> tuple[list[dict], list[dict]]:
    volumes = [{"name": name, "emptyDir": {"sizeLimit": size}} for name, (_, size) in WRITABLE.items()]
    mounts = [{"name": name, "mountPath": path} for name, (path, _) in WRITABLE.items()]
    if config:
        volumes.append({"name": "config", "configMap": {"name": "atrium-config"}})
        mounts.append({"name": "config", "mountPath": "/etc/atrium", "readOnly": True})
    return volumes, mounts


def _migrate_job() -> dict[str, Any]:
    volumes, mounts = _volumes(config=False)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _meta("atrium-migrate", **{"app.kubernetes.io/component": "migrate"}),
        "spec": {
            "backoffLimit": 4,
            # Gone 10 minutes after it finished, so the next `kubectl apply` (a new image) creates it again: a Job's
            # pod template cannot be changed in place. Running it again on a current schema changes nothing.
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": _selector("migrate")},
                "spec": {
                    "serviceAccountName": "atrium", "automountServiceAccountToken": False,
                    "restartPolicy": "OnFailure", "securityContext": _pod_security(),
                    "containers": [{
                        "name": "migrate", "image": IMAGE, "command": ["atrium", "migrate"],
                        "env": _secret_env(database_only=True), "envFrom": _env_from()[:2],
                        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                                      "limits": {"cpu": "1", "memory": "1Gi"}},
                        "securityContext": _container_security(), "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


def _network_policies() -> list[dict[str, Any]]:
    everything = {"matchLabels": {"app.kubernetes.io/name": "atrium"}}
    dns = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                   "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
           "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    out = {"ports": [{"protocol": proto, "port": port} for proto, port in EGRESS_PORTS]}
    return [
        {   # every Atrium pod: no ingress (workers and the migration take none), egress to DNS, the DB, Redis, HTTPS
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta("atrium-default"),
            "spec": {"podSelector": everything, "policyTypes": ["Ingress", "Egress"], "ingress": [],
                     "egress": [dns, out]},
        },
        {   # the web pods: their port, from the load balancer only (policies add up: this opens what the first shuts)
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta("atrium-web-ingress"),
            "spec": {"podSelector": {"matchLabels": _selector("web")}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"ipBlock": {"cidr": cidr}} for cidr in LB_RANGES],
                                  "ports": [{"protocol": "TCP", "port": PORT}]}]},
        },
    ]


def _gateway(table: RoutingTable) -> list[dict[str, Any]]:
    listener_hosts = {"hostname": table.hosts[0]} if len(table.hosts) == 1 else {}
    https = {"name": "https", "protocol": "HTTPS", "port": 443, **listener_hosts,
             "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": TLS_SECRET}]},
             "allowedRoutes": {"namespaces": {"from": "Same"}}}
    http = {"name": "http", "protocol": "HTTP", "port": 80, **listener_hosts,
            "allowedRoutes": {"namespaces": {"from": "Same"}}}
    gateway = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": _meta(GATEWAY),
               "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": [https, http]}}
    redirect = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": _meta("atrium-https-redirect"),
        "spec": {"parentRefs": [{"name": GATEWAY, "sectionName": "http"}],
                 "rules": [{"filters": [{"type": "RequestRedirect",
                                         "requestRedirect": {"scheme": "https", "statusCode": 301}}]}]},
    }
    if table.hosts:
        redirect["spec"]["hostnames"] = table.hosts
    return [gateway, redirect]


# -- an overlay (one deployment group) ------------------------------------------------------------------------------


def overlay_objects(table: RoutingTable, group: GroupRoute) -> dict[str, list[dict]]:
    g = group.name
    objects = {
        "web.yaml": [_deployment(group, "web")],
        "worker.yaml": [_deployment(group, "worker")],
        "service.yaml": [_service(g)],
        "pdb.yaml": [_pdb(g, "web"), _pdb(g, "worker")],
        "routes.yaml": _routes(table, group),
        "gke-policies.yaml": _gke_policies(g),
    }
    hpas = [_hpa(g, component, w) for component, w in (("web", group.config.web), ("worker", group.config.worker))
            if w.max_replicas is not None]
    if hpas:
        objects["hpa.yaml"] = hpas
    return objects


def overlay_kustomization(objects: dict[str, list[dict]]) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": NAMESPACE,
        "labels": [{"pairs": dict(COMMON_LABELS)}],
        "resources": ["../../base", *objects],
        "images": [{"name": IMAGE, "newName": IMAGE, "newTag": "latest"}],
    }


def _resources(w: Workload) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": {"cpu": w.cpu, "memory": w.memory}}
    limits = {k: v for k, v in (("cpu", w.cpu_limit), ("memory", w.memory_limit)) if v is not None}
    if limits:
        out["limits"] = limits
    return out


def _deployment(group: GroupRoute, component: str) -> dict[str, Any]:
    g, web = group.name, component == "web"
    w = group.config.web if web else group.config.worker
    labels = _selector(component, g)
    volumes, mounts = _volumes(config=True)
    env: list[dict[str, Any]] = [
        {"name": "ATRIUM_DEPLOYMENT_GROUPS", "value": g},
        {"name": "ATRIUM_MIGRATE_ON_START", "value": "false"},  # the migration Job applies the schema
    ]
    if web:
        env.append({"name": "ATRIUM_INGEST_WORKER", "value": "false"})  # the worker Deployment ingests
        if group.config.public_url:
            env.append({"name": "ATRIUM_PUBLIC_URL", "value": group.config.public_url})
    env += _secret_env()
    # Unset (no Secret): /metrics is a 404 and the worker opens no port; README "Scraping metrics".
    env.append({"name": "ATRIUM_METRICS_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": METRICS_SECRET, "key": METRICS_SECRET_KEY, "optional": True}}})
    container: dict[str, Any] = {
        "name": component, "image": IMAGE,
        "command": ["atrium", "serve", "--host", "0.0.0.0", "--port", str(PORT)] if web
        else ["atrium", "worker", "--metrics-host", "0.0.0.0", "--metrics-port", str(METRICS_PORT)],
        "env": env, "envFrom": _env_from(), "resources": _resources(w),
        "securityContext": _container_security(), "volumeMounts": mounts,
    }
    if not web:  # the cluster's Prometheus scrapes it with the web pods' token (deploy/base/monitoring.yaml)
        container["ports"] = [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
    if web:
        container["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
        container["startupProbe"] = {  # loading the local model and the embedder takes a while on a cold node
            "httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 60}
        container["livenessProbe"] = {
            "httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 5,
            "failureThreshold": 6}
        container["readinessProbe"] = {  # 503 naming the failing part (database, Redis, ...): out of the Service
            "httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 5,
            "failureThreshold": 3}
    spec: dict[str, Any] = {
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": labels},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "serviceAccountName": "atrium", "automountServiceAccountToken": False,
                "securityContext": _pod_security(),
                # SIGTERM: the server stops taking connections and ends its turns; a worker gives its job back.
                "terminationGracePeriodSeconds": 60,
                "containers": [container], "volumes": volumes,
            },
        },
    }
    if w.max_replicas is None:  # with an autoscaler, the HPA owns the count (an apply must not reset it)
        spec = {"replicas": w.replicas, **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta(f"atrium-{component}-{g}", **{"app.kubernetes.io/component": component,
                                                            GROUP_LABEL: g}),
            "spec": spec}


def _service(g: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(f"atrium-web-{g}", **{"app.kubernetes.io/component": "web", GROUP_LABEL: g}),
            "spec": {"type": "ClusterIP", "selector": _selector("web", g),
                     "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]}}


def _pdb(g: str, component: str) -> dict[str, Any]:
    # maxUnavailable, not minAvailable: a group of one pod can still be drained (one pod down at a time).
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta(f"atrium-{component}-{g}", **{"app.kubernetes.io/component": component,
                                                            GROUP_LABEL: g}),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(component, g)}}}


def _hpa(g: str, component: str, w: Workload) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(f"atrium-{component}-{g}", **{"app.kubernetes.io/component": component,
                                                            GROUP_LABEL: g}),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": f"atrium-{component}-{g}"},
                     "minReplicas": w.replicas, "maxReplicas": w.max_replicas,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
                     # Model answers come in bursts: scale up at once, down slowly (a pod's model load is costly).
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}}


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _routes(table: RoutingTable, group: GroupRoute) -> list[dict[str, Any]]:
    """This group's tenants' API on every group's host, and this group's pages on its own host. Where both match
    (the group's host), the longer path prefix wins (Gateway API precedence), so another group's route for
    `/api/t/<its tenant>` on this host beats this group's `/`."""
    g = group.name
    backend = [{"name": f"atrium-web-{g}", "port": PORT}]
    parent = [{"name": GATEWAY, "sectionName": "https"}]
    routes = []
    matches = [{"path": {"type": "PathPrefix", "value": p}} for p in group.api_prefixes()]
    rules = [{"matches": chunk, "backendRefs": backend} for chunk in _chunks(matches, MAX_MATCHES)]
    for i, chunk in enumerate(_chunks(rules, MAX_RULES)):
        spec: dict[str, Any] = {"parentRefs": parent}
        if table.hosts:
            spec["hostnames"] = table.hosts
        spec["rules"] = chunk
        name = f"atrium-api-{g}" + (f"-{i + 1}" if i else "")
        routes.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                       "metadata": _meta(name, **{GROUP_LABEL: g}), "spec": spec})
    pages: dict[str, Any] = {"parentRefs": parent}
    if group.host:
        pages["hostnames"] = [group.host]
    pages["rules"] = [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backend}]
    routes.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                   "metadata": _meta(f"atrium-pages-{g}", **{GROUP_LABEL: g}), "spec": pages})
    return routes


def _gke_policies(g: str) -> list[dict[str, Any]]:
    target = {"group": "", "kind": "Service", "name": f"atrium-web-{g}"}
    return [
        {"apiVersion": "networking.gke.io/v1", "kind": "GCPBackendPolicy",
         "metadata": _meta(f"atrium-web-{g}", **{GROUP_LABEL: g}),
         "spec": {"default": {
             "timeoutSec": BACKEND_TIMEOUT_S,
             # The chat's socket.io session lives in one process: its long-polling requests (and a websocket's
             # reconnection) must reach the process that holds it. The load balancer's own cookie does that.
             "sessionAffinity": {"type": "GENERATED_COOKIE", "cookieTtlSec": AFFINITY_COOKIE_TTL_S},
             "connectionDraining": {"drainingTimeoutSec": 60}},
             "targetRef": target}},
        {"apiVersion": "networking.gke.io/v1", "kind": "HealthCheckPolicy",
         "metadata": _meta(f"atrium-web-{g}", **{GROUP_LABEL: g}),
         "spec": {"default": {"checkIntervalSec": 10, "timeoutSec": 5, "healthyThreshold": 1,
                              "unhealthyThreshold": 3,
                              "config": {"type": "HTTP", "httpHealthCheck": {"portSpecification": "USE_SERVING_PORT",
                                                                        "requestPath": "/readyz"}}},
                  "targetRef": target}},
    ]

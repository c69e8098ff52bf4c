"""JSON schemas for the custom resources the manifests use, which kubernetes-validate's bundled schemas (the core API)
do not have: the Gateway API's Gateway and HTTPRoute (gateway.networking.k8s.io/v1, standard channel), GKE's
GCPBackendPolicy and HealthCheckPolicy (networking.gke.io/v1) and GKE Managed Prometheus' PodMonitoring
(monitoring.googleapis.com/v1; from its Go types in GoogleCloudPlatform/prometheus-engine, pkg/operator/apis/
monitoring/v1: pod_types.go, http_types.go).

Written by hand for the fields the renderer uses, with the limits the CRDs state (patterns, enums, ranges, list
sizes, the rules their CEL validations add that matter here: HTTPS listeners carry TLS, a Service backend names its
port). Strict: a field not listed here is an error, so a new field must be added here deliberately. What this does
not check: fields the renderer never writes, the CRDs' other CEL rules, and whether the cluster's controller version
accepts them (the Gateway API CRDs and GKE's policies are installed by GKE itself).
"""

from __future__ import annotations

DNS_LABEL = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
HOSTNAME = {"type": "string", "maxLength": 253,
            "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
LABELS = {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}}


def _strict(properties: dict, required: list[str] | None = None, **extra: object) -> dict:
    return {"type": "object", "properties": properties, "required": required or [], "additionalProperties": False,
            **extra}


METADATA = _strict({"name": DNS_LABEL, "namespace": DNS_LABEL, "labels": LABELS, "annotations": LABELS}, ["name"])


def _resource(api_version: str, kind: str, spec: dict) -> dict:
    return _strict({"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": METADATA,
                    "spec": spec}, ["apiVersion", "kind", "metadata", "spec"])


_OBJECT_REF = _strict({"group": {"type": "string", "maxLength": 253}, "kind": {"type": "string", "maxLength": 63},
                       "name": {"type": "string", "minLength": 1, "maxLength": 253},
                       "namespace": DNS_LABEL}, ["name"])
_LISTENER = _strict({
    "name": DNS_LABEL,  # SectionName
    "hostname": HOSTNAME,
    "port": PORT,
    "protocol": {"type": "string", "enum": ["HTTP", "HTTPS", "TLS", "TCP", "UDP"]},
    "tls": _strict({"mode": {"enum": ["Terminate", "Passthrough"]},
                    "certificateRefs": {"type": "array", "maxItems": 64, "items": _OBJECT_REF}}),
    "allowedRoutes": _strict({"namespaces": _strict({"from": {"enum": ["All", "Selector", "Same"]}})}),
}, ["name", "port", "protocol"],
    # CEL in the CRD: tls must be specified for HTTPS listeners, and must not be for HTTP ones.
    allOf=[{"if": {"properties": {"protocol": {"const": "HTTPS"}}}, "then": {"required": ["tls"]}},
           {"if": {"properties": {"protocol": {"const": "HTTP"}}}, "then": {"not": {"required": ["tls"]}}}])

GATEWAY = _resource("gateway.networking.k8s.io/v1", "Gateway", _strict({
    "gatewayClassName": {"type": "string", "minLength": 1, "maxLength": 253},
    "listeners": {"type": "array", "minItems": 1, "maxItems": 64, "items": _LISTENER},
}, ["gatewayClassName", "listeners"]))

_PATH = _strict({"type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                 # CEL: an absolute path, no `//`, not ending in `/.` or `/..`
                 "value": {"type": "string", "maxLength": 1024, "pattern": r"^/(?!.*//)(?!.*/\.\.?$)"}})
_MATCH = _strict({"path": _PATH})
_BACKEND = _strict({"group": {"type": "string"}, "kind": {"type": "string"}, "name": DNS_LABEL,
                    "namespace": DNS_LABEL, "port": PORT, "weight": {"type": "integer", "minimum": 0,
                                                                     "maximum": 1000000}},
                   ["name", "port"])  # CEL: a Service backend must name its port
_FILTER = _strict({"type": {"enum": ["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror",
                                     "RequestRedirect", "URLRewrite", "ExtensionRef"]},
                   "requestRedirect": _strict({"scheme": {"enum": ["http", "https"]},
                                               "statusCode": {"enum": [301, 302]},
                                               "hostname": HOSTNAME, "port": PORT})},
                  ["type"])
_RULE = _strict({"matches": {"type": "array", "maxItems": 8, "items": _MATCH},
                 "filters": {"type": "array", "maxItems": 16, "items": _FILTER},
                 "backendRefs": {"type": "array", "maxItems": 16, "items": _BACKEND}})
_PARENT = _strict({"group": {"type": "string"}, "kind": {"type": "string"}, "namespace": DNS_LABEL,
                   "name": DNS_LABEL, "sectionName": DNS_LABEL, "port": PORT}, ["name"])

HTTP_ROUTE = _resource("gateway.networking.k8s.io/v1", "HTTPRoute", _strict({
    "parentRefs": {"type": "array", "maxItems": 32, "items": _PARENT},
    "hostnames": {"type": "array", "maxItems": 16, "items": HOSTNAME},
    "rules": {"type": "array", "minItems": 1, "maxItems": 16, "items": _RULE},
}))

_TARGET = _strict({"group": {"const": ""}, "kind": {"const": "Service"}, "name": DNS_LABEL},
                  ["group", "kind", "name"])

GCP_BACKEND_POLICY = _resource("networking.gke.io/v1", "GCPBackendPolicy", _strict({
    "default": _strict({
        "timeoutSec": {"type": "integer", "minimum": 1, "maximum": 2147483647},
        "sessionAffinity": _strict({"type": {"enum": ["CLIENT_IP", "GENERATED_COOKIE"]},
                                    "cookieTtlSec": {"type": "integer", "minimum": 0, "maximum": 1209600}},
                                   ["type"]),
        "connectionDraining": _strict({"drainingTimeoutSec": {"type": "integer", "minimum": 0, "maximum": 3600}}),
    }),
    "targetRef": _TARGET,
}, ["targetRef"]))

HEALTH_CHECK_POLICY = _resource("networking.gke.io/v1", "HealthCheckPolicy", _strict({
    "default": _strict({
        "checkIntervalSec": {"type": "integer", "minimum": 1, "maximum": 300},
        "timeoutSec": {"type": "integer", "minimum": 1, "maximum": 300},
        "healthyThreshold": {"type": "integer", "minimum": 1, "maximum": 10},
        "unhealthyThreshold": {"type": "integer", "minimum": 1, "maximum": 10},
        "config": _strict({"type": {"enum": ["TCP", "HTTP", "HTTPS", "HTTP2", "GRPC"]},
                           "httpHealthCheck": _strict({
                               "port": PORT, "requestPath": {"type": "string", "pattern": "^/"},
                               "portSpecification": {"enum": ["USE_FIXED_PORT", "USE_NAMED_PORT",
                                                              "USE_SERVING_PORT"]}})},
                          ["type"]),
    }),
    "targetRef": _TARGET,
}, ["targetRef"]))

# A Prometheus duration (e.g. 30s, 1m30s), as the CRD's `format: duration` and Prometheus' parser take it.
_DURATION = {"type": "string", "pattern": r"^((\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?|0)$", "minLength": 1}
_SECRET_SELECTOR = _strict({"secret": _strict({"name": DNS_LABEL, "key": {"type": "string", "minLength": 1,
                                                                          "pattern": r"^[-._a-zA-Z0-9]+$"},
                                               "namespace": DNS_LABEL}, ["name", "key"])})
_SCRAPE_ENDPOINT = _strict({
    # Name (a container port's name) or non-zero number of the port.
    "port": {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 253}, PORT]},
    "scheme": {"enum": ["http", "https"]},
    "path": {"type": "string", "pattern": "^/"},
    "interval": _DURATION, "timeout": _DURATION,
    # `type` defaults to Bearer; Basic is refused (basicAuth is the field for it).
    "authorization": _strict({"type": {"type": "string", "not": {"const": "Basic"}},
                              "credentials": _SECRET_SELECTOR}),
}, ["port", "interval"])
_SELECTOR_REQUIREMENT = _strict({"key": {"type": "string"}, "operator": {"enum": ["In", "NotIn", "Exists",
                                                                                 "DoesNotExist"]},
                                 "values": {"type": "array", "items": {"type": "string"}}}, ["key", "operator"])
# GMP's target schema: a pod label may not be copied onto the labels that identify a series.
_PROTECTED = ["project_id", "location", "cluster", "namespace", "job", "instance"]  # isPrometheusTargetLabel

POD_MONITORING = _resource("monitoring.googleapis.com/v1", "PodMonitoring", _strict({
    "selector": _strict({"matchLabels": LABELS,
                         "matchExpressions": {"type": "array", "items": _SELECTOR_REQUIREMENT}}),
    "endpoints": {"type": "array", "minItems": 1, "items": _SCRAPE_ENDPOINT},
    "targetLabels": _strict({
        "metadata": {"type": "array", "items": {"enum": ["pod", "container", "node"]}},
        "fromPod": {"type": "array", "items": _strict({"from": {"type": "string", "minLength": 1},
                                                       "to": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$",
                                                              "not": {"enum": _PROTECTED}}}, ["from"])}}),
    "filterRunning": {"type": "boolean"},
}, ["selector", "endpoints"]))

SCHEMAS = {
    ("gateway.networking.k8s.io/v1", "Gateway"): GATEWAY,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTP_ROUTE,
    ("networking.gke.io/v1", "GCPBackendPolicy"): GCP_BACKEND_POLICY,
    ("networking.gke.io/v1", "HealthCheckPolicy"): HEALTH_CHECK_POLICY,
    ("monitoring.googleapis.com/v1", "PodMonitoring"): POD_MONITORING,
}

"""The committed manifests: what `atrium deploy render` renders now from tenants.yaml (no drift), built by
`kubectl kustomize` for every overlay, every object valid against Kubernetes' schemas (kubernetes-validate, offline)
or, for the custom resources, against tests/deploy/crd_schemas.py; every tenant routed to exactly one group on every
host, as the Gateway API's precedence rules pick among the rendered routes; and what the pods may do (non-root as
the image's user, read-only root filesystem, secrets by reference only).

kubectl and nginx are part of the machine the tests run on (kubectl ships with it; scripts/test-deps.sh installs
nginx): without them these tests fail, saying so, rather than skip."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from backend.config_files import ConfigError
from backend.deploy.nginx import parse_upstreams, render_nginx
from backend.deploy.render import drift, render_tree
from backend.deploy.table import RoutingTable, load_table
from backend.groups import GroupConfig
from backend.tenants import TenantRegistry
from tests.conftest import REPO
from tests.deploy.crd_schemas import SCHEMAS

KUBERNETES_VERSION = "1.32"  # the oldest minor version the manifests must be valid for (GKE's regular channel)
SECRET_NAMES = {"DATABASE_URL", "REDIS_URL", "CHAINLIT_AUTH_SECRET", "OIDC_CLIENT_SECRET", "ANTHROPIC_API_KEY",
                "OPENAI_API_KEY", "GEMINI_API_KEY", "PINECONE_API_KEY", "ATRIUM_METRICS_TOKEN"}
TENANTS = yaml.safe_load((REPO / "config" / "tenants.yaml").read_text())


def _tool(name: str, how: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: these tests need it ({how})")
    return path


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    """overlay name -> the objects `kubectl kustomize deploy/overlays/<name>` builds."""
    kubectl = _tool("kubectl", "it ships with this kind of machine at /usr/bin/kubectl; or apt-get install kubectl")
    out = {}
    for overlay in sorted((REPO / "deploy" / "overlays").iterdir()):
        r = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"kubectl kustomize {overlay}: {r.stderr}"
        out[overlay.name] = [doc for doc in yaml.safe_load_all(r.stdout) if doc]
    return out


def _validate(obj: dict) -> str:
    """'core' or 'crd' by what validated it; raises on an invalid object."""
    import kubernetes_validate

    schema = SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if schema is not None:
        jsonschema.Draft202012Validator(schema).validate(obj)
        return "crd"
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    return "core"


def test_the_committed_manifests_are_what_tenants_yaml_renders_now():
    files = render_tree(load_table(REPO / "config"), REPO / "config")
    assert drift(files, REPO / "deploy") == [], "run `atrium deploy render` and commit deploy/"
    assert {name.split("/")[1] for name in files if name.startswith("overlays/")} == \
        set(TENANTS["deployment_groups"])  # one overlay per group of tenants.yaml


def test_every_overlay_builds_and_every_object_is_valid(built):
    assert set(built) == set(TENANTS["deployment_groups"])
    by = {"core": set(), "crd": set()}
    for objects in built.values():
        for obj in objects:
            by[_validate(obj)].add(obj["kind"])
    assert by["core"] == {"Namespace", "ServiceAccount", "ConfigMap", "Job", "NetworkPolicy", "Deployment", "Service",
                          "PodDisruptionBudget", "HorizontalPodAutoscaler", "Role", "RoleBinding"}
    assert by["crd"] == {"Gateway", "HTTPRoute", "GCPBackendPolicy", "HealthCheckPolicy", "PodMonitoring"}


def test_the_validation_refuses_what_a_cluster_would(built):
    """The checks above can fail: a wrong type, an unknown field, a route over the Gateway API's limits."""
    objects = built["default"]
    deployment = copy.deepcopy(next(o for o in objects if o["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = ["4Gi"]
    route = copy.deepcopy(next(o for o in objects if o["kind"] == "HTTPRoute" and o["spec"].get("hostnames")))
    too_many = copy.deepcopy(route)
    too_many["spec"]["rules"][0]["matches"] = [{"path": {"type": "PathPrefix", "value": f"/api/t/t{i}"}}
                                               for i in range(9)]
    no_port = copy.deepcopy(route)
    del no_port["spec"]["rules"][0]["backendRefs"][0]["port"]
    typo = copy.deepcopy(next(o for o in objects if o["kind"] == "GCPBackendPolicy"))
    typo["spec"]["default"]["sessionAffinity"]["type"] = "GENERATED_COOKIES"
    service = copy.deepcopy(next(o for o in objects if o["kind"] == "Service"))
    service["spec"]["sessionAffinity_"] = "ClientIP"
    monitor = next(o for o in objects if o["kind"] == "PodMonitoring")
    no_interval, basic = copy.deepcopy(monitor), copy.deepcopy(monitor)
    del no_interval["spec"]["endpoints"][0]["interval"]
    basic["spec"]["endpoints"][0]["authorization"]["type"] = "Basic"
    for bad in (deployment, too_many, no_port, typo, service, no_interval, basic):
        with pytest.raises(jsonschema.ValidationError):
            _validate(bad)


def _served_by(routes: list[dict], host: str, path: str) -> set[str]:
    """The backends the Gateway API sends `host` + `path` to: among the routes attached for that host (its name
    listed, or no hostnames at all), the rule matches with the longest matching path prefix (Gateway API
    precedence for routes of the same hostname). More than one backend would be a conflict."""
    candidates = []
    for route in routes:
        hostnames = route["spec"].get("hostnames")
        if hostnames and host not in hostnames:
            continue
        for rule in route["spec"]["rules"]:
            for match in rule["matches"]:
                prefix = match["path"]["value"]
                if match["path"]["type"] == "PathPrefix" and (
                        prefix == "/" or path == prefix or path.startswith(prefix.rstrip("/") + "/")):
                    candidates.append((len(prefix), {b["name"] for b in rule["backendRefs"]}))
    if not candidates:
        return set()
    best = max(length for length, _ in candidates)
    return set().union(*(names for length, names in candidates if length == best))


def test_every_tenant_is_routed_to_exactly_one_group_on_every_host(built):
    routes = [o for objects in built.values() for o in objects if o["kind"] == "HTTPRoute"
              and o["spec"]["parentRefs"][0].get("sectionName") == "https"]
    hosts = {name: re.sub(r"^https?://", "", g["public_url"]).split("/")[0]
             for name, g in TENANTS["deployment_groups"].items()}
    assert len(set(hosts.values())) == len(hosts)
    for tenant in TENANTS["tenants"]:
        owner = f"atrium-web-{tenant['deployment_group']}"
        prefix = f"/api/t/{tenant['id']}"
        # Rendered in exactly one overlay: the tenant's group's.
        assert [name for name, objects in built.items() for o in objects if o["kind"] == "HTTPRoute"
                for rule in o["spec"]["rules"] for m in rule.get("matches", []) if m["path"]["value"] == prefix] == \
            [tenant["deployment_group"]]
        for host in hosts.values():
            for path in (prefix, f"{prefix}/chat", f"{prefix}/v1/chat/completions"):
                assert _served_by(routes, host, path) == {owner}, (tenant["id"], host, path)
        # A tenant whose id merely starts with this one's is not this one (path elements, not characters): the
        # host's own group answers it (and refuses it, not being its tenant).
        for group, host in hosts.items():
            assert _served_by(routes, host, f"{prefix}-eu/chat") == {f"atrium-web-{group}"}
    for group, host in hosts.items():
        for path in ("/", "/chat", "/chat/ws/socket.io/", "/studio", "/api/me", "/healthz"):
            assert _served_by(routes, host, path) == {f"atrium-web-{group}"}, (host, path)
        assert _served_by(routes, "elsewhere.example.org", "/chat") == set()


def _pods(objects: list[dict]) -> list[tuple[dict, dict]]:
    return [(o, o["spec"]["template"]["spec"]) for o in objects if o["kind"] in ("Deployment", "Job")]


def test_pods_run_as_the_images_user_on_a_read_only_root_with_secrets_by_reference(built):
    uid = int(re.search(r"useradd [^\n]*--uid (\d+)", (REPO / "Dockerfile").read_text()).group(1))
    for group, objects in built.items():
        assert not [o for o in objects if o["kind"] == "Secret"]  # never rendered: the operator creates them
        env_cm = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("atrium-env"))
        assert env_cm["data"]["ATRIUM_TRUSTED_PROXIES"]  # uvicorn's --forwarded-allow-ips: the load balancer only
        assert not SECRET_NAMES & set(env_cm["data"])
        assert env_cm["data"]["ATRIUM_DEV_LOGIN"] == "false"  # no demo password sign-in on a public address
        for owner, pod in _pods(objects):
            assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == uid
            assert pod["automountServiceAccountToken"] is False
            mounted = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            for c in pod["containers"]:
                assert c["securityContext"]["readOnlyRootFilesystem"] is True
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert {"/tmp", "/data"} <= {m["mountPath"] for m in c["volumeMounts"] if m["name"] in mounted}
                for e in c.get("env", []):
                    if e["name"] in SECRET_NAMES:
                        assert "value" not in e and e["valueFrom"]["secretKeyRef"]["name"], (owner, e)
                assert c["resources"]["requests"] and c["resources"]["limits"]
        web = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == f"atrium-web-{group}")
        worker = next(o for o in objects if o["kind"] == "Deployment"
                      and o["metadata"]["name"] == f"atrium-worker-{group}")
        for deployment, command in ((web, "serve"), (worker, "worker")):
            [c] = deployment["spec"]["template"]["spec"]["containers"]
            assert c["command"][:2] == ["atrium", command]
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["ATRIUM_DEPLOYMENT_GROUPS"] == group and env["ATRIUM_MIGRATE_ON_START"] == "false"
        # The worker serves /metrics on its own port (backend/worker_metrics.py), reachable by the cluster's
        # Prometheus only if it listens on every address, not the default 127.0.0.1.
        [w] = worker["spec"]["template"]["spec"]["containers"]
        assert w["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}]
        assert w["command"][2:] == ["--metrics-host", "0.0.0.0", "--metrics-port", "9464"]
        [c] = web["spec"]["template"]["spec"]["containers"]
        assert (c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"]) == \
            ("/healthz", "/readyz")
        sizes = TENANTS["deployment_groups"][group]["web"]
        assert c["resources"] == {"requests": {"cpu": sizes["cpu"], "memory": sizes["memory"]},
                                  "limits": {"cpu": sizes["cpu_limit"], "memory": sizes["memory_limit"]}}
        hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
        assert (hpa["spec"]["scaleTargetRef"]["name"], hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == \
            (f"atrium-web-{group}", sizes["replicas"], sizes["max_replicas"])
        assert "replicas" not in web["spec"]  # the autoscaler owns it
        service = next(o for o in objects if o["kind"] == "Service")
        assert service["spec"]["selector"].items() <= web["spec"]["template"]["metadata"]["labels"].items()
        assert not service["spec"]["selector"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()
        job = next(o for o in objects if o["kind"] == "Job")
        assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["atrium", "migrate"]


def test_only_the_web_pods_take_ingress_and_only_from_the_load_balancer(built):
    """Apart from the metrics scraper's (tests/deploy/test_monitoring.py)."""
    policies = [o for o in built["default"] if o["kind"] == "NetworkPolicy"
                and o["metadata"]["name"] != "atrium-metrics-scrape"]
    everything = next(p for p in policies if p["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "atrium"})
    assert everything["spec"]["ingress"] == [] and set(everything["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    egress_ports = {p["port"] for rule in everything["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 5432, 6379, 443}
    openers = [p for p in policies if p["spec"].get("ingress")]
    assert [p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in openers] == ["web"]
    assert {peer["ipBlock"]["cidr"] for p in openers for rule in p["spec"]["ingress"] for peer in rule["from"]} == \
        set(next(o for o in built["default"] if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(
            "atrium-env"))["data"]["ATRIUM_TRUSTED_PROXIES"].split(","))


def _registry(groups: dict[str, GroupConfig], members: dict[str, str]) -> TenantRegistry:
    from backend.tenants import TenantConfig

    tenants = [TenantConfig.model_validate({"id": t, "name": t, "match": {"any_of": [t]}, "deployment_group": g,
                                            "assistants": [{"name": "a", "title": "A"}]}) for t, g in members.items()]
    return TenantRegistry(tenants, groups=groups)


def test_groups_that_cannot_be_routed_by_host_are_a_clear_error():
    both = {"a": GroupConfig(public_url="https://a.example.com"), "b": GroupConfig()}
    with pytest.raises(ConfigError, match="b have no public_url"):
        RoutingTable.from_registry(_registry(both, {"t1": "a", "t2": "b"}))
    same = {"a": GroupConfig(public_url="https://x.example.com"), "b": GroupConfig(public_url="https://x.example.com/b")}
    with pytest.raises(ConfigError, match="share the host x.example.com"):
        RoutingTable.from_registry(_registry(same, {"t1": "a", "t2": "b"}))
    # One group needs no host: its routes match every host.
    alone = RoutingTable.from_registry(_registry({"default": GroupConfig()}, {"t1": "default"}))
    assert alone.hosts == [] and alone.group_of("t1") == "default"


def test_many_tenants_split_over_routes_within_the_gateway_apis_limits():
    from backend.deploy.kubernetes import overlay_objects
    from tests.deploy.crd_schemas import HTTP_ROUTE

    members = {f"dept-{i:03d}": "big" for i in range(150)}
    table = RoutingTable.from_registry(_registry({"big": GroupConfig(public_url="https://big.example.com")}, members))
    routes = overlay_objects(table, table.group("big"))["routes.yaml"]
    for route in routes:
        jsonschema.Draft202012Validator(HTTP_ROUTE).validate(route)
    prefixes = [m["path"]["value"] for r in routes for rule in r["spec"]["rules"] for m in rule.get("matches", [])]
    assert sorted(prefixes) == sorted([f"/api/t/{t}" for t in members] + ["/"])
    assert len({r["metadata"]["name"] for r in routes}) == len(routes) == 3  # 150 over two API routes + the pages


def test_the_nginx_configuration_is_one_nginx_accepts(tmp_path):
    nginx = _tool("nginx", "scripts/test-deps.sh installs it: apt-get install -y nginx")
    table = load_table(REPO / "config")
    upstreams = parse_upstreams(["default=127.0.0.1:18001,127.0.0.1:18002", "regulated=127.0.0.1:18003"], table)
    (tmp_path / "atrium.conf").write_text(render_nginx(table, upstreams, listen="127.0.0.1:18080"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n"
        f"  access_log off;\n  include {tmp_path}/atrium.conf;\n}}\n")
    r = subprocess.run([nginx, "-t", "-q", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c",
                        str(tmp_path / "nginx.conf")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    with pytest.raises(ConfigError, match="no --upstream for deployment group.*regulated"):
        parse_upstreams(["default=127.0.0.1:1"], table)


def test_render_check_tells_drift_and_render_writes_what_check_accepts(tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "backend.cli", "deploy", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=120)

    out = tmp_path / "deploy"
    (out / "dashboards").mkdir(parents=True)
    (out / "dashboards" / "keep.json").write_text("{}")  # not the command's: left alone
    (out / "overlays" / "gone").mkdir(parents=True)
    (out / "overlays" / "gone" / "web.yaml").write_text("a group removed from tenants.yaml")
    assert cli("render", "--check", "--out", str(out)).returncode == 1
    written = cli("render", "--out", str(out))
    assert written.returncode == 0, written.stderr
    assert cli("render", "--check", "--out", str(out)).returncode == 0
    assert not (out / "overlays" / "gone").exists() and (out / "dashboards" / "keep.json").exists()
    web = Path(out / "overlays" / "regulated" / "web.yaml")
    web.write_text(web.read_text().replace("ATRIUM_DEPLOYMENT_GROUPS", "ATRIUM_DEPLOYMENT_GROUP"))
    checked = cli("render", "--check", "--out", str(out))
    assert checked.returncode == 1 and "overlays/regulated/web.yaml: differs" in checked.stderr


def test_render_warns_about_a_group_without_tenants(tmp_path):
    """A group added before any tenant moves to it renders (bringing its pods up first is a legitimate step), but
    the operator is told that its pods would serve nobody."""
    cfg = tmp_path / "config"
    cfg.mkdir()
    for f in (REPO / "config").glob("*.yaml"):
        (cfg / f.name).write_text(f.read_text())
    data = yaml.safe_load((cfg / "tenants.yaml").read_text())
    data["deployment_groups"]["engineering"] = {"public_url": "https://eng.atrium.example.com"}
    (cfg / "tenants.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    r = subprocess.run([sys.executable, "-m", "backend.cli", "deploy", "render", "--out", str(tmp_path / "deploy")],
                       cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ,
                                                                                   "ATRIUM_CONFIG_DIR": str(cfg)})
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        "warning: deployment group 'engineering' has no tenant: its pods will serve nobody; move tenants to it "
        "(`deployment_group:`) or remove it from deployment_groups"]
    assert (tmp_path / "deploy" / "overlays" / "engineering" / "web.yaml").is_file()
    assert "then apply every group" in r.stdout

"""What the rendered manifests let the cluster's monitoring reach (tenants.yaml `monitoring:`, backend/deploy/
monitoring.py): the scraper in to the web pods' 8000 and the workers' 9464 and nowhere else, GKE Managed
Prometheus' PodMonitorings naming ports the pods have and the Secret they read their token from, the plain
Prometheus example (deploy/monitoring/prometheus-scrape.yaml) naming the same, and a switch that removes them.

NetworkPolicies are evaluated here as Kubernetes does: the policies that select a pod add up; a named port is the
pod's container port of that name (and opens nothing on a pod without one)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from backend.config_files import ConfigError
from backend.deploy.kubernetes import GROUP_LABEL, LB_RANGES, METRICS_PORT, METRICS_SECRET, NAMESPACE, PORT
from backend.deploy.render import render_tree, write_tree
from backend.deploy.table import load_table
from backend.tenants import TenantRegistry
from tests.conftest import REPO
from tests.deploy.test_manifests import _validate, built  # noqa: F401 - `built` is a fixture

GMP = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gmp-system"}},
       "podSelector": {"matchLabels": {"app.kubernetes.io/name": "collector"}}}
LB = [{"ipBlock": {"cidr": cidr}} for cidr in LB_RANGES]


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for req in selector.get("matchExpressions", []):
        present, value = req["key"] in labels, labels.get(req["key"])
        if not {"In": present and value in req.get("values", []),
                "NotIn": not present or value not in req.get("values", []),
                "Exists": present, "DoesNotExist": not present}[req["operator"]]:
            return False
    return True


def _pods(objects: list[dict]) -> dict[str, tuple[dict, list[dict]]]:
    """name -> (the pod template's labels, its containers), for every Deployment and Job."""
    return {o["metadata"]["name"]: (o["spec"]["template"]["metadata"]["labels"],
                                    o["spec"]["template"]["spec"]["containers"])
            for o in objects if o["kind"] in ("Deployment", "Job")}


def _ingress(objects: list[dict], labels: dict, containers: list[dict]) -> list[tuple[str, int]]:
    """(peer, port number) for every peer a pod takes connections from, over every policy that selects it."""
    named = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports", [])}
    opened = []
    for policy in objects:
        if policy["kind"] != "NetworkPolicy" or not _selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = [named.get(p["port"]) if isinstance(p["port"], str) else p["port"] for p in rule["ports"]]
            opened += [(yaml.safe_dump(peer, sort_keys=True), port) for peer in rule["from"] for port in ports
                       if port is not None]
    return sorted(opened)


def _peers(peers: list[dict], port: int) -> list[tuple[str, int]]:
    return sorted((yaml.safe_dump(peer, sort_keys=True), port) for peer in peers)


def test_the_scraper_reaches_the_metrics_ports_and_nothing_else(built):  # noqa: F811
    for group, objects in built.items():
        [scrape] = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] ==
                    "atrium-metrics-scrape"]
        assert scrape["metadata"]["namespace"] == NAMESPACE and scrape["spec"]["policyTypes"] == ["Ingress"]
        pods = _pods(objects)
        web, worker = pods[f"atrium-web-{group}"], pods[f"atrium-worker-{group}"]
        # The web pods: their port from the load balancer (as before) and from GKE's collectors; the workers: the
        # metrics port from the collectors only; the migration Job: nothing.
        assert _ingress(objects, *web) == sorted(_peers(LB, PORT) + _peers([GMP], PORT))
        assert _ingress(objects, *worker) == _peers([GMP], METRICS_PORT)
        assert _ingress(objects, *pods["atrium-migrate"]) == []
        # Not another Atrium pod, nor a pod of gmp-system without the collectors' label, nor gmp-system's label
        # on a pod of another namespace: the namespace and the pods are one peer (both must hold).
        assert list(scrape["spec"]["ingress"][0]["from"]) == [GMP]


def test_the_pod_monitorings_scrape_ports_the_pods_have_with_the_token_they_check(built):  # noqa: F811
    for group, objects in built.items():
        monitors = [o for o in objects if o["kind"] == "PodMonitoring"]
        assert {m["metadata"]["name"] for m in monitors} == {"atrium-web", "atrium-worker"}
        pods = _pods(objects)
        for monitor in monitors:
            assert _validate(monitor) == "crd" and monitor["metadata"]["namespace"] == NAMESPACE
            selected = [(labels, containers) for labels, containers in pods.values()
                        if _selects(monitor["spec"]["selector"], labels)]
            component = monitor["metadata"]["name"].removeprefix("atrium-")
            assert [labels["app.kubernetes.io/component"] for labels, _ in selected] == [component]
            [(labels, [container])] = selected
            [endpoint] = monitor["spec"]["endpoints"]
            port = next(p for p in container["ports"] if p["name"] == endpoint["port"])
            assert port["containerPort"] == {"web": PORT, "worker": METRICS_PORT}[component]
            assert endpoint["path"] == "/metrics"
            # The token the PodMonitoring sends is the one the pod checks: the same Secret and key.
            token = next(e for e in container["env"] if e["name"] == "ATRIUM_METRICS_TOKEN")
            ref = token["valueFrom"]["secretKeyRef"]
            assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"secret": {
                "name": ref["name"], "key": ref["key"]}}}
            assert ref["name"] == METRICS_SECRET and ref["optional"] is True  # no Secret: no metrics, pods still run
            # Every series says which group's pod it came from.
            assert labels[GROUP_LABEL] == group and monitor["spec"]["targetLabels"]["fromPod"] == [
                {"from": GROUP_LABEL, "to": "deployment_group"}]
        # GKE's collectors may read that Secret, by name, and no other (atrium-secrets holds the database's).
        [role] = [o for o in objects if o["kind"] == "Role"]
        assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [METRICS_SECRET],
                                  "verbs": ["get", "list", "watch"]}]
        [binding] = [o for o in objects if o["kind"] == "RoleBinding"]
        assert binding["roleRef"]["name"] == role["metadata"]["name"] and binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "collector", "namespace": "gmp-system"}]


def test_the_prometheus_example_names_the_real_ports_paths_and_labels(built):  # noqa: F811
    jobs = yaml.safe_load((REPO / "deploy" / "monitoring" / "prometheus-scrape.yaml").read_text())["scrape_configs"]
    pods = _pods(built["default"])
    covered = set()
    for job in jobs:
        assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Bearer"
        assert job["authorization"]["credentials_file"]
        [sd] = job["kubernetes_sd_configs"]
        assert sd == {"role": "pod", "namespaces": {"names": [NAMESPACE]}}
        keep = {r["source_labels"][0]: r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
        meta = "__meta_kubernetes_pod_label_"
        labels = {k.removeprefix(meta).replace("_", "."): v for k, v in keep.items() if k.startswith(meta)}
        assert set(labels) == {"app.kubernetes.io.name", "app.kubernetes.io.component"}  # as Prometheus spells them
        selected = [(pod_labels, containers) for pod_labels, containers in pods.values()
                    if pod_labels.get("app.kubernetes.io/name") == labels["app.kubernetes.io.name"]
                    and pod_labels.get("app.kubernetes.io/component") == labels["app.kubernetes.io.component"]]
        assert len(selected) == 1
        [(_, [container])] = selected
        [port] = [p for p in container["ports"] if p["name"] == keep["__meta_kubernetes_pod_container_port_name"]]
        covered.add((labels["app.kubernetes.io.component"], port["containerPort"]))
        copied = {r["source_labels"][0]: r["target_label"] for r in job["relabel_configs"] if "target_label" in r}
        assert copied[meta + GROUP_LABEL.replace("/", "_")] == "deployment_group"
    assert covered == {("web", PORT), ("worker", METRICS_PORT)}


def _config(tmp_path: Path, monitoring: object) -> Path:
    """A copy of config/ with `monitoring:` set to `monitoring` (... : the key removed)."""
    cfg = tmp_path / "config"
    cfg.mkdir(parents=True)
    for f in (REPO / "config").glob("*.yaml"):
        shutil.copy(f, cfg / f.name)
    data = yaml.safe_load((cfg / "tenants.yaml").read_text())
    data.pop("monitoring", None)
    if monitoring is not ...:
        data["monitoring"] = monitoring
    (cfg / "tenants.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg


def _base(files: dict[str, str], name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(files[f"base/{name}"]) if d]


def test_unset_it_takes_the_gke_defaults_and_off_renders_none_of_it(tmp_path):
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not on PATH (it ships with this kind of machine at /usr/bin/kubectl)"
    committed = render_tree(load_table(REPO / "config"), REPO / "config")["base/monitoring.yaml"]
    for i, unset in enumerate((..., None, {})):
        cfg = _config(tmp_path / str(i), unset)
        assert render_tree(load_table(cfg), cfg)["base/monitoring.yaml"] == committed
    off = render_tree(load_table(cfg := _config(tmp_path / "b", {"scraper": None, "pod_monitoring": False})), cfg)
    assert "base/monitoring.yaml" not in off
    assert "monitoring.yaml" not in _base(off, "kustomization.yaml")[0]["resources"]
    write_tree(off, tmp_path / "deploy")  # and what is left still builds, every object valid
    r = subprocess.run([kubectl, "kustomize", str(tmp_path / "deploy" / "overlays" / "default")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    objects = [d for d in yaml.safe_load_all(r.stdout) if d]
    for obj in objects:
        _validate(obj)
    assert not {"PodMonitoring", "Role", "RoleBinding"} & {o["kind"] for o in objects}
    pods = _pods(objects)
    assert _ingress(objects, *pods["atrium-worker-default"]) == []
    assert _ingress(objects, *pods["atrium-web-default"]) == _peers(LB, PORT)


def test_another_scraper_and_an_otlp_collector_open_to_those_pods_only(tmp_path):
    prometheus = {"namespace": "monitoring", "pod_labels": {"app.kubernetes.io/name": "prometheus"}}
    collector = {"namespace": "observability", "pod_labels": {"app": "otel-collector"}, "port": 4318}
    cfg = _config(tmp_path, {"scraper": prometheus, "pod_monitoring": False, "otlp_collector": collector})
    docs = _base(render_tree(load_table(cfg), cfg), "monitoring.yaml")
    assert [d["metadata"]["name"] for d in docs] == ["atrium-metrics-scrape", "atrium-otlp-egress"]
    for d in docs:
        _validate(d)
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    assert docs[0]["spec"]["ingress"][0]["from"] == [peer]
    egress = docs[1]["spec"]
    assert egress["policyTypes"] == ["Egress"] and egress["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "atrium"}}
    assert egress["egress"] == [{"to": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "observability"}}, "podSelector": {"matchLabels": {"app": "otel-collector"}}}],
        "ports": [{"protocol": "TCP", "port": 4318}]}]


@pytest.mark.parametrize(("monitoring", "message"), [
    (False, r"monitoring: expected a mapping .*\(got False\); to open nothing set `scraper: null`"),
    ({"scrapper": None}, r"monitoring: unknown key `scrapper`: did you mean `scraper`"),
    ({"scraper": {"namespace": "GMP_System"}}, r"monitoring: scraper\.namespace: .*'GMP_System' is not a Kubernetes "
                                               r"namespace name"),
    ({"scraper": {"namespace": "gmp-system", "pod_labels": {"app": 1}}}, r"monitoring: scraper\.pod_labels\.app"),
    ({"scraper": {"namespace": "gmp-system", "pod_labels": {"bad key!": "x"}}},
     r"monitoring: scraper\.pod_labels: .*'bad key!' is not a Kubernetes label key"),
    ({"otlp_collector": {"namespace": "obs", "port": 0}}, r"monitoring: otlp_collector\.port"),
    ({"pod_monitoring": "maybe"}, r"monitoring: pod_monitoring"),
])
def test_a_wrong_monitoring_section_is_an_error_naming_the_key(tmp_path, monitoring, message):
    cfg = _config(tmp_path, monitoring)
    with pytest.raises(ConfigError, match=message):
        TenantRegistry.load(cfg / "tenants.yaml")

"""deploy/monitoring (the Grafana dashboard and the Prometheus alert rules) names only metrics the app exports: a
renamed metric fails here, not silently on an operator's empty panel or an alert that never fires."""

from __future__ import annotations

import json
import re

import yaml

from backend.governance.metrics import EXPORTED, PrometheusMetrics
from tests.conftest import REPO

MONITORING = REPO / "deploy" / "monitoring"
# A metric name in a PromQL expression: ours (atrium_), and the process collector's own.
_NAME = re.compile(r"\b((?:atrium|process|python)_[a-z0-9_]+)\b")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "info": ("_info",)}


def exported_series() -> set[str]:
    """Every series name the app's registry can emit (labelled families included before any sample exists)."""
    metrics = PrometheusMetrics()
    names = set()
    for family in metrics.registry.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
        names |= {s.name for s in family.samples}
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), str)]
    return exprs


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def test_the_registry_exports_what_the_contract_lists():
    series = exported_series()
    for name in EXPORTED:
        assert name in series or name + "_bucket" in series, name
    assert "process_cpu_seconds_total" in series and "process_resident_memory_bytes" in series


def test_the_dashboard_names_only_exported_metrics():
    series, exprs = exported_series(), dashboard_expressions()
    used = {n for e in exprs for n in _NAME.findall(e)}
    assert used and used <= series, sorted(used - series)
    # every family of the contract is on the dashboard somewhere
    assert {n for n in EXPORTED if not any(u == n or u.startswith(n.removesuffix("_total")) for u in used)} == set()


def test_the_alert_rules_name_only_exported_metrics_and_cover_the_issues_cases():
    series, alerts = exported_series(), alert_expressions()
    used = {n for e in alerts.values() for n in _NAME.findall(e)}
    assert used and used <= series, sorted(used - series)
    wanted = {"AtriumBudgetAt80Percent": "atrium_quota_used_ratio", "AtriumDenialSpike": "atrium_access_denials_total",
              "AtriumIngestionBacklogOld": "atrium_ingestion_oldest_job_age_seconds",
              "AtriumHighErrorRate": "atrium_http_requests_total",
              "AtriumModelFallbackRate": "atrium_model_fallbacks_total"}
    for alert, metric in wanted.items():
        assert metric in alerts[alert], alert
    assert "0.8" in alerts["AtriumBudgetAt80Percent"] and 'limit="monthly_budget_usd"' in alerts[
        "AtriumBudgetAt80Percent"]

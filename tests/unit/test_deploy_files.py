"""Prometheus and Grafana files name only metrics that modelserve exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from modelserve.observability import metrics
from modelserve.settings import DriftSettings, ServerSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "modelserve-dashboard.json"
METRIC_NAME = re.compile(r"\bmodelserve_[a-z0-9_]+")


def _exported_samples() -> set[str]:
    """Every sample name modelserve can expose, from the metric definitions."""
    names: set[str] = set()
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        (family,) = metric.describe()
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + "_bucket", family.name + "_count"}
            # prometheus-client leaves out _sum when a bucket bound is negative.
            if min(metric._upper_bounds) >= 0:  # type: ignore[attr-defined]
                names.add(family.name + "_sum")
        else:
            names.add(family.name)
    return names


def _alert_rules() -> list[dict[str, Any]]:
    spec = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in spec["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def test_exported_samples_include_the_names_the_code_uses() -> None:
    """Sanity check of the helper: counters end in _total, histograms have buckets."""
    exported = _exported_samples()

    assert "modelserve_http_requests_total" in exported
    assert "modelserve_prediction_duration_seconds_bucket" in exported
    assert "modelserve_regression_output_sum" not in exported


def test_alert_rules_name_only_exported_metrics() -> None:
    """Every modelserve_* name in an alert expression is exported."""
    unknown = {
        name
        for rule in _alert_rules()
        for name in METRIC_NAME.findall(rule["expr"])
        if name not in _exported_samples()
    }

    assert unknown == set()


def test_alert_rules_cover_the_required_signals() -> None:
    """Error rate, p99 over SLO, PSI over threshold and not-ready alerts exist."""
    by_name = {rule["alert"]: rule for rule in _alert_rules()}

    for alert, needle in [
        ("ModelserveHighErrorRate", 'status=~"5.."'),
        ("ModelserveP99OverSLO", "histogram_quantile(0.99"),
        ("ModelserveFeatureDrift", "modelserve_drift_feature_psi"),
        ("ModelserveModelNotReady", "modelserve_model_ready"),
    ]:
        assert needle in by_name[alert]["expr"], alert


def test_drift_alert_uses_the_default_psi_threshold() -> None:
    """The drift alert fires at the same PSI as the server's default warning."""
    (rule,) = [r for r in _alert_rules() if r["alert"] == "ModelserveFeatureDrift"]

    assert rule["expr"].rstrip().endswith(f"> {DriftSettings().psi_threshold}")


@pytest.mark.parametrize("field", ["expr", "for", "labels", "annotations"])
def test_alert_rules_are_complete(field: str) -> None:
    """Each rule has an expression, a duration, a severity and a summary."""
    for rule in _alert_rules():
        assert rule.get(field), f"{rule['alert']} lacks {field}"


def test_alert_rules_have_a_known_severity() -> None:
    """Severity is page or warning, so routing in Alertmanager can rely on it."""
    assert {rule["labels"]["severity"] for rule in _alert_rules()} <= {"page", "warning"}


def test_alert_expressions_parse_as_promql() -> None:
    """Every alert expression is valid PromQL (checked by a PromQL parser)."""
    for rule in _alert_rules():
        promql_parser.parse(rule["expr"])


def test_scrape_config_matches_the_server() -> None:
    """The scrape config loads the rules file and scrapes /metrics on the default port."""
    spec = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = [j for j in spec["scrape_configs"] if j["job_name"] == "modelserve"]

    assert spec["rule_files"] == ["alerts.yml"]
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"][0]["port"] == ServerSettings().port


def test_grafana_dashboard_names_only_exported_metrics() -> None:
    """Every modelserve_* name in a panel query or variable is exported."""
    names = {name for expr in _dashboard_exprs() for name in METRIC_NAME.findall(expr)}

    assert names - _exported_samples() == set()
    assert len(names) > 25  # the dashboard covers the metrics, not a handful


def test_grafana_queries_parse_as_promql() -> None:
    """Every panel query is valid PromQL once Grafana's variables are filled in."""
    for expr in _dashboard_exprs():
        if expr.startswith("label_values("):
            continue  # a Grafana variable query, not PromQL
        promql_parser.parse(expr.replace("$__rate_interval", "1m").replace("$model", ".*"))


def test_grafana_dashboard_panels_are_well_formed() -> None:
    """Panels have unique ids, fit the 24-column grid and query through the data source variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]

    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_scrape_configs_send_a_key() -> None:
    """Both scrape jobs send an API key: with auth on, /metrics needs one by default."""
    spec = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    for job in spec["scrape_configs"]:
        assert job["authorization"]["credentials_file"], job["job_name"]

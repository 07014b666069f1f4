"""The Prometheus and Grafana files shipped in ops/: checked by the real promtool and against the metrics IMP exports.

promtool comes with Debian's ``prometheus`` package (``make test-deps``; CI installs it). Without it
these tests fail, so a missing tool never passes for a checked rule file; set
IMP_TEST_ALLOW_MISSING_TOOLS=1 to skip them instead on a machine that cannot install it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bot.metrics import Metrics
from core.config import MonitorSettings
from ops.monitor.drift import SIGNALS

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "ops" / "prometheus"
RULES, RULES_TEST, CONFIG = PROMETHEUS / "rules.yml", PROMETHEUS / "rules_test.yml", PROMETHEUS / "prometheus.yml"
GRAFANA = ROOT / "ops" / "grafana"
DASHBOARD = GRAFANA / "imp.json"

# Read at import: the suite's autouse fixture clears IMP_* variables before each test runs.
ALLOW_MISSING_TOOLS = os.environ.get("IMP_TEST_ALLOW_MISSING_TOOLS") == "1"

# The metrics of issue 14 (bot/metrics.py), as PromQL names them (histograms by their family name).
KNOWN_METRICS = {
    "imp_answers_total", "imp_feedback_total", "imp_request_duration_seconds", "imp_stage_duration_seconds",
    "imp_ingest_documents_total", "imp_drift_score", "imp_drift_alerts_total", "imp_model_info",
    "imp_gate_running", "imp_gate_waiting", "imp_jobs_pending", "imp_requests_shed_total",
    "imp_slack_waiting",
}
_METRIC = re.compile(r"\bimp_[a-z_]+")
_HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")
# Grafana's variables, replaced by values of their kind so the queries parse as plain PromQL.
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$model": ".*", "$route": ".*"}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if ALLOW_MISSING_TOOLS:
        pytest.skip("promtool is not installed (IMP_TEST_ALLOW_MISSING_TOOLS=1)")
    pytest.fail("promtool is not installed: install Debian's `prometheus` package "
                "(`sudo apt-get install prometheus`, or `make test-deps`); CI installs it. "
                "Set IMP_TEST_ALLOW_MISSING_TOOLS=1 to skip these tests instead.")


def _run_promtool(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([_promtool(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def _alerts() -> dict[str, dict]:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


def _panels() -> list[dict]:
    """Every panel, rows' nested panels included."""
    found = []
    for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [(f"panel {p['id']} {t['refId']}", t["expr"]) for p in _panels() for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            queries.append((f"variable {var['name']}", query))
    return queries


def _metric_names(text: str) -> set[str]:
    names = set()
    for name in _METRIC.findall(text):
        for part in _HISTOGRAM_PARTS:
            if name.endswith(part) and name[: -len(part)] in KNOWN_METRICS:
                name = name[: -len(part)]
        names.add(name)
    return names


# -- promtool --------------------------------------------------------------------------------


def test_promtool_accepts_the_alerting_rules():
    done = _run_promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in done.stdout


def test_the_alerting_rules_pass_their_unit_tests():
    done = _run_promtool("test", "rules", RULES_TEST)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_accepts_the_scrape_config_from_any_working_directory(tmp_path):
    done = _run_promtool("check", "config", CONFIG, cwd=tmp_path)  # rule_files resolve next to the config
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    [job] = config["scrape_configs"]
    assert (job["job_name"], job["metrics_path"]) == ("imp-api", "/metrics")
    assert job["static_configs"] == [{"targets": ["imp-api:8000"]}]
    assert config["rule_files"] == ["rules.yml"]


def test_every_dashboard_query_is_valid_promql(tmp_path):
    """promtool parses each query as a recording rule, Grafana's variables replaced by values of their kind."""
    rules = []
    for i, (where, expr) in enumerate(_dashboard_queries()):
        if expr.startswith("label_values("):  # Grafana's variable function: its first argument is the PromQL
            expr = expr.removeprefix("label_values(").rsplit(",", 1)[0]
        for variable, value in _GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: a Grafana variable this test does not know: {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    done = _run_promtool("check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(rules) > 30


# -- what the rules say ------------------------------------------------------------------------


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not():
    tests = yaml.safe_load(RULES_TEST.read_text(encoding="utf-8"))
    assert tests["rule_files"] == ["rules.yml"]
    cases = [c for t in tests["tests"] for c in t.get("alert_rule_test", [])]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    alerts = set(_alerts())
    assert len(alerts) >= 8
    assert alerts - fires == set(), "alerts without a firing test case"
    assert alerts - quiet == set(), "alerts without a case where they must stay quiet"
    assert (fires | quiet) - alerts == set(), "test cases of alerts that do not exist"


def test_every_alert_has_a_severity_and_a_readable_summary():
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    assert _alerts()["ImpTargetDown"]["labels"]["severity"] == "critical"
    assert _alerts()["ImpTargetDown"]["expr"].strip() == 'up{job="imp-api"} == 0'


def test_the_alert_thresholds_are_the_plans_and_the_monitor_settings_defaults():
    """The numbers in rules.yml match MonitorSettings' defaults (Prometheus cannot read IMP's settings)."""
    defaults = MonitorSettings()
    alerts = _alerts()

    def thresholds(name: str) -> set[float]:
        return {float(x) for x in re.findall(r"[>]=?\s*([0-9.]+)", alerts[name]["expr"])}

    assert defaults.latency_p95_ms / 1000 in thresholds("ImpAnswerLatencyHigh")
    assert defaults.ingest_failure_rate in thresholds("ImpIngestFailures")
    assert defaults.down_rate_rise in thresholds("ImpDownVoteShareRising")
    assert defaults.abstain_rate_rise in thresholds("ImpAbstentionShareRising")
    assert "histogram_quantile(0.95" in alerts["ImpAnswerLatencyHigh"]["expr"]
    assert alerts["ImpAnswerLatencyHigh"]["for"] == "5m"


# -- metric names --------------------------------------------------------------------------------


def test_the_known_metrics_are_what_the_api_exports():
    body, _ = Metrics().render()
    exported = set(re.findall(r"^# TYPE (\S+) ", body.decode(), re.MULTILINE))
    assert KNOWN_METRICS <= exported, KNOWN_METRICS - exported


def test_the_rules_reference_only_metrics_imp_exports():
    used = _metric_names(RULES.read_text(encoding="utf-8"))
    assert used - KNOWN_METRICS == set()
    assert {"imp_request_duration_seconds", "imp_feedback_total", "imp_answers_total",
            "imp_ingest_documents_total", "imp_drift_alerts_total", "imp_requests_shed_total"} <= used


def test_the_dashboard_references_only_metrics_imp_exports_and_shows_them_all():
    used = set()
    for where, expr in _dashboard_queries():
        names = _metric_names(expr)
        assert names - KNOWN_METRICS == set(), f"{where}: {expr}"
        used |= names
    assert used == KNOWN_METRICS


# -- the Grafana dashboard -------------------------------------------------------------------------


def test_the_dashboard_is_grafana_json_with_unique_ids_and_a_clean_grid():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]
    panels = _panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: dict[tuple[int, int], int] = {}
    for p in panels:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in "hwxy") and g["h"] > 0 and g["w"] > 0, p["title"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panels {cells.get((x, y))} and {p['id']} overlap"
                cells[(x, y)] = p["id"]
        refs = [t["refId"] for t in p.get("targets", [])]
        assert len(refs) == len(set(refs)), p["title"]
        assert p["type"] == "row" or refs, f"panel {p['title']} has no query"


def test_the_dashboard_reads_prometheus_through_its_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    [ds] = [v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    for p in _panels():
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in p["targets"]), p["title"]


def test_the_dashboard_shows_every_drift_signal_with_the_default_thresholds():
    defaults = MonitorSettings()
    panels = {}
    for p in _panels():
        for t in p.get("targets", []):
            signal = re.search(r'imp_drift_score\{signal="([a-z_0-9]+)"\}', t["expr"])
            if signal:
                panels[signal.group(1)] = p
    assert set(panels) == set(SIGNALS)

    def red_line(signal: str) -> float:
        [step] = [s for s in panels[signal]["fieldConfig"]["defaults"]["thresholds"]["steps"] if s["color"] == "red"]
        return step["value"]

    assert red_line("latency_p95") == defaults.latency_p95_ms
    assert red_line("ingest_failure_rate") == defaults.ingest_failure_rate
    assert red_line("down_rate") == defaults.down_rate_rise
    assert red_line("abstain_rate") == defaults.abstain_rate_rise
    assert red_line("best_similarity") == defaults.best_similarity_drop


def test_the_grafana_provisioning_files_load_prometheus_and_the_dashboard_folder():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "imp-prometheus.yml").read_text())
    [ds] = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["url"].startswith("http")
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "imp.yml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]

"""The monitoring files in ``deploy/`` agree with what ``/metrics`` serves, and promtool accepts them.

A rule or panel that names a metric the bridge does not expose never fires and never draws: it
fails silently in production, so every metric and label they use is checked against the metrics
the code registers. promtool checks the rules' syntax and runs their unit tests
(``bridge-alerts.test.yml``); the dashboard's queries are checked by promtool too, wrapped as
recording rules. Without promtool those tests are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from bridge.metrics import Metrics
from bridge.model import QueueSummary
from bridge.ops.overview import ChatSyncState, Overview, ReportedUsage, publish_gauges
from bridge.store.status import WorkerInfo

DEPLOY = Path(__file__).parents[1] / "deploy"
RULES = DEPLOY / "prometheus" / "bridge-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "bridge-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "bridge-dashboard.json"

# Series every Prometheus adds or computes; not the bridge's to expose.
PROMETHEUS_OWN = {"up"}
# Suffixes prometheus_client gives each type's samples (the ``le`` label comes with ``_bucket``).
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"), "gauge": ("",)}
METRIC = re.compile(r"\b(bridge_[a-z0-9_]+)\b(?:\{([^}]*)\})?")
LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
# Labels Prometheus attaches when it scrapes, so any rule may use them.
TARGET_LABELS = {"job", "instance"}


def _overview() -> Overview:
    """An overview in which every optional part is present, so that every store gauge is published."""
    worker = WorkerInfo(
        id="w1", host="h", pid=1, started_at=0, beat_at=1, stopped_at=None, pass_ok_at=1, pass_error=None,
        seconds_since_beat=1,
    )  # fmt: skip
    return Overview(
        queue=QueueSummary(by_status={"queued": 1}, oldest_queued_seconds=3.0, writebacks_pending=1),
        workers=[worker],
        api_usage=ReportedUsage(used=1, total=2, as_of=0),
        chat_sync=ChatSyncState(high_water=1.0, polled_at=1.0, lag_seconds=1.0, chats_with_news_pending=0),
    )


def exposed() -> dict[str, frozenset[str]]:
    """Every sample name ``/metrics`` can serve, with the label names it carries."""
    metrics = Metrics()
    publish_gauges(metrics, _overview)
    wrappers = {w._name: w for w in vars(metrics).values() if isinstance(w, MetricWrapperBase)}
    names: dict[str, frozenset[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            names[sample.name] = names.get(sample.name, frozenset()) | frozenset(sample.labels)
        if family.name in wrappers:  # labelled metrics have no samples until a label value is used
            labels = frozenset(wrappers[family.name]._labelnames)
            for suffix in SUFFIXES[family.type]:
                names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def used(text: str) -> Iterator[tuple[str, frozenset[str]]]:
    """Each bridge metric named in ``text``, with the labels its selector matches on."""
    for match in METRIC.finditer(text):
        yield match.group(1), frozenset(LABEL.findall(match.group(2) or ""))


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _queries() -> list[str]:
    return [target["expr"] for panel in _panels() for target in panel["targets"]]


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "needs promtool (Debian: apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"The monitoring files must be checked in CI, and this {message}.")
        pytest.skip(message)
    return found


def test_every_metric_the_alert_rules_use_is_exposed_with_its_labels() -> None:
    catalogue = exposed()
    for path in (RULES, RULE_TESTS):
        text = re.sub(r"(?m)^\s*#.*$", "", path.read_text())  # comments may name a metric family in prose
        for name, labels in used(text):
            assert name in catalogue, f"{name} is not on /metrics"
            unknown = labels - catalogue[name] - TARGET_LABELS
            assert not unknown, f"{name} has no label {sorted(unknown)}"


def test_every_metric_the_dashboard_draws_is_exposed_with_its_labels() -> None:
    catalogue = exposed()
    queries = _queries()
    assert len(queries) >= 15
    for query in queries:
        found = list(used(query))
        assert found, f"a panel queries no bridge metric: {query}"
        for name, labels in found:
            assert name in catalogue, f"{name} is not on /metrics"
            assert not labels - catalogue[name] - TARGET_LABELS, f"{name}: labels {sorted(labels)}"


def test_the_dashboard_covers_every_metric_the_bridge_exposes() -> None:
    drawn = {name.removesuffix("_bucket") for query in _queries() for name, _ in used(query)}
    families = {re.sub(r"_(total|created|bucket|count|sum)$", "", name) for name in exposed()}
    assert families - {name.removesuffix("_total") for name in drawn} == set()


def test_the_dashboard_is_importable_grafana_json() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"]
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    occupied: dict[tuple[int, int], int] = {}
    for panel in dashboard["panels"]:
        place = panel["gridPos"]
        assert place["x"] >= 0, panel["id"]
        assert place["x"] + place["w"] <= 24, f"panel {panel['id']} is wider than the grid"
        for x in range(place["x"], place["x"] + place["w"]):
            for y in range(place["y"], place["y"] + place["h"]):
                assert (x, y) not in occupied, f"panels {occupied[(x, y)]} and {panel['id']} overlap"
                occupied[(x, y)] = panel["id"]
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
        assert [t["refId"] for t in panel["targets"]] == [chr(65 + i) for i in range(len(panel["targets"]))]


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = _promtool()
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=RULES.parent, capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    promtool = _promtool()
    # Grafana fills $job in before querying; a recording rule per query lets promtool parse each one.
    substitutions: Mapping[str, str] = {"$job": ".*"}
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for index, query in enumerate(_queries()):
        for variable, value in substitutions.items():
            query = query.replace(variable, value)
        lines += [f"      - record: dashboard:query_{index}", f"        expr: {json.dumps(query)}"]
    wrapped = tmp_path / "dashboard-queries.yml"
    wrapped.write_text("\n".join(lines) + "\n")
    checked = subprocess.run([promtool, "check", "rules", str(wrapped)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

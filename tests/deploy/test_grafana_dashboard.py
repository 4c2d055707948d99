"""The checked-in Grafana dashboard (deploy/grafana/nbo-dashboard.json) queries only what a
real server exports: every metric a query names is in a live server's /metrics, and every
label a query groups by is one of that metric's labels."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from tests.engine.serving.support import admin_client, customer, running_server

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "nbo-dashboard.json"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def _queries(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"])
    return exprs


def _exported(tmp_path: Path) -> dict[str, set[str]]:
    """Sample names a live server exports after some traffic, with their label names."""
    with running_server(tmp_path / "data") as srv, admin_client(srv) as client:
        decided = [client.decide(f"g{i}", customer(i)) for i in range(30)]
        client.reward_batch([d.decision_id for d in decided], [10.0] * 30)
        client.reward(decided[0].decision_id, 10.0)  # a duplicate
        client.model_info()
        url = f"http://127.0.0.1:{srv.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    names: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            names.setdefault(m.group(1), set()).update(_LABEL.findall(m.group(2) or ""))
    return names


def test_every_query_names_a_metric_the_server_exports(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = _exported(tmp_path)
    queries = _queries(dashboard)
    assert len(queries) >= 15
    named = set()
    for expr in queries:
        metrics = set(re.findall(r"\bnbo_[a-z_]+\b", expr))
        assert metrics, expr
        named |= metrics
        missing = metrics - exported.keys()
        assert not missing, (expr, sorted(missing))
        labels = set().union(*(exported[m] for m in metrics)) | {"le"}
        for group in re.findall(r"by \(([^)]*)\)", expr):
            for label in (g.strip() for g in group.split(",")):
                assert label in labels, (expr, label)
    # The panels: lift with its sequence, offer mix, exploration, budgets, pending
    # rewards, model versions and state.
    for needed in (
        "nbo_lift",
        "nbo_lift_lower",
        "nbo_lift_upper",
        "nbo_decisions_total",
        "nbo_exploration_rate",
        "nbo_budget_used",
        "nbo_budget_limit",
        "nbo_pending_decisions",
        "nbo_model_version",
        "nbo_rolled_back",
        "nbo_campaign_mode",
    ):
        assert needed in named, needed


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard["panels"]:
        assert p["datasource"]["uid"] == "${datasource}"
        assert {"x", "y", "w", "h"} <= p["gridPos"].keys() and p["gridPos"]["x"] + p["gridPos"][
            "w"
        ] <= 24
        assert all('campaign="$campaign"' in t["expr"] or "rpc" in t["expr"] for t in p["targets"])

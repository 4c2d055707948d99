"""Off-policy evaluation of a multi-dimensional campaign's logs: candidates choose whole
combinations, or with ``--hold`` only the dimensions the logs do not keep."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.campaign import parse_campaign
from engine.core import Engine
from engine.errors import InvalidInputError
from engine.journal.export import export_parquet
from engine.replay.dimensions import hold_dimensions, logged_dimensions
from engine.replay.readers import read_logs
from tests.engine.replay.cli_runs import evaluate

CAMPAIGN: dict[str, Any] = {
    "campaign": {"name": "multi", "control_offer": "none"},
    "policy": {"name": "random", "seed": 3},
    "features": {"numeric": [{"name": "age", "mean": 40.0, "std": 10.0}]},
    "offers": [{"id": "none"}, {"id": "discount"}],
    "dimensions": [{"name": "channel", "values": ["email", "sms", "call"]}],
    "combinations": {"exclude": ["offer == 'none' and channel != 'email'"]},
}


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """2,000 decisions of a uniform logger over the 4 combinations; only a discount by SMS
    earns (10), so the best whole policy earns 10 and a policy that must keep the logged
    channel earns 10 on the quarter of rows logged by SMS: 2.5."""
    root = tmp_path_factory.mktemp("multi")
    rng = np.random.default_rng(0)
    with Engine(parse_campaign(CAMPAIGN), root, clock=lambda: 1.7e9) as eng:
        ids = [f"c{i}" for i in range(2000)]
        batch = eng.decide_batch(ids, [{"age": float(a)} for a in rng.normal(40, 10, 2000)])
        for d in batch:
            eng.reward(d.decision_id, 10.0 if d.offer_id == "discount+sms" else 0.0)
    return export_parquet(root / "multi.journal.sqlite", root / "logs.parquet")["path"]


def test_the_export_names_its_dimensions_and_holding_one_narrows_eligibility(logs):
    names = logged_dimensions(logs)
    assert names == ("offer", "channel")
    data = read_logs(logs)
    held = hold_dimensions(data, names, ["channel"])
    assert held.eligible is not None
    rows = np.arange(data.n_rounds)
    assert held.eligible[rows, data.action].all()  # the logged combination stays
    channel = [a.split("+")[1] for a in data.actions]
    for i in range(20):
        allowed = {channel[a] for a in np.flatnonzero(held.eligible[i])}
        assert allowed == {channel[data.action[i]]}
    with pytest.raises(InvalidInputError, match=r"^--hold: expected dimensions among offer, ch"):
        hold_dimensions(data, names, ["timing"])
    with pytest.raises(InvalidInputError, match=r"^--hold: expected some dimension left"):
        hold_dimensions(data, names, ["offer", "channel"])


def test_a_candidate_holding_the_channel_is_worth_what_the_logged_channel_allows(tmp_path, logs):
    static = ("--policy", "linucb", "--mode", "static", "--estimators", "ips,dr", "--workers", "0")
    free = evaluate(logs, tmp_path / "free", *static)
    held = evaluate(logs, tmp_path / "held", *static, "--hold", "channel")

    def value(report: dict[str, Any]) -> dict[str, Any]:
        (cand,) = [c for c in report["candidates"] if c["label"].startswith("linucb")]
        return cand["estimates"]["dr"]

    whole, kept = value(free), value(held)
    # rewards are deterministic here, so the doubly robust value of the whole policy is exact
    assert whole["value"] == pytest.approx(10.0)
    assert kept["normal"][0] <= 2.5 <= kept["normal"][1] and kept["value"] < 4.0


def test_a_shared_candidate_learns_from_the_combinations_values(tmp_path, logs):
    """The shared policy gets each combination's per-dimension one-hots from the logs, reading
    the fragments in tasks or the rows in memory alike; nbo train makes one too."""
    options = ("--policy", "shared", "--mode", "static", "--estimators", "ips,dr")
    tasks = evaluate(logs, tmp_path / "tasks", *options, "--workers", "0")
    memory = evaluate(logs, tmp_path / "memory", *options, "--workers", "0", "--read", "memory")
    for report in (tasks, memory):
        (cand,) = [c for c in report["candidates"] if c["label"].startswith("shared")]
        assert cand["estimates"]["dr"]["value"] == pytest.approx(10.0)
    assert tasks["sharded"] and not memory["sharded"]
    from engine.cli import main

    snapshot = tmp_path / "shared.snap"
    assert main(["train", "--logs", str(logs), "--policy", "shared", "--out", str(snapshot)]) == 0
    assert snapshot.stat().st_size > 0

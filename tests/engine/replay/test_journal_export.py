"""`nbo evaluate` and `nbo train` on a real journal export (Engine -> SQLite journal -> Parquet)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.cli import main
from engine.core import Engine
from engine.journal.export import export_parquet
from engine.journal.snapshot import read_snapshot
from engine.replay import read_logs
from tests.engine.replay.cli_runs import evaluate


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("journal")
    engine = Engine.from_config("examples/renewal.toml", data_dir=root, clock=lambda: 1.7e9)
    rng = np.random.default_rng(0)
    n = 600
    contexts = [
        {
            "tenure_months": float(rng.integers(1, 80)),
            "monthly_price": float(rng.uniform(10, 90)),
            "plan": str(rng.choice(["basic", "standard", "premium"])),
        }
        for _ in range(n)
    ]
    decisions = engine.decide_batch([f"c{i}" for i in range(n)], contexts)
    # Outcomes: renewal revenue that depends on the offer; the last 40 stay pending.
    values = [
        float(max(0.0, rng.normal(300 if d.offer_id != "none" else 250, 80)))
        for d in decisions[:-40]
    ]
    engine.reward_batch([d.decision_id for d in decisions[:-40]], values)
    engine.close()
    path = root / "export.parquet"
    export_parquet(root / "renewal.journal.sqlite", path)
    return path


def test_reader_understands_the_journal_export(export):
    data = read_logs(export)
    assert data.n_rounds == 560 and data.n_pending == 40
    assert data.actions[0] == "none" and data.n_features == len(data.feature_names) > 10
    assert data.eligible is not None and data.control is not None and data.control.any()


def test_evaluate_and_train_on_the_journal_export(export, tmp_path, capsys):
    out = tmp_path / "report"
    report = evaluate(export, out, "--policy", "linucb:alpha=0.5", "--bootstrap", "50")
    labels = {c["label"] for c in report["candidates"]}
    assert {"logging policy", "uniform random", "control (none)"} <= labels
    assert report["n_pending"] == 40 and report["complete"]
    candidates_table = (out / "report.html").read_text().split("<h2>Candidates</h2>")[1]
    candidates_table = candidates_table.split("</table>")[0]
    assert candidates_table.count("<tr>") == len(labels) + 1  # the header and a row each

    snap = tmp_path / "v2.snap"
    assert main(["train", "--logs", str(export), "--policy", "linucb", "--out", str(snap)]) == 0
    header, policy = read_snapshot(snap)
    assert header["offer_ids"] == list(read_logs(export).actions)
    assert policy.n_actions == len(header["offer_ids"])
    # the service promotes it
    service = Engine.from_config("examples/renewal.toml", data_dir=tmp_path / "svc")
    try:
        version = service.load_snapshot(snap)
        assert version and service.policy.n_actions == len(service.offer_ids)
        decision = service.decide(
            "c-new", {"tenure_months": 5, "monthly_price": 40.0, "plan": "basic"}
        )
        assert decision.offer_id in service.offer_ids
    finally:
        service.close()


def test_the_export_carries_running_statistics_into_nbo_train(tmp_path):
    """A campaign that learns its standardization: the frozen statistics travel from the journal
    through the export into the trained snapshot, so the snapshot encodes like the service."""
    import json
    import tomllib

    import pyarrow.parquet as pq

    from engine.campaign import parse_campaign

    table = tomllib.loads(open("examples/renewal.toml", encoding="utf-8").read())
    table["features"]["numeric"] = [
        {"name": "tenure_months", "freeze_after": 50, "missing": "zero"}
    ]
    table["features"]["categorical"] = []
    for offer in table["offers"]:
        offer["cost"] = 10.0
        offer["eligible"] = [r for r in offer.get("eligible", []) if "tenure" in r]
    engine = Engine(parse_campaign(table), data_dir=tmp_path, clock=lambda: 1.7e9)
    decisions = engine.decide_batch(
        [f"c{i}" for i in range(80)], [{"tenure_months": float(i % 60)} for i in range(80)]
    )
    engine.reward_batch([d.decision_id for d in decisions], [100.0] * 80)
    frozen = json.loads(engine.journal.get_meta("encoder") or "null")
    engine.close()
    assert frozen is not None  # the statistics froze after 50 contexts
    path = tmp_path / "export.parquet"
    export_parquet(tmp_path / "renewal.journal.sqlite", path)
    assert json.loads(pq.read_schema(path).metadata[b"nbo.encoder"]) == frozen
    snap = tmp_path / "trained.snap"
    assert main(["train", "--logs", str(path), "--policy", "linucb", "--out", str(snap)]) == 0
    header, _ = read_snapshot(snap)
    assert header["encoder"] == frozen

"""``nbo evaluate --save-best``, ``--encoder-from`` and ``nbo train``'s encoder state."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.cli import main
from engine.journal.snapshot import read_snapshot, write_snapshot
from engine.policies import LinUCB
from tests.engine.replay.cli_runs import evaluate
from tests.engine.replay.synthetic import LinearEnv, make_logs, to_table

ENCODER = {"schema": {"bias": True, "numeric": [], "categorical": []}, "running": {}}


@pytest.fixture(scope="module")
def logs():
    return make_logs(LinearEnv.make(3, 3, seed=8), 4000, seed=9, kind="softmax")


def _server_snapshot(path, names=("x0", "x1", "x2")):
    header = {"version": "v3", "offer_ids": ["offer0", "offer1", "offer2"]}
    write_snapshot(path, {**header, "feature_names": list(names), "encoder": ENCODER}, LinUCB(3, 3))


def test_save_best_writes_the_go_candidate_with_its_evidence(tmp_path, logs, capsys):
    path = tmp_path / "logs.parquet"
    pq.write_table(to_table(logs), path)
    server = tmp_path / "server.snap"
    _server_snapshot(server)
    best = tmp_path / "best.snap"
    options = ("--policy", "linucb:alpha=0.5", "--mode", "static", "--bootstrap", "50")
    report = evaluate(
        path, tmp_path / "r", *options, "--save-best", str(best), "--encoder-from", str(server)
    )
    assert report["decision"]["promote"], report["decision"]
    assert (
        f"saved linucb(alpha=0.5) static to {best} (with encoder state" in capsys.readouterr().out
    )
    header, policy = read_snapshot(best)
    ev = header["evaluation"]
    assert header["encoder"] == ENCODER and type(policy).__name__ == "LinUCB"
    assert ev["estimator"] == "dr" and ev["rows"] == 2000 and ev["lower_bound"] < ev["estimate"]
    first = report["candidates"][0]["estimates"]["dr"]
    assert ev["estimate"] == pytest.approx(first["value"])
    assert ev["first_timestamp"] < ev["last_timestamp"]
    # a mismatching encoder source names the first different feature
    other = tmp_path / "other.snap"
    _server_snapshot(other, ("x0", "age", "x2"))
    code = main(
        [
            "evaluate",
            "--logs",
            str(path),
            *options,
            "--out",
            str(tmp_path / "r2"),
            "--no-progress",
            "--save-best",
            str(tmp_path / "b2.snap"),
            "--encoder-from",
            str(other),
        ]
    )
    assert code == 2 and "feature 1 to be 'x1'" in capsys.readouterr().err


def test_save_best_refuses_without_a_go(tmp_path, logs, capsys):
    path = tmp_path / "logs.parquet"
    pq.write_table(to_table(logs), path)
    best = tmp_path / "best.snap"
    evaluate(path, tmp_path / "r", "--bootstrap", "20", "--save-best", str(best), exit_code=1)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("not saved")]
    assert len(lines) == 1 and "no GO candidate" in lines[0] and not best.exists()


def test_train_copies_the_encoder_state(tmp_path, logs, capsys):
    path = tmp_path / "logs.parquet"
    table = to_table(logs)
    pq.write_table(table, path)
    server = tmp_path / "snaps"
    server.mkdir()
    _server_snapshot(server / "v3.snap")
    out = tmp_path / "t.snap"
    argv = ["train", "--logs", str(path), "--policy", "linucb", "--target", "dr", "--folds", "3"]
    assert main([*argv, "--out", str(out), "--encoder-from", str(server)]) == 0
    assert read_snapshot(out)[0]["encoder"] == ENCODER
    assert json.loads((tmp_path / "t.snap.json").read_text())["encoder_state"] is True
    # the nbo.encoder schema metadata, when an export writes it
    meta = dict(table.schema.metadata or {}) | {b"nbo.encoder": json.dumps(ENCODER).encode()}
    pq.write_table(table.replace_schema_metadata(meta), path)
    assert main([*argv, "--out", str(out)]) == 0
    assert read_snapshot(out)[0]["encoder"] == ENCODER
    assert np.isfinite(read_snapshot(out)[1].choose(logs.context[:3]).scores).all()

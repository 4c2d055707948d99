"""`nbo evaluate` and `nbo train` end to end through engine.cli.main."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.cli import main
from engine.journal.snapshot import read_snapshot
from tests.engine.replay.cli_runs import evaluate
from tests.engine.replay.synthetic import LinearEnv, make_logs, to_table, write_foreign_csv


@pytest.fixture(scope="module")
def logs():
    return make_logs(LinearEnv.make(3, 3, seed=8), 4000, seed=9, kind="softmax")


def test_evaluate_on_an_nbo_parquet_export(tmp_path, logs, capsys):
    path = tmp_path / "export.parquet"
    pq.write_table(to_table(logs), path)
    out = tmp_path / "report"
    report = evaluate(
        path,
        out,
        *("--policy", "linucb:alpha=0.1,1.0", "--mode", "static", "--bootstrap", "50"),
        *("--control-offer", "offer0", "--workers", "0"),
    )
    printed = capsys.readouterr().out
    assert f"wrote {out / 'evaluation.json'}" in printed and "report.html" in printed
    labels = [c["label"] for c in report["candidates"]]
    assert set(labels) == {
        "logging policy",
        "uniform random",
        "control (offer0)",
        "linucb(alpha=0.1) static",
        "linucb(alpha=1.0) static",
    }
    assert report["complete"] and report["mode"] == "in-process"
    assert printed.splitlines()[0] == report["decision"]["reason"]
    assert (out / "ranking.png").exists() and (out / "estimators.png").exists()


def test_evaluate_on_external_csv_with_mapped_columns(tmp_path, logs, capsys):
    path = tmp_path / "external.csv"
    write_foreign_csv(logs, path, ("f_a", "f_b", "f_c"))
    out = tmp_path / "csv-report"
    report = evaluate(
        path,
        out,
        *("--column", "action=offer", "--column", "propensity=p"),
        *("--column", "reward=-cost", "--column", "context=f_*"),
        *("--policy", "egreedy", "--interval", "normal", "--estimators", "ips,snips,dr"),
    )
    assert report["n_features"] == 3 and report["actions"] == ["o0", "o1", "o2"]
    assert set(report["candidates"][0]["estimates"]) == {"ips", "snips", "dr", "slope"}


def test_bad_logs_exit_2_with_one_line(tmp_path, logs, capsys):
    table = to_table(logs)
    propensity = logs.propensity.copy()
    propensity[7] = 0.0
    table = table.set_column(
        table.schema.get_field_index("propensity"), "propensity", pa.array(propensity)
    )
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    code = main(["evaluate", "--logs", str(path), "--policy", "linucb", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == (
        "nbo evaluate: error: column 'propensity', row 7 (decision_id 'd7'): "
        "expected a probability in (0, 1], got 0.0"
    )
    assert main(["evaluate", "--logs", str(tmp_path / "missing.parquet"), "--policy", "x"]) == 2
    capsys.readouterr()
    # a file that is not what --format (here: auto, by its name) reads: one line, no traceback
    for name, text in (("a.toml", "[campaign]\n"), ("b.parquet", "not parquet")):
        (tmp_path / name).write_text(text)
        args = ["evaluate", "--logs", str(tmp_path / name), "--policy", "linucb"]
        assert main([*args, "--format", "parquet", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == (
            "nbo evaluate: error: --logs: expected a readable parquet file or directory (or pass "
            f"--format), got {tmp_path / name}: not a Parquet file (no Parquet footer)"
        )


def test_train_writes_a_snapshot_the_service_can_load(tmp_path, logs, capsys):
    path = tmp_path / "logs.parquet"
    pq.write_table(to_table(logs), path)
    snap = tmp_path / "snaps" / "v7.snap"
    code = main(
        [
            "train",
            "--logs",
            str(path),
            "--policy",
            "linucb:alpha=0.5",
            "--target",
            "dr",
            "--out",
            str(snap),
            "--campaign",
            "renewal",
            "--version",
            "v7",
        ]
    )
    assert code == 0
    header, policy = read_snapshot(snap)
    assert header["version"] == "v7" and header["campaign"] == "renewal"
    assert header["offer_ids"] == ["offer0", "offer1", "offer2"]
    assert header["feature_names"] == ["x0", "x1", "x2"]
    assert type(policy).__name__ == "LinUCB" and policy.alpha == 0.5
    summary = json.loads((tmp_path / "snaps" / "v7.snap.json").read_text())
    assert summary["n_rows"] == 4000 and summary["target"] == "dr"
    assert np.isfinite(policy.choose(logs.context[:5]).scores).all()
    assert (
        main(["train", "--logs", str(path), "--policy", "linucb:alpha=1,2", "--out", str(snap)])
        == 2
    )


def test_evaluate_on_dsjson_logs(tmp_path, capsys):
    rng = np.random.default_rng(3)
    lines = []
    for i in range(400):
        x = float(rng.normal())
        chosen = int(rng.integers(0, 2))
        cost = -float((chosen == 1) * (1.0 + x) + rng.normal(scale=0.1))
        event = {
            "_label_cost": cost,
            "_label_probability": 0.5,
            "_label_Action": chosen + 1,
            "_labelIndex": chosen,
            "EventId": f"e{i}",
            "Timestamp": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z",
            "a": [chosen + 1, 2 - chosen],
            "c": {"shared": {"x": x}, "_multi": [{"id": "none"}, {"id": "upgrade"}]},
            "p": [0.5, 0.5],
        }
        lines.append(json.dumps(event))
    path = tmp_path / "ds.json"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "ds-report"
    report = evaluate(
        path,
        out,
        *("--policy", "linucb", "--mode", "static", "--dsjson-features", "8"),
        *("--control-offer", "none"),
    )
    assert report["actions"] == ["none", "upgrade"] and report["n_features"] == 8
    assert report["uniform_logging"] is True


def test_incomplete_evaluation_exits_1(tmp_path, logs, capsys):
    path = tmp_path / "logs.parquet"
    pq.write_table(to_table(logs), path)  # rewards outside [0, 1]: BetaTS cannot train
    out = tmp_path / "partial"
    options = ("--policy", "betats", "--mode", "static", "--workers", "0")
    report = evaluate(path, out, *options, exit_code=1)
    captured = capsys.readouterr()
    assert captured.out.startswith("NO-GO: evaluation incomplete (1 failed: betats static)")
    assert "INCOMPLETE" in captured.err
    assert report["complete"] is False


def _same_numbers(a: dict, b: dict, path: str = "") -> None:
    """Equal structure, floats equal to 1e-9 (relative)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same_numbers(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_numbers(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def _returning_logs(tmp_path, logs):
    """The logs with 400 returning customers, in two files of row groups of 500 rows."""
    table = to_table(logs)
    customers = [f"c{i}" for i in np.random.default_rng(0).integers(0, 400, table.num_rows)]
    table = table.set_column(
        table.schema.get_field_index("customer_id"), "customer_id", pa.array(customers)
    )
    path = tmp_path / "logs"
    path.mkdir()
    for i in range(2):
        pq.write_table(table.slice(2000 * i, 2000), path / f"part-{i}.parquet", row_group_size=500)
    return path, table


def _without_where(report: dict) -> dict:
    """The report without where it ran and how it was cut and read."""
    for key in ("mode", "n_shards", "shard_rows", "fragments", "sharded", "pass_seconds"):
        report.pop(key, None)
    for key in ("pass_driver_cpu_seconds", "read", "read_in_memory_because"):
        report.pop(key, None)
    return report


def test_parquet_logs_are_read_by_tasks_with_the_in_memory_numbers(tmp_path, logs, capsys):
    """Row groups of 500 rows, returning customers: the sharded path (the default for Parquet)
    gives the numbers of --read memory, clustered by customer, and says how it read."""
    path, _ = _returning_logs(tmp_path, logs)
    options = ("--policy", "linucb:alpha=0.5", "--policy", "egreedy", "--bootstrap", "40")
    options += ("--seed", "3", "--shard-rows", "500", "--workers", "0")
    sharded = evaluate(path, tmp_path / "sharded", *options)
    printed = capsys.readouterr().out
    assert "  logs read in 8 fragments by tasks" in printed.splitlines()
    in_memory = evaluate(path, tmp_path / "memory", *options, "--read", "memory")
    assert "  logs read into memory" in capsys.readouterr().out.splitlines()
    assert sharded["sharded"] and not in_memory["sharded"]
    assert sharded["cluster"] == "customer_id" and sharded["n_clusters"] == in_memory["n_clusters"]
    _same_numbers(_without_where(sharded), _without_where(in_memory))


def test_snapshot_and_file_candidates_are_scored_by_the_tasks(tmp_path, logs, capsys):
    """A snapshot and another system's probabilities: scored fragment by fragment (the file read
    per task, filtered by the fragment's decision ids), on every row, as in memory."""
    from engine.replay import from_table
    from engine.replay.train import train_policy, write_trained_snapshot

    path, table = _returning_logs(tmp_path, logs)
    data = from_table(table)
    snapshot = tmp_path / "trained.snap"
    policy = train_policy(data, {"name": "linucb", "alpha": 0.0, "min_propensity": 0.05})
    write_trained_snapshot(snapshot, policy, data, target="ips")
    ids = table.column("decision_id").to_pylist()
    offers = list(data.actions)
    probabilities = tmp_path / "scored.parquet"
    pq.write_table(
        pa.table(
            {
                "decision_id": [d for d in ids for _ in offers],
                "action": offers * len(ids),
                "probability": [
                    0.8 if j == i % 3 else 0.1 for i in range(len(ids)) for j in range(3)
                ],
            }
        ),
        probabilities,
    )
    options = ("--policy", f"snapshot:{snapshot}", "--policy", f"file:{probabilities}")
    options += ("--bootstrap", "40", "--shard-rows", "500", "--workers", "0")
    sharded = evaluate(path, tmp_path / "sharded", *options)
    assert "  logs read in 8 fragments by tasks" in capsys.readouterr().out.splitlines()
    in_memory = evaluate(path, tmp_path / "memory", *options, "--read", "memory")
    assert sharded["every_row"] and sharded["n_test"] == 4000
    _same_numbers(_without_where(sharded), _without_where(in_memory))

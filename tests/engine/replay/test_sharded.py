"""Evaluation whose tasks read their own Parquet fragments (issue 15 item 5): the same numbers as
the in-memory evaluation with the same shard boundaries, in-process and on a two-node Ray
cluster, and the reward model's sums equal to its one-pass fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import InvalidInputError
from engine.replay.candidates import EvalConfig, make_candidates, parse_policy
from engine.replay.evaluate import evaluate
from engine.replay.fanout import Runner
from engine.replay.intervals import customer_keys, customer_weights
from engine.replay.readers import read_logs
from engine.replay.rewardmodel import (
    cross_fit,
    cross_fit_from_sums,
    customer_folds,
    reward_sums,
    row_folds,
)
from engine.replay.sharded import evaluate_dataset, list_fragments
from tests.engine.replay.synthetic import LinearEnv, make_logs, to_table

ROOT = Path(__file__).resolve().parents[3]
ROW_GROUP = 500
CONFIG = EvalConfig(n_bootstrap=40, seed=7, batch_size=64)


def _candidates():
    return make_candidates([parse_policy("linucb:alpha=0.2,1.0"), parse_policy("egreedy")])


def _write(path: Path, n_rows: int = 4000, files: int = 1, seed: int = 1) -> Path:
    """Softmax-logged rows in the nbo schema without a customer column, row groups of 500 rows,
    split over ``files`` files of a directory (one file when 1)."""
    logs = make_logs(LinearEnv.make(4, 3, seed=seed), n_rows, seed=seed + 1, kind="softmax")
    table = to_table(logs).drop_columns(["customer_id"])
    if files == 1:
        pq.write_table(table, path, row_group_size=ROW_GROUP)
        return path
    path.mkdir()
    step = n_rows // files
    for i in range(files):
        pq.write_table(
            table.slice(i * step, step), path / f"part-{i}.parquet", row_group_size=ROW_GROUP
        )
    return path


def _numbers(result) -> dict:
    out = result.to_dict()
    # Where it ran and how it was cut (the in-memory run has shard_rows, no fragments).
    for key in (
        "mode",
        "n_shards",
        "shard_rows",
        "fragments",
        "sharded",
        "pass_seconds",
        "pass_driver_cpu_seconds",
    ):
        out.pop(key, None)
    return out


def _close(a, b, path="") -> None:
    """Equal structure, floats equal to 1e-9 (relative)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True), path
    else:
        assert a == b, path


def test_fragments_are_row_groups_of_every_file_in_order(tmp_path):
    path = _write(tmp_path / "logs", n_rows=3000, files=2)
    fragments = list_fragments(path)
    assert [(Path(f.path).name, f.row_groups, f.rows) for f in fragments] == [
        (f"part-{i}.parquet", (g,), ROW_GROUP) for i in range(2) for g in range(3)
    ]
    grouped = list_fragments(path, rows_per_fragment=1000)
    assert [(f.row_groups, f.rows) for f in grouped] == [((0, 1), 1000), ((2,), 500)] * 2


def test_same_numbers_as_in_memory_evaluation(tmp_path):
    path = _write(tmp_path / "logs", files=2)
    candidates = _candidates()
    in_memory = evaluate(
        read_logs(path),
        candidates,
        config=CONFIG,
        shard_rows=ROW_GROUP,
        control_action=1,
        runner=Runner(workers=0, progress=False),
    )
    sharded = evaluate_dataset(
        path, candidates, config=CONFIG, control_action=1, runner=Runner(workers=0, progress=False)
    )
    assert sharded.complete and sharded.n_shards == in_memory.n_shards == 4
    assert sharded.info["fragments"] == 8
    _close(_numbers(sharded), _numbers(in_memory))


def test_reward_model_sums_equal_the_one_pass_cross_fit():
    rng = np.random.default_rng(0)
    n, d, k = 5000, 5, 4
    X, a, r = rng.normal(size=(n, d)), rng.integers(0, k - 1, n), rng.normal(size=n)
    fold = customer_folds(None, n, 5, seed=3)
    np.testing.assert_array_equal(row_folds(n, 5, 3, 100, 900), fold[100:900])
    total = None
    for lo in range(0, n, 777):
        hi = min(lo + 777, n)
        part = reward_sums(X[lo:hi], a[lo:hi], r[lo:hi], k, fold[lo:hi], 5)
        total = part if total is None else total + part
    np.testing.assert_allclose(
        cross_fit_from_sums(total), cross_fit(X, a, r, k, fold, 5), atol=1e-9
    )


def _write_customers(path: Path, n_rows: int = 4000, customers: int = 300) -> Path:
    """Rows of returning customers (string ids, ``customers`` of them, each returning through
    the whole time range, some ids null), in row groups of 500 rows in two files."""
    logs = make_logs(LinearEnv.make(4, 3, seed=5), n_rows, seed=6, kind="softmax")
    table = to_table(logs)
    rng = np.random.default_rng(3)
    ids = [
        None if i % 97 == 0 else f"cust-{c}"
        for i, c in enumerate(rng.integers(0, customers, n_rows))
    ]
    table = table.set_column(
        table.schema.get_field_index("customer_id"), "customer_id", pa.array(ids)
    )
    path.mkdir()
    half = n_rows // 2
    for i, part in enumerate((table.slice(0, half), table.slice(half))):
        pq.write_table(part, path / f"part-{i}.parquet", row_group_size=ROW_GROUP)
    return path


@pytest.mark.parametrize("interval", ["bootstrap", "bernstein"])
def test_customers_give_the_in_memory_numbers(tmp_path, interval):
    path = _write_customers(tmp_path / "logs")
    candidates = _candidates()
    kwargs = dict(config=CONFIG, control_action=1, interval=interval)
    in_memory = evaluate(
        read_logs(path),
        candidates,
        shard_rows=ROW_GROUP,
        runner=Runner(workers=0, progress=False),
        **kwargs,
    )
    sharded = evaluate_dataset(path, candidates, runner=Runner(workers=0, progress=False), **kwargs)
    assert in_memory.info["cluster"] == sharded.info["cluster"] == "customer_id"
    assert sharded.complete and sharded.info["n_clusters"] == in_memory.info["n_clusters"] > 250
    _close(_numbers(sharded), _numbers(in_memory))
    rows = evaluate_dataset(
        path, candidates, runner=Runner(workers=0, progress=False), cluster="none", **kwargs
    )
    assert rows.info["cluster"] == "none"
    # Same point estimates, other (row) intervals.
    best = sharded.candidates[-1]
    assert rows.candidates[-1].value("dr") == pytest.approx(best.value("dr"), rel=1e-12)
    assert rows.candidates[-1].interval("dr", interval) != best.interval("dr", interval)


def test_customers_on_ray_give_the_in_process_numbers(tmp_path, local_ray):
    path = _write_customers(tmp_path / "logs", n_rows=2000)
    kwargs = dict(config=CONFIG, control_action=1)
    local = evaluate_dataset(
        path, _candidates(), runner=Runner(workers=0, progress=False), **kwargs
    )
    on_ray = evaluate_dataset(
        path, _candidates(), runner=Runner(workers=2, progress=False), **kwargs
    )
    assert on_ray.mode.startswith("ray") and on_ray.info["cluster"] == "customer_id"
    _close(_numbers(on_ray), _numbers(local))


def test_customer_folds_and_weights_depend_on_the_key_only():
    keys = customer_keys(np.array(["a", "b", "c", "a"], dtype=object))
    assert keys[0] == keys[3]
    np.testing.assert_array_equal(
        customer_folds(keys, 4, 5, seed=1)[1:3], customer_folds(keys[1:3], 2, 5, seed=1)
    )
    weights = customer_weights(keys, 50, seed=2)
    np.testing.assert_array_equal(weights[:, 1:3], customer_weights(keys[1:3], 50, seed=2))
    assert np.array_equal(weights[:, 0], weights[:, 3])
    many = customer_weights(np.arange(200_000), 4, seed=0)
    assert abs(many.mean() - 1.0) < 0.01 and abs(many.var() - 1.0) < 0.01


def test_out_of_time_order_fragments_are_refused(tmp_path):
    logs = make_logs(LinearEnv.make(3, 2), 1000, seed=2)
    table = to_table(logs).drop_columns(["customer_id"])
    reversed_ = pq.ParquetWriter(tmp_path / "late.parquet", table.schema)
    reversed_.write_table(table.slice(500), row_group_size=ROW_GROUP)
    reversed_.write_table(table.slice(0, 500), row_group_size=ROW_GROUP)
    reversed_.close()
    with pytest.raises(InvalidInputError, match="time-ordered row groups"):
        evaluate_dataset(tmp_path / "late.parquet", [], config=CONFIG)
    with pytest.raises(InvalidInputError, match="--cluster customer_id: expected a customer_id"):
        evaluate_dataset(tmp_path / "late.parquet", [], config=CONFIG, cluster="customer_id")


def _cluster_main(path: str, out: str) -> None:
    """Run in a subprocess: a two-node Ray cluster on this machine (head and worker on
    127.0.0.1, one CPU each), the sharded evaluation on it, its numbers written as JSON."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        runner = Runner(address=cluster.address, progress=False)
        try:
            result = evaluate_dataset(
                path, _candidates(), config=CONFIG, control_action=1, runner=runner
            )
            import ray

            nodes = len([n for n in ray.nodes() if n["Alive"]])
        finally:
            runner.close()
        Path(out).write_text(
            json.dumps({"numbers": _numbers(result), "nodes": nodes, "mode": result.mode})
        )
    finally:
        cluster.shutdown()


@pytest.mark.slow
def test_two_node_ray_cluster_gives_the_in_process_numbers(tmp_path):
    path = _write(tmp_path / "logs", files=2)
    out = tmp_path / "cluster.json"
    # A fresh process: the suite's shared local Ray session cannot also join a cluster. The
    # cluster's workers inherit PYTHONPATH from it, so they import this tree.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    code = (
        "import sys; from tests.engine.replay import test_sharded as t; "
        "t._cluster_main(*sys.argv[1:])"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(path), str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    on_cluster = json.loads(out.read_text())
    assert on_cluster["nodes"] == 2 and on_cluster["mode"].startswith("ray (127.0.0.1:")
    local = evaluate_dataset(
        path,
        _candidates(),
        config=CONFIG,
        control_action=1,
        runner=Runner(workers=0, progress=False),
    )
    assert on_cluster["numbers"] == json.loads(json.dumps(_numbers(local)))

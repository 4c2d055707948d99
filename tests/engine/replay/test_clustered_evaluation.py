"""evaluate() with returning customers: customers are the units of every interval, whatever
the shards, and a customer's rows may fall in several shards."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.errors import InvalidInputError
from engine.replay.candidates import EvalConfig, make_candidates
from engine.replay.evaluate import evaluate
from engine.replay.fanout import Runner
from tests.engine.replay.synthetic import LinearEnv, make_logs

IN_PROCESS = Runner(workers=0, progress=False)


@pytest.fixture(scope="module")
def returning():
    env = LinearEnv.make(n_actions=3, n_features=2, seed=3)
    data = make_logs(env, 1200, seed=4).data()
    # 150 customers returning 8 times each, interleaved in time.
    return dataclasses.replace(data, customer=np.arange(data.n_rounds) % 150)


def _run(data, **kwargs):
    config = EvalConfig(estimators=("ips", "snips", "dr"), n_bootstrap=50)
    candidates = make_candidates([{"name": "linucb", "alpha": 0.0}], ("static",))
    return evaluate(data, candidates, config=config, runner=IN_PROCESS, **kwargs)


def test_default_clusters_by_customer_and_shards_do_not_change_the_numbers(returning):
    big = _run(returning)
    small = _run(returning, shard_rows=37)
    assert big.info["cluster"] == "customer_id" and big.info["n_clusters"] == 150
    for a, b in zip(big.candidates, small.candidates, strict=True):
        for name, est in a.estimates.items():
            other = b.estimates[name]
            assert np.allclose(est.normal, other.normal, rtol=1e-10), (a.label, name)
            assert np.allclose(est.bootstrap, other.bootstrap, rtol=1e-10), (a.label, name)
    rows = _run(returning, cluster="none")
    assert rows.info["cluster"] == "none"
    c, r = big.candidates[-1], rows.candidates[-1]
    assert c.value("ips") == pytest.approx(r.value("ips"))


def test_cluster_customer_id_needs_the_column():
    env = LinearEnv.make(n_actions=3, n_features=2, seed=3)
    data = make_logs(env, 100, seed=4).data()
    with pytest.raises(InvalidInputError, match="--cluster customer_id: expected a customer_id"):
        _run(data, cluster="customer_id")
    assert _run(data).info["cluster"] == "none"

"""Shadow mode's estimate of nbo's value against the baseline (engine.replay.shadow), on a
campaign with ground truth: the gift is worth 5, the discount 2, nothing 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.core import Engine
from engine.replay.shadow import shadow_evidence
from tests.engine.small_campaigns import numeric_features, offer_tables

OFFERS = ("none", "gift", "discount")
WORTH = {"none": 1.0, "gift": 5.0, "discount": 2.0}


def _engine(tmp_path: Path) -> Engine:
    path = tmp_path / "c.toml"
    path.write_text(
        f"""
[campaign]
name = "sh"
mode = "shadow"
[policy]
name = "linucb"
alpha = 0.1
min_propensity = 0.02
seed = 1
[learning]
publish_every_rewards = 1
[reward]
charge_cost = "never"
{numeric_features("x")}
{offer_tables(*OFFERS)}
"""
    )
    return Engine.from_config(
        path, data_dir=tmp_path / "data", clock=lambda: 1.7e9, background=False
    )


def test_the_estimate_finds_nbo_better_than_a_random_baseline(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    with _engine(tmp_path) as eng:
        for start in range(0, 3000, 100):
            baseline = [OFFERS[k] for k in rng.integers(0, 3, 100)]
            out = eng.decide_batch(
                [f"c{start + i}" for i in range(100)],
                [{"x": float(rng.normal())} for _ in range(100)],
                baseline_offers=baseline,
            )
            assert [d.offer_id for d in out] == baseline
            values = [WORTH[d.offer_id] + rng.normal(0, 0.5) for d in out]
            eng.reward_batch([d.decision_id for d in out], values)
        e = shadow_evidence(eng.journal, list(eng.feature_names), list(eng.offer_ids))
    assert e.rows == 3000
    assert abs(e.baseline_value - 8.0 / 3.0) < 0.15  # observed: the random baseline's mean
    assert 4.5 < e.nbo_value <= 5.1  # nbo learned to give the gift, from the baseline's outcomes
    assert e.low > 1.5 and e.low < e.difference < e.high
    assert 0.25 < e.agreement < 0.45 and e.coverage == 1.0


def test_too_few_shadow_decisions_give_no_estimate(tmp_path: Path) -> None:
    with _engine(tmp_path) as eng:
        out = eng.decide_batch(["a", "b"], [{"x": 0.0}] * 2, baseline_offers="gift")
        eng.reward_batch([d.decision_id for d in out], [5.0, 5.0])
        e = shadow_evidence(eng.journal, list(eng.feature_names), list(eng.offer_ids))
    assert e.rows == 2 and e.baseline_value == 5.0
    assert np.isnan(e.nbo_value) and np.isnan(e.low)

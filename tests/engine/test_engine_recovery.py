"""Restart details: running encoder statistics, expiry watermark, catalog changes, batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.core import Engine
from engine.errors import InvalidInputError

T0 = 1_700_000_000.0
DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def write_config(tmp_path: Path, offers: str, numeric: str, extra: str = "") -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        f"""
[campaign]
name = "rc"
control_offer = "none"

[policy]
name = "linucb"
seed = 1

[reward]
window_days = 2.0
default_value = 0.0
{extra}

[features]
[[features.numeric]]
{numeric}

{offers}
"""
    )
    return path


OFFERS = '[[offers]]\nid = "none"\n[[offers]]\nid = "a"\n'
THREE = OFFERS + '[[offers]]\nid = "b"\n'
SCALED = 'name = "x"\nmean = 0.0\nstd = 1.0'  # a numeric feature with fixed scaling


def start(path: Path, clock: Clock) -> Engine:
    """Start (or restart) the engine of the config at ``path`` on its data directory."""
    return Engine.from_config(path, data_dir=path.parent / "d", clock=clock)


def test_running_statistics_survive_a_restart(tmp_path):
    clock = Clock()
    path = write_config(tmp_path, OFFERS, 'name = "x"\nfreeze_after = 50')
    eng = start(path, clock)
    rng = np.random.default_rng(0)
    values = rng.normal(100.0, 15.0, 80)
    eng.decide_batch([f"c{i}" for i in range(30)], [{"x": float(v)} for v in values[:30]])
    for i, v in enumerate(values[30:]):
        eng.decide(f"d{i}", {"x": float(v)})
    state = eng._encoder.state()
    assert state["running"]["x"][0] == 50
    probe = eng._encoder.encode({"x": 120.0})
    assert probe[1] == pytest.approx((120.0 - values[:50].mean()) / values[:50].std(ddof=1))
    eng.abandon()  # no close(): the statistics were journaled when they froze
    again = start(path, clock)
    np.testing.assert_array_equal(again._encoder.encode({"x": 120.0}), probe)
    again.close()


def test_expiry_watermark_and_pending_survive_a_restart(tmp_path):
    clock = Clock()
    path = write_config(tmp_path, OFFERS, SCALED)
    eng = start(path, clock)
    old = eng.decide_batch(["a", "b"], [{"x": 0.0}] * 2)
    clock.t += 3 * DAY
    assert eng.expire_pending() == 2
    new = eng.decide_batch(["c", "d"], [{"x": 0.0}] * 2)
    eng.close()
    again = start(path, clock)
    assert again.expire_pending() == 0
    assert again.reward_batch([old[0].decision_id], [1.0])[0].status == "expired"
    assert again.reward(new[0].decision_id, 1.0).status == "applied"
    clock.t += 3 * DAY
    assert again.expire_pending() == 1
    again.close()


def test_added_and_removed_offers_keep_the_learned_model(tmp_path):
    clock = Clock()
    path = write_config(tmp_path, THREE, SCALED)
    eng = start(path, clock)
    rng = np.random.default_rng(1)
    ds = eng.decide_batch(
        [f"c{i}" for i in range(200)], [{"x": float(v)} for v in rng.normal(size=200)]
    )
    eng.reward_batch([d.decision_id for d in ds], [3.0 if d.offer_id == "a" else 0.0 for d in ds])
    X = np.array([[1.0, 0.3], [1.0, -1.0]])  # features: bias, x
    before = eng.policy.choose(X).scores
    eng.close()
    # "b" removed, "gift" added (at the end): the snapshot is mapped, not thrown away.
    changed = OFFERS + '[[offers]]\nid = "gift"\nmax_traffic_share = 0.1\n'
    path = write_config(tmp_path, changed, SCALED)
    again = start(path, clock)
    after = again.policy.choose(X).scores
    np.testing.assert_allclose(after[:, :2], before[:, :2])
    assert again.offer_ids == ("none", "a", "gift")
    d = again.decide("z", {"x": 0.0})
    assert d.offer_id in again.offer_ids
    again.close()


def test_per_row_candidates_in_a_batch(tmp_path):
    clock = Clock()
    path = write_config(tmp_path, THREE, SCALED)
    eng = start(path, clock)
    ds = eng.decide_batch(
        ["p", "q", "r"], [{"x": 0.0}] * 3, candidates=[["a"], None, ["b", "none"]]
    )
    assert ds[0].offer_id == "a" and ds[0].eligible == ("a",) and ds[0].propensity == 1.0
    assert set(ds[1].eligible) == {"none", "a", "b"} and "candidates" not in ds[1].reasons
    assert set(ds[2].eligible) == {"none", "b"}
    shared = eng.decide_batch(["s", "t"], [{"x": 0.0}] * 2, candidates=["b"])
    assert [d.offer_id for d in shared] == ["b", "b"]
    with pytest.raises(InvalidInputError, match=r"candidates\[0\]\[0\]: expected one of"):
        eng.decide_batch(["u", "v"], [{"x": 0.0}] * 2, candidates=[["zz"], None])
    with pytest.raises(InvalidInputError, match=r"customer_ids\[1\]: expected a non-empty"):
        eng.decide_batch(["u", ""], [{"x": 0.0}] * 2)
    with pytest.raises(InvalidInputError, match=r"contexts\[1\]\.x: expected a finite number"):
        eng.decide_batch(["u", "v"], [{"x": 0.0}, {"x": float("inf")}])
    assert eng.decide_batch([], []) == [] and eng.reward_batch([], []) == []
    assert eng.journal.counts()["decisions"] == 5
    eng.close()

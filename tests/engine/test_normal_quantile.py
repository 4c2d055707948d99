"""One normal quantile: the journal's lift and the replay's normal intervals use the kernels' z."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import InvalidInputError
from engine.journal.lift import LEVELS, Lift
from engine.kernels import norm_ppf
from engine.replay.intervals import Moments


@pytest.mark.parametrize("level", LEVELS)
def test_lift_interval_uses_the_kernels_quantile(level: float) -> None:
    lift = Lift.from_sums(
        400, 4400.0, 400 * 121.0 + 399 * 4.0, 100, 1000.0, 100 * 100.0 + 99 * 4.0, level
    )
    se = math.sqrt(4.0 / 400 + 4.0 / 100)
    z = norm_ppf(1.0 - (1.0 - level) / 2.0)
    assert lift.ci_high - lift.lift == pytest.approx(z * se, rel=1e-12)
    assert z == pytest.approx(
        {
            0.8: 1.2815515655446004,
            0.9: 1.6448536269514722,
            0.95: 1.959963984540054,
            0.99: 2.5758293035489004,
        }[level],
        rel=1e-15,
    )


def test_lift_refuses_other_levels() -> None:
    with pytest.raises(InvalidInputError, match=r"level: expected one of \[0.8, 0.9, 0.95, 0.99\]"):
        Lift.from_sums(10, 1.0, 1.0, 10, 1.0, 1.0, level=0.5)


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1, 0.2])
def test_replay_normal_interval_uses_the_kernels_quantile(alpha: float) -> None:
    a = np.random.default_rng(0).normal(size=500)
    moments = Moments.from_terms(a, None, None, n=500)
    low, high = moments.normal_interval(alpha)
    z = norm_ppf(1.0 - alpha / 2.0)
    assert high - moments.estimate() == pytest.approx(z * moments.std_error(), rel=1e-12)
    assert moments.estimate() - low == pytest.approx(z * moments.std_error(), rel=1e-12)

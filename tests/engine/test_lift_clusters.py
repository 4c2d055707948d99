"""The lift's interval is over customers: a returning customer's rows are not independent."""

from __future__ import annotations

import numpy as np

from engine.journal.lift import Lift


def test_returning_customers_widen_the_lift_interval():
    rng = np.random.default_rng(0)
    # 200 customers per group, 10 decisions each, all equal to the customer's own mean.
    effect_t, effect_c = rng.normal(1.0, 2.0, 200), rng.normal(0.0, 2.0, 200)
    counts = np.full(200, 10.0)
    clustered = Lift.from_customers((counts, 10 * effect_t), (counts, 10 * effect_c))
    rows = Lift.from_sums(
        2000,
        10 * effect_t.sum(),
        10 * (effect_t**2).sum(),
        2000,
        10 * effect_c.sum(),
        10 * (effect_c**2).sum(),
    )
    assert clustered.lift == rows.lift
    width = clustered.ci_high - clustered.ci_low
    # Ten identical rows carry one customer's information: the row interval is ~sqrt(10) too narrow.
    assert 2.8 < width / (rows.ci_high - rows.ci_low) < 3.4

"""The anytime-valid lift bound, looked at after every batch of customers: it falsely says
"worse than control" in at most 5% of 200 seeds for a policy that is not worse (alpha = 0.05;
nominal 2.5% one-sided), while a policy that is worse is caught in every seed."""

from __future__ import annotations

import math

import numpy as np

from engine.journal.lift import Lift
from engine.journal.sequence import MIN_CUSTOMERS, boundary, lift_sequence, rho_for

CONTROL_SHARE = 0.10
LOOK_EVERY = 50  # customers between two looks
CUSTOMERS = 4000


def _stream(seed: int, lift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renewal-like outcomes: each customer makes 1-3 decisions, renews (value 600) with a
    customer-specific probability; the policy's effect shifts every treated decision by
    ``lift``. Returns control flags, decision counts and reward sums per customer."""
    rng = np.random.default_rng(seed)
    control = rng.random(CUSTOMERS) < CONTROL_SHARE
    counts = rng.integers(1, 4, CUSTOMERS).astype(float)
    renew = rng.beta(2.0, 2.0, CUSTOMERS)
    sums = np.array([600.0 * rng.binomial(int(k), p) for k, p in zip(counts, renew, strict=True)])
    sums = sums - 60.0 * counts + np.where(control, 0.0, lift * counts)
    return control, counts, sums


def _first_alarm(seed: int, lift: float) -> int | None:
    """Customers seen when the bound's upper end first fell below 0 (None: never)."""
    control, counts, sums = _stream(seed, lift)
    for n in range(LOOK_EVERY, CUSTOMERS + 1, LOOK_EVERY):
        c, k, s = control[:n], counts[:n], sums[:n]
        est = Lift.from_customers((k[~c], s[~c]), (k[c], s[c]))
        if math.isnan(est.ci_low):
            continue
        se = (est.ci_high - est.ci_low) / (2 * 1.959963984540054)
        _, upper = lift_sequence(est.lift, se, n, 0.05, n_groups=(int((~c).sum()), int(c.sum())))
        if upper < 0:
            return n
    return None


def test_a_policy_that_is_not_worse_is_rarely_stopped_however_often_one_looks() -> None:
    for lift in (0.0, 15.0):
        alarms = sum(_first_alarm(seed, lift) is not None for seed in range(200))
        assert alarms <= 10, (lift, alarms)  # at most 5% of 200 seeds


def test_a_worse_policy_is_stopped_in_every_seed() -> None:
    found = [_first_alarm(1000 + seed, -120.0) for seed in range(20)]
    assert all(n is not None for n in found), found
    assert int(np.median([n for n in found if n is not None])) <= 2500


def test_the_sequence_is_wider_than_one_fixed_look_and_tightens() -> None:
    rho = rho_for(1000, 0.05)
    assert boundary(1000, 0.05, rho) * math.sqrt(1000) > 1.96  # always wider than z
    widths = [boundary(n, 0.05, rho) for n in (100, 1000, 10_000, 100_000)]
    assert widths == sorted(widths, reverse=True)  # and tighter with more customers
    assert lift_sequence(1.0, 0.1, 2 * MIN_CUSTOMERS - 2) == (-math.inf, math.inf)

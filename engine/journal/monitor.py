"""The lift monitor: the policy's net reward per decision against the control group's, kept up
to date reward by reward, with the anytime-valid bound of :mod:`engine.journal.sequence` and
the rollout guardrails (spend per decision), so the campaign can stop a policy that is worse
than its control the moment the evidence says so (see :mod:`engine.rollout`).

It reads the journal's rewards in seq order (:meth:`JournalBackend.outcomes_after`), whichever
process journaled them, and counts a rewarded decision when it was made at ``since_us`` or
later by a model of version ``epoch`` or later (a promotion, a rollback or a mode change starts
a new epoch: the question is always whether the policy live *now* beats the control over the
same period):

- a control-group decision (``control``) goes to the control group;
- a decision the policy made online goes to the treatment group;
- a shadow decision (reason ``shadow:<offer>@<propensity>``: the baseline was served, nbo's own
  choice logged beside it) counts toward the agreement rate and the baseline's value, never the
  lift; decisions served in logging mode (reason ``logging``: the caller's probabilities) or in
  the safe mode after a rollback (reason ``rolled_back``) count in neither group.

Each group keeps, per customer, the count and the sum of net rewards, and five running totals
from which the cluster-robust variance of :meth:`engine.journal.lift.Lift.from_customers` is
exact at every moment: with ``k_i, s_i`` the count and sum of customer ``i``, ``K = sum k_i``,
``m = sum s_i / K``,

    var(m) = g / ((g - 1) K^2) * sum (s_i - m k_i)^2
           = g / ((g - 1) K^2) * (sum s_i^2 - 2 m sum s_i k_i + m^2 sum k_i^2)

so a reward costs O(1) whatever the number of customers.

Examples
--------
>>> from engine.journal.records import Outcome
>>> m = LiftMonitor(alpha=0.05, n_star=1000, epoch=1, since_us=0)
>>> m.add([Outcome(1, "c1", False, 10.0, 50.0, None, "v1", "gift", 5),
...        Outcome(2, "c2", True, 0.0, 40.0, "control_group", "v1", "none", 6),
...        Outcome(3, "c3", False, 0.0, 30.0, "shadow:gift@0.9", "v1", "gift", 7)])
3
>>> s = m.status()
>>> s.n_treatment, s.n_control, s.spend_per_decision, s.shadow_decisions, s.agreement_rate
(1, 1, 10.0, 1, 1.0)
>>> s.lower, s.upper   # too few customers yet: the bound is not finite
(-inf, inf)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.journal.records import Outcome
from engine.journal.sequence import lift_sequence

__all__ = [
    "STATE_KEY",
    "LiftMonitor",
    "MonitorStatus",
    "monitor_of",
    "shadow_choice",
    "shadow_reason",
    "version_of",
]

STATE_KEY = "rollout"  # journal meta: the campaign's rollout state (engine.rollout.RolloutState)

SHADOW = "shadow:"
NOT_POLICY = ("logging", "rolled_back")  # reasons of decisions the policy did not serve


def shadow_reason(offer_id: str, propensity: float) -> str:
    """The reason a shadow decision carries: nbo's own choice and its propensity (``repr``
    keeps the float exact)."""
    return f"{SHADOW}{offer_id}@{propensity!r}"


def shadow_choice(tokens: Iterable[str]) -> str | None:
    """nbo's own choice in a decision's reasons (:func:`shadow_reason`), or None when it is not
    a shadow decision.

    Examples
    --------
    >>> shadow_choice(["rule:x", shadow_reason("gift", 0.25)]), shadow_choice(["logging"])
    ('gift', None)
    """
    for token in tokens:
        if token.startswith(SHADOW):
            return token[len(SHADOW) :].rpartition("@")[0]
    return None


def version_of(model_version: str) -> int:
    """The number of a version string ``v12`` (0 when it is not one)."""
    text = model_version[1:] if model_version[:1] == "v" else ""
    return int(text) if text.isdigit() else 0


class _Group:
    """Per-customer counts and sums of one group, with the running totals of the variance."""

    __slots__ = ("customers", "k", "kk", "s", "sk", "ss")

    def __init__(self) -> None:
        self.customers: dict[str, list[float]] = {}
        self.k = self.s = self.ss = self.sk = self.kk = 0.0

    def add(self, customer_id: str, reward: float) -> None:
        entry = self.customers.get(customer_id)
        if entry is None:
            entry = self.customers[customer_id] = [0.0, 0.0]
        k, s = entry
        k2, s2 = k + 1.0, s + reward
        entry[0], entry[1] = k2, s2
        self.k += 1.0
        self.s += reward
        self.ss += s2 * s2 - s * s
        self.sk += s2 * k2 - s * k
        self.kk += k2 * k2 - k * k

    @property
    def mean(self) -> float:
        return self.s / self.k if self.k else math.nan

    def variance(self) -> float:
        """Cluster-robust variance of the group's mean (NaN below two customers)."""
        g = len(self.customers)
        if g < 2 or self.k < 2:
            return math.nan
        m = self.s / self.k
        dev = max(self.ss - 2.0 * m * self.sk + m * m * self.kk, 0.0)
        return dev * g / ((g - 1) * self.k * self.k)


@dataclass(frozen=True)
class MonitorStatus:
    """What the monitor knows now.

    Attributes
    ----------
    lift : float
        Mean net reward per policy decision minus per control decision (NaN without both).
    lower, upper : float
        The anytime-valid bound on the lift (infinite before enough customers per group).
    se : float
        The lift's cluster-robust standard error (NaN below two customers per group): the
        fixed-sample interval ``lift +- 1.96 se`` is valid at one look decided in advance only.
    n_treatment, n_control : int
        Rewarded decisions counted in each group since the epoch.
    customers_treatment, customers_control : int
    spend_per_decision : float
        Mean cost of the rewarded policy decisions (NaN without any).
    shadow_decisions, shadow_agreements : int
        Rewarded shadow decisions, and those where nbo's choice was the baseline's.
    baseline_value, agreement_value : float
        Mean net reward of the rewarded shadow decisions, and of those that agreed.
    epoch : int
        The first model version counted.
    components : dict of str to float
        Mean of each reward component per rewarded policy decision (one that did not report a
        component counts 0 for it).
    """

    lift: float
    lower: float
    upper: float
    se: float
    n_treatment: int
    n_control: int
    customers_treatment: int
    customers_control: int
    spend_per_decision: float
    shadow_decisions: int
    shadow_agreements: int
    baseline_value: float
    agreement_value: float
    epoch: int
    alpha: float
    components: dict[str, float] = field(default_factory=dict)

    @property
    def agreement_rate(self) -> float:
        """Share of shadow decisions whose nbo choice was the baseline (NaN without any)."""
        return self.shadow_agreements / self.shadow_decisions if self.shadow_decisions else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN and infinities become None)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            bad = isinstance(value, float) and not math.isfinite(value)
            out[key] = None if bad else value
        out["components"] = dict(self.components)
        rate = self.agreement_rate
        out["agreement_rate"] = None if math.isnan(rate) else rate
        return out


class LiftMonitor:
    """Running lift, anytime-valid bound and guardrail means of one campaign since ``epoch``.

    Parameters
    ----------
    alpha : float
        The bound covers the lift at every look with probability ``1 - alpha``.
    n_star : float
        Customers at which the bound is tightest.
    epoch : int
        The first model version whose decisions count.
    since_us : int
        Unix microseconds: decisions made earlier do not count.
    """

    def __init__(self, alpha: float, n_star: float, epoch: int, since_us: int) -> None:
        self.alpha = alpha
        self.n_star = n_star
        self.epoch = epoch
        self.since_us = since_us
        self.last_seq = 0
        self._treatment = _Group()
        self._control = _Group()
        self._spend = 0.0
        self._components: dict[str, float] = {}  # component sums over policy decisions
        self._shadow = [0, 0, 0.0, 0.0]  # decisions, agreements, reward sum, agreeing sum

    def restart(self, epoch: int, since_us: int) -> None:
        """Count again from model version ``epoch`` and time ``since_us`` (the read position
        stays: what was read before is before the new start)."""
        self.epoch = epoch
        self.since_us = since_us
        self._treatment, self._control = _Group(), _Group()
        self._spend = 0.0
        self._components = {}
        self._shadow = [0, 0, 0.0, 0.0]

    def add(self, outcomes: Iterable[Outcome]) -> int:
        """Count journaled rewards (in seq order); returns how many were read."""
        read = 0
        epoch, since = self.epoch, self.since_us
        for (
            seq,
            customer_id,
            control,
            cost,
            reward,
            reasons,
            version,
            action,
            ts,
            parts,
        ) in outcomes:
            read += 1
            self.last_seq = seq
            if reward is None or ts < since or version_of(version) < epoch:
                continue
            tokens = reasons.split(";") if reasons else ()
            choice = shadow_choice(tokens)
            if choice is not None:
                self._count_shadow(choice == action, reward)
                continue
            if any(t in NOT_POLICY for t in tokens):
                continue
            if control:
                self._control.add(customer_id, reward)
            else:
                self._treatment.add(customer_id, reward)
                self._spend += cost
                if parts:
                    sums = self._components
                    for name, value in json.loads(parts).items():
                        sums[name] = sums.get(name, 0.0) + value
        return read

    def catch_up(self, journal: Any) -> int:
        """Count every reward ``journal`` holds after the last one read; returns how many."""
        read = 0
        for rows in journal.outcomes_after(self.last_seq):
            read += self.add(rows)
        return read

    def _count_shadow(self, agreed: bool, reward: float) -> None:
        # The served offer is the baseline; ``agreed``: nbo's own choice was the same.
        self._shadow[0] += 1
        self._shadow[2] += reward
        if agreed:
            self._shadow[1] += 1
            self._shadow[3] += reward

    def status(self) -> MonitorStatus:
        """The lift, its anytime-valid bound and the guardrail means now."""
        t, c = self._treatment, self._control
        lift = t.mean - c.mean
        var = t.variance() + c.variance()
        g_t, g_c = len(t.customers), len(c.customers)
        lower, upper = -math.inf, math.inf
        if math.isfinite(var):
            lower, upper = lift_sequence(
                lift, math.sqrt(var), g_t + g_c, self.alpha, self.n_star, n_groups=(g_t, g_c)
            )
        n_s, agree, total, agree_total = self._shadow
        return MonitorStatus(
            lift=lift,
            lower=lower,
            upper=upper,
            se=math.sqrt(var) if math.isfinite(var) else math.nan,
            n_treatment=int(t.k),
            n_control=int(c.k),
            customers_treatment=g_t,
            customers_control=g_c,
            spend_per_decision=self._spend / t.k if t.k else math.nan,
            shadow_decisions=int(n_s),
            shadow_agreements=int(agree),
            baseline_value=total / n_s if n_s else math.nan,
            agreement_value=agree_total / agree if agree else math.nan,
            epoch=self.epoch,
            alpha=self.alpha,
            components={k: v / t.k for k, v in self._components.items()} if t.k else {},
        )


def monitor_of(journal: Any, alpha: float = 0.05, n_star: float = 1000.0) -> LiftMonitor:
    """A monitor counted over a whole journal from the epoch its rollout state names (what
    ``nbo lift`` prints; the leading learner keeps its own up to date)."""
    text = journal.get_meta(STATE_KEY)
    state = json.loads(text) if text else {}
    monitor = LiftMonitor(
        alpha, n_star, int(state.get("epoch", 0)), int(float(state.get("start", 0.0)) * 1e6)
    )
    monitor.catch_up(journal)
    return monitor

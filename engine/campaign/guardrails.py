"""Stateful guardrails: budgets, per-customer frequency caps and cooldown, traffic caps.

Each guardrail removes offers from the eligible set before the policy chooses, so the logged
propensity (the policy's probability under that eligible set) stays the true probability of the
logged offer: the guardrails are a deterministic function of the journal's history. Every removal
adds a reason naming the rule and its offer or dimension value (a *group*, see
:meth:`~engine.campaign.config.CampaignConfig.groups`): ``budget_count:<group>``,
``budget_money:<group>``, ``budget_count_per_day:<group>``, ``budget_money_per_day:<group>``,
``traffic_cap:<group>``, ``frequency_cap:<group>``, and the campaign-wide ``frequency_cap`` and
``cooldown``.

- Budgets are limits on the number of decisions of a group (an offer, or with dimensions every
  combination with that offer or value: ``channel=call``) and on their committed cost (the cost
  computed at decision time), over the campaign's life or per UTC day.
- The frequency caps and the cooldown count *incentives*: decisions whose offer is not the
  campaign's control offer (outside the control group). A group's own cap (``max_per_customer``
  SMS in ``frequency_window_days``) counts the incentives in that group.
- ``max_traffic_share`` caps the share a group takes of the last ``traffic_window`` decisions
  (all decisions count, control group included): a group at or above its share is held back.

State is in memory and rebuilt from the journal on restart (:meth:`Guardrails.record` in order).

Examples
--------
>>> from engine.campaign.config import load_campaign
>>> cfg = load_campaign("examples/renewal.toml")
>>> g = Guardrails(cfg)
>>> g.record("c1", now=0.0, action=cfg.offer_index("discount_5"), cost=27.0)
>>> mask, reasons = g.exclusions("c1", now=86400.0, costs=[0.0] * cfg.n_actions)
>>> mask.tolist(), reasons
([True, False, False, False, False, False, False], ['cooldown'])
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.campaign.limits import DAY
from engine.types import BoolArray, FloatArray

if TYPE_CHECKING:
    from engine.campaign.config import CampaignConfig


BUDGET_UNITS = ("count", "money", "count_per_day", "money_per_day")


class Guardrails:
    """In-memory guardrail state of one campaign.

    Parameters
    ----------
    config : CampaignConfig
        Budgets, caps and the control offer come from here.

    Notes
    -----
    Not thread-safe: the Engine calls it under its decision lock.
    """

    def __init__(self, config: CampaignConfig) -> None:
        self.config = config
        n = config.n_actions
        self.control_index = config.offer_index(config.control_offer)
        control_offer = config.offer_of(self.control_index)
        #: Per action: an incentive (its offer is not the control offer)?
        self._incentive = [config.offer_of(a) != control_offer for a in range(n)]
        # Plain lists: record() runs once per decision and list items are cheaper than numpy's.
        self.used_count = [0] * n
        self.used_money = [0.0] * n
        self.day_count = [0] * n
        self.day_money = [0.0] * n
        self._day = -1  # the UTC day the day_* counts are of
        groups = [g for g in config.groups() if g.limits.any]
        self._budgets = [
            (g.actions, g.label, g.limits.budget_count, g.limits.budget_money)
            for g in groups
            if g.limits.budget_count is not None or g.limits.budget_money is not None
        ]
        self._daily = [
            (g.actions, g.label, g.limits.budget_count_per_day, g.limits.budget_money_per_day)
            for g in groups
            if g.limits.budget_count_per_day is not None
            or g.limits.budget_money_per_day is not None
        ]
        self._capped = [
            (g.actions, g.label, g.limits.max_traffic_share)
            for g in groups
            if g.limits.max_traffic_share is not None
        ]
        #: Groups with their own per-customer cap: (incentive actions, reason, limit, window,
        #: history). The cap counts incentives and holds back only those.
        self._group_caps: list[tuple[tuple[int, ...], str, int, float, dict[str, Any]]] = [
            (
                tuple(a for a in g.actions if self._incentive[a]),
                f"frequency_cap:{g.label}",
                g.limits.max_per_customer,
                g.limits.frequency_window,
                {},
            )
            for g in groups
            if g.limits.max_per_customer is not None
        ]
        self._caps_of: list[list[int]] = [[] for _ in range(n)]  # action -> its capped groups
        for k, (actions, *_rest) in enumerate(self._group_caps):
            for a in actions:
                self._caps_of[a].append(k)
        self._has_budgets = bool(self._budgets or self._daily)
        self._ring = [-1] * config.traffic_window
        self._ring_pos = 0
        self._ring_filled = 0
        self.traffic_counts = [0] * n
        self._max_offers = config.max_offers_per_customer
        self._freq_window = config.frequency_window if self._max_offers is not None else 0.0
        self._cooldown = config.cooldown
        self._horizon = max(
            self._freq_window, self._cooldown, *(c[3] for c in self._group_caps), 0.0
        )
        # A customer's incentive times: one float (most customers: 24 bytes), or an array of
        # doubles from the second on. Neither is tracked by the garbage collector (a list per
        # customer made every full collection walk them all).
        self._history: dict[str, float | array[float]] = {}
        self._ids = config.offer_ids

    @property
    def daily(self) -> bool:
        """True when some budget counts per UTC day (a restart reads the day's decisions)."""
        return bool(self._daily)

    @property
    def active(self) -> bool:
        """False when no guardrail is configured (decisions can skip the checks)."""
        return self._has_budgets or bool(self._capped) or self._horizon > 0

    def _roll(self, now: float) -> bool:
        """Start the day counts afresh when ``now`` is a later UTC day; False for an earlier
        day (a late record from another process: yesterday's counts are gone)."""
        day = int(now // DAY)
        if day > self._day:
            self._day = day
            n = len(self.day_count)
            self.day_count, self.day_money = [0] * n, [0.0] * n
        return day == self._day

    def _blocked_common(self, now: float) -> tuple[list[int], list[str], list[Any]]:
        """What the budgets and traffic caps block for every row alike: the actions, the
        reasons, and the money budgets a row's own cost decides (lifetime, then daily)."""
        common: list[int] = []
        reasons: list[str] = []
        money: list[Any] = []
        budgets = [(self._budgets, self.used_count, self.used_money, "")]
        if self._daily:
            self._roll(now)
            budgets.append((self._daily, self.day_count, self.day_money, "_per_day"))
        for limits, counts, spent, per in budgets:
            for actions, label, count_limit, money_limit in limits:
                if count_limit is not None and _total(counts, actions) >= count_limit:
                    common.extend(actions)
                    reasons.append(f"budget_count{per}:{label}")
                elif money_limit is not None:
                    used = _total(spent, actions)
                    money.append((actions, used, money_limit, f"budget_money{per}:{label}"))
        if self._capped and self._ring_filled:
            for actions, label, share in self._capped:
                if all(a in common for a in actions):
                    continue  # held back by a budget already
                if _total(self.traffic_counts, actions) >= share * self._ring_filled:
                    common.extend(actions)
                    reasons.append(f"traffic_cap:{label}")
        return common, reasons, money

    def exclusions(
        self, customer_id: str, now: float, costs: Sequence[float | None]
    ) -> tuple[BoolArray, list[str]]:
        """Offers still allowed by the guardrails, and the reasons for those removed.

        Parameters
        ----------
        customer_id : str
        now : float
            Current time in seconds.
        costs : sequence of float or None, length n_actions
            Each offer's cost for this customer (None or NaN when it cannot be computed).

        Returns
        -------
        mask : array of shape (n_actions,), bool
            True where the guardrails allow the offer.
        reasons : list of str
        """
        mask = np.ones(len(self._ids), dtype=np.bool_)
        blocked, reasons = self.blocked(customer_id, now, costs)
        mask[blocked] = False
        return mask, reasons

    def blocked(
        self, customer_id: str, now: float, costs: Sequence[float | None] | FloatArray
    ) -> tuple[list[int], list[str]]:
        """Like :meth:`exclusions`, as the list of blocked offer indices (the fast path)."""
        masks = np.ones((1, len(self._ids)), dtype=np.bool_)
        reasons: list[list[str]] = [[]]
        cost_row = np.array([[math.nan if c is None else c for c in costs]], dtype=np.float64)
        self.apply_batch([customer_id], now, cost_row, masks, reasons, [False])
        return np.flatnonzero(~masks[0]).tolist(), reasons[0]

    def apply_batch(
        self,
        customer_ids: Sequence[str],
        now: float,
        costs: FloatArray,
        masks: BoolArray,
        reasons: list[list[str]],
        skip: Sequence[bool],
    ) -> None:
        """The guardrails for a batch, in place: clear ``masks`` entries and add ``reasons``.

        Rows where ``skip`` is true (the control group) are left alone. The state is read once,
        so rows of one batch do not see each other's decisions.
        """
        live = np.flatnonzero(~np.asarray(skip, dtype=np.bool_))
        if live.shape[0] == 0:
            return
        common, common_reasons, money = self._blocked_common(now)
        if common:
            masks[np.ix_(live, np.asarray(common, dtype=np.int64))] = False
            for i in live.tolist():
                reasons[i] += common_reasons
        for actions, used, limit, text in money:
            # A cost that cannot be computed (NaN) compares False: never over a budget.
            over = used + costs[np.ix_(live, actions)] > limit
            rows = np.flatnonzero(over.any(axis=1))
            if rows.shape[0]:
                for r in rows.tolist():
                    i = int(live[r])
                    masks[i, np.asarray(actions)[over[r]]] = False
                    reasons[i].append(text)
        if self._horizon > 0 and (self._history or self._group_caps):
            self._apply_caps(customer_ids, now, masks, reasons, live)

    def _apply_caps(
        self,
        customer_ids: Sequence[str],
        now: float,
        masks: BoolArray,
        reasons: list[list[str]],
        live: np.ndarray,
    ) -> None:
        """The per-customer caps: a group's own (its actions go), then the campaign's cooldown
        and frequency cap (every action but the control goes)."""
        control = self.control_index
        for i in live.tolist():
            customer = customer_ids[i]
            for actions, text, limit, window, history in self._group_caps:
                entry = history.get(customer)
                if entry is not None and (
                    sum(1 for t in _times(entry) if now - t < window) >= limit
                ):
                    masks[i, list(actions)] = False
                    reasons[i].append(text)
            entry = self._history.get(customer)
            if entry is None:
                continue
            times = _times(entry)
            if self._cooldown > 0 and now - times[-1] < self._cooldown:
                reasons[i].append("cooldown")
            elif self._max_offers is not None and (
                sum(1 for t in times if now - t < self._freq_window) >= self._max_offers
            ):
                reasons[i].append("frequency_cap")
            else:
                continue
            keep = bool(masks[i, control])
            masks[i] = False
            masks[i, control] = keep

    def record(self, customer_id: str, now: float, action: int, cost: float) -> None:
        """Account for a decision that was made (and journaled)."""
        self.record_batch([customer_id], now, [action], [cost])

    def record_batch(
        self,
        customer_ids: Sequence[str],
        now: float,
        actions: Sequence[int],
        costs: Sequence[float],
    ) -> None:
        """Account for decisions made together, in order (one call per batch)."""
        used_count, used_money = self.used_count, self.used_money
        ring, counts = self._ring, self.traffic_counts
        size = len(ring)
        pos = self._ring_pos
        for action, cost in zip(actions, costs, strict=True):
            used_count[action] += 1
            used_money[action] += cost
            old = ring[pos]
            if old >= 0:
                counts[old] -= 1
            ring[pos] = action
            counts[action] += 1
            pos += 1
            if pos == size:
                pos = 0
        self._ring_pos = pos
        self._ring_filled = min(self._ring_filled + len(actions), size)
        if self._daily and self._roll(now):
            for action, cost in zip(actions, costs, strict=True):
                self.day_count[action] += 1
                self.day_money[action] += cost
        if self._horizon > 0:
            incentive = self._incentive
            at = float(now)
            for customer_id, action in zip(customer_ids, actions, strict=True):
                if incentive[action]:
                    _add_time(self._history, customer_id, at)
                    for k in self._caps_of[action]:
                        _add_time(self._group_caps[k][4], customer_id, at)

    def restore(
        self,
        totals: dict[int, tuple[int, float]],
        recent_actions: Sequence[int],
        history: dict[str, list[tuple[float, int]]],
        day_totals: dict[int, tuple[int, float]] | None = None,
        now: float = 0.0,
    ) -> None:
        """Rebuild the state from the journal after a restart.

        Parameters
        ----------
        totals : dict of action index to (count, committed cost)
            Every decision ever made, per offer (the budgets' use).
        recent_actions : sequence of int
            Actions of the last ``traffic_window`` decisions, oldest first.
        history : dict of customer id to list of (time, action)
            Each customer's incentives within the caps' and cooldown's horizon, oldest first.
        day_totals : dict of action index to (count, committed cost), optional
            The decisions of the UTC day of ``now`` (the daily budgets' use).
        now : float
        """
        for action, (count, money) in totals.items():
            self.used_count[action] = count
            self.used_money[action] = money
        if day_totals is not None:
            self._roll(now)
            for action, (count, money) in day_totals.items():
                self.day_count[action] = count
                self.day_money[action] = money
        for action in recent_actions[-len(self._ring) :]:
            ring = self._ring
            old = ring[self._ring_pos]
            if old >= 0:
                self.traffic_counts[old] -= 1
            ring[self._ring_pos] = action
            self.traffic_counts[action] += 1
            self._ring_pos = (self._ring_pos + 1) % len(ring)
            self._ring_filled = min(self._ring_filled + 1, len(ring))
        if self._horizon > 0:
            self._history = {}
            for _, _, _, _, own in self._group_caps:
                own.clear()
            for customer, events in history.items():
                for t, action in events:
                    if self._incentive[action]:
                        _add_time(self._history, customer, float(t))
                        for k in self._caps_of[action]:
                            _add_time(self._group_caps[k][4], customer, float(t))

    def prune(self, now: float) -> int:
        """Forget per-customer history older than the cap and cooldown horizons.

        Returns the number of customers forgotten; keeps memory bounded by active customers.
        """
        if self._horizon <= 0:
            return 0
        gone = _prune(self._history, now - self._horizon)
        for _, _, _, window, own in self._group_caps:
            _prune(own, now - window)
        return gone

    def budgets(self, now: float) -> dict[str, dict[str, float | None]]:
        """Per offer or dimension value with a budget: ``used_<unit>`` and ``limit_<unit>`` for
        the units ``count``, ``money``, ``count_per_day`` and ``money_per_day`` (the day of
        ``now``); a limit is None where none is set."""
        self._roll(now)
        out: dict[str, dict[str, float | None]] = {}
        for g in self.config.groups():
            lim = g.limits
            limits = (
                lim.budget_count,
                lim.budget_money,
                lim.budget_count_per_day,
                lim.budget_money_per_day,
            )
            if all(v is None for v in limits):
                continue
            used: tuple[list[Any], ...] = (
                self.used_count,
                self.used_money,
                self.day_count,
                self.day_money,
            )
            out[g.label] = {}
            for unit, limit, counts in zip(BUDGET_UNITS, limits, used, strict=True):
                out[g.label][f"used_{unit}"] = float(_total(counts, g.actions))
                out[g.label][f"limit_{unit}"] = limit
        return out

    @property
    def horizon(self) -> float:
        """How far back (seconds) per-customer history matters."""
        return self._horizon


def _total(values: list[Any], actions: tuple[int, ...]) -> Any:
    """The sum of ``values`` over a group's actions (the value itself for one action)."""
    if len(actions) == 1:
        return values[actions[0]]
    return sum(values[a] for a in actions)


def _prune(history: dict[str, float | array[float]], cutoff: float) -> int:
    """Drop the times at or before ``cutoff`` (and customers left without any) in place."""
    gone = []
    for customer, entry in list(history.items()):
        keep = [t for t in _times(entry) if t > cutoff]
        if keep:
            history[customer] = _entry(keep)
        else:
            gone.append(customer)
    for customer in gone:
        del history[customer]
    return len(gone)


def _times(entry: float | array[float]) -> Sequence[float]:
    """A customer's incentive times, oldest first."""
    return (entry,) if type(entry) is float else entry  # type: ignore[return-value]


def _entry(times: Sequence[float]) -> float | array[float]:
    return float(times[0]) if len(times) == 1 else array("d", times)


def _add_time(history: dict[str, float | array[float]], customer_id: str, now: float) -> None:
    entry = history.get(customer_id)
    if entry is None:
        history[customer_id] = now
    elif type(entry) is float:
        history[customer_id] = array("d", (entry, now))
    else:
        entry.append(now)  # type: ignore[union-attr]

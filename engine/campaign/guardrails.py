"""Stateful guardrails: offer budgets, per-customer frequency cap and cooldown, traffic caps.

Each guardrail removes offers from the eligible set before the policy chooses, so the logged
propensity (the policy's probability under that eligible set) stays the true probability of the
logged offer: the guardrails are a deterministic function of the journal's history. Every removal
adds a reason naming the rule: ``budget_count:<offer>``, ``budget_money:<offer>``,
``traffic_cap:<offer>``, ``frequency_cap``, ``cooldown``.

- Budgets are lifetime limits per offer on the number of times it was made and on its committed
  cost (the cost computed at decision time).
- The frequency cap and the cooldown count *incentives*: decisions for any offer other than the
  campaign's control offer.
- ``max_traffic_share`` caps the share an offer takes of the last ``traffic_window`` decisions
  (all decisions count, control group included): an offer at or above its share is held back.

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

from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from engine.types import BoolArray, FloatArray

if TYPE_CHECKING:
    from engine.campaign.config import CampaignConfig


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
        # Plain lists: record() runs once per decision and list items are cheaper than numpy's.
        self.used_count = [0] * n
        self.used_money = [0.0] * n
        self._budget_count = [o.budget_count for o in config.offers]
        self._budget_money = [o.budget_money for o in config.offers]
        self._has_budgets = any(b is not None for b in self._budget_count + self._budget_money)
        self._budgets = [
            (a, c, m)
            for a, (c, m) in enumerate(zip(self._budget_count, self._budget_money, strict=True))
            if c is not None or m is not None
        ]
        self._capped = [
            (i, o.max_traffic_share)
            for i, o in enumerate(config.offers)
            if o.max_traffic_share is not None
        ]
        self._ring = [-1] * config.traffic_window
        self._ring_pos = 0
        self._ring_filled = 0
        self.traffic_counts = [0] * n
        self._max_offers = config.max_offers_per_customer
        self._freq_window = config.frequency_window if self._max_offers is not None else 0.0
        self._cooldown = config.cooldown
        self._horizon = max(self._freq_window, self._cooldown)
        # A customer's incentive times: one float (most customers: 24 bytes), or an array of
        # doubles from the second on. Neither is tracked by the garbage collector (a list per
        # customer made every full collection walk them all).
        self._history: dict[str, float | array[float]] = {}
        self._ids = config.offer_ids

    @property
    def active(self) -> bool:
        """False when no guardrail is configured (decisions can skip the checks)."""
        return self._has_budgets or bool(self._capped) or self._horizon > 0

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
        blocked: list[int] = []
        reasons: list[str] = []
        if self._has_budgets:
            for a, count_limit, money_limit in self._budgets:
                if count_limit is not None and self.used_count[a] >= count_limit:
                    blocked.append(a)
                    reasons.append(f"budget_count:{self._ids[a]}")
                    continue
                cost = costs[a]
                if money_limit is not None and cost is not None:
                    if self.used_money[a] + cost > money_limit:
                        blocked.append(a)
                        reasons.append(f"budget_money:{self._ids[a]}")
        if self._capped and self._ring_filled:
            for a, share in self._capped:
                if self.traffic_counts[a] >= share * self._ring_filled and a not in blocked:
                    blocked.append(a)
                    reasons.append(f"traffic_cap:{self._ids[a]}")
        if self._horizon > 0:
            entry = self._history.get(customer_id)
            history = None if entry is None else _times(entry)
            if history:
                limited = False
                if self._cooldown > 0 and now - history[-1] < self._cooldown:
                    reasons.append("cooldown")
                    limited = True
                elif self._max_offers is not None:
                    recent = sum(1 for t in history if now - t < self._freq_window)
                    if recent >= self._max_offers:
                        reasons.append("frequency_cap")
                        limited = True
                if limited:
                    control = self.control_index
                    blocked = [a for a in range(len(self._ids)) if a != control or a in blocked]
        return blocked, reasons

    def apply_batch(
        self,
        customer_ids: Sequence[str],
        now: float,
        costs: FloatArray,
        masks: BoolArray,
        reasons: list[list[str]],
        skip: Sequence[bool],
    ) -> None:
        """:meth:`blocked` for a batch, in place: clear ``masks`` entries and add ``reasons``.

        Rows where ``skip`` is true (the control group) are left alone. The state is read once,
        so rows of one batch do not see each other's decisions.
        """
        live = np.flatnonzero(~np.asarray(skip, dtype=np.bool_))
        if live.shape[0] == 0:
            return
        common: list[int] = []
        common_reasons: list[str] = []
        money: list[tuple[int, float]] = []
        for a, count_limit, money_limit in self._budgets:
            if count_limit is not None and self.used_count[a] >= count_limit:
                common.append(a)
                common_reasons.append(f"budget_count:{self._ids[a]}")
            elif money_limit is not None:
                money.append((a, money_limit))
        if self._capped and self._ring_filled:
            for a, share in self._capped:
                if self.traffic_counts[a] >= share * self._ring_filled and a not in common:
                    common.append(a)
                    common_reasons.append(f"traffic_cap:{self._ids[a]}")
        if common:
            masks[np.ix_(live, np.asarray(common, dtype=np.int64))] = False
            for i in live.tolist():
                reasons[i] += common_reasons
        for a, limit in money:
            over = self.used_money[a] + costs[live, a] > limit
            if over.any():
                rows = live[over]
                masks[rows, a] = False
                text = f"budget_money:{self._ids[a]}"
                for i in rows.tolist():
                    reasons[i].append(text)
        if self._horizon > 0 and self._history:
            control = self.control_index
            keep = masks[:, control].copy()
            for i in live.tolist():
                entry = self._history.get(customer_ids[i])
                if entry is None:
                    continue
                history = _times(entry)
                if self._cooldown > 0 and now - history[-1] < self._cooldown:
                    reasons[i].append("cooldown")
                elif self._max_offers is not None and (
                    sum(1 for t in history if now - t < self._freq_window) >= self._max_offers
                ):
                    reasons[i].append("frequency_cap")
                else:
                    continue
                masks[i] = False
                masks[i, control] = keep[i]

    def record(self, customer_id: str, now: float, action: int, cost: float) -> None:
        """Account for a decision that was made (and journaled)."""
        self.used_count[action] += 1
        self.used_money[action] += cost
        ring = self._ring
        pos = self._ring_pos
        old = ring[pos]
        if old >= 0:
            self.traffic_counts[old] -= 1
        ring[pos] = action
        self.traffic_counts[action] += 1
        pos += 1
        self._ring_pos = 0 if pos == len(ring) else pos
        if self._ring_filled < len(ring):
            self._ring_filled += 1
        if self._horizon > 0 and action != self.control_index:
            _add_time(self._history, customer_id, float(now))

    def record_batch(
        self,
        customer_ids: Sequence[str],
        now: float,
        actions: Sequence[int],
        costs: Sequence[float],
    ) -> None:
        """:meth:`record` for decisions made together, in order (one call per batch)."""
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
        if self._horizon > 0:
            control = self.control_index
            history = self._history
            at = float(now)
            for customer_id, action in zip(customer_ids, actions, strict=True):
                if action != control:
                    if customer_id in history:
                        _add_time(history, customer_id, at)
                    else:
                        history[customer_id] = at

    def restore(
        self,
        totals: dict[int, tuple[int, float]],
        recent_actions: Sequence[int],
        history: dict[str, list[float]],
    ) -> None:
        """Rebuild the state from the journal after a restart.

        Parameters
        ----------
        totals : dict of action index to (count, committed cost)
            Every decision ever made, per offer (the budgets' use).
        recent_actions : sequence of int
            Actions of the last ``traffic_window`` decisions, oldest first.
        history : dict of customer id to list of float
            Times of each customer's incentives within the cap/cooldown horizon, oldest first.
        """
        for action, (count, money) in totals.items():
            self.used_count[action] = count
            self.used_money[action] = money
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
            self._history = {k: _entry(v) for k, v in history.items() if v}

    def prune(self, now: float) -> int:
        """Forget per-customer history older than the cap and cooldown horizons.

        Returns the number of customers forgotten; keeps memory bounded by active customers.
        """
        if self._horizon <= 0:
            return 0
        cutoff = now - self._horizon
        gone = []
        kept: dict[str, float | array[float]] = {}
        for customer, entry in self._history.items():
            keep = [t for t in _times(entry) if t > cutoff]
            if keep:
                kept[customer] = _entry(keep)
            else:
                gone.append(customer)
        self._history = kept
        return len(gone)

    @property
    def horizon(self) -> float:
        """How far back (seconds) per-customer history matters."""
        return self._horizon


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

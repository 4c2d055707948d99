"""Rollout: the campaign's mode, its state (live or rolled back) and the watch that rolls a
worse policy back by itself (docs/architecture.md, "Rollout").

Modes (``[campaign] mode``, changed at run time by :meth:`Engine.set_mode`, the admin SetMode):

- ``online``: the policy serves everyone outside the control group; the control group gets the
  control (``control_offer``, or each request's ``baseline_offer`` with ``control =
  "baseline"``).
- ``shadow``: everyone gets the request's ``baseline_offer``; nbo's own choice and propensity
  are journaled beside it (reason ``shadow:<offer>@<propensity>``). The learner learns from the
  served outcomes; the monitor reports how often nbo agreed and what the baseline earned.
- ``logging``: the request carries the caller's probabilities of the offers; nbo samples one,
  serves it and journals its exact propensity, so a policy that is not nbo's leaves logs nbo
  can evaluate offline.

The state is ``live`` or ``rolled_back``. The leading learner watches the lift of the online
policy over the control (:mod:`engine.journal.monitor`) after every reward batch it applies;
when the anytime-valid bound's upper end falls below zero, or a rollout guardrail breaches
(mean spend per decision, a reward component), it rolls back: the campaign serves its safe mode
(``[rollout] safe_mode``: the control to everyone, or the model live before the last
promotion), logs one line with the evidence, and stays there until an admin sets a mode again.

Mode and state live in the journal (meta ``rollout``, every change appended to
``rollout_history``), so every replica serves the same mode within one upkeep tick and a
restart resumes where the campaign was.

Examples
--------
>>> from engine.core import Engine
>>> eng = Engine.from_config("examples/renewal.toml", data_dir=None, background=False)
>>> eng.rollout_state().mode, eng.rollout_state().state
('online', 'live')
>>> eng.set_mode("shadow", who="doctest").mode
'shadow'
>>> d = eng.decide("c1", {"monthly_price": 30.0, "plan": "basic"}, baseline_offer="loyalty_gift")
>>> d.offer_id, d.propensity, d.reasons[-1].startswith("shadow:")
('loyalty_gift', 1.0, True)
>>> eng.close()
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from engine.campaign.config import MODES, CampaignConfig
from engine.errors import InvalidInputError
from engine.journal.base import JournalBackend
from engine.journal.monitor import STATE_KEY, LiftMonitor, MonitorStatus

__all__ = ["MODES", "STATES", "Rollout", "RolloutState"]

STATES = ("live", "rolled_back")
HISTORY_KEY = "rollout_history"
HISTORY_KEPT = 200  # mode changes the journal remembers
_log = logging.getLogger("nbo.rollout")


@dataclass(frozen=True)
class RolloutState:
    """A campaign's mode and state, as the journal keeps them.

    Attributes
    ----------
    mode : {"online", "shadow", "logging"}
    state : {"live", "rolled_back"}
    epoch : int
        The first model version whose decisions the monitor counts.
    start : float
        Unix seconds from which decisions count (the last mode or model change).
    since : float
        Unix seconds of the change (of the rollback, for a rolled-back campaign).
    who : str
        Who made it (the admin token's caller, or ``monitor``).
    reason : str
        One line: why (for a rollback, the evidence).
    safe : str
        After a rollback, what is served: ``control`` or ``previous_model``; else empty.
    evidence : dict
        For a rollback, the monitor's status then.
    """

    mode: str = "online"
    state: str = "live"
    epoch: int = 1
    start: float = 0.0
    since: float = 0.0
    who: str = ""
    reason: str = ""
    safe: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def serves_control(self) -> bool:
        """Whether every customer gets the control now (rolled back to the control)."""
        return self.state == "rolled_back" and self.safe == "control"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> RolloutState:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RolloutState:
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


class Rollout:
    """The mode and state of one campaign, and (in the leading learner) its lift monitor.

    Parameters
    ----------
    config : CampaignConfig
    journal : JournalBackend
    epoch : int
        The live model version (the first epoch of a new journal).
    clock : callable returning unix seconds
    """

    def __init__(
        self,
        config: CampaignConfig,
        journal: JournalBackend,
        epoch: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._journal = journal
        self._clock = clock
        now = clock()
        first = RolloutState(mode=config.mode, epoch=epoch, start=now, since=now, who="config")
        # The first process to start the campaign sets its mode for every later one.
        self.state = RolloutState.from_json(journal.set_meta_once(STATE_KEY, first.to_json()))
        self._seen = self.state.to_json()
        self._monitor: LiftMonitor | None = None

    @property
    def watching(self) -> bool:
        """Whether the monitor can act: a monitored online campaign with a control group that
        is live."""
        rollout = self.config.rollout
        return (
            rollout.monitor
            and self.config.control_share > 0
            and self.state.mode == "online"
            and self.state.state == "live"
        )

    def refresh(self) -> bool:
        """Read the state the journal holds now (another process may have changed it); True
        when it changed."""
        text = self._journal.get_meta(STATE_KEY)
        if text is None or text == self._seen:
            return False
        self._seen = text
        self._follow(RolloutState.from_json(text))
        return True

    def _follow(self, state: RolloutState) -> None:
        before, self.state = self.state, state
        if self._monitor is not None and (state.epoch, state.start) != (before.epoch, before.start):
            self._monitor.restart(state.epoch, int(state.start * 1e6))

    def _store(self, state: RolloutState) -> RolloutState:
        text = state.to_json()
        history = json.loads(self._journal.get_meta(HISTORY_KEY) or "[]")
        history.append(json.loads(text))
        self._journal.set_meta(HISTORY_KEY, json.dumps(history[-HISTORY_KEPT:]))
        self._journal.set_meta(STATE_KEY, text)
        self._seen = text
        self._follow(state)
        return state

    def history(self) -> list[RolloutState]:
        """Every recorded mode change and rollback, oldest first (at most HISTORY_KEPT)."""
        raw = json.loads(self._journal.get_meta(HISTORY_KEY) or "[]")
        return [RolloutState.from_dict(item) for item in raw]

    def set_mode(self, mode: str, epoch: int, who: str = "", reason: str = "") -> RolloutState:
        """Set the mode (also resumes a rolled-back campaign); the monitor counts again from
        model version ``epoch``."""
        if mode not in MODES:
            raise InvalidInputError("mode", f"one of {', '.join(MODES)}", mode)
        resumed = self.state.state == "rolled_back"
        why = reason or ("resumed after a rollback" if resumed else f"mode set to {mode}")
        now = self._clock()
        state = RolloutState(mode=mode, epoch=epoch, start=now, since=now, who=who, reason=why)
        _log.warning(
            "campaign %s: mode %s (%s, by %s)", self.config.name, mode, why, who or "unknown"
        )
        return self._store(state)

    def new_epoch(self, epoch: int, why: str) -> None:
        """A model change (promotion, rollback): count the new model's decisions only."""
        if epoch != self.state.epoch and self.state.state == "live":
            now = self._clock()
            self._store(replace(self.state, epoch=epoch, start=now, since=now, reason=why))

    # ------------------------------------------------------------------ the watch
    def monitor(self) -> LiftMonitor:
        """The lift monitor, built from the journal on first use (the leading learner)."""
        if self._monitor is None:
            rollout = self.config.rollout
            self._monitor = LiftMonitor(
                rollout.alpha, rollout.n_star, self.state.epoch, int(self.state.start * 1e6)
            )
        return self._monitor

    def read(self) -> MonitorStatus:
        """Count the rewards journaled since the last read (all of them, the first time); the
        status now."""
        monitor = self.monitor()
        monitor.catch_up(self._journal)
        return monitor.status()

    def breach(self, status: MonitorStatus) -> str | None:
        """One line saying why the policy must stop, or None."""
        rollout = self.config.rollout
        if status.upper < 0:
            return (
                f"the policy is worse than the control: lift {status.lift:+.4g} per decision, "
                f"anytime-valid {100 * (1 - rollout.alpha):g}% bound "
                f"[{status.lower:+.4g}, {status.upper:+.4g}] over "
                f"{status.customers_treatment} + {status.customers_control} customers"
            )
        limit = rollout.max_spend_per_decision
        spend = status.spend_per_decision
        if (
            limit is not None
            and status.n_treatment >= rollout.min_decisions
            and math.isfinite(spend)
            and spend > limit
        ):
            return (
                f"spend per decision {spend:.4g} above rollout.max_spend_per_decision "
                f"{limit:g} over {status.n_treatment} rewarded decisions"
            )
        if status.n_treatment >= rollout.min_decisions:
            for name, cap in rollout.max_components:
                mean = status.components.get(name, 0.0)
                if mean > cap:
                    return (
                        f"reward component {name!r} at {mean:.4g} per decision, above "
                        f"rollout.max_components.{name} {cap:g}, over {status.n_treatment} "
                        "rewarded decisions"
                    )
        return None

    def roll_back(self, why: str, status: MonitorStatus, safe: str) -> RolloutState:
        """Switch to the safe mode ``safe`` and stay there until :meth:`set_mode`."""
        state = RolloutState(
            mode=self.state.mode,
            state="rolled_back",
            epoch=self.state.epoch,
            start=self.state.start,
            since=self._clock(),
            who="monitor",
            reason=why,
            safe=safe,
            evidence=status.to_dict(),
        )
        _log.error(
            "campaign %s: rolled back to %s: %s",
            self.config.name,
            "the control for everyone" if safe == "control" else "the previous model",
            why,
        )
        return self._store(state)

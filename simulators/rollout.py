"""Rollout on the renewal simulator: does the lift monitor stop a bad policy, and leave a good
one alone, however often it looks? (issue #16's evidence; ``python -m benchmarks.rollout``
runs the table, tests/simulators/test_rollout_evidence.py the seeded checks.)

One run streams renewal customers through an Engine on the simulated calendar (as
:mod:`simulators.engine_path` does), the backend reporting each renewal once its delay passes:

1. warm-up: the campaign's LinUCB learns online for ``warm`` customers;
2. at the switch a new monitoring epoch starts, and the scenario decides what goes live:
   ``good`` keeps the learned model; ``wrong_sign`` promotes a snapshot trained offline on
   rewards with their sign flipped (a reward pipeline bug; the warm-up's rewards, as a log
   OFFLINE_COPIES times its size); ``worst_offer`` promotes a snapshot that learned, from the
   simulator's ground truth, to give each customer its worst eligible offer. Both go on
   learning online from the true rewards after their promotion, as a promoted model does;
3. then ``after`` more customers, the monitor looking after every reward batch (the Engine has
   no upkeep thread, so each ``reward_batch`` is a look).

The run reports the customers decided between the switch and the rollback (None: never).

Examples
--------
>>> run = run_rollout(0, "worst_offer", warm=1000, after=8000, delay_days=(0.5, 3.0),
...                   control_share=0.5)
>>> run.rolled_back, run.upper < 0, run.decisions_until_rollback < 8000
(True, True, True)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from engine.campaign import load_campaign
from engine.errors import InvalidInputError
from engine.journal.sequence import MIN_CUSTOMERS
from simulators.engine_path import DEFAULT_CAMPAIGN, SimClock
from simulators.renewal import RenewalEnvironment
from simulators.runner import DelayedFeedback, streams

__all__ = ["SCENARIOS", "RolloutRun", "run_many", "run_rollout", "sabotaged_snapshot"]

SCENARIOS = ("good", "wrong_sign", "worst_offer")
#: A sabotaged snapshot learned from this many copies of the warm-up's data: trained offline on
#: a log 200 times the warm-up's size, it keeps its mistake while it goes on learning online.
OFFLINE_COPIES = 200


@dataclass(frozen=True)
class RolloutRun:
    """One run's outcome.

    Attributes
    ----------
    seed : int
    scenario : str
    rolled_back : bool
    decisions_until_rollback : int or None
        Customers decided from the switch to the rollback.
    lift, lower, upper : float
        The monitor's lift and anytime-valid bound at the rollback (or at the end).
    reason : str
        The rollback's one line ('' when none).
    fixed_alarm_at : int or None
        Customers from the switch to the first look at which a fixed-sample 95% interval
        (``lift + 1.96 se < 0``, the same minimum of customers per group) would have called the
        policy worse: what stopping on a dashboard's usual interval does (None: never).
    seconds : float
    """

    seed: int
    scenario: str
    rolled_back: bool
    decisions_until_rollback: int | None
    lift: float
    lower: float
    upper: float
    reason: str
    fixed_alarm_at: int | None
    seconds: float


def run_rollout(
    seed: int,
    scenario: str = "good",
    *,
    warm: int = 3000,
    after: int = 6000,
    batch: int = 100,
    delay_days: tuple[float, float] = (7.0, 30.0),
    control_share: float = 0.10,
    campaign: str | Path | None = None,
) -> RolloutRun:
    """Run one rollout (see the module docstring); ``delay_days`` sets how late outcomes
    arrive, ``control_share`` the control group."""
    from engine.core import Engine

    if scenario not in SCENARIOS:
        raise InvalidInputError("scenario", f"one of {', '.join(SCENARIOS)}", scenario)
    path = Path(campaign) if campaign is not None else DEFAULT_CAMPAIGN
    config = load_campaign(path)
    config = dataclasses.replace(
        config,
        control_share=control_share,
        policy={**config.policy, "seed": seed},
        salt=f"{config.salt}-{seed}",
    )
    env = RenewalEnvironment.from_campaign(path, delay_days=delay_days)
    clock = SimClock()
    rng_contexts, rng_outcomes = streams(seed)
    pending = DelayedFeedback()
    truth: dict[str, np.ndarray] = {}  # decision id -> expected net reward of every offer
    index = {o: i for i, o in enumerate(env.action_ids)}
    started = time.perf_counter()
    engine = Engine(config, None, clock=clock, background=False)
    switched_at = None
    fixed_alarm: list[int] = []
    try:
        engine.prepare()
        for start in range(0, warm + after, batch):
            if switched_at is None and start >= warm:
                _switch(engine, scenario, truth)
                switched_at = start
            rounds = env.sample_rounds(min(batch, warm + after - start), rng_contexts, start)
            clock.set_day(float(rounds.timestamps[0]))
            released = pending.release(float(rounds.timestamps[0]))
            if released is not None:
                ids, values = released
                engine.reward_batch(ids.tolist(), values.tolist())
                if switched_at is not None and not fixed_alarm:
                    _naive_look(engine, start - switched_at, fixed_alarm)
                if engine.rollout_state().state == "rolled_back":
                    return _result(
                        seed, scenario, engine, start - (switched_at or 0), started, fixed_alarm
                    )
            records = env.records(rounds.attributes)
            decided = engine.decide_batch([f"s{seed}-{c}" for c in rounds.customer_ids], records)
            actions = np.array([index[d.offer_id] for d in decided], dtype=np.int64)
            outcomes = env.draw_outcomes(rounds, actions, rng_outcomes)
            ids = np.array([d.decision_id for d in decided], dtype=object)
            if switched_at is None:
                for decision_id, row in zip(ids, rounds.expected_rewards, strict=True):
                    truth[decision_id] = row
            pending.add(rounds.timestamps + outcomes.delays, ids, outcomes.values)
        return _result(seed, scenario, engine, None, started, fixed_alarm)
    finally:
        engine.close()


def run_many(
    scenario: str, seeds: Sequence[int], workers: int = 2, **knobs: Any
) -> list[RolloutRun]:
    """:func:`run_rollout` for every seed, ``workers`` processes at a time (spawned: each
    imports the engine afresh)."""
    job = partial(run_rollout, scenario=scenario, **knobs)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(job, seeds))


def _switch(engine: Any, scenario: str, truth: dict[str, np.ndarray]) -> None:
    """Start the monitored period: keep the model (a new epoch) or promote a sabotaged one."""
    if scenario == "good":
        engine.set_mode("online", who="simulation", reason="monitored period starts")
        return
    data = sabotaged_snapshot(engine, scenario, truth)
    engine.promote_bytes(data, file_name=f"{scenario}.nbo", who="sim")


def sabotaged_snapshot(engine: Any, scenario: str, truth: dict[str, np.ndarray]) -> bytes:
    """The bytes of a snapshot of ``engine``'s campaign whose model learned the wrong thing
    (``wrong_sign``: the journal's rewards with their sign flipped; ``worst_offer``: every
    offer's true expected net reward negated, ``truth`` mapping decision ids to them), from
    OFFLINE_COPIES copies of its data."""
    from engine.journal.snapshot import encode_snapshot
    from engine.policies import make_policy

    bad = make_policy(dict(engine.config.policy), len(engine.offer_ids), engine.n_features)
    d = engine.n_features
    if scenario == "wrong_sign":
        rows = [
            r for batch in engine.journal.rewards_after(0) for r in batch if r.reward is not None
        ]
        X = np.frombuffer(b"".join(r.context for r in rows), dtype=np.float64).reshape(-1, d)
        actions = np.array([engine.offer_ids.index(r.action) for r in rows], dtype=np.int64)
        rewards = -np.array([r.reward for r in rows])
        for _ in range(OFFLINE_COPIES):
            bad.update(X, actions, rewards)
    else:  # worst_offer: every offer's true expected net reward, negated
        stored = engine.journal.lookup(list(truth))
        ids = [i for i in truth if i in stored]
        X = np.frombuffer(b"".join(stored[i].context for i in ids), dtype=np.float64)
        X = X.reshape(-1, d)
        for k in range(len(engine.offer_ids)):
            expected = np.array([truth[i][k] for i in ids])
            ok = np.isfinite(expected)
            for _ in range(OFFLINE_COPIES):
                bad.update(X[ok], np.full(int(ok.sum()), k, dtype=np.int64), -expected[ok])
    header = {
        "campaign": engine.campaign,
        "offer_ids": list(engine.offer_ids),
        "feature_names": list(engine.feature_names),
        "version": f"sabotaged-{scenario}",
        "n_rewards": 0,
        "last_reward_seq": 0,
    }
    return encode_snapshot(header, bad)


def _naive_look(engine: Any, decided: int, alarm: list[int]) -> None:
    """What a fixed-sample 95% interval says at this look (recorded once, when it first says
    "worse")."""
    status = engine.rollout_status()
    enough = min(status.customers_treatment, status.customers_control) >= MIN_CUSTOMERS
    if enough and math.isfinite(status.se) and status.lift + 1.959963984540054 * status.se < 0:
        alarm.append(decided)


def _result(
    seed: int,
    scenario: str,
    engine: Any,
    decisions: int | None,
    started: float,
    fixed_alarm: list[int],
) -> RolloutRun:
    state = engine.rollout_state()
    status = engine.rollout_status()
    evidence = state.evidence if state.state == "rolled_back" else status.to_dict()

    def num(key: str) -> float:
        value = evidence.get(key)
        return math.nan if value is None else float(value)

    return RolloutRun(
        seed=seed,
        scenario=scenario,
        rolled_back=state.state == "rolled_back",
        decisions_until_rollback=decisions,
        lift=num("lift"),
        lower=num("lower"),
        upper=num("upper"),
        reason=state.reason if state.state == "rolled_back" else "",
        fixed_alarm_at=fixed_alarm[0] if fixed_alarm else None,
        seconds=time.perf_counter() - started,
    )

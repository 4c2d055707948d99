"""Run policies on a simulated environment and measure them against the ground truth.

A run streams customers through a policy in batches: the policy chooses, outcomes are sampled, and
each outcome reaches the policy only once its delay has passed (the moment the first customer of a
later batch arrives). Every run of a given seed sees the same customers and the same outcome
noise (common random numbers), so differences between policies are not luck of the draw.

The value of a run is measured on the ground truth: the expected net reward of each chosen offer
(the realized reward is recorded too). Alongside it each run records the oracle's value, the
control's ("no incentive") and every static offer's on the same customers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.errors import InvalidInputError
from engine.policies import POLICY_NAMES, LandingLift, Policy, make_policy, policy_class
from engine.types import FloatArray, IntArray
from simulators.base import Environment, check_n_rounds

#: The make_policy spec ``nbo simulate`` starts from for each policy name: the class defaults
#: (exploration is scale-free, so they serve every environment; benchmarks/learning.py measures
#: them against a grid), with ``control`` the environment's control offer.
POLICY_DEFAULTS: dict[str, dict[str, Any]] = {
    name: {"name": "fixed" if name == "control" else name}
    for name in POLICY_NAMES
    if name != "fixed"  # simulate's name for it is "control"
}


def parse_policy(text: str) -> tuple[str, dict[str, Any]]:
    """Parse ``"linucb"`` or ``"linucb:alpha=0.5:l2=2"`` into a label and a make_policy spec.

    The spec is :data:`POLICY_DEFAULTS`' entry (the class defaults) with the parameters in the
    text.

    Examples
    --------
    >>> parse_policy("linucb:alpha=0.5")
    ('linucb:alpha=0.5', {'name': 'linucb', 'alpha': 0.5})
    >>> parse_policy("vw:args=--cb_explore_adf --epsilon 0.05")[1]
    {'name': 'vw', 'args': '--cb_explore_adf --epsilon 0.05'}
    """
    name, *pairs = text.strip().split(":")
    if name not in POLICY_DEFAULTS:
        raise InvalidInputError("policies", f"names from {sorted(POLICY_DEFAULTS)}", name)
    spec = dict(POLICY_DEFAULTS[name])
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"policies ({name})", "key=value parameters", pair)
        spec[key] = _value(raw)
    return text.strip(), spec


def _value(raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def build_policy(env: Environment, spec: dict[str, Any], seed: int) -> Policy:
    """Instantiate a policy spec for an environment (control = the environment's control offer)."""
    spec = dict(spec)
    if spec["name"] == "fixed" and "action" not in spec:
        control = env.control_action
        spec["action"] = 0 if control is None else control
    # LandingLift describes each action by its (offer, route, sends) indices, not its features
    landing = policy_class(str(spec["name"])) is LandingLift
    return make_policy(
        spec,
        n_actions=len(env.action_ids),
        n_features=len(env.feature_names),
        seed=seed,
        offer_features=_treatments(env) if landing else env.offer_features,
    )


def _treatments(env: Environment) -> Any:
    table = getattr(env, "treatments", None)
    if table is None:
        raise InvalidInputError(
            "policies",
            "the landing policy on an environment with dimensions (renewal-multi)",
            env.name,
        )
    return table


@dataclass
class RunResult:
    """Measurements of one policy on one seed; curves are cumulative totals at ``checkpoints``.

    Attributes
    ----------
    policy : str
    seed : int
    n_rounds : int
    checkpoints : list of int
        Rounds completed at each point of the curves.
    value, realized, oracle, control : list of float
        Cumulative expected net reward of the chosen offers, realized net reward, expected net
        reward of the oracle's offers and of the control offer.
    static_values : dict of str to float
        Total expected net reward had every customer received that offer (the control offer where
        it is not eligible).
    action_counts : dict of str to int
    seconds : float
    oracle_agreement : float
        Share of decisions that chose the oracle's offer.
    segment_actions : dict of str to dict of str to int
        Offers chosen per customer segment (environments with ``segments``, e.g. renewal:
        sure_thing, lost_cause, persuadable, do_not_disturb, neutral).
    path : str
        "policy" (in-process), "engine" or "grpc".
    """

    policy: str
    seed: int
    n_rounds: int
    checkpoints: list[int]
    value: list[float]
    realized: list[float]
    oracle: list[float]
    control: list[float]
    static_values: dict[str, float]
    action_counts: dict[str, int]
    seconds: float
    path: str = "policy"
    oracle_agreement: float = 0.0
    segment_actions: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunTracker:
    """Accumulates the ground-truth measurements of a run, batch by batch."""

    def __init__(self, env: Environment, n_checkpoints: int, n_rounds: int) -> None:
        self.env = env
        self.ids = env.action_ids
        k = len(self.ids)
        self.static = np.zeros(k)
        self.counts = np.zeros(k, np.int64)
        self.agree = 0
        self.segments: dict[str, np.ndarray] = {}
        self._label = getattr(env, "segments", None)
        self.totals = np.zeros(4)  # value, realized, oracle, control
        self.points: list[int] = []
        self.curves: list[np.ndarray] = []
        step = max(1, n_rounds // max(1, n_checkpoints))
        self.next_point = step
        self.step = step
        self.done = 0

    def add(self, rounds: Any, actions: IntArray, realized: FloatArray) -> None:
        exp = rounds.expected_rewards
        mask = rounds.action_mask
        rows = np.arange(rounds.n_rounds)
        control = self.env.control_action
        fallback = exp[:, control] if control is not None else np.max(exp, axis=1)
        self.static += np.where(mask, exp, fallback[:, None]).sum(axis=0)
        self.counts += np.bincount(actions, minlength=len(self.ids))
        self.agree += int(np.sum(exp[rows, actions] >= exp.max(axis=1)))
        if self._label is not None:
            labels = self._label(rounds)
            for name in np.unique(labels):
                hits = np.bincount(actions[labels == name], minlength=len(self.ids))
                self.segments[str(name)] = self.segments.get(str(name), 0) + hits
        control_value = exp[:, control] if control is not None else np.zeros(rounds.n_rounds)
        self.totals += (
            exp[rows, actions].sum(),
            realized.sum(),
            exp.max(axis=1).sum(),
            control_value.sum(),
        )
        self.done += rounds.n_rounds
        if self.done >= self.next_point:
            self.points.append(self.done)
            self.curves.append(self.totals.copy())
            while self.next_point <= self.done:
                self.next_point += self.step

    def result(self, policy: str, seed: int, seconds: float, path: str) -> RunResult:
        if not self.points or self.points[-1] != self.done:
            self.points.append(self.done)
            self.curves.append(self.totals.copy())
        c = np.array(self.curves)
        return RunResult(
            policy=policy,
            seed=seed,
            n_rounds=self.done,
            checkpoints=self.points,
            value=c[:, 0].tolist(),
            realized=c[:, 1].tolist(),
            oracle=c[:, 2].tolist(),
            control=c[:, 3].tolist(),
            static_values=dict(zip(self.ids, self.static.tolist(), strict=True)),
            action_counts=dict(zip(self.ids, self.counts.tolist(), strict=True)),
            oracle_agreement=self.agree / max(1, self.done),
            segment_actions={
                name: dict(zip(self.ids, hits.tolist(), strict=True))
                for name, hits in sorted(self.segments.items())
            },
            seconds=seconds,
            path=path,
        )


class DelayedFeedback:
    """Outcomes waiting for their delay to pass, released in arrival-time order."""

    def __init__(self) -> None:
        self._chunks: list[tuple[FloatArray, tuple[np.ndarray, ...]]] = []

    def add(self, reveal_at: FloatArray, *columns: np.ndarray) -> None:
        self._chunks.append((reveal_at, columns))

    def release(self, now: float) -> tuple[np.ndarray, ...] | None:
        ready: list[tuple[np.ndarray, ...]] = []
        keep = []
        for reveal_at, columns in self._chunks:
            due = reveal_at <= now
            if due.all():
                ready.append(columns)
            elif due.any():
                ready.append(tuple(col[due] for col in columns))
                keep.append((reveal_at[~due], tuple(col[~due] for col in columns)))
            else:
                keep.append((reveal_at, columns))
        self._chunks = keep
        if not ready:
            return None
        return tuple(np.concatenate(parts) for parts in zip(*ready, strict=True))


def streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Generators for customers and for outcome noise, both fixed by ``seed`` (shared by every
    policy run with that seed and by :func:`simulators.logged.generate_logs`)."""
    contexts, outcomes = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(contexts), np.random.default_rng(outcomes)


def run_policy(
    env: Environment,
    policy: str | dict[str, Any] | Policy,
    n_rounds: int,
    seed: int = 0,
    *,
    batch_size: int = 100,
    n_checkpoints: int = 200,
    label: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Stream ``n_rounds`` customers through a policy (in-process, batch API) with delayed rewards.

    Parameters
    ----------
    env : Environment
    policy : str, dict or Policy
        A name for :func:`parse_policy` (``"linucb"``, ``"linucb:alpha=0.5"``), a make_policy spec,
        or a ready policy (which is updated in place).
    n_rounds : int
    seed : int
        Fixes the customers, the outcome noise and the policy's own randomness.
    batch_size : int, default 100
        Customers decided together; feedback is delivered between batches.
    n_checkpoints : int, default 200
    label : str, optional
        Name recorded in the result (default: the policy text or class name).
    progress : callable, optional
        Called with the number of rounds done after each batch.

    Examples
    --------
    >>> from simulators.supervised import SupervisedEnvironment
    >>> env = SupervisedEnvironment("iris")
    >>> res = run_policy(env, "linucb", n_rounds=2000, seed=0)
    >>> res.n_rounds, res.value[-1] > 0.8 * res.oracle[-1]
    (2000, True)
    """
    n_rounds = check_n_rounds(n_rounds)
    batch_size = check_n_rounds(batch_size, "batch_size")
    if isinstance(policy, Policy):
        model, name = policy, label or type(policy).__name__
    elif isinstance(policy, str):
        name, spec = parse_policy(policy)
        model = build_policy(env, spec, seed)
    else:
        name, model = label or str(policy.get("name")), build_policy(env, policy, seed)
    rng_contexts, rng_outcomes = streams(seed)
    tracker = RunTracker(env, n_checkpoints, n_rounds)
    pending = DelayedFeedback()
    names: tuple[str, ...] = ()
    started = time.perf_counter()
    for start in range(0, n_rounds, batch_size):
        rounds = env.sample_rounds(min(batch_size, n_rounds - start), rng_contexts, start)
        released = pending.release(float(rounds.timestamps[0]))
        if released is not None:
            X, actions, rewards, props, *extra = released
            signals = dict(zip(names, extra, strict=True)) if names else None
            model.update(X, actions, rewards, props, signals=signals)
        decision = model.choose(rounds.contexts, rounds.action_mask)
        outcomes = env.draw_outcomes(rounds, decision.actions, rng_outcomes)
        names = tuple(outcomes.signals)  # the same every batch of an environment
        pending.add(
            rounds.timestamps + outcomes.delays,
            rounds.contexts,
            decision.actions,
            outcomes.rewards,
            decision.propensities,
            *(outcomes.signals[k] for k in names),
        )
        tracker.add(rounds, decision.actions, outcomes.rewards)
        if progress is not None:
            progress(rounds.n_rounds)
    return tracker.result(name, seed, time.perf_counter() - started, "policy")


def summarize(results: Sequence[RunResult]) -> dict[str, Any]:
    """Per-policy summary across seeds, plus the oracle, control and best static offer.

    Every figure is per customer; ``*_ci`` are 95% intervals across seeds (t-based; 0 with a
    single seed). ``pct_of_oracle`` = value / oracle value; ``lift_share`` = share of the oracle's
    lift over control that the policy captured.
    """
    if not results:
        raise InvalidInputError("results", "at least one run", results)
    by_seed: dict[int, RunResult] = {}
    for r in results:
        by_seed.setdefault(r.seed, r)
    oracle = {s: r.oracle[-1] / r.n_rounds for s, r in by_seed.items()}
    control = {s: r.control[-1] / r.n_rounds for s, r in by_seed.items()}
    statics = {
        s: {k: v / r.n_rounds for k, v in r.static_values.items()} for s, r in by_seed.items()
    }
    offers = list(next(iter(statics.values())))
    static_mean = {k: float(np.mean([statics[s][k] for s in statics])) for k in offers}
    best_offer = max(static_mean, key=lambda k: static_mean[k])

    def stats(values: list[float]) -> tuple[float, float]:
        arr = np.asarray(values, dtype=np.float64)
        if arr.size < 2:
            return float(arr.mean()), 0.0
        from scipy import stats as st

        half = st.t.ppf(0.975, arr.size - 1) * arr.std(ddof=1) / np.sqrt(arr.size)
        return float(arr.mean()), float(half)

    def row(per_seed: dict[int, float]) -> dict[str, float]:
        seeds = list(per_seed)
        value = [per_seed[s] for s in seeds]
        pct = [per_seed[s] / oracle[s] for s in seeds]
        lift = [per_seed[s] - control[s] for s in seeds]
        gap = [oracle[s] - control[s] for s in seeds]
        share = [lf / g if g > 0 else float("nan") for lf, g in zip(lift, gap, strict=True)]
        out: dict[str, float] = {}
        for key, vals in (
            ("value", value),
            ("pct_of_oracle", pct),
            ("lift", lift),
            ("lift_share", share),
        ):
            out[key], out[f"{key}_ci"] = stats(vals)
        return out

    policies: dict[str, Any] = {}
    for r in results:
        policies.setdefault(r.policy, {"runs": {}})["runs"][r.seed] = r
    table = {}
    for name, entry in policies.items():
        runs = entry["runs"]
        per_seed = {s: runs[s].value[-1] / runs[s].n_rounds for s in runs}
        realized = [runs[s].realized[-1] / runs[s].n_rounds for s in runs]
        table[name] = {
            **row(per_seed),
            "realized": float(np.mean(realized)),
            "regret": float(np.mean([oracle[s] - per_seed[s] for s in per_seed])),
            "seconds": float(np.mean([runs[s].seconds for s in runs])),
            "oracle_agreement": float(np.mean([runs[s].oracle_agreement for s in runs])),
            "n_seeds": len(runs),
            "path": next(iter(runs.values())).path,
        }
    return {
        "oracle": stats(list(oracle.values()))[0],
        "control": stats(list(control.values()))[0],
        "best_static": {"offer": best_offer, **row({s: statics[s][best_offer] for s in statics})},
        "static_offers": static_mean,
        "policies": table,
    }

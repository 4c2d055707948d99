"""Meta-evaluation: how well each estimator recovers a known truth, over seeds.

A *case generator* (``seed -> MetaCase``: logs, one ready-made candidate and its exact value on
those logs' customers) comes from a simulator with ground truth; :func:`meta_evaluate` runs the
full :func:`engine.replay.evaluate.evaluate` on each seed's logs (cross-fitted reward model,
every estimator, SLOPE, the intervals the report would show) and reports, per estimator, the
bias, its standard error, the RMSE, the interval's coverage of the truth and its mean width.
That table is the evidence for choosing the primary estimator.

Generators are found by name in the ``nbo.meta`` entry-point group (the engine does not import
the simulators; ``simulators.meta:renewal`` registers ``renewal``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from engine.errors import InvalidInputError
from engine.replay.candidates import Candidate, EvalConfig
from engine.replay.data import LoggedData
from engine.replay.fanout import Runner

META_GROUP = "nbo.meta"


@dataclass(frozen=True, eq=False)
class MetaCase:
    """One seed's logs, the candidate to evaluate on them and its true value on them."""

    data: LoggedData
    candidate: Candidate
    truth: float


@dataclass
class MetaResult:
    """Per-estimator errors over seeds."""

    seeds: int
    interval: str
    confidence: float
    errors: dict[str, list[float]] = field(default_factory=dict)
    covered: dict[str, list[bool]] = field(default_factory=dict)
    widths: dict[str, list[float]] = field(default_factory=dict)
    slope_choices: Counter[str] = field(default_factory=Counter)
    truths: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One row per estimator, smallest RMSE first."""
        out = []
        for name, errs in self.errors.items():
            e = np.asarray(errs)
            out.append(
                {
                    "estimator": name,
                    "bias": float(e.mean()),
                    "bias_se": float(e.std(ddof=1) / math.sqrt(e.size)) if e.size > 1 else math.nan,
                    "rmse": float(np.sqrt(np.mean(e**2))),
                    "coverage": float(np.mean(self.covered[name])),
                    "mean_width": float(np.mean(self.widths[name])),
                    "n": int(e.size),
                }
            )
        return sorted(out, key=lambda r: r["rmse"])

    def table(self) -> str:
        """The rows as a plain-text table."""
        head = f"{'estimator':<10} {'bias':>8} {'+-se':>7} {'RMSE':>8} {'coverage':>9} {'width':>8}"
        lines = [head, "-" * len(head)]
        for r in self.rows():
            lines.append(
                f"{r['estimator']:<10} {r['bias']:>8.3f} {r['bias_se']:>7.3f} {r['rmse']:>8.3f} "
                f"{r['coverage']:>9.0%} {r['mean_width']:>8.2f}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": self.seeds,
            "interval": self.interval,
            "confidence": self.confidence,
            "mean_truth": float(np.mean(self.truths)) if self.truths else None,
            "estimators": self.rows(),
            "slope_choices": dict(self.slope_choices.most_common()),
            **self.info,
        }


def find_generator(name: str) -> Callable[..., Callable[[int], MetaCase]]:
    """The case-generator factory registered as ``name`` in the ``nbo.meta`` group."""
    found = {ep.name: ep for ep in entry_points(group=META_GROUP)}
    if name not in found:
        raise InvalidInputError("--meta", f"one of {sorted(found) or ['(none installed)']}", name)
    factory: Callable[..., Callable[[int], MetaCase]] = found[name].load()
    return factory


def meta_evaluate(
    generate: Callable[[int], MetaCase],
    seeds: int,
    *,
    config: EvalConfig | None = None,
    interval: str = "bootstrap",
    alpha: float = 0.05,
    folds: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> MetaResult:
    """Evaluate ``generate(seed)`` for seeds 0..``seeds - 1`` and collect each estimator's error.

    Every seed runs in-process (the cases are small; Ray would only add start-up time).
    """
    from engine.replay.evaluate import evaluate

    if seeds < 2:
        raise InvalidInputError("--seeds", "an int >= 2 (a bias needs a spread)", seeds)
    config = config or EvalConfig()
    result = MetaResult(seeds=seeds, interval=interval, confidence=1.0 - alpha)
    runner = Runner(workers=0, progress=False)
    for seed in range(seeds):
        case = generate(seed)
        ev = evaluate(
            case.data,
            [case.candidate],
            config=EvalConfig(
                estimators=config.estimators,
                clip=config.clip,
                n_bootstrap=config.n_bootstrap,
                seed=seed,
                batch_size=config.batch_size,
            ),
            interval=interval,
            alpha=alpha,
            runner=runner,
            folds=folds,
        )
        c = next(r for r in ev.candidates if r.label == case.candidate.label)
        result.truths.append(case.truth)
        for name in c.estimates:
            low, high = c.interval(name, interval)
            result.errors.setdefault(name, []).append(c.value(name) - case.truth)
            result.covered.setdefault(name, []).append(bool(low <= case.truth <= high))
            result.widths.setdefault(name, []).append(high - low)
        result.slope_choices[c.chosen.get("slope", "none")] += 1
        if seed == 0:
            result.info = {
                "rows_per_seed": case.data.n_rounds,
                "candidate": case.candidate.label,
                "reward_model_folds": ev.info.get("reward_model_folds"),
                "cluster": ev.info.get("cluster"),
            }
        if progress is not None:
            progress(seed)
    return result

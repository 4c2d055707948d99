"""What an evaluation found: per-candidate estimates, intervals, diagnostics, and the decision."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.replay.diagnostics import Diagnostics
from engine.replay.estimators import GRIDS, SLOPE, slope
from engine.types import FloatArray

# Estimators whose value is a fitted reward model's prediction alone. Their interval measures the
# model's noise, not its bias, so a misspecified model (the linear DM on the renewal logs sits
# ~15 below every other estimator with a +-1 interval) would refuse every GO; the doubly robust
# estimators correct exactly that bias with the logged rewards. Disagreement among the others
# (IPS 94.8 vs DR 209.8 in the repro) still refuses.
MODEL_ONLY = frozenset({"dm"})
# Estimators biased by design (shrunk weights trade bias for variance, so their interval does not
# cover the bias either): DR with optimistic shrinkage at a small lambda is nearly DM, and
# subgaussian IPS pulls every weight toward 1 / lambda. Left out of the disagreement check for
# the reason DM is.
SHRUNK = frozenset({"dr-os", "sg-ips"})


@dataclass(frozen=True)
class Gate:
    """When the evidence is too weak for a GO, whatever the lower bound says.

    A candidate whose lower bound beats the logging policy is still refused when
    its estimators disagree beyond their intervals (two intervals that do not overlap; the
    model-only estimators of ``MODEL_ONLY``, the shrunk ones of ``SHRUNK`` and SLOPE's copy
    of one of them are left out of that comparison), its
    effective sample size is below ``min_ess``, its match rate (mean probability of the logged
    offer) is below ``min_match_rate``, or, when the logs have no ``eligible`` column, more
    than ``max_unseen`` of its probability goes to offers the logs never showed in a row's
    stratum (:mod:`engine.replay.support`).
    """

    min_ess: float = 100.0
    min_match_rate: float = 0.1
    max_unseen: float = 0.05

    def reasons(self, c: CandidateResult, method: str, eligibility_known: bool) -> list[str]:
        """Why ``c``'s evidence is not enough for a GO (empty: it is)."""
        out = []
        intervals = [
            (name, c.interval(name, method))
            for name in c.estimates
            if name not in MODEL_ONLY | SHRUNK
            and name != SLOPE  # a copy of one of the others
            and all(math.isfinite(v) for v in c.interval(name, method))
        ]
        for i, (name_a, (low_a, high_a)) in enumerate(intervals):
            for name_b, (low_b, high_b) in intervals[i + 1 :]:
                if high_a < low_b or high_b < low_a:
                    out.append(
                        f"estimators disagree: {name_a} [{low_a:.4g}, {high_a:.4g}] and "
                        f"{name_b} [{low_b:.4g}, {high_b:.4g}] do not overlap"
                    )
                    break
            if out:
                break
        d = c.diagnostics
        if d is not None:
            if d.ess < self.min_ess:
                out.append(f"effective sample size {d.ess:.0f} < --min-ess {self.min_ess:g}")
            if d.match_rate < self.min_match_rate:
                out.append(
                    f"matches the logged offer on {d.match_rate:.1%} of rows < --min-match-rate "
                    f"{self.min_match_rate:g}"
                )
            if not eligibility_known and d.unseen_share > self.max_unseen:
                out.append(
                    f"eligibility unknown (no eligible column) and {d.unseen_share:.1%} of its "
                    f"choices are offers never logged in that context's stratum > --max-unseen "
                    f"{self.max_unseen:g}"
                )
        return out


@dataclass(frozen=True)
class Estimate:
    """One estimator's value and intervals for one candidate."""

    value: float
    normal: tuple[float, float]
    bernstein: tuple[float, float]
    bootstrap: tuple[float, float] | None


@dataclass(frozen=True)
class LiftEstimate:
    """Candidate minus logging policy for one estimator, with a paired bootstrap interval (both
    were resampled with the same Poisson weights, so the difference's noise partly cancels)."""

    value: float
    bootstrap: tuple[float, float]


@dataclass
class CandidateResult:
    """Everything the report says about one candidate."""

    label: str
    kind: str
    spec: dict[str, Any]
    status: str = "ok"
    error: str | None = None
    estimates: dict[str, Estimate] = field(default_factory=dict)
    diagnostics: Diagnostics | None = None
    lift: dict[str, LiftEstimate] = field(default_factory=dict)
    replicates: dict[str, FloatArray] = field(default_factory=dict, repr=False)
    # What SLOPE chose: for a grid family ("dr-os") the member ("dr-os(lambda=100)"), and for
    # "slope" the estimator among all the others.
    chosen: dict[str, str] = field(default_factory=dict)
    grid: dict[str, Estimate] = field(default_factory=dict)  # every member of every grid

    def select(self, method: str) -> None:
        """Narrow each grid family to the member SLOPE picks, then pick the estimator the
        ``slope`` entry reports (:func:`engine.replay.estimators.slope`), with ``method``'s
        interval as each estimator's confidence width (estimate minus lower bound)."""
        for family in GRIDS:
            members = [k for k in self.estimates if k.startswith(f"{family}(")]
            if not members:
                continue
            pick = self._slope(members, method) or members[-1]
            for k in members:
                self.grid[k] = self.estimates.pop(k)
            self.estimates[family] = self.grid[pick]
            self.chosen[family] = pick
            if pick in self.replicates:
                self.replicates[family] = self.replicates[pick]
        best = self._slope([k for k in self.estimates if k != SLOPE], method)
        if best is None:
            return
        self.estimates[SLOPE] = self.estimates[best]
        self.chosen[SLOPE] = self.chosen.get(best, best)
        if best in self.replicates:
            self.replicates[SLOPE] = self.replicates[best]

    def _slope(self, names: list[str], method: str) -> str | None:
        estimates = {k: self.estimates[k] for k in names}
        values = {k: e.value for k, e in estimates.items()}
        widths = {k: e.value - self.interval(k, method)[0] for k, e in estimates.items()}
        return slope(values, widths)

    @property
    def warning(self) -> str | None:
        return None if self.diagnostics is None else self.diagnostics.overlap_warning

    def interval(self, estimator: str, method: str) -> tuple[float, float]:
        estimate = self.estimates.get(estimator)
        if estimate is None:
            return math.nan, math.nan
        value = getattr(estimate, method)
        return (math.nan, math.nan) if value is None else value

    def value(self, estimator: str) -> float:
        estimate = self.estimates.get(estimator)
        return math.nan if estimate is None else estimate.value


@dataclass
class Evaluation:
    """The result of :func:`evaluate`."""

    candidates: list[CandidateResult]
    primary: str
    interval: str
    alpha: float
    n_train: int
    n_test: int
    n_shards: int
    mode: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(c.status == "ok" for c in self.candidates)

    @property
    def logging(self) -> CandidateResult:
        return next(c for c in self.candidates if c.spec.get("name") == "logging")

    @property
    def logging_value(self) -> float:
        return self.logging.value(self.primary)

    def ranking(self) -> list[CandidateResult]:
        """Candidates that finished, best primary estimate first (NaN last)."""
        done = [c for c in self.candidates if c.status == "ok"]
        return sorted(done, key=lambda c: -c.value(self.primary) if c.estimates else math.inf)

    def decision(self) -> dict[str, Any]:
        """Go / no-go: promote the best candidate whose lower bound beats the logging policy."""
        logging_value = self.logging_value if self.logging.status == "ok" else math.nan
        if not self.complete:
            failed = [c.label for c in self.candidates if c.status != "ok"]
            return {
                "promote": False,
                "candidate": None,
                "reason": f"NO-GO: evaluation incomplete ({len(failed)} failed: "
                + ", ".join(failed)
                + ")",
            }
        gate = Gate(**self.info.get("gate", {}))
        known = bool(self.info.get("eligibility_known", True))
        where = " (scored on every logged row)" if self.info.get("every_row") else ""
        refused: tuple[CandidateResult, float, list[str]] | None = None
        for c in self.ranking():
            if c.kind == "baseline":
                continue
            low, _ = c.interval(self.primary, self.interval)
            if c.warning is None and low > logging_value:
                reasons = gate.reasons(c, self.interval, known)
                if reasons:
                    refused = refused or (c, low, reasons)
                    continue
                return {
                    "promote": True,
                    "candidate": c.label,
                    "reason": f"GO: {c.label} lower bound {low:.4g} > logging policy "
                    f"{logging_value:.4g} ({self.primary}, {self.interval} interval, "
                    f"{1 - self.alpha:.0%}){where}",
                }
        if refused is not None:
            c, low, reasons = refused
            return {
                "promote": False,
                "candidate": None,
                "refused": c.label,
                "reason": f"NO-GO: {c.label} lower bound {low:.4g} > logging policy "
                f"{logging_value:.4g}, but the evidence is not trustworthy: {reasons[0]}"
                + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else "")
                + where,
            }
        return {
            "promote": False,
            "candidate": None,
            "reason": f"NO-GO: no candidate's lower bound beats the logging policy "
            f"({logging_value:.4g}) with trustworthy overlap",
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes None)."""
        out = {
            "complete": self.complete,
            "decision": self.decision(),
            "primary_estimator": self.primary,
            "interval": self.interval,
            "confidence": 1.0 - self.alpha,
            "logging_value": self.logging_value,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_shards": self.n_shards,
            "mode": self.mode,
            **self.info,
            "candidates": [
                {
                    "label": c.label,
                    "kind": c.kind,
                    "spec": c.spec,
                    "status": c.status,
                    "error": c.error,
                    "estimates": {k: asdict(v) for k, v in c.estimates.items()},
                    "chosen_by_slope": c.chosen,
                    "grid": {k: asdict(v) for k, v in c.grid.items()},
                    "lift_vs_logging": {k: asdict(v) for k, v in c.lift.items()},
                    "diagnostics": None if c.diagnostics is None else asdict(c.diagnostics),
                    "overlap_warning": c.warning,
                    "gate": Gate(**self.info.get("gate", {})).reasons(
                        c, self.interval, bool(self.info.get("eligibility_known", True))
                    )
                    if c.kind != "baseline" and c.status == "ok"
                    else [],
                }
                for c in self.ranking() + [c for c in self.candidates if c.status != "ok"]
            ],
        }
        return _json_safe(out)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

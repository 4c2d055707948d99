"""What an evaluation found: per-candidate estimates, intervals, diagnostics, and the decision."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.replay.diagnostics import Diagnostics
from engine.types import FloatArray


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
        for c in self.ranking():
            if c.kind == "baseline":
                continue
            low, _ = c.interval(self.primary, self.interval)
            if c.warning is None and low > logging_value:
                return {
                    "promote": True,
                    "candidate": c.label,
                    "reason": f"GO: {c.label} lower bound {low:.4g} > logging policy "
                    f"{logging_value:.4g} ({self.primary}, {self.interval} interval, "
                    f"{1 - self.alpha:.0%})",
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
                    "lift_vs_logging": {k: asdict(v) for k, v in c.lift.items()},
                    "diagnostics": None if c.diagnostics is None else asdict(c.diagnostics),
                    "overlap_warning": c.warning,
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

"""Off-policy estimators with one interface: ``estimate`` and ``interval``.

Each estimator is a small frozen dataclass whose hyperparameters are declared in
``_parameter_constraints`` (see :mod:`engine.validation`) and checked on construction. It
turns :class:`OffPolicyInputs` (per-row reward, importance weight and reward-model predictions)
into per-row terms ``(a, b, c)`` with ``value = mean(a) + sum(b) / sum(c)``; see
:mod:`engine.replay.intervals` for why that one form serves every estimator, every interval and the
sharded Ray computation alike.

References: Li et al. 2011 (replay), Horvitz & Thompson 1952 (IPS), Swaminathan & Joachims 2015
(SNIPS), Dudík et al. 2011 (DR), Wang et al. 2017 and Su et al. 2020 (Switch-DR), Su et al.
2020 (DR with optimistic shrinkage), Metelli et al. 2021 (subgaussian IPS), Su et al. 2020 and
Tucker & Lee 2021 (SLOPE estimator selection).

Examples
--------
The estimators on one log of three rows, logged with propensity 0.5, where the target's
importance weights are 2, 0 and 2 and a reward model predicts the logged offers and the target
(``q_logged``, ``q_target``). Subgaussian IPS with no shrinkage is IPS, DR with infinite
shrinkage is DR:

>>> import numpy as np
>>> inputs = OffPolicyInputs(reward=np.array([1.0, 0.0, 3.0]), propensity=np.full(3, 0.5),
...     weight=np.array([2.0, 0.0, 2.0]), q_logged=np.array([1.0, 1.0, 2.0]),
...     q_target=np.array([1.0, 2.0, 2.0]))
>>> for estimator in (IPS(), IPS(clip=1.0), SNIPS(), SGIPS(shrinkage=0.0), SGIPS(shrinkage=0.5),
...                   DR(), DRos(shrinkage=4.0), DRos(shrinkage=float("inf"))):
...     print(f"{estimator!r:20} {estimator.estimate(inputs):.4f}")
IPS(clip=None)       2.6667
IPS(clip=1.0)        1.3333
SNIPS(clip=None)     2.0000
SGIPS(shrinkage=0.0) 2.6667
SGIPS(shrinkage=0.5) 1.7778
DR(clip=None)        2.3333
DRos(shrinkage=4.0)  2.0000
DRos(shrinkage=inf)  2.3333
>>> SGIPS(shrinkage=0.0).estimate(inputs) == IPS().estimate(inputs)
True
>>> DRos(shrinkage=float("inf")).estimate(inputs) == DR().estimate(inputs)
True
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from engine.errors import InvalidInputError
from engine.replay.intervals import (
    ClusteredMoments,
    Moments,
    Terms,
    bootstrap_columns,
    bootstrap_sums,
    percentile_interval,
)
from engine.types import FloatArray, IntArray
from engine.validation import Interval, ParameterConstraints, Real, validate_params

INTERVAL_METHODS = ("normal", "bernstein", "bootstrap")
# A weight threshold: infinity is allowed and means "never clip" (or "never switch").
_THRESHOLD = Interval(Real, 0, None, closed="right")


@dataclass(frozen=True, eq=False)
class OffPolicyInputs:
    """Per-row quantities every estimator needs, for one target policy on logged data.

    Parameters
    ----------
    reward : array of shape (n_rounds,)
        Logged rewards.
    propensity : array of shape (n_rounds,)
        Logging probability of the logged action.
    weight : array of shape (n_rounds,)
        Importance weight pi(a_logged | x) / propensity (unclipped).
    q_logged : array of shape (n_rounds,), optional
        Reward-model prediction for the logged action.
    q_target : array of shape (n_rounds,), optional
        Reward-model prediction averaged over the target policy, sum_a pi(a | x) q(x, a).
    accepted : array of shape (n_rounds,), optional
        Replay only: 1 where the event was accepted (matched and kept by rejection sampling). By
        default the expected acceptance ``weight * min(propensity)`` is used.
    """

    reward: FloatArray
    propensity: FloatArray
    weight: FloatArray
    q_logged: FloatArray | None = None
    q_target: FloatArray | None = None
    accepted: FloatArray | None = None

    @classmethod
    def from_action_dist(
        cls,
        reward: FloatArray,
        action: IntArray,
        propensity: FloatArray,
        action_dist: FloatArray,
        q_hat: FloatArray | None = None,
    ) -> OffPolicyInputs:
        """Build from the target's action distribution.

        Parameters
        ----------
        reward, propensity : array of shape (n_rounds,)
        action : array of shape (n_rounds,), int
            Logged action index.
        action_dist : array of shape (n_rounds, n_actions)
            pi(a | x) of the target policy per row (rows sum to 1). A one-hot row of a sampled
            target action gives unbiased estimates too.
        q_hat : array of shape (n_rounds, n_actions), optional
            Reward-model predictions.
        """
        rows = np.arange(action.shape[0])
        if action_dist.shape[0] != action.shape[0]:
            raise InvalidInputError("action_dist", f"{action.shape[0]} rows", action_dist.shape)
        weight = action_dist[rows, action] / propensity
        if q_hat is None:
            return cls(reward, propensity, weight)
        q_logged = q_hat[rows, action]
        q_target = np.einsum("ij,ij->i", action_dist, q_hat)
        return cls(reward, propensity, weight, q_logged, q_target)

    def __len__(self) -> int:
        return int(self.reward.shape[0])


@dataclass(frozen=True)
class Estimator(ABC):
    """Base class: subclasses define ``name``, :meth:`terms` and the constraints of their fields."""

    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = False
    _parameter_constraints: ClassVar[ParameterConstraints] = {}

    def __post_init__(self) -> None:
        params = {f.name: getattr(self, f.name) for f in fields(self)}
        validate_params(type(self).__name__, self._parameter_constraints, params)

    @property
    def key(self) -> str:
        """Name of this estimator's results: ``name``, plus the tuned parameter for the members
        of a grid (``dr-os(lambda=100)``), which the evaluation then narrows to one by SLOPE."""
        return self.name

    @abstractmethod
    def terms(self, inputs: OffPolicyInputs) -> Terms:
        """Per-row terms (a, b, c), arrays of shape (n_rounds,), with value = mean(a) + Σb / Σc.

        None stands for a constant term (a or b all zeros, c all ones), which saves passes.
        """

    def moments(self, inputs: OffPolicyInputs) -> Moments:
        if self.needs_model and (inputs.q_logged is None or inputs.q_target is None):
            raise InvalidInputError(
                "inputs", f"reward-model predictions (q_logged, q_target) for {self.name}", None
            )
        return Moments.from_terms(*self.terms(inputs), n=len(inputs))

    def estimate(self, inputs: OffPolicyInputs) -> float:
        """Estimated value of the target policy."""
        return self.moments(inputs).estimate()

    def interval(
        self,
        inputs: OffPolicyInputs,
        alpha: float = 0.05,
        method: str = "normal",
        n_bootstrap: int = 200,
        seed: int = 0,
        cluster: np.ndarray | None = None,
    ) -> tuple[float, float]:
        """Two-sided 1 - ``alpha`` confidence interval.

        Parameters
        ----------
        method : {"normal", "bernstein", "bootstrap"}
            Delta-method normal interval, empirical-Bernstein bound, or Poisson bootstrap
            percentile interval with ``n_bootstrap`` resamples.
        cluster : array of shape (n_rounds,), optional
            Each row's cluster (customer id): the interval then treats customers, not rows, as
            the independent units (cluster-robust variance; the bootstrap resamples customers).
        """
        check_alpha(alpha)
        if cluster is not None:
            clustered = ClusteredMoments.from_terms(self.terms(inputs), np.asarray(cluster))
            if method == "normal":
                return clustered.normal_interval(alpha)
            if method == "bernstein":
                return clustered.bernstein_interval(alpha)
            if method == "bootstrap":
                return clustered.bootstrap_interval(alpha, n_bootstrap, seed)
            raise InvalidInputError("method", f"one of {INTERVAL_METHODS}", method)
        if method == "normal":
            return self.moments(inputs).normal_interval(alpha)
        if method == "bernstein":
            return self.moments(inputs).bernstein_interval(alpha)
        if method == "bootstrap":
            columns, expand = bootstrap_columns([self.terms(inputs)], len(inputs))
            sums = bootstrap_sums(columns, n_bootstrap, seed, 0)
            return percentile_interval(bootstrap_values(expand(sums)[0]), alpha)
        raise InvalidInputError("method", f"one of {INTERVAL_METHODS}", method)


def bootstrap_values(sums: FloatArray) -> FloatArray:
    """Replicate values from bootstrap sums of (1, a, b, c), array of shape (n_resamples, 4)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums[:, 1] / sums[:, 0] + sums[:, 2] / sums[:, 3]


def check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError("alpha", "a number in (0, 1)", alpha)


@dataclass(frozen=True)
class _Clipping(Estimator):
    """Estimators whose importance weights are optionally clipped at ``clip``."""

    clip: float | None = None
    _parameter_constraints: ClassVar[ParameterConstraints] = {"clip": [_THRESHOLD, None]}

    def _weights(self, inputs: OffPolicyInputs) -> FloatArray:
        return inputs.weight if self.clip is None else np.minimum(inputs.weight, self.clip)


def _model_terms(inputs: OffPolicyInputs) -> tuple[FloatArray, FloatArray]:
    """The reward model's value of the target and the residual of the logged reward."""
    q_target = _require(inputs.q_target, "q_target")
    return q_target, inputs.reward - _require(inputs.q_logged, "q_logged")


@dataclass(frozen=True)
class Replay(Estimator):
    """Replay (Li et al. 2011): mean reward over the events where the target agreed with the log.

    Unbiased for learning policies on uniformly logged data; on non-uniform logs events are first
    kept with probability min(propensity) / propensity (rejection sampling), which restores it.

    Examples
    --------
    >>> import numpy as np
    >>> inputs = OffPolicyInputs(reward=np.array([1.0, 0.0, 3.0]), propensity=np.full(3, 0.5),
    ...     weight=np.zeros(3), accepted=np.array([1.0, 0.0, 1.0]))
    >>> Replay().estimate(inputs)
    2.0
    """

    name: ClassVar[str] = "replay"

    def terms(self, inputs: OffPolicyInputs) -> Terms:
        if inputs.accepted is not None:
            accepted = inputs.accepted
        else:
            accepted = inputs.weight * inputs.propensity.min()
        return None, accepted * inputs.reward, accepted


@dataclass(frozen=True)
class IPS(_Clipping):
    """Inverse propensity scoring: mean(w r), with weights optionally clipped at ``clip``
    (on the module's example log 2.6667, and 1.3333 with the weights clipped at 1)."""

    name: ClassVar[str] = "ips"

    def terms(self, inputs: OffPolicyInputs) -> Terms:
        return None, self._weights(inputs) * inputs.reward, None


@dataclass(frozen=True)
class SNIPS(_Clipping):
    """Self-normalized IPS: sum(w r) / sum(w) (on the module's example log 8 / 4 = 2)."""

    name: ClassVar[str] = "snips"

    def terms(self, inputs: OffPolicyInputs) -> Terms:
        w = self._weights(inputs)
        return None, w * inputs.reward, w


@dataclass(frozen=True)
class DM(Estimator):
    """Direct method: mean over rows of the reward model averaged over the target policy."""

    name: ClassVar[str] = "dm"
    needs_model: ClassVar[bool] = True

    def terms(self, inputs: OffPolicyInputs) -> Terms:
        q = _require(inputs.q_target, "q_target")
        return q, None, None


@dataclass(frozen=True)
class DR(_Clipping):
    """Doubly robust: mean(q_target + w (r - q_logged)), weights optionally clipped (on the
    module's example log (1 + 2 + (2 + 2 * 1)) / 3 = 2.3333)."""

    name: ClassVar[str] = "dr"
    needs_model: ClassVar[bool] = True

    def terms(self, inputs: OffPolicyInputs) -> Terms:
        q_target, residual = _model_terms(inputs)
        return q_target + self._weights(inputs) * residual, None, None


@dataclass(frozen=True)
class SNDR(_Clipping):
    """Self-normalized DR: mean(q_target) + sum(w (r - q_logged)) / sum(w)."""

    name: ClassVar[str] = "sndr"
    needs_model: ClassVar[bool] = True

    def terms(self, inputs: OffPolicyInputs) -> Terms:
        q_target, residual = _model_terms(inputs)
        w = self._weights(inputs)
        return q_target, w * residual, w


@dataclass(frozen=True)
class SwitchDR(Estimator):
    """Switch-DR: DR whose correction term is dropped where the weight exceeds ``threshold``
    (there the model alone is trusted).

    Examples
    --------
    >>> SwitchDR(threshold=0.0)
    Traceback (most recent call last):
    ...
    engine.errors.InvalidParameterError: The 'threshold' parameter of SwitchDR must be...
    """

    name: ClassVar[str] = "switch-dr"
    needs_model: ClassVar[bool] = True
    threshold: float = 50.0
    _parameter_constraints: ClassVar[ParameterConstraints] = {"threshold": [_THRESHOLD]}

    def terms(self, inputs: OffPolicyInputs) -> Terms:
        q_target, residual = _model_terms(inputs)
        w = np.where(inputs.weight <= self.threshold, inputs.weight, 0.0)
        return q_target + w * residual, None, None


# A shrinkage parameter: lambda in (0, inf], infinity is the unshrunk estimator.
_SHRINKAGE = Interval(Real, 0, None, closed="right")


@dataclass(frozen=True)
class DRos(Estimator):
    """DR with optimistic shrinkage (Su et al. 2020): weights w -> lambda w / (w^2 + lambda).

    The shrunk weight is the one minimizing a bound on the DR correction's squared bias plus
    variance; it leaves small weights almost unchanged and pulls large ones toward 0 (where the
    reward model is trusted). ``shrinkage = inf`` is plain DR. :data:`SHRINKAGE_GRID` lists the
    values an evaluation tries; SLOPE picks among them (:func:`slope`), as Open Bandit
    Pipeline's ``DoublyRobustWithShrinkageTuning`` does by default.

    On the module's example log, ``shrinkage = 4`` takes the weights 2 to 4 * 2 / (4 + 4) = 1.
    """

    name: ClassVar[str] = "dr-os"
    needs_model: ClassVar[bool] = True
    shrinkage: float = 100.0
    _parameter_constraints: ClassVar[ParameterConstraints] = {"shrinkage": [_SHRINKAGE]}

    @property
    def key(self) -> str:
        return f"{self.name}(lambda={self.shrinkage:g})"

    def terms(self, inputs: OffPolicyInputs) -> Terms:
        q_target, residual = _model_terms(inputs)
        w = inputs.weight
        if math.isfinite(self.shrinkage):
            w = self.shrinkage * w / (w * w + self.shrinkage)
        return q_target + w * residual, None, None


@dataclass(frozen=True)
class SGIPS(Estimator):
    """Subgaussian IPS (Metelli et al. 2021): weights w -> w / ((1 - lambda) + lambda w).

    The power-mean correction of the importance weight; ``shrinkage = 0`` is plain IPS, larger
    values trade a small downward bias for subgaussian tails (lower variance when weights are
    heavy). The evaluation tries :data:`SG_GRID` and SLOPE picks.

    On the module's example log, ``shrinkage = 0.5`` takes the weights 2 to 2 / 1.5.
    """

    name: ClassVar[str] = "sg-ips"
    shrinkage: float = 0.01
    _parameter_constraints: ClassVar[ParameterConstraints] = {
        "shrinkage": [Interval(Real, 0, 1, closed="both")]
    }

    @property
    def key(self) -> str:
        return f"{self.name}(lambda={self.shrinkage:g})"

    def terms(self, inputs: OffPolicyInputs) -> Terms:
        w = inputs.weight
        return None, w / ((1.0 - self.shrinkage) + self.shrinkage * w) * inputs.reward, None


#: The shrinkage values an evaluation tries for ``dr-os`` and ``sg-ips`` (SLOPE picks one).
SHRINKAGE_GRID = (1.0, 10.0, 100.0, 1000.0, math.inf)
SG_GRID = (0.0, 0.001, 0.003, 0.01, 0.03)
#: Estimator families whose results are a grid narrowed by SLOPE, and their grids.
GRIDS: dict[str, tuple[float, ...]] = {"dr-os": SHRINKAGE_GRID, "sg-ips": SG_GRID}
#: The name under which an evaluation reports the estimate SLOPE chose among the estimators.
SLOPE = "slope"
# Tucker & Lee 2021 (SLOPE++): |theta_i - theta_j| <= cnf_i + C cnf_j, C = sqrt(6) - 1.
_SLOPE_C = math.sqrt(6.0) - 1.0


def slope(values: dict[str, float], widths: dict[str, float]) -> str | None:
    """The estimator SLOPE selects (Su et al. 2020, with Tucker & Lee 2021's test).

    Estimators are ordered by confidence width, widest (the least biased, most variable) first.
    Walking down that order, estimator i is accepted when for every accepted j,
    ``|theta_i - theta_j| <= cnf_i + (sqrt(6) - 1) cnf_j``; the walk stops at the first that
    fails, and the last accepted is chosen: the narrowest estimator still consistent with every
    wider one. This is Open Bandit Pipeline's ``_tune_hyperparam_with_slope`` rule, with
    ``cnf`` the distance from the estimate to its interval's lower bound.

    Parameters
    ----------
    values, widths : dict of str to float
        Each estimator's estimate and ``cnf``; those with a non-finite value or width are left
        out. None when none is left.

    Examples
    --------
    >>> slope({"ips": 10.0, "dr": 10.5, "dm": 14.0}, {"ips": 2.0, "dr": 1.0, "dm": 0.2})
    'dr'
    >>> slope({"ips": 10.0, "dr": 10.5, "dm": 11.0}, {"ips": 2.0, "dr": 1.0, "dm": 0.2})
    'dm'
    """
    names = [
        n for n in values if math.isfinite(values[n]) and math.isfinite(widths.get(n, math.nan))
    ]
    if not names:
        return None
    order = sorted(names, key=lambda n: -widths[n])  # stable: ties keep the given order
    accepted: list[str] = []
    for name in order:
        theta, cnf = values[name], widths[name]
        if accepted and not all(
            abs(values[j] - theta) <= cnf + _SLOPE_C * widths[j] for j in accepted
        ):
            break
        accepted.append(name)
    return accepted[-1]


def _require(value: FloatArray | None, name: str) -> FloatArray:
    if value is None:
        raise InvalidInputError("inputs", f"{name} (reward-model predictions)", None)
    return value


ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (Replay, IPS, SNIPS, DM, DR, SNDR, SwitchDR, DRos, SGIPS)
}


def make_estimators(
    names: list[str] | tuple[str, ...], clip: float | None = None
) -> list[Estimator]:
    """Estimators by name (``replay``, ``ips``, ``snips``, ``dm``, ``dr``, ``sndr``,
    ``switch-dr``, ``dr-os``, ``sg-ips``); ``clip`` applies to those that clip weights (Switch-DR
    uses it as its threshold). ``dr-os`` and ``sg-ips`` give one estimator per point of their
    grid (:data:`GRIDS`).

    Examples
    --------
    >>> [e.name for e in make_estimators(["ips", "dr"], clip=10.0)]
    ['ips', 'dr']
    >>> [e.key for e in make_estimators(["dr-os"])][:2]
    ['dr-os(lambda=1)', 'dr-os(lambda=10)']
    """
    out: list[Estimator] = []
    for name in names:
        cls = ESTIMATORS.get(name)
        if cls is None:
            raise InvalidInputError("estimator", f"one of {sorted(ESTIMATORS)}", name)
        if cls in (IPS, SNIPS, DR, SNDR):
            out.append(cls(clip=clip))
        elif cls is SwitchDR:
            out.append(SwitchDR(threshold=clip) if clip is not None else SwitchDR())
        elif cls is DRos:
            out.extend(DRos(shrinkage=v) for v in SHRINKAGE_GRID)
        elif cls is SGIPS:
            out.extend(SGIPS(shrinkage=v) for v in SG_GRID)
        else:
            out.append(cls())
    return out

"""Contextual policies over disjoint per-offer ridge regressions: LinUCB, LinearTS, EpsilonGreedy
and Softmax.

Each offer ``a`` keeps A_a = l2 I + sum w x x^T, b_a = sum w r x and theta_a = A_a^-1 b_a; the
policies differ only in how they turn (theta_a . x, sqrt(x^T A_a^-1 x)) into a choice.

Exploration is measured in units of the reward noise (docs/architecture.md, "Scale-free
exploration"): the bonus, the posterior draw and the temperature are multiplied by the models'
estimate of the noise's deviation, sigma, so the same ``alpha``, ``scale`` or ``temperature``
explores alike whether rewards are 0/1 clicks or renewals worth hundreds. With ``noise="auto"``
(the default) sigma^2 = sum_a (r_a'r_a - theta_a . b_a) / sum_a n_a over every offer's rows: the
residual of the ridge fits, which is the posterior mean of sigma^2 in a Bayesian linear model with
prior theta ~ N(0, sigma^2 / l2 I) under a flat noise prior. Before the first reward sigma = 1.
A number fixes sigma (``noise=1.0``: the absolute widths of the classic formulas).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from engine.errors import InvalidParameterError
from engine.kernels import (
    choose_softmax,
    gaussian_thompson_draws,
    gaussian_thompson_propensities,
    ridge_choose_greedy,
    ridge_predict,
    ridge_update,
)
from engine.kernels.ridge import (
    pooled_noise,
    refactor,
    ridge_choose_one,
    ridge_choose_softmax_one,
    ridge_update_one,
)
from engine.policies.base import Decision, Policy
from engine.policies.rows import over_rows, row_threads
from engine.types import BoolArray, FloatArray, IntArray
from engine.validation import (
    VALUE_LIMIT,
    Boolean,
    Integral,
    Interval,
    Options,
    ParameterConstraints,
    Real,
)

POSITIVE = Interval(Real, 0, None, closed="neither")
NON_NEGATIVE = Interval(Real, 0, None, closed="left")
COUNT = Interval(Integral, 1, None, closed="left")
#: ``noise`` and VW's ``reward_scale``: "auto" (estimated from the rewards) or a fixed number.
AUTO_OR_POSITIVE = [POSITIVE, Options(str, {"auto"})]
#: Class defaults of the exploration knobs, in units of the noise deviation (benchmarks/learning.py
#: measures them against a grid on every bundled environment).
ALPHA = 1.0
SCALE = 0.3
TEMPERATURE = 0.03
#: Smallest noise deviation used (rewards all equal so far: exploration stays defined).
_MIN_NOISE = 1e-12
#: Rows per thread below which a batch's Thompson-sampling propensities are estimated in one
#: call (``over_rows``): about 2 ms of work at K=10, d=32, against ~50 us to hand a range to
#: another thread. (Scoring is not split: two threads scored no faster than one on this
#: project's machine, docs/performance.md.)
_PROPENSITY_ROWS = 128


def auto_or_float(noise: float | str) -> float | str:
    """A value of an :data:`AUTO_OR_POSITIVE` parameter as stored: "auto" or a float."""
    return noise if isinstance(noise, str) else float(noise)


class RidgeModels(Policy, base=True):
    """Ridge models (A, A^-1, b, theta per model) and their weighted rank-1 learning: one model
    per offer for the policies below, one joint model for SharedLinear."""

    _state_arrays = ("A_", "A_inv_", "b_", "theta_", "n_since_refactor_", "n_obs_", "rr_")
    # What removed offers' models contributed to the noise estimate (so removing an offer leaves
    # the others' exploration as it was).
    _state_scalars: ClassVar[tuple[str, ...]] = ("retired_residual_", "retired_weight_")
    _parameter_constraints: ClassVar[ParameterConstraints] = {
        **Policy._parameter_constraints,
        "l2": [POSITIVE],
        "importance_weighting": [Boolean()],
        "refactor_every": [COUNT],
    }
    #: Whether ``choose_one`` may run as one compiled call (``_choose_one``): it mirrors the
    #: ``_choose`` of the class that defines both, so a subclass that checks or chooses
    #: differently takes the generic path.
    _one_choice: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._one_choice = (
            cls._check_contexts is Policy._check_contexts
            and cls.choose is Policy.choose
            and _owner(cls, "_choose") is _owner(cls, "_choose_one") is not RidgeModels
        )

    def choose_one(self, context: Any, action_mask: Any = None) -> tuple[int, float]:
        """As :meth:`Policy.choose_one`, in one compiled call when the input is already a
        float64 row and a bool mask (any other input, or a bad one, takes the generic path,
        which converts it or raises the error that names the field)."""
        if self._one_choice and _is_row(context, self.n_features):
            mask = _compiled_mask(action_mask, self._all_eligible)
            if mask is not None:
                action, propensity = self._choose_one(context, mask)
                if action >= 0:
                    return action, propensity
        return super().choose_one(context, action_mask)

    def _choose_one(self, x: FloatArray, mask: BoolArray) -> tuple[int, float]:
        """The compiled choice for one row: ``(action, propensity)``, action -1 for the generic
        path."""
        return -1, 0.0

    def _init_ridge(
        self,
        n_models: int,
        dim: int,
        l2: float,
        importance_weighting: bool,
        refactor_every: int,
    ) -> None:
        self.l2 = float(l2)
        self.importance_weighting = bool(importance_weighting)
        self.refactor_every = int(refactor_every)
        self.A_ = np.repeat((np.eye(dim) * self.l2)[None], n_models, axis=0)
        self.A_inv_ = np.repeat((np.eye(dim) / self.l2)[None], n_models, axis=0)
        self.b_ = np.zeros((n_models, dim))
        self.theta_ = np.zeros((n_models, dim))
        self.n_since_refactor_ = np.zeros(n_models, np.int64)
        self.n_obs_ = np.zeros(n_models)
        self.rr_ = np.zeros(n_models)  # sum w r^2 per model: the noise estimate's residuals
        self.retired_residual_ = 0.0
        self.retired_weight_ = 0.0

    @classmethod
    def _upgrade_saved(
        cls, params: dict[str, Any], scalars: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> None:
        """Blobs saved before scale-free exploration hold no ``rr_`` and no ``noise``: they keep
        the absolute widths they were trained with (noise 1.0)."""
        if "rr_" not in arrays and "n_obs_" in arrays:
            arrays["rr_"] = np.zeros_like(arrays["n_obs_"])
            scalars.setdefault("retired_residual_", 0.0)
            scalars.setdefault("retired_weight_", 0.0)
            if "noise" in cls._parameter_constraints:
                params.setdefault("noise", 1.0)

    def noise_level(self) -> float:
        """The reward noise deviation sigma that exploration is measured in: ``noise`` when it
        is a number; with "auto" the pooled residual deviation of the ridge fits (1.0 before any
        reward; see the module docstring)."""
        noise = getattr(self, "noise", "auto")
        if not isinstance(noise, str):
            return float(noise)
        return float(
            pooled_noise(
                self.rr_,
                self.theta_,
                self.b_,
                self.n_obs_,
                self.retired_residual_,
                self.retired_weight_,
                _MIN_NOISE,
            )
        )

    def _remove_action(self, index: int) -> None:
        # The removed model's residual sum of squares, r'r - theta . b, stays in the estimate.
        self.retired_residual_ += float(self.rr_[index] - self.theta_[index] @ self.b_[index])
        self.retired_weight_ += float(self.n_obs_[index])
        super()._remove_action(index)

    def _learn(
        self, Z: FloatArray, models: IntArray, rewards: FloatArray, props: FloatArray | None
    ) -> None:
        """One weighted observation per row of ``Z`` for model ``models[i]`` (1/propensity when
        importance weighting, else 1)."""
        if self.importance_weighting and props is not None:
            weights = 1.0 / props
        else:
            weights = np.ones(Z.shape[0])
        ridge_update(
            self.A_,
            self.A_inv_,
            self.b_,
            self.theta_,
            self.n_since_refactor_,
            self.n_obs_,
            self.rr_,
            Z,
            models,
            rewards,
            weights,
            self.refactor_every,
        )


#: The constraints of an upper-confidence policy over ridge models (LinUCB, SharedLinear): the
#: models' own, the bonus width ``alpha`` and the noise deviation ``noise``.
UCB_CONSTRAINTS: ParameterConstraints = {
    **RidgeModels._parameter_constraints,
    "alpha": [NON_NEGATIVE],
    "noise": AUTO_OR_POSITIVE,
}


@dataclass(frozen=True, eq=False)
class RidgeStatistics:
    """Additive sufficient statistics of per-offer ridge learning from a batch of rows.

    ``xx[a] = sum w x x^T``, ``xr[a] = sum w r x``, ``rr[a] = sum w r^2`` and ``weight[a] = sum w``
    over the rows that logged offer ``a`` (w = 1/propensity with importance weighting, else 1);
    ``rows`` counts every row. Statistics of disjoint batches add (``+``), so a policy can be
    trained shard by shard: :meth:`_RidgePolicy.add_statistics` of the sum equals ``update`` on
    all rows (A and b up to summation order; theta and A^-1 recomputed exactly from them).
    """

    xx: FloatArray  # (n_actions, d, d)
    xr: FloatArray  # (n_actions, d)
    weight: FloatArray  # (n_actions,)
    rows: int
    rr: FloatArray  # (n_actions,)

    def __add__(self, other: RidgeStatistics) -> RidgeStatistics:
        # Every field is a sum over rows: the statistics of two batches add field by field.
        return RidgeStatistics(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )


def _owner(cls: type, name: str) -> type:
    """The class of ``cls``'s method resolution order that defines ``name``."""
    return next(k for k in cls.__mro__ if name in vars(k))


class _RidgePolicy(RidgeModels):
    """Shared state and learning of the per-offer ridge policies."""

    #: Whether ``update_one`` may run as one compiled call (``choose_one``: see
    #: :class:`RidgeModels`): a subclass that checks or learns differently (RandomFourierUCB maps
    #: its contexts first) takes the generic path, for its choice too.
    _one_compiled: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._one_compiled = (
            cls._check_contexts is Policy._check_contexts
            and cls._check_rewards is Policy._check_rewards
            and cls.update is Policy.update
            and cls._update is _RidgePolicy._update
        )
        cls._one_choice = cls._one_choice and cls._one_compiled

    # ------------------------------------------------------------------ one event
    def update_one(self, context: Any, action: Any, reward: Any, propensity: Any = None) -> None:
        """As :meth:`Policy.update_one`, in one compiled call when the input is a float64 row, an
        int action and real numbers (otherwise, or when refused, the generic path raises the
        error that names the field; nothing is learned from a refused event)."""
        if (
            self._one_compiled
            and _is_row(context, self.n_features)
            and isinstance(action, (int, np.integer))  # a tuple: faster than a union
            and not isinstance(action, bool)
            and 0 <= action < self.n_actions  # also keeps huge ints out of the int64 kernel
            and isinstance(reward, (float, np.floating))
            and (propensity is None or (isinstance(propensity, float) and 0.0 < propensity <= 1.0))
        ):
            weight = 1.0
            if self.importance_weighting and propensity is not None:
                weight = 1.0 / propensity
            applied = ridge_update_one(
                self.A_,
                self.A_inv_,
                self.b_,
                self.theta_,
                self.n_since_refactor_,
                self.n_obs_,
                self.rr_,
                context,
                int(action),
                float(reward),
                weight,
                self.refactor_every,
                VALUE_LIMIT,
            )
            if applied == 0:
                self.n_updates_ += 1
                return
        super().update_one(context, action, reward, propensity)

    def _greedy_one(
        self, x: FloatArray, mask: BoolArray, alpha: float, epsilon: float
    ) -> tuple[int, float]:
        return ridge_choose_one(
            x,
            self.theta_,
            self.A_inv_ if alpha > 0.0 else self._no_widths,
            alpha,
            mask,
            epsilon,
            self.min_propensity,
            0,
            self.rng_state_,
            VALUE_LIMIT,
        )

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        *,
        l2: float = 1.0,
        min_propensity: float = 0.0,
        importance_weighting: bool = False,
        refactor_every: int = 1000,
        seed: int | None = None,
    ) -> None:
        super().__init__(n_actions, n_features, min_propensity=min_propensity, seed=seed)
        self._init_ridge(self.n_actions, self.n_features, l2, importance_weighting, refactor_every)
        self._no_widths = np.empty((0, self.n_features, self.n_features))

    def _new_action_state(self, name: str) -> np.ndarray:
        d = self.n_features
        if name == "A_":
            return (np.eye(d) * self.l2)[None]
        if name == "A_inv_":
            return (np.eye(d) / self.l2)[None]
        return super()._new_action_state(name)

    def _update(
        self, X: FloatArray, actions: IntArray, rewards: FloatArray, props: FloatArray | None
    ) -> None:
        self._learn(X, actions, rewards, props)

    def sufficient_statistics(
        self, contexts: Any, actions: Any, rewards: Any, propensities: Any = None
    ) -> RidgeStatistics:
        """What :meth:`update` would add to the per-offer models from these rows, as
        :class:`RidgeStatistics` (the policy itself is left unchanged)."""
        from engine.policies.base import _check_actions, _check_propensities, _check_values

        X = self._check_contexts(contexts)
        n, d = X.shape
        a = _check_actions(actions, n, self.n_actions)
        r = _check_values("rewards", rewards, n)
        p = None if propensities is None else _check_propensities(propensities, n)
        self._check_rewards(r)
        weighted = self.importance_weighting and p is not None
        w = 1.0 / p if weighted and p is not None else np.ones(n)
        xx = np.zeros((self.n_actions, d, d))
        xr = np.zeros((self.n_actions, d))
        weight = np.zeros(self.n_actions)
        rr = np.zeros(self.n_actions)
        # One stable sort and one copy group the rows by offer into contiguous blocks.
        order = np.argsort(a, kind="stable")
        bounds = np.searchsorted(a[order], np.arange(self.n_actions + 1))
        Xs, ws, rs = X[order], w[order], r[order]
        for k in range(self.n_actions):
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            if hi > lo:
                Xk, wk = Xs[lo:hi], ws[lo:hi]
                xx[k] = (Xk * wk[:, None]).T @ Xk if weighted else Xk.T @ Xk
                xr[k] = Xk.T @ (wk * rs[lo:hi])
                rr[k] = wk @ (rs[lo:hi] * rs[lo:hi])
                weight[k] = wk.sum()
        return RidgeStatistics(xx, xr, weight, n, rr)

    def add_statistics(self, stats: RidgeStatistics) -> None:
        """Learn from rows summarised by :meth:`sufficient_statistics` (of one or many batches,
        added): A and b grow by them, then every model's A^-1 and theta are recomputed from A
        and b (the exact refactorization that ``update`` runs every ``refactor_every`` rows)."""
        if stats.xx.shape != self.A_.shape or stats.xr.shape != self.b_.shape:
            raise InvalidParameterError(
                type(self).__name__,
                "stats",
                f"statistics of shape {self.A_.shape} / {self.b_.shape}",
                f"{stats.xx.shape} / {stats.xr.shape}",
            )
        if stats.rows == 0:
            return
        self.A_ += stats.xx
        self.b_ += stats.xr
        self.n_obs_ += stats.weight
        self.rr_ += stats.rr
        for k in range(self.n_actions):
            refactor(self.A_, self.A_inv_, self.b_, self.theta_, k)
        self.n_since_refactor_[:] = 0
        self.n_updates_ += int(stats.rows)

    def _predict(self, X: FloatArray, alpha: float, widths: bool) -> tuple[FloatArray, FloatArray]:
        n = X.shape[0]
        scores = np.empty((n, self.n_actions))
        w = np.empty((n, self.n_actions)) if widths else scores
        ridge_predict(X, self.theta_, self.A_inv_ if widths else self._no_widths, alpha, scores, w)
        return scores, w

    def _greedy(self, X: FloatArray, mask: BoolArray, alpha: float, epsilon: float) -> Decision:
        n = X.shape[0]
        scores = np.empty((n, self.n_actions))
        actions, props, explored = self._outputs(n)
        ridge_choose_greedy(
            X,
            self.theta_,
            self.A_inv_ if alpha > 0.0 else self._no_widths,
            alpha,
            mask,
            epsilon,
            self.min_propensity,
            self.rng_state_,
            scores,
            actions,
            props,
            explored,
        )
        return Decision(actions, props, scores, explored)

    def predict_mean(self, contexts: Any) -> FloatArray:
        """Estimated mean reward of every action, array of shape (n_rounds, n_actions)."""
        X = self._check_contexts(contexts)
        return self._predict(X, 0.0, widths=False)[0]


class LinUCB(_RidgePolicy):
    """Disjoint LinUCB (Li et al., 2010): choose argmax theta_a . x + alpha sqrt(x^T A_a^-1 x).

    The choice is deterministic given the model; with ``min_propensity`` > 0 every eligible
    action keeps that probability (exactly), so logs stay usable for off-policy evaluation.

    Parameters
    ----------
    n_actions : int
    n_features : int
    alpha : float, default 1.0
        Width of the confidence bonus (>= 0), in units of the reward noise's deviation: the
        bonus is alpha sigma sqrt(x^T A_a^-1 x), alpha posterior deviations of the mean.
    l2 : float, default 1.0
        Ridge penalty (> 0); the prior precision of every offer's model.
    noise : float or "auto", default "auto"
        The noise deviation sigma: estimated from the rewards ("auto", see the module
        docstring), or fixed (1.0: the absolute width of Li et al.).
    min_propensity : float, default 0.0
        Exploration floor: each eligible action is chosen with probability >= min(floor, 1/k).
    importance_weighting : bool, default False
        Weight each update by 1 / propensity (off-policy training on logs).
    refactor_every : int, default 1000
        Updates of an offer between two exact refactorizations of its inverse.
    seed : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> from engine.policies import LinUCB
    >>> policy = LinUCB(n_actions=3, n_features=2, alpha=0.5, seed=0)
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> policy.update(X, [2, 1], [1.0, 0.5])
    >>> d = policy.choose(X)
    >>> d.actions.tolist(), d.propensities.tolist()
    ([2, 1], [1.0, 1.0])
    """

    _parameter_constraints: ClassVar[ParameterConstraints] = dict(UCB_CONSTRAINTS)

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        alpha: float = ALPHA,
        l2: float = 1.0,
        noise: float | str = "auto",
        min_propensity: float = 0.0,
        importance_weighting: bool = False,
        refactor_every: int = 1000,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            n_actions,
            n_features,
            l2=l2,
            min_propensity=min_propensity,
            importance_weighting=importance_weighting,
            refactor_every=refactor_every,
            seed=seed,
        )
        self.alpha = float(alpha)
        self.noise = auto_or_float(noise)

    @classmethod
    def _unit_test_params(cls, n_actions: int, n_features: int) -> dict[str, Any]:
        return {"alpha": 0.5, "min_propensity": 0.02}

    def _greedy_knobs(self) -> tuple[float, float]:
        return (self.alpha * self.noise_level() if self.alpha > 0.0 else 0.0), 0.0

    def _choose(self, X: FloatArray, mask: BoolArray) -> Decision:
        return self._greedy(X, mask, *self._greedy_knobs())

    def _choose_one(self, x: FloatArray, mask: BoolArray) -> tuple[int, float]:
        return self._greedy_one(x, mask, *self._greedy_knobs())


class LinearTS(_RidgePolicy):
    """Linear Thompson sampling (Agrawal and Goyal, 2013) with per-offer Gaussian posteriors.

    Each offer's weights are drawn from N(theta_a, scale^2 A_a^-1); the sampled score x . theta_a
    is then exactly N(theta_a . x, scale^2 x^T A_a^-1 x), so one normal draw per offer suffices.

    Propensities: the probability that the chosen offer wins the draw is a one-dimensional
    integral (the other offers' draws are independent given x) of an increasing integrand,
    computed by an adaptive trapezoid rule whose error is certified: at most 1/M on every single
    row, M = ``propensity_draws`` (M = 128: <= 0.0079; in practice far smaller). The rule refines
    only where the integrand rises, so a row whose winner is clear costs a dozen points instead of
    M; it draws no random numbers (its approximate normal quantile moves each point by at most
    3e-10 and its tabulated normal CDF adds at most 6e-12 per offer).
    The floor mixture is then applied exactly. The draws are made
    in row order; a large batch's propensities are estimated on every core (``over_rows``),
    with the same result as on one.

    Parameters
    ----------
    n_actions, n_features : int
    scale : float, default 0.3
        Exploration scale of the posterior (> 0): draws from N(theta_a, (scale sigma)^2 A_a^-1),
        sigma the reward noise's deviation (scale 1: the Bayesian posterior).
    noise : float or "auto", default "auto"
        As for :class:`LinUCB`.
    propensity_draws : int, default 128
        M, the propensity estimate's error bound 1/M (the rule needs at most about M/2 points
        per row, and far fewer where the winner is clear).
    l2, min_propensity, importance_weighting, refactor_every, seed
        As for :class:`LinUCB`.

    Examples
    --------
    >>> import numpy as np
    >>> from engine.policies import LinearTS
    >>> policy = LinearTS(n_actions=2, n_features=1, scale=0.1, seed=0)
    >>> policy.update(np.ones((50, 1)), np.zeros(50, dtype=int), np.ones(50))
    >>> d = policy.choose(np.ones((1, 1)))
    >>> int(d.actions[0]), bool(d.propensities[0] > 0.99)
    (0, True)
    """

    _parameter_constraints: ClassVar[ParameterConstraints] = {
        **RidgeModels._parameter_constraints,
        "scale": [POSITIVE],
        "propensity_draws": [COUNT],
        "noise": AUTO_OR_POSITIVE,
    }

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        scale: float = SCALE,
        l2: float = 1.0,
        noise: float | str = "auto",
        min_propensity: float = 0.0,
        propensity_draws: int = 128,
        importance_weighting: bool = False,
        refactor_every: int = 1000,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            n_actions,
            n_features,
            l2=l2,
            min_propensity=min_propensity,
            importance_weighting=importance_weighting,
            refactor_every=refactor_every,
            seed=seed,
        )
        self.scale = float(scale)
        self.propensity_draws = int(propensity_draws)
        self.noise = auto_or_float(noise)

    @classmethod
    def _unit_test_params(cls, n_actions: int, n_features: int) -> dict[str, Any]:
        return {"scale": 0.5, "min_propensity": 0.02}

    def _choose(self, X: FloatArray, mask: BoolArray) -> Decision:
        means, widths = self._predict(X, 0.0, widths=True)
        widths *= self.scale * self.noise_level()
        n = X.shape[0]
        scores = np.empty((n, self.n_actions))
        actions, props, explored = self._outputs(n)
        floor, n_draws = self.min_propensity, self.propensity_draws
        threads = row_threads(n, _PROPENSITY_ROWS)  # before the draws: it may raise
        # The draws use the random state in row order; the propensities draw nothing and are
        # estimated on every core.
        gaussian_thompson_draws(
            means, widths, mask, floor, self.rng_state_, scores, actions, explored
        )

        def rows(start: int, stop: int) -> None:
            gaussian_thompson_propensities(
                means[start:stop],
                widths[start:stop],
                mask[start:stop],
                floor,
                n_draws,
                actions[start:stop],
                props[start:stop],
            )

        over_rows(rows, n, threads)
        return Decision(actions, props, scores, explored)

    def _choose_one(self, x: FloatArray, mask: BoolArray) -> tuple[int, float]:
        return ridge_choose_one(
            x,
            self.theta_,
            self.A_inv_,
            self.scale * self.noise_level(),
            mask,
            0.0,
            self.min_propensity,
            self.propensity_draws,
            self.rng_state_,
            VALUE_LIMIT,
        )


class EpsilonGreedy(_RidgePolicy):
    """Epsilon-greedy over per-offer ridge regressions.

    With probability epsilon_t an eligible offer is drawn uniformly, else the best predicted one;
    epsilon_t = epsilon / (1 + decay * t) after t updates. Propensities are exact:
    f + (1 - k f) [a is best] with f = max(epsilon_t / k, min_propensity).

    Examples
    --------
    >>> import numpy as np
    >>> from engine.policies import EpsilonGreedy
    >>> policy = EpsilonGreedy(n_actions=4, n_features=1, epsilon=0.2, seed=0)
    >>> policy.update(np.ones((1, 1)), [3], [1.0])
    >>> d = policy.choose(np.ones((1, 1)))
    >>> sorted({round(p, 3) for p in policy.choose(np.ones((200, 1))).propensities.tolist()})
    [0.05, 0.85]
    """

    _parameter_constraints: ClassVar[ParameterConstraints] = {
        **RidgeModels._parameter_constraints,
        "epsilon": [Interval(Real, 0, 1, closed="both")],
        "decay": [NON_NEGATIVE],
    }

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        epsilon: float = 0.1,
        decay: float = 0.0,
        l2: float = 1.0,
        min_propensity: float = 0.0,
        importance_weighting: bool = False,
        refactor_every: int = 1000,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            n_actions,
            n_features,
            l2=l2,
            min_propensity=min_propensity,
            importance_weighting=importance_weighting,
            refactor_every=refactor_every,
            seed=seed,
        )
        self.epsilon = float(epsilon)
        self.decay = float(decay)

    @classmethod
    def _unit_test_params(cls, n_actions: int, n_features: int) -> dict[str, Any]:
        return {"epsilon": 0.2}

    @property
    def current_epsilon(self) -> float:
        """epsilon / (1 + decay * n_updates_)."""
        return self.epsilon / (1.0 + self.decay * self.n_updates_)

    def _greedy_knobs(self) -> tuple[float, float]:
        return 0.0, self.current_epsilon

    def _choose(self, X: FloatArray, mask: BoolArray) -> Decision:
        return self._greedy(X, mask, *self._greedy_knobs())

    def _choose_one(self, x: FloatArray, mask: BoolArray) -> tuple[int, float]:
        return self._greedy_one(x, mask, *self._greedy_knobs())


class Softmax(_RidgePolicy):
    """Boltzmann exploration over per-offer ridge regressions: p(a) proportional to
    exp(theta_a . x / (temperature sigma)), sigma the reward noise's deviation (``noise``, as for
    :class:`LinUCB`), mixed with the floor. Propensities are exact.

    Parameters
    ----------
    n_actions, n_features : int
    temperature : float, default 0.03
        In units of the reward noise's deviation (> 0): an offer whose estimate trails the best
        by one temperature is chosen e times less often.
    l2, noise, min_propensity, importance_weighting, refactor_every, seed
        As for :class:`LinUCB`.

    Examples
    --------
    >>> import numpy as np
    >>> from engine.policies import Softmax
    >>> policy = Softmax(n_actions=2, n_features=1, temperature=1.0, seed=0)
    >>> d = policy.choose(np.ones((1, 1)))
    >>> d.propensities.tolist()
    [0.5]
    """

    _parameter_constraints: ClassVar[ParameterConstraints] = {
        **RidgeModels._parameter_constraints,
        "temperature": [POSITIVE],
        "noise": AUTO_OR_POSITIVE,
    }

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        temperature: float = TEMPERATURE,
        l2: float = 1.0,
        noise: float | str = "auto",
        min_propensity: float = 0.0,
        importance_weighting: bool = False,
        refactor_every: int = 1000,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            n_actions,
            n_features,
            l2=l2,
            min_propensity=min_propensity,
            importance_weighting=importance_weighting,
            refactor_every=refactor_every,
            seed=seed,
        )
        self.temperature = float(temperature)
        self.noise = auto_or_float(noise)

    @classmethod
    def _unit_test_params(cls, n_actions: int, n_features: int) -> dict[str, Any]:
        return {"temperature": 0.5}

    @property
    def effective_temperature(self) -> float:
        """temperature * sigma: what the scores are divided by."""
        return self.temperature * self.noise_level()

    def _choose(self, X: FloatArray, mask: BoolArray) -> Decision:
        scores, _ = self._predict(X, 0.0, widths=False)
        actions, props, explored = self._outputs(X.shape[0])
        choose_softmax(
            scores,
            mask,
            self.effective_temperature,
            self.min_propensity,
            self.rng_state_,
            actions,
            props,
            explored,
        )
        return Decision(actions, props, scores, explored)

    def _choose_one(self, x: FloatArray, mask: BoolArray) -> tuple[int, float]:
        return ridge_choose_softmax_one(
            x,
            self.theta_,
            self.effective_temperature,
            mask,
            self.min_propensity,
            self.rng_state_,
            VALUE_LIMIT,
        )


def _compiled_mask(action_mask: Any, all_eligible: BoolArray) -> BoolArray | None:
    """The (1, n_actions) mask a compiled one-row choice takes: ``all_eligible`` for no mask, a
    writable C-contiguous bool array of shape (n_actions,) with an eligible action as a view;
    None for any other input (the generic path converts it or names the field in its error)."""
    if action_mask is None:
        return all_eligible
    n_actions = all_eligible.shape[1]
    if (
        type(action_mask) is np.ndarray
        and action_mask.dtype == np.bool_
        and action_mask.shape == (n_actions,)
        and action_mask.flags.c_contiguous
        and action_mask.flags.writeable
        and action_mask.any()
    ):
        return action_mask.reshape(1, n_actions)
    return None


def _is_row(x: Any, n_features: int) -> bool:
    """``x`` is a C-contiguous float64 array of shape (n_features,): the compiled path's input."""
    # strides == (8,): contiguous. Read-only arrays (np.frombuffer) take the generic path: the
    # kernels are compiled (and prepared) for writable ones, and a read-only type would compile
    # anew on the live path.
    return (
        type(x) is np.ndarray
        and x.shape == (n_features,)
        and x.dtype == np.float64
        and x.strides == (8,)
        and x.flags.writeable
    )

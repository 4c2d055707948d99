"""SharedLinear: one ridge model over context x offer features (hybrid-style sharing).

The joint feature of context x and offer a is the outer product z = x (x) [1, f_a], flattened
(n_features * (n_offer_features + 1) values). The constant 1 lets the model learn a baseline per
context; the offer features let what one offer taught carry over to similar offers, so an offer
added later with ``add_action(features)`` starts from a sensible estimate instead of the prior.
Put a one-hot offer identity in ``offer_features`` if offers should also keep a private effect.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engine.errors import InvalidInputError
from engine.kernels import choose_greedy, kron_predict, ridge_predict, shared_choose_one
from engine.policies.base import Decision
from engine.policies.linear import ALPHA, UCB_CONSTRAINTS, RidgeModels, auto_or_float
from engine.types import BoolArray, FloatArray, IntArray
from engine.validation import VALUE_LIMIT, ArrayLike, ParameterConstraints, float_array

#: Offers per offer-feature column from which choose scores the Kronecker structure directly
#: (the same numbers up to summation order, far less work with many combinations).
KRON_RATIO = 2
#: One model and no widths: what the compiled one-row choice takes when ``alpha`` is 0.
_NO_WIDTHS = np.empty((1, 0, 0))


class SharedLinear(RidgeModels):
    """Upper-confidence choice over one ridge model of context x offer features.

    Parameters
    ----------
    n_actions, n_features : int
    offer_features : array-like of shape (n_actions, n_offer_features)
        Numeric description of each offer (discount size, cost, channel, ...).
    alpha : float, default 1.0
        Confidence bonus width (>= 0), in units of the reward noise's deviation.
    noise : float or "auto", default "auto"
        As for :class:`~engine.policies.LinUCB`.
    l2, min_propensity, importance_weighting, refactor_every, seed
        As for :class:`~engine.policies.LinUCB` (the one model is the joint one).

    Examples
    --------
    >>> import numpy as np
    >>> from engine.policies import SharedLinear
    >>> offers = np.array([[0.0], [0.1], [0.2]])          # e.g. discount size
    >>> policy = SharedLinear(3, 1, offer_features=offers, alpha=0.0, seed=0)
    >>> X = np.ones((300, 1))
    >>> a = np.tile([0, 1, 2], 100)
    >>> policy.update(X, a, offers[a, 0] * 10.0)            # bigger discount, more reward
    >>> policy.add_action(features=[0.3])                 # never seen, predicted from the others
    3
    >>> int(policy.choose(np.ones((1, 1))).actions[0])
    3
    """

    _array_params = ("offer_features",)
    _parameter_constraints: ClassVar[ParameterConstraints] = {
        **UCB_CONSTRAINTS,
        "offer_features": [ArrayLike()],
    }

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        offer_features: Any,
        alpha: float = ALPHA,
        l2: float = 1.0,
        noise: float | str = "auto",
        min_propensity: float = 0.0,
        importance_weighting: bool = False,
        refactor_every: int = 1000,
        seed: int | None = None,
    ) -> None:
        super().__init__(n_actions, n_features, min_propensity=min_propensity, seed=seed)
        F = _check_offer_features(offer_features, self.n_actions)
        self.offer_features = F
        self.alpha = float(alpha)
        self.noise = auto_or_float(noise)
        D = self.n_features * (F.shape[1] + 1)
        self._init_ridge(1, D, l2, importance_weighting, refactor_every)

    def _choose_one(self, x: FloatArray, mask: BoolArray) -> tuple[int, float]:
        """:func:`shared_choose_one`: the kernels and the branch of a one-row ``choose``."""
        F1 = self._offer_block()
        return shared_choose_one(
            x,
            F1,
            self.theta_,
            self.A_inv_ if self.alpha > 0 else _NO_WIDTHS,
            self.alpha * self.noise_level(),
            self.n_actions >= KRON_RATIO * F1.shape[1],
            mask,
            self.min_propensity,
            self.rng_state_,
            VALUE_LIMIT,
        )

    @classmethod
    def _unit_test_params(cls, n_actions: int, n_features: int) -> dict[str, Any]:
        """Offer features of two columns: a discount step and every third offer flagged."""
        steps = np.arange(n_actions)
        features = np.column_stack([steps / 10, (steps % 3 == 0).astype(float)])
        return {"offer_features": features, "alpha": 0.5, "min_propensity": 0.02}

    @property
    def n_joint_features(self) -> int:
        return int(self.A_.shape[1])

    def _offer_block(self) -> FloatArray:
        """[1, f_a] of every offer, shape (n_actions, n_offer_features + 1); built again only when
        ``offer_features`` is another array (an action added or removed, new parameters)."""
        F = self.offer_features
        cached = getattr(self, "_offer_block_of", None)
        if cached is None or cached[0] is not F:
            cached = (F, np.hstack([np.ones((F.shape[0], 1)), F]))
            self._offer_block_of = cached
        return cached[1]

    def _joint(self, X: FloatArray, actions: IntArray | None = None) -> FloatArray:
        """Joint features: (n_rounds * n_actions, D) for all offers, else (n_rounds, D)."""
        F1 = self._offer_block()
        if actions is None:
            Z = X[:, None, :, None] * F1[None, :, None, :]
        else:
            Z = X[:, :, None] * F1[actions][:, None, :]
        return np.ascontiguousarray(Z.reshape(-1, self.n_joint_features))

    def _choose(self, X: FloatArray, mask: BoolArray) -> Decision:
        n = X.shape[0]
        width = self.alpha * self.noise_level()
        F1 = self._offer_block()
        if self.n_actions >= KRON_RATIO * F1.shape[1]:
            # Many offers (combinations) per offer feature: score the Kronecker structure of
            # z = x (x) [1, f] directly, one q x q form per row instead of a D x D one per offer.
            scores = np.empty((n, self.n_actions))
            widths = np.empty((n, self.n_actions))
            A_inv = self.A_inv_[0] if self.alpha > 0 else self.A_inv_[0, :0, :0]
            kron_predict(X, F1, self.theta_[0], A_inv, width, scores, widths)
        else:
            Z = self._joint(X)
            flat = np.empty((Z.shape[0], 1))
            widths = np.empty((Z.shape[0], 1))
            A_inv = self.A_inv_ if self.alpha > 0 else self.A_inv_[:0]
            ridge_predict(Z, self.theta_, A_inv, width, flat, widths)
            scores = flat.reshape(n, self.n_actions)
        actions, props, explored = self._outputs(n)
        choose_greedy(
            scores, mask, 0.0, self.min_propensity, self.rng_state_, actions, props, explored
        )
        return Decision(actions, props, scores, explored)

    def _update(
        self, X: FloatArray, actions: IntArray, rewards: FloatArray, props: FloatArray | None
    ) -> None:
        self._learn(self._joint(X, actions), np.zeros(X.shape[0], np.int64), rewards, props)

    def _add_action(self, features: Any) -> None:
        if features is None:
            raise InvalidInputError(
                "features", f"{self.offer_features.shape[1]} offer features for SharedLinear", None
            )
        f = _check_offer_features(
            np.atleast_2d(np.asarray(features, dtype=object)), 1, self.offer_features.shape[1]
        )
        self.offer_features = np.vstack([self.offer_features, f])

    def _remove_action(self, index: int) -> None:
        self.offer_features = np.delete(self.offer_features, index, axis=0)


def _check_offer_features(value: Any, n_actions: int, n_cols: int | None = None) -> FloatArray:
    F = float_array("offer_features", value, "a float array (n_actions, n_offer_features)")
    if F.ndim != 2 or F.shape[0] != n_actions or (n_cols is not None and F.shape[1] != n_cols):
        cols = "n_offer_features" if n_cols is None else str(n_cols)
        raise InvalidInputError(
            "offer_features", f"shape ({n_actions}, {cols})", f"shape {F.shape}"
        )
    if not np.isfinite(F).all():
        raise InvalidInputError("offer_features", "finite values", "NaN or inf")
    return F

"""LandingLift: a message's value is whether it lands times what its offer does once it lands.

A multi-dimensional action is an offer sent through a *route* (the values of the other
dimensions: channel x send time). Its expected net reward factors as

    r(x, offer, route) = h(x) + beta_route + P(engaged | x, route) x g_offer(x)

- ``h(x)``: what the customer is worth when the offer does not reach them (linear in x);
- ``beta_route``: what sending through the route costs or earns by itself (a call's cost);
- ``P(engaged | x, route)``: the probability that the message lands (is opened, read, answered),
  one linear probability model per route, clipped to [0, 1], fit on an *engagement signal*: a
  reward component (``signal``, default ``"engaged"``) of 1 when the customer engaged with the
  message and 0 when not;
- ``g_offer(x)``: what the offer adds once it landed (linear in x, one per offer), learned from
  every route's engaged rows.

The value part is one ridge regression over ``[x, route one-hot, e x (x (x) offer one-hot)]``,
``e`` the engagement observed on the row, so with the true landing probability in place of ``e``
its prediction is the expected reward exactly. An offer is learned from every channel and send
time it went out through, and a route from every offer it carried: the 84 combinations of a
7 x 3 x 4 campaign need 7 lift models and 12 landing models, not 84 value models
(docs/architecture.md, "Multi-dimensional decisions").

Actions that send nothing (the campaign's no-incentive offer) score ``h(x)``; their rows teach
``h`` and no landing model. A row whose engagement was not reported (the component is absent or
NaN) teaches no landing model, and enters the value model with the landing it was predicted to
have (its expected regressor). Until a route's engagement has been reported its messages are
taken to land, so without any signal the model is additive (base + route + offer lift) and still
learns.

Choice is greedy with an exploration floor: each eligible action gets max(epsilon / k,
min_propensity) and the best the rest, so propensities are exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from engine.errors import InvalidInputError
from engine.kernels import choose_greedy, landing_choose_one, landing_scores
from engine.policies.base import Decision, Policy
from engine.policies.linear import _compiled_mask, _is_row
from engine.types import BoolArray, FloatArray, IntArray
from engine.validation import (
    MAX_NAME_CHARS,
    VALUE_LIMIT,
    ArrayLike,
    Interval,
    ParameterConstraints,
    Real,
    Satisfies,
    float_array,
)

#: The reward component a backend reports the engagement under, unless ``signal`` says otherwise.
ENGAGED = "engaged"


class LandingLift(Policy):
    """Greedy choice over base value + route term + P(engaged) x offer lift, with a floor.

    Parameters
    ----------
    n_actions, n_features : int
    offer_features : array-like of shape (n_actions, 3)
        Per action: its offer's index, its route's index (the other dimensions' values, numbered
        from 0), and 1 if it sends a message (0 for an offer that sends nothing). A campaign
        builds it from its dimensions (``CampaignConfig.policy_offer_features``).
    epsilon : float, default 0.02
        Exploration: each of the k eligible actions gets at least epsilon / k.
    l2 : float, default 1.0
        Ridge penalty of the value model and of every landing model.
    signal : str, default "engaged"
        The reward component holding the engagement (1 engaged, 0 not; a share in between is
        taken as a probability).
    min_propensity : float, default 0.0
        Exploration floor per eligible action.
    seed : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> from engine.policies import LandingLift
    >>> # two offers (0 sends nothing) x two routes: actions (0, 0), (1, 0), (1, 1)
    >>> table = [[0, 0, 0], [1, 0, 1], [1, 1, 1]]
    >>> policy = LandingLift(3, 1, offer_features=table, epsilon=0.0, seed=0)
    >>> X = np.ones((400, 1))
    >>> a = np.tile([0, 1, 1, 2], 100)
    >>> engaged = np.tile([0.0, 1.0, 0.0, 1.0], 100)  # route 0 lands half the time, route 1 always
    >>> policy.update(X, a, 10.0 * engaged, signals={"engaged": engaged})
    >>> policy.landing(np.ones((1, 1))).round(2).tolist()  # per route
    [[0.5, 0.99]]
    >>> int(policy.choose(np.ones((1, 1))).actions[0])
    2
    """

    _array_params = ("offer_features",)
    _state_arrays = ("value_A_", "value_b_", "land_A_", "land_b_", "land_n_")
    _parameter_constraints: ClassVar[ParameterConstraints] = {
        **Policy._parameter_constraints,
        "offer_features": [ArrayLike()],
        "epsilon": [Interval(Real, 0, 1, closed="both")],
        "l2": [Interval(Real, 0, None, closed="neither")],
        "signal": [
            Satisfies(
                f"a non-empty str of at most {MAX_NAME_CHARS} characters",
                lambda v: isinstance(v, str) and 0 < len(v) <= MAX_NAME_CHARS,
                "",
                ENGAGED,
            )
        ],
    }

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        offer_features: Any,
        epsilon: float = 0.02,
        l2: float = 1.0,
        signal: str = ENGAGED,
        min_propensity: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(n_actions, n_features, min_propensity=min_propensity, seed=seed)
        table = _check_table(offer_features, self.n_actions)
        self.epsilon = float(epsilon)
        self.l2 = float(l2)
        self.signal = str(signal)
        self._layout(table)
        self._prior(self.n_offers, self.n_routes)
        self._solve()

    @classmethod
    def _unit_test_params(cls, n_actions: int, n_features: int) -> dict[str, Any]:
        """Action 0 sends nothing; the others are offers a // 2 + 1 through routes a % 2."""
        a = np.arange(n_actions)
        table = np.column_stack([np.where(a == 0, 0, 1 + a // 2), a % 2, (a > 0).astype(int)])
        return {"offer_features": table, "epsilon": 0.2}

    # ------------------------------------------------------------------ structure
    def _layout(self, table: IntArray, offers: int = 0, routes: int = 0) -> None:
        """``table`` (per action: offer, route, sends) as the kernels read it, and
        ``offer_features``; the state's widths are its largest indices, or ``offers`` and
        ``routes`` when wider (models kept after their actions were removed)."""
        self._table = np.ascontiguousarray(table, dtype=np.int64)
        self.offer_features = self._table.astype(np.float64)
        self.n_offers = max(int(table[:, 0].max()) + 1, offers)
        self.n_routes = max(int(table[:, 1].max()) + 1, routes)

    def _prior(self, offers: int, routes: int) -> None:
        """The state of a model that learned nothing, over ``offers`` offers and ``routes``
        routes."""
        d = self.n_features
        width = d + routes + offers * d
        self.value_A_ = self.l2 * np.eye(width)
        self.value_b_ = np.zeros(width)
        self.land_A_ = np.tile(self.l2 * np.eye(d), (routes, 1, 1))
        self.land_b_ = np.zeros((routes, d))
        self.land_n_ = np.zeros(routes)  # rows with a reported engagement, per route

    def _solve(self) -> None:
        """The coefficients the state gives: the value model's and every route's landing."""
        d, q = self.n_features, self.n_routes
        w = np.linalg.solve(self.value_A_, self.value_b_)
        self._base = w[:d]
        self._beta = w[d : d + q]
        self._lift = w[d + q :].reshape(self.n_offers, d)
        if d:
            self._land = np.linalg.solve(self.land_A_, self.land_b_[:, :, None])[:, :, 0]
        else:
            self._land = np.zeros((q, 0))
        # what the compiled scoring reads: base, lifts, landings stacked; the routes seen
        self._coef = np.ascontiguousarray(np.vstack([self._base[None], self._lift, self._land]))
        self._seen = (self.land_n_ > 0).astype(np.float64)

    def engagement_signals(self) -> tuple[str, ...]:
        return (self.signal,)

    def landing(self, contexts: Any) -> FloatArray:
        """Estimated probability that a message through each route lands, (n_rounds, n_routes);
        1 for a route whose engagement was never reported."""
        return self._landing(self._check_contexts(contexts))

    def _landing(self, X: FloatArray) -> FloatArray:
        return np.where(self._seen > 0, np.clip(X @ self._land.T, 0.0, 1.0), 1.0)

    def predict_mean(self, contexts: Any) -> FloatArray:
        """Estimated mean reward of every action, array of shape (n_rounds, n_actions)."""
        return self._scores(self._check_contexts(contexts))

    def _scores(self, X: FloatArray) -> FloatArray:
        scores = np.empty((X.shape[0], self.n_actions))
        landing_scores(X, self._coef, self._beta, self._seen, self._table, scores)
        return scores

    def choose_one(self, context: Any, action_mask: Any = None) -> tuple[int, float]:
        """As :meth:`Policy.choose_one`, in one compiled call when the input is already a
        float64 row and a bool mask (any other input, or a bad one, takes the generic path,
        which converts it or raises the error that names the field)."""
        if _is_row(context, self.n_features):
            mask = _compiled_mask(action_mask, self._all_eligible)
            if mask is not None:
                action, propensity = landing_choose_one(
                    context,
                    self._coef,
                    self._beta,
                    self._seen,
                    self._table,
                    mask,
                    self.epsilon,
                    self.min_propensity,
                    self.rng_state_,
                    VALUE_LIMIT,
                )
                if action >= 0:
                    return int(action), float(propensity)
        return super().choose_one(context, action_mask)

    # ------------------------------------------------------------------ hooks
    def _choose(self, X: FloatArray, mask: BoolArray) -> Decision:
        n = X.shape[0]
        scores = self._scores(X)
        actions = np.empty(n, dtype=np.int64)
        props = np.empty(n)
        explored = np.empty(n, dtype=np.bool_)
        choose_greedy(
            scores,
            mask,
            self.epsilon,
            self.min_propensity,
            self.rng_state_,
            actions,
            props,
            explored,
        )
        return Decision(actions, props, np.where(mask, scores, -np.inf), explored)

    def _update(self, X: FloatArray, actions: IntArray, rewards: FloatArray, props: Any) -> None:
        self._update_signals(X, actions, rewards, props, {})

    def _update_signals(
        self,
        X: FloatArray,
        actions: IntArray,
        rewards: FloatArray,
        props: Any,
        signals: Mapping[str, FloatArray],
    ) -> None:
        observed = signals.get(self.signal)
        if observed is not None:
            seen = observed[~np.isnan(observed)]
            if ((seen < 0) | (seen > 1)).any():
                raise InvalidInputError(
                    f"signals[{self.signal!r}]",
                    "an engagement in [0, 1] (1 engaged, 0 not), or NaN where not reported",
                    float(seen[(seen < 0) | (seen > 1)][0]),
                )
        else:
            observed = np.full(X.shape[0], np.nan)
        n, d, q = X.shape[0], self.n_features, self.n_routes
        offer, route, sends = self._table[actions].T
        sends = sends == 1
        known = sends & ~np.isnan(observed)
        predicted = self._landing(X)[np.arange(n), route]
        e = np.where(sends, np.where(known, observed, predicted), 0.0)
        Z = np.zeros((n, self.value_A_.shape[0]))
        Z[:, :d] = X
        rows = np.flatnonzero(sends)
        Z[rows, d + route[rows]] = 1.0
        for o in np.unique(offer[rows]):
            mine = rows[offer[rows] == o]
            start = d + q + o * d
            Z[mine, start : start + d] = X[mine] * e[mine, None]
        self.value_A_ += Z.T @ Z
        self.value_b_ += Z.T @ rewards
        for r in np.unique(route[known]):
            mine = known & (route == r)
            Xr = X[mine]
            self.land_A_[r] += Xr.T @ Xr
            self.land_b_[r] += Xr.T @ observed[mine]
            self.land_n_[r] += Xr.shape[0]
        self._solve()

    def _add_action(self, features: Any) -> None:
        row = _check_table(features, 1, field="features")
        table = np.vstack([self._table, row])
        d = self.n_features
        offers = max(self.n_offers, int(row[0, 0]) + 1)
        routes = max(self.n_routes, int(row[0, 1]) + 1)
        # everything is built before anything is assigned: a failure leaves the policy as it was
        A, b = self.value_A_, self.value_b_
        land_A, land_b, land_n = self.land_A_, self.land_b_, self.land_n_
        if routes > self.n_routes:
            more = routes - self.n_routes
            A, b = _grow(A, b, d + self.n_routes, more, self.l2)
            land_A = np.concatenate([land_A, np.tile(self.l2 * np.eye(d), (more, 1, 1))])
            land_b = np.concatenate([land_b, np.zeros((more, d))])
            land_n = np.concatenate([land_n, np.zeros(more)])
        if offers > self.n_offers:
            A, b = _grow(A, b, A.shape[0], (offers - self.n_offers) * d, self.l2)
        self.value_A_, self.value_b_ = A, b
        self.land_A_, self.land_b_, self.land_n_ = land_A, land_b, land_n
        self._layout(table, offers, routes)
        self._solve()

    def _remove_action(self, index: int) -> None:
        # The offer's and the route's models stay, even when no action uses them any more: the
        # joint value model's other coefficients were fit beside them. The state is then wider
        # than the table implies, which _add_action and _restore accept.
        self._layout(np.delete(self._table, index, axis=0), self.n_offers, self.n_routes)

    def _restore(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        # A model that lost actions keeps the models of offers and routes beyond its table's
        # largest indices: take the widths from the saved arrays, when they are consistent.
        d = self.n_features
        counts, value = arrays.get("land_n_"), arrays.get("value_A_")
        if counts is not None and value is not None and counts.ndim == 1 and value.ndim == 2:
            routes = int(counts.shape[0])
            offers, rest = divmod(int(value.shape[0]) - d - routes, max(d, 1))
            saved_land = arrays.get("land_A_")
            consistent = saved_land is not None and saved_land.shape == (routes, d, d)
            if consistent and routes >= self.n_routes and offers >= self.n_offers and not rest:
                self.n_offers, self.n_routes = offers, routes
                self._prior(offers, routes)  # the shapes the saved arrays replace
        super()._restore(scalars, arrays)

    def _restore_extra(self, arrays: dict[str, np.ndarray]) -> None:
        self._solve()


def _grow(
    A: FloatArray, b: FloatArray, at: int, k: int, l2: float
) -> tuple[FloatArray, FloatArray]:
    """A and b with ``k`` fresh coordinates (the prior: l2 on the diagonal) inserted at ``at``."""
    A = np.insert(np.insert(A, [at] * k, 0.0, axis=0), [at] * k, 0.0, axis=1)
    A[at : at + k, at : at + k] = l2 * np.eye(k)
    return A, np.insert(b, [at] * k, 0.0)


def _check_table(table: Any, n_actions: int, field: str = "offer_features") -> IntArray:
    """Per action (offer index, route index, sends a message): integers, the flag 0 or 1."""
    expected = f"an array of shape ({n_actions}, 3): offer index, route index, sends (0 or 1)"
    if table is None:
        raise InvalidInputError(field, expected, None)
    arr = float_array(field, table, expected)
    if arr.ndim == 1 and n_actions == 1:
        arr = arr.reshape(1, -1)
    if arr.shape != (n_actions, 3):
        raise InvalidInputError(field, expected, f"an array of shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr != np.round(arr)).any() or (arr[:, :2] < 0).any():
        raise InvalidInputError(field, "integer indices >= 0", arr.tolist())
    if not np.isin(arr[:, 2], (0.0, 1.0)).all():
        raise InvalidInputError(f"{field}[:, 2]", "0 or 1 (sends a message)", arr[:, 2].tolist())
    if arr.max(initial=0) > 1e6:
        raise InvalidInputError(field, "indices below 1,000,000", arr.max())
    return arr.astype(np.int64)

"""RandomFourierUCB: LinUCB over the contexts and random Fourier features of their interactions.

Every other contextual policy is linear in the encoded features, so none can represent a rule
such as "a discount works only for price-sensitive customers with payment trouble" (a product),
"an upgrade works past a usage threshold" or "a bundle works when exactly one of two attributes
holds" (an XOR). This one maps each context x to z = [x, s cos(W (x - mu) / sigma + b)] and runs
disjoint LinUCB on z: a linear model of the context plus, per offer, a kernel ridge regression
on ``n_components`` random Fourier features (Rahimi and Recht, 2007), with the same exact
propensities, serialization and learning kernels as :class:`~engine.policies.LinUCB`.

- Each feature reads ``interaction_order`` input features drawn at random (their other weights
  are 0): a Monte-Carlo approximation of a sum of Gaussian kernels over small groups of
  attributes, which is what interactions of a few attributes need (a Gaussian kernel over all
  of them spreads its features over interactions of every input with every other one).
- The map standardizes its input: the contexts of the first ``standardize_rows`` updated rows
  set a mean mu and a deviation sigma per feature, so indicator and one-hot columns (deviation
  ~0.4) bend the features as much as standardized numbers do. Until then the map uses mu = 0,
  sigma = 1; when the statistics are set, every offer's model is rebuilt from those rows under the
  final map, so the model is always exactly the ridge regression of its rows on one map.
- W and b are drawn from ``feature_seed`` (not ``seed``, which drives the random stream: a
  campaign that reseeds a model keeps its map) and saved with the model, with the statistics.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NoReturn

import numpy as np

from engine.errors import CorruptModelError
from engine.kernels.features import fourier_features
from engine.policies.linear import COUNT, POSITIVE, LinUCB
from engine.types import FloatArray, IntArray
from engine.validation import SEED, Integral, Interval, ParameterConstraints

MAX_COMPONENTS = 4096
MAX_WARMUP_ROWS = 100_000
_WARMUP = ("warmup_contexts_", "warmup_actions_", "warmup_rewards_", "warmup_propensities_")


class RandomFourierUCB(LinUCB):
    """Disjoint LinUCB on the context and random Fourier features of its interactions.

    The choice is argmax theta_a . z + alpha sigma sqrt(z^T A_a^-1 z) over z = [x, features of
    x], sigma the reward noise's deviation (``noise``, as for LinUCB), deterministic given the
    model; ``min_propensity`` > 0 gives every eligible action that probability exactly. Defaults
    are those of the benchmark (``benchmarks/learning_nonlinear.py``).

    Parameters
    ----------
    n_actions, n_features : int
    n_components : int, default 192
        Random Fourier features added to the context, at most 4096 (each offer's model has
        ``n_features + n_components`` weights; its cost per decision grows with their square).
    interaction_order : int, default 5
        Input features each random feature reads (all of them when larger than n_features).
    length_scale : float, default 1.25
        Length scale of the kernel, in standard deviations of the inputs: each random feature's
        argument has variance 1 / length_scale^2 over standardized contexts.
    feature_scale : float, default 0.15
        Amplitude of the random features: their prior weight under the ridge penalty relative
        to the context's own features (smaller: more evidence needed before the model bends).
        0.15 keeps the model as good as LinUCB where responses are linear (renewal: 95.3% of
        the oracle at 100,000 customers against 94.8% at 0.5) and still learns interactions
        (93.0% on ``interactions``, 93.9% at 0.5; below 0.1 it learns them only on some draws).
    standardize_rows : int, default 500
        Updated rows whose contexts set the map's standardization (0: no standardization; at
        most 100,000).
    feature_seed : int or None, default 0
        Seed of the map's random draw (None: from the OS; the map is saved with the model).
    alpha : float, default 0.1
        Width of the confidence bonus (>= 0), in units of the reward noise's deviation.
    l2, noise, min_propensity, importance_weighting, refactor_every, seed
        As for :class:`~engine.policies.LinUCB`.

    Examples
    --------
    >>> import numpy as np
    >>> from engine.policies import RandomFourierUCB
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 2, size=(3000, 2)).astype(float)
    >>> xor = X[:, 0] != X[:, 1]                      # offer 1 works only when exactly one holds
    >>> policy = RandomFourierUCB(n_actions=2, n_features=2, alpha=0.0, seed=0)
    >>> actions = rng.integers(0, 2, 3000)
    >>> policy.update(X, actions, np.where(actions == 1, np.where(xor, 1.0, -1.0), 0.0))
    >>> policy.choose(np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])).actions.tolist()
    [0, 1, 1, 0]
    """

    _state_scalars = (*LinUCB._state_scalars, "n_warmup_", "map_frozen_")
    _parameter_constraints: ClassVar[ParameterConstraints] = {
        **LinUCB._parameter_constraints,
        # Bounded so a crafted model blob cannot make the constructor allocate gigabytes.
        "n_components": [Interval(Integral, 1, MAX_COMPONENTS, closed="both")],
        "interaction_order": [COUNT],
        "length_scale": [POSITIVE],
        "feature_scale": [POSITIVE],
        "standardize_rows": [Interval(Integral, 0, MAX_WARMUP_ROWS, closed="both")],
        "feature_seed": SEED,
    }

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        n_components: int = 192,
        interaction_order: int = 5,
        length_scale: float = 1.25,
        feature_scale: float = 0.15,
        standardize_rows: int = 500,
        feature_seed: int | None = 0,
        alpha: float = 0.1,
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
            alpha=alpha,
            l2=l2,
            noise=noise,
            min_propensity=min_propensity,
            importance_weighting=importance_weighting,
            refactor_every=refactor_every,
            seed=seed,
        )
        self.n_components = int(n_components)
        self.interaction_order = int(interaction_order)
        self.length_scale = float(length_scale)
        self.feature_scale = float(feature_scale)
        self.standardize_rows = int(standardize_rows)
        self.feature_seed = None if feature_seed is None else int(feature_seed)
        rng = np.random.default_rng(self.feature_seed)
        self.map_weights_, self.map_offsets_ = self._draw_map(rng)
        self.means_ = np.zeros(self.n_features)
        self.scales_ = np.ones(self.n_features)
        self.n_warmup_ = 0
        self.map_frozen_ = self.standardize_rows == 0
        self._empty_warmup(self.standardize_rows if not self.map_frozen_ else 0)
        self._set_map()
        # The per-offer ridge models live on z, not on x.
        self._reset_models()

    @classmethod
    def _unit_test_params(cls, n_actions: int, n_features: int) -> dict[str, Any]:
        # A map small enough for the suite, frozen during its 300 training rows.
        return {
            "n_components": 12,
            "interaction_order": 2,
            "standardize_rows": 100,
            "alpha": 0.5,
            "min_propensity": 0.02,
        }

    @property
    def n_model_features(self) -> int:
        """Weights of each offer's model: n_features + n_components."""
        return self.n_features + self.n_components

    # ------------------------------------------------------------------ the map
    def _draw_map(self, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
        d, m = self.n_features, self.n_components
        order = min(self.interaction_order, d)
        weights = np.zeros((d, m))
        if order:
            # Each column reads `order` distinct inputs: the first of a random permutation.
            inputs = np.argsort(rng.random((m, d)), axis=1)[:, :order]
            columns = np.repeat(np.arange(m)[:, None], order, axis=1)
            spread = self.length_scale * math.sqrt(order)
            weights[inputs, columns] = rng.normal(size=(m, order)) / spread
        return weights, rng.uniform(0.0, 2.0 * math.pi, m)

    def _set_map(self) -> None:
        """Fold the standardization into the map: cos(x W' + b') with W' = W / sigma (per
        input row) and b' = b - (mu / sigma) W."""
        self._weights = np.ascontiguousarray(self.map_weights_ / self.scales_[:, None])
        self._offsets = self.map_offsets_ - (self.means_ / self.scales_) @ self.map_weights_

    def features(self, contexts: Any) -> FloatArray:
        """The vectors the offers' models learn on, array of shape (n_rounds, n_model_features):
        each context followed by its random Fourier features."""
        return self._check_contexts(contexts)

    def _map(self, X: FloatArray) -> FloatArray:
        Z = np.empty((X.shape[0], self.n_model_features))
        fourier_features(
            np.ascontiguousarray(X), self._weights, self._offsets, self.feature_scale, Z
        )
        return Z

    def _check_contexts(self, contexts: Any) -> FloatArray:
        # Contexts are checked as n_features columns, then mapped: every hook and every method
        # inherited from LinUCB (choose, update, predict_mean) works on z.
        return self._map(super()._check_contexts(contexts))

    # ------------------------------------------------------------------ learning
    def _reset_models(self) -> None:
        self._init_ridge(
            self.n_actions,
            self.n_model_features,
            self.l2,
            self.importance_weighting,
            self.refactor_every,
        )
        self._no_widths = np.empty((0, self.n_model_features, self.n_model_features))

    def _new_action_state(self, name: str) -> np.ndarray:
        if name in ("A_", "A_inv_"):
            eye = np.eye(self.n_model_features)[None]
            return eye * self.l2 if name == "A_" else eye / self.l2
        return super()._new_action_state(name)

    def _update(
        self, X: FloatArray, actions: IntArray, rewards: FloatArray, props: FloatArray | None
    ) -> None:
        if self.map_frozen_:
            self._learn(X, actions, rewards, props)
            return
        n, start = X.shape[0], self.n_warmup_
        take = min(n, self.standardize_rows - start)
        stop = start + take
        self.warmup_contexts_[start:stop] = X[:take, : self.n_features]
        self.warmup_actions_[start:stop] = actions[:take]
        self.warmup_rewards_[start:stop] = rewards[:take]
        self.warmup_propensities_[start:stop] = 1.0 if props is None else props[:take]
        self.n_warmup_ = stop
        if stop < self.standardize_rows:
            self._learn(X, actions, rewards, props)
            return
        self._freeze_map()
        if take < n:  # the batch's remaining rows, under the final map
            rest = self._map(X[take:, : self.n_features])
            self._learn(
                rest, actions[take:], rewards[take:], None if props is None else props[take:]
            )

    def _freeze_map(self) -> None:
        """Set the standardization from the warm-up rows and rebuild every model from them."""
        rows = self.warmup_contexts_[: self.n_warmup_]
        if rows.shape[0]:
            self.means_ = rows.mean(axis=0)
            deviations = rows.std(axis=0)
            self.scales_ = np.where(deviations > 1e-12, deviations, 1.0)
        self._set_map()
        self._reset_models()
        if rows.shape[0]:
            self._learn(
                self._map(rows),
                self.warmup_actions_[: self.n_warmup_],
                self.warmup_rewards_[: self.n_warmup_],
                self.warmup_propensities_[: self.n_warmup_],
            )
        self.map_frozen_ = True
        self._empty_warmup(0)

    def _empty_warmup(self, rows: int) -> None:
        self.warmup_contexts_ = np.zeros((rows, self.n_features))
        self.warmup_actions_ = np.zeros(rows, np.int64)
        self.warmup_rewards_ = np.zeros(rows)
        self.warmup_propensities_ = np.ones(rows)

    def _remove_action(self, index: int) -> None:
        super()._remove_action(index)
        if self.map_frozen_:
            return
        # Warm-up rows of the removed offer taught only its model; later offers shift down.
        n = self.n_warmup_
        keep = self.warmup_actions_[:n] != index
        kept = int(keep.sum())
        for name in _WARMUP:
            column = getattr(self, name)
            column[:kept] = column[:n][keep]
        self.warmup_actions_[:kept] -= self.warmup_actions_[:kept] > index
        self.n_warmup_ = kept

    # Per-offer sufficient statistics of z cannot be summed across shards drawn on other maps,
    # and a sum of them would skip the standardization: RandomFourierUCB learns row by row.
    # (engine.replay trains a policy by its statistics only when it has ``add_statistics``.)
    @property
    def sufficient_statistics(self) -> NoReturn:
        raise AttributeError("RandomFourierUCB learns row by row (no sufficient_statistics)")

    @property
    def add_statistics(self) -> NoReturn:
        raise AttributeError("RandomFourierUCB learns row by row (no add_statistics)")

    # ------------------------------------------------------------------ serialization
    def _extra_arrays(self) -> dict[str, np.ndarray]:
        n = self.n_warmup_ if not self.map_frozen_ else 0
        arrays = {name: getattr(self, name)[:n] for name in _WARMUP}
        arrays.update(
            map_weights_=self.map_weights_,
            map_offsets_=self.map_offsets_,
            means_=self.means_,
            scales_=self.scales_,
        )
        return arrays

    def _restore_extra(self, arrays: dict[str, np.ndarray]) -> None:
        d, m = self.n_features, self.n_components
        if not 0 <= self.n_warmup_ <= self.standardize_rows:
            raise CorruptModelError(
                f"model value 'n_warmup_': expected 0 to {self.standardize_rows} "
                f"(standardize_rows), got {self.n_warmup_}"
            )
        if not self.map_frozen_ and self.standardize_rows == 0:
            raise CorruptModelError("model value 'map_frozen_': expected True (no standardization)")
        rows = self.n_warmup_ if not self.map_frozen_ else 0
        expected = {
            "map_weights_": ((d, m), "<f8"),
            "map_offsets_": ((m,), "<f8"),
            "means_": ((d,), "<f8"),
            "scales_": ((d,), "<f8"),
            "warmup_contexts_": ((rows, d), "<f8"),
            "warmup_actions_": ((rows,), "<i8"),
            "warmup_rewards_": ((rows,), "<f8"),
            "warmup_propensities_": ((rows,), "<f8"),
        }
        loaded = {}
        for name, (shape, dtype) in expected.items():
            value = arrays.get(name)
            if value is None:
                raise CorruptModelError(f"model blob lacks the array {name!r}")
            if value.shape != shape or value.dtype.str != dtype:
                raise CorruptModelError(
                    f"model array {name!r}: expected {np.dtype(dtype)} of shape {shape}, "
                    f"got {value.dtype} of shape {value.shape}"
                )
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise CorruptModelError(f"model array {name!r} holds non-finite values")
            loaded[name] = value
        if not (loaded["scales_"] > 0).all():
            raise CorruptModelError("model array 'scales_': expected deviations > 0")
        actions, props = loaded["warmup_actions_"], loaded["warmup_propensities_"]
        if ((actions < 0) | (actions >= self.n_actions)).any():
            raise CorruptModelError(
                f"model array 'warmup_actions_': expected indices in [0, {self.n_actions})"
            )
        if ((props <= 0) | (props > 1)).any():
            raise CorruptModelError("model array 'warmup_propensities_': expected values in (0, 1]")
        for name in ("map_weights_", "map_offsets_", "means_", "scales_"):
            setattr(self, name, np.ascontiguousarray(loaded[name]))
        self._empty_warmup(0 if self.map_frozen_ else self.standardize_rows)
        for name in _WARMUP:
            getattr(self, name)[:rows] = loaded[name]
        self._set_map()

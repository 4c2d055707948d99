"""VWPolicy: Vowpal Wabbit's contextual bandits (vowpal-wabbit-next) behind nbo's Policy API.

Examples are built directly from arrays, never through VW's text format: the context goes into
namespace ``s`` of a shared example with ``push_many_features`` (feature j at index j), each
action is one example with a single indicator feature in namespace ``a``, and ``-q sa`` lets VW
learn one weight vector per action. The shared and action examples are built once and reused:
only the shared features and the chosen action's label change per call
(benchmarks/core.py measures this path against per-example text formatting).

VW minimizes costs; nbo maximizes rewards: cost = -reward inside this class only.
"""

from __future__ import annotations

import shlex
from typing import Any, ClassVar

import numpy as np
import vowpal_wabbit_next as vw

from engine.kernels import choose_from_probabilities
from engine.policies.base import Decision, Policy
from engine.policies.linear import AUTO_OR_POSITIVE, auto_or_float
from engine.types import BoolArray, FloatArray, IntArray
from engine.validation import Boolean, ParameterConstraints, Satisfies

_SHARED_NS = "s"
_ACTION_NS = "a"


def _explores_adf(args: object) -> bool:
    return isinstance(args, str) and "--cb_explore_adf" in shlex.split(args)


class VWPolicy(Policy):
    """Vowpal Wabbit ``--cb_explore_adf`` (SquareCB by default); any VW exploration arguments.

    VW returns a probability per eligible action; nbo samples from it with its own generator, so
    the reported propensity is exactly the probability used (mixed with ``min_propensity``).

    Parameters
    ----------
    n_actions, n_features : int
    args : str, default "--cb_explore_adf --squarecb"
        VW command line; must contain ``--cb_explore_adf``. ``--quiet`` is always added, and
        ``-q sa`` unless ``interactions=False``.
    interactions : bool, default True
        Add the context x action interaction (one linear model per action).
    reward_scale : float or "auto", default "auto"
        VW learns from cost = -reward / reward_scale. SquareCB's exploration and VW's learning
        rate assume costs of order 1, so by default ("auto") the scale is the largest absolute
        reward learned from so far (costs stay in [-1, 1] whatever the currency: a first reward
        of 0 leaves it at 1 until a nonzero one comes); a number fixes it.
    min_propensity : float, default 0.0
    seed : int, optional
        Seeds the sampling of the chosen action and VW's own random source. :meth:`reseed`
        restarts the sampling only: VW keeps the seed saved in its model.

    Examples
    --------
    >>> import numpy as np
    >>> from engine.policies import VWPolicy
    >>> policy = VWPolicy(n_actions=3, n_features=2, seed=0)
    >>> X = np.array([[1.0, 0.0]] * 200)
    >>> policy.update(X, np.tile([0, 1, 2], 67)[:200], np.tile([0.0, 1.0, 0.0], 67)[:200],
    ...               np.full(200, 1 / 3))
    >>> d = policy.choose(X[:1])
    >>> int(np.argmax(d.scores[0]))
    1
    """

    _state_scalars = ("cost_scale_",)
    _parameter_constraints: ClassVar[ParameterConstraints] = {
        **Policy._parameter_constraints,
        "args": [
            Satisfies(
                "a VW command line containing --cb_explore_adf",
                _explores_adf,
                invalid="--cb_adf",
                valid="--cb_explore_adf --epsilon 0.1",
            )
        ],
        "interactions": [Boolean()],
        "reward_scale": AUTO_OR_POSITIVE,
    }

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        args: str = "--cb_explore_adf --squarecb",
        interactions: bool = True,
        reward_scale: float | str = "auto",
        min_propensity: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(n_actions, n_features, min_propensity=min_propensity, seed=seed)
        self.reward_scale = auto_or_float(reward_scale)
        # What costs are divided by: fixed, or the largest |reward| learned from so far (0: none
        # yet, costs unscaled).
        self.cost_scale_ = 0.0 if isinstance(self.reward_scale, str) else self.reward_scale
        self.args = args
        self.interactions = bool(interactions)
        self._workspace = vw.Workspace(self._argv())
        self._build_examples()

    @classmethod
    def _unit_test_params(cls, n_actions: int, n_features: int) -> dict[str, Any]:
        return {}

    def _argv(self, seeded: bool = True) -> list[str]:
        """VW's command line; ``seeded=False`` for loading a saved model, which carries the
        seed it was created with (VW refuses a different one, as after :meth:`reseed`)."""
        argv = [*shlex.split(self.args), "--quiet"]
        if self.interactions:
            argv += ["-q", f"{_SHARED_NS}{_ACTION_NS}"]
        if seeded and self.seed is not None and "--random_seed" not in argv:
            argv += ["--random_seed", str(self.seed)]
        return argv

    def _build_examples(self) -> None:
        shared = vw.Example()
        shared.set_label(vw.CBLabel(shared=True))
        self._shared = shared
        self._indices = np.arange(self.n_features, dtype=np.uint64)
        self._actions = [self._action_example(a) for a in range(self.n_actions)]
        self._next_feature = self.n_actions

    @staticmethod
    def _action_example(a: int) -> vw.Example:
        ex = vw.Example()
        ex.set_label(vw.CBLabel())
        ex[_ACTION_NS].push_feature(a, 1.0)
        return ex

    def _set_context(self, x: FloatArray) -> None:
        group = self._shared[_SHARED_NS]
        group.truncate_to(0)
        group.push_many_features(self._indices, x.astype(np.float32))  # type: ignore[arg-type]

    def _pmf(self, x: FloatArray, eligible: IntArray) -> FloatArray:
        self._set_context(x)
        examples = [self._shared] + [self._actions[a] for a in eligible]
        out = np.zeros(self.n_actions)
        pmf: list[tuple[int, float]] = self._workspace.predict_one(examples)  # type: ignore[assignment]
        for slot, prob in pmf:
            out[eligible[slot]] = prob
        return out

    def _choose(self, X: FloatArray, mask: BoolArray) -> Decision:
        n = X.shape[0]
        probabilities = np.empty((n, self.n_actions))
        all_actions = np.arange(self.n_actions)
        for i in range(n):
            eligible = all_actions if mask[i].all() else np.flatnonzero(mask[i])
            probabilities[i] = self._pmf(X[i], eligible)
        actions, props, explored = self._outputs(n)
        choose_from_probabilities(
            probabilities, mask, self.min_propensity, self.rng_state_, actions, props, explored
        )
        scores = np.where(mask, probabilities, -np.inf)
        return Decision(actions, props, scores, explored)

    def _update(
        self, X: FloatArray, actions: IntArray, rewards: FloatArray, props: FloatArray | None
    ) -> None:
        all_actions = np.arange(self.n_actions)
        if isinstance(self.reward_scale, str) and rewards.size:
            self.cost_scale_ = max(self.cost_scale_, float(np.abs(rewards).max()))
        scale = self.cost_scale_ or 1.0
        for i in range(X.shape[0]):
            a = int(actions[i])
            if props is None:
                # VW weights by 1/p; without the logged probability use the policy's own.
                p = max(float(self._pmf(X[i], all_actions)[a]), 1e-6)
            else:
                p = float(props[i])
            self._set_context(X[i])
            chosen = self._actions[a]
            chosen.set_label(vw.CBLabel(label=(-float(rewards[i]) / scale, p)))
            try:
                self._workspace.learn_one([self._shared, *self._actions])
            finally:
                chosen.set_label(vw.CBLabel())

    def _copy_extra(self, source: Policy) -> None:
        # A VW workspace can only be copied through its serialized model.
        assert isinstance(source, VWPolicy)
        self._workspace = vw.Workspace(
            self._argv(seeded=False), model_data=source._workspace.serialize()
        )
        self._shared = vw.Example()
        self._shared.set_label(vw.CBLabel(shared=True))
        self._actions = [
            self._action_example(int(ex[_ACTION_NS].indices[0])) for ex in source._actions
        ]

    def _add_action(self, features: Any) -> None:
        super()._add_action(features)
        # A fresh indicator feature, never used by a removed action: the new one starts untrained.
        self._next_feature = max(self._next_feature, len(self._actions))
        self._actions.append(self._action_example(self._next_feature))
        self._next_feature += 1

    def _remove_action(self, index: int) -> None:
        # VW's weights are keyed by the action's indicator feature: keep the surviving actions'
        # features (and so their learned weights) and only drop the removed example.
        del self._actions[index]

    @classmethod
    def _upgrade_saved(
        cls, params: dict[str, Any], scalars: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> None:
        """Blobs saved before the automatic scale hold a numeric ``reward_scale`` and no
        ``cost_scale_``: they keep dividing by that number."""
        if "cost_scale_" not in scalars and isinstance(params.get("reward_scale"), int | float):
            scalars["cost_scale_"] = float(params["reward_scale"])

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        model = np.frombuffer(self._workspace.serialize(), dtype=np.uint8)
        feature_ids = np.array(
            [int(ex[_ACTION_NS].indices[0]) for ex in self._actions], dtype=np.int64
        )
        return {
            "vw_model": model,
            "vw_action_features": feature_ids,
            "vw_next_feature": np.array([self._next_feature], dtype=np.int64),
        }

    def _restore_extra(self, arrays: dict[str, np.ndarray]) -> None:
        from engine.errors import CorruptModelError

        try:
            self._workspace = vw.Workspace(
                self._argv(seeded=False), model_data=arrays["vw_model"].tobytes()
            )
            feature_ids = arrays["vw_action_features"]
            next_feature = int(arrays["vw_next_feature"][0])
        except (KeyError, IndexError, RuntimeError, ValueError) as exc:
            raise CorruptModelError(f"VW model could not be loaded: {exc}") from exc
        if feature_ids.shape != (self.n_actions,):
            raise CorruptModelError(
                f"VW model: {feature_ids.shape[0]} action features for {self.n_actions} actions"
            )
        self._next_feature = next_feature
        self._actions = [self._action_example(int(f)) for f in feature_ids]

"""The Policy base class: one batch-first API for every bandit policy.

Public methods validate and convert their inputs, then call one private hook that subclasses
write (``_choose``, ``_update``, ``_add_action``, ``_remove_action``). Validation happens before any
state changes, so a rejected call leaves the policy exactly as it was.

Hyperparameters are declared, not checked by hand: each class maps its constructor's parameters
to constraints in ``_parameter_constraints`` (see :mod:`engine.validation`), and the base class
checks them all before any ``__init__`` runs.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

from engine.errors import CorruptModelError, InvalidInputError, NoEligibleActionError
from engine.kernels import first_invalid, first_not_probability, first_outside, seed_state
from engine.policies import _blob
from engine.types import BoolArray, FloatArray, IntArray
from engine.validation import (
    SEED,
    VALUE_LIMIT,
    Integral,
    Interval,
    ParameterConstraints,
    Real,
    float_array,
    validate_params,
)


@dataclass(slots=True, eq=False, repr=False)
class Decision:
    """The outcome of :meth:`Policy.choose` for a batch of rows (read-only by convention).

    Attributes
    ----------
    actions : array of shape (n_rounds,), int64
        Index of the chosen action per row.
    propensities : array of shape (n_rounds,), float64
        Probability the policy gave the chosen action for that row, in (0, 1].
    scores : array of shape (n_rounds, n_actions), float64
        The policy's score per action (-inf where masked); higher is better.
    explored : array of shape (n_rounds,), bool
        True where the chosen action is not the policy's exploit (greedy) choice.
    """

    # Slotted and not frozen: a frozen dataclass costs ~0.5 us more per decision, which is a
    # tenth of a single-row choose. Not compared (eq=False): equality stays identity, as arrays
    # have no single truth value.
    actions: IntArray
    propensities: FloatArray
    scores: FloatArray
    explored: BoolArray

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def __repr__(self) -> str:
        return (
            f"Decision(actions={self.actions!r}, propensities={self.propensities!r}, "
            f"explored={self.explored!r})"
        )


class Policy(ABC):
    """Base class of every policy.

    Subclasses declare their learned state in ``_state_arrays`` (names of array attributes ending
    in ``_``) and ``_state_scalars`` and implement the private hooks. Hyperparameters are the
    constructor's arguments, stored under the same names; ``_parameter_constraints`` declares
    every one of them. Each public subclass also gives the contract suite its test parameters
    with a classmethod ``_unit_test_params(n_actions, n_features)``.
    """

    _parameter_constraints: ClassVar[ParameterConstraints] = {
        "n_actions": [Interval(Integral, 1, None, closed="left")],
        "n_features": [Interval(Integral, 0, None, closed="left")],
        "min_propensity": [Interval(Real, 0, 1, closed="both")],
        "seed": SEED,
    }
    _registry: ClassVar[dict[str, type[Policy]]] = {}
    _state_arrays: ClassVar[tuple[str, ...]] = ()
    _state_scalars: ClassVar[tuple[str, ...]] = ()
    _array_params: ClassVar[tuple[str, ...]] = ()
    _needs_contexts: ClassVar[bool] = True

    def __init_subclass__(cls, *, base: bool = False, **kwargs: Any) -> None:
        # A public class is a policy that from_bytes and make_policy can name, unless it is a
        # shared base declared with ``base=True`` (its subclasses register as usual).
        super().__init_subclass__(**kwargs)
        if not base and not cls.__name__.startswith("_"):
            Policy._registry[cls.__name__] = cls

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Checked here, before any __init__ of the class chain runs, so a subclass needs no call
        # of its own and a rejected construction builds nothing.
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
        bound.apply_defaults()
        params = {k: v for k, v in bound.arguments.items() if k != "self"}
        validate_params(cls.__name__, cls._parameter_constraints, params)
        return super().__new__(cls)

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        *,
        min_propensity: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.n_actions = int(n_actions)
        self.n_features = int(n_features)
        self.min_propensity = float(min_propensity)
        self.seed = None if seed is None else int(seed)
        self.rng_state_ = seed_state(self.seed)
        self.n_updates_ = 0
        self._all_eligible: BoolArray = np.ones((1, self.n_actions), dtype=np.bool_)

    # ------------------------------------------------------------------ public API
    def choose(self, contexts: Any, action_mask: Any = None) -> Decision:
        """Choose one action per row.

        Parameters
        ----------
        contexts : array-like of shape (n_rounds, n_features)
            Encoded features, finite float64.
        action_mask : array-like of bool, shape (n_rounds, n_actions), optional
            True where an action is eligible. Every row needs at least one eligible action.

        Returns
        -------
        Decision
        """
        X = self._check_contexts(contexts)
        mask = self._check_mask(action_mask, X.shape[0])
        return self._choose(X, mask)

    def update(
        self,
        contexts: Any,
        actions: Any,
        rewards: Any,
        propensities: Any = None,
        *,
        signals: Mapping[str, Any] | None = None,
    ) -> None:
        """Learn from observed rewards (higher is better).

        Parameters
        ----------
        contexts : array-like of shape (n_rounds, n_features)
        actions : array-like of int, shape (n_rounds,)
            Index of the action taken in each row, in [0, n_actions).
        rewards : array-like of float, shape (n_rounds,)
        propensities : array-like of float, shape (n_rounds,), optional
            Probability with which the logging policy took each action, in (0, 1]. Policies that
            learn off-policy (``importance_weighting=True``) weight each row by its inverse.
        signals : mapping of str to array-like of float, shape (n_rounds,), optional
            Reward components observed beside each reward (NaN where a row has none), for the
            policies that learn from one (:class:`~engine.policies.LandingLift`'s engagement);
            checked, and ignored by the others.
        """
        X = self._check_contexts(contexts)
        n = X.shape[0]
        a = _check_actions(actions, n, self.n_actions)
        r = _check_values("rewards", rewards, n)
        p = None if propensities is None else _check_propensities(propensities, n)
        s = _check_signals(signals, n)
        self._check_rewards(r)
        if n == 0:
            return
        self._update_signals(X, a, r, p, s)
        self.n_updates_ += n

    def engagement_signals(self) -> tuple[str, ...]:
        """Reward components this policy learns engagement from (values in [0, 1]): a reward
        report with one out of range is refused before it is journaled. None for most."""
        return ()

    def choose_one(self, context: Any, action_mask: Any = None) -> tuple[int, float]:
        """Choose for one customer: ``(action, propensity)``, as ``choose`` would for the row
        ``context`` (the same draw from the random state), without building a Decision.

        The single-event API of an online loop; the ridge policies (LinUCB, LinearTS,
        EpsilonGreedy, Softmax) run it as one compiled call.

        Parameters
        ----------
        context : array-like of shape (n_features,)
            Encoded features of the customer, finite float64.
        action_mask : array-like of bool, shape (n_actions,), optional
            True where an action is eligible (at least one).

        Examples
        --------
        >>> import numpy as np
        >>> from engine.policies import LinUCB
        >>> policy = LinUCB(n_actions=3, n_features=2, seed=0)
        >>> action, propensity = policy.choose_one(np.array([1.0, 0.5]))
        >>> policy.update_one(np.array([1.0, 0.5]), action, 2.0, propensity)
        >>> policy.n_updates_
        1
        """
        X = self._one_context(context)
        mask = None if action_mask is None else _one_mask(action_mask, self.n_actions)
        d = self.choose(X, mask)
        return int(d.actions[0]), float(d.propensities[0])

    def update_one(self, context: Any, action: Any, reward: Any, propensity: Any = None) -> None:
        """Learn from one observed reward: ``update`` of the row ``context``.

        Parameters
        ----------
        context : array-like of shape (n_features,)
        action : int
            Index of the action taken, in [0, n_actions).
        reward : float
        propensity : float, optional
            Probability with which the action was taken, in (0, 1].
        """
        X = self._one_context(context)
        a = _one_action(action, self.n_actions)
        r = _one_real("reward", reward)
        if propensity is None:
            self.update(X, np.full(1, a, np.int64), np.full(1, r))
            return
        p = _one_real("propensity", propensity)
        if not 0.0 < p <= 1.0:
            raise InvalidInputError("propensity", "a probability in (0, 1]", propensity)
        self.update(X, np.full(1, a, np.int64), np.full(1, r), np.full(1, p))

    def add_action(self, features: Any = None) -> int:
        """Append a new action and return its index. ``features`` is for policies over offer
        features (SharedLinear); others start the new action from their prior."""
        self._add_action(features)
        self.n_actions += 1
        self._all_eligible = np.ones((1, self.n_actions), dtype=np.bool_)
        return self.n_actions - 1

    def remove_action(self, index: int) -> None:
        """Remove action ``index``; actions after it shift down by one."""
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise InvalidInputError("index", "an int", index)
        if not 0 <= index < self.n_actions:
            raise InvalidInputError("index", f"an action index in [0, {self.n_actions})", index)
        if self.n_actions == 1:
            raise InvalidInputError(
                "index", "a removable action (a policy keeps >= 1 action)", index
            )
        self._remove_action(int(index))
        self.n_actions -= 1
        self._all_eligible = np.ones((1, self.n_actions), dtype=np.bool_)

    def prepare(self) -> None:
        """Compile (or load from cache) the kernels this policy uses; state is untouched. Also
        checks ``NBO_KERNEL_THREADS`` (ConfigError), so a server fails at start, not on its
        first large batch."""
        from engine.kernels import prepare
        from engine.policies.rows import kernel_threads

        kernel_threads()
        prepare()
        clone = self.copy()
        X = np.zeros((1, self.n_features))
        clone.choose(X)
        clone.choose(np.zeros((16, self.n_features)))

    def copy(self) -> Policy:
        """An independent copy (hyperparameters, learned state, random state).

        Much cheaper than a ``to_bytes``/``from_bytes`` round trip (no checksum, no header): an
        engine publishes a fresh immutable copy of its learner's model every few hundred rewards.
        """
        clone = object.__new__(type(self))
        for name, value in self.__dict__.items():
            setattr(clone, name, value.copy() if isinstance(value, np.ndarray) else value)
        clone._copy_extra(self)
        return clone

    def _copy_extra(self, source: Policy) -> None:  # noqa: B027 (optional hook)
        """Subclasses holding state that is not a numpy array or an immutable value copy it here."""

    @classmethod
    def hyperparameters(cls) -> tuple[str, ...]:
        """Names a configuration may set (``[policy]`` keys): every declared constructor
        parameter but the dimensions ``n_actions`` and ``n_features``, sorted.

        Examples
        --------
        >>> from engine.policies import UCB1
        >>> UCB1.hyperparameters()
        ('c', 'min_propensity', 'seed')
        """
        names = inspect.signature(cls.__init__).parameters
        return tuple(
            sorted(
                name
                for name in cls._parameter_constraints
                if name in names and name not in ("n_actions", "n_features")
            )
        )

    def reseed(self, seed: int | None) -> None:
        """Restart the random stream from ``seed`` (None: from the OS) and store it as ``seed``.

        Learned state is untouched: two copies of a model reseeded alike choose alike. (An
        engine applies its campaign's seed to a model promoted from elsewhere this way.)

        Examples
        --------
        >>> import numpy as np
        >>> from engine.policies import UniformRandom
        >>> a, b = UniformRandom(n_actions=5, seed=1), UniformRandom(n_actions=5, seed=2)
        >>> a.reseed(9); b.reseed(9)
        >>> X = np.zeros((4, 0))
        >>> a.choose(X).actions.tolist() == b.choose(X).actions.tolist(), a.seed
        (True, 9)
        """
        validate_params(type(self).__name__, {"seed": SEED}, {"seed": seed})
        self.seed = None if seed is None else int(seed)
        self.rng_state_ = seed_state(self.seed)

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters: the constructor's arguments as currently stored."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def to_bytes(self) -> bytes:
        """Serialize hyperparameters and learned state (no pickle; checksummed)."""
        params = self.get_params()
        arrays = {f"param:{k}": np.asarray(params.pop(k)) for k in self._array_params}
        arrays["rng_state_"] = self.rng_state_
        for name in self._state_arrays:
            arrays[name] = getattr(self, name)
        arrays.update(self._extra_arrays())
        scalars = {name: getattr(self, name) for name in ("n_updates_", *self._state_scalars)}
        return _blob.dump(type(self).__name__, params, scalars, arrays)

    @classmethod
    def from_bytes(
        cls, blob: bytes, *, n_actions: int | None = None, n_features: int | None = None
    ) -> Policy:
        """Rebuild a policy from :meth:`to_bytes` output. Called on ``Policy`` it returns whatever
        class was saved; called on a subclass it also checks the class.

        Before anything is built, the saved parameters are checked against the class's declared
        constraints and, when given, ``n_actions`` and ``n_features`` (a campaign's shapes), so a
        crafted blob cannot make the constructor allocate what it declares.

        Raises
        ------
        CorruptModelError
            For a blob that fails its checks, with the reason; never a TypeError or MemoryError.
        """
        name, params, scalars, arrays = _blob.load(blob)
        target = Policy._registry.get(name)
        if target is None or not issubclass(target, cls):
            raise CorruptModelError(f"model blob holds a {name!r}, expected a {cls.__name__}")
        for key in target._array_params:
            if f"param:{key}" not in arrays:
                raise CorruptModelError(f"model blob lacks the array 'param:{key}'")
            params[key] = arrays.pop(f"param:{key}")
        target._upgrade_saved(params, scalars, arrays)
        _check_saved_params(target, params, n_actions, n_features)
        for key in ("rng_state_", *target._state_arrays):
            if key not in arrays:  # refused before the constructor allocates the state
                raise CorruptModelError(f"model blob lacks the array {key!r}")
        try:
            policy = target(**params)
            policy._restore(scalars, arrays)
        except CorruptModelError:
            raise
        except (InvalidInputError, TypeError, ValueError, KeyError, MemoryError) as exc:
            raise CorruptModelError(
                f"model blob: its {name} could not be rebuilt ({type(exc).__name__}: {exc})"
            ) from None
        return policy

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.get_params().items() if not isinstance(v, np.ndarray)}
        args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _choose(self, X: FloatArray, mask: BoolArray) -> Decision:
        """Choose on validated inputs: X C-contiguous float64, mask bool (n_rounds, n_actions)."""

    @abstractmethod
    def _update(self, X: FloatArray, actions: IntArray, rewards: FloatArray, props: Any) -> None:
        """Learn from validated inputs; ``props`` is None or float64 in (0, 1]."""

    def _update_signals(
        self,
        X: FloatArray,
        actions: IntArray,
        rewards: FloatArray,
        props: Any,
        signals: Mapping[str, FloatArray],
    ) -> None:
        """``_update`` with the checked reward components: a policy that learns from some
        (:meth:`engagement_signals`) overrides this; the others ignore them."""
        self._update(X, actions, rewards, props)

    def _add_action(self, features: Any) -> None:
        if features is not None:
            raise InvalidInputError(
                "features",
                f"None for {type(self).__name__} (its per-offer models start from the prior; "
                "SharedLinear uses offer features)",
                features,
            )
        for name in self._state_arrays:
            value = getattr(self, name)
            setattr(self, name, np.concatenate([value, self._new_action_state(name)]))

    def _remove_action(self, index: int) -> None:
        for name in self._state_arrays:
            setattr(self, name, np.delete(getattr(self, name), index, axis=0))

    def _new_action_state(self, name: str) -> np.ndarray:
        """State of one fresh action for array ``name`` (leading axis of length 1)."""
        return np.zeros_like(getattr(self, name)[:1])

    @classmethod  # noqa: B027 (optional hook)
    def _upgrade_saved(
        cls, params: dict[str, Any], scalars: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> None:
        """Fill in, in place, what a blob saved by an older nbo lacks (before it is checked)."""

    def _check_rewards(self, rewards: FloatArray) -> None:  # noqa: B027 (optional hook)
        """Policies with a restricted reward range override this."""

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _restore(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        for name in ("rng_state_", *self._state_arrays):
            if name not in arrays:
                raise CorruptModelError(f"model blob lacks the array {name!r}")
            setattr(self, name, _expect_like(arrays.pop(name), getattr(self, name), name))
        for name in ("n_updates_", *self._state_scalars):
            if name not in scalars:
                raise CorruptModelError(f"model blob lacks the value {name!r}")
            setattr(self, name, _expect_scalar(scalars[name], getattr(self, name), name))
        self._restore_extra(arrays)

    def _restore_extra(self, arrays: dict[str, np.ndarray]) -> None:  # noqa: B027
        """Subclasses with state outside ``_state_arrays`` restore it here."""

    # ------------------------------------------------------------------ validation
    def _check_contexts(self, contexts: Any) -> FloatArray:
        if (
            type(contexts) is np.ndarray
            and contexts.dtype == np.float64
            and contexts.ndim == 2
            and contexts.flags.c_contiguous
        ):
            X = contexts
        else:
            X = float_array(
                "contexts", contexts, "an array of float64 of shape (n_rounds, n_features)"
            )
            if X.ndim != 2:
                raise InvalidInputError(
                    "contexts",
                    f"a 2-d array of shape (n_rounds, {self.n_features})",
                    f"an array of shape {X.shape}",
                )
        if X.shape[1] != self.n_features:
            raise InvalidInputError(
                "contexts",
                f"{self.n_features} columns (n_features)",
                f"an array of shape {X.shape}",
            )
        bad = first_invalid(X, VALUE_LIMIT)
        if bad >= 0:
            row, col = divmod(bad, X.shape[1])
            raise InvalidInputError(
                "contexts",
                f"finite values with |value| <= {VALUE_LIMIT:g}",
                f"{float(X[row, col])!r} at row {row}, column {col}",
            )
        return X

    def _one_context(self, context: Any) -> FloatArray:
        """``context`` (shape (n_features,)) as a checked row of shape (1, n_features)."""
        x = float_array("context", context, f"an array of {self.n_features} floats (n_features)")
        if x.shape != (self.n_features,):
            raise InvalidInputError(
                "context",
                f"a 1-d array of {self.n_features} floats (n_features)",
                f"an array of shape {x.shape}",
            )
        _check_finite("context", x, "column")
        return x.reshape(1, self.n_features)

    def _check_mask(self, action_mask: Any, n_rounds: int) -> BoolArray:
        if action_mask is None:
            if n_rounds == 1:
                return self._all_eligible
            return np.ones((n_rounds, self.n_actions), dtype=np.bool_)
        mask = np.asarray(action_mask)
        if mask.dtype != np.bool_:
            if mask.dtype.kind in "iu" and mask.size and not np.isin(mask, (0, 1)).all():
                raise InvalidInputError(
                    "action_mask", "a bool array (or 0/1 integers)", f"values {np.unique(mask)}"
                )
            if mask.dtype.kind not in "iub" and mask.size:
                raise InvalidInputError("action_mask", "a bool array", f"dtype {mask.dtype}")
            mask = mask.astype(np.bool_)
        if mask.shape != (n_rounds, self.n_actions):
            raise InvalidInputError(
                "action_mask",
                f"shape (n_rounds, n_actions) = ({n_rounds}, {self.n_actions})",
                f"shape {mask.shape}",
            )
        eligible = mask.any(axis=1)
        if not eligible.all():
            row = int(np.argmin(eligible))
            raise NoEligibleActionError(
                "action_mask",
                "at least one eligible action per row",
                f"row {row} with none eligible",
            )
        return np.ascontiguousarray(mask)

    def _outputs(self, n: int) -> tuple[IntArray, FloatArray, BoolArray]:
        return np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.bool_)


# ---------------------------------------------------------------------- helpers
def _check_actions(actions: Any, n: int, n_actions: int) -> IntArray:
    if type(actions) is np.ndarray and actions.dtype == np.int64 and actions.ndim == 1:
        a = actions
    else:
        a = np.asarray(actions)
        if a.dtype.kind == "f":
            if a.size and (not np.isfinite(a).all() or not (a == np.round(a)).all()):
                raise InvalidInputError("actions", "integer action indices", a[:5])
        elif a.dtype.kind not in "iu" and a.size:
            raise InvalidInputError("actions", "integer action indices", f"dtype {a.dtype}")
        a = np.ascontiguousarray(a, dtype=np.int64)
    _check_rows("actions", a, n)
    bad = first_outside(a, 0, n_actions)
    if bad >= 0:
        raise InvalidInputError("actions", f"indices in [0, {n_actions})", f"{a[bad]} at row {bad}")
    return a


def _one_action(action: Any, n_actions: int) -> int:
    if isinstance(action, bool) or not isinstance(action, int | np.integer):
        raise InvalidInputError("action", f"an action index (int) in [0, {n_actions})", action)
    if not 0 <= action < n_actions:
        raise InvalidInputError("action", f"an action index in [0, {n_actions})", action)
    return int(action)


def _one_real(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidInputError(field, "a real number", value)
    v = float(value)
    if not abs(v) <= VALUE_LIMIT:
        raise InvalidInputError(field, f"a finite number with |value| <= {VALUE_LIMIT:g}", value)
    return v


def _one_mask(action_mask: Any, n_actions: int) -> np.ndarray:
    """A one-row mask of shape (1, n_actions) (``Policy._check_mask`` checks its values)."""
    mask = np.asarray(action_mask)
    if mask.shape != (n_actions,):
        raise InvalidInputError(
            "action_mask", f"shape (n_actions,) = ({n_actions},)", f"shape {mask.shape}"
        )
    return mask.reshape(1, n_actions)


def _check_rows(field: str, a: np.ndarray, n: int) -> None:
    if a.shape != (n,):
        raise InvalidInputError(field, f"shape ({n},) (one per context row)", f"shape {a.shape}")


def _float_rows(field: str, values: Any, n: int) -> FloatArray:
    """``values`` as ``n`` float64 values, one per context row."""
    v = float_array(field, values, f"{n} float values")
    _check_rows(field, v, n)
    return v


def _check_values(field: str, values: Any, n: int) -> FloatArray:
    v = _float_rows(field, values, n)
    _check_finite(field, v, "row")
    return v


def _check_finite(field: str, values: np.ndarray, where: str) -> None:
    """Refuse a 1-d array with an entry that is NaN, infinite or beyond VALUE_LIMIT, naming its
    position (``where``: "row" or "column")."""
    bad = first_invalid(values, VALUE_LIMIT)
    if bad >= 0:
        raise InvalidInputError(
            field,
            f"finite values with |value| <= {VALUE_LIMIT:g}",
            f"{float(values[bad])!r} at {where} {bad}",
        )


def engagement_columns(
    policy: Policy, signals: Mapping[str, FloatArray] | None
) -> dict[str, FloatArray] | None:
    """The columns of ``signals`` (reward components, NaN where a row has none) that ``policy``
    learns from: its :meth:`~Policy.engagement_signals`, a value outside [0, 1] taken as not
    reported; None for a policy that learns from none. What every caller that feeds a policy
    journaled or logged components passes as ``signals`` (the learner, ``nbo train``, the
    candidates of ``nbo evaluate``): components nobody validated never stop the learning.

    Examples
    --------
    >>> import numpy as np
    >>> from engine.policies import LandingLift, LinUCB
    >>> landing = LandingLift(1, 1, offer_features=[[0, 0, 1]])
    >>> engagement_columns(landing, {"engaged": np.array([1.0, 2.0, np.nan]), "other": np.ones(3)})
    {'engaged': array([ 1., nan, nan])}
    >>> engagement_columns(LinUCB(1, 1), {"engaged": np.ones(3)}) is None
    True
    """
    names = policy.engagement_signals()
    if not names or not signals:
        return None
    out = {}
    for name in names:
        column = signals.get(name)
        if column is not None:
            out[name] = np.where((column >= 0.0) & (column <= 1.0), column, np.nan)
    return out or None


def _check_signals(signals: Any, n: int) -> dict[str, FloatArray]:
    """Reward components per row: name -> float64 of shape (n,), NaN where a row has none."""
    if signals is None:
        return {}
    if not isinstance(signals, Mapping):
        raise InvalidInputError(
            "signals", "a mapping of component name to one value per row", signals
        )
    out = {}
    for name, values in signals.items():
        if not isinstance(name, str):
            raise InvalidInputError("signals", "component names as str", repr(name))
        field = f"signals[{name!r}]"
        v = _float_rows(field, values, n)
        bad = np.flatnonzero(np.abs(v) > VALUE_LIMIT)  # infinite or too large; NaN passes
        if bad.size:
            raise InvalidInputError(
                field,
                f"finite values with |value| <= {VALUE_LIMIT:g}, or NaN where a row has none",
                f"{float(v[bad[0]])!r} at row {int(bad[0])}",
            )
        out[name] = v
    return out


def _check_propensities(propensities: Any, n: int) -> FloatArray:
    p = _float_rows("propensities", propensities, n)
    bad = first_not_probability(p)
    if bad >= 0:
        raise InvalidInputError(
            "propensities", "values in (0, 1]", f"{float(p[bad])!r} at row {bad}"
        )
    return p


def _check_saved_params(
    target: type[Policy], params: dict[str, Any], n_actions: int | None, n_features: int | None
) -> None:
    """Refuse saved parameters the constructor would not take, or that break the class's
    declared constraints or the expected shapes, before the constructor allocates anything."""
    signature = inspect.signature(target.__init__)
    names = [p for p in signature.parameters if p != "self"]
    unknown = sorted(set(params) - set(names))
    missing = [
        p
        for p in names
        if p not in params and signature.parameters[p].default is inspect.Parameter.empty
    ]
    if unknown or missing:
        raise CorruptModelError(
            f"model blob: expected the parameters of {target.__name__}, got unknown {unknown} "
            f"and missing {missing}"
        )
    try:
        validate_params(target.__name__, target._parameter_constraints, params)
    except InvalidInputError as exc:
        raise CorruptModelError(f"model blob: {exc}") from None
    for key, expected in (("n_actions", n_actions), ("n_features", n_features)):
        if expected is not None and params.get(key) != expected:
            raise CorruptModelError(
                f"model blob: expected {key} = {expected} (the campaign's), got {params.get(key)!r}"
            )


def _expect_scalar(value: Any, like: Any, name: str) -> Any:
    """A saved scalar of the type the fresh policy holds (an int is taken for a float)."""
    if isinstance(like, bool | np.bool_):
        ok = isinstance(value, bool)
    elif isinstance(like, int | np.integer):
        ok = type(value) is int
    elif isinstance(like, float | np.floating):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = like is None or value is None or type(value) is type(like)
    if not ok:
        raise CorruptModelError(
            f"model value {name!r}: expected {type(like).__name__}, got {value!r}"
        )
    return float(value) if isinstance(like, float | np.floating) else value


def _expect_like(value: np.ndarray, like: np.ndarray, name: str) -> np.ndarray:
    if value.dtype != like.dtype or value.shape != like.shape:
        raise CorruptModelError(
            f"model array {name!r}: expected {like.dtype} of shape {like.shape}, "
            f"got {value.dtype} of shape {value.shape}"
        )
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise CorruptModelError(f"model array {name!r} holds non-finite values")
    return np.ascontiguousarray(value)


def policy_classes() -> dict[str, type[Policy]]:
    """Every public policy class by class name (what :meth:`Policy.from_bytes` can rebuild)."""
    return dict(Policy._registry)

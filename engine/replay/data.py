"""LoggedData: logged decisions as one typed, validated object.

Every reader in :mod:`engine.replay.readers` ends here, so the checks live in one place: a
propensity outside (0, 1], a non-finite reward or context value, an action outside the offer list,
a logged action that was not eligible, or columns of different lengths raise
:class:`~engine.errors.InvalidInputError` naming the column and the first bad row of the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pyarrow as pa

from engine.errors import InvalidInputError
from engine.types import BoolArray, FloatArray, IntArray


@dataclass(frozen=True, eq=False)
class LoggedData:
    """Logged bandit decisions with their propensities and rewards.

    Parameters
    ----------
    context : array of shape (n_rounds, n_features), float64
        Encoded features of each decision.
    action : array of shape (n_rounds,), int64
        Index into ``actions`` of the offer that was logged.
    propensity : array of shape (n_rounds,), float64
        Probability the logging policy gave that offer, in (0, 1].
    reward : array of shape (n_rounds,), float64
        Observed net reward (finite; pending decisions are dropped by the readers).
    actions : tuple of str
        Offer ids; ``action`` indexes into it and policies use the same order.
    feature_names : tuple of str, optional
        One name per context column.
    eligible : array of shape (n_rounds, n_actions), bool, optional
        True where an offer was eligible; the logged offer must be.
    timestamp : array of shape (n_rounds,), int64, optional
        Microseconds since the Unix epoch (UTC).
    decision_id : array of shape (n_rounds,), object, or a pyarrow string array, optional
        Only error messages read it, so readers may keep it in Arrow form.
    control, explored : array of shape (n_rounds,), bool, optional
    customer : array of shape (n_rounds,), int64, optional
        Each row's customer as an int64 key (equal keys: the same customer_id; the reader hashes
        the ids, :func:`engine.replay.intervals.customer_keys`); intervals resample
        customers, not rows, when customers return (:mod:`engine.replay.intervals`).
    signals : dict of str to array of shape (n_rounds,), float64, optional
        The rewards' components by name (``engaged``, ...), NaN where a row has none: what a
        policy that learns from them (:class:`~engine.policies.LandingLift`) takes as
        ``signals``.
    source_row : array of shape (n_rounds,), int64, optional
        Row number in the source each row came from; error messages quote it.
    n_pending : int
        Decisions the reader dropped because their reward was still pending.

    Examples
    --------
    >>> import numpy as np
    >>> data = LoggedData(
    ...     context=np.zeros((3, 2)), action=np.array([0, 1, 1]),
    ...     propensity=np.full(3, 0.5), reward=np.array([1.0, 0.0, 2.0]), actions=("a", "b"))
    >>> data.n_rounds, data.n_actions, data.n_features
    (3, 2, 2)
    >>> LoggedData(context=np.zeros((2, 1)), action=np.array([0, 0]),
    ...            propensity=np.array([0.5, 1.5]), reward=np.zeros(2), actions=("a",))
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: column 'propensity', row 1: expected a probability...
    """

    context: FloatArray
    action: IntArray
    propensity: FloatArray
    reward: FloatArray
    actions: tuple[str, ...]
    feature_names: tuple[str, ...] = ()
    eligible: BoolArray | None = None
    timestamp: IntArray | None = None
    decision_id: np.ndarray | pa.Array | None = None
    control: BoolArray | None = None
    explored: BoolArray | None = None
    customer: IntArray | None = None
    signals: dict[str, FloatArray] | None = None
    source_row: IntArray | None = None
    n_pending: int = 0
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        actions = tuple(str(a) for a in self.actions)
        if not actions:
            raise InvalidInputError("actions", "at least one offer id", self.actions)
        if len(set(actions)) != len(actions):
            raise InvalidInputError("actions", "distinct offer ids", actions)
        set_(self, "actions", actions)
        action = _as_array("action", self.action, np.int64, 1)
        n = action.shape[0]
        set_(self, "action", action)
        if self.source_row is not None:
            set_(self, "source_row", _as_array("source_row", self.source_row, np.int64, 1))
            _check_length("source_row", self.source_row, n)
        context = _as_array("context", self.context, np.float64, 2)
        if context.shape[0] != n:
            raise InvalidInputError(
                "column 'context'", f"{n} rows like column 'action'", f"{context.shape[0]} rows"
            )
        set_(self, "context", context)
        for name in ("propensity", "reward"):
            value = _as_array(name, getattr(self, name), np.float64, 1)
            _check_length(name, value, n)
            set_(self, name, value)
        for name in ("control", "explored"):
            if getattr(self, name) is not None:
                value = _as_array(name, getattr(self, name), np.bool_, 1)
                _check_length(name, value, n)
                set_(self, name, value)
        for name in ("timestamp", "customer"):
            if getattr(self, name) is not None:
                value = _as_array(name, getattr(self, name), np.int64, 1)
                _check_length(name, value, n)
                set_(self, name, value)
        if self.signals is not None:
            signals = {}
            for key, column in self.signals.items():
                value = _as_array(f"signals[{key!r}]", column, np.float64, 1)
                _check_length(f"signals[{key!r}]", value, n)
                signals[str(key)] = value
            set_(self, "signals", signals)
        if isinstance(self.decision_id, pa.ChunkedArray):
            set_(self, "decision_id", self.decision_id.combine_chunks())
        elif self.decision_id is not None and not isinstance(self.decision_id, pa.Array):
            set_(self, "decision_id", np.asarray(self.decision_id, dtype=object))
        if self.decision_id is not None and len(self.decision_id) != n:
            raise InvalidInputError(
                "column 'decision_id'", f"{n} rows like column 'action'", len(self.decision_id)
            )
        names = tuple(str(f) for f in self.feature_names)
        if names and len(names) != context.shape[1]:
            raise InvalidInputError(
                "feature_names", f"{context.shape[1]} names (one per context column)", names
            )
        set_(self, "feature_names", names)
        self._validate_values()

    # ------------------------------------------------------------------ validation
    def _validate_values(self) -> None:
        k = len(self.actions)
        bad = (self.action < 0) | (self.action >= k)
        self._fail_first(bad, "action", f"an offer index in [0, {k})", self.action)
        if self.context.size:
            finite = np.asarray(np.isfinite(self.context).all(axis=1))
            self._fail_first(~finite, "context", "finite values", self.context)
        p = self.propensity
        self._fail_first(~((p > 0.0) & (p <= 1.0)), "propensity", "a probability in (0, 1]", p)
        self._fail_first(~np.isfinite(self.reward), "reward", "a finite number", self.reward)
        if self.eligible is not None:
            eligible = _as_array("eligible", self.eligible, np.bool_, 2)
            if eligible.shape != (self.n_rounds, k):
                raise InvalidInputError(
                    "column 'eligible'", f"shape ({self.n_rounds}, {k})", eligible.shape
                )
            object.__setattr__(self, "eligible", eligible)
            rows = np.arange(self.n_rounds)
            self._fail_first(
                ~eligible[rows, self.action],
                "eligible",
                "the logged action among the eligible offers",
                np.asarray([repr(a) for a in self.actions], dtype=object)[self.action],
            )

    def _fail_first(self, bad: np.ndarray, column: str, expected: str, values: Any) -> None:
        if not bad.any():
            return
        i = int(np.argmax(bad))
        raise InvalidInputError(self.row_label(column, i), expected, _value(values, i))

    def row_label(self, column: str, i: int) -> str:
        """How error messages name row ``i`` of ``column``: source row and decision id."""
        row = int(self.source_row[i]) if self.source_row is not None else i
        label = f"column {column!r}, row {row}"
        if self.decision_id is not None:
            value = self.decision_id[i]
            value = value.as_py() if isinstance(value, pa.Scalar) else value
            label += f" (decision_id {value!r})"
        return label

    # ------------------------------------------------------------------ shape
    @property
    def n_rounds(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    @property
    def n_features(self) -> int:
        return int(self.context.shape[1])

    def __len__(self) -> int:
        return self.n_rounds

    def action_mask(self) -> BoolArray:
        """Eligible offers, array of shape (n_rounds, n_actions); all True without the column."""
        if self.eligible is not None:
            return self.eligible
        return np.ones((self.n_rounds, self.n_actions), dtype=np.bool_)

    def returning_customers(self) -> bool:
        """True when some customer has several rows (their rows are not independent)."""
        if self.customer is None or self.n_rounds < 2:
            return False
        return bool(np.unique(self.customer).shape[0] < self.n_rounds)

    def is_uniform(self, rtol: float = 1e-6) -> bool:
        """True when every propensity equals 1 / (number of eligible offers) of its row."""
        n_eligible = self.action_mask().sum(axis=1)
        return bool(np.allclose(self.propensity * n_eligible, 1.0, rtol=rtol, atol=0.0))

    # ------------------------------------------------------------------ subsets
    def take(self, index: IntArray | slice) -> LoggedData:
        """Rows ``index`` (a slice or integer array), as a new LoggedData.

        The rows were validated already, so the copy skips validation (it matters at 10M rows).
        """
        subset = object.__new__(LoggedData)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = value[index]
            elif f.name == "signals":
                value = signal_rows(value, index)
            elif isinstance(value, pa.Array):
                value = value[index] if isinstance(index, slice) else value.take(pa.array(index))
            object.__setattr__(subset, f.name, value)
        if self.source_row is None:
            rows = np.arange(self.n_rounds, dtype=np.int64)[index]
            object.__setattr__(subset, "source_row", rows)
        object.__setattr__(subset, "n_pending", 0)
        return subset

    def sorted_by_time(self) -> LoggedData:
        """Rows in timestamp order (stable); the data itself when already sorted or untimed."""
        if self.timestamp is None or bool(np.all(np.diff(self.timestamp) >= 0)):
            return self
        sorted_ = self.take(np.argsort(self.timestamp, kind="stable"))
        object.__setattr__(sorted_, "n_pending", self.n_pending)
        return sorted_

    def split(self, train_fraction: float) -> tuple[LoggedData, LoggedData]:
        """Chronological split: the first ``train_fraction`` of rows trains, the rest tests.

        Examples
        --------
        >>> import numpy as np
        >>> data = LoggedData(context=np.zeros((10, 1)), action=np.zeros(10, int),
        ...                   propensity=np.ones(10), reward=np.arange(10.0), actions=("a",))
        >>> train, test = data.split(0.3)
        >>> len(train), len(test), float(test.reward[0])
        (3, 7, 3.0)
        """
        if not 0.0 <= train_fraction < 1.0:
            raise InvalidInputError("train_fraction", "a number in [0, 1)", train_fraction)
        data = self.sorted_by_time()
        cut = round(train_fraction * data.n_rounds)
        return data.take(slice(0, cut)), data.take(slice(cut, data.n_rounds))


def signal_rows(
    signals: dict[str, FloatArray] | None, index: IntArray | BoolArray | slice
) -> dict[str, FloatArray] | None:
    """Rows ``index`` of every column of ``signals`` (:attr:`LoggedData.signals`), or None."""
    return None if signals is None else {k: v[index] for k, v in signals.items()}


def _as_array(name: str, value: Any, dtype: Any, ndim: int) -> np.ndarray:
    try:
        array = np.ascontiguousarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"column {name!r}", f"values convertible to {dtype}", value
        ) from exc
    if array.ndim != ndim:
        raise InvalidInputError(
            f"column {name!r}", f"a {ndim}-d array", f"an array of shape {array.shape}"
        )
    return array


def _check_length(name: str, value: np.ndarray, n: int) -> None:
    if value.shape[0] != n:
        raise InvalidInputError(
            f"column {name!r}", f"{n} rows like column 'action'", f"{value.shape[0]} rows"
        )


def _value(values: Any, i: int) -> Any:
    value = values[i]
    if isinstance(value, np.ndarray):
        bad = value[~np.isfinite(value)]
        return bad[0].item() if bad.size else value.tolist()
    return value.item() if isinstance(value, np.generic) else value

"""What every simulated environment provides: rounds with their ground truth, and sampled outcomes.

An environment draws *rounds* (one customer arriving at a decision point each) carrying the numeric
context a policy sees, which offers are eligible, and the ground-truth expected net reward of
every offer for that customer. Outcomes are then sampled for the offers a policy chose, with the
delay after which each outcome becomes known. Knowing the expected reward of every action makes
the oracle, regret and the exact value of any policy available without Monte Carlo error in the
outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from engine.errors import InvalidInputError
from engine.types import BoolArray, FloatArray, IntArray


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, written through tanh (no overflow for large ``|x|``).

    Examples
    --------
    >>> sigmoid(np.array([-800.0, 0.0, 800.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass(frozen=True)
class Rounds:
    """A batch of consecutive decision points drawn from an environment.

    Attributes
    ----------
    contexts : array of shape (n_rounds, n_features)
        Encoded features, what a policy sees.
    expected_rewards : array of shape (n_rounds, n_actions)
        Ground-truth expected net reward of every action; ``-inf`` where the action is ineligible.
    action_mask : array of shape (n_rounds, n_actions)
        True where the action is eligible.
    timestamps : array of shape (n_rounds,)
        Arrival time in days since the start of the stream.
    customer_ids : list of str, length n_rounds
    attributes : dict of str to array of shape (n_rounds,)
        Raw customer attributes (what a backend would send to the Engine), possibly empty.
    truth : dict of str to array
        Environment-specific latent quantities used to sample outcomes.
    """

    contexts: FloatArray
    expected_rewards: FloatArray
    action_mask: BoolArray
    timestamps: FloatArray
    customer_ids: list[str]
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    truth: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_rounds(self) -> int:
        return int(self.contexts.shape[0])

    def oracle_actions(self) -> IntArray:
        """Index of the best eligible action per round (the first one on ties)."""
        return np.asarray(np.argmax(self.expected_rewards, axis=1), dtype=np.int64)

    def oracle_rewards(self) -> FloatArray:
        """Expected net reward of the oracle's action per round."""
        return np.asarray(np.max(self.expected_rewards, axis=1), dtype=np.float64)

    def expected_reward_of(self, actions: IntArray) -> FloatArray:
        """Expected net reward of the given action per round.

        Raises
        ------
        InvalidInputError
            If ``actions`` has the wrong shape or picks an ineligible action.
        """
        actions = np.asarray(actions)
        if actions.shape != (self.n_rounds,):
            raise InvalidInputError("actions", f"shape ({self.n_rounds},)", actions.shape)
        rows = np.arange(self.n_rounds)
        if not np.all(self.action_mask[rows, actions]):
            bad = int(np.flatnonzero(~self.action_mask[rows, actions])[0])
            raise InvalidInputError(f"actions[{bad}]", "an eligible action", int(actions[bad]))
        return np.asarray(self.expected_rewards[rows, actions], dtype=np.float64)

    def slice(self, start: int, stop: int) -> Rounds:
        """Rounds ``start`` to ``stop`` (exclusive) of this batch."""
        return Rounds(
            contexts=self.contexts[start:stop],
            expected_rewards=self.expected_rewards[start:stop],
            action_mask=self.action_mask[start:stop],
            timestamps=self.timestamps[start:stop],
            customer_ids=self.customer_ids[start:stop],
            attributes={k: v[start:stop] for k, v in self.attributes.items()},
            truth={k: v[start:stop] for k, v in self.truth.items()},
        )


@dataclass(frozen=True)
class Outcomes:
    """Sampled outcomes of the chosen actions.

    Attributes
    ----------
    rewards : array of shape (n_rounds,)
        Realized net reward (outcome value minus the offer's cost).
    values : array of shape (n_rounds,)
        Realized outcome value before the offer's cost (what a backend reports to the Engine).
    delays : array of shape (n_rounds,)
        Days between the decision and the moment the outcome is known.
    signals : dict of str to array of shape (n_rounds,)
        Reward components a backend would report beside the value (``renewal-multi``: ``engaged``,
        1 when the message landed, 0 when not, NaN where no message went out); known with the
        outcome.
    """

    rewards: FloatArray
    values: FloatArray
    delays: FloatArray
    signals: dict[str, FloatArray] = field(default_factory=dict)


class IndicatorOffers:
    """The ids, feature names and offer features of an environment that holds its ids in
    ``_action_ids`` and ``_feature_names`` and describes each offer by an indicator alone."""

    _action_ids: tuple[str, ...]
    _feature_names: tuple[str, ...]

    @property
    def action_ids(self) -> tuple[str, ...]:
        return self._action_ids

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._feature_names

    @property
    def offer_features(self) -> FloatArray:
        """One indicator per offer, shape (n_actions, n_actions)."""
        return np.eye(len(self._action_ids))


@runtime_checkable
class Environment(Protocol):
    """A bandit environment with ground truth (see :class:`Rounds`).

    Learners get the rewards as drawn, in the environment's own currency: their exploration is
    measured in units of the reward noise they estimate (docs/architecture.md, "Scale-free
    exploration"), so no environment says how big its rewards are.
    """

    name: str

    @property
    def action_ids(self) -> tuple[str, ...]: ...

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    @property
    def offer_features(self) -> FloatArray: ...

    @property
    def control_action(self) -> int | None: ...

    def sample_rounds(self, n_rounds: int, rng: np.random.Generator, start: int = 0) -> Rounds: ...

    def draw_outcomes(
        self, rounds: Rounds, actions: IntArray, rng: np.random.Generator
    ) -> Outcomes: ...


def check_n_rounds(n_rounds: object, name: str = "n_rounds") -> int:
    """Validate a count of rounds (an int >= 1) and return it as int."""
    if isinstance(n_rounds, bool) or not isinstance(n_rounds, int | np.integer) or n_rounds < 1:
        raise InvalidInputError(name, "an integer >= 1", n_rounds)
    return int(n_rounds)


def check_actions(rounds: Rounds, actions: object) -> IntArray:
    """Validate chosen actions against a batch of rounds and return them as int64."""
    arr = np.asarray(actions)
    if arr.shape != (rounds.n_rounds,) or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(
            "actions", f"integer array of shape ({rounds.n_rounds},)", f"{arr.dtype} {arr.shape}"
        )
    n_actions = rounds.expected_rewards.shape[1]
    if arr.size and (arr.min() < 0 or arr.max() >= n_actions):
        raise InvalidInputError("actions", f"indices in [0, {n_actions})", (arr.min(), arr.max()))
    return arr.astype(np.int64, copy=False)

"""A synthetic linear stream: each offer's expected reward is linear in the context.

The environment a linear learner is built for, at any width, to check that exploration defaults
transfer across dimensions and reward scales: ``linear-8``, ``linear-32`` and ``linear-128`` in
``nbo simulate --env`` (d features including a constant, 5 offers). Rewards are in dollars, not of
order 1, so a default that assumes unit rewards shows here.
"""

from __future__ import annotations

import math

import numpy as np

from engine.errors import InvalidInputError
from engine.types import IntArray
from simulators.base import IndicatorOffers, Outcomes, Rounds, check_actions, check_n_rounds

#: The widths ``make_env`` knows as ``linear-<d>``.
WIDTHS = (8, 32, 128)


class LinearEnvironment(IndicatorOffers):
    """Offers with linear expected rewards theta_a . x plus Gaussian noise.

    The d - 1 context features are standard normal (the first column is a constant 1); each of
    the ``n_actions`` offers' weights are drawn once from ``world_seed``: a shared baseline, and
    an offer effect of deviation ``effect / sqrt(d)`` per feature, so the oracle's advantage over
    any single offer stays of the same size at every width. The realized reward is the expected
    one plus N(0, noise^2), all times ``scale``.

    Parameters
    ----------
    d : int, default 32
        Context width, the constant included (>= 2).
    n_actions : int, default 5
    noise : float, default 1.0
        Deviation of the reward noise, in units of the offer effect's.
    scale : float, default 50.0
        Currency unit of the rewards.
    world_seed : int, default 7
        Seed of the offers' weights (the stream's customers come from the run's seed).

    Examples
    --------
    >>> import numpy as np
    >>> env = LinearEnvironment(d=8)
    >>> env.name, env.action_ids[:2], len(env.feature_names)
    ('linear-8', ('offer_0', 'offer_1'), 8)
    >>> rounds = env.sample_rounds(4000, np.random.default_rng(0))
    >>> gain = rounds.oracle_rewards().mean() - rounds.expected_rewards.mean(axis=0).max()
    >>> bool(gain > 20.0)
    True
    """

    def __init__(
        self,
        d: int = 32,
        n_actions: int = 5,
        noise: float = 1.0,
        scale: float = 50.0,
        world_seed: int = 7,
    ) -> None:
        for field, value, low in (("d", d, 2), ("n_actions", n_actions, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(field, f"an int >= {low}", value)
        for field, number in (("noise", noise), ("scale", scale)):
            if isinstance(number, bool) or not isinstance(number, int | float) or not number > 0:
                raise InvalidInputError(field, "a float > 0", number)
        self.d, self.noise, self.scale = d, float(noise), float(scale)
        self.name = f"linear-{d}"
        rng = np.random.default_rng(world_seed)
        base = rng.normal(size=d) / math.sqrt(d)
        self._theta = base[None, :] + rng.normal(size=(n_actions, d)) / math.sqrt(d)
        self._action_ids = tuple(f"offer_{a}" for a in range(n_actions))
        self._feature_names = ("bias", *(f"x{i}" for i in range(1, d)))

    @property
    def control_action(self) -> int:
        return 0

    def sample_rounds(self, n_rounds: int, rng: np.random.Generator, start: int = 0) -> Rounds:
        """``n_rounds`` customers with standard normal features, one per time unit."""
        n_rounds = check_n_rounds(n_rounds)
        X = np.hstack([np.ones((n_rounds, 1)), rng.normal(size=(n_rounds, self.d - 1))])
        k = len(self._action_ids)
        return Rounds(
            contexts=X,
            expected_rewards=self.scale * (X @ self._theta.T),
            action_mask=np.ones((n_rounds, k), dtype=bool),
            timestamps=start + np.arange(n_rounds, dtype=np.float64),
            customer_ids=[f"c{start + i}" for i in range(n_rounds)],
        )

    def draw_outcomes(
        self, rounds: Rounds, actions: IntArray, rng: np.random.Generator
    ) -> Outcomes:
        """The chosen offer's expected reward plus Gaussian noise, known at once."""
        actions = check_actions(rounds, actions)
        mean = rounds.expected_reward_of(actions)
        rewards = mean + self.scale * self.noise * rng.normal(size=rounds.n_rounds)
        return Outcomes(rewards=rewards, values=rewards, delays=np.zeros(rounds.n_rounds))

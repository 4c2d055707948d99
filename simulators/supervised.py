"""A classification data set turned into a bandit stream: reward 1 for the right class.

Each round draws one example (with replacement); the actions are the classes; choosing the true
class earns 1, any other 0. Only the chosen class's reward is revealed, which is the bandit
feedback that separates exploration strategies. Data sets ship with scikit-learn (no download).
"""

from __future__ import annotations

import numpy as np

from engine.errors import InvalidInputError
from engine.types import IntArray
from simulators.base import IndicatorOffers, Outcomes, Rounds, check_actions, check_n_rounds

DATASETS = ("digits", "wine", "iris", "breast_cancer")


class SupervisedEnvironment(IndicatorOffers):
    """Bandit stream over a scikit-learn bundled classification data set.

    Parameters
    ----------
    dataset : {"digits", "wine", "iris", "breast_cancer"}, default "digits"
    label_noise : float, default 0.0
        Probability that a round's reward is flipped (1 <-> 0): noisy feedback. The ground truth
        accounts for it (expected reward of the right class = 1 - label_noise).

    Examples
    --------
    >>> import numpy as np
    >>> env = SupervisedEnvironment("wine")
    >>> env.action_ids, len(env.feature_names)
    (('class_0', 'class_1', 'class_2'), 14)
    >>> rounds = env.sample_rounds(5, np.random.default_rng(0))
    >>> rounds.expected_rewards.sum(axis=1).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0]
    """

    def __init__(self, dataset: str = "digits", label_noise: float = 0.0) -> None:
        from sklearn import datasets

        if dataset not in DATASETS:
            raise InvalidInputError("dataset", f"one of {DATASETS}", dataset)
        if not 0.0 <= label_noise < 0.5:
            raise InvalidInputError("label_noise", "a float in [0, 0.5)", label_noise)
        bunch = getattr(datasets, f"load_{dataset}")()
        X = np.asarray(bunch.data, dtype=np.float64)
        std = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
        self.name = f"supervised-{dataset}"
        self.dataset = dataset
        self.label_noise = float(label_noise)
        self._X = np.hstack([np.ones((X.shape[0], 1)), X])
        self._y = np.asarray(bunch.target, dtype=np.int64)
        names = getattr(bunch, "target_names", None)
        n_classes = int(self._y.max()) + 1
        if names is None or len(names) != n_classes:
            names = [str(c) for c in range(n_classes)]
        self._action_ids = tuple(f"class_{n}" if str(n).isdigit() else str(n) for n in names)
        self._feature_names = ("bias", *(str(f) for f in bunch.feature_names))

    @property
    def control_action(self) -> None:
        return None

    @property
    def n_examples(self) -> int:
        return int(self._X.shape[0])

    def sample_rounds(self, n_rounds: int, rng: np.random.Generator, start: int = 0) -> Rounds:
        """Draw ``n_rounds`` examples uniformly with replacement."""
        n_rounds = check_n_rounds(n_rounds)
        idx = rng.integers(0, self.n_examples, n_rounds)
        k = len(self._action_ids)
        hit = np.zeros((n_rounds, k))
        hit[np.arange(n_rounds), self._y[idx]] = 1.0
        expected = self.label_noise + (1.0 - 2.0 * self.label_noise) * hit
        return Rounds(
            contexts=self._X[idx],
            expected_rewards=expected,
            action_mask=np.ones((n_rounds, k), dtype=bool),
            timestamps=(start + np.arange(n_rounds, dtype=np.float64)),
            customer_ids=[f"x{i}" for i in idx],
            truth={"label": self._y[idx], "correct": hit},
        )

    def draw_outcomes(
        self, rounds: Rounds, actions: IntArray, rng: np.random.Generator
    ) -> Outcomes:
        """Reward 1 for the right class (flipped with probability ``label_noise``), no delay."""
        actions = check_actions(rounds, actions)
        correct = rounds.truth["label"] == actions
        flip = rng.random(rounds.n_rounds) < self.label_noise
        rewards = (correct ^ flip).astype(np.float64)
        return Outcomes(rewards=rewards, values=rewards, delays=np.zeros(rounds.n_rounds))

"""A retention population whose offers work only through interactions of attributes.

Every offer's effect is nonlinear in the attributes a policy sees, so no per-offer model that is
linear in the encoded features can represent the best rule:

- ``discount``: works only for price-sensitive customers (a threshold) *with* payment trouble
  (a product of two conditions); for everyone else it is pure cost;
- ``free_month``: works for customers with payment trouble in their second or third year
  (a band of tenure: two thresholds, times a condition);
- ``upgrade``: works for customers whose usage grows past a threshold once they have stayed a
  year, and drives away those whose usage grows sooner (the sign of one effect set by another);
- ``bundle``: works for households where exactly one of ``has_kids`` and ``urban`` holds (an
  XOR: the two attributes' marginal effects cancel) and puts the others off;
- ``call_back``: a channel that works only for some segments: seniors and business customers
  who reach the company by phone; young customers on the phone resent it.

A customer renews with probability sigmoid(base + lift of the offer), the base linear in a few
attributes; the reward is 1 for a renewal minus the offer's cost (charged whether or not the
customer renews), so the expected reward of every (customer, offer) is known exactly and the
oracle is the best any policy seeing the same attributes can do. Outcomes are known at once.
With 100,000 customers, LinUCB reaches about 84% of the oracle's value and RandomFourierUCB
about 92% (``benchmarks/learning_nonlinear.py``).
"""

from __future__ import annotations

import numpy as np

from engine.errors import InvalidInputError
from engine.types import FloatArray, IntArray
from simulators.base import Outcomes, Rounds, check_actions, check_n_rounds, sigmoid

OFFERS = ("none", "discount", "free_month", "upgrade", "bundle", "call_back")
#: Cost of each offer, in units of a renewal's value.
OFFER_COSTS = (0.0, 0.10, 0.08, 0.03, 0.05, 0.04)
SEGMENTS = ("young", "family", "senior", "business")
CHANNELS = ("email", "app", "phone")
REGIONS = ("north", "south", "east", "west")
# (name, mean, std) of the numeric attributes, for their standardized encoding
NUMERIC = (
    ("price_sensitivity", 0.5, 0.29),
    ("payment_failures", 0.6, 0.8),
    ("tenure_months", 24.0, 20.0),
    ("usage_trend", 0.0, 0.3),
    ("num_products", 1.6, 0.8),
)
BINARY = ("has_kids", "urban", "autopay")
CATEGORICAL = (("segment", SEGMENTS), ("channel", CHANNELS), ("region", REGIONS))
FEATURE_NAMES = (
    "bias",
    *(name for name, _, _ in NUMERIC),
    *BINARY,
    *(f"{name}={value}" for name, values in CATEGORICAL for value in values),
)


class InteractionEnvironment:
    """Retention offers whose effects are products, thresholds and an XOR of attributes.

    Parameters
    ----------
    effect : float, default 1.0
        Multiplies every offer's lift (log-odds); 0 makes every incentive pure cost.

    Examples
    --------
    >>> import numpy as np
    >>> env = InteractionEnvironment()
    >>> env.action_ids
    ('none', 'discount', 'free_month', 'upgrade', 'bundle', 'call_back')
    >>> rounds = env.sample_rounds(2000, np.random.default_rng(0))
    >>> rounds.contexts.shape, rounds.expected_rewards.shape
    ((2000, 20), (2000, 6))
    >>> oracle = rounds.oracle_rewards().mean()
    >>> control = rounds.expected_reward_of(np.zeros(2000, dtype=np.int64)).mean()
    >>> bool(oracle > control + 0.1)
    True
    """

    name = "interactions"

    def __init__(self, effect: float = 1.0) -> None:
        if isinstance(effect, bool) or not isinstance(effect, int | float) or not effect >= 0:
            raise InvalidInputError("effect", "a float >= 0", effect)
        self.effect = float(effect)

    @property
    def action_ids(self) -> tuple[str, ...]:
        return OFFERS

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    @property
    def offer_features(self) -> FloatArray:
        """One indicator per offer, shape (n_actions, n_actions)."""
        return np.eye(len(OFFERS))

    @property
    def control_action(self) -> int:
        return 0

    # -- population ------------------------------------------------------------------------
    def draw_attributes(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Raw attributes of ``n`` customers (arrays keyed by attribute name)."""
        segment = rng.choice(4, size=n, p=[0.3, 0.3, 0.2, 0.2])
        # seniors and business customers call more often; the young use the app
        channel_p = np.array(
            [[0.3, 0.55, 0.15], [0.4, 0.35, 0.25], [0.3, 0.1, 0.6], [0.4, 0.2, 0.4]]
        )
        u = rng.random(n)[:, None]
        channel = (u > np.cumsum(channel_p[segment], axis=1)).sum(axis=1)
        return {
            "price_sensitivity": rng.random(n),
            "payment_failures": rng.poisson(0.6, n).astype(np.int64),
            "tenure_months": np.minimum(1 + np.floor(rng.exponential(22.0, n)), 120).astype(
                np.int64
            ),
            "usage_trend": np.clip(rng.normal(0.0, 0.3, n), -1.0, 1.0),
            "num_products": np.minimum(1 + rng.poisson(0.6, n), 5).astype(np.int64),
            "has_kids": rng.random(n) < 0.45,
            "urban": rng.random(n) < 0.5,
            "autopay": rng.random(n) < 0.55,
            "segment": np.asarray(SEGMENTS, dtype=object)[segment],
            "channel": np.asarray(CHANNELS, dtype=object)[np.minimum(channel, 2)],
            "region": np.asarray(REGIONS, dtype=object)[rng.integers(0, 4, n)],
        }

    def encode(self, attributes: dict[str, np.ndarray]) -> FloatArray:
        """Numeric features, shape (n_rounds, 20), named by ``feature_names``: a bias, the
        standardized numeric attributes, the binary ones as 0/1 and one-hot categories."""
        n = len(attributes["segment"])
        X = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64)
        X[:, 0] = 1.0
        j = 1
        for name, mean, std in NUMERIC:
            X[:, j] = (attributes[name].astype(np.float64) - mean) / std
            j += 1
        for name in BINARY:
            X[:, j] = attributes[name]
            j += 1
        for name, values in CATEGORICAL:
            for value in values:
                X[:, j] = attributes[name] == value
                j += 1
        return X

    # -- ground truth ----------------------------------------------------------------------
    def renew_logits(self, attributes: dict[str, np.ndarray]) -> FloatArray:
        """Renewal log-odds of every (customer, offer), shape (n_rounds, n_actions)."""
        a = attributes
        price = a["price_sensitivity"].astype(np.float64)
        trouble = (a["payment_failures"] >= 1).astype(np.float64)
        tenure = a["tenure_months"].astype(np.float64)
        usage = a["usage_trend"].astype(np.float64)
        kids, urban = a["has_kids"].astype(bool), a["urban"].astype(bool)
        seg, channel = a["segment"], a["channel"]
        base = (
            -1.0
            + 0.3 * np.log(tenure / 12.0)
            + 1.5 * usage
            - 0.4 * trouble
            + 0.3 * a["autopay"]
            + 0.2 * (a["num_products"] - 1.0)
        )
        phone_segment = np.isin(seg, ("senior", "business")) & (channel == "phone")
        young_phone = (seg == "young") & (channel == "phone")
        lifts = np.stack(
            [
                np.zeros_like(price),
                np.where((price > 0.6) & (trouble > 0), 4.0, -0.6),
                np.where((trouble > 0) & (tenure >= 6) & (tenure <= 30), 4.0, -0.4),
                np.where(usage > 0.15, np.where(tenure >= 12, 4.0, -2.0), -0.6),
                np.where(kids ^ urban, 2.6, -1.3),
                np.where(phone_segment, 3.2, np.where(young_phone, -2.0, -0.4)),
            ],
            axis=1,
        )
        return base[:, None] + self.effect * lifts

    def expected_rewards_of(self, logits: FloatArray) -> FloatArray:
        """Expected net reward given renewal log-odds: P(renew) minus the offer's cost."""
        return sigmoid(logits) - np.asarray(OFFER_COSTS)[None, :]

    # -- the Environment protocol ----------------------------------------------------------
    def sample_rounds(self, n_rounds: int, rng: np.random.Generator, start: int = 0) -> Rounds:
        """``n_rounds`` fresh customers drawn from ``rng`` (its only randomness), numbered and
        timestamped from ``start``; every offer is eligible."""
        n_rounds = check_n_rounds(n_rounds)
        attributes = self.draw_attributes(n_rounds, rng)
        logits = self.renew_logits(attributes)
        return Rounds(
            contexts=self.encode(attributes),
            expected_rewards=self.expected_rewards_of(logits),
            action_mask=np.ones((n_rounds, len(OFFERS)), dtype=bool),
            timestamps=start + np.arange(n_rounds, dtype=np.float64),
            customer_ids=[f"c{start + i}" for i in range(n_rounds)],
            attributes=attributes,
            truth={"renew_logits": logits},
        )

    def draw_outcomes(
        self, rounds: Rounds, actions: IntArray, rng: np.random.Generator
    ) -> Outcomes:
        """Sample renewals of the chosen offers; the cost is charged either way; no delay."""
        actions = check_actions(rounds, actions)
        n = rounds.n_rounds
        logits = rounds.truth["renew_logits"][np.arange(n), actions]
        renewed = (rng.random(n) < sigmoid(logits)).astype(np.float64)
        return Outcomes(
            rewards=renewed - np.asarray(OFFER_COSTS)[actions],
            values=renewed,
            delays=np.zeros(n),
        )

"""A subscription-renewal population with known heterogeneous treatment effects.

Each round is a customer whose contract ends soon. Observed attributes (the names of
``examples/renewal.toml``: tenure, price, usage trend, support tickets, payment failures, days to
renewal, products, autopay, plan, contract type, channel, region) drive latent traits:

- *churn risk*: log-odds of leaving with no incentive (seasonal, plus a hidden per-customer shock
  that no policy sees);
- *price sensitivity* (moved by discounts) and *cash strain* (moved by a free month);
- *upgrade appetite*: growing usage on a lower plan;
- *loyalty need*: long tenure with recent support trouble, moved by a gesture (the gift);
- *do-not-disturb*: dormant monthly autopay customers whom any offer reminds to cancel;
- *lost cause*: payment trouble plus collapsing usage, unmoved by anything.

So the population mixes sure-things (renew anyway: an incentive is pure cost), lost causes,
persuadables (stay only for the right incentive) and do-not-disturbs (an offer makes them leave).
A renewal is worth the margin over the next term; the reward is that value minus the offer's
cost, charged as the campaign says (by default only when the customer renews). The ground truth is
the expected reward given the observed attributes and the date, the hidden shock integrated out
exactly (Gauss-Hermite quadrature): the oracle is the best any policy seeing the same attributes
can do. Outcomes become known after a random delay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.errors import InvalidInputError, InvalidParameterError
from engine.types import BoolArray, FloatArray, IntArray
from simulators.base import Outcomes, Rounds, check_actions, check_n_rounds, sigmoid
from simulators.offers import (
    CHARGE_MODES,
    DEFAULT_CHARGE,
    DEFAULT_OFFERS,
    Offer,
    offers_from_campaign,
)

PLANS = ("basic", "standard", "premium")
PLAN_PRICES = (29.99, 44.99, 69.99)
CONTRACTS = ("monthly", "annual", "two_year")
CHANNELS = ("email", "web", "call_center", "app")
REGIONS = ("north", "south", "east", "west", "central")
# (name, mean, std) as in examples/renewal.toml's [[features.numeric]]
NUMERIC = (
    ("tenure_months", 30.0, 22.0),
    ("monthly_price", 45.0, 20.0),
    ("usage_trend", 0.0, 0.3),
    ("support_tickets", 1.0, 1.5),
    ("payment_failures", 0.3, 0.7),
    ("days_to_renewal", 30.0, 17.0),
    ("num_products", 1.6, 0.9),
    ("autopay", 0.55, 0.5),
)
CATEGORICAL = (
    ("plan", PLANS),
    ("contract_type", CONTRACTS),
    ("channel", CHANNELS),
    ("region", REGIONS),
)
FEATURE_NAMES = (
    "bias",
    *(name for name, _, _ in NUMERIC),
    *(f"{name}={value}" for name, values in CATEGORICAL for value in values),
)
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(24)
_GH_WEIGHTS = _GH_WEIGHTS / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class RenewalConfig:
    """Knobs of the renewal environment (the defaults are the benchmark environment).

    Parameters
    ----------
    offers : tuple of Offer
        The campaign's offers (default: those of examples/renewal.toml); the first of kind
        ``"none"`` is the control.
    charge_cost : {"on_success", "always", "never"}
        When an offer's cost is charged: only if the customer renews (default), always, never.
    customers_per_day : float
        Arrival rate; 100,000 customers span a year at the default.
    delay_days : (float, float)
        An outcome becomes known uniformly between these many days after the decision.
    seasonality : float
        Amplitude (log-odds) of the yearly churn cycle, peaking in mid-January.
    drift : float
        Yearly increase (log-odds) of price sensitivity as a competitor's pricing bites; 0 = none.
    hidden_sd : float
        Standard deviation (log-odds) of the per-customer shock no policy sees.
    term_months : int
        Length of the next term whose margin a renewal earns.
    gross_margin : float
        Share of revenue that is margin: a renewal is worth gross_margin * price * term_months.
    population_size : int or None
        None: every arrival is a fresh customer. An int: arrivals are drawn (with replacement)
        from a fixed book of that many customers generated from ``population_seed``.
    population_seed : int
    """

    offers: tuple[Offer, ...] = DEFAULT_OFFERS
    charge_cost: str = DEFAULT_CHARGE
    customers_per_day: float = 274.0
    delay_days: tuple[float, float] = (7.0, 30.0)
    seasonality: float = 0.25
    drift: float = 0.0
    hidden_sd: float = 0.8
    term_months: int = 12
    gross_margin: float = 0.7
    population_size: int | None = None
    population_seed: int = 0

    def __post_init__(self) -> None:
        own = "RenewalConfig"
        if not self.offers or not any(o.kind == "none" for o in self.offers):
            raise InvalidParameterError(
                own, "offers", "offers including one of kind 'none'", self.offers
            )
        ids = [o.offer_id for o in self.offers]
        if len(set(ids)) != len(ids):
            raise InvalidParameterError(own, "offers", "offers with distinct ids", ids)
        if self.charge_cost not in CHARGE_MODES:
            raise InvalidParameterError(
                own, "charge_cost", f"one of {CHARGE_MODES}", self.charge_cost
            )
        if not self.customers_per_day > 0:
            raise InvalidParameterError(
                own, "customers_per_day", "a float > 0", self.customers_per_day
            )
        lo, hi = self.delay_days
        if not 0 <= lo <= hi:
            raise InvalidParameterError(
                own, "delay_days", "a pair 0 <= low <= high", self.delay_days
            )
        for name in ("seasonality", "hidden_sd"):
            if not getattr(self, name) >= 0:
                raise InvalidParameterError(own, name, "a float >= 0", getattr(self, name))
        if not math.isfinite(self.drift):
            raise InvalidParameterError(own, "drift", "a finite float", self.drift)
        if not 0 < self.gross_margin <= 1:
            raise InvalidParameterError(own, "gross_margin", "a float in (0, 1]", self.gross_margin)
        if self.term_months < 1:
            raise InvalidParameterError(own, "term_months", "an int >= 1", self.term_months)
        if self.population_size is not None and self.population_size < 1:
            raise InvalidParameterError(
                own, "population_size", "None or an int >= 1", self.population_size
            )


class RenewalEnvironment:
    """Subscription renewal with sure-things, lost causes, persuadables and do-not-disturbs.

    Parameters
    ----------
    config : RenewalConfig, optional
        Defaults give the benchmark environment.
    **overrides
        Replace single fields of ``config`` (``RenewalEnvironment(drift=0.5)``).

    Examples
    --------
    >>> import numpy as np
    >>> env = RenewalEnvironment()
    >>> env.action_ids
    ('none', 'discount_5', 'discount_10', 'discount_20', 'free_month', 'upgrade', 'loyalty_gift')
    >>> rounds = env.sample_rounds(1000, np.random.default_rng(0))
    >>> rounds.contexts.shape, rounds.expected_rewards.shape
    ((1000, 24), (1000, 7))
    >>> oracle = rounds.oracle_rewards().mean()
    >>> control = rounds.expected_reward_of(np.zeros(1000, dtype=np.int64)).mean()
    >>> bool(oracle > control)
    True
    >>> out = env.draw_outcomes(rounds, rounds.oracle_actions(), np.random.default_rng(1))
    >>> bool(7.0 <= out.delays.min() and out.delays.max() <= 30.0)
    True
    """

    name = "renewal"

    def __init__(self, config: RenewalConfig | None = None, **overrides: object) -> None:
        config = config if config is not None else RenewalConfig()
        if overrides:
            unknown = set(overrides) - set(RenewalConfig.__dataclass_fields__)
            if unknown:
                raise InvalidInputError("overrides", "RenewalConfig fields", sorted(unknown))
            config = replace(config, **overrides)  # type: ignore[arg-type]
        self.config = config
        self._offers = config.offers
        self._control = next(i for i, o in enumerate(config.offers) if o.kind == "none")
        self._book: dict[str, np.ndarray] | None = None
        if config.population_size is not None:
            self._book = self.draw_attributes(
                config.population_size, np.random.default_rng(config.population_seed)
            )

    @classmethod
    def from_campaign(cls, path: str | Path, **overrides: object) -> RenewalEnvironment:
        """An environment whose offers, costs and eligibility come from a campaign file."""
        offers, charge = offers_from_campaign(path)
        return cls(RenewalConfig(offers=offers, charge_cost=charge), **overrides)

    # -- description -----------------------------------------------------------------------
    @property
    def offers(self) -> tuple[Offer, ...]:
        return self._offers

    @property
    def action_ids(self) -> tuple[str, ...]:
        return tuple(o.offer_id for o in self._offers)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    @property
    def control_action(self) -> int:
        return self._control

    @property
    def offer_features(self) -> FloatArray:
        """Offer features for shared models, shape (n_actions, 5): is_incentive, discount share,
        months / 12, gift, upgrade (SharedLinear adds the per-context intercept itself)."""
        rows = [
            [float(o.kind != "none"), o.features[0], o.features[1] / 12.0, *o.features[2:4]]
            for o in self._offers
        ]
        return np.array(rows, dtype=np.float64)

    # -- population ------------------------------------------------------------------------
    def draw_attributes(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Raw attributes of ``n`` customers (arrays keyed by the campaign's attribute names)."""
        plan = rng.choice(3, size=n, p=[0.35, 0.45, 0.20])
        # legacy prices and past promotions spread what customers pay around the list price
        price = np.round(np.asarray(PLAN_PRICES)[plan] * np.exp(rng.normal(0.0, 0.12, n)), 2)
        contract = rng.choice(3, size=n, p=[0.55, 0.35, 0.10])
        tenure = np.minimum(1 + np.floor(rng.exponential(28.0, n)), 120).astype(np.int64)
        usage = np.round(np.clip(rng.normal(0.0, 0.3, n), -1.0, 1.0), 3)
        return {
            "tenure_months": tenure,
            "monthly_price": price,
            "usage_trend": usage,
            "support_tickets": rng.poisson(0.7 + 1.0 * (usage < -0.25)).astype(np.int64),
            "payment_failures": rng.poisson(np.where(plan == 0, 0.4, 0.2)).astype(np.int64),
            "days_to_renewal": rng.integers(1, 61, n).astype(np.int64),
            "num_products": np.minimum(1 + rng.poisson(0.6, n), 5).astype(np.int64),
            "autopay": rng.random(n) < 0.55,
            "plan": np.asarray(PLANS, dtype=object)[plan],
            "contract_type": np.asarray(CONTRACTS, dtype=object)[contract],
            "channel": np.asarray(CHANNELS, dtype=object)[
                rng.choice(4, size=n, p=[0.3, 0.3, 0.15, 0.25])
            ],
            "region": np.asarray(REGIONS, dtype=object)[
                rng.choice(5, size=n, p=[0.25, 0.2, 0.2, 0.2, 0.15])
            ],
        }

    def encode(self, attributes: dict[str, np.ndarray]) -> FloatArray:
        """Numeric features, shape (n_rounds, 24), named by ``feature_names``: a bias, the
        standardized numeric attributes and one-hot categories (as the campaign file encodes
        them, except that regions get one column each rather than hashed buckets)."""
        n = len(attributes["plan"])
        X = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64)
        X[:, 0] = 1.0
        for j, (name, mean, std) in enumerate(NUMERIC, start=1):
            X[:, j] = (attributes[name].astype(np.float64) - mean) / std
        j = 1 + len(NUMERIC)
        for name, values in CATEGORICAL:
            for value in values:
                X[:, j] = attributes[name] == value
                j += 1
        return X

    def records(self, attributes: dict[str, np.ndarray]) -> list[dict[str, object]]:
        """One plain dict per customer (Python scalars), as a backend would send to the Engine."""
        columns = {k: v.tolist() for k, v in attributes.items()}
        n = len(attributes["plan"])
        return [{k: v[i] for k, v in columns.items()} for i in range(n)]

    # -- latent model ----------------------------------------------------------------------
    def latent_traits(
        self, attributes: dict[str, np.ndarray], days: FloatArray
    ) -> dict[str, FloatArray]:
        """Churn log-odds and the treatment-effect traits, each of shape (n_rounds,)."""
        a = attributes
        cfg = self.config
        tenure = a["tenure_months"].astype(np.float64)
        usage = a["usage_trend"].astype(np.float64)
        tickets = a["support_tickets"].astype(np.float64)
        failures = a["payment_failures"].astype(np.float64)
        products = a["num_products"].astype(np.float64)
        autopay = a["autopay"].astype(np.float64)
        monthly = (a["contract_type"] == "monthly").astype(np.float64)
        annual = (a["contract_type"] == "annual").astype(np.float64)
        two_year = (a["contract_type"] == "two_year").astype(np.float64)
        basic = (a["plan"] == "basic").astype(np.float64)
        premium = (a["plan"] == "premium").astype(np.float64)
        south = (a["region"] == "south").astype(np.float64)
        web = (a["channel"] == "web").astype(np.float64)
        call = (a["channel"] == "call_center").astype(np.float64)
        list_price = np.select(
            [basic > 0, premium > 0], [PLAN_PRICES[0], PLAN_PRICES[2]], PLAN_PRICES[1]
        )
        overpaying = np.log(a["monthly_price"] / list_price)
        season = cfg.seasonality * np.cos(2.0 * math.pi * (days - 15.0) / 365.0)
        dnd = sigmoid(-8.0 * (usage + 0.15)) * autopay * monthly
        lost = sigmoid(-2.5 + 2.0 * failures - 6.5 * usage) * (1.0 - dnd)
        churn = (
            2.0
            - 0.8 * np.log(tenure / 12.0)
            - 3.0 * usage
            + 0.4 * tickets
            + 0.8 * failures
            - 2.2 * annual
            - 3.0 * two_year
            - 0.3 * autopay
            - 0.35 * (products - 1.0)
            - 3.5 * dnd  # dormant autopay customers stay out of inertia, unless reminded
            + 0.3 * south
            + season
        )
        price_sens = sigmoid(
            -2.0
            + 2.5 * basic
            - 1.5 * premium
            + 6.0 * overpaying
            + 0.8 * failures
            + 0.8 * web
            + 0.6 * call
            + 0.8 * south
            - 0.8 * annual
            + cfg.drift * days / 365.0
        )
        cash = sigmoid(-2.5 + 1.5 * failures + 1.0 * basic + 0.8 * (1.0 - autopay) + 0.7 * call)
        upgrade = sigmoid(-3.5 + 9.0 * usage + 0.4 * (products - 1.0)) * (1.0 - premium)
        loyalty = sigmoid(-8.0 + 1.2 * np.log(tenure) + 1.5 * tickets - 0.5 * basic)
        # an offer made a few days before the contract ends lands after many have decided
        timing = 0.5 + 0.5 * np.minimum(a["days_to_renewal"].astype(np.float64), 30.0) / 30.0
        return {
            "churn_logit": churn,
            "price_sensitivity": price_sens,
            "cash_strain": cash,
            "upgrade_appetite": upgrade,
            "loyalty_need": loyalty,
            "do_not_disturb": dnd,
            "lost_cause": lost,
            "timing": timing,
        }

    def renew_logits(self, attributes: dict[str, np.ndarray], days: FloatArray) -> FloatArray:
        """Renewal log-odds of every (customer, offer) before the hidden shock.

        Returns an array of shape (n_rounds, n_actions).
        """
        t = self.latent_traits(attributes, days)
        n, k = len(days), len(self._offers)
        logits = np.empty((n, k))
        scale = (1.0 - t["lost_cause"]) * t["timing"]
        for j, o in enumerate(self._offers):
            if o.kind == "none":
                lift = np.zeros(n)
            elif o.kind == "discount":  # diminishing returns: the first percents matter most
                lift = 5.5 * t["price_sensitivity"] * (1.0 - np.exp(-o.amount / 0.1))
            elif o.kind == "free_month":
                lift = 5.0 * t["cash_strain"] * (1.0 - np.exp(-o.amount))
            elif o.kind == "upgrade":
                lift = 5.0 * t["upgrade_appetite"]
            else:
                lift = 5.0 * t["loyalty_need"]
            if o.kind != "none":
                lift = lift - 4.0 * t["do_not_disturb"]
            logits[:, j] = -t["churn_logit"] + scale * lift
        return logits

    def renew_probabilities(self, logits: FloatArray) -> FloatArray:
        """P(renew) given renewal log-odds, the hidden shock integrated out exactly."""
        sd = self.config.hidden_sd
        if sd == 0:
            return sigmoid(logits)
        out = np.zeros_like(logits)
        for x, w in zip(_GH_NODES, _GH_WEIGHTS, strict=True):
            out += w * sigmoid(logits + sd * x)
        return out

    def renewal_values(self, attributes: dict[str, np.ndarray]) -> FloatArray:
        """Margin over the next term if the customer renews, shape (n_rounds,)."""
        cfg = self.config
        return cfg.gross_margin * cfg.term_months * attributes["monthly_price"].astype(np.float64)

    def offer_costs(self, attributes: dict[str, np.ndarray]) -> FloatArray:
        """Cost of every offer per customer, shape (n_rounds, n_actions)."""
        return np.stack([o.costs(attributes) for o in self._offers], axis=1)

    def action_mask_of(self, attributes: dict[str, np.ndarray]) -> BoolArray:
        """Eligibility of every offer per customer (the campaign's rules), (n_rounds, n_actions)."""
        return np.stack([o.eligible_mask(attributes) for o in self._offers], axis=1)

    def net_rewards(self, renewed: np.ndarray, values: FloatArray, costs: FloatArray) -> FloatArray:
        """Net reward given renewal (bool or probability), value and cost, per charging mode."""
        mode = self.config.charge_cost
        if mode == "on_success":
            return renewed * (values - costs)
        if mode == "always":
            return renewed * values - costs
        return renewed * values

    # -- the Environment protocol ----------------------------------------------------------
    def sample_rounds(self, n_rounds: int, rng: np.random.Generator, start: int = 0) -> Rounds:
        """Draw the next ``n_rounds`` arrivals, numbered from ``start`` (which sets their dates).

        Parameters
        ----------
        n_rounds : int
        rng : numpy.random.Generator
            Source of the customers drawn (the only randomness used).
        start : int
            Index of the first arrival in the stream.
        """
        n_rounds = check_n_rounds(n_rounds)
        if self._book is not None:
            idx = rng.integers(0, len(self._book["plan"]), n_rounds)
            attributes = {k: v[idx] for k, v in self._book.items()}
            ids = [f"c{i}" for i in idx]
        else:
            attributes = self.draw_attributes(n_rounds, rng)
            ids = [f"c{start + i}" for i in range(n_rounds)]
        days = (start + np.arange(n_rounds, dtype=np.float64)) / self.config.customers_per_day
        logits = self.renew_logits(attributes, days)
        values = self.renewal_values(attributes)[:, None]
        costs = self.offer_costs(attributes)
        mask = self.action_mask_of(attributes)
        expected = self.net_rewards(self.renew_probabilities(logits), values, costs)
        return Rounds(
            contexts=self.encode(attributes),
            expected_rewards=np.where(mask, expected, -np.inf),
            action_mask=mask,
            timestamps=days,
            customer_ids=ids,
            attributes=attributes,
            truth={"renew_logits": logits, "renewal_value": values[:, 0], "offer_costs": costs},
        )

    def draw_outcomes(
        self, rounds: Rounds, actions: IntArray, rng: np.random.Generator
    ) -> Outcomes:
        """Sample renewals of the chosen offers (each customer's hidden shock included) and the
        delays after which they are known."""
        actions = check_actions(rounds, actions)
        n = rounds.n_rounds
        rows = np.arange(n)
        shock = rng.normal(0.0, self.config.hidden_sd, n)
        renewed = rng.random(n) < sigmoid(rounds.truth["renew_logits"][rows, actions] + shock)
        value = rounds.truth["renewal_value"]
        cost = rounds.truth["offer_costs"][rows, actions]
        lo, hi = self.config.delay_days
        return Outcomes(
            rewards=self.net_rewards(renewed, value, cost),
            values=np.where(renewed, value, 0.0),
            delays=rng.uniform(lo, hi, n),
        )

    def segments(self, rounds: Rounds) -> np.ndarray:
        """Label each round sure_thing, lost_cause, persuadable, do_not_disturb or neutral.

        Persuadable: some offer is worth more than no incentive. Otherwise: lost cause when
        P(renew) <= 0.2 whatever the offer; sure-thing when P(renew) >= 0.85 with no incentive;
        do-not-disturb when every eligible offer lowers P(renew) by more than 0.02.
        """
        p = self.renew_probabilities(rounds.truth["renew_logits"])
        mask = rounds.action_mask
        c = self.control_action
        gain = rounds.oracle_rewards() - rounds.expected_rewards[:, c]
        others = mask.copy()
        others[:, c] = False
        p_drop = np.where(others, p[:, [c]] - p, np.inf).min(axis=1)
        label = np.full(rounds.n_rounds, "neutral", dtype=object)
        label[p[:, c] >= 0.85] = "sure_thing"
        label[(p_drop > 0.02) & others.any(axis=1)] = "do_not_disturb"
        label[np.where(mask, p, 0.0).max(axis=1) <= 0.2] = "lost_cause"
        label[gain > 1e-9] = "persuadable"
        return label

"""The renewal population deciding offer x channel x send time: 84 combinations with ground truth.

The customers, their churn risk and what each offer does to them are those of
:mod:`simulators.renewal` (a :class:`~simulators.renewal.RenewalEnvironment` inside). What is new
is whether the offer *lands*: a message goes out through a channel (email, sms, call) in a send
window (now, in 1, 2 or 4 weeks), and it changes the customer's mind only if it is read and acted
on before the renewal date. The probability that it lands is

    reach(channel | customer) x timing(days left at arrival) x fatigue(sms sent lately),

and a landed offer moves the renewal log-odds as the offer moves them in the renewal population
(its own timing factor, which ``days_to_renewal`` enters alone, replaced by the window's); an
offer that does not land leaves the customer as with no offer. So:

- *reach* depends on observed attributes: customers whose preferred contact is email or the web
  read email; app users read SMS and ignore email; long-tenured (older) customers read email and
  answer calls but ignore SMS; autopay customers skim email. A call reaches most, at a cost per
  call.
- *timing*: an incentive arriving after the renewal date is worthless (it cannot land), one
  arriving a day or two before lands less (many have decided), one arriving about a week before
  is the most salient and one arriving a month or more ahead is mostly forgotten. The best window
  depends on ``days_to_renewal``.
- *SMS fatigue*: with returning customers (``population_size``), an SMS sent within
  ``fatigue_days`` of an earlier one is read ``fatigue`` times as often. The context carries
  ``recent_sms`` (1 just after an SMS, fading to 0 over ``fatigue_days``), which a backend knows.
- the *none* offer sends nothing: its 12 combinations are identical (no contact cost, no effect).
- *engagement*: with every outcome the backend learns whether the message landed (an email
  opened and acted on, an SMS read, a call answered): the reward component ``engaged`` (1 or 0;
  absent when nothing was sent), what :class:`~engine.policies.LandingLift` learns the landing
  from.

An offer is redeemed only if its message landed: it then costs as in the renewal population
(charged as ``charge_cost`` says); an offer that never reached the customer was never redeemed
and costs nothing. A contact costs ``contact_costs``
per message, charged as ``contact_charge`` says (by default always: a call is paid whether or
not the customer renews). Expected rewards are exact: the landing is a mixture weight and the
hidden shock is integrated out as :mod:`simulators.renewal` does.

A call-center capacity is a guardrail of the campaign (a budget on ``channel = call``), not of
this ground truth: a per-day cap couples the customers of a day, so the best action for one
depends on the others and no per-customer oracle (what every policy is measured against) exists.
The cost per call is in the ground truth.

``rule="preferred"`` is the comparison "nbo picks the offer, a fixed rule picks channel and
timing": every message goes out now, through the customer's preferred contact channel mapped onto
email, sms, call (:data:`PREFERRED`); any policy runs under the rule through the action mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from engine.errors import InvalidInputError, InvalidParameterError
from engine.features.combinations import combination_features, combination_id, treatment_table
from engine.policies.landing import ENGAGED
from engine.types import BoolArray, FloatArray, IntArray
from simulators.base import Outcomes, Rounds, check_actions, check_n_rounds, sigmoid
from simulators.offers import CHARGE_MODES
from simulators.renewal import FEATURE_NAMES as RENEWAL_FEATURES
from simulators.renewal import RenewalConfig, RenewalEnvironment

CONTACT_CHANNELS = ("email", "sms", "call")
WINDOWS = ("now", "week_1", "week_2", "week_4")
WINDOW_DELAYS = (0.0, 7.0, 14.0, 28.0)
#: The renewal population's preferred contact channel -> the channel the fixed rule uses.
PREFERRED = {"email": "email", "web": "email", "app": "sms", "call_center": "call"}
RULES = (None, "preferred")
#: Weeks to the renewal date, the categorical ``renewal_week`` a backend derives from
#: ``days_to_renewal`` (the last bucket holds days 43 to 60).
RENEWAL_WEEKS = ("w1", "w2", "w3", "w4", "w5", "w6", "w7+")
FEATURE_NAMES = (
    *RENEWAL_FEATURES,
    "recent_sms",
    *(f"renewal_week={w}" for w in RENEWAL_WEEKS),
)
#: Days before the renewal date at which a message is the most salient.
SALIENT_DAYS = 10.0


@dataclass(frozen=True)
class MultiConfig:
    """Knobs of the channel and send-time dimensions (the renewal population has its own).

    Parameters
    ----------
    contact_costs : (float, float, float)
        Cost of one email, SMS and call (a call is an agent's time).
    contact_charge : {"always", "on_success", "never"}
        When a contact's cost is charged; always by default (a message is paid when sent).
    fatigue : float
        Share of its reach an SMS keeps when the customer got another within ``fatigue_days``.
    fatigue_days : float
    rule : {None, "preferred"}
        None: every combination the offers' rules allow. ``"preferred"``: messages go out now
        through the customer's preferred channel only (the none offer stays eligible).
    """

    contact_costs: tuple[float, float, float] = (0.05, 0.10, 12.0)
    contact_charge: str = "always"
    fatigue: float = 0.3
    fatigue_days: float = 30.0
    rule: str | None = None

    def __post_init__(self) -> None:
        own = "MultiConfig"
        costs = self.contact_costs
        if len(costs) != 3 or not all(math.isfinite(c) and c >= 0 for c in costs):
            raise InvalidParameterError(
                own, "contact_costs", "three finite costs >= 0 (email, sms, call)", costs
            )
        if self.contact_charge not in CHARGE_MODES:
            raise InvalidParameterError(
                own, "contact_charge", f"one of {CHARGE_MODES}", self.contact_charge
            )
        if not 0 <= self.fatigue <= 1:
            raise InvalidParameterError(own, "fatigue", "a float in [0, 1]", self.fatigue)
        if not self.fatigue_days > 0:
            raise InvalidParameterError(own, "fatigue_days", "a float > 0", self.fatigue_days)
        if self.rule not in RULES:
            raise InvalidParameterError(own, "rule", f"one of {RULES}", self.rule)


def delivery_timing(days_left: FloatArray) -> FloatArray:
    """Probability that a message arriving ``days_left`` days before the renewal date is acted on.

    0 on or after the date; rising over the last days (a message a day before lands after many
    have decided); near 1 from a week to :data:`SALIENT_DAYS` days ahead; then fading towards
    0.3 (forgotten by the date).

    Examples
    --------
    >>> import numpy as np
    >>> delivery_timing(np.array([-3.0, 0.0, 1.0, 7.0, 14.0, 60.0])).round(2).tolist()
    [0.0, 0.0, 0.39, 0.97, 0.8, 0.31]
    """
    r = np.asarray(days_left, dtype=np.float64)
    ramp = 1.0 - np.exp(-np.maximum(r, 0.0) / 2.0)
    fade = 0.3 + 0.7 * np.exp(-np.maximum(r - SALIENT_DAYS, 0.0) / 12.0)
    return np.where(r > 0, ramp * fade, 0.0)


class RenewalMultiEnvironment:
    """Renewal decided as offer x channel x send window (7 x 3 x 4 = 84 combinations).

    Parameters
    ----------
    config : MultiConfig, optional
    renewal : RenewalEnvironment, optional
        The population and its offers (default: ``RenewalEnvironment()``).
    **overrides
        Fields of :class:`MultiConfig` or of :class:`~simulators.renewal.RenewalConfig`
        (``RenewalMultiEnvironment(rule="preferred", population_size=5000)``).

    Examples
    --------
    >>> import numpy as np
    >>> env = RenewalMultiEnvironment()
    >>> len(env.action_ids), env.action_ids[0], env.action_ids[-1]
    (84, 'none+email+now', 'loyalty_gift+call+week_4')
    >>> rounds = env.sample_rounds(2000, np.random.default_rng(0))
    >>> exp = rounds.expected_rewards
    >>> bool(np.allclose(exp[:, :12], exp[:, :1]))       # the none offer sends nothing
    True
    >>> bool(rounds.oracle_rewards().mean() > exp[:, env.control_action].mean())
    True
    >>> ruled = RenewalMultiEnvironment(rule="preferred").sample_rounds(5, np.random.default_rng(0))
    >>> per_offer = ruled.action_mask[:, 12:].reshape(5, 6, 12).sum(axis=2)  # 6 offers x 12
    >>> bool((per_offer <= 1).all())      # one channel and "now" for every message
    True
    """

    name = "renewal-multi"

    def __init__(
        self,
        config: MultiConfig | None = None,
        renewal: RenewalEnvironment | None = None,
        **overrides: object,
    ) -> None:
        own = {f.name for f in fields(MultiConfig)}
        theirs = {f.name for f in fields(RenewalConfig)}
        unknown = sorted(set(overrides) - own - theirs)
        if unknown:
            raise InvalidInputError("overrides", "MultiConfig or RenewalConfig fields", unknown)
        mine = {k: v for k, v in overrides.items() if k in own}
        config = config if config is not None else MultiConfig()
        self.config = MultiConfig(**{**config.__dict__, **mine})
        base = renewal if renewal is not None else RenewalEnvironment()
        rest = {k: v for k, v in overrides.items() if k in theirs}
        self.renewal = RenewalEnvironment(base.config, **rest) if rest else base
        n_offers = len(self.renewal.action_ids)
        self.sizes = (n_offers, len(CONTACT_CHANNELS), len(WINDOWS))
        # offer-major order: combination index = (offer * 3 + channel) * 4 + window
        self.codes = np.stack(
            np.meshgrid(*(np.arange(s) for s in self.sizes), indexing="ij"), axis=-1
        ).reshape(-1, 3)
        values = (self.renewal.action_ids, CONTACT_CHANNELS, WINDOWS)
        self._action_ids = tuple(
            combination_id([values[d][c] for d, c in enumerate(row)]) for row in self.codes
        )
        self._silent = self.codes[:, 0] == self.renewal.control_action
        self._contact_cost = np.where(
            self._silent, 0.0, np.asarray(self.config.contact_costs)[self.codes[:, 1]]
        )
        book = self.renewal.config.population_size
        # when each customer of the book last got an SMS (days; -inf: never), as sent so far
        self._last_sms = None if book is None else np.full(book, -np.inf)

    # -- description -----------------------------------------------------------------------
    @property
    def action_ids(self) -> tuple[str, ...]:
        return self._action_ids

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    @property
    def control_action(self) -> int:
        """The none offer's first combination (every none combination is the same)."""
        return int(np.flatnonzero(self._silent)[0])

    @property
    def dimension_values(self) -> tuple[tuple[str, ...], ...]:
        """The values of each dimension: offers, channels, windows."""
        return (self.renewal.action_ids, CONTACT_CHANNELS, WINDOWS)

    @property
    def dimension_attributes(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Numeric attributes of each dimension's values, as a campaign would declare them:
        the renewal offers' features; a channel's cost per contact (in tens); a window's delay
        in weeks."""
        channels = np.asarray(self.config.contact_costs)[:, None] / 10.0
        windows = np.asarray(WINDOW_DELAYS)[:, None] / 7.0
        return self.renewal.offer_features, channels, windows

    @property
    def offer_features(self) -> FloatArray:
        """:func:`~engine.features.combinations.combination_features` of every combination,
        shape (84, 14): the per-dimension one-hots. The values' attributes
        (:attr:`dimension_attributes`) are left out: over a fixed set of values they are linear
        in the one-hots, so they teach nothing more and would double SharedLinear's cost per
        decision (it grows with the square of the joint width); they matter for a value added
        later."""
        return combination_features(self.codes, self.sizes)

    @property
    def treatments(self) -> IntArray:
        """Per combination: its offer's index, its route's index (channel x window) and 1 if it
        sends a message (0 for the none offer), the table
        :class:`~engine.policies.LandingLift` takes as ``offer_features``."""
        return treatment_table(self.codes, self.sizes, ~self._silent)

    # -- ground truth ----------------------------------------------------------------------
    def reach(self, attributes: dict[str, np.ndarray]) -> FloatArray:
        """Probability that a message through each channel is read, shape (n_rounds, 3)."""
        pref = attributes["channel"]
        mail = np.isin(pref, ("email", "web")).astype(np.float64)
        app = (pref == "app").astype(np.float64)
        phone = (pref == "call_center").astype(np.float64)
        age = np.log(attributes["tenure_months"].astype(np.float64) / 12.0)  # an age proxy
        autopay = attributes["autopay"].astype(np.float64)
        email = 1.0 + 2.2 * mail - 2.0 * app + 0.5 * age - 0.6 * autopay
        sms = 0.0 + 3.0 * app - 0.9 * age - 0.5 * mail
        call = 1.2 + 1.5 * phone + 0.5 * age - 1.0 * app
        return sigmoid(np.stack([email, sms, call], axis=1))

    def landing(
        self, attributes: dict[str, np.ndarray], days: FloatArray, last_sms: FloatArray
    ) -> FloatArray:
        """Probability that each combination's message lands, shape (n_rounds, 84): reach x
        timing x SMS fatigue (0 for the none offer)."""
        reach = self.reach(attributes)[:, self.codes[:, 1]]
        delay = np.asarray(WINDOW_DELAYS)[self.codes[:, 2]]
        left = attributes["days_to_renewal"].astype(np.float64)[:, None] - delay[None, :]
        sent = days[:, None] + delay[None, :]
        tired = (self.codes[:, 1] == 1)[None, :] & (sent - last_sms[:, None] < self.fatigue_days)
        rho = reach * delivery_timing(left) * np.where(tired, self.config.fatigue, 1.0)
        return np.where(self._silent[None, :], 0.0, rho)

    @property
    def fatigue_days(self) -> float:
        return self.config.fatigue_days

    def _charged(self, renewed: np.ndarray, cost: FloatArray) -> FloatArray:
        mode = self.config.contact_charge
        if mode == "on_success":
            return renewed * cost
        return cost if mode == "always" else np.zeros_like(cost)

    def _mask(self, attributes: dict[str, np.ndarray]) -> BoolArray:
        mask = self.renewal.action_mask_of(attributes)[:, self.codes[:, 0]]
        if self.config.rule == "preferred":
            keys = sorted(PREFERRED)
            channel = np.array([CONTACT_CHANNELS.index(PREFERRED[k]) for k in keys])
            wanted = channel[np.searchsorted(keys, attributes["channel"])]
            hit = (self.codes[None, :, 1] == wanted[:, None]) & (self.codes[None, :, 2] == 0)
            mask &= hit | self._silent[None, :]
        return mask

    # -- the Environment protocol ----------------------------------------------------------
    def sample_rounds(self, n_rounds: int, rng: np.random.Generator, start: int = 0) -> Rounds:
        """Draw the next ``n_rounds`` arrivals (the renewal population's), with every
        combination's exact expected net reward."""
        n_rounds = check_n_rounds(n_rounds)
        base = self.renewal.sample_rounds(n_rounds, rng, start)
        a, days = base.attributes, base.timestamps
        index = np.array([int(c[1:]) for c in base.customer_ids], dtype=np.int64)
        last = np.full(n_rounds, -np.inf) if self._last_sms is None else self._last_sms[index]
        rho = self.landing(a, days, last)
        # renewal's own timing factor (days_to_renewal enters nothing else) at its full value:
        # this population's timing is the window's delivery_timing
        far = np.full(n_rounds, 60, dtype=np.int64)
        full = self.renewal.renew_logits({**a, "days_to_renewal": far}, days)
        p = self.renewal.renew_probabilities(full)
        offer = self.codes[:, 0]
        control = self.renewal.control_action
        value = base.truth["renewal_value"][:, None]
        offer_cost = base.truth["offer_costs"][:, offer]
        landed = self.renewal.net_rewards(p[:, offer], value, offer_cost)
        missed = self.renewal.net_rewards(p[:, [control]], value, np.zeros_like(value))
        p_mix = rho * p[:, offer] + (1.0 - rho) * p[:, [control]]
        contact = np.broadcast_to(self._contact_cost, p_mix.shape)
        expected = rho * landed + (1.0 - rho) * missed - self._charged(p_mix, contact)
        mask = self._mask(a)
        recent = np.clip(1.0 - (days - last) / self.fatigue_days, 0.0, 1.0)
        week = np.minimum((a["days_to_renewal"] - 1) // 7, len(RENEWAL_WEEKS) - 1)
        return Rounds(
            contexts=np.column_stack([base.contexts, recent, np.eye(len(RENEWAL_WEEKS))[week]]),
            expected_rewards=np.where(mask, expected, -np.inf),
            action_mask=mask,
            timestamps=days,
            customer_ids=base.customer_ids,
            attributes={
                **a,
                "days_since_sms": days - last,
                "renewal_week": np.asarray(RENEWAL_WEEKS, dtype=object)[week],
            },
            truth={
                "landed_logits": full,
                "landing": rho,
                "renewal_value": value[:, 0],
                "offer_costs": offer_cost,
                "book_index": index,
            },
        )

    def draw_outcomes(
        self, rounds: Rounds, actions: IntArray, rng: np.random.Generator
    ) -> Outcomes:
        """Sample whether each chosen message lands, then the renewal (hidden shock included);
        SMS sent are remembered for the fatigue of returning customers."""
        actions = check_actions(rounds, actions)
        n = rounds.n_rounds
        rows = np.arange(n)
        landed = rng.random(n) < rounds.truth["landing"][rows, actions]
        offer = np.where(landed, self.codes[actions, 0], self.renewal.control_action)
        logit = rounds.truth["landed_logits"][rows, offer]
        shock = rng.normal(0.0, self.renewal.config.hidden_sd, n)
        renewed = rng.random(n) < sigmoid(logit + shock)
        value = rounds.truth["renewal_value"]
        cost = rounds.truth["offer_costs"][rows, actions]
        # an offer is redeemed (and costs) only if its message landed
        redeemed = np.where(landed, cost, 0.0)
        reward = self.renewal.net_rewards(renewed, value, redeemed)
        reward = reward - self._charged(renewed, self._contact_cost[actions])
        if self._last_sms is not None:
            sms = self.codes[actions, 1] == 1
            sms &= ~self._silent[actions]
            sent = rounds.timestamps + np.asarray(WINDOW_DELAYS)[self.codes[actions, 2]]
            index = rounds.truth["book_index"]
            np.maximum.at(self._last_sms, index[sms], sent[sms])
        lo, hi = self.renewal.config.delay_days
        # what a backend learns of the message: opened / read / answered, or not; nothing to
        # report when nothing was sent
        engaged = np.where(self._silent[actions], np.nan, landed.astype(np.float64))
        return Outcomes(
            rewards=reward,
            values=np.where(renewed, value, 0.0),
            delays=rng.uniform(lo, hi, n),
            signals={ENGAGED: engaged},
        )

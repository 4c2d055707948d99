"""renewal-multi's ground truth: ids, exact expected rewards, late and silent combinations, the
fixed rule, SMS fatigue of returning customers, bad knobs, and its registration."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidInputError, InvalidParameterError
from engine.features.combinations import combination_features, combination_id
from simulators.envs import ENV_NAMES, make_env
from simulators.renewal import RenewalEnvironment
from simulators.renewal_multi import (
    CONTACT_CHANNELS,
    PREFERRED,
    WINDOW_DELAYS,
    WINDOWS,
    MultiConfig,
    RenewalMultiEnvironment,
)


@pytest.fixture(scope="module")
def env() -> RenewalMultiEnvironment:
    return RenewalMultiEnvironment()


@pytest.fixture(scope="module")
def rounds(env):
    return env.sample_rounds(3000, np.random.default_rng(11))


def test_ids_are_combination_ids_offer_major(env):
    offers = RenewalEnvironment().action_ids
    expected = [
        combination_id([o, c, w]) for o in offers for c in CONTACT_CHANNELS for w in WINDOWS
    ]
    assert list(env.action_ids) == expected and len(expected) == 84
    assert env.action_ids[env.control_action] == "none+email+now"
    np.testing.assert_array_equal(env.offer_features, combination_features(env.codes, env.sizes))


def test_the_none_offer_is_the_renewal_populations_control(env, rounds):
    """Its 12 combinations send nothing: identical, and worth exactly what no incentive is worth
    to the same customers in the renewal population."""
    none = rounds.expected_rewards[:, :12]
    np.testing.assert_array_equal(none, np.repeat(none[:, :1], 12, axis=1))
    plain = RenewalEnvironment().sample_rounds(3000, np.random.default_rng(11))
    np.testing.assert_allclose(none[:, 0], plain.expected_rewards[:, 0], rtol=1e-12)
    assert (rounds.truth["landing"][:, :12] == 0).all()


def test_an_incentive_arriving_on_or_after_the_renewal_date_is_worthless(env, rounds):
    days = rounds.attributes["days_to_renewal"]
    late = days[:, None] <= np.asarray(WINDOW_DELAYS)[env.codes[:, 2]][None, :]
    late &= rounds.action_mask & (env.codes[:, 0] != env.renewal.control_action)[None, :]
    assert late.any()
    assert (rounds.truth["landing"][late] == 0).all()
    # no effect and nothing redeemed: the control's value less the contact's cost
    contact = np.asarray(env.config.contact_costs)[env.codes[:, 1]]
    worth = rounds.expected_rewards[:, :1] - contact[None, :]
    np.testing.assert_allclose(
        rounds.expected_rewards[late], np.broadcast_to(worth, late.shape)[late]
    )


def test_timing_is_worth_learning(env, rounds):
    """The best window of a message depends on the days left: none wins everywhere."""
    best = env.codes[rounds.oracle_actions()]
    sent = best[:, 0] != env.renewal.control_action
    days = rounds.attributes["days_to_renewal"][sent]
    windows = best[sent, 2]
    assert set(np.unique(windows)) == set(range(len(WINDOWS)))
    assert days[windows == 3].min() > WINDOW_DELAYS[3]  # never after the date
    assert np.median(days[windows == 3]) > np.median(days[windows == 0])


def test_reach_depends_on_the_customer(env, rounds):
    reach = env.reach(rounds.attributes)
    pref = rounds.attributes["channel"]
    # app users read SMS rather than email; email and web customers the other way round
    assert reach[pref == "app", 1].mean() > reach[pref == "app", 0].mean() + 0.3
    assert reach[pref == "email", 0].mean() > reach[pref == "email", 1].mean() + 0.3


def test_sampled_outcomes_agree_with_the_exact_expected_rewards(env):
    """Averaging many outcome draws of the same (customer, combination) pairs recovers the
    expected net reward: the landing and the hidden shock are integrated out exactly."""
    rounds = env.sample_rounds(200, np.random.default_rng(3))
    rng = np.random.default_rng(4)
    pick = np.argmax(rng.random(rounds.action_mask.shape) * rounds.action_mask, axis=1)
    draws = np.mean([env.draw_outcomes(rounds, pick, rng).rewards for _ in range(1500)], axis=0)
    exact = rounds.expected_reward_of(pick)
    value = rounds.truth["renewal_value"]
    # per pair: within 5 standard errors of a reward bounded by the renewal's value
    assert (np.abs(draws - exact) <= 5 * value / np.sqrt(1500) / 2 + 1e-9).all()
    assert abs(draws.mean() - exact.mean()) < 3.0


def test_the_fixed_rule_sends_now_through_the_preferred_channel():
    ruled = RenewalMultiEnvironment(rule="preferred")
    rounds = ruled.sample_rounds(500, np.random.default_rng(5))
    codes = ruled.codes
    message = codes[:, 0] != ruled.renewal.control_action
    want = np.array([CONTACT_CHANNELS.index(PREFERRED[c]) for c in rounds.attributes["channel"]])
    allowed = rounds.action_mask & message[None, :]
    rows, cols = np.nonzero(allowed)
    assert (codes[cols, 1] == want[rows]).all() and (codes[cols, 2] == 0).all()
    assert rounds.action_mask[:, ~message].all()  # the none offer stays eligible
    free = RenewalMultiEnvironment().sample_rounds(500, np.random.default_rng(5))
    np.testing.assert_array_equal(rounds.contexts, free.contexts)  # the same customers
    assert rounds.oracle_rewards().mean() < free.oracle_rewards().mean()


def test_an_sms_lands_less_on_a_customer_who_got_one_lately():
    env = RenewalMultiEnvironment(population_size=3, fatigue=0.25)
    first = env.sample_rounds(3, np.random.default_rng(0))
    assert (first.contexts[:, env.feature_names.index("recent_sms")] == 0).all()
    sms_now = env.action_ids.index("discount_5+sms+now")
    env.draw_outcomes(first, np.full(3, sms_now), np.random.default_rng(1))
    again = env.sample_rounds(3, np.random.default_rng(0), start=1)  # the same book customers
    fresh = RenewalMultiEnvironment(population_size=3, fatigue=0.25).sample_rounds(
        3, np.random.default_rng(0), start=1
    )
    np.testing.assert_array_equal(
        again.attributes["tenure_months"], first.attributes["tenure_months"]
    )
    assert (again.contexts[:, env.feature_names.index("recent_sms")] > 0.9).all()
    sms = env.codes[:, 1] == 1
    np.testing.assert_allclose(
        again.truth["landing"][:, sms & (env.codes[:, 2] == 0)],
        0.25 * fresh.truth["landing"][:, sms & (env.codes[:, 2] == 0)],
    )
    # email is untouched
    email = env.codes[:, 1] == 0
    np.testing.assert_array_equal(
        again.truth["landing"][:, email], fresh.truth["landing"][:, email]
    )


@pytest.mark.parametrize(
    ("knobs", "field"),
    [
        ({"contact_costs": (0.1, -1.0, 5.0)}, "contact_costs"),
        ({"contact_costs": (0.1, 5.0)}, "contact_costs"),
        ({"contact_charge": "sometimes"}, "contact_charge"),
        ({"fatigue": 1.5}, "fatigue"),
        ({"fatigue_days": 0.0}, "fatigue_days"),
        ({"rule": "loudest"}, "rule"),
    ],
)
def test_bad_knobs_name_the_field(knobs, field):
    with pytest.raises(InvalidParameterError, match=field):
        MultiConfig(**knobs)


def test_unknown_knobs_and_renewal_knobs():
    with pytest.raises(InvalidInputError, match="overrides"):
        RenewalMultiEnvironment(channels=4)
    with pytest.raises(InvalidParameterError, match="hidden_sd"):
        RenewalMultiEnvironment(hidden_sd=-1.0)
    assert RenewalMultiEnvironment(seasonality=0.0).renewal.config.seasonality == 0.0


def test_registered_with_make_env_and_simulate():
    assert "renewal-multi" in ENV_NAMES
    env = make_env("renewal-multi", rule="preferred", drift=None)
    assert isinstance(env, RenewalMultiEnvironment) and env.config.rule == "preferred"
    from engine.cliargs import parse_command
    from simulators.cli import register, tasks_from_args

    args = parse_command(
        register, ["simulate", "--env", "renewal-multi", "--rule", "preferred", "--rounds", "100"]
    )
    assert tasks_from_args(args)[0].env_knobs == {"rule": "preferred"}
    args = parse_command(register, ["simulate", "--env", "renewal", "--rule", "preferred"])
    with pytest.raises(InvalidInputError, match="--rule"):
        tasks_from_args(args)


def test_outcomes_report_engagement_of_the_messages_sent(env):
    rounds = env.sample_rounds(4000, np.random.default_rng(5))
    rng = np.random.default_rng(6)
    actions = rng.integers(0, len(env.action_ids), 4000)
    actions = np.where(rounds.action_mask[np.arange(4000), actions], actions, env.control_action)
    outcomes = env.draw_outcomes(rounds, actions, np.random.default_rng(7))
    engaged = outcomes.signals["engaged"]
    silent = env.treatments[actions, 2] == 0
    assert np.isnan(engaged[silent]).all() and np.isin(engaged[~silent], (0.0, 1.0)).all()
    # engaged as often as the ground truth's landing says
    landing = rounds.truth["landing"][np.arange(4000), actions][~silent]
    assert abs(engaged[~silent].mean() - landing.mean()) < 0.02
    table = env.treatments
    assert table.shape == (84, 3) and table[:, 1].max() == 11
    assert (table[:, 0] == env.codes[:, 0]).all()


@pytest.mark.slow
def test_landing_lift_beats_independent_arms_and_the_fixed_rule_at_20000_customers():
    """Seeded: the joint landing x lift model against epsilon-greedy over the 84 combinations as
    independent arms (the same choice rule), and against itself under the fixed rule."""
    from simulators.runner import run_policy

    def share(policy: str, **knobs: object) -> float:
        result = run_policy(RenewalMultiEnvironment(**knobs), policy, 20_000, seed=0)
        return result.value[-1] / oracle

    oracle = run_policy(RenewalMultiEnvironment(), "control", 20_000, seed=0).oracle[-1]
    joint = share("landing")
    assert joint > share("egreedy") + 0.03
    assert joint > share("landing", rule="preferred") + 0.003
    assert joint > 0.86

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from engine.campaign import load_campaign
from engine.errors import ConfigError, InvalidInputError, InvalidParameterError
from simulators.offers import DEFAULT_OFFERS, Offer, offers_from_campaign
from simulators.renewal import FEATURE_NAMES, RenewalConfig, RenewalEnvironment

CAMPAIGN = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"


@pytest.fixture(scope="module")
def env() -> RenewalEnvironment:
    return RenewalEnvironment()


@pytest.fixture(scope="module")
def big(env):
    return env.sample_rounds(40_000, np.random.default_rng(123))


def test_same_seed_same_customers_and_outcomes(env):
    a = env.sample_rounds(500, np.random.default_rng(1), start=10)
    b = env.sample_rounds(500, np.random.default_rng(1), start=10)
    c = env.sample_rounds(500, np.random.default_rng(2), start=10)
    np.testing.assert_array_equal(a.contexts, b.contexts)
    np.testing.assert_array_equal(a.expected_rewards, b.expected_rewards)
    assert a.customer_ids == b.customer_ids
    assert not np.array_equal(a.contexts, c.contexts)
    actions = a.oracle_actions()
    oa = env.draw_outcomes(a, actions, np.random.default_rng(5))
    ob = env.draw_outcomes(b, actions, np.random.default_rng(5))
    np.testing.assert_array_equal(oa.rewards, ob.rewards)
    np.testing.assert_array_equal(oa.delays, ob.delays)


def test_rounds_shapes_and_truth_consistency(big, env):
    n, k = big.expected_rewards.shape
    assert big.contexts.shape == (n, len(FEATURE_NAMES)) and k == 7
    assert np.all(np.isfinite(big.contexts))
    # -inf exactly where ineligible; the control offer is always eligible
    assert np.array_equal(np.isfinite(big.expected_rewards), big.action_mask)
    assert big.action_mask[:, env.control_action].all()
    # the one-hot blocks sum to one per row
    for prefix in ("plan=", "contract_type=", "channel=", "region="):
        cols = [i for i, f in enumerate(FEATURE_NAMES) if f.startswith(prefix)]
        np.testing.assert_array_equal(big.contexts[:, cols].sum(axis=1), 1.0)


def test_sampled_outcomes_agree_with_ground_truth(env):
    """Law of large numbers: averaging many independent outcome draws of the same
    (customer, offer) pairs recovers the ground-truth expected net reward."""
    rounds = env.sample_rounds(400, np.random.default_rng(3))
    rng = np.random.default_rng(4)
    # a random eligible offer per customer
    scores = rng.random(rounds.expected_rewards.shape) * rounds.action_mask
    actions = scores.argmax(axis=1)
    draws = 1500
    total = np.zeros(400)
    for _ in range(draws):
        total += env.draw_outcomes(rounds, actions, rng).rewards
    mean = total / draws
    expected = rounds.expected_reward_of(actions)
    # each draw is renewed * (value - cost): Bernoulli(p) times a known amount
    rows = np.arange(400)
    p = env.renew_probabilities(rounds.truth["renew_logits"])[rows, actions]
    amount = rounds.truth["renewal_value"] - rounds.truth["offer_costs"][rows, actions]
    np.testing.assert_allclose(expected, p * amount)
    se = np.abs(amount) * np.sqrt(p * (1 - p) / draws)
    assert np.all(np.abs(mean - expected) <= 5 * se + 1e-9)
    assert abs(mean.mean() - expected.mean()) < 4 * np.sqrt(np.sum(se**2)) / 400


@pytest.mark.parametrize("mode", ["always", "never"])
def test_cost_charging_modes_agree_with_truth(mode):
    env = RenewalEnvironment(charge_cost=mode)
    rounds = env.sample_rounds(300, np.random.default_rng(8))
    actions = np.full(300, 1)  # discount_5: eligible for everyone, costs a share of the price
    rng = np.random.default_rng(9)
    mean = np.mean([env.draw_outcomes(rounds, actions, rng).rewards for _ in range(800)], axis=0)
    expected = rounds.expected_reward_of(actions)
    assert abs(mean.mean() - expected.mean()) < 3.0
    if mode == "always":
        assert expected.min() < 0  # a churner still cost the discount
    else:
        assert expected.min() >= 0


def test_oracle_never_beaten_in_expectation(env, big):
    oracle = big.oracle_rewards()
    for j in range(7):
        eligible = big.action_mask[:, j]
        assert np.all(big.expected_rewards[eligible, j] <= oracle[eligible] + 1e-12)
    # and on sampled outcomes: on the same customers and noise, no static offer and no random
    # policy realizes more than the oracle beyond sampling error
    rng_actions = np.random.default_rng(0)
    rounds = big.slice(0, 20_000)
    best = env.draw_outcomes(rounds, rounds.oracle_actions(), np.random.default_rng(7)).rewards
    candidates = [np.where(rounds.action_mask[:, j], j, 0) for j in range(7)]
    random_scores = rng_actions.random(rounds.expected_rewards.shape) * rounds.action_mask
    candidates.append(random_scores.argmax(axis=1))
    for actions in candidates:
        other = env.draw_outcomes(rounds, actions, np.random.default_rng(7)).rewards
        diff = best - other
        assert diff.mean() > -3 * diff.std() / np.sqrt(diff.size)


def test_population_has_every_segment(env, big):
    labels, counts = np.unique(env.segments(big), return_counts=True)
    share = dict(zip(labels.tolist(), (counts / counts.sum()).tolist(), strict=True))
    for segment in ("sure_thing", "lost_cause", "persuadable", "do_not_disturb"):
        assert share.get(segment, 0.0) >= 0.03, share
    # do-not-disturbs lose renewal probability under every eligible offer
    p = env.renew_probabilities(big.truth["renew_logits"])
    dnd = env.segments(big) == "do_not_disturb"
    others = big.action_mask[dnd].copy()
    others[:, 0] = False
    assert np.all(np.where(others, p[dnd] < p[dnd, :1], True))


def test_benchmark_design_leaves_room_for_learning(env, big):
    """Control and every single static offer are clearly below the oracle, while the best
    linear model of the ground truth on the encoded features gets close to it."""
    oracle = big.oracle_rewards().mean()
    exp = big.expected_rewards
    statics = [np.where(big.action_mask[:, j], exp[:, j], exp[:, 0]).mean() for j in range(7)]
    assert max(statics) / oracle < 0.88
    assert statics[0] / oracle < 0.88
    fit, test = big.slice(0, 20_000), big.slice(20_000, 40_000)
    pred = np.full(test.expected_rewards.shape, -np.inf)
    for j in range(7):
        m = fit.action_mask[:, j]
        X = fit.contexts[m]
        theta = np.linalg.solve(X.T @ X + np.eye(X.shape[1]), X.T @ fit.expected_rewards[m, j])
        pred[:, j] = np.where(test.action_mask[:, j], test.contexts @ theta, -np.inf)
    linear = test.expected_reward_of(pred.argmax(axis=1)).mean()
    assert linear / test.oracle_rewards().mean() > 0.95


def test_seasonality_and_drift_move_the_truth():
    attrs = RenewalEnvironment().draw_attributes(2000, np.random.default_rng(0))
    env = RenewalEnvironment(drift=2.0)
    winter = env.latent_traits(attrs, np.full(2000, 15.0))
    summer = env.latent_traits(attrs, np.full(2000, 197.5))
    assert np.all(winter["churn_logit"] > summer["churn_logit"])  # January peak
    assert np.all(summer["price_sensitivity"] >= winter["price_sensitivity"])  # drift
    flat = RenewalEnvironment(seasonality=0.0)
    np.testing.assert_allclose(
        flat.latent_traits(attrs, np.full(2000, 15.0))["churn_logit"],
        flat.latent_traits(attrs, np.full(2000, 197.5))["churn_logit"],
    )


def test_delays_and_dates(env):
    rounds = env.sample_rounds(1000, np.random.default_rng(0), start=274 * 10)
    assert rounds.timestamps[0] == pytest.approx(10.0)
    out = env.draw_outcomes(rounds, rounds.oracle_actions(), np.random.default_rng(0))
    assert out.delays.min() >= 7.0 and out.delays.max() <= 30.0
    fast = RenewalEnvironment(delay_days=(0.0, 0.0))
    assert not fast.draw_outcomes(
        rounds, rounds.oracle_actions(), np.random.default_rng(0)
    ).delays.any()


def test_population_book_repeats_customers():
    env = RenewalEnvironment(population_size=50, population_seed=3)
    rounds = env.sample_rounds(2000, np.random.default_rng(0))
    assert len(set(rounds.customer_ids)) <= 50
    first = {}
    for i, c in enumerate(rounds.customer_ids):
        if c in first:
            np.testing.assert_array_equal(rounds.contexts[i], rounds.contexts[first[c]])
        else:
            first[c] = i


def test_defaults_mirror_the_example_campaign():
    offers, charge = offers_from_campaign(CAMPAIGN)
    assert offers == DEFAULT_OFFERS
    assert charge == RenewalConfig().charge_cost
    # eligibility and costs agree with the Engine's own reading of the campaign
    config = load_campaign(CAMPAIGN)
    env = RenewalEnvironment.from_campaign(CAMPAIGN)
    rounds = env.sample_rounds(400, np.random.default_rng(0))
    records = env.records(rounds.attributes)
    costs = env.offer_costs(rounds.attributes)
    for i, record in enumerate(records):
        for j, offer in enumerate(config.offers):
            assert offer.is_eligible(record) == rounds.action_mask[i, j]
            assert offer.cost_for(record) == pytest.approx(costs[i, j])
    # the attribute names are the campaign's feature names
    names = {f.name for f in config.schema.numeric} | {f.name for f in config.schema.categorical}
    assert names <= set(rounds.attributes)


def test_offer_rules_parse_and_reject():
    attrs = {"plan": np.array(["basic", "premium"]), "tenure_months": np.array([5, 30])}
    o = Offer("x", "gift", eligible=("plan not in ['premium']", "tenure_months > 2"))
    assert o.eligible_mask(attrs).tolist() == [True, False]
    with pytest.raises(ConfigError, match="cannot parse"):
        Offer("y", "gift", eligible=("tenure_months ~ 3",))
    with pytest.raises(ConfigError, match="needs a list"):
        Offer("y", "gift", eligible=("plan in 'basic'",))
    with pytest.raises(InvalidInputError, match="kind"):
        Offer("y", "coupon")
    with pytest.raises(InvalidInputError, match="cost"):
        Offer("y", "gift", cost=-1.0)


def test_campaign_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[reward]\ncharge_cost = 'sometimes'\n[[offers]]\nid = 'none'\n")
    with pytest.raises(ConfigError, match="charge_cost"):
        offers_from_campaign(bad)
    bad.write_text("offers = 3")
    with pytest.raises(ConfigError, match="offers"):
        offers_from_campaign(bad)
    bad.write_text("[[offers")
    with pytest.raises(ConfigError, match="not valid TOML"):
        offers_from_campaign(bad)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"customers_per_day": 0.0}, "'customers_per_day' parameter of RenewalConfig"),
        ({"delay_days": (5.0, 1.0)}, "delay_days"),
        ({"hidden_sd": -1.0}, "hidden_sd"),
        ({"gross_margin": 1.5}, "gross_margin"),
        ({"charge_cost": "later"}, "charge_cost"),
        ({"population_size": 0}, "population_size"),
        ({"offers": (Offer("a", "gift"),)}, "kind 'none'"),
        ({"offers": (Offer("a", "none"), Offer("a", "gift"))}, "distinct"),
    ],
)
def test_config_validation(overrides, match):
    with pytest.raises(InvalidParameterError, match=match):
        dataclasses.replace(RenewalConfig(), **overrides)


def test_bad_arguments(env):
    with pytest.raises(InvalidInputError, match="overrides"):
        RenewalEnvironment(colour="red")
    with pytest.raises(InvalidInputError, match="n_rounds"):
        env.sample_rounds(0, np.random.default_rng(0))
    rounds = env.sample_rounds(3, np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="actions"):
        env.draw_outcomes(rounds, np.array([0, 1]), np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="indices in"):
        env.draw_outcomes(rounds, np.array([0, 1, 9]), np.random.default_rng(0))

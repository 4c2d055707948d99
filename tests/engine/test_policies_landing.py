"""LandingLift: the value model, the landing models, the engagement signal and its absence."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidInputError
from engine.policies import LandingLift, Policy, make_policy

# offers 0 (sends nothing), 1, 2 x routes 0, 1: actions (0, 0), (1, 0), (1, 1), (2, 0), (2, 1)
TABLE = np.array([[0, 0, 0], [1, 0, 1], [1, 1, 1], [2, 0, 1], [2, 1, 1]])


def _world(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Contexts, uniform actions, engagement drawn from a known landing, rewards from a known
    base + route cost + engaged x lift, and the expected reward of every action."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.uniform(0, 1, n)])
    land = np.column_stack([0.2 + 0.6 * X[:, 1], 0.9 - 0.6 * X[:, 1]])  # per route
    lift = np.column_stack([np.zeros(n), 10.0 - 8.0 * X[:, 1], 2.0 + 6.0 * X[:, 1]])
    base = 5.0 + 3.0 * X[:, 1]
    beta = np.array([-0.5, -2.0])
    offer, route, sends = TABLE.T
    expected = base[:, None] + sends * (beta[route] + land[:, route] * lift[:, offer])
    a = rng.integers(0, len(TABLE), n)
    rows = np.arange(n)
    engaged = (rng.random(n) < land[rows, route[a]]) & (sends[a] == 1)
    reward = base + sends[a] * (beta[route[a]] + engaged * lift[rows, offer[a]])
    reward = reward + rng.normal(0, 1.0, n)
    signal = np.where(sends[a] == 1, engaged.astype(float), np.nan)
    return X, a, reward, signal, expected, land


def test_learns_the_landing_and_the_value_of_every_action() -> None:
    X, a, r, e, expected, land = _world(20_000, seed=0)
    policy = LandingLift(len(TABLE), 2, offer_features=TABLE, epsilon=0.0, seed=0)
    policy.update(X, a, r, signals={"engaged": e})
    np.testing.assert_allclose(policy.landing(X), land, atol=0.02)
    np.testing.assert_allclose(policy.predict_mean(X), expected, atol=0.2)
    # greedy: the best action per customer, as the truth ranks them where it is clear
    choice = policy.choose(X[:2000]).actions
    gap = np.sort(expected[:2000], axis=1)
    clear = gap[:, -1] - gap[:, -2] > 0.5
    assert (choice[clear] == expected[:2000][clear].argmax(axis=1)).mean() > 0.98


def test_the_component_name_is_the_signal_parameter() -> None:
    X, a, r, e, _, land = _world(5_000, seed=1)
    opened = LandingLift(len(TABLE), 2, offer_features=TABLE, signal="opened", seed=0)
    opened.update(X, a, r, signals={"opened": e, "engaged": np.zeros(len(a))})
    np.testing.assert_allclose(opened.landing(X[:50]), land[:50], atol=0.05)


def test_without_the_signal_no_landing_model_learns_and_the_value_model_uses_the_estimate() -> None:
    X, a, r, e, _, _ = _world(4_000, seed=2)
    policy = LandingLift(len(TABLE), 2, offer_features=TABLE, seed=0)
    policy.update(X[:2000], a[:2000], r[:2000], signals={"engaged": e[:2000]})
    landing_before = policy.land_A_.copy(), policy.land_b_.copy()
    rho = policy.landing(X[2000:])
    missing = policy.copy()
    missing.update(X[2000:], a[2000:], r[2000:])  # no component at all
    nan = policy.copy()
    nan.update(X[2000:], a[2000:], r[2000:], signals={"engaged": np.full(2000, np.nan)})
    for other in (missing, nan):
        np.testing.assert_array_equal(other.land_A_, landing_before[0])
        np.testing.assert_array_equal(other.land_b_, landing_before[1])
    np.testing.assert_array_equal(missing.value_A_, nan.value_A_)
    # the same as being told the estimated landing of each row
    told = policy.copy()
    route = TABLE[a[2000:], 1]
    estimate = np.where(TABLE[a[2000:], 2] == 1, rho[np.arange(2000), route], np.nan)
    told.update(X[2000:], a[2000:], r[2000:], signals={"engaged": estimate})
    np.testing.assert_allclose(missing.value_A_, told.value_A_)
    np.testing.assert_allclose(missing.value_b_, told.value_b_)
    assert missing.n_updates_ == 4000


def test_actions_that_send_nothing_teach_no_landing_model() -> None:
    policy = LandingLift(len(TABLE), 2, offer_features=TABLE, seed=0)
    before = policy.land_A_.copy()
    X = np.ones((50, 2))
    policy.update(X, np.zeros(50, np.int64), np.ones(50), signals={"engaged": np.ones(50)})
    np.testing.assert_array_equal(policy.land_A_, before)
    assert policy.value_A_[0, 0] > 50  # the base model learned from them


@pytest.mark.parametrize(
    "signals, message",
    [
        (
            {"engaged": [2.0, 0, 0, 0, 0]},
            r"signals\['engaged'\]: expected an engagement in \[0, 1\]",
        ),
        ({"engaged": [np.inf, 0, 0, 0, 0]}, r"signals\['engaged'\]: expected finite values"),
        ({"engaged": [0.0, 1.0]}, r"signals\['engaged'\]: expected shape \(5,\)"),
        ([0.0] * 5, "signals: expected a mapping"),
    ],
)
def test_a_bad_signal_is_refused_and_changes_nothing(signals, message: str) -> None:
    policy = LandingLift(len(TABLE), 2, offer_features=TABLE, seed=0)
    before = policy.to_bytes()
    with pytest.raises(InvalidInputError, match=message):
        policy.update(np.ones((5, 2)), [0, 1, 2, 3, 4], [1.0] * 5, signals=signals)
    assert policy.to_bytes() == before


def test_other_policies_check_signals_and_learn_as_without_them() -> None:
    X, a, r, e, _, _ = _world(500, seed=3)
    plain = make_policy("linucb", len(TABLE), 2, seed=0)
    given = make_policy("linucb", len(TABLE), 2, seed=0)
    plain.update(X, a, r)
    given.update(X, a, r, signals={"engaged": e})
    assert plain.to_bytes() == given.to_bytes()
    with pytest.raises(InvalidInputError, match=r"signals\['engaged'\]"):
        given.update(X[:2], a[:2], r[:2], signals={"engaged": [np.inf, 0.0]})


@pytest.mark.parametrize(
    "table, message",
    [
        (np.zeros((5, 2)), r"offer_features: expected an array of shape \(5, 3\)"),
        (TABLE + 0.5, "offer_features: expected integer indices"),
        (-TABLE, "offer_features: expected integer indices"),
        (
            np.column_stack([TABLE[:, :2], np.full(5, 2)]),
            r"offer_features\[:, 2\]: expected 0 or 1",
        ),
    ],
)
def test_a_bad_table_names_the_field(table, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        LandingLift(5, 2, offer_features=table)


def test_a_new_offer_and_a_new_route_start_from_the_prior_and_survive_a_round_trip() -> None:
    X, a, r, e, _, _ = _world(3_000, seed=4)
    policy = LandingLift(len(TABLE), 2, offer_features=TABLE, seed=0)
    policy.update(X, a, r, signals={"engaged": e})
    known = policy.predict_mean(X[:10])
    new = policy.add_action([3, 2, 1])  # offer 3 through route 2: both new
    assert (policy.n_offers, policy.n_routes) == (4, 3)
    scores = policy.predict_mean(X[:10])
    np.testing.assert_allclose(scores[:, : len(TABLE)], known, rtol=1e-9)
    # nothing known of either: the base model and no route term, as for an action that sends
    # nothing
    np.testing.assert_allclose(scores[:, new], scores[:, 0])
    policy.update(X[:200], np.full(200, new), r[:200] + 3.0, signals={"engaged": np.ones(200)})
    same = Policy.from_bytes(policy.to_bytes())
    np.testing.assert_allclose(same.predict_mean(X[:10]), policy.predict_mean(X[:10]))
    policy.remove_action(1)
    assert policy.predict_mean(X[:3]).shape == (3, len(TABLE))


def test_without_any_engagement_reported_it_learns_an_additive_model() -> None:
    """Messages are taken to land until a route's engagement is reported: the value model is
    then base + route + offer lift, and still ranks the offers."""
    rng = np.random.default_rng(5)
    X = np.column_stack([np.ones(6000), rng.uniform(0, 1, 6000)])
    a = rng.integers(0, len(TABLE), 6000)
    lift = np.array([0.0, 4.0, 1.0])[TABLE[a, 0]] * X[:, 1]
    policy = LandingLift(len(TABLE), 2, offer_features=TABLE, epsilon=0.0, seed=0)
    policy.update(X, a, 2.0 + lift + rng.normal(0, 0.5, 6000))
    assert (policy.land_n_ == 0).all() and (policy.landing(X[:3]) == 1.0).all()
    assert set(policy.choose(X[X[:, 1] > 0.2][:100]).actions.tolist()) <= {1, 2}


def test_removing_the_last_action_of_an_offer_or_a_route_keeps_their_models() -> None:
    X, a, r, e, _, _ = _world(2_000, seed=6)
    policy = LandingLift(len(TABLE), 2, offer_features=TABLE, seed=0)
    policy.update(X, a, r, signals={"engaged": e})
    kept = policy.predict_mean(X[:20])
    for index in (4, 3, 2):  # the last of offer 2, then the last of route 1
        policy.remove_action(index)
    assert (policy.n_offers, policy.n_routes) == (3, 2)
    np.testing.assert_allclose(policy.predict_mean(X[:20]), kept[:, :2])
    same = Policy.from_bytes(policy.to_bytes())
    assert (same.n_offers, same.n_routes) == (3, 2)
    np.testing.assert_array_equal(same.value_A_, policy.value_A_)
    np.testing.assert_allclose(same.predict_mean(X[:20]), kept[:, :2])
    again = same.add_action([2, 1, 1])  # offer 2 through route 1 returns with what it knew
    np.testing.assert_allclose(same.predict_mean(X[:20])[:, again], kept[:, 4])


def test_the_compiled_single_row_choice_is_the_batch_choice() -> None:
    X, a, r, e, _, _ = _world(3_000, seed=7)
    one = LandingLift(len(TABLE), 2, offer_features=TABLE, epsilon=0.3, seed=4)
    one.update(X, a, r, signals={"engaged": e})
    batch = one.copy()
    mask = np.array([True, True, False, True, True])
    rows = [one.choose_one(X[i].copy(), mask) for i in range(300)]
    chosen = [batch.choose(X[i : i + 1], mask[None]) for i in range(300)]
    assert rows == [(int(c.actions[0]), float(c.propensities[0])) for c in chosen]
    assert all(action != 2 for action, _ in rows)


def test_an_action_added_after_removals_and_a_reload_extends_the_kept_models() -> None:
    """Removing the last action of the largest offer leaves the state wider than the table:
    adding one below it (and after a reload) must keep that width, not crash half-changed."""
    X, a, r, e, _, _ = _world(2_000, seed=9)
    policy = LandingLift(len(TABLE), 2, offer_features=TABLE, seed=0)
    policy.update(X, a, r, signals={"engaged": e})
    policy.remove_action(4)
    policy.remove_action(3)  # offer 2 has no action left; its models stay
    for model in (policy, Policy.from_bytes(policy.to_bytes())):
        width = model.value_A_.shape[0]
        index = model.add_action([1, 0, 1])  # offer 1 through route 0, as action 1
        assert index == 3 and model.value_A_.shape[0] == width
        np.testing.assert_allclose(model.predict_mean(X[:5])[:, 3], model.predict_mean(X[:5])[:, 1])


def test_the_compiled_scores_are_the_factored_formula() -> None:
    """landing_scores against the formula written with NumPy."""
    X, a, r, e, _, _ = _world(3_000, seed=10)
    policy = LandingLift(len(TABLE), 2, offer_features=TABLE, seed=0)
    policy.update(X, a, r, signals={"engaged": e})
    Z = np.random.default_rng(11).normal(size=(40, 2))
    offer, route, sends = TABLE.T
    rho = np.clip(Z @ policy._land.T, 0.0, 1.0)
    lift = Z @ policy._lift.T
    expected = (Z @ policy._base)[:, None] + sends * (
        policy._beta[route] + rho[:, route] * lift[:, offer]
    )
    np.testing.assert_allclose(policy.predict_mean(Z), expected, rtol=1e-12, atol=1e-12)


def test_a_catalog_that_renumbers_kept_offers_is_refused_for_a_landing_model() -> None:
    from engine.errors import CorruptModelError
    from engine.journal.recovery import adapt_offers

    table = [[0, 0, 1], [1, 0, 1], [2, 0, 1]]
    policy = LandingLift(3, 1, offer_features=table, seed=0)
    before = policy.to_bytes()
    # removing b renumbers c (2 -> 1): c and the new d would share models
    with pytest.raises(CorruptModelError, match="--reset-model"):
        adapt_offers(policy, ["a", "b", "c"], ["a", "c", "d"], [[0, 0, 1], [1, 0, 1], [2, 0, 1]])
    assert policy.to_bytes() == before
    # an offer appended keeps every number: adapted
    adapt_offers(policy, ["a", "b", "c"], ["a", "b", "c", "d"], [*table, [3, 0, 1]])
    assert policy.n_actions == 4 and policy.n_offers == 4

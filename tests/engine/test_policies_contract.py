"""One contract suite over every policy: shapes, propensities, masks, seeding, serialization,
input immutability and rejection of bad input with state unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import CorruptModelError, InvalidInputError, NoEligibleActionError
from engine.policies import Decision, Policy
from tests.engine.policy_cases import N_ACTIONS, N_FEATURES, NAMES, trained, training_data

pytestmark = pytest.mark.parametrize("name", NAMES)


def _rows(n: int, seed: int = 5) -> np.ndarray:
    X = np.random.default_rng(seed).normal(size=(n, N_FEATURES))
    X[:, 0] = 1.0
    return X


def test_decision_shapes_and_dtypes(name: str) -> None:
    policy = trained(name)
    d = policy.choose(_rows(7))
    assert isinstance(d, Decision) and len(d) == 7
    assert d.actions.dtype == np.int64 and d.actions.shape == (7,)
    assert d.propensities.dtype == np.float64 and d.propensities.shape == (7,)
    assert d.scores.dtype == np.float64 and d.scores.shape == (7, N_ACTIONS)
    assert d.explored.dtype == np.bool_ and d.explored.shape == (7,)
    assert ((d.actions >= 0) & (d.actions < N_ACTIONS)).all()
    assert ((d.propensities > 0) & (d.propensities <= 1)).all()


def test_empty_batch(name: str) -> None:
    policy = trained(name)
    d = policy.choose(np.empty((0, N_FEATURES)))
    assert len(d) == 0 and d.scores.shape == (0, N_ACTIONS)
    before = policy.to_bytes()
    policy.update(np.empty((0, N_FEATURES)), [], [])
    assert policy.to_bytes() == before


def test_propensities_match_empirical_frequencies(name: str) -> None:
    """Off-policy evaluation divides by these numbers: they must be the real probabilities."""
    policy = trained(name)
    n = 3000 if name == "VWPolicy" else 20000
    for mask_row in ([True] * N_ACTIONS, [True, False, True, True]):
        x = _rows(1, seed=11)
        X = np.repeat(x, n, axis=0)
        mask = np.repeat(np.array([mask_row]), n, axis=0)
        d = policy.choose(X, mask)
        for a in range(N_ACTIONS):
            chosen = d.actions == a
            freq = chosen.mean()
            if not mask_row[a]:
                assert freq == 0.0
                continue
            if chosen.any():
                reported = d.propensities[chosen].mean()
                # binomial standard error, plus the TS estimate's deterministic error bound
                tol = 4 * np.sqrt(max(reported * (1 - reported), 1e-4) / n) + 0.01
                assert abs(freq - reported) < tol, (a, freq, reported)


def test_masked_actions_never_chosen_and_scored_minus_inf(name: str) -> None:
    policy = trained(name)
    rng = np.random.default_rng(3)
    mask = rng.random((500, N_ACTIONS)) < 0.5
    mask[np.arange(500), rng.integers(0, N_ACTIONS, 500)] = True
    d = policy.choose(_rows(500), mask)
    assert mask[np.arange(500), d.actions].all()
    assert np.isneginf(d.scores[~mask]).all()
    assert np.isfinite(d.scores[mask]).all() or name == "UCB1"


def test_same_seed_same_decisions_also_after_round_trip(name: str) -> None:
    a, b = trained(name, seed=42), trained(name, seed=42)
    X = _rows(50)
    np.testing.assert_array_equal(a.choose(X).actions, b.choose(X).actions)
    c = type(a).from_bytes(a.to_bytes())
    first, second = a.choose(X), c.choose(X)
    np.testing.assert_array_equal(first.actions, second.actions)
    np.testing.assert_allclose(first.propensities, second.propensities)
    np.testing.assert_allclose(first.scores, second.scores)


def test_serialization_round_trip_keeps_model_and_params(name: str) -> None:
    policy = trained(name)
    blob = policy.to_bytes()
    assert isinstance(blob, bytes) and b"pickle" not in blob[:64]
    same = Policy.from_bytes(blob)
    assert type(same) is type(policy)
    if name != "VWPolicy":  # VW re-serializes its running loss statistics as zeros after a load
        assert same.to_bytes() == blob
    np.testing.assert_allclose(policy.choose(_rows(20)).scores, same.choose(_rows(20)).scores)
    params, same_params = policy.get_params(), same.get_params()
    for key, value in params.items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(same_params[key]))
    X, a, r = training_data(40, seed=9)
    policy.update(X, a, r, np.full(40, 0.25))
    same.update(X, a, r, np.full(40, 0.25))
    np.testing.assert_allclose(policy.choose(X).scores, same.choose(X).scores)


def test_corrupted_blob_is_refused(name: str) -> None:
    blob = bytearray(trained(name).to_bytes())
    with pytest.raises(CorruptModelError, match="checksum"):
        Policy.from_bytes(bytes(blob[:-40] + blob[-32:]))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(CorruptModelError, match="checksum"):
        Policy.from_bytes(bytes(blob))
    with pytest.raises(CorruptModelError, match="magic"):
        Policy.from_bytes(b"\x80\x04pickle")


def test_inputs_are_not_mutated(name: str) -> None:
    policy = trained(name)
    X, a, r = training_data(30, seed=4)
    mask = np.ones((30, N_ACTIONS), dtype=bool)
    mask[:, 0] = False
    p = np.full(30, 0.25)
    copies = [v.copy() for v in (X, a, r, mask, p)]
    policy.choose(X, mask)
    policy.update(X, a, r, p)
    for original, copy in zip((X, a, r, mask, p), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


BAD_CHOOSE = [
    (
        "wrong width",
        lambda X, m: (X[:, :-1], None),
        InvalidInputError,
        "contexts: expected 3 columns",
    ),
    (
        "1-d contexts",
        lambda X, m: (X[0], None),
        InvalidInputError,
        "contexts: expected a 2-d array",
    ),
    (
        "NaN context",
        lambda X, m: (np.where(X == X[2, 1], np.nan, X), None),
        InvalidInputError,
        r"contexts: expected finite values .* got nan at row 2, column 1",
    ),
    (
        "inf context",
        lambda X, m: (np.where(X == X[1, 2], np.inf, X), None),
        InvalidInputError,
        "got inf at row 1, column 2",
    ),
    ("huge context", lambda X, m: (X * 1e20, None), InvalidInputError, r"\|value\| <= 1e\+12"),
    ("strings", lambda X, m: ([["a", "b", "c"]], None), InvalidInputError, "contexts: expected"),
    ("mask shape", lambda X, m: (X, m[:, :2]), InvalidInputError, "action_mask: expected shape"),
    (
        "empty row",
        lambda X, m: (X, np.where(np.arange(len(m))[:, None] == 3, False, m)),
        NoEligibleActionError,
        "action_mask: expected at least one eligible action per row, got row 3 with none eligible",
    ),
    ("mask values", lambda X, m: (X, m.astype(int) * 2), InvalidInputError, "action_mask"),
]


@pytest.mark.parametrize("case", BAD_CHOOSE, ids=[c[0] for c in BAD_CHOOSE])
def test_bad_choose_input_rejected_state_unchanged(name: str, case: tuple) -> None:
    _, make, error, message = case
    policy = trained(name)
    before = policy.to_bytes()
    X = _rows(5)
    contexts, mask = make(X, np.ones((5, N_ACTIONS), dtype=bool))
    with pytest.raises(error, match=message):
        policy.choose(contexts, mask)
    assert policy.to_bytes() == before


BAD_UPDATE = [
    ("action too big", {"actions": [0, 1, 2, 3, N_ACTIONS]}, "actions: expected indices in"),
    ("negative action", {"actions": [0, -1, 2, 3, 0]}, "got -1 at row 1"),
    ("fractional action", {"actions": [0, 1.5, 2, 3, 0]}, "actions: expected integer"),
    ("action count", {"actions": [0, 1]}, r"actions: expected shape \(5,\)"),
    ("NaN reward", {"rewards": [0, np.nan, 0, 0, 0]}, "rewards: expected finite values"),
    ("inf reward", {"rewards": [0, 0, 0, np.inf, 0]}, "got inf at row 3"),
    (
        "zero propensity",
        {"propensities": [0.5, 0.5, 0.0, 0.5, 0.5]},
        r"propensities: expected values in \(0, 1\], got 0.0 at row 2",
    ),
    ("propensity > 1", {"propensities": [0.5, 1.5, 0.5, 0.5, 0.5]}, "got 1.5 at row 1"),
    ("NaN context", {"contexts": [[1, 0, 0]] * 4 + [[1, np.nan, 0]]}, "contexts: expected finite"),
]


@pytest.mark.parametrize("case", BAD_UPDATE, ids=[c[0] for c in BAD_UPDATE])
def test_bad_update_input_rejected_state_unchanged(name: str, case: tuple) -> None:
    _, override, message = case
    policy = trained(name)
    before = policy.to_bytes()
    args = {
        "contexts": _rows(5),
        "actions": [0, 1, 2, 3, 0],
        "rewards": [1.0, 0.0, 1.0, 0.0, 1.0],
        "propensities": [0.5] * 5,
    }
    args.update(override)
    with pytest.raises(InvalidInputError, match=message):
        policy.update(**args)
    assert policy.to_bytes() == before
    x = _rows(3)
    assert (policy.choose(x).actions == type(policy).from_bytes(before).choose(x).actions).all()


def test_add_and_remove_action(name: str) -> None:
    policy = trained(name)
    # SharedLinear: the new offer's features; LandingLift: a new offer through a known route.
    features = {"SharedLinear": [0.4, 1.0], "LandingLift": [3, 1, 1]}.get(name)
    index = policy.add_action(features=features)
    assert index == N_ACTIONS and policy.n_actions == N_ACTIONS + 1
    d = policy.choose(_rows(200))
    assert d.scores.shape == (200, N_ACTIONS + 1)
    X, _, r = training_data(20, seed=8)
    policy.update(X, np.full(20, index), r)
    removable = 0 if name == "FixedAction" else 1
    policy.remove_action(removable)
    assert policy.n_actions == N_ACTIONS
    d = policy.choose(_rows(50))
    assert d.scores.shape == (50, N_ACTIONS) and (d.actions < N_ACTIONS).all()
    same = Policy.from_bytes(policy.to_bytes())
    assert same.n_actions == N_ACTIONS
    with pytest.raises(InvalidInputError, match="index: expected an action index"):
        policy.remove_action(N_ACTIONS)
    assert policy.n_actions == N_ACTIONS


def test_prepare_leaves_state_unchanged(name: str) -> None:
    policy = trained(name)
    before = policy.to_bytes()
    policy.prepare()
    assert policy.to_bytes() == before


def test_copy_is_equal_and_independent(name: str) -> None:
    policy = trained(name)
    clone = policy.copy()
    X = _rows(30)
    first, second = policy.choose(X), clone.choose(X)
    np.testing.assert_array_equal(first.actions, second.actions)
    np.testing.assert_allclose(first.scores, second.scores)
    before = policy.to_bytes()
    Xu, a, r = training_data(50, seed=12)
    clone.update(Xu, a, r, np.full(50, 0.25))
    clone.choose(X)
    assert policy.to_bytes() == before


def test_reseed_restarts_the_random_stream(name: str) -> None:
    policy = trained(name, seed=1)
    other = trained(name, seed=2)
    policy.choose(_rows(5))  # a stream already under way restarts too
    X = _rows(40, seed=3)
    mask = np.ones((40, N_ACTIONS), dtype=np.bool_)
    mask[::3, 1] = False
    for copy in (policy, other):
        copy.reseed(11)
    a, b = policy.choose(X, mask), other.choose(X, mask)
    assert policy.seed == other.seed == 11
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.propensities, b.propensities)
    np.testing.assert_array_equal(a.scores, b.scores)
    # the reseeded model still round-trips and copies, keeping its new seed
    for clone in (Policy.from_bytes(policy.to_bytes()), policy.copy()):
        assert clone.seed == 11 and len(clone.choose(X, mask)) == 40
    with pytest.raises(InvalidInputError, match=f"The 'seed' parameter of {name} must be an int"):
        policy.reseed("7")  # type: ignore[arg-type]
    assert policy.seed == 11

"""A model from elsewhere (nbo train, a promotion) serves with the campaign's exploration floor
and seed, also after a restart, and an offer added later gets tried."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.campaign import load_campaign, parse_offer
from engine.campaign.exploration import apply_exploration, campaign_floor
from engine.core import Engine
from engine.journal.snapshot import write_snapshot
from engine.policies import EpsilonGreedy, LinUCB, VWPolicy

RENEWAL = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"
NOW = 1_700_000_000.0
CONTEXT = {"tenure_months": 30, "monthly_price": 50.0, "plan": "basic", "payment_failures": 0}


def _trained_snapshot(eng: Engine, path: Path) -> Path:
    """A LinUCB without a floor, trained to prefer discount_5 by far (what nbo train writes)."""
    policy = LinUCB(len(eng.offer_ids), eng.n_features, alpha=0.0, min_propensity=0.0, seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, eng.n_features))
    actions = rng.integers(0, len(eng.offer_ids), 2000)
    rewards = np.where(actions == eng.offer_ids.index("discount_5"), 500.0, 0.0)
    policy.update(X, actions, rewards)
    header = {
        "campaign": eng.campaign,
        "version": "offline-1",
        "offer_ids": list(eng.offer_ids),
        "feature_names": list(eng.feature_names),
    }
    write_snapshot(path, header, policy)
    return path


def _decide(eng: Engine, n: int, start: int = 0) -> list:
    out = []
    for i in range(start, start + n):
        dec = eng.decide(f"c{i}", CONTEXT)
        if not dec.control:
            out.append(dec)
    return out


def test_promoted_model_keeps_the_campaign_floor_and_seed(tmp_path, caplog):
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path / "data", clock=lambda: NOW)
    snap = _trained_snapshot(eng, tmp_path / "trained.snap")
    with caplog.at_level(logging.WARNING, logger="nbo.engine"):
        eng.load_snapshot(snap)
    assert "min_propensity 0.0 -> 0.02" in caplog.text and "seed 0 -> 7" in caplog.text
    params = eng.model_info()["policy_params"]
    assert (params["min_propensity"], params["seed"]) == (0.02, 7)
    decisions = _decide(eng, 400)
    # Every eligible offer keeps >= 2%: the best one is served with < 1, others get explored.
    assert all(d.propensity < 1.0 for d in decisions if len(d.eligible) > 1)
    assert all(d.propensity >= 0.02 - 1e-12 for d in decisions)
    assert sum(d.explored for d in decisions) > 0
    assert len({d.offer_id for d in decisions}) > 1
    eng.close()


def test_a_model_promoted_from_the_model_directory_keeps_the_floor_and_seed(tmp_path, caplog):
    """PromoteModel's path (Engine.promote: the model directory, checked reads) floors the
    model like load_snapshot."""
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path / "data", clock=lambda: NOW)
    assert eng.model_dir == tmp_path / "data" / "models" / eng.campaign
    _trained_snapshot(eng, eng.model_dir / "trained.snap")
    with caplog.at_level(logging.WARNING, logger="nbo.engine"):
        eng.promote("trained.snap")
    assert "min_propensity 0.0 -> 0.02" in caplog.text and "seed 0 -> 7" in caplog.text
    assert str(eng.model_dir / "trained.snap") in caplog.text  # names the file it read
    params = eng.model_info()["policy_params"]
    assert (params["min_propensity"], params["seed"]) == (0.02, 7)
    decisions = _decide(eng, 400)
    assert all(d.propensity >= 0.02 - 1e-12 for d in decisions)
    assert sum(d.explored for d in decisions) > 0
    eng.close()


def test_the_floor_survives_a_restart_and_a_new_offer_gets_tried(tmp_path):
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path / "data", clock=lambda: NOW)
    eng.load_snapshot(_trained_snapshot(eng, tmp_path / "trained.snap"))
    eng.snapshot()
    eng.close()
    # The campaign gains an offer that every customer is eligible for.
    config = load_campaign(RENEWAL)
    extra = parse_offer({"id": "bonus_points", "cost": 1.0}, "offers[7]")
    config = replace(config, offers=(*config.offers, extra))
    eng = Engine(config, data_dir=tmp_path / "data", clock=lambda: NOW)
    assert eng.model_info()["policy_params"]["min_propensity"] == 0.02
    decisions = _decide(eng, 1000, start=10_000)
    assert sum(d.offer_id == "bonus_points" for d in decisions) > 0
    assert all(d.propensity >= 0.02 - 1e-12 for d in decisions)
    eng.close()


def test_apply_exploration_changes_only_what_differs():
    spec = {"name": "egreedy", "min_propensity": 0.05, "seed": 3}
    policy = EpsilonGreedy(3, 2, min_propensity=0.1, seed=3)
    assert apply_exploration(policy, spec) == []  # a higher floor and the same seed stay
    assert policy.min_propensity == 0.1
    state = policy.rng_state_.copy()
    assert apply_exploration(policy, {"name": "egreedy", "seed": 4}) == [
        "seed 3 -> 4 (the campaign seed)"
    ]
    assert not np.array_equal(state, policy.rng_state_)
    # Without a configured floor, the campaign's class default applies.
    assert campaign_floor({"name": "linucb"}) == 0.0
    assert campaign_floor({"name": "nosuchpolicy"}) == 0.0


def test_the_vowpal_wabbit_backend_is_floored_too():
    policy = VWPolicy(3, 2, seed=1)
    changes = apply_exploration(policy, {"name": "vw", "min_propensity": 0.3})
    assert changes == ["min_propensity 0.0 -> 0.3 (the campaign floor)"]
    d = policy.choose(np.zeros((50, 2)))
    assert d.propensities.min() >= 0.3 - 1e-12

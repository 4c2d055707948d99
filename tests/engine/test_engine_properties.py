"""Property tests of decisions on the renewal campaigns (one offer, and offer x channel x timing):
eligibility and propensities hold for any context the schema accepts."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.campaign import load_campaign
from engine.core import Engine
from engine.errors import InvalidInputError

RENEWAL = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"
CHANNELS = RENEWAL.parent / "renewal_channels.toml"


@cache
def engine(path: Path = RENEWAL) -> Engine:
    # One in-memory engine per campaign for every example (journal in memory, fixed clock).
    return Engine.from_config(path, data_dir=None, clock=lambda: 1_700_000_000.0)


contexts = st.fixed_dictionaries(
    {
        "tenure_months": st.integers(0, 120),
        "monthly_price": st.floats(0.0, 300.0),
        "plan": st.sampled_from(["basic", "standard", "premium"]),
    },
    optional={
        "payment_failures": st.integers(0, 6),
        "contract_type": st.sampled_from(["monthly", "annual", "two_year", "weekly"]),
        "usage_trend": st.floats(-2.0, 2.0),
        "region": st.text(max_size=6),
        "channel": st.sampled_from(["email", "web", "app", "call_center", "sms"]),
    },
)
offers = st.lists(
    st.sampled_from(load_campaign(RENEWAL).offer_ids),
    max_size=4,
    unique=True,
)
# With dimensions a candidate is a combination, an offer or <dimension>=<value>.
combinations = st.lists(
    st.sampled_from(
        load_campaign(CHANNELS).offer_ids[::7] + tuple(load_campaign(CHANNELS).candidate_groups())
    ),
    max_size=4,
    unique=True,
)


@settings(max_examples=120, deadline=None)
@given(ctx=contexts, candidates=offers, customer=st.text(min_size=1, max_size=12))
def test_decisions_respect_rules_and_log_true_propensities(ctx, candidates, customer):
    check_decision(engine(), ctx, candidates, customer)


@settings(max_examples=60, deadline=None)
@given(ctx=contexts, candidates=combinations, customer=st.text(min_size=1, max_size=12))
def test_combinations_respect_every_dimension_s_rules(ctx, candidates, customer):
    check_decision(engine(CHANNELS), ctx, candidates, customer)


def allowed_by(config: Any, candidates: list[str]) -> set[str]:
    """The actions ``candidates`` allow (engine.requests.CandidateMasks' rule, stated plainly)."""
    groups = config.candidate_groups()
    named = {c for c in candidates if c in config.offer_ids}
    by_dim: dict[int, set[int]] = {}
    for c in candidates:
        if c in groups:
            dim, actions = groups[c]
            by_dim.setdefault(dim, set()).update(actions)
    if by_dim:
        common = set.intersection(*by_dim.values())
        named |= {config.offer_ids[a] for a in common}
    return named


def labels_of(config: Any, action: int) -> list[str]:
    """What reasons call an action: its id, its offer and each ``<dimension>=<value>``."""
    choices = config.choices(action)
    values = [f"{k}={v}" for k, v in choices.items() if k != "offer"]
    return [config.offer_ids[action], config.offer_of(action), *values]


def check_decision(eng: Engine, ctx: dict, candidates: list[str], customer: str) -> None:
    try:
        d = eng.decide(customer, ctx, candidates=candidates or None)
    except InvalidInputError as exc:  # only ids SQLite cannot store are refused here
        assert str(exc).startswith("customer_id")
        return
    config = eng.config
    assert d.offer_id in d.eligible and 0.0 < d.propensity <= 1.0
    if d.control:
        assert d.offer_id == config.control_offer and d.propensity == 1.0
        return
    fallback = f"fallback:{config.fallback_offer}"
    allowed = allowed_by(config, candidates)
    for offer_id in d.eligible:
        offer = config.offers[config.offer_index(offer_id)]
        if fallback not in d.reasons:
            assert offer.is_eligible(ctx), (offer_id, ctx)
            assert not candidates or offer_id in allowed
    for a, offer in enumerate(config.offers):
        if offer.id not in d.eligible and fallback not in d.reasons:
            # Every offer left out has a reason naming it, its offer or one of its values
            # (or a customer-level rule).
            named = any(label in r for r in d.reasons for label in labels_of(config, a))
            assert named or "candidates" in d.reasons or "cooldown" in d.reasons, d.reasons
    if len(d.eligible) == 1:
        assert d.propensity == 1.0
    else:  # the exploration floor, min(floor, 1/k)
        assert d.propensity >= config.policy["min_propensity"] - 1e-12


def teardown_module() -> None:
    engine().close()
    engine(CHANNELS).close()


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_control_share_extremes(tmp_path, share):
    text = RENEWAL.read_text().replace("control_share = 0.10", f"control_share = {share}")
    path = tmp_path / "c.toml"
    path.write_text(text)
    eng = Engine.from_config(path, data_dir=None, clock=lambda: 1_700_000_000.0)
    ds = eng.decide_batch(
        [f"c{i}" for i in range(50)], [{"monthly_price": 10.0, "plan": "basic"}] * 50
    )
    assert all(d.control is (share == 1.0) for d in ds)
    eng.close()

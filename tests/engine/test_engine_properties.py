"""Property tests of decisions on the renewal campaign: eligibility and propensities hold for any
context the schema accepts."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.campaign import load_campaign
from engine.core import Engine
from engine.errors import InvalidInputError

RENEWAL = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"


@cache
def engine() -> Engine:
    # One in-memory engine for every example (journal in memory, fixed clock).
    return Engine.from_config(RENEWAL, data_dir=None, clock=lambda: 1_700_000_000.0)


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


@settings(max_examples=120, deadline=None)
@given(ctx=contexts, candidates=offers, customer=st.text(min_size=1, max_size=12))
def test_decisions_respect_rules_and_log_true_propensities(ctx, candidates, customer):
    eng = engine()
    try:
        d = eng.decide(customer, ctx, candidates=candidates or None)
    except InvalidInputError as exc:  # only ids SQLite cannot store are refused here
        assert str(exc).startswith("customer_id")
        return
    assert d.offer_id in d.eligible and 0.0 < d.propensity <= 1.0
    if d.control:
        assert d.offer_id == "none" and d.propensity == 1.0
        return
    config = eng.config
    for offer_id in d.eligible:
        offer = config.offers[config.offer_index(offer_id)]
        if "fallback:none" not in d.reasons:
            assert offer.is_eligible(ctx), (offer_id, ctx)
            assert not candidates or offer_id in candidates
    for offer in config.offers:
        if offer.id not in d.eligible and "fallback:none" not in d.reasons:
            # Every offer left out has a reason naming it (or a customer-level rule).
            named = any(offer.id in r for r in d.reasons)
            assert named or "candidates" in d.reasons or "cooldown" in d.reasons, d.reasons
    if len(d.eligible) == 1:
        assert d.propensity == 1.0
    else:
        assert d.propensity >= 0.02 / 1.0 - 1e-12  # the exploration floor, min(floor, 1/k)


def teardown_module() -> None:
    engine().close()


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

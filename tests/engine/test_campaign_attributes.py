"""Which attributes a campaign declares and what its rules read for a missing one."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.campaign import load_campaign, parse_campaign, parse_rule
from engine.core import Engine
from engine.errors import InvalidInputError

RENEWAL = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"

# One offer per way a missing attribute can be read; "none" is always eligible.
TABLE = {
    "campaign": {"name": "fills", "control_share": 0.0},
    "features": {
        "numeric": [
            {"name": "tickets", "mean": 1.0, "std": 1.0, "missing": "zero"},
            {"name": "score", "mean": 0.0, "std": 1.0, "missing": 5.0},
            {"name": "tenure", "mean": 30.0, "std": 10.0, "missing": "mean"},
            {"name": "raw", "standardize": "none", "missing": "mean"},
            {"name": "price", "mean": 40.0, "std": 10.0, "missing": "error"},
        ],
        "categorical": [
            {"name": "plan", "values": ["basic", "premium"], "missing": "ignore"},
            {"name": "channel", "values": ["web", "app"], "missing": "error"},
        ],
        "rule_attributes": ["vip"],
    },
    "offers": [
        {"id": "none"},
        {"id": "zero", "eligible": ["tickets == 0"]},
        {"id": "fill", "eligible": ["score == 5"]},
        {"id": "mean", "eligible": ["tenure >= 30", "tenure <= 30"]},
        {"id": "raw", "eligible": ["raw == 0"]},
        {"id": "plan", "eligible": ["plan != 'basic'"]},
        {"id": "vip", "eligible": ["vip == true"]},
        {"id": "price", "eligible": ["price > 0"]},
    ],
}
FULL = {
    "tickets": 3,
    "score": 1.0,
    "tenure": 12,
    "raw": 2.0,
    "price": 20.0,
    "plan": "basic",
    "channel": "web",
    "vip": False,
}
# Everything the missing policies fill in is missing (price and channel must be present).
SPARSE = {"price": 20.0, "channel": "web"}
SPARSE_ELIGIBLE = ("none", "zero", "fill", "mean", "raw", "price")


def _engine(tmp_path: Path, table: dict = TABLE) -> Engine:
    return Engine(parse_campaign(table), data_dir=tmp_path, clock=lambda: 1_000_000.0)


def test_rules_read_the_declared_missing_value_single_and_batch(tmp_path: Path) -> None:
    config = parse_campaign(TABLE)
    with _engine(tmp_path) as eng:
        single = eng.decide("c0", SPARSE)
        assert single.eligible == SPARSE_ELIGIBLE
        assert "rule:plan:plan != 'basic'" in single.reasons
        assert "rule:vip:vip == true" in single.reasons
        # >= 32 rows: the vectorized path, with missing and present values mixed per column
        contexts = [SPARSE if i % 2 else FULL for i in range(40)]
        batch = eng.decide_batch([f"c{i}" for i in range(40)], contexts)
        for i, d in enumerate(batch):
            expected = SPARSE_ELIGIBLE if i % 2 else ("none", "price")
            assert d.eligible == expected, i
            # the offers' own rules agree with the engine
            for offer in config.offers:
                assert offer.is_eligible(contexts[i]) is (offer.id in expected), (i, offer.id)
        # a few rows: the row-by-row path
        few = eng.decide_batch(["a", "b", "c"], [SPARSE, FULL, {**SPARSE, "tickets": None}])
        assert [d.eligible for d in few] == [SPARSE_ELIGIBLE, ("none", "price"), SPARSE_ELIGIBLE]


def test_a_missing_cost_basis_is_not_filled(tmp_path: Path) -> None:
    # tickets reads 0 for a rule, but an offer costing a share of it has no cost without it
    table = {
        **TABLE,
        "offers": [
            *TABLE["offers"],
            {"id": "share", "cost": {"share": 1.0, "of": "tickets"}, "eligible": ["tickets < 1"]},
        ],
    }
    with _engine(tmp_path, table) as eng:
        assert "cost_unknown:share" in eng.decide("c0", SPARSE).reasons
        batch = eng.decide_batch([f"c{i}" for i in range(32)], [SPARSE] * 32)
        assert all("cost_unknown:share" in d.reasons for d in batch)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("price", r"^context\.price: expected a number, got nothing \(missing\)$"),
        ("channel", r"^context\.channel: expected a category, got nothing \(missing\)$"),
    ],
)
def test_missing_error_attributes_refuse_the_request(tmp_path: Path, missing: str, message: str):
    context = {k: v for k, v in FULL.items() if k != missing}
    with _engine(tmp_path) as eng:
        with pytest.raises(InvalidInputError, match=message):
            eng.decide("c0", context)
        batch_message = message.replace(r"^context\.", r"^contexts\[33\]\.")
        with pytest.raises(InvalidInputError, match=batch_message):
            eng.decide_batch([f"c{i}" for i in range(40)], [FULL] * 33 + [context] * 7)
        assert eng.journal.counts()["decisions"] == 0
    # the offer's rule alone refuses it too, instead of reading a silent false
    price = parse_campaign(TABLE).offers[-1]
    with pytest.raises(InvalidInputError, match=r"^context\.price: expected a value \(rule "):
        price.is_eligible({})


def test_rule_missing_values_bound_at_load() -> None:
    rules = {o.id: o.rules for o in parse_campaign(TABLE).offers}
    assert [(r.missing, r.required) for r in rules["zero"]] == [(0.0, False)]
    assert [(r.missing, r.required) for r in rules["fill"]] == [(5.0, False)]
    assert [r.missing for r in rules["mean"]] == [30.0, 30.0]
    assert [(r.missing, r.required) for r in rules["raw"]] == [(0.0, False)]
    assert [(r.missing, r.required) for r in rules["plan"]] == [(None, False)]
    assert [(r.missing, r.required) for r in rules["vip"]] == [(None, False)]
    assert [(r.missing, r.required) for r in rules["price"]] == [(None, True)]
    # a rule parsed alone reads nothing for a missing field
    assert parse_rule("tickets == 0").holds({}) is False


def test_renewal_example_declares_every_rule_field() -> None:
    config = load_campaign(RENEWAL)
    assert config.schema.rule_attributes == () and config.schema.strict is False
    fields = {r.field for o in config.offers for r in o.rules}
    assert fields <= set(config.schema.attribute_names)


def test_strict_campaign_refuses_a_misspelled_attribute(tmp_path: Path) -> None:
    table = {**TABLE, "features": {**TABLE["features"], "strict": True}}
    message = (
        r"context\.tenur: expected one of the declared attributes \(did you mean 'tenure'\?\), "
        r"got an undeclared attribute$"
    )
    with _engine(tmp_path, table) as eng:
        with pytest.raises(InvalidInputError, match="^" + message):
            eng.decide("c0", {**FULL, "tenur": 12})
        with pytest.raises(InvalidInputError, match=r"^contexts\[39\]\." + message[9:]):
            eng.decide_batch([f"c{i}" for i in range(40)], [FULL] * 39 + [{**FULL, "tenur": 1}])
        assert eng.journal.counts()["decisions"] == 0
        assert eng.decide("c0", FULL).eligible == ("none", "price")

"""Feature schema parsing and encoding: round trips, missing values, unknown categories."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError, CorruptModelError, InvalidInputError
from engine.features import Encoder, parse_schema
from testkit.traffic import NUMERIC

RENEWAL = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"


def renewal_schema():
    return parse_schema(tomllib.loads(RENEWAL.read_text())["features"])


def full_context(**overrides):
    ctx = {
        "tenure_months": 30,
        "monthly_price": 45.0,
        "usage_trend": -0.3,
        "support_tickets": 4,
        "payment_failures": 1,
        "days_to_renewal": 12,
        "num_products": 2,
        "autopay": True,
        "plan": "premium",
        "contract_type": "annual",
        "channel": "app",
        "region": "north-west",
    }
    ctx.update(overrides)
    return ctx


def test_renewal_schema_names_and_width():
    schema = renewal_schema()
    names = schema.feature_names
    assert names[0] == "bias"
    assert names[1:9] == NUMERIC  # testkit's traffic draws the same attributes
    assert "plan=premium" in names and "channel=call_center" in names
    assert sum(n.startswith("region#") for n in names) == 8
    assert schema.n_features == len(names) == 1 + 8 + 3 + 3 + 4 + 8


def test_encode_standardizes_and_one_hots():
    enc = Encoder(renewal_schema())
    x = enc.encode(full_context())
    names = enc.feature_names
    assert x.dtype == np.float64 and x.shape == (enc.n_features,)
    assert x[names.index("bias")] == 1.0
    assert x[names.index("tenure_months")] == pytest.approx((30 - 30.0) / 22.0)
    assert x[names.index("usage_trend")] == pytest.approx(-1.0)
    assert x[names.index("autopay")] == pytest.approx((1 - 0.55) / 0.5)
    assert x[names.index("plan=premium")] == 1.0 and x[names.index("plan=basic")] == 0.0
    assert x[names.index("channel=app")] == 1.0
    region = [i for i, n in enumerate(names) if n.startswith("region#")]
    assert x[region].sum() == 1.0


def test_any_string_hashes():
    x = Encoder(renewal_schema()).encode(full_context(region="nord\udc80-ouest"))
    assert x.sum() > 0


def test_hashing_is_stable_across_encoders():
    a = Encoder(renewal_schema()).encode(full_context(region="south"))
    b = Encoder(renewal_schema()).encode(full_context(region="south"))
    np.testing.assert_array_equal(a, b)


def test_missing_values_follow_the_declared_policy():
    enc = Encoder(renewal_schema())
    names = enc.feature_names
    ctx = full_context()
    for key in ("tenure_months", "support_tickets", "contract_type", "channel", "region"):
        del ctx[key]
    x = enc.encode(ctx)
    assert x[names.index("tenure_months")] == 0.0  # "mean": reads 0 after standardization
    assert x[names.index("support_tickets")] == pytest.approx((0 - 1.0) / 1.5)  # "zero"
    assert x[[i for i, n in enumerate(names) if n.startswith("contract_type=")]].sum() == 0.0
    assert x[[i for i, n in enumerate(names) if n.startswith("region#")]].sum() == 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"monthly_price": None}, r"context\.monthly_price: expected a number, got nothing"),
        ({"plan": None}, r"context\.plan: expected a category, got nothing"),
        ({"plan": "gold"}, r"context\.plan: expected one of 'basic', 'standard', 'premium'"),
        ({"tenure_months": "12"}, r"context\.tenure_months: expected a number, got 12"),
        ({"tenure_months": float("nan")}, r"context\.tenure_months: expected a finite number"),
        ({"usage_trend": float("inf")}, r"context\.usage_trend: expected a finite number"),
        ({"channel": 3.5}, r"context\.channel: expected a string category, got 3\.5"),
        ({"tenure_months": -2e12}, r"context\.tenure_months: expected a finite number with"),
        ({"tenure_months": [1]}, r"context\.tenure_months: expected a number"),
    ],
)
def test_unencodable_contexts_name_the_field(change, message):
    ctx = full_context()
    for key, value in change.items():
        if value is None:
            del ctx[key]
        else:
            ctx[key] = value
    with pytest.raises(InvalidInputError, match=message):
        Encoder(renewal_schema()).encode(ctx)
    with pytest.raises(InvalidInputError, match=message.replace(r"context\.", r"contexts\[1\]\.")):
        Encoder(renewal_schema()).encode_batch([full_context(), ctx])


def test_unknown_categories_ignore_or_other():
    schema = parse_schema(
        {
            "bias": False,
            "categorical": [
                {"name": "a", "values": ["x", "y"], "unknown": "ignore"},
                {"name": "b", "values": ["x", "y"], "unknown": "other"},
            ],
        }
    )
    enc = Encoder(schema)
    assert enc.feature_names == ("a=x", "a=y", "b=x", "b=y", "b=__other__")
    np.testing.assert_array_equal(enc.encode({"a": "z", "b": "z"}), [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(enc.encode({"a": "y", "b": "x"}), [0, 1, 1, 0, 0])


def test_batch_equals_rows():
    enc = Encoder(renewal_schema())
    rng = np.random.default_rng(3)
    contexts = [
        full_context(
            tenure_months=int(rng.integers(0, 90)),
            monthly_price=float(rng.uniform(10, 100)),
            plan=["basic", "standard", "premium"][i % 3],
            region=f"r{i}",
        )
        for i in range(50)
    ]
    contexts[7].pop("usage_trend")
    contexts[9]["autopay"] = False
    batch = enc.encode_batch(contexts)
    rows = np.stack([enc.encode(c) for c in contexts])
    np.testing.assert_allclose(batch, rows)


def test_running_standardization_freezes_and_round_trips():
    schema = parse_schema({"numeric": [{"name": "x", "freeze_after": 100}]})
    enc = Encoder(schema)
    assert enc.learning
    rng = np.random.default_rng(0)
    values = rng.normal(50.0, 10.0, size=150)
    for v in values[:60]:
        enc.encode({"x": float(v)}, learn=True)
    enc.encode_batch([{"x": float(v)} for v in values[60:]], learn=True)
    assert not enc.learning
    state = enc.state()
    assert state["running"]["x"][0] == 100  # frozen after 100 observations
    assert state["running"]["x"][1] == pytest.approx(values[:100].mean())
    x = enc.encode({"x": 60.0})
    assert x[1] == pytest.approx((60.0 - values[:100].mean()) / values[:100].std(ddof=1))
    # The state survives JSON (it goes into snapshots and the journal) and a new encoder.
    other = Encoder(schema)
    other.load_state(json.loads(json.dumps(state)))
    np.testing.assert_array_equal(other.encode({"x": 60.0}), x)
    enc.encode({"x": 1e6}, learn=True)
    np.testing.assert_array_equal(enc.encode({"x": 60.0}), x)


def test_load_state_of_another_schema_is_rejected():
    enc = Encoder(renewal_schema())
    other = Encoder(parse_schema({"numeric": [{"name": "x"}]}))
    with pytest.raises(CorruptModelError, match="different schema"):
        enc.load_state(other.state())


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"numeric": [{"name": "x", "std": 0.0, "mean": 1.0}]}, r"features\.numeric\[0\]\.std"),
        ({"numeric": [{"name": "x", "mean": 1.0}]}, r"features\.numeric\[0\]\.std: expected both"),
        ({"numeric": [{"name": "x", "missing": "drop"}]}, r"features\.numeric\[0\]\.missing"),
        ({"numeric": [{"nam": "x"}]}, r"features\.numeric\[0\]\.name: expected a string"),
        ({"numeric": [{"name": "x"}, {"name": "x"}]}, r"features\.numeric\[1\]\.name"),
        ({"categorical": [{"name": "c"}]}, r"features\.categorical\[0\]\.values"),
        ({"categorical": [{"name": "c", "values": []}]}, r"features\.categorical\[0\]\.values"),
        (
            {"categorical": [{"name": "c", "encoding": "hash"}]},
            r"features\.categorical\[0\]\.buckets: expected an integer",
        ),
        (
            {"categorical": [{"name": "c", "values": ["a"], "encoding": "bin"}]},
            r"features\.categorical\[0\]\.encoding: expected one of 'onehot', 'hash'",
        ),
        ({"numeric": [{"name": "x", "stdev": 1}]}, r"features\.numeric\[0\]\.stdev: unknown key"),
        ({"bias": False}, r"features: expected at least one feature"),
    ],
)
def test_schema_errors_name_the_key(table, message):
    with pytest.raises(ConfigError, match=message):
        parse_schema(table)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["tenure_months", "monthly_price", "plan", "region", "channel", "zz"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(10**6), 10**6),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=8),
        ),
    )
)
def test_encode_either_succeeds_finite_or_raises_invalid_input(ctx):
    enc = Encoder(renewal_schema())
    try:
        x = enc.encode(ctx)
    except InvalidInputError as exc:
        assert str(exc).startswith("context.")
    else:
        assert np.isfinite(x).all()


# --------------------------------------------------------------------- undeclared attributes
def _schema(**features):
    table = tomllib.loads(RENEWAL.read_text())["features"]
    return parse_schema({**table, **features})


def test_undeclared_attributes_are_counted_and_logged_once(caplog):
    enc = Encoder(_schema(rule_attributes=["vip"]))
    expected = enc.encode(full_context())
    with caplog.at_level("WARNING", logger="nbo.features"):
        typo = enc.encode(full_context(tenur_months=3, vip=True))
        enc.encode(full_context(tenur_months=4))
        rows = enc.encode_batch([full_context(), full_context(tenur_months=5, zz_top=1)] * 20)
    np.testing.assert_array_equal(typo, expected)  # ignored, not encoded
    np.testing.assert_array_equal(rows[0], expected)
    assert enc.undeclared_attributes() == {"tenur_months": 22, "zz_top": 20}
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "nbo.features",
            "WARNING",
            "context attribute 'tenur_months' is not declared by the campaign and is ignored "
            "(did you mean 'tenure_months'?); declare it in [features] (a feature, or "
            "rule_attributes), or set strict = true to refuse such requests",
        ),
        (
            "nbo.features",
            "WARNING",
            "context attribute 'zz_top' is not declared by the campaign and is ignored; declare "
            "it in [features] (a feature, or rule_attributes), or set strict = true to refuse "
            "such requests",
        ),
    ]
    counts = enc.undeclared_attributes()
    counts["x"] = 1  # a copy
    assert "x" not in enc.undeclared_attributes()


def test_undeclared_names_kept_are_bounded(caplog, monkeypatch):
    monkeypatch.setattr("engine.features.encoder.UNDECLARED_LIMIT", 3)
    enc = Encoder(_schema())
    with caplog.at_level("WARNING", logger="nbo.features"):
        for name in ("a1", "a2", "a3", "a4", "a1"):
            enc.encode(full_context(**{name: 0}))
    assert enc.undeclared_attributes() == {"a1": 2, "a2": 1, "a3": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4 and messages[2].startswith("context attribute 'a3'")
    assert messages[3] == (
        "3 distinct undeclared context attributes: further names are neither counted nor logged"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"tenur_months": 3},
            r"^context\.tenur_months: expected one of the declared attributes \(did you mean "
            r"'tenure_months'\?\), got an undeclared attribute$",
        ),
        (
            {"zz_top": 1},
            r"^context\.zz_top: expected one of the declared attributes \(autopay, channel, "
            r"contract_type, days_to_renewal, monthly_price, num_products, payment_failures, plan, "
            r"region, support_tickets, tenure_months, usage_trend, vip\), got an undeclared "
            r"attribute$",
        ),
    ],
)
def test_strict_schema_refuses_undeclared_attributes(extra, message, caplog):
    enc = Encoder(_schema(strict=True, rule_attributes=["vip"]))
    with caplog.at_level("WARNING", logger="nbo.features"):
        with pytest.raises(InvalidInputError, match=message):
            enc.encode(full_context(**extra))
        with pytest.raises(
            InvalidInputError, match=message.replace(r"^context\.", r"^contexts\[2\]\.")
        ):
            enc.encode_batch([full_context(vip=True)] * 2 + [full_context(**extra)])
    assert caplog.records == []  # the caller hears of it, not the log
    assert enc.encode(full_context(vip=False)).shape == (enc.n_features,)


def test_declared_attribute_keys_do_not_change_the_encoding_state():
    # strict and rule_attributes decide which requests pass, not how one is encoded: a saved
    # encoder state stays loadable.
    plain, declared = Encoder(_schema()), Encoder(_schema(strict=True, rule_attributes=["vip"]))
    declared.load_state(plain.state())
    assert declared.schema.describe() == plain.schema.describe()


def test_a_flood_of_long_hashed_values_keeps_the_cache_under_its_byte_bound():
    # Issue 12: 100k distinct 1 KB region values grew RSS by ~500 MB that was never released.
    import sys
    import zlib

    from engine.features.encoder import HASH_CACHE_BYTES

    enc = Encoder(renewal_schema())
    region = next(c for c in enc.schema.categorical if c.name == "region")
    j = enc.schema.categorical.index(region)
    offset = enc.feature_names.index("region#0")
    largest = 0
    for start in range(0, 100_000, 5_000):
        values = [f"{i:07d}" + "x" * 1017 for i in range(start, start + 5_000)]  # 1 KB each
        x = enc.encode_batch([full_context(region=v) for v in values])
        # the column each value hashes to, computed here from the rule the encoder documents
        expected = [zlib.crc32(f"region={v}".encode()) % region.buckets for v in values]
        np.testing.assert_array_equal(
            np.argmax(x[:, offset : offset + region.buckets], 1), expected
        )
        assert x[:, offset : offset + region.buckets].sum() == len(values)
        cache = enc._hash_cache[j]
        largest = max(largest, sum(map(sys.getsizeof, cache)))
        assert largest <= HASH_CACHE_BYTES
    assert largest > HASH_CACHE_BYTES // 2  # the cache was used, not switched off
    # values seen before the flood still hash to the same column, cached or not
    again = enc.encode_batch([full_context(region="north-west")] * 2)
    np.testing.assert_array_equal(again[0], Encoder(renewal_schema()).encode(full_context()))

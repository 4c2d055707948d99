"""Campaign config validation, eligibility rules, control group, guardrails."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.campaign import (
    Guardrails,
    control_bucket,
    in_control_group,
    load_campaign,
    parse_campaign,
    parse_rule,
)
from engine.errors import ConfigError, InvalidInputError

RENEWAL = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"
BASE = tomllib.loads(RENEWAL.read_text())


def test_renewal_example_loads():
    cfg = load_campaign(RENEWAL)
    assert cfg.offer_ids == (
        "none",
        "discount_5",
        "discount_10",
        "discount_20",
        "free_month",
        "upgrade",
        "loyalty_gift",
    )
    assert cfg.control_offer == "none" and cfg.fallback_offer == "none"
    assert cfg.control_share == 0.10
    assert cfg.reward_window == 30 * 86400.0
    assert cfg.default_value == 0.0 and cfg.charge_cost == "on_success"
    assert cfg.policy["name"] == "linucb" and cfg.policy["min_propensity"] == 0.02
    ctx = {"monthly_price": 50.0}
    costs = {o.id: o.cost_for(ctx) for o in cfg.offers}
    assert costs == {
        "none": 0.0,
        "discount_5": pytest.approx(30.0),
        "discount_10": pytest.approx(60.0),
        "discount_20": pytest.approx(120.0),
        "free_month": pytest.approx(50.0),
        "upgrade": 18.0,
        "loyalty_gift": 25.0,
    }
    assert cfg.offer_features().shape == (7, 4)
    assert len(cfg.config_hash) == 64


def _set(table, path, value):
    """Set (or delete, with value=...) a dotted path like 'offers.2.cost' in a copy."""
    out = copy.deepcopy(table)
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if value is ...:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return out


BAD_CONFIGS = [
    (
        "offers.2.cost",
        -1,
        r"^offers\[2\]\.cost: expected a number >= 0 or a table \{share, of, months\}, got -1$",
    ),
    ("offers.2.cost", "cheap", r"^offers\[2\]\.cost: expected a number >= 0 or a table"),
    (
        "offers.2.cost",
        {"share": 0.1, "of": "salary"},
        r"^offers\[2\]\.cost\.of: expected the name of a numeric feature, got 'salary'$",
    ),
    (
        "offers.2.cost",
        {"share": -0.1, "of": "monthly_price"},
        r"^offers\[2\]\.cost\.share: expected a finite number >= 0",
    ),
    (
        "offers.2.cost",
        {"share": 0.1, "of": "monthly_price", "month": 3},
        r"^offers\[2\]\.cost\.month: unknown key",
    ),
    (
        "offers.1.id",
        "none",
        r"^offers\[1\]\.id: expected an id not used by an earlier offer, got 'none'$",
    ),
    ("offers.1.id", "has space", r"^offers\[1\]\.id: expected 1-64 characters"),
    ("offers.1.id", ..., r"^offers\[1\]\.id: expected a string, got nothing \(key missing\)$"),
    (
        "offers.3.eligible",
        ["tenure_months >> 3"],
        r"^offers\[3\]\.eligible\[0\]: rule 'tenure_months >> 3'",
    ),
    (
        "offers.3.eligible",
        ["__import__('os').system('true') == 0"],
        r"^offers\[3\]\.eligible\[0\]: rule",
    ),
    ("offers.3.eligible", [12], r"^offers\[3\]\.eligible\[0\]: expected a condition string"),
    ("offers.3.budget_count", -1, r"^offers\[3\]\.budget_count: expected an integer >= 0, got -1$"),
    (
        "offers.4.budget_money",
        float("nan"),
        r"^offers\[4\]\.budget_money: expected a finite number >= 0",
    ),
    (
        "offers.6.max_traffic_share",
        0.0,
        r"^offers\[6\]\.max_traffic_share: expected a finite number > 0 <= 1, got 0\.0$",
    ),
    (
        "offers.6.attributes",
        {"gift": "yes"},
        r"^offers\[6\]\.attributes\.gift: expected a finite number",
    ),
    ("offers.6.colour", "red", r"^offers\[6\]\.colour: unknown key"),
    ("offers", [], r"^offers: expected a non-empty array of \[\[offers\]\] tables, got \[\]$"),
    ("campaign.name", ..., r"^campaign\.name: expected a string, got nothing \(key missing\)$"),
    (
        "campaign.control_share",
        1.5,
        r"^campaign\.control_share: expected a finite number >= 0 <= 1, got 1\.5$",
    ),
    ("campaign.control_share", "10%", r"^campaign\.control_share: expected a finite number"),
    (
        "campaign.control_offer",
        "nope",
        r"^campaign\.control_offer: expected one of the offer ids none, discount_5",
    ),
    (
        "campaign.fallback_offer",
        "nope",
        r"^campaign\.fallback_offer: expected one of the offer ids",
    ),
    ("campaign", ..., r"^campaign: expected a table, got nothing \(key missing\)$"),
    ("policy.name", "nope", r"^policy\.name: "),
    (
        "policy.name",
        "linucbb",
        r"^policy\.name: expected one of linucb, lints, .*, got 'linucbb' "
        r"\(did you mean 'linucb'\?\)$",
    ),
    (
        "policy.min_propensty",
        0.02,
        r"^policy\.min_propensty: expected a hyperparameter of LinUCB \(one of alpha, "
        r"importance_weighting, l2, min_propensity, noise, refactor_every, seed\), got "
        r"'min_propensty' \(did you mean 'min_propensity'\?\)$",
    ),
    (
        "policy.alpha",
        -1,
        r"^policy\.alpha: The 'alpha' parameter of LinUCB must be a float >= 0\. Got -1 instead\.$",
    ),
    (
        "offers.2.eligible",
        ["tenure_month >= 6"],
        r"^offers\[2\]\.eligible\[0\]: expected a rule on a declared attribute \(a feature or one "
        r"of features\.rule_attributes\), got 'tenure_month >= 6' on 'tenure_month' \(did you "
        r"mean 'tenure_months'\?\)$",
    ),
    (
        "offers.3.eligible",
        ["tenure_months >= 12", "segment == 'gold'"],
        r"^offers\[3\]\.eligible\[1\]: expected a rule on a declared attribute .*, got "
        r"\"segment == 'gold'\" on 'segment' \(declared: autopay, channel, contract_type, "
        r"days_to_renewal, monthly_price, num_products, payment_failures, plan, region, "
        r"support_tickets, tenure_months, usage_trend\)$",
    ),
    (
        "features.numeric.0",
        {"name": "tenure_months", "missing": "mean"},  # running standardization
        r"^offers\[2\]\.eligible\[0\]: expected a rule on a feature with a fixed missing value, "
        r"got 'tenure_months >= 6' on 'tenure_months', whose missing = 'mean' is a running mean",
    ),
    (
        "features.rule_attributes",
        ["segment", "plan"],
        r"^features\.rule_attributes\[1\]: expected a name not used by a feature or an earlier "
        r"rule attribute, got 'plan'$",
    ),
    (
        "features.rule_attributes",
        ["segment", ""],
        r"^features\.rule_attributes\[1\]: expected a non-empty string \(an attribute "
        r"eligibility rules read\), got ''$",
    ),
    ("features.rule_attributes", "vip", r"^features\.rule_attributes: expected a list, got 'vip'$"),
    ("features.strict", "yes", r"^features\.strict: expected true or false, got 'yes'$"),
    ("policy.alpha", -1.0, r"^policy\.alpha: The 'alpha' parameter of LinUCB must be"),
    ("policy.min_propensity", 2.0, r"^policy\.min_propensity: expected a finite number >= 0 <= 1"),
    ("policy.seed", "x", r"^policy\.seed: expected an integer >= 0"),
    ("reward.window_days", 0, r"^reward\.window_days: expected a finite number > 0"),
    (
        "reward.charge_cost",
        "sometimes",
        r"^reward\.charge_cost: expected one of 'always', 'on_success', 'never', got 'sometimes'$",
    ),
    ("reward.default_value", float("inf"), r"^reward\.default_value: expected a finite number"),
    (
        "guardrails.max_offers_per_customer",
        0,
        r"^guardrails\.max_offers_per_customer: expected an integer >= 1, got 0$",
    ),
    (
        "guardrails.frequency_window_days",
        0.0,
        r"^guardrails\.frequency_window_days: expected a number > 0 when",
    ),
    ("guardrails.traffic_window", 0, r"^guardrails\.traffic_window: expected an integer >= 1"),
    (
        "learning.publish_every_rewards",
        0,
        r"^learning\.publish_every_rewards: expected an integer >= 1",
    ),
    ("learning.publish_every_ms", -5, r"^learning\.publish_every_ms: expected a finite number > 0"),
    (
        "journal.synchronous",
        "off",
        r"^journal\.synchronous: expected one of 'normal', 'full', got 'off'$",
    ),
    ("journal.retention_days", 0, r"^journal\.retention_days: expected a finite number > 0"),
    ("journal.cache_mib", 0, r"^journal\.cache_mib: expected an integer >= 1, got 0$"),
    ("journal.cache_mib", "64", r"^journal\.cache_mib: expected an integer >= 1, got '64'$"),
    (
        "journal.cache_mib",
        1 << 20,
        r"^journal\.cache_mib: expected an integer from 1 to 65536, got 1048576$",
    ),
    (
        "journal.retention_days",
        30,
        r"^journal\.retention_days: expected a number >= 180 \(guardrails\.frequency_window_days "
        r"= 180: frequency caps count the incentives within it\), got 30$",
    ),
    ("features.numeric.1.std", -2.0, r"^features\.numeric\[1\]\.std: expected a finite number > 0"),
    (
        "features.categorical.0.values",
        ["basic", "basic"],
        r"^features\.categorical\[0\]\.values: expected distinct values",
    ),
    ("offerz", [], r"^offerz: unknown key; expected one of campaign, combinations, dimensions"),
]


def test_the_journal_page_cache_is_64_mib_by_default_and_reaches_the_sqlite_connection(tmp_path):
    from engine.journal.backends import open_journal

    assert load_campaign(RENEWAL).cache_mib == 64
    cfg = parse_campaign(_set(BASE, "journal.cache_mib", 8))
    journal = open_journal(None, campaign=cfg.name, data_dir=tmp_path, cache_mib=cfg.cache_mib)
    try:
        assert journal.query("PRAGMA cache_size") == [(-8 * 1024,)]
    finally:
        journal.close()


def test_retention_days_is_none_by_default_and_at_least_the_longest_window_the_engine_reads():
    assert load_campaign(RENEWAL).retention_days is None
    assert parse_campaign(_set(BASE, "journal.retention_days", 365)).retention_days == 365.0
    no_caps = _set(
        _set(BASE, "guardrails.max_offers_per_customer", ...), "guardrails.cooldown_days", 0
    )
    no_caps = _set(no_caps, "guardrails.frequency_window_days", 0)
    cfg = parse_campaign(no_caps)
    assert cfg.retention_floor() == (
        30.0,
        "reward.window_days = 30: a retried reward finds its decision",
    )
    hours = parse_campaign(
        _set(_set(no_caps, "reward.window_days", 0.5), "journal.request_window_hours", 48)
    )
    assert hours.retention_floor() == (
        2.0,
        "journal.request_window_hours = 48: a retried request reads its decisions back",
    )
    assert parse_campaign(_set(no_caps, "journal.retention_days", 30)).retention_days == 30.0


@pytest.mark.parametrize(("path", "value", "message"), BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_configs_name_the_key(path, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_campaign(_set(BASE, path, value))


def test_invalid_toml_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[campaign\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: expected a valid TOML file"):
        load_campaign(path)


def test_minimal_config_gets_documented_defaults():
    cfg = parse_campaign({"campaign": {"name": "tiny"}, "offers": [{"id": "a"}, {"id": "b"}]})
    assert cfg.control_offer == "a" and cfg.fallback_offer == "a" and cfg.control_share == 0.0
    assert cfg.schema.feature_names == ("bias",)
    assert cfg.charge_cost == "always" and cfg.default_value is None
    assert cfg.net_reward(1, cost=0.0, value=3.0) == 3.0


def test_net_reward_policies():
    cfg = load_campaign(RENEWAL)  # charge_cost = "on_success"
    a = cfg.offer_index("discount_10")
    assert cfg.net_reward(a, cost=60.0, value=600.0) == 540.0
    assert cfg.net_reward(a, cost=60.0, value=0.0) == 0.0
    for mode, expected in (("always", -60.0), ("never", 0.0)):
        other = parse_campaign(_set(BASE, "reward.charge_cost", mode))
        assert other.net_reward(a, cost=60.0, value=0.0) == expected
    with pytest.raises(InvalidInputError, match="value: expected a finite number"):
        cfg.net_reward(a, cost=1.0, value=float("nan"))


# ---------------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("text", "context", "expected"),
    [
        ("tenure_months >= 12", {"tenure_months": 12}, True),
        ("tenure_months >= 12", {"tenure_months": 11.9}, False),
        ("tenure_months > 12", {"tenure_months": 12}, False),
        ("tenure_months < 1e2", {"tenure_months": 99}, True),
        ("payment_failures <= -1", {"payment_failures": -1}, True),
        ("channel == 'email'", {"channel": "email"}, True),
        ('channel == "email"', {"channel": "web"}, False),
        ("channel != 'email'", {"channel": "web"}, True),
        ("channel != 'email'", {}, False),  # missing field: never eligible
        ("plan in ['basic', 'standard']", {"plan": "standard"}, True),
        ("plan in ['basic', 'standard']", {"plan": "premium"}, False),
        ("plan not in ['basic']", {"plan": "premium"}, True),
        ("segment in [1, 2, 3]", {"segment": 2}, True),
        ("autopay == true", {"autopay": True}, True),
        ("autopay == true", {"autopay": 1}, False),
        ("plan < 3", {"plan": "basic"}, False),  # wrong type: false, not an error
        ("tenure_months >= 12", {"tenure_months": "20"}, False),
        ("tenure_months >= 12", {"tenure_months": float("nan")}, False),
        ("plan in ['a']", {"plan": ["a"]}, False),
    ],
)
def test_rule_semantics(text, context, expected):
    assert parse_rule(text).holds(context) is expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tenure_months",
        "tenure_months >=",
        ">= 12",
        "tenure_months >= 12 and plan == 'x'",
        "plan in 'basic'",
        "plan in ['a' 'b']",
        "plan in ['a',]",
        "x == y",
        "x >= true",
        "__import__('os').system('echo hi') == 0",
        "x == 1; import os",
    ],
)
def test_bad_rules_raise_config_error(text):
    with pytest.raises(ConfigError, match="rule"):
        parse_rule(text)


@settings(max_examples=150, deadline=None)
@given(
    threshold=st.integers(-1000, 1000) | st.floats(-1e6, 1e6, allow_nan=False),
    value=st.integers(-1000, 1000) | st.floats(-1e6, 1e6, allow_nan=False),
    op=st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
)
def test_numeric_rules_agree_with_python(threshold, value, op):
    import operator

    py = {
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
        "==": operator.eq,
        "!=": operator.ne,
    }[op]
    rule = parse_rule(f"x {op} {threshold!r}")
    assert rule.holds({"x": value}) is py(value, rule.value)
    assert rule.holds({}) is False


@settings(max_examples=150, deadline=None)
@given(
    members=st.lists(st.text("abcxyz_", min_size=1, max_size=4), min_size=1, max_size=5),
    value=st.text("abcxyz_", min_size=1, max_size=4),
    negate=st.booleans(),
)
def test_membership_rules_agree_with_python(members, value, negate):
    listed = ", ".join(f"'{m}'" for m in members)
    rule = parse_rule(f"plan {'not in' if negate else 'in'} [{listed}]")
    assert rule.holds({"plan": value}) is ((value in members) != negate)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_raises_config_error(text):
    try:
        rule = parse_rule(text)
    except ConfigError:
        return
    assert isinstance(rule.holds({}), bool)


# ---------------------------------------------------------------------------------- control


def test_control_assignment_is_sticky_and_near_its_share():
    ids = [f"cust-{i}" for i in range(20_000)]
    flags = [in_control_group("renewal-2026", c, 0.10) for c in ids]
    share = sum(flags) / len(flags)
    assert abs(share - 0.10) < 0.01  # binomial sd is 0.002
    assert flags == [in_control_group("renewal-2026", c, 0.10) for c in ids]
    # Another salt reshuffles the group; nested shares nest (bucket < share).
    other = [in_control_group("another-salt", c, 0.10) for c in ids]
    assert sum(a and b for a, b in zip(flags, other, strict=True)) < 0.2 * sum(flags)
    wider = [in_control_group("renewal-2026", c, 0.20) for c in ids]
    assert all(w for f, w in zip(flags, wider, strict=True) if f)
    assert not any(in_control_group("s", c, 0.0) for c in ids[:100])
    buckets = np.array([control_bucket("s", c) for c in ids[:5000]])
    assert buckets.min() >= 0.0 and buckets.max() < 1.0


# ---------------------------------------------------------------------------------- guardrails


def _guard_config(**offer_extra):
    offers = [{"id": "none"}, {"id": "gift", "cost": 40.0, **offer_extra}]
    return parse_campaign(
        {
            "campaign": {"name": "g", "control_offer": "none"},
            "guardrails": {
                "max_offers_per_customer": 2,
                "frequency_window_days": 10.0,
                "cooldown_days": 1.0,
                "traffic_window": 20,
            },
            "offers": offers,
        }
    )


DAY = 86400.0


def test_budget_count_and_money():
    g = Guardrails(_guard_config(budget_count=3, budget_money=100.0))
    costs = [0.0, 40.0]
    for i in range(2):
        mask, reasons = g.exclusions(f"c{i}", 0.0, costs)
        assert mask.tolist() == [True, True] and reasons == []
        g.record(f"c{i}", 0.0, 1, 40.0)
    mask, reasons = g.exclusions("c9", 0.0, costs)  # 80 + 40 > 100
    assert mask.tolist() == [True, False] and reasons == ["budget_money:gift"]
    mask, reasons = g.exclusions("c9", 0.0, [0.0, 20.0])  # a cheaper instance still fits
    assert mask.tolist() == [True, True]
    g.record("c9", 0.0, 1, 20.0)
    mask, reasons = g.exclusions("c10", 0.0, [0.0, 0.0])
    assert reasons == ["budget_count:gift"]


def test_cooldown_then_frequency_cap():
    g = Guardrails(_guard_config())
    costs = [0.0, 40.0]
    g.record("c", 0.0, 1, 40.0)
    mask, reasons = g.exclusions("c", 0.5 * DAY, costs)
    assert mask.tolist() == [True, False] and reasons == ["cooldown"]
    assert g.exclusions("other", 0.5 * DAY, costs)[1] == []
    mask, reasons = g.exclusions("c", 1.5 * DAY, costs)
    assert mask.tolist() == [True, True]
    g.record("c", 1.5 * DAY, 1, 40.0)
    mask, reasons = g.exclusions("c", 3 * DAY, costs)
    assert mask.tolist() == [True, False] and reasons == ["frequency_cap"]
    # Control-offer decisions do not count as incentives.
    g.record("d", 0.0, 0, 0.0)
    assert g.exclusions("d", 0.1, costs)[1] == []
    # After the window both incentives age out, and prune forgets the customer.
    assert g.exclusions("c", 12 * DAY, costs)[1] == []
    assert g.prune(12 * DAY) == 1


def test_traffic_cap_holds_a_new_offer_to_its_share():
    g = Guardrails(_guard_config(max_traffic_share=0.25))
    chosen = []
    for i in range(200):
        mask, reasons = g.exclusions(f"c{i}", float(i), [0.0, 40.0])
        action = 1 if mask[1] else 0  # a policy that always wants the gift
        if not mask[1]:
            assert reasons == ["traffic_cap:gift"]
        g.record(f"c{i}", float(i), action, 40.0 if action else 0.0)
        chosen.append(action)
    assert abs(np.mean(chosen[40:]) - 0.25) <= 0.05
    assert g.traffic_counts[1] <= 0.25 * 20 + 1


def test_restore_matches_recorded_state():
    cfg = _guard_config(budget_count=10, max_traffic_share=0.5)
    live = Guardrails(cfg)
    log = []
    for i in range(30):
        action = i % 2
        live.record(f"c{i % 4}", i * 3600.0, action, 40.0 * action)
        log.append((f"c{i % 4}", i * 3600.0, action, 40.0 * action))
    restored = Guardrails(cfg)
    totals = {1: (15, 600.0), 0: (15, 0.0)}
    history: dict[str, list[tuple[float, int]]] = {}
    for customer, t, action, _ in log:
        if action:
            history.setdefault(customer, []).append((t, action))
    restored.restore(totals, [a for _, _, a, _ in log], history)
    now = 30 * 3600.0
    for customer in ("c0", "c1", "c2", "c3"):
        assert (
            live.exclusions(customer, now, [0.0, 40.0])[1]
            == restored.exclusions(customer, now, [0.0, 40.0])[1]
        )
    np.testing.assert_array_equal(live.traffic_counts, restored.traffic_counts)
    np.testing.assert_array_equal(live.used_count, restored.used_count)

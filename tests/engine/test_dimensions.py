"""Multi-dimensional campaigns: parsing, combination eligibility and costs, guardrails per
dimension value (daily budgets, per-customer caps) across a restart, candidates, the export."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.campaign import Guardrails, load_campaign, parse_campaign
from engine.campaign.eligibility import Eligibility
from engine.core import Engine
from engine.errors import ConfigError, InvalidInputError
from engine.journal.export import export_parquet
from engine.replay.dimensions import logged_treatments
from engine.replay.readers import read_logs
from engine.replay.train import train_policy

ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ROOT / "examples" / "renewal_channels.toml"
TABLE = tomllib.loads(CHANNELS.read_text())
DAY = 86400.0
CUSTOMER = {
    "tenure_months": 30,
    "monthly_price": 50.0,
    "plan": "basic",
    "payment_failures": 0,
    "contract_type": "annual",
    "days_to_renewal": 20,
}


def small(**dims: Any) -> dict[str, Any]:
    """A campaign of two offers x a channel dimension, its values' extra keys from ``dims``."""
    channel = [{"id": "email"}, {"id": "sms", **dims.get("sms", {})}]
    channel.append({"id": "call", "cost": 6.0, **dims.get("call", {})})
    return {
        "campaign": {"name": "small", "control_offer": "none"},
        "features": {"numeric": [{"name": "age", "mean": 40.0, "std": 10.0}]},
        "offers": [
            {"id": "none"},
            {"id": "discount", "cost": {"share": 0.1, "of": "age", "months": 1}},
        ],
        "dimensions": [{"name": "channel", "values": channel}],
        "combinations": {"exclude": ["offer == 'none' and channel != 'email'"]},
    }


def test_the_example_expands_into_its_allowed_combinations():
    cfg = load_campaign(CHANNELS)
    assert cfg.dimension_names == ("offer", "channel", "timing")
    # 7 offers x 3 channels x 4 timings = 84, less 11 of "none" and 4 of the gift by SMS.
    assert cfg.n_actions == 84 - 11 - 4
    assert cfg.control_offer == "none+email+now" == cfg.fallback_offer
    assert "loyalty_gift+sms+now" not in cfg.offer_ids
    assert cfg.choices(cfg.offer_index("upgrade+call+week_2")) == {
        "offer": "upgrade",
        "channel": "call",
        "timing": "week_2",
    }
    features = cfg.offer_features()
    # one-hot of 7 offers + 4 offer attributes, 3 channels + 2, 4 timings + 1
    assert features.shape == (69, 21)
    np.testing.assert_array_equal(features[:, :7].sum(axis=1), 1.0)
    # the SMS cap's window and the call center's day count in the retention floor
    windows = dict((g.label, g.limits) for g in cfg.groups())
    assert windows["channel=sms"].max_per_customer == 1
    assert windows["channel=call"].budget_count_per_day == 120


def test_a_campaign_without_dimensions_is_what_it_was():
    cfg = load_campaign(ROOT / "examples" / "renewal.toml")
    assert cfg.dimensions == () and cfg.dimension_names == () and cfg.catalog == ()
    assert [g.label for g in cfg.groups()] == list(cfg.offer_ids)
    assert cfg.choices(3) == {} and cfg.candidate_groups() == {}


def _with(table: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(table)
    node: Any = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
    return out


BAD = [
    (
        "dimensions.0.name",
        "offer",
        r"^dimensions\[0\]\.name: expected 1-32 lowercase .* got 'offer'",
    ),
    ("dimensions.0.name", "reward", r"^dimensions\[0\]\.name: expected .*logged-data column"),
    ("dimensions.1.name", "channel", r"^dimensions\[1\]\.name: expected a name not used"),
    ("dimensions.0.values", [], r"^dimensions\[0\]\.values: expected a non-empty list"),
    (
        "dimensions.0.values.1.id",
        "email",
        r"^dimensions\[0\]\.values\[1\]\.id: expected an id not used by an earlier value",
    ),
    ("dimensions.0.values.1.id", "s+ms", r"^dimensions\[0\]\.values\[1\]\.id: expected 1-64"),
    ("dimensions.0.values.2.cost", -1.0, r"^dimensions\[0\]\.values\[2\]\.cost: expected"),
    (
        "dimensions.0.values.1.frequency_window_days",
        0.0,
        r"^dimensions\[0\]\.values\[1\]\.frequency_window_days: expected a number > 0 when "
        "max_per_customer",
    ),
    (
        "dimensions.0.values.0.eligible",
        ["shoe_size > 3"],
        r"^dimensions\[0\]\.values\[0\]\.eligible\[0\]: expected a rule on a declared attribute",
    ),
    (
        "combinations.exclude",
        ["colour == 'red'"],
        r"^combinations\.exclude\[0\]: expected conditions on offer, channel, timing, got",
    ),
    (
        "combinations.exclude",
        ["channel == 'fax'"],
        r"^combinations\.exclude\[0\]: expected values of channel \(email, sms, call\), got 'fax'",
    ),
    (
        "combinations.exclude",
        ["offer == 'voucher'"],
        r"^combinations\.exclude\[0\]: expected offer ids of \[\[offers\]\], got 'voucher'",
    ),
    (
        "combinations.exclude",
        ["timing > 'now'"],
        r"^combinations\.exclude\[0\]: expected ==, !=, in or not in",
    ),
    (
        "combinations.exclude",
        ["channel in ['email', 'sms', 'call']"],
        r"^combinations\.exclude: expected rules that leave at least one combination",
    ),
    (
        "campaign.control_offer",
        "voucher",
        r"^campaign\.control_offer: expected an offer id with an allowed combination",
    ),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD)
def test_bad_dimensions_name_the_key(path, value, message):
    bad = _with(TABLE, path, value)
    if path == "dimensions.1.name":
        bad = _with(TABLE, path, "channel")
    if path.endswith("frequency_window_days"):
        bad["dimensions"][0]["values"][1]["frequency_window_days"] = value
    with pytest.raises(ConfigError, match=message):
        parse_campaign(bad)


def test_combinations_need_dimensions():
    table = small()
    del table["dimensions"]
    with pytest.raises(ConfigError, match=r"^combinations: expected \[\[dimensions\]\]"):
        parse_campaign(table)


def test_a_value_rule_removes_its_combinations_once_and_costs_add():
    table = small(call={"eligible": ["age >= 30"]})
    cfg = parse_campaign(table)
    assert cfg.offer_ids == ("none+email", "discount+email", "discount+sms", "discount+call")
    contexts = [{"age": 25.0}, {"age": 50.0}] * 20  # 40 rows: the vectorized path
    for rows in (contexts, contexts[:2]):  # ... and the row-by-row one agree
        masks, costs, reasons = Eligibility(cfg).evaluate(rows)
        assert masks[0].tolist() == [True, True, True, False]
        assert masks[1].all()
        assert reasons[0] == ["rule:channel=call:age >= 30"] and reasons[1] == []
        # the offer's share (10% of age) plus the channel's fixed cost
        np.testing.assert_allclose(costs[1], [0.0, 5.0, 5.0, 11.0])
    masks, costs, reasons = Eligibility(cfg).evaluate([{}] * 40)
    assert reasons[0] == ["cost_unknown:discount"] and masks[0].tolist() == [
        True,
        False,
        False,
        False,
    ]


def test_a_daily_budget_on_a_value_holds_back_its_combinations_until_the_next_day():
    cfg = parse_campaign(small(call={"budget_count_per_day": 2}))
    g = Guardrails(cfg)
    call = cfg.offer_index("discount+call")
    costs = [0.0, 5.0, 5.0, 11.0]
    g.record("c1", 10.0, call, 11.0)
    assert g.exclusions("c2", 20.0, costs)[1] == []
    g.record("c2", 30.0, call, 11.0)
    mask, reasons = g.exclusions("c3", 40.0, costs)
    assert reasons == ["budget_count_per_day:channel=call"] and mask.tolist() == [
        True,
        True,
        True,
        False,
    ]
    assert g.budgets(40.0)["channel=call"]["used_count_per_day"] == 2.0
    assert g.exclusions("c3", DAY + 1.0, costs)[1] == []  # a new UTC day
    assert g.budgets(DAY + 1.0)["channel=call"]["used_count_per_day"] == 0.0


def test_a_per_customer_cap_on_a_value_counts_that_customer_s_incentives_by_it():
    cfg = parse_campaign(small(sms={"max_per_customer": 1, "frequency_window_days": 30.0}))
    g = Guardrails(cfg)
    sms, email = cfg.offer_index("discount+sms"), cfg.offer_index("discount+email")
    costs = [0.0, 5.0, 5.0, 11.0]
    g.record("c1", 0.0, email, 5.0)
    assert g.exclusions("c1", DAY, costs)[1] == []  # an email is not an SMS
    g.record("c1", DAY, sms, 5.0)
    mask, reasons = g.exclusions("c1", 2 * DAY, costs)
    assert reasons == ["frequency_cap:channel=sms"] and not mask[sms] and mask[email]
    assert g.exclusions("c2", 2 * DAY, costs)[1] == []
    assert g.exclusions("c1", 32 * DAY, costs)[1] == []  # the window has passed


def test_value_guardrails_survive_a_restart(tmp_path):
    table = small(
        call={"budget_count_per_day": 3},
        sms={"max_per_customer": 1, "frequency_window_days": 30.0},
    )
    table["policy"] = {"name": "random", "seed": 0}
    cfg = parse_campaign(table)
    now = [10 * DAY + 100.0]
    with Engine(cfg, tmp_path, clock=lambda: now[0]) as eng:
        for i in range(3):
            eng.decide(f"c{i}", {"age": 50.0}, candidates=["channel=call"])
        sent = eng.decide("s1", {"age": 50.0}, candidates=["discount+sms"])
        assert sent.offer_id == "discount+sms" and sent.choices["channel"] == "sms"
        before = eng.budgets()["channel=call"]
    with Engine(cfg, tmp_path, clock=lambda: now[0]) as eng:
        assert eng.budgets()["channel=call"] == before
        d = eng.decide("c9", {"age": 50.0}, candidates=["channel=call"])
        assert "budget_count_per_day:channel=call" in d.reasons
        again = eng.decide("s1", {"age": 50.0}, candidates=["channel=sms", "channel=email"])
        assert "frequency_cap:channel=sms" in again.reasons and again.offer_id != "discount+sms"


def test_decisions_name_their_choices_and_candidates_may_name_values(tmp_path):
    table = small()
    table["policy"] = {"name": "random", "seed": 0}
    cfg = parse_campaign(table)
    with Engine(cfg, tmp_path, clock=lambda: 1.7e9) as eng:
        d = eng.decide("c1", {"age": 50.0})
        assert d.offer_id in cfg.offer_ids and d.choices == dict(
            zip(("offer", "channel"), d.offer_id.split("+"), strict=True)
        )
        # uniform over the four eligible combinations: the combination's exact propensity
        assert d.propensity == pytest.approx(0.25) and len(d.eligible) == 4
        batch = eng.decide_batch(
            [f"c{i}" for i in range(40)], [{"age": 50.0}] * 40, ["channel=sms", "channel=email"]
        )
        assert {r.choices["channel"] for r in batch} <= {"sms", "email"}
        assert all(r.propensity == pytest.approx(1 / 3) for r in batch)
        with pytest.raises(InvalidInputError, match=r"^candidates\[0\]: expected a combination"):
            eng.decide("c1", {"age": 50.0}, candidates=["channel=fax"])
        eng.reward(d.decision_id, 100.0)
    out = export_parquet(tmp_path / "small.journal.sqlite", tmp_path / "logs.parquet")
    table_out = pq.read_table(out["path"])
    names = table_out.column_names
    assert names[names.index("action") + 1 : names.index("action") + 3] == ["offer", "channel"]
    row = table_out.slice(0, 1).to_pylist()[0]
    assert row["action"] == f"{row['offer']}+{row['channel']}"
    assert table_out.schema.metadata[b"nbo.dimensions"] == b'["offer", "channel"]'


def _landing_campaign(tmp_path: Path) -> Any:
    table = small()
    table["offers"][0]["sends"] = False  # "none" sends nothing
    table["policy"] = {"name": "landing", "seed": 0, "epsilon": 0.5}
    table["learning"] = {"publish_every_rewards": 1}
    return parse_campaign(table)


def test_the_landing_policy_learns_engagement_from_the_reward_components(tmp_path):
    """Through the engine: the policy gets each action's (offer, route, sends) from the campaign,
    the 'engaged' component of every reward reaches it, a restart replays the same model, and
    an engagement out of [0, 1] is refused before anything is journaled."""
    cfg = _landing_campaign(tmp_path)
    table = cfg.treatments()
    assert table[cfg.offer_index("none+email")].tolist() == [0, 0, 0]
    assert table[cfg.offer_index("discount+call")].tolist() == [1, 2, 1]
    landed = {"email": 0.9, "sms": 0.2, "call": 0.5}
    rng = np.random.default_rng(0)
    with Engine(cfg, tmp_path) as eng:
        ids, parts, values = [], [], []
        for i in range(600):
            d = eng.decide(f"c{i}", {"age": float(rng.uniform(20, 60))})
            channel = d.choices["channel"]
            hit = d.choices["offer"] == "discount" and rng.random() < landed[channel]
            ids.append(d.decision_id)
            values.append(30.0 if hit else 10.0)
            parts.append(None if d.choices["offer"] == "none" else {"engaged": float(hit)})
        eng.reward_batch(ids, values, parts)
        model = eng.policy
        assert model.land_n_.sum() == sum(p is not None for p in parts)
        rho = model.landing(np.array([[1.0, 0.0]]))[0]
        assert rho[0] > rho[2] > rho[1]  # email > call > sms
        fresh = eng.decide("z", {"age": 40.0}).decision_id
        with pytest.raises(InvalidInputError, match=r"components\['engaged'\]: expected an engage"):
            eng.reward(fresh, 1.0, {"engaged": 2.0})
        assert eng.reward(fresh, 1.0, {"engaged": 1.0}).status == "applied"  # nothing was kept
        before = eng.policy.to_bytes()
    with Engine(cfg, tmp_path) as eng:
        assert eng.policy.to_bytes() == before
    # offline: the export carries the components, the reader gives them as signals, and a
    # landing policy trained on the logs learns the same landing
    out = export_parquet(tmp_path / "small.journal.sqlite", tmp_path / "logs.parquet")
    first = pq.read_table(out["path"]).slice(0, 1).to_pylist()[0]
    assert first["components"] == (None if parts[0] is None else list(parts[0].items()))
    logs = read_logs(out["path"])
    engaged = logs.signals["engaged"]
    assert np.isnan(engaged).sum() == sum(p is None for p in parts)
    assert np.nansum(engaged) == sum(p["engaged"] for p in parts if p) + 1.0  # and "z"'s
    spec = {
        "name": "landing",
        "offer_features": logged_treatments(logs.actions, ("offer", "channel")),
    }
    trained = train_policy(logs, spec, target="ips")
    email, sms, call = (logs.actions.index(f"discount+{c}") for c in ("email", "sms", "call"))
    route = trained.offer_features[[email, sms, call], 1].astype(int)
    rho = trained.landing(np.array([[1.0, 0.0]]))[0][route]
    assert rho[0] > rho[2] > rho[1]


def test_offers_say_whether_they_send_and_a_campaign_without_dimensions_has_one_route():
    table = small()
    del table["dimensions"], table["combinations"]
    table["offers"][0]["sends"] = False
    table["policy"] = {"name": "landing"}
    cfg = parse_campaign(table)
    assert cfg.treatments().tolist() == [[0, 0, 0], [1, 0, 1]]
    table["offers"][0]["sends"] = "no"
    with pytest.raises(ConfigError, match=r"offers\[0\]\.sends: expected true or false"):
        parse_campaign(table)

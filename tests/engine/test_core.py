"""The Engine end to end on real SQLite files: decisions, rewards, expiry, learning, snapshots."""

from __future__ import annotations

import math
import os
import stat
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from engine.campaign import in_control_group
from engine.core import Engine
from engine.errors import CorruptModelError, InvalidInputError, NotFoundError
from engine.journal import read_snapshot, write_snapshot
from engine.serving import codec
from engine.validation import ID_RULE, MAX_ID_CHARS
from tests.engine.journal_files import read_journal, rebuilt_from_journal
from tests.engine.small_campaigns import numeric_features, offer_tables

RENEWAL = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"
T0 = 1_700_000_000.0
DAY = 86400.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def renewal_context(rng: np.random.Generator, i: int = 0) -> dict:
    return {
        "tenure_months": int(rng.integers(0, 90)),
        "monthly_price": float(rng.uniform(15.0, 120.0)),
        "usage_trend": float(rng.normal(0.0, 0.3)),
        "support_tickets": int(rng.poisson(1.0)),
        "payment_failures": int(rng.poisson(0.3)),
        "days_to_renewal": int(rng.integers(1, 60)),
        "num_products": int(rng.integers(1, 4)),
        "autopay": bool(rng.random() < 0.5),
        "plan": ["basic", "standard", "premium"][i % 3],
        "contract_type": ["monthly", "annual", "two_year"][i % 3],
        "channel": ["email", "web", "call_center", "app"][i % 4],
        "region": f"region-{i % 13}",
    }


def small_config(tmp_path: Path, extra: str = "", policy: str = 'name = "random"', **kw) -> Path:
    """A two-feature campaign with offers none (control), a, b (b costs 10)."""
    text = f"""
[campaign]
name = "small"
salt = "s"
control_offer = "none"
control_share = {kw.get("control_share", 0.0)}

[policy]
{policy}

[learning]
publish_every_rewards = {kw.get("publish_every_rewards", 1000)}
publish_every_ms = {kw.get("publish_every_ms", 1e9)}
checkpoint_every_rewards = {kw.get("checkpoint_every_rewards", 100000)}

[reward]
window_days = 7.0
charge_cost = "always"
{kw.get("reward_extra", "")}

{numeric_features("x")}

{offer_tables("none", "a")}
[[offers]]
id = "b"
cost = 10.0
{extra}
"""
    path = tmp_path / "small.toml"
    path.write_text(text)
    return path


@pytest.fixture
def clock():
    return Clock()


def test_renewal_end_to_end(tmp_path, clock):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    eng = Engine.from_config(RENEWAL, data_dir=data, clock=clock)
    try:
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
        journal = data / "renewal.journal.sqlite"
        assert stat.S_IMODE(os.stat(journal).st_mode) == 0o600
        decisions = [eng.decide(f"c{i}", renewal_context(rng, i)) for i in range(300)]
        for d in decisions:
            assert d.offer_id in eng.offer_ids
            assert 0.0 < d.propensity <= 1.0
            assert d.model_version == "v1" and d.campaign == "renewal"
            if d.control:
                assert d.offer_id == "none" and d.propensity == 1.0
                assert d.reasons == ("control_group",) and not d.explored
            else:
                assert d.offer_id in d.eligible
                assert d.ranking[0][1] == max(s for _, s in d.ranking)
                assert {o for o, _ in d.ranking} == set(d.eligible)
        assert 10 <= sum(d.control for d in decisions) <= 55  # 10% of 300
        assert len({d.decision_id for d in decisions}) == 300
        # Eligibility rules show up as reasons, and ineligible offers are never chosen.
        for d in decisions:
            for reason in d.reasons:
                if reason.startswith("rule:"):
                    assert reason.split(":")[1] not in d.eligible
        values = [float(rng.uniform(0, 900)) if i % 3 else 0.0 for i in range(300)]
        results = eng.reward_batch([d.decision_id for d in decisions], values)
        assert [r.status for r in results] == ["applied"] * 300
        for d, r, v in zip(decisions, results, values, strict=True):
            expected = v - d.cost if v > 0 else v  # charge_cost = "on_success"
            assert r.reward == pytest.approx(expected)
        assert eng.model_version != "v1"  # 300 rewards, publish_every_rewards = 100
        lift = eng.lift()
        assert lift.n_treatment + lift.n_control == 300
        version = eng.snapshot()
        assert (data / "snapshots" / "renewal" / f"{version}.snap").is_file()
    finally:
        eng.close()


def test_decide_validation_changes_nothing(tmp_path, clock):
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path, clock=clock)
    ctx = renewal_context(np.random.default_rng(1))
    bad = [
        (("", ctx), r"customer_id: expected a non-empty UTF-8 string"),
        ((None, ctx), r"customer_id: expected a non-empty UTF-8 string"),
        (("bad\udc80id", ctx), r"customer_id: expected a non-empty UTF-8 string"),
        (("x" * 257, ctx), r"customer_id: expected a non-empty UTF-8 string of <= 256"),
        (("c", {**ctx, "tenure_months": 1e13}), r"context\.tenure_months: expected a finite"),
        (("c", {**ctx, "plan": "gold"}), r"context\.plan: expected one of"),
        (("c", {**ctx, "tenure_months": math.nan}), r"context\.tenure_months: expected a finite"),
        (("c", "not a dict"), r"context: expected a mapping"),
    ]
    for args, message in bad:
        with pytest.raises(InvalidInputError, match=message):
            eng.decide(*args)
    with pytest.raises(InvalidInputError, match=r"candidates\[1\]: expected one of none"):
        eng.decide("c", ctx, candidates=["none", "bogus"])
    with pytest.raises(InvalidInputError, match=r"contexts: expected a list of 2 contexts"):
        eng.decide_batch(["a", "b"], [ctx])
    assert eng.journal.counts()["decisions"] == 0
    eng.close()


def test_over_long_ids_are_refused_at_the_shared_limit(tmp_path, clock):
    """The Engine API bounds every id it takes by validation.MAX_ID_CHARS, the limit the gRPC
    codec enforces: one character more is an InvalidInputError naming the field, with the id
    rule as what was expected and the id as what came; nothing is journaled."""
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path, clock=clock)
    ctx = renewal_context(np.random.default_rng(1))
    at_limit, over = "x" * MAX_ID_CHARS, "y" * (MAX_ID_CHARS + 1)
    try:
        decision = eng.decide(at_limit, ctx, request_id=at_limit)
        calls = [
            ("customer_id", lambda: eng.decide(over, ctx)),
            ("customer_ids[1]", lambda: eng.decide_batch(["c", over], [ctx, ctx])),
            ("request_id", lambda: eng.decide("c", ctx, request_id=over)),
            ("decision_id", lambda: eng.reward(over, 1.0)),
            ("decision_ids[1]", lambda: eng.reward_batch([decision.decision_id, over], [1, 2])),
            ("decision_id", lambda: eng.activate(over)),
            ("decision_ids[1]", lambda: eng.activate_batch([decision.decision_id, over])),
        ]
        for field, call in calls:
            with pytest.raises(InvalidInputError) as caught:
                call()
            assert (caught.value.field, caught.value.expected, caught.value.got) == (
                field,
                ID_RULE,
                over,
            )
            assert f"<= {MAX_ID_CHARS} characters" in str(caught.value)
        # The codec refuses the same id at the same limit (its wording says the length).
        assert codec.check_id(at_limit, "customer_id") == at_limit
        with pytest.raises(InvalidInputError, match=f"at most {MAX_ID_CHARS} characters"):
            codec.check_id(over, "customer_id")
        assert eng.journal.counts()["decisions"] == 1
        assert eng.journal.counts()["rewards"] == 0
    finally:
        eng.close()


def test_candidates_fallback_and_reasons(tmp_path, clock):
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path, clock=clock)
    ctx = {**renewal_context(np.random.default_rng(2)), "tenure_months": 3, "plan": "premium"}
    customer = next(
        f"c{i}" for i in range(100) if not in_control_group("renewal-2026", f"c{i}", 0.1)
    )
    d = eng.decide(customer, ctx, candidates=["discount_5", "discount_20"])
    # discount_20 needs 12 months of tenure: only discount_5 is left, with certainty.
    assert d.offer_id == "discount_5" and d.propensity == 1.0 and d.eligible == ("discount_5",)
    assert "candidates" in d.reasons
    assert "rule:discount_20:tenure_months >= 12" in d.reasons
    d = eng.decide(customer + "x", ctx, candidates=["loyalty_gift"])
    if not d.control:
        assert d.offer_id == "none" and d.propensity == 1.0 and d.eligible == ("none",)
        assert d.reasons[-1] == "fallback:none"
        assert "rule:loyalty_gift:tenure_months >= 24" in d.reasons
    eng.close()


def test_logged_propensities_match_frequencies(tmp_path, clock):
    path = small_config(tmp_path, policy='name = "egreedy"\nepsilon = 0.3\nseed = 3')
    eng = Engine.from_config(path, data_dir=tmp_path / "d", clock=clock)
    n = 4000
    decisions = eng.decide_batch([f"c{i}" for i in range(n)], [{"x": 0.5}] * n)
    counts = Counter(d.offer_id for d in decisions)
    for offer in eng.offer_ids:
        logged = [d.propensity for d in decisions if d.offer_id == offer]
        assert counts[offer] / n == pytest.approx(logged[0], abs=0.03)
        assert np.ptp(logged) == 0.0  # one context, one model: one propensity per offer
    eng.close()


def test_control_group_is_sticky_and_deterministic(tmp_path, clock):
    path = small_config(tmp_path, control_share=0.3)
    eng = Engine.from_config(path, data_dir=tmp_path / "d", clock=clock)
    ids = [f"cust{i}" for i in range(3000)]
    first = eng.decide_batch(ids, [{"x": 0.0}] * len(ids))
    share = sum(d.control for d in first) / len(ids)
    assert abs(share - 0.3) < 0.03
    assert all(d.offer_id == "none" and d.propensity == 1.0 for d in first if d.control)
    eng.close()
    again = Engine.from_config(path, data_dir=tmp_path / "d", clock=clock)
    second = again.decide_batch(ids, [{"x": 1.0}] * len(ids))
    assert [d.control for d in first] == [d.control for d in second]
    again.close()


def test_reward_join_out_of_order_duplicate_unknown_nonfinite(tmp_path, clock):
    path = small_config(tmp_path)
    eng = Engine.from_config(path, data_dir=tmp_path / "d", clock=clock)
    decisions = eng.decide_batch(["a", "b", "c", "d"], [{"x": float(i)} for i in range(4)])
    clock.t += 3600
    for d, v in zip(reversed(decisions), (4.0, 3.0, 2.0, 1.0), strict=True):
        r = eng.reward(d.decision_id, v)
        assert r.status == "applied" and r.offer_id == d.offer_id
        assert r.reward == v - d.cost
    # A retry (even with another value) is applied once.
    r = eng.reward(decisions[0].decision_id, 99.0)
    assert r.status == "duplicate" and r.reward == 1.0 - decisions[0].cost
    batch = eng.reward_batch([decisions[1].decision_id] * 2, [5.0, 5.0])
    assert [x.status for x in batch] == ["duplicate", "duplicate"]
    with pytest.raises(NotFoundError, match=r"decision_id: expected a pending decision .*no such"):
        eng.reward("nope", 1.0)
    for bad in (math.nan, math.inf, -math.inf, True, "3", None, 1e13):
        with pytest.raises(InvalidInputError, match="value: expected a finite number"):
            eng.reward(decisions[2].decision_id, bad)
    with pytest.raises(InvalidInputError, match="decision_id: expected a non-empty UTF-8"):
        eng.reward("bad\udc80", 1.0)
    with pytest.raises(InvalidInputError, match=r"values\[1\]: expected a finite number"):
        eng.reward_batch(["a", "b"], [1.0, math.nan])
    counts = eng.journal.counts()
    assert counts["rewards"] == 4 and counts["reward_errors"] == 1
    eng.snapshot()
    assert eng._learner.n_applied == 4
    eng.close()


def test_late_rewards_and_default_reward_at_expiry(tmp_path, clock):
    path = small_config(tmp_path, reward_extra="default_value = 2.0")
    eng = Engine.from_config(path, data_dir=tmp_path / "d", clock=clock)
    early = eng.decide_batch([f"e{i}" for i in range(5)], [{"x": 0.0}] * 5)
    clock.t += 3 * DAY
    late = eng.decide_batch([f"l{i}" for i in range(5)], [{"x": 0.0}] * 5)
    eng.reward(early[0].decision_id, 7.0)
    clock.t += 5 * DAY  # early ones are 8 days old (window 7), late ones 5
    assert eng.expire_pending() == 4
    rows = read_journal(
        eng, "SELECT decision_id, value, reward, source FROM rewards WHERE source = 'expired'"
    )
    assert {r[0] for r in rows} == {d.decision_id for d in early[1:]}
    for d in early[1:]:
        row = next(r for r in rows if r[0] == d.decision_id)
        assert row[1] == 2.0 and row[2] == pytest.approx(2.0 - d.cost)
    with pytest.raises(NotFoundError, match="reward window passed"):
        eng.reward(early[1].decision_id, 1.0)
    assert eng.reward(late[0].decision_id, 1.0).status == "applied"
    # A reward arriving after the window but before any sweep is rejected too (and expires it).
    clock.t += 3 * DAY
    assert eng.reward_batch([late[1].decision_id], [1.0])[0].status == "expired"
    # That call also swept the other due decisions (on-demand sweep): nothing is left.
    assert eng.expire_pending() == 0
    assert eng.journal.counts()["pending"] == 0
    assert eng.journal.counts()["reward_errors"] == 2
    eng.close()


def test_expiry_without_default_closes_without_learning(tmp_path, clock):
    eng = Engine.from_config(small_config(tmp_path), data_dir=tmp_path / "d", clock=clock)
    eng.decide_batch(["a", "b"], [{"x": 0.0}] * 2)
    clock.t += 8 * DAY
    assert eng.expire_pending() == 2
    assert read_journal(eng, "SELECT COUNT(*) FROM rewards WHERE reward IS NULL") == [(2,)]
    eng.snapshot()
    assert eng._learner.n_applied == 0
    eng.close()


def test_publish_cadence_by_count_and_by_time(tmp_path, clock):
    path = small_config(
        tmp_path,
        policy='name = "linucb"\nseed = 0',
        publish_every_rewards=3,
        publish_every_ms=60_000,
    )
    eng = Engine.from_config(path, data_dir=tmp_path / "d", clock=clock)
    ds = eng.decide_batch([f"c{i}" for i in range(10)], [{"x": 1.0}] * 10)
    eng.reward(ds[0].decision_id, 1.0)
    eng.reward(ds[1].decision_id, 1.0)
    assert eng.model_version == "v1"
    eng.reward(ds[2].decision_id, 1.0)
    assert eng.model_version == "v2"
    assert eng.decide("z", {"x": 1.0}).model_version == "v2"
    eng.reward(ds[3].decision_id, 1.0)
    clock.t += 61.0
    eng.expire_pending()  # any learner tick publishes once the time has passed
    assert eng.model_version == "v3"
    eng.close()


def test_budgets_caps_and_cooldown_in_decisions(tmp_path, clock):
    extra = "budget_count = 3\n"
    path = small_config(
        tmp_path,
        extra=extra,
        policy='name = "fixed"\naction = 2',
    )
    text = path.read_text().replace(
        "[features]",
        "[guardrails]\ncooldown_days = 1.0\nmax_offers_per_customer = 2\n"
        "frequency_window_days = 30.0\n\n[features]",
    )
    path.write_text(text)
    eng = Engine.from_config(path, data_dir=tmp_path / "d", clock=clock)
    ds = [eng.decide(f"c{i}", {"x": 0.0}) for i in range(4)]
    assert [d.offer_id for d in ds[:3]] == ["b", "b", "b"]
    assert ds[3].offer_id in ("none", "a") and "budget_count:b" in ds[3].reasons
    assert ds[3].propensity == 0.5  # uniform over the two left, exactly
    d = eng.decide("c0", {"x": 0.0})
    assert d.offer_id == "none" and d.propensity == 1.0 and "cooldown" in d.reasons
    clock.t += 2 * DAY
    prev = eng.decide("c0", {"x": 0.0})
    assert "cooldown" not in prev.reasons
    eng.close()
    # After a restart the budget and the customer history come back from the journal.
    again = Engine.from_config(path, data_dir=tmp_path / "d", clock=clock)
    d = again.decide("c1", {"x": 0.0})
    assert "budget_count:b" in d.reasons and "cooldown" not in d.reasons
    d = again.decide("c0", {"x": 0.0})
    if prev.offer_id == "a":  # a second incentive 0 days ago: cooling down
        assert d.offer_id == "none" and d.propensity == 1.0 and "cooldown" in d.reasons
    else:
        assert "cooldown" not in d.reasons and "frequency_cap" not in d.reasons
    # A customer with two incentives inside the window is capped once the cooldown is over.
    clock.t += 2 * DAY
    for customer in ("f1", "f1", "f1", "f1"):
        again.decide(customer, {"x": 0.0}, candidates=["a"])
        clock.t += 1.5 * DAY
    d = again.decide("f1", {"x": 0.0})
    assert d.offer_id == "none" and "frequency_cap" in d.reasons
    again.close()


def test_traffic_cap_of_a_new_offer(tmp_path, clock):
    path = small_config(
        tmp_path, extra="max_traffic_share = 0.2\n", policy='name = "fixed"\naction = 2'
    )
    eng = Engine.from_config(path, data_dir=tmp_path / "d", clock=clock)
    ds = [eng.decide(f"c{i}", {"x": 0.0}) for i in range(500)]
    share = sum(d.offer_id == "b" for d in ds) / len(ds)
    assert 0.15 <= share <= 0.21
    capped = [d for d in ds if "traffic_cap:b" in d.reasons]
    assert capped and all(d.offer_id != "b" for d in capped)
    eng.close()


def test_restart_rebuilds_model_from_snapshot_and_replay(tmp_path, clock):
    rng = np.random.default_rng(5)
    data = tmp_path / "d"
    eng = Engine.from_config(RENEWAL, data_dir=data, clock=clock)
    contexts = [renewal_context(rng, i) for i in range(400)]
    ds = eng.decide_batch([f"c{i}" for i in range(400)], contexts)
    eng.reward_batch(
        [d.decision_id for d in ds[:200]], [float(v) for v in rng.uniform(0, 500, 200)]
    )
    eng.snapshot()
    eng.reward_batch(
        [d.decision_id for d in ds[200:350]], [float(v) for v in rng.uniform(0, 500, 150)]
    )
    eng._learner.apply()
    X = np.stack([eng._encoder.encode(c) for c in contexts[:50]])
    before = eng.policy.choose(X).scores
    # No close(): the process "dies" here; the journal has everything it acknowledged.
    eng.abandon()
    again = Engine.from_config(RENEWAL, data_dir=data, clock=clock)
    after = again.policy.choose(X).scores
    np.testing.assert_allclose(after, before, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rebuilt_from_journal(again).choose(X).scores, after, rtol=1e-6)
    assert again._learner.n_applied == 350
    # Never reuse a version number that logged decisions carry.
    assert again.model_version not in {d.model_version for d in ds} | {"v1"}
    # Pending decisions survive too: the 50 unrewarded ones can still be rewarded.
    results = again.reward_batch([d.decision_id for d in ds[350:]], [1.0] * 50)
    assert all(r.status == "applied" for r in results)
    again.close()


def test_snapshot_round_trip_and_warm_start(tmp_path, clock):
    rng = np.random.default_rng(6)
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path / "a", clock=clock)
    contexts = [renewal_context(rng, i) for i in range(200)]
    ds = eng.decide_batch([f"c{i}" for i in range(200)], contexts)
    eng.reward_batch([d.decision_id for d in ds], [float(v) for v in rng.uniform(0, 500, 200)])
    version = eng.snapshot()
    path = tmp_path / "a" / "snapshots" / "renewal" / f"{version}.snap"
    header, policy = read_snapshot(path)
    assert header["version"] == version and header["campaign"] == "renewal"
    assert header["offer_ids"] == list(eng.offer_ids)
    assert header["feature_names"] == list(eng.feature_names)
    assert header["last_reward_seq"] == 200 and header["n_rewards"] == 200
    assert header["config_hash"] == eng.config.config_hash
    X = np.stack([eng._encoder.encode(c) for c in contexts[:20]])
    np.testing.assert_array_equal(policy.choose(X).scores, eng.policy.choose(X).scores)
    # Warm start a fresh engine elsewhere from that file.
    fresh = Engine.from_config(RENEWAL, data_dir=tmp_path / "b", clock=clock)
    new_version = fresh.load_snapshot(path)
    assert fresh.model_version == new_version != "v1"
    np.testing.assert_allclose(fresh.policy.choose(X).scores, eng.policy.choose(X).scores)
    assert fresh.decide("z", contexts[0]).model_version == new_version
    # A damaged file is refused and changes nothing.
    damaged = tmp_path / "damaged.snap"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(CorruptModelError, match="checksum"):
        fresh.load_snapshot(damaged)
    assert fresh.model_version == new_version
    fresh.close()
    eng.close()


def test_snapshot_of_another_schema_is_refused(tmp_path, clock):
    small = Engine.from_config(small_config(tmp_path), data_dir=tmp_path / "s", clock=clock)
    version = small.snapshot()
    small.close()
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path / "r", clock=clock)
    path = tmp_path / "s" / "snapshots" / "small" / f"{version}.snap"
    with pytest.raises(CorruptModelError, match="expected a model of campaign 'renewal', got "):
        eng.load_snapshot(path)
    header, policy = read_snapshot(path)
    write_snapshot(path, dict(header, campaign="renewal"), policy)
    with pytest.raises(
        CorruptModelError,
        match=r"over features .*\(the config against the model: added tenure_months",
    ):
        eng.load_snapshot(path)
    eng.close()


def test_concurrent_decide_and_reward(tmp_path):
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path / "d")  # real clock, background thread
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        rng = np.random.default_rng(k)
        try:
            for i in range(150):
                d = eng.decide(f"t{k}-{i}", renewal_context(rng, i))
                if i % 2:
                    eng.reward(d.decision_id, float(rng.uniform(0, 100)))
                    eng.reward(d.decision_id, 1.0)  # a retry
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    eng.snapshot()
    counts = eng.journal.counts()
    assert counts["decisions"] == 900 and counts["rewards"] == 450
    assert eng._learner.n_applied == 450
    X = np.random.default_rng(0).normal(size=(10, eng.n_features))
    np.testing.assert_allclose(
        rebuilt_from_journal(eng).choose(X).scores, eng.policy.choose(X).scores, rtol=1e-6
    )
    eng.close()


def test_lift_matches_welch(tmp_path, clock):
    path = small_config(tmp_path, control_share=0.5)
    eng = Engine.from_config(path, data_dir=tmp_path / "d", clock=clock)
    rng = np.random.default_rng(11)
    ds = eng.decide_batch([f"c{i}" for i in range(400)], [{"x": 0.0}] * 400)
    values = [float(rng.normal(12.0 if not d.control else 10.0, 3.0)) + d.cost for d in ds]
    eng.reward_batch([d.decision_id for d in ds], values)
    lift = eng.lift()
    t = np.array([v - d.cost for d, v in zip(ds, values, strict=True) if not d.control])
    c = np.array([v - d.cost for d, v in zip(ds, values, strict=True) if d.control])
    diff = t.mean() - c.mean()
    se = math.sqrt(t.var(ddof=1) / len(t) + c.var(ddof=1) / len(c))
    assert lift.lift == pytest.approx(diff)
    assert lift.ci_low == pytest.approx(diff - 1.959963984540054 * se)
    assert lift.n_treatment == len(t) and lift.n_control == len(c)
    assert lift.ci_low < 2.0 < lift.ci_high
    eng.close()


def test_closed_engine_refuses_calls(tmp_path, clock):
    eng = Engine.from_config(small_config(tmp_path), data_dir=tmp_path / "d", clock=clock)
    eng.close()
    eng.close()  # idempotent
    from engine.errors import ResourceExhaustedError

    with pytest.raises(ResourceExhaustedError, match="closed"):
        eng.decide("c", {"x": 0.0})


def test_in_memory_engine(tmp_path, clock):
    eng = Engine.from_config(small_config(tmp_path), data_dir=None, clock=clock)
    d = eng.decide("c", {"x": 0.0})
    assert eng.reward(d.decision_id, 1.0).status == "applied"
    assert eng.snapshot() == eng.model_version
    eng.close()


def test_model_info_counts_undeclared_request_attributes(tmp_path):
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path, clock=lambda: 1.7e9)
    try:
        context = {"tenure_months": 30, "monthly_price": 50.0, "plan": "basic"}
        eng.decide("c1", {**context, "tenur_months": 31})
        eng.decide("c2", {**context, "tenur_months": 12})
        assert eng.model_info()["undeclared_attributes"] == {"tenur_months": 2}
    finally:
        eng.close()

"""Roles on one shared journal (both backends): decide replicas that follow the published model,
one learner per campaign behind the learner lock, a standby that takes over, publishes fenced
on the newest version (docs/architecture.md, "Replicated serving")."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from engine.core import Engine
from engine.errors import ConfigError, FailedPreconditionError
from engine.journal.base import StaleModelError
from engine.journal.records import ModelRow
from tests.engine.journal_files import rebuilt_from_journal

ROOT = Path(__file__).resolve().parents[2]
RENEWAL = ROOT / "examples" / "renewal.toml"
T0 = 1_700_000_000.0


def _contexts(n: int, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "tenure_months": int(rng.integers(1, 60)),
            "monthly_price": float(rng.uniform(20, 90)),
            "plan": str(rng.choice(["basic", "standard", "premium"])),
        }
        for _ in range(n)
    ]


@pytest.fixture
def open_engine(store_url, tmp_path):
    """Opens an Engine of campaign ``c`` (renewal's config) on the test's shared store."""
    config_path = tmp_path / "c.toml"
    config_path.write_text(RENEWAL.read_text().replace('name = "renewal"', 'name = "c"', 1))
    opened: list[Engine] = []

    def start(name: str, role: str = "all", **options: object) -> Engine:
        eng = Engine.from_config(
            config_path, data_dir=tmp_path / name, journal_url=store_url, role=role, **options
        )
        opened.append(eng)
        return eng

    yield start
    for eng in reversed(opened):
        eng.close()


def test_a_replica_decides_on_the_learners_model_and_its_rewards_are_learned(open_engine):
    learner = open_engine("learner", background=False, clock=lambda: T0)
    replica = open_engine("replica", role="decide", background=False, clock=lambda: T0)
    assert replica.model_version == learner.model_version
    made = replica.decide_batch([f"c{i}" for i in range(30)], _contexts(30))
    # acknowledged by the replica, rewarded through the learner at once (and the reverse)
    assert learner.reward(made[0].decision_id, 80.0).status == "applied"
    assert replica.reward(made[0].decision_id, 1.0).status == "duplicate"
    results = replica.reward_batch([d.decision_id for d in made[1:]], [5.0] * 29)
    assert {r.status for r in results} == {"applied"}
    learner.refresh_model()  # learns every replica's rewards from the journal, once each
    published = learner.snapshot()
    assert learner.model_info()["n_rewards_applied"] == 30
    assert replica.refresh_model() and replica.model_version == published
    X = np.random.default_rng(1).normal(size=(6, learner.n_features))
    np.testing.assert_allclose(
        replica.policy.choose(X).scores, rebuilt_from_journal(learner).choose(X).scores, rtol=1e-9
    )
    assert replica.model_info()["role"] == "decide" and not replica.leading


def test_one_learner_per_campaign(open_engine):
    first = open_engine("a", background=False)
    with pytest.raises(ConfigError, match=r"expected to be the campaign's only learner"):
        open_engine("b", background=False)
    standby = open_engine("c", role="learn", background=False)
    assert first.leading and not standby.leading
    assert standby.model_version == first.model_version  # it follows while standing by


def test_a_replica_cannot_change_the_model_and_a_learner_does_not_decide(open_engine, tmp_path):
    learner = open_engine("learner", role="learn", background=False)
    replica = open_engine("replica", role="decide", background=False)
    with pytest.raises(FailedPreconditionError, match=r"--role decide"):
        replica.rollback(learner.model_version)
    with pytest.raises(FailedPreconditionError, match=r"--role decide"):
        replica.promote_bytes(b"x", file_name="x.snap")
    with pytest.raises(FailedPreconditionError, match=r"--role learn"):
        learner.decide("c1", _contexts(1)[0])
    with pytest.raises(FailedPreconditionError, match=r"--role learn"):
        learner.reward("d1", 1.0)
    with pytest.raises(FailedPreconditionError, match=r"leading learner"):
        replica.expire_pending()


def test_a_replica_waits_for_a_first_model_then_says_what_is_missing(open_engine):
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"expected a published model .* within 0.3 s"):
        open_engine("replica", role="decide", background=False, model_wait=0.3)
    assert time.monotonic() - started < 5.0


def test_an_unknown_role_is_one_clear_error(open_engine):
    with pytest.raises(ConfigError, match=r"^role: expected one of all, decide, learn, got 'both'"):
        open_engine("x", role="both")


def test_a_standby_takes_over_within_seconds_and_applies_each_reward_once(open_engine):
    leader = open_engine("leader", role="learn")
    standby = open_engine("standby", role="learn")
    replica = open_engine("replica", role="decide")
    assert leader.leading and not standby.leading
    made = replica.decide_batch([f"c{i}" for i in range(60)], _contexts(60, seed=3))
    replica.reward_batch([d.decision_id for d in made[:30]], [10.0] * 30)
    deadline = time.monotonic() + 10
    while leader.model_info()["n_rewards_applied"] < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leader.model_info()["n_rewards_applied"] == 30
    leader.abandon()  # killed: no final publish
    killed = time.monotonic()
    replica.reward_batch([d.decision_id for d in made[30:]], [20.0] * 30)
    while not standby.leading and time.monotonic() - killed < 10:
        time.sleep(0.02)
    took = time.monotonic() - killed
    assert standby.leading and took <= 5.0, took

    # catching up is not timed (a loaded machine): the count is what matters; the decisions'
    # model is the published one, so wait for a version that contains every reward
    def published() -> int:
        return standby.model(standby.model_version).n_rewards

    while published() < 60 and time.monotonic() - killed < 60:
        time.sleep(0.05)
    assert published() == standby.model_info()["n_rewards_applied"] == 60  # none twice or skipped
    X = np.random.default_rng(2).normal(size=(6, standby.n_features))
    np.testing.assert_allclose(
        standby.policy.choose(X).scores, rebuilt_from_journal(standby).choose(X).scores, rtol=1e-9
    )
    numbers = [m.number for m in standby.models(limit=1000)]
    assert numbers == sorted(numbers, reverse=True) and len(set(numbers)) == len(numbers)
    # the replica follows the new leader's versions
    deadline = time.monotonic() + 5
    while replica.model_version != standby.model_version and time.monotonic() < deadline:
        time.sleep(0.05)
    assert replica.model_version == standby.model_version


def test_a_publish_over_a_version_the_learner_did_not_make_is_refused(backend):
    catalog = backend.catalog("c", ["a", "b"], ["bias"])
    row = ModelRow(1, "initial", "{}", None, catalog, "LinUCB", 0, 0)
    first = backend.add_model(row)
    second = backend.add_model(row._replace(kind="learned"), expect_newest=first)
    stale = rf"expected v{first} to be the newest.*got v{second}"
    with pytest.raises(StaleModelError, match=stale):
        backend.add_model(row._replace(kind="learned"), b"bytes", expect_newest=first)
    assert [m.version for m in backend.models()] == [second, first]
    assert backend.model_bytes(second + 1) is None


def test_the_learner_lock_is_held_by_one_journal_at_a_time(reopen):
    a, b = reopen(), reopen()
    held = a.try_lead()
    assert held is not None and held.held()
    assert b.try_lead() is None
    held.release()
    assert not held.held()
    again = b.try_lead()
    assert again is not None and again.held()
    again.release()


def test_the_first_stored_meta_value_wins(backend):
    assert backend.set_meta_once("encoder", "first") == "first"
    assert backend.set_meta_once("encoder", "second") == "first"
    assert backend.get_meta("encoder") == "first"


def _budgeted(tmp_path: Path, budget: int) -> Path:
    path = tmp_path / "b.toml"
    text = RENEWAL.read_text().replace('name = "renewal"', 'name = "c"', 1)
    text = text.replace("cost = 18.0\n", f"cost = 18.0\nbudget_count = {budget}\n", 1)
    path.write_text(text)
    return path


def test_budgets_and_cooldowns_hold_across_two_replicas(store_url, tmp_path):
    """Two replicas decide in turns of ``k`` decisions and sync their guardrails after each
    turn (what their upkeep does every tick): the budget is overshot by at most what the other
    replica decided in one turn, and a customer one replica gave an incentive is in cooldown on
    the other."""
    path = _budgeted(tmp_path, budget=25)
    clock = [T0]
    learner = Engine.from_config(
        path, data_dir=tmp_path / "l", journal_url=store_url, clock=lambda: clock[0]
    )
    replicas = [
        Engine.from_config(
            path,
            data_dir=tmp_path / n,
            journal_url=store_url,
            clock=lambda: clock[0],
            role="decide",
        )
        for n in ("a", "b")
    ]
    context = {"tenure_months": 3, "monthly_price": 40.0, "plan": "basic"}
    context["contract_type"] = "annual"
    k = 8
    chosen: list[str] = []
    for turn in range(30):
        for r, eng in enumerate(replicas):
            made = eng.decide_batch(
                [f"t{turn}-r{r}-{i}" for i in range(k)], [context] * k, candidates=["upgrade"]
            )
            chosen += [d.offer_id for d in made]
        for eng in replicas:
            eng.sync_guardrails()
    used = chosen.count("upgrade")
    assert 25 <= used <= 25 + k, used  # without the sync each replica would give 25
    totals = learner.journal.offer_totals()
    assert totals["upgrade"].n_decisions == used
    # a customer given an incentive by one replica is in cooldown on the other
    loyal = {**context, "tenure_months": 30}
    given = next(
        d
        for d in (replicas[0].decide(f"loyal-{i}", loyal, ["discount_5"]) for i in range(20))
        if not d.control
    )
    assert given.offer_id == "discount_5"
    replicas[1].sync_guardrails()
    again = replicas[1].decide(given.customer_id, loyal, ["discount_5"])
    assert again.offer_id == learner.config.control_offer and "cooldown" in again.reasons
    for eng in [*replicas, learner]:
        eng.close()


def test_a_replica_counts_the_others_decisions_between_its_own_once(store_url, tmp_path):
    """The sync skips this process's own decisions that follow its cursor without reading them
    back; the other replica's decisions between two runs of its own are still counted, each
    once, and its own never."""
    path = _budgeted(tmp_path, budget=1000)
    clock = [T0]
    a, b = (
        Engine.from_config(
            path, data_dir=tmp_path / n, journal_url=store_url, clock=lambda: clock[0], role=role
        )
        for n, role in (("a", "all"), ("b", "decide"))
    )
    context = {"tenure_months": 3, "monthly_price": 40.0, "plan": "basic"}
    context["contract_type"] = "annual"

    def decide(eng: Engine, tag: str, n: int) -> None:
        eng.decide_batch([f"{tag}-{i}" for i in range(n)], [context] * n, ["upgrade"])

    assert a.sync_guardrails() == 0
    decide(a, "a1", 20)
    decide(b, "b1", 7)  # between two runs of a's own
    decide(a, "a2", 20)
    assert a.sync_guardrails() == 7
    assert a.sync_guardrails() == 0  # nothing new, and none of its own counted
    decide(a, "a3", 5)
    decide(b, "b2", 3)
    assert a.sync_guardrails() == 3
    for eng in (a, b):
        eng.close()

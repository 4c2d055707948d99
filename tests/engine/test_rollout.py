"""Rollout in the Engine: the business-as-usual control, shadow and logging modes, modes
journaled for every process, and the monitor's automatic rollback (engine.rollout)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from engine.campaign import load_campaign
from engine.core import Engine
from engine.errors import FailedPreconditionError, InvalidInputError, NotFoundError
from tests.engine.small_campaigns import numeric_features, offer_tables

OFFERS = ("none", "gift", "discount")


def _campaign(
    tmp_path: Path,
    *,
    control: str = "offer",
    share: float = 0.5,
    mode: str = "online",
    rollout: str = "",
) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        f"""
[campaign]
name = "roll"
control_offer = "none"
control_share = {share}
control = "{control}"
mode = "{mode}"
[policy]
name = "linucb"
alpha = 0.1
min_propensity = 0.05
seed = 3
[learning]
publish_every_rewards = 1
[reward]
charge_cost = "never"
{rollout}
{numeric_features("x")}
{offer_tables(*OFFERS)}
"""
    )
    return path


def _engine(tmp_path: Path, **kw: object) -> Engine:
    return Engine.from_config(
        _campaign(tmp_path, **kw),
        data_dir=tmp_path / "data",
        clock=lambda: 1.7e9,
        background=False,
    )


def _ids(n: int, prefix: str = "c") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_the_control_group_gets_the_callers_baseline(tmp_path: Path) -> None:
    with _engine(tmp_path, control="baseline") as eng:
        ids = _ids(200)
        out = eng.decide_batch(ids, [{"x": 0.5}] * 200, baseline_offers="discount")
        control = [d for d in out if d.control]
        assert 60 < len(control) < 140
        assert {d.offer_id for d in control} == {"discount"}
        assert all(d.propensity == 1.0 and d.reasons == ("control_group",) for d in control)
        treated = [d for d in out if not d.control]
        assert all(0.0 < d.propensity <= 1.0 for d in treated)
        stored = eng.journal.lookup([d.decision_id for d in control[:3]])
        assert {s.action for s in stored.values()} == {"discount"}


def test_a_missing_or_unknown_baseline_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    with _engine(tmp_path, control="baseline") as eng:
        ids = _ids(50)
        in_control = [
            d.customer_id
            for d in eng.decide_batch(ids, [{"x": 0.0}] * 50, baseline_offers="none")
            if d.control
        ]
        before = eng.journal.counts()["decisions"]
        with pytest.raises(InvalidInputError, match=r"^baseline_offer: expected the caller's"):
            eng.decide(in_control[0], {"x": 0.0})
        with pytest.raises(InvalidInputError, match=r"^baseline_offers\[1\]: expected one of"):
            eng.decide_batch(in_control[:2], [{"x": 0.0}] * 2, baseline_offers=["none", "nah"])
        assert eng.journal.counts()["decisions"] == before


def test_shadow_serves_the_baseline_and_logs_nbos_choice_beside_it(tmp_path: Path) -> None:
    with _engine(tmp_path, mode="shadow", share=0.0) as eng:
        assert eng.rollout_state().mode == "shadow"
        with pytest.raises(InvalidInputError, match="shadow mode serves it"):
            eng.decide("c0", {"x": 0.0})
        out = eng.decide_batch(
            _ids(300), [{"x": float(i % 3)} for i in range(300)], baseline_offers=["gift"] * 300
        )
        assert {d.offer_id for d in out} == {"gift"}
        assert all(d.propensity == 1.0 and not d.explored for d in out)
        shadow = [r for d in out for r in d.reasons if r.startswith("shadow:")]
        assert len(shadow) == 300
        picks = Counter(s.split(":")[1].split("@")[0] for s in shadow)
        assert set(picks) <= set(OFFERS)
        props = [float(s.rsplit("@", 1)[1]) for s in shadow]
        assert all(0.0 < p <= 1.0 for p in props)
        assert {d.eligible for d in out} == {("gift",)}  # a deterministic logger's record
        # The gift pays 5, the rest 1: nbo learns from the served outcomes only.
        eng.reward_batch([d.decision_id for d in out], [5.0] * 300)
        status = eng.rollout_status()
        assert status is not None and status.shadow_decisions == 300
        assert status.shadow_agreements == picks["gift"]
        assert status.baseline_value == pytest.approx(5.0)
        assert eng.model_info()["n_rewards_applied"] == 300
        assert eng.model_info()["rollout"]["monitor"]["agreement_rate"] == pytest.approx(
            picks["gift"] / 300
        )


def test_logging_mode_samples_the_callers_probabilities_exactly(tmp_path: Path) -> None:
    with _engine(tmp_path, mode="logging", share=0.0) as eng:
        with pytest.raises(InvalidInputError, match=r"^probabilities: expected the caller's"):
            eng.decide("c0", {"x": 0.0})
        with pytest.raises(InvalidInputError, match=r"sum to 1, got a sum of 0\.9"):
            eng.decide("c0", {"x": 0.0}, probabilities={"gift": 0.9})
        with pytest.raises(InvalidInputError, match=r"^probabilities\['free'\]: expected one"):
            eng.decide("c0", {"x": 0.0}, probabilities={"free": 1.0})
        probs = {"none": 0.2, "gift": 0.5, "discount": 0.3}
        out = eng.decide_batch(_ids(4000), [{"x": 0.0}] * 4000, probabilities=probs)
        counts = Counter(d.offer_id for d in out)
        for offer, p in probs.items():
            assert abs(counts[offer] / 4000 - p) < 0.03, counts
        assert all(d.propensity == probs[d.offer_id] for d in out)
        assert all("logging" in d.reasons for d in out)
        # Candidates narrow the draw: the propensity is over what could be served.
        d = eng.decide("c9", {"x": 0.0}, candidates=["gift", "discount"], probabilities=probs)
        assert d.offer_id in ("gift", "discount")
        assert d.propensity == pytest.approx(probs[d.offer_id] / 0.8)


def test_modes_are_journaled_for_every_process_and_survive_a_restart(tmp_path: Path) -> None:
    path = _campaign(tmp_path)
    leader = Engine.from_config(path, data_dir=tmp_path / "data", background=False)
    replica = Engine.from_config(path, data_dir=tmp_path / "data", background=False, role="decide")
    try:
        with pytest.raises(FailedPreconditionError, match="--role"):
            replica.set_mode("shadow")
        with pytest.raises(InvalidInputError, match=r"^mode: expected one of online, shadow"):
            leader.set_mode("dark")
        leader.set_mode("shadow", who="ops", reason="first week in the shadow")
        assert replica.rollout_state().mode == "online"
        replica.watch()  # what the replica's upkeep does every tick
        assert replica.rollout_state().mode == "shadow"
        d = replica.decide("c1", {"x": 0.0}, baseline_offer="gift")
        assert d.offer_id == "gift"
    finally:
        replica.close()
        leader.close()
    again = Engine.from_config(path, data_dir=tmp_path / "data", background=False)
    try:
        assert again.rollout_state().mode == "shadow"
        history = again.rollout_history()
        assert [h.mode for h in history] == ["shadow"]
        assert history[-1].who == "ops" and history[-1].reason == "first week in the shadow"
    finally:
        again.close()


def _play(eng: Engine, n: int, treated: float, control: float, prefix: str) -> None:
    """``n`` customers, each rewarded at once: ``treated`` for the policy's, ``control`` for
    the control group's, plus noise."""
    rng = np.random.default_rng(len(prefix) + n)
    for start in range(0, n, 50):
        ids = [f"{prefix}{i}" for i in range(start, start + 50)]
        out = eng.decide_batch(ids, [{"x": 0.0}] * 50)
        values = [(control if d.control else treated) + rng.normal(0, 1.0) for d in out]
        eng.reward_batch([d.decision_id for d in out], values)
        if eng.rollout_state().state == "rolled_back":
            return


def test_a_policy_worse_than_control_is_rolled_back_and_stays_so(tmp_path: Path) -> None:
    with _engine(tmp_path) as eng:
        _play(eng, 3000, treated=0.0, control=1.0, prefix="a")
        state = eng.rollout_state()
        assert state.state == "rolled_back" and state.safe == "control"
        assert "worse than the control" in state.reason
        assert state.evidence["upper"] < 0 and state.who == "monitor"
        # Now everyone gets the control offer, and no decision feeds the lift.
        out = eng.decide_batch(_ids(40, "b"), [{"x": 0.0}] * 40)
        assert {d.offer_id for d in out} == {"none"}
        assert all("rolled_back" in d.reasons and d.propensity == 1.0 for d in out)
        assert eng.model_info()["rollout"]["state"] == "rolled_back"
        eng.set_mode("online", who="ops")
        assert eng.rollout_state().state == "live"
        assert eng.rollout_status().n_treatment == 0  # counting starts again


def test_a_policy_as_good_as_control_keeps_serving(tmp_path: Path) -> None:
    with _engine(tmp_path) as eng:
        _play(eng, 3000, treated=1.0, control=1.0, prefix="a")
        assert eng.rollout_state().state == "live"
        status = eng.rollout_status()
        assert status.lower < 0 < status.upper and status.n_treatment > 1000


def test_spend_per_decision_guardrail_rolls_back(tmp_path: Path) -> None:
    limits = "[rollout]\nmax_spend_per_decision = 2.0\nmin_decisions = 50"
    path = _campaign(tmp_path, rollout=limits)
    text = path.read_text()
    for offer in ("gift", "discount"):  # both incentives cost 5
        table = f'[[offers]]\nid = "{offer}"'
        text = text.replace(table, table + "\ncost = 5.0")
    path.write_text(text)
    assert load_campaign(path).rollout.max_spend_per_decision == 2.0
    with Engine.from_config(
        path, data_dir=tmp_path / "data", clock=lambda: 1.7e9, background=False
    ) as eng:
        _play(eng, 1000, treated=1.0, control=1.0, prefix="a")
        state = eng.rollout_state()
        assert state.state == "rolled_back", eng.rollout_status()
        assert "spend per decision" in state.reason


def test_safe_mode_previous_model_restores_the_model_before_the_promotion(
    tmp_path: Path,
) -> None:
    path = _campaign(tmp_path, rollout='[rollout]\nsafe_mode = "previous_model"')
    with Engine.from_config(
        path, data_dir=tmp_path / "data", clock=lambda: 1.7e9, background=False
    ) as eng:
        _play(eng, 200, treated=1.0, control=1.0, prefix="w")
        before = eng.snapshot()
        snapshot = sorted((tmp_path / "data" / "snapshots" / "roll").iterdir())[-1]
        (eng.model_dir / "earlier.nbo").write_bytes(snapshot.read_bytes())
        _play(eng, 200, treated=1.0, control=1.0, prefix="v")
        last_good = eng.model_version
        promoted = eng.promote("earlier.nbo", who="ops", force=True).version
        assert eng.rollout_state().epoch == int(promoted.version[1:])
        _play(eng, 3000, treated=0.0, control=1.0, prefix="a")
        state = eng.rollout_state()
        assert state.state == "rolled_back" and state.safe == "previous_model"
        live = eng.model(eng.model_version)
        assert live.kind == "rollback" and live.origin["who"] == "monitor"
        assert f"v{live.origin['restored']}" == last_good != before
        d = eng.decide("after", {"x": 0.0})  # the restored model serves, online
        assert d.model_version == eng.model_version and "rolled_back" not in d.reasons


def _budget_campaign(tmp_path: Path) -> Path:
    path = _campaign(tmp_path, share=0.0)
    text = path.read_text()
    for offer in OFFERS[1:]:  # both incentives have a budget of 1,000 decisions
        table = f'[[offers]]\nid = "{offer}"'
        text = text.replace(table, table + "\nbudget_count = 1000")
    path.write_text(text)
    return path


def test_a_deferred_decision_counts_nowhere_until_activated(tmp_path: Path) -> None:
    path = _budget_campaign(tmp_path)
    with Engine.from_config(
        path, data_dir=tmp_path / "data", clock=lambda: 1.7e9, background=False
    ) as eng:
        out = eng.decide_batch(_ids(60), [{"x": 0.0}] * 60, defer_activation=True)
        assert all(d.deferred for d in out)
        assert all(b["used_count"] == 0 for b in eng.budgets().values())
        assert eng.journal.counts()["inactive"] == 60
        first = out[0]
        with pytest.raises(FailedPreconditionError, match=r"^decision_id: expected an activated"):
            eng.reward(first.decision_id, 5.0)
        assert [r.status for r in eng.reward_batch([first.decision_id], [5.0])] == ["inactive"]
        assert eng.model_info()["n_rewards_applied"] == 0
        incentives = [d for d in out if d.offer_id != "none"]
        assert incentives
        for d in incentives:
            assert eng.activate(d.decision_id) == "activated"
        assert eng.activate(incentives[0].decision_id) == "duplicate"
        used = sum(b["used_count"] for b in eng.budgets().values())
        assert used == len(incentives)  # charged at activation, once
        eng.reward_batch([d.decision_id for d in incentives], [5.0] * len(incentives))
        assert eng.model_info()["n_rewards_applied"] == len(incentives)
        status = eng.rollout_status()
        assert status is not None and status.n_treatment == len(incentives)
        now = eng.decide("c-now", {"x": 0.0})
        assert not now.deferred and eng.activate(now.decision_id) == "immediate"
        with pytest.raises(NotFoundError, match="no such decision"):
            eng.activate("0" * 44)
        with pytest.raises(InvalidInputError, match=r"^decision_id: expected"):
            eng.activate("")


def test_a_deferred_decision_never_activated_lapses_unlearned(tmp_path: Path) -> None:
    clock = [1.7e9]
    path = _campaign(tmp_path, share=0.0)
    with Engine.from_config(
        path, data_dir=tmp_path / "data", clock=lambda: clock[0], background=False
    ) as eng:
        out = eng.decide_batch(_ids(10), [{"x": 0.0}] * 10, defer_activation=True)
        eng.activate(out[0].decision_id)
        eng.reward(out[0].decision_id, 1.0)
        clock[0] += 31 * 86400.0
        eng.expire_pending()
        assert eng.journal.counts()["inactive"] == 0
        assert eng.model_info()["n_rewards_applied"] == 1  # the lapsed nine taught nothing
        with pytest.raises(NotFoundError, match="reward window passed"):
            eng.activate(out[1].decision_id)


def test_a_reward_component_guardrail_rolls_back(tmp_path: Path) -> None:
    limits = "[rollout]\nmin_decisions = 50\n[rollout.max_components]\ncomplaints = 0.1"
    path = _campaign(tmp_path, rollout=limits)
    assert load_campaign(path).rollout.max_components == (("complaints", 0.1),)
    with Engine.from_config(
        path, data_dir=tmp_path / "data", clock=lambda: 1.7e9, background=False
    ) as eng:
        with pytest.raises(InvalidInputError, match=r"^components\['complaints'\]: expected"):
            eng.reward("x" * 44, 1.0, components={"complaints": float("inf")})
        for start in range(0, 400, 50):
            out = eng.decide_batch(_ids(50, f"p{start}-"), [{"x": 0.0}] * 50)
            # The policy's customers complain a fifth of the time; same value as control.
            parts = [
                {"complaints": float(i % 5 == 0)} if not d.control else None
                for i, d in enumerate(out)
            ]
            eng.reward_batch([d.decision_id for d in out], [1.0] * 50, parts)
            if eng.rollout_state().state == "rolled_back":
                break
        state = eng.rollout_state()
        assert state.state == "rolled_back"
        assert "reward component 'complaints'" in state.reason
        assert state.evidence["components"]["complaints"] > 0.1

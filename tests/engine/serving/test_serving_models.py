"""The model registry over gRPC: GetModelInfo's fields, ListModels, PromoteModel and
RollbackModel, and the `nbo model` commands end to end against a real server on port 0 (the
conftest's server: one per test module, with a data dir of its own)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import grpc
import numpy as np

from engine.cli import main as nbo_main
from engine.client import NboClient
from engine.journal.snapshot import write_snapshot
from engine.policies import LinUCB
from engine.serving.server import NboServer
from tests.engine.serving.support import TOKEN, customer, refusal


def trained(client: NboClient, path: Path, campaign: str = "renewal", seed: int = 0) -> Path:
    """A snapshot file as `nbo train` writes one: no exploration floor, its own seed."""
    info = client.model_info()
    policy = LinUCB(len(info.offer_ids), len(info.feature_names), min_propensity=0.0, seed=0)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, len(info.feature_names)))
    policy.update(X, rng.integers(0, len(info.offer_ids), 300), rng.normal(size=300))
    header = {
        "campaign": campaign,
        "version": "offline-1",
        "offer_ids": info.offer_ids,
        "feature_names": info.feature_names,
        "n_rewards": 300,
        "trained_offline": {"source": "logs.parquet", "target": "reward", "rows": 300},
    }
    write_snapshot(path, header, policy)
    return path


def models_dir(server: NboServer) -> Path:
    """The server's model directory: the only place PromoteModel reads files from."""
    return server.config.data_dir / "models" / "renewal"


def nbo(server: NboServer, *argv: str) -> list[str]:
    return ["model", *argv, "--server", f"127.0.0.1:{server.port}"]


def test_model_info_says_which_version_is_live_and_where_it_came_from(client):
    info = client.model_info()
    assert info.kind == "initial" and info.parent == "" and json.loads(info.origin) == {}
    assert info.created > 0 and info.model_version == "v1"


def test_admin_calls_need_the_token(server):
    with NboClient(f"127.0.0.1:{server.port}") as anonymous:
        err = refusal(anonymous.list_models)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        err = refusal(anonymous.rollback, "v1")
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_promotion_checks_the_campaign_and_is_journaled_and_logged(server, client, caplog):
    trained(client, models_dir(server) / "renewl.snap", campaign="renewl")
    err = refusal(client.promote, "renewl.snap")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected a model of campaign 'renewal', got one of campaign 'renewl'" in (err.details())
    before = client.model_info().model_version
    trained(client, models_dir(server) / "offline.snap")
    with caplog.at_level(logging.INFO, logger="nbo.models"):
        change = client.promote_model("offline.snap", force=True)  # no evidence yet
    v = change.model
    assert not change.unchanged and v.kind == "promoted" and v.live and v.parent == before
    origin = json.loads(v.origin)
    assert origin["file"] == "offline.snap" and len(origin["sha256"]) == 64
    assert origin["who"].startswith("peer=ipv4:127.0.0.1:")
    assert origin["header"]["trained_offline"]["rows"] == 300
    assert origin["header"]["campaign"] == "renewal"
    assert "min_propensity 0.0 -> 0.02 (the campaign floor)" in origin["changes"]
    assert origin["forced"] is True and origin["evidence"]["passes"] is False
    forced, line = [r.getMessage() for r in caplog.records if r.name == "nbo.models"]
    assert forced.endswith(
        f"offline.snap promoted by {origin['who']} with force against the evidence: not enough "
        "evidence: 0 closed decisions in the journal, the gate needs 200"
    )
    assert line == (
        f"campaign renewal: model {v.version} is live (promoted, origin offline.snap sha256 "
        f"{origin['sha256'][:12]} by {origin['who']}, parent {before})"
    )
    # The same file again is the live model: nothing changes, no version is made.
    again = client.promote_model("offline.snap")
    assert again.unchanged and again.model.version == v.version
    assert client.list_models()[0].version == v.version
    # The version live before keeps its bytes: it can be restored.
    assert client.get_model(before).bytes_kept


def test_rollback_restores_the_model_live_before_a_promotion(server, client, caplog):
    before = client.model_info().model_version
    probe = [customer(i) for i in range(5)]
    trained(client, models_dir(server) / "other.snap", seed=5)
    client.promote("other.snap", force=True)
    with caplog.at_level(logging.INFO, logger="nbo.models"):
        change = client.rollback(before)
    v = change.model
    assert v.kind == "rollback" and json.loads(v.origin)["restored"] == int(before[1:])
    assert v.version not in (before,) and v.live
    assert any("(rollback, origin restores" in r.getMessage() for r in caplog.records)
    assert client.rollback(v.version).unchanged
    decided = client.decide_batch([f"rb{i}" for i in range(5)], probe)
    assert set(decided.model_versions) == {v.version}
    err = refusal(client.rollback, "v999")
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = refusal(client.rollback, "yesterday")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_nbo_model_commands_against_a_running_server(server, client, capsys, monkeypatch):
    monkeypatch.setenv("NBO_ADMIN_TOKEN", TOKEN)
    trained(client, models_dir(server) / "cli.snap", seed=9)
    live = client.model_info().model_version
    assert nbo_main(nbo(server, "promote", "cli.snap")) == 2  # the gate: no evidence yet
    refused = capsys.readouterr().err
    assert refused.startswith("nbo model promote: error: FAILED_PRECONDITION: campaign renewal: ")
    assert "not enough evidence: 0 closed decisions" in refused and "force" in refused
    assert client.model_info().model_version == live
    assert nbo_main(nbo(server, "promote", "cli.snap", "--force")) == 0
    promoted = client.model_info().model_version
    assert capsys.readouterr().out.startswith(f"renewal: {promoted} is live (promoted: cli.snap ")
    assert nbo_main(nbo(server, "promote", "cli.snap")) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert nbo_main(nbo(server, "list")) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["VERSION", "KIND", "CREATED", "(UTC)", "BYTES"]
    assert table[1].startswith("*") and promoted in table[1] and "promoted" in table[1]
    assert nbo_main(nbo(server, "show", promoted, "--json")) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == promoted and shown["origin"]["file"] == "cli.snap"
    assert shown["live"] and shown["bytes_kept"]
    parent = shown["parent"]
    assert nbo_main(nbo(server, "rollback", parent, "--json")) == 0
    rolled = json.loads(capsys.readouterr().out)
    assert rolled["model"]["kind"] == "rollback" and rolled["model"]["parent"] == promoted
    assert nbo_main(nbo(server, "show", "v999")) == 2
    assert "NOT_FOUND" in capsys.readouterr().err
    monkeypatch.delenv("NBO_ADMIN_TOKEN")
    assert nbo_main(nbo(server, "list")) == 2
    assert "UNAUTHENTICATED" in capsys.readouterr().err


def test_promotion_is_gated_on_evidence_from_the_servers_own_journal(
    server, client, capsys, monkeypatch
):
    """With closed decisions in the journal, a snapshot the evaluation finds worse than the
    live model is refused with both numbers; `nbo promote --force` promotes it, recorded; the
    evidence is in GetModelInfo's origin."""
    from simulators.renewal import RenewalEnvironment

    env = RenewalEnvironment.from_campaign(Path("examples/renewal.toml"))
    rng = np.random.default_rng(11)
    for start in range(0, 1200, 200):
        rounds = env.sample_rounds(200, rng, start)
        made = client.decide_batch(
            [f"g{c}" for c in rounds.customer_ids], env.records(rounds.attributes)
        )
        index = {o: i for i, o in enumerate(env.action_ids)}
        actions = np.array([index[o] for o in made.offer_ids], dtype=np.int64)
        outcomes = env.draw_outcomes(rounds, actions, rng)
        client.reward_batch(list(made.decision_ids), outcomes.values.tolist())
    live = client.snapshot()
    # a model that always gives the costliest discount it can: taught 1,000 for it, 0 else
    info = client.model_info()
    policy = LinUCB(len(info.offer_ids), len(info.feature_names), min_propensity=0.0, seed=0)
    X = rng.normal(size=(400, len(info.feature_names)))
    worst = info.offer_ids.index("discount_20")
    actions = rng.integers(0, len(info.offer_ids), 400)
    policy.update(X, actions, np.where(actions == worst, 1000.0, 0.0))
    header = {
        "campaign": "renewal",
        "version": "sabotaged",
        "offer_ids": info.offer_ids,
        "feature_names": info.feature_names,
    }
    write_snapshot(models_dir(server) / "sabotaged.snap", header, policy)
    err = refusal(client.promote, "sabotaged.snap")
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = err.details() or ""
    assert "does not beat the live model's estimate" in details and "closed decisions" in details
    assert client.model_info().model_version == live
    monkeypatch.setenv("NBO_ADMIN_TOKEN", TOKEN)
    argv = ["promote", "sabotaged.snap", "--force", "--server", f"127.0.0.1:{server.port}"]
    assert nbo_main(argv) == 0
    origin = json.loads(client.model_info().origin)
    assert origin["forced"] is True and origin["evidence"]["rows"] >= 1000
    assert origin["evidence"]["candidate_lower"] < origin["evidence"]["live_estimate"]
    client.rollback(live)  # the module's server goes on with the model it had

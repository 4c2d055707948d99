"""Rollout over gRPC: baseline offers on Decide and DecideBatch, SetMode (token-protected,
journaled), the rollout fields of GetModelInfo, the rollout metrics and ``nbo mode``."""

from __future__ import annotations

import json
import math
import re
import urllib.request
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from engine.cli import main
from engine.client import NboClient
from engine.serving.server import NboServer
from tests.engine.serving.support import (
    RENEWAL,
    TOKEN,
    admin_client,
    customer,
    refusal,
    running_server,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NboServer]:
    root = tmp_path_factory.mktemp("rollout")
    campaign = root / "renewal.toml"
    text = RENEWAL.read_text().replace('control = "offer"', 'control = "baseline"')
    assert 'control = "baseline"' in text
    campaign.write_text(text.replace("control_share = 0.10", "control_share = 0.5"))
    with running_server(root / "data", campaigns=(campaign,)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: NboServer) -> Iterator[NboClient]:
    with admin_client(server) as c:
        yield c


def _metrics(server: NboServer) -> str:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    return urllib.request.urlopen(url, timeout=5).read().decode()


def _gauge(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    raise AssertionError(f"{name}{{{want}}} not exported")


def test_the_control_group_gets_the_baseline_and_a_missing_one_is_refused(
    client: NboClient,
) -> None:
    served = [client.decide(f"b{i}", customer(i), baseline_offer="loyalty_gift") for i in range(40)]
    control = [d for d in served if d.control]
    assert control and {d.offer_id for d in control} == {"loyalty_gift"}
    in_control = control[0]
    before = client.model_info().decisions
    err = refusal(client.decide, f"b{served.index(in_control)}", customer(0))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("baseline_offer: expected the caller's offer id")
    err = refusal(client.decide, "b1", customer(1), baseline_offer="nope")
    assert err.details().startswith("baseline_offer: expected one of none, discount_5")
    assert client.model_info().decisions == before  # refused input changed nothing
    assert client.health() == "SERVING"


def test_set_mode_needs_the_admin_token_and_is_journaled(
    server: NboServer, client: NboClient
) -> None:
    with NboClient(f"127.0.0.1:{server.port}") as anonymous:
        err = refusal(anonymous.set_mode, "shadow")
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    err = refusal(client.set_mode, "dark")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "mode: expected one of online, shadow, logging" in err.details()
    change = client.set_mode("shadow", reason="first week in the shadow")
    assert (change.mode, change.rollout_state) == ("shadow", "live")
    try:
        info = client.model_info()
        assert (info.mode, info.rollout_state) == ("shadow", "live")
        assert info.rollout_reason == "first week in the shadow"
        rows = [customer(i) for i in range(30)]
        batch = client.decide_batch(
            [f"s{i}" for i in range(30)], rows, baseline_offers=["discount_5"] * 30
        )
        assert {d.offer_id for d in batch} == {"discount_5"}
        assert {d.propensity for d in batch} == {1.0}
        dense = client.decide_dense(
            ["s100", "s101"],
            ["monthly_price"],
            np.array([[30.0], [40.0]]),
            ["plan"],
            [["basic"], ["premium"]],
            baseline_offers=["none", "upgrade"],
        )
        assert [d.offer_id for d in dense] == ["none", "upgrade"]
        one = client.decide("s102", customer(2), baseline_offer="free_month")
        assert one.offer_id == "free_month"
        assert any(r.startswith("shadow:") for r in one.reasons)
        client.reward_batch([d.decision_id for d in batch], [100.0] * 30)
        info = client.model_info()
        assert 0.0 <= info.agreement_rate <= 1.0
        assert info.shadow_rows == 0 and math.isnan(info.shadow_gain)  # too few for an estimate
        text = _metrics(server)
        assert _gauge(text, "nbo_campaign_mode", campaign="renewal", mode="shadow") == 1.0
        assert _gauge(text, "nbo_campaign_mode", campaign="renewal", mode="online") == 0.0
        assert _gauge(text, "nbo_rolled_back", campaign="renewal") == 0.0
        for name in ("nbo_lift_lower", "nbo_lift_upper", "nbo_lift", "nbo_model_version"):
            _gauge(text, name, campaign="renewal")
    finally:
        client.set_mode("online")


def test_logging_mode_serves_the_callers_draw_with_its_exact_propensity(
    client: NboClient,
) -> None:
    client.set_mode("logging")
    try:
        probs = {"none": 0.5, "free_month": 0.5}
        served = [
            client.decide(f"l{i}", customer(i), probabilities=probs, baseline_offer="none")
            for i in range(30)
        ]
        treated = [d for d in served if not d.control]
        assert treated and {d.offer_id for d in treated} <= {"none", "free_month"}
        assert all(d.propensity in (0.5, 1.0) and "logging" in d.reasons for d in treated)
        err = refusal(
            client.decide, "l0", customer(0), probabilities={"none": 0.4}, baseline_offer="none"
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith("probabilities: expected probabilities >= 0")
    finally:
        client.set_mode("online")


def test_nbo_mode_shows_and_sets_the_mode(
    server: NboServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBO_ADMIN_TOKEN", TOKEN)
    where = ["--server", f"127.0.0.1:{server.port}"]
    assert main(["mode", "shadow", "--reason", "try it", *where]) == 0
    assert capsys.readouterr().out.strip() == "renewal: mode shadow, live"
    assert main(["mode", *where, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["mode"], shown["state"], shown["reason"]) == ("shadow", "live", "try it")
    assert main(["mode", "online", *where]) == 0
    capsys.readouterr()
    assert main(["mode", *where]) == 0
    assert capsys.readouterr().out.startswith("renewal: mode online, live, model v")
    monkeypatch.delenv("NBO_ADMIN_TOKEN")
    assert main(["mode", "online", *where]) == 2
    assert "UNAUTHENTICATED" in capsys.readouterr().err


def test_the_journal_keeps_every_mode_change(server: NboServer) -> None:
    engine = server.campaigns.get("renewal")[1]
    modes = [h.mode for h in engine.rollout_history()]
    assert "shadow" in modes and "logging" in modes and modes[-1] == "online"


def test_rollout_metrics_name_real_metrics(server: NboServer) -> None:
    text = _metrics(server)
    for name in ("nbo_lift_lower", "nbo_lift_upper", "nbo_rolled_back", "nbo_campaign_mode"):
        assert f"# TYPE {name} gauge" in text


def test_deferred_activation_over_grpc(client: NboClient) -> None:
    d = client.decide("act-1", customer(1), baseline_offer="none", defer_activation=True)
    assert d.deferred
    err = refusal(client.reward, d.decision_id, 100.0)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not activated" in err.details()
    batch = client.reward_batch([d.decision_id], [100.0])
    assert batch.statuses == ["inactive"]
    assert client.activate(d.decision_id) == "activated"
    assert client.activate(d.decision_id) == "duplicate"
    assert client.reward(d.decision_id, 100.0) is True
    now = client.decide("act-2", customer(2), baseline_offer="none")
    assert not now.deferred and client.activate(now.decision_id) == "immediate"
    err = refusal(client.activate, "0" * 44)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = refusal(client.activate, "")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT

"""Every RPC through a real server and the real client, plus health, reflection and metrics."""

from __future__ import annotations

import json
import math
import threading
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from engine.client import NboClient
from engine.serving.server import NboServer
from testkit.traffic import CATEGORICAL, NUMERIC, dense_contexts, renewal_contexts
from tests.engine.serving.support import MAX_BATCH_ROWS, customer


def test_health_is_serving_for_every_service(client: NboClient) -> None:
    for service in ("", "nbo.v1.OfferService", "nbo.v1.AdminService"):
        assert client.health(service) == "SERVING"


def test_reflection_lists_the_services(server: NboServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        names = {s.name for s in response.list_services_response.service}
        assert {"nbo.v1.OfferService", "nbo.v1.AdminService", "grpc.health.v1.Health"} <= names
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="nbo.v1.Context")
        (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        assert response.file_descriptor_response.file_descriptor_proto


def test_decide_returns_a_complete_decision(client: NboClient) -> None:
    offers = client.model_info().offer_ids
    d = client.decide("rpc-1", customer(1), request_id="req-decide-1")
    assert d.decision_id and d.offer_id in offers
    assert 0.0 < d.propensity <= 1.0
    assert d.campaign == "renewal" and d.request_id == "req-decide-1" and d.model_version
    ranked = [o for o, _ in d.ranking]
    assert set(ranked) <= set(offers) and len(ranked) == len(set(ranked))
    finite = [s for _, s in d.ranking if math.isfinite(s)]
    assert finite == sorted(finite, reverse=True)


def test_decide_respects_candidates(client: NboClient) -> None:
    for i in range(10):
        d = client.decide(f"cand-{i}", customer(i), candidates=["none", "discount_5"])
        assert d.offer_id in {"none", "discount_5"}


def test_decide_batch_row_and_dense_forms(client: NboClient) -> None:
    n = 20
    ids = [f"batch-row-{i}" for i in range(n)]
    rows = client.decide_batch(ids, [customer(i, seed=3) for i in range(n)], include_scores=True)
    assert len(rows) == n and len(set(rows.decision_ids)) == n
    assert rows.scores.shape == (n, len(rows.score_offer_ids))
    assert np.all((rows.propensities > 0) & (rows.propensities <= 1))
    chosen = np.array([rows.score_offer_ids.index(o) for o in rows.offer_ids])
    asked = ~rows.control  # the policy is not asked for the control group: NaN scores
    assert np.all(np.isfinite(rows.scores[np.arange(n), chosen][asked]))
    assert np.all(np.isnan(rows.scores[rows.control]))

    numeric, categorical = renewal_contexts(n, seed=4)
    numeric[0, NUMERIC.index("usage_trend")] = np.nan  # missing -> the schema's mean
    dense = client.decide_dense(
        [f"batch-dense-{i}" for i in range(n)], NUMERIC, numeric, CATEGORICAL, categorical
    )
    assert len(dense) == n and dense.scores.shape == (n, 0)
    assert set(dense.offer_ids) <= set(rows.score_offer_ids)
    assert np.all((dense.propensities > 0) & (dense.propensities <= 1))


def test_dense_and_row_forms_decode_to_the_same_contexts() -> None:
    from engine.serving import codec
    from engine.serving.pb import offers_pb2 as pb

    numeric, categorical = renewal_contexts(5, seed=9)
    dense = dense_contexts([f"c{i}" for i in range(5)], numeric, categorical)
    rows = [
        pb.DecideRow(
            customer_id=f"c{i}",
            context=pb.Context(
                numeric=dict(zip(NUMERIC, numeric[i].tolist(), strict=True)),
                categorical=dict(zip(CATEGORICAL, categorical[i].tolist(), strict=True)),
            ),
        )
        for i in range(5)
    ]
    assert codec.dense_to_contexts(dense, 10) == codec.rows_to_contexts(rows, 10, ["none"])[:2]


def test_reward_is_idempotent(client: NboClient) -> None:
    d = client.decide("reward-1", customer(2))
    assert client.reward(d.decision_id, 480.0, components={"revenue": 500.0, "support": 20.0})
    assert not client.reward(d.decision_id, 480.0)


def test_reward_batch_reports_a_status_per_reward(client: NboClient) -> None:
    batch = client.decide_batch([f"rb-{i}" for i in range(6)], [customer(i) for i in range(6)])
    first = client.reward_batch(batch.decision_ids[:4], [100.0, 0.0, 50.0, 10.0])
    assert (first.applied, first.duplicates, first.unknown) == (4, 0, 0)
    again = client.reward_batch([*batch.decision_ids, "never-decided"], [1.0] * 7)
    assert (again.applied, again.duplicates, again.expired, again.unknown) == (2, 4, 0, 1)
    assert again.statuses == ["duplicate"] * 4 + ["applied"] * 2 + ["unknown"]


def test_admin_model_info_snapshot_and_promote(server: NboServer, client: NboClient) -> None:
    from engine.journal import list_snapshots

    info = client.model_info()
    assert info.campaign == "renewal"
    assert info.offer_ids[0] == "none" and "loyalty_gift" in info.offer_ids
    assert info.feature_names[0] == "bias" and info.model_version.startswith("v")
    assert json.loads(info.policy)["class"] == "LinUCB"
    assert json.loads(info.policy)["params"]["alpha"] == 0.5
    version = client.snapshot()
    (newest, *_) = list_snapshots(server.config.data_dir / "snapshots" / "renewal")
    assert newest.stem == version
    # PromoteModel reads the model directory only: a file is promoted by its name there.
    (server.config.data_dir / "models" / "renewal" / "candidate.snap").write_bytes(
        newest.read_bytes()
    )
    # The live model's own bytes: nothing changes, the live version comes back.
    again = client.promote_model("candidate.snap")
    assert again.unchanged and again.model.version == version == client.model_info().model_version
    # After the model learned, the same file makes a new version that says what it repeats.
    d = client.decide("before-promote", customer(2))
    client.reward(d.decision_id, 10.0)
    learned = client.snapshot()
    assert learned != version
    change = client.promote_model("candidate.snap", force=True)  # one reward: no evidence
    promoted = change.model.version
    assert not change.unchanged and promoted not in (version, learned)
    assert json.loads(change.model.origin)["repeats"] == version
    assert change.model.parent == learned and change.model.kind == "promoted"
    info = client.model_info()
    assert (info.model_version, info.kind, info.parent) == (promoted, "promoted", learned)
    assert json.loads(info.origin)["file"] == "candidate.snap"
    assert client.decide("after-promote", customer(3)).model_version == promoted


def test_request_id_comes_back_in_trailing_metadata(server: NboServer) -> None:
    from engine.serving.pb import offers_pb2 as pb
    from engine.serving.pb import offers_pb2_grpc as pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.OfferServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Decide(pb.DecideRequest(), metadata=(("x-request-id", "trace-77"),), timeout=5)
        assert ("x-request-id", "trace-77") in [
            (m.key, m.value) for m in err.value.trailing_metadata()
        ]
        _, call = stub.Decide.with_call(
            pb.DecideRequest(customer_id="meta-1", context=_context(customer(1))), timeout=5
        )
        generated = dict((m.key, m.value) for m in call.trailing_metadata())["x-request-id"]
        assert len(generated) == 32


def _context(attributes: dict) -> object:
    from engine.client import context_message

    return context_message(attributes)


def test_metrics_endpoint_exposes_decisions_rewards_and_latency(
    server: NboServer, client: NboClient
) -> None:
    d = client.decide("metrics-1", customer(5))
    client.reward(d.decision_id, 10.0)
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5)
    text = body.read().decode()
    for needle in (
        'nbo_decisions_total{campaign="renewal",offer="',
        'nbo_rewards_total{campaign="renewal",offer="',
        'nbo_rpc_latency_seconds_bucket{le="0.001",method="Decide"}',
        'nbo_rpc_total{code="OK",method="Decide"}',
        'nbo_exploration_rate{campaign="renewal"}',
        'nbo_mean_reward{campaign="renewal",offer="',
        'nbo_pending_decisions{campaign="renewal"}',
        'nbo_decide_coalesced_rows{campaign="renewal"}',
    ):
        assert needle in text, needle


def test_concurrent_clients_all_succeed_with_unique_decisions(
    server: NboServer, client: NboClient
) -> None:
    before = client.model_info()
    n_threads, per_thread = 8, 25
    decided: list[list[str]] = [[] for _ in range(n_threads)]
    failures: list[BaseException] = []

    def work(t: int) -> None:
        try:
            with NboClient(f"127.0.0.1:{server.port}") as own:
                for i in range(per_thread):
                    d = own.decide(f"conc-{t}-{i}", customer(i, seed=t))
                    assert own.reward(d.decision_id, float(i))
                    decided[t].append(d.decision_id)
        except BaseException as exc:  # surfaced below with its thread's traceback
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures[0]
    ids = [d for per in decided for d in per]
    assert len(ids) == len(set(ids)) == n_threads * per_thread
    after = client.model_info()
    assert after.decisions - before.decisions == n_threads * per_thread
    assert after.rewards - before.rewards == n_threads * per_thread
    assert after.pending_decisions == before.pending_decisions


def test_batch_limit_is_configured(client: NboClient) -> None:
    ids = [f"big-{i}" for i in range(MAX_BATCH_ROWS)]
    numeric, categorical = renewal_contexts(MAX_BATCH_ROWS, seed=5)
    assert (
        len(client.decide_dense(ids, NUMERIC, numeric, CATEGORICAL, categorical)) == MAX_BATCH_ROWS
    )

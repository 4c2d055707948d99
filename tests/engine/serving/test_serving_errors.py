"""A table of bad requests: each gets its exact status and message, and changes no state."""

from __future__ import annotations

import math
from collections.abc import Iterator

import grpc
import pytest

from engine.client import NboClient, context_message
from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from engine.serving.server import NboServer
from tests.engine.serving.support import MAX_BATCH_ROWS, TOKEN, customer

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def _ctx(**changes: object) -> pb.Context:
    attributes = customer(0)
    for key, value in changes.items():
        if value is None:
            attributes.pop(key, None)
        else:
            attributes[key] = value
    return context_message(attributes)


def _dense(n_rows: int = 2, **fields: object) -> pb.DenseContexts:
    base: dict[str, object] = {
        "customer_ids": [f"d{i}" for i in range(n_rows)],
        "numeric_names": ["tenure_months", "monthly_price"],
        "numeric_values": [12.0, 40.0] * n_rows,
        "categorical_names": ["plan"],
        "categorical_values": ["basic"] * n_rows,
    }
    base.update(fields)
    return pb.DenseContexts(**base)


OFFERS = "none, discount_5, discount_10, discount_20, free_month, upgrade, loyalty_gift"

BAD_REQUESTS = [
    (
        "Decide",
        pb.DecideRequest(customer_id="", context=_ctx()),
        INVALID,
        "customer_id: expected a non-empty string, got an empty string",
    ),
    (
        "Decide",
        pb.DecideRequest(campaign="winback", customer_id="c", context=_ctx()),
        NOT_FOUND,
        "campaign: expected one of ['renewal'], got 'winback'",
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(tenure_months=math.nan)),
        INVALID,
        "context.numeric['tenure_months']: expected a finite number, got nan",
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(monthly_price=math.inf)),
        INVALID,
        "context.numeric['monthly_price']: expected a finite number, got inf",
    ),
    (
        "Decide",
        pb.DecideRequest(
            customer_id="c",
            context=pb.Context(numeric={"plan": 1.0}, categorical={"plan": "basic"}),
        ),
        INVALID,
        "context.plan: expected a numeric or a categorical attribute, got both",
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(), candidates=["none", "none"]),
        INVALID,
        "candidates: expected distinct offer ids, got 'none' more than once",
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(), request_id="r" * 129),
        INVALID,
        "request_id: expected at most 128 characters, got 129 characters",
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="x" * 257, context=_ctx()),
        INVALID,
        "customer_id: expected at most 256 characters, got 257 characters",
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(monthly_price=None)),
        INVALID,
        "context.monthly_price: expected a number, got nothing (missing)",
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(plan="platinum")),
        INVALID,
        "context.plan: expected one of 'basic', 'standard', 'premium', got platinum",
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(plan=3)),
        INVALID,
        "context.plan: expected a string category, got 3.0",
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(monthly_price="cheap")),
        INVALID,
        "context.monthly_price: expected a number, got cheap",
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(), candidates=["none", "gold_bar"]),
        INVALID,
        f"candidates[1]: expected one of {OFFERS}, got gold_bar",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(
            rows=[pb.DecideRow(customer_id="a", context=_ctx(), candidates=["gold_bar"])]
        ),
        INVALID,
        f"rows[0].candidates[0]: expected one of {OFFERS}, got gold_bar",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(),
        INVALID,
        "rows, dense: expected exactly one of the two forms, got neither",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(rows=[pb.DecideRow(customer_id="a", context=_ctx())], dense=_dense()),
        INVALID,
        "rows, dense: expected exactly one of the two forms, got both",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(
            rows=[pb.DecideRow(customer_id="a", context=_ctx()), pb.DecideRow(context=_ctx())]
        ),
        INVALID,
        "rows[1].customer_id: expected a non-empty string, got an empty string",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(dense=_dense(numeric_values=[1.0, 2.0, 3.0])),
        INVALID,
        "dense.numeric_values: expected 2 rows x 2 columns = 4 values, got 3 values",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(dense=_dense(numeric_values=[1.0, 2.0, 3.0, math.inf])),
        INVALID,
        "dense.numeric_values[3] ('monthly_price', row 1): expected a finite number or NaN for "
        "missing, got inf",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(dense=_dense(categorical_values=["basic"])),
        INVALID,
        "dense.categorical_values: expected 2 rows x 1 columns = 2 values, got 1 values",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(dense=_dense(numeric_names=["tenure_months", "tenure_months"])),
        INVALID,
        "dense.numeric_names: expected distinct names, got 'tenure_months' more than once",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(dense=_dense(n_rows=MAX_BATCH_ROWS + 1)),
        INVALID,
        f"dense.customer_ids: expected at most {MAX_BATCH_ROWS} rows per call, "
        f"got {MAX_BATCH_ROWS + 1} rows",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(dense=_dense(customer_ids=[])),
        INVALID,
        "dense.customer_ids: expected at least 1 row, got 0 rows",
    ),
    (
        "Reward",
        pb.RewardRequest(decision_id="", value=1.0),
        INVALID,
        "decision_id: expected a non-empty string, got an empty string",
    ),
    (
        "Reward",
        pb.RewardRequest(decision_id="d", value=math.nan),
        INVALID,
        "value: expected a finite number, got nan",
    ),
    (
        "Reward",
        pb.RewardRequest(decision_id="d", value=1e13),
        INVALID,
        "value: expected a finite number with |value| <= 1e+12, got 10000000000000.0",
    ),
    (
        "Reward",
        pb.RewardRequest(decision_id="no-such-decision", value=1.0),
        NOT_FOUND,
        "decision_id: expected a pending decision of campaign 'renewal', got 'no-such-decision' "
        "(no such decision)",
    ),
    (
        "Reward",
        pb.RewardRequest(decision_id="d", value=1.0, components={"revenue": -math.inf}),
        INVALID,
        'components["revenue"]: expected a finite number, got -inf',
    ),
    # Bounded inputs (engine.validation): every limit is refused before the Engine, by name.
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(**{"n" * 129: 1.0})),
        INVALID,
        f'context["{"n" * 40}..."]: expected an attribute name of at most 128 characters, '
        "got a name of 129 characters",
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(plan="p" * 257)),
        INVALID,
        'context["plan"]: expected a category value of at most 256 characters, got 257 characters',
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(**{f"x{i}": 1.0 for i in range(250)})),
        INVALID,
        "context: expected at most 256 attributes, got 262 attributes",
    ),
    (
        "Decide",
        pb.DecideRequest(customer_id="c", context=_ctx(), candidates=["none"] * 8),
        INVALID,
        "candidates: expected at most 7 candidates (the campaign's offers), got 8 candidates",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(
            rows=[pb.DecideRow(customer_id="r", context=_ctx(channel="c" * 300))]
        ),
        INVALID,
        'rows[0].context["channel"]: expected a category value of at most 256 characters, '
        "got 300 characters",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(dense=_dense(2, categorical_values=["basic", "b" * 257])),
        INVALID,
        "dense.categorical_values[1] ('plan', row 1): expected a category value of at most 256 "
        "characters, got 257 characters",
    ),
    (
        "DecideBatch",
        pb.DecideBatchRequest(
            dense=_dense(1, numeric_names=[f"x{i}" for i in range(300)], numeric_values=[0.0] * 300)
        ),
        INVALID,
        "dense.numeric_names, dense.categorical_names: expected at most 256 attributes, "
        "got 301 attributes",
    ),
    (
        "Reward",
        pb.RewardRequest(decision_id="d", value=1.0, components={f"c{i}": 1.0 for i in range(33)}),
        INVALID,
        "components: expected at most 32 components, got 33 components",
    ),
    (
        "Reward",
        pb.RewardRequest(decision_id="d", value=1.0, components={"r" * 200: 1.0}),
        INVALID,
        f'components["{"r" * 40}..."]: expected a component name of at most 128 characters, '
        "got a name of 200 characters",
    ),
    (
        "Decide",
        pb.DecideRequest(campaign="w" * 5000, customer_id="c", context=_ctx()),
        NOT_FOUND,
        f"campaign: expected one of ['renewal'], got '{'w' * 40}...'",
    ),
    (
        "RewardBatch",
        pb.RewardBatchRequest(decision_ids=["a", "b"], values=[1.0]),
        INVALID,
        "values: expected 2 values (one per decision id), got 1 values",
    ),
    (
        "RewardBatch",
        pb.RewardBatchRequest(decision_ids=["a", "b"], values=[1.0, math.inf]),
        INVALID,
        "values[1]: expected a finite number, got inf",
    ),
    (
        "RewardBatch",
        pb.RewardBatchRequest(),
        INVALID,
        "decision_ids: expected at least 1 row, got 0 rows",
    ),
    (
        "GetModelInfo",
        pb.GetModelInfoRequest(campaign="winback"),
        NOT_FOUND,
        "campaign: expected one of ['renewal'], got 'winback'",
    ),
    (
        "PromoteModel",
        pb.PromoteModelRequest(),
        INVALID,
        "snapshot_path: expected a path to a snapshot file, got an empty string",
    ),
    (
        "PromoteModel",
        pb.PromoteModelRequest(snapshot_path="/nonexistent/v9.snap"),
        grpc.StatusCode.PERMISSION_DENIED,
        "snapshot_path: expected a file inside the model directory, got '/nonexistent/v9.snap'",
    ),
    (
        "PromoteModel",
        pb.PromoteModelRequest(snapshot_path="v9.snap"),
        NOT_FOUND,
        "snapshot_path: expected a file in the model directory, got 'v9.snap' (no such file)",
    ),
]
OFFER_METHODS = {"Decide", "DecideBatch", "Reward", "RewardBatch"}


@pytest.fixture(scope="module")
def channel(server: NboServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.mark.parametrize(
    ("method", "request_message", "code", "message"),
    BAD_REQUESTS,
    ids=[f"{m}-{i}" for i, (m, *_) in enumerate(BAD_REQUESTS)],
)
def test_bad_request_gets_exact_status_and_changes_nothing(
    channel: grpc.Channel,
    client: NboClient,
    method: str,
    request_message: object,
    code: grpc.StatusCode,
    message: str,
) -> None:
    before = client.model_info()
    if method in OFFER_METHODS:
        rpc, metadata = getattr(pb_grpc.OfferServiceStub(channel), method), ()
    else:
        rpc = getattr(pb_grpc.AdminServiceStub(channel), method)
        metadata = (("authorization", f"Bearer {TOKEN}"),)
    with pytest.raises(grpc.RpcError) as err:
        rpc(request_message, timeout=10, metadata=metadata)
    assert err.value.code() == code
    assert err.value.details() == message
    after = client.model_info()
    # Model state and the journal's decisions and rewards are untouched (an unknown decision id is
    # recorded among the journal's rejected rewards, for audit, by design).
    state = ("decisions", "rewards", "pending_decisions", "config_hash")
    assert [getattr(after, f) for f in state] == [getattr(before, f) for f in state]
    assert client.health() == "SERVING"


def test_oversized_message_is_resource_exhausted(client: NboClient) -> None:
    huge = {f"attr_{i}": float(i) for i in range(60_000)}  # ~1.4 MB > the 1 MiB limit
    with pytest.raises(grpc.RpcError) as err:
        client.decide("huge", {**customer(0), **huge})
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.health() == "SERVING"


def test_admin_without_token_is_unauthenticated(server: NboServer) -> None:
    with NboClient(f"127.0.0.1:{server.port}") as anonymous:
        with pytest.raises(grpc.RpcError) as err:
            anonymous.snapshot()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.value.details() == (
        "authorization: expected metadata 'authorization: Bearer <token>', got none"
    )


def test_admin_with_wrong_token_is_permission_denied(server: NboServer) -> None:
    with NboClient(f"127.0.0.1:{server.port}", admin_token=TOKEN + "x") as intruder:
        with pytest.raises(grpc.RpcError) as err:
            intruder.promote("/etc/passwd")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details() == (
        "authorization: expected the admin bearer token, got one that does not match"
    )


def test_offer_service_needs_no_token(server: NboServer) -> None:
    with NboClient(f"127.0.0.1:{server.port}") as anonymous:
        assert anonymous.decide("open-1", customer(1)).decision_id


def test_promote_corrupt_file_is_invalid_and_keeps_the_model(
    server: NboServer, client: NboClient
) -> None:
    bad = server.config.data_dir / "models" / "renewal" / "corrupt.snap"
    bad.write_bytes(b"NBOSNAP1" + b"\0" * 64)
    before = client.model_info().model_version
    with pytest.raises(grpc.RpcError) as err:
        client.promote("corrupt.snap")
    assert err.value.code() == INVALID
    assert "'corrupt.snap'" in err.value.details()
    assert client.model_info().model_version == before

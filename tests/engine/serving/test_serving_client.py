"""engine.client against a real server: each failing status raises its engine.errors class (also a
grpc.RpcError with the status), and a batch's decisions iterate, index and count like a list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest

from engine import errors
from engine.client import BatchDecisions, NboClient, OfferDecision, RpcFailedError, remote_error
from engine.errors import InvalidInputError, NboError, ServiceUnavailableError
from engine.serving.server import NboServer
from engine.serving.status import STATUS_BY_ERROR
from testkit.traffic import CATEGORICAL, NUMERIC, renewal_contexts
from tests.engine.serving.support import TOKEN, customer, free_port

Code = grpc.StatusCode


def _raised(call: Callable[[], Any]) -> NboError:
    with pytest.raises(NboError) as err:
        call()
    return err.value


def test_invalid_input_carries_the_field_the_status_and_the_original_error(
    client: NboClient,
) -> None:
    exc = _raised(lambda: client.decide("", customer(0)))
    assert isinstance(exc, InvalidInputError) and isinstance(exc, ValueError)
    assert str(exc) == "customer_id: expected a non-empty string, got an empty string"
    assert (exc.field, exc.expected, exc.got) == (
        "customer_id",
        "a non-empty string",
        "an empty string",
    )
    assert isinstance(exc, grpc.RpcError) and exc.code() == Code.INVALID_ARGUMENT
    assert exc.details() == str(exc)
    cause = exc.__cause__
    assert isinstance(cause, grpc.RpcError) and not isinstance(cause, NboError)
    assert cause.code() == Code.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_every_status_a_client_meets_raises_its_class(server: NboServer, client: NboClient) -> None:
    target = f"127.0.0.1:{server.port}"
    with (
        NboClient(target) as anonymous,
        NboClient(target, admin_token=TOKEN + "x") as intruder,
        NboClient(f"127.0.0.1:{free_port()}", timeout=2) as nobody,  # nothing listens there
    ):
        cases: list[tuple[Callable[[], Any], type[NboError], type[BaseException]]] = [
            (
                lambda: client.decide("c", customer(0), campaign="winback"),
                errors.NotFoundError,
                KeyError,
            ),
            (
                lambda: client.decide(
                    "c", {**customer(0), **{f"a{i}": 1.0 for i in range(60_000)}}
                ),
                errors.ResourceExhaustedError,
                RuntimeError,
            ),
            (anonymous.snapshot, errors.AuthenticationError, PermissionError),
            (intruder.snapshot, errors.PermissionDeniedError, PermissionError),
            (lambda: nobody.decide("c", customer(0)), ServiceUnavailableError, ConnectionError),
            (
                lambda: client.decide("c", customer(0), timeout=1e-6),
                errors.DeadlineExceededError,
                TimeoutError,
            ),
            (lambda: nobody.health(), ServiceUnavailableError, ConnectionError),
        ]
        status_of = dict(STATUS_BY_ERROR)  # the status each class travels as
        for call, cls, builtin in cases:
            exc = _raised(call)
            assert isinstance(exc, cls) and isinstance(exc, builtin), (cls, repr(exc))
            assert isinstance(exc, grpc.RpcError) and exc.code() == status_of[cls], repr(exc)
            assert str(exc) and str(exc) == exc.details()
            assert isinstance(exc.__cause__, grpc.RpcError)
    assert isinstance(
        _raised(lambda: client.decide("c", customer(0), timeout=1e-6)), ServiceUnavailableError
    )
    assert client.health() == "SERVING"


@pytest.mark.parametrize("code", list(Code))
def test_every_status_maps_to_an_nbo_error(code: Code) -> None:
    class Failed(grpc.RpcError):
        def code(self) -> Code:
            return code

        def details(self) -> str:
            return ""

    exc = remote_error(Failed())
    assert isinstance(exc, NboError) and exc.code() == code
    assert str(exc) == code.name  # no details: the status name
    if code in (Code.INTERNAL, Code.UNKNOWN, Code.UNIMPLEMENTED, Code.CANCELLED):
        assert isinstance(exc, RpcFailedError)


def test_a_batch_iterates_indexes_and_counts_its_decisions(client: NboClient) -> None:
    ids = [f"batch-{i}" for i in range(5)]
    batch = client.decide_batch(ids, [customer(i) for i in range(5)], include_scores=True)
    assert isinstance(batch, BatchDecisions) and len(batch) == 5
    rows = list(batch)
    assert [type(d) for d in rows] == [OfferDecision] * 5
    for i, d in enumerate(batch):
        assert d == batch[i] == rows[i]
        assert (d.decision_id, d.offer_id, d.model_version) == (
            batch.decision_ids[i],
            batch.offer_ids[i],
            batch.model_versions[i],
        )
        assert d.propensity == batch.propensities[i] and 0 < d.propensity <= 1
        assert (d.explored, d.control) == (bool(batch.explored[i]), bool(batch.control[i]))
        assert d.campaign == "renewal" and d.request_id == batch.request_id
        if not d.control:  # scores came: the eligible offers, best first, the served one among them
            scores = [score for _, score in d.ranking]
            assert scores == sorted(scores, reverse=True) and np.isfinite(scores).all()
            assert d.offer_id in {offer for offer, _ in d.ranking}
    assert batch[-1] == rows[4] and batch[1:3] == rows[1:3]
    with pytest.raises(IndexError):
        batch[5]
    assert client.reward(batch[0].decision_id, 1.0)
    # Without scores the rows carry no ranking; the dense form iterates the same way.
    numeric, categorical = renewal_contexts(2, seed=1)
    plain = client.decide_dense(["dense-0", "dense-1"], NUMERIC, numeric, CATEGORICAL, categorical)
    assert [d.ranking for d in plain] == [(), ()] and len(plain) == 2
    assert [d.decision_id for d in plain] == plain.decision_ids

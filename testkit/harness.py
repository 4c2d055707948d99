"""Fault-injection harness shared by the CI tests (tests/reliability) and ``benchmarks.faults``.

A real ``nbo serve`` child process, mixed client load that records exactly what the server
acknowledged, SIGKILL at a random moment, and the checks run after each restart: every
acknowledged decision and reward is in the journal exactly once, and the model the restarted
server decides with equals a model rebuilt from the journal alone.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from engine.campaign import load_campaign
from engine.client import NboClient
from engine.journal.snapshot import read_snapshot
from engine.journal.store import Journal
from engine.policies import Policy, make_policy
from simulators.processes import serve_command
from testkit.traffic import CATEGORICAL, NUMERIC, renewal_contexts

REPO = Path(__file__).resolve().parents[1]
RENEWAL = REPO / "examples" / "renewal.toml"
TOKEN = "reliability-admin-token"
CONTEXTS_NUMERIC, CONTEXTS_CATEGORICAL = renewal_contexts(4096, seed=11)


def customer(i: int) -> dict[str, Any]:
    """Raw renewal attributes of customer ``i`` (from a fixed pool of 4,096)."""
    row = i % len(CONTEXTS_NUMERIC)
    out: dict[str, Any] = dict(zip(NUMERIC, CONTEXTS_NUMERIC[row].tolist(), strict=True))
    out.update(zip(CATEGORICAL, CONTEXTS_CATEGORICAL[row].tolist(), strict=True))
    return out


def run_threads(work: Callable[[int], object], n: int, timeout: float) -> None:
    """Call ``work(0)`` .. ``work(n - 1)`` at once, each in its own thread, and wait up to
    ``timeout`` seconds for each (the workers report their own failures)."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)


def campaign_config(tmp: Path, source: Path = RENEWAL, **learning: Any) -> Path:
    """A copy of examples/renewal.toml (or ``source``, a campaign over the same customers)
    with a faster publish/checkpoint cadence (so kills land between snapshots and recovery
    replays the journal after the newest one)."""
    settings = {"publish_every_rewards": 10, "checkpoint_every_rewards": 60}
    settings.update(learning)
    text = source.read_text()
    for key, value in settings.items():
        lines = [ln for ln in text.splitlines() if ln.startswith(f"{key} = ")]
        assert len(lines) == 1, key
        text = text.replace(lines[0], f"{key} = {value!r}".replace("'", '"'))
    path = tmp / source.name
    path.write_text(text)
    return path


def campaign_name(config: Path) -> str:
    """The campaign a config file names (its journal and snapshot directory are named so)."""
    return load_campaign(config).name


# ---------------------------------------------------------------------- the server process
def spawn(
    command: list[str], env: dict[str, str] | None = None, umask: int | None = None
) -> subprocess.Popen[str]:
    """Start ``command`` (an ``nbo serve`` line, see :func:`simulators.processes.serve_command`)
    from the repository root, unbuffered, with ``env`` added to this process's environment and
    its stdout and stderr piped as text; ``umask`` is the child's file mode mask."""
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
        preexec_fn=None if umask is None else (lambda: os.umask(umask) and None),
    )


def run_serve(
    config: Path,
    data_dir: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    log_level: str | None = None,
    admin_token: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``nbo serve`` (see :func:`simulators.processes.serve_command`) from the repository
    root to its exit, as a server refusing to start exits: its exit code and captured output.
    Its environment is this process's with ``env`` added, and the admin token unless
    ``admin_token`` is False (then none, even if this process has one)."""
    base = {k: v for k, v in os.environ.items() if k != "NBO_ADMIN_TOKEN"}
    if admin_token:
        base["NBO_ADMIN_TOKEN"] = TOKEN
    return subprocess.run(
        serve_command(config, data_dir, *extra, log_level=log_level),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env=dict(base, **(env or {})),
    )


class ServeProcess:
    """``nbo serve`` as a child process on a free loopback port (``log_level`` None: the
    server's default)."""

    def __init__(
        self,
        config: Path,
        data_dir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        umask: int | None = None,
        log_level: str | None = "warning",
    ) -> None:
        command = serve_command(
            config, data_dir, "--grace-seconds", "2", *extra, log_level=log_level
        )
        self.proc = spawn(command, {"NBO_ADMIN_TOKEN": TOKEN, **(env or {})}, umask)
        self.stderr_lines: list[str] = []
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("nbo serve: listening on port "):
            self.proc.kill()
            self.proc.wait(30)
            raise RuntimeError(f"nbo serve did not start: {line!r} {self.stderr()[-2000:]}")
        self.port = int(line.rsplit(" ", 1)[1])
        self.target = f"127.0.0.1:{self.port}"
        self.learner_port: int | None = None  # nbo serve --workers N: the learner's own port
        workers = extra[extra.index("--workers") + 1] if "--workers" in extra else "1"
        if workers != "1" and "decide" not in extra:
            line = self.proc.stdout.readline()
            assert line.startswith("nbo serve: learner listening on port "), line
            self.learner_port = int(line.rsplit(" ", 1)[1])

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def client(self, **kwargs: Any) -> NboClient:
        return NboClient(self.target, admin_token=TOKEN, **kwargs)

    def wait_serving(self, timeout: float = 120.0) -> None:
        with self.client() as c:
            c.wait_until_serving(timeout)

    def kill(self) -> None:
        """SIGKILL: no drain, no flush, no snapshot."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        assert self.proc.returncode == -signal.SIGKILL

    def stop(self) -> int:
        """SIGTERM and wait for the graceful exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self._drain.join(10)  # the last lines: :meth:`stderr` is then the whole log
        return code

    def rss_kb(self) -> int:
        """Resident set size of the server process, in kB (0 once it has exited)."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0


# ---------------------------------------------------------------------- acknowledged events
@dataclass
class Acks:
    """What the server acknowledged: decisions and the rewards it answered APPLIED."""

    decisions: set[str] = field(default_factory=set)
    rewards: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    unsure: set[str] = field(default_factory=set)  # rewards sent whose answer the kill cut off
    failures: list[str] = field(default_factory=list)  # a worker's broken expectation
    lock: threading.Lock = field(default_factory=threading.Lock)

    def decided(self, ids: list[str]) -> None:
        with self.lock:
            self.decisions.update(ids)
            self.calls += 1

    def rewarded(self, ids: list[str], values: list[float], statuses: list[str]) -> None:
        with self.lock:
            self.calls += 1
            for decision_id, value, status in zip(ids, values, statuses, strict=True):
                if status == "applied":
                    assert decision_id not in self.rewards, f"{decision_id} applied twice"
                    self.rewards[decision_id] = value
                elif status == "duplicate":
                    assert decision_id in self.rewards or decision_id in self.unsure
                    self.duplicates += 1


def mixed_worker(target: str, acks: Acks, stop: threading.Event, seed: int) -> None:
    """Decide (single and dense batches), reward (single and batches) and retry rewards until
    ``stop`` is set or the server goes away. Only answered calls count as acknowledged."""
    try:
        _mixed_calls(target, acks, stop, seed)
    except BaseException as exc:  # reported by the caller, which checks acks.failures
        with acks.lock:
            acks.failures.append(f"worker {seed}: {type(exc).__name__}: {exc}")


@contextmanager
def mixed_load(targets: Sequence[str], acks: Acks, seed: int) -> Iterator[None]:
    """A :func:`mixed_worker` thread per entry of ``targets`` (worker ``w`` calls ``targets[w]``
    with seed ``seed + w``) while the ``with`` block runs; then every worker is stopped and
    joined, and none may have broken an expectation (``acks.failures``)."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=mixed_worker, args=(target, acks, stop, seed + w))
        for w, target in enumerate(targets)
    ]
    for t in threads:
        t.start()
    try:
        yield
    finally:  # the workers stop even when the block fails
        stop.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not acks.failures, acks.failures


def _mixed_calls(target: str, acks: Acks, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    pending: list[str] = []
    rewarded: list[str] = []
    with NboClient(target, timeout=10) as c:
        i = 0
        while not stop.is_set():
            i += 1
            kind = rng.random()
            try:
                if kind < 0.35:
                    d = c.decide(f"k{seed}-{i}", customer(rng.randrange(4096)))
                    acks.decided([d.decision_id])
                    pending.append(d.decision_id)
                elif kind < 0.5:
                    rows = [rng.randrange(4096) for _ in range(8)]
                    ids = [f"kb{seed}-{i}-{k}" for k in range(8)]
                    b = c.decide_dense(
                        ids,
                        NUMERIC,
                        CONTEXTS_NUMERIC[rows],
                        CATEGORICAL,
                        CONTEXTS_CATEGORICAL[rows],
                    )
                    acks.decided(b.decision_ids)
                    pending.extend(b.decision_ids)
                elif kind < 0.75 and pending:
                    decision_id = pending.pop(rng.randrange(len(pending)))
                    value = round(rng.uniform(-50, 900), 3)
                    with acks.lock:
                        acks.unsure.add(decision_id)
                    applied = c.reward(decision_id, value)
                    acks.rewarded([decision_id], [value], ["applied" if applied else "duplicate"])
                    rewarded.append(decision_id)
                elif kind < 0.92 and len(pending) >= 4:
                    ids = [pending.pop(rng.randrange(len(pending))) for _ in range(4)]
                    # A retry of an earlier reward rides along: it must come back DUPLICATE.
                    retry = [rng.choice(rewarded)] if rewarded else []
                    values = [round(rng.uniform(0, 900), 3) for _ in ids + retry]
                    with acks.lock:
                        acks.unsure.update(ids)
                    r = c.reward_batch(ids + retry, values)
                    acks.rewarded(ids + retry, values, r.statuses)
                    rewarded.extend(ids)
                elif rewarded:
                    decision_id = rng.choice(rewarded)  # a client retry
                    assert not c.reward(decision_id, 1.0)
                    acks.rewarded([decision_id], [1.0], ["duplicate"])
            except grpc.RpcError as exc:
                code = exc.code().name
                with acks.lock:
                    acks.errors[code] = acks.errors.get(code, 0) + 1
                if code in ("UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED"):
                    return  # the server is gone: stop, like a client whose connection broke
                raise


# ---------------------------------------------------------------------- journal and model checks
def rebuilt_policy(journal: Journal, config_path: Path) -> tuple[Policy, int]:
    """A fresh policy fed every learnable reward of the journal, in journal order; and how many."""
    config = load_campaign(config_path)
    offer_ids = list(config.offer_ids)
    (n_features,) = {len(f) for _, _, f in journal.catalogs().values()}  # one schema in these runs
    policy = make_policy(
        config.policy, len(offer_ids), n_features, offer_features=config.policy_offer_features()
    )
    rows = journal.query(
        "SELECT d.context, d.action, d.propensity, r.reward FROM rewards r"
        " JOIN decisions d ON d.seq = r.decision_seq WHERE r.reward IS NOT NULL ORDER BY r.seq"
    )
    if rows:
        X = np.frombuffer(b"".join(r[0] for r in rows)).reshape(len(rows), n_features)
        actions = np.array([offer_ids.index(r[1]) for r in rows])
        policy.update(X, actions, np.array([r[3] for r in rows]), np.array([r[2] for r in rows]))
    return policy, len(rows)


def check_acknowledged(journal: Journal, acks: Acks) -> None:
    """Every acknowledged decision and applied reward is in the journal exactly once."""
    dupes = journal.query(
        "SELECT decision_id, COUNT(*) FROM decisions GROUP BY decision_id HAVING COUNT(*) > 1"
    ) + journal.query(
        "SELECT decision_id, COUNT(*) FROM rewards GROUP BY decision_id HAVING COUNT(*) > 1"
    )
    assert not dupes, f"journal rows repeated: {dupes[:5]}"
    stored = journal.lookup(sorted(acks.decisions))
    missing = acks.decisions - set(stored)
    assert not missing, f"{len(missing)} acknowledged decisions lost, e.g. {sorted(missing)[:3]}"
    values = dict(journal.query("SELECT decision_id, value FROM rewards WHERE source = 'reward'"))
    lost = [d for d in acks.rewards if d not in values]
    assert not lost, f"{len(lost)} acknowledged rewards lost, e.g. {lost[:3]}"
    wrong = [(d, v, values[d]) for d, v in acks.rewards.items() if values[d] != v]
    assert not wrong, f"stored reward values differ from the acknowledged ones: {wrong[:3]}"


def served_model(
    server: ServeProcess, data_dir: Path, campaign: str = "renewal"
) -> tuple[dict[str, Any], Policy]:
    """Ask the server for a snapshot (applies every journaled reward) and read it back."""
    with server.client() as c:
        version = c.snapshot(campaign=campaign)
    return read_snapshot(data_dir / "snapshots" / campaign / f"{version}.snap")


def check_model(server: ServeProcess, data_dir: Path, config: Path) -> int:
    """The model the server decides with equals the one rebuilt from its journal.

    Returns the number of rewards the model has learned from."""
    name = campaign_name(config)
    header, model = served_model(server, data_dir, name)
    journal = Journal(data_dir / f"{name}.journal.sqlite", readonly=True)
    try:
        rebuilt, n_rows = rebuilt_policy(journal, config)
    finally:
        journal.close()
    check_same_model(header, model, rebuilt, n_rows)
    return n_rows


def check_same_model(
    header: dict[str, Any], model: Policy, rebuilt: Policy, n_rewards: int
) -> None:
    """The served ``model`` (its snapshot ``header``) learned from the ``n_rewards`` rewards
    ``rebuilt`` was fed, and scores as it does."""
    assert header["n_rewards"] == n_rewards, (header["n_rewards"], n_rewards)
    X = np.random.default_rng(0).normal(size=(64, model.n_features))
    np.testing.assert_allclose(model.choose(X).scores, rebuilt.choose(X).scores, rtol=1e-9)


def check_rewards_after_restart(
    retry: NboClient, reward: NboClient, acks: Acks, rng: random.Random
) -> None:
    """An acknowledged reward sent again through ``retry`` is a DUPLICATE, and an acknowledged,
    unrewarded decision still takes its reward through ``reward``."""
    if acks.rewards:
        again = rng.choice(sorted(acks.rewards))
        assert not retry.reward(again, 5.0), f"{again}: an acknowledged reward applied twice"
    open_ids = sorted(acks.decisions - set(acks.rewards) - acks.unsure)
    if open_ids:
        decision_id = rng.choice(open_ids)
        value = 42.0
        assert reward.reward(decision_id, value)
        acks.rewarded([decision_id], [value], ["applied"])


@dataclass
class CycleStats:
    cycle: int
    load_seconds: float
    decisions_acked: int
    rewards_acked: int
    restart_seconds: float


def kill_cycles(
    config: Path,
    data_dir: Path,
    n_kills: int,
    seed: int = 0,
    workers: int = 3,
    load_seconds: tuple[float, float] = (0.4, 1.5),
    progress: Any = None,
) -> tuple[Acks, list[CycleStats]]:
    """Serve, load, SIGKILL at a random moment, restart and check; ``n_kills`` times.

    After every restart: every acknowledged event so far is in the journal exactly once, the
    model equals the one rebuilt from the journal, acknowledged rewards are retries now (the
    server answers DUPLICATE) and an acknowledged, unrewarded decision still takes its reward.
    """
    rng = random.Random(seed)
    acks = Acks()
    stats: list[CycleStats] = []
    server = ServeProcess(config, data_dir)
    try:
        for cycle in range(n_kills):
            server.wait_serving()
            with mixed_load([server.target] * workers, acks, seed * 1000 + cycle * 10):
                seconds = rng.uniform(*load_seconds)
                time.sleep(seconds)
                server.kill()  # mid-flight: the workers are inside calls right now
            started = time.perf_counter()
            server = ServeProcess(config, data_dir)
            server.wait_serving()
            restart = time.perf_counter() - started
            check_after_restart(server, data_dir, config, acks, rng)
            stats.append(
                CycleStats(
                    cycle,
                    round(seconds, 3),
                    len(acks.decisions),
                    len(acks.rewards),
                    round(restart, 3),
                )
            )
            if progress is not None:
                progress(stats[-1])
    finally:
        if server.proc.poll() is None:
            server.stop()
    return acks, stats


def check_after_restart(
    server: ServeProcess, data_dir: Path, config: Path, acks: Acks, rng: random.Random
) -> None:
    journal = Journal(data_dir / f"{campaign_name(config)}.journal.sqlite", readonly=True)
    try:
        check_acknowledged(journal, acks)
    finally:
        journal.close()
    check_model(server, data_dir, config)
    with server.client() as c:
        check_rewards_after_restart(c, c, acks, rng)

"""``nbo serve --workers N``: N decide processes on one gRPC port, one learner, one supervisor.

The supervisor (this module; it decides nothing itself) starts its children as
``python -m engine.cli serve ... --workers 1`` with the flags it was given, and watches them:

- Ports. It reserves the gRPC port first (a socket bound with ``SO_REUSEPORT`` and never
  listening, so ``--port 0`` has a number to pass down) and holds it for its whole run. The N
  children ``--role decide`` bind that port too (``--reuse-port``: ``SO_REUSEPORT``): the kernel
  spreads connections, not calls, over them, so one channel stays on one process. The one
  ``--role learn`` child (the campaigns' learner: applies every worker's rewards from the
  journal, publishes the models the workers follow, expires decisions) serves health and
  AdminService on ``--learner-port`` (reserved the same way; 0: any free port), the place for
  PromoteModel and RollbackModel, which the workers refuse (FAILED_PRECONDITION). With
  ``--role decide --workers N`` there is no learner child (the learner runs elsewhere, on a
  shared PostgreSQL journal).
- Start. The learner first (it creates or recovers the journal and publishes the model the
  workers wait for); the supervisor refuses to go on when it does not lead (another process
  holds a learner lock), as a single ``--role all`` process does. Then the workers, at once.
  Each child prints ``nbo serve: listening on port P`` once its health is SERVING; when all
  did (and, without TLS, a health check through each port answers SERVING) the supervisor
  prints the same line with the shared port, then ``nbo serve: learner listening on port L``.
  A child that exits before it served stops the whole start: its error line becomes the
  supervisor's error (exit code 2), never a restart loop.
- Restarts. A child that exits later, however it exits, is logged and started again: at once,
  then after 1, 2, 5, 10 and 30 s while it keeps dying within a minute of its start. The other
  workers serve meanwhile; while the learner is down the workers decide on the last model they
  loaded and journal rewards, which the restarted learner applies.
- Signals. SIGTERM or SIGINT drains the workers (SIGTERM each, wait up to ``grace_seconds +
  10`` s, then SIGKILL), then the learner the same way, so it applies the last rewards and keeps
  its model; exit code 0 when every child stopped cleanly, else 1. Children run in process groups
  of their own (a terminal's Ctrl-C reaches only the supervisor, which orders the drain) and get
  SIGTERM if the supervisor dies (Linux ``PR_SET_PDEATHSIG``).
- Metrics. Children get ``PROMETHEUS_MULTIPROC_DIR``: a fresh, owner-only directory made for
  this run (empty at start, removed at exit), so each child writes its values to files there
  (see :mod:`engine.serving.metrics` for how each gauge combines). The supervisor serves
  ``--metrics-port`` (children serve none) with prometheus-client's MultiProcessCollector over
  that directory, plus ``nbo_worker_restarts_total``, and calls ``mark_process_dead`` for every
  child that exits. ``/healthz`` is 200 while at least one worker is serving.
- Secrets. Tokens reach the children in ``NBO_ADMIN_TOKEN`` and ``NBO_CLIENT_TOKEN``, never in
  their command lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from engine.errors import ConfigError
from engine.serving.children import READY_LINE, Child, die_with_parent, reserve_port, signal_name
from engine.serving.config import ADMIN_TOKEN_ENV, CLIENT_TOKEN_ENV, ServeConfig
from engine.serving.logs import LOGGER_NAME
from engine.serving.metrics import MULTIPROC_ENV, serve_metrics

__all__ = ["LEARNER_LINE", "Supervisor"]

LEARNER_LINE = "nbo serve: learner listening on port "
RESTART_DELAYS = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)  # seconds, by deaths in a row
STABLE_SECONDS = 60.0  # a child that lived this long starts its next restart at once again
KILL_AFTER_SECONDS = 10.0  # beyond the grace period, before SIGKILL
_POLL_SECONDS = 0.05
_log = logging.getLogger(LOGGER_NAME)


class Supervisor:
    """Run ``workers`` decide processes on one port and (``learner=True``) one learner.

    Parameters
    ----------
    config : ServeConfig
        The merged settings (host, port, metrics, grace period, tokens) of this invocation.
    child_flags : sequence of str
        The ``nbo serve`` flags every child gets (campaigns, data dir, journal, limits, TLS...);
        the supervisor adds ``--role``, ``--port``, ``--reuse-port``, ``--workers 1`` and
        ``--metrics-port 0``.
    workers : int
        Decide processes, >= 1.
    learner : bool
        Start the campaigns' learner (``--role learn``) on ``learner_port``.
    learner_port : int
        0: any free port.
    """

    def __init__(
        self,
        config: ServeConfig,
        child_flags: Sequence[str],
        workers: int,
        learner: bool = True,
        learner_port: int = 0,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"workers: expected an integer >= 1, got {workers!r}")
        if not 0 <= learner_port <= 65535:
            raise ConfigError(f"learner_port: expected a port in [0, 65535], got {learner_port}")
        if any("," in token for token in config.client_tokens):
            raise ConfigError(
                f"client_tokens: expected tokens without ',' under --workers (they reach the "
                f"workers in {CLIENT_TOKEN_ENV}, comma-separated), got one with a comma (value "
                "withheld: it is a secret)"
            )
        self.config = config
        self.child_flags = list(child_flags)
        self.workers = workers
        self.learner = learner
        self.learner_port = learner_port
        self.port = 0
        self.metrics_port: int | None = None
        self.registry = CollectorRegistry()
        self._restarts = Counter(
            "nbo_worker_restarts",
            "Children of nbo serve --workers started again after they exited, by role.",
            ["role"],
            registry=self.registry,
        )
        self._stop = threading.Event()
        self._serving = False
        self._children: list[Child] = []
        self._setup = die_with_parent(os.getpid())

    def request_stop(self) -> None:
        """Begin the drain (what SIGTERM and SIGINT do)."""
        self._stop.set()

    def run(self) -> int:
        """Start everything, serve until :meth:`request_stop` (or a signal), drain; exit code."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        metrics_dir = tempfile.mkdtemp(prefix="nbo-metrics-")  # fresh, owner-only
        sockets: list[socket.socket] = []
        httpd = None
        try:
            MultiProcessCollector(self.registry, path=metrics_dir)
            if self.config.metrics_port:
                httpd, self.metrics_port = serve_metrics(
                    self.registry, self.config.metrics_port, self.config.metrics_host, self._ready
                )
            held, self.port = reserve_port(self.config.host, self.config.port)
            sockets.append(held)
            env = self._child_env(metrics_dir)
            learners: list[Child] = []
            if self.learner:
                held, self.learner_port = reserve_port(self.config.host, self.learner_port)
                sockets.append(held)
                learners = [Child("learn", 0, self._argv("learn", self.learner_port), env)]
                if not self._start(learners):
                    return self._drain(metrics_dir)
                self._check_leading(learners[0], metrics_dir)
            decide = [
                Child("decide", i, self._argv("decide", self.port), env)
                for i in range(self.workers)
            ]
            if not self._start(decide):
                return self._drain(metrics_dir)
            self._check_health()
            self._serving = True
            print(f"{READY_LINE}{self.port}", flush=True)
            if self.learner:
                print(f"{LEARNER_LINE}{self.learner_port}", flush=True)
            _log.info(
                "serving",
                extra={
                    "port": self.port,
                    "host": self.config.host,
                    "workers": self.workers,
                    "learner_port": self.learner_port if self.learner else None,
                    "metrics_port": self.metrics_port,
                    "metrics_dir": metrics_dir,
                    "pids": [c.pid for c in self._children],
                },
            )
            self._watch(metrics_dir)
            return self._drain(metrics_dir)
        finally:
            self._serving = False
            # Only after a failure (a drained child has exited): stop what runs, learner last.
            self._drain_children(c for c in self._children if c.role == "decide")
            self._drain_children(c for c in self._children if c.role == "learn")
            if httpd is not None:
                httpd.shutdown()
                httpd.server_close()
            for held in sockets:
                held.close()
            shutil.rmtree(metrics_dir, ignore_errors=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        _log.info("signal received", extra={"signal": signal_name(signum)})
        self._stop.set()

    def _ready(self) -> bool:
        """``/healthz``: serving, with at least one worker alive that said it serves."""
        return self._serving and any(
            c.role == "decide" and c.ready.is_set() and c.proc is not None and c.proc.poll() is None
            for c in self._children
        )

    def _argv(self, role: str, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "engine.cli",
            "serve",
            *self.child_flags,
            "--role",
            role,
            "--port",
            str(port),
            "--reuse-port",
            "--workers",
            "1",
            "--metrics-port",
            "0",
        ]

    def _child_env(self, metrics_dir: str) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env[MULTIPROC_ENV] = metrics_dir
        env.pop(ADMIN_TOKEN_ENV, None)
        env.pop(CLIENT_TOKEN_ENV, None)
        if self.config.admin_token is not None:
            env[ADMIN_TOKEN_ENV] = self.config.admin_token
        if self.config.client_tokens:
            env[CLIENT_TOKEN_ENV] = ",".join(self.config.client_tokens)
        return env

    def _start(self, children: list[Child]) -> bool:
        """Start ``children`` and wait until each serves: False when a stop was requested
        meanwhile. Raises ConfigError when one exits before it served."""
        self._children += children
        for child in children:
            child.start(self._setup)
        while not all(c.ready.is_set() for c in children):
            for child in children:
                if child.proc is not None and child.proc.poll() is not None:
                    child.proc.wait()
                    time.sleep(0.2)  # its last line of stderr
                    facts = child.exit_facts()
                    _log.error("child failed to start", extra=facts)
                    how = facts.get("error") or (
                        f"exit code {facts['exit_code']}"
                        if "exit_code" in facts
                        else f"killed by {facts['signal']}"
                    )
                    raise ConfigError(f"the {child.role} process failed to start: {how}")
            if self._stop.wait(_POLL_SECONDS):
                return False
        for child in children:
            child.announced = True
            _log.info("child serving", extra=child.facts())
        return True

    def _check_leading(self, learner: Child, metrics_dir: str) -> None:
        values = _samples(metrics_dir, "nbo_learner_leading")
        standby = sorted(
            labels["campaign"]
            for labels, value in values
            if labels.get("pid") == str(learner.pid) and not value
        )
        if standby:
            raise ConfigError(
                f"campaign {standby[0]}: expected this server's learner to be the campaign's only "
                "learner, got another process holding its learner lock; stop that process, or "
                "serve these workers with --role decide and leave learning to it"
            )

    def _check_health(self) -> None:
        if self.config.tls_enabled:  # the ready lines only: the supervisor holds no certificate
            return
        ports = [self.port, *([self.learner_port] if self.learner else [])]
        for port in ports:
            target = f"{_connect_host(self.config.host)}:{port}"
            with grpc.insecure_channel(target) as channel:
                try:
                    answer = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=10.0, wait_for_ready=True
                    )
                    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
                except grpc.RpcError as exc:
                    status = exc.code().name
            if status != "SERVING":
                raise ConfigError(f"port {port}: expected health SERVING, got {status}")

    def _watch(self, metrics_dir: str) -> None:
        """Restart children that exit, until a stop is requested."""
        while not self._stop.wait(_POLL_SECONDS):
            now = time.monotonic()
            for child in self._children:
                if child.proc is None:
                    if now >= child.restart_at:
                        self._restarts.labels(child.role).inc()
                        child.start(self._setup)
                elif child.proc.poll() is not None:
                    mark_process_dead(child.proc.pid, metrics_dir)
                    stable = now - child.started >= STABLE_SECONDS
                    child.deaths = 1 if stable else child.deaths + 1
                    delay = RESTART_DELAYS[min(child.deaths, len(RESTART_DELAYS)) - 1]
                    time.sleep(0.05)  # its last line of stderr
                    _log.warning(
                        "child exited; restarting", extra=child.exit_facts(restart_in=delay)
                    )
                    child.proc, child.restart_at = None, now + delay
                elif child.ready.is_set() and not child.announced:
                    child.announced = True
                    _log.info("child serving", extra=child.facts())

    def _drain(self, metrics_dir: str) -> int:
        _log.info("shutting down", extra={"grace_seconds": self.config.grace_seconds})
        self._serving = False
        clean = self._drain_children(c for c in self._children if c.role == "decide")
        clean &= self._drain_children(c for c in self._children if c.role == "learn")
        for child in self._children:
            if child.proc is not None:
                mark_process_dead(child.proc.pid, metrics_dir)
        _log.info("stopped", extra={"clean": clean})
        return 0 if clean else 1

    def _drain_children(self, children: Iterable[Child]) -> bool:
        """SIGTERM each running child, wait for all, SIGKILL what outlives the grace period.
        True when every one exited with code 0 by itself."""
        running = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.grace_seconds + KILL_AFTER_SECONDS
        clean = True
        for child in running:
            assert child.proc is not None
            try:
                code = child.proc.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                _log.error("child did not stop in time; killing it", extra=child.facts())
                child.proc.kill()
                code = child.proc.wait()
            if code != 0:
                clean = False
                _log.warning("child stopped", extra=child.exit_facts())
        return clean


def _connect_host(host: str) -> str:
    """Where the supervisor reaches its own children (a wildcard address is not a target)."""
    address = host.strip("[]")
    if address in ("0.0.0.0", ""):
        return "127.0.0.1"
    if ":" in address:
        return "[::1]" if address == "::" else f"[{address}]"
    return address


def _samples(metrics_dir: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of metric ``name`` in the children's files."""
    return [
        (dict(sample.labels), sample.value)
        for metric in MultiProcessCollector(None, path=metrics_dir).collect()
        if metric.name == name
        for sample in metric.samples
    ]

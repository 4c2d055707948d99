"""Prometheus metrics of one server: per-RPC counts and latency, decisions, rewards, pending.

Each server owns its registry, so several servers in one process (tests) do not collide; the
metrics HTTP endpoint serves that registry at ``/metrics`` and the server's readiness at
``/healthz`` (200 when SERVING, else 503), and answers 404 for every other path. Hot-path updates
go through cached label children: a decision costs a few dictionary lookups and counter
increments.

Several processes, one view (``nbo serve --workers N``, :mod:`engine.serving.workers`): when
``PROMETHEUS_MULTIPROC_DIR`` is set before prometheus_client is imported, every value lives in a
file of that directory and the supervisor serves the sum over its children. Counters and
histograms add up across processes. A gauge says how its values combine (``multiprocess_mode``,
given to every gauge here): ``nbo_rpc_in_flight`` is summed over live processes; the journal's
``nbo_pending_decisions`` (every process reads the same shared journal) is the most recent
reading; per-process figures (``nbo_exploration_rate``, ``nbo_mean_reward``,
``nbo_decide_coalesced_rows``, ``nbo_learner_leading``, ``nbo_process_decisions``) keep one
sample per live process with a ``pid`` label. Gauges read through a callback at scrape time
(``set_function``) cannot work there, since the scrape happens in another process: in that mode
each process sets them itself every :data:`GAUGE_REFRESH_SECONDS` instead, so they lag by at most
that much.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from engine.campaign.guardrails import BUDGET_UNITS
from engine.journal.monitor import version_of
from engine.rollout import MODES

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multi-process mode
GAUGE_REFRESH_SECONDS = 0.5  # multi-process mode: how often a process sets its callback gauges
HTTP_TIMEOUT_SECONDS = 10.0  # a scrape connection that sends nothing for this long is closed
# Connections served at once (a thread each); more are answered 503 and closed at once, so idle
# connections cannot pile up threads for HTTP_TIMEOUT_SECONDS each. Prometheus needs one.
MAX_HTTP_CONNECTIONS = 16
_BUSY_BODY = b"too many metrics connections at once; retry\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)

# Latency buckets in seconds, dense where a healthy unary call lands (0.1 ms .. 10 ms).
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
_log = logging.getLogger("nbo.serving")


def multiprocess_mode() -> bool:
    """Whether this process writes its metrics to ``PROMETHEUS_MULTIPROC_DIR`` (one of several
    processes whose metrics a supervisor serves together)."""
    return bool(os.environ.get(MULTIPROC_ENV))


class ServerMetrics:
    """The metrics of one server process.

    Examples
    --------
    >>> m = ServerMetrics()
    >>> m.record_decisions("renewal", ["none", "discount_5", "none"], explored=[False, True, False],
    ...                    control=[True, False, False])
    >>> m.value("nbo_decisions_total", campaign="renewal", offer="none")
    2.0
    >>> round(m.value("nbo_exploration_rate", campaign="renewal"), 3)
    0.333
    >>> m.record_rewards("renewal", ["none", "none"], [10.0, 20.0], duplicates=1)
    >>> m.value("nbo_mean_reward", campaign="renewal", offer="none")
    15.0
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_mode()
        self._watched: list[tuple[Any, Callable[[], float]]] = []
        self._refresher: threading.Thread | None = None
        self._closed = threading.Event()
        r = self.registry
        self.rpc_total = Counter(
            "nbo_rpc", "RPCs handled, by method and status code.", ["method", "code"], registry=r
        )
        self.rpc_latency = Histogram(
            "nbo_rpc_latency_seconds",
            "Server-side RPC latency, by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "nbo_rpc_in_flight", "RPCs being handled now.", registry=r, multiprocess_mode="livesum"
        )
        self._in_flight = 0  # changed on the event loop only: no lock
        self._lock = threading.Lock()
        self._watch(self.in_flight, lambda: self._in_flight)
        self.decisions = Counter(
            "nbo_decisions",
            "Decisions made, by campaign and offer.",
            ["campaign", "offer"],
            registry=r,
        )
        self.explored = Counter(
            "nbo_explored_decisions",
            "Exploratory decisions, by campaign.",
            ["campaign"],
            registry=r,
        )
        self.control = Counter(
            "nbo_control_decisions",
            "Control-group decisions, by campaign.",
            ["campaign"],
            registry=r,
        )
        self.exploration_rate = Gauge(
            "nbo_exploration_rate",
            "Share of this process's decisions that explored, by campaign.",
            ["campaign"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.process_decisions = Gauge(
            "nbo_process_decisions",
            "Decisions this process made, by campaign (under --workers: a sample per live "
            "process, label pid).",
            ["campaign"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.rewards = Counter(
            "nbo_rewards",
            "Rewards applied, by campaign and offer.",
            ["campaign", "offer"],
            registry=r,
        )
        self.duplicate_rewards = Counter(
            "nbo_duplicate_rewards",
            "Reward retries for already rewarded decisions (not applied again), by campaign.",
            ["campaign"],
            registry=r,
        )
        self.mean_reward = Gauge(
            "nbo_mean_reward",
            "Mean net reward (value minus cost, per the campaign's config) of the rewards this "
            "process applied, by campaign and offer.",
            ["campaign", "offer"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.pending = Gauge(
            "nbo_pending_decisions",
            "Decisions waiting for their reward, by campaign.",
            ["campaign"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.coalesced = Gauge(
            "nbo_decide_coalesced_rows",
            "Mean number of concurrent Decide calls decided together, by campaign.",
            ["campaign"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.leading = Gauge(
            "nbo_learner_leading",
            "1 while this process is the campaign's leading learner (it holds the learner lock), "
            "else 0, by campaign.",
            ["campaign"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.lift = Gauge(
            "nbo_lift",
            "The lift monitor's net reward per decision of the policy minus the control "
            "group's, since the last model or mode change (NaN outside the campaign's leading "
            "learner, and before data), by campaign.",
            ["campaign"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.lift_lower = Gauge(
            "nbo_lift_lower",
            "Lower end of the lift's anytime-valid bound (valid at every look; -Inf before 30 "
            "customers per group), by campaign.",
            ["campaign"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.lift_upper = Gauge(
            "nbo_lift_upper",
            "Upper end of the lift's anytime-valid bound: below 0, the policy is worse than the "
            "control and the campaign rolls back, by campaign.",
            ["campaign"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.rolled_back = Gauge(
            "nbo_rolled_back",
            "1 while the campaign is rolled back (its safe mode serves), else 0, by campaign.",
            ["campaign"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.mode = Gauge(
            "nbo_campaign_mode",
            "1 for the campaign's mode (online, shadow or logging), 0 for the others.",
            ["campaign", "mode"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.agreement = Gauge(
            "nbo_shadow_agreement_rate",
            "Shadow mode: share of rewarded shadow decisions where nbo chose the baseline's "
            "offer (NaN without any), by campaign.",
            ["campaign"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.model_version = Gauge(
            "nbo_model_version",
            "Number of the model version this process decides with (v12 -> 12), by campaign.",
            ["campaign"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.budget_used = Gauge(
            "nbo_budget_used",
            "What an offer (or a dimension value, channel=call) with a budget has used (unit "
            "count: decisions; money: summed cost; count_per_day, money_per_day: the same "
            "today, UTC), as this process counts it, by campaign, offer and unit.",
            ["campaign", "offer", "unit"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.budget_limit = Gauge(
            "nbo_budget_limit",
            "An offer's (or dimension value's) budget (unit count, money, count_per_day or "
            "money_per_day), by campaign, offer and unit.",
            ["campaign", "offer", "unit"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._decided: Tally[str] = Tally()
        self._explored: Tally[str] = Tally()
        self._reward_sum: dict[tuple[str, str], float] = {}
        self._reward_count: Tally[tuple[str, str]] = Tally()

    def _watch(self, gauge: Any, read: Callable[[], float]) -> None:
        """Make ``gauge`` report ``read()``: at every scrape, or in multi-process mode every
        :data:`GAUGE_REFRESH_SECONDS` (and now)."""
        if not self.multiprocess:
            gauge.set_function(read)
            return
        gauge.set(read())
        with self._lock:
            self._watched.append((gauge, read))
            if self._refresher is None:
                self._refresher = threading.Thread(
                    target=self._refresh, name="nbo-metrics-gauges", daemon=True
                )
                self._refresher.start()

    def _refresh(self) -> None:
        while not self._closed.wait(GAUGE_REFRESH_SECONDS):
            with self._lock:
                watched = list(self._watched)
            for gauge, read in watched:
                try:
                    gauge.set(read())
                except Exception:  # a journal closing at shutdown: keep the last value
                    _log.debug("metrics gauge not refreshed", exc_info=True)

    def close(self) -> None:
        """Stop setting gauges (multi-process mode); the values stay as last set."""
        self._closed.set()
        if self._refresher is not None:
            self._refresher.join(5)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def calls_started(self) -> None:
        """One more RPC in progress (``nbo_rpc_in_flight``); called on the event loop only."""
        self._in_flight += 1

    def calls_finished(self) -> None:
        """One RPC fewer in progress; called on the event loop only."""
        self._in_flight -= 1

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        """Count one finished RPC and its latency."""
        self._child(self.rpc_total, method, code).inc()
        self._child(self.rpc_latency, method).observe(seconds)

    def record_decisions(
        self,
        campaign: str,
        offer_ids: Sequence[str],
        explored: Sequence[bool],
        control: Sequence[bool],
    ) -> None:
        """Count decisions (one entry per decision in each argument)."""
        if len(offer_ids) == 1:  # the unary Decide path: skip the tallying
            self._child(self.decisions, campaign, offer_ids[0]).inc()
        else:
            for offer, count in Tally(offer_ids).items():
                self._child(self.decisions, campaign, offer).inc(count)
        n_explored = sum(explored)
        n_control = sum(control)
        if n_explored:
            self._child(self.explored, campaign).inc(n_explored)
        if n_control:
            self._child(self.control, campaign).inc(n_control)
        with self._lock:
            first = campaign not in self._decided
            self._decided[campaign] += len(offer_ids)
            self._explored[campaign] += n_explored
        if first:
            self._watch(
                self.exploration_rate.labels(campaign),
                lambda: self._explored[campaign] / max(self._decided[campaign], 1),
            )

    def record_rewards(
        self, campaign: str, offer_ids: Iterable[str], values: Iterable[float], duplicates: int = 0
    ) -> None:
        """Count applied rewards (offer of the rewarded decision and its net reward) and retries."""
        batch: dict[str, list[float]] = {}
        for offer, value in zip(offer_ids, values, strict=True):
            total = batch.setdefault(offer, [0.0, 0.0])
            total[0] += float(value)
            total[1] += 1.0
        means = {}
        with self._lock:
            for offer, (value_sum, count) in batch.items():
                key = (campaign, offer)
                self._reward_sum[key] = self._reward_sum.get(key, 0.0) + value_sum
                self._reward_count[key] += int(count)
                means[offer] = self._reward_sum[key] / self._reward_count[key]
        for offer, (_, count) in batch.items():
            self._child(self.rewards, campaign, offer).inc(count)
            self._child(self.mean_reward, campaign, offer).set(means[offer])
        if duplicates:
            self._child(self.duplicate_rewards, campaign).inc(duplicates)

    def track_campaign(
        self,
        campaign: str,
        pending: Callable[[], float],
        coalesced: Callable[[], float],
        leading: Callable[[], bool] = lambda: False,
    ) -> None:
        """Read a campaign's pending decisions, mean coalesced Decide batch and leadership at
        every scrape; count this process's decisions of it from now."""
        self._watch(self.pending.labels(campaign), pending)
        self._watch(self.coalesced.labels(campaign), coalesced)
        self._watch(self.leading.labels(campaign), lambda: float(leading()))
        self._watch(self.process_decisions.labels(campaign), lambda: self._decided[campaign])

    def track_rollout(self, campaign: str, engine: Any) -> None:
        """Read a campaign's rollout (mode, state, the lift monitor), model version and budgets
        at every scrape (one monitor read per second at most)."""
        status = _every_second(engine.rollout_status)
        budgets = _every_second(engine.budgets)

        def field(name: str) -> Callable[[], float]:
            def read() -> float:
                s = status()
                value = None if s is None else getattr(s, name)
                return math.nan if value is None else float(value)

            return read

        self._watch(self.lift.labels(campaign), field("lift"))
        self._watch(self.lift_lower.labels(campaign), field("lower"))
        self._watch(self.lift_upper.labels(campaign), field("upper"))
        self._watch(self.agreement.labels(campaign), field("agreement_rate"))
        self._watch(
            self.rolled_back.labels(campaign),
            lambda: float(engine.rollout_state().state == "rolled_back"),
        )

        def in_mode(mode: str) -> Callable[[], float]:
            return lambda: float(engine.rollout_state().mode == mode)

        def used(offer: str, unit: str) -> Callable[[], float]:
            return lambda: float(budgets()[offer][f"used_{unit}"] or 0.0)

        for mode in MODES:
            self._watch(self.mode.labels(campaign, mode), in_mode(mode))
        self._watch(
            self.model_version.labels(campaign), lambda: float(version_of(engine.model_version))
        )
        for offer, budget in engine.budgets().items():
            for unit in BUDGET_UNITS:
                limit = budget[f"limit_{unit}"]
                if limit is None:
                    continue
                self.budget_limit.labels(campaign, offer, unit).set(limit)
                self._watch(self.budget_used.labels(campaign, offer, unit), used(offer, unit))

    def decisions_made(self, campaign: str) -> int:
        """Decisions this process made for ``campaign``."""
        with self._lock:
            return self._decided[campaign]

    def value(self, name: str, **labels: str) -> float | None:
        """Current value of a sample (for tests and the admin API); None when absent."""
        return self.registry.get_sample_value(name, labels)

    def serve_http(
        self, port: int, host: str = "127.0.0.1", ready: Callable[[], bool] = lambda: True
    ) -> tuple[ThreadingHTTPServer, int]:
        """Serve this server's registry: see :func:`serve_metrics`."""
        return serve_metrics(self.registry, port, host, ready)


def _every_second(read: Callable[[], Any]) -> Callable[[], Any]:
    """``read``, called at most once a second: the gauges of one scrape share its answer."""
    cache: dict[str, Any] = {"at": -1.0, "value": None}

    def cached() -> Any:
        now = time.monotonic()
        if now - cache["at"] >= 1.0:
            cache["value"], cache["at"] = read(), now
        return cache["value"]

    return cached


def serve_metrics(
    registry: CollectorRegistry,
    port: int,
    host: str = "127.0.0.1",
    ready: Callable[[], bool] = lambda: True,
) -> tuple[ThreadingHTTPServer, int]:
    """Serve ``registry`` at ``/metrics`` and ``/healthz`` (``ready()``: 200, else 503) on a
    daemon thread, at most ``MAX_HTTP_CONNECTIONS`` connections at once.

    Returns the HTTP server (``shutdown()`` it) and the port it bound.
    """

    class Handler(BaseHTTPRequestHandler):
        timeout = HTTP_TIMEOUT_SECONDS

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                serving = ready()
                self._answer(200 if serving else 503, b"ok\n" if serving else b"not serving\n")
            else:
                self._answer(404, b"not found: this endpoint serves /metrics and /healthz\n")

        def _answer(self, code: int, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes are not worth a log line each

    httpd = _BoundedHTTPServer((host, port), Handler)
    threading.Thread(target=httpd.serve_forever, name="nbo-metrics", daemon=True).start()
    return httpd, int(httpd.server_port)


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``MAX_HTTP_CONNECTIONS`` of them; the accept loop answers
    any further connection 503 without a thread (a non-blocking write: it never waits on a peer).
    """

    request_queue_size = 128  # (socketserver's 5 drops connects while a burst is accepted)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_HTTP_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.setblocking(False)
                request.send(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

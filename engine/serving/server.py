"""Build, start and stop the nbo gRPC server.

``create_server(config)`` returns ``(server, port)`` with the port bound and nothing serving yet,
so tests start a real server on port 0 (a server sharing a known port, ``reuse_port``, binds it
in ``start()`` once its campaigns are loaded). ``server.start()`` opens the port with health
NOT_SERVING, loads and warms every campaign, then switches health to SERVING. ``server.stop()``
reports NOT_SERVING, refuses new calls, lets in-flight calls finish within the grace period,
then snapshots every campaign and closes its journal. ``serve(config)`` does all of that around
SIGTERM/SIGINT.

The gRPC server is a ``grpc.aio`` server on an event loop of its own thread: streams (health
watches, reflection) and refusals cost no thread; unary Decide and Reward (and DecideBatch of at
most 64 rows) run on the loop as coalesced, bounded Engine batches (:mod:`engine.serving.batcher`);
the other unary RPCs' blocking Engine calls run in a pool of ``config.threads`` workers (see
:mod:`engine.serving.limits`). The methods of :class:`NboServer` stay synchronous for the caller.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import stat
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from engine.errors import ConfigError, ServiceUnavailableError
from engine.serving.auth import (
    AdminAuthInterceptor,
    AdminDisabledInterceptor,
    ClientAuthInterceptor,
    PeerThrottle,
    TokenSet,
)
from engine.serving.batcher import DecideBatcher
from engine.serving.campaigns import Campaigns, DecisionObserver, EngineFactory, open_engine
from engine.serving.campaigns import open_engine as default_engine
from engine.serving.config import ServeConfig, split_client_token
from engine.serving.interceptors import UnaryInterceptor, server_interceptors
from engine.serving.limits import StreamGuardInterceptor, UnaryLimitInterceptor, channel_options
from engine.serving.logs import LOGGER_NAME
from engine.serving.metrics import ServerMetrics
from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from engine.serving.servicers import AdminServicer, OfferServicer, Pooled

if TYPE_CHECKING:
    from engine.core import DecisionRecord, Engine
    from engine.journal import JournalBackend

SERVICE_NAMES = tuple(s.full_name for s in pb.DESCRIPTOR.services_by_name.values())
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
_log = logging.getLogger(LOGGER_NAME)
_T = TypeVar("_T")
HEALTH_CHECK_SECONDS = 1.0  # how often a serving server asks its journals whether they answer


def _methods(service: str) -> tuple[str, ...]:
    return tuple(m.name for m in pb.DESCRIPTOR.services_by_name[service].methods)


class _LoopThread:
    """An asyncio event loop running on a daemon thread; ``run`` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="nbo-grpc", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    @property
    def closed(self) -> bool:
        return self.loop.is_closed()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()


class NboServer:
    """A gRPC server hosting campaigns, with health, reflection, metrics and graceful stop.

    Use :func:`create_server` to build one.
    """

    def __init__(
        self,
        config: ServeConfig,
        loop: _LoopThread,
        grpc_server: grpc.aio.Server,
        port: int,
        campaigns: Campaigns,
        health_servicer: HealthServicer,
        metrics: ServerMetrics,
        pool: futures.ThreadPoolExecutor,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.config = config
        self.port = port
        self.campaigns = campaigns
        self.metrics = metrics
        self.metrics_port: int | None = None
        self._loop = loop
        self._grpc = grpc_server
        self._health = health_servicer
        self._pool = pool
        self._metrics_httpd: Any = None
        self._serving = False
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopping = False
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None
        self._credentials = credentials  # for a server that binds its port late

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, status)

    def start(self) -> NboServer:
        """Open the port (health NOT_SERVING), load and warm every campaign, then SERVING.

        A server sharing a known port with other processes (``reuse_port``) opens it only after
        loading, so no connection reaches it before it can serve."""
        late = _binds_late(self.config)
        self._loop.run(self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING))
        if not late:
            self._loop.run(self._grpc.start())
        if self.config.metrics_port:
            self._metrics_httpd, self.metrics_port = self.metrics.serve_http(
                self.config.metrics_port, self.config.metrics_host, lambda: self._serving
            )
        started = time.perf_counter()
        try:
            self.campaigns.load()
            _check_token_campaigns(self.config, self.campaigns.names())
            if late:
                self._loop.run(_bind(self._grpc, self.config, self._credentials))
                self._loop.run(self._grpc.start())
        except BaseException:
            self._loop.run(self._grpc.stop(None))
            self._shutdown_metrics()
            self._release()
            raise
        for name, engine, decider in self.campaigns:
            self.metrics.track_campaign(
                name, _pending_counter(engine.journal), _mean_rows_of(decider), _leads(engine)
            )
            self.metrics.track_rollout(name, engine)
        self._loop.run(self._set_health(health_pb2.HealthCheckResponse.SERVING))
        self._serving = True
        self._watcher = threading.Thread(
            target=self._watch_journals, name="nbo-health", daemon=True
        )
        self._watcher.start()
        _warn_about_open_services(self.config, self.port)
        _log.info(
            "serving",
            extra={
                "port": self.port,
                "host": self.config.host,
                "campaigns": self.campaigns.names(),
                "tls": self.config.tls_enabled,
                "client_auth": _client_auth_label(self.config),
                "admin": _admin_label(self.config),
                "metrics_port": self.metrics_port,
                "load_seconds": round(time.perf_counter() - started, 3),
            },
        )
        return self

    def _watch_journals(self) -> None:
        """NOT_SERVING while a campaign's journal does not answer (a replica that lost its
        database), SERVING again once it does; one log line at each change."""
        reachable = True
        while not self._watching.wait(HEALTH_CHECK_SECONDS):
            now = self.campaigns.reachable()
            if now == reachable or self._stopping:
                continue
            reachable = now
            status = health_pb2.HealthCheckResponse.SERVING
            if not now:
                status = health_pb2.HealthCheckResponse.NOT_SERVING
            try:
                self._loop.run(self._set_health(status))
            except RuntimeError:  # the loop closed: stopping
                return
            self._serving = now
            if now:
                _log.info("journal reachable again: SERVING")
            else:
                _log.warning("journal unreachable: NOT_SERVING until it answers")

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, drain in-flight calls within ``grace`` seconds, snapshot and close.

        Idempotent; safe to call from a signal-handling thread while another thread waits.
        """
        with self._stop_lock:
            if self._stopping:
                self._stopped.wait()
                return
            self._stopping = True
        grace = self.config.grace_seconds if grace is None else grace
        _log.info("shutting down", extra={"grace_seconds": grace})
        self._serving = False
        self._watching.set()
        self.campaigns.cancel()
        if self._watcher is not None:
            self._watcher.join(HEALTH_CHECK_SECONDS + 5)
        try:
            if not self._loop.closed:  # closed when start() failed
                self._loop.run(self._health.enter_graceful_shutdown())
                self._loop.run(self._grpc.stop(grace))
            # Calls cut off at the end of the grace period may still be inside the Engine: they
            # finish before the journals close.
            self._pool.shutdown(wait=True)
            self._shutdown_metrics()  # before the journals close: a scrape reads them
            self.campaigns.close()
        finally:
            self._shutdown_metrics()
            self._release()
            self._stopped.set()
            _log.info("stopped")

    def _release(self) -> None:
        self._pool.shutdown(wait=True)
        self._loop.close()

    def _shutdown_metrics(self) -> None:
        self.metrics.close()
        if self._metrics_httpd is not None:
            self._metrics_httpd.shutdown()
            self._metrics_httpd.server_close()
            self._metrics_httpd = None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` has finished; False on timeout."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> NboServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _client_auth_label(config: ServeConfig) -> str:
    kinds = [k for k, on in (("token", config.client_tokens), ("mtls", config.tls_client_ca)) if on]
    return "+".join(kinds) or "none"


def _admin_label(config: ServeConfig) -> str:
    if config.admin_token is not None:
        return "token"
    return "open" if config.insecure_admin else "disabled"


def _warn_about_open_services(config: ServeConfig, port: int) -> None:
    if not config.client_auth_enabled:
        _log.warning(
            "OfferService is open: no client token (--client-token or NBO_CLIENT_TOKEN) and no "
            "client CA (--tls-client-ca) is set, so anyone who reaches "
            f"{config.host}:{port} can decide and reward"
        )
    if config.admin_token is None and config.insecure_admin:
        _log.warning(
            "AdminService is open to anyone (--insecure-admin): snapshots and model promotion "
            "need no token; use --admin-token outside development"
        )
    if config.tls_key is not None:
        _warn_about_key_mode(config.tls_key)


def _warn_about_key_mode(key: Path) -> None:
    try:
        mode = stat.S_IMODE(key.stat().st_mode)
    except OSError:  # read once already, at create_server: gone since, nothing to say
        return
    if mode & 0o077:
        _log.warning(
            f"TLS key {key} has mode {mode:04o}: group or others may read it; "
            f"make it owner-only (chmod 600 {key})",
            extra={"tls_key": str(key), "mode": f"{mode:04o}"},
        )


def _check_token_campaigns(config: ServeConfig, hosted: list[str]) -> None:
    for entry in config.client_tokens:
        campaign, _ = split_client_token(entry)
        if campaign is not None and campaign not in hosted:
            raise ConfigError(
                f"client_tokens: expected CAMPAIGN=TOKEN for a hosted campaign {hosted} (or "
                f"*=TOKEN for a token containing '='), got campaign {campaign!r}"
            )


def _pending_counter(journal: JournalBackend) -> Callable[[], float]:
    return lambda: journal.counts()["pending"]


def _decision_counter(metrics: ServerMetrics) -> DecisionObserver:
    def observe(campaign: str, records: Sequence[DecisionRecord]) -> None:
        metrics.record_decisions(
            campaign,
            [r.offer_id for r in records],
            [r.explored for r in records],
            [r.control for r in records],
        )

    return observe


def _mean_rows_of(decider: DecideBatcher) -> Callable[[], float]:
    return lambda: decider.mean_rows


def _leads(engine: Engine) -> Callable[[], bool]:
    return lambda: engine.leading


def _read_pem(path: Path, field: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{field}: expected a readable PEM file, got {str(path)!r} ({exc.strerror})"
        ) from exc


def create_server(
    config: ServeConfig, open_engine: EngineFactory = open_engine
) -> tuple[NboServer, int]:
    """Build a server for ``config`` and bind its port; nothing runs until ``start()``.

    Parameters
    ----------
    config : ServeConfig
        Campaigns, address (0 = any free port), TLS, tokens, limits, metrics.
    open_engine : callable, optional
        ``(config_path, data_dir) -> Engine``; defaults to ``Engine.from_config``.

    Returns
    -------
    (NboServer, int)
        The server and the port it bound.
    """
    config = config.with_env()
    credentials = _server_credentials(config)
    metrics = ServerMetrics()
    if open_engine is default_engine and config.model_dir is not None:
        open_engine = functools.partial(default_engine, model_root=config.model_dir)
    campaigns = Campaigns(
        config.campaigns, config.data_dir, open_engine, observe_decisions=_decision_counter(metrics)
    )
    loop = _LoopThread()
    pool = futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="nbo-rpc")
    try:
        grpc_server, health_servicer, port = loop.run(
            _build(config, credentials, metrics, campaigns, pool)
        )
    except BaseException:
        pool.shutdown(wait=False)
        loop.close()
        raise
    server = NboServer(
        config, loop, grpc_server, port, campaigns, health_servicer, metrics, pool, credentials
    )
    return server, port


def _server_credentials(config: ServeConfig) -> grpc.ServerCredentials | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    pair = (_read_pem(config.tls_key, "tls_key"), _read_pem(config.tls_cert, "tls_cert"))
    if config.tls_client_ca is None:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair],
        root_certificates=_read_pem(config.tls_client_ca, "tls_client_ca"),
        require_client_auth=True,
    )


def _only_campaign(campaigns: Campaigns) -> Callable[[], str | None]:
    def only() -> str | None:
        names = campaigns.names()
        return names[0] if len(names) == 1 else None

    return only


def _auth_interceptors(config: ServeConfig, campaigns: Campaigns) -> list[UnaryInterceptor]:
    throttle = PeerThrottle(limit=config.auth_failure_limit)
    chain: list[UnaryInterceptor] = []
    if config.admin_token is not None:
        chain.append(AdminAuthInterceptor(config.admin_token, throttle))
    elif not config.insecure_admin:
        chain.append(AdminDisabledInterceptor())
    if config.client_tokens:
        tokens = TokenSet(
            (campaign or "*", token)
            for campaign, token in map(split_client_token, config.client_tokens)
        )
        chain.append(ClientAuthInterceptor(tokens, throttle, _only_campaign(campaigns)))
    return chain


async def _build(
    config: ServeConfig,
    credentials: grpc.ServerCredentials | None,
    metrics: ServerMetrics,
    campaigns: Campaigns,
    pool: futures.ThreadPoolExecutor,
) -> tuple[grpc.aio.Server, HealthServicer, int]:
    interceptors = [
        StreamGuardInterceptor(config.max_streams, config.stream_idle_seconds),
        *server_interceptors(
            metrics,
            UnaryLimitInterceptor(config.max_concurrent_rpcs),
            *_auth_interceptors(config, campaigns),
        ),
    ]
    grpc_server = grpc.aio.server(
        interceptors=interceptors,
        options=channel_options(
            config.max_message_bytes,
            config.connection_idle_seconds,
            config.connection_age_seconds,
            config.reuse_port,
        ),
    )
    offers = OfferServicer(campaigns, metrics, config.max_batch_rows, pool)
    admin = AdminServicer(campaigns)
    pb_grpc.add_OfferServiceServicer_to_server(
        Pooled(offers, pool, _methods("OfferService")), grpc_server
    )
    pb_grpc.add_AdminServiceServicer_to_server(
        Pooled(admin, pool, _methods("AdminService")), grpc_server
    )
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), grpc_server
    )
    port = config.port
    if not _binds_late(config):
        port = await _bind(grpc_server, config, credentials)
    return grpc_server, health_servicer, port


def _binds_late(config: ServeConfig) -> bool:
    """A server sharing a known port (``--reuse-port``: a worker of ``--workers``) listens only
    once its campaigns are loaded: a socket listening earlier would be given connections it
    could only answer UNAVAILABLE while the other workers serve."""
    return config.reuse_port and config.port != 0


async def _bind(
    grpc_server: grpc.aio.Server, config: ServeConfig, credentials: grpc.ServerCredentials | None
) -> int:
    address = f"{config.host}:{config.port}"
    try:
        if credentials is not None:
            return grpc_server.add_secure_port(address, credentials)
        return grpc_server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(
            f"port: expected a free port to listen on, got {address} ({exc})"
        ) from exc


def serve(config: ServeConfig, open_engine: EngineFactory = open_engine) -> int:
    """Run a server until SIGTERM or SIGINT, then stop it gracefully. Returns an exit code."""
    server, port = create_server(config, open_engine)
    stop_requested = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        _log.info("signal received", extra={"signal": signal.Signals(signum).name})
        stop_requested.set()
        server.campaigns.cancel()  # a start still waiting for a journal gives up

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            server.start()
        except ServiceUnavailableError:
            if stop_requested.is_set():
                return 0  # stopped while waiting for a journal: nothing was served
            raise
        print(f"nbo serve: listening on port {port}", flush=True)
        while not stop_requested.wait(0.5):
            pass
        server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0

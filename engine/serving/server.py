"""Build, start and stop the nbo gRPC server.

``create_server(config)`` returns ``(server, port)`` without starting anything, so tests start a
real server on port 0. ``server.start()`` opens the port with health NOT_SERVING, loads and warms
every campaign, then switches health to SERVING. ``server.stop()`` reports NOT_SERVING, refuses new
calls, lets in-flight calls finish within the grace period, then snapshots every campaign and
closes its journal. ``serve(config)`` does all of that around SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from engine.errors import ConfigError
from engine.serving.batcher import DecideBatcher
from engine.serving.campaigns import Campaigns, EngineFactory, open_engine
from engine.serving.config import ServeConfig
from engine.serving.interceptors import server_interceptors
from engine.serving.logs import LOGGER_NAME
from engine.serving.metrics import ServerMetrics
from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from engine.serving.servicers import AdminServicer, OfferServicer

if TYPE_CHECKING:
    from engine.journal import JournalBackend

SERVICE_NAMES = tuple(s.full_name for s in pb.DESCRIPTOR.services_by_name.values())
_log = logging.getLogger(LOGGER_NAME)


class NboServer:
    """A gRPC server hosting campaigns, with health, reflection, metrics and graceful stop.

    Use :func:`create_server` to build one.
    """

    def __init__(
        self,
        config: ServeConfig,
        grpc_server: grpc.Server,
        port: int,
        campaigns: Campaigns,
        health_servicer: health.HealthServicer,
        metrics: ServerMetrics,
    ) -> None:
        self.config = config
        self.port = port
        self.campaigns = campaigns
        self.metrics = metrics
        self.metrics_port: int | None = None
        self._grpc = grpc_server
        self._health = health_servicer
        self._metrics_httpd: Any = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopping = False

    def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            self._health.set(name, status)

    def start(self) -> NboServer:
        """Open the port (health NOT_SERVING), load and warm every campaign, then SERVING."""
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self._grpc.start()
        if self.config.metrics_port:
            self._metrics_httpd, self.metrics_port = self.metrics.serve_http(
                self.config.metrics_port, self.config.metrics_host
            )
        started = time.perf_counter()
        try:
            self.campaigns.load()
        except BaseException:
            self._grpc.stop(None)
            self._shutdown_metrics()
            raise
        for name, engine, decider in self.campaigns:
            self.metrics.track_campaign(
                name, _pending_counter(engine.journal), _mean_rows_of(decider)
            )
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        _log.info(
            "serving",
            extra={
                "port": self.port,
                "campaigns": self.campaigns.names(),
                "tls": self.config.tls_enabled,
                "admin_token": self.config.admin_token is not None,
                "metrics_port": self.metrics_port,
                "load_seconds": round(time.perf_counter() - started, 3),
            },
        )
        return self

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
        try:
            self._health.enter_graceful_shutdown()
            self._grpc.stop(grace).wait()
            self._shutdown_metrics()  # before the journals close: a scrape reads them
            self.campaigns.close()
        finally:
            self._shutdown_metrics()
            self._stopped.set()
            _log.info("stopped")

    def _shutdown_metrics(self) -> None:
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


def _pending_counter(journal: JournalBackend) -> Callable[[], float]:
    return lambda: journal.counts()["pending"]


def _mean_rows_of(decider: DecideBatcher) -> Callable[[], float]:
    return lambda: decider.mean_rows


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
        Campaigns, port (0 = any free port), TLS, token, limits, metrics.
    open_engine : callable, optional
        ``(config_path, data_dir) -> Engine``; defaults to ``Engine.from_config``.

    Returns
    -------
    (NboServer, int)
        The server and the port it bound.
    """
    config = config.with_env()
    metrics = ServerMetrics()
    campaigns = Campaigns(config.campaigns, config.data_dir, open_engine)
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # Without this a second server on the same port would start silently (gRPC sets
        # SO_REUSEPORT by default on Linux); `--workers` turns it back on deliberately.
        ("grpc.so_reuseport", 0),
    ]
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="nbo-rpc"),
        interceptors=server_interceptors(metrics, config.admin_token),
        options=options,
        maximum_concurrent_rpcs=config.max_concurrent_rpcs or None,
    )
    pb_grpc.add_OfferServiceServicer_to_server(
        OfferServicer(campaigns, metrics, config.max_batch_rows), grpc_server
    )
    pb_grpc.add_AdminServiceServicer_to_server(AdminServicer(campaigns), grpc_server)
    health_servicer = health.HealthServicer(
        experimental_non_blocking=True,
        experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=1),
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), grpc_server
    )
    address = f"{config.host}:{config.port}"
    try:
        if config.tls_cert is not None and config.tls_key is not None:
            credentials = grpc.ssl_server_credentials(
                [(_read_pem(config.tls_key, "tls_key"), _read_pem(config.tls_cert, "tls_cert"))]
            )
            port = grpc_server.add_secure_port(address, credentials)
        else:
            port = grpc_server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(
            f"port: expected a free port to listen on, got {address} ({exc})"
        ) from exc
    return NboServer(config, grpc_server, port, campaigns, health_servicer, metrics), port


def serve(config: ServeConfig, open_engine: EngineFactory = open_engine) -> int:
    """Run a server until SIGTERM or SIGINT, then stop it gracefully. Returns an exit code."""
    server, port = create_server(config, open_engine)
    stop_requested = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        _log.info("signal received", extra={"signal": signal.Signals(signum).name})
        stop_requested.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        print(f"nbo serve: listening on port {port}", flush=True)
        while not stop_requested.wait(0.5):
            pass
        server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0

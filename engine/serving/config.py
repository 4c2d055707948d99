"""Settings of one ``nbo serve`` process.

Every setting has a command-line flag of the same name (``max_message_bytes`` is
``--max-message-bytes``); a TOML file given with ``--server-config`` may hold a ``[server]`` table
with the same keys, and flags given on the command line win over it. The admin token may also
come from the ``NBO_ADMIN_TOKEN`` environment variable and client tokens from ``NBO_CLIENT_TOKEN``
(several separated by commas), which keeps them out of process listings.

The defaults listen on loopback only (``127.0.0.1`` for gRPC and metrics): exposing the service is
a decision (``--host 0.0.0.0``), best taken together with client tokens or mutual TLS.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

ADMIN_TOKEN_ENV = "NBO_ADMIN_TOKEN"
CLIENT_TOKEN_ENV = "NBO_CLIENT_TOKEN"
_LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one gRPC server process hosting one or more campaigns.

    Parameters
    ----------
    campaigns : tuple of Path
        Campaign config files (e.g. ``examples/renewal.toml``); each becomes one Engine.
    data_dir : Path
        Directory of the journals and snapshots (created with owner-only permissions).
    host : str
        Address to listen on.
    port : int
        Port to listen on; 0 picks a free port (``create_server`` returns it).
    reuse_port : bool
        Share the port with other processes that set this too (``SO_REUSEPORT``: the kernel
        spreads connections over them; what the workers of ``nbo serve --workers`` do). Off, a
        port another server holds fails the start.
    threads : int
        Size of the thread pool that runs the RPC handlers not run on the event loop (large
        DecideBatch, RewardBatch, AdminService).
    max_concurrent_rpcs : int
        Calls in progress beyond this get RESOURCE_EXHAUSTED (overload protection); 0 = no limit.
    max_message_bytes : int
        Largest request or response message accepted, in bytes. 4 MiB (gRPC's own default) holds
        a 10,000-row dense batch of 32 features with room to spare, and keeps the memory that
        ``max_concurrent_rpcs`` calls in progress can pin to about 1 GiB.
    max_batch_rows : int
        Largest number of rows (or rewards) in one batch call.
    tls_cert, tls_key : Path or None
        PEM certificate chain and private key; both or neither. When set the port speaks TLS only.
    admin_token : str or None
        Bearer token required by AdminService calls. None refuses every AdminService call
        (PERMISSION_DENIED) unless ``insecure_admin`` is set.
    insecure_admin : bool
        Open AdminService to anyone when no admin token is set (development only; a warning is
        logged at start). Ignored when a token is set.
    client_tokens : tuple of str
        Bearer tokens OfferService calls must carry: ``TOKEN`` (every campaign) or
        ``CAMPAIGN=TOKEN`` (that campaign only); a token that itself contains ``=`` is written
        ``*=TOKEN``. Empty (and no ``tls_client_ca``): OfferService is open, with a warning.
    tls_client_ca : Path or None
        PEM certificate(s) of the CA that signs client certificates: with it every connection
        must present a client certificate that CA signed (mutual TLS; needs ``tls_cert``).
    auth_failure_limit : int
        Wrong tokens a peer (client address) may send before it is refused for a while
        (RESOURCE_EXHAUSTED, 1 s and doubling with each further failure, up to 5 min).
    max_streams : int
        Long-lived streaming calls (Health.Watch, server reflection) open at once; more get
        RESOURCE_EXHAUSTED. They cost no handler thread, only memory.
    stream_idle_seconds : float
        A client-streaming call (reflection) that sends nothing for this long is ended.
    metrics_port : int
        Port of the HTTP endpoint serving Prometheus ``/metrics`` and ``/healthz`` (everything
        else is 404); 0 turns it off.
    metrics_host : str
        Address of the metrics endpoint.
    grace_seconds : float
        On SIGTERM/SIGINT, how long in-flight calls may take to finish before they are cancelled.
    log_level : str
        One of "debug" (also logs every successful call), "info", "warning", "error".

    Examples
    --------
    >>> cfg = ServeConfig(campaigns=(Path("examples/renewal.toml"),), port=0)
    >>> cfg.port, cfg.metrics_port, cfg.tls_enabled
    (0, 0, False)
    >>> ServeConfig(tls_cert=Path("server.pem"))
    Traceback (most recent call last):
    ...
    engine.errors.ConfigError: tls_cert and tls_key: expected both paths or neither, got only...
    """

    campaigns: tuple[Path, ...] = ()
    data_dir: Path = Path("nbo-data")
    model_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 50051
    reuse_port: bool = False
    threads: int = 8
    max_concurrent_rpcs: int = 256
    max_message_bytes: int = 4 * 1024 * 1024
    max_batch_rows: int = 10_000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    admin_token: str | None = field(default=None, repr=False)
    insecure_admin: bool = False
    client_tokens: tuple[str, ...] = field(default=(), repr=False)
    auth_failure_limit: int = 10
    max_streams: int = 1000
    stream_idle_seconds: float = 60.0
    connection_idle_seconds: float = 300.0
    connection_age_seconds: float = 1800.0
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    grace_seconds: float = 10.0
    log_level: str = "info"

    def __post_init__(self) -> None:
        object.__setattr__(self, "campaigns", tuple(Path(p) for p in self.campaigns))
        object.__setattr__(self, "client_tokens", tuple(self.client_tokens))
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 65535:
                raise ConfigError(f"{name}: expected an integer port in [0, 65535], got {value!r}")
        for name in (
            "threads",
            "max_message_bytes",
            "max_batch_rows",
            "max_streams",
            "auth_failure_limit",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, got {value!r}")
        if not isinstance(self.max_concurrent_rpcs, int) or self.max_concurrent_rpcs < 0:
            raise ConfigError(
                f"max_concurrent_rpcs: expected an integer >= 0, got {self.max_concurrent_rpcs!r}"
            )
        if not self.grace_seconds >= 0:
            raise ConfigError(f"grace_seconds: expected a number >= 0, got {self.grace_seconds!r}")
        for name in ("connection_idle_seconds", "connection_age_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: expected a number > 0, got {getattr(self, name)!r}")
        if not self.stream_idle_seconds > 0:
            raise ConfigError(
                f"stream_idle_seconds: expected a number > 0, got {self.stream_idle_seconds!r}"
            )
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError(
                "tls_client_ca: expected tls_cert and tls_key too (mutual TLS needs the server's "
                "own certificate), got tls_client_ca alone"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            given = "tls_cert" if self.tls_cert is not None else "tls_key"
            raise ConfigError(
                f"tls_cert and tls_key: expected both paths or neither, got only {given}"
            )
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError(
                f"log_level: expected one of {list(_LOG_LEVELS)}, got {self.log_level!r}"
            )
        if self.admin_token is not None and not self.admin_token.strip():
            raise ConfigError("admin_token: expected a non-empty token, got an empty string")
        for entry in self.client_tokens:
            split_client_token(entry)

    @property
    def client_auth_enabled(self) -> bool:
        """True when OfferService calls need a client token or a client certificate."""
        return bool(self.client_tokens) or self.tls_client_ca is not None

    @property
    def tls_enabled(self) -> bool:
        """True when the server listens with TLS."""
        return self.tls_cert is not None

    def with_env(self, environ: dict[str, str] | None = None) -> ServeConfig:
        """Return a copy with tokens taken from the environment where none is set.

        ``NBO_ADMIN_TOKEN`` gives the admin token; ``NBO_CLIENT_TOKEN`` the client tokens,
        separated by commas, each ``TOKEN`` or ``CAMPAIGN=TOKEN``.

        Examples
        --------
        >>> ServeConfig().with_env({"NBO_ADMIN_TOKEN": "s3cret"}).admin_token
        's3cret'
        >>> ServeConfig(admin_token="flag").with_env({"NBO_ADMIN_TOKEN": "env"}).admin_token
        'flag'
        >>> ServeConfig().with_env({"NBO_CLIENT_TOKEN": "a1, renewal=b2"}).client_tokens
        ('a1', 'renewal=b2')
        """
        env = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        token = env.get(ADMIN_TOKEN_ENV)
        if self.admin_token is None and token:
            changes["admin_token"] = token
        clients = [t.strip() for t in env.get(CLIENT_TOKEN_ENV, "").split(",") if t.strip()]
        if not self.client_tokens and clients:
            changes["client_tokens"] = tuple(clients)
        return dataclasses.replace(self, **changes) if changes else self


def split_client_token(entry: str) -> tuple[str | None, str]:
    """``(campaign, token)`` of a client token entry; campaign None means every campaign.

    ``TOKEN`` is valid for every campaign, ``CAMPAIGN=TOKEN`` for that one, ``*=TOKEN`` (the
    form for a token that contains ``=`` itself) for every campaign.

    Examples
    --------
    >>> split_client_token("k3y"), split_client_token("renewal=k3y"), split_client_token("*=a==")
    ((None, 'k3y'), ('renewal', 'k3y'), (None, 'a=='))
    >>> split_client_token("renewal=")
    Traceback (most recent call last):
    ...
    engine.errors.ConfigError: client_tokens: expected TOKEN or CAMPAIGN=TOKEN with both parts...
    """
    scope, sep, token = entry.partition("=")
    if not sep:
        scope, token = "*", entry
    if not token.strip() or not scope.strip() or token != token.strip():
        raise ConfigError(
            "client_tokens: expected TOKEN or CAMPAIGN=TOKEN with both parts non-empty and no "
            "surrounding spaces, got an entry that is not (value withheld: it is a secret)"
        )
    return (None if scope == "*" else scope), token


def read_server_table(path: Path) -> dict[str, Any]:
    """Read the ``[server]`` table of a TOML file as ServeConfig keyword arguments.

    Raises
    ------
    ConfigError
        When the file is not TOML, has no ``[server]`` table, or the table has an unknown key.
    """
    try:
        document = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: expected a TOML file, got a parse error: {exc}") from exc
    table = document.get("server")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: expected a [server] table, got keys {sorted(document)}")
    known = {f.name for f in dataclasses.fields(ServeConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{path}: [server].{unknown[0]}: expected one of {sorted(known)}, got {unknown[0]!r}"
        )
    kwargs = dict(table)
    for key in ("data_dir", "model_dir", "tls_cert", "tls_key", "tls_client_ca"):
        if kwargs.get(key) is not None:
            kwargs[key] = Path(kwargs[key])
    if "campaigns" in kwargs:
        kwargs["campaigns"] = tuple(Path(p) for p in kwargs["campaigns"])
    if "client_tokens" in kwargs:
        kwargs["client_tokens"] = tuple(kwargs["client_tokens"])
    return kwargs

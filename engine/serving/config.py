"""Settings of one ``nbo serve`` process.

Every setting has a command-line flag of the same name (``max_message_bytes`` is
``--max-message-bytes``); a TOML file given with ``--server-config`` may hold a ``[server]`` table
with the same keys, and flags given on the command line win over it. The admin token may also
come from the ``NBO_ADMIN_TOKEN`` environment variable, which keeps it out of process listings.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

ADMIN_TOKEN_ENV = "NBO_ADMIN_TOKEN"
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
    threads : int
        Size of the thread pool that runs RPC handlers.
    max_concurrent_rpcs : int
        Calls in progress beyond this get RESOURCE_EXHAUSTED (overload protection); 0 = no limit.
    max_message_bytes : int
        Largest request or response message accepted, in bytes.
    max_batch_rows : int
        Largest number of rows (or rewards) in one batch call.
    tls_cert, tls_key : Path or None
        PEM certificate chain and private key; both or neither. When set the port speaks TLS only.
    admin_token : str or None
        Bearer token required by AdminService calls; None leaves AdminService open.
    metrics_port : int
        Port of the Prometheus ``/metrics`` HTTP endpoint; 0 turns it off.
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
    host: str = "[::]"
    port: int = 50051
    threads: int = 8
    max_concurrent_rpcs: int = 256
    max_message_bytes: int = 16 * 1024 * 1024
    max_batch_rows: int = 10_000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    admin_token: str | None = None
    metrics_port: int = 0
    metrics_host: str = "0.0.0.0"
    grace_seconds: float = 10.0
    log_level: str = "info"

    def __post_init__(self) -> None:
        object.__setattr__(self, "campaigns", tuple(Path(p) for p in self.campaigns))
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 65535:
                raise ConfigError(f"{name}: expected an integer port in [0, 65535], got {value!r}")
        for name in ("threads", "max_message_bytes", "max_batch_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, got {value!r}")
        if not isinstance(self.max_concurrent_rpcs, int) or self.max_concurrent_rpcs < 0:
            raise ConfigError(
                f"max_concurrent_rpcs: expected an integer >= 0, got {self.max_concurrent_rpcs!r}"
            )
        if not self.grace_seconds >= 0:
            raise ConfigError(f"grace_seconds: expected a number >= 0, got {self.grace_seconds!r}")
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

    @property
    def tls_enabled(self) -> bool:
        """True when the server listens with TLS."""
        return self.tls_cert is not None

    def with_env(self, environ: dict[str, str] | None = None) -> ServeConfig:
        """Return a copy with the admin token taken from ``NBO_ADMIN_TOKEN`` when none is set.

        Examples
        --------
        >>> ServeConfig().with_env({"NBO_ADMIN_TOKEN": "s3cret"}).admin_token
        's3cret'
        >>> ServeConfig(admin_token="flag").with_env({"NBO_ADMIN_TOKEN": "env"}).admin_token
        'flag'
        """
        env = os.environ if environ is None else environ
        token = env.get(ADMIN_TOKEN_ENV)
        if self.admin_token is None and token:
            return dataclasses.replace(self, admin_token=token)
        return self


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
    for key in ("data_dir", "tls_cert", "tls_key"):
        if kwargs.get(key) is not None:
            kwargs[key] = Path(kwargs[key])
    if "campaigns" in kwargs:
        kwargs["campaigns"] = tuple(Path(p) for p in kwargs["campaigns"])
    return kwargs

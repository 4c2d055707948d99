"""``nbo serve``: run the gRPC next-best-offer service.

Examples
--------
>>> from engine.cliargs import parse_command
>>> args = parse_command(register, ["serve", "--config", "examples/renewal.toml", "--port", "0"])
>>> cfg = config_from_args(args)
>>> [str(p) for p in cfg.campaigns], cfg.port, cfg.metrics_port
(['examples/renewal.toml'], 0, 0)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cliargs import command, commands
from engine.serving.config import (
    ADMIN_TOKEN_ENV,
    CLIENT_TOKEN_ENV,
    ServeConfig,
    read_server_table,
)

if TYPE_CHECKING:
    from engine.core import Engine

# Flag dest -> ServeConfig field, for flags whose value maps one-to-one.
_FIELDS = (
    "data_dir",
    "model_dir",
    "host",
    "port",
    "reuse_port",
    "threads",
    "max_concurrent_rpcs",
    "max_message_bytes",
    "max_batch_rows",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "admin_token",
    "insecure_admin",
    "auth_failure_limit",
    "max_streams",
    "metrics_port",
    "metrics_host",
    "grace_seconds",
    "log_level",
)


# Flags that set the ServeConfig field of their name, their help ending with its default:
# (flag, type, what it sets), in the order `nbo serve --help` lists them.
_LIMIT_FLAGS = (
    (
        "--max-concurrent-rpcs",
        int,
        "calls in progress beyond this get RESOURCE_EXHAUSTED; 0 = no limit",
    ),
    ("--max-message-bytes", int, "largest message accepted"),
    ("--max-batch-rows", int, "largest batch accepted"),
)
_PEER_AND_ENDPOINT_FLAGS = (
    (
        "--auth-failure-limit",
        int,
        "wrong tokens a client address may send before it is refused "
        "for a doubling window (1 s up to 5 min)",
    ),
    (
        "--max-streams",
        int,
        "Health.Watch and reflection streams open at once; more get RESOURCE_EXHAUSTED",
    ),
    ("--metrics-port", int, "Prometheus /metrics port; 0 = off"),
    ("--metrics-host", str, "address of the metrics endpoint"),
    ("--grace-seconds", float, "time in-flight calls get to finish on shutdown"),
)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``nbo serve``."""
    d = ServeConfig()
    p.add_argument(
        "--config",
        dest="campaigns",
        action="append",
        type=Path,
        metavar="TOML",
        help="campaign config file; repeat to host several campaigns",
    )
    p.add_argument("--data-dir", type=Path, help=f"journals and snapshots [{d.data_dir}]")
    p.add_argument(
        "--model-dir",
        type=Path,
        help="PromoteModel reads snapshot files only from MODEL_DIR/<campaign>/, owner-only "
        "[<data-dir>/models]",
    )
    p.add_argument(
        "--journal",
        metavar="URL",
        help="journal of every campaign: a path, sqlite:///path or postgresql://user@host:port/db "
        "(shared by replicas; one schema per campaign) [<data-dir>/<campaign>.journal.sqlite]",
    )
    p.add_argument(
        "--host",
        help=f"address to listen on; the default is loopback only, 0.0.0.0 (or [::]) exposes the "
        f"service, best with client tokens or mutual TLS [{d.host}]",
    )
    p.add_argument("--port", type=int, help=f"port to listen on; 0 = any free port [{d.port}]")
    p.add_argument(
        "--reuse-port",
        action="store_const",
        const=True,
        help="share the port with other nbo serve processes that set this too (SO_REUSEPORT; "
        "the workers of --workers do); without it a port another server holds fails the start",
    )
    p.add_argument("--threads", type=int, help=f"RPC handler threads [{d.threads}]")
    p.add_argument(
        "--role",
        choices=("all", "decide", "learn"),
        default="all",
        help="all: decide and learn in this process (the campaign's only learner); decide: a "
        "replica on a shared --journal that decides on the newest model the learner published "
        "and journals rewards; learn: the campaign's learner (leads while it holds the "
        "journal's learner lock, else stands by and takes over) [all]",
    )
    p.add_argument(
        "--model-wait-seconds",
        type=float,
        default=30.0,
        help="--role decide (and a standby learner): how long to wait at start for the "
        "learner's first published model [30]",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="decide processes sharing the port (SO_REUSEPORT), under a supervisor that also "
        "starts the campaigns' learner (--role learn, on --learner-port), restarts children "
        "that die and serves --metrics-port for all of them; with --role decide, no learner "
        "(it runs elsewhere). 1: this process serves alone [1]",
    )
    p.add_argument(
        "--learner-port",
        type=int,
        help="--workers > 1: port of the learner's health and AdminService (PromoteModel, "
        "RollbackModel go there; the workers refuse them); 0 = any free port, printed [0]",
    )
    _add_config_flags(p, _LIMIT_FLAGS)
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain (enables TLS)")
    p.add_argument("--tls-key", type=Path, help="PEM private key (with --tls-cert)")
    p.add_argument(
        "--tls-client-ca",
        type=Path,
        help="PEM CA certificate(s): every client must present a certificate this CA signed "
        "(mutual TLS; needs --tls-cert)",
    )
    p.add_argument(
        "--client-token",
        dest="client_tokens",
        action="append",
        metavar="[CAMPAIGN=]TOKEN",
        help="bearer token OfferService calls must carry; repeat for several; CAMPAIGN=TOKEN is "
        "valid for that campaign only, *=TOKEN for a token containing '='; prefer the "
        f"{CLIENT_TOKEN_ENV} environment variable (comma-separated), which stays out of process "
        "listings. Without a client token or --tls-client-ca, OfferService is open",
    )
    p.add_argument(
        "--admin-token",
        help=f"bearer token AdminService calls must carry; prefer the {ADMIN_TOKEN_ENV} "
        "environment variable, which stays out of process listings. Without one, AdminService "
        "refuses every call (PERMISSION_DENIED) unless --insecure-admin",
    )
    p.add_argument(
        "--insecure-admin",
        action="store_const",
        const=True,
        help="open AdminService to anyone when no admin token is set (development only)",
    )
    _add_config_flags(p, _PEER_AND_ENDPOINT_FLAGS)
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help=f"JSON log level on stderr; debug logs every call [{d.log_level}]",
    )
    p.add_argument(
        "--reset-model",
        dest="reset_models",
        action="append",
        nargs="?",
        const="*",
        metavar="CAMPAIGN",
        help="when a campaign's stored model no longer fits its features (a feature change), "
        "start a fresh model that learns from the journal's rewards under the new features "
        "instead of refusing to start; without CAMPAIGN, for every campaign. A campaign whose "
        "model fits keeps it (the flag is then ignored, with a warning). The models before "
        "stay in the registry",
    )
    p.add_argument(
        "--server-config",
        type=Path,
        metavar="TOML",
        help="TOML file with a [server] table of the same settings; flags win over it",
    )


def _add_config_flags(
    p: argparse.ArgumentParser, flags: tuple[tuple[str, Callable[[str], Any], str], ...]
) -> None:
    """Add ``flags`` (rows of the tables above), each help ending with ServeConfig's default."""
    defaults = ServeConfig()
    for flag, kind, text in flags:
        default = getattr(defaults, flag.removeprefix("--").replace("-", "_"))
        p.add_argument(flag, type=kind, help=f"{text} [{default}]")


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """Merge defaults, the optional ``[server]`` table and the flags given (in that order)."""
    kwargs: dict[str, Any] = {}
    if args.server_config is not None:
        kwargs.update(read_server_table(args.server_config))
    for name in _FIELDS:
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    if args.campaigns:
        kwargs["campaigns"] = tuple(args.campaigns)
    if args.client_tokens:
        kwargs["client_tokens"] = tuple(args.client_tokens)
    return ServeConfig(**kwargs).with_env()


def handle(args: argparse.Namespace) -> int:
    """Run the server (or, with ``--workers N``, its supervisor) until SIGTERM/SIGINT."""
    from engine.serving.logs import configure_logging
    from engine.serving.server import serve

    check_workers(args)
    config = config_from_args(args)
    if not config.campaigns:
        from engine.errors import ConfigError

        raise ConfigError("config: expected at least one --config campaign file, got none")
    configure_logging(config.log_level)
    if args.workers > 1:
        from engine.serving.workers import Supervisor

        supervisor = Supervisor(
            config,
            child_flags(args),
            args.workers,
            learner=args.role == "all",
            learner_port=args.learner_port or 0,
        )
        return supervisor.run()
    engines = journal_engines(
        args.journal,
        len(config.campaigns),
        tuple(args.reset_models or ()),
        config.model_dir,
        role=args.role,
        model_wait=args.model_wait_seconds,
    )
    return serve(config, engines)


def check_workers(args: argparse.Namespace) -> None:
    """``--workers``, ``--learner-port`` and ``--role`` together.

    Raises
    ------
    ConfigError
        For fewer than one worker, ``--learner-port`` without a learner child to serve it, and
        ``--role learn`` with several workers (a campaign has one learner).

    Examples
    --------
    >>> from engine.cliargs import parse_command
    >>> check_workers(parse_command(register, ["serve", "--workers", "2", "--role", "learn"]))
    Traceback (most recent call last):
    ...
    engine.errors.ConfigError: role: expected all or decide with --workers > 1 (a campaign has...
    """
    from engine.errors import ConfigError

    if args.workers < 1:
        raise ConfigError(f"workers: expected an integer >= 1, got {args.workers}")
    if args.learner_port is not None and (args.workers == 1 or args.role != "all"):
        raise ConfigError(
            "learner_port: expected --workers > 1 with --role all (the supervisor's learner "
            f"serves it), got --learner-port {args.learner_port} with --workers {args.workers} "
            f"--role {args.role}"
        )
    if args.workers > 1 and args.role == "learn":
        raise ConfigError(
            "role: expected all or decide with --workers > 1 (a campaign has one learner; the "
            "workers decide), got learn"
        )


# Flags the supervisor of --workers sets per child (or passes in the environment: tokens).
_SUPERVISED = frozenset(
    (
        "workers",
        "learner_port",
        "role",
        "port",
        "reuse_port",
        "metrics_port",
        "metrics_host",
        "admin_token",
        "client_tokens",
    )
)


def child_flags(args: argparse.Namespace) -> list[str]:
    """The flags of ``args`` a child of ``nbo serve --workers N`` gets, as given (defaults
    included where the parser has one): every ``serve`` flag but the ones the supervisor sets
    per child and the tokens, which go in the environment.

    Examples
    --------
    >>> from engine.cliargs import parse_command
    >>> args = parse_command(register, ["serve", "--config", "a.toml", "--workers", "2",
    ...                                 "--port", "0", "--admin-token", "s3cret",
    ...                                 "--insecure-admin"])
    >>> child_flags(args)
    ['--config', 'a.toml', '--model-wait-seconds', '30.0', '--insecure-admin']
    """
    parser = argparse.ArgumentParser(add_help=False)
    add_serve_arguments(parser)
    flags: list[str] = []
    for action in parser._actions:  # argparse has no public list of its flags
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest in _SUPERVISED or value is None:
            continue
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:
            flags += [flag] if value == action.const else []
        else:
            for item in value if isinstance(value, list) else [value]:
                flags += [flag, str(item)]
    return flags


def journal_engines(
    url: str | None,
    n_campaigns: int,
    reset_models: tuple[str, ...] = (),
    model_root: Path | None = None,
    role: str = "all",
    model_wait: float = 30.0,
) -> Callable[[Path, Path], Engine]:
    """``(config_path, data_dir) -> Engine`` opening each campaign's journal at ``url`` (None:
    the data dir's), with ``--reset-model`` for the campaigns ``reset_models`` names (``*``:
    all), each campaign's model directory at ``model_root/<campaign>`` (None:
    ``<data-dir>/models/<campaign>``), in ``role`` (see :class:`engine.core.Engine`).

    Raises
    ------
    ConfigError
        For an unknown scheme, or one SQLite file for several campaigns (a SQLite journal holds
        one campaign; a PostgreSQL database holds a schema per campaign).
    """
    from engine.errors import ConfigError
    from engine.journal.backends import journal_kind, redact_url

    if url and journal_kind(url) == "sqlite" and n_campaigns > 1:
        raise ConfigError(
            f"journal: expected postgresql://... for {n_campaigns} campaigns (a SQLite file holds "
            f"one), got {redact_url(url)}"
        )

    def open_engine(config_path: Path, data_dir: Path) -> Engine:
        from engine.campaign import load_campaign
        from engine.core import Engine  # imported when serving starts: numba compiles on import

        config = load_campaign(config_path)
        reset = "*" in reset_models or config.name in reset_models
        model_dir = None if model_root is None else model_root / config.name
        return Engine(
            config,
            data_dir,
            journal_url=url,
            reset_model=reset,
            model_dir=model_dir,
            role=role,
            model_wait=model_wait,
        )

    return open_engine


@command("serve", handle)
def _serve_command(parser: argparse.ArgumentParser) -> None:
    """run the gRPC next-best-offer service

    Serve one or more campaigns over gRPC (nbo.v1.OfferService, nbo.v1.AdminService,
    grpc.health.v1.Health, server reflection). Stops gracefully on SIGTERM/SIGINT: health
    NOT_SERVING, in-flight calls drained within --grace-seconds, journals flushed, snapshots
    written.
    """
    add_serve_arguments(parser)


# What the nbo.commands entry point serve names (pyproject.toml).
register = commands(_serve_command)

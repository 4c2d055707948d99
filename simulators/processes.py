"""The command line of an ``nbo serve`` child process.

The demos start servers as child processes, and so do the test harness (:mod:`testkit`), the
tests and the benchmarks, which sit above this package: they all build the command line here.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["serve_command"]


def serve_command(
    config: str | Path,
    data_dir: str | Path,
    *extra: str,
    port: int = 0,
    log_level: str | None = None,
) -> list[str]:
    """``python -m engine.cli serve`` of the campaign file ``config``, keeping its journal and
    snapshots in ``data_dir``, on 127.0.0.1 and ``port`` (0: a free port, which the server
    reports on its ready line), then the flags ``extra``.

    ``log_level`` (debug, info, warning or error) sets ``--log-level``; None leaves the server's
    default (info).

    Examples
    --------
    >>> serve_command("renewal.toml", "data", "--workers", "2", log_level="error")[1:]
    ['-m', 'engine.cli', 'serve', '--config', 'renewal.toml', '--data-dir', 'data', '--host',
     '127.0.0.1', '--port', '0', '--log-level', 'error', '--workers', '2']
    """
    command = [
        sys.executable,
        "-m",
        "engine.cli",
        "serve",
        "--config",
        str(config),
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if log_level is not None:
        command += ["--log-level", log_level]
    return [*command, *extra]

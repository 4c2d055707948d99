"""The children of ``nbo serve --workers N`` (:mod:`engine.serving.workers`): one process each,
its output read line by line, its port reserved before it starts.

A child says it serves by printing ``nbo serve: listening on port P`` (after its health turned
SERVING) and why it failed by ``nbo serve: error: ...`` (the last line of a failed ``nbo``
command): the supervisor keeps both to itself and forwards every other line, its JSON log
lines tagged with the child's name and pid.

Examples
--------
>>> held, port = reserve_port("127.0.0.1", 0)   # what --port 0 becomes before a child starts
>>> child = socket.socket()
>>> child.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
>>> child.bind(("127.0.0.1", port)); child.listen()   # a worker shares it; only it is reached
>>> child.close(); held.close()
>>> signal_name(9), signal_name(99)
('SIGKILL', '99')
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from engine.errors import ConfigError
from engine.serving.logs import LOGGER_NAME

__all__ = ["ERROR_PREFIX", "READY_LINE", "Child", "die_with_parent", "reserve_port", "signal_name"]

READY_LINE = "nbo serve: listening on port "
ERROR_PREFIX = "nbo serve: error: "
_log = logging.getLogger(LOGGER_NAME)


class Child:
    """One child process of a role (``decide`` or ``learn``) and slot, restarted in place."""

    def __init__(self, role: str, slot: int, argv: list[str], env: dict[str, str]) -> None:
        self.role, self.slot, self.argv, self.env = role, slot, argv, env
        self.proc: subprocess.Popen[str] | None = None
        self.ready = threading.Event()
        self.announced = False  # its serving was logged
        self._errors: list[str] = []  # its ``nbo serve: error:`` lines, this run
        self.deaths = 0  # in a row, each within STABLE_SECONDS of its start
        self.started = 0.0
        self.restart_at = 0.0

    def start(self, setup: Callable[[], None] | None) -> None:
        """Start (again): ``setup`` runs in the child before it executes (see
        :func:`die_with_parent`)."""
        self.ready, self.announced, self._errors = threading.Event(), False, []
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            process_group=0,
            preexec_fn=setup,
        )
        self.started = time.monotonic()
        for stream, forward, name in (
            (self.proc.stdout, sys.stdout, "out"),
            (self.proc.stderr, sys.stderr, "err"),
        ):
            threading.Thread(
                target=self._read,
                args=(stream, forward, self.ready, self._errors),
                daemon=True,
                name=f"nbo-{self.role}{self.slot}-{name}",
            ).start()
        _log.info("child started", extra=self.facts())

    def _read(self, stream: Any, forward: Any, ready: threading.Event, errors: list[str]) -> None:
        # A child's JSON log lines name it: {"child":"decide1","child_pid":N,...}.
        tag = f'{{"child":"{self.role}{self.slot}","child_pid":{self.pid},'
        for line in stream:
            if line.startswith(READY_LINE):
                ready.set()
            elif line.startswith(ERROR_PREFIX):  # the supervisor reports it, in its own words
                errors.append(line[len(ERROR_PREFIX) :].strip())
            else:
                forward.write(tag + line[1:] if line.startswith('{"') else line)
                forward.flush()

    @property
    def last_error(self) -> str:
        """The error line the child printed before it exited ("" if none)."""
        return self._errors[-1] if self._errors else ""

    @property
    def pid(self) -> int | None:
        """The process id of its current (or last) run."""
        return None if self.proc is None else self.proc.pid

    def facts(self, **more: Any) -> dict[str, Any]:
        """What a log line about it says: role, slot, pid (and ``more``)."""
        return {"role": self.role, "slot": self.slot, "pid": self.pid, **more}

    def exit_facts(self, **more: Any) -> dict[str, Any]:
        """:meth:`facts` with how it exited (``exit_code`` or ``signal``) and its error line."""
        code = None if self.proc is None else self.proc.returncode
        how = {"exit_code": code} if code is None or code >= 0 else {"signal": signal_name(-code)}
        error = {"error": self.last_error} if self.last_error else {}
        return self.facts(**how, **error, **more)


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9; the number for a signal Python does not name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A socket bound to ``host:port`` with SO_REUSEPORT, not listening (no connection reaches
    it), and the port it got: the children bind the same port."""
    address = host.strip("[]")
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        held = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"host: expected an address to listen on, got {host!r} ({exc})") from exc
    try:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(sockaddr)
    except OSError as exc:
        held.close()
        raise ConfigError(
            f"port: expected a free port to listen on, got {host}:{port} ({exc.strerror})"
        ) from exc
    return held, int(held.getsockname()[1])


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec function that makes the child get SIGTERM when this process dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def setup() -> None:
        prctl(pr_set_pdeathsig, sigterm)
        if os.getppid() != parent:  # the supervisor died before the call above
            os._exit(1)

    return setup

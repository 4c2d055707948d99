"""The campaigns one server hosts: an Engine per campaign config, loaded once, closed on shutdown.

Until :meth:`Campaigns.load` has built and warmed every Engine, lookups raise
:class:`~engine.errors.ServiceUnavailableError` (UNAVAILABLE), so a client that ignores the health
check gets a clear retryable status rather than a half-loaded model.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from engine.campaign import load_campaign
from engine.errors import (
    ConfigError,
    InvalidInputError,
    JournalUnavailableError,
    NotFoundError,
    ServiceUnavailableError,
)
from engine.serving import codec
from engine.serving.batcher import DecideBatcher, RewardBatcher
from engine.serving.logs import LOGGER_NAME

if TYPE_CHECKING:
    from engine.core import DecisionRecord, Engine

_log = logging.getLogger(LOGGER_NAME)
EngineFactory = Callable[[Path, Path], "Engine"]
# (campaign, decisions of one batch): how the server counts the decisions its batchers make.
DecisionObserver = Callable[[str, Sequence["DecisionRecord"]], None]


def open_engine(config_path: Path, data_dir: Path, model_root: Path | None = None) -> Engine:
    """The campaign's Engine; its model directory is ``model_root/<campaign>`` when given
    (``--model-dir``), else the engine's default ``<data-dir>/models/<campaign>``."""
    from engine.campaign import load_campaign
    from engine.core import Engine  # imported when serving starts: numba compiles on import

    config = load_campaign(config_path)
    model_dir = None if model_root is None else model_root / config.name
    return Engine(config, data_dir, model_dir=model_dir)


def check_writable(data_dir: Path) -> None:
    """Create ``data_dir`` owner-only (0700) when missing and check the server can write in it.

    A read-only directory would otherwise surface as a journal that "cannot be opened" (or a
    traceback), and a half-started server.

    Raises
    ------
    ConfigError
        Naming the directory and why it is not writable.
    """
    try:
        # Created owner-only when missing; an existing directory's permissions are the owner's.
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        writable = os.access(data_dir, os.W_OK | os.X_OK)
        read_only_fs = bool(os.statvfs(data_dir).f_flag & os.ST_RDONLY)
    except OSError as exc:
        writable, read_only_fs = False, exc.errno == errno.EROFS
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise ConfigError(
                f"data_dir: expected a writable directory, got {str(data_dir)!r} ({exc.strerror})"
            ) from exc
    if read_only_fs or not writable:
        why = "read-only file system" if read_only_fs else "read-only for this user"
        raise ConfigError(f"data_dir: expected a writable directory, got {str(data_dir)!r} ({why})")


class Hosted(NamedTuple):
    """One hosted campaign: its name, its Engine, and the batcher its Decide calls go through
    (its Reward calls': :meth:`Campaigns.rewarder`)."""

    name: str
    engine: Engine
    decider: DecideBatcher


class Campaigns:
    """Name -> Engine for the campaigns of one server.

    Parameters
    ----------
    config_paths : sequence of Path
        One campaign config file per campaign; names must be distinct.
    data_dir : Path
        Journals and snapshots; created owner-only (0700) when missing.
    open_engine : callable, optional
        ``(config_path, data_dir) -> Engine``; defaults to ``Engine.from_config``.
    observe_decisions : callable, optional
        ``(campaign, records)``, called once per coalesced Decide batch.
    """

    def __init__(
        self,
        config_paths: Sequence[Path],
        data_dir: Path,
        open_engine: EngineFactory = open_engine,
        observe_decisions: DecisionObserver | None = None,
    ) -> None:
        if not config_paths:
            raise ConfigError("campaigns: expected at least one campaign config file, got none")
        self.config_paths = [Path(p) for p in config_paths]
        self.data_dir = Path(data_dir)
        self._open_engine = open_engine
        self._observe_decisions = observe_decisions
        self._hosted: dict[str, Hosted] = {}
        self._rewarders: dict[str, RewardBatcher] = {}
        self._ready = False
        self._closed = False
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    @property
    def ready(self) -> bool:
        """True once every campaign is loaded and warm, until shutdown starts."""
        return self._ready

    def load(self) -> None:
        """Open every campaign's Engine (journal recovery, snapshot) and warm its kernels."""
        check_writable(self.data_dir)
        seen: set[str] = set()
        for path in self.config_paths:  # before any journal opens (a learner lock each)
            name = load_campaign(path).name
            if name in seen:
                raise ConfigError(
                    f"campaigns: expected distinct campaign names, got {name!r} twice ({path})"
                )
            seen.add(name)
        engines: dict[str, Engine] = {}
        try:
            for path in self.config_paths:
                engine = self._open_retrying(path)
                name = engine.campaign
                engines[name] = engine
                engine.prepare()
                _log.info("campaign loaded", extra={"campaign": name, "config": str(path)})
        except BaseException:
            for engine in engines.values():
                engine.close()
            raise
        with self._lock:
            self._hosted = {n: self._host(n, e) for n, e in engines.items()}
            self._rewarders = {n: RewardBatcher(e) for n, e in engines.items()}
            self._ready = True

    def _open_retrying(self, path: Path) -> Engine:
        """Open a campaign's Engine; while its journal cannot be reached (PostgreSQL down or
        starting), retry with backoff (0.5 s doubling to 10 s) until it can or :meth:`cancel`
        is called. The first failure is one WARNING line naming the server and database
        (never the password); then one line a minute."""
        delay = 0.5
        failures = 0
        last_said = 0.0
        while True:
            try:
                engine = self._open_engine(path, self.data_dir)
            except JournalUnavailableError as exc:
                failures += 1
                now = time.monotonic()
                if failures == 1 or now - last_said >= 60.0:
                    last_said = now
                    _log.warning(
                        f"{exc}; retrying every {delay:g}-10 s (attempt {failures})",
                        extra={"config": str(path)},
                    )
                if self._cancel.wait(delay):
                    raise ServiceUnavailableError(
                        f"campaign {path}: stopped while waiting for its journal ({exc})"
                    ) from None
                delay = min(delay * 2, 10.0)
                continue
            if failures:
                _log.info(
                    f"campaign {engine.campaign}: journal reached after {failures} attempts",
                    extra={"campaign": engine.campaign},
                )
            return engine

    def cancel(self) -> None:
        """Stop waiting for an unreachable journal (a signal while loading)."""
        self._cancel.set()

    def reachable(self) -> bool:
        """Whether every hosted campaign's journal answers now (the server's health)."""
        with self._lock:
            engines = [h.engine for h in self._hosted.values()]
        return all(engine.reachable() for engine in engines)

    def _host(self, name: str, engine: Engine) -> Hosted:
        observe = self._observe_decisions
        decider = DecideBatcher(
            engine, observe=None if observe is None else lambda records: observe(name, records)
        )
        return Hosted(name, engine, decider)

    def names(self) -> list[str]:
        """Names of the hosted campaigns, sorted."""
        return sorted(self._hosted)

    def get(self, name: str) -> Hosted:
        """The campaign a request addresses; ``""`` means the only campaign.

        Raises
        ------
        ServiceUnavailableError
            While loading or after shutdown started.
        InvalidInputError
            When ``name`` is empty and several campaigns are hosted.
        NotFoundError
            When no hosted campaign has that name.
        """
        if not self._ready:
            state = "shutting down" if self._closed else "loading its campaigns"
            raise ServiceUnavailableError(f"campaign: the server is {state}; retry shortly")
        hosted = self._hosted
        if not name:
            if len(hosted) == 1:
                return next(iter(hosted.values()))
            raise InvalidInputError(
                "campaign", f"one of {sorted(hosted)} (this server hosts several)", "none"
            )
        campaign = hosted.get(name)
        if campaign is None:
            raise NotFoundError(
                f"campaign: expected one of {sorted(hosted)}, got {codec.shown(name)!r}"
            )
        return campaign

    def rewarder(self, name: str) -> RewardBatcher:
        """The batcher the Reward calls of campaign ``name`` (as :meth:`get` returned it) go
        through."""
        return self._rewarders[name]

    def __iter__(self) -> Iterator[Hosted]:
        return iter(list(self._hosted.values()))

    def close(self) -> None:
        """Stop taking calls; snapshot and close every Engine (which flushes its journal)."""
        with self._lock:
            if self._closed:
                return
            self._ready = False
            self._closed = True
        for name, engine, _ in self._hosted.values():
            try:
                version = engine.snapshot()
                _log.info("snapshot written", extra={"campaign": name, "version": version})
            finally:
                engine.close()
                _log.info("campaign closed", extra={"campaign": name})

"""The Engine's background upkeep: a daemon thread that, every tick, applies journaled rewards
(publishing on the campaign's cadence), checkpoints the journal about once a second, closes
decisions whose reward window has passed and, about once a minute, forgets request ids whose
window has passed, and with ``[journal] retention_days`` moves old closed decisions to the
archive about once a minute.

Examples
--------
>>> import threading
>>> ticks = threading.Event()
>>> loop = Upkeep("demo", 0.01, apply=ticks.set, checkpoint=lambda: None,
...               expiry_due=lambda: False, expire=lambda: 0, prune=lambda: 0)
>>> loop.start(); ticks.wait(5.0)
True
>>> loop.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = [
    "CHECKPOINT_SECONDS",
    "COMPACT_SECONDS",
    "FAILING_LOG_SECONDS",
    "PRUNE_SECONDS",
    "Upkeep",
]

CHECKPOINT_SECONDS = 1.0  # journal checkpoints at most this often
PRUNE_SECONDS = 60.0  # request ids past their window are deleted at most this often
COMPACT_SECONDS = 60.0  # retention steps at most this often
FAILING_LOG_SECONDS = 60.0  # a tick failing again and again is logged this often
_log = logging.getLogger("nbo.engine")


class Upkeep:
    """Background work of one campaign's engine.

    Parameters
    ----------
    campaign : str
        Names the thread and the log lines.
    interval : float
        Seconds between ticks.
    apply : callable
        Applies queued rewards and publishes when due (the learner).
    checkpoint : callable
        Journal housekeeping, called at most every CHECKPOINT_SECONDS.
    expiry_due : callable returning bool
        True when some pending decision's reward window has passed.
    expire : callable
        Closes the decisions past their window.
    prune : callable
        Deletes the request ids past their window, called every PRUNE_SECONDS (and at the first
        tick).
    compact : callable, optional
        Moves old closed decisions to the archive (``[journal] retention_days``), called every
        COMPACT_SECONDS, the first time one period after start.

    Notes
    -----
    A tick that raises is logged and the next tick tries again: serving goes on.
    """

    def __init__(
        self,
        campaign: str,
        interval: float,
        *,
        apply: Callable[[], object],
        checkpoint: Callable[[], object],
        expiry_due: Callable[[], bool],
        expire: Callable[[], object],
        prune: Callable[[], object],
        compact: Callable[[], object] | None = None,
    ) -> None:
        self.campaign = campaign
        self.interval = interval
        self._apply = apply
        self._checkpoint = checkpoint
        self._expiry_due = expiry_due
        self._expire = expire
        self._prune = prune
        self._compact = compact
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"nbo-engine-{campaign}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to stop and wait for its current tick to finish."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        last_checkpoint = time.monotonic()
        last_prune = -PRUNE_SECONDS
        last_compact = time.monotonic()
        failing = 0
        said = 0.0
        while not self._stop.wait(self.interval):
            try:
                self._apply()
                if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                    self._checkpoint()
                    last_checkpoint = time.monotonic()
                if self._expiry_due():
                    self._expire()
                if time.monotonic() - last_prune >= PRUNE_SECONDS:
                    last_prune = time.monotonic()
                    self._prune()
                if self._compact is not None and time.monotonic() - last_compact >= COMPACT_SECONDS:
                    last_compact = time.monotonic()
                    self._compact()
            except Exception:  # keep serving; the next tick retries
                failing += 1
                # The first failure with its traceback, then one line a minute: a journal that
                # is down for an hour must not write a traceback every tick.
                if failing == 1:
                    _log.exception("engine %s: background tick failed", self.campaign)
                    said = time.monotonic()
                elif time.monotonic() - said >= FAILING_LOG_SECONDS:
                    _log.warning(
                        "engine %s: background ticks still failing (%d in a row)",
                        self.campaign,
                        failing,
                    )
                    said = time.monotonic()
                continue
            if failing:
                _log.info(
                    "engine %s: background ticks recovered after %d failures",
                    self.campaign,
                    failing,
                )
                failing = 0

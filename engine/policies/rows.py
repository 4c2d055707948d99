"""Large batches on every core: a GIL-free kernel called on row ranges from a few threads.

Every kernel in :mod:`engine.kernels` releases the GIL (``nogil=True``), and the costly ones of a
batch (scoring, Thompson-sampling propensities) draw no random numbers and treat each row alone.
:func:`over_rows` splits such a call into contiguous row ranges, runs one in the calling thread
and the others in a process-wide thread pool, and returns when all are done: the result is the
same array a single call writes, whatever the number of threads. Small batches (fewer than
``min_rows`` rows per thread) stay in one call, so the single-row path pays nothing.

Threads: the cores this process may run on (its CPU affinity, capped by a cgroup CPU quota), or
``NBO_KERNEL_THREADS`` (an integer >= 1; 1 turns the splitting off, for instance when several
processes share the machine's cores). A bad value is a ConfigError, raised by
``Policy.prepare`` (a server fails at start) and before a large batch draws anything.
docs/architecture.md, "Kernels on every core", describes the policy.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine.errors import ConfigError

THREADS_ENV = "NBO_KERNEL_THREADS"

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def kernel_threads(environ: dict[str, str] | None = None) -> int:
    """Threads a large batch is split over: ``NBO_KERNEL_THREADS`` when set, else the cores this
    process may use (its CPU affinity, capped by a cgroup v2 CPU quota: a container limited to 2
    CPUs on a 64-core host uses 2).

    Raises
    ------
    ConfigError
        For a value that is not an integer >= 1 (a deployment's setting, not a caller's input).

    Examples
    --------
    >>> kernel_threads({"NBO_KERNEL_THREADS": "1"})
    1
    """
    env = os.environ if environ is None else environ
    text = env.get(THREADS_ENV, "").strip()
    if not text:
        return _usable_cores()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(
            f"{THREADS_ENV}: expected an integer >= 1 (threads per batch kernel), got {text!r}"
        )
    return value


_cores: tuple[int, int] | None = None  # (pid, cores): read once per process


def _usable_cores() -> int:
    """The cores this process may use, read once per process (a large batch asks each time)."""
    global _cores
    if _cores is None or _cores[0] != os.getpid():
        _cores = (os.getpid(), _read_usable_cores())
    return _cores[1]


def _read_usable_cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)  # not on macOS or Windows
    cores = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    try:  # cgroup v2: "max 100000" (no quota) or "<quota> <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def row_threads(n_rows: int, min_rows: int) -> int:
    """Threads :func:`over_rows` will use for ``n_rows`` rows of at least ``min_rows`` each (1
    below two ranges). Call it before anything that must not happen when it raises (a bad
    ``NBO_KERNEL_THREADS``), such as drawing from a random state."""
    threads = n_rows // max(min_rows, 1)
    if threads >= 2:
        threads = min(threads, kernel_threads())
    return max(threads, 1)


def _executor(workers: int) -> ThreadPoolExecutor:
    """The process's pool (a new one after a fork: threads do not survive it)."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nbo-kernel")
            _pool_pid = os.getpid()
        return _pool


def over_rows(call: Callable[[int, int], None], n_rows: int, threads: int) -> None:
    """Run ``call(start, stop)`` over ``[0, n_rows)`` in ``threads`` contiguous ranges (from
    :func:`row_threads`), one in the calling thread and the others in the pool.

    ``call`` must write only its own rows' outputs and draw no random numbers. An exception in any
    range is raised here after every range has finished.
    """
    if threads <= 1:
        call(0, n_rows)
        return
    bounds = [n_rows * t // threads for t in range(threads + 1)]
    pool = _executor(threads - 1)
    futures = [pool.submit(call, bounds[t], bounds[t + 1]) for t in range(1, threads)]
    try:
        call(bounds[0], bounds[1])
    finally:
        for future in futures:
            future.exception()  # wait for every range before raising anything
    for future in futures:
        future.result()

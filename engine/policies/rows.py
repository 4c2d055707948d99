"""Large batches on every core: a GIL-free kernel called on row ranges from a few threads.

Every kernel in :mod:`engine.kernels` releases the GIL (``nogil=True``), and the costly ones of a
batch (scoring, Thompson-sampling propensities) draw no random numbers and treat each row alone.
:func:`over_rows` splits such a call into contiguous row ranges, runs one in the calling thread
and the others in a process-wide thread pool, and returns when all are done: the result is the
same array a single call writes, whatever the number of threads. Small batches (fewer than
``min_rows`` rows per thread) stay in one call, so the single-row path pays nothing.

Threads: the cores this process may run on (``os.sched_getaffinity``), or ``NBO_KERNEL_THREADS``
(an integer >= 1; 1 turns the splitting off, for instance when several processes share the
machine's cores). docs/architecture.md, "Kernels on every core", describes the policy.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from engine.errors import InvalidInputError

THREADS_ENV = "NBO_KERNEL_THREADS"

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def kernel_threads(environ: dict[str, str] | None = None) -> int:
    """Threads a large batch is split over: ``NBO_KERNEL_THREADS`` when set, else the number of
    cores this process may use.

    Examples
    --------
    >>> kernel_threads({"NBO_KERNEL_THREADS": "1"})
    1
    """
    env = os.environ if environ is None else environ
    text = env.get(THREADS_ENV, "").strip()
    if not text:
        return max(1, len(os.sched_getaffinity(0)))
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidInputError(THREADS_ENV, "an integer >= 1 (threads per batch kernel)", text)
    return value


def _executor(workers: int) -> ThreadPoolExecutor:
    """The process's pool (a new one after a fork: threads do not survive it)."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nbo-kernel")
            _pool_pid = os.getpid()
        return _pool


def over_rows(call: Callable[[int, int], None], n_rows: int, min_rows: int) -> None:
    """Run ``call(start, stop)`` over ``[0, n_rows)`` in contiguous ranges of at least
    ``min_rows`` rows, on up to :func:`kernel_threads` threads (the calling thread included).

    ``call`` must write only its own rows' outputs and draw no random numbers. An exception in any
    range is raised here after every range has finished.
    """
    threads = n_rows // max(min_rows, 1)
    if threads >= 2:
        threads = min(threads, kernel_threads())
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

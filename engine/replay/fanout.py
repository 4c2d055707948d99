"""Run a list of pure tasks in-process or on Ray, with retries, progress and no silent gaps.

The same task functions run either way and results come back in task order, so a fixed seed gives
identical numbers in-process, on a local Ray instance and on a cluster. A task that still fails
after its retries (an :class:`~engine.errors.NboError`, which would fail again the same way, is
not retried in-process) comes back as a :class:`TaskFailure` in its slot; callers must treat the
run as partial (:mod:`engine.replay.evaluate` reports it as incomplete and never says "go").
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from engine.errors import InvalidParameterError, NboError


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(*args)``; ``key`` names it in progress and failure reports."""

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]


@dataclass(frozen=True)
class TaskFailure:
    """A task that failed after all its attempts."""

    key: str
    error: str
    attempts: int


class Runner:
    """Executes tasks in-process (``workers=0``) or on Ray.

    Parameters
    ----------
    workers : int or None
        0 runs in-process. Otherwise Ray: a local instance with this many CPUs (None = all), started
        on first use unless Ray is already initialized (then that session is used as is).
    address : str, optional
        Address of an existing Ray cluster (``ray://host:10001`` or ``host:6379``).
    max_retries : int
        Extra attempts for a task that raised or whose worker died.
    progress : bool
        Show a tqdm progress bar on stderr.

    Examples
    --------
    >>> runner = Runner(workers=0, progress=False)
    >>> runner.run([Task("a", pow, (2, 3)), Task("b", pow, (3, 2))])
    [8, 9]
    """

    def __init__(
        self,
        workers: int | None = 0,
        address: str | None = None,
        max_retries: int = 2,
        progress: bool = True,
    ) -> None:
        if workers is not None and (isinstance(workers, bool) or workers < 0):
            raise InvalidParameterError("Runner", "workers", "an int >= 0 or None", workers)
        if max_retries < 0:
            raise InvalidParameterError("Runner", "max_retries", "an int >= 0", max_retries)
        self.workers = workers
        self.address = address
        self.max_retries = max_retries
        self.progress = progress
        self._started_ray = False
        self._warm = False

    @property
    def uses_ray(self) -> bool:
        return self.address is not None or self.workers != 0

    @property
    def mode(self) -> str:
        if not self.uses_ray:
            return "in-process"
        return f"ray ({self.address})" if self.address else "ray (local)"

    def _ray(self) -> Any:
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if self.address:
                kwargs["address"] = self.address
            elif self.workers:
                kwargs["num_cpus"] = self.workers
            ray.init(**kwargs)
            self._started_ray = True
        return ray

    def warm_up(self) -> None:
        """Start and warm every Ray worker (imports, compiled kernels) in parallel, so the
        first real tasks do not each pay for it; nothing to do in-process."""
        if not self.uses_ray or self._warm:
            return
        ray = self._ray()
        n = max(1, int(ray.available_resources().get("CPU", 1)))
        task = ray.remote(_warm).options(max_retries=self.max_retries)
        ray.get([task.remote(0.2) for _ in range(n)])
        self._warm = True

    def put(self, value: Any) -> Any:
        """Store a large argument once (a Ray object reference) or pass it through in-process."""
        if not self.uses_ray:
            return value
        return self._ray().put(value)

    def run(self, tasks: Sequence[Task], desc: str = "tasks") -> list[Any]:
        """Run every task; results (or :class:`TaskFailure`) in task order."""
        return self.start(tasks, desc)()

    def start(self, tasks: Sequence[Task], desc: str = "tasks") -> Callable[[], list[Any]]:
        """Submit the tasks and return a function that waits for their results (in task
        order), so the caller can work meanwhile. In-process the tasks run right here."""
        bar = tqdm(
            total=len(tasks), desc=desc, file=sys.stderr, disable=not self.progress, leave=False
        )
        if not self.uses_ray:
            try:
                results = [self._run_local(task, bar) for task in tasks]
            finally:
                bar.close()
            return lambda: results
        refs = self._submit(tasks)

        def wait() -> list[Any]:
            try:
                return self._collect(tasks, refs, bar)
            finally:
                bar.close()

        return wait

    def _run_local(self, task: Task, bar: tqdm) -> Any:
        error, attempts = "", 0
        for _attempt in range(self.max_retries + 1):
            attempts += 1
            try:
                result = task.fn(*task.args)
            except NboError as exc:  # bad input fails the same way every time: no retry
                error = f"{type(exc).__name__}: {exc}"
                break
            except Exception as exc:  # a task failure is reported, not raised
                error = f"{type(exc).__name__}: {exc}"
                continue
            bar.update(1)
            return result
        bar.update(1)
        return TaskFailure(task.key, error, attempts)

    def _submit(self, tasks: Sequence[Task]) -> list[Any]:
        ray = self._ray()
        remote: dict[Callable[..., Any], Any] = {}
        refs = []
        for task in tasks:
            if task.fn not in remote:
                remote[task.fn] = ray.remote(task.fn).options(
                    max_retries=self.max_retries, retry_exceptions=True
                )
            refs.append(remote[task.fn].remote(*task.args))
        return refs

    def _collect(self, tasks: Sequence[Task], refs: list[Any], bar: tqdm) -> list[Any]:
        ray = self._ray()
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(tasks)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = index[ref]
                try:
                    results[i] = ray.get(ref)
                except Exception as exc:  # retries are exhausted: report it
                    cause = getattr(exc, "cause", None) or exc
                    results[i] = TaskFailure(
                        tasks[i].key, f"{type(cause).__name__}: {cause}", self.max_retries + 1
                    )
                bar.update(1)
        return results

    def close(self) -> None:
        """Shut down the Ray instance this runner started (a session it found is left alone)."""
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False
        self._warm = False


def _warm(pause: float) -> None:
    import time

    from engine.kernels import prepare
    from engine.replay import candidates  # noqa: F401 - importing is the point

    prepare()
    time.sleep(pause)  # hold this worker so the next warm-up task lands on another

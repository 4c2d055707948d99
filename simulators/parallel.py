"""Fan a comparison out as one task per (policy, seed): in-process or on Ray.

Every task rebuilds its environment from a name and knobs (cheap and picklable) and returns a
:class:`~simulators.runner.RunResult`. With ``workers=0`` tasks run one after the other in this
process with a progress bar over rounds; otherwise they run on Ray (a local instance started on
demand, or an existing cluster at ``ray_address``) with a progress bar over finished tasks.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from simulators.envs import make_env
from simulators.runner import RunResult, run_policy

#: Jobs up to this many rounds in total run in-process when the caller does not choose.
IN_PROCESS_LIMIT = 400_000


@dataclass(frozen=True)
class Task:
    """One run: a policy on a seed, through the policy API, the Engine, or gRPC."""

    env: str
    policy: str
    seed: int
    n_rounds: int
    via: str = "policy"
    env_knobs: dict[str, Any] = field(default_factory=dict)
    campaign: str | None = None
    batch_size: int = 100
    data_dir: str | None = None


def run_task(task: Task, progress: Any = None) -> RunResult:
    """Run one task in this process."""
    env = make_env(task.env, campaign=task.campaign, **task.env_knobs)
    if task.via == "policy":
        return run_policy(
            env,
            task.policy,
            task.n_rounds,
            task.seed,
            batch_size=task.batch_size,
            progress=progress,
        )
    from simulators.engine_path import run_engine

    data_dir = None
    if task.data_dir is not None:
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in task.policy)
        data_dir = Path(task.data_dir) / f"{safe}-seed{task.seed}"
    return run_engine(
        env,
        task.policy,
        task.n_rounds,
        task.seed,
        campaign=task.campaign,
        via=task.via,
        batch_size=task.batch_size,
        data_dir=data_dir,
        progress=progress,
    )


def run_tasks(
    tasks: Sequence[Task],
    workers: int | None = None,
    ray_address: str | None = None,
    show_progress: bool = True,
) -> list[RunResult]:
    """Run every task and return the results in task order.

    Parameters
    ----------
    tasks : sequence of Task
    workers : int, optional
        0: in-process. A positive int: Ray with that many CPUs (local instance). None: in-process
        for small jobs (<= IN_PROCESS_LIMIT rounds in total), else Ray with every local CPU.
    ray_address : str, optional
        Address of an existing Ray cluster (implies Ray).
    show_progress : bool
        Progress bar on stderr.
    """
    total = sum(t.n_rounds for t in tasks)
    use_ray = ray_address is not None or (workers or 0) > 0
    if workers is None and ray_address is None:
        use_ray = total > IN_PROCESS_LIMIT and len(tasks) > 1
    if not use_ray:
        results = []
        with tqdm(
            total=total,
            unit="rnd",
            unit_scale=True,
            file=sys.stderr,
            disable=not show_progress,
            desc="simulate",
        ) as bar:
            for task in tasks:
                bar.set_postfix_str(f"{task.policy} seed {task.seed}")
                results.append(run_task(task, progress=bar.update))
        return results
    return _run_on_ray(tasks, workers, ray_address, show_progress)


def _run_on_ray(
    tasks: Sequence[Task], workers: int | None, address: str | None, show_progress: bool
) -> list[RunResult]:
    """The tasks on Ray through :class:`engine.replay.fanout.Runner` (bound to loopback, an
    unreachable address refused within seconds, a failed task retried once); a task that still
    fails stops the comparison with its error (a partial comparison would mislead)."""
    from engine.errors import ServiceUnavailableError
    from engine.replay.fanout import Runner, TaskFailure
    from engine.replay.fanout import Task as FanoutTask

    runner = Runner(workers=workers, address=address, max_retries=1, progress=show_progress)
    try:
        results = runner.run(
            [FanoutTask(f"{t.policy} seed {t.seed}", run_task, (t,)) for t in tasks],
            desc="simulate (ray)",
        )
    finally:
        runner.close()
    failed = [r for r in results if isinstance(r, TaskFailure)]
    if failed:
        raise ServiceUnavailableError(
            f"{len(failed)} of {len(tasks)} simulation tasks failed on Ray; first: "
            f"{failed[0].key}: {failed[0].error}"
        )
    return list(results)

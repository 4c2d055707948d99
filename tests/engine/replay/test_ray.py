"""The same evaluation on local Ray as in-process, retries, and failures reported as partial."""

from __future__ import annotations

import pytest

from engine.replay.candidates import EvalConfig, make_candidates, parse_policy
from engine.replay.evaluate import evaluate
from engine.replay.fanout import Runner, Task, TaskFailure
from tests.engine.replay.synthetic import LinearEnv, make_logs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_session(local_ray):
    return local_ray


def test_identical_numbers_in_process_and_on_ray(ray_session):
    logs = make_logs(LinearEnv.make(4, 3, seed=5), 6000, seed=6, kind="softmax")
    data = logs.data()
    candidates = make_candidates([parse_policy("linucb:alpha=0.2,1.0")])
    config = EvalConfig(n_bootstrap=60, seed=9, batch_size=128)

    def run(runner: Runner) -> dict:
        result = evaluate(
            data, candidates, config=config, control_action=1, shard_rows=1000, runner=runner
        )
        assert result.complete
        out = result.to_dict()
        out.pop("mode")
        return out

    local = run(Runner(workers=0, progress=False))
    on_ray = run(Runner(workers=2, progress=False))
    assert on_ray == local


def _flaky(marker: str, value: int) -> int:
    from pathlib import Path

    path = Path(marker)
    attempts = int(path.read_text()) if path.exists() else 0
    path.write_text(str(attempts + 1))
    if attempts == 0:
        raise OSError("worker lost its scratch disk")
    return value * 10


def _broken(marker: str) -> int:
    from pathlib import Path

    path = Path(marker)
    path.write_text(path.read_text() + "x" if path.exists() else "x")
    raise RuntimeError("always fails")


@pytest.mark.parametrize("workers", [0, 2])
def test_failed_tasks_are_retried_then_reported(ray_session, tmp_path, workers):
    runner = Runner(workers=workers, max_retries=2, progress=False)
    flaky = str(tmp_path / "flaky")
    broken = str(tmp_path / "broken")
    results = runner.run([Task("ok", _flaky, (flaky, 4)), Task("bad", _broken, (broken,))], "test")
    assert results[0] == 40
    assert (tmp_path / "flaky").read_text() == "2"  # failed once, retried once
    assert isinstance(results[1], TaskFailure) and results[1].key == "bad"
    assert "always fails" in results[1].error
    assert (tmp_path / "broken").read_text() == "xxx"  # 1 try + 2 retries


def _dies_once(marker: str) -> str:
    import os
    from pathlib import Path

    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(1)  # the worker process dies: Ray retries the task on a new worker
    return "survived"


def test_a_task_whose_worker_dies_is_retried(ray_session, tmp_path):
    runner = Runner(workers=2, max_retries=2, progress=False)
    (result,) = runner.run([Task("crash", _dies_once, (str(tmp_path / "crash"),))])
    assert result == "survived"

"""A large batch split over threads (engine.policies.rows) gives what one thread gives."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.policies import LinearTS
from engine.policies.rows import THREADS_ENV, kernel_threads, over_rows, row_threads
from testkit.harness import campaign_config, run_serve


def _trained_ts(seed: int = 3) -> tuple[LinearTS, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    k, d = 6, 5
    X = rng.normal(size=(1500, d))
    theta = rng.normal(size=(k, d))
    actions = rng.integers(0, k, 1500)
    rewards = (X @ theta.T)[np.arange(1500), actions] + rng.normal(0, 0.5, 1500)
    policy = LinearTS(k, d, scale=0.5, min_propensity=0.01, seed=seed)
    policy.update(X, actions, rewards)
    batch = rng.normal(size=(3000, d))
    mask = rng.random((3000, k)) < 0.7
    mask[np.arange(3000), rng.integers(0, k, 3000)] = True
    return policy, batch, mask


@pytest.mark.parametrize("threads", ["2", "3"])
def test_a_thompson_batch_on_several_threads_equals_one_thread(
    monkeypatch: pytest.MonkeyPatch, threads: str
) -> None:
    policy, batch, mask = _trained_ts()
    monkeypatch.setenv(THREADS_ENV, "1")
    alone = policy.copy().choose(batch, mask)
    monkeypatch.setenv(THREADS_ENV, threads)
    split = policy.copy().choose(batch, mask)
    np.testing.assert_array_equal(split.actions, alone.actions)
    np.testing.assert_array_equal(split.propensities, alone.propensities)
    np.testing.assert_array_equal(split.scores, alone.scores)
    assert np.all(split.propensities > 0) and np.all(split.propensities <= 1)


def test_over_rows_covers_every_row_once_on_several_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(THREADS_ENV, "3")
    seen = np.zeros(1000, np.int64)
    calls: list[tuple[int, int, bool]] = []

    def mark(start: int, stop: int) -> None:
        seen[start:stop] += 1
        calls.append((start, stop, threading.current_thread() is threading.main_thread()))

    over_rows(mark, 1000, row_threads(1000, 100))
    assert np.all(seen == 1)
    assert sorted(calls) == [(0, 333, True), (333, 666, False), (666, 1000, False)]
    seen[:] = 0
    calls.clear()
    assert row_threads(150, 100) == 1  # fewer than 2 x min_rows: one call, in this thread
    over_rows(mark, 150, row_threads(150, 100))
    assert np.all(seen[:150] == 1) and calls == [(0, 150, True)]


def test_over_rows_raises_a_range_failure_after_every_range_finished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(THREADS_ENV, "2")
    finished: list[int] = []

    def fail_late(start: int, stop: int) -> None:
        if start > 0:
            raise RuntimeError(f"range {start}-{stop} failed")
        finished.append(start)

    with pytest.raises(RuntimeError, match="range 500-1000 failed"):
        over_rows(fail_late, 1000, row_threads(1000, 100))
    assert finished == [0]


def test_kernel_threads_reads_the_environment_and_names_a_bad_value() -> None:
    assert kernel_threads({THREADS_ENV: "4"}) == 4
    assert kernel_threads({}) >= 1
    for bad in ("0", "two", "-1"):
        with pytest.raises(ConfigError, match=THREADS_ENV) as err:
            kernel_threads({THREADS_ENV: bad})
        assert "an integer >= 1" in str(err.value) and bad in str(err.value)


def test_a_bad_thread_setting_fails_a_large_batch_before_any_draw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy, batch, mask = _trained_ts()
    before = policy.rng_state_.copy()
    monkeypatch.setenv(THREADS_ENV, "two")
    with pytest.raises(ConfigError, match=THREADS_ENV):
        policy.choose(batch, mask)
    np.testing.assert_array_equal(policy.rng_state_, before)  # nothing was drawn
    policy.choose(batch[:10], mask[:10])  # a small batch never splits: it does not ask


def test_a_server_with_a_bad_thread_setting_fails_at_start(tmp_path: Path) -> None:
    done = run_serve(
        campaign_config(tmp_path), tmp_path / "data", env={THREADS_ENV: "lots"}, admin_token=False
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert THREADS_ENV in lines[-1] and "'lots'" in lines[-1], done.stderr[-1500:]
    assert "Traceback" not in done.stderr

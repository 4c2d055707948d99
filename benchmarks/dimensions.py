"""Multi-dimensional decisions: one joint model over offer x channel x send window against the
84 combinations as independent arms and against a fixed rule for channel and timing.

On ``renewal-multi`` (:mod:`simulators.renewal_multi`) every row streams the same customers per
seed through :func:`simulators.runner.run_policy` (through :func:`simulators.parallel.run_tasks`,
as ``benchmarks/learning.py`` does): the joint learners (LandingLift, which learns each route's
landing from the outcomes' ``engaged`` signal and each offer's lift once landed; SharedLinear over
context x :func:`~engine.features.combinations.combination_features`), epsilon-greedy (LandingLift's
choice rule), LinUCB and Vowpal Wabbit over the 84 combinations as independent arms, each joint
learner under the fixed rule (``rule="preferred"``: every message now, through the customer's
preferred channel; the learner picks the offer), the control (no incentive), the best single
static combination and the oracle. Every figure is the
share of the *unrestricted* oracle's expected net value (the rule's runs see the same customers,
so they are divided by the same oracle), mean ± standard deviation over seeds.

``python -m benchmarks.dimensions`` runs 20,000 and 100,000 customers x 3 seeds on local Ray
(2 workers); ``--quick`` runs 1,000 customers, one seed, in-process in seconds;
``--readme README.md`` rewrites the README's table between its markers. The JSON goes to
benchmarks/results/dimensions.json.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import common as bc
from engine.cliargs import add_quick
from simulators.parallel import Task, run_tasks
from simulators.runner import RunResult

ENV = "renewal-multi"
TABLE = "dimensions-table"
BEGIN, END = bc.markers(TABLE)
SIZES = (20_000, 100_000)
SEEDS = 3
RULE = {"rule": "preferred"}
#: Row label -> (policy text, environment knobs). Policies run at their class defaults.
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "joint: LandingLift, landing learned from engagement x offer lift": ("landing", {}),
    "independent arms: epsilon-greedy (84 arms; LandingLift's choice rule)": ("egreedy", {}),
    "fixed rule for channel and timing, LandingLift picks the offer": ("landing", RULE),
    "joint: SharedLinear over combination features": ("shared", {}),
    "independent arms: LinUCB (84 arms)": ("linucb", {}),
    "independent arms: Vowpal Wabbit SquareCB (84 arms)": ("vw", {}),
    "fixed rule for channel and timing, SharedLinear picks the offer": ("shared", RULE),
    "control (no incentive)": ("control", {}),
}
QUICK_ROWS = tuple(label for label in ROWS if "Vowpal" not in label)


def tasks_for(
    rows: Sequence[str], sizes: Sequence[int], seeds: Sequence[int]
) -> list[tuple[str, Task]]:
    """(row label, task) per row, size and seed; every row's seeds share their customers."""
    return [
        (label, Task(ENV, ROWS[label][0], seed, n, env_knobs=dict(ROWS[label][1])))
        for n in sizes
        for label in rows
        for seed in seeds
    ]


def summarize(labelled: Sequence[tuple[str, Task, RunResult]]) -> dict[str, Any]:
    """Per size: every row's share of the unrestricted oracle (mean, sd, per seed), the best
    static combination's and the oracle's value per customer."""
    out: dict[str, Any] = {}
    for n in sorted({t.n_rounds for _, t, _ in labelled}):
        mine = [(label, t, r) for label, t, r in labelled if t.n_rounds == n]
        free = {t.seed: r for _, t, r in mine if not t.env_knobs}
        oracle = {s: r.oracle[-1] for s, r in free.items()}
        shares: dict[str, list[float]] = {}
        for label, t, r in mine:
            shares.setdefault(label, []).append(r.value[-1] / oracle[t.seed])
        statics = {k: [r.static_values[k] / oracle[s] for s, r in free.items()] for k in _ids(free)}
        best = max(statics, key=lambda k: float(np.mean(statics[k])))
        shares[f"best static combination ({best})"] = statics[best]
        control = [r.control[-1] / oracle[s] for s, r in free.items()]
        out[str(n)] = {
            "rows": {label: _stats(v) for label, v in shares.items()},
            "oracle_value": float(np.mean([oracle[s] / n for s in oracle])),
            "control_share": float(np.mean(control)),
            "seconds": {label: _seconds(mine, label) for label in dict.fromkeys(shares)},
        }
    return out


def _ids(free: dict[int, RunResult]) -> list[str]:
    return list(next(iter(free.values())).static_values)


def _stats(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    sd = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "sd": sd, "per_seed": arr.tolist()}


def _seconds(mine: Sequence[tuple[str, Task, RunResult]], label: str) -> float | None:
    runs = [r.seconds for lb, _, r in mine if lb == label]
    return float(np.mean(runs)) if runs else None


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    sd = f" ± {100 * entry['sd']:.1f}" if entry["sd"] else ""
    return f"{100 * entry['mean']:.1f}{sd}"


def _table(table: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    sizes = list(table)
    labels = list(dict.fromkeys(label for n in sizes for label in table[n]["rows"]))
    heads = ["policy", *(f"% of oracle, {int(n):,} customers" for n in sizes)]
    rows = [[label, *(_cell(table[n]["rows"].get(label)) for n in sizes)] for label in labels]
    rows.append(["oracle", *("100.0" for _ in sizes)])
    rows.append(
        ["oracle net value / customer", *(f"{table[n]['oracle_value']:.2f}" for n in sizes)]
    )
    return heads, rows


def render_text(table: dict[str, Any]) -> str:
    """The plain-text table printed by the benchmark."""
    heads, rows = _table(table)
    return bc.format_table(
        f"{ENV}: share of the unrestricted oracle's net value, mean ± sd over seeds",
        heads,
        rows,
        notes=["every row sees the same customers per seed; the class defaults throughout"],
    )


def render_markdown(table: dict[str, Any], n_seeds: int) -> str:
    """The README's table (between its markers)."""
    heads, rows = _table(table)
    lines = ["| " + " | ".join(heads) + " |", "|---|" + "---:|" * (len(heads) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    sizes = ",".join(table)
    command = f"python -m benchmarks.dimensions --sizes {sizes} --readme README.md"
    lines += ["", f"Mean ± sd over {n_seeds} seeds; `{command}`."]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    sizes = (1_000,) if args.quick else tuple(args.sizes)
    seeds = range(1 if args.quick else args.seeds)
    rows = QUICK_ROWS if args.quick else tuple(ROWS)
    labelled = tasks_for(rows, sizes, seeds)
    print(f"{len(labelled)} runs on {ENV}", file=sys.stderr)
    workers = 0 if args.quick else args.workers
    results = run_tasks([t for _, t in labelled], workers=workers, show_progress=not args.quick)
    table = summarize([(label, t, r) for (label, t), r in zip(labelled, results, strict=True)])
    settings = {"quick": args.quick, "sizes": list(sizes), "seeds": len(seeds), "env": ENV}
    path = bc.write_json(args.out, {"run": bc.run_info(settings), "sizes": table})
    print(f"{render_text(table)}\nwrote {path}")
    if args.readme:
        bc.rewrite_between_markers(args.readme, TABLE, render_markdown(table, len(seeds)))
        print(f"README table rewritten: {args.readme}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.dimensions", description=__doc__.split("\n\n")[0]
    )
    add_quick(parser, "1,000 customers, one seed, in-process, without VW (seconds)")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=list(SIZES),
        help="comma list of customers per run [20000,100000]",
    )
    parser.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds 0..N-1 [{SEEDS}]")
    parser.add_argument(
        "--workers", type=int, default=2, help="0: in-process; N: local Ray with N CPUs [2]"
    )
    parser.add_argument("--readme", default=None, metavar="PATH", help="rewrite its table")
    parser.add_argument(
        "--out",
        default="benchmarks/results/dimensions.json",
        help="JSON output [benchmarks/results/dimensions.json]",
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

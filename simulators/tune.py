"""``nbo tune``: a hyperparameter search for one policy, over a simulator (ground truth) or over
logged data (off-policy estimates with intervals), in parallel on Ray.

The grid is the policy spec's comma lists (``linucb:alpha=0.01,0.1,1:l2=1,10``: 6 points).

- ``--env NAME``: every grid point x seed is a simulation task (:mod:`simulators.parallel`:
  in-process for small jobs, local Ray by default beyond, ``--ray-address`` for a cluster); a
  point's value is its mean expected net reward per customer over the seeds, with a 95%
  interval across seeds, and its share of the oracle.
- ``--logs PATH``: the points are the candidates of one off-policy evaluation
  (:func:`engine.replay.evaluate.evaluate`, as ``nbo evaluate`` runs it, learning candidates by
  default: each replays the log while it learns); a point's value is the primary estimator's
  estimate with its interval.

It prints the table (best first), writes ``tune.json``, ``best-policy.toml`` (a ``[policy]``
table to paste into a campaign file) and ``tune.png`` (the response over the first grid key,
one line per value of the second), with ``--logs`` also the whole evaluation report
(``evaluation/report.html``), and prints where.

Examples
--------
>>> from engine.cliargs import parse_command
>>> args = parse_command(register, ["tune", "--policy", "linucb:alpha=0.1,1:l2=1,10",
...                                 "--env", "iris"])
>>> [p["alpha"] for p in grid_of(args.policy)]
[0.1, 0.1, 1, 1]
>>> policy_text({"name": "linucb", "alpha": 0.1, "l2": 10})
'linucb:alpha=0.1:l2=10'
>>> print(best_toml({"name": "linucb", "alpha": 0.1, "l2": 10}))
[policy]
name = "linucb"
alpha = 0.1
l2 = 10
<BLANKLINE>
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from engine.cliargs import add_ray_workers, command, commands, parse_command
from engine.errors import InvalidInputError
from engine.replay.candidates import expand_grid, parse_policy
from simulators.envs import ENV_NAMES

__all__ = ["best_toml", "grid_of", "policy_text", "register", "run_tune"]

MAX_POINTS = 200  # grid points one search runs


def grid_of(text: str) -> list[dict[str, Any]]:
    """The grid points of a policy spec, checked: at most MAX_POINTS."""
    points = expand_grid(parse_policy(text))
    if len(points) > MAX_POINTS:
        raise InvalidInputError(
            "--policy", f"a grid of at most {MAX_POINTS} points", f"{len(points)} points"
        )
    return points


def policy_text(point: dict[str, Any]) -> str:
    """A grid point as ``nbo simulate`` policy text (``name:key=value:...``)."""
    parts = [str(point["name"])]
    for key, value in point.items():
        if key != "name":
            parts.append(f"{key}={json.dumps(value) if isinstance(value, bool) else value}")
    return ":".join(parts)


def best_toml(point: dict[str, Any]) -> str:
    """A ``[policy]`` table of a grid point, ready for a campaign file."""
    lines = ["[policy]"]
    for key, value in point.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def _keys(points: list[dict[str, Any]]) -> list[str]:
    """The hyperparameters that vary over the grid, in spec order."""
    return [k for k in points[0] if k != "name" and len({json.dumps(p[k]) for p in points}) > 1]


def _simulate(args: argparse.Namespace, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from simulators.parallel import Task, run_tasks
    from simulators.runner import summarize

    if args.rounds < 1 or args.seeds < 1:
        raise InvalidInputError("--rounds, --seeds", "integers >= 1", (args.rounds, args.seeds))
    texts = [policy_text(p) for p in points]
    tasks = [
        Task(env=args.env, policy=t, seed=s, n_rounds=args.rounds)
        for t in texts
        for s in range(args.seeds)
    ]
    results = run_tasks(
        tasks, workers=args.workers, ray_address=args.ray_address, show_progress=not args.quiet
    )
    summary = summarize(results)["policies"]
    rows = []
    for point, text in zip(points, texts, strict=True):
        s = summary[text]
        rows.append(
            {
                "point": point,
                "value": s["value"],
                "low": s["value"] - s["value_ci"],
                "high": s["value"] + s["value_ci"],
                "pct_of_oracle": s["pct_of_oracle"],
                "pct_of_oracle_ci": s["pct_of_oracle_ci"],
            }
        )
    return rows


def _off_policy(args: argparse.Namespace, points: list[dict[str, Any]], out: Path) -> list[dict]:
    from engine.replay.cli import register as register_replay
    from engine.replay.cli import run_evaluate

    argv = ["evaluate", "--logs", str(args.logs), "--mode", args.mode, "--out", str(out)]
    argv += ["--primary", args.primary, "--policy", json.dumps(parse_policy(args.policy))]
    for column in args.column:
        argv += ["--column", column]
    if args.workers is not None:
        argv += ["--workers", str(args.workers)]
    if args.ray_address is not None:
        argv += ["--ray-address", args.ray_address]
    if args.quiet:
        argv.append("--no-progress")
    printed = io.StringIO()  # the evaluation's own table: tune prints its own
    with contextlib.redirect_stdout(printed):
        run_evaluate(parse_command(register_replay, argv))
    report = json.loads((out / "evaluation.json").read_text())
    method = report["interval"]
    by_spec = {
        json.dumps(c["spec"], sort_keys=True): c
        for c in report["candidates"]
        if c["kind"] == args.mode
    }
    rows = []
    for point in points:
        c = by_spec.get(json.dumps(point, sort_keys=True))
        estimate = (c or {}).get("estimates", {}).get(report["primary_estimator"]) or {}
        interval = estimate.get(method) or [None, None]
        rows.append(
            {
                "point": point,
                "value": _num(estimate.get("value")),
                "low": _num(interval[0]),
                "high": _num(interval[1]),
                "status": (c or {}).get("status", "missing"),
            }
        )
    return rows


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float as None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def run_tune(args: argparse.Namespace) -> dict[str, Any]:
    """The search; returns the report :func:`handle` writes."""
    points = grid_of(args.policy)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.env is not None:
        rows = _simulate(args, points)
        source = {"env": args.env, "rounds": args.rounds, "seeds": args.seeds}
    else:
        rows = _off_policy(args, points, args.out / "evaluation")
        source = {
            "logs": str(args.logs),
            "mode": args.mode,
            "primary": args.primary,
            "report": str(args.out / "evaluation" / "report.html"),
        }
    ranked = sorted(rows, key=lambda r: -r["value"] if math.isfinite(r["value"]) else math.inf)
    best = ranked[0]
    return {
        "policy": args.policy,
        "source": source,
        "keys": _keys(points),
        "points": ranked,
        "best": best["point"],
        "best_toml": best_toml(best["point"]),
        "seconds": time.perf_counter() - started,
    }


def format_table(report: dict[str, Any]) -> str:
    keys = report["keys"]
    sim = "env" in report["source"]
    head = [*keys, "value/customer", "95% interval"] + (["% of oracle"] if sim else [])
    rows = []
    for r in report["points"]:
        cells = [str(r["point"][k]) for k in keys]
        cells += [f"{r['value']:.3f}", f"[{r['low']:.3f}, {r['high']:.3f}]"]
        if sim:
            cells.append(f"{100 * r['pct_of_oracle']:.1f} ±{100 * r['pct_of_oracle_ci']:.1f}")
        rows.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for i, cells in enumerate(rows):
        mark = "  <- best" if i == 0 else ""
        lines.append("  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + mark)
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> Path:
    """The response: value over the first grid key (log scale when it spans 10x or more),
    one line per value of the second key, with the intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = report["keys"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if not keys:
        keys = ["name"]
    x_key = keys[0]
    series: dict[str, list[dict[str, Any]]] = {}
    for r in report["points"]:
        label = ", ".join(f"{k}={r['point'][k]}" for k in keys[1:]) or report["best"]["name"]
        series.setdefault(label, []).append(r)
    numeric = all(isinstance(r["point"][x_key], int | float) for r in report["points"])
    for label, rs in series.items():
        rs = sorted(rs, key=lambda r: r["point"][x_key] if numeric else str(r["point"][x_key]))
        xs = [r["point"][x_key] if numeric else str(r["point"][x_key]) for r in rs]
        ys = [r["value"] for r in rs]
        err = [
            [y - r["low"] for y, r in zip(ys, rs, strict=True)],
            [r["high"] - y for y, r in zip(ys, rs, strict=True)],
        ]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)
    if numeric:
        values = [float(r["point"][x_key]) for r in report["points"]]
        if min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
    ax.set_xlabel(x_key)
    ax.set_ylabel("value per customer" if "env" in report["source"] else "estimated value")
    where = report["source"].get("env") or Path(report["source"]["logs"]).name
    ax.set_title(f"nbo tune {report['best']['name']} on {where}")
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def handle(args: argparse.Namespace) -> int:
    if args.ray_address is not None:
        from engine.replay.fanout import check_reachable

        check_reachable(args.ray_address)
    report = run_tune(args)
    what = report["source"]
    if "env" in what:
        head = (
            f"{args.policy} on {what['env']}: {what['rounds']:,} customers x {what['seeds']} "
            "seed(s) per point; value = expected net reward per customer (ground truth)"
        )
    else:
        head = (
            f"{args.policy} on {what['logs']}: {what['primary']} estimates of {what['mode']} "
            "candidates, with their intervals"
        )
    print(head)
    print(format_table(report))
    print(f"best: {policy_text(report['best'])}")
    json_path = args.out / "tune.json"
    json_path.write_text(json.dumps(_finite(report), indent=2, allow_nan=False) + "\n")
    toml_path = args.out / "best-policy.toml"
    toml_path.write_text(report["best_toml"])
    print(f"wrote {json_path}")
    print(f"wrote {toml_path} (paste it over the campaign file's [policy] table)")
    if not args.no_plot:
        print(f"wrote {plot(report, args.out / 'tune.png')}")
    if "report" in what:
        print(f"wrote {what['report']} (the whole off-policy evaluation)")
    sys.stdout.flush()
    return 0


@command("tune", handle)
def _tune_command(p: argparse.ArgumentParser) -> None:
    """hyperparameter search for a policy over a simulator or logs (table + JSON + PNG)

    Try every point of a policy's hyperparameter grid (comma lists in the spec) on a simulated
    environment with ground truth (--env; every point sees the same customers per seed) or
    off-policy on logged data (--logs; estimates with intervals), in parallel on Ray; print the
    points best first and write tune.json, best-policy.toml (a [policy] table for a campaign file)
    and tune.png.
    """
    p.add_argument(
        "--policy",
        required=True,
        metavar="SPEC",
        help="NAME:key=v1,v2:key2=w1,w2 (comma lists form the grid) or a JSON object with "
        "list values",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--env", choices=ENV_NAMES, help="tune on this simulator [one of --env and --logs]"
    )
    source.add_argument(
        "--logs", type=Path, help="tune off-policy on these logs, as nbo evaluate [none]"
    )
    p.add_argument("--rounds", type=int, default=20_000, help="--env: customers per run [20000]")
    p.add_argument("--seeds", type=int, default=3, help="--env: seeds per point [3]")
    p.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="--logs: map a source column onto a logged-data field (as nbo evaluate) [none]",
    )
    p.add_argument(
        "--mode",
        default="learning",
        choices=("learning", "static"),
        help="--logs: learning (each point replays the log while it learns) or static "
        "(trained on the earlier rows) [%(default)s]",
    )
    p.add_argument("--primary", default="dr", help="--logs: estimator that ranks [dr]")
    add_ray_workers(
        p,
        "0 = in-process; N = local Ray with N CPUs [the job decides: in-process when small]",
        "run on an existing Ray cluster (fails within seconds when unreachable) [none]",
    )
    p.add_argument(
        "--out", type=Path, default=Path("nbo-data/tune"), help="output directory [%(default)s]"
    )
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# What the nbo.commands entry point tune names (pyproject.toml).
register = commands(_tune_command)

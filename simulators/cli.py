"""``nbo simulate``: compare policies on a simulated environment with ground truth.

Examples
--------
>>> from engine.cliargs import parse_command
>>> args = parse_command(register, ["simulate", "--policies", "linucb,control", "--rounds", "500",
...                                 "--seeds", "2", "--workers", "0"])
>>> [t.policy for t in tasks_from_args(args)], [t.seed for t in tasks_from_args(args)]
(['linucb', 'linucb', 'control', 'control'], [0, 1, 0, 1])
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.cliargs import add_ray_workers, command, commands
from engine.errors import InvalidInputError
from simulators.envs import ENV_NAMES, make_env
from simulators.parallel import IN_PROCESS_LIMIT, Task, run_tasks
from simulators.runner import POLICY_DEFAULTS, RunResult, parse_policy, summarize

DEFAULT_POLICIES = "linucb,lints,egreedy,shared,vw,random,control"
PICK = "oracle's pick"


def _seeds(text: str) -> list[int]:
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise InvalidInputError("--seeds", "a count or a comma list of integers", text) from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise InvalidInputError("--seeds", "a count >= 1 or distinct integers >= 0", text)
    return seeds


def tasks_from_args(args: argparse.Namespace) -> list[Task]:
    """One task per (policy, seed), validated before anything runs."""
    if args.rounds < 1:
        raise InvalidInputError("--rounds", "an integer >= 1", args.rounds)
    if args.batch_size < 1:
        raise InvalidInputError("--batch-size", "an integer >= 1", args.batch_size)
    if args.workers is not None and args.workers < 0:
        raise InvalidInputError("--workers", "an integer >= 0", args.workers)
    policies = [parse_policy(p)[0] for p in args.policies.split(",") if p.strip()]
    if not policies:
        raise InvalidInputError("--policies", "at least one policy", args.policies)
    if len(set(policies)) != len(policies):
        raise InvalidInputError("--policies", "distinct policies", args.policies)
    knobs: dict[str, Any] = {}
    if args.env.startswith("renewal"):
        knobs = {
            "drift": args.drift,
            "seasonality": args.seasonality,
            "population_size": args.population_size,
        }
        if args.delay_days is not None:
            knobs["delay_days"] = tuple(args.delay_days)
        if args.env == "renewal-multi":
            knobs["rule"] = args.rule
        elif args.rule is not None:
            raise InvalidInputError("--rule", "only with --env renewal-multi", args.rule)
    else:
        knobs = {"label_noise": args.label_noise}
        if args.via != "policy":
            raise InvalidInputError("--via", "'policy' for a data-set environment", args.via)
    if args.data_dir is not None and args.via == "policy":
        raise InvalidInputError(
            "--data-dir", "--via engine or grpc (policy runs keep no journal)", str(args.data_dir)
        )
    knobs = {k: v for k, v in knobs.items() if v is not None}
    campaign = args.campaign
    if campaign is None and args.via != "policy":
        from simulators.engine_path import DEFAULT_CAMPAIGN

        campaign = DEFAULT_CAMPAIGN
    make_env(args.env, campaign=campaign, **knobs)  # fail fast on a bad knob or campaign
    return [
        Task(
            env=args.env,
            policy=policy,
            seed=seed,
            n_rounds=args.rounds,
            via=args.via,
            env_knobs=knobs,
            campaign=None if campaign is None else str(campaign),
            batch_size=args.batch_size,
            data_dir=None if args.data_dir is None else str(args.data_dir),
        )
        for policy in policies
        for seed in _seeds(args.seeds)
    ]


def format_table(summary: dict[str, Any], has_control: bool = True) -> str:
    """The comparison as a text table, best policy first (lift columns only when the
    environment has a control offer)."""
    rows = sorted(summary["policies"].items(), key=lambda kv: -kv[1]["value"])
    head = (
        f"{'policy':<28} {'net value/customer':>20} {'% of oracle':>13} "
        f"{'lift over control':>19} {'share of oracle lift':>21} {PICK:>13}"
    )
    lines = [head, "-" * len(head)]

    def line(name: str, r: dict[str, Any]) -> str:
        def ci(key: str, fmt: str, scale: float = 1.0) -> str:
            value = format(r[key] * scale, fmt)
            half = r.get(f"{key}_ci", 0.0) * scale
            return f"{value} ±{format(half, fmt)}" if half else value

        lift = ci("lift", ".2f") if has_control else "-"
        share = ci("lift_share", ".1f", 100.0) if has_control else "-"
        return (
            f"{name:<28} {ci('value', '.2f'):>20} {ci('pct_of_oracle', '.1f', 100.0):>13} "
            f"{lift:>19} {share:>21} "
            + (f"{100.0 * r['oracle_agreement']:>12.1f}%" if "oracle_agreement" in r else "")
        )

    for name, r in rows:
        lines.append(line(name, r))
    best = summary["best_static"]
    lines.append(line(f"best static ({best['offer']})", best))
    gap = f"{summary['oracle'] - summary['control']:.2f}" if has_control else "-"
    lines.append(
        f"{'oracle':<28} {summary['oracle']:>20.2f} {100.0:>13.1f} {gap:>19} "
        f"{'100.0' if has_control else '-':>21}"
    )
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    tasks = tasks_from_args(args)
    started = time.perf_counter()
    results: list[RunResult] = run_tasks(
        tasks, workers=args.workers, ray_address=args.ray_address, show_progress=not args.quiet
    )
    summary = summarize(results)
    seeds = sorted({t.seed for t in tasks})
    stem = f"{args.env}-{args.via}-{args.rounds}x{len(seeds)}"
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "env": args.env,
        "via": args.via,
        "n_rounds": args.rounds,
        "seeds": seeds,
        "env_knobs": tasks[0].env_knobs,
        "campaign": tasks[0].campaign,
        "wall_seconds": time.perf_counter() - started,
        "summary": summary,
        "runs": [r.to_dict() for r in results],
    }
    json_path = args.out / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=1, default=float))
    print(
        f"{args.env} via {args.via}: {args.rounds:,} customers x {len(seeds)} seed(s); "
        "values are expected net reward per customer (ground truth), ± 95% interval across "
        "seeds; oracle's pick = share of decisions that chose the oracle's offer"
    )
    has_control = make_env(args.env, **tasks[0].env_knobs).control_action is not None
    print(format_table(summary, has_control))
    print(f"wrote {json_path}")
    if not args.no_plot:
        from simulators.plots import plot_runs

        title = f"{args.env} via {args.via}: {args.rounds:,} customers, {len(seeds)} seed(s)"
        png = plot_runs(results, args.out / f"{stem}.png", title=title)
        print(f"wrote {png}")
    sys.stdout.flush()
    return 0


@command("simulate", handle)
def _simulate_command(p: argparse.ArgumentParser) -> None:
    """compare policies on a simulated environment with ground truth (JSON + PNG)

    Stream simulated customers through each policy (one run per policy and seed; every policy sees
    the same customers for a given seed) and measure net value per customer against the oracle, the
    control offer and the best single static offer. Runs in-process, or on Ray (a task per policy x
    seed), through the bare policies, the Engine API or the gRPC service.
    """
    p.add_argument("--env", default="renewal", choices=ENV_NAMES, help="environment [renewal]")
    p.add_argument(
        "--policies",
        default=DEFAULT_POLICIES,
        help=f"comma list of NAME or NAME:key=value:... among {','.join(POLICY_DEFAULTS)} "
        f"[{DEFAULT_POLICIES}]",
    )
    p.add_argument("--rounds", type=int, default=100_000, help="customers per run [100000]")
    p.add_argument(
        "--seeds", default="3", help="number of seeds (0..S-1) or a comma list of seeds [3]"
    )
    add_ray_workers(
        p,
        "0 = in-process; N = Ray with N CPUs [default: in-process for jobs up to "
        f"{IN_PROCESS_LIMIT:,} rounds in total, else local Ray with every CPU]",
        "run the tasks on an existing Ray cluster [none]",
    )
    via = p.add_mutually_exclusive_group()
    via.add_argument(
        "--via",
        choices=("policy", "engine", "grpc"),
        default="policy",
        help="policy: bare policies on encoded arrays (fastest); engine: the Engine API with "
        "the campaign's rules, control group, budgets and journal; grpc: a local nbo server "
        "[policy]",
    )
    via.add_argument(
        "--via-grpc", dest="via", action="store_const", const="grpc", help="same as --via grpc"
    )
    p.add_argument(
        "--campaign",
        type=Path,
        help="campaign file whose offers, costs and rules the renewal environment uses "
        "(and the Engine runs) [examples/renewal.toml for --via engine/grpc]",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="--via engine/grpc: keep each run's journal and snapshots in DATA_DIR/POLICY-seedS "
        "(nbo export turns a journal into Parquet logs) [temporary]",
    )
    p.add_argument(
        "--batch-size", type=int, default=100, help="customers per decision batch [%(default)s]"
    )
    p.add_argument(
        "--drift", type=float, help="renewal: yearly rise of price sensitivity [the environment's]"
    )
    p.add_argument(
        "--seasonality",
        type=float,
        help="renewal: yearly churn cycle amplitude [the environment's]",
    )
    p.add_argument(
        "--delay-days",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="renewal: outcomes known uniformly LOW..HIGH days after the decision [7 30]",
    )
    p.add_argument(
        "--population-size",
        type=int,
        help="renewal: draw arrivals from a fixed book of this many customers [none: every "
        "arrival is a new customer]",
    )
    p.add_argument(
        "--rule",
        choices=("preferred",),
        help="renewal-multi: a fixed rule picks channel and timing (preferred: every message "
        "now, through the customer's preferred channel) and the policy only the offer [none]",
    )
    p.add_argument("--label-noise", type=float, help="data sets: reward flip probability [0]")
    p.add_argument(
        "--out", type=Path, default=Path("nbo-data/simulate"), help="output directory [%(default)s]"
    )
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# What the nbo.commands entry point simulate names (pyproject.toml).
register = commands(_simulate_command)

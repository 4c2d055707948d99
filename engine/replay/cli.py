"""``nbo evaluate`` (off-policy evaluation report) and ``nbo train`` (logs -> snapshot)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from engine.errors import InvalidInputError
from engine.replay.candidates import KINDS, EvalConfig, make_candidates, parse_policy
from engine.replay.data import LoggedData
from engine.replay.estimators import ESTIMATORS, INTERVAL_METHODS
from engine.replay.fanout import Runner
from engine.replay.readers import ColumnMap, read_logs


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` and ``train`` subcommands."""
    evaluate = subparsers.add_parser(
        "evaluate",
        help="off-policy evaluation of candidate policies on logged data (JSON + HTML report)",
        description="Estimate what candidate policies would have earned on logged decisions, "
        "with confidence intervals, next to the logging policy and the uniform and control "
        "baselines; write evaluation.json and report.html with a go/no-go line.",
    )
    _add_source_args(evaluate)
    evaluate.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="SPEC",
        help="candidate: NAME, NAME:key=v1,v2:key2=v (comma lists form a grid) or a JSON object; "
        "repeatable",
    )
    evaluate.add_argument(
        "--mode",
        default="static,learning",
        help="how candidates run: static (trained on the train split, frozen), learning "
        "(replayed through time), or both (default)",
    )
    evaluate.add_argument(
        "--estimators",
        default=",".join(ESTIMATORS),
        help=f"comma list among {','.join(ESTIMATORS)} (default all)",
    )
    evaluate.add_argument("--primary", default="dr", help="estimator that ranks and decides")
    evaluate.add_argument("--interval", default="bootstrap", choices=INTERVAL_METHODS)
    evaluate.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    evaluate.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level")
    evaluate.add_argument("--clip", type=float, default=None, help="clip importance weights")
    evaluate.add_argument("--train-fraction", type=float, default=0.5)
    evaluate.add_argument(
        "--control-offer",
        default=None,
        help="offer id of the business-as-usual control (default: the most frequent offer in "
        "control rows, when the logs have a control column)",
    )
    evaluate.add_argument("--batch-size", type=int, default=256, help="replay batch size")
    evaluate.add_argument("--shard-rows", type=int, default=131_072, help="rows per task")
    evaluate.add_argument(
        "--workers",
        type=int,
        default=None,
        help="0: in-process; N: local Ray with N CPUs (default: in-process for small jobs, "
        "else local Ray with every CPU)",
    )
    evaluate.add_argument("--ray-address", default=None, help="an existing Ray cluster")
    evaluate.add_argument("--retries", type=int, default=2, help="retries per failed task")
    evaluate.add_argument("--out", default="nbo-evaluation", help="report directory")
    evaluate.set_defaults(func=run_evaluate)

    train = subparsers.add_parser(
        "train",
        help="learn a policy from logged data and write a snapshot the service can promote",
        description="Offline warm start: fit a policy on logged decisions with IPS-weighted or "
        "doubly robust targets and write an nbo snapshot file.",
    )
    _add_source_args(train)
    train.add_argument("--policy", required=True, metavar="SPEC", help="policy spec (no grid)")
    train.add_argument("--target", default="ips", choices=("ips", "dr"))
    train.add_argument("--out", required=True, metavar="SNAPSHOT", help="snapshot file to write")
    train.add_argument("--campaign", default="", help="campaign name stored in the snapshot")
    train.add_argument("--version", default=None, help="model version (default offline-<time>)")
    train.set_defaults(func=run_train)


def _add_source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logs", required=True, help="Parquet file/directory, CSV file or DSJson file"
    )
    parser.add_argument("--format", default="auto", choices=("auto", "parquet", "csv", "dsjson"))
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="map a source column: action=offer, propensity=p, reward=value or reward=-cost, "
        "context=x_* (prefix) or context=a,b,c; repeatable",
    )
    parser.add_argument(
        "--actions", default=None, help="offer ids in policy order, comma-separated"
    )
    parser.add_argument(
        "--dsjson-features", type=int, default=32, help="hashed context width for DSJson"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _load(args: argparse.Namespace) -> LoggedData:
    actions = None
    if args.actions:
        actions = tuple(a.strip() for a in args.actions.split(",") if a.strip())
    data = read_logs(
        args.logs,
        ColumnMap.parse(args.column),
        actions,
        format=args.format,
        n_features=args.dsjson_features,
    )
    print(
        f"read {data.n_rounds} decisions ({data.n_pending} pending dropped), "
        f"{data.n_actions} offers, {data.n_features} features from {args.logs}",
        file=sys.stderr,
    )
    return data


def _control_action(data: LoggedData, offer: str | None) -> int | None:
    if offer is not None:
        if offer not in data.actions:
            raise InvalidInputError("--control-offer", f"one of {list(data.actions)}", offer)
        return data.actions.index(offer)
    if data.control is None or not data.control.any():
        return None
    counts = Counter(data.action[data.control].tolist())
    return int(counts.most_common(1)[0][0])


def run_evaluate(args: argparse.Namespace) -> int:
    from engine.replay.evaluate import evaluate
    from engine.replay.report import write_report

    kinds = tuple(k.strip() for k in args.mode.split(",") if k.strip())
    for kind in kinds:
        if kind not in KINDS:
            raise InvalidInputError("--mode", f"a comma list of {KINDS}", args.mode)
    specs = [parse_policy(p) for p in args.policy]
    candidates = make_candidates(specs, kinds)
    config = EvalConfig(
        estimators=tuple(e.strip() for e in args.estimators.split(",") if e.strip()),
        clip=args.clip,
        n_bootstrap=args.bootstrap if args.interval == "bootstrap" else max(args.bootstrap, 0),
        seed=args.seed,
        batch_size=args.batch_size,
    )
    if args.batch_size < 1:
        raise InvalidInputError("--batch-size", "an int >= 1", args.batch_size)
    config.make()
    data = _load(args)
    control = _control_action(data, args.control_offer)
    runner = None
    if args.workers is not None or args.ray_address is not None:
        runner = Runner(
            workers=args.workers,
            address=args.ray_address,
            max_retries=args.retries,
            progress=not args.no_progress,
        )
    else:
        n_jobs = (len(candidates) + 3) * data.n_rounds * (1 - args.train_fraction)
        from engine.replay.evaluate import SMALL_JOB

        runner = Runner(
            workers=0 if n_jobs < SMALL_JOB else None,
            max_retries=args.retries,
            progress=not args.no_progress,
        )
    try:
        result = evaluate(
            data,
            candidates,
            config=config,
            train_fraction=args.train_fraction,
            shard_rows=args.shard_rows,
            control_action=control,
            primary=args.primary,
            interval=args.interval,
            alpha=args.alpha,
            runner=runner,
        )
    finally:
        runner.close()
    result.info["source"] = str(args.logs)
    paths = write_report(result, args.out)
    decision = result.decision()
    print(decision["reason"])
    print(f"wrote {paths['json']}")
    print(f"wrote {paths['html']} (plots {paths['ranking'].name}, {paths['estimators'].name})")
    if not result.complete:
        print("evaluation INCOMPLETE: some tasks failed; see the report", file=sys.stderr)
        return 1
    return 0


def run_train(args: argparse.Namespace) -> int:
    from engine.replay.train import train_policy, write_trained_snapshot

    spec = parse_policy(args.policy)
    data = _load(args)
    policy = train_policy(data, spec, target=args.target, seed=args.seed)
    header = write_trained_snapshot(
        args.out, policy, data, target=args.target, campaign=args.campaign, version=args.version
    )
    summary_path = Path(f"{args.out}.json")
    summary = {
        "snapshot": str(args.out),
        "version": header["version"],
        "policy": spec,
        "policy_class": header["policy_class"],
        "target": args.target,
        "n_rows": data.n_rounds,
        "n_pending": data.n_pending,
        "offer_ids": list(data.actions),
        "source": str(args.logs),
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out} ({header['policy_class']}, version {header['version']})")
    print(f"wrote {summary_path}")
    return 0

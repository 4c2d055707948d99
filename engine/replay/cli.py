"""``nbo evaluate`` (off-policy evaluation report) and ``nbo train`` (logs -> snapshot)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.cliargs import add_ray_workers, add_seed, command, commands
from engine.errors import InvalidInputError, InvalidParameterError
from engine.policies import LandingLift, SharedLinear, make_policy, policy_class
from engine.replay.candidates import (
    KINDS,
    Candidate,
    EvalConfig,
    make_candidates,
    parse_policy,
)
from engine.replay.data import LoggedData
from engine.replay.dimensions import (
    hold_dimensions,
    logged_dimensions,
    logged_offer_features,
    logged_treatments,
)
from engine.replay.estimators import ESTIMATORS, INTERVAL_METHODS
from engine.replay.external import external_candidate
from engine.replay.fanout import Runner, check_reachable
from engine.replay.readers import ColumnMap, read_logs
from engine.replay.results import Gate

if TYPE_CHECKING:
    from engine.replay.evaluate import EvaluateOptions

# The fields --column can map (what ColumnMap.parse accepts; a test keeps the two equal).
COLUMN_FIELDS = (
    "action",
    "propensity",
    "reward",
    "context",
    "eligible",
    "timestamp",
    "decision_id",
    "control",
    "explored",
    "customer_id",
    "components",
)


def _add_source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logs", required=True, help="Parquet file/directory, CSV file or DSJson file"
    )
    parser.add_argument(
        "--format",
        default="auto",
        choices=("auto", "parquet", "csv", "dsjson"),
        help="source format; auto goes by the file name [%(default)s]",
    )
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="map a source column onto a logged-data field; FIELD is one of "
        f"{', '.join(COLUMN_FIELDS)}: action=offer, propensity=p, reward=value or reward=-cost "
        "(a cost column, negated), context=x_* (prefix) or context=a,b,c, eligible=COL, "
        "timestamp=COL, decision_id=COL, control=COL, explored=COL, customer_id=COL, "
        "components=COL (a map of reward components, e.g. engaged); repeatable",
    )
    parser.add_argument(
        "--actions",
        default=None,
        help="offer ids in policy order, comma-separated [%(default)s: from the schema "
        "metadata, else the sorted offers seen]",
    )
    parser.add_argument(
        "--dsjson-features",
        type=int,
        default=32,
        help="hashed context width for DSJson [%(default)s]",
    )
    add_seed(parser, "seed of training, bootstrap and replay [%(default)s]")
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
    # The most frequent offer of the control rows (the lowest index on ties), as the sharded
    # path finds it from its fragments' counts.
    return int(np.argmax(np.bincount(data.action[data.control], minlength=data.n_actions)))


# make_policy fields that the probe's made-up sizes (2 offers, 2 features) cannot judge.
_DATA_DEPENDENT = ("n_actions", "n_features", "offer_features")


def _check_arguments(
    args: argparse.Namespace, candidates: list[Candidate], config: EvalConfig
) -> None:
    """Every check that needs no data, so a typo fails before a large log is read."""
    for candidate in candidates:
        if candidate.kind == "external":
            if not Path(candidate.spec["path"]).is_file():
                raise InvalidInputError(
                    f"--policy {candidate.spec['name']}:{candidate.spec['path']}",
                    "an existing file",
                    "no such file",
                )
            continue
        name = candidate.label.rsplit(" ", 1)[0]  # without the kind
        try:
            make_policy(candidate.spec, 2, 2, seed=args.seed)
        except InvalidParameterError as exc:
            raise InvalidInputError(
                f"--policy {name}", f"{exc.field} to be {exc.expected}", exc.got
            ) from None
        except InvalidInputError as exc:
            # The name or a hyperparameter name; what depends on the data's sizes comes later.
            if exc.field not in _DATA_DEPENDENT:
                got = str(exc.got).removeprefix("got ")
                raise InvalidInputError(f"--policy {name}", exc.expected, got) from None
    config.make()  # estimator names and --clip
    if args.primary not in (*config.estimators, "slope"):
        raise InvalidInputError(
            "--primary",
            f"one of the --estimators {', '.join(config.estimators)} or slope",
            args.primary,
        )
    if args.interval == "bootstrap" and args.bootstrap < 2:
        raise InvalidInputError("--bootstrap", "at least 2 for bootstrap intervals", args.bootstrap)
    if not 0.0 < args.alpha < 1.0:
        raise InvalidInputError("--alpha", "a number in (0, 1)", args.alpha)
    if args.folds is not None and args.folds < 2:
        raise InvalidInputError("--folds", "an int >= 2", args.folds)
    if not 0.0 <= args.train_fraction < 1.0:
        raise InvalidInputError("--train-fraction", "a number in [0, 1)", args.train_fraction)
    for flag, value in (("--batch-size", args.batch_size), ("--shard-rows", args.shard_rows)):
        if value < 1:
            raise InvalidInputError(flag, "an int >= 1", value)
    if args.control_offer is not None:
        known = _known_offers(args)
        if known is not None and args.control_offer not in known:
            raise InvalidInputError("--control-offer", f"one of {list(known)}", args.control_offer)


def _known_offers(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The offer ids, when they are known without reading the rows (--actions, Parquet
    metadata); None otherwise."""
    if args.actions:
        return tuple(a.strip() for a in args.actions.split(",") if a.strip())
    path = Path(args.logs)
    if args.format not in ("auto", "parquet") or not path.is_file():
        return None
    if args.format == "auto" and path.suffix.lower() not in (".parquet", ".pq"):
        return None
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
        raw = metadata.get(b"nbo.offer_ids") or metadata.get(b"nbo.action_ids")
        return None if raw is None else tuple(json.loads(raw))
    except (OSError, ValueError):
        return None  # the reader says what is wrong with the file


def run_meta(args: argparse.Namespace, config: EvalConfig) -> int:
    from engine.replay.meta import find_generator, meta_evaluate

    generate = find_generator(args.meta)(n_rounds=args.meta_rows)
    print(
        f"meta-evaluation {args.meta}: {args.seeds} seeds of {args.meta_rows} rows", file=sys.stderr
    )
    result = meta_evaluate(
        generate,
        args.seeds,
        config=config,
        interval=args.interval,
        alpha=args.alpha,
        folds=args.folds,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"meta": args.meta, **result.to_dict()}
    (out / "meta.json").write_text(json.dumps(data, indent=2) + "\n")
    print(
        f"{args.meta}: {args.seeds} seeds x {result.info.get('rows_per_seed')} rows, "
        f"{args.interval} {1 - args.alpha:.0%} intervals, mean truth {data['mean_truth']:.4g}"
    )
    print(result.table())
    choices = ", ".join(f"{k} {v}" for k, v in data["slope_choices"].items())
    print(f"SLOPE chose: {choices}")
    print(f"wrote {out / 'meta.json'}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from engine.replay.report import (
        candidate_table,
        slope_note,
        split_note,
        verdict,
        write_report,
    )

    kinds = tuple(k.strip() for k in args.mode.split(",") if k.strip())
    for kind in kinds:
        if kind not in KINDS:
            raise InvalidInputError("--mode", f"a comma list of {KINDS}", args.mode)
    external = [c for c in map(external_candidate, args.policy) if c is not None]
    specs = [parse_policy(p) for p in args.policy if external_candidate(p) is None]
    candidates = make_candidates(specs, kinds) + external
    config = EvalConfig(
        estimators=tuple(e.strip() for e in args.estimators.split(",") if e.strip()),
        clip=args.clip,
        n_bootstrap=args.bootstrap if args.interval == "bootstrap" else max(args.bootstrap, 0),
        seed=args.seed,
        batch_size=args.batch_size,
    )
    _check_arguments(args, candidates, config)
    if args.meta is not None:
        if args.policy or args.logs:
            raise InvalidInputError("--meta", "no --logs or --policy (it makes both)", args.meta)
        return run_meta(args, config)
    if not args.logs:
        raise InvalidInputError("--logs", "a log file or directory (or --meta NAME)", "none")
    if args.ray_address is not None:
        check_reachable(args.ray_address)  # before reading logs that may take minutes
    if not candidates:
        print("no --policy given: scoring the baselines only", file=sys.stderr)
    gate = Gate(args.min_ess, args.min_match_rate, args.max_unseen)
    why_not = _why_not_sharded(args, candidates)
    result = None
    data: LoggedData | None = None
    if why_not is None:
        result, why_not = _evaluate_sharded(args, candidates, config, gate)
    if result is None:
        if why_not is not None and _parquet_source(args) and args.read != "memory":
            print(f"reading the logs into memory: {why_not}", file=sys.stderr)
        data = _load(args)
        if args.hold:
            held = [h.strip() for h in args.hold.split(",") if h.strip()]
            data = hold_dimensions(data, logged_dimensions(args.logs), held)
        if _needs_offer_features(candidates):
            names = logged_dimensions(args.logs)
            candidates = with_offer_features(candidates, data.actions, names)
        result = _evaluate_in_memory(args, data, candidates, config, gate)
        result.info["sharded"] = False
        result.info["read"] = "read into memory"
        if why_not is not None:
            result.info["read_in_memory_because"] = why_not
    result.info["source"] = str(args.logs)
    paths = write_report(result, args.out)
    print(verdict(result))
    print(f"  {split_note(result)}")
    print(f"  {slope_note(result)}")
    print(f"  logs {result.info['read']}")
    print()
    print(candidate_table(result))
    print()
    print(f"wrote {paths['json']}")
    print(f"wrote {paths['html']} (plots {paths['ranking'].name}, {paths['estimators'].name})")
    if args.save_best is not None and data is not None:
        from engine.replay.save import save_best

        saved = save_best(result, data, candidates, args.save_best, args.encoder_from, args.seed)
        print(saved)
        if saved.startswith("not saved"):
            return 1
    if not result.complete:
        print("evaluation INCOMPLETE: some tasks failed; see the report", file=sys.stderr)
        return 1
    return 0


def _options(
    args: argparse.Namespace, config: EvalConfig, control: int | None, runner: Any, gate: Gate
) -> EvaluateOptions:
    """The options evaluate and evaluate_dataset share, from the command line."""
    return {
        "config": config,
        "train_fraction": args.train_fraction,
        "control_action": control,
        "primary": args.primary,
        "interval": args.interval,
        "alpha": args.alpha,
        "runner": runner,
        "cluster": args.cluster,
        "gate": gate,
        "folds": args.folds,
    }


#: Policy class -> what it takes as ``offer_features`` on logs, from the actions and dimensions.
_LOGGED_OFFER_FEATURES = {SharedLinear: logged_offer_features, LandingLift: logged_treatments}


def _needs_offer_features(candidates: list[Candidate]) -> bool:
    return any(_lacks_offer_features(c.spec) for c in candidates)


def _lacks_offer_features(spec: dict[str, Any]) -> bool:
    return _logged_builder(spec) is not None and "offer_features" not in spec


def _logged_builder(spec: dict[str, Any]) -> Callable[..., Any] | None:
    cls = policy_class(str(spec.get("name", "")))
    return None if cls is None else _LOGGED_OFFER_FEATURES.get(cls)


def logged_spec_features(spec: dict[str, Any], actions: Sequence[str], names: Sequence[str]) -> Any:
    """What policy ``spec`` takes as ``offer_features`` on logs of ``actions`` (dimension names
    ``names``): a shared candidate the per-dimension one-hots
    (:func:`engine.replay.dimensions.logged_offer_features`), a landing candidate each action's
    offer and route (:func:`engine.replay.dimensions.logged_treatments`)."""
    build = _logged_builder(spec)
    if build is None:
        raise InvalidInputError("policy", "a shared or landing policy", spec.get("name"))
    return build(actions, names)


def with_offer_features(
    candidates: list[Candidate], actions: Sequence[str], names: Sequence[str]
) -> list[Candidate]:
    """``candidates`` with what the logs give as offer features to every shared or landing
    candidate that has none (:func:`logged_spec_features`)."""
    return [
        replace(
            c,
            spec={
                **c.spec,
                "offer_features": logged_spec_features(c.spec, actions, names).tolist(),
            },
        )
        if _lacks_offer_features(c.spec)
        else c
        for c in candidates
    ]


def _parquet_source(args: argparse.Namespace) -> bool:
    """Whether --logs is a Parquet file or a directory of Parquet files."""
    path = Path(args.logs)
    if args.format not in ("auto", "parquet"):
        return False
    if path.is_dir():
        return True
    if args.format == "parquet":
        return path.is_file()
    return path.is_file() and path.suffix.lower() in (".parquet", ".pq")


def _why_not_sharded(args: argparse.Namespace, candidates: list[Candidate]) -> str | None:
    """Why these logs and options need every row in memory; None when tasks can read the
    Parquet fragments themselves (:func:`engine.replay.sharded.evaluate_dataset`)."""
    if args.read == "memory":
        return "--read memory"
    if not _parquet_source(args):
        return "not a Parquet file or directory"
    for c in candidates:
        if c.kind == "external" and c.spec["name"] == "snapshot" and not _exact_snapshot(c):
            return (
                f"{c.label}'s choice probabilities are estimated by sampling, in blocks of "
                "the whole log"
            )
    if args.save_best is not None:
        return "--save-best writes the winner's snapshot from the rows in memory"
    if args.hold:
        return "--hold narrows each row's eligible combinations on the rows in memory"
    return None


def _exact_snapshot(candidate: Candidate) -> bool:
    """Whether the snapshot's policy has exact choice probabilities (the same for any batch of
    rows); for the others they are sampled per block of the whole log."""
    from engine.journal.snapshot import read_snapshot
    from engine.replay.external import exact_policy

    try:
        _, policy = read_snapshot(Path(candidate.spec["path"]))
    except Exception:  # the in-memory path reports what is wrong with it
        return False
    return exact_policy(policy)


def _evaluate_sharded(
    args: argparse.Namespace, candidates: list[Candidate], config: EvalConfig, gate: Gate
) -> tuple[Any, str | None]:
    """Evaluate through Parquet fragments read by the tasks; (None, why) when the logs turn
    out to need every row in memory (0/1 context columns without an eligible column)."""
    from engine.replay.evaluate import SMALL_JOB
    from engine.replay.sharded import evaluate_dataset, list_fragments

    actions = None
    if args.actions:
        actions = tuple(a.strip() for a in args.actions.split(",") if a.strip())
    fragments = list_fragments(args.logs, args.shard_rows)
    n_rows = sum(f.rows for f in fragments)
    print(
        f"reading {n_rows} rows of {args.logs} in {len(fragments)} fragments by tasks",
        file=sys.stderr,
    )
    control = None
    if args.control_offer is not None:
        known = actions or _known_offers(args)
        if known is None:  # a directory: the offers come from its files' metadata
            from engine.replay.readers import dataset_offer_ids

            known = dataset_offer_ids([f.path for f in fragments]) or None
        if known is None:
            return None, "--control-offer needs the offer ids (give --actions)"
        if args.control_offer not in known:
            raise InvalidInputError("--control-offer", f"one of {list(known)}", args.control_offer)
        control = list(known).index(args.control_offer)
        actions = actions or tuple(known)
    if _needs_offer_features(candidates):
        known = actions or _known_offers(args)
        if known is None:
            from engine.replay.readers import dataset_offer_ids

            known = dataset_offer_ids([f.path for f in fragments]) or None
        if known is None:
            return None, "a shared candidate needs the offer ids (give --actions)"
        actions = tuple(known)
        candidates = with_offer_features(candidates, actions, logged_dimensions(args.logs))
    runner = _runner(args, (len(candidates) + 3) * n_rows * (1 - args.train_fraction), SMALL_JOB)
    try:
        result = evaluate_dataset(
            args.logs,
            candidates,
            columns=ColumnMap.parse(args.column),
            actions=actions,
            rows_per_fragment=args.shard_rows,
            control_from_logs=args.control_offer is None,
            **_options(args, config, control, runner, gate),
        )
    except InvalidInputError as exc:
        if "in sharded mode" not in str(exc):
            raise
        return None, str(exc)
    finally:
        runner.close()
    result.info["read"] = f"read in {result.info['fragments']} fragments by tasks"
    return result, None


def _runner(args: argparse.Namespace, n_jobs: float, small_job: int) -> Runner:
    if args.workers is not None or args.ray_address is not None:
        workers = args.workers
    else:
        workers = 0 if n_jobs < small_job else None
    return Runner(
        workers=workers,
        address=args.ray_address,
        max_retries=args.retries,
        progress=not args.no_progress,
    )


def _evaluate_in_memory(
    args: argparse.Namespace,
    data: LoggedData,
    candidates: list[Candidate],
    config: EvalConfig,
    gate: Gate,
) -> Any:
    from engine.replay.evaluate import SMALL_JOB, evaluate

    control = _control_action(data, args.control_offer)
    runner = _runner(
        args, (len(candidates) + 3) * data.n_rounds * (1 - args.train_fraction), SMALL_JOB
    )
    try:
        return evaluate(
            data,
            candidates,
            shard_rows=args.shard_rows,
            **_options(args, config, control, runner, gate),
        )
    finally:
        runner.close()


def run_train(args: argparse.Namespace) -> int:
    from engine.replay.train import train_policy, write_trained_snapshot

    spec = parse_policy(args.policy)
    data = _load(args)
    trained_spec = spec
    if _lacks_offer_features(spec):
        # an array, not a list: a list of values is a grid to train_policy
        names = logged_dimensions(args.logs)
        features = logged_spec_features(spec, data.actions, names)
        trained_spec = {**spec, "offer_features": features}
    from engine.replay.save import encoder_state

    encoder: dict[str, Any] | None
    if args.encoder_from is not None:
        encoder = encoder_state(args.encoder_from, data.feature_names)
    else:
        encoder = _metadata_encoder(args)
    policy = train_policy(data, trained_spec, target=args.target, seed=args.seed, folds=args.folds)
    header = write_trained_snapshot(
        args.out,
        policy,
        data,
        target=args.target,
        campaign=args.campaign,
        version=args.version,
        encoder=encoder,
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
        "encoder_state": encoder is not None,
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    encoded = "with" if encoder is not None else "WITHOUT"
    print(
        f"wrote {args.out} ({header['policy_class']}, version {header['version']}, {encoded} "
        "encoder state)"
    )
    print(f"wrote {summary_path}")
    return 0


def _metadata_encoder(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``nbo.encoder`` schema metadata of a Parquet log (JSON), when it has one."""
    path = Path(args.logs)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        path = files[0] if files else path
    if not path.is_file() or path.suffix.lower() not in (".parquet", ".pq"):
        return None
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(b"nbo.encoder")
        return None if raw is None else dict(json.loads(raw))
    except (OSError, ValueError):
        return None


@command("evaluate", run_evaluate)
def _evaluate_command(evaluate: argparse.ArgumentParser) -> None:
    """off-policy evaluation of candidate policies on logged data (JSON + HTML report)

    Estimate what candidate policies would have earned on logged decisions, with confidence
    intervals, next to the logging policy and the uniform and control baselines; print the
    candidates and a go/no-go line, write evaluation.json and report.html. The log is split in time:
    the earlier --train-fraction of rows trains the static candidates, the later rows evaluate every
    candidate; the reward model is cross-fitted over every row in --folds folds of customers.
    """
    _add_source_args(evaluate)
    evaluate.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="SPEC",
        help="candidate: NAME, NAME:key=v1,v2:key2=v (comma lists form a grid) or a JSON object; "
        "snapshot:PATH (an nbo snapshot, over the log's features and offers) or file:PATH "
        "(another system's probabilities, Parquet or CSV with columns decision_id, action, "
        "probability; a missing pair is probability 0), both scored on every logged row when "
        "no trained candidate needs a train split; repeatable; without one only the baselines "
        "are scored (and the verdict is NO-GO)",
    )
    evaluate.add_argument(
        "--mode",
        default="static,learning",
        help="how candidates run, comma list: static (trained on the earlier rows, then "
        "frozen), learning (starts untrained and learns while replaying the later rows) "
        "[%(default)s]",
    )
    evaluate.add_argument(
        "--estimators",
        default=",".join(ESTIMATORS),
        help="comma list of estimators [%(default)s]",
    )
    evaluate.add_argument(
        "--primary",
        default="dr",
        help="estimator that ranks and decides; one of --estimators, or slope: for each "
        "candidate the estimator SLOPE chooses (the narrowest interval consistent with every "
        "wider one; Su et al. 2020, Tucker & Lee 2021) [%(default)s]",
    )
    evaluate.add_argument(
        "--interval",
        default="bootstrap",
        choices=INTERVAL_METHODS,
        help="confidence interval method [%(default)s]",
    )
    evaluate.add_argument(
        "--hold",
        default="",
        metavar="DIMENSIONS",
        help="logs of a campaign with [[dimensions]]: the candidates choose only the other "
        "dimensions, each row keeping its logged values of these (comma list, e.g. "
        "channel,timing: 'nbo for the offer, the current rule for the channel and timing') "
        "[%(default)s: none held]",
    )
    evaluate.add_argument(
        "--cluster",
        default="auto",
        choices=("auto", "customer_id", "none"),
        help="independent units of every interval: customer_id sums each customer's rows and "
        "resamples customers (rows of a returning customer are correlated), none resamples rows "
        "[%(default)s: customer_id whenever a customer has several rows]",
    )
    evaluate.add_argument(
        "--folds",
        type=int,
        default=None,
        help="folds of customers the reward model of dm, dr, sndr, switch-dr and dr-os is "
        "cross-fitted in (each row predicted by a model that saw neither it nor its customer) "
        "[%(default)s: 5, or 2 when a fold would hold fewer than 20 customers]",
    )
    gate = evaluate.add_argument_group(
        "go/no-go gate",
        "a candidate whose lower bound beats the logging policy still gets NO-GO (with the "
        "reason) when its estimators' intervals do not overlap, or:",
    )
    gate.add_argument(
        "--min-ess",
        type=float,
        default=100.0,
        help="effective sample size below this [%(default)s]",
    )
    gate.add_argument(
        "--min-match-rate",
        type=float,
        default=0.1,
        help="its mean probability of the logged offer below this (for a deterministic "
        "candidate: the share of rows where it picks the logged offer) [%(default)s]",
    )
    gate.add_argument(
        "--max-unseen",
        type=float,
        default=0.05,
        help="without an eligible column: more than this share of its choices go to offers "
        "never logged in that context's stratum (rows with the same 0/1 context columns, "
        "strata of >= 30 rows; else offers never logged at all) [%(default)s]",
    )
    evaluate.add_argument(
        "--bootstrap", type=int, default=200, help="bootstrap resamples [%(default)s]"
    )
    evaluate.add_argument(
        "--alpha", type=float, default=0.05, help="1 - confidence level [%(default)s]"
    )
    evaluate.add_argument(
        "--clip",
        type=float,
        default=None,
        help="clip importance weights at this value [%(default)s: no clipping]",
    )
    evaluate.add_argument(
        "--train-fraction",
        type=float,
        default=0.5,
        help="share of the rows, earliest first, that trains the static candidates; the rest "
        "evaluates [%(default)s]",
    )
    evaluate.add_argument(
        "--control-offer",
        default=None,
        help="offer id of the business-as-usual control [%(default)s: the most frequent offer "
        "in control rows, when the logs have a control column]",
    )
    evaluate.add_argument(
        "--batch-size", type=int, default=256, help="replay batch size [%(default)s]"
    )
    evaluate.add_argument(
        "--shard-rows",
        type=int,
        default=131_072,
        help="rows per task (Parquet read by the tasks: consecutive row groups of a file up to "
        "at least this many rows) [%(default)s]",
    )
    evaluate.add_argument(
        "--read",
        default="auto",
        choices=("auto", "memory"),
        help="auto: with Parquet logs each task reads its own row groups (the driver never "
        "holds the logs) unless a candidate or option needs every row in memory (a snapshot "
        "whose choice probabilities are sampled, --save-best, 0/1 context columns without an "
        "eligible column), and the report says which; memory: read the logs into memory first "
        "[%(default)s]",
    )
    add_ray_workers(
        evaluate,
        "0: in-process; N: local Ray with N CPUs [%(default)s: in-process for small jobs, else "
        "local Ray with every CPU]",
        "an existing Ray cluster [%(default)s]",
    )
    evaluate.add_argument(
        "--retries", type=int, default=2, help="retries per failed task [%(default)s]"
    )
    evaluate.add_argument("--out", default="nbo-evaluation", help="report directory [%(default)s]")
    evaluate.add_argument(
        "--save-best",
        default=None,
        metavar="PATH",
        help="write the GO candidate as an nbo snapshot (its trained policy, the encoder state "
        "when --encoder-from gives it, the estimate, lower bound, estimator, interval and the "
        "evaluated rows' time range in its header); refused when the verdict is NO-GO [none]",
    )
    evaluate.add_argument(
        "--encoder-from",
        default=None,
        metavar="SNAPSHOT_OR_DATA_DIR",
        help="with --save-best: copy the encoder state from a server snapshot file, a snapshot "
        "directory or a campaign data directory (its journal's meta) [none: a snapshot: "
        "candidate's own]",
    )
    meta = evaluate.add_argument_group(
        "meta-evaluation",
        "--meta NAME replaces --logs: logs with a known truth are generated from a simulator for "
        "each seed and every estimator's bias, RMSE and interval coverage over the seeds is "
        "reported (a table, and meta.json in --out)",
    )
    meta.add_argument(
        "--meta", default=None, metavar="NAME", help="case generator, e.g. renewal [none]"
    )
    meta.add_argument("--seeds", type=int, default=50, help="seeds to run [%(default)s]")
    meta.add_argument(
        "--meta-rows", type=int, default=3000, help="logged rows per seed [%(default)s]"
    )
    # --logs comes from the shared source options; with --meta it is not needed.
    for action in evaluate._actions:
        if action.dest == "logs":
            action.required = False
            action.help = f"{action.help} [required unless --meta]"


@command("train", run_train)
def _train_command(train: argparse.ArgumentParser) -> None:
    """learn a policy from logged data and write a snapshot the service can promote

    Offline warm start: fit a policy on logged decisions with IPS-weighted or doubly robust targets
    and write an nbo snapshot file.
    """
    _add_source_args(train)
    train.add_argument("--policy", required=True, metavar="SPEC", help="policy spec (no grid)")
    train.add_argument(
        "--target",
        default="ips",
        choices=("ips", "dr"),
        help="training targets: IPS-weighted rewards or doubly robust [%(default)s]",
    )
    train.add_argument(
        "--encoder-from",
        default=None,
        metavar="SNAPSHOT_OR_DATA_DIR",
        help="copy the encoder state (the feature statistics the service encodes with) into the "
        "snapshot: from a server snapshot file, a snapshot directory or a campaign data "
        "directory (its journal's meta); its feature names must equal the log's [default: the "
        "logs' nbo.encoder schema metadata when present]",
    )
    train.add_argument(
        "--folds",
        type=int,
        default=None,
        help="--target dr: folds of customers its reward model is cross-fitted in [%(default)s: "
        "5, or 2 when a fold would hold fewer than 20 customers]",
    )
    train.add_argument("--out", required=True, metavar="SNAPSHOT", help="snapshot file to write")
    train.add_argument("--campaign", default="", help="campaign name stored in the snapshot [none]")
    train.add_argument(
        "--version", default=None, help="model version [%(default)s: offline-<time>]"
    )


# What the nbo.commands entry points evaluate and train name (pyproject.toml).
register = commands(_evaluate_command, _train_command)

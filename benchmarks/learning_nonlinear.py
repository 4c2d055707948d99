"""Learning benchmark of the nonlinear learner: RandomFourierUCB against LinUCB and Vowpal Wabbit.

Every figure comes from one run, with the peers measured on the same customers:

- share of the oracle on ``interactions`` (offers that work through products, thresholds and an
  XOR of attributes): RandomFourierUCB, LinUCB (alpha 0.1 and the class default 1.0) and
  Vowpal Wabbit's SquareCB with ``-q sa`` (vowpal-wabbit-next, through ``VWPolicy``);
- digits as a bandit: progressive accuracy over 3 passes, one event at a time (each pass a new
  order of the 1,797 images; reward 1 for the right class);
- share of the oracle on ``renewal`` against the best linear policy (LinUCB, LinearTS,
  EpsilonGreedy with their class defaults);
- online choose + update, one event at a time, on the interactions stream (K=6, d=20).

Each policy runs with its defaults (RandomFourierUCB's are the class's), one BLAS thread per
library. The full run also measures RandomFourierUCB on interactions with five other draws of
its random map (``feature_seed``), since its share depends on the draw. Run
``python -m benchmarks.learning_nonlinear`` (a few minutes) or ``--quick`` (under a minute);
the table is printed and the JSON goes to benchmarks/results/learning_nonlinear.json.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from benchmarks import common as bc
from engine.cliargs import add_quick, add_seed
from engine.policies import Policy, make_policy
from simulators.envs import make_env
from simulators.runner import POLICY_DEFAULTS, parse_policy, run_policy, summarize
from simulators.supervised import SupervisedEnvironment

VW_ARGS = "--cb_explore_adf --squarecb"  # VWPolicy adds -q sa (one linear model per action)
#: label -> make_policy spec, the same for every environment (rewards are of order 1 there).
NONLINEAR = {"RandomFourierUCB": {"name": "rff"}}
LINUCB = {
    "LinUCB (alpha 0.1)": {"name": "linucb", "alpha": 0.1},
    "LinUCB (alpha 1.0)": dict(POLICY_DEFAULTS["linucb"]),
}
VW = {"VW SquareCB -q sa": {"name": "vw", "args": VW_ARGS}}
#: The linear policies on renewal, with their class defaults.
LINEAR_RENEWAL = {"LinUCB": "linucb", "LinearTS": "lints", "EpsilonGreedy": "egreedy"}


@dataclass(frozen=True)
class Sizes:
    """How much each section runs."""

    interaction_rounds: int
    renewal_rounds: int
    seeds: int
    online_events: int
    repeats: int


FULL = Sizes(
    interaction_rounds=100_000, renewal_rounds=100_000, seeds=3, online_events=10_000, repeats=5
)
QUICK = Sizes(
    interaction_rounds=20_000, renewal_rounds=10_000, seeds=1, online_events=2_000, repeats=2
)


# ---------------------------------------------------------------------- measures
def progressive_accuracy(
    policy: Policy, env: SupervisedEnvironment, passes: int = 3, seed: int = 0
) -> float:
    """Share of right answers of ``policy`` over ``passes`` passes of a data set as a bandit,
    one event at a time: choose on one example, then learn its reward (1 for the right class,
    0 otherwise) with the propensity. A pass is ``env.n_examples`` draws (the environment draws
    examples uniformly, with replacement), all from ``seed``.

    Examples
    --------
    >>> from engine.policies import UniformRandom
    >>> env = SupervisedEnvironment("iris")
    >>> round(progressive_accuracy(UniformRandom(3, 5, seed=0), env, passes=1), 1)
    0.3
    """
    rounds = env.sample_rounds(passes * env.n_examples, np.random.default_rng(seed))
    X, labels = rounds.contexts, rounds.truth["label"]
    hits = 0.0
    for i in range(rounds.n_rounds):
        x = X[i : i + 1]
        d = policy.choose(x)
        reward = float(d.actions[0] == labels[i])
        policy.update(x, d.actions, [reward], d.propensities)
        hits += reward
    return hits / rounds.n_rounds


def shares_of_oracle(
    env_name: str, specs: dict[str, dict[str, Any]], n_rounds: int, seeds: Sequence[int]
) -> dict[str, Any]:
    """Mean share of the oracle (and its 95% interval across seeds) of each policy spec on one
    environment, every policy on the same customers per seed (``simulators.runner``)."""
    env = make_env(env_name)
    results = [
        run_policy(env, spec, n_rounds, seed=seed, label=label)
        for seed in seeds
        for label, spec in specs.items()
    ]
    summary = summarize(results)
    return {
        "env": env_name,
        "rounds": n_rounds,
        "seeds": list(seeds),
        "policies": {
            label: {
                "share_of_oracle": row["pct_of_oracle"],
                "share_of_oracle_ci": row["pct_of_oracle_ci"],
                "seconds": row["seconds"],
                "spec": specs[label],
            }
            for label, row in summary["policies"].items()
        },
        "control_share": summary["control"] / summary["oracle"],
        "best_static_share": summary["best_static"]["pct_of_oracle"],
    }


def digits_section(specs: dict[str, dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Progressive accuracy over 3 passes of digits, per policy: the mean over seeds and each."""
    env = SupervisedEnvironment("digits")
    k, d = len(env.action_ids), len(env.feature_names)
    out: dict[str, Any] = {"passes": 3, "events": 3 * env.n_examples, "seeds": list(seeds)}
    rows = {}
    for label, spec in specs.items():
        runs = [
            progressive_accuracy(make_policy(spec, k, d, seed=seed), env, passes=3, seed=seed)
            for seed in seeds
        ]
        rows[label] = {"accuracy": float(np.mean(runs)), "runs": runs, "spec": spec}
    out["policies"] = rows
    return out


def online_stream(n_events: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Contexts of the interactions environment and a sampled reward of every offer per event,
    arrays of shape (n_events, 20) and (n_events, 6)."""
    env = make_env("interactions")
    rng = np.random.default_rng(seed)
    rounds = env.sample_rounds(n_events, rng)
    rewards = np.column_stack(
        [
            env.draw_outcomes(rounds, np.full(n_events, a, np.int64), rng).rewards
            for a in range(len(env.action_ids))
        ]
    )
    return rounds.contexts, rewards


def online_rate(
    spec: dict[str, Any], n_events: int, repeats: int, seed: int, warmup: int = 1000
) -> dict[str, Any]:
    """Events per second of choose + update, one event at a time from Python, after ``warmup``
    logged events (uniformly chosen offers) that also freeze RandomFourierUCB's map."""
    X, R = online_stream(warmup + n_events, seed)
    k = R.shape[1]

    def setup() -> Policy:
        policy = make_policy(spec, k, X.shape[1], seed=seed)
        policy.prepare()
        logged = np.random.default_rng(seed).integers(0, k, warmup)
        policy.update(X[:warmup], logged, R[np.arange(warmup), logged], np.full(warmup, 1 / k))
        return policy

    def run(policy: Policy) -> float:
        total = 0.0
        for t in range(warmup, warmup + n_events):
            x = X[t : t + 1]
            d = policy.choose(x)
            r = R[t, d.actions]
            policy.update(x, d.actions, r, d.propensities)
            total += float(r[0])
        return total / n_events

    seconds, mean_reward = bc.time_repeats(run, repeats, setup)
    return {**bc.rate_stats(n_events, seconds), "mean_reward": mean_reward, "spec": spec}


# ---------------------------------------------------------------------- report
def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, checked on this run."""
    inter = results["interactions"]["policies"]
    digits = results["digits"]["policies"]
    renewal = results["renewal"]["policies"]
    best_linear = max(
        (label for label in renewal if label != "RandomFourierUCB"),
        key=lambda label: renewal[label]["share_of_oracle"],
    )
    linucb_best = max(inter[label]["share_of_oracle"] for label in LINUCB)
    return [
        bc.target_row(
            "interactions: share of oracle",
            "RandomFourierUCB",
            inter["RandomFourierUCB"]["share_of_oracle"],
            0.90,
        ),
        bc.target_row(
            "interactions: LinUCB stays below", "LinUCB (best alpha)", linucb_best, 0.85, "<="
        ),
        bc.target_row(
            "digits, 3 passes: progressive accuracy",
            "RandomFourierUCB",
            digits["RandomFourierUCB"]["accuracy"],
            0.90,
        ),
        bc.target_row(
            "renewal: share of oracle >= best linear",
            f"RandomFourierUCB vs {best_linear}",
            renewal["RandomFourierUCB"]["share_of_oracle"],
            renewal[best_linear]["share_of_oracle"],
        ),
        bc.target_row(
            "online choose+update",
            "RandomFourierUCB",
            results["online"]["RandomFourierUCB"]["median"],
            20_000,
            "events/s",
        ),
    ]


def render(results: dict[str, Any]) -> str:
    """The tables of a run."""
    sections = [_share_table(results["interactions"])]
    digits = results["digits"]
    sections.append(
        bc.format_table(
            "digits as a bandit: progressive accuracy, 3 passes, one event at a time",
            ["policy", "accuracy", "per seed"],
            [
                [label, f"{row['accuracy']:.3f}", " ".join(f"{r:.3f}" for r in row["runs"])]
                for label, row in digits["policies"].items()
            ],
            [f"{digits['events']:,} events per seed"],
        )
    )
    sections.append(_share_table(results["renewal"]))
    sections.append(
        bc.format_table(
            "online choose+update, one event at a time (interactions, K=6, d=20)",
            ["policy", "events/s (median)", "min", "max"],
            [
                [label] + [bc.fmt_rate(row[key]) for key in ("median", "min", "max")]
                for label, row in results["online"].items()
            ],
            [f"medians of {results['meta']['settings']['repeats']} repeats"],
        )
    )
    if "map_draws" in results:
        draws = results["map_draws"]
        sections.append(
            bc.format_table(
                "RandomFourierUCB on interactions by draw of its map (feature_seed)",
                ["feature_seed", "% of oracle"],
                [[str(fs), f"{100 * share:.1f}"] for fs, share in draws["shares"].items()],
                [f"{draws['rounds']:,} customers, seed {draws['seed']}; the default is 0"],
            )
        )
    sections.append(
        bc.format_table(
            "targets",
            ["target", "subject", "measured", "bound", "met"],
            [
                [
                    t["target"],
                    t["subject"],
                    _figure(t["measured"], t["unit"]),
                    f"{t['rule']} {_figure(t['bound'], t['unit'])}",
                    "yes" if t["passed"] else "NO",
                ]
                for t in results["targets"]
            ],
        )
    )
    return "\n\n".join(sections)


def _share_table(part: dict[str, Any]) -> str:
    rows = [
        [
            label,
            f"{100 * row['share_of_oracle']:.1f} ± {100 * row['share_of_oracle_ci']:.1f}",
            f"{row['seconds']:.1f}",
        ]
        for label, row in part["policies"].items()
    ]
    note = (
        f"{part['rounds']:,} customers x {len(part['seeds'])} seeds; control "
        f"{100 * part['control_share']:.1f}%, best static offer "
        f"{100 * part['best_static_share']:.1f}%"
    )
    return bc.format_table(
        f"{part['env']}: % of oracle (95% interval across seeds)",
        ["policy", "% of oracle", "s/seed"],
        rows,
        [note],
    )


def _figure(value: float | None, unit: str) -> str:
    return bc.fmt_rate(value) if unit == "events/s" else bc.fmt_float(value)


def map_draws(n_rounds: int, seed: int, feature_seeds: Sequence[int]) -> dict[str, Any]:
    """Share of the oracle of RandomFourierUCB on interactions for other draws of its map."""
    env = make_env("interactions")
    shares = {}
    for fs in feature_seeds:
        result = run_policy(env, {"name": "rff", "feature_seed": fs}, n_rounds, seed=seed)
        shares[str(fs)] = result.value[-1] / result.oracle[-1]
    return {"rounds": n_rounds, "seed": seed, "shares": shares}


# ---------------------------------------------------------------------- entry point
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The script's options."""
    add_quick(parser, "one seed, small sizes: under a minute")
    bc.add_out(parser, "learning_nonlinear")
    add_seed(parser, "first seed of the environments and policies [%(default)s]")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the benchmark; returns the exit code."""
    return bc.script_main(argv, "benchmarks.learning_nonlinear", __doc__, add_arguments, run)


def run(args: argparse.Namespace) -> int:
    """Run every section, print the tables and write the JSON file."""
    sizes = QUICK if args.quick else FULL
    seeds = [args.seed + i for i in range(sizes.seeds)]
    settings = {
        "quick": args.quick,
        "seed": args.seed,
        "blas_threads": 1,
        **asdict(sizes),
        "vw_args": VW_ARGS,
    }
    results: dict[str, Any] = {"meta": bc.run_info(settings)}
    linear = {label: parse_policy(name)[1] for label, name in LINEAR_RENEWAL.items()}
    everyone = {**NONLINEAR, **LINUCB, **VW}
    online = {**NONLINEAR, "LinUCB (alpha 0.1)": LINUCB["LinUCB (alpha 0.1)"], **VW}
    steps: list[tuple[str, Callable[[], Any]]] = [
        (
            "interactions",
            lambda: shares_of_oracle("interactions", everyone, sizes.interaction_rounds, seeds),
        ),
        ("digits", lambda: digits_section(everyone, seeds)),
        (
            "renewal",
            lambda: shares_of_oracle(
                "renewal", {**NONLINEAR, **linear}, sizes.renewal_rounds, seeds
            ),
        ),
        (
            "online",
            lambda: {
                label: online_rate(spec, sizes.online_events, sizes.repeats, args.seed)
                for label, spec in online.items()
            },
        ),
    ]
    if not args.quick:
        steps.append(
            ("map_draws", lambda: map_draws(sizes.interaction_rounds, args.seed, range(1, 6)))
        )
    with bc.blas_threads(1):
        for key, step in steps:
            print(f"running {key} ...", file=sys.stderr, flush=True)
            results[key] = step()
    results["targets"] = targets(results)
    results["table"] = render(results)
    return bc.publish(args.out, results)


if __name__ == "__main__":
    sys.exit(main())

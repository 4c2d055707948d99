"""What a model class can reach on renewal-multi with no noise: the greedy policy of a least-squares
fit to the exact expected rewards, as a share of the oracle.

The learning rows of :mod:`benchmarks.dimensions` mix two losses: what the model class cannot
represent, and what noisy rewards and exploration cost on the way. This separates the first: each
model is fitted to every allowed combination's *expected* net reward on ``--train`` customers (no
renewal noise, every combination seen equally), and its greedy choice is scored on ``--test``
other customers. This is a guide, not a bound: a learner fits where it chooses, not every
combination equally, and can do about a point better than its row (on 100,000 customers the
fixed rule's learner reached 90.6% where its row says 89.7%); a gap of several points between two
rows is what a model class costs.

Rows: SharedLinear's class (context x per-dimension one-hots, additive over dimensions), LinUCB's
class over the 84 combinations (a linear model of the context per combination), and a model that
is told the true landing probability of each message and learns only the offer's effect linearly
(the structure of the ground truth); then oracles restricted to one channel or to the fixed rule.

``python -m benchmarks.dimensions_ceiling`` (about a minute on one core); ``--quick`` fits on 300
customers in seconds; ``--readme README.md`` rewrites the README's table between its markers. The
JSON goes to benchmarks/results/dimensions_ceiling.json.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from benchmarks import common as bc
from engine.cliargs import add_seed, script
from simulators.base import Rounds
from simulators.renewal_multi import RenewalMultiEnvironment

TABLE = "dimensions-ceiling"
#: A design maps (rounds, env) to the joint features of every (customer, combination),
#: shape (n_rounds, 84, n_joint).
Design = Callable[[Rounds, RenewalMultiEnvironment], np.ndarray]


def _one_hots(env: RenewalMultiEnvironment) -> np.ndarray:
    """[1, offer, channel, window] one-hots of every combination (SharedLinear's [1, f_a])."""
    return np.hstack([np.ones((len(env.action_ids), 1)), env.offer_features])


def additive(rounds: Rounds, env: RenewalMultiEnvironment) -> np.ndarray:
    """SharedLinear's class: x (x) [1, one-hots], additive over the dimensions."""
    f = _one_hots(env)
    x = rounds.contexts
    return (x[:, None, :, None] * f[None, :, None, :]).reshape(len(x), len(f), -1)


def per_combination(rounds: Rounds, env: RenewalMultiEnvironment) -> np.ndarray:
    """LinUCB's class over the combinations: one linear model of the context per combination."""
    k = len(env.action_ids)
    x = rounds.contexts
    return (x[:, None, None, :] * np.eye(k)[None, :, :, None]).reshape(len(x), k, -1)


def true_landing(rounds: Rounds, env: RenewalMultiEnvironment) -> np.ndarray:
    """Told the true landing probability rho: x (x) [1, offer, channel] plus rho x (x) offer
    (the baseline and contact costs additive, the offer's effect linear in x, acting on landing)."""
    codes = env.codes
    sent = (codes[:, 0] != env.renewal.control_action).astype(np.float64)
    offers = np.eye(env.sizes[0])[codes[:, 0]]
    channels = np.eye(env.sizes[1])[codes[:, 1]] * sent[:, None]
    f = np.hstack([np.ones((len(codes), 1)), offers, channels])
    x = rounds.contexts
    rho = rounds.truth["landing"]
    base = x[:, None, :, None] * f[None, :, None, :]
    effect = rho[:, :, None, None] * x[:, None, :, None] * offers[None, :, None, 1:]
    n, k = rho.shape
    return np.concatenate([base.reshape(n, k, -1), effect.reshape(n, k, -1)], axis=2)


DESIGNS: dict[str, Design] = {
    "SharedLinear's class: context x per-dimension one-hots (additive)": additive,
    "LinUCB's class: a linear model of the context per combination (84)": per_combination,
    "told the true landing, the offer's effect linear in the context": true_landing,
}


def fit(design: Design, rounds: Rounds, env: RenewalMultiEnvironment, chunk: int) -> np.ndarray:
    """Least squares (ridge 1e-3) of every allowed combination's expected reward."""
    width = design(rounds.slice(0, 1), env).shape[2]
    gram, rhs = np.zeros((width, width)), np.zeros(width)
    for lo in range(0, rounds.n_rounds, chunk):
        part = rounds.slice(lo, lo + chunk)
        z = design(part, env)
        keep = part.action_mask.reshape(-1)
        z = z.reshape(-1, width)[keep]
        gram += z.T @ z
        rhs += z.T @ part.expected_rewards.reshape(-1)[keep]
    return np.linalg.solve(gram + 1e-3 * np.eye(len(rhs)), rhs)


def greedy_share(
    design: Design, theta: np.ndarray, rounds: Rounds, env: RenewalMultiEnvironment, chunk: int
) -> float:
    """Expected value of the fit's greedy choice over the oracle's, on ``rounds``."""
    chosen = 0.0
    for lo in range(0, rounds.n_rounds, chunk):
        part = rounds.slice(lo, lo + chunk)
        scores = np.where(part.action_mask, design(part, env) @ theta, -np.inf)
        pick = scores.argmax(axis=1)
        chosen += float(part.expected_rewards[np.arange(len(pick)), pick].sum())
    return chosen / float(rounds.expected_rewards.max(axis=1).sum())


def restricted_oracle(rounds: Rounds, allowed: np.ndarray) -> float:
    """The oracle's share when only ``allowed`` combinations (per row or for all) may be chosen."""
    mask = rounds.action_mask & np.broadcast_to(allowed, rounds.action_mask.shape)
    best = np.where(mask, rounds.expected_rewards, -np.inf).max(axis=1)
    return float(best.sum() / rounds.expected_rewards.max(axis=1).sum())


def measure(n_train: int, n_test: int, seed: int, chunk: int = 100) -> dict[str, float]:
    """Every row's share of the oracle (train and test customers from two streams of ``seed``;
    the fixed rule's rows see the same customers with the rule's mask)."""
    env, rule = RenewalMultiEnvironment(), RenewalMultiEnvironment(rule="preferred")

    def draw(e: RenewalMultiEnvironment) -> tuple[Rounds, Rounds]:
        streams = np.random.SeedSequence(seed).spawn(2)
        return e.sample_rounds(n_train, np.random.default_rng(streams[0])), e.sample_rounds(
            n_test, np.random.default_rng(streams[1])
        )

    (train, test), (rule_train, rule_test) = draw(env), draw(rule)
    out = {
        label: greedy_share(d, fit(d, train, env, chunk), test, env, chunk)
        for label, d in DESIGNS.items()
    }
    ruled = replace(test, action_mask=rule_test.action_mask)
    theta = fit(additive, replace(train, action_mask=rule_train.action_mask), env, chunk)
    out["SharedLinear's class under the fixed rule (preferred channel, now)"] = greedy_share(
        additive, theta, ruled, env, chunk
    )
    codes, silent = env.codes, env.codes[:, 0] == env.renewal.control_action
    out["oracle: every message now"] = restricted_oracle(test, (codes[:, 2] == 0) | silent)
    out["oracle: email only"] = restricted_oracle(test, (codes[:, 1] == 0) | silent)
    out["oracle under the fixed rule"] = restricted_oracle(test, rule_test.action_mask)
    total = test.expected_rewards.max(axis=1).sum()
    out["control (no incentive)"] = float(
        test.expected_rewards[:, env.control_action].sum() / total
    )
    return out


def render(shares: dict[str, float], settings: dict[str, Any]) -> str:
    """The plain-text table."""
    rows = [[label, f"{100 * v:.1f}"] for label, v in shares.items()]
    return bc.format_table(
        "renewal-multi: what a model class reaches with exact expected rewards (no noise)",
        ["model class (greedy on a least-squares fit) or restricted oracle", "% of oracle"],
        rows,
        notes=[
            f"fitted on {settings['train']:,} customers x every allowed combination, scored on "
            f"{settings['test']:,} others (seed {settings['seed']})"
        ],
    )


def render_markdown(shares: dict[str, float], settings: dict[str, Any]) -> str:
    """The README's table (between its markers)."""
    lines = ["| model class, or restricted oracle | % of oracle |", "|---|---:|"]
    lines += [f"| {label} | {100 * v:.1f} |" for label, v in shares.items()]
    command = "python -m benchmarks.dimensions_ceiling --readme README.md"
    lines += [
        "",
        f"Least-squares fits to exact expected rewards on {settings['train']:,} customers, "
        f"greedy on {settings['test']:,} others; `{command}`.",
    ]
    return "\n".join(lines)


@script("benchmarks.dimensions_ceiling", quick="300 training and 1,000 test customers (seconds)")
def _options(parser: argparse.ArgumentParser) -> None:
    """What each model class reaches on renewal-multi with exact expected rewards (no noise)."""
    parser.add_argument("--train", type=int, default=2000, help="training customers [2000]")
    parser.add_argument("--test", type=int, default=20000, help="test customers [20000]")
    add_seed(parser, "seed of both streams [%(default)s]")
    parser.add_argument("--readme", default=None, metavar="PATH", help="rewrite its table")
    bc.add_out(parser, "dimensions_ceiling")


def main(argv: Sequence[str] | None = None) -> int:
    args = _options.parse_args(argv)
    n_train, n_test = (300, 1000) if args.quick else (args.train, args.test)
    settings = {"quick": args.quick, "train": n_train, "test": n_test, "seed": args.seed}
    print(f"fitting on {n_train:,} customers", file=sys.stderr)
    shares = measure(n_train, n_test, args.seed)
    path = bc.write_json(args.out, {"run": bc.run_info(settings), "shares": shares})
    print(f"{render(shares, settings)}\nwrote {path}")
    if args.readme:
        bc.rewrite_between_markers(args.readme, TABLE, render_markdown(shares, settings))
        print(f"README table rewritten: {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

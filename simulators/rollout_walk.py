"""README's "Rolling out", run for real: a gRPC server on loopback, renewal customers from the
simulator, a business-as-usual rule, and the three steps with the commands an operator types.

1. shadow: the campaign (examples/renewal.toml with ``control = "baseline"``) starts in shadow
   mode; every Decide carries the rule's offer, everyone gets it, nbo logs its own choice;
   ``nbo mode`` shows the agreement and nbo's estimated value against the rule;
2. ``nbo mode online``: the control group keeps the rule, everyone else gets nbo;
3. a bad snapshot is promoted (``nbo promote FILE --force``: one that learned to give each
   customer its worst offer); the lift monitor rolls the campaign back by itself;
   ``nbo mode`` shows the evidence; ``nbo mode online`` resumes.

The business-as-usual rule: a 10% discount for customers with a payment failure or a falling
usage trend, nothing for the others. Outcomes arrive 1-5 simulated days after the decision (the
campaign's own 7-30 would make the walk longer, not different). Run ``python -m
simulators.rollout_walk`` (about a minute); ``--quick`` for a smaller one (the test's).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.cliargs import script
from simulators.engine_path import DEFAULT_CAMPAIGN, SimClock
from simulators.renewal import RenewalEnvironment
from simulators.rollout import sabotaged_snapshot
from simulators.runner import DelayedFeedback, streams

DAY_BATCH = 274  # customers a simulated day


def business_as_usual(attributes: dict[str, np.ndarray]) -> list[str]:
    """The rule the company runs today (see the module docstring)."""
    at_risk = (attributes["payment_failures"] > 0) | (attributes["usage_trend"] < -0.2)
    return ["discount_10" if r else "none" for r in at_risk.tolist()]


def campaign_file(root: Path, control_share: float) -> Path:
    text = DEFAULT_CAMPAIGN.read_text()
    for old, new in (
        ('control = "offer"', 'control = "baseline"'),
        ('mode = "online"', 'mode = "shadow"'),
        ("control_share = 0.10", f"control_share = {control_share}"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = root / "renewal.toml"
    path.write_text(text)
    return path


class Walk:
    """The simulated backend: decides over gRPC, delivers, reports outcomes when they arrive."""

    def __init__(self, client: Any, env: RenewalEnvironment, clock: SimClock, seed: int) -> None:
        self.client = client
        self.env = env
        self.clock = clock
        self.rng_contexts, self.rng_outcomes = streams(seed)
        self.pending = DelayedFeedback()
        self.index = {o: i for i, o in enumerate(env.action_ids)}
        self.start = 0
        self.truth: dict[str, np.ndarray] = {}

    def days(self, n_customers: int, until: Any = None) -> int:
        """Decide for ``n_customers`` (a day at a time); stop early when ``until()``."""
        done = 0
        while done < n_customers:
            rounds = self.env.sample_rounds(DAY_BATCH, self.rng_contexts, self.start)
            self.clock.set_day(float(rounds.timestamps[0]))
            released = self.pending.release(float(rounds.timestamps[0]))
            if released is not None:
                self.client.reward_batch(released[0].tolist(), released[1].tolist())
            ids = [f"w-{c}" for c in rounds.customer_ids]
            batch = self.client.decide_batch(
                ids,
                self.env.records(rounds.attributes),
                baseline_offers=business_as_usual(rounds.attributes),
            )
            actions = np.array([self.index[o] for o in batch.offer_ids], dtype=np.int64)
            outcomes = self.env.draw_outcomes(rounds, actions, self.rng_outcomes)
            decision_ids = np.array(batch.decision_ids, dtype=object)
            for decision_id, row in zip(decision_ids, rounds.expected_rewards, strict=True):
                self.truth[decision_id] = row
            self.pending.add(rounds.timestamps + outcomes.delays, decision_ids, outcomes.values)
            self.start += DAY_BATCH
            done += DAY_BATCH
            if until is not None and until():
                break
        return done


def nbo(*argv: str) -> str:
    """Run an ``nbo`` command in this process; return what it printed (and print it)."""
    from engine.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    text = out.getvalue()
    shown = [a for a in argv if not a.startswith("127.0.0.1") and a != "--server"]
    print("$ nbo " + " ".join(f'"{a}"' if " " in a else a for a in shown))
    print(text.rstrip())
    if code != 0:
        raise SystemExit(f"nbo {argv[0]} exited with {code}")
    return text


def run(shadow: int, online: int, after: int, seed: int, control_share: float) -> dict[str, Any]:
    """The three steps; what ``nbo mode`` said after each."""
    from engine.client import NboClient
    from engine.serving.config import ServeConfig
    from engine.serving.server import create_server

    token = secrets.token_hex(16)
    os.environ["NBO_ADMIN_TOKEN"] = token
    clock = SimClock()
    env = RenewalEnvironment.from_campaign(DEFAULT_CAMPAIGN, delay_days=(1.0, 5.0))
    said: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="nbo-rollout-walk-") as tmp:
        root = Path(tmp)
        config = ServeConfig(
            campaigns=(campaign_file(root, control_share),),
            data_dir=root / "data",
            host="127.0.0.1",
            port=0,
            admin_token=token,
            max_batch_rows=1000,
        )

        def open_engine(path: Path, directory: Path | None) -> Any:
            from engine.core import Engine

            return Engine.from_config(path, directory, clock=clock)

        server, port = create_server(config, open_engine=open_engine)
        server.start()
        where = ("--server", f"127.0.0.1:{port}")
        try:
            with NboClient(f"127.0.0.1:{port}", timeout=60.0, admin_token=token) as client:
                walk = Walk(client, env, clock, seed)
                print(f"# 1. shadow: {shadow:,} customers get the rule's offer")
                walk.days(shadow)
                said["shadow"] = nbo("mode", *where)
                print(f"\n# 2. online against business as usual: {online:,} customers")
                clock.now += 1.0  # the operator's command comes after the day's decisions
                nbo("mode", "online", "--reason", "after the shadow weeks", *where)
                walk.days(online)
                said["online"] = nbo("mode", *where)
                print("\n# 3. a bad snapshot goes live; the monitor stops it by itself")
                engine = server.campaigns.get("renewal")[1]
                data = sabotaged_snapshot(engine, "worst_offer", walk.truth)
                assert engine.model_dir is not None  # it has a data directory
                (engine.model_dir / "candidate.nbo").write_bytes(data)
                clock.now += 1.0
                nbo("promote", "candidate.nbo", "--force", *where)
                served = walk.days(
                    after, until=lambda: client.model_info().rollout_state == "rolled_back"
                )
                said["customers_until_rollback"] = served
                said["rolled_back"] = nbo("mode", *where)
                print(f"(rolled back after {served:,} customers of the bad snapshot)")
                clock.now += 1.0
                nbo("mode", "online", "--reason", "bad snapshot withdrawn", *where)
        finally:
            server.stop(grace=1.0)
            os.environ.pop("NBO_ADMIN_TOKEN", None)
    return said


@script("simulators.rollout_walk", quick="fewer customers and a larger control group")
def _options(parser: argparse.ArgumentParser) -> None:
    """Shadow -> online against business as usual -> an automatic rollback, on a real server
    with the commands (see the module docstring)."""
    parser.add_argument("--seed", type=int, default=7, help="simulator seed [%(default)s]")


def main(argv: Sequence[str] | None = None) -> int:
    args = _options.parse_args(argv)
    if args.quick:
        run(2 * DAY_BATCH * 5, DAY_BATCH * 8, DAY_BATCH * 30, args.seed, 0.5)
    else:
        run(DAY_BATCH * 20, DAY_BATCH * 30, DAY_BATCH * 80, args.seed, 0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

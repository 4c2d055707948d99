"""Rollout benchmark: how fast the lift monitor rolls a sabotaged model back, and how rarely it
rolls a good one back, on the renewal simulator through the Engine (:mod:`simulators.rollout`).

Each run learns online for ``--warm`` customers, then starts the monitored period: ``good``
keeps the learned LinUCB, ``worst_offer`` and ``wrong_sign`` promote a sabotaged snapshot. The
monitor looks after every reward batch (a simulated day's outcomes). Reported per scenario:
runs rolled back, and the customers decided from the switch to the rollback (median, worst).

The peer is the usual dashboard rule from the same runs: stop the first time the fixed-sample
95% interval of the same lift lies below zero. Looked at daily, it stops good policies far more
often than its nominal 2.5%; the anytime-valid bound is built to stay below 2.5% however often
it is looked at.

Defaults are the campaign's own (10% control group, outcomes known 7-30 days after the
decision, 274 customers a day): ``python -m benchmarks.rollout`` (20 seeds per sabotage, 200
good seeds; 15-25 minutes on this 2-core machine). ``--quick``: 4 and 20 seeds, shorter periods.
Results go to benchmarks/results/rollout.json.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import common as bc
from engine.cliargs import script
from simulators.rollout import RolloutRun, run_many


def summary(found: list[RolloutRun]) -> dict[str, Any]:
    """Rolled back and stopped counts, decisions until each, for the monitor and the peer."""
    until = [r.decisions_until_rollback for r in found if r.decisions_until_rollback is not None]
    naive = [r.fixed_alarm_at for r in found if r.fixed_alarm_at is not None]
    return {
        "runs": len(found),
        "rolled_back": sum(r.rolled_back for r in found),
        "median_decisions": float(np.median(until)) if until else None,
        "worst_decisions": max(until) if until else None,
        "fixed_interval_stops": len(naive),
        "fixed_median_decisions": float(np.median(naive)) if naive else None,
        "seconds": sum(r.seconds for r in found),
    }


def table(result: dict[str, Any]) -> str:
    rows = []
    for scenario, s in result["scenarios"].items():
        share = f"{s['rolled_back']}/{s['runs']}"
        naive = f"{s['fixed_interval_stops']}/{s['runs']}"
        rows.append(
            [
                scenario,
                share,
                bc.fmt_float(s["median_decisions"], 0) if s["median_decisions"] else "-",
                str(s["worst_decisions"] or "-"),
                naive,
                bc.fmt_float(s["fixed_median_decisions"], 0)
                if s["fixed_median_decisions"]
                else "-",
            ]
        )
    k = result["settings"]
    notes = [
        f"control group {k['control_share']:.0%}, outcomes known {k['delay_days'][0]:g}-"
        f"{k['delay_days'][1]:g} days later, {k['warm']:,} customers of warm-up, then up to "
        f"{k['after']:,} (sabotage) / {k['after_good']:,} (good); a look after every day's "
        "rewards",
        "decisions: customers decided from the switch (promotion) to the rollback",
        "fixed 95% CI: stop the first time lift + 1.96 se < 0 (the same looks and data)",
    ]
    headers = [
        "scenario",
        "rolled back",
        "median decisions",
        "worst",
        "fixed 95% CI stops",
        "its median",
    ]
    return bc.format_table("lift monitor on the renewal simulator", headers, rows, notes)


@script("benchmarks.rollout", quick="4 sabotage and 20 good seeds with shorter periods")
def _options(parser: argparse.ArgumentParser) -> None:
    """Decisions until a sabotaged model is rolled back, and false rollbacks of a good policy,
    against stopping on a fixed-sample interval (see the module)."""
    parser.add_argument("--seeds", type=int, default=20, help="seeds per sabotage [20]")
    parser.add_argument("--good-seeds", type=int, default=200, help="good seeds [200]")
    parser.add_argument("--workers", type=int, default=2, help="processes [2]")
    bc.add_out(parser, "rollout")


def main(argv: Sequence[str] | None = None) -> int:
    args = _options.parse_args(argv)
    settings: dict[str, Any] = {
        "warm": 3000,
        "after": 30000,
        "after_good": 12000,
        "batch": 274,
        "delay_days": (7.0, 30.0),
        "control_share": 0.10,
    }
    seeds, good = args.seeds, args.good_seeds
    if args.quick:
        settings.update(
            warm=1000, after=8000, after_good=3000, delay_days=(0.5, 3.0), control_share=0.5
        )
        seeds, good = min(seeds, 4), min(good, 20)
    knobs = {k: settings[k] for k in ("warm", "batch", "delay_days", "control_share")}
    scenarios: dict[str, Any] = {}
    for scenario in ("worst_offer", "wrong_sign"):
        print(f"{scenario}: {seeds} seeds ...", file=sys.stderr)
        found = run_many(scenario, range(seeds), args.workers, after=settings["after"], **knobs)
        scenarios[scenario] = summary(found)
    print(f"good: {good} seeds ...", file=sys.stderr)
    found = run_many(
        "good", range(1000, 1000 + good), args.workers, after=settings["after_good"], **knobs
    )
    scenarios["good"] = summary(found)
    result = {
        "meta": bc.run_info({**settings, "seeds": seeds, "good_seeds": good, "quick": args.quick}),
        "settings": settings,
        "scenarios": scenarios,
        "false_rollback_rate": scenarios["good"]["rolled_back"] / good,
        "fixed_interval_false_stop_rate": scenarios["good"]["fixed_interval_stops"] / good,
    }
    result["table"] = table(result)
    return bc.publish(args.out, result)


if __name__ == "__main__":
    sys.exit(main())

"""The engine benchmark's targets and the tables it prints (:mod:`benchmarks.engine_throughput`)."""

from __future__ import annotations

from typing import Any

from benchmarks import common as bc

DECIDE_TARGET = 100_000.0  # decisions/s, batches of 256, durable journal
REWARD_TARGET = 100_000.0  # rewards/s, batches of 256, durable journal
P99_TARGET_US = 200.0  # single decide p99


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    tp, lat = results["throughput"], results["latency"]
    return [
        bc.target_row(
            "decide_batch >= 100,000/s",
            "durable journal, batches of 256",
            tp["decide_batch"]["durable"]["median"],
            DECIDE_TARGET,
            "decisions/s",
        ),
        bc.target_row(
            "reward_batch >= 100,000/s",
            "durable journal, batches of 256",
            tp["reward_batch"]["durable"]["median"],
            REWARD_TARGET,
            "rewards/s",
        ),
        bc.target_row(
            "single decide p99 <= 200 us",
            "durable journal",
            lat["p99_us"],
            P99_TARGET_US,
            "<= us",
        ),
    ]


def _measured(t: dict[str, Any]) -> str:
    if t["rule"] == ">=":
        return f"{bc.fmt_rate(t['measured'])} {t['unit']}"
    return f"{bc.fmt_float(t['measured'], 1)} {t['unit']}"


def _pass(flag: bool | None) -> str:
    return "-" if flag is None else ("PASS" if flag else "FAIL")


def render(results: dict[str, Any]) -> str:
    tp, lat, mem = results["throughput"], results["latency"], results["memory"]
    repeats = results["meta"]["settings"]["repeats"]
    rows = []
    for call, unit in (("decide_batch", "decisions/s"), ("reward_batch", "rewards/s")):
        r = tp[call]
        rows.append(
            [
                f"{call} ({unit})",
                bc.fmt_rate(r["durable"]["median"]),
                f"{bc.fmt_rate(r['durable']['min'])}-{bc.fmt_rate(r['durable']['max'])}",
                bc.fmt_rate(r["memory"]["median"]),
                bc.fmt_rate(r["durable_cpu"]["median"]),
                bc.fmt_ratio(r["durable_vs_memory"]),
                bc.fmt_float(r["journal_us_per_item"], 2),
            ]
        )
    parts = [
        bc.format_table(
            f"Engine throughput, batches of {tp['batch']} (median of {repeats} repeats, "
            f"{tp['decisions']:,} items each)",
            [
                "call",
                "durable",
                "durable min-max",
                "in memory",
                "durable per CPU-s",
                "durable/memory",
                "journal us/item",
            ],
            rows,
            [
                "durable: SQLite WAL on disk, committed before each call returns; in memory: "
                "the same SQLite journal in RAM (nothing durable)",
                "durable per CPU-s: items per second of this process's CPU time (the machine is "
                "shared; targets use wall time)",
                "rewards arrive shuffled (out of order); each reward batch includes the learner's "
                "update and, every 100 rewards, a model publish",
                "reward_batch durable with rewards in decision order: "
                + bc.fmt_rate(tp["reward_batch"]["durable_in_decision_order"]["median"])
                + " rewards/s",
            ],
        ),
        bc.format_table(
            "Single decide latency, durable journal (us)",
            ["statistic", "median of repeats", "pooled"],
            [
                ["p50", bc.fmt_float(lat["p50_us"], 1), bc.fmt_float(lat["pooled"]["p50_us"], 1)],
                ["p99", bc.fmt_float(lat["p99_us"], 1), bc.fmt_float(lat["pooled"]["p99_us"], 1)],
                ["mean", "-", bc.fmt_float(lat["pooled"]["mean_us"], 1)],
            ],
            [f"{lat['calls_per_repeat']:,} calls per repeat, {repeats} repeats"],
        ),
        bc.format_table(
            f"Pending decisions ({mem['pending']:,}, durable journal, fresh process)",
            ["measure", "value"],
            [
                ["RSS growth (MB)", bc.fmt_float(mem["rss_growth_mb"], 1)],
                [
                    "RSS growth per pending decision (bytes)",
                    bc.fmt_float(mem["rss_bytes_per_pending"], 0),
                ],
                ["journal size (MB)", bc.fmt_float(mem["journal_mb"], 1)],
                ["journal bytes per decision", bc.fmt_float(mem["journal_bytes_per_decision"], 0)],
                [
                    "decide rate while filling (decisions/s)",
                    bc.fmt_rate(mem["pending"] / mem["seconds"]),
                ],
            ],
            [
                "pending decisions are not held in memory (the journal is the pending set); the "
                "growth is per-customer guardrail history (frequency cap, cooldown) and SQLite's "
                "page cache",
            ],
        ),
        bc.format_table(
            "Targets",
            ["target", "subject", "measured", "result"],
            [
                [t["target"], t["subject"], _measured(t), _pass(t["passed"])]
                for t in results["targets"]
            ],
        ),
    ]
    return "\n\n".join(parts)

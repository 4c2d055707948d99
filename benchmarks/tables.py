"""The core benchmark's targets and the tables it prints."""

from __future__ import annotations

from typing import Any

from benchmarks import common as bc


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets, each checked on this run's figures.

    A ``--quick`` run measures each figure too, but its sizes are too small to compare with a
    target (compile time and start-up dominate), so its rows keep the figure and judge nothing:
    ``passed`` is None.
    """
    small, large = (b["results"] for b in results["batch"])
    online, latency = results["online"]["results"], results["latency"]["results"]
    best_vw = results["online"]["best_reward_vw"]
    vw_reward = online[best_vw]["reward"]["mean_reward"]
    t = bc.target_row
    out = []
    # Issue 18: LinUCB >= 3x MABWiser, LinearTS (with its propensities) >= MABWiser LinTS.
    for nbo, mab, times in (
        ("nbo LinUCB", "MABWiser LinUCB", 3),
        ("nbo LinearTS", "MABWiser LinTS", 1),
    ):
        out += [
            t("batch choose K=10,d=32", nbo, small[nbo]["median"], 2e6, "decisions/s"),
            t(
                "batch choose K=10,d=32 vs MABWiser",
                f"{nbo} / {mab}",
                small[nbo]["vs"][mab],
                times,
                "x",
            ),
            t("batch choose K=100,d=64", nbo, large[nbo]["median"], 6e4, "decisions/s"),
        ]
    for nbo in ("nbo LinUCB", "nbo LinearTS", "nbo EpsilonGreedy"):
        vw, mab = online[nbo]["vs"]
        out += [
            t("online choose+update K=10,d=32", nbo, online[nbo]["median"], 1e5, "events/s"),
            t("online vs fastest VW route", nbo, online[nbo]["vs"][vw], 15, "x"),
            t(f"online vs {mab}", nbo, online[nbo]["vs"][mab], 50, "x"),
        ]
    # every contextual policy's single-row choice (not the peers' rows)
    for nbo in (name for name in latency if name.startswith("nbo ") and name != "nbo VWPolicy"):
        out.append(t("single-row choose p99", nbo, latency[nbo]["p99_us"], 20, "<= us"))
    for nbo in ("nbo LinUCB", "nbo LinearTS", "nbo EpsilonGreedy"):
        reward = online[nbo]["reward"]["mean_reward"]
        out.append(t(f"mean reward >= {best_vw}", nbo, reward, vw_reward, "reward/event"))
    if results["meta"]["settings"].get("quick"):
        out = [{**row, "passed": None} for row in out]
    return out


def _fmt_target(value: float | None, unit: str) -> str:
    if unit == "x":
        return bc.fmt_ratio(value)
    return bc.fmt_rate(value) if unit.endswith("/s") else bc.fmt_float(value)


def _batch_table(results: dict[str, Any], reps: int) -> str:
    rows = []
    for section in results["batch"]:
        for name, r in section["results"].items():
            vs = r.get("vs", {})
            mab = next((v for p, v in vs.items() if p.startswith("MABWiser")), None)
            rates = [bc.fmt_rate(r[key]) for key in ("median", "min", "max")]
            rows.append(
                [
                    section["config"],
                    name,
                    f"{r['items']:,}",
                    *rates,
                    bc.fmt_ratio(mab),
                    bc.fmt_ratio(vs.get("numpy LinUCB")),
                ]
            )
    agree = results["batch"][0]["linucb_agreement"]
    note = (
        f"nbo LinUCB picks the same action as MABWiser LinUCB on "
        f"{agree['MABWiser LinUCB']:.1%} and as numpy LinUCB on {agree['numpy LinUCB']:.1%} "
        "of rows (K=10,d=32)"
    )
    headers = ["config", "policy", "rows", "median", "min", "max", "nbo/MABWiser", "nbo/numpy"]
    title = f"Batch choose throughput, decisions/s (median of {reps} repeats)"
    return bc.format_table(title, headers, rows, [note])


def _online_tables(online: dict[str, Any], reps: int) -> list[str]:
    rows, rewards = [], []
    n_first = online["mabwiser_events"]
    events = f"{online['events']:,}"
    rewards.append(
        [
            "oracle",
            events,
            bc.fmt_float(online["oracle_mean_reward"]),
            "0.000",
            "0.0",
            bc.fmt_float(online["oracle_first_mean_reward"]),
        ]
    )
    rewards.append(
        [
            "uniform random (expected)",
            events,
            bc.fmt_float(online["uniform_mean_reward"]),
            "-",
            "-",
            "-",
        ]
    )
    for name, r in online["results"].items():
        vs = [bc.fmt_ratio(v) for v in r.get("vs", {}).values()] or ["-", "-"]
        rates = [bc.fmt_rate(r[key]) for key in ("median", "min", "max")]
        rows.append([name, f"{r['items']:,}", *rates, *vs])
        rw, first = r["reward"], r["reward_first_events"]
        rewards.append(
            [
                name,
                f"{rw['rounds']:,}",
                bc.fmt_float(rw["mean_reward"]),
                bc.fmt_float(rw["mean_regret"]),
                f"{rw['cumulative_regret']:,.1f}",
                bc.fmt_float(first["mean_reward"]),
            ]
        )
    notes = [
        f"MABWiser refits per event: capped at its first {n_first:,} events",
        f"fastest VW route: {online['fastest_vw']}",
    ]
    title = (
        f"Online choose+update, one event at a time from Python, {online['config']}, "
        f"events/s (median of {reps} repeats)"
    )
    headers = ["policy", "events", "median", "min", "max", "nbo/fastest VW", "nbo/MABWiser"]
    reward_headers = [
        "policy",
        "events",
        "mean reward",
        "regret/event",
        "cum. regret",
        f"mean reward, first {n_first:,}",
    ]
    reward_title = "Reward on the online stream (expected reward of the chosen action)"
    return [
        bc.format_table(title, headers, rows, notes),
        bc.format_table(reward_title, reward_headers, rewards),
    ]


def _latency_table(latency: dict[str, Any]) -> str:
    rows = []
    for name, r in latency["results"].items():
        vs = r.get("vs_p99", {})
        figures = [bc.fmt_float(r[key], 1) for key in ("p50_us", "p99_us", "mean_us")]
        rows.append(
            [
                name,
                f"{r['calls']:,}",
                *figures,
                bc.fmt_ratio(vs.get("nbo VWPolicy")),
                bc.fmt_ratio(vs.get("MABWiser LinUCB")),
            ]
        )
    headers = ["policy", "calls", "p50", "p99", "mean", "VWPolicy p99/this", "MABWiser p99/this"]
    title = f"Warm single-row choose latency, {latency['config']}, microseconds"
    return bc.format_table(title, headers, rows)


def _compile_table(first: dict[str, Any]) -> str:
    rows = []
    for name, r in first["results"].items():
        cold, warm = r["cold"] or {}, r["warm"]
        rows.append(
            [
                name,
                *(
                    bc.fmt_float(cold.get(key), 2)
                    for key in ("import_s", "first_choose_s", "first_update_s")
                ),
                *(
                    bc.fmt_float(warm[key], 3)
                    for key in ("import_s", "first_choose_s", "first_update_s")
                ),
                bc.fmt_float(warm["second_choose_s"] * 1e3, 3),
            ]
        )
    headers = [
        "policy",
        "import",
        "1st choose",
        "1st update",
        "import warm",
        "1st choose warm",
        "1st update warm",
        "2nd choose ms",
    ]
    title = (
        f"First calls in a fresh process, {first['config']}, seconds "
        "(cold: empty NUMBA_CACHE_DIR; warm: from that cache)"
    )
    notes = [] if first["cold_measured"] else ["cold columns are measured in full runs only"]
    return bc.format_table(title, headers, rows, notes)


QUICK_TARGETS_NOTE = (
    "Targets: not judged. A --quick run is too small to compare with the targets (start-up and "
    "compile time dominate its figures); run `nbo bench` without --quick for pass/fail."
)


def _targets_table(rows_in: list[dict[str, Any]], quick: bool = False) -> str:
    if quick:
        return QUICK_TARGETS_NOTE
    rows = []
    for t in rows_in:
        unit = t["unit"]
        bound = f"{t['bound']:g}x" if unit == "x" else f"{_fmt_target(t['bound'], unit)} {unit}"
        verdict = "-" if t["passed"] is None else ("PASS" if t["passed"] else "FAIL")
        rows.append(
            [
                t["target"],
                t["subject"],
                _fmt_target(t["measured"], unit),
                f"{t['rule']} {bound}",
                verdict,
            ]
        )
    headers = ["target", "subject", "measured", "target", "result"]
    return bc.format_table("Targets", headers, rows)


def render(results: dict[str, Any]) -> str:
    """The printed report: a header line and one table per measurement."""
    meta = results["meta"]
    s = meta["settings"]
    load = " ".join(f"{x:.2f}" for x in meta["load_average"] or [])
    header = (
        f"nbo core benchmark {meta['started_utc']}, commit {meta['git_commit']}"
        f"{' (+ uncommitted engine/ changes)' if meta['engine_uncommitted_changes'] else ''}, "
        f"python {meta['python']}, numpy {meta['numpy']}, numba {meta['numba']}, "
        f"{meta['cpu_count']} CPUs, load average {load}, BLAS threads "
        f"{s['blas_threads'] or 'default'}, seed {s['seed']}{', QUICK' if s['quick'] else ''}"
    )
    reps = s["repeats"]
    return "\n\n".join(
        [
            header,
            _batch_table(results, reps),
            *_online_tables(results["online"], reps),
            _latency_table(results["latency"]),
            _compile_table(results["compile"]),
            _targets_table(results["targets"], quick=bool(s["quick"])),
        ]
    )

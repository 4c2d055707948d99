"""The tables of :mod:`benchmarks.replicas`: medians over repeats, ratios, the target.

Examples
--------
>>> row = Measured({"server": ONE, "scenario": "Decide", "in_flight": 64, "repeat": 0,
...                 "per_second": 800.0}, None, 0.3)
>>> faster = Measured({**row.load, "server": SQLITE, "per_second": 1200.0}, None, 0.3)
>>> ratio([row, faster], SQLITE, 64)
1.5
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from benchmarks import common as bc

ECHO = ("sync echo", "aio echo")
ONE = "1 process, SQLite"
ONE_PG = "1 process, PostgreSQL"
SQLITE = "2 workers, SQLite"
POSTGRES = "2 workers, PostgreSQL"
NBO = (ONE, SQLITE, ONE_PG, POSTGRES)
BASELINE = {SQLITE: ONE, POSTGRES: ONE_PG}  # what each --workers 2 is compared with
IN_FLIGHT = (1, 16, 64)
REWARD_IN_FLIGHT = 16
TARGET_RATIO = 1.5
Delays = dict[str, list[dict[str, float]]]  # server -> propagation samples, seconds


@dataclass(frozen=True)
class Measured:
    """One measurement (a :class:`benchmarks.grpc_load.LoadResult` as a dict) with the
    database's and the load client's CPU per call and, for ``--workers``, the busier worker's
    share of the calls (``SO_REUSEPORT`` gives each connection to one worker)."""

    load: dict[str, Any]
    database_cpu_ms_per_call: float | None
    client_cpu_ms_per_call: float | None
    busier_worker_share: float | None = None


def _median(rows: list[Measured], server: str, scenario: str, k: int, field: str) -> float | None:
    values: list[Any] = [
        r.load.get(field, getattr(r, field, None))
        for r in rows
        if (r.load["server"], r.load["scenario"], r.load["in_flight"]) == (server, scenario, k)
    ]
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else None


def ratio(rows: list[Measured], server: str, k: int) -> float | None:
    """Median over repeats of ``server``'s Decide rate / one process's on the same journal,
    within each repeat."""
    base = BASELINE[server]
    by_repeat: dict[int, dict[str, float]] = {}
    for r in rows:
        if r.load["scenario"] == "Decide" and r.load["in_flight"] == k:
            by_repeat.setdefault(r.load["repeat"], {})[r.load["server"]] = r.load["per_second"]
    ratios = [
        rates[server] / rates[base]
        for rates in by_repeat.values()
        if rates.get(base) and server in rates
    ]
    return statistics.median(ratios) if ratios else None


def ceiling(rows: list[Measured], k: int) -> float | None:
    """The faster echo server's median Decide rate."""
    rates = [_median(rows, name, "Decide", k, "per_second") for name in ECHO]
    return max((r for r in rates if r is not None), default=None)


def targets(rows: list[Measured]) -> list[dict[str, Any]]:
    """The issue's target: --workers 2 Decide >= 1.5x one process at 64 in flight."""
    return [
        bc.target_row(
            f"Decide at 64 in flight, {name} vs {BASELINE[name]}",
            "calls/s ratio",
            ratio(rows, name, 64),
            TARGET_RATIO,
        )
        for name in (SQLITE, POSTGRES)
    ]


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_report(rows: list[Measured], delays: Delays, failovers: dict[str, list[float]]) -> str:
    """The markdown tables: Decide, Reward, propagation, failover, target."""

    def med(server: str, scenario: str, k: int, field: str, digits: int = 0) -> str:
        return _num(_median(rows, server, scenario, k, field), digits)

    lines = [
        "| Decide | calls/s at 1 / 16 / 64 in flight | server CPU ms/call at 1 / 16 / 64 "
        "| PostgreSQL server CPU ms/call at 64 | load client CPU ms/call at 64 "
        "| busier worker's share of calls at 64 | vs one process at 64 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in (*ECHO, *NBO):
        rates = " / ".join(med(name, "Decide", k, "per_second") for k in IN_FLIGHT)
        cpu = " / ".join(med(name, "Decide", k, "server_cpu_ms_per_call", 3) for k in IN_FLIGHT)
        versus = _num(ratio(rows, name, 64), 2) + "x" if name in BASELINE else ""
        database = med(name, "Decide", 64, "database_cpu_ms_per_call", 3)
        client = med(name, "Decide", 64, "client_cpu_ms_per_call", 3)
        share = med(name, "Decide", 64, "busier_worker_share", 2)
        lines.append(f"| {name} | {rates} | {cpu} | {database} | {client} | {share} | {versus} |")
    k = REWARD_IN_FLIGHT
    lines += [
        "",
        f"| Reward, {k} in flight | rewards/s | server CPU ms/call "
        "| PostgreSQL server CPU ms/call | p50 / p99 ms |",
        "|---|---|---|---|---|",
    ]
    for name in NBO:
        lines.append(
            f"| {name} | {med(name, 'Reward', k, 'per_second')} "
            f"| {med(name, 'Reward', k, 'server_cpu_ms_per_call', 3)} "
            f"| {med(name, 'Reward', k, 'database_cpu_ms_per_call', 3)} "
            f"| {med(name, 'Reward', k, 'p50_ms', 2)} / {med(name, 'Reward', k, 'p99_ms', 2)} |"
        )
    lines += [
        "",
        "| journal | model propagation to the first answer, median / max s "
        "| to every connection, median / max s | learner failover, median / max s |",
        "|---|---|---|---|",
    ]
    for name in (SQLITE, POSTGRES):
        first = [d["first"] for d in delays.get(name, [])]
        every = [d["all_connections"] for d in delays.get(name, [])]
        journal = name.split(", ")[1]
        lines.append(
            f"| {journal} | {_spread(first)} | {_spread(every)} "
            f"| {_spread(failovers.get(name, []))} |"
        )
    lines += bc.target_lines(
        targets(rows),
        lambda t: "-" if t["measured"] is None else f"{t['measured']:.2f}x",
        lambda t: f"{t['bound']}x",
    )
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.3f} / {max(values):.3f} (n={len(values)})"

"""``nbo demo``: the whole loop on embedded defaults, as a backend team would run it.

1. ``nbo serve`` starts on examples/renewal.toml (SQLite journal in the demo's data directory).
2. Simulated renewal customers arrive over simulated weeks; the demo plays the backend: it asks
   ``DecideBatch`` over gRPC and reports each outcome with ``RewardBatch`` once its delay (7 to 30
   days) has passed, so rewards arrive late and out of order. A progress line shows decisions/s,
   the share of decisions rewarded so far and the policy's lift over the control group.
3. The server is stopped with SIGTERM (it drains, snapshots and closes its journal), the journal
   is exported to Parquet with ``nbo export`` and ``nbo evaluate`` compares candidate policies on
   those logs on a local Ray instance.
4. A summary table is printed and a report (HTML with PNG plots) written; its path is printed.

The simulator knows every customer's expected net reward under every offer, so the summary also
says how close the live policy came to the oracle: the number a real deployment never sees.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from engine.cliargs import add_seed, command, commands
from engine.errors import InvalidInputError, NboError
from simulators.engine_path import DEFAULT_CAMPAIGN
from simulators.processes import serve_command
from simulators.renewal import RenewalEnvironment
from simulators.runner import DelayedFeedback, streams

#: Candidate policies ``nbo evaluate`` compares on the demo's logs.
CANDIDATES = (
    "linucb:alpha=0.3,1",
    "lints",
    "egreedy:epsilon=0.05",
)


def handle(args: argparse.Namespace) -> int:
    # The run's size, seed and campaign: the same options for either demo.
    run: dict[str, Any] = {}
    for name in ("customers", "per_day", "batch"):
        run[name] = getattr(args, name)
        if run[name] < 1:
            raise InvalidInputError(f"--{name.replace('_', '-')}", "an int >= 1", run[name])
    run.update(seed=args.seed, config=Path(args.config))
    if args.cluster:
        from simulators.cluster import run_cluster_demo

        out = Path(args.out if args.out != "nbo-demo" else "nbo-demo-cluster")
        result = run_cluster_demo(**run, out=out)
        lost = result["decisions_lost"] + result["rewards_lost"]
        return 0 if lost == 0 and set(result["exit_codes"].values()) == {0} else 1
    summary = run_demo(
        **run, out=Path(args.out), workers=args.workers, evaluate=not args.no_evaluate
    )
    return 0 if summary["server_exit_code"] == 0 else 1


@dataclass
class _Group:
    """Running count, sum and sum of squares of realized net rewards."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, values: np.ndarray) -> None:
        self.n += int(values.size)
        self.total += float(values.sum())
        self.squares += float((values * values).sum())

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def var(self) -> float:
        if self.n < 2:
            return math.nan
        return max(self.squares - self.n * self.mean**2, 0.0) / (self.n - 1)


def lift_interval(policy: _Group, control: _Group, z: float = 1.96) -> tuple[float, float]:
    """Policy minus control mean net reward and the half-width of its Welch interval."""
    if policy.n < 2 or control.n < 2:
        return math.nan, math.nan
    return policy.mean - control.mean, z * math.sqrt(
        policy.var / policy.n + control.var / control.n
    )


@dataclass
class _Run:
    decided: int = 0
    rewarded: int = 0
    policy: _Group = field(default_factory=_Group)
    control: _Group = field(default_factory=_Group)
    expected: float = 0.0
    oracle: float = 0.0
    control_expected: float = 0.0
    explored: int = 0
    offers: dict[str, int] = field(default_factory=dict)
    curve: list[tuple[int, float, float, float]] = field(default_factory=list)
    seconds: float = 0.0


def run_demo(
    customers: int = 60_000,
    per_day: int = 800,
    batch: int = 200,
    seed: int = 0,
    config: Path = DEFAULT_CAMPAIGN,
    out: Path = Path("nbo-demo"),
    workers: int = 2,
    evaluate: bool = True,
    stream: IO[str] | None = None,
) -> dict[str, Any]:
    """Run the demo; returns the summary it also writes to ``out/summary.json``."""
    stream = stream if stream is not None else sys.stdout
    if out.exists():
        shutil.rmtree(out)
    data_dir = out / "data"
    out.mkdir(parents=True)
    say = printer(stream)
    served = count_published_campaign(config, out / "campaign.toml")
    server_log = (out / "server.log").open("w")
    cmd = serve_command(served, data_dir, "--metrics-port", "0")
    say(f"$ nbo serve --config {served} --data-dir {data_dir} --port 0")
    say(
        f"  ({served.name} is {config.name} publishing every {_publish_every(served)} rewards,"
        " never"
        " by the clock, so the same seed tells the same story on any machine, kernel cache"
        " cold or warm)"
    )
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=server_log, text=True)
    exit_code: int | None = None
    try:
        port = read_port(proc, out / "server.log")
        from engine.client import NboClient

        with NboClient(f"127.0.0.1:{port}", timeout=60.0) as client:
            client.wait_until_serving(timeout=180.0)
            say(
                f"  serving on 127.0.0.1:{port} after {time.perf_counter() - started:.1f} s "
                f"(kernels warm); server log: {out / 'server.log'}"
            )
            env = RenewalEnvironment.from_campaign(config)
            run = run_loop(client, env, customers, per_day, batch, seed, stream)
        say("$ kill -TERM <nbo serve>   # drain, snapshot, close the journal")
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(timeout=120)
        say(f"  server exited with code {exit_code}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server_log.close()
    evaluation: dict[str, Any] | None = None
    anytime: dict[str, Any] | None = None
    if evaluate:
        # The lift from the journal: the fixed interval and the rollout monitor's anytime-valid
        # bound (the one to act on when the lift is looked at more than once).
        lift_json = out / "lift.json"
        _nbo(
            say,
            [
                "lift",
                "--data-dir",
                str(data_dir),
                "--campaign",
                _campaign_name(config),
                "--out",
                str(lift_json),
            ],
        )
        anytime = json.loads(lift_json.read_text())["anytime"]
        logs = out / "logs.parquet"
        _nbo(
            say,
            [
                "export",
                "--data-dir",
                str(data_dir),
                "--campaign",
                _campaign_name(config),
                "--out",
                str(logs),
            ],
        )
        eval_dir = out / "evaluation"
        args = [
            "evaluate",
            "--logs",
            str(logs),
            "--workers",
            str(workers),
            "--out",
            str(eval_dir),
            "--seed",
            str(seed),
            "--bootstrap",
            "100",
        ]
        for spec in CANDIDATES:
            args += ["--policy", spec]
        _nbo(say, args)
        evaluation = json.loads((eval_dir / "evaluation.json").read_text())
    summary = _summary(run, evaluation, exit_code, out)
    if anytime is not None:
        summary["anytime_lift"] = {k: anytime[k] for k in ("lift", "lower", "upper", "alpha")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    report = _write_report(run, summary, out)
    say("")
    say(_table(summary))
    say("")
    say(f"wrote {out / 'summary.json'}")
    say(f"wrote {report}")
    say(f"demo finished in {time.perf_counter() - started:.0f} s")
    return summary


def run_loop(
    client: Any,
    env: RenewalEnvironment,
    customers: int,
    per_day: int,
    batch: int,
    seed: int,
    stream: IO[str],
) -> _Run:
    from tqdm import tqdm

    rng_contexts, rng_outcomes = streams(seed)
    pending = DelayedFeedback()
    index = {offer: i for i, offer in enumerate(env.action_ids)}
    run = _Run(offers={o: 0 for o in env.action_ids})
    started = time.perf_counter()
    bar = tqdm(
        total=customers,
        unit="dec",
        file=stream,
        desc="customers",
        mininterval=0.5,
        dynamic_ncols=True,
    )

    def send(released: tuple[np.ndarray, ...] | None) -> None:
        if released is None:
            return
        ids, values, rewards, control = released
        for start in range(0, len(ids), 1000):
            client.reward_batch(
                ids[start : start + 1000].tolist(), values[start : start + 1000].tolist()
            )
        run.rewarded += len(ids)
        run.control.add(rewards[control])
        run.policy.add(rewards[~control])

    try:
        for start in range(0, customers, batch):
            n = min(batch, customers - start)
            rounds = env.sample_rounds(n, rng_contexts, start)
            # customers arrive at per_day a day, whatever the simulator's own calendar says
            today = start / per_day
            send(pending.release(today))
            ids = [f"c{seed}-{c}" for c in rounds.customer_ids]
            decisions = client.decide_batch(ids, env.records(rounds.attributes))
            actions = np.array([index[o] for o in decisions.offer_ids], dtype=np.int64)
            outcomes = env.draw_outcomes(rounds, actions, rng_outcomes)
            control = np.asarray(decisions.control, dtype=bool)
            pending.add(
                today + outcomes.delays,
                np.asarray(decisions.decision_ids, dtype=object),
                outcomes.values,
                outcomes.rewards,
                control,
            )
            expected = rounds.expected_reward_of(actions)
            run.expected += float(expected.sum())
            run.oracle += float(rounds.oracle_rewards().sum())
            run.control_expected += float(
                rounds.expected_reward_of(np.full(n, env.control_action)).sum()
            )
            run.explored += int(np.asarray(decisions.explored).sum())
            for offer in decisions.offer_ids:
                run.offers[offer] += 1
            run.decided += n
            lift, half = lift_interval(run.policy, run.control)
            run.curve.append(
                (
                    run.decided,
                    run.expected,
                    run.oracle,
                    run.control_expected,
                )
            )
            bar.update(n)
            bar.set_postfix_str(
                f"rewarded {run.rewarded / run.decided:4.0%}  lift/decision "
                + ("  n/a" if math.isnan(lift) else f"{lift:+.1f}±{half:.1f}"),
                refresh=False,
            )
        # the reward window closes: every outcome still on its way arrives
        send(pending.release(math.inf))
    finally:
        bar.close()
    run.seconds = time.perf_counter() - started
    return run


def _summary(
    run: _Run, evaluation: dict[str, Any] | None, exit_code: int | None, out: Path
) -> dict[str, Any]:
    lift, half = lift_interval(run.policy, run.control)
    summary: dict[str, Any] = {
        "customers": run.decided,
        "decisions_per_second": run.decided / run.seconds if run.seconds else math.nan,
        "rewards": run.rewarded,
        "policy_mean_net_reward": run.policy.mean,
        "control_mean_net_reward": run.control.mean,
        "control_share": run.control.n / max(run.rewarded, 1),
        "lift_per_decision": lift,
        "lift_ci95_half_width": half,
        "explored_share": run.explored / max(run.decided, 1),
        "offers": run.offers,
        "ground_truth": {
            "expected_net_per_customer": run.expected / max(run.decided, 1),
            "oracle_net_per_customer": run.oracle / max(run.decided, 1),
            "control_net_per_customer": run.control_expected / max(run.decided, 1),
            "share_of_oracle": run.expected / run.oracle if run.oracle else math.nan,
        },
        "server_exit_code": exit_code,
        "directory": str(out),
    }
    if evaluation is not None:
        primary = evaluation["primary_estimator"]
        rows = []
        for c in evaluation["candidates"]:
            est = c["estimates"].get(primary)
            if est is None:
                continue
            low, high = est.get(evaluation["interval"]) or est["normal"]
            rows.append(
                {
                    "candidate": c["label"],
                    "kind": c["kind"],
                    "value": est["value"],
                    "low": low,
                    "high": high,
                    "warning": c["overlap_warning"],
                }
            )
        summary["evaluation"] = {
            "primary_estimator": primary,
            "interval": evaluation["interval"],
            "logging_value": evaluation["logging_value"],
            "decision": evaluation["decision"],
            "split": evaluation.get("split"),
            "candidates": rows,
            "report": str(out / "evaluation" / "report.html"),
        }
    return json.loads(json.dumps(summary, default=float).replace("NaN", "null"))


def _table(summary: dict[str, Any]) -> str:
    gt = summary["ground_truth"]
    lines = [
        "live run (over gRPC; every decision of the run, rewards as they arrived)",
        f"  customers served          {summary['customers']:>10,}   "
        f"({summary['decisions_per_second']:,.0f} decisions/s through the client)",
        f"  rewards joined            {summary['rewards']:>10,}   (late and out of order)",
        f"  mean net reward: policy   {_num(summary['policy_mean_net_reward'])}",
        f"                   control  {_num(summary['control_mean_net_reward'])}   "
        f"({summary['control_share']:.0%} of customers, sticky by customer id)",
        f"  lift per decision         {_num(summary['lift_per_decision'])}   "
        f"(95% CI ± {_num(summary['lift_ci95_half_width']).strip()})",
        *_anytime_line(summary.get("anytime_lift")),
        f"  ground truth: policy earned {gt['share_of_oracle']:.1%} of the oracle's net value "
        f"({gt['expected_net_per_customer']:.2f} vs {gt['oracle_net_per_customer']:.2f} per "
        f"customer; all-control {gt['control_net_per_customer']:.2f})",
    ]
    ev = summary.get("evaluation")
    if ev:
        lines += [
            "",
            f"off-policy evaluation on the exported logs ({ev['primary_estimator']}, "
            f"{ev['interval']} 95% interval)",
            f"  {'candidate':<34}{'estimate':>10}{'low':>10}{'high':>10}",
        ]
        for r in ev["candidates"]:
            flag = "  (poor overlap)" if r["warning"] else ""
            lines.append(
                f"  {r['candidate'][:34]:<34}{_num(r['value'])}{_num(r['low'])}"
                f"{_num(r['high'])}{flag}"
            )
        lines.append(f"  {ev['decision']['reason']}")
        if ev.get("split"):
            lines += textwrap.wrap(ev["split"], 96, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return f"{'n/a':>10}" if value is None or math.isnan(value) else f"{value:>10.2f}"


def _write_report(run: _Run, summary: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # value per customer over a moving window of batches, from the cumulative sums
    curve = np.array(run.curve) if run.curve else np.zeros((0, 4))
    window = max(1, len(curve) // 15)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    lines = (
        (1, "nbo policy (incl. control group)", "C0", "-"),
        (2, "oracle (ground truth)", "0.3", "--"),
        (3, "everyone gets control", "C3", "-"),
    )
    if len(curve) > window:
        n = curve[window:, 0] - curve[:-window, 0]
        for col, label, color, ls in lines:
            ax.plot(
                curve[window:, 0],
                (curve[window:, col] - curve[:-window, col]) / n,
                label=label,
                color=color,
                ls=ls,
            )
        per_window = int(np.median(n))
        ax.set_title(f"Live run over gRPC (moving window of {per_window:,} customers)")
    ax.set_xlabel("customers served")
    ax.set_ylabel("expected net reward / customer")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    plot = out / "live_run.png"
    fig.savefig(plot, dpi=110)
    plt.close(fig)
    ev = summary.get("evaluation")
    eval_html = ""
    if ev:
        rows = "".join(
            f"<tr><td>{r['candidate']}</td><td>{_num(r['value'])}</td><td>{_num(r['low'])}</td>"
            f"<td>{_num(r['high'])}</td><td>{'poor overlap' if r['warning'] else ''}</td></tr>"
            for r in ev["candidates"]
        )
        eval_html = (
            f"<h2>Off-policy evaluation</h2><p>{ev['decision']['reason']}</p>"
            f"<table><tr><th>candidate</th><th>estimate</th><th>low</th><th>high</th><th></th>"
            f"</tr>{rows}</table><p>Full report: <a href='evaluation/report.html'>"
            f"evaluation/report.html</a></p>"
        )
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>nbo demo</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:2px 10px;"
        "text-align:right}td:first-child{text-align:left}</style></head><body>"
        "<h1>nbo demo: renewal offers</h1>"
        f"<pre>{_table({**summary, 'evaluation': None})}</pre>"
        "<img src='live_run.png' alt='cumulative value per customer'>"
        f"{eval_html}</body></html>"
    )
    report = out / "report.html"
    report.write_text(html)
    return report


def read_port(proc: subprocess.Popen[str], log: Path, timeout: float = 180.0) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if line.startswith("nbo serve: listening on port "):
            return int(line.rsplit(" ", 1)[1])
        if time.monotonic() > deadline:
            break
    code = proc.poll()
    raise NboError(f"nbo serve did not start (exit code {code}); see {log}")


_LEARNING_HEADER = re.compile(r"^\[learning\][ \t]*(#.*)?$", re.M)
_PUBLISH_MS = re.compile(r"^publish_every_ms[ \t]*=[^\n#]*", re.M)
_NEVER_MS = 1e15  # publish_every_ms that never comes within a run


def count_published_campaign(config: Path, path: Path) -> Path:
    """Write a copy of the campaign ``config`` at ``path`` that publishes a new model every
    ``publish_every_rewards`` rewards and never by the clock.

    The demo sends each reward batch and waits for it before the next decisions, so with
    count-only publishing every decision sees the same model for the same seed. With the clock
    in the loop it did not: on a cold numba cache the first updates compile for seconds, more
    rewards were pending at each timed publish, and the demo's verdict changed (NO-GO cold, GO
    warm). Only ``[learning] publish_every_ms`` changes; every other line is kept.

    Examples
    --------
    >>> import tempfile
    >>> p = count_published_campaign(DEFAULT_CAMPAIGN, Path(tempfile.mkdtemp()) / "c.toml")
    >>> from engine.campaign import load_campaign
    >>> load_campaign(p).publish_every_ms, load_campaign(p).offer_ids == load_campaign(
    ...     DEFAULT_CAMPAIGN).offer_ids
    (1000000000000000.0, True)
    """
    text = config.read_text(encoding="utf-8")
    setting = f"publish_every_ms = {_NEVER_MS:.0f}"
    header = _LEARNING_HEADER.search(text)
    if header is None:
        text = text.rstrip("\n") + f"\n\n[learning]\n{setting}\n"
    else:
        following = re.compile(r"^\[", re.M).search(text, header.end())
        end = following.start() if following else len(text)
        section = text[header.end() : end]
        if _PUBLISH_MS.search(section):
            section = _PUBLISH_MS.sub(setting, section, count=1)
        else:
            section = f"\n{setting}" + section
        text = text[: header.end()] + section + text[end:]
    path.write_text(text, encoding="utf-8")
    return path


def _publish_every(config: Path) -> int:
    from engine.campaign import load_campaign

    return load_campaign(config).publish_every_rewards


def _campaign_name(config: Path) -> str:
    from engine.campaign import load_campaign

    return load_campaign(config).name


def _anytime_line(anytime: dict[str, Any] | None) -> list[str]:
    """The rollout monitor's bound on the lift, when the run has one (finite ends)."""
    if not anytime or anytime.get("lower") is None or anytime.get("upper") is None:
        return []
    level = round(100 * (1 - anytime["alpha"]))
    return [
        f"  anytime-valid {level}% bound  [{anytime['lower']:+.2f}, {anytime['upper']:+.2f}]   "
        "(the lift monitor's: valid however often it is looked at)"
    ]


def _nbo(say: Any, args: list[str]) -> None:
    say("$ nbo " + " ".join(args))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, check=False)
    if done.returncode != 0:
        raise NboError(f"nbo {args[0]} failed with exit code {done.returncode}")


def printer(stream: IO[str]) -> Any:
    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    return say


@command("demo", handle, description=__doc__.split("\n\n")[0] if __doc__ else None)
def _demo_command(p: argparse.ArgumentParser) -> None:
    """the whole loop: serve, simulated customers over gRPC, export, evaluate, report"""
    p.add_argument("--customers", type=int, default=60_000, help="customers to serve [60000]")
    p.add_argument("--per-day", type=int, default=800, help="customers per simulated day [800]")
    p.add_argument("--batch", type=int, default=200, help="customers per DecideBatch call [200]")
    add_seed(p, "simulation seed [0]")
    p.add_argument("--config", default=str(DEFAULT_CAMPAIGN), help="campaign file [%(default)s]")
    p.add_argument("--out", default="nbo-demo", help="demo directory (wiped first) [nbo-demo]")
    p.add_argument("--workers", type=int, default=2, help="local Ray CPUs for evaluate [2]")
    p.add_argument("--no-evaluate", action="store_true", help="skip export + evaluate")
    p.add_argument(
        "--cluster",
        action="store_true",
        help="the replicated deployment instead: a local PostgreSQL, two decide servers, a "
        "leading and a standby learner; one decide server and the leader are killed -9 midway "
        "(make demo-cluster)",
    )


# What the nbo.commands entry point demo names (pyproject.toml).
register = commands(_demo_command)

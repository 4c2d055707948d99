"""Core benchmark: nbo's bandit policies against MABWiser, Vowpal Wabbit and plain numpy.

One run draws one seeded linear contextual environment (known expected rewards) and measures, on
the same stream for every library:

- batch ``choose`` throughput at K=10, d=32 and K=100, d=64 after the same warm-up data;
- online choose + update, one event at a time from Python, at K=10, d=32, and the reward each
  policy collects on that stream (mean expected reward per event, regret against the oracle);
- warm single-row ``choose`` latency (p50/p99) and first-call (compile) time, cold in a fresh
  process with an empty numba cache and warm from the cache.

Throughputs are medians of repeats; each nbo figure is also given as a ratio to its peer measured
in the same run, and the issue's targets are checked. Run ``python benchmarks/core.py`` (or
``nbo bench``); ``--quick`` is a small, fast version. Results go to benchmarks/results/core.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bc

# Hyperparameters shared by nbo and its peers (same values on both sides of every comparison).
ALPHA = 1.0  # LinUCB confidence width
TS_SCALE = 0.5  # LinearTS posterior scale = the environment's noise sd (MABWiser LinTS alpha)
EPSILON = 0.05  # epsilon-greedy (nbo EpsilonGreedy, MABWiser LinGreedy)
L2 = 1.0
VW_ARGS = "--cb_explore_adf --squarecb"
SMALL, LARGE = (10, 32), (100, 64)  # (n_actions, n_features)
NOISE = 0.5  # sd of the reward noise


@dataclass(frozen=True)
class Sizes:
    warmup: int  # logged uniform-random rounds every model is fitted on before batch/latency runs
    batch_small: int  # rows per batch choose at K=10, d=32
    batch_large: int  # rows per batch choose at K=100, d=64
    online: int  # events of the online stream
    mabwiser_online: int  # cap on MABWiser's online events (it refits per event)
    latency_calls: int  # single-row calls timed for nbo
    peer_latency_calls: int  # single-row calls timed for VWPolicy and MABWiser
    repeats: int


FULL = Sizes(5_000, 100_000, 20_000, 20_000, 2_000, 20_000, 2_000, 5)
QUICK = Sizes(300, 2_000, 300, 300, 100, 300, 50, 3)


# ---------------------------------------------------------------------- peers
class NumpyLinUCB:
    """Plain-numpy disjoint LinUCB: closed-form ridge fit, vectorized (einsum) scoring."""

    def __init__(self, X: np.ndarray, actions: np.ndarray, rewards: np.ndarray, k: int) -> None:
        d = X.shape[1]
        A = np.repeat(np.eye(d)[None] * L2, k, axis=0)
        b = np.zeros((k, d))
        np.add.at(A, actions, np.einsum("ni,nj->nij", X, X))
        np.add.at(b, actions, X * rewards[:, None])
        self.A_inv = np.linalg.inv(A)
        self.theta = np.einsum("kij,kj->ki", self.A_inv, b)

    def choose(self, X: np.ndarray, block: int = 512) -> np.ndarray:
        out = np.empty(X.shape[0], dtype=np.int64)
        for start in range(0, X.shape[0], block):
            Xb = X[start : start + block]
            # (k, n, d) products in one broadcast matmul, then the row-wise quadratic forms.
            quad = np.einsum("knd,nd->nk", np.matmul(Xb, self.A_inv), Xb)
            scores = Xb @ self.theta.T + ALPHA * np.sqrt(np.maximum(quad, 0.0))
            out[start : start + block] = scores.argmax(axis=1)
        return out


def _mabwiser(kind: str, k: int, seed: int) -> Any:
    from mabwiser.mab import MAB, LearningPolicy

    policy = {
        "LinUCB": LearningPolicy.LinUCB(alpha=ALPHA, l2_lambda=L2),
        "LinTS": LearningPolicy.LinTS(alpha=TS_SCALE, l2_lambda=L2),
        "LinGreedy": LearningPolicy.LinGreedy(epsilon=EPSILON, l2_lambda=L2),
    }[kind]
    return MAB(list(range(k)), policy, seed=seed)


def _nbo(kind: str, k: int, d: int, seed: int) -> Any:
    from engine.policies import EpsilonGreedy, LinearTS, LinUCB, VWPolicy

    if kind == "LinUCB":
        return LinUCB(k, d, alpha=ALPHA, l2=L2, seed=seed)
    if kind == "LinearTS":
        return LinearTS(k, d, scale=TS_SCALE, l2=L2, seed=seed)
    if kind == "EpsilonGreedy":
        return EpsilonGreedy(k, d, epsilon=EPSILON, l2=L2, seed=seed)
    return VWPolicy(k, d, args=VW_ARGS, seed=seed)


def _vw_argv() -> list[str]:
    return [*shlex.split(VW_ARGS), "-q", "sa", "--quiet", "--random_seed", "0"]


def _sample(pmf: Sequence[float], u: float) -> int:
    """Inverse-CDF draw from a (float32, so only nearly normalized) probability vector."""
    target = u * sum(pmf)
    acc = 0.0
    for a, p in enumerate(pmf):
        acc += p
        if target < acc:
            return a
    return len(pmf) - 1


def _shared_line(x: np.ndarray) -> str:
    return "shared |s " + " ".join(f"{j}:{v:.6g}" for j, v in enumerate(x.tolist()))


# ---------------------------------------------------------------------- online loops
def online_nbo(policy: Any, stream: bc.LinearStream) -> np.ndarray:
    """One event at a time: choose on a (1, d) row, then update with the revealed reward."""
    X, R = stream.contexts, stream.rewards
    chosen = np.empty(X.shape[0], dtype=np.int64)
    for t in range(X.shape[0]):
        x = X[t : t + 1]
        d = policy.choose(x)
        a = d.actions
        policy.update(x, a, R[t, a], d.propensities)
        chosen[t] = a[0]
    return chosen


def online_mabwiser(mab: Any, stream: bc.LinearStream) -> np.ndarray:
    """MABWiser's online loop: predict, then partial_fit on the event."""
    X, R = stream.contexts, stream.rewards
    chosen = np.empty(X.shape[0], dtype=np.int64)
    # MABWiser cannot predict before fit: the first event takes action 0 and fits on it.
    chosen[0] = 0
    mab.fit([0], [R[0, 0]], X[:1])
    for t in range(1, X.shape[0]):
        x = X[t : t + 1]
        a = mab.predict(x)
        mab.partial_fit([a], [R[t, a]], x)
        chosen[t] = a
    return chosen


def pyvw_workspace() -> Any:
    from vowpalwabbit import pyvw

    return pyvw.Workspace(" ".join(_vw_argv()))


def online_pyvw(ws: Any, stream: bc.LinearStream, seed: int) -> np.ndarray:
    """vowpalwabbit (pyvw) as its users drive it: text lines per event, parsed by VW."""
    X, R = stream.contexts, stream.rewards
    uniforms = np.random.default_rng(seed).random(X.shape[0]).tolist()
    lines = [f"|a {a}" for a in range(stream.n_actions)]
    chosen = np.empty(X.shape[0], dtype=np.int64)
    for t in range(X.shape[0]):
        shared = _shared_line(X[t])
        pmf = ws.predict([shared, *lines])
        a = _sample(pmf, uniforms[t])
        labeled = lines.copy()
        labeled[a] = f"0:{-R[t, a]:.6g}:{pmf[a]:.6g} {lines[a]}"
        ws.learn([shared, *labeled])
        chosen[t] = a
    return chosen


def vw_next_workspace() -> Any:
    import vowpal_wabbit_next as vw

    return vw.Workspace(_vw_argv())


def online_vw_next_text(ws: Any, stream: bc.LinearStream, seed: int) -> np.ndarray:
    """vowpal-wabbit-next with text: each event's lines parsed once, the chosen one labeled."""
    import vowpal_wabbit_next as vw

    parser = vw.TextFormatParser(ws)
    X, R = stream.contexts, stream.rewards
    k = stream.n_actions
    uniforms = np.random.default_rng(seed).random(X.shape[0]).tolist()
    lines = [f"|a {a}" for a in range(k)]
    chosen = np.empty(X.shape[0], dtype=np.int64)
    for t in range(X.shape[0]):
        examples = [parser.parse_line(line) for line in (_shared_line(X[t]), *lines)]
        pmf = [0.0] * k
        for slot, prob in ws.predict_one(examples):
            pmf[slot] = prob
        a = _sample(pmf, uniforms[t])
        examples[1 + a].set_label(vw.CBLabel(label=(-float(R[t, a]), pmf[a])))
        ws.learn_one(examples)
        chosen[t] = a
    return chosen


# ---------------------------------------------------------------------- sections
@dataclass
class Run:
    sizes: Sizes
    seed: int
    progress: Any
    cold: bool  # measure first calls with an empty numba cache too (slow: tens of seconds each)
    started: bool = False

    def step(self, label: str) -> None:
        """Finish the previous step (if any) and show the next one."""
        if self.started:
            self.progress.update(1)
        self.started = True
        self.progress.set_description(label)


def _fitted(stream: bc.LinearStream, n: int, seed: int) -> dict[str, Any]:
    """Every batch/latency model fitted on the same ``n`` logged uniform-random rounds."""
    k = stream.n_actions
    X = stream.contexts[:n]
    actions = np.random.default_rng(seed + 1).integers(0, k, n)
    rewards = stream.rewards[np.arange(n), actions]
    models: dict[str, Any] = {}
    for kind in ("LinUCB", "LinearTS"):
        policy = _nbo(kind, k, stream.n_features, seed)
        policy.update(X, actions, rewards)
        policy.prepare()
        models[f"nbo {kind}"] = policy
    for kind in ("LinUCB", "LinTS"):
        mab = _mabwiser(kind, k, seed)
        mab.fit(actions.tolist(), rewards.tolist(), X)
        models[f"MABWiser {kind}"] = mab
    models["numpy LinUCB"] = NumpyLinUCB(X, actions, rewards, k)
    models["actions"] = actions
    models["rewards"] = rewards
    return models


def batch_section(
    run: Run, stream: bc.LinearStream, n_rows: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Batch choose of every model on the same rows after the same warm-up; returns the
    section's results and the fitted models (reused for the latency section)."""
    sizes = run.sizes
    models = _fitted(stream, sizes.warmup, run.seed)
    X = np.ascontiguousarray(stream.contexts[sizes.warmup : sizes.warmup + n_rows])
    config = f"K={stream.n_actions},d={stream.n_features}"
    runners: dict[str, Callable[[], Any]] = {
        "nbo LinUCB": lambda: models["nbo LinUCB"].choose(X).actions,
        "nbo LinearTS": lambda: models["nbo LinearTS"].choose(X).actions,
        "MABWiser LinUCB": lambda: models["MABWiser LinUCB"].predict(X),  # a list of arms
        "MABWiser LinTS": lambda: models["MABWiser LinTS"].predict(X),
        "numpy LinUCB": lambda: models["numpy LinUCB"].choose(X),
    }
    rows: dict[str, Any] = {}
    picks: dict[str, np.ndarray] = {}
    for name, fn in runners.items():
        run.step(f"batch {config} {name}")
        fn()  # warm caches and lazy initialization outside the timing
        seconds, picks[name] = bc.time_repeats(lambda _, fn=fn: fn(), sizes.repeats)
        rows[name] = bc.rate_stats(X.shape[0], seconds)
    for nbo, peers in (
        ("nbo LinUCB", ("MABWiser LinUCB", "numpy LinUCB")),
        ("nbo LinearTS", ("MABWiser LinTS",)),
    ):
        rows[nbo]["vs"] = {p: bc.ratio(rows[nbo]["median"], rows[p]["median"]) for p in peers}
    agree = {
        p: float((picks["nbo LinUCB"] == np.asarray(picks[p])).mean())
        for p in ("MABWiser LinUCB", "numpy LinUCB")
    }
    return {
        "config": config,
        "rows": X.shape[0],
        "results": rows,
        "linucb_agreement": agree,
    }, models


def online_section(run: Run, stream: bc.LinearStream) -> dict[str, Any]:
    sizes = run.sizes
    k, d = stream.n_actions, stream.n_features
    mab_stream = stream.rows(0, min(sizes.mabwiser_online, sizes.online))
    seed = run.seed

    def nbo_setup(kind: str) -> Callable[[], Any]:
        def setup() -> Any:
            policy = _nbo(kind, k, d, seed)
            policy.prepare()
            return policy

        return setup

    cases: list[tuple[str, bc.LinearStream, Callable[[Any], Any], Callable[[], Any] | None]] = [
        ("nbo LinUCB", stream, lambda p: online_nbo(p, stream), nbo_setup("LinUCB")),
        ("nbo LinearTS", stream, lambda p: online_nbo(p, stream), nbo_setup("LinearTS")),
        ("nbo EpsilonGreedy", stream, lambda p: online_nbo(p, stream), nbo_setup("EpsilonGreedy")),
        (
            "VW pyvw (vowpalwabbit, text)",
            stream,
            lambda w: online_pyvw(w, stream, seed),
            pyvw_workspace,
        ),
        (
            "VW next (TextFormatParser)",
            stream,
            lambda w: online_vw_next_text(w, stream, seed),
            vw_next_workspace,
        ),
        ("VW next (nbo VWPolicy)", stream, lambda p: online_nbo(p, stream), nbo_setup("VWPolicy")),
    ]
    for kind in ("LinUCB", "LinTS", "LinGreedy"):
        cases.append(
            (
                f"MABWiser {kind}",
                mab_stream,
                lambda m: online_mabwiser(m, mab_stream),
                lambda kind=kind: _mabwiser(kind, k, seed),
            )
        )
    rows: dict[str, Any] = {}
    for name, events, fn, setup in cases:
        run.step(f"online {name}")
        seconds, chosen = bc.time_repeats(fn, sizes.repeats, setup)
        rows[name] = bc.rate_stats(events.contexts.shape[0], seconds)
        rows[name]["reward"] = events.reward_summary(chosen)
        n_first = mab_stream.contexts.shape[0]
        rows[name]["reward_first_events"] = mab_stream.reward_summary(chosen[:n_first])
    vw_names = [n for n in rows if n.startswith("VW")]
    fastest_vw = max(vw_names, key=lambda n: rows[n]["median"])
    best_vw = max(vw_names, key=lambda n: rows[n]["reward"]["mean_reward"])
    family = {
        "nbo LinUCB": "MABWiser LinUCB",
        "nbo LinearTS": "MABWiser LinTS",
        "nbo EpsilonGreedy": "MABWiser LinGreedy",
    }
    for nbo, mab in family.items():
        rows[nbo]["vs"] = {
            f"fastest VW ({fastest_vw})": bc.ratio(rows[nbo]["median"], rows[fastest_vw]["median"]),
            mab: bc.ratio(rows[nbo]["median"], rows[mab]["median"]),
        }
    oracle = stream.expected.max(axis=1)
    uniform = float(stream.expected.mean())
    return {
        "config": f"K={k},d={d}",
        "events": stream.contexts.shape[0],
        "mabwiser_events": mab_stream.contexts.shape[0],
        "results": rows,
        "fastest_vw": fastest_vw,
        "best_reward_vw": best_vw,
        "oracle_mean_reward": float(oracle.mean()),
        "oracle_first_mean_reward": float(oracle[: mab_stream.contexts.shape[0]].mean()),
        "uniform_mean_reward": uniform,
    }


def latency_section(run: Run, stream: bc.LinearStream, models: dict[str, Any]) -> dict[str, Any]:
    sizes = run.sizes
    k, d = stream.n_actions, stream.n_features
    X = np.ascontiguousarray(stream.contexts[sizes.warmup :])
    n_rows = X.shape[0]
    vw_policy = _nbo("VWPolicy", k, d, run.seed)
    vw_policy.update(
        stream.contexts[: sizes.warmup],
        models["actions"],
        models["rewards"],
        np.full(sizes.warmup, 1.0 / k),
    )
    rows_of = [X[i : i + 1] for i in range(n_rows)]
    cases = {
        "nbo LinUCB": (models["nbo LinUCB"].choose, sizes.latency_calls),
        "nbo LinearTS": (models["nbo LinearTS"].choose, sizes.latency_calls),
        "nbo VWPolicy": (vw_policy.choose, sizes.peer_latency_calls),
        "MABWiser LinUCB": (models["MABWiser LinUCB"].predict, sizes.peer_latency_calls),
    }
    rows: dict[str, Any] = {}
    for name, (choose, n_calls) in cases.items():
        run.step(f"latency {name}")
        for i in range(min(n_calls, 50)):  # warm-up calls
            choose(rows_of[i % n_rows])
        samples = bc.latency_samples(lambda i, c=choose: c(rows_of[i % n_rows]), n_calls)
        rows[name] = bc.latency_stats(samples)
    for nbo in ("nbo LinUCB", "nbo LinearTS"):
        rows[nbo]["vs_p99"] = {
            p: bc.ratio(rows[p]["p99_us"], rows[nbo]["p99_us"])
            for p in ("nbo VWPolicy", "MABWiser LinUCB")
        }
    return {"config": f"K={k},d={d}", "results": rows}


# A fresh interpreter times import, construction and the first calls of one policy.
_FIRST_CALL = r"""
import json, sys, time
t0 = time.perf_counter()
kind, k, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import numpy as np
if kind == "MABWiser LinUCB":
    from mabwiser.mab import MAB, LearningPolicy
else:
    from engine.policies import make_policy
t1 = time.perf_counter()
x = np.full((1, d), 0.1)
if kind == "MABWiser LinUCB":
    policy = MAB(list(range(k)), LearningPolicy.LinUCB(alpha=1.0), seed=0)
    policy.fit([0], [0.0], x)
    choose = lambda: policy.predict(x)
    update = lambda a: policy.partial_fit([a], [1.0], x)
else:
    policy = make_policy(kind, k, d, seed=0)
    choose = lambda: int(policy.choose(x).actions[0])
    update = lambda a: policy.update(x, [a], [1.0], [0.5])
t2 = time.perf_counter()
a = choose()
t3 = time.perf_counter()
update(a)
t4 = time.perf_counter()
choose()
t5 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_choose_s": t3 - t2, "first_update_s": t4 - t3,
                  "second_choose_s": t5 - t4}))
"""


def _first_call(kind: str, cache_dir: str | None, k: int, d: int) -> dict[str, float]:
    import os

    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    proc = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL, kind, str(k), str(d)],
        cwd=bc.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"first-call run of {kind} failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compile_section(run: Run) -> dict[str, Any]:
    """Cold: a fresh process with an empty NUMBA_CACHE_DIR; warm: a second one on that cache.
    Without ``run.cold`` only the warm run is made, on numba's usual cache."""
    k, d = SMALL
    rows: dict[str, Any] = {}
    for name, kind in (
        ("nbo LinUCB", "linucb"),
        ("nbo LinearTS", "lints"),
        ("nbo VWPolicy", "vw"),
        ("MABWiser LinUCB", "MABWiser LinUCB"),
    ):
        if not run.cold:
            run.step(f"first call (warm) {name}")
            rows[name] = {"cold": None, "warm": _first_call(kind, None, k, d)}
            continue
        with tempfile.TemporaryDirectory(prefix="nbo-numba-cache-") as cache:
            run.step(f"first call (cold) {name}")
            cold = _first_call(kind, cache, k, d)
            run.step(f"first call (warm) {name}")
            warm = _first_call(kind, cache, k, d)
        rows[name] = {"cold": cold, "warm": warm}
    return {"config": f"K={k},d={d}", "cold_measured": run.cold, "results": rows}


# ---------------------------------------------------------------------- targets and tables
def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each checked on this run's figures."""
    small, large = (b["results"] for b in results["batch"])
    online, latency = results["online"]["results"], results["latency"]["results"]
    best_vw = results["online"]["best_reward_vw"]
    vw_reward = online[best_vw]["reward"]["mean_reward"]
    t = bc.target_row
    out = []
    for nbo, mab in (("nbo LinUCB", "MABWiser LinUCB"), ("nbo LinearTS", "MABWiser LinTS")):
        out += [
            t("batch choose K=10,d=32", nbo, small[nbo]["median"], 2e6, "decisions/s"),
            t(
                "batch choose K=10,d=32 vs MABWiser",
                f"{nbo} / {mab}",
                small[nbo]["vs"][mab],
                3,
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
    for nbo in ("nbo LinUCB", "nbo LinearTS"):
        out.append(t("single-row choose p99", nbo, latency[nbo]["p99_us"], 20, "<= us"))
    for nbo in ("nbo LinUCB", "nbo LinearTS", "nbo EpsilonGreedy"):
        reward = online[nbo]["reward"]["mean_reward"]
        out.append(t(f"mean reward >= {best_vw}", nbo, reward, vw_reward, "reward/event"))
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


def _targets_table(rows_in: list[dict[str, Any]]) -> str:
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
    return bc.format_table("Targets (issue 2)", headers, rows)


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
            _targets_table(results["targets"]),
        ]
    )


# ---------------------------------------------------------------------- entry point
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The script's options (``nbo bench`` offers the same)."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and no cold-compile runs (smoke test, demo)",
    )
    parser.add_argument(
        "--out",
        default=str(bc.RESULTS_DIR / "core.json"),
        help="JSON result file (default: benchmarks/results/core.json)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the stream and policies")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="repeats per throughput figure (default 5; --quick 3)",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads for every library (0 = library default; default 1)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables, write the JSON file; returns the exit code."""
    from tqdm import tqdm

    parser = argparse.ArgumentParser(prog="benchmarks/core.py", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats: expected an int >= 1, got {args.repeats}")
    sizes = QUICK if args.quick else FULL
    sizes = replace(sizes, repeats=args.repeats or sizes.repeats)
    settings = {
        "quick": args.quick,
        "seed": args.seed,
        "blas_threads": args.blas_threads,
        **asdict(sizes),
        "alpha": ALPHA,
        "ts_scale": TS_SCALE,
        "epsilon": EPSILON,
        "l2": L2,
        "vw_args": VW_ARGS,
        "noise_sd": NOISE,
    }
    results: dict[str, Any] = {"meta": bc.run_info(settings)}
    n_steps = 10 + 9 + 4 + (4 if args.quick else 8)
    progress = tqdm(total=n_steps, file=sys.stderr, leave=False, disable=None)
    with progress, bc.blas_threads(args.blas_threads):
        run = Run(sizes, args.seed, progress, cold=not args.quick)
        small = bc.linear_stream(
            sizes.warmup + sizes.batch_small + sizes.online, *SMALL, seed=args.seed, noise=NOISE
        )
        large = bc.linear_stream(
            sizes.warmup + sizes.batch_large, *LARGE, seed=args.seed + 1, noise=NOISE
        )
        small_batch, models = batch_section(run, small, sizes.batch_small)
        large_batch, _ = batch_section(run, large, sizes.batch_large)
        results["batch"] = [small_batch, large_batch]
        start = sizes.warmup + sizes.batch_small
        results["online"] = online_section(run, small.rows(start, start + sizes.online))
        results["latency"] = latency_section(run, small, models)
        results["compile"] = compile_section(run)
        progress.update(1)
    results["targets"] = targets(results)
    results["notes"] = [
        "throughputs are medians of repeats; the garbage collector is paused while timing",
        f"MABWiser online runs are capped at {results['online']['mabwiser_events']} events",
        "VW routes: pyvw = vowpalwabbit with text lines; next (TextFormatParser) = "
        "vowpal-wabbit-next parsing text; next (nbo VWPolicy) = examples built from arrays, reused",
        "first calls run in fresh interpreters (cold: empty NUMBA_CACHE_DIR)",
    ]
    results["table"] = render(results)
    path = bc.write_json(args.out, results)
    print(results["table"])
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The core benchmark's measurements: batch choose, online choose+update, latency, first calls.

Each section runs nbo and its peers on the same seeded stream and returns plain dicts that the
tables (:mod:`benchmarks.tables`) print and the JSON file keeps.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from benchmarks import common as bc
from benchmarks.peers import (
    SMALL,
    NumpyLinUCB,
    mabwiser_policy,
    nbo_policy,
    online_mabwiser,
    online_nbo,
    online_nbo_one,
    online_pyvw,
    online_vw_next_text,
    pyvw_workspace,
    vw_next_workspace,
)


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
        policy = nbo_policy(kind, k, stream.n_features, seed)
        policy.update(X, actions, rewards)
        policy.prepare()
        models[f"nbo {kind}"] = policy
    for kind in ("LinUCB", "LinTS"):
        mab = mabwiser_policy(kind, k, seed)
        mab.fit(actions.tolist(), rewards.tolist(), X)
        models[f"MABWiser {kind}"] = mab
    models["numpy LinUCB"] = NumpyLinUCB(X, actions, rewards, k)
    models["actions"] = actions
    models["rewards"] = rewards
    return models


def _without_setup(fn: Callable[[], Any], _setup: Any) -> Any:
    return fn()


def _on_row(choose: Callable[[np.ndarray], Any], rows_of: list[np.ndarray], i: int) -> Any:
    """``choose`` on the ``i``-th single-row batch, cycling through ``rows_of``."""
    return choose(rows_of[i % len(rows_of)])


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
        seconds, picks[name] = bc.time_repeats(partial(_without_setup, fn), sizes.repeats)
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
            policy = nbo_policy(kind, k, d, seed)
            policy.prepare()
            return policy

        return setup

    cases: list[tuple[str, bc.LinearStream, Callable[[Any], Any], Callable[[], Any] | None]] = [
        ("nbo LinUCB", stream, lambda p: online_nbo_one(p, stream), nbo_setup("LinUCB")),
        ("nbo LinearTS", stream, lambda p: online_nbo_one(p, stream), nbo_setup("LinearTS")),
        (
            "nbo EpsilonGreedy",
            stream,
            lambda p: online_nbo_one(p, stream),
            nbo_setup("EpsilonGreedy"),
        ),
        (
            "nbo LinUCB, choose/update on (1, d) arrays",
            stream,
            lambda p: online_nbo(p, stream),
            nbo_setup("LinUCB"),
        ),
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
        (
            "VW next (nbo VWPolicy)",
            stream,
            lambda p: online_nbo(p, stream),
            nbo_setup("VWPolicy"),
        ),
    ]
    for kind in ("LinUCB", "LinTS", "LinGreedy"):
        cases.append(
            (
                f"MABWiser {kind}",
                mab_stream,
                lambda m: online_mabwiser(m, mab_stream),
                partial(mabwiser_policy, kind, k, seed),
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
        "nbo LinUCB, choose/update on (1, d) arrays": "MABWiser LinUCB",
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


#: Offer attributes SharedLinear's latency row declares per offer (a realistic campaign's few).
SHARED_OFFER_ATTRIBUTES = 4


def landing_table(k: int) -> np.ndarray:
    """LandingLift's (offer, route, sends) of ``k`` actions: offers a // 2 through two routes."""
    a = np.arange(k)
    return np.column_stack([a // 2, a % 2, (a > 1).astype(np.int64)])


def other_contextual(
    k: int, d: int, seed: int, stream: bc.LinearStream, models: dict[str, Any]
) -> dict[str, Any]:
    """The contextual policies the other rows do not time, class defaults, fitted on the warm-up
    rounds: EpsilonGreedy, Softmax, SharedLinear (``SHARED_OFFER_ATTRIBUTES`` seeded attributes
    per offer), RandomFourierUCB and LandingLift (:func:`landing_table`; it learns without an
    engagement signal here, as an additive model, which costs it the same per decision)."""
    from engine.policies import make_policy

    attributes = np.random.default_rng(seed).normal(size=(k, SHARED_OFFER_ATTRIBUTES))
    policies = {
        "EpsilonGreedy": make_policy("egreedy", k, d, seed=seed),
        "Softmax": make_policy("softmax", k, d, seed=seed),
        "SharedLinear": make_policy("shared", k, d, seed=seed, offer_features=attributes),
        "RandomFourierUCB": make_policy("rff", k, d, seed=seed),
        # the k actions as offers a // 2 through routes a % 2, offer 0 sending nothing
        "LandingLift": make_policy("landing", k, d, seed=seed, offer_features=landing_table(k)),
    }
    warm = stream.contexts[: len(models["actions"])]
    for policy in policies.values():
        policy.update(warm, models["actions"], models["rewards"], np.full(len(warm), 1.0 / k))
    return policies


def latency_section(run: Run, stream: bc.LinearStream, models: dict[str, Any]) -> dict[str, Any]:
    sizes = run.sizes
    k, d = stream.n_actions, stream.n_features
    X = np.ascontiguousarray(stream.contexts[sizes.warmup :])
    n_rows = X.shape[0]
    vw_policy = nbo_policy("VWPolicy", k, d, run.seed)
    vw_policy.update(
        stream.contexts[: sizes.warmup],
        models["actions"],
        models["rewards"],
        np.full(sizes.warmup, 1.0 / k),
    )
    rows_of = [X[i : i + 1] for i in range(n_rows)]
    contexts_of = [X[i] for i in range(n_rows)]
    cases = {
        "nbo LinUCB": (models["nbo LinUCB"].choose, sizes.latency_calls),
        "nbo LinearTS": (models["nbo LinearTS"].choose, sizes.latency_calls),
        "nbo LinUCB choose_one": (models["nbo LinUCB"].choose_one, sizes.latency_calls),
        "nbo LinearTS choose_one": (models["nbo LinearTS"].choose_one, sizes.latency_calls),
    }
    for name, policy in other_contextual(k, d, run.seed, stream, models).items():
        cases[f"nbo {name} choose_one"] = (policy.choose_one, sizes.latency_calls)
    cases["nbo VWPolicy"] = (vw_policy.choose, sizes.peer_latency_calls)
    cases["MABWiser LinUCB"] = (models["MABWiser LinUCB"].predict, sizes.peer_latency_calls)
    rows: dict[str, Any] = {}
    for name, (choose, n_calls) in cases.items():
        run.step(f"latency {name}")
        inputs = contexts_of if name.endswith("choose_one") else rows_of
        for i in range(min(n_calls, 50)):  # warm-up calls
            choose(inputs[i % n_rows])
        samples = bc.latency_samples(partial(_on_row, choose, inputs), n_calls)
        rows[name] = bc.latency_stats(samples)
    for nbo in (name for name in rows if name.startswith("nbo ") and name != "nbo VWPolicy"):
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

"""Run the renewal simulation through the Engine API or end-to-end through the gRPC service.

Unlike the in-process path (:func:`simulators.runner.run_policy`, policies on encoded arrays), the
simulator here plays the backend: it sends raw customer attributes to ``Engine.decide_batch`` (or
``DecideBatch`` over gRPC), reports each renewal's value with ``reward_batch`` once its delay has
passed, and lets the Engine do the rest: encoding, eligibility rules, control group, budgets and
traffic caps, costs, the journal and the learner's publish cadence. Simulated time drives the
Engine's clock, so reward windows and cooldowns run on the simulated calendar.

The campaign's policy is replaced by the one under test. Both paths feed the learner raw net
rewards (exploration is scale-free), so they make the same decisions for the same model.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError, InvalidInputError
from simulators.renewal import RenewalEnvironment
from simulators.runner import DelayedFeedback, RunResult, RunTracker, parse_policy, streams

#: The campaign driven by default (relative to the repository root).
DEFAULT_CAMPAIGN = Path(__file__).resolve().parent.parent / "examples" / "renewal.toml"
#: Unix time of simulated day 0.
SIM_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class SimClock:
    """A clock the simulation moves forward: the Engine reads it as unix seconds."""

    def __init__(self) -> None:
        self.now = SIM_EPOCH

    def __call__(self) -> float:
        return self.now

    def set_day(self, day: float) -> None:
        self.now = max(self.now, SIM_EPOCH + day * 86_400.0)


def engine_policy_spec(
    env: Any, spec: dict[str, Any], seed: int, campaign_policy: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The policy spec for an Engine config: the control offer resolved and the campaign's
    exploration floor (``min_propensity``) kept where the policy takes one."""
    import inspect

    from engine.policies import POLICY_NAMES

    out = dict(spec)
    name = out["name"]
    floor = (campaign_policy or {}).get("min_propensity")
    accepts = inspect.signature(POLICY_NAMES[name].__init__).parameters
    if floor is not None and "min_propensity" in accepts and name != "fixed":
        out.setdefault("min_propensity", floor)
    if name == "fixed":
        out.setdefault("action", env.control_action)
    out["seed"] = seed
    return out


def run_engine(
    env: Any,
    policy: str,
    n_rounds: int,
    seed: int = 0,
    *,
    campaign: str | Path | None = None,
    via: str = "engine",
    batch_size: int = 100,
    data_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Stream ``n_rounds`` renewal customers through an Engine (``via="engine"``) or a gRPC
    server on a free local port (``via="grpc"``).

    Parameters
    ----------
    env : RenewalEnvironment
        Its offers must be the campaign's (build it with ``RenewalEnvironment.from_campaign``).
    policy : str
        Policy text as for :func:`simulators.runner.parse_policy`.
    campaign : path, optional
        Campaign file (default: examples/renewal.toml).
    data_dir : path, optional
        Keep the journal and snapshots there (``nbo export`` can read them); default: in memory
        for the Engine path, a temporary directory for gRPC.
    """
    from engine.campaign import load_campaign
    from engine.core import Engine

    if via not in ("engine", "grpc"):
        raise InvalidInputError("via", "'engine' or 'grpc'", via)
    if not isinstance(env, RenewalEnvironment):
        raise InvalidInputError(
            "env", "a RenewalEnvironment (the Engine path needs attributes)", type(env).__name__
        )
    campaign_path = Path(campaign) if campaign is not None else DEFAULT_CAMPAIGN
    config = load_campaign(campaign_path)
    if tuple(config.offer_ids) != tuple(env.action_ids):
        raise ConfigError(
            f"campaign {campaign_path}: expected the environment's offers "
            f"{list(env.action_ids)}, got {list(config.offer_ids)}"
        )
    label, spec = parse_policy(policy)
    config = dataclasses.replace(config, policy=engine_policy_spec(env, spec, seed, config.policy))
    clock = SimClock()
    with tempfile.TemporaryDirectory(prefix="nbo-sim-") as tmp:
        root = Path(data_dir) if data_dir is not None else (Path(tmp) if via == "grpc" else None)

        def open_engine(_path: Path, directory: Path | None) -> Engine:
            return Engine(config, directory, clock=clock, background=False)

        def drive(backend: _EngineBackend | _GrpcBackend) -> RunResult:
            return _drive(env, label, n_rounds, seed, batch_size, clock, progress, via, backend)

        if via == "engine":
            engine = open_engine(campaign_path, root)
            try:
                engine.prepare()
                return drive(_EngineBackend(engine))
            finally:
                engine.close()
        from engine.client import NboClient
        from engine.serving.config import ServeConfig
        from engine.serving.server import create_server

        assert root is not None
        serve = ServeConfig(
            campaigns=(campaign_path,),
            data_dir=root,
            host="127.0.0.1",
            port=0,
            max_concurrent_rpcs=0,
        )
        server, port = create_server(serve, open_engine=open_engine)
        server.start()
        try:
            with NboClient(f"127.0.0.1:{port}", campaign=config.name, timeout=60.0) as client:
                client.wait_until_serving()
                return drive(_GrpcBackend(client))
        finally:
            server.stop(grace=1.0)


class _EngineBackend:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def decide(self, ids: list[str], contexts: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        records = self.engine.decide_batch(ids, contexts)
        return [r.decision_id for r in records], [r.offer_id for r in records]

    def reward(self, decision_ids: list[str], values: list[float]) -> None:
        self.engine.reward_batch(decision_ids, values)


class _GrpcBackend:
    def __init__(self, client: Any) -> None:
        self.client = client

    def decide(self, ids: list[str], contexts: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        batch = self.client.decide_batch(ids, contexts)
        return list(batch.decision_ids), list(batch.offer_ids)

    def reward(self, decision_ids: list[str], values: list[float]) -> None:
        self.client.reward_batch(decision_ids, values)


def _drive(
    env: RenewalEnvironment,
    label: str,
    n_rounds: int,
    seed: int,
    batch_size: int,
    clock: SimClock,
    progress: Callable[[int], None] | None,
    path: str,
    backend: _EngineBackend | _GrpcBackend,
) -> RunResult:
    rng_contexts, rng_outcomes = streams(seed)
    tracker = RunTracker(env, 200, n_rounds)
    pending = DelayedFeedback()
    index = {offer: i for i, offer in enumerate(env.action_ids)}
    started = time.perf_counter()
    prefix = f"s{seed}-"
    for start in range(0, n_rounds, batch_size):
        rounds = env.sample_rounds(min(batch_size, n_rounds - start), rng_contexts, start)
        clock.set_day(float(rounds.timestamps[0]))
        released = pending.release(float(rounds.timestamps[0]))
        if released is not None:
            ids, values = released
            backend.reward(ids.tolist(), values.tolist())
        customers = [prefix + c for c in rounds.customer_ids]
        decision_ids, offers = backend.decide(customers, env.records(rounds.attributes))
        actions = np.array([index[o] for o in offers], dtype=np.int64)
        rows = np.arange(rounds.n_rounds)
        if not rounds.action_mask[rows, actions].all():
            bad = int(np.flatnonzero(~rounds.action_mask[rows, actions])[0])
            customer = env.records(rounds.slice(bad, bad + 1).attributes)[0]
            raise ConfigError(
                f"the engine offered {offers[bad]!r} to a customer the simulator deems "
                f"ineligible for it ({customer}): the campaign's rules and the simulator's disagree"
            )
        outcomes = env.draw_outcomes(rounds, actions, rng_outcomes)
        pending.add(
            rounds.timestamps + outcomes.delays,
            np.asarray(decision_ids, dtype=object),
            outcomes.values,
        )
        tracker.add(rounds, actions, outcomes.rewards)
        if progress is not None:
            progress(rounds.n_rounds)
    return tracker.result(label, seed, time.perf_counter() - started, path)

"""kill -9 of replicated serving under load: two decide servers and a leading plus a standby
learner on one PostgreSQL journal (tests/reliability/test_replicas.py; ``benchmarks.faults
--replicas`` runs the long version: 10 decide-server kills and 5 leader kills).

Each cycle runs mixed client load (:func:`testkit.harness.mixed_worker`, half the clients on
each decide server), SIGKILLs one decide server at a random moment (and, every other cycle, the
leading learner at the same moment), restarts what was killed and checks: every acknowledged
decision and applied reward is in the journal, an acknowledged reward sent again through the
*other* decide server is a DUPLICATE, an acknowledged unrewarded decision still takes its
reward, and the leading learner's model equals one rebuilt from the journal alone (every
reward applied once, in journal order, across every failover).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.campaign import load_campaign
from engine.journal.backends import open_journal
from engine.journal.base import JournalBackend
from engine.journal.snapshot import decode_snapshot
from engine.policies import Policy, make_policy
from engine.seat import led_at
from testkit.harness import (
    Acks,
    ServeProcess,
    check_rewards_after_restart,
    check_same_model,
    mixed_load,
)

__all__ = ["ReplicaCycle", "rebuilt_from_rewards", "rebuilt_from_url", "replica_kill_cycles"]


@dataclass
class ReplicaCycle:
    cycle: int
    load_seconds: float
    killed: list[str]
    decisions_acked: int
    rewards_acked: int
    failover_seconds: float | None  #: kill -9 of the leader -> the standby leads


def _serve(config: Path, data_dir: Path, url: str, role: str) -> ServeProcess:
    return ServeProcess(config, data_dir, "--journal", url, "--role", role, "--log-level", "info")


def _led_at(server: ServeProcess) -> float | None:
    return led_at(server.stderr_lines)


def rebuilt_from_rewards(
    journal: JournalBackend,
    policy_spec: dict[str, Any],
    offer_ids: Sequence[str],
    n_features: int,
) -> tuple[Policy, int]:
    """A fresh policy fed every reward of ``journal`` (with a net reward), in journal order: what
    the learner's model must equal; and how many rewards."""
    policy = make_policy(policy_spec, len(offer_ids), n_features)
    rows = [r for batch in journal.rewards_after(0) for r in batch if r.reward is not None]
    if rows:
        X = np.frombuffer(b"".join(r.context for r in rows)).reshape(len(rows), n_features)
        actions = np.array([list(offer_ids).index(r.action) for r in rows])
        rewards = np.array([r.reward for r in rows])
        policy.update(X, actions, rewards, np.array([r.propensity for r in rows]))
    return policy, len(rows)


def rebuilt_from_url(url: str, config: Path) -> tuple[Policy, int]:
    """:func:`rebuilt_from_rewards` of the campaign's journal at ``url``."""
    cfg = load_campaign(config)
    journal = open_journal(url, campaign=cfg.name, readonly=True)
    try:
        (n_features,) = {len(f) for _, _, f in journal.catalogs().values()}  # one schema here
        return rebuilt_from_rewards(journal, cfg.policy, cfg.offer_ids, n_features)
    finally:
        journal.close()


def check_replicas(
    url: str,
    config: Path,
    acks: Acks,
    leader: ServeProcess,
    deciders: list[ServeProcess],
    rng: random.Random,
) -> None:
    """The checks after a cycle (see the module docstring)."""
    campaign = load_campaign(config).name
    journal = open_journal(url, campaign=campaign, readonly=True)
    try:
        stored = journal.lookup(sorted(acks.decisions))
        missing = acks.decisions - set(stored)
        assert not missing, (
            f"{len(missing)} acknowledged decisions lost, e.g. {sorted(missing)[:3]}"
        )
        rewarded = journal.lookup(sorted(acks.rewards))
        lost = [d for d in acks.rewards if rewarded[d].reward_source != "reward"]
        assert not lost, f"{len(lost)} acknowledged rewards lost, e.g. {lost[:3]}"
        with leader.client() as admin:
            version = admin.snapshot()  # applies every journaled reward first
        data = journal.model_bytes(int(version.lstrip("v")))
    finally:
        journal.close()
    assert data is not None, f"{version}: the leader kept no bytes"
    header, model = decode_snapshot(data, version)
    rebuilt, n_rows = rebuilt_from_url(url, config)
    check_same_model(header, model, rebuilt, n_rows)
    first, second = deciders
    with first.client() as a, second.client() as b:
        check_rewards_after_restart(b, a, acks, rng)


def replica_kill_cycles(
    url: str,
    config: Path,
    root: Path,
    n_cycles: int,
    seed: int = 0,
    workers: int = 4,
    load_seconds: tuple[float, float] = (0.5, 1.5),
    progress: Any = None,
) -> tuple[Acks, list[ReplicaCycle]]:
    """Serve (2 learners, 2 decide servers), load, kill, restart and check, ``n_cycles``
    times: every cycle kills a decide server, every even cycle the leading learner too."""
    rng = random.Random(seed)
    acks = Acks()
    stats: list[ReplicaCycle] = []
    learners = [_serve(config, root / "learner-0", url, "learn")]
    learners.append(_serve(config, root / "learner-1", url, "learn"))
    deciders = [_serve(config, root / f"decide-{i}", url, "decide") for i in range(2)]
    leader = 0
    try:
        for cycle in range(n_cycles):
            for s in (*learners, *deciders):
                s.wait_serving()
            targets = [deciders[w % 2].target for w in range(workers)]
            with mixed_load(targets, acks, seed * 1000 + cycle * 10):
                seconds = rng.uniform(*load_seconds)
                time.sleep(seconds)
                victim = cycle % 2
                killed = [f"decide-{victim}"]
                deciders[victim].kill()  # mid-flight: its clients are inside calls right now
                failover = None
                if cycle % 2 == 0:
                    standby = learners[1 - leader]
                    learners[leader].kill()
                    killed_at = time.time()
                    killed.append(f"learner-{leader} (leader)")
                    deadline = time.monotonic() + 30
                    while _led_at(standby) is None and time.monotonic() < deadline:
                        time.sleep(0.05)
                    led = _led_at(standby)
                    assert led is not None, "the standby never took over"
                    failover = round(led - killed_at, 3)
                    learners[leader] = _serve(config, root / f"learner-{leader}", url, "learn")
                    leader = 1 - leader
                time.sleep(0.3)
            deciders[victim] = _serve(config, root / f"decide-{victim}", url, "decide")
            deciders[victim].wait_serving()
            check_replicas(url, config, acks, learners[leader], deciders, rng)
            stats.append(
                ReplicaCycle(
                    cycle,
                    round(seconds, 3),
                    killed,
                    len(acks.decisions),
                    len(acks.rewards),
                    failover,
                )
            )
            if progress is not None:
                progress(stats[-1])
    finally:
        for s in (*learners, *deciders):
            if s.proc.poll() is None:
                s.stop()
    return acks, stats

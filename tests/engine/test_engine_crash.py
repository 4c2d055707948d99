"""Crash safety: SIGKILL a child process mid-stream; everything it acknowledged must be there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.core import Engine
from tests.engine.journal_files import read_journal, rebuilt_from_journal

ROOT = Path(__file__).resolve().parents[2]
RENEWAL = ROOT / "examples" / "renewal.toml"

CHILD = r"""
import sys
import numpy as np
from engine.core import Engine

config, data_dir = sys.argv[1], sys.argv[2]
eng = Engine.from_config(config, data_dir=data_dir)   # real clock, background thread on
rng = np.random.default_rng(int(sys.argv[3]))
plans = ["basic", "standard", "premium"]

def context(i):
    return {"tenure_months": int(rng.integers(0, 90)), "monthly_price": float(rng.uniform(15, 120)),
            "usage_trend": float(rng.normal(0, 0.3)), "payment_failures": int(rng.poisson(0.3)),
            "plan": plans[i % 3], "contract_type": "annual", "region": f"r{i % 7}"}

out = sys.stdout
i = 0
while True:
    if i % 5 == 0:
        ids = [f"b{i}-{k}" for k in range(8)]
        decisions = eng.decide_batch(ids, [context(i + k) for k in range(8)])
    else:
        decisions = [eng.decide(f"c{i}", context(i))]
    for d in decisions:
        out.write(f"D {d.decision_id}\n")
    out.flush()
    for d in decisions[::2]:
        value = round(float(rng.uniform(0, 800)), 3)
        eng.reward(d.decision_id, value)
        out.write(f"R {d.decision_id} {value!r}\n")
    out.flush()
    i += 1
"""


def crash_config(tmp_path: Path) -> Path:
    text = RENEWAL.read_text()
    text = text.replace("publish_every_rewards = 100", "publish_every_rewards = 10")
    text = text.replace("checkpoint_every_rewards = 10000", "checkpoint_every_rewards = 60")
    path = tmp_path / "renewal.toml"
    path.write_text(text)
    return path


def run_and_kill(config: Path, data_dir: Path, seed: int, n_acks: int) -> list[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(config), str(data_dir), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    assert child.stdout is not None
    while sum(line.startswith("R ") for line in lines) < n_acks:
        line = child.stdout.readline()
        if not line:
            raise AssertionError("child died: " + (child.stderr.read() if child.stderr else ""))
        lines.append(line.strip())
        assert time.monotonic() < deadline, "child too slow"
    os.kill(child.pid, signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    lines += [line.strip() for line in rest.splitlines() if line.strip()]
    assert child.returncode == -signal.SIGKILL
    # A line cut by the kill is not an acknowledgement.
    return [line for line in lines if line.startswith(("D ", "R ")) and len(line.split()) >= 2]


@pytest.mark.slow
def test_sigkill_loses_nothing_acknowledged(tmp_path):
    config = crash_config(tmp_path)
    data = tmp_path / "data"
    acked: list[str] = []
    # Two crashes in a row: the second run starts from the first one's snapshot + journal.
    for seed, n_acks in ((1, 150), (2, 150)):
        acked += run_and_kill(config, data, seed, n_acks)
    decisions = [line.split()[1] for line in acked if line.startswith("D ")]
    rewards = {}
    for line in acked:
        if line.startswith("R "):
            parts = line.split()
            if len(parts) == 3:
                rewards[parts[1]] = float(parts[2])
    assert len(decisions) > 300 and len(rewards) >= 300
    snapshots = list((data / "snapshots" / "renewal").glob("v*.snap"))
    assert snapshots, "checkpoints were written during the run"

    eng = Engine.from_config(config, data_dir=data, clock=time.time, background=False)
    try:
        stored = eng.journal.lookup(decisions)
        missing = [d for d in decisions if d not in stored]
        assert not missing, f"{len(missing)} acknowledged decisions lost"
        for decision_id, value in rewards.items():
            row = read_journal(
                eng, "SELECT value, source FROM rewards WHERE decision_id = ?", (decision_id,)
            )
            assert row == [(value, "reward")], decision_id
        # The recovered model equals a model rebuilt from the whole journal.
        n_learnable = read_journal(eng, "SELECT COUNT(*) FROM rewards WHERE reward IS NOT NULL")
        assert eng._learner.n_applied == n_learnable[0][0]
        X = np.random.default_rng(0).normal(size=(32, eng.n_features))
        np.testing.assert_allclose(
            eng.policy.choose(X).scores, rebuilt_from_journal(eng).choose(X).scores, rtol=1e-6
        )
        # The engine goes on: a pending decision from before the crash can still be rewarded.
        pending = [d for d in decisions if d not in rewards and stored[d].reward_source is None]
        assert pending
        assert eng.reward(pending[0], 10.0).status == "applied"
    finally:
        eng.close()

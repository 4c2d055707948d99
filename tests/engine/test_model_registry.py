"""The model registry through the Engine: version numbers only grow (promotions, restarts,
feature changes, resets, crashes), no stored model or exported file is rewritten, a feature
change is refused at start with what changed, rollback and replay semantics, and the first
start on a migrated version-1 journal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main as nbo_main
from engine.core import Engine
from engine.errors import ConfigError
from engine.journal.snapshot import list_snapshots
from tests.engine.journal_files import rebuilt_from_journal
from tests.engine.small_campaigns import numeric_features, offer_tables
from tests.engine.test_journal_registry import _downgrade

T0 = 1_700_000_000.0


def config(tmp_path: Path, second: str = "y", **learning: float) -> Path:
    """Features x and ``second`` (fixed standardization: the width never changes), a LinUCB."""
    cadence = {"publish_every_rewards": 10, "checkpoint_every_rewards": 40, **learning}
    path = tmp_path / "mr.toml"
    path.write_text(
        f"""
[campaign]
name = "mr"
control_offer = "none"

[policy]
name = "linucb"
seed = 3
min_propensity = 0.05

[learning]
publish_every_rewards = {cadence["publish_every_rewards"]}
publish_every_ms = 1e9
checkpoint_every_rewards = {cadence["checkpoint_every_rewards"]}

[reward]
window_days = 30.0

{numeric_features("x", second)}

{offer_tables("none", "a", "b")}
"""
    )
    return path


def traffic(eng: Engine, n: int, start: int = 0, second: str = "y") -> list:
    rng = np.random.default_rng(start)
    contexts = [{"x": float(rng.normal()), second: float(rng.normal())} for _ in range(n)]
    ds = eng.decide_batch([f"c{start + i}" for i in range(n)], contexts)
    eng.reward_batch([d.decision_id for d in ds], [3.0 if d.offer_id == "a" else 0.0 for d in ds])
    return ds


def stored(eng_or_dir: Engine | Path) -> dict[str, str]:
    """SHA-256 of every kept model blob (by version) and every exported file (by name)."""
    out = {}
    if isinstance(eng_or_dir, Engine):
        for m in eng_or_dir.journal.models_with_bytes():
            out[f"v{m.version}"] = hashlib.sha256(
                eng_or_dir.journal.model_bytes(m.version)
            ).hexdigest()
        return out
    for path in list_snapshots(eng_or_dir):
        out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def same_or_gone(before: dict[str, str], after: dict[str, str]) -> None:
    """Nothing stored before was rewritten with other content (pruning may remove it)."""
    assert all(after[k] == v for k, v in before.items() if k in after)


def numbers(eng: Engine) -> list[int]:
    return [m.version for m in eng.journal.models()]


def test_versions_only_grow_and_nothing_is_rewritten(tmp_path):
    data = tmp_path / "d"
    snaps = data / "snapshots" / "mr"
    eng = Engine.from_config(config(tmp_path), data, clock=lambda: T0)
    traffic(eng, 60)
    eng.snapshot()
    seen_blobs, seen_files = stored(eng), stored(snaps)
    file = list_snapshots(snaps)[0]
    first = eng.load_snapshot(file)  # the live model's own file: no new version
    assert first == eng.model_version == file.stem
    traffic(eng, 30, start=100)
    promoted = eng.load_snapshot(file)
    assert promoted != first and eng.model(promoted).origin["repeats"] == first
    assert eng.load_snapshot(file) == promoted  # twice in a row: the same version
    seen = numbers(eng)
    same_or_gone(seen_blobs, stored(eng))
    same_or_gone(seen_files, stored(snaps))
    seen_blobs, seen_files = stored(eng), stored(snaps)
    eng.close()
    # Restart: numbering continues; nothing rewritten.
    eng = Engine.from_config(config(tmp_path), data, clock=lambda: T0)
    traffic(eng, 20, start=200)
    eng.snapshot()
    assert min(numbers(eng)[: len(numbers(eng)) - len(seen)]) > max(seen)
    same_or_gone(seen_blobs, stored(eng))
    same_or_gone(seen_files, stored(snaps))
    seen, seen_blobs, seen_files = numbers(eng), stored(eng), stored(snaps)
    eng.close()
    # A feature change: refused without --reset-model, a fresh model with it.
    with pytest.raises(ConfigError, match=r"renamed y -> z\), so it cannot decide"):
        Engine.from_config(config(tmp_path, second="z"), data, clock=lambda: T0)
    eng = Engine.from_config(config(tmp_path, second="z"), data, clock=lambda: T0, reset_model=True)
    live = eng.model(eng.model_version)
    assert live.kind == "initial" and live.origin["reset"]["changes"] == "renamed y -> z"
    assert live.number > max(seen) and live.parent == f"v{max(seen)}"
    traffic(eng, 20, start=300, second="z")
    eng.close()
    eng = Engine.from_config(config(tmp_path, second="z"), data, clock=lambda: T0)
    versions = numbers(eng)
    assert versions == sorted(set(versions), reverse=True)  # unique, newest first
    same_or_gone(seen_blobs, stored(eng))
    same_or_gone(seen_files, stored(snaps))
    # Bounded bytes: promoted versions, their parents and the newest checkpoints only.
    kept = {m.version: m.kind for m in eng.journal.models_with_bytes()}
    learned = [v for v, kind in kept.items() if kind in ("initial", "learned")]
    parents = {m.parent for m in eng.journal.models() if m.kind in ("promoted", "rollback")}
    assert len(set(learned) - parents) <= 5
    eng.close()


def test_replay_and_rewards_skip_decisions_made_over_other_features(tmp_path):
    data = tmp_path / "d"
    eng = Engine.from_config(config(tmp_path), data, clock=lambda: T0)
    traffic(eng, 50)
    pending = eng.decide("late", {"x": 1.0, "y": -1.0})  # decided over (x, y), rewarded later
    eng.close()
    renamed = config(tmp_path, second="z")
    eng = Engine.from_config(renamed, data, clock=lambda: T0, reset_model=True)
    # Same width, other names: none of the 50 journaled rewards is replayed into the new model.
    assert eng.model_info()["n_rewards_applied"] == 0
    eng.reward(pending.decision_id, 3.0)
    traffic(eng, 30, start=500, second="z")
    eng.snapshot()
    assert eng.model_info()["n_rewards_applied"] == 30  # the late reward was not learned
    eng.close()


def test_a_crash_after_metadata_only_publishes_resumes_from_the_kept_model(tmp_path):
    data = tmp_path / "d"
    path = config(tmp_path, checkpoint_every_rewards=1000)
    eng = Engine.from_config(path, data, clock=lambda: T0)
    traffic(eng, 95)  # 9 publishes (metadata rows), no checkpoint after the initial model
    assert eng.journal.models_with_bytes()[0].version == 1
    crashed_at = max(numbers(eng))
    eng.abandon()  # the process dies: no close(), no final checkpoint
    again = Engine.from_config(path, data, clock=lambda: T0)
    live = again.model(again.model_version)
    assert live.number > crashed_at and live.kind == "learned" and live.bytes_kept
    assert live.origin["restored"] == 1 and live.parent == f"v{crashed_at}"
    assert again.model_info()["n_rewards_applied"] == 95 == live.n_rewards
    X = np.random.default_rng(0).normal(size=(10, again.n_features))
    np.testing.assert_allclose(
        again.policy.choose(X).scores, rebuilt_from_journal(again).choose(X).scores, rtol=1e-9
    )
    again.close()


def test_rollback_learns_only_from_rewards_after_it(tmp_path):
    data = tmp_path / "d"
    path = config(tmp_path)
    eng = Engine.from_config(path, data, clock=lambda: T0)
    traffic(eng, 40)
    target = eng.snapshot()
    X = np.random.default_rng(1).normal(size=(8, eng.n_features))
    target_scores = eng.policy.choose(X).scores
    traffic(eng, 60, start=100)
    cursor = eng.journal.last_reward_seq()
    change = eng.rollback(target, who="test")
    live = change.version
    assert live.kind == "rollback" and live.origin == {"restored": int(target[1:]), "who": "test"}
    assert live.last_reward_seq == cursor and live.n_rewards == 40
    np.testing.assert_allclose(eng.policy.choose(X).scores, target_scores)
    eng.close()
    again = Engine.from_config(path, data, clock=lambda: T0)  # nothing to replay
    assert again.model_version == live.version
    np.testing.assert_allclose(again.policy.choose(X).scores, target_scores)
    assert again.rollback(live.version).unchanged
    again.close()


def test_the_first_start_on_a_migrated_journal_imports_the_newest_snapshot_file(tmp_path, capsys):
    data = tmp_path / "d"
    path = config(tmp_path)
    eng = Engine.from_config(path, data, clock=lambda: T0)
    traffic(eng, 50)
    eng.close()
    files = list_snapshots(data / "snapshots" / "mr")
    newest = files[0]
    _downgrade_file(data / "mr.journal.sqlite")
    with pytest.raises(ConfigError, match="migrate it first with `nbo journal migrate"):
        Engine.from_config(path, data, clock=lambda: T0)
    assert nbo_main(["journal", "migrate", "--data-dir", str(data), "--campaign", "mr"]) == 0
    assert "migrated schema version 1 -> 5" in capsys.readouterr().out
    again = Engine.from_config(path, data, clock=lambda: T0)
    (imported,) = again.models()
    assert imported.origin["imported"] == newest.name
    assert imported.number > int(newest.stem[1:]) and again.model_version == imported.version
    assert again.model_info()["n_rewards_applied"] == 50
    again.close()


def _downgrade_file(path: Path) -> None:
    from engine.journal.store import Journal

    journal = Journal(path)
    _downgrade(journal, "1")
    journal.close()


def test_model_info_and_versions_are_json_ready(tmp_path):
    eng = Engine.from_config(config(tmp_path), tmp_path / "d", clock=lambda: T0)
    traffic(eng, 10)
    info = eng.model_info()
    assert (info["kind"], info["parent"], info["origin"]["reward_seqs"]) == (
        "learned",
        "v1",
        [1, 10],
    )
    json.dumps([v.to_dict() for v in eng.models()])
    eng.close()

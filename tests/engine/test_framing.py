"""The one checksummed frame: models and snapshots written before it existed still load, and
today's bytes are the same as theirs."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from engine.errors import CorruptModelError
from engine.framing import Framing
from engine.journal.snapshot import decode_snapshot, encode_snapshot
from engine.policies import BetaTS, LinUCB, Policy

DATA = Path(__file__).parent / "data"


def _legacy_linucb() -> LinUCB:
    """The policy tests/engine/data/linucb-v3.snap was written from (by nbo before framing.py)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    policy = LinUCB(3, 2, alpha=0.5, min_propensity=0.05, seed=7)
    policy.update(X, rng.integers(0, 3, 20), rng.random(20))
    return policy


def test_snapshot_written_before_the_shared_frame_loads_and_keeps_its_decisions() -> None:
    data = (DATA / "linucb-v3.snap").read_bytes()
    assert hashlib.sha256(data).hexdigest() == (
        "a408293c42ce33b547bbd6d4ff242257948610d1322e91539ea1b9138edce625"
    )  # the file as the old nbo wrote it
    header, policy = decode_snapshot(data)
    assert header["version"] == "v3" and header["offer_ids"] == ["a", "b", "c"]
    assert isinstance(policy, LinUCB) and policy.alpha == 0.5 and policy.n_updates_ == 20
    # Saved before scale-free exploration: it keeps the absolute widths it was trained with.
    assert policy.noise == 1.0
    X = np.random.default_rng(0).normal(size=(20, 2))[:5]
    assert policy.choose(X).actions.tolist() == [2, 2, 0, 0, 1]
    legacy = _legacy_linucb()
    legacy.noise = 1.0
    for name in ("A_", "A_inv_", "b_", "theta_", "n_obs_"):
        np.testing.assert_array_equal(getattr(policy, name), getattr(legacy, name))
    # Written again by this nbo, it reads back the same.
    header = {"version": "v3", "offer_ids": ["a", "b", "c"], "n_rewards": 20}
    fresh = encode_snapshot(header, policy)
    assert fresh[:8] == data[:8]
    again_header, again = decode_snapshot(fresh)
    assert again_header["offer_ids"] == ["a", "b", "c"]
    assert again.get_params() == policy.get_params()
    assert again.choose(X).actions.tolist() == [2, 2, 0, 0, 1]


def test_policy_blob_written_before_the_shared_frame_loads_and_dumps_identically() -> None:
    blob = (DATA / "betats.policy").read_bytes()
    policy = Policy.from_bytes(blob)
    assert isinstance(policy, BetaTS) and policy.alpha_.tolist() == [4.0, 2.5]
    fresh = BetaTS(2, prior_alpha=2.0, seed=1)
    fresh.update([[]] * 4, [0, 1, 1, 0], [1.0, 0.0, 0.5, 1.0])
    assert fresh.to_bytes() == blob == policy.to_bytes()


FRAME = Framing(b"NBOTEST", "<HI", "an nbo test frame")


def test_frame_round_trip_and_fields() -> None:
    data = FRAME.encode({"n": np.int64(3), "x": np.float64(0.5), "b": np.bool_(True)}, b"xyz", 7)
    assert FRAME.decode(data, "t") == ((7,), {"n": 3, "x": 0.5, "b": True}, b"xyz")


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda d: d[:10], r"t: expected an nbo test frame \(magic b'NBOTEST'\), got other data"),
        (lambda d: b"X" + d[1:], "t: expected an nbo test frame"),
        (lambda d: d[:-1], r"t: checksum mismatch \(truncated or altered\)"),
        (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "t: checksum mismatch"),
    ],
)
def test_bad_frames_are_refused(mangle, message: str) -> None:
    with pytest.raises(CorruptModelError, match=message):
        FRAME.decode(mangle(FRAME.encode({"a": 1}, b"body", 1)), "t")


def test_header_must_be_a_json_object() -> None:
    body = b"NBOTEST" + struct.pack("<HI", 1, 2) + b"[]"
    with pytest.raises(CorruptModelError, match="t: header is not a JSON object"):
        FRAME.decode(body + hashlib.sha256(body).digest(), "t")
    body = b"NBOTEST" + struct.pack("<HI", 1, 2) + b"{x"
    with pytest.raises(CorruptModelError, match="t: header is not valid JSON"):
        FRAME.decode(body + hashlib.sha256(body).digest(), "t")

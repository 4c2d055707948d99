"""The core benchmark's peers and the online loops that drive every library one event at a time.

nbo's policies, MABWiser, Vowpal Wabbit (vowpalwabbit's pyvw and vowpal-wabbit-next) and a
plain-numpy LinUCB, all built with the same hyperparameters so each comparison is like for like.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import common as bc

# Hyperparameters shared by nbo and its peers (same values on both sides of every comparison).
# Hyperparameters shared by nbo and its peers (same values on both sides of every comparison).
ALPHA = 1.0  # LinUCB confidence width
TS_SCALE = 0.5  # LinearTS posterior scale = the environment's noise sd (MABWiser LinTS alpha)
EPSILON = 0.05  # epsilon-greedy (nbo EpsilonGreedy, MABWiser LinGreedy)
L2 = 1.0
VW_ARGS = "--cb_explore_adf --squarecb"
SMALL, LARGE = (10, 32), (100, 64)  # (n_actions, n_features)
NOISE = 0.5  # sd of the reward noise


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


def mabwiser_policy(kind: str, k: int, seed: int) -> Any:
    from mabwiser.mab import MAB, LearningPolicy

    policy = {
        "LinUCB": LearningPolicy.LinUCB(alpha=ALPHA, l2_lambda=L2),
        "LinTS": LearningPolicy.LinTS(alpha=TS_SCALE, l2_lambda=L2),
        "LinGreedy": LearningPolicy.LinGreedy(epsilon=EPSILON, l2_lambda=L2),
    }[kind]
    return MAB(list(range(k)), policy, seed=seed)


def nbo_policy(kind: str, k: int, d: int, seed: int) -> Any:
    from engine.policies import EpsilonGreedy, LinearTS, LinUCB, VWPolicy

    # noise=1.0: the peers' absolute widths (MABWiser and the numpy reference do not scale their
    # exploration by an estimate of the noise), so both sides of a comparison run one model.
    if kind == "LinUCB":
        return LinUCB(k, d, alpha=ALPHA, l2=L2, noise=1.0, seed=seed)
    if kind == "LinearTS":
        return LinearTS(k, d, scale=TS_SCALE, l2=L2, noise=1.0, seed=seed)
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


def online_nbo_one(policy: Any, stream: bc.LinearStream) -> np.ndarray:
    """One event at a time through the single-event API: choose_one on a (d,) row, then
    update_one with the revealed reward (what an online loop calls)."""
    X, R = stream.contexts, stream.rewards
    chosen = np.empty(X.shape[0], dtype=np.int64)
    for t in range(X.shape[0]):
        x = X[t]
        a, p = policy.choose_one(x)
        policy.update_one(x, a, R[t, a], p)
        chosen[t] = a
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
    uniforms = np.random.default_rng(seed).random((X.shape[0],)).tolist()
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
    uniforms = np.random.default_rng(seed).random((X.shape[0],)).tolist()
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

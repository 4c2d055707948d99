"""Offline training: learn a policy from logged decisions and write a snapshot the service loads.

Two kinds of targets:

* ``ips``: each logged row teaches its logged offer, weighted by 1 / propensity (policies with an
  ``importance_weighting`` switch get it turned on), which undoes the logging policy's preferences;
* ``dr``: every eligible offer of every row is taught its doubly robust pseudo-reward
  q(x, a) + 1[a = logged] (r - q(x, logged)) / propensity, with q a ridge reward model
  cross-fitted on the same logs (each row's q from the folds of customers it is not in, so the
  correction term keeps the row's own noise instead of having learnt it), so offers the logging
  policy rarely chose still get a sensible estimate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InvalidInputError
from engine.journal.snapshot import read_snapshot, write_snapshot
from engine.policies import Policy, engagement_columns, make_policy
from engine.replay.data import LoggedData, signal_rows
from engine.replay.rewardmodel import cross_fit, customer_folds, n_folds, predict_out_of_fold

TARGETS = ("ips", "dr")
_CHUNK = 4096


def train_policy(
    data: LoggedData,
    spec: str | dict[str, Any],
    target: str = "ips",
    seed: int | None = 0,
    folds: int | None = None,
) -> Policy:
    """Learn a policy from logs, rows taken in time order.

    Parameters
    ----------
    data : LoggedData
    spec : str or dict
        A :func:`engine.policies.make_policy` spec without grids.
    target : {"ips", "dr"}
    seed : int, optional
    folds : int, optional
        Folds of the ``dr`` target's cross-fitted reward model
        (:func:`engine.replay.rewardmodel.n_folds`: by default 5, 2 with few customers).

    Returns
    -------
    Policy
        With ``n_actions = data.n_actions`` in ``data.actions`` order.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 2)); a = rng.integers(0, 2, 2000)
    >>> r = np.where(a == 0, X[:, 0], X[:, 1]) + rng.normal(scale=0.1, size=2000)
    >>> data = LoggedData(context=X, action=a, propensity=np.full(2000, 0.5), reward=r,
    ...                   actions=("a", "b"))
    >>> policy = train_policy(data, "linucb", target="dr")
    >>> policy.choose(np.array([[1.0, -1.0], [-1.0, 1.0]])).actions.tolist()
    [0, 1]
    """
    if target not in TARGETS:
        raise InvalidInputError("target", f"one of {TARGETS}", target)
    if isinstance(spec, dict) and any(isinstance(v, list) for v in spec.values()):
        raise InvalidInputError("policy", "one policy (no grid) to train", spec)
    data = data.sorted_by_time()
    k, d = data.n_actions, data.n_features
    if target == "ips":
        policy = _with_importance_weighting(spec, k, d, seed)
        for start in range(0, data.n_rounds, _CHUNK):
            rows = slice(start, start + _CHUNK)
            policy.update(
                data.context[rows],
                data.action[rows],
                data.reward[rows],
                data.propensity[rows],
                signals=engagement_columns(policy, signal_rows(data.signals, rows)),
            )
        return policy
    policy = make_policy(spec, k, d, seed=seed)
    units = data.n_rounds if data.customer is None else int(np.unique(data.customer).shape[0])
    n = n_folds(units, folds)
    fold = customer_folds(data.customer, data.n_rounds, n, seed or 0)
    coef = cross_fit(data.context, data.action, data.reward, k, fold, n)
    mask = data.action_mask()
    for start in range(0, data.n_rounds, _CHUNK):
        rows = slice(start, start + _CHUNK)
        X = data.context[rows]
        logged = data.action[rows]
        n = X.shape[0]
        pseudo = predict_out_of_fold(coef, X, fold[rows])
        index = np.arange(n)
        correction = (data.reward[rows] - pseudo[index, logged]) / data.propensity[rows]
        pseudo[index, logged] += correction
        row_of, action_of = np.nonzero(mask[rows])
        # a component was observed for the logged action only: NaN on the other pseudo-rows
        signals = engagement_columns(policy, signal_rows(data.signals, rows))
        if signals is not None:
            observed = action_of == logged[row_of]
            signals = {k: np.where(observed, v[row_of], np.nan) for k, v in signals.items()}
        policy.update(X[row_of], action_of, pseudo[row_of, action_of], signals=signals)
    return policy


def _with_importance_weighting(
    spec: str | dict[str, Any], k: int, d: int, seed: int | None
) -> Policy:
    full = {"name": spec} if isinstance(spec, str) else dict(spec)
    if "importance_weighting" not in full:
        try:
            return make_policy({**full, "importance_weighting": True}, k, d, seed=seed)
        except InvalidInputError:
            pass  # this policy has no such switch: it receives the propensities as they are
    return make_policy(full, k, d, seed=seed)


def write_trained_snapshot(
    path: str | Path,
    policy: Policy,
    data: LoggedData,
    *,
    target: str,
    campaign: str = "",
    version: str | None = None,
    encoder: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``policy`` as an nbo snapshot (see :mod:`engine.journal.snapshot`) and read it back.

    ``encoder`` (an :meth:`engine.features.Encoder.state`) goes into the header when known, so
    a server loading the snapshot encodes with the statistics the model was trained under.

    Returns the snapshot header.
    """
    created = time.time()
    header: dict[str, Any] = {
        "campaign": campaign,
        "version": version or f"offline-{int(created)}",
        "created": created,
        "offer_ids": list(data.actions),
        "feature_names": list(data.feature_names),
        "n_rewards": data.n_rounds,
        "last_reward_seq": 0,
        "trained_offline": {"source": data.source, "target": target, "rows": data.n_rounds},
    }
    if encoder is not None:
        header["encoder"] = encoder
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_snapshot(path, header, policy)
    stored, _ = read_snapshot(path)  # a snapshot we cannot read back must not be reported
    return stored

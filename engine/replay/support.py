"""Where the logs say nothing: offers a candidate picks that the logs never showed in a context.

With an ``eligible`` column the evaluation knows which offers each row could get, and the
estimators only ever ask about those. Without one, a candidate may favour an offer that was not
eligible for a row (a premium-only gift for a basic customer): the logs never show it there,
IPS gives it no credit, and the reward model extrapolates freely, which is how a log can say
"GO" without its eligible column and "NO-GO" with it.

The rule, stated once: rows are grouped into strata by their values of every 0/1 context column
(one-hot categories and flags, which is what eligibility rules read); an offer is *unseen* for a
row when no row of its stratum logged it, in strata of at least ``min_rows`` rows; in smaller
strata, when the offer was never logged at all.
"""

from __future__ import annotations

import numpy as np

from engine.replay.data import LoggedData
from engine.types import BoolArray, FloatArray, IntArray

MIN_STRATUM_ROWS = 30


def strata(context: FloatArray) -> IntArray:
    """Stratum code of each row: its pattern over the context's 0/1 columns.

    Examples
    --------
    >>> import numpy as np
    >>> strata(np.array([[1.0, 0.3], [0.0, -1.2], [1.0, 2.0]])).tolist()
    [1, 0, 1]
    """
    if context.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    binary = np.all((context == 0.0) | (context == 1.0), axis=0)
    if not binary.any():
        return np.zeros(context.shape[0], dtype=np.int64)
    _, codes = np.unique(context[:, binary], axis=0, return_inverse=True)
    return codes.reshape(-1).astype(np.int64)


def unseen_offers(data: LoggedData, min_rows: int = MIN_STRATUM_ROWS) -> BoolArray | None:
    """True where an offer was never logged in the row's stratum, array of shape (n_rounds,
    n_actions); None when the logs have an ``eligible`` column (eligibility is known).

    Examples
    --------
    >>> import numpy as np
    >>> data = LoggedData(context=np.repeat([[0.0], [1.0]], 40, axis=0),
    ...     action=np.r_[np.zeros(40, int), np.arange(40) % 2], propensity=np.full(80, 0.5),
    ...     reward=np.zeros(80), actions=("basic", "gift"))
    >>> unseen = unseen_offers(data)
    >>> unseen[0].tolist(), unseen[-1].tolist()
    ([False, True], [False, False])
    """
    if data.eligible is not None:
        return None
    codes = strata(data.context)
    n_strata = int(codes.max()) + 1 if codes.size else 0
    counts = np.zeros((n_strata, data.n_actions), dtype=np.int64)
    np.add.at(counts, (codes, data.action), 1)
    large = counts.sum(axis=1) >= min_rows
    never = counts.sum(axis=0) == 0
    unseen_in_stratum = np.where(large[:, None], counts == 0, never[None, :])
    return unseen_in_stratum[codes]

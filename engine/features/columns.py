"""Columns of a batch of contexts: each named attribute's values, gathered once per batch.

The encoder and the eligibility rules read the same attributes of the same contexts; gathering
them once, in one pass over the contexts, saves a dict lookup per attribute per reader.

Examples
--------
>>> cols = gather([{"plan": "basic", "tenure_months": 3}, {"plan": "premium"}],
...               ["plan", "tenure_months"])
>>> cols["plan"], cols["tenure_months"]
(('basic', 'premium'), (3, None))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

Columns = Mapping[str, Sequence[Any]]


def gather(
    contexts: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> dict[str, tuple[Any, ...]]:
    """Values of ``names`` in each context (None where absent), as one tuple per name.

    Parameters
    ----------
    contexts : sequence of mappings, length n_rounds
    names : sequence of str
        Distinct attribute names.

    Returns
    -------
    dict of name to tuple of length n_rounds
        ``ctx.get(name)`` for each context, in order.
    """
    if not names or not contexts:
        return {name: (None,) * len(contexts) for name in names}
    rows: list[Any] | None = None
    if all(type(ctx) is dict for ctx in contexts):
        # Plain dicts (no __missing__): one C-level lookup of every name per context. A
        # missing name raises KeyError, and then each context is read with .get.
        getter = itemgetter(*names)
        try:
            rows = list(map(getter, contexts))
        except KeyError:
            rows = None
        if rows is not None and len(names) == 1:
            rows = [(value,) for value in rows]
    if rows is None:
        rows = [tuple([ctx.get(name) for name in names]) for ctx in contexts]
    return dict(zip(names, zip(*rows, strict=True), strict=True))

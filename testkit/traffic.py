"""Seeded renewal-like customer traffic for tests and benchmarks.

The same attributes as examples/renewal.toml's schema, drawn from one seeded generator, as raw
arrays, as Decide requests and as one dense-form DecideBatch.
"""

from __future__ import annotations

import numpy as np

from engine.serving.pb import offers_pb2 as pb

NUMERIC = (
    "tenure_months",
    "monthly_price",
    "usage_trend",
    "support_tickets",
    "payment_failures",
    "days_to_renewal",
    "num_products",
    "autopay",
)
CATEGORICAL = ("plan", "contract_type", "channel", "region")


def renewal_contexts(n_rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded renewal-like attributes: (numeric (n_rows, 8), categorical (n_rows, 4) of str).

    Examples
    --------
    >>> numeric, categorical = renewal_contexts(3, seed=1)
    >>> numeric.shape, categorical.shape
    ((3, 8), (3, 4))
    """
    rng = np.random.default_rng(seed)
    numeric = np.column_stack(
        [
            rng.integers(1, 96, n_rows),
            rng.uniform(15, 90, n_rows).round(2),
            rng.normal(0, 0.3, n_rows),
            rng.poisson(1.0, n_rows),
            rng.poisson(0.3, n_rows),
            rng.integers(1, 60, n_rows),
            rng.integers(1, 4, n_rows),
            rng.integers(0, 2, n_rows),
        ]
    ).astype(np.float64)
    categorical = np.column_stack(
        [
            rng.choice(["basic", "standard", "premium"], n_rows),
            rng.choice(["monthly", "annual", "two_year"], n_rows),
            rng.choice(["email", "web", "call_center", "app"], n_rows),
            rng.choice(["north", "south", "east", "west", "capital"], n_rows),
        ]
    )
    return numeric, categorical


def decide_requests(n: int, seed: int = 0) -> list[pb.DecideRequest]:
    """``n`` Decide requests for distinct customers with renewal attributes."""
    numeric, categorical = renewal_contexts(n, seed)
    return [
        pb.DecideRequest(
            customer_id=f"load-{seed}-{i}",
            context=pb.Context(
                numeric=dict(zip(NUMERIC, numeric[i].tolist(), strict=True)),
                categorical=dict(zip(CATEGORICAL, categorical[i].tolist(), strict=True)),
            ),
        )
        for i in range(n)
    ]


def dense_contexts(
    customer_ids: list[str], numeric: np.ndarray, categorical: np.ndarray
) -> pb.DenseContexts:
    """The dense form of renewal contexts (as :func:`renewal_contexts` returns them), one row per
    customer id."""
    return pb.DenseContexts(
        customer_ids=customer_ids,
        numeric_names=NUMERIC,
        numeric_values=numeric.ravel(),
        categorical_names=CATEGORICAL,
        categorical_values=categorical.ravel().tolist(),
    )


def dense_request(n_rows: int, seed: int) -> pb.DecideBatchRequest:
    """A dense-form DecideBatch of ``n_rows`` renewal customers."""
    numeric, categorical = renewal_contexts(n_rows, seed)
    ids = [f"batch-{seed}-{i}" for i in range(n_rows)]
    return pb.DecideBatchRequest(dense=dense_contexts(ids, numeric, categorical))

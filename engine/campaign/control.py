"""Control-group assignment: sticky per customer, by a hash of the campaign salt and customer id.

The assignment depends on nothing but (salt, customer_id), so it is the same across requests,
processes and restarts, and changing the salt reshuffles the groups.

Examples
--------
>>> in_control_group("renewal-2026", "c1", 0.10) == in_control_group("renewal-2026", "c1", 0.10)
True
>>> sum(in_control_group("s", f"c{i}", 0.25) for i in range(10_000)) / 10_000  # doctest: +NUMBER
0.25
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def control_bucket(salt: str, customer_id: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, customer_id)."""
    digest = hashlib.blake2b(
        customer_id.encode("utf-8", "surrogatepass"), digest_size=8, key=salt.encode()[:64]
    ).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def in_control_group(salt: str, customer_id: str, share: float) -> bool:
    """True when the customer belongs to the control group of a campaign with this salt."""
    if share <= 0.0:
        return False
    return control_bucket(salt, customer_id) < share


def control_flags(salt: str, customer_ids: Sequence[str], share: float) -> list[bool]:
    """:func:`in_control_group` for many customers (the keyed hash is set up once).

    Examples
    --------
    >>> ids = [f"c{i}" for i in range(100)]
    >>> control_flags("s", ids, 0.3) == [in_control_group("s", c, 0.3) for c in ids]
    True
    """
    if share <= 0.0:
        return [False] * len(customer_ids)
    keyed = hashlib.blake2b(digest_size=8, key=salt.encode()[:64])
    flags = []
    for customer_id in customer_ids:
        h = keyed.copy()  # cheaper than keying a new hash per customer; same digest
        h.update(customer_id.encode("utf-8", "surrogatepass"))
        flags.append(int.from_bytes(h.digest(), "big") / 2.0**64 < share)
    return flags

"""TOML pieces of the engine tests' small campaign files."""

from __future__ import annotations


def numeric_features(*names: str) -> str:
    """A ``[features]`` table of numeric features with fixed scaling (mean 0, std 1), so the
    encoded values and the model's width never depend on the traffic."""
    tables = (f'[[features.numeric]]\nname = "{name}"\nmean = 0.0\nstd = 1.0' for name in names)
    return "\n".join(("[features]", *tables))


def offer_tables(*offer_ids: str) -> str:
    """One ``[[offers]]`` table per id, with nothing but the id (free, always eligible)."""
    return "\n".join(f'[[offers]]\nid = "{offer_id}"' for offer_id in offer_ids)

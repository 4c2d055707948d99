"""Feature encoding: raw customer attributes -> float64 vectors.

See :mod:`engine.features.schema` for the ``[features]`` config table and
:class:`engine.features.encoder.Encoder` for the encoding rules.
"""

from __future__ import annotations

from engine.features.encoder import Encoder
from engine.features.schema import (
    CategoricalFeature,
    FeatureSchema,
    NumericFeature,
    parse_schema,
)

__all__ = ["CategoricalFeature", "Encoder", "FeatureSchema", "NumericFeature", "parse_schema"]

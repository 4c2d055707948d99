"""Feature schema: which raw customer attributes become which float64 columns.

A schema is parsed from the ``[features]`` table of a campaign config::

    [features]
    bias = true
    [[features.numeric]]
    name = "tenure_months"
    mean = 30.0            # with std: configured standardization; omit both for running
    std = 22.0
    missing = "mean"       # "mean" | "zero" | "error" | a number to fill in
    [[features.categorical]]
    name = "plan"
    values = ["basic", "standard", "premium"]
    encoding = "onehot"    # or "hash" with buckets = 8 (open-ended value sets)
    unknown = "ignore"     # onehot only: "ignore" (all zeros) | "error" | "other" (one more column)
    missing = "ignore"     # "ignore" (all zeros) | "error"

Two more keys of ``[features]`` say which attributes a context may carry besides the features:

- ``rule_attributes = ["segment", "vip"]``: attributes that eligibility rules read but the
  model does not (a rule may only name a feature or one of these: a misspelled rule field fails
  at load instead of silently making its offer ineligible);
- ``strict = true``: a request carrying any other attribute is rejected (``InvalidInputError``
  naming it); by default it is ignored, counted and logged once per name
  (:meth:`engine.features.encoder.Encoder.undeclared_attributes`).

A rule on a missing attribute reads what the model reads (:meth:`NumericFeature.missing_value`).

Examples
--------
>>> schema = parse_schema({"numeric": [{"name": "age", "mean": 40.0, "std": 10.0}],
...                        "categorical": [{"name": "plan", "values": ["a", "b"]}]})
>>> schema.feature_names
('bias', 'age', 'plan=a', 'plan=b')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError
from engine.features.configcheck import (
    fail,
    get_bool,
    get_float,
    get_int,
    get_list,
    get_str,
    reject_unknown,
)

STANDARDIZE = ("config", "running", "none")
MISSING_NUMERIC = ("mean", "zero", "error")
MISSING_CATEGORICAL = ("ignore", "error")
UNKNOWN_CATEGORICAL = ("ignore", "error", "other")


@dataclass(frozen=True)
class NumericFeature:
    """One numeric attribute, standardized as ``(value - mean) / std``.

    ``standardize`` is "config" (the given mean/std), "running" (mean/std estimated from the
    first ``freeze_after`` contexts seen, then frozen so the model's inputs stop moving) or "none".
    ``missing`` is "mean" (the feature reads 0 after standardization), "zero" (raw value 0),
    "error", or ``fill`` holds the raw value used instead.
    """

    name: str
    mean: float = 0.0
    std: float = 1.0
    standardize: str = "config"
    freeze_after: int = 1000
    missing: str = "mean"
    fill: float = 0.0

    def missing_value(self) -> float | None:
        """The raw value a missing attribute stands for, as eligibility rules read it.

        ``"zero"``: 0; a number: that number; ``"mean"``: the configured mean (the encoder reads
        exactly 0 after standardization, the value of the mean), or 0 with ``standardize =
        "none"``. None where no fixed value exists: ``"error"`` (the request is refused) and
        ``"mean"`` with running statistics (the mean moves while it is learned).

        Examples
        --------
        >>> NumericFeature("age", 40.0, 10.0, missing="mean").missing_value()
        40.0
        >>> NumericFeature("age", standardize="running", missing="mean").missing_value() is None
        True
        """
        if self.missing == "zero":
            return 0.0
        if self.missing == "fill":
            return self.fill
        if self.missing == "mean" and self.standardize != "running":
            return self.mean if self.standardize == "config" else 0.0
        return None


@dataclass(frozen=True)
class CategoricalFeature:
    """One categorical attribute: one-hot over ``values`` or hashed into ``buckets`` columns."""

    name: str
    values: tuple[str, ...] = ()
    encoding: str = "onehot"
    buckets: int = 0
    unknown: str = "ignore"
    missing: str = "ignore"

    @property
    def width(self) -> int:
        if self.encoding == "hash":
            return self.buckets
        return len(self.values) + (1 if self.unknown == "other" else 0)

    def column_names(self) -> list[str]:
        if self.encoding == "hash":
            return [f"{self.name}#{b}" for b in range(self.buckets)]
        names = [f"{self.name}={v}" for v in self.values]
        if self.unknown == "other":
            names.append(f"{self.name}=__other__")
        return names


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered feature columns: bias, then numeric, then categorical blocks."""

    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]
    bias: bool = True
    # Not part of describe(): they change which requests are accepted, not how one is encoded.
    rule_attributes: tuple[str, ...] = ()
    strict: bool = False

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """Every attribute a context may carry: the features', then the rule attributes."""
        return (
            tuple(f.name for f in self.numeric)
            + tuple(c.name for c in self.categorical)
            + self.rule_attributes
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        names = ["bias"] if self.bias else []
        names += [f.name for f in self.numeric]
        for c in self.categorical:
            names += c.column_names()
        return tuple(names)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description; two schemas are the same exactly when these are equal."""
        return {
            "bias": self.bias,
            "numeric": [vars(f) | {} for f in self.numeric],
            "categorical": [vars(c) | {"values": list(c.values)} for c in self.categorical],
        }


_NUMERIC_KEYS = ("name", "mean", "std", "standardize", "freeze_after", "missing")
_CATEGORICAL_KEYS = ("name", "values", "encoding", "buckets", "unknown", "missing")


def parse_schema(table: dict[str, Any], path: str = "features") -> FeatureSchema:
    """Parse and validate a ``[features]`` table; errors name the key path."""
    if not isinstance(table, dict):
        raise fail(path, "a table", table)
    reject_unknown(table, ("bias", "numeric", "categorical", "rule_attributes", "strict"), path)
    bias = get_bool(table, "bias", path, default=True)
    seen: set[str] = set()
    numeric = []
    for i, item in enumerate(get_list(table, "numeric", path, default=[])):
        numeric.append(_parse_numeric(item, f"{path}.numeric[{i}]", seen))
    categorical = []
    for i, item in enumerate(get_list(table, "categorical", path, default=[])):
        categorical.append(_parse_categorical(item, f"{path}.categorical[{i}]", seen))
    if not bias and not numeric and not categorical:
        raise fail(path, "at least one feature (bias, numeric or categorical)", "none")
    rule_attributes = []
    for i, name in enumerate(get_list(table, "rule_attributes", path, default=[])):
        where = f"{path}.rule_attributes[{i}]"
        if not isinstance(name, str) or not name:
            raise fail(where, "a non-empty string (an attribute eligibility rules read)", name)
        if name in seen:
            raise fail(where, "a name not used by a feature or an earlier rule attribute", name)
        seen.add(name)
        rule_attributes.append(name)
    return FeatureSchema(
        numeric=tuple(numeric),
        categorical=tuple(categorical),
        bias=bias,
        rule_attributes=tuple(rule_attributes),
        strict=get_bool(table, "strict", path, default=False),
    )


def _parse_name(item: Any, path: str, seen: set[str]) -> str:
    if not isinstance(item, dict):
        raise fail(path, "a table", item)
    name = get_str(item, "name", path)
    if name in seen:
        raise fail(f"{path}.name", "a name not used by another feature", name)
    seen.add(name)
    return name


def _parse_numeric(item: Any, path: str, seen: set[str]) -> NumericFeature:
    name = _parse_name(item, path, seen)
    reject_unknown(item, _NUMERIC_KEYS, path)
    has_stats = "mean" in item or "std" in item
    standardize = get_str(
        item, "standardize", path, default="config" if has_stats else "running", choices=STANDARDIZE
    )
    mean = get_float(item, "mean", path, default=0.0)
    std = get_float(item, "std", path, default=1.0, low=0.0, low_open=True)
    if standardize == "config" and not ("mean" in item and "std" in item):
        raise fail(f"{path}.std", 'both mean and std with standardize = "config"', "only one")
    freeze_after = get_int(item, "freeze_after", path, default=1000, low=1)
    raw_missing = item.get("missing", "mean")
    if isinstance(raw_missing, str):
        missing = get_str(item, "missing", path, default="mean", choices=MISSING_NUMERIC)
        fill = 0.0
    else:
        fill = get_float(item, "missing", path)
        missing = "fill"
    return NumericFeature(name, mean, std, standardize, freeze_after, missing, fill)


def _parse_categorical(item: Any, path: str, seen: set[str]) -> CategoricalFeature:
    name = _parse_name(item, path, seen)
    reject_unknown(item, _CATEGORICAL_KEYS, path)
    encoding = get_str(item, "encoding", path, default="onehot", choices=("onehot", "hash"))
    missing = get_str(item, "missing", path, default="ignore", choices=MISSING_CATEGORICAL)
    if encoding == "hash":
        buckets = get_int(item, "buckets", path, low=1)
        if "values" in item or "unknown" in item:
            key = "values" if "values" in item else "unknown"
            raise ConfigError(f"{path}.{key}: not used with encoding = 'hash'; remove it")
        return CategoricalFeature(name, (), "hash", buckets, "ignore", missing)
    raw = get_list(item, "values", path)
    if not raw or not all(isinstance(v, str) and v for v in raw):
        raise fail(f"{path}.values", "a non-empty list of non-empty strings", raw)
    if len(set(raw)) != len(raw):
        raise fail(f"{path}.values", "distinct values", raw)
    unknown = get_str(item, "unknown", path, default="ignore", choices=UNKNOWN_CATEGORICAL)
    if "buckets" in item:
        raise ConfigError(f"{path}.buckets: only used with encoding = 'hash'; remove it")
    return CategoricalFeature(name, tuple(raw), "onehot", 0, unknown, missing)

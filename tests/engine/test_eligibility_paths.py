"""The two paths of Eligibility agree: vectorized (large batches) and row by row (small ones).

``Eligibility.evaluate`` takes the row-by-row path below a batch-size threshold and the numpy path
above it. Random campaigns (rules on numeric, categorical and boolean attributes, fixed and share
costs) meet random batches (missing values, None, NaN, infinities, big ints, numpy scalars, strings
where numbers are expected, candidate masks, control rows); every row's mask, costs and reasons
must be identical on both paths, and the masks and costs must match the offers' own per-context
answers (:meth:`Offer.is_eligible`, :meth:`Offer.cost_for`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.campaign import eligibility
from engine.campaign.config import CampaignConfig, load_campaign
from engine.campaign.eligibility import Eligibility
from engine.campaign.offers import Offer, parse_offer
from engine.errors import InvalidInputError
from engine.features.columns import gather

_BASE = load_campaign("examples/renewal.toml")
_NUMERIC = ("tenure", "price")
_CATEGORICAL = ("plan",)
_FLAG = ("autopay",)
_PLANS = ("basic", "standard", "premium")

# Each batch draws a few numbers near one base, and its rules' literals and its contexts' values
# come from them, so rules often meet their boundary. Near 2**53 ints stop converting to float64
# exactly while Python compares them exactly: the vectorized path must not compare such values
# through numpy.
_BASES = (0, 12, 2**53, -(2**53), 2**60)


def _near(base: int) -> st.SearchStrategy[Any]:
    offset = st.integers(-2, 2).map(lambda k: base + k)
    return st.one_of(offset, offset.map(float), st.sampled_from([2.5, -0.0, 1e300]))


_literal_text = st.sampled_from((*_PLANS, "gold"))


def _quote(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


@st.composite
def _rules(draw: st.DrawFn, numbers: st.SearchStrategy[Any]) -> str:
    # Number orderings are the rules numpy evaluates on the vectorized path: the most weight.
    kind = draw(st.sampled_from(["ordering", "ordering", "numeric", "categorical", "flag", "list"]))
    if kind in ("ordering", "numeric"):
        field = draw(st.sampled_from(_NUMERIC + _CATEGORICAL))  # `plan < 3` is false, not an error
        ops = ["<", "<=", ">", ">="] if kind == "ordering" else ["==", "!="]
        op = draw(st.sampled_from(ops))
        return f"{field} {op} {draw(numbers)!r}"
    if kind == "categorical":
        field = draw(st.sampled_from(_CATEGORICAL + _NUMERIC))
        op = draw(st.sampled_from(["==", "!=", "<", ">="]))
        return f"{field} {op} '{draw(_literal_text)}'"
    if kind == "flag":
        op = draw(st.sampled_from(["==", "!="]))
        return f"{_FLAG[0]} {op} {draw(st.sampled_from(['true', 'false']))}"
    field = draw(st.sampled_from(_CATEGORICAL + _NUMERIC))
    op = draw(st.sampled_from(["in", "not in"]))
    items = draw(st.lists(st.one_of(_literal_text, st.integers(-3, 3)), min_size=0, max_size=3))
    return f"{field} {op} [{', '.join(_quote(v) for v in items)}]"


@st.composite
def _campaigns(draw: st.DrawFn, numbers: st.SearchStrategy[Any]) -> CampaignConfig:
    n_offers = draw(st.integers(1, 5))
    offers = []
    for i in range(n_offers):
        item: dict[str, Any] = {"id": f"offer_{i}"}
        cost = draw(st.sampled_from(["none", "fixed", "share"]))
        if cost == "fixed":
            item["cost"] = draw(st.floats(0.0, 100.0))
        elif cost == "share":
            item["cost"] = {
                "share": draw(st.sampled_from([0.0, 0.05, 0.1, 1.0])),
                "of": draw(st.sampled_from(_NUMERIC + _CATEGORICAL)),
                "months": draw(st.sampled_from([1.0, 3.0, 12.0])),
            }
        item["eligible"] = draw(st.lists(_rules(numbers), max_size=3))
        offers.append(parse_offer(item, f"offers[{i}]"))
    return dataclasses.replace(_BASE, offers=tuple(offers))


_MISSING = object()
_ODD = st.sampled_from(
    [
        None,
        _MISSING,
        math.nan,
        math.inf,
        -math.inf,
        True,
        False,
        "12",
        "basic",
        np.float64(3.5),
        np.int64(7),
        [1, 2],
    ]
)


@st.composite
def _contexts(
    draw: st.DrawFn, numbers: st.SearchStrategy[Any], messy: tuple[bool, ...]
) -> dict[str, Any]:
    context: dict[str, Any] = {}
    for field, odd in zip(_NUMERIC, messy, strict=True):
        value = draw(st.one_of(numbers, _ODD) if odd else numbers)
        if value is not _MISSING:
            context[field] = value
    for field, values in ((_CATEGORICAL[0], _PLANS), (_FLAG[0], (True, False))):
        value = draw(st.one_of(st.sampled_from(values), _ODD))
        if value is not _MISSING:
            context[field] = value
    return context


@st.composite
def _batches(draw: st.DrawFn) -> tuple[CampaignConfig, list[dict[str, Any]], Any, Any, bool]:
    base = draw(st.sampled_from(_BASES))
    numbers = st.sampled_from(draw(st.lists(_near(base), min_size=1, max_size=3)))
    config = draw(_campaigns(numbers))
    # Clean columns (every value an int or a float) take numpy's path; messy ones do not.
    messy = tuple(draw(st.booleans()) for _ in _NUMERIC)
    n = draw(st.integers(1, 8))  # the threshold is forced: small batches reach both paths
    contexts = draw(st.lists(_contexts(numbers, messy), min_size=n, max_size=n))
    masks = st.one_of(
        st.none(),
        st.lists(st.booleans(), min_size=config.n_actions, max_size=config.n_actions).map(
            lambda bits: np.array(bits, dtype=np.bool_)
        ),
    )
    candidates = draw(st.one_of(st.none(), st.lists(masks, min_size=n, max_size=n)))
    skip = draw(st.one_of(st.none(), st.lists(st.booleans(), min_size=n, max_size=n)))
    return config, contexts, candidates, skip, draw(st.booleans())


def _evaluate(eligible: Eligibility, threshold: int, *args: Any, **kwargs: Any) -> Any:
    with mock.patch.object(eligibility, "_ROW_BY_ROW", threshold):
        return eligible.evaluate(*args, **kwargs)


def _reference_cost(offer: Offer, context: dict[str, Any]) -> float:
    # Eligibility, like the rules, takes numpy scalars as numbers; Offer.cost_for takes only
    # Python's, so they are converted for it.
    plain = {k: v.item() if isinstance(v, np.generic) else v for k, v in context.items()}
    try:
        return offer.cost_for(plain)
    except InvalidInputError:
        return math.nan


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_batches())
def test_vectorized_and_row_by_row_paths_agree(batch: Any) -> None:
    config, contexts, candidates, skip, gathered = batch
    eligible = Eligibility(config)
    columns = gather(contexts, eligible.fields) if gathered else None

    vector = _evaluate(eligible, 0, contexts, candidates, skip, columns=columns)
    rows = _evaluate(eligible, len(contexts) + 1, contexts, candidates, skip, columns=columns)

    np.testing.assert_array_equal(vector[0], rows[0])
    np.testing.assert_array_equal(vector[1], rows[1])  # NaN where either path cannot cost
    assert vector[2] == rows[2]

    # Both agree with the offers' own answers, context by context.
    for i, context in enumerate(contexts):
        for a, offer in enumerate(config.offers):
            cost = _reference_cost(offer, context)
            assert vector[1][i, a] == cost or (math.isnan(cost) and math.isnan(vector[1][i, a]))
            expected = (
                not (skip is not None and skip[i])
                and (candidates is None or candidates[i] is None or bool(candidates[i][a]))
                and offer.is_eligible(context)
                and not math.isnan(cost)
            )
            assert bool(vector[0][i, a]) == expected, (i, offer.id, context)


def test_paths_agree_on_a_large_batch_of_the_example_campaign() -> None:
    """Above the threshold without patching: the example campaign's rules on 200 random rows."""
    rng = np.random.default_rng(0)
    plans = ["basic", "standard", "premium", None]
    contexts = [
        {
            "tenure_months": int(rng.integers(0, 40)),
            "monthly_price": float(rng.choice([20.0, 50.0, math.nan, -1.0])),
            "plan": plans[int(rng.integers(0, len(plans)))],
        }
        for _ in range(200)
    ]
    eligible = Eligibility(_BASE)
    masks, costs, reasons = eligible.evaluate(contexts)
    assert len(contexts) >= eligibility._ROW_BY_ROW
    for start in range(0, len(contexts), 20):  # 20-row slices take the row-by-row path
        part = contexts[start : start + 20]
        small_masks, small_costs, small_reasons = eligible.evaluate(part)
        np.testing.assert_array_equal(masks[start : start + 20], small_masks)
        np.testing.assert_array_equal(costs[start : start + 20], small_costs)
        assert reasons[start : start + 20] == small_reasons


def test_ints_just_past_2_53_are_compared_exactly_on_both_paths() -> None:
    """2**53 + 1 converts to the float 2**53: numpy must not decide ``tenure > 2**53`` for it.

    The vectorized path once took such a column through numpy (its exactness check ran on the
    converted values) and found the offer ineligible while the row-by-row path found it eligible.
    """
    rule = f"tenure > {2**53}"
    config = dataclasses.replace(
        _BASE, offers=(parse_offer({"id": "big", "eligible": [rule]}, "offers[0]"),)
    )
    contexts = [{"tenure": 2**53 + 1}, {"tenure": -(2**53) - 1}, {"tenure": 2**53}]
    eligible = Eligibility(config)
    for threshold in (0, len(contexts) + 1):
        masks, _, reasons = _evaluate(eligible, threshold, contexts)
        assert masks[:, 0].tolist() == [True, False, False], threshold
        assert reasons == [[], [f"rule:big:{rule}"], [f"rule:big:{rule}"]]

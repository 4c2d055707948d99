"""Environments by name, as ``nbo simulate --env`` knows them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import InvalidInputError
from simulators.base import Environment
from simulators.interactions import InteractionEnvironment
from simulators.linear import WIDTHS, LinearEnvironment
from simulators.renewal import RenewalEnvironment
from simulators.renewal_multi import RenewalMultiEnvironment
from simulators.supervised import DATASETS, SupervisedEnvironment

ENV_NAMES = (
    "renewal",
    "renewal-drift",
    "renewal-multi",
    "interactions",
    *DATASETS,
    *(f"linear-{d}" for d in WIDTHS),
)


def make_env(name: str, campaign: str | Path | None = None, **knobs: Any) -> Environment:
    """Build an environment by name.

    Parameters
    ----------
    name : str
        ``renewal`` (the benchmark), ``renewal-drift`` (price sensitivity rising by 1.5 log-odds
        a year), ``renewal-multi`` (the renewal population deciding offer x channel x send
        window, 84 combinations), ``interactions`` (offers that work through products,
        thresholds and an XOR of attributes), a scikit-learn data set: ``digits``, ``wine``,
        ``iris``, ``breast_cancer``, or a synthetic linear stream of width 8, 32 or 128:
        ``linear-8``, ``linear-32``, ``linear-128``.
    campaign : path, optional
        Renewal only: take offers, costs and eligibility from this campaign file.
    **knobs
        Renewal: any :class:`~simulators.renewal.RenewalConfig` field; renewal-multi: those and
        any :class:`~simulators.renewal_multi.MultiConfig` field (``rule="preferred"``);
        interactions: ``effect``;
        data sets: ``label_noise``; linear: ``noise``, ``scale``. None values are ignored.

    Examples
    --------
    >>> make_env("renewal", seasonality=0.0).config.seasonality
    0.0
    >>> len(make_env("renewal-multi", rule="preferred").action_ids)
    84
    >>> make_env("iris").action_ids
    ('setosa', 'versicolor', 'virginica')
    >>> make_env("interactions", effect=0.5).effect
    0.5
    """
    knobs = {k: v for k, v in knobs.items() if v is not None}
    if name in ("renewal", "renewal-drift"):
        if name == "renewal-drift":
            knobs.setdefault("drift", 1.5)
        if campaign is not None:
            return RenewalEnvironment.from_campaign(campaign, **knobs)
        return RenewalEnvironment(**knobs)
    if name == "renewal-multi":
        if campaign is None:
            return RenewalMultiEnvironment(**knobs)
        return RenewalMultiEnvironment(renewal=RenewalEnvironment.from_campaign(campaign), **knobs)
    if name == "interactions":
        if campaign is not None:
            raise InvalidInputError(
                "campaign", "no campaign file for the 'interactions' environment", campaign
            )
        unknown = sorted(set(knobs) - {"effect"})
        if unknown:
            raise InvalidInputError(
                "knobs", "only 'effect' for the 'interactions' environment", unknown
            )
        return InteractionEnvironment(**knobs)
    if name in {f"linear-{d}" for d in WIDTHS}:
        if campaign is not None:
            raise InvalidInputError(
                "campaign", f"no campaign file for the {name!r} stream", campaign
            )
        unknown = sorted(set(knobs) - {"noise", "scale"})
        if unknown:
            raise InvalidInputError("knobs", f"only 'noise' and 'scale' for {name!r}", unknown)
        return LinearEnvironment(d=int(name.split("-")[1]), **knobs)
    if name in DATASETS:
        if campaign is not None:
            raise InvalidInputError(
                "campaign", f"no campaign file for the {name!r} data set", campaign
            )
        return SupervisedEnvironment(name, **knobs)
    raise InvalidInputError("env", f"one of {ENV_NAMES}", name)

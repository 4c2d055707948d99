"""Campaign configuration: one TOML file per campaign, validated on load.

Sections (see ``examples/renewal.toml`` for a complete, commented file):

``[campaign]`` name, description, salt, control_offer, control_share, fallback_offer ·
``[policy]`` name and hyperparameters for :func:`engine.policies.make_policy` (min_propensity is
the exploration floor, seed the policy's seed) · ``[learning]`` publish_every_rewards,
publish_every_ms, checkpoint_every_rewards · ``[reward]`` window_days, default_value (omit: expire
without a reward), charge_cost ("always" | "on_success" | "never") · ``[guardrails]``
max_offers_per_customer, frequency_window_days, cooldown_days, traffic_window · ``[journal]``
synchronous ("normal" | "full"), cache_mib (the SQLite journal's page cache in MiB, default 64),
url (a path, ``sqlite:///path`` or
``postgresql://user@host:port/db``; default ``<data-dir>/<campaign>.journal.sqlite``),
request_window_hours (how long a Decide request id is remembered: a retry within it gets the
original decisions; default 24), retention_days (closed decisions older than this move to a
Parquet archive, see :mod:`engine.journal.compact`; at least :meth:`CampaignConfig.retention_floor`,
the longest window the engine reads; default none: the journal keeps everything) ·
``[features]`` (see :mod:`engine.features.schema`; ``rule_attributes`` names attributes only
rules read, ``strict`` refuses requests carrying undeclared ones) · ``[[offers]]`` (see
:mod:`engine.campaign.offers`; rules may only name declared attributes, and read a missing one
as the feature's declared missing value, see :mod:`engine.campaign.rules`).

Every error is a :class:`ConfigError` whose message starts with the key path, for example
``offers[2].cost: expected a number >= 0 or a table {share, of, months}, got -1``.

Examples
--------
>>> cfg = load_campaign("examples/renewal.toml")
>>> cfg.name, cfg.offer_ids[:3], cfg.control_offer
('renewal', ('none', 'discount_5', 'discount_10'), 'none')
>>> cfg.net_reward(cfg.offer_index("discount_10"), cost=60.0, value=600.0)
540.0
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.campaign.dimensions import (
    OFFER_DIMENSION,
    Dimension,
    expand,
    parse_dimensions,
    parse_exclusions,
)
from engine.campaign.limits import Limits
from engine.campaign.offers import Offer, parse_offer
from engine.campaign.rules import Rule
from engine.errors import (
    ConfigError,
    InvalidInputError,
    NotFoundError,
    did_you_mean,
    unreadable_file,
)
from engine.features.combinations import (
    SEPARATOR,
    combination_features,
    split_combination,
    treatment_table,
)
from engine.features.configcheck import (
    fail,
    get_bool,
    get_float,
    get_int,
    get_str,
    get_table,
    reject_unknown,
)
from engine.features.schema import FeatureSchema, parse_schema
from engine.types import FloatArray, IntArray

DEFAULT_CACHE_MIB = 64  # [journal] cache_mib: the SQLite journal's page cache, MiB
MAX_CACHE_MIB = 65536  # 64 GiB: SQLite takes the size as a 32-bit count of KiB


@dataclass(frozen=True)
class ActionGroup:
    """Actions a rule, a cost or a guardrail of one offer or dimension value applies to.

    Attributes
    ----------
    label : str
        What reasons name: the offer id (``discount_10``), or ``<dimension>=<value>``
        (``channel=sms``).
    actions : tuple of int
        The offer itself, or every combination that has the offer or value.
    """

    label: str
    actions: tuple[int, ...]
    limits: Limits


DAY = 86400.0
HOUR = 3600.0
_FILE_HINT = "pass the path of a campaign TOML file (examples/renewal.toml is a complete example)"
CHARGE_COST = ("always", "on_success", "never")
CONTROLS = ("offer", "baseline")
MODES = ("online", "shadow", "logging")
SAFE_MODES = ("control", "previous_model")
_SECTIONS = (
    "campaign",
    "policy",
    "learning",
    "reward",
    "guardrails",
    "journal",
    "rollout",
    "features",
    "offers",
    "dimensions",
    "combinations",
)


@dataclass(frozen=True)
class RolloutConfig:
    """``[rollout]``: when the live policy is stopped by itself (see :mod:`engine.rollout`).

    Attributes
    ----------
    monitor : bool
        Watch the anytime-valid bound on the policy's lift over the control group (needs
        ``control_share > 0``) and the guardrails below, after every reward batch the learner
        applies. Default true.
    alpha : float
        The bound covers the true lift at every look at once with probability ``1 - alpha``
        (a policy that is not worse is rolled back in at most ``alpha / 2`` of campaigns).
        Default 0.05.
    n_star : float
        Customers at which the bound is tightest. Default 1000.
    safe_mode : {"control", "previous_model"}
        What the campaign serves after a rollback: the control (``control_offer``, or the
        baseline with ``control = "baseline"``) to everyone, or the model that was live before
        the last promotion (the control when there was none). Default "control".
    max_spend_per_decision : float or None
        Guardrail: roll back when the mean cost of the policy's decisions (rewarded ones,
        since the last model change, at least ``min_decisions``) exceeds it.
    max_components : dict of str to float
        Guardrail: roll back when the mean of a reward component (``components`` of a Reward,
        e.g. ``complaints``) per rewarded policy decision exceeds its limit.
    min_decisions : int
        Rewarded policy decisions before a guardrail is judged. Default 200.
    """

    monitor: bool = True
    alpha: float = 0.05
    n_star: float = 1000.0
    safe_mode: str = "control"
    max_spend_per_decision: float | None = None
    max_components: tuple[tuple[str, float], ...] = ()
    min_decisions: int = 200


@dataclass(frozen=True)
class CampaignConfig:
    """A validated campaign. Durations are in seconds; offers keep the file's order."""

    name: str
    offers: tuple[Offer, ...]
    schema: FeatureSchema
    policy: dict[str, Any]
    description: str = ""
    salt: str = ""
    control_offer: str = ""
    control_share: float = 0.0
    fallback_offer: str = ""
    control: str = "offer"
    mode: str = "online"
    rollout: RolloutConfig = RolloutConfig()
    publish_every_rewards: int = 100
    publish_every_ms: float = 1000.0
    checkpoint_every_rewards: int = 10000
    reward_window: float = 30 * DAY
    default_value: float | None = None
    charge_cost: str = "always"
    max_offers_per_customer: int | None = None
    frequency_window: float = 0.0
    cooldown: float = 0.0
    traffic_window: int = 1000
    synchronous: str = "normal"
    cache_mib: int = DEFAULT_CACHE_MIB  #: ``[journal] cache_mib``: the SQLite journal's page cache
    request_window: float = 24 * HOUR
    journal_url: str | None = None
    retention_days: float | None = None
    config_hash: str = ""
    #: ``[[offers]]`` as the file has them when ``offers`` are their combinations, else ().
    catalog: tuple[Offer, ...] = ()
    dimensions: tuple[Dimension, ...] = ()
    #: Per action, each dimension's value index (the offer first); () without dimensions.
    codes: tuple[tuple[int, ...], ...] = ()
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _groups: tuple[ActionGroup, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived, not an argument: dataclasses.replace(config, ...) rebuilds it.
        object.__setattr__(self, "_index", {o.id: i for i, o in enumerate(self.offers)})
        # Read by eligibility, guardrails (every budget report), candidates and retention.
        object.__setattr__(self, "_groups", tuple(self._make_groups()))

    @property
    def dimension_names(self) -> tuple[str, ...]:
        """``("offer", <dimension>, ...)``, or () for a campaign that decides the offer alone."""
        if not self.dimensions:
            return ()
        return (OFFER_DIMENSION, *(d.name for d in self.dimensions))

    @property
    def base_offers(self) -> tuple[Offer, ...]:
        """The ``[[offers]]`` (each action's offer is one of them)."""
        return self.catalog or self.offers

    def choices(self, action: int) -> dict[str, str]:
        """Dimension -> value of an action ({} without dimensions).

        Examples
        --------
        >>> cfg = load_campaign("examples/renewal_channels.toml")
        >>> cfg.choices(cfg.offer_index("discount_10+sms+week_1"))
        {'offer': 'discount_10', 'channel': 'sms', 'timing': 'week_1'}
        """
        if not self.dimensions:
            return {}
        names = self.dimension_names
        return dict(zip(names, split_combination(self.offers[action].id, len(names)), strict=True))

    def offer_of(self, action: int) -> str:
        """The offer id of an action (the action's own id without dimensions)."""
        if not self.dimensions:
            return self.offers[action].id
        return self.base_offers[self.codes[action][0]].id

    def groups(self) -> list[ActionGroup]:
        """Every offer's and dimension value's actions, in file order (offers first)."""
        return list(self._groups)

    def _make_groups(self) -> list[ActionGroup]:
        if not self.dimensions:
            return [ActionGroup(o.id, (a,), o.limits) for a, o in enumerate(self.offers)]
        out = [
            ActionGroup(o.id, tuple(a for a, c in enumerate(self.codes) if c[0] == j), o.limits)
            for j, o in enumerate(self.catalog)
        ]
        for d, dim in enumerate(self.dimensions, start=1):
            for j, value in enumerate(dim.values):
                actions = tuple(a for a, c in enumerate(self.codes) if c[d] == j)
                out.append(ActionGroup(f"{dim.name}={value.id}", actions, value.limits))
        return out

    def candidate_groups(self) -> dict[str, tuple[int, tuple[int, ...]]]:
        """With dimensions: each offer id and ``<dimension>=<value>`` -> (the dimension's
        index, its combinations), what a request's candidates may name; {} otherwise."""
        if not self.dimensions:
            return {}
        sizes = [len(self.catalog), *(len(d.values) for d in self.dimensions)]
        dims = [d for d, size in enumerate(sizes) for _ in range(size)]
        return {g.label: (d, g.actions) for g, d in zip(self.groups(), dims, strict=True)}

    def group_rules(self) -> list[tuple[ActionGroup, tuple[Rule, ...]]]:
        """Each group with the eligibility rules of its offer or value."""
        groups = self.groups()
        owners: list[Any] = list(self.base_offers)
        for dim in self.dimensions:
            owners.extend(dim.values)
        return [(g, owner.rules) for g, owner in zip(groups, owners, strict=True)]

    @property
    def offer_ids(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.offers)

    @property
    def n_actions(self) -> int:
        return len(self.offers)

    def offer_index(self, offer_id: str) -> int:
        """Index of an offer id; NotFoundError for an unknown id."""
        try:
            return self._index[offer_id]
        except (KeyError, TypeError):
            raise NotFoundError(
                f"offer_id: expected one of {', '.join(self.offer_ids)}, got {offer_id!r}"
            ) from None

    def offer_features(self) -> FloatArray:
        """Offer attributes as an array of shape (n_actions, n_offer_features), names sorted;
        with dimensions, :func:`~engine.features.combinations.combination_features` of the
        combinations (each dimension's one-hot and its values' attributes)."""
        if not self.dimensions:
            return _attribute_table(self.offers, width=1)
        sizes = [len(self.catalog), *(len(d.values) for d in self.dimensions)]
        tables = [_attribute_table(self.catalog)]
        tables += [_attribute_table(d.values) for d in self.dimensions]
        return combination_features(np.asarray(self.codes, dtype=np.int64), sizes, tables)

    def treatments(self) -> IntArray:
        """Per action: its offer's index, its route's index (the other dimensions' values, in
        mixed radix; 0 without dimensions) and 1 if its offer sends something (``sends``), the
        table :class:`~engine.policies.LandingLift` takes as ``offer_features``.

        Examples
        --------
        >>> cfg = load_campaign("examples/renewal_channels.toml")
        >>> table = cfg.treatments()
        >>> table[cfg.offer_index("none+email+now")].tolist()  # the plain reminder is sent
        [0, 0, 1]
        >>> table[cfg.offer_index("discount_10+sms+week_1")].tolist()  # sms = 1, week_1 = 1
        [2, 5, 1]
        """
        if not self.dimensions:
            codes = np.arange(self.n_actions)[:, None]
            return treatment_table(codes, [self.n_actions], [o.sends for o in self.offers])
        codes = np.asarray(self.codes, dtype=np.int64)
        sizes = [len(self.catalog), *(len(d.values) for d in self.dimensions)]
        return treatment_table(codes, sizes, [self.catalog[c].sends for c in codes[:, 0]])

    def policy_offer_features(self) -> FloatArray | IntArray | None:
        """What :func:`engine.policies.make_policy` takes as ``offer_features`` for this
        campaign's policy: :meth:`offer_features` for the shared policy, :meth:`treatments`
        for the landing policy, else None."""
        from engine.policies import LandingLift, SharedLinear, policy_class

        cls = policy_class(str(self.policy["name"]))
        if cls is SharedLinear:
            return self.offer_features()
        if cls is LandingLift:
            return self.treatments()
        return None

    def retention_floor(self) -> tuple[float, str]:
        """The shortest retention, in days, that keeps what the engine reads from its journal,
        and the key that sets it with why it is read.

        The longest of: the reward window (a reward retried within it must find its decision,
        to be answered ``duplicate``), the frequency window and the cooldown (a restart counts
        each customer's incentives within them), the request window (a retried request reads
        its decisions back).

        Examples
        --------
        >>> load_campaign("examples/renewal.toml").retention_floor()[0]
        180.0
        """
        windows = (
            (self.reward_window, "reward.window_days", "a retried reward finds its decision"),
            (
                self.frequency_window,
                "guardrails.frequency_window_days",
                "frequency caps count the incentives within it",
            ),
            (self.cooldown, "guardrails.cooldown_days", "cooldowns read the last incentive"),
            (
                self.request_window,
                "journal.request_window_hours",
                "a retried request reads its decisions back",
            ),
            *(
                (
                    g.limits.frequency_window,
                    f"{g.label}.frequency_window_days",
                    "its cap counts the incentives within it",
                )
                for g in self.groups()
                if g.limits.max_per_customer is not None
            ),
            *(
                (DAY, f"{g.label}.budget_*_per_day", "daily budgets count the day's decisions")
                for g in self.groups()
                if g.limits.budget_count_per_day is not None
                or g.limits.budget_money_per_day is not None
            ),
        )
        seconds, key, why = max(windows, key=lambda w: w[0])
        shown = f"{seconds / HOUR:g}" if key.endswith("_hours") else f"{seconds / DAY:g}"
        return seconds / DAY, f"{key} = {shown}: {why}"

    def net_reward(self, action: int, cost: float, value: float) -> float:
        """The learner's reward for an outcome ``value`` of offer ``action`` that cost ``cost``.

        ``charge_cost = "always"``: value - cost; ``"on_success"``: value - cost when value > 0,
        else value (an offer nobody redeems costs nothing); ``"never"``: value.
        """
        if not math.isfinite(value):
            raise InvalidInputError("value", "a finite number", value)
        if self.charge_cost == "never" or (self.charge_cost == "on_success" and value <= 0):
            return float(value)
        return float(value) - cost


def _attribute_table(items: Any, width: int = 0) -> FloatArray:
    """The items' numeric attributes, shape (n_items, n_names), names sorted (absent: 0), at
    least ``width`` columns."""
    names = sorted({k for item in items for k, _ in item.attributes})
    out = np.zeros((len(items), max(len(names), width)))
    for i, item in enumerate(items):
        attrs = dict(item.attributes)
        for j, name in enumerate(names):
            out[i, j] = attrs.get(name, 0.0)
    return out


def load_campaign(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign TOML file.

    Raises
    ------
    ConfigError
        When the file is not valid TOML or a key is missing, unknown or out of range.
    MissingFileError, NotAFileError, FileAccessError
        When the path names no file, a directory, or a file this process may not read (also a
        FileNotFoundError, IsADirectoryError, PermissionError); the message names the path.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise unreadable_file(path, exc, "a campaign TOML file", _FILE_HINT) from None
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: expected a valid TOML file, got a parse error: {exc}") from None
    return parse_campaign(table)


def parse_campaign(table: dict[str, Any]) -> CampaignConfig:
    """Validate a parsed campaign table (the TOML file as a dict)."""
    if not isinstance(table, dict):
        raise fail("<config>", "a table", table)
    reject_unknown(table, _SECTIONS, "")
    camp = get_table(table, "campaign", "")
    reject_unknown(
        camp,
        (
            "name",
            "description",
            "salt",
            "control_offer",
            "control_share",
            "fallback_offer",
            "control",
            "mode",
        ),
        "campaign",
    )
    name = get_str(camp, "name", "campaign")
    offers_raw = table.get("offers")
    if not isinstance(offers_raw, list) or not offers_raw:
        raise fail("offers", "a non-empty array of [[offers]] tables", offers_raw)
    offers = tuple(parse_offer(item, f"offers[{i}]") for i, item in enumerate(offers_raw))
    ids = [o.id for o in offers]
    for i, offer_id in enumerate(ids):
        if offer_id in ids[:i]:
            raise fail(f"offers[{i}].id", "an id not used by an earlier offer", offer_id)
    control_offer = get_str(camp, "control_offer", "campaign", default=ids[0])
    # With dimensions either names an offer or a combination (checked once they are expanded).
    with_dims = "dimensions" in table
    if control_offer not in ids and not with_dims:
        raise fail(
            "campaign.control_offer", "one of the offer ids " + ", ".join(ids), control_offer
        )
    fallback = get_str(camp, "fallback_offer", "campaign", default=control_offer)
    if fallback not in ids and not with_dims:
        raise fail("campaign.fallback_offer", "one of the offer ids " + ", ".join(ids), fallback)
    schema = parse_schema(get_table(table, "features", "", default={"bias": True}))
    numeric = {f.name for f in schema.numeric}
    for i, offer in enumerate(offers):
        if offer.cost_field is not None and offer.cost_field not in numeric:
            raise fail(f"offers[{i}].cost.of", "the name of a numeric feature", offer.cost_field)
    offers = tuple(
        replace(offer, rules=_bind_rules(offer.rules, f"offers[{i}]", schema))
        for i, offer in enumerate(offers)
    )
    dimensions = tuple(
        replace(
            dim,
            values=tuple(
                replace(v, rules=_bind_rules(v.rules, f"dimensions[{d}].values[{j}]", schema))
                for j, v in enumerate(dim.values)
            ),
        )
        for d, dim in enumerate(parse_dimensions(table.get("dimensions")))
    )
    catalog: tuple[Offer, ...] = ()
    codes: tuple[tuple[int, ...], ...] = ()
    if dimensions:
        combos = expand(offers, dimensions, parse_exclusions(table.get("combinations"), dimensions))
        catalog, offers, codes = offers, combos.offers, tuple(map(tuple, combos.codes.tolist()))
        control_offer = _combination(control_offer, "campaign.control_offer", catalog, offers)
        fallback = _combination(fallback, "campaign.fallback_offer", catalog, offers)
    elif "combinations" in table:
        parse_exclusions(table["combinations"], dimensions)  # refuses it, naming the key
    policy = _parse_policy(get_table(table, "policy", "", default={"name": "linucb"}))
    probe = CampaignConfig(
        name="probe",
        offers=offers,
        schema=schema,
        policy=policy,
        catalog=catalog,
        dimensions=dimensions,
        codes=codes,
    )
    _check_policy(probe)
    learning = get_table(table, "learning", "", default={})
    reject_unknown(
        learning,
        ("publish_every_rewards", "publish_every_ms", "checkpoint_every_rewards"),
        "learning",
    )
    reward = get_table(table, "reward", "", default={})
    reject_unknown(reward, ("window_days", "default_value", "charge_cost"), "reward")
    guard = get_table(table, "guardrails", "", default={})
    reject_unknown(
        guard,
        ("max_offers_per_customer", "frequency_window_days", "cooldown_days", "traffic_window"),
        "guardrails",
    )
    journal = get_table(table, "journal", "", default={})
    reject_unknown(
        journal,
        ("synchronous", "cache_mib", "url", "request_window_hours", "retention_days"),
        "journal",
    )
    max_offers = (
        get_int(guard, "max_offers_per_customer", "guardrails", low=1)
        if "max_offers_per_customer" in guard
        else None
    )
    frequency_days = get_float(guard, "frequency_window_days", "guardrails", default=0.0, low=0.0)
    if max_offers is not None and frequency_days <= 0:
        raise fail(
            "guardrails.frequency_window_days",
            "a number > 0 when max_offers_per_customer is set",
            guard.get("frequency_window_days"),
        )
    default_value = (
        get_float(reward, "default_value", "reward") if "default_value" in reward else None
    )
    retention = (
        get_float(journal, "retention_days", "journal", low=0.0, low_open=True)
        if "retention_days" in journal
        else None
    )
    config = CampaignConfig(
        name=name,
        control=get_str(camp, "control", "campaign", default="offer", choices=CONTROLS),
        mode=get_str(camp, "mode", "campaign", default="online", choices=MODES),
        rollout=_parse_rollout(get_table(table, "rollout", "", default={})),
        description=str(camp.get("description", "")),
        salt=get_str(camp, "salt", "campaign", default=name),
        control_offer=control_offer,
        control_share=get_float(camp, "control_share", "campaign", default=0.0, low=0.0, high=1.0),
        fallback_offer=fallback,
        offers=offers,
        schema=schema,
        policy=policy,
        publish_every_rewards=get_int(learning, "publish_every_rewards", "learning", 100, low=1),
        publish_every_ms=get_float(
            learning, "publish_every_ms", "learning", 1000.0, low=0.0, low_open=True
        ),
        checkpoint_every_rewards=get_int(
            learning, "checkpoint_every_rewards", "learning", 10000, low=1
        ),
        reward_window=get_float(reward, "window_days", "reward", 30.0, low=0.0, low_open=True)
        * DAY,
        default_value=default_value,
        charge_cost=get_str(reward, "charge_cost", "reward", "always", choices=CHARGE_COST),
        max_offers_per_customer=max_offers,
        frequency_window=frequency_days * DAY,
        cooldown=get_float(guard, "cooldown_days", "guardrails", default=0.0, low=0.0) * DAY,
        traffic_window=get_int(guard, "traffic_window", "guardrails", default=1000, low=1),
        synchronous=get_str(
            journal, "synchronous", "journal", default="normal", choices=("normal", "full")
        ),
        cache_mib=_cache_mib(journal),
        request_window=get_float(
            journal, "request_window_hours", "journal", 24.0, low=0.0, low_open=True
        )
        * HOUR,
        journal_url=get_str(journal, "url", "journal") if "url" in journal else None,
        retention_days=retention,
        catalog=catalog,
        dimensions=dimensions,
        codes=codes,
        config_hash=hashlib.sha256(
            json.dumps(table, sort_keys=True, default=str).encode()
        ).hexdigest(),
    )
    if retention is not None:
        floor, why = config.retention_floor()
        if retention < floor:
            raise fail(
                "journal.retention_days",
                f"a number >= {floor:g} ({why})",
                journal["retention_days"],
            )
    return config


def _parse_rollout(table: dict[str, Any]) -> RolloutConfig:
    keys = (
        "monitor",
        "alpha",
        "n_star",
        "safe_mode",
        "max_spend_per_decision",
        "max_components",
        "min_decisions",
    )
    reject_unknown(table, keys, "rollout")
    components = get_table(table, "max_components", "rollout", default={})
    limits = []
    for key in sorted(components):
        limits.append((key, get_float(components, key, "rollout.max_components", low=0.0)))
    return RolloutConfig(
        monitor=get_bool(table, "monitor", "rollout", default=True),
        alpha=get_float(table, "alpha", "rollout", 0.05, low=0.0, high=0.5, low_open=True),
        n_star=get_float(table, "n_star", "rollout", 1000.0, low=1.0),
        safe_mode=get_str(table, "safe_mode", "rollout", default="control", choices=SAFE_MODES),
        max_spend_per_decision=(
            get_float(table, "max_spend_per_decision", "rollout", low=0.0)
            if "max_spend_per_decision" in table
            else None
        ),
        max_components=tuple(limits),
        min_decisions=get_int(table, "min_decisions", "rollout", 200, low=1),
    )


def _bind_rules(rules: tuple[Rule, ...], path: str, schema: FeatureSchema) -> tuple[Rule, ...]:
    """An offer's or a dimension value's rules, each checked against the declared attributes
    and reading, for a missing attribute, what the model reads (:mod:`engine.campaign.rules`)."""
    numeric = {f.name: f for f in schema.numeric}
    categorical = {c.name: c for c in schema.categorical}
    declared = schema.attribute_names
    bound = []
    for j, rule in enumerate(rules):
        where = f"{path}.eligible[{j}]"
        name = rule.field
        if name in numeric:
            feature = numeric[name]
            fill = feature.missing_value()
            if fill is None and feature.missing != "error":
                raise ConfigError(
                    f"{where}: expected a rule on a feature with a fixed missing value, got "
                    f"{rule.text!r} on {name!r}, whose missing = 'mean' is a running mean (it "
                    "moves while it is learned); give the feature mean and std, or set missing "
                    "to 'zero', 'error' or a number"
                )
            bound.append(rule.with_missing(fill, required=feature.missing == "error"))
        elif name in categorical:
            bound.append(rule.with_missing(None, required=categorical[name].missing == "error"))
        elif name in schema.rule_attributes:
            bound.append(rule)
        else:
            hint = did_you_mean(name, declared) or (
                f" (declared: {', '.join(sorted(declared))})" if declared else ""
            )
            raise ConfigError(
                f"{where}: expected a rule on a declared attribute (a feature or one of "
                f"features.rule_attributes), got {rule.text!r} on {name!r}{hint}"
            )
    return tuple(bound)


def _combination(
    given: str, key: str, catalog: tuple[Offer, ...], combos: tuple[Offer, ...]
) -> str:
    """The combination ``given`` names: itself, or for an offer id its first combination."""
    ids = [c.id for c in combos]
    if given in ids:
        return given
    if given in (o.id for o in catalog):
        first = [c for c in ids if c.partition(SEPARATOR)[0] == given]
        if first:
            return first[0]
    raise fail(key, "an offer id with an allowed combination, or a combination id", given)


def _check_policy(probe: CampaignConfig) -> None:
    # Build the policy once so a bad hyperparameter fails at load, naming the key.
    from engine.policies import make_policy

    policy = probe.policy
    try:
        make_policy(
            policy,
            probe.n_actions,
            probe.schema.n_features,
            offer_features=probe.policy_offer_features(),
        )
    except InvalidInputError as exc:
        # The message without make_policy's own field name: the key path replaces it.
        text = str(exc).removeprefix(f"{exc.field}: ")
        key = "name" if exc.field == "policy" else exc.field
        raise ConfigError(f"policy.{key}: {text}") from None


def _parse_policy(policy: dict[str, Any]) -> dict[str, Any]:
    name = get_str(policy, "name", "policy")
    if "seed" in policy:
        get_int(policy, "seed", "policy", low=0)
    if "min_propensity" in policy:
        get_float(policy, "min_propensity", "policy", low=0.0, high=1.0)
    return {"name": name, **{k: v for k, v in policy.items() if k != "name"}}


def _cache_mib(journal: Mapping[str, Any]) -> int:
    """``[journal] cache_mib``: an integer from 1 to MAX_CACHE_MIB, default DEFAULT_CACHE_MIB."""
    value = get_int(journal, "cache_mib", "journal", DEFAULT_CACHE_MIB, low=1)
    if value > MAX_CACHE_MIB:
        raise fail("journal.cache_mib", f"an integer from 1 to {MAX_CACHE_MIB}", value)
    return value

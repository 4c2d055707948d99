"""The records the Engine returns (one per decision, one per reward) and the rows the journal
stores and gives back.

The row types are the journal's vocabulary: every backend (see :mod:`engine.journal.base`) takes
and returns them, and a backend derives its column lists from their fields, so the order of a
stored decision's columns is written once, here.

Examples
--------
>>> import numpy as np
>>> rec = DecisionRecord("d1", "b", 0.5, False, False, "v1", (), ("a", "b"), "c", "cust", 0.0,
...                      1.0, np.array([0.2, 0.7]), ("a", "b"))
>>> rec.ranking
(('b', 0.7), ('a', 0.2))
>>> DecisionRow._fields[:3]
('decision_id', 'ts_us', 'customer_id')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

from engine.features.combinations import SEPARATOR
from engine.types import FloatArray


@dataclass(slots=True)
class DecisionRecord:
    """What :meth:`Engine.decide` returns (and what the journal keeps). Read-only by contract
    (not frozen: a frozen dataclass costs ~2 us more per decision to build).

    Attributes
    ----------
    decision_id, offer_id : str
    propensity : float
        True probability of ``offer_id`` given the context, the rules and the model: 1 for the
        control group, for a fallback and when a single offer is eligible.
    explored, control : bool
    model_version : str
    reasons : tuple of str
        Rules that removed offers or set the outcome: ``control_group``, ``candidates``,
        ``rule:<offer>:<condition>``, ``cost_unknown:<offer>``, ``budget_count:<offer>``,
        ``budget_money:<offer>``, ``traffic_cap:<offer>``, ``frequency_cap``, ``cooldown``,
        ``fallback:<offer>``.
    eligible : tuple of str
        Offers that could have been chosen (the control offer alone for the control group, the
        fallback alone when nothing was eligible).
    campaign, customer_id : str
    timestamp : float
        Unix seconds (the engine's clock).
    cost : float
        The chosen offer's cost for this customer.
    scores : array of shape (n_actions,)
        The policy's score per offer (-inf where not eligible, NaN when the policy was not asked).
    offer_ids : tuple of str
        The campaign's offers, in the order of ``scores``.
    replayed : bool
        True when this is the stored answer to a retried request (same ``request_id``): the
        decision was made, journaled and counted by an earlier call, so counters (metrics) must
        not count it again. Not compared.
    deferred : bool
        Journaled inactive (``Decide(defer_activation=true)``): it counts nowhere (budgets,
        caps, lift, learning, export) until it is activated (:meth:`JournalBackend.activate`).
    dimensions : tuple of str
        A campaign with ``[[dimensions]]``: ``("offer", <dimension>, ...)``; ``offer_id`` is
        then the chosen combination (``"upgrade+email+now"``, the logged action) and
        :attr:`choices` its values. () otherwise. Not compared.
    """

    decision_id: str
    offer_id: str
    propensity: float
    explored: bool
    control: bool
    model_version: str
    reasons: tuple[str, ...]
    eligible: tuple[str, ...]
    campaign: str
    customer_id: str
    timestamp: float
    cost: float
    scores: FloatArray = field(compare=False)
    offer_ids: tuple[str, ...]
    replayed: bool = field(default=False, compare=False)
    deferred: bool = False
    dimensions: tuple[str, ...] = field(default=(), compare=False)

    @property
    def choices(self) -> dict[str, str]:
        """Dimension -> value of the decision (``{"offer": "upgrade", "channel": "email"}``),
        {} for a campaign that decides the offer alone."""
        if not self.dimensions:
            return {}
        return dict(zip(self.dimensions, self.offer_id.split(SEPARATOR), strict=True))

    @property
    def ranking(self) -> tuple[tuple[str, float], ...]:
        """Eligible offers with their scores, best first (the chosen offer alone when the policy
        was not asked: control group or fallback)."""
        # Plain Python over the list: for a campaign's few offers 3x cheaper than numpy's
        # argsort and per-element isfinite (the server builds one ranking per Decide).
        scores = self.scores.tolist()
        order = sorted(
            (a for a, s in enumerate(scores) if math.isfinite(s)), key=lambda a: -scores[a]
        )
        if not order:
            return ((self.offer_id, math.nan),)
        return tuple((self.offer_ids[a], scores[a]) for a in order)


@dataclass(slots=True)
class RewardRecord:
    """What :meth:`Engine.reward` returns, per reward.

    ``status`` is ``applied`` (new), ``duplicate`` (a retry: the first value stands, ``reward``
    is the stored one), ``expired`` (the window had passed), ``unknown`` (no such decision) or
    ``inactive`` (a deferred decision not activated: nothing is journaled or learned; a report
    after its activation is applied).
    ``reward`` is the net reward the learner uses (None when not applied).
    """

    decision_id: str
    status: str
    offer_id: str = ""
    value: float | None = None
    reward: float | None = None


class DecisionRow(NamedTuple):
    """One decision as the engine journals it (the field order is the stored column order)."""

    decision_id: str
    ts_us: int  #: unix microseconds
    customer_id: str
    context: bytes  #: float64 features in the catalog's feature order
    eligible: str  #: comma-joined eligible offer ids
    action: str  #: chosen offer id
    propensity: float
    explored: bool
    control: bool
    model_version: str
    cost: float
    scores: bytes  #: float64 scores in the catalog's offer order (NaN: policy not asked)
    reasons: str | None  #: ';'-joined reasons, None without any
    catalog: int  #: id from :meth:`JournalBackend.catalog`
    #: journaled inactive: counts nowhere until activated (:meth:`JournalBackend.activate`)
    deferred: bool = False


# DecisionRow(*fields) runs a Python-level __new__ (~1 us for 15 fields); tuple.__new__ bound to
# the class builds the same named row in C, which keeps assembling a batch a whole-column zip.
decision_row = partial(tuple.__new__, DecisionRow)


LAPSED = "lapsed"  #: the source of a never-activated deferred decision's expiry: no reward


class RewardRow(NamedTuple):
    """One reward as the ledger journals it (``source`` is ``reward``, ``expired``, or
    ``lapsed``: the expiry of a deferred decision never activated, without a value)."""

    decision_id: str
    decision_seq: int  #: the decision's ``seq``
    ts_us: int
    value: float | None  #: reported value (the default value for an expiry, maybe None)
    reward: float | None  #: net reward the learner applies; None: nothing to learn
    source: str
    components: str | None = None  #: a reward's components as JSON (``complaints``: 1.0)


class RewardError(NamedTuple):
    """A rejected reward report, kept for audit."""

    ts_us: int
    decision_id: str
    value: float | None
    error: str  #: ``unknown decision id``, ``reward window passed`` or ``decision not activated``


class StoredDecision(NamedTuple):
    """A decision as the journal holds it, with its reward status."""

    decision_id: str
    seq: int
    ts_us: int
    customer_id: str
    context: bytes
    action: str
    propensity: float
    control: int
    cost: float
    reward_source: str | None  #: None while pending, else the reward's ``source``
    reward: float | None
    catalog: int = 0  #: the catalog (offers, feature names) the decision was made with
    deferred: int = 0  #: 1 (or True) when journaled inactive
    activated_us: int | None = None  #: when a deferred decision was activated (None: not)

    @property
    def served(self) -> bool:
        """Whether the decision counts: not deferred, or activated."""
        return not self.deferred or self.activated_us is not None


class StoredReward(NamedTuple):
    """A journaled reward joined to its decision, as the learner replays it."""

    seq: int  #: the reward's seq: the learner's order
    context: bytes
    action: str
    propensity: float
    reward: float | None
    catalog: int
    components: str | None = None  #: the reward's components as JSON (name -> number)


class Outcome(NamedTuple):
    """A journaled reward with what the lift monitor reads of its decision
    (:mod:`engine.journal.monitor`)."""

    seq: int  #: the reward's seq
    customer_id: str
    control: bool
    cost: float  #: the decision's cost
    reward: float | None  #: net reward; None for an expiry without a default
    reasons: str | None  #: the decision's ';'-joined reasons
    model_version: str  #: the model live when it was decided
    action: str  #: the offer served
    ts_us: int  #: when it was decided
    components: str | None = None  #: the reward's components as JSON (name -> number)


class ExportedDecision(NamedTuple):
    """A decision with its net reward, as the Parquet export reads it."""

    seq: int
    decision_id: str
    ts_us: int
    customer_id: str
    context: bytes
    action: str
    propensity: float
    reward: float | None  #: None while pending or expired without a default
    eligible: str
    explored: int
    control: int
    model_version: str
    catalog: int
    #: not deferred, or activated (the export gives only these; an archive step reads all)
    served: bool = True
    reasons: str | None = None  #: ';'-joined reasons (a shadow decision's carries nbo's choice)
    components: str | None = None  #: the reward's components as JSON (name -> number)


class ActivationRow(NamedTuple):
    """The activation of a deferred decision: the offer was delivered at ``ts_us``."""

    decision_id: str
    decision_seq: int  #: the decision's ``seq``
    ts_us: int


#: What :meth:`JournalBackend.activate` answers per decision id: ``activated`` (new),
#: ``duplicate`` (already activated), ``unknown`` (no such decision), ``expired`` (its reward
#: window passed, or it is closed) and ``immediate`` (not deferred: it counted from the start).
ACTIVATION_STATUSES = ("activated", "duplicate", "unknown", "expired", "immediate")


class GroupSums(NamedTuple):
    """Count, sum and sum of squares of the net rewards of one group's closed decisions."""

    n: int
    total: float
    squares: float


class ModelRow(NamedTuple):
    """A model version as the registry stores it (``models`` table; the version number is
    given by the journal when the row is added). See :mod:`engine.journal.registry`."""

    created_us: int
    kind: str  #: ``initial``, ``learned``, ``promoted`` or ``rollback``
    origin: str  #: JSON: where the model came from (see the registry's docstring)
    parent: int | None  #: the version live before this one
    catalog: int  #: campaign, offer ids and feature names of the model
    policy_class: str
    last_reward_seq: int  #: the learner's cursor: rewards after it are still to be applied
    n_rewards: int  #: journal rewards the model contains


class StoredModel(NamedTuple):
    """A registry row with its number, and whether its model bytes are still kept."""

    version: int
    created_us: int
    kind: str
    origin: str
    parent: int | None
    catalog: int
    policy_class: str
    last_reward_seq: int
    n_rewards: int
    sha256: str | None  #: SHA-256 of the kept model bytes; None once pruned (or never kept)


class OfferTotals(NamedTuple):
    """Decisions that chose an offer, and their summed cost."""

    n_decisions: int
    cost: float


class RequestRow(NamedTuple):
    """A decide request with a client request id, journaled with the decisions it made."""

    request_id: str
    campaign: str
    ts_us: int  #: when it was decided (the window starts here)
    request_hash: str  #: hex SHA-256 of the request (customers, contexts, candidates)


class StoredRequest(NamedTuple):
    """A journaled request and the decisions it made, in the request's row order."""

    request: RequestRow
    decisions: list[DecisionRow]


class ArchiveCut(NamedTuple):
    """The closed decisions one compaction step moves out of the journal (see
    :mod:`engine.journal.compact`): every decision with ``after_seq < seq <= through_seq``, made
    (and, when deferred, activated) before ``before_us`` over one of ``catalogs``, whose reward's
    seq is at most ``reward_seq`` and whose activation's, if any, is below ``activation_seq``.

    Decisions and rewards are never changed and new ones get larger seqs, so the same cut names
    the same rows until they are deleted: a step interrupted after its Parquet file was written
    is redone, file and all, from its cut alone.
    """

    after_seq: int
    through_seq: int
    before_us: int
    reward_seq: int
    catalogs: tuple[int, ...]
    rows: int = 0  #: how many decisions the cut names (0 while it is being chosen)
    activation_seq: int = 0  #: activated decisions only with an activation seq below it


class RetentionBounds(NamedTuple):
    """What a compaction must keep, read from the journal in one statement."""

    recent_seq: int  #: seq of the oldest of the newest ``keep_recent`` decisions (0: fewer)
    model_seq: int | None  #: least ``last_reward_seq`` of the versions with kept bytes
    last_reward_seq: int  #: the largest reward seq (0 without rewards)
    request_us: int | None  #: time of the oldest stored request (None without any)
    #: seq of the oldest of the newest ``keep_recent`` activations (0: fewer)
    recent_activation_seq: int = 0


class ArchivedCustomer(NamedTuple):
    """A customer's archived closed decisions with a net reward, in one group (lift)."""

    control: bool
    customer_id: str
    n: int
    total: float

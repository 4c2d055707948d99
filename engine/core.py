"""The Engine: decide / reward / snapshot for one campaign, joining features, campaign rules,
the policy, the durable journal and the learner. No gRPC here (engine/serving wraps it).

One decision: encode the context -> control group? -> eligibility (rules, candidates, costs,
budgets, caps, cooldown) -> policy.choose on the published model -> journal commit -> return.
One reward: look the decision up in the journal -> net reward -> journal commit (idempotent on
decision_id) -> the learner applies it once, in journal order, and publishes a new model every N
rewards or T ms. Decisions never wait on learning.

Examples
--------
>>> import tempfile
>>> eng = Engine.from_config("examples/renewal.toml", data_dir=tempfile.mkdtemp(),
...                          clock=lambda: 1_700_000_000.0)
>>> dec = eng.decide("c42", {"tenure_months": 30, "monthly_price": 50.0, "plan": "basic"})
>>> dec.offer_id in eng.offer_ids, 0.0 < dec.propensity <= 1.0, dec.model_version
(True, True, 'v1')
>>> eng.reward(dec.decision_id, value=600.0).status
'applied'
>>> eng.reward(dec.decision_id, value=600.0).status     # a retry is applied once
'duplicate'
>>> eng.close()
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.campaign import CampaignConfig, Guardrails, in_control_group, load_campaign
from engine.errors import (
    CorruptModelError,
    InvalidInputError,
    NotFoundError,
    ResourceExhaustedError,
)
from engine.features import Encoder
from engine.journal.learner import Learner, LearnItem
from engine.journal.lift import Lift, lift_from_journal
from engine.journal.recovery import adapt_offers, check_compatible, latest_usable, version_number
from engine.journal.snapshot import read_snapshot
from engine.journal.store import Journal, StoredDecision
from engine.policies import Policy, make_policy
from engine.types import BoolArray, FloatArray

# Rewards beyond this magnitude are rejected before they reach the journal (the policies refuse
# them too, and a journaled reward the learner cannot apply would be lost).
VALUE_LIMIT = 1e12
_NUMBER = (int, float, np.integer, np.floating)


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What :meth:`Engine.decide` returns (and what the journal keeps).

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
        Offers the policy could choose from.
    campaign, customer_id : str
    timestamp : float
        Unix seconds (the engine's clock).
    cost : float
        The chosen offer's cost for this customer.
    scores : array of shape (n_actions,)
        The policy's score per offer (-inf where not eligible, NaN when the policy was not asked).
    offer_ids : tuple of str
        The campaign's offers, in the order of ``scores``.
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
    scores: FloatArray
    offer_ids: tuple[str, ...]

    @property
    def ranking(self) -> tuple[tuple[str, float], ...]:
        """Eligible offers with their scores, best first (the chosen offer alone when the policy
        was not asked: control group or fallback)."""
        if not np.isfinite(self.scores).any():
            return ((self.offer_id, math.nan),)
        order = np.argsort(-self.scores, kind="stable")
        return tuple(
            (self.offer_ids[a], float(self.scores[a])) for a in order if np.isfinite(self.scores[a])
        )


@dataclass(frozen=True, slots=True)
class RewardRecord:
    """What :meth:`Engine.reward` returns, per reward.

    ``status`` is ``applied`` (new), ``duplicate`` (a retry: the first value stands, ``reward``
    is the stored one), ``expired`` (the window had passed) or ``unknown`` (no such decision).
    ``reward`` is the net reward the learner uses (None when not applied).
    """

    decision_id: str
    status: str
    offer_id: str = ""
    value: float | None = None
    reward: float | None = None


class Engine:
    """Next-best-offer engine of one campaign.

    Parameters
    ----------
    config : CampaignConfig
    data_dir : str or Path or None
        Holds ``<campaign>.journal.sqlite`` and ``snapshots/<campaign>/``; created owner-only.
        None keeps the journal in memory (nothing durable: for benchmarks and throwaway runs).
    clock : callable returning unix seconds, optional
        Injected time (simulations with lags). Default ``time.time``.
    background : bool, optional
        Run a thread that publishes on the ``publish_every_ms`` cadence, expires pending
        decisions and writes checkpoints. Default: True with the real clock, False with an
        injected clock (then the caller drives time: :meth:`expire_pending`, :meth:`snapshot`).

    Notes
    -----
    Thread-safe. One lock orders decisions and journal writes; the learner has its own, so a
    decision never waits for learning. See :mod:`engine.core` for the data flow.
    """

    def __init__(
        self,
        config: CampaignConfig,
        data_dir: str | Path | None = "nbo-data",
        *,
        clock: Callable[[], float] | None = None,
        background: bool | None = None,
    ) -> None:
        self.config = config
        self.campaign = config.name
        self.offer_ids = config.offer_ids
        self._clock = clock if clock is not None else time.time
        self._lock = threading.RLock()
        self._closed = False
        self.data_dir = None if data_dir is None else Path(data_dir)
        if self.data_dir is not None:
            if not self.data_dir.exists():
                self.data_dir.mkdir(parents=True, mode=0o700)
            journal_path: str | Path = self.data_dir / f"{config.name}.journal.sqlite"
            snapshot_dir: Path | None = self.data_dir / "snapshots" / config.name
        else:
            journal_path, snapshot_dir = ":memory:", None
        self._journal = Journal(journal_path, synchronous=config.synchronous)
        self._encoder = Encoder(config.schema)
        self.feature_names = self._encoder.feature_names
        self.n_features = self._encoder.n_features
        self._catalog = self._journal.catalog(config.name, self.offer_ids, self.feature_names)
        self._index = {o: i for i, o in enumerate(self.offer_ids)}
        self._control_index = config.offer_index(config.control_offer)
        self._fallback_index = config.offer_index(config.fallback_offer)
        self._fixed_costs: list[float | None] = [o.fixed_cost for o in config.offers]
        self._share_offers = [(i, o) for i, o in enumerate(config.offers) if o.cost_field]
        self._ruled_offers = [(i, o) for i, o in enumerate(config.offers) if o.rules]
        self._window_us = int(config.reward_window * 1e6)
        self._guardrails = Guardrails(config)
        self._id_prefix = secrets.token_hex(5) + "-"
        self._counter = 0
        self._learner = self._start_learner(snapshot_dir)
        self._restore_guardrails()
        self._expiry_seq = int(self._journal.get_meta("expiry_seq") or 0)
        self._next_due_us = self._compute_next_due()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background if background is not None else clock is None:
            self._thread = threading.Thread(
                target=self._background, name=f"nbo-engine-{config.name}", daemon=True
            )
            self._thread.start()

    @classmethod
    def from_config(
        cls,
        path: str | Path,
        data_dir: str | Path | None = "nbo-data",
        *,
        clock: Callable[[], float] | None = None,
        background: bool | None = None,
    ) -> Engine:
        """Load a campaign TOML file (see :mod:`engine.campaign.config`) and start its engine."""
        return cls(load_campaign(path), data_dir, clock=clock, background=background)

    # ------------------------------------------------------------------ start-up
    def _offer_features(self) -> FloatArray | None:
        return self.config.offer_features() if self.config.policy["name"] == "shared" else None

    def _start_learner(self, snapshot_dir: Path | None) -> Learner:
        offer_features = self._offer_features()
        found = None
        if snapshot_dir is not None:
            found = latest_usable(snapshot_dir, self.feature_names, self.offer_ids, offer_features)
        saved_encoder = self._journal.get_meta("encoder")
        if found is not None:
            header, policy = found
            if saved_encoder is None and header.get("encoder"):
                saved_encoder = json.dumps(header["encoder"])
            start = version_number(header.get("version"))
            last_seq = int(header.get("last_reward_seq", 0))
            n_applied = int(header.get("n_rewards", 0))
        else:
            policy = make_policy(
                self.config.policy,
                len(self.offer_ids),
                self.n_features,
                offer_features=offer_features,
            )
            start, last_seq, n_applied = 1, 0, 0
        if saved_encoder is not None:
            try:
                self._encoder.load_state(json.loads(saved_encoder))
            except (CorruptModelError, ValueError):
                pass  # the schema changed since: the configured statistics apply
        learner = Learner(
            policy,
            self._journal,
            self._index,
            publish_every_rewards=self.config.publish_every_rewards,
            publish_every_ms=self.config.publish_every_ms,
            checkpoint_every_rewards=self.config.checkpoint_every_rewards,
            snapshot_dir=snapshot_dir,
            header=self._snapshot_header(),
            swap_lock=self._lock,
            version=start,
            last_seq=last_seq,
            n_applied=n_applied,
            clock=self._clock,
        )
        if learner.replay():
            rows = self._journal.query(
                "SELECT model_version FROM decisions ORDER BY seq DESC LIMIT 1"
            )
            seen = version_number(rows[0][0]) if rows else 0
            learner.publish(at_least=seen)
        return learner

    def _snapshot_header(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "config_hash": self.config.config_hash,
            "offer_ids": list(self.offer_ids),
            "feature_names": list(self.feature_names),
            "encoder": self._encoder.state(),
        }

    def _restore_guardrails(self) -> None:
        totals = {}
        for action, count, money in self._journal.query(
            "SELECT action, COUNT(*), SUM(cost) FROM decisions GROUP BY action"
        ):
            if action in self._index:
                totals[self._index[action]] = (int(count), float(money or 0.0))
        window = self.config.traffic_window
        recent = [
            self._index[a]
            for (a,) in reversed(
                self._journal.query(
                    "SELECT action FROM decisions ORDER BY seq DESC LIMIT ?", (window,)
                )
            )
            if a in self._index
        ]
        history: dict[str, list[float]] = {}
        if self._guardrails.horizon > 0:
            cutoff_us = int((self._clock() - self._guardrails.horizon) * 1e6)
            for customer, ts_us in self._journal.query(
                "SELECT customer_id, ts_us FROM decisions WHERE ts_us > ? AND action != ?"
                " AND control = 0 ORDER BY seq",
                (cutoff_us, self.config.control_offer),
            ):
                history.setdefault(customer, []).append(ts_us / 1e6)
        self._guardrails.restore(totals, recent, history)

    def _compute_next_due(self) -> float:
        first = self._journal.first_open_after(self._expiry_seq)
        return math.inf if first is None else first[1] + self._window_us

    # ------------------------------------------------------------------ properties
    @property
    def model_version(self) -> str:
        """Version of the published model decisions currently use."""
        return self._learner.version

    @property
    def journal(self) -> Journal:
        """The campaign's journal (read access for exports and reports)."""
        return self._journal

    def model_info(self) -> dict[str, Any]:
        """Published model, campaign and journal facts (for admin endpoints)."""
        learner = self._learner
        return {
            "campaign": self.campaign,
            "model_version": learner.version,
            "policy": type(learner.published).__name__,
            "policy_params": {
                k: v
                for k, v in learner.published.get_params().items()
                if isinstance(v, str | int | float | bool) or v is None
            },
            "n_rewards_applied": learner.n_applied,
            "last_reward_seq": learner.last_published_seq,
            "config_hash": self.config.config_hash,
            "offer_ids": list(self.offer_ids),
            "feature_names": list(self.feature_names),
            "journal": self._journal.counts(),
            "data_dir": None if self.data_dir is None else str(self.data_dir),
        }

    def prepare(self) -> None:
        """Warm the policy's kernels (compile or load from cache) before taking traffic."""
        self._learner.published.prepare()

    # ------------------------------------------------------------------ decisions
    def _check_open(self) -> None:
        if self._closed:
            raise ResourceExhaustedError(
                f"engine {self.campaign}: expected an open engine, got a closed one"
            )

    def _candidate_mask(self, candidates: Any, field: str) -> BoolArray | None:
        if candidates is None:
            return None
        if isinstance(candidates, str) or not isinstance(candidates, Sequence):
            raise InvalidInputError(field, "a list of offer ids", candidates)
        if not candidates:
            return None
        mask = np.zeros(len(self.offer_ids), dtype=np.bool_)
        for i, offer_id in enumerate(candidates):
            index = self._index.get(offer_id) if isinstance(offer_id, str) else None
            if index is None:
                raise InvalidInputError(
                    f"{field}[{i}]", "one of " + ", ".join(self.offer_ids), offer_id
                )
            mask[index] = True
        return mask

    def _static_rules(
        self, context: Mapping[str, Any], candidates: BoolArray | None
    ) -> tuple[BoolArray, list[float | None], list[str]]:
        """Eligibility that depends on the request alone: candidates, rules, computable costs."""
        reasons: list[str] = []
        if candidates is None:
            mask = np.ones(len(self.offer_ids), dtype=np.bool_)
        else:
            mask = candidates.copy()
            reasons.append("candidates")
        for a, offer in self._ruled_offers:
            if mask[a]:
                rule = offer.failed_rule(context)
                if rule is not None:
                    mask[a] = False
                    reasons.append(f"rule:{offer.id}:{rule.text}")
        costs = list(self._fixed_costs)
        for a, offer in self._share_offers:
            try:
                costs[a] = offer.cost_for(context)
            except InvalidInputError:
                costs[a] = None
                if mask[a]:
                    mask[a] = False
                    reasons.append(f"cost_unknown:{offer.id}")
        return mask, costs, reasons

    def _is_control(self, customer_id: str) -> bool:
        share = self.config.control_share
        return share > 0.0 and in_control_group(self.config.salt, customer_id, share)

    def _next_id(self) -> str:
        self._counter += 1
        return f"{self._id_prefix}{self._counter:x}"

    def decide(
        self,
        customer_id: str,
        context: Mapping[str, Any],
        candidates: Sequence[str] | None = None,
    ) -> DecisionRecord:
        """Choose the next best offer for one customer and journal the decision durably.

        Parameters
        ----------
        customer_id : str
        context : mapping of attribute name to value
            Raw attributes (see the campaign's ``[features]``; extra keys may feed rules).
        candidates : sequence of str, optional
            Offers the caller can deliver; intersected with the eligible offers.

        Returns
        -------
        DecisionRecord

        Raises
        ------
        InvalidInputError
            For a bad customer id, an unencodable context or an unknown candidate (no state
            changes).
        """
        return self.decide_batch([customer_id], [context], candidates)[0]

    def decide_batch(
        self,
        customer_ids: Sequence[str],
        contexts: Sequence[Mapping[str, Any]],
        candidates: Sequence[str] | Sequence[Sequence[str] | None] | None = None,
    ) -> list[DecisionRecord]:
        """Decide for many customers in one journal transaction.

        ``candidates`` is one list for every row, or one list (or None) per row. Guardrail state
        (budgets, caps, cooldowns) is read once at the start of the batch, so a batch can exceed
        a budget by at most its own size; the propensities are exact given that state.
        """
        self._check_open()
        n = len(customer_ids)
        if (
            isinstance(customer_ids, str)
            or not isinstance(contexts, Sequence)
            or len(contexts) != n
        ):
            raise InvalidInputError(
                "contexts", f"a list of {n} contexts (one per customer id)", type(contexts).__name__
            )
        for i, cid in enumerate(customer_ids):
            if not isinstance(cid, str) or not cid or len(cid) > 256:
                field = "customer_id" if n == 1 else f"customer_ids[{i}]"
                raise InvalidInputError(field, "a non-empty string of <= 256 characters", cid)
        for i, ctx in enumerate(contexts):
            if not isinstance(ctx, Mapping):
                field = "context" if n == 1 else f"contexts[{i}]"
                raise InvalidInputError(field, "a mapping of attribute names to values", ctx)
        row_candidates = self._row_candidates(candidates, n)
        control = [self._is_control(cid) for cid in customer_ids]
        static = [
            None if control[i] else self._static_rules(contexts[i], row_candidates[i])
            for i in range(n)
        ]
        encoder = self._encoder
        X = None if encoder.learning else self._encode(contexts, learn=False)
        with self._lock:
            self._check_open()
            if X is None:
                X = self._encode(contexts, learn=True)
                if not encoder.learning:
                    self._journal.set_meta("encoder", json.dumps(encoder.state()))
            now = self._clock()
            ts_us = int(now * 1e6)
            return self._decide_locked(customer_ids, X, control, static, now, ts_us)

    def _encode(self, contexts: Sequence[Mapping[str, Any]], learn: bool) -> FloatArray:
        if len(contexts) == 1:
            return self._encoder.encode(contexts[0], learn=learn)[None, :]
        return self._encoder.encode_batch(contexts, learn=learn)

    def _row_candidates(self, candidates: Any, n: int) -> list[BoolArray | None]:
        if candidates is None or (isinstance(candidates, Sequence) and not candidates):
            return [None] * n
        if isinstance(candidates, Sequence) and not isinstance(candidates, str):
            if all(isinstance(c, str) for c in candidates):
                shared = self._candidate_mask(candidates, "candidates")
                return [shared] * n
            if len(candidates) == n:
                return [
                    self._candidate_mask(c, f"candidates[{i}]") for i, c in enumerate(candidates)
                ]
        raise InvalidInputError(
            "candidates", "a list of offer ids, or one list per row", candidates
        )

    def _decide_locked(
        self,
        customer_ids: Sequence[str],
        X: FloatArray,
        control: list[bool],
        static: list[tuple[BoolArray, list[float | None], list[str]] | None],
        now: float,
        ts_us: int,
    ) -> list[DecisionRecord]:
        n = len(customer_ids)
        n_actions = len(self.offer_ids)
        guard = self._guardrails
        masks = np.zeros((n, n_actions), dtype=np.bool_)
        reasons: list[list[str]] = []
        for i in range(n):
            item = static[i]
            if item is None:
                reasons.append(["control_group"])
                continue
            mask, costs, why = item
            g_mask, g_why = guard.exclusions(customer_ids[i], now, costs)
            masks[i] = mask & g_mask
            reasons.append(why + g_why if g_why else why)
        asks = np.flatnonzero(masks.any(axis=1))
        policy = self._learner.published
        version = self._learner.version
        actions = np.empty(n, dtype=np.int64)
        props = np.ones(n)
        explored = np.zeros(n, dtype=np.bool_)
        scores = np.full((n, n_actions), np.nan)
        if asks.shape[0]:
            d = policy.choose(X[asks], masks[asks])
            actions[asks] = d.actions
            props[asks] = d.propensities
            explored[asks] = d.explored
            scores[asks] = d.scores
        asked = np.zeros(n, dtype=np.bool_)
        asked[asks] = True
        rows = []
        records = []
        offer_ids = self.offer_ids
        for i in range(n):
            item = static[i]
            if control[i]:
                a = self._control_index
                cost = self._safe_cost(a, None)
                eligible: tuple[str, ...] = (offer_ids[a],)
            elif not asked[i]:
                a = self._fallback_index
                reasons[i].append(f"fallback:{offer_ids[a]}")
                cost = self._safe_cost(a, item[1] if item else None)
                eligible = ()
            else:
                a = int(actions[i])
                cost = float(item[1][a] or 0.0) if item else 0.0
                eligible = tuple(offer_ids[j] for j in np.flatnonzero(masks[i]))
            actions[i] = a
            decision_id = self._next_id()
            why = tuple(reasons[i])
            rows.append(
                (
                    decision_id,
                    ts_us,
                    customer_ids[i],
                    X[i].tobytes(),
                    ",".join(eligible),
                    offer_ids[a],
                    float(props[i]),
                    int(explored[i]),
                    int(control[i]),
                    version,
                    cost,
                    scores[i].tobytes(),
                    ";".join(why) if why else None,
                    self._catalog,
                )
            )
            records.append(
                DecisionRecord(
                    decision_id,
                    offer_ids[a],
                    float(props[i]),
                    bool(explored[i]),
                    control[i],
                    version,
                    why,
                    eligible,
                    self.campaign,
                    customer_ids[i],
                    now,
                    cost,
                    scores[i],
                    offer_ids,
                )
            )
        self._journal.append_decisions(rows)
        for i in range(n):
            guard.record(customer_ids[i], now, int(actions[i]), records[i].cost)
        if self._next_due_us == math.inf:
            self._next_due_us = ts_us + self._window_us
        return records

    def _safe_cost(self, action: int, costs: list[float | None] | None) -> float:
        if costs is not None and costs[action] is not None:
            return float(costs[action] or 0.0)
        fixed = self._fixed_costs[action]
        return (
            float(fixed) if fixed is not None and not self.config.offers[action].cost_field else 0.0
        )

    # ------------------------------------------------------------------ rewards
    def reward(self, decision_id: str, value: float) -> RewardRecord:
        """Report the outcome ``value`` of a decision (idempotent on ``decision_id``).

        The learner's reward is the net reward (see ``[reward] charge_cost``): by default
        ``value - cost``. A retry returns status ``duplicate`` and changes nothing.

        Raises
        ------
        InvalidInputError
            For a non-finite or out-of-range value (nothing recorded).
        NotFoundError
            For an unknown decision id or one whose reward window has passed (recorded in the
            journal's reward_errors).
        """
        result = self.reward_batch([decision_id], [value])[0]
        if result.status in ("unknown", "expired"):
            why = "no such decision" if result.status == "unknown" else "its reward window passed"
            raise NotFoundError(
                f"decision_id: expected a pending decision of campaign {self.campaign!r}, "
                f"got {decision_id!r} ({why})"
            )
        return result

    def reward_batch(
        self, decision_ids: Sequence[str], values: Sequence[float]
    ) -> list[RewardRecord]:
        """Report many outcomes in one journal transaction.

        Unknown and expired ids do not raise here: their records say so (status ``unknown`` /
        ``expired``) and they are recorded. Bad values raise InvalidInputError before anything
        is written.
        """
        self._check_open()
        n = len(decision_ids)
        if (
            isinstance(decision_ids, str)
            or not isinstance(values, Sequence | np.ndarray)
            or len(values) != n
        ):
            raise InvalidInputError(
                "values", f"a list of {n} numbers (one per decision id)", values
            )
        clean: list[float] = []
        for i, (did, value) in enumerate(zip(decision_ids, values, strict=True)):
            if not isinstance(did, str) or not did:
                raise InvalidInputError(
                    "decision_id" if n == 1 else f"decision_ids[{i}]", "a non-empty string", did
                )
            field = "value" if n == 1 else f"values[{i}]"
            if isinstance(value, bool) or not isinstance(value, _NUMBER):
                raise InvalidInputError(field, "a finite number", value)
            number = float(value)
            if not math.isfinite(number) or abs(number) > VALUE_LIMIT:
                raise InvalidInputError(
                    field, f"a finite number with |value| <= {VALUE_LIMIT:g}", value
                )
            clean.append(number)
        with self._lock:
            self._check_open()
            now = self._clock()
            results = self._reward_locked(list(decision_ids), clean, now)
            if now * 1e6 >= self._next_due_us:
                self._expire_locked(now)
        self._learner.apply()
        return results

    def _reward_locked(self, ids: list[str], values: list[float], now: float) -> list[RewardRecord]:
        now_us = int(now * 1e6)
        stored = self._journal.lookup(ids)
        results: list[RewardRecord] = []
        rows: list[tuple[Any, ...]] = []
        learn: list[tuple[StoredDecision, float]] = []
        errors: list[tuple[int, str, float | None, str]] = []
        taken: dict[str, RewardRecord] = {}
        for did, value in zip(ids, values, strict=True):
            s = stored.get(did)
            if did in taken:
                first = taken[did]
                results.append(
                    RewardRecord(did, "duplicate", first.offer_id, first.value, first.reward)
                )
                continue
            if s is None:
                results.append(RewardRecord(did, "unknown", "", value, None))
                errors.append((now_us, did, value, "unknown decision id"))
                continue
            if s.reward_source == "reward":
                results.append(RewardRecord(did, "duplicate", s.action, None, s.reward))
                continue
            if s.reward_source is not None or s.ts_us + self._window_us <= now_us:
                if s.reward_source is None:
                    self._expire_rows([s], now_us, rows, learn)
                results.append(RewardRecord(did, "expired", s.action, value, None))
                errors.append((now_us, did, value, "reward window passed"))
                continue
            index = self._index.get(s.action)
            action = index if index is not None else -1
            net = (
                self.config.net_reward(action, s.cost, value)
                if index is not None
                else value - s.cost
            )
            record = RewardRecord(did, "applied", s.action, value, net)
            taken[did] = record
            results.append(record)
            rows.append((did, s.seq, now_us, value, net, "reward"))
            learn.append((s, net))
        self._commit_rewards(rows, learn)
        self._journal.record_errors(errors)
        return results

    def _expire_rows(
        self,
        due: list[StoredDecision],
        now_us: int,
        rows: list[tuple[Any, ...]],
        learn: list[tuple[StoredDecision, float]],
    ) -> None:
        default = self.config.default_value
        for s in due:
            net = None
            index = self._index.get(s.action)
            if default is not None:
                net = self.config.net_reward(index if index is not None else -1, s.cost, default)
                learn.append((s, net))
            rows.append((s.decision_id, s.seq, now_us, default, net, "expired"))

    def _commit_rewards(
        self, rows: list[tuple[Any, ...]], learn: list[tuple[StoredDecision, float]]
    ) -> None:
        seqs = self._journal.append_rewards(rows)
        if not learn:
            return
        by_id = {row[0]: seq for row, seq in zip(rows, seqs, strict=True)}
        items: list[LearnItem] = []
        width = 8 * self.n_features
        for s, net in learn:
            index = self._index.get(s.action)
            if index is None or len(s.context) != width:
                continue  # an offer since removed, or a context from another schema
            items.append((by_id[s.decision_id], s.context, index, s.propensity, net))
        items.sort(key=lambda item: item[0])
        self._learner.enqueue(items)

    def expire_pending(self, now: float | None = None) -> int:
        """Close every decision whose reward window has passed by ``now`` (default: the clock).

        Each gets the configured default reward (or none) and later rewards for it are rejected
        as expired. Returns the number of decisions expired.
        """
        self._check_open()
        with self._lock:
            count = self._expire_locked(self._clock() if now is None else float(now))
        self._learner.apply()
        return count

    def _expire_locked(self, now: float) -> int:
        now_us = int(now * 1e6)
        cutoff = now_us - self._window_us
        total = 0
        while True:
            due, reached = self._journal.due_for_expiry(self._expiry_seq, cutoff, limit=4096)
            if reached == self._expiry_seq:
                break
            rows: list[tuple[Any, ...]] = []
            learn: list[tuple[StoredDecision, float]] = []
            self._expire_rows(due, now_us, rows, learn)
            self._commit_rewards(rows, learn)
            total += len(due)
            self._expiry_seq = reached
        self._journal.set_meta("expiry_seq", str(self._expiry_seq))
        self._next_due_us = self._compute_next_due()
        self._guardrails.prune(now)
        return total

    # ------------------------------------------------------------------ model
    def snapshot(self) -> str:
        """Apply every journaled reward, publish, write a snapshot file; return its version."""
        self._check_open()
        self._learner.header["encoder"] = self._encoder.state()
        self._learner.apply()
        return self._learner.checkpoint()

    def load_snapshot(self, path: str | Path) -> str:
        """Warm start / promote: make the model in a snapshot file the published model.

        The snapshot must be over the same features; its offers are mapped onto the campaign's
        (removed offers dropped, new ones added). Returns the new model version.

        Raises
        ------
        CorruptModelError
            When the file fails its checksum or does not fit this campaign.
        """
        self._check_open()
        header, policy = read_snapshot(path)
        check_compatible(header, policy, self.feature_names, str(path))
        adapt_offers(
            policy,
            header.get("offer_ids") or list(self.offer_ids),
            self.offer_ids,
            self._offer_features(),
        )
        state = header.get("encoder")
        if state:
            with self._lock:
                try:
                    self._encoder.load_state(state)
                except CorruptModelError:
                    pass  # a model trained under another standardization keeps ours
                self._learner.header["encoder"] = self._encoder.state()
        return self._learner.install(policy, origin=str(path))

    @property
    def policy(self) -> Policy:
        """The published model (do not modify: it is shared with concurrent decisions)."""
        return self._learner.published

    def lift(self, level: float = 0.95) -> Lift:
        """Incremental net reward per decision of the policy over the control group, with a
        confidence interval (see :mod:`engine.journal.lift`)."""
        return lift_from_journal(self._journal, level=level)

    # ------------------------------------------------------------------ lifecycle
    def _background(self) -> None:
        interval = max(0.01, min(self.config.publish_every_ms / 2000.0, 0.5))
        while not self._stop.wait(interval):
            try:
                self._learner.apply()
                if self._clock() * 1e6 >= self._next_due_us:
                    with self._lock:
                        if not self._closed:
                            self._expire_locked(self._clock())
            except Exception:  # keep serving; the next tick retries
                continue

    def close(self) -> None:
        """Stop background work, apply pending rewards, write a snapshot, close the journal."""
        if self._closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._learner.header["encoder"] = self._encoder.state()
        self._learner.apply()
        if self.data_dir is not None:
            self._learner.checkpoint()
        with self._lock:
            self._closed = True
            self._journal.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The Engine: decide / reward / snapshot for one campaign, joining features, campaign rules,
the policy, the durable journal and the learner. No gRPC here (engine/serving wraps it).

One decision: encode the context -> control group? -> eligibility (candidates, rules, costs,
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
>>> again = eng.decide("c42", {"tenure_months": 30, "monthly_price": 50.0, "plan": "basic"},
...                    request_id="req-1")
>>> eng.decide("c42", {"tenure_months": 30, "monthly_price": 50.0, "plan": "basic"},
...            request_id="req-1").decision_id == again.decision_id  # a retried request
True
>>> eng.close()
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np

from engine.assembly import Choice, DecisionAssembler, Screened, stored_record
from engine.campaign import CampaignConfig, Guardrails, control_flags, load_campaign
from engine.campaign.eligibility import Eligibility
from engine.errors import (
    FailedPreconditionError,
    InvalidInputError,
    NboError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
)
from engine.features import Encoder
from engine.features.columns import Columns, gather
from engine.journal.backends import open_journal
from engine.journal.base import DuplicateError, JournalBackend, StaleModelError
from engine.journal.compact import compact_journal
from engine.journal.export import DIMENSIONS_META
from engine.journal.files import private_dir, read_regular, resolve_inside
from engine.journal.follower import MODEL_WAIT_SECONDS, ModelFollower
from engine.journal.learner import Learner
from engine.journal.lift import Lift, lift_from_journal
from engine.journal.monitor import MonitorStatus, shadow_reason, version_of
from engine.journal.records import DecisionRecord, RequestRow, RewardRecord
from engine.journal.recovery import load_encoder, restore_guardrails
from engine.journal.registry import ModelVersion, version_number
from engine.journal.rewards import RewardLedger
from engine.journal.schema import VERSION_KEY
from engine.journal.snapshot import ModelShape
from engine.lifecycle import GateFunction, ModelChange, ModelLifecycle, PromoteOptions
from engine.policies import Policy
from engine.requests import (
    CandidateMasks,
    baseline_actions,
    check_components,
    check_decide_request,
    check_rewards,
    logging_probabilities,
    request_hash,
)
from engine.rollout import Rollout, RolloutState
from engine.seat import ROLES, GuardrailSync, Seat, check_role
from engine.types import FloatArray
from engine.upkeep import Upkeep
from engine.validation import ID_RULE, check_id, first_bad_id, valid_ids

__all__ = ["ROLES", "DecisionRecord", "Engine", "EngineOptions", "ModelChange", "RewardRecord"]


_SWEEP_ROWS = 8192  # decisions an expiry sweep scans per hold of the decision lock
_log = logging.getLogger("nbo.engine")
_models_log = logging.getLogger("nbo.models")


class EngineOptions(TypedDict, total=False):
    """The keyword arguments of :class:`Engine` (defaults there), which
    :meth:`Engine.from_config` passes on as they came."""

    journal_url: str | None
    clock: Callable[[], float] | None
    background: bool | None
    reset_model: bool
    model_dir: str | Path | None
    role: str
    model_wait: float


class Engine:
    """Next-best-offer engine of one campaign.

    Parameters
    ----------
    config : CampaignConfig
    data_dir : str or Path or None
        Holds ``<campaign>.journal.sqlite``, ``snapshots/<campaign>/`` and
        ``models/<campaign>/``; created
        owner-only. An existing one is refused (PermissionDeniedError naming it and why) unless
        it belongs to this process's user and is neither group- nor world-writable. None keeps
        the journal in memory (nothing durable: for benchmarks and throwaway runs).
    journal_url : str, optional
        Where the journal is instead (see :mod:`engine.journal.backends`): a path,
        ``sqlite:///path`` or ``postgresql://user@host:port/db``, shared by every replica of the
        campaign. Default: the campaign file's ``[journal] url``, else the data dir's file.
    clock : callable returning unix seconds, optional
        Injected time (simulations with lags). Default ``time.time``.
    background : bool, optional
        Run a thread that publishes on the ``publish_every_ms`` cadence, expires pending
        decisions, checkpoints the WAL and writes snapshots. Default: True with the real clock,
        False with an injected clock (then the caller drives time: :meth:`expire_pending`,
        :meth:`snapshot`; rewards also trigger due sweeps and time-based publishing).
    reset_model : bool
        When the stored model cannot serve the campaign's features (a feature change), start
        a fresh model that learns from the journal's rewards under the new features instead
        of refusing to start (``nbo serve --reset-model``). Ignored when the model fits.
    model_dir : str or Path or None
        The campaign's model directory, the only place :meth:`promote` takes model files
        from. Default ``<data_dir>/models/<campaign>/`` (created owner-only): one directory per
        campaign, so a file put there for one campaign cannot be promoted into another that
        happens to have the same offers and features (one admin token serves every campaign of
        a server). None without a data directory: nothing can be promoted.
    role : {"all", "decide", "learn"}
        ``all`` (default): decide and learn in this process, the campaign's only learner (it
        takes the journal's learner lock, :mod:`engine.journal.leader`; refused while another
        process holds it). ``decide``: a replica on a shared journal that decides on the newest
        model the learner published (:mod:`engine.journal.follower`) and journals rewards for
        the learner; it never writes the registry. ``learn``: the campaign's learner without
        decisions: it leads when it gets the lock (applies every replica's rewards in journal
        order, publishes each version with its bytes, expires decisions), else stands by and
        takes over within about a second of the leader's death.
    model_wait : float
        ``decide`` (and a standby ``learn``): seconds to wait at start for a first published
        model.

    Notes
    -----
    Thread-safe. One lock orders decisions and journal writes; the learner has its own, so a
    decision never waits for learning.
    """

    def __init__(
        self,
        config: CampaignConfig,
        data_dir: str | Path | None = "nbo-data",
        *,
        journal_url: str | None = None,
        clock: Callable[[], float] | None = None,
        background: bool | None = None,
        reset_model: bool = False,
        model_dir: str | Path | None = None,
        role: str = "all",
        model_wait: float = MODEL_WAIT_SECONDS,
    ) -> None:
        self.role = check_role(role)  # before anything is opened
        self.config = config
        self.campaign = config.name
        self.offer_ids = config.offer_ids
        #: What a request's candidates may name: the offer ids, and with dimensions each offer
        #: and ``<dimension>=<value>`` (engine.requests.CandidateMasks).
        self.candidate_names = self.offer_ids + tuple(config.candidate_groups())
        self._clock = clock if clock is not None else time.time
        self._lock = threading.RLock()
        self._closed = False
        self.data_dir = None if data_dir is None else Path(data_dir)
        snapshot_dir: Path | None = None
        if self.data_dir is not None:
            private_dir(self.data_dir, "data_dir")
            snapshot_dir = private_dir(self.data_dir / "snapshots", "data_dir") / config.name
            private_dir(snapshot_dir, "data_dir")
            if model_dir is None:  # the campaign's own, as its snapshots are
                model_dir = private_dir(self.data_dir / "models", "model_dir") / config.name
        self.model_dir = None if model_dir is None else private_dir(Path(model_dir), "model_dir")
        self._request_window_us = int(config.request_window * 1e6)
        run_background = background if background is not None else clock is None
        self._journal = open_journal(
            journal_url or config.journal_url,
            campaign=config.name,
            data_dir=self.data_dir,
            synchronous=config.synchronous,
            autocheckpoint=not run_background,
            cache_mib=config.cache_mib,
        )
        if config.dimensions and role != "decide":  # export's columns (decide: read-only)
            names = json.dumps(list(config.dimension_names))
            if self._journal.get_meta(DIMENSIONS_META) != names:
                self._journal.set_meta(DIMENSIONS_META, names)
        self._encoder = Encoder(config.schema)
        self.feature_names = self._encoder.feature_names
        self.n_features = self._encoder.n_features
        self._index = {o: i for i, o in enumerate(self.offer_ids)}
        self._candidates = CandidateMasks(self.offer_ids, config.candidate_groups())
        self._assembler = DecisionAssembler(
            config.name,
            self.offer_ids,
            config.offer_index(config.control_offer),
            config.offer_index(config.fallback_offer),
            self._journal.catalog(config.name, self.offer_ids, self.feature_names),
            config.dimension_names,
        )
        self._eligibility = Eligibility(config)
        self._attributes = tuple(
            dict.fromkeys(self._encoder.attribute_names + self._eligibility.fields)
        )
        self._guardrails = Guardrails(config)
        try:
            self._seat = Seat(
                role,
                config,
                self._journal,
                self._encoder,
                snapshot_dir,
                self._lock,
                self._clock,
                reset_model=reset_model,
                model_wait=model_wait,
            )
        except BaseException:
            self._journal.close()
            raise
        # Decisions other processes journal reach this one's guardrails on each upkeep tick;
        # those up to this seq are in the restored state.
        self._sync: GuardrailSync | None = None
        if role != "learn":
            if self._guardrails.active:
                self._sync = GuardrailSync(
                    self._journal,
                    self._guardrails,
                    self._index,
                    self._lock,
                    self._journal.counts()["decisions"],
                )
            restore_guardrails(self._journal, self._guardrails, config, self._clock())
        self._lifecycle = ModelLifecycle(
            config, self._journal, self._encoder, self._seat, self._lock
        )
        self._ledger = RewardLedger(config, self._journal)
        self._rollout = Rollout(
            config, self._journal, version_of(self._learner.version) or 1, self._clock
        )
        self._logging_rng = np.random.default_rng(config.policy.get("seed"))
        self._compactions = 0
        self._upkeep: Upkeep | None = None
        if run_background:
            self._upkeep = Upkeep(
                config.name,
                max(0.01, min(config.publish_every_ms / 2000.0, 0.5)),
                apply=self._tick,
                checkpoint=self._journal.checkpoint,
                expiry_due=self._expiry_due,
                expire=self.expire_pending,
                prune=self._prune_requests,
                compact=self.compact if self._retains else None,
            )
            self._upkeep.start()

    @property
    def _learner(self) -> Learner | ModelFollower:
        """The campaign's model as this process sees it (see :mod:`engine.seat`)."""
        return self._seat.model

    @property
    def leading(self) -> bool:
        """Whether this process is the campaign's learner now (role all, or the leading learn
        process)."""
        return self._seat.leading

    def _tick(self) -> None:
        """One upkeep tick: keep or take the leadership, learn (or follow), count the other
        processes' decisions into the guardrails."""
        self._seat.tick()
        if self._sync is not None:
            self._sync.sync()
        self.watch()

    def sync_guardrails(self) -> int:
        """Count the decisions other processes journaled since the last call into this one's
        budgets, traffic caps, frequency caps and cooldowns (the upkeep does it every tick);
        returns how many (see :class:`engine.seat.GuardrailSync`)."""
        return 0 if self._sync is None else self._sync.sync()

    def reachable(self) -> bool:
        """Whether the journal answers now (one cheap read): a replica that lost its database
        reports NOT_SERVING on it."""
        try:
            self._journal.get_meta(VERSION_KEY)
        except NboError:
            return False
        return True

    def _require_role(self, what: str, *roles: str) -> None:
        if self.role not in roles:
            raise FailedPreconditionError(
                f"campaign {self.campaign}: expected a server that can {what} (--role "
                f"{' or '.join(roles)}), got one serving with --role {self.role}"
            )

    def refresh_model(self) -> bool:
        """A replica: load the newest published model now (the upkeep does it every quarter
        second); True when a newer one was loaded. A learner: apply journaled rewards and
        publish when due; a standby learner asks for the lock first. False."""
        return self._seat.refresh()

    @classmethod
    def from_config(
        cls,
        path: str | Path,
        data_dir: str | Path | None = "nbo-data",
        **options: Unpack[EngineOptions],
    ) -> Engine:
        """Load a campaign TOML file (see :mod:`engine.campaign.config`) and start its engine
        (``data_dir`` and the keyword ``options``: the Engine's parameters)."""
        return cls(load_campaign(path), data_dir, **options)

    # ------------------------------------------------------------------ information
    @property
    def model_version(self) -> str:
        """Version of the published model decisions currently use."""
        return self._learner.version

    @property
    def policy(self) -> Policy:
        """The published model (do not modify: it is shared with concurrent decisions)."""
        return self._learner.published

    @property
    def journal(self) -> JournalBackend:
        """The campaign's journal (read access for exports and reports)."""
        return self._journal

    def model_info(self) -> dict[str, Any]:
        """Published model, campaign and journal facts (for admin endpoints)."""
        learner = self._learner
        params = learner.published.get_params()
        live = learner.registry.get(learner.number)
        status = self.rollout_status()
        return {
            "campaign": self.campaign,
            "model_version": live.version,
            "role": self.role,
            "leading": self.leading,
            "kind": live.kind,
            "origin": live.origin,
            "parent": live.parent,
            "created": live.created,
            "policy": type(learner.published).__name__,
            "policy_params": {
                k: v for k, v in params.items() if v is None or isinstance(v, str | int | float)
            },
            "n_rewards_applied": learner.n_applied,
            "last_reward_seq": learner.last_published_seq,
            "config_hash": self.config.config_hash,
            "offer_ids": list(self.offer_ids),
            "feature_names": list(self.feature_names),
            "journal": self._journal.counts(),
            "data_dir": None if self.data_dir is None else str(self.data_dir),
            "model_dir": None if self.model_dir is None else str(self.model_dir),
            # Request attributes the campaign does not declare, with how often they came.
            "undeclared_attributes": self._encoder.undeclared_attributes(),
            "rollout": {
                **dataclasses.asdict(self._rollout.state),
                "control": self.config.control,
                "monitor": None if status is None else status.to_dict(),
            },
        }

    # ------------------------------------------------------------------ rollout
    def rollout_state(self) -> RolloutState:
        """The campaign's mode and state now (see :mod:`engine.rollout`)."""
        return self._rollout.state

    def rollout_history(self) -> list[RolloutState]:
        """Every recorded mode change and rollback, oldest first."""
        return self._rollout.history()

    def rollout_status(self) -> MonitorStatus | None:
        """The lift monitor's status (lift, its anytime-valid bound, spend, shadow agreement)
        in the leading learner, counted up to the rewards journaled now; None elsewhere."""
        if not self.leading:
            return None
        with self._learner.lock:
            return self._rollout.read()

    def set_mode(self, mode: str, *, who: str = "", reason: str = "") -> RolloutState:
        """Set the campaign's mode (``online``, ``shadow`` or ``logging``), journaled for every
        replica; resumes a rolled-back campaign. The monitor counts again from now.

        Raises
        ------
        InvalidInputError
            For an unknown mode.
        FailedPreconditionError
            In a process that is not the campaign's leading learner.
        """
        self._check_open()
        self._seat.require_learner("set the campaign's mode")
        with self._learner.lock:
            return self._rollout.set_mode(
                mode, version_of(self._learner.version), who=who, reason=reason
            )

    def watch(self) -> RolloutState:
        """One look of the rollout watch (the upkeep looks every tick; an engine without one
        after every reward batch): a replica reads the mode the journal holds; the leading
        learner counts the new rewards and rolls the policy back when the lift's
        anytime-valid bound or a rollout guardrail says so. Returns the state after it."""
        rollout = self._rollout
        if not self.leading:
            rollout.refresh()
            return rollout.state
        with self._learner.lock:
            rollout.refresh()
            if not rollout.watching:
                return rollout.state
            status = rollout.read()
            why = rollout.breach(status)
            if why is None:
                return rollout.state
            safe = self.config.rollout.safe_mode
            if safe == "previous_model":
                safe = self._restore_previous(rollout.state.epoch)
            return rollout.roll_back(why, status, safe)

    def _restore_previous(self, epoch: int) -> str:
        """Make the model live before the epoch's promotion live again; the safe mode that
        results (``control`` when there is no such model)."""
        try:
            row = self._learner.registry.get(epoch)
        except NboError:
            return "control"
        if row.kind not in ("promoted", "rollback") or not row.parent:
            return "control"
        try:
            self._lifecycle.rollback(row.parent, who="monitor")
        except NboError as exc:
            _log.error(
                "campaign %s: previous model %s not restored: %s", self.campaign, row.parent, exc
            )
            return "control"
        return "previous_model"

    def budgets(self) -> dict[str, dict[str, float | None]]:
        """Per offer (or dimension value, ``channel=call``) with a budget: ``used_<unit>`` and
        ``limit_<unit>`` for the units count, money, count_per_day and money_per_day, as this
        process counts them (every process's decisions, synced each upkeep tick)."""
        with self._lock:
            return self._guardrails.budgets(self._clock())

    def prepare(self) -> None:
        """Warm the policy's kernels (compile or load from cache) before taking traffic."""
        self._learner.published.prepare()

    def lift(self, level: float = 0.95) -> Lift:
        """Incremental net reward per decision of the policy over the control group, with a
        confidence interval (see :mod:`engine.journal.lift`)."""
        return lift_from_journal(self._journal, level=level)

    # ------------------------------------------------------------------ decisions
    def decide(
        self,
        customer_id: str,
        context: Mapping[str, Any],
        candidates: Sequence[str] | None = None,
        request_id: str | None = None,
        *,
        baseline_offer: str | None = None,
        probabilities: Mapping[str, float] | None = None,
        defer_activation: bool = False,
    ) -> DecisionRecord:
        """Choose the next best offer for one customer and journal the decision durably.

        Parameters
        ----------
        customer_id : str
        context : mapping of attribute name to value
            Raw attributes (see the campaign's ``[features]``; extra keys may feed rules).
        candidates : sequence of str, optional
            Offers the caller can deliver; intersected with the eligible offers.
        request_id : str, optional
            The client's id of this request. A retry with the same id within the campaign's
            ``[journal] request_window_hours`` (even after a restart) returns the original
            decision and changes nothing: no second decision, no second budget or cap charge.
        baseline_offer : str, optional
            The offer the caller's current rule (business as usual) would give. Required in
            shadow mode (everyone gets it), and for the control group with ``[campaign] control
            = "baseline"`` (see :mod:`engine.rollout`).
        probabilities : mapping of offer id to probability, optional
            Logging mode: the caller's policy's probabilities of the offers; nbo samples the
            offer from them (over the eligible offers) and journals its exact propensity.
        defer_activation : bool
            Journal the decision inactive: it counts nowhere (learning, lift, budgets and caps,
            the export) until :meth:`activate` says its offer was delivered, and lapses
            unlearned at the end of its reward window if it never is.

        Returns
        -------
        DecisionRecord

        Raises
        ------
        InvalidInputError
            For a bad customer id, an unencodable context or an unknown candidate, or a request
            id already used within the window by a different request; for a missing or unknown
            baseline offer where the mode needs one, or bad probabilities (no state changes).
        """
        return self.decide_batch(
            [customer_id],
            [context],
            candidates,
            request_id=request_id,
            baseline_offers=baseline_offer,
            probabilities=probabilities,
            defer_activation=defer_activation,
        )[0]

    def decide_batch(
        self,
        customer_ids: Sequence[str],
        contexts: Sequence[Mapping[str, Any]],
        candidates: Sequence[str] | Sequence[Sequence[str] | None] | None = None,
        request_id: str | None = None,
        *,
        baseline_offers: str | Sequence[str | None] | None = None,
        probabilities: Any = None,
        defer_activation: bool = False,
    ) -> list[DecisionRecord]:
        """Decide for many customers in one journal transaction.

        ``candidates`` is one list for every row, or one list (or None) per row. Guardrail state
        (budgets, caps, cooldowns) is read once at the start of the batch, so a batch can exceed
        a budget by at most its own size; the propensities are exact given that state.
        ``request_id`` names the whole batch: a retry gets every row back as it was (see
        :meth:`decide`). ``baseline_offers`` (one id for every row, or one per row) and
        ``probabilities`` (one mapping for every row, or one per row) and ``defer_activation``
        (the whole batch) as in :meth:`decide`.
        """
        self._check_open()
        self._require_role("decide", "all", "decide")
        check_decide_request(customer_ids, contexts)
        n = len(customer_ids)
        row_candidates = self._candidates.rows(candidates, n)
        baselines = baseline_actions(baseline_offers, n, self._index, self.offer_ids)
        probs = logging_probabilities(probabilities, n, self._index, self.offer_ids)
        request = None
        if request_id is not None:
            check_id("request_id", request_id)
            extra: Any = candidates
            if baselines is not None or probs is not None or defer_activation:
                extra = [candidates, baseline_offers, probabilities, bool(defer_activation)]
            request = (request_id, request_hash(customer_ids, contexts, extra))
        if n == 0:
            return []
        control = control_flags(self.config.salt, customer_ids, self.config.control_share)
        state = self._rollout.state
        self._check_mode_inputs(state, control, baselines, probs)
        # The attributes the rules and the encoder read, gathered in one pass over the contexts.
        columns = gather(contexts, self._attributes) if n > 1 else None
        masks, costs, reasons = self._eligibility.evaluate(
            contexts, row_candidates, control, columns=columns
        )
        encoder = self._encoder
        X = None if encoder.learning else self._encode(contexts, False, columns)
        with self._lock:
            self._check_open()
            now = self._clock()
            if request is not None:  # looked up under the lock: a concurrent retry waits here
                done = self._replay(request, now)
                if done is not None:
                    return done
            if X is None:
                X = self._encode(contexts, True, columns)
                if not encoder.learning:  # just froze: keep the statistics for restarts
                    self._save_encoder()
            control_actions = baselines if self.config.control == "baseline" else None
            batch = Screened(customer_ids, X, control, masks, costs, reasons, control_actions)
            return self._decide_locked(
                batch, now, request, state, baselines, probs, bool(defer_activation)
            )

    def _save_encoder(self) -> None:
        state = json.dumps(self._encoder.state())
        if self.role != "decide":
            self._journal.set_meta("encoder", state)
            return
        # Replicas: the first to freeze its statistics decides for all (every replica then
        # encodes alike, and the learner learns from contexts encoded one way).
        stored = self._journal.set_meta_once("encoder", state)
        if stored != state:
            load_encoder(self._encoder, stored)

    def _encode(
        self, contexts: Sequence[Mapping[str, Any]], learn: bool, columns: Columns | None
    ) -> FloatArray:
        if len(contexts) == 1:
            return self._encoder.encode(contexts[0], learn=learn)[None, :]
        return self._encoder.encode_batch(contexts, learn=learn, columns=columns)

    def _check_mode_inputs(
        self,
        state: RolloutState,
        control: list[bool],
        baselines: np.ndarray | None,
        probs: np.ndarray | None,
    ) -> None:
        """Refuse a request that lacks what the campaign's mode needs (before any state)."""
        baseline_control = self.config.control == "baseline"
        if state.mode == "online" and not baseline_control:
            return  # the common case: nothing is needed from the caller
        n = len(control)
        if state.mode == "shadow":
            need, why = [True] * n, "shadow mode serves it"
        elif baseline_control and state.serves_control:
            need, why = [True] * n, "the campaign is rolled back to the control"
        elif baseline_control:
            need, why = control, "the control group gets the caller's baseline"
        else:  # logging, with the static control offer
            need, why = [False] * n, ""
        for i, needed in enumerate(need):
            if needed and (baselines is None or baselines[i] < 0):
                field = "baseline_offer" if n == 1 else f"baseline_offers[{i}]"
                raise InvalidInputError(
                    field,
                    f"the caller's offer id (campaign {self.campaign}: {why})",
                    "none",
                )
        if state.mode == "logging" and not state.serves_control:
            for i in range(n):
                if not control[i] and (probs is None or np.isnan(probs[i, 0])):
                    field = "probabilities" if n == 1 else f"probabilities[{i}]"
                    raise InvalidInputError(
                        field,
                        f"the caller's probabilities of the offers (campaign {self.campaign} "
                        "is in logging mode)",
                        "none",
                    )

    def _decide_locked(
        self,
        batch: Screened,
        now: float,
        request: tuple[str, str] | None = None,
        state: RolloutState | None = None,
        baselines: np.ndarray | None = None,
        probs: np.ndarray | None = None,
        deferred: bool = False,
    ) -> list[DecisionRecord]:
        guard = self._guardrails
        if guard.active:
            guard.apply_batch(
                batch.customer_ids, now, batch.costs, batch.masks, batch.reasons, batch.control
            )
        version = self._learner.version
        choice = self._assembler.choose(self._learner.published, batch)
        if state is not None and (state.mode != "online" or state.serves_control):
            batch, choice = self._serve_mode(state, batch, choice, baselines, probs)
        done = self._assembler.assemble(batch, choice, version, now, deferred=deferred)
        if request is None:
            seqs = self._journal.append_decisions(done.rows)
        else:
            row = RequestRow(request[0], self.campaign, done.ts_us, request[1])
            try:
                seqs = self._journal.append_request(row, done.rows)
            except DuplicateError:
                # Another process sharing the journal stored this request first: its decisions
                # are the answer (nothing of ours was stored or charged).
                replayed = self._replay(request, now)
                if replayed is None:
                    raise
                return replayed
        if not deferred:  # a deferred decision counts from its activation (see activate)
            guard.record_batch(batch.customer_ids, now, done.actions, done.costs)
            if self._sync is not None:
                self._sync.note(seqs)
        self._ledger.note_decision(done.ts_us)
        return done.records

    def _serve_mode(
        self,
        state: RolloutState,
        batch: Screened,
        choice: Choice,
        baselines: np.ndarray | None,
        probs: np.ndarray | None,
    ) -> tuple[Screened, Choice]:
        """The batch and choice as the mode serves them (see :mod:`engine.rollout`): the
        baseline with nbo's choice logged beside it (shadow), a draw from the caller's
        probabilities (logging), or the control for everyone (rolled back to the control).
        A served offer the policy did not draw has propensity 1 and is the row's only
        eligible offer, which is what the journal must say of a deterministic logger."""
        n = len(batch.customer_ids)
        offer_ids = self.offer_ids
        actions = choice.actions.copy()
        props = choice.propensities.copy()
        explored = choice.explored.copy()
        masks = batch.masks.copy()
        reasons = batch.reasons
        rows = np.arange(n)
        if state.mode == "shadow" or state.serves_control:
            if state.mode == "shadow":  # everyone gets the baseline
                served, mark = baselines, None
            else:  # everyone gets what the control group gets
                served = batch.control_actions
                if served is None:
                    served = np.full(n, self._assembler.control_index, dtype=np.int64)
                mark = "rolled_back"
            assert served is not None  # checked by _check_mode_inputs
            for i in rows.tolist():
                if mark is not None:
                    reasons[i].append(mark)
                elif choice.asked[i]:
                    reasons[i].append(shadow_reason(offer_ids[actions[i]], float(props[i])))
            actions = served.copy()
            props[:] = 1.0
            explored[:] = False
            masks[:] = False
            masks[rows, actions] = True
        else:  # logging: the caller's probabilities over the eligible offers
            assert probs is not None
            for i in np.flatnonzero(choice.asked).tolist():
                p = np.where(masks[i], probs[i], 0.0)
                total = float(p.sum())
                reasons[i].append("logging")
                if total <= 0.0:  # no eligible offer has probability: the fallback
                    actions[i] = self._assembler.fallback_index
                    props[i] = 1.0
                    masks[i] = False
                    masks[i, actions[i]] = True
                    reasons[i].append(f"fallback:{offer_ids[actions[i]]}")
                else:
                    p /= total
                    a = int(self._logging_rng.choice(len(p), p=p))
                    actions[i], props[i] = a, float(p[a])
                explored[i] = False
        screened = batch._replace(masks=masks, reasons=reasons)
        served_choice = choice._replace(actions=actions, propensities=props, explored=explored)
        return screened, served_choice

    def _replay(self, request: tuple[str, str], now: float) -> list[DecisionRecord] | None:
        """The records of a request already journaled within the window, or None."""
        request_id, digest = request
        found = self._journal.find_request(self.campaign, request_id)
        if found is None:
            return None
        cutoff_us = int(now * 1e6) - self._request_window_us
        if found.request.ts_us < cutoff_us:  # past its window: the id may be used again
            self._journal.prune_requests(cutoff_us)
            return None
        if found.request.request_hash != digest:
            hours = self.config.request_window / 3600.0
            raise InvalidInputError(
                "request_id",
                f"a new id, or the id of an identical request within {hours:g} h (a retry)",
                f"{request_id!r}, already used by a request with other customers, contexts or "
                "candidates",
            )
        catalogs: dict[int, tuple[str, ...]] = {self._assembler.catalog: self.offer_ids}
        records = []
        for row in found.decisions:
            if row.catalog not in catalogs:
                catalogs[row.catalog] = tuple(self._journal.catalogs()[row.catalog][1])
            records.append(
                stored_record(
                    row, self.campaign, catalogs[row.catalog], self.config.dimension_names
                )
            )
        return records

    @property
    def _retains(self) -> bool:
        return self.config.retention_days is not None and self.data_dir is not None

    def compact(self) -> int:
        """One retention step now (``[journal] retention_days``; the upkeep of the leading
        learner runs one about every minute): at most 4,096 old closed decisions to
        ``<data_dir>/archive/`` (see :mod:`engine.journal.compact`; no engine lock is held:
        each step is one short journal transaction). Returns how many moved; 0 without
        ``retention_days``, without a data directory, or in a process that does not lead."""
        if not (self.leading and self._retains):
            return 0
        assert self.config.retention_days is not None and self.data_dir is not None
        self._compactions += 1
        report = compact_journal(
            self._journal,
            self.config,
            self._clock(),
            self.data_dir / "archive",
            self.config.retention_days,
            batch_rows=4096,
            max_steps=1,
            reclaim=self._compactions % 60 == 0,
        )
        return report.archived

    def _prune_requests(self) -> int:
        """Forget request ids whose window has passed (the upkeep of the leading learner
        calls this)."""
        if not self.leading:
            return 0
        return self._journal.prune_requests(int(self._clock() * 1e6) - self._request_window_us)

    # ------------------------------------------------------------------ rewards
    def reward(
        self, decision_id: str, value: float, components: Mapping[str, float] | None = None
    ) -> RewardRecord:
        """Report the outcome ``value`` of a decision (idempotent on ``decision_id``).

        The learner's reward is the net reward (see ``[reward] charge_cost``): by default
        ``value - cost``. A retry returns status ``duplicate`` and changes nothing.
        ``components`` (name -> number, e.g. ``{"complaints": 1.0}``) are journaled with the
        reward; ``[rollout] max_components`` guards their mean per policy decision.

        Raises
        ------
        InvalidInputError
            For a non-finite or out-of-range value (nothing recorded).
        NotFoundError
            For an unknown decision id or one whose reward window has passed (recorded in the
            journal's reward_errors).
        """
        parts = None if not components else [components]
        result = self.reward_batch([decision_id], [value], parts)[0]
        refusal = self.reward_refusal(result)
        if refusal is not None:
            raise refusal
        return result

    def reward_refusal(self, record: RewardRecord) -> NboError | None:
        """The error :meth:`reward` raises for a record of :meth:`reward_batch` (None when it
        was applied or a duplicate): NotFoundError for an unknown or expired decision,
        FailedPreconditionError for a deferred one not activated."""
        decision_id = record.decision_id
        if record.status == "inactive":
            return FailedPreconditionError(
                f"decision_id: expected an activated decision of campaign {self.campaign!r}, "
                f"got {decision_id!r}, decided with defer_activation and not activated (call "
                "Activate when its offer is delivered; a decision never activated is not "
                "learned from)"
            )
        if record.status in ("unknown", "expired"):
            expected = f"a pending decision of campaign {self.campaign!r}"
            return self._missing(decision_id, record.status, expected)
        return None

    def _missing(self, decision_id: str, status: str, expected: str) -> NotFoundError:
        """NotFoundError for an ``unknown`` or ``expired`` decision id."""
        why = "no such decision" if status == "unknown" else "its reward window passed"
        return NotFoundError(f"decision_id: expected {expected}, got {decision_id!r} ({why})")

    def activate(self, decision_id: str) -> str:
        """Mark a deferred decision's offer as delivered now: from here it is learned from and
        counts in lift, budgets and caps (every process's guardrails count it on their next
        upkeep tick; this one's at once). Idempotent.

        Returns ``activated``, ``duplicate`` (it was already) or ``immediate`` (it was not
        deferred: nothing to do).

        Raises
        ------
        NotFoundError
            For an unknown decision id, or one whose reward window has passed.
        """
        return self.activate_batch([decision_id], single=True)[0]

    def activate_batch(self, decision_ids: Sequence[str], *, single: bool = False) -> list[str]:
        """:meth:`activate` for many decisions in one journal transaction; unknown and
        expired ids get those statuses instead of raising."""
        self._check_open()
        self._require_role("activate decisions", "all", "decide")
        if isinstance(decision_ids, str) or not valid_ids(decision_ids):
            i = 0 if isinstance(decision_ids, str) else first_bad_id(decision_ids)
            field = "decision_id" if single else f"decision_ids[{i}]"
            raise InvalidInputError(field, ID_RULE, decision_ids[i])  # the id, not a list
        with self._lock:
            self._check_open()
            statuses = self._ledger.activate(list(decision_ids), self._clock())
            if self._sync is not None:  # (None: no guardrail is configured, nothing to count)
                self._sync.sync()  # counts every activation, this process's own included
        if single and statuses[0] in ("unknown", "expired"):
            expected = f"a decision of campaign {self.campaign!r} within its reward window"
            raise self._missing(decision_ids[0], statuses[0], expected)
        return statuses

    def reward_batch(
        self,
        decision_ids: Sequence[str],
        values: Sequence[float],
        components: Sequence[Mapping[str, float] | None] | None = None,
    ) -> list[RewardRecord]:
        """Report many outcomes in one journal transaction.

        Unknown and expired ids do not raise here: their records say so (status ``unknown`` /
        ``expired``) and they are recorded. Bad values raise InvalidInputError before anything
        is written. ``components``: one mapping (or None) per reward, as in :meth:`reward`.
        """
        self._check_open()
        self._require_role("accept rewards", "all", "decide")
        clean = check_rewards(decision_ids, values)
        engaged = self._learner.published.engagement_signals()
        parts = check_components(components, len(clean), engaged)
        with self._lock:
            self._check_open()
            now = self._clock()
            results, committed = self._ledger.join(list(decision_ids), clean, now, parts)
            if self.leading and now * 1e6 >= self._ledger.next_due_us:
                self._ledger.expire(now, max_rows=_SWEEP_ROWS)  # on-demand sweep, one slice
        self._learner.apply(committed)  # learns them without reading them back
        if self._upkeep is None and self.leading:  # no upkeep: look after every batch
            self.watch()
        return results

    def expire_pending(self, now: float | None = None) -> int:
        """Close every decision whose reward window has passed by ``now`` (default: the clock).

        Each gets the configured default reward (or none) and later rewards for it are rejected
        as expired. Returns the number of decisions expired.

        Raises
        ------
        FailedPreconditionError
            In a process that is not the campaign's leading learner (the leader expires).
        """
        self._check_open()
        if not self.leading:
            raise FailedPreconditionError(
                f"campaign {self.campaign}: expected the campaign's leading learner to expire "
                f"decisions, got a process serving with --role {self.role} that does not lead"
            )
        at = self._clock() if now is None else float(now)
        total = 0
        more = True
        while more:
            # One slice per lock hold: a large backlog never stalls decisions for long.
            with self._lock:
                self._check_open()
                count, more = self._ledger.expire(at, max_rows=_SWEEP_ROWS)
            total += count
            self._learner.apply()
        with self._lock:
            self._guardrails.prune(at)
        self._journal.prune_requests(int(at * 1e6) - self._request_window_us)
        return total

    # ------------------------------------------------------------------ model
    def snapshot(self) -> str:
        """Apply every journaled reward, publish, write a snapshot file; return its version."""
        self._check_open()
        self._learner.header["encoder"] = self._encoder.state()
        self._learner.apply()
        return self._learner.checkpoint()

    def load_snapshot(self, path: str | Path, *, who: str = "") -> str:
        """Warm start from a trusted local file (the CLI, a deployment step): make the model in
        a snapshot file the published model. Requests from the network go through
        :meth:`promote`, which only reads the model directory.

        Reads the file (a regular file, not through a symlink, of at most the campaign's model
        size, checked before a byte is read) and calls :meth:`promote_bytes` with its name.
        Returns the live version (a new one, or the live one when the file is already live).

        Raises
        ------
        CorruptModelError
            When the file fails its checksum or does not fit this campaign (checked before its
            model is built).
        """
        self._check_open()
        path = Path(path)
        data = read_regular(path, self._model_shape().max_bytes, str(path))
        return self.promote_bytes(data, file_name=str(path), who=who).version.version

    def promote(
        self,
        requested: str,
        *,
        who: str = "",
        gate: GateFunction | None = None,
        force: bool = False,
    ) -> ModelChange:
        """Make the snapshot file ``requested`` (a path relative to :attr:`model_dir`) the
        published model, through :meth:`promote_bytes` (journaled in the registry with its
        origin, the exploration floor applied; with ``gate``, only on evidence that it beats the
        live model, or with ``force``). What PromoteModel calls.

        Only regular files inside the model directory are read (opened without following a
        symlink and without blocking on a FIFO), their size checked before reading, their shapes
        and parameters checked against the campaign before anything is built.

        Raises
        ------
        PermissionDeniedError
            For an absolute path, ``..``, or a symlink leading out of the model directory (the
            same message whether or not the target exists), or an engine without a model
            directory.
        NotFoundError
            For a path inside the model directory that names no file.
        InvalidInputError, CorruptModelError
            For a file that is not a regular file, is too large, fails its checksum or does not
            fit the campaign. The model is unchanged.
        """
        self._check_open()
        if not isinstance(requested, str) or not requested:
            raise InvalidInputError(
                "snapshot_path", "a path relative to the model directory", requested
            )
        if self.model_dir is None:
            raise PermissionDeniedError(
                f"snapshot_path: expected a file inside the model directory, got {requested!r} "
                "(this engine keeps no data directory, so it has none)"
            )
        path = resolve_inside(self.model_dir, requested, "snapshot_path")
        source = f"snapshot_path {requested!r}"
        data = read_regular(path, self._model_shape().max_bytes, source)
        return self.promote_bytes(
            data,
            file_name=requested,
            who=who,
            path=str(path),
            source=source,
            gate=gate,
            force=force,
        )

    def _model_shape(self) -> ModelShape:
        return self._lifecycle.shape()

    def promote_bytes(self, data: bytes, **options: Unpack[PromoteOptions]) -> ModelChange:
        """Promote a snapshot (its bytes, read by the caller from ``file_name``; ``path``: where
        it was read, default ``file_name``; ``source``: how errors name it, default
        ``file_name``; ``who``: the admin; ``gate`` and ``force``: the evidence it must show
        first): see :meth:`engine.lifecycle.ModelLifecycle.promote_bytes`.

        Raises
        ------
        CorruptModelError
            When the bytes fail their checksum or do not fit this campaign (nothing changes).
        FailedPreconditionError
            In a process that is not the campaign's leading learner; with ``gate``, when the
            snapshot does not beat the live model and ``force`` is False (nothing changes).
        """
        self._check_open()
        change = self._lifecycle.promote_bytes(data, **options)
        who = options.get("who") or "unknown"
        self._new_epoch(change, f"model {change.version.version} promoted by {who}")
        return change

    def rollback(self, version: str | int, *, who: str = "") -> ModelChange:
        """Make an earlier version live again, as a new version of kind ``rollback`` (see
        :meth:`engine.lifecycle.ModelLifecycle.rollback`).

        Raises
        ------
        NotFoundError
            For a version the registry does not have.
        InvalidInputError
            For a version whose bytes were pruned, or a malformed version.
        CorruptModelError
            When the stored model no longer fits the campaign (other features).
        FailedPreconditionError
            In a process that is not the campaign's leading learner.
        """
        self._check_open()
        change = self._lifecycle.rollback(version, who=who)
        self._new_epoch(change, f"model {change.version.version} restored by {who or 'unknown'}")
        return change

    def _new_epoch(self, change: ModelChange, why: str) -> None:
        # The monitor judges the model live now against the control over the same period.
        if not change.unchanged:
            with self._learner.lock:
                self._rollout.new_epoch(version_of(change.version.version), why)

    def models(self, limit: int = 100, before: str | int | None = None) -> list[ModelVersion]:
        """The registry's newest ``limit`` versions (below ``before``), newest first."""
        below = None if before is None else version_number(before, "before")
        return self._learner.registry.versions(limit=limit, before=below)

    def model(self, version: str | int) -> ModelVersion:
        """One registry version (NotFoundError when unknown)."""
        return self._learner.registry.get(version)

    # ------------------------------------------------------------------ lifecycle
    def _check_open(self) -> None:
        if self._closed:
            raise ResourceExhaustedError(
                f"engine {self.campaign}: expected an open engine, got a closed one"
            )

    def _expiry_due(self) -> bool:
        return self.leading and self._clock() * 1e6 >= self._ledger.next_due_us and not self._closed

    def close(self) -> None:
        """Stop background work, apply pending rewards, write a snapshot, close the journal."""
        if self._closed:
            return
        if self._upkeep is not None:
            self._upkeep.stop()
        self._learner.header["encoder"] = self._encoder.state()
        try:
            self._learner.apply()
            if self.data_dir is not None or self._learner.share_models:
                self._learner.checkpoint()
        except StaleModelError as exc:  # another learner leads now: nothing of ours to keep
            _log.warning("campaign %s: %s", self.campaign, exc)
        with self._lock:
            self._closed = True
            self._seat.release()
            self._journal.close()

    def abandon(self) -> None:
        """Let go of the journal and the learner lock without applying, publishing or keeping
        anything: what a process killed at this moment leaves behind (recovery tests start a
        second Engine on the same journal after this)."""
        if self._closed:
            return
        if self._upkeep is not None:
            self._upkeep.stop()
        with self._lock:
            self._closed = True
            self._seat.release()
            self._journal.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
>>> eng.close()
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.campaign import CampaignConfig, Guardrails, control_flags, load_campaign
from engine.campaign.eligibility import Eligibility
from engine.errors import (
    CorruptModelError,
    InvalidInputError,
    NotFoundError,
    ResourceExhaustedError,
)
from engine.features import Encoder
from engine.features.columns import Columns, gather
from engine.journal.lift import Lift, lift_from_journal
from engine.journal.records import DecisionRecord, RewardRecord, decision_row
from engine.journal.recovery import (
    adapt_offers,
    check_compatible,
    restore_guardrails,
    start_learner,
)
from engine.journal.rewards import RewardLedger
from engine.journal.snapshot import read_snapshot
from engine.journal.store import Journal
from engine.policies import Policy
from engine.types import BoolArray, FloatArray

__all__ = ["DecisionRecord", "Engine", "RewardRecord"]

# Rewards beyond this magnitude are rejected before they reach the journal (the policies refuse
# them too, and a journaled reward the learner cannot apply would be lost).
VALUE_LIMIT = 1e12
_NUMBER = (int, float, np.integer, np.floating)
_SWEEP_ROWS = 8192  # decisions an expiry sweep scans per hold of the decision lock
_log = logging.getLogger("nbo.engine")


def _utf8(text: str) -> bool:
    """False for strings SQLite cannot store (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _valid_ids(ids: Sequence[str]) -> bool:
    """True when every id is a non-empty UTF-8 string of <= 256 characters (one pass each)."""
    if not all(type(i) is str for i in ids):
        return False
    lengths = list(map(len, ids))
    return (not ids or (min(lengths) > 0 and max(lengths) <= 256)) and _utf8("".join(ids))


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
        decisions, checkpoints the WAL and writes snapshots. Default: True with the real clock,
        False with an injected clock (then the caller drives time: :meth:`expire_pending`,
        :meth:`snapshot`; rewards also trigger due sweeps and time-based publishing).

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
        journal_path: str | Path = ":memory:"
        snapshot_dir: Path | None = None
        if self.data_dir is not None:
            if not self.data_dir.exists():
                self.data_dir.mkdir(parents=True, mode=0o700)
            journal_path = self.data_dir / f"{config.name}.journal.sqlite"
            snapshot_dir = self.data_dir / "snapshots" / config.name
        run_background = background if background is not None else clock is None
        self._journal = Journal(
            journal_path, synchronous=config.synchronous, autocheckpoint=not run_background
        )
        self._encoder = Encoder(config.schema)
        self.feature_names = self._encoder.feature_names
        self.n_features = self._encoder.n_features
        self._catalog = self._journal.catalog(config.name, self.offer_ids, self.feature_names)
        self._index = {o: i for i, o in enumerate(self.offer_ids)}
        self._control_index = config.offer_index(config.control_offer)
        self._fallback_index = config.offer_index(config.fallback_offer)
        self._eligibility = Eligibility(config)
        self._attributes = tuple(
            dict.fromkeys(self._encoder.attribute_names + self._eligibility.fields)
        )
        self._eligible_cache: dict[int, tuple[tuple[str, ...], str]] = {}
        self._bit_shifts = np.arange(len(self.offer_ids), dtype=np.int64)
        self._guardrails = Guardrails(config)
        self._id_prefix = secrets.token_hex(5) + "-"
        self._counter = 0
        self._learner = start_learner(
            config, self._journal, self._encoder, snapshot_dir, self._lock, self._clock
        )
        restore_guardrails(self._journal, self._guardrails, config, self._clock())
        self._ledger = RewardLedger(
            config, self._journal, self._learner, self._index, self.n_features
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if run_background:
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
    def journal(self) -> Journal:
        """The campaign's journal (read access for exports and reports)."""
        return self._journal

    def model_info(self) -> dict[str, Any]:
        """Published model, campaign and journal facts (for admin endpoints)."""
        learner = self._learner
        params = learner.published.get_params()
        return {
            "campaign": self.campaign,
            "model_version": learner.version,
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
        }

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
        single = n == 1
        if (
            isinstance(customer_ids, str)
            or not isinstance(contexts, Sequence)
            or len(contexts) != n
        ):
            raise InvalidInputError(
                "contexts", f"a list of {n} contexts (one per customer id)", type(contexts).__name__
            )
        if not _valid_ids(customer_ids):  # find the first bad id for the message
            for i, cid in enumerate(customer_ids):
                if type(cid) is not str or not cid or len(cid) > 256 or not _utf8(cid):
                    field = "customer_id" if single else f"customer_ids[{i}]"
                    raise InvalidInputError(
                        field, "a non-empty UTF-8 string of <= 256 characters", cid
                    )
        if not all(type(ctx) is dict for ctx in contexts):
            for i, ctx in enumerate(contexts):
                if not isinstance(ctx, Mapping):
                    field = "context" if single else f"contexts[{i}]"
                    raise InvalidInputError(field, "a mapping of attribute names to values", ctx)
        row_candidates = self._row_candidates(candidates, n)
        if n == 0:
            return []
        control = control_flags(self.config.salt, customer_ids, self.config.control_share)
        # The attributes the rules and the encoder read, gathered in one pass over the contexts.
        columns = gather(contexts, self._attributes) if n > 1 else None
        masks, costs, reasons = self._eligibility.evaluate(
            contexts, row_candidates, control, columns=columns
        )
        encoder = self._encoder
        X = None if encoder.learning else self._encode(contexts, False, columns)
        with self._lock:
            self._check_open()
            if X is None:
                X = self._encode(contexts, True, columns)
                if not encoder.learning:  # just froze: keep the statistics for restarts
                    self._journal.set_meta("encoder", json.dumps(encoder.state()))
            now = self._clock()
            return self._decide_locked(customer_ids, X, control, masks, costs, reasons, now)

    def _encode(
        self, contexts: Sequence[Mapping[str, Any]], learn: bool, columns: Columns | None
    ) -> FloatArray:
        if len(contexts) == 1:
            return self._encoder.encode(contexts[0], learn=learn)[None, :]
        return self._encoder.encode_batch(contexts, learn=learn, columns=columns)

    def _row_candidates(self, candidates: Any, n: int) -> list[BoolArray | None] | None:
        if candidates is None or (isinstance(candidates, Sequence) and not candidates):
            return None
        if isinstance(candidates, Sequence) and not isinstance(candidates, str):
            if all(isinstance(c, str) for c in candidates):
                return [self._candidate_mask(candidates, "candidates")] * n
            if len(candidates) == n:
                return [
                    self._candidate_mask(c, f"candidates[{i}]") for i, c in enumerate(candidates)
                ]
        raise InvalidInputError(
            "candidates", "a list of offer ids, or one list per row", candidates
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

    def _eligible(self, code: int) -> tuple[tuple[str, ...], str]:
        """Eligible offer ids (and their comma-joined form) of a mask encoded as an integer."""
        hit = self._eligible_cache.get(code)
        if hit is None:
            if len(self._eligible_cache) >= 4096:  # many offers: keep the cache bounded
                self._eligible_cache.clear()
            ids = tuple(o for a, o in enumerate(self.offer_ids) if code >> a & 1)
            hit = self._eligible_cache[code] = (ids, ",".join(ids))
        return hit

    def _decide_locked(
        self,
        customer_ids: Sequence[str],
        X: FloatArray,
        control: list[bool],
        masks: BoolArray,
        costs: FloatArray,
        reasons: list[list[str]],
        now: float,
    ) -> list[DecisionRecord]:
        n = len(customer_ids)
        guard = self._guardrails
        if guard.active:
            guard.apply_batch(customer_ids, now, costs, masks, reasons, control)
        version = self._learner.version
        asked = masks.any(axis=1)
        all_asked = bool(asked.all())
        if all_asked:  # no control group or fallback row: no gathering and scattering
            d = self._learner.published.choose(X, masks)
            actions, props, explored = d.actions, d.propensities, d.explored
            scores = np.array(d.scores, dtype=np.float64)  # records keep rows of our own copy
        else:
            asks = np.flatnonzero(asked)
            actions = np.full(n, self._fallback_index, dtype=np.int64)
            actions[np.asarray(control, dtype=np.bool_)] = self._control_index
            props = np.ones(n)
            explored = np.zeros(n, dtype=np.bool_)
            scores = np.full((n, len(self.offer_ids)), np.nan)
            if asks.shape[0]:
                d = self._learner.published.choose(X[asks], masks[asks])
                actions[asks] = d.actions
                props[asks] = d.propensities
                explored[asks] = d.explored
                scores[asks] = d.scores
        # Python-level loop below: pull everything out of numpy once, row by row costs add up.
        if masks.shape[1] <= 62:
            codes = (masks.astype(np.int64) << self._bit_shifts).sum(axis=1).tolist()
        else:
            packed = np.packbits(masks, axis=1, bitorder="little")
            codes = [int.from_bytes(row.tobytes(), "little") for row in packed]
        cost_of = [0.0 if c != c else c for c in costs[np.arange(n), actions].tolist()]  # NaN->0
        action_list = actions.tolist()
        prop_list = props.tolist()
        explored_list = explored.tolist()
        ts_us = int(now * 1e6)
        offer_ids = self.offer_ids
        chosen = [offer_ids[a] for a in action_list]
        # Eligible sets by mask code (cached); the rows the policy was not asked are fixed up
        # below: the control group gets the control offer alone, the others their fallback.
        cache_get, eligible_of = self._eligible_cache.get, self._eligible
        eligible = [cache_get(code) or eligible_of(code) for code in codes]
        control_id = offer_ids[self._control_index]
        control_only: tuple[tuple[str, ...], str] = ((control_id,), control_id)
        for i in [] if all_asked else np.flatnonzero(~asked).tolist():
            if control[i]:
                eligible[i] = control_only
                reasons[i] = ["control_group"]
            else:  # nothing eligible: the fallback is the only possible outcome
                fallback = chosen[i]
                eligible[i] = ((fallback,), fallback)
                reasons[i].append(f"fallback:{fallback}")
        eligible_ids = [e[0] for e in eligible]
        joined = [e[1] for e in eligible]
        counter = self._counter
        decision_ids = [f"{self._id_prefix}{c:x}" for c in range(counter + 1, counter + n + 1)]
        self._counter = counter + n
        x_bytes, x_width = X.tobytes(), X.shape[1] * 8
        x_rows = [x_bytes[o : o + x_width] for o in range(0, n * x_width, x_width)]
        s_bytes, s_width = scores.tobytes(), scores.shape[1] * 8
        s_rows = [s_bytes[o : o + s_width] for o in range(0, n * s_width, s_width)]
        texts = [";".join(why) if why else None for why in reasons]
        # Whole columns zipped into rows (in DecisionRow's field order) and records.
        rows = list(
            map(decision_row, zip(decision_ids, [ts_us] * n, customer_ids, x_rows, joined,
                chosen, prop_list, explored_list, control, [version] * n, cost_of, s_rows,
                texts, [self._catalog] * n, strict=True))
        )  # fmt: skip
        records = list(
            map(DecisionRecord, decision_ids, chosen, prop_list, explored_list, control,
                [version] * n, map(tuple, reasons), eligible_ids, [self.campaign] * n,
                customer_ids, [now] * n, cost_of, list(scores), [offer_ids] * n)
        )  # fmt: skip
        self._journal.append_decisions(rows)
        guard.record_batch(customer_ids, now, action_list, cost_of)
        self._ledger.note_decision(ts_us)
        return records

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
            if type(did) is not str or not did or len(did) > 256 or not _utf8(did):
                field = "decision_id" if n == 1 else f"decision_ids[{i}]"
                raise InvalidInputError(field, "a non-empty UTF-8 string of <= 256 characters", did)
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
            results = self._ledger.report(list(decision_ids), clean, now)
            if now * 1e6 >= self._ledger.next_due_us:
                self._ledger.expire(now, max_rows=_SWEEP_ROWS)  # on-demand sweep, one slice
        self._learner.apply()
        return results

    def expire_pending(self, now: float | None = None) -> int:
        """Close every decision whose reward window has passed by ``now`` (default: the clock).

        Each gets the configured default reward (or none) and later rewards for it are rejected
        as expired. Returns the number of decisions expired.
        """
        self._check_open()
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
        shared = self.config.policy["name"] == "shared"
        adapt_offers(
            policy,
            header.get("offer_ids") or list(self.offer_ids),
            self.offer_ids,
            self.config.offer_features() if shared else None,
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

    # ------------------------------------------------------------------ lifecycle
    def _check_open(self) -> None:
        if self._closed:
            raise ResourceExhaustedError(
                f"engine {self.campaign}: expected an open engine, got a closed one"
            )

    def _background(self) -> None:
        interval = max(0.01, min(self.config.publish_every_ms / 2000.0, 0.5))
        last_checkpoint = time.monotonic()
        while not self._stop.wait(interval):
            try:
                self._learner.apply()
                if time.monotonic() - last_checkpoint >= 1.0:
                    self._journal.checkpoint()
                    last_checkpoint = time.monotonic()
                if self._clock() * 1e6 >= self._ledger.next_due_us and not self._closed:
                    self.expire_pending()
            except Exception:  # keep serving; the next tick retries
                _log.exception("engine %s: background tick failed", self.campaign)

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

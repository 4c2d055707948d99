"""Fuzz cases for the gRPC service: hypothesis strategies over the proto messages, plus raw bytes.

Every generated case knows the status it must get. Targeted cases start from a valid request and
apply at most one known defect (NaN or inf, a huge or empty string, an unknown offer or campaign,
a giant batch, a missing required attribute, a non-finite or out-of-range reward, an unknown id)
or none; reward ids are drawn by kind (pending, already rewarded, unknown) and resolved by the
runner (testkit/fuzzing.py) against the decisions it made, so statuses are exact.
Wild cases fill every field of a request type from its descriptor with arbitrary values, and raw
cases send arbitrary bytes, other types' bytes, or a valid message with unknown fields appended:
they must get a deliberate status, never INTERNAL or UNKNOWN.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from engine.campaign import load_campaign
from engine.serving.pb import offers_pb2 as pb
from testkit.harness import CONTEXTS_CATEGORICAL, CONTEXTS_NUMERIC, RENEWAL, customer
from testkit.traffic import CATEGORICAL, NUMERIC

OK = "OK"
INVALID = "INVALID_ARGUMENT"
NOT_FOUND = "NOT_FOUND"
EXHAUSTED = "RESOURCE_EXHAUSTED"
UNAUTHENTICATED = "UNAUTHENTICATED"
PERMISSION_DENIED = "PERMISSION_DENIED"
DELIBERATE = frozenset({OK, INVALID, NOT_FOUND, EXHAUSTED, UNAUTHENTICATED, PERMISSION_DENIED})

OFFERS = load_campaign(RENEWAL).offer_ids  # the renewal campaign the fuzzed server hosts
METHODS: dict[str, tuple[str, type[Message]]] = {
    "Decide": ("/nbo.v1.OfferService/Decide", pb.DecideRequest),
    "DecideBatch": ("/nbo.v1.OfferService/DecideBatch", pb.DecideBatchRequest),
    "Reward": ("/nbo.v1.OfferService/Reward", pb.RewardRequest),
    "RewardBatch": ("/nbo.v1.OfferService/RewardBatch", pb.RewardBatchRequest),
    "GetModelInfo": ("/nbo.v1.AdminService/GetModelInfo", pb.GetModelInfoRequest),
    "Snapshot": ("/nbo.v1.AdminService/Snapshot", pb.SnapshotRequest),
    "PromoteModel": ("/nbo.v1.AdminService/PromoteModel", pb.PromoteModelRequest),
}
RESPONSES: dict[str, type[Message]] = {
    "Decide": pb.DecideResponse,
    "DecideBatch": pb.DecideBatchResponse,
    "Reward": pb.RewardResponse,
    "RewardBatch": pb.RewardBatchResponse,
    "GetModelInfo": pb.ModelInfo,
    "Snapshot": pb.SnapshotResponse,
    "PromoteModel": pb.PromoteModelResponse,
}
# Id kinds a reward case names; the runner resolves them against the decisions it made.
PENDING, REWARDED, UNKNOWN, EMPTY_ID, LONG_ID = "pending", "rewarded", "unknown", "empty", "long"


@dataclass
class Case:
    """One request: its method, its payload (a message, or raw bytes), the status it must get
    (None: any deliberate status) and, for rewards, the id kinds to resolve."""

    kind: str
    method: str
    payload: Any
    expect: str | None
    id_kinds: list[str] = field(default_factory=list)
    rows: int = 0  # decisions an accepted DecideBatch adds
    note: str = ""

    def __repr__(self) -> str:  # failing examples are printed: keep giant payloads readable
        text = repr(self.payload)
        if len(text) > 600:
            text = f"{text[:300]} ...({len(text)} chars)... {text[-200:]}"
        return (
            f"Case({self.kind} {self.method} {self.note} expect={self.expect} "
            f"ids={self.id_kinds} payload={text})"
        )


# ---------------------------------------------------------------------- value strategies
finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
too_big = st.floats(min_value=1.0000001e12, max_value=1e308) | st.floats(
    min_value=-1e308, max_value=-1.0000001e12
)
valid_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
huge_text = st.integers(2_000, 200_000).map(lambda n: "x" * n)
ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=256)


@st.composite
def valid_context(draw: st.DrawFn) -> dict[str, Any]:
    """A valid renewal customer, with harmless variations (extra attributes, unknown or missing
    categories where the schema ignores them, large but valid numbers, huge hashed strings)."""
    attrs = customer(draw(st.integers(0, 4095)))
    if draw(st.booleans()):
        attrs[f"x_{draw(st.integers(0, 99))}"] = draw(finite | valid_text)
    if draw(st.booleans()):
        attrs["contract_type"] = draw(valid_text)  # unknown = "ignore"
    if draw(st.booleans()):
        attrs.pop("channel")  # missing = "ignore"
    if draw(st.integers(0, 9)) == 0:
        attrs["tenure_months"] = draw(finite)
    if draw(st.integers(0, 9)) == 0:
        attrs["region"] = draw(st.text(max_size=5000))  # hashed: any string is a category
    return attrs


def context_message(attrs: dict[str, Any]) -> pb.Context:
    numeric = {k: float(v) for k, v in attrs.items() if not isinstance(v, str)}
    categorical = {k: v for k, v in attrs.items() if isinstance(v, str)}
    return pb.Context(numeric=numeric, categorical=categorical)


# Defects of one Decide context, each with the status it must get.
@st.composite
def context_defect(draw: st.DrawFn, attrs: dict[str, Any]) -> pb.Context:
    choice = draw(st.integers(0, 6))
    if choice == 0:
        attrs[draw(st.sampled_from(NUMERIC))] = draw(non_finite)
    elif choice == 1:
        attrs[draw(st.sampled_from(NUMERIC))] = draw(too_big)
    elif choice == 2:
        plan = draw(valid_text)
        attrs["plan"] = plan if plan not in ("basic", "standard", "premium") else plan + "!"
    elif choice == 3:
        attrs.pop(draw(st.sampled_from(["monthly_price", "plan"])))
    elif choice == 4:
        attrs[draw(st.sampled_from(NUMERIC))] = draw(valid_text)  # a word where a number goes
    elif choice == 5:
        attrs["plan"] = draw(finite)  # a number where a category goes
    else:
        message = context_message(attrs)
        name = draw(st.sampled_from(NUMERIC))
        message.categorical[name] = "both"  # the same attribute numeric and categorical
        return message
    return context_message(attrs)


@st.composite
def decide_case(draw: st.DrawFn) -> Case:
    attrs = draw(valid_context())
    request = pb.DecideRequest(customer_id=draw(ids), context=context_message(attrs))
    if draw(st.booleans()):
        request.candidates.extend(draw(st.lists(st.sampled_from(OFFERS), unique=True, max_size=7)))
    if draw(st.booleans()):
        request.request_id = draw(
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=128)
        )
    defect = draw(st.integers(0, 13))
    expect = INVALID
    if defect == 0:
        request.customer_id = ""
    elif defect == 1:
        request.customer_id = draw(st.integers(257, 5000).map(lambda n: "c" * n))
    elif defect == 2:
        request.context.CopyFrom(draw(context_defect(attrs)))
    elif defect == 3:
        request.candidates.append(draw(valid_text.filter(lambda s: s not in OFFERS)))
    elif defect == 4:
        del request.candidates[:]
        request.candidates.extend([draw(st.sampled_from(OFFERS))] * 2)
    elif defect == 5:
        request.campaign = draw(valid_text.filter(lambda s: s != "renewal"))
        expect = NOT_FOUND
    elif defect == 6:
        request.request_id = "r" * draw(st.integers(129, 2000))
    elif defect == 8:
        request.request_id = draw(
            st.text(min_size=1, max_size=128).filter(
                lambda s: not (s.isascii() and s.isprintable())
            )
        )  # control or non-ASCII characters
    elif defect == 7:
        request.context.categorical["region"] = "r" * 1_100_000  # past the 1 MiB message limit
        expect = EXHAUSTED
    else:
        expect = OK  # no defect
    if request.request_id and defect not in (6, 8):
        # Decide is idempotent on request_id: an id reused by a different request is refused
        # (INVALID_ARGUMENT), so each distinct request gets an id of its own.
        request_id, request.request_id = request.request_id, ""
        digest = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
        request.request_id = f"{request_id[:100]}-{digest[:16]}"
    return Case("targeted", "Decide", request, expect, note=f"defect {defect}")


@st.composite
def decide_batch_case(draw: st.DrawFn, max_rows: int) -> Case:
    n = draw(st.integers(1, 16) | st.integers(1, max_rows))
    dense = draw(st.booleans())
    defect = draw(st.integers(0, 14))
    expect = INVALID
    if dense:
        rows = [draw(st.integers(0, 4095)) for _ in range(n)]
        numeric = CONTEXTS_NUMERIC[rows].copy()
        categorical = CONTEXTS_CATEGORICAL[rows].copy()
        d = pb.DenseContexts(
            customer_ids=[f"fzd-{i}" for i in range(n)],
            numeric_names=NUMERIC,
            numeric_values=numeric.ravel(),
            categorical_names=CATEGORICAL,
            categorical_values=categorical.ravel().tolist(),
        )
        request = pb.DecideBatchRequest(dense=d)
        if defect == 0:
            del request.dense.numeric_values[-1]
        elif defect == 1:
            request.dense.numeric_values[draw(st.integers(0, n * 8 - 1))] = draw(
                st.sampled_from([math.inf, -math.inf])
            )
        elif defect == 2:
            request.dense.numeric_names[1] = NUMERIC[0]
        elif defect == 3:
            request.dense.customer_ids[draw(st.integers(0, n - 1))] = ""
        elif defect == 4:
            request.dense.categorical_values.append("basic")
        elif defect == 5:
            request.dense.categorical_names[0] = ""
        elif defect == 6:
            request.dense.customer_ids.extend(
                f"fzx-{i}" for i in range(max_rows + 1 - len(request.dense.customer_ids))
            )  # one past the batch limit (and the value counts no longer match either)
        elif defect == 7:
            request.rows.add(customer_id="also-a-row")  # both forms
        elif defect == 8:
            request.candidates.append("gold_bar")
        elif defect == 9:
            # NaN is "missing": fine for tenure (missing = "mean"), an error for the price.
            request.dense.numeric_values[draw(st.integers(0, n - 1)) * 8 + 1] = math.nan
        elif defect == 10:
            request.dense.numeric_values[draw(st.integers(0, n - 1)) * 8] = math.nan
            expect = OK
        else:
            expect = OK
    else:
        request = pb.DecideBatchRequest()
        for i in range(n):
            row = request.rows.add(customer_id=f"fzr-{i}")
            row.context.CopyFrom(context_message(customer(draw(st.integers(0, 4095)))))
        bad = draw(st.integers(0, n - 1))
        if defect == 0:
            request.rows[bad].customer_id = ""
        elif defect == 1:
            request.rows[bad].context.CopyFrom(draw(context_defect(customer(bad))))
        elif defect == 2:
            request.rows[bad].candidates.extend(["none", "gold_bar"])
        elif defect == 3:
            request.candidates.append("none")  # batch-level candidates with the row form
        elif defect == 4:
            request.campaign = "winback"
            expect = NOT_FOUND
        elif defect == 5:
            request.Clear()  # neither form
        elif defect == 6:
            for i in range(max_rows + 1 - n):
                request.rows.add(customer_id=f"fzy-{i}")  # past the batch limit
        else:
            request.rows[bad].candidates.extend(
                draw(st.lists(st.sampled_from(OFFERS), unique=True, min_size=1))
            )
            expect = OK
    request.include_scores = draw(st.booleans())
    n_rows = len(request.dense.customer_ids) if dense else len(request.rows)
    return Case("targeted", "DecideBatch", request, expect, rows=n_rows, note=f"defect {defect}")


@st.composite
def reward_case(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from([PENDING, PENDING, REWARDED, UNKNOWN, EMPTY_ID, LONG_ID]))
    value = draw(finite | non_finite | too_big)
    request = pb.RewardRequest(value=value)
    if draw(st.integers(0, 4)) == 0:
        request.components[draw(valid_text)] = draw(finite | non_finite)
    if draw(st.integers(0, 9)) == 0:
        request.campaign = draw(valid_text.filter(lambda s: s != "renewal"))
    # The server's order of checks: campaign, id format, value, components, range, id lookup.
    if request.campaign:
        expect = NOT_FOUND
    elif kind in (EMPTY_ID, LONG_ID) or not math.isfinite(value):
        expect = INVALID
    elif not all(math.isfinite(v) for v in request.components.values()) or abs(value) > 1e12:
        expect = INVALID
    else:
        expect = NOT_FOUND if kind == UNKNOWN else OK
    return Case("targeted", "Reward", request, expect, id_kinds=[kind])


@st.composite
def reward_batch_case(draw: st.DrawFn, max_rows: int) -> Case:
    kinds = draw(
        st.lists(st.sampled_from([PENDING, PENDING, REWARDED, UNKNOWN]), min_size=1, max_size=24)
    )
    values = [draw(finite) for _ in kinds]
    defect = draw(st.integers(0, 8))
    expect = INVALID
    if defect == 0:
        values[draw(st.integers(0, len(values) - 1))] = draw(non_finite)
    elif defect == 1:
        values[draw(st.integers(0, len(values) - 1))] = draw(too_big)
    elif defect == 2:
        values.append(1.0)  # one value too many
    elif defect == 3:
        kinds[draw(st.integers(0, len(kinds) - 1))] = draw(st.sampled_from([EMPTY_ID, LONG_ID]))
    elif defect == 4:
        kinds, values = [UNKNOWN] * (max_rows + 1), [1.0] * (max_rows + 1)
    elif defect == 5:
        kinds, values = [], []
    else:
        expect = OK
    request = pb.RewardBatchRequest(values=values)
    return Case("targeted", "RewardBatch", request, expect, id_kinds=kinds)


@st.composite
def admin_case(draw: st.DrawFn) -> Case:
    method = draw(st.sampled_from(["GetModelInfo", "Snapshot", "PromoteModel"]))
    _, cls = METHODS[method]
    request = cls(campaign=draw(st.sampled_from(["", "renewal", "winback"])))
    if method == "PromoteModel":
        path = draw(st.sampled_from(["", "/etc/passwd", "/", "/nonexistent/v1.snap", "../x"]))
        request.snapshot_path = path
    token = draw(st.sampled_from(["good", "none", "wrong"]))
    if token == "none":
        expect = UNAUTHENTICATED
    elif token == "wrong":
        expect = PERMISSION_DENIED
    elif request.campaign == "winback":
        expect = NOT_FOUND
    elif method == "PromoteModel":
        # Only files inside the model directory are read: every other path is refused alike.
        expect = INVALID if not request.snapshot_path else PERMISSION_DENIED
    else:
        expect = OK
    return Case("admin", method, request, expect, note=token)


# ---------------------------------------------------------------------- wild and raw cases
def _scalar(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=300) | st.sampled_from(["", "renewal", *OFFERS, *NUMERIC])
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats()
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in fd.enum_type.values])
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    return st.integers(-(2**63), 2**63 - 1)


@st.composite
def wild_message(draw: st.DrawFn, cls: type[Message], depth: int = 0) -> Message:
    """Any message of type ``cls``: each field absent or filled with arbitrary values."""
    message = cls()
    for fd in cls.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            key_fd = fd.message_type.fields_by_name["key"]
            value_fd = fd.message_type.fields_by_name["value"]
            entries = draw(st.dictionaries(_scalar(key_fd), _scalar(value_fd), max_size=12))
            getattr(message, fd.name).update(entries)
        elif fd.message_type is not None:
            if depth >= 2:
                continue
            sub = wild_message(GetMessageClass(fd.message_type), depth + 1)
            if fd.is_repeated:
                getattr(message, fd.name).extend(draw(st.lists(sub, max_size=6)))
            else:
                getattr(message, fd.name).CopyFrom(draw(sub))
        elif fd.is_repeated:
            getattr(message, fd.name).extend(draw(st.lists(_scalar(fd), max_size=40)))
        else:
            setattr(message, fd.name, draw(_scalar(fd)))
    return message


@st.composite
def wild_case(draw: st.DrawFn) -> Case:
    method = draw(st.sampled_from(["Decide", "DecideBatch", "Reward", "RewardBatch"]))
    return Case("wild", method, draw(wild_message(METHODS[method][1])), None)


@st.composite
def raw_case(draw: st.DrawFn) -> Case:
    method = draw(st.sampled_from(list(METHODS)))
    cls = METHODS[method][1]
    how = draw(st.integers(0, 3))
    if how == 0:
        data = draw(st.binary(max_size=512))
    elif how == 1:  # another type's bytes: wrong wire types, wrong field meanings
        other = draw(st.sampled_from([c for _, c in METHODS.values()] + list(RESPONSES.values())))
        data = draw(wild_message(other)).SerializeToString()
    elif how == 2:  # a valid message with unknown fields appended
        data = draw(decide_case()).payload.SerializeToString() if method == "Decide" else b""
        data += bytes([0xF8, 0x07]) + bytes([draw(st.integers(0, 127))])  # field 127, varint
        data += bytes([0xA2, 0x06, 3]) + b"abc"  # field 100, length-delimited
    else:  # a valid message cut short or with a byte flipped
        damaged = bytearray(draw(decide_case()).payload.SerializeToString())
        if damaged and draw(st.booleans()):
            del damaged[draw(st.integers(0, len(damaged) - 1)) :]
        elif damaged:
            damaged[draw(st.integers(0, len(damaged) - 1))] ^= 1 << draw(st.integers(0, 7))
        data = bytes(damaged)
    try:
        cls.FromString(data)
        expect = None  # parses: it must get a deliberate status, whichever
    except DecodeError:
        expect = INVALID
    return Case("raw", method, data, expect, note=f"how {how}")


def any_case(max_rows: int) -> st.SearchStrategy[Case]:
    return st.one_of(
        decide_case(),
        decide_batch_case(max_rows),
        reward_case(),
        reward_batch_case(max_rows),
        admin_case(),
        wild_case(),
        raw_case(),
    )

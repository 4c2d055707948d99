from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RewardStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_STATUS_UNSPECIFIED: _ClassVar[RewardStatus]
    REWARD_STATUS_APPLIED: _ClassVar[RewardStatus]
    REWARD_STATUS_DUPLICATE: _ClassVar[RewardStatus]
    REWARD_STATUS_EXPIRED: _ClassVar[RewardStatus]
    REWARD_STATUS_UNKNOWN: _ClassVar[RewardStatus]
    REWARD_STATUS_INACTIVE: _ClassVar[RewardStatus]

class ActivationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVATION_STATUS_UNSPECIFIED: _ClassVar[ActivationStatus]
    ACTIVATION_STATUS_ACTIVATED: _ClassVar[ActivationStatus]
    ACTIVATION_STATUS_DUPLICATE: _ClassVar[ActivationStatus]
    ACTIVATION_STATUS_IMMEDIATE: _ClassVar[ActivationStatus]
REWARD_STATUS_UNSPECIFIED: RewardStatus
REWARD_STATUS_APPLIED: RewardStatus
REWARD_STATUS_DUPLICATE: RewardStatus
REWARD_STATUS_EXPIRED: RewardStatus
REWARD_STATUS_UNKNOWN: RewardStatus
REWARD_STATUS_INACTIVE: RewardStatus
ACTIVATION_STATUS_UNSPECIFIED: ActivationStatus
ACTIVATION_STATUS_ACTIVATED: ActivationStatus
ACTIVATION_STATUS_DUPLICATE: ActivationStatus
ACTIVATION_STATUS_IMMEDIATE: ActivationStatus

class Context(_message.Message):
    __slots__ = ("numeric", "categorical")
    class NumericEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CategoricalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NUMERIC_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    numeric: _containers.ScalarMap[str, float]
    categorical: _containers.ScalarMap[str, str]
    def __init__(self, numeric: _Optional[_Mapping[str, float]] = ..., categorical: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RankedOffer(_message.Message):
    __slots__ = ("offer_id", "score")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    score: float
    def __init__(self, offer_id: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("campaign", "customer_id", "context", "candidates", "request_id", "baseline_offer", "probabilities", "defer_activation")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BASELINE_OFFER_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    DEFER_ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    customer_id: str
    context: Context
    candidates: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    baseline_offer: str
    probabilities: _containers.ScalarMap[str, float]
    defer_activation: bool
    def __init__(self, campaign: _Optional[str] = ..., customer_id: _Optional[str] = ..., context: _Optional[_Union[Context, _Mapping]] = ..., candidates: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ..., baseline_offer: _Optional[str] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., defer_activation: _Optional[bool] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decision_id", "offer_id", "propensity", "explored", "control", "model_version", "ranking", "request_id", "campaign", "reasons", "deferred", "choices", "action")
    class ChoicesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    EXPLORED_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    offer_id: str
    propensity: float
    explored: bool
    control: bool
    model_version: str
    ranking: _containers.RepeatedCompositeFieldContainer[RankedOffer]
    request_id: str
    campaign: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    deferred: bool
    choices: _containers.ScalarMap[str, str]
    action: str
    def __init__(self, decision_id: _Optional[str] = ..., offer_id: _Optional[str] = ..., propensity: _Optional[float] = ..., explored: _Optional[bool] = ..., control: _Optional[bool] = ..., model_version: _Optional[str] = ..., ranking: _Optional[_Iterable[_Union[RankedOffer, _Mapping]]] = ..., request_id: _Optional[str] = ..., campaign: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ..., deferred: _Optional[bool] = ..., choices: _Optional[_Mapping[str, str]] = ..., action: _Optional[str] = ...) -> None: ...

class Choices(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, str]
    def __init__(self, values: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DecideRow(_message.Message):
    __slots__ = ("customer_id", "context", "candidates", "baseline_offer", "probabilities")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    BASELINE_OFFER_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    context: Context
    candidates: _containers.RepeatedScalarFieldContainer[str]
    baseline_offer: str
    probabilities: _containers.ScalarMap[str, float]
    def __init__(self, customer_id: _Optional[str] = ..., context: _Optional[_Union[Context, _Mapping]] = ..., candidates: _Optional[_Iterable[str]] = ..., baseline_offer: _Optional[str] = ..., probabilities: _Optional[_Mapping[str, float]] = ...) -> None: ...

class DenseContexts(_message.Message):
    __slots__ = ("customer_ids", "numeric_names", "numeric_values", "categorical_names", "categorical_values")
    CUSTOMER_IDS_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_NAMES_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_VALUES_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_NAMES_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_VALUES_FIELD_NUMBER: _ClassVar[int]
    customer_ids: _containers.RepeatedScalarFieldContainer[str]
    numeric_names: _containers.RepeatedScalarFieldContainer[str]
    numeric_values: _containers.RepeatedScalarFieldContainer[float]
    categorical_names: _containers.RepeatedScalarFieldContainer[str]
    categorical_values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer_ids: _Optional[_Iterable[str]] = ..., numeric_names: _Optional[_Iterable[str]] = ..., numeric_values: _Optional[_Iterable[float]] = ..., categorical_names: _Optional[_Iterable[str]] = ..., categorical_values: _Optional[_Iterable[str]] = ...) -> None: ...

class DecideBatchRequest(_message.Message):
    __slots__ = ("campaign", "rows", "dense", "candidates", "include_scores", "request_id", "baseline_offers", "defer_activation")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DENSE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SCORES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BASELINE_OFFERS_FIELD_NUMBER: _ClassVar[int]
    DEFER_ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    rows: _containers.RepeatedCompositeFieldContainer[DecideRow]
    dense: DenseContexts
    candidates: _containers.RepeatedScalarFieldContainer[str]
    include_scores: bool
    request_id: str
    baseline_offers: _containers.RepeatedScalarFieldContainer[str]
    defer_activation: bool
    def __init__(self, campaign: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[DecideRow, _Mapping]]] = ..., dense: _Optional[_Union[DenseContexts, _Mapping]] = ..., candidates: _Optional[_Iterable[str]] = ..., include_scores: _Optional[bool] = ..., request_id: _Optional[str] = ..., baseline_offers: _Optional[_Iterable[str]] = ..., defer_activation: _Optional[bool] = ...) -> None: ...

class DecideBatchResponse(_message.Message):
    __slots__ = ("decision_ids", "offer_ids", "propensities", "explored", "control", "model_versions", "score_offer_ids", "scores", "request_id", "campaign", "choices", "actions")
    DECISION_IDS_FIELD_NUMBER: _ClassVar[int]
    OFFER_IDS_FIELD_NUMBER: _ClassVar[int]
    PROPENSITIES_FIELD_NUMBER: _ClassVar[int]
    EXPLORED_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SCORE_OFFER_IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    decision_ids: _containers.RepeatedScalarFieldContainer[str]
    offer_ids: _containers.RepeatedScalarFieldContainer[str]
    propensities: _containers.RepeatedScalarFieldContainer[float]
    explored: _containers.RepeatedScalarFieldContainer[bool]
    control: _containers.RepeatedScalarFieldContainer[bool]
    model_versions: _containers.RepeatedScalarFieldContainer[str]
    score_offer_ids: _containers.RepeatedScalarFieldContainer[str]
    scores: _containers.RepeatedScalarFieldContainer[float]
    request_id: str
    campaign: str
    choices: _containers.RepeatedCompositeFieldContainer[Choices]
    actions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, decision_ids: _Optional[_Iterable[str]] = ..., offer_ids: _Optional[_Iterable[str]] = ..., propensities: _Optional[_Iterable[float]] = ..., explored: _Optional[_Iterable[bool]] = ..., control: _Optional[_Iterable[bool]] = ..., model_versions: _Optional[_Iterable[str]] = ..., score_offer_ids: _Optional[_Iterable[str]] = ..., scores: _Optional[_Iterable[float]] = ..., request_id: _Optional[str] = ..., campaign: _Optional[str] = ..., choices: _Optional[_Iterable[_Union[Choices, _Mapping]]] = ..., actions: _Optional[_Iterable[str]] = ...) -> None: ...

class RewardRequest(_message.Message):
    __slots__ = ("campaign", "decision_id", "value", "components", "request_id")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    decision_id: str
    value: float
    components: _containers.ScalarMap[str, float]
    request_id: str
    def __init__(self, campaign: _Optional[str] = ..., decision_id: _Optional[str] = ..., value: _Optional[float] = ..., components: _Optional[_Mapping[str, float]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ActivateRequest(_message.Message):
    __slots__ = ("campaign", "decision_id", "request_id")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    decision_id: str
    request_id: str
    def __init__(self, campaign: _Optional[str] = ..., decision_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ActivateResponse(_message.Message):
    __slots__ = ("decision_id", "status", "request_id")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    status: ActivationStatus
    request_id: str
    def __init__(self, decision_id: _Optional[str] = ..., status: _Optional[_Union[ActivationStatus, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RewardResponse(_message.Message):
    __slots__ = ("decision_id", "applied", "request_id", "status", "offer_id")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    applied: bool
    request_id: str
    status: RewardStatus
    offer_id: str
    def __init__(self, decision_id: _Optional[str] = ..., applied: _Optional[bool] = ..., request_id: _Optional[str] = ..., status: _Optional[_Union[RewardStatus, str]] = ..., offer_id: _Optional[str] = ...) -> None: ...

class RewardBatchRequest(_message.Message):
    __slots__ = ("campaign", "decision_ids", "values", "request_id")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    DECISION_IDS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    decision_ids: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedScalarFieldContainer[float]
    request_id: str
    def __init__(self, campaign: _Optional[str] = ..., decision_ids: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[float]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RewardBatchResponse(_message.Message):
    __slots__ = ("applied", "duplicates", "request_id", "expired", "unknown", "statuses")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    applied: int
    duplicates: int
    request_id: str
    expired: int
    unknown: int
    statuses: _containers.RepeatedScalarFieldContainer[RewardStatus]
    def __init__(self, applied: _Optional[int] = ..., duplicates: _Optional[int] = ..., request_id: _Optional[str] = ..., expired: _Optional[int] = ..., unknown: _Optional[int] = ..., statuses: _Optional[_Iterable[_Union[RewardStatus, str]]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    def __init__(self, campaign: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("campaign", "model_version", "policy", "offer_ids", "feature_names", "decisions", "rewards", "pending_decisions", "rewards_learned", "reward_errors", "config_hash", "kind", "origin", "parent", "created", "mode", "rollout_state", "rollout_reason", "lift", "lift_lower", "lift_upper", "lift_treatment", "lift_control", "agreement_rate", "baseline_value", "safe_mode", "shadow_nbo_value", "shadow_gain", "shadow_gain_lower", "shadow_gain_upper", "shadow_rows")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    OFFER_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    PENDING_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_LEARNED_FIELD_NUMBER: _ClassVar[int]
    REWARD_ERRORS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_HASH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_STATE_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_REASON_FIELD_NUMBER: _ClassVar[int]
    LIFT_FIELD_NUMBER: _ClassVar[int]
    LIFT_LOWER_FIELD_NUMBER: _ClassVar[int]
    LIFT_UPPER_FIELD_NUMBER: _ClassVar[int]
    LIFT_TREATMENT_FIELD_NUMBER: _ClassVar[int]
    LIFT_CONTROL_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_RATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_VALUE_FIELD_NUMBER: _ClassVar[int]
    SAFE_MODE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_NBO_VALUE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_GAIN_FIELD_NUMBER: _ClassVar[int]
    SHADOW_GAIN_LOWER_FIELD_NUMBER: _ClassVar[int]
    SHADOW_GAIN_UPPER_FIELD_NUMBER: _ClassVar[int]
    SHADOW_ROWS_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    model_version: str
    policy: str
    offer_ids: _containers.RepeatedScalarFieldContainer[str]
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    decisions: int
    rewards: int
    pending_decisions: int
    rewards_learned: int
    reward_errors: int
    config_hash: str
    kind: str
    origin: str
    parent: str
    created: float
    mode: str
    rollout_state: str
    rollout_reason: str
    lift: float
    lift_lower: float
    lift_upper: float
    lift_treatment: int
    lift_control: int
    agreement_rate: float
    baseline_value: float
    safe_mode: str
    shadow_nbo_value: float
    shadow_gain: float
    shadow_gain_lower: float
    shadow_gain_upper: float
    shadow_rows: int
    def __init__(self, campaign: _Optional[str] = ..., model_version: _Optional[str] = ..., policy: _Optional[str] = ..., offer_ids: _Optional[_Iterable[str]] = ..., feature_names: _Optional[_Iterable[str]] = ..., decisions: _Optional[int] = ..., rewards: _Optional[int] = ..., pending_decisions: _Optional[int] = ..., rewards_learned: _Optional[int] = ..., reward_errors: _Optional[int] = ..., config_hash: _Optional[str] = ..., kind: _Optional[str] = ..., origin: _Optional[str] = ..., parent: _Optional[str] = ..., created: _Optional[float] = ..., mode: _Optional[str] = ..., rollout_state: _Optional[str] = ..., rollout_reason: _Optional[str] = ..., lift: _Optional[float] = ..., lift_lower: _Optional[float] = ..., lift_upper: _Optional[float] = ..., lift_treatment: _Optional[int] = ..., lift_control: _Optional[int] = ..., agreement_rate: _Optional[float] = ..., baseline_value: _Optional[float] = ..., safe_mode: _Optional[str] = ..., shadow_nbo_value: _Optional[float] = ..., shadow_gain: _Optional[float] = ..., shadow_gain_lower: _Optional[float] = ..., shadow_gain_upper: _Optional[float] = ..., shadow_rows: _Optional[int] = ...) -> None: ...

class SetModeRequest(_message.Message):
    __slots__ = ("campaign", "mode", "reason")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    mode: str
    reason: str
    def __init__(self, campaign: _Optional[str] = ..., mode: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetModeResponse(_message.Message):
    __slots__ = ("campaign", "mode", "rollout_state", "since")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_STATE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    mode: str
    rollout_state: str
    since: float
    def __init__(self, campaign: _Optional[str] = ..., mode: _Optional[str] = ..., rollout_state: _Optional[str] = ..., since: _Optional[float] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("version", "kind", "created", "origin", "origin_summary", "parent", "bytes_kept", "live", "last_reward_seq", "n_rewards", "policy_class", "sha256", "offer_ids", "feature_names")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_KEPT_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    LAST_REWARD_SEQ_FIELD_NUMBER: _ClassVar[int]
    N_REWARDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_CLASS_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFER_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    version: str
    kind: str
    created: float
    origin: str
    origin_summary: str
    parent: str
    bytes_kept: bool
    live: bool
    last_reward_seq: int
    n_rewards: int
    policy_class: str
    sha256: str
    offer_ids: _containers.RepeatedScalarFieldContainer[str]
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., kind: _Optional[str] = ..., created: _Optional[float] = ..., origin: _Optional[str] = ..., origin_summary: _Optional[str] = ..., parent: _Optional[str] = ..., bytes_kept: _Optional[bool] = ..., live: _Optional[bool] = ..., last_reward_seq: _Optional[int] = ..., n_rewards: _Optional[int] = ..., policy_class: _Optional[str] = ..., sha256: _Optional[str] = ..., offer_ids: _Optional[_Iterable[str]] = ..., feature_names: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("campaign", "limit", "before", "version")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    limit: int
    before: str
    version: str
    def __init__(self, campaign: _Optional[str] = ..., limit: _Optional[int] = ..., before: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("campaign", "live_version", "models")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    LIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    live_version: str
    models: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, campaign: _Optional[str] = ..., live_version: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class RollbackModelRequest(_message.Message):
    __slots__ = ("campaign", "version")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    version: str
    def __init__(self, campaign: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class RollbackModelResponse(_message.Message):
    __slots__ = ("campaign", "model_version", "unchanged", "model")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    model_version: str
    unchanged: bool
    model: ModelVersion
    def __init__(self, campaign: _Optional[str] = ..., model_version: _Optional[str] = ..., unchanged: _Optional[bool] = ..., model: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    def __init__(self, campaign: _Optional[str] = ...) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("campaign", "model_version")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    model_version: str
    def __init__(self, campaign: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class PromoteModelRequest(_message.Message):
    __slots__ = ("campaign", "snapshot_path", "force")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_PATH_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    snapshot_path: str
    force: bool
    def __init__(self, campaign: _Optional[str] = ..., snapshot_path: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class PromoteModelResponse(_message.Message):
    __slots__ = ("campaign", "model_version", "unchanged", "model")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    model_version: str
    unchanged: bool
    model: ModelVersion
    def __init__(self, campaign: _Optional[str] = ..., model_version: _Optional[str] = ..., unchanged: _Optional[bool] = ..., model: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

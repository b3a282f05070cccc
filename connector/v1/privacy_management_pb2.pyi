import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PrivacyAgreementSpend(_message.Message):
    __slots__ = ("agreement_id", "agreed_epsilon", "agreed_max_rounds", "rounds_used", "runs", "epsilon_after", "last_spend_time")
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGREED_EPSILON_FIELD_NUMBER: _ClassVar[int]
    AGREED_MAX_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_USED_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_AFTER_FIELD_NUMBER: _ClassVar[int]
    LAST_SPEND_TIME_FIELD_NUMBER: _ClassVar[int]
    agreement_id: str
    agreed_epsilon: float
    agreed_max_rounds: int
    rounds_used: int
    runs: int
    epsilon_after: float
    last_spend_time: _timestamp_pb2.Timestamp
    def __init__(self, agreement_id: _Optional[str] = ..., agreed_epsilon: _Optional[float] = ..., agreed_max_rounds: _Optional[int] = ..., rounds_used: _Optional[int] = ..., runs: _Optional[int] = ..., epsilon_after: _Optional[float] = ..., last_spend_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PrivacyBudget(_message.Message):
    __slots__ = ("dataset_id", "epsilon_spent", "delta", "rounds", "agreements", "last_spend_time")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    AGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_SPEND_TIME_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    epsilon_spent: float
    delta: float
    rounds: int
    agreements: _containers.RepeatedCompositeFieldContainer[PrivacyAgreementSpend]
    last_spend_time: _timestamp_pb2.Timestamp
    def __init__(self, dataset_id: _Optional[str] = ..., epsilon_spent: _Optional[float] = ..., delta: _Optional[float] = ..., rounds: _Optional[int] = ..., agreements: _Optional[_Iterable[_Union[PrivacyAgreementSpend, _Mapping]]] = ..., last_spend_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PrivacyRound(_message.Message):
    __slots__ = ("seq", "agreement_id", "run_id", "round", "noise_multiplier", "sample_rate", "steps", "delta", "epsilon_after", "time")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    EPSILON_AFTER_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    seq: int
    agreement_id: str
    run_id: str
    round: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    epsilon_after: float
    time: _timestamp_pb2.Timestamp
    def __init__(self, seq: _Optional[int] = ..., agreement_id: _Optional[str] = ..., run_id: _Optional[str] = ..., round: _Optional[int] = ..., noise_multiplier: _Optional[float] = ..., sample_rate: _Optional[float] = ..., steps: _Optional[int] = ..., delta: _Optional[float] = ..., epsilon_after: _Optional[float] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListPrivacyBudgetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPrivacyBudgetsResponse(_message.Message):
    __slots__ = ("budgets",)
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[PrivacyBudget]
    def __init__(self, budgets: _Optional[_Iterable[_Union[PrivacyBudget, _Mapping]]] = ...) -> None: ...

class GetPrivacyBudgetRequest(_message.Message):
    __slots__ = ("dataset_id",)
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    def __init__(self, dataset_id: _Optional[str] = ...) -> None: ...

class GetPrivacyBudgetResponse(_message.Message):
    __slots__ = ("budget", "rounds")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    budget: PrivacyBudget
    rounds: _containers.RepeatedCompositeFieldContainer[PrivacyRound]
    def __init__(self, budget: _Optional[_Union[PrivacyBudget, _Mapping]] = ..., rounds: _Optional[_Iterable[_Union[PrivacyRound, _Mapping]]] = ...) -> None: ...

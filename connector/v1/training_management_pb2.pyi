import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_STATE_UNSPECIFIED: _ClassVar[TrainingState]
    TRAINING_STATE_RUNNING: _ClassVar[TrainingState]
    TRAINING_STATE_COMPLETED: _ClassVar[TrainingState]
    TRAINING_STATE_FAILED: _ClassVar[TrainingState]
    TRAINING_STATE_STOPPED: _ClassVar[TrainingState]

class TrainingCityState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_CITY_STATE_UNSPECIFIED: _ClassVar[TrainingCityState]
    TRAINING_CITY_STATE_WAITING: _ClassVar[TrainingCityState]
    TRAINING_CITY_STATE_OK: _ClassVar[TrainingCityState]
    TRAINING_CITY_STATE_FAILED: _ClassVar[TrainingCityState]
TRAINING_STATE_UNSPECIFIED: TrainingState
TRAINING_STATE_RUNNING: TrainingState
TRAINING_STATE_COMPLETED: TrainingState
TRAINING_STATE_FAILED: TrainingState
TRAINING_STATE_STOPPED: TrainingState
TRAINING_CITY_STATE_UNSPECIFIED: TrainingCityState
TRAINING_CITY_STATE_WAITING: TrainingCityState
TRAINING_CITY_STATE_OK: TrainingCityState
TRAINING_CITY_STATE_FAILED: TrainingCityState

class TrainingCity(_message.Message):
    __slots__ = ("participant_id", "agreement_id", "state", "last_round", "last_phase", "error", "metrics", "update_bytes")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_ROUND_FIELD_NUMBER: _ClassVar[int]
    LAST_PHASE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_BYTES_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    agreement_id: str
    state: TrainingCityState
    last_round: int
    last_phase: str
    error: str
    metrics: _containers.ScalarMap[str, float]
    update_bytes: int
    def __init__(self, participant_id: _Optional[str] = ..., agreement_id: _Optional[str] = ..., state: _Optional[_Union[TrainingCityState, str]] = ..., last_round: _Optional[int] = ..., last_phase: _Optional[str] = ..., error: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., update_bytes: _Optional[int] = ...) -> None: ...

class Training(_message.Message):
    __slots__ = ("run_id", "state", "reason", "task_id", "task_hash", "rounds", "rounds_done", "strategy", "epsilon", "min_nodes", "local_epochs", "batch_size", "learning_rate", "cities", "folder", "model_path", "metrics_path", "create_time", "event_count", "optimizer", "min_aggregate")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_HASH_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_DONE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    MIN_NODES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    CITIES_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    METRICS_PATH_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    MIN_AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    state: TrainingState
    reason: str
    task_id: str
    task_hash: str
    rounds: int
    rounds_done: int
    strategy: str
    epsilon: float
    min_nodes: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    cities: _containers.RepeatedCompositeFieldContainer[TrainingCity]
    folder: str
    model_path: str
    metrics_path: str
    create_time: _timestamp_pb2.Timestamp
    event_count: int
    optimizer: str
    min_aggregate: int
    def __init__(self, run_id: _Optional[str] = ..., state: _Optional[_Union[TrainingState, str]] = ..., reason: _Optional[str] = ..., task_id: _Optional[str] = ..., task_hash: _Optional[str] = ..., rounds: _Optional[int] = ..., rounds_done: _Optional[int] = ..., strategy: _Optional[str] = ..., epsilon: _Optional[float] = ..., min_nodes: _Optional[int] = ..., local_epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., cities: _Optional[_Iterable[_Union[TrainingCity, _Mapping]]] = ..., folder: _Optional[str] = ..., model_path: _Optional[str] = ..., metrics_path: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_count: _Optional[int] = ..., optimizer: _Optional[str] = ..., min_aggregate: _Optional[int] = ...) -> None: ...

class StartTrainingRequest(_message.Message):
    __slots__ = ("task_id", "agreement_ids", "rounds", "strategy", "epsilon", "min_nodes", "local_epochs", "batch_size", "learning_rate", "request_id", "optimizer")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    MIN_NODES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    agreement_ids: _containers.RepeatedScalarFieldContainer[str]
    rounds: int
    strategy: str
    epsilon: float
    min_nodes: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    request_id: str
    optimizer: str
    def __init__(self, task_id: _Optional[str] = ..., agreement_ids: _Optional[_Iterable[str]] = ..., rounds: _Optional[int] = ..., strategy: _Optional[str] = ..., epsilon: _Optional[float] = ..., min_nodes: _Optional[int] = ..., local_epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., request_id: _Optional[str] = ..., optimizer: _Optional[str] = ...) -> None: ...

class StartTrainingResponse(_message.Message):
    __slots__ = ("training",)
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    training: Training
    def __init__(self, training: _Optional[_Union[Training, _Mapping]] = ...) -> None: ...

class GetTrainingRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetTrainingResponse(_message.Message):
    __slots__ = ("training",)
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    training: Training
    def __init__(self, training: _Optional[_Union[Training, _Mapping]] = ...) -> None: ...

class ListTrainingsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTrainingsResponse(_message.Message):
    __slots__ = ("trainings", "next_page_token")
    TRAININGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    trainings: _containers.RepeatedCompositeFieldContainer[Training]
    next_page_token: str
    def __init__(self, trainings: _Optional[_Iterable[_Union[Training, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchTrainingRequest(_message.Message):
    __slots__ = ("run_id", "offset")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    offset: int
    def __init__(self, run_id: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class WatchTrainingResponse(_message.Message):
    __slots__ = ("index", "event_json", "training")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_JSON_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    index: int
    event_json: str
    training: Training
    def __init__(self, index: _Optional[int] = ..., event_json: _Optional[str] = ..., training: _Optional[_Union[Training, _Mapping]] = ...) -> None: ...

class StopTrainingRequest(_message.Message):
    __slots__ = ("run_id", "request_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    request_id: str
    def __init__(self, run_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class StopTrainingResponse(_message.Message):
    __slots__ = ("training",)
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    training: Training
    def __init__(self, training: _Optional[_Union[Training, _Mapping]] = ...) -> None: ...

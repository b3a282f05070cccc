import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NegotiationRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NEGOTIATION_ROLE_UNSPECIFIED: _ClassVar[NegotiationRole]
    NEGOTIATION_ROLE_CONSUMER: _ClassVar[NegotiationRole]
    NEGOTIATION_ROLE_PROVIDER: _ClassVar[NegotiationRole]
NEGOTIATION_ROLE_UNSPECIFIED: NegotiationRole
NEGOTIATION_ROLE_CONSUMER: NegotiationRole
NEGOTIATION_ROLE_PROVIDER: NegotiationRole

class Negotiation(_message.Message):
    __slots__ = ("id", "role", "state", "consumer_pid", "provider_pid", "counterparty_id", "counterparty_address", "dataset_id", "offer_id", "offer_json", "usage_json", "agreement_json", "reason", "attempts", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_PID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_PID_FIELD_NUMBER: _ClassVar[int]
    COUNTERPARTY_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTERPARTY_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_JSON_FIELD_NUMBER: _ClassVar[int]
    USAGE_JSON_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    role: NegotiationRole
    state: str
    consumer_pid: str
    provider_pid: str
    counterparty_id: str
    counterparty_address: str
    dataset_id: str
    offer_id: str
    offer_json: str
    usage_json: str
    agreement_json: str
    reason: str
    attempts: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., role: _Optional[_Union[NegotiationRole, str]] = ..., state: _Optional[str] = ..., consumer_pid: _Optional[str] = ..., provider_pid: _Optional[str] = ..., counterparty_id: _Optional[str] = ..., counterparty_address: _Optional[str] = ..., dataset_id: _Optional[str] = ..., offer_id: _Optional[str] = ..., offer_json: _Optional[str] = ..., usage_json: _Optional[str] = ..., agreement_json: _Optional[str] = ..., reason: _Optional[str] = ..., attempts: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

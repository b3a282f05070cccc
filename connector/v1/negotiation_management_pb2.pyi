import datetime

from connector.v1 import negotiation_pb2 as _negotiation_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartNegotiationRequest(_message.Message):
    __slots__ = ("peer", "dataset_id", "offer_id", "usage_json", "request_id")
    PEER_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    USAGE_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    peer: str
    dataset_id: str
    offer_id: str
    usage_json: str
    request_id: str
    def __init__(self, peer: _Optional[str] = ..., dataset_id: _Optional[str] = ..., offer_id: _Optional[str] = ..., usage_json: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class StartNegotiationResponse(_message.Message):
    __slots__ = ("negotiation",)
    NEGOTIATION_FIELD_NUMBER: _ClassVar[int]
    negotiation: _negotiation_pb2.Negotiation
    def __init__(self, negotiation: _Optional[_Union[_negotiation_pb2.Negotiation, _Mapping]] = ...) -> None: ...

class ListNegotiationsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class ListNegotiationsResponse(_message.Message):
    __slots__ = ("negotiations", "next_page_token")
    NEGOTIATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    negotiations: _containers.RepeatedCompositeFieldContainer[_negotiation_pb2.Negotiation]
    next_page_token: str
    def __init__(self, negotiations: _Optional[_Iterable[_Union[_negotiation_pb2.Negotiation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetManagedNegotiationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetManagedNegotiationResponse(_message.Message):
    __slots__ = ("negotiation",)
    NEGOTIATION_FIELD_NUMBER: _ClassVar[int]
    negotiation: _negotiation_pb2.Negotiation
    def __init__(self, negotiation: _Optional[_Union[_negotiation_pb2.Negotiation, _Mapping]] = ...) -> None: ...

class WatchManagedNegotiationRequest(_message.Message):
    __slots__ = ("id", "max_wait")
    ID_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_FIELD_NUMBER: _ClassVar[int]
    id: str
    max_wait: _duration_pb2.Duration
    def __init__(self, id: _Optional[str] = ..., max_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WatchManagedNegotiationResponse(_message.Message):
    __slots__ = ("negotiation",)
    NEGOTIATION_FIELD_NUMBER: _ClassVar[int]
    negotiation: _negotiation_pb2.Negotiation
    def __init__(self, negotiation: _Optional[_Union[_negotiation_pb2.Negotiation, _Mapping]] = ...) -> None: ...

class ApproveNegotiationRequest(_message.Message):
    __slots__ = ("id", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    request_id: str
    def __init__(self, id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ApproveNegotiationResponse(_message.Message):
    __slots__ = ("negotiation",)
    NEGOTIATION_FIELD_NUMBER: _ClassVar[int]
    negotiation: _negotiation_pb2.Negotiation
    def __init__(self, negotiation: _Optional[_Union[_negotiation_pb2.Negotiation, _Mapping]] = ...) -> None: ...

class CounterNegotiationRequest(_message.Message):
    __slots__ = ("id", "policy_json", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    policy_json: str
    request_id: str
    def __init__(self, id: _Optional[str] = ..., policy_json: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CounterNegotiationResponse(_message.Message):
    __slots__ = ("negotiation",)
    NEGOTIATION_FIELD_NUMBER: _ClassVar[int]
    negotiation: _negotiation_pb2.Negotiation
    def __init__(self, negotiation: _Optional[_Union[_negotiation_pb2.Negotiation, _Mapping]] = ...) -> None: ...

class AcceptNegotiationRequest(_message.Message):
    __slots__ = ("id", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    request_id: str
    def __init__(self, id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class AcceptNegotiationResponse(_message.Message):
    __slots__ = ("negotiation",)
    NEGOTIATION_FIELD_NUMBER: _ClassVar[int]
    negotiation: _negotiation_pb2.Negotiation
    def __init__(self, negotiation: _Optional[_Union[_negotiation_pb2.Negotiation, _Mapping]] = ...) -> None: ...

class TerminateManagedNegotiationRequest(_message.Message):
    __slots__ = ("id", "reason", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    request_id: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class TerminateManagedNegotiationResponse(_message.Message):
    __slots__ = ("negotiation",)
    NEGOTIATION_FIELD_NUMBER: _ClassVar[int]
    negotiation: _negotiation_pb2.Negotiation
    def __init__(self, negotiation: _Optional[_Union[_negotiation_pb2.Negotiation, _Mapping]] = ...) -> None: ...

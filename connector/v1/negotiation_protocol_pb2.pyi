from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RequestContractRequest(_message.Message):
    __slots__ = ("message_id", "message_json")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_JSON_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    message_json: str
    def __init__(self, message_id: _Optional[str] = ..., message_json: _Optional[str] = ...) -> None: ...

class RequestContractResponse(_message.Message):
    __slots__ = ("negotiation_json",)
    NEGOTIATION_JSON_FIELD_NUMBER: _ClassVar[int]
    negotiation_json: str
    def __init__(self, negotiation_json: _Optional[str] = ...) -> None: ...

class OfferContractRequest(_message.Message):
    __slots__ = ("message_id", "message_json")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_JSON_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    message_json: str
    def __init__(self, message_id: _Optional[str] = ..., message_json: _Optional[str] = ...) -> None: ...

class OfferContractResponse(_message.Message):
    __slots__ = ("negotiation_json",)
    NEGOTIATION_JSON_FIELD_NUMBER: _ClassVar[int]
    negotiation_json: str
    def __init__(self, negotiation_json: _Optional[str] = ...) -> None: ...

class AcceptOfferRequest(_message.Message):
    __slots__ = ("message_id", "message_json")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_JSON_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    message_json: str
    def __init__(self, message_id: _Optional[str] = ..., message_json: _Optional[str] = ...) -> None: ...

class AcceptOfferResponse(_message.Message):
    __slots__ = ("negotiation_json",)
    NEGOTIATION_JSON_FIELD_NUMBER: _ClassVar[int]
    negotiation_json: str
    def __init__(self, negotiation_json: _Optional[str] = ...) -> None: ...

class SendAgreementRequest(_message.Message):
    __slots__ = ("message_id", "message_json", "signature_json")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_JSON_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_JSON_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    message_json: str
    signature_json: str
    def __init__(self, message_id: _Optional[str] = ..., message_json: _Optional[str] = ..., signature_json: _Optional[str] = ...) -> None: ...

class SendAgreementResponse(_message.Message):
    __slots__ = ("negotiation_json",)
    NEGOTIATION_JSON_FIELD_NUMBER: _ClassVar[int]
    negotiation_json: str
    def __init__(self, negotiation_json: _Optional[str] = ...) -> None: ...

class VerifyAgreementRequest(_message.Message):
    __slots__ = ("message_id", "message_json", "signature_json")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_JSON_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_JSON_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    message_json: str
    signature_json: str
    def __init__(self, message_id: _Optional[str] = ..., message_json: _Optional[str] = ..., signature_json: _Optional[str] = ...) -> None: ...

class VerifyAgreementResponse(_message.Message):
    __slots__ = ("negotiation_json",)
    NEGOTIATION_JSON_FIELD_NUMBER: _ClassVar[int]
    negotiation_json: str
    def __init__(self, negotiation_json: _Optional[str] = ...) -> None: ...

class FinalizeAgreementRequest(_message.Message):
    __slots__ = ("message_id", "message_json")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_JSON_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    message_json: str
    def __init__(self, message_id: _Optional[str] = ..., message_json: _Optional[str] = ...) -> None: ...

class FinalizeAgreementResponse(_message.Message):
    __slots__ = ("negotiation_json",)
    NEGOTIATION_JSON_FIELD_NUMBER: _ClassVar[int]
    negotiation_json: str
    def __init__(self, negotiation_json: _Optional[str] = ...) -> None: ...

class TerminateNegotiationRequest(_message.Message):
    __slots__ = ("message_id", "message_json")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_JSON_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    message_json: str
    def __init__(self, message_id: _Optional[str] = ..., message_json: _Optional[str] = ...) -> None: ...

class TerminateNegotiationResponse(_message.Message):
    __slots__ = ("negotiation_json",)
    NEGOTIATION_JSON_FIELD_NUMBER: _ClassVar[int]
    negotiation_json: str
    def __init__(self, negotiation_json: _Optional[str] = ...) -> None: ...

class GetNegotiationRequest(_message.Message):
    __slots__ = ("pid",)
    PID_FIELD_NUMBER: _ClassVar[int]
    pid: str
    def __init__(self, pid: _Optional[str] = ...) -> None: ...

class GetNegotiationResponse(_message.Message):
    __slots__ = ("negotiation_json",)
    NEGOTIATION_JSON_FIELD_NUMBER: _ClassVar[int]
    negotiation_json: str
    def __init__(self, negotiation_json: _Optional[str] = ...) -> None: ...

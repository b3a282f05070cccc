from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_ARGUMENT: _ClassVar[ErrorReason]
    ERROR_REASON_REQUEST_TOO_LARGE: _ClassVar[ErrorReason]
    ERROR_REASON_CREDENTIAL_MISSING: _ClassVar[ErrorReason]
    ERROR_REASON_CREDENTIAL_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_PEER_IDENTITY_MISSING: _ClassVar[ErrorReason]
    ERROR_REASON_DATASET_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_DATASET_ALREADY_EXISTS: _ClassVar[ErrorReason]
    ERROR_REASON_OFFER_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_OFFER_ALREADY_EXISTS: _ClassVar[ErrorReason]
    ERROR_REASON_POLICY_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_PEER_UNKNOWN: _ClassVar[ErrorReason]
    ERROR_REASON_PEER_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_PEER_IDENTITY_MISMATCH: _ClassVar[ErrorReason]
    ERROR_REASON_PEER_ERROR: _ClassVar[ErrorReason]
    ERROR_REASON_PAGE_TOKEN_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_INTERNAL: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_INVALID_ARGUMENT: ErrorReason
ERROR_REASON_REQUEST_TOO_LARGE: ErrorReason
ERROR_REASON_CREDENTIAL_MISSING: ErrorReason
ERROR_REASON_CREDENTIAL_INVALID: ErrorReason
ERROR_REASON_PEER_IDENTITY_MISSING: ErrorReason
ERROR_REASON_DATASET_NOT_FOUND: ErrorReason
ERROR_REASON_DATASET_ALREADY_EXISTS: ErrorReason
ERROR_REASON_OFFER_NOT_FOUND: ErrorReason
ERROR_REASON_OFFER_ALREADY_EXISTS: ErrorReason
ERROR_REASON_POLICY_INVALID: ErrorReason
ERROR_REASON_PEER_UNKNOWN: ErrorReason
ERROR_REASON_PEER_UNAVAILABLE: ErrorReason
ERROR_REASON_PEER_IDENTITY_MISMATCH: ErrorReason
ERROR_REASON_PEER_ERROR: ErrorReason
ERROR_REASON_PAGE_TOKEN_INVALID: ErrorReason
ERROR_REASON_INTERNAL: ErrorReason

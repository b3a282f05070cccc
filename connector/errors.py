"""Errors a node returns: a gRPC status code plus a ``google.rpc.ErrorInfo`` reason.

Every refusal in Hanse is a :class:`ConnectorError`. Servers turn it into a rich
``google.rpc.Status`` (code, message, ``ErrorInfo`` with an UPPER_SNAKE reason and
whether a retry may help, and ``BadRequest`` field violations where a field is at
fault); clients turn a failed call back into the same error with
:func:`from_rpc_error`. The reasons are listed in ``proto/connector/v1/common.proto``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from connector.v1 import common_pb2

DOMAIN = "hanse.connector.v1"
"""The ``ErrorInfo.domain`` of every error a Hanse node returns."""

_REASON_PREFIX = "ERROR_REASON_"

REASONS: frozenset[str] = frozenset(
    name.removeprefix(_REASON_PREFIX)
    for name in common_pb2.ErrorReason.DESCRIPTOR.values_by_name
    if name != "ERROR_REASON_UNSPECIFIED"
)
"""Every reason declared in ``common.proto``, without the enum prefix."""


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request."""

    field: str
    """Path of the field, for example ``dataset.id``."""
    description: str
    """What is wrong and what to do."""


@dataclass
class ConnectorError(Exception):
    """A refusal with a gRPC status code and a machine-readable reason."""

    code: grpc.StatusCode
    """The gRPC status code."""
    reason: str
    """UPPER_SNAKE reason from ``ErrorReason`` (without the ``ERROR_REASON_`` prefix)."""
    message: str
    """One readable sentence for a person."""
    retryable: bool = False
    """Whether the same request may succeed later."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """Extra context (ids, limits) copied into ``ErrorInfo.metadata``."""
    violations: Sequence[FieldViolation] = ()
    """Bad fields, sent as a ``google.rpc.BadRequest`` detail."""

    def __post_init__(self) -> None:
        if self.reason not in REASONS and self.reason != "UNKNOWN":
            raise ValueError(f"undeclared error reason {self.reason!r}; add it to common.proto")
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message} [{self.reason}]"


def invalid_argument(
    message: str, field_path: str = "", reason: str = "INVALID_ARGUMENT"
) -> ConnectorError:
    """A malformed request; ``field_path`` names the field at fault."""
    violations = (FieldViolation(field_path, message),) if field_path else ()
    return ConnectorError(grpc.StatusCode.INVALID_ARGUMENT, reason, message, violations=violations)


def not_found(reason: str, message: str, **metadata: str) -> ConnectorError:
    """A named resource does not exist."""
    return ConnectorError(grpc.StatusCode.NOT_FOUND, reason, message, metadata=metadata)


def already_exists(reason: str, message: str, **metadata: str) -> ConnectorError:
    """A resource with the same id exists already."""
    return ConnectorError(grpc.StatusCode.ALREADY_EXISTS, reason, message, metadata=metadata)


def unauthenticated(reason: str, message: str) -> ConnectorError:
    """The caller has no valid credential."""
    return ConnectorError(grpc.StatusCode.UNAUTHENTICATED, reason, message)


def unavailable(reason: str, message: str, **metadata: str) -> ConnectorError:
    """A dependency (usually a peer) cannot be reached now; retrying may help."""
    return ConnectorError(
        grpc.StatusCode.UNAVAILABLE, reason, message, retryable=True, metadata=metadata
    )


def to_rpc_status(error: ConnectorError) -> grpc.Status:
    """Build the rich ``grpc.Status`` a server aborts with."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason,
        domain=DOMAIN,
        metadata={**error.metadata, "retryable": "true" if error.retryable else "false"},
    )
    details = [_pack(info)]
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        details.append(_pack(bad_request))
    status = status_pb2.Status(code=error.code.value[0], message=error.message, details=details)
    result: grpc.Status = rpc_status.to_status(status)
    return result


def from_rpc_error(exc: grpc.RpcError) -> ConnectorError:
    """Turn a failed call into a :class:`ConnectorError`, keeping its reason.

    A call that failed without Hanse details (for example a TLS handshake refused,
    a deadline, or a message over gRPC's own size limit) keeps its status code and
    gets the reason ``UNKNOWN``.
    """
    call = exc if isinstance(exc, grpc.Call) else None
    code = call.code() if call is not None else grpc.StatusCode.UNKNOWN
    message = (call.details() if call is not None else None) or str(exc)
    status = rpc_status.from_call(call) if call is not None else None
    reason = "UNKNOWN"
    retryable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
                reason = info.reason if info.reason in REASONS else "UNKNOWN"
                metadata = {k: v for k, v in info.metadata.items() if k != "retryable"}
                retryable = info.metadata.get("retryable") == "true"
            elif detail.Is(bad.DESCRIPTOR) and detail.Unpack(bad):
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
    return ConnectorError(code, reason, message, retryable, metadata, violations)


def code_name(code: grpc.StatusCode) -> str:
    """The canonical name of a status code, for logs and metrics."""
    return str(code_pb2.Code.Name(code.value[0]))


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed

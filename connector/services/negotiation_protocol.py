"""Protocol API: negotiation messages from peers (the sender is its certificate).

A message id is answered once: the answer is recorded in the request log in the
transaction of the change the message causes, so a repeated id gets the first
answer and never makes a second change, even when the two arrive together.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message as ProtoMessage

from connector.errors import invalid_argument, not_found
from connector.interceptors.authentication import current_peer
from connector.negotiation.engine import NegotiationEngine
from connector.negotiation.messages import negotiation_ack
from connector.negotiation.model import AnsweredBeforeError, AnswerSlot
from connector.negotiation.states import Message, NegotiationState, Role
from connector.services.idempotency import MAX_REQUEST_ID
from connector.store import RequestLog
from connector.v1 import negotiation_protocol_pb2 as pb
from connector.v1 import negotiation_protocol_pb2_grpc

ResponseT = TypeVar("ResponseT", bound=ProtoMessage)


def _encoded(response_type: type[ProtoMessage], ack: Mapping[str, Any]) -> bytes:
    """The serialised response carrying ``ack``."""
    return response_type(negotiation_json=json.dumps(ack)).SerializeToString()


def _json(text: str, field: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise invalid_argument(f"{field} is not JSON", field, "MESSAGE_INVALID") from exc
    if not isinstance(value, dict):
        raise invalid_argument(f"{field} must be a JSON object", field, "MESSAGE_INVALID")
    return value


class NegotiationProtocolServicer(negotiation_protocol_pb2_grpc.NegotiationProtocolServiceServicer):
    """Receives DSP negotiation messages; a repeated message id gets the first answer."""

    def __init__(self, engine: NegotiationEngine, requests: RequestLog) -> None:
        self._engine = engine
        self._requests = requests

    def _receive(
        self,
        rpc: str,
        kind: Message,
        message_id: str,
        message_json: str,
        response_type: type[ResponseT],
        signature_json: str = "",
    ) -> ResponseT:
        if not message_id:
            raise invalid_argument("message_id is required", "message_id", "MESSAGE_INVALID")
        if len(message_id) > MAX_REQUEST_ID:
            raise invalid_argument(
                f"message_id is longer than {MAX_REQUEST_ID}", "message_id", "MESSAGE_INVALID"
            )
        sender = current_peer().participant_id
        # The sender is part of the key: one peer can never replay another's answer.
        method = f"protocol:{rpc}:{sender}"
        earlier = self._requests.recall(method, message_id)
        if earlier is None:
            payload = _json(message_json, "message_json")
            signature = _json(signature_json, "signature_json") if signature_json else None
            slot = AnswerSlot(method, message_id, partial(_encoded, response_type))
            try:
                ack = self._engine.receive(
                    kind, payload, sender_id=sender, signature=signature, answer=slot
                )
            except AnsweredBeforeError as answered:
                earlier = answered.response
            else:
                # Recorded with the change it caused; else (a repeated request, answered
                # from the negotiation it made) recorded now.
                earlier = slot.recorded or self._requests.remember(
                    method, message_id, _encoded(response_type, ack)
                )
        response = response_type()
        response.ParseFromString(earlier)
        return response

    def RequestContract(
        self, request: pb.RequestContractRequest, context: grpc.ServicerContext
    ) -> pb.RequestContractResponse:
        """ContractRequestMessage."""
        return self._receive(
            "RequestContract",
            Message.REQUEST,
            request.message_id,
            request.message_json,
            pb.RequestContractResponse,
        )

    def OfferContract(
        self, request: pb.OfferContractRequest, context: grpc.ServicerContext
    ) -> pb.OfferContractResponse:
        """ContractOfferMessage."""
        return self._receive(
            "OfferContract",
            Message.OFFER,
            request.message_id,
            request.message_json,
            pb.OfferContractResponse,
        )

    def AcceptOffer(
        self, request: pb.AcceptOfferRequest, context: grpc.ServicerContext
    ) -> pb.AcceptOfferResponse:
        """ContractNegotiationEventMessage ACCEPTED."""
        return self._receive(
            "AcceptOffer",
            Message.ACCEPTED,
            request.message_id,
            request.message_json,
            pb.AcceptOfferResponse,
        )

    def SendAgreement(
        self, request: pb.SendAgreementRequest, context: grpc.ServicerContext
    ) -> pb.SendAgreementResponse:
        """ContractAgreementMessage with the provider's signature."""
        return self._receive(
            "SendAgreement",
            Message.AGREEMENT,
            request.message_id,
            request.message_json,
            pb.SendAgreementResponse,
            request.signature_json,
        )

    def VerifyAgreement(
        self, request: pb.VerifyAgreementRequest, context: grpc.ServicerContext
    ) -> pb.VerifyAgreementResponse:
        """ContractAgreementVerificationMessage with the consumer's signature."""
        return self._receive(
            "VerifyAgreement",
            Message.VERIFICATION,
            request.message_id,
            request.message_json,
            pb.VerifyAgreementResponse,
            request.signature_json,
        )

    def FinalizeAgreement(
        self, request: pb.FinalizeAgreementRequest, context: grpc.ServicerContext
    ) -> pb.FinalizeAgreementResponse:
        """ContractNegotiationEventMessage FINALIZED."""
        return self._receive(
            "FinalizeAgreement",
            Message.FINALIZED,
            request.message_id,
            request.message_json,
            pb.FinalizeAgreementResponse,
        )

    def TerminateNegotiation(
        self, request: pb.TerminateNegotiationRequest, context: grpc.ServicerContext
    ) -> pb.TerminateNegotiationResponse:
        """ContractNegotiationTerminationMessage."""
        return self._receive(
            "TerminateNegotiation",
            Message.TERMINATION,
            request.message_id,
            request.message_json,
            pb.TerminateNegotiationResponse,
        )

    def GetNegotiation(
        self, request: pb.GetNegotiationRequest, context: grpc.ServicerContext
    ) -> pb.GetNegotiationResponse:
        """The DSP state of a negotiation the caller takes part in; NOT_FOUND otherwise."""
        caller = current_peer().participant_id
        store = self._engine.store
        record = store.find(Role.PROVIDER, provider_pid=request.pid) or store.find(
            Role.CONSUMER, consumer_pid=request.pid
        )
        if record is None or record.counterparty_id != caller:
            raise not_found(
                "NEGOTIATION_NOT_FOUND", f"no negotiation {request.pid!r} is shared with you"
            )
        state = self._engine.dsp_state(record)
        if state is NegotiationState.INITIAL:
            raise not_found(
                "NEGOTIATION_NOT_FOUND", f"no negotiation {request.pid!r} is shared with you"
            )
        ack = negotiation_ack(
            consumer_pid=record.consumer_pid, provider_pid=record.provider_pid, state=state
        )
        return pb.GetNegotiationResponse(negotiation_json=json.dumps(ack))

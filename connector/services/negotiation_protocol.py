"""Protocol API: negotiation messages from peers (the sender is its certificate)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message as ProtoMessage

from connector.errors import invalid_argument, not_found
from connector.interceptors.authentication import current_peer
from connector.negotiation.engine import NegotiationEngine, visible_state
from connector.negotiation.messages import negotiation_ack
from connector.negotiation.states import Message, NegotiationState, Role
from connector.services.idempotency import once
from connector.store import RequestLog
from connector.v1 import negotiation_protocol_pb2 as pb
from connector.v1 import negotiation_protocol_pb2_grpc

ResponseT = TypeVar("ResponseT", bound=ProtoMessage)


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
        sender = current_peer().participant_id

        def effect() -> ResponseT:
            payload = _json(message_json, "message_json")
            signature = _json(signature_json, "signature_json") if signature_json else None
            ack = self._engine.receive(kind, payload, sender_id=sender, signature=signature)
            return response_type(negotiation_json=json.dumps(ack))

        # The sender is part of the key: one peer can never replay another's answer.
        return once(self._requests, f"protocol:{rpc}:{sender}", message_id, response_type, effect)

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
        state = visible_state(record)
        if state is NegotiationState.INITIAL:
            raise not_found(
                "NEGOTIATION_NOT_FOUND", f"no negotiation {request.pid!r} is shared with you"
            )
        ack = negotiation_ack(
            consumer_pid=record.consumer_pid, provider_pid=record.provider_pid, state=state
        )
        return pb.GetNegotiationResponse(negotiation_json=json.dumps(ack))

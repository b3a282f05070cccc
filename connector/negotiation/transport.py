"""Delivers negotiation messages to the counter-party's protocol API over mutual TLS."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from connector.errors import ConnectorError, invalid_argument
from connector.negotiation.model import NegotiationRecord, PendingMessage
from connector.negotiation.states import Message
from connector.peers import Peer, PeerClient
from connector.v1 import negotiation_protocol_pb2 as pb
from connector.v1 import negotiation_protocol_pb2_grpc


class GrpcTransport:
    """A :class:`~connector.negotiation.engine.Transport` over the peers' protocol APIs.

    Before the first message to an address, the peer client checks that the server
    there presents the counter-party's participant id.
    """

    def __init__(self, peers: PeerClient) -> None:
        self._peers = peers

    def deliver(self, record: NegotiationRecord, message: PendingMessage) -> Mapping[str, Any]:
        """Send ``message`` for ``record``; return the counter-party's DSP ACK."""
        peer = Peer(record.counterparty_id, record.counterparty_id, record.counterparty_address)
        stub = negotiation_protocol_pb2_grpc.NegotiationProtocolServiceStub(
            self._peers.channel(peer)
        )
        body = json.dumps(message.payload, separators=(",", ":"))
        signature = json.dumps(message.signature) if message.signature is not None else ""
        kind = message.kind
        response: Any
        if kind is Message.REQUEST:
            response = self._peers.call(
                peer,
                stub.RequestContract,
                pb.RequestContractRequest(message_id=message.message_id, message_json=body),
            )
        elif kind is Message.OFFER:
            response = self._peers.call(
                peer,
                stub.OfferContract,
                pb.OfferContractRequest(message_id=message.message_id, message_json=body),
            )
        elif kind is Message.ACCEPTED:
            response = self._peers.call(
                peer,
                stub.AcceptOffer,
                pb.AcceptOfferRequest(message_id=message.message_id, message_json=body),
            )
        elif kind is Message.AGREEMENT:
            response = self._peers.call(
                peer,
                stub.SendAgreement,
                pb.SendAgreementRequest(
                    message_id=message.message_id, message_json=body, signature_json=signature
                ),
            )
        elif kind is Message.VERIFICATION:
            response = self._peers.call(
                peer,
                stub.VerifyAgreement,
                pb.VerifyAgreementRequest(
                    message_id=message.message_id, message_json=body, signature_json=signature
                ),
            )
        elif kind is Message.FINALIZED:
            response = self._peers.call(
                peer,
                stub.FinalizeAgreement,
                pb.FinalizeAgreementRequest(message_id=message.message_id, message_json=body),
            )
        else:
            response = self._peers.call(
                peer,
                stub.TerminateNegotiation,
                pb.TerminateNegotiationRequest(message_id=message.message_id, message_json=body),
            )
        try:
            ack = json.loads(response.negotiation_json)
        except ValueError as exc:
            raise invalid_argument(
                "the peer's acknowledgement is not JSON", "negotiation_json", "MESSAGE_INVALID"
            ) from exc
        if not isinstance(ack, dict):
            raise ConnectorError(
                invalid_argument("x").code,
                "MESSAGE_INVALID",
                "the peer's acknowledgement is not an object",
            )
        return ack

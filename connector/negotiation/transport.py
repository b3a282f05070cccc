"""Delivers negotiation messages to the counter-party's protocol API over mutual TLS."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from connector.errors import invalid_argument
from connector.negotiation.model import NegotiationRecord, PendingMessage
from connector.negotiation.states import Message
from connector.peers import Peer, PeerClient
from connector.v1 import negotiation_protocol_pb2 as pb
from connector.v1 import negotiation_protocol_pb2_grpc

_RPCS: dict[Message, tuple[str, type[Any]]] = {
    Message.REQUEST: ("RequestContract", pb.RequestContractRequest),
    Message.OFFER: ("OfferContract", pb.OfferContractRequest),
    Message.ACCEPTED: ("AcceptOffer", pb.AcceptOfferRequest),
    Message.AGREEMENT: ("SendAgreement", pb.SendAgreementRequest),
    Message.VERIFICATION: ("VerifyAgreement", pb.VerifyAgreementRequest),
    Message.FINALIZED: ("FinalizeAgreement", pb.FinalizeAgreementRequest),
    Message.TERMINATION: ("TerminateNegotiation", pb.TerminateNegotiationRequest),
}
"""Each DSP message, the protocol RPC that carries it, and that RPC's request type."""

_SIGNED = frozenset({Message.AGREEMENT, Message.VERIFICATION})
"""Messages that carry this node's signature over the agreement."""


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
        name, request_type = _RPCS[message.kind]
        request = request_type(
            message_id=message.message_id,
            message_json=json.dumps(message.payload, separators=(",", ":")),
        )
        if message.kind in _SIGNED and message.signature is not None:
            request.signature_json = json.dumps(message.signature)
        response = self._peers.call(peer, getattr(stub, name), request)
        try:
            ack = json.loads(response.negotiation_json)
        except ValueError as exc:
            raise invalid_argument(
                "the peer's acknowledgement is not JSON", "negotiation_json", "MESSAGE_INVALID"
            ) from exc
        if not isinstance(ack, dict):
            raise invalid_argument(
                "the peer's acknowledgement is not a JSON object",
                "negotiation_json",
                "MESSAGE_INVALID",
            )
        return ack

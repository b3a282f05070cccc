"""Management API: the operator's and researcher's view of contract negotiations."""

from __future__ import annotations

import json
from typing import Any

import grpc

from connector.errors import invalid_argument
from connector.negotiation.engine import NegotiationEngine
from connector.negotiation.model import NegotiationRecord
from connector.negotiation.states import Role
from connector.pagination import decode_token, encode_token, page_size
from connector.peers import PeerClient, PeerDirectory
from connector.services.idempotency import once
from connector.store import RequestLog
from connector.v1 import negotiation_management_pb2 as pb
from connector.v1 import negotiation_management_pb2_grpc, negotiation_pb2
from connector.wire import timestamp

_ROLES = {
    Role.CONSUMER: negotiation_pb2.NEGOTIATION_ROLE_CONSUMER,
    Role.PROVIDER: negotiation_pb2.NEGOTIATION_ROLE_PROVIDER,
}


def negotiation_to_pb(record: NegotiationRecord) -> negotiation_pb2.Negotiation:
    """The wire form of a negotiation."""
    message = negotiation_pb2.Negotiation(
        id=record.id,
        role=_ROLES[record.role],
        state=record.state.value,
        consumer_pid=record.consumer_pid,
        provider_pid=record.provider_pid,
        counterparty_id=record.counterparty_id,
        counterparty_address=record.counterparty_address,
        dataset_id=record.dataset_id,
        offer_id=record.offer_id,
        offer_json=json.dumps(record.offer),
        usage_json=json.dumps(record.usage),
        agreement_json=(
            json.dumps({"agreement": record.agreement, "signatures": list(record.signatures)})
            if record.agreement is not None
            else ""
        ),
        reason=record.reason,
        attempts=record.attempts,
    )
    for field, value in (("create_time", record.create_time), ("update_time", record.update_time)):
        stamp = timestamp(value)
        if stamp is not None:
            getattr(message, field).CopyFrom(stamp)
    return message


def _object(text: str, field: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise invalid_argument(f"{field} is not JSON", field) from exc
    if not isinstance(value, dict):
        raise invalid_argument(f"{field} must be a JSON object", field)
    return value


class NegotiationManagementServicer(
    negotiation_management_pb2_grpc.NegotiationManagementServiceServicer
):
    """Starts, steers and shows negotiations."""

    def __init__(
        self,
        engine: NegotiationEngine,
        directory: PeerDirectory,
        peers: PeerClient,
        requests: RequestLog,
    ) -> None:
        self._engine = engine
        self._directory = directory
        self._peers = peers
        self._requests = requests

    def StartNegotiation(
        self, request: pb.StartNegotiationRequest, context: grpc.ServicerContext
    ) -> pb.StartNegotiationResponse:
        """Ask a peer for a contract on one of its offers."""
        if not request.peer:
            raise invalid_argument("name the peer (name or participant id)", "peer")
        if not request.dataset_id:
            raise invalid_argument("name the dataset at the peer", "dataset_id")
        usage = _object(request.usage_json, "usage_json")
        peer = self._directory.find(request.peer)

        def effect() -> pb.StartNegotiationResponse:
            dataset = self._peers.dataset(peer, request.dataset_id)
            offers = {o.id: o for o in dataset.offers}
            if request.offer_id:
                if request.offer_id not in offers:
                    raise invalid_argument(
                        f"dataset {dataset.id} has no offer {request.offer_id!r}; "
                        f"its offers: {', '.join(offers)}",
                        "offer_id",
                    )
                chosen = offers[request.offer_id]
            elif len(offers) == 1:
                (chosen,) = offers.values()
            else:
                listed = ", ".join(offers)
                raise invalid_argument(
                    f"dataset {dataset.id} has {len(offers)} offers ({listed}); pick one",
                    "offer_id",
                )
            record = self._engine.start(
                provider_id=peer.participant_id,
                provider_address=peer.address,
                dataset_id=dataset.id,
                offer_id=chosen.id,
                offer_policy=json.loads(chosen.policy_json),
                usage=usage,
            )
            return pb.StartNegotiationResponse(negotiation=negotiation_to_pb(record))

        return once(
            self._requests,
            "StartNegotiation",
            request.request_id,
            pb.StartNegotiationResponse,
            effect,
        )

    def ListNegotiations(
        self, request: pb.ListNegotiationsRequest, context: grpc.ServicerContext
    ) -> pb.ListNegotiationsResponse:
        """Negotiations, newest first."""
        size = page_size(request.page_size)
        before = decode_token(request.page_token, f"negotiations:{request.state}")
        records = self._engine.store.list_negotiations(
            limit=size + 1, before=before, state=request.state
        )
        page, more = records[:size], len(records) > size
        return pb.ListNegotiationsResponse(
            negotiations=[negotiation_to_pb(r) for r in page],
            next_page_token=encode_token(page[-1].id, f"negotiations:{request.state}")
            if more
            else "",
        )

    def GetManagedNegotiation(
        self, request: pb.GetManagedNegotiationRequest, context: grpc.ServicerContext
    ) -> pb.GetManagedNegotiationResponse:
        """One negotiation."""
        return pb.GetManagedNegotiationResponse(
            negotiation=negotiation_to_pb(self._engine.store.get(request.id))
        )

    def ApproveNegotiation(
        self, request: pb.ApproveNegotiationRequest, context: grpc.ServicerContext
    ) -> pb.ApproveNegotiationResponse:
        """Agree to a waiting request (provider)."""

        def effect() -> pb.ApproveNegotiationResponse:
            return pb.ApproveNegotiationResponse(
                negotiation=negotiation_to_pb(self._engine.approve(request.id))
            )

        return once(
            self._requests,
            "ApproveNegotiation",
            request.request_id,
            pb.ApproveNegotiationResponse,
            effect,
        )

    def CounterNegotiation(
        self, request: pb.CounterNegotiationRequest, context: grpc.ServicerContext
    ) -> pb.CounterNegotiationResponse:
        """Answer with another policy."""
        policy = _object(request.policy_json, "policy_json")

        def effect() -> pb.CounterNegotiationResponse:
            record = self._engine.counter(request.id, policy)
            return pb.CounterNegotiationResponse(negotiation=negotiation_to_pb(record))

        return once(
            self._requests,
            "CounterNegotiation",
            request.request_id,
            pb.CounterNegotiationResponse,
            effect,
        )

    def AcceptNegotiation(
        self, request: pb.AcceptNegotiationRequest, context: grpc.ServicerContext
    ) -> pb.AcceptNegotiationResponse:
        """Accept the provider's offer (consumer)."""

        def effect() -> pb.AcceptNegotiationResponse:
            return pb.AcceptNegotiationResponse(
                negotiation=negotiation_to_pb(self._engine.accept(request.id))
            )

        return once(
            self._requests,
            "AcceptNegotiation",
            request.request_id,
            pb.AcceptNegotiationResponse,
            effect,
        )

    def TerminateManagedNegotiation(
        self, request: pb.TerminateManagedNegotiationRequest, context: grpc.ServicerContext
    ) -> pb.TerminateManagedNegotiationResponse:
        """End a negotiation."""

        def effect() -> pb.TerminateManagedNegotiationResponse:
            record = self._engine.terminate(request.id, request.reason)
            return pb.TerminateManagedNegotiationResponse(negotiation=negotiation_to_pb(record))

        return once(
            self._requests,
            "TerminateManagedNegotiation",
            request.request_id,
            pb.TerminateManagedNegotiationResponse,
            effect,
        )

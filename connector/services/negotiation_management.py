"""Management API: the operator's and researcher's view of contract negotiations."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import grpc

from connector.errors import ConnectorError, invalid_argument, to_rpc_status
from connector.negotiation.engine import NegotiationEngine
from connector.negotiation.model import NegotiationRecord
from connector.negotiation.states import TERMINAL_STATES, Role
from connector.pagination import decode_token, encode_token, page_size
from connector.peers import PeerClient, PeerDirectory
from connector.services.idempotency import once
from connector.services.peer_datasets import PeerDatasetCache
from connector.store import RequestLog
from connector.v1 import dataset_pb2, negotiation_management_pb2_grpc, negotiation_pb2
from connector.v1 import negotiation_management_pb2 as pb
from connector.wire import timestamp

WATCH_DEFAULT_SECONDS = 60.0
"""How long ``WatchManagedNegotiation`` watches when the request does not say."""
WATCH_MAX_SECONDS = 600.0
"""The longest watch a request may ask for."""
WATCH_LOOK_SECONDS = 1.0
"""How often a watch looks at the store itself (for changes another replica made)."""
MAX_WATCHES = 64
"""Watches open at once on a node; more are refused (RESOURCE_EXHAUSTED)."""

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


def _chosen_offer(dataset: dataset_pb2.Dataset, offer_id: str) -> dataset_pb2.Offer:
    """The offer ``offer_id`` of ``dataset``, or its only offer when no id is given."""
    offers = {o.id: o for o in dataset.offers}
    if offer_id:
        if offer_id not in offers:
            raise invalid_argument(
                f"dataset {dataset.id} has no offer {offer_id!r}; its offers: {', '.join(offers)}",
                "offer_id",
            )
        return offers[offer_id]
    if len(offers) == 1:
        (chosen,) = offers.values()
        return chosen
    listed = ", ".join(offers)
    raise invalid_argument(
        f"dataset {dataset.id} has {len(offers)} offers ({listed}); pick one", "offer_id"
    )


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
        self._datasets = PeerDatasetCache(peers)

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
            dataset, fresh = self._datasets.lookup(peer, request.dataset_id)
            try:
                chosen = _chosen_offer(dataset, request.offer_id)
            except ConnectorError:
                if fresh:
                    raise
                # A kept answer that does not hold the offer: the catalog may have changed.
                dataset = self._datasets.fetch(peer, request.dataset_id)
                chosen = _chosen_offer(dataset, request.offer_id)
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

    def WatchManagedNegotiation(
        self, request: pb.WatchManagedNegotiationRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchManagedNegotiationResponse]:
        """One negotiation now, then after each change, until terminal or ``max_wait``."""
        if not request.id:
            raise invalid_argument("name the negotiation to watch", "id")
        seconds = WATCH_DEFAULT_SECONDS
        if request.HasField("max_wait"):
            asked = request.max_wait.ToTimedelta().total_seconds()
            if asked < 0 or asked > WATCH_MAX_SECONDS:
                raise invalid_argument(
                    f"max_wait must be between 0 and {WATCH_MAX_SECONDS:.0f} seconds, "
                    f"not {asked:g}; watch again to go on longer",
                    "max_wait",
                )
            seconds = asked or WATCH_DEFAULT_SECONDS
        self._engine.store.get(request.id)  # NOT_FOUND before the stream starts
        if self._engine.changes.watching() >= MAX_WATCHES:
            # No reason of its own yet in common.proto's ErrorReason: UNKNOWN, with the code
            # and message saying what happened.
            raise ConnectorError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "UNKNOWN",
                f"{MAX_WATCHES} watches are open on this node; retry when one has ended, "
                "or poll GetManagedNegotiation",
                retryable=True,
            )
        return self._watch(request.id, time.monotonic() + seconds, context)

    def _watch(
        self, negotiation_id: str, deadline: float, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchManagedNegotiationResponse]:
        changes, store = self._engine.changes, self._engine.store
        try:
            with changes.subscribe(negotiation_id) as subscription:
                # Read after subscribing, so that no change slips in between.
                current = store.get(negotiation_id)
                yield pb.WatchManagedNegotiationResponse(negotiation=negotiation_to_pb(current))
                while current.state not in TERMINAL_STATES:
                    left = deadline - time.monotonic()
                    if left <= 0 or subscription.closed or not context.is_active():
                        return
                    newer = subscription.next(min(left, WATCH_LOOK_SECONDS))
                    if newer is None:
                        if subscription.closed:
                            return
                        newer = store.get(negotiation_id)
                    if newer.version > current.version:
                        current = newer
                        yield pb.WatchManagedNegotiationResponse(
                            negotiation=negotiation_to_pb(current)
                        )
        except ConnectorError as error:
            context.abort_with_status(to_rpc_status(error))

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

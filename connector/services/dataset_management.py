"""Management API: the operator registers datasets and writes offers."""

from __future__ import annotations

import logging

import grpc

from connector.datasets import is_valid_id
from connector.errors import invalid_argument
from connector.pagination import decode_token, encode_token, page_size
from connector.services.idempotency import once
from connector.store import DatasetStore, RequestLog
from connector.v1 import dataset_management_pb2 as pb
from connector.v1 import dataset_management_pb2_grpc
from connector.wire import dataset_from_pb, dataset_to_pb, offer_from_pb, offer_to_pb

_log = logging.getLogger("hanse.datasets")


def _require_id(value: str, field: str) -> str:
    if not is_valid_id(value):
        raise invalid_argument(f"{field} is missing or malformed", field)
    return value


class DatasetManagementServicer(dataset_management_pb2_grpc.DatasetManagementServiceServicer):
    """Datasets and offers of this node."""

    def __init__(self, store: DatasetStore, requests: RequestLog) -> None:
        self._store = store
        self._requests = requests

    def ListDatasets(
        self, request: pb.ListDatasetsRequest, context: grpc.ServicerContext
    ) -> pb.ListDatasetsResponse:
        """A page of datasets, by id."""
        size = page_size(request.page_size)
        after = decode_token(request.page_token, "datasets")
        datasets = self._store.list_datasets(after_id=after, limit=size + 1)
        page, more = datasets[:size], len(datasets) > size
        return pb.ListDatasetsResponse(
            datasets=[dataset_to_pb(d, public=False) for d in page],
            next_page_token=encode_token(page[-1].id, "datasets") if more else "",
        )

    def GetDataset(
        self, request: pb.GetDatasetRequest, context: grpc.ServicerContext
    ) -> pb.GetDatasetResponse:
        """One dataset with its offers."""
        dataset = self._store.get_dataset(_require_id(request.dataset_id, "dataset_id"))
        return pb.GetDatasetResponse(dataset=dataset_to_pb(dataset, public=False))

    def CreateDataset(
        self, request: pb.CreateDatasetRequest, context: grpc.ServicerContext
    ) -> pb.CreateDatasetResponse:
        """Register a dataset with its offers."""
        dataset = dataset_from_pb(request.dataset)

        def effect() -> pb.CreateDatasetResponse:
            created = self._store.create_dataset(dataset)
            _log.info("dataset created", extra={"dataset_id": created.id})
            return pb.CreateDatasetResponse(dataset=dataset_to_pb(created, public=False))

        return once(
            self._requests, "CreateDataset", request.request_id, pb.CreateDatasetResponse, effect
        )

    def DeleteDataset(
        self, request: pb.DeleteDatasetRequest, context: grpc.ServicerContext
    ) -> pb.DeleteDatasetResponse:
        """Remove a dataset and its offers."""
        dataset_id = _require_id(request.dataset_id, "dataset_id")

        def effect() -> pb.DeleteDatasetResponse:
            self._store.delete_dataset(dataset_id)
            _log.info("dataset deleted", extra={"dataset_id": dataset_id})
            return pb.DeleteDatasetResponse(dataset_id=dataset_id)

        return once(
            self._requests, "DeleteDataset", request.request_id, pb.DeleteDatasetResponse, effect
        )

    def CreateOffer(
        self, request: pb.CreateOfferRequest, context: grpc.ServicerContext
    ) -> pb.CreateOfferResponse:
        """Add an offer to a dataset."""
        offer = offer_from_pb(request.offer)

        def effect() -> pb.CreateOfferResponse:
            created = self._store.create_offer(offer)
            _log.info(
                "offer created", extra={"offer_id": created.id, "dataset_id": created.dataset_id}
            )
            return pb.CreateOfferResponse(offer=offer_to_pb(created, public=False))

        return once(
            self._requests, "CreateOffer", request.request_id, pb.CreateOfferResponse, effect
        )

    def DeleteOffer(
        self, request: pb.DeleteOfferRequest, context: grpc.ServicerContext
    ) -> pb.DeleteOfferResponse:
        """Remove an offer."""
        offer_id = _require_id(request.offer_id, "offer_id")

        def effect() -> pb.DeleteOfferResponse:
            self._store.delete_offer(offer_id)
            _log.info("offer deleted", extra={"offer_id": offer_id})
            return pb.DeleteOfferResponse(offer_id=offer_id)

        return once(
            self._requests, "DeleteOffer", request.request_id, pb.DeleteOfferResponse, effect
        )

"""Protocol API: a peer reads this node's catalog (metadata only, never rows)."""

from __future__ import annotations

import logging

import grpc

from connector.datasets import is_valid_id
from connector.dsp import catalog_id
from connector.errors import invalid_argument, not_found
from connector.interceptors.authentication import current_peer
from connector.pagination import decode_token, encode_token, page_size
from connector.services.identity import NodeIdentity
from connector.store import DatasetStore
from connector.v1 import catalog_protocol_pb2, catalog_protocol_pb2_grpc
from connector.wire import dataset_to_pb

_log = logging.getLogger("hanse.catalog")


class CatalogProtocolServicer(catalog_protocol_pb2_grpc.CatalogProtocolServiceServicer):
    """Serves the catalog to authenticated peers: offered datasets only."""

    def __init__(self, store: DatasetStore, identity: NodeIdentity) -> None:
        self._store = store
        self._identity = identity

    def GetCatalog(
        self, request: catalog_protocol_pb2.GetCatalogRequest, context: grpc.ServicerContext
    ) -> catalog_protocol_pb2.GetCatalogResponse:
        """One page of offered datasets, with their offers."""
        size = page_size(request.page_size)
        after = decode_token(request.page_token, f"catalog:{request.keyword}")
        datasets = self._store.list_datasets(
            after_id=after, limit=size + 1, keyword=request.keyword, offered_only=True
        )
        page, more = datasets[:size], len(datasets) > size
        _log.debug(
            "catalog served",
            extra={"peer": current_peer().participant_id, "datasets": len(page)},
        )
        return catalog_protocol_pb2.GetCatalogResponse(
            catalog=catalog_protocol_pb2.Catalog(
                id=catalog_id(self._identity.participant_id),
                participant_id=self._identity.participant_id,
                node_name=self._identity.name,
                endpoint_url=self._identity.endpoint_url,
                datasets=[dataset_to_pb(d, public=True) for d in page],
            ),
            next_page_token=encode_token(page[-1].id, f"catalog:{request.keyword}") if more else "",
        )

    def GetCatalogDataset(
        self,
        request: catalog_protocol_pb2.GetCatalogDatasetRequest,
        context: grpc.ServicerContext,
    ) -> catalog_protocol_pb2.GetCatalogDatasetResponse:
        """One offered dataset; a dataset without offers is not in the catalog."""
        if not is_valid_id(request.dataset_id):
            raise invalid_argument("dataset_id is missing or malformed", "dataset_id")
        dataset = self._store.get_dataset(request.dataset_id)
        if not dataset.offers:
            raise not_found(
                "DATASET_NOT_FOUND",
                f"no dataset {request.dataset_id!r} in this catalog",
                dataset_id=request.dataset_id,
            )
        return catalog_protocol_pb2.GetCatalogDatasetResponse(
            dataset=dataset_to_pb(dataset, public=True),
            participant_id=self._identity.participant_id,
            endpoint_url=self._identity.endpoint_url,
        )

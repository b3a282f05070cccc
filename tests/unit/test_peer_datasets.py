"""The peer catalog entries StartNegotiation keeps, against a real catalog over mutual TLS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from connector.clock import FixedClock
from connector.datasets import Offer
from connector.errors import ConnectorError
from connector.identity import (
    LoadedTLS,
    TLSFiles,
    init_ca,
    issue_certificate,
    load_tls,
    server_credentials,
)
from connector.interceptors.authentication import PeerAuthenticationInterceptor
from connector.interceptors.errors import ErrorInterceptor
from connector.negotiation.engine import NegotiationEngine
from connector.peers import Peer, PeerClient, PeerDirectory
from connector.services.catalog_protocol import CatalogProtocolServicer
from connector.services.identity import NodeIdentity
from connector.services.negotiation_management import NegotiationManagementServicer
from connector.services.peer_datasets import PeerDatasetCache
from connector.store import SqlDatasetStore, SqlRequestLog, create_engine, migrate, sqlite_url
from connector.v1 import catalog_protocol_pb2_grpc, dataset_pb2
from connector.v1 import negotiation_management_pb2 as pb
from tests.unit.test_negotiation_engine import POLICY, Direct, _engine


class CountingPeerClient(PeerClient):
    """A real peer client that counts the catalog look-ups it makes."""

    lookups = 0

    def dataset(self, peer: Peer, dataset_id: str) -> dataset_pb2.Dataset:
        self.lookups += 1
        return super().dataset(peer, dataset_id)


class Catalog:
    """A city's catalog served over mutual TLS in this process, and a client of it."""

    def __init__(self, tmp: Path) -> None:
        init_ca(tmp / "pki")
        self.tmp = tmp
        city = self._tls(tmp, "city-a")
        self.clock = FixedClock(datetime.now(UTC))
        self.city_engine = _engine(tmp, "city-a", self.clock, Direct(), auto=True)
        self.datasets = self.city_engine.datasets
        assert isinstance(self.datasets, SqlDatasetStore)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            interceptors=[PeerAuthenticationInterceptor(), ErrorInterceptor()],
        )
        catalog_protocol_pb2_grpc.add_CatalogProtocolServiceServicer_to_server(
            CatalogProtocolServicer(
                self.datasets,
                NodeIdentity("urn:hanse:city-a", "city-a", "grpcs://127.0.0.1:7443"),
            ),
            self.server,
        )
        port = self.server.add_secure_port("127.0.0.1:0", server_credentials(city))
        self.server.start()
        self.peer = Peer("city-a", "urn:hanse:city-a", f"127.0.0.1:{port}")
        self.peers = CountingPeerClient(self._tls(tmp, "researcher"))
        self.now = 100.0

    def _tls(self, tmp: Path, name: str) -> LoadedTLS:
        files = issue_certificate(
            tmp / "pki", f"{name}-tls", participant_id=f"urn:hanse:{name}", out_dir=tmp / "tls"
        )
        return load_tls(TLSFiles(files.cert, tmp / "tls" / f"{name}-tls.key", files.ca))

    def cache(self, ttl: float = 2.0) -> PeerDatasetCache:
        return PeerDatasetCache(self.peers, ttl=ttl, monotonic=lambda: self.now)

    def close(self) -> None:
        self.peers.close()
        self.server.stop(0)


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    created = Catalog(tmp_path)
    yield created
    created.close()


def test_an_answer_is_kept_for_its_time_to_live(catalog: Catalog) -> None:
    # Prepare
    cache = catalog.cache(ttl=2.0)

    # Execute
    first, first_fresh = cache.lookup(catalog.peer, "counts")
    catalog.now += 1.9
    second, second_fresh = cache.lookup(catalog.peer, "counts")
    catalog.now += 0.2
    third, third_fresh = cache.lookup(catalog.peer, "counts")

    # Assert
    assert (first_fresh, second_fresh, third_fresh) == (True, False, True)
    assert [o.id for o in first.offers] == [o.id for o in second.offers] == ["counts-research"]
    assert third.id == "counts"
    assert catalog.peers.lookups == 2


def test_fetch_asks_again_and_sees_a_new_offer(catalog: Catalog) -> None:
    # Prepare
    cache = catalog.cache()
    cache.lookup(catalog.peer, "counts")
    catalog.datasets.create_offer(Offer("counts-open", "counts", POLICY, True))

    # Execute
    fetched = cache.fetch(catalog.peer, "counts")
    kept, fresh = cache.lookup(catalog.peer, "counts")

    # Assert
    assert {o.id for o in fetched.offers} == {"counts-research", "counts-open"}
    assert kept is fetched and not fresh
    assert catalog.peers.lookups == 2


def test_callers_at_the_same_time_share_one_look_up(catalog: Catalog) -> None:
    # Prepare
    cache = catalog.cache()
    callers = 8
    barrier = threading.Barrier(callers)

    def look(_: int) -> bool:
        barrier.wait()
        return cache.lookup(catalog.peer, "counts")[1]

    # Execute
    with ThreadPoolExecutor(max_workers=callers) as pool:
        fresh = list(pool.map(look, range(callers)))

    # Assert
    assert fresh.count(True) == 1
    assert catalog.peers.lookups == 1


def test_no_time_to_live_asks_every_time(catalog: Catalog) -> None:
    cache = catalog.cache(ttl=0)

    for _ in range(3):
        cache.lookup(catalog.peer, "counts")

    assert catalog.peers.lookups == 3


def test_an_unknown_dataset_is_refused_and_not_kept(catalog: Catalog) -> None:
    cache = catalog.cache()

    for _ in range(2):
        with pytest.raises(ConnectorError) as caught:
            cache.lookup(catalog.peer, "nope")
        assert caught.value.reason == "DATASET_NOT_FOUND"

    assert catalog.peers.lookups == 2


def test_a_negative_time_to_live_is_refused(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="ttl must not be negative"):
        PeerDatasetCache(catalog.peers, ttl=-1)


def _management(catalog: Catalog) -> tuple[NegotiationManagementServicer, NegotiationEngine]:
    consumer = _engine(catalog.tmp, "researcher", catalog.clock, Direct(), auto=True)
    database = create_engine(sqlite_url(catalog.tmp / "researcher" / "hanse.db"))
    migrate(database)
    servicer = NegotiationManagementServicer(
        consumer, PeerDirectory([catalog.peer]), catalog.peers, SqlRequestLog(database)
    )
    return servicer, consumer


def _start(servicer: NegotiationManagementServicer, offer_id: str) -> pb.Negotiation:
    request = pb.StartNegotiationRequest(
        peer="city-a", dataset_id="counts", offer_id=offer_id, usage_json='{"purpose": "research"}'
    )
    return servicer.StartNegotiation(request, None).negotiation  # type: ignore[arg-type]


def test_start_negotiation_asks_the_catalog_once_for_a_burst(catalog: Catalog) -> None:
    servicer, _consumer = _management(catalog)

    started = [_start(servicer, "counts-research") for _ in range(4)]

    assert {n.offer_id for n in started} == {"counts-research"}
    assert len({n.id for n in started}) == 4
    assert catalog.peers.lookups == 1


def test_start_negotiation_asks_again_for_an_offer_it_has_not_seen(catalog: Catalog) -> None:
    # Prepare: the kept answer predates the new offer.
    servicer, _consumer = _management(catalog)
    _start(servicer, "counts-research")
    catalog.datasets.create_offer(Offer("counts-open", "counts", POLICY, True))

    # Execute
    started = _start(servicer, "counts-open")

    # Assert
    assert started.offer_id == "counts-open"
    assert catalog.peers.lookups == 2


def test_start_negotiation_refuses_an_offer_the_catalog_does_not_hold(catalog: Catalog) -> None:
    # Prepare
    servicer, consumer = _management(catalog)
    _start(servicer, "counts-research")
    before = consumer.store.list_negotiations()

    # Execute
    with pytest.raises(ConnectorError) as caught:
        _start(servicer, "counts-secret")

    # Assert: asked again before refusing, and nothing was started.
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "has no offer 'counts-secret'" in caught.value.message
    assert catalog.peers.lookups == 2
    assert consumer.store.list_negotiations() == before

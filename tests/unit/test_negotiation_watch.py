"""WatchManagedNegotiation over a real in-process gRPC server, on engines over SQLite."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from connector.clock import FixedClock
from connector.errors import from_rpc_error
from connector.identity import LoadedTLS, init_ca
from connector.interceptors.errors import ErrorInterceptor
from connector.negotiation.engine import NegotiationEngine
from connector.peers import PeerClient, PeerDirectory
from connector.services import negotiation_management
from connector.services.negotiation_management import NegotiationManagementServicer
from connector.store import SqlRequestLog, create_engine, sqlite_url
from connector.v1 import negotiation_management_pb2 as pb
from connector.v1 import negotiation_management_pb2_grpc
from tests.unit.test_negotiation_engine import Direct, _drain, _engine, _party, _start

CONSUMER_PATH = ["REQUESTING", "REQUESTED", "VERIFYING", "VERIFIED", "FINALIZED"]


class World:
    """A consumer and a provider engine, and the consumer's management API."""

    def __init__(self, tmp: Path) -> None:
        init_ca(tmp / "pki")
        self.clock = FixedClock(datetime.now(UTC))
        self.transport = Direct()
        self.consumer = _engine(tmp, "researcher", self.clock, self.transport, auto=True)
        self.provider = _engine(tmp, "city-a", self.clock, self.transport, auto=True)
        self.transport.peer = {
            "urn:hanse:city-a": self.provider,
            "urn:hanse:researcher": self.consumer,
        }
        party = _party(tmp, "watcher")
        self.peers = PeerClient(LoadedTLS(party.cert_pem, party.key_pem, party.trust_pem))
        self.database = create_engine(sqlite_url(tmp / "researcher" / "hanse.db"))
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8), interceptors=[ErrorInterceptor()]
        )
        negotiation_management_pb2_grpc.add_NegotiationManagementServiceServicer_to_server(
            NegotiationManagementServicer(
                self.consumer,
                PeerDirectory([]),
                self.peers,
                SqlRequestLog(self.database),
            ),
            self.server,
        )
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = negotiation_management_pb2_grpc.NegotiationManagementServiceStub(self.channel)

    def watch(self, negotiation_id: str, max_wait: float = 0.0) -> list[pb.Negotiation]:
        request = pb.WatchManagedNegotiationRequest(id=negotiation_id)
        if max_wait:
            request.max_wait.CopyFrom(_seconds(max_wait))
        return [m.negotiation for m in self.stub.WatchManagedNegotiation(request, timeout=30)]

    def close(self) -> None:
        self.consumer.changes.close()
        self.channel.close()
        self.server.stop(0)
        self.peers.close()
        self.database.dispose()


def _seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(int(value * 1e9))
    return duration


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    created = World(tmp_path)
    yield created
    created.close()


def _in_background(engines: tuple[NegotiationEngine, ...], started: threading.Event) -> None:
    started.wait(10)
    _drain(*engines)


def test_the_watch_streams_each_change_until_finalized(world: World) -> None:
    # Prepare: the negotiation moves only once the watch has seen its start.
    negotiation = _start(world.consumer)
    first_seen = threading.Event()
    mover = threading.Thread(
        target=_in_background, args=((world.consumer, world.provider), first_seen)
    )
    mover.start()

    # Execute
    seen = []
    request = pb.WatchManagedNegotiationRequest(id=negotiation.id)
    for message in world.stub.WatchManagedNegotiation(request, timeout=30):
        seen.append(message.negotiation)
        first_seen.set()
    mover.join(10)

    # Assert: in order, each a newer version, ending (by itself) with FINALIZED.
    states = [n.state for n in seen]
    assert states[0] == "REQUESTING"
    assert states[-1] == "FINALIZED"
    assert states == sorted(states, key=CONSUMER_PATH.index)
    assert len(states) == len(set(states))
    assert all(n.id == negotiation.id for n in seen)
    assert world.consumer.changes.watching() == 0


def test_a_finalized_negotiation_is_streamed_once(world: World) -> None:
    negotiation = _start(world.consumer)
    _drain(world.consumer, world.provider)

    seen = world.watch(negotiation.id)

    assert [n.state for n in seen] == ["FINALIZED"]


def test_an_unknown_negotiation_is_not_found(world: World) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        world.watch("urn:uuid:nope")

    error = from_rpc_error(caught.value)
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "NEGOTIATION_NOT_FOUND"
    assert world.consumer.changes.watching() == 0


@pytest.mark.parametrize(
    ("negotiation_id", "max_wait", "field"),
    [("", 0.0, "id"), ("x", 601.0, "max_wait"), ("x", -1.0, "max_wait")],
)
def test_a_malformed_watch_is_refused(
    world: World, negotiation_id: str, max_wait: float, field: str
) -> None:
    # Prepare
    negotiation = _start(world.consumer)
    before = world.consumer.store.get(negotiation.id)

    # Execute
    with pytest.raises(grpc.RpcError) as caught:
        world.watch(negotiation_id and negotiation.id, max_wait)

    # Assert
    error = from_rpc_error(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.message or any(v.field == field for v in error.violations)
    assert world.consumer.store.get(negotiation.id) == before


def test_the_watch_ends_after_max_wait_with_the_state_then(world: World) -> None:
    # Prepare: nothing delivers, so the negotiation stays REQUESTING.
    negotiation = _start(world.consumer)

    # Execute
    seen = world.watch(negotiation.id, max_wait=0.3)

    # Assert
    assert [n.state for n in seen] == ["REQUESTING"]
    assert world.consumer.changes.watching() == 0


def test_a_change_made_elsewhere_is_found_by_looking_at_the_store(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: another replica's change is not published here; the watch looks itself.
    monkeypatch.setattr(negotiation_management, "WATCH_LOOK_SECONDS", 0.05)
    negotiation = _start(world.consumer)
    stored = world.consumer.store.get(negotiation.id)
    watching = threading.Event()

    def elsewhere() -> None:
        watching.wait(10)
        world.consumer.store.save(replace(stored, attempts=5))

    changer = threading.Thread(target=elsewhere)
    changer.start()

    # Execute
    seen = []
    request = pb.WatchManagedNegotiationRequest(id=negotiation.id, max_wait=_seconds(5))
    for message in world.stub.WatchManagedNegotiation(request, timeout=30):
        seen.append(message.negotiation)
        watching.set()
        if len(seen) == 2:
            break
    changer.join(10)

    # Assert
    assert [n.attempts for n in seen] == [0, 5]


def test_closing_the_feed_ends_open_watches(world: World) -> None:
    # Prepare
    negotiation = _start(world.consumer)
    seen: list[pb.Negotiation] = []
    watcher = threading.Thread(target=lambda: seen.extend(world.watch(negotiation.id, 60)))
    watcher.start()
    _wait_for(lambda: world.consumer.changes.watching() == 1)

    # Execute: what a stopping node does.
    world.consumer.changes.close()
    watcher.join(10)

    # Assert
    assert not watcher.is_alive()
    assert [n.state for n in seen] == ["REQUESTING"]


def test_watches_beyond_the_limit_are_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: one watch open, and a limit of one.
    monkeypatch.setattr(negotiation_management, "MAX_WATCHES", 1)
    negotiation = _start(world.consumer)
    watcher = threading.Thread(target=lambda: world.watch(negotiation.id, 60))
    watcher.start()
    _wait_for(lambda: world.consumer.changes.watching() == 1)

    # Execute
    with pytest.raises(grpc.RpcError) as caught:
        world.watch(negotiation.id)

    # Assert
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "watches are open" in (caught.value.details() or "")
    assert world.consumer.changes.watching() == 1
    world.consumer.changes.close()
    watcher.join(10)


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)

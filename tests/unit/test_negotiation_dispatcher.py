"""The dispatcher: engines over SQLite on the real clock, delivering on their own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from connector.clock import SystemClock
from connector.identity import init_ca
from connector.negotiation.dispatcher import Dispatcher
from connector.negotiation.engine import Backoff, NegotiationEngine
from connector.negotiation.model import NegotiationRecord, PendingMessage
from connector.negotiation.states import Message, Role
from tests.unit.test_negotiation_engine import Direct, _engine, _start


class Gate(Direct):
    """Direct delivery that can be held at a gate, and that records what it carried."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.open.set()
        self.carried: list[tuple[str, Message]] = []

    def deliver(self, record: NegotiationRecord, message: PendingMessage) -> Mapping[str, Any]:
        self.open.wait(10)
        self.carried.append((record.id, message.kind))
        return super().deliver(record, message)


class Pair:
    """A consumer and a provider engine, each with a dispatcher (once started)."""

    def __init__(self, tmp: Path) -> None:
        init_ca(tmp / "pki")
        clock = SystemClock()
        self.transport = Gate()
        self.consumer = _engine(tmp, "researcher", clock, self.transport, auto=True)
        self.provider = _engine(tmp, "city-a", clock, self.transport, auto=True)
        fast = Backoff(first=0.05, factor=2.0, cap=0.2, attempts=4)
        self.consumer.backoff = fast
        self.provider.backoff = fast
        self.transport.peer = {
            "urn:hanse:city-a": self.provider,
            "urn:hanse:researcher": self.consumer,
        }
        self.dispatchers: list[Dispatcher] = []

    def start(self, engine: NegotiationEngine) -> Dispatcher:
        dispatcher = Dispatcher(engine, workers=4)
        dispatcher.start()
        self.dispatchers.append(dispatcher)
        return dispatcher

    def stop(self) -> None:
        self.transport.open.set()
        for dispatcher in self.dispatchers:
            dispatcher.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    created = Pair(tmp_path)
    yield created
    created.stop()


def _state(engine: NegotiationEngine, negotiation_id: str) -> str:
    return engine.store.get(negotiation_id).state.value


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_due_messages_are_delivered_at_once_to_finalized(pair: Pair) -> None:
    # Prepare
    pair.start(pair.consumer)
    pair.start(pair.provider)

    # Execute: no one calls dispatch_due; the engines hand their messages over.
    started = [_start(pair.consumer) for _ in range(5)]

    # Assert
    ids = [record.id for record in started]
    _wait_for(lambda: all(_state(pair.consumer, i) == "FINALIZED" for i in ids))
    assert all(pair.consumer.store.get(i).pending is None for i in ids)
    theirs = [pair.provider.store.find(Role.PROVIDER, consumer_pid=i) for i in ids]
    assert all(t is not None for t in theirs)
    _wait_for(
        lambda: all(t is not None and _state(pair.provider, t.id) == "FINALIZED" for t in theirs)
    )


def test_one_negotiation_is_delivered_by_one_thread_at_a_time_in_order(pair: Pair) -> None:
    # Prepare: the first delivery is held at the gate.
    pair.transport.open.clear()
    dispatcher = pair.start(pair.consumer)
    record = _start(pair.consumer)
    _wait_for(lambda: record.id in dispatcher.in_flight())

    # Execute: the same negotiation is handed over again while in flight.
    dispatcher.submit(pair.consumer.store.get(record.id))
    dispatcher.submit(pair.consumer.store.get(record.id))
    time.sleep(0.1)
    carried_while_held = list(pair.transport.carried)
    pair.transport.open.set()
    _wait_for(lambda: _state(pair.consumer, record.id) == "REQUESTED")
    _wait_for(lambda: record.id not in dispatcher.in_flight())

    # Assert: nothing went out while the first was held, and the REQUEST went once.
    assert carried_while_held == []
    assert pair.transport.carried == [(record.id, Message.REQUEST)]


def test_a_pending_message_from_before_a_restart_is_found_and_delivered(pair: Pair) -> None:
    # Prepare: saved while no dispatcher runs (as before a restart).
    record = _start(pair.consumer)
    pair.start(pair.provider)

    # Execute
    pair.start(pair.consumer)

    # Assert
    _wait_for(lambda: _state(pair.consumer, record.id) == "FINALIZED")


def test_a_failed_delivery_is_retried_after_its_backoff(pair: Pair) -> None:
    # Prepare: the peer is down for the first try.
    pair.transport.down = True
    pair.start(pair.provider)
    pair.start(pair.consumer)
    record = _start(pair.consumer)
    _wait_for(lambda: pair.consumer.store.get(record.id).attempts >= 1)

    # Execute
    pair.transport.down = False

    # Assert: the retry comes from the schedule, with no one calling dispatch_due.
    _wait_for(lambda: _state(pair.consumer, record.id) == "FINALIZED")
    assert pair.transport.sent.count(Message.REQUEST) >= 2


def test_a_peer_that_stays_down_terminates_the_negotiation(pair: Pair) -> None:
    pair.transport.down = True
    pair.start(pair.consumer)

    record = _start(pair.consumer)

    _wait_for(lambda: _state(pair.consumer, record.id) == "TERMINATED")
    final = pair.consumer.store.get(record.id)
    assert "did not acknowledge after 4 attempts" in final.reason
    assert pair.transport.sent == [Message.REQUEST] * 4


def test_a_stopped_dispatcher_takes_no_more_work(pair: Pair) -> None:
    # Prepare
    dispatcher = pair.start(pair.consumer)
    dispatcher.stop()

    # Execute
    record = _start(pair.consumer)
    time.sleep(0.2)

    # Assert: the message waits in the store for the next start.
    assert _state(pair.consumer, record.id) == "REQUESTING"
    assert pair.transport.sent == []
    assert pair.consumer.on_pending is None


def test_workers_must_be_at_least_one(pair: Pair) -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        Dispatcher(pair.consumer, workers=0)

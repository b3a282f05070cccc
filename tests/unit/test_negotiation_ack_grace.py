"""Deferred acknowledgements (``ack_grace``): one write where the answer records the ack.

A delivered message's acknowledgement is not saved at once when the counter-party is
expected to answer: the answer saves it in its own transaction. Nothing is lost for
it: every message sent is audited once, a deferred acknowledgement is saved when its
grace ends, before an operator action and when the dispatcher stops, the message is
not delivered twice meanwhile, and after a crash the message is delivered again and
answered as a duplicate.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.clock import FixedClock, SystemClock
from connector.identity import init_ca
from connector.negotiation.dispatcher import Dispatcher
from connector.negotiation.engine import Backoff, NegotiationEngine, visible_state
from connector.store import (
    SqlAuditLog,
    SqlDatasetStore,
    SqlNegotiationStore,
    create_engine,
    sqlite_url,
)
from tests.unit.test_negotiation_engine import Direct, _drain, _engine, _start

GRACE = 30.0
"""Longer than any test: only an explicit settle (or an answer) saves the ack."""


class World:
    """A consumer and a provider engine over SQLite, wired by direct delivery."""

    def __init__(self, tmp: Path, *, auto: bool, grace: float = GRACE) -> None:
        init_ca(tmp / "pki")
        self.tmp = tmp
        self.clock = FixedClock(datetime.now(UTC) + timedelta(minutes=10))
        self.transport = Direct()
        self.consumer = _engine(tmp, "researcher", self.clock, self.transport, auto=True)
        self.provider = _engine(tmp, "city-a", self.clock, self.transport, auto=auto)
        self.consumer.ack_grace = grace
        self.provider.ack_grace = grace
        self.transport.peer = {
            "urn:hanse:city-a": self.provider,
            "urn:hanse:researcher": self.consumer,
        }

    def audit_kinds(self, engine: NegotiationEngine) -> Counter[str]:
        log = SqlAuditLog(create_engine(sqlite_url(self._db(engine))), self.clock)
        return Counter(entry.kind for entry in log.entries())

    def _db(self, engine: NegotiationEngine) -> Path:
        name = "researcher" if engine is self.consumer else "city-a"
        return self.tmp / name / "hanse.db"


def test_answers_record_the_acknowledgements_and_every_message_is_audited_once(
    tmp_path: Path,
) -> None:
    # Prepare
    world = World(tmp_path, auto=True)

    # Execute
    started = _start(world.consumer)
    _drain(world.consumer, world.provider)

    # Assert: finalized on both sides, each message delivered once; every message
    # either side sent has one "sent" entry, although only the last one's
    # acknowledgement was saved on its own (the others came with the answers).
    done = world.consumer.store.get(started.id)
    theirs = world.provider.store.get(done.provider_pid)
    assert (done.state.value, theirs.state.value) == ("FINALIZED", "FINALIZED")
    assert [kind.name for kind in world.transport.sent] == [
        "REQUEST",
        "AGREEMENT",
        "VERIFICATION",
        "FINALIZED",
    ]
    assert world.audit_kinds(world.consumer)["negotiation.message.sent"] == 2
    assert world.audit_kinds(world.provider)["negotiation.message.sent"] == 2
    assert world.audit_kinds(world.consumer)["negotiation.message.received"] == 2
    assert world.consumer.settle_due(everything=True) is None  # nothing left waiting


def test_a_deferred_acknowledgement_waits_without_a_second_delivery_then_is_saved(
    tmp_path: Path,
) -> None:
    # Prepare: the provider waits for its operator, so no answer comes.
    world = World(tmp_path, auto=False)
    started = _start(world.consumer)
    _drain(world.consumer, world.provider)
    waiting = world.consumer.store.get(started.id)
    sent_before = list(world.transport.sent)

    # Execute: the consumer looks for due work again while the ack is deferred.
    tried = world.consumer.dispatch_due()

    # Assert: delivered once, still REQUESTING on record, nothing delivered again.
    assert waiting.state.value == "REQUESTING" and world.consumer.is_unsettled(waiting)
    assert tried == 0 and world.transport.sent == sent_before == [sent_before[0]]
    assert world.audit_kinds(world.consumer)["negotiation.message.sent"] == 0

    # Execute: the grace ends.
    world.consumer.settle_due(everything=True)

    # Assert: REQUESTED with the provider's pid, the message audited as sent once.
    settled = world.consumer.store.get(started.id)
    assert settled.state.value == "REQUESTED" and settled.pending is None
    assert settled.provider_pid != "" and not world.consumer.is_unsettled(settled)
    assert world.audit_kinds(world.consumer)["negotiation.message.sent"] == 1
    assert world.consumer.dispatch_due() == 0


def test_the_counter_party_sees_the_acknowledged_state_while_it_is_deferred(
    tmp_path: Path,
) -> None:
    # Prepare: the provider agrees and delivers its agreement; the consumer verifies
    # at once, but its verification is not delivered yet, so the provider's
    # acknowledgement of the agreement is deferred.
    world = World(tmp_path, auto=True)
    started = _start(world.consumer)
    world.consumer.dispatch_due()
    world.provider.dispatch_due()
    mine = world.consumer.store.get(started.id)
    theirs = world.provider.store.get(mine.provider_pid)

    # Execute
    shown = world.provider.dsp_state(theirs)

    # Assert: AGREED (what DSP says once the consumer acknowledged the agreement), not
    # the REQUESTED the stored AGREEING would show.
    assert (mine.state.value, theirs.state.value) == ("VERIFYING", "AGREEING")
    assert world.provider.is_unsettled(theirs)
    assert visible_state(theirs).value == "REQUESTED"
    assert shown.value == "AGREED"


def test_an_operator_action_saves_the_deferred_acknowledgement_first(tmp_path: Path) -> None:
    # Prepare: the request is delivered; its acknowledgement (carrying the provider's
    # pid) is deferred.
    world = World(tmp_path, auto=False)
    started = _start(world.consumer)
    _drain(world.consumer, world.provider)
    assert world.consumer.store.get(started.id).provider_pid == ""

    # Execute: the consumer's operator terminates at once.
    terminating = world.consumer.terminate(started.id, "changed our mind")
    _drain(world.consumer, world.provider)

    # Assert: the ack was saved first (REQUESTED, provider pid known), so the
    # termination names the provider's negotiation and ends it on both sides.
    assert terminating.state.value == "TERMINATING" and terminating.provider_pid != ""
    done = world.consumer.store.get(started.id)
    theirs = world.provider.store.get(done.provider_pid)
    assert (done.state.value, theirs.state.value) == ("TERMINATED", "TERMINATED")
    assert theirs.reason == "changed our mind"
    assert world.audit_kinds(world.consumer)["negotiation.message.sent"] == 2


def test_after_a_crash_the_message_is_delivered_again_and_answered_as_a_duplicate(
    tmp_path: Path,
) -> None:
    # Prepare: the request is delivered and its ack deferred; then the consumer's
    # process "dies" (its in-memory state is gone; a new engine opens the same file).
    world = World(tmp_path, auto=False)
    started = _start(world.consumer)
    _drain(world.consumer, world.provider)
    db = create_engine(sqlite_url(tmp_path / "researcher" / "hanse.db"))
    restarted = NegotiationEngine(
        party=world.consumer.party,
        store=SqlNegotiationStore(db, SqlAuditLog(db, world.clock), world.clock),
        datasets=SqlDatasetStore(db, world.clock),
        transport=world.transport,
        clock=world.clock,
        backoff=Backoff(first=1.0, factor=2.0, cap=8.0, attempts=4),
        rng=random.Random(7),
    )
    world.transport.peer["urn:hanse:researcher"] = restarted
    provider_side = world.provider.store.list_negotiations()

    # Execute: the restarted node finds the pending request and delivers it again.
    tried = restarted.dispatch_due()

    # Assert: the provider answered the duplicate as before (one negotiation, no
    # second effect); the restarted consumer saved the acknowledgement.
    assert tried == 1 and [k.name for k in world.transport.sent] == ["REQUEST", "REQUEST"]
    assert world.provider.store.list_negotiations() == provider_side
    record = restarted.store.get(started.id)
    assert record.state.value == "REQUESTED"
    assert record.provider_pid == provider_side[0].provider_pid


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def dispatched(tmp_path: Path) -> Iterator[tuple[World, Dispatcher]]:
    world = World(tmp_path, auto=False, grace=0.2)
    world.consumer.clock = SystemClock()
    world.provider.clock = SystemClock()
    dispatcher = Dispatcher(world.consumer, workers=2)
    dispatcher.start()
    yield world, dispatcher
    dispatcher.stop()


def test_the_dispatcher_saves_a_deferred_acknowledgement_once_its_grace_ends(
    dispatched: tuple[World, Dispatcher],
) -> None:
    # Prepare
    world, _dispatcher = dispatched

    # Execute: the provider waits for its operator; no answer comes.
    started = _start(world.consumer)
    _drain(world.provider)

    # Assert: REQUESTED soon after the grace, the request delivered once.
    _wait_for(lambda: world.consumer.store.get(started.id).state.value == "REQUESTED")
    assert [k.name for k in world.transport.sent] == ["REQUEST"]


def test_a_stopping_dispatcher_saves_the_deferred_acknowledgements(
    dispatched: tuple[World, Dispatcher],
) -> None:
    # Prepare: a long grace, so only the stop can save the ack.
    world, dispatcher = dispatched
    world.consumer.ack_grace = GRACE
    started = _start(world.consumer)
    _wait_for(lambda: world.consumer.is_unsettled(world.consumer.store.get(started.id)))

    # Execute
    dispatcher.stop()

    # Assert
    assert world.consumer.store.get(started.id).state.value == "REQUESTED"


def test_a_negative_grace_is_refused(tmp_path: Path) -> None:
    # Prepare
    world = World(tmp_path, auto=True)
    consumer = world.consumer

    # Execute / Assert
    with pytest.raises(ValueError, match="ack_grace must not be negative"):
        NegotiationEngine(
            party=consumer.party,
            store=consumer.store,
            datasets=consumer.datasets,
            transport=world.transport,
            ack_grace=-1.0,
        )

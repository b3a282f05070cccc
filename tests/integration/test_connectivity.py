"""A city's SuperNodes follow its agreements, against a real aggregator SuperLink.

The aggregator is a real Flower SuperLink (TLS, SuperNode authentication, the city's
key registered) with the researcher's certificate; the city is a real node folder
with a migrated SQLite store. :class:`~node.training.connectivity.Connectivity`
must start exactly one SuperNode while an agreement allows it, stop it when the last
agreement is terminated or expires, say why on the audit log, and never connect to a
SuperLink whose certificate names another participant.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.clock import FixedClock
from connector.negotiation.states import NegotiationState
from federation.flower.keys import public_key_pem_of_certificate
from federation.flower.process import free_port
from federation.flower.superlink import SuperLink, SuperLinkSettings
from node.training.connectivity import Connectivity
from tests.unit.city_support import (
    CITY,
    OTHER,
    RESEARCHER,
    City,
    copy_city,
    make_city,
    usage,
)

pytestmark = pytest.mark.integration

STARTED = "training.supernode.started"
STOPPED = "training.supernode.stopped"


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, SuperLink]]:
    """A closed city template and the researcher's running SuperLink.

    The city lists the researcher and another lab as peers; both fleet addresses
    point at the researcher's SuperLink.
    """
    root = tmp_path_factory.mktemp("federation")
    port = free_port()
    fleet = f"127.0.0.1:{port}"
    peers = [
        {"name": "researcher", "participant_id": RESEARCHER, "address": "127.0.0.1:1"},
        {"name": "other-lab", "participant_id": OTHER, "address": "127.0.0.1:2"},
    ]
    made = make_city(root, edit={"peers": [{**peer, "fleet_address": fleet} for peer in peers]})
    made.close()
    link = SuperLink(
        SuperLinkSettings(
            cert=root / "researcher" / "researcher.pem",
            key=root / "researcher" / "researcher.key",
            ca=root / "pki" / "ca.pem",
            state_dir=root / "superlink",
            port=port,
        )
    )
    try:
        link.register_node(public_key_pem_of_certificate(made.parties[CITY][0]), CITY)
        yield root, link
    finally:
        link.stop()
    assert not link.process.alive()


@pytest.fixture
def city(federation: tuple[Path, SuperLink], tmp_path: Path) -> Iterator[City]:
    opened = copy_city(federation[0], tmp_path / "node")
    yield opened
    opened.close()


@pytest.fixture
def link(federation: tuple[Path, SuperLink]) -> SuperLink:
    return federation[1]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime.now(UTC))


@pytest.fixture
def connectivity(city: City, clock: FixedClock) -> Iterator[Connectivity]:
    started = Connectivity(
        city.loaded, city.store, city.audit, spent=city.ledger.total_epsilon, clock=clock
    )
    yield started
    started.stop()
    assert started.connected() == {}


def audited(city: City) -> list[tuple[str, str, dict[str, object]]]:
    """(kind, peer, payload) of every SuperNode start and stop on the city's audit log."""
    return [
        (entry.kind, entry.peer, dict(entry.payload))
        for entry in city.audit.entries(limit=1000)
        if entry.kind in (STARTED, STOPPED)
    ]


def wait_online(link: SuperLink, timeout: float = 30.0) -> str:
    """The status the SuperLink reports for the city's key once online (or at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        [node] = link.nodes()
        if node["status"] == "online" or time.monotonic() > deadline:
            return str(node["status"])
        time.sleep(0.2)


def kill_supernode(connectivity: Connectivity) -> None:
    """Kill the one running SuperNode's process, as a crash would, and wait until it is gone."""
    [node] = connectivity._nodes.values()
    os.killpg(node.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while node.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not node.alive()


def supernode_processes(city: City) -> list[Path]:
    """The state folders of SuperNodes this city ever started."""
    folder = city.loaded.data_dir / "supernodes"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_one_supernode_runs_while_an_agreement_allows_and_stops_at_termination(
    city: City, link: SuperLink, connectivity: Connectivity
) -> None:
    # Prepare: two live agreements with the researcher.
    first = city.agreement("a")
    second = city.agreement("b")

    # Execute
    connectivity.reconcile()
    connectivity.reconcile()

    # Assert: exactly one SuperNode, started once, for both agreements.
    assert connectivity.connected() == {RESEARCHER: link.address}
    [node] = connectivity._nodes.values()
    assert node.alive()
    assert wait_online(link) == "online", "the SuperNode did not join the SuperLink"
    assert audited(city) == [
        (
            STARTED,
            RESEARCHER,
            {
                "fleetAddress": link.address,
                "agreements": ["urn:uuid:agreement-a", "urn:uuid:agreement-b"],
            },
        )
    ]

    # Execute: the city terminates one agreement; the other still allows.
    city.store.save(replace(first, state=NegotiationState.TERMINATED, reason="withdrawn"))
    connectivity.reconcile()

    # Assert
    assert connectivity.connected() == {RESEARCHER: link.address}
    assert node.alive()
    assert len(audited(city)) == 1

    # Execute: and the last one.
    city.store.save(replace(second, state=NegotiationState.TERMINATED, reason="withdrawn"))
    connectivity.reconcile()

    # Assert
    assert connectivity.connected() == {}
    assert not node.alive()
    assert audited(city)[1:] == [
        (
            STOPPED,
            RESEARCHER,
            {
                "fleetAddress": link.address,
                "reason": "agreement urn:uuid:agreement-b is TERMINATED (withdrawn)",
            },
        )
    ]


def test_the_supernode_stops_when_the_agreement_expires(
    city: City, link: SuperLink, connectivity: Connectivity, clock: FixedClock
) -> None:
    # Prepare
    city.agreement("a", expires=clock.now() + timedelta(hours=1))
    connectivity.reconcile()
    [node] = connectivity._nodes.values()
    assert node.alive()

    # Execute
    clock.advance(timedelta(hours=2))
    connectivity.reconcile()

    # Assert
    assert connectivity.connected() == {}
    assert not node.alive()
    [started, (kind, peer, payload)] = audited(city)
    assert started[0] == STARTED
    assert (kind, peer) == (STOPPED, RESEARCHER)
    reason = str(payload["reason"])
    assert reason.startswith("agreement urn:uuid:agreement-a no longer applies: permission")
    assert "dateTime" in reason
    assert connectivity.blocked == {RESEARCHER: reason}


def test_a_supernode_that_exits_is_started_again_after_a_growing_delay(
    city: City, link: SuperLink, connectivity: Connectivity, clock: FixedClock
) -> None:
    # Prepare: a connected SuperNode whose process dies.
    city.agreement("a")
    connectivity.reconcile()
    kill_supernode(connectivity)

    # Execute: the next reconciliations, before the delay has passed.
    connectivity.reconcile()
    connectivity.reconcile()

    # Assert: stopped once, on the record, and not started again yet.
    assert connectivity.connected() == {}
    [started, (kind, peer, payload)] = audited(city)
    assert (started[0], kind, peer) == (STARTED, STOPPED, RESEARCHER)
    delay = timedelta(seconds=2 * city.loaded.model.training.reconcile_seconds)
    retry_at = (clock.now() + delay).isoformat()
    assert payload["reason"] == (
        "the SuperNode process exited (has the aggregator registered this node's key?); "
        f"it is started again at {retry_at} at the earliest"
    )
    assert connectivity.blocked == {
        RESEARCHER: f"the SuperNode towards {link.address} exited 1 time(s); "
        f"next start at {retry_at}"
    }

    # Execute: once the delay has passed.
    clock.advance(delay)
    connectivity.reconcile()

    # Assert
    assert connectivity.connected() == {RESEARCHER: link.address}
    assert [kind for kind, _, _ in audited(city)] == [STARTED, STOPPED, STARTED]
    assert connectivity.blocked == {}

    # Execute: it dies again soon after; the delay doubles.
    kill_supernode(connectivity)
    connectivity.reconcile()

    # Assert
    assert connectivity.connected() == {}
    assert connectivity.blocked == {
        RESEARCHER: f"the SuperNode towards {link.address} exited 2 time(s); "
        f"next start at {(clock.now() + 2 * delay).isoformat()}"
    }


def test_a_superlink_that_names_another_participant_is_not_connected(
    city: City, link: SuperLink, connectivity: Connectivity
) -> None:
    # Prepare: an agreement with the other lab, whose fleet address (as this city's
    # config has it) answers with the researcher's certificate.
    city.agreement("a", consumer=OTHER, stated=usage())

    # Execute
    connectivity.reconcile()

    # Assert
    assert connectivity.connected() == {}
    assert connectivity.blocked == {
        OTHER: f"the SuperLink at {link.address} is {RESEARCHER}, not {OTHER}"
    }
    assert audited(city) == []
    assert supernode_processes(city) == []


def test_the_background_loop_connects_and_stop_ends_every_supernode(
    city: City, link: SuperLink, connectivity: Connectivity
) -> None:
    # Prepare
    city.agreement("a")

    # Execute
    connectivity.start()
    deadline = time.monotonic() + 60
    while not connectivity.connected() and time.monotonic() < deadline:
        time.sleep(0.1)
    [node] = connectivity._nodes.values()
    connectivity.stop()

    # Assert
    assert connectivity.connected() == {}
    assert not node.alive()
    assert [(kind, payload.get("reason")) for kind, _, payload in audited(city)] == [
        (STARTED, None),
        (STOPPED, "the node is stopping"),
    ]

"""Tests for the directory of known peers (connector.peers.PeerDirectory)."""

from __future__ import annotations

import grpc
import pytest

from connector.errors import ConnectorError
from connector.peers import Peer, PeerDirectory

CITY_B = Peer("city-b", "urn:hanse:city-b", "10.0.0.2:7443")
CITY_A = Peer("city-a", "urn:hanse:city-a", "10.0.0.1:7443")
HARBOUR = Peer("harbour", "did:web:harbour.example", "harbour.example:443")


@pytest.fixture
def directory() -> PeerDirectory:
    return PeerDirectory([HARBOUR, CITY_B, CITY_A])


def test_peers_are_listed_by_name(directory: PeerDirectory) -> None:
    # Prepare
    expected = [CITY_A, CITY_B, HARBOUR]

    # Execute
    listed = directory.all()

    # Assert
    assert listed == expected


def test_listing_is_a_copy(directory: PeerDirectory) -> None:
    # Prepare
    listed = directory.all()

    # Execute
    listed.clear()

    # Assert
    assert directory.all() == [CITY_A, CITY_B, HARBOUR]


def test_directory_accepts_any_iterable() -> None:
    # Prepare
    peers = (p for p in [CITY_B, CITY_A])

    # Execute
    directory = PeerDirectory(peers)

    # Assert
    assert directory.all() == [CITY_A, CITY_B]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("city-a", CITY_A),
        ("urn:hanse:city-b", CITY_B),
        ("harbour", HARBOUR),
        ("did:web:harbour.example", HARBOUR),
    ],
)
def test_find_by_name_or_participant_id(directory: PeerDirectory, key: str, expected: Peer) -> None:
    # Prepare
    given = key

    # Execute
    found = directory.find(given)

    # Assert
    assert found == expected


@pytest.mark.parametrize("key", ["city-c", "CITY-A", "urn:hanse:city-c", "10.0.0.1:7443", ""])
def test_unknown_peer_is_not_found_and_the_known_are_listed(
    directory: PeerDirectory, key: str
) -> None:
    # Prepare
    before = directory.all()

    # Execute
    with pytest.raises(ConnectorError) as raised:
        directory.find(key)

    # Assert
    error = raised.value
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "PEER_UNKNOWN"
    assert error.message == f"unknown peer {key!r}; known peers: city-a, city-b, harbour"
    assert dict(error.metadata) == {"peer": key}
    assert directory.all() == before


def test_empty_directory_says_none_are_configured() -> None:
    # Prepare
    directory = PeerDirectory([])

    # Execute
    with pytest.raises(ConnectorError) as raised:
        directory.find("city-a")

    # Assert
    assert raised.value.reason == "PEER_UNKNOWN"
    assert raised.value.message.endswith("known peers: none configured")
    assert directory.all() == []

"""Peer memberships in the node config: the groups this node places each peer in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from node.config import ConfigError, load_config

EU = "urn:hanse:group:eu-cities"
COASTAL = "urn:hanse:group:coastal"


def _config(tmp_path: Path, *peers: dict[str, Any]) -> Path:
    document = {
        "node": {"name": "city-a", "participant_id": "urn:hanse:city-a"},
        "tls": {"cert": "tls/node.crt", "key": "tls/node.key", "trust_bundle": "tls/ca.crt"},
        "peers": list(peers),
    }
    path = tmp_path / "hanse.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _peer(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "participant_id": f"urn:hanse:{name}",
        "address": f"{name}:7443",
        **fields,
    }


def test_memberships_default_to_none_and_are_read_per_peer(tmp_path: Path) -> None:
    # Prepare
    path = _config(tmp_path, _peer("city-b", memberships=[EU, COASTAL]), _peer("researcher"))

    # Execute
    model = load_config(path).model

    # Assert
    assert model.peers[0].memberships == [EU, COASTAL]
    assert model.peers[1].memberships == []
    assert model.peer_memberships() == {"urn:hanse:city-b": frozenset({EU, COASTAL})}


@pytest.mark.parametrize(
    ("memberships", "field", "message"),
    [
        ([""], "peers[1].memberships", "a membership must name a group"),
        (["   "], "peers[1].memberships", "a membership must name a group"),
        ([f" {EU}"], "peers[1].memberships", "has spaces around it; remove them"),
        ([EU, COASTAL, EU], "peers[1].memberships", f"membership {EU!r} appears twice"),
        ([EU, 5], "peers[1].memberships[1]", "valid string"),
        (EU, "peers[1].memberships", "valid list"),
        ([None], "peers[1].memberships[0]", "valid string"),
    ],
    ids=["empty", "blank", "spaces", "duplicate", "number", "not-a-list", "null"],
)
def test_bad_memberships_name_the_peer_and_what_is_wrong(
    tmp_path: Path, memberships: Any, field: str, message: str
) -> None:
    # Prepare
    path = _config(tmp_path, _peer("city-b", memberships=[EU]), _peer("city-c"))
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["peers"][1]["memberships"] = memberships
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    before = path.read_text(encoding="utf-8")

    # Execute
    with pytest.raises(ConfigError) as refused:
        load_config(path)

    # Assert
    assert refused.value.field == field
    assert message in refused.value.message
    assert str(path) in str(refused.value)
    assert path.read_text(encoding="utf-8") == before


def test_the_same_group_for_two_peers_is_fine(tmp_path: Path) -> None:
    # Prepare
    path = _config(tmp_path, _peer("city-b", memberships=[EU]), _peer("city-c", memberships=[EU]))

    # Execute
    memberships = load_config(path).model.peer_memberships()

    # Assert
    assert memberships == {"urn:hanse:city-b": frozenset({EU}), "urn:hanse:city-c": frozenset({EU})}

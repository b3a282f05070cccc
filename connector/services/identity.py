"""Who the serving node is, as its services publish it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeIdentity:
    """The serving node's public identity."""

    participant_id: str
    """Participant id (URI SAN of the node certificate)."""
    name: str
    """Node name."""
    endpoint_url: str
    """Protocol endpoint peers use, for example ``grpcs://city-a.example:7443``."""

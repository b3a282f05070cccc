"""The addresses a running node actually listens on (ports chosen by the OS too).

The node writes ``endpoints.json`` in its data folder once it serves, and removes
it when it stops; the CLI reads it to find the node.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Endpoints:
    """Where a running node can be reached."""

    protocol: str
    """Peer-facing API, host:port."""
    management: str
    """Operator-facing API, host:port."""
    health: str = ""
    """Plaintext health port, if any."""
    metrics: str = ""
    """Prometheus HTTP endpoint, if any."""
    pid: int = 0
    """The node's process id."""


def connectable(address: str) -> str:
    """``address`` with a wildcard host replaced by loopback, for local clients."""
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def write_endpoints(path: Path, endpoints: Endpoints) -> None:
    """Write atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(endpoints), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_endpoints(path: Path) -> Endpoints | None:
    """The endpoints a running node wrote, or None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Endpoints(**data)
    except (OSError, ValueError, TypeError):
        return None

"""Real node processes on loopback for integration tests.

Every node runs as ``python -m node node start --config FILE`` in its own process
group, listening on ports the OS chooses; the harness reads the bound addresses
from the node's ``endpoints.json`` and stops every process it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connector.identity import LoadedTLS, TLSFiles, init_ca, issue_certificate, load_tls
from node.config import load_config
from node.setup import NodeInit, PeerSpec
from node.supervisor import RunningNode, start_node

NodeProcess = RunningNode


@dataclass
class Cluster:
    """A federation PKI and the nodes started from it."""

    root: Path
    processes: list[NodeProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pki = self.root / "pki"
        init_ca(self.pki)

    def init(
        self,
        name: str,
        *,
        sensors: tuple[str, ...] = (),
        peers: tuple[NodeProcess, ...] = (),
        database_url: str = "",
        edit: dict[str, Any] | None = None,
    ) -> Path:
        """Write a node folder (ports chosen by the OS) and return its config path."""
        loaded = NodeInit(
            name=name,
            pki_dir=self.pki,
            out_dir=self.root / name,
            protocol_listen="127.0.0.1:0",
            management_listen="127.0.0.1:0",
            peers=[PeerSpec(p.config.model.node.name, p.participant_id, p.protocol) for p in peers],
            sensors=list(sensors),
            database_url=database_url,
            force=True,
        ).write()
        if edit:
            document = yaml.safe_load(loaded.path.read_text(encoding="utf-8"))
            _merge(document, edit)
            loaded.path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return loaded.path

    def start(self, config_path: Path) -> NodeProcess:
        """Start a node process and wait until it serves."""
        log_path = config_path.parent / f"node-{len(self.processes)}.log"
        node = start_node(config_path, log_path, cwd=self.root)
        self.processes.append(node)
        return node

    def run_start_expecting_exit(
        self, config_path: Path, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``hanse node start`` for a config that must make it exit."""
        return subprocess.run(
            [sys.executable, "-m", "node", "node", "start", "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )

    def tls(self, config_path: Path) -> LoadedTLS:
        """The TLS material of the node whose config is given."""
        loaded = load_config(config_path)
        section = loaded.model.tls
        return load_tls(
            TLSFiles(
                loaded.resolve(section.cert),
                loaded.resolve(section.key),
                loaded.resolve(section.trust_bundle),
            )
        )

    def identity(self, name: str, participant_id: str, **kwargs: Any) -> LoadedTLS:
        """A certificate of this federation that belongs to no node (a bare peer)."""
        out = self.root / "identities" / name
        files = issue_certificate(
            self.pki, name, participant_id=participant_id, out_dir=out, **kwargs
        )
        return load_tls(TLSFiles(files.cert, out / f"{name}.key", files.ca))

    def stop_all(self) -> list[int]:
        """Stop every node started; returns their exit codes."""
        codes = [node.stop() for node in self.processes]
        self.processes.clear()
        return codes


def hanse(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the ``hanse`` CLI as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def dump(data: Any) -> str:
    return json.dumps(data, indent=2)

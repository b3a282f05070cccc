"""Where a negotiation's time goes: the engines alone, and hop by hop between two nodes.

Two measurements that explain ``bench/negotiation.py``'s figures (see
docs/benchmarks.md, "Negotiation: where the time goes"):

* **engines**: the consumer's and the provider's :class:`NegotiationEngine` in one
  process, each with its own SQLite file and audit log, the provider's auto-agree
  offer, messages handed from one engine to the other directly (no gRPC, no threads),
  acknowledgements deferred as the node defers them (``ACK_GRACE_SECONDS``).
  What remains is the negotiation's own work (state machine, policy evaluation,
  signing and verifying, DSP messages, the stores' write transactions with their audit
  entries): CPU and wall milliseconds per complete negotiation.
* **timeline**: the benchmark's two node processes (mutual TLS, SQLite), negotiations
  one after another as at concurrency 1; afterwards both nodes' audit logs give each
  step's time, and the median offset of each step from the negotiation's creation is
  printed: each peer round trip's share of the latency.

Run: ``.venv/bin/python bench/negotiation_profile.py`` (prints only).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from measure import start_city, start_researcher  # noqa: E402
from negotiation import DATASET, SENSOR, Cell, _negotiate  # noqa: E402

from connector.clock import SystemClock  # noqa: E402
from connector.datasets import Column, Dataset, DataSource, Offer  # noqa: E402
from connector.identity import init_ca, issue_certificate  # noqa: E402
from connector.negotiation.engine import (  # noqa: E402
    ACK_GRACE_SECONDS,
    Backoff,
    NegotiationEngine,
    Party,
)
from connector.negotiation.model import NegotiationRecord, PendingMessage  # noqa: E402
from connector.store import (  # noqa: E402
    SqlAuditLog,
    SqlDatasetStore,
    SqlNegotiationStore,
    create_engine,
    migrate,
    sqlite_url,
)

POLICY = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}
            ],
        }
    ]
}
CONSUMER = "urn:hanse:researcher"
PROVIDER = "urn:hanse:city-a"


class Direct:
    """Hands a pending message straight to the other engine (no gRPC, same thread)."""

    def __init__(self) -> None:
        self.engines: dict[str, NegotiationEngine] = {}

    def deliver(self, record: NegotiationRecord, message: PendingMessage) -> Mapping[str, Any]:
        sender = CONSUMER if record.counterparty_id == PROVIDER else PROVIDER
        return self.engines[record.counterparty_id].receive(
            message.kind, message.payload, sender_id=sender, signature=message.signature
        )


def _engine(work: Path, name: str, transport: Direct) -> NegotiationEngine:
    files = issue_certificate(
        work / "pki", name, participant_id=f"urn:hanse:{name}", out_dir=work / name
    )
    clock = SystemClock()
    db = create_engine(sqlite_url(work / name / "hanse.db"))
    migrate(db)
    datasets = SqlDatasetStore(db, clock)
    if name == "city-a":
        offer = {"@type": "Offer", "@id": "counts-research", **POLICY}
        datasets.create_dataset(
            Dataset(
                id="counts",
                title="Counts",
                format="csv",
                source=DataSource(path="/srv/counts.csv"),
                columns=(Column("count", "integer"),),
                offers=(Offer("counts-research", "counts", offer, True),),
            )
        )
    return NegotiationEngine(
        party=Party(
            participant_id=f"urn:hanse:{name}",
            callback_address=f"grpcs://{name}:7443",
            cert_pem=files.cert.read_bytes(),
            key_pem=(work / name / f"{name}.key").read_bytes(),
            trust_pem=files.ca.read_bytes(),
        ),
        store=SqlNegotiationStore(db, SqlAuditLog(db, clock), clock),
        datasets=datasets,
        transport=transport,
        clock=clock,
        backoff=Backoff(first=1.0, factor=2.0, cap=8.0, attempts=4),
        rng=random.Random(7),
        ack_grace=ACK_GRACE_SECONDS,  # as the node runs it
    )


def engines(work: Path, count: int) -> None:
    """CPU and wall time of complete negotiations between two engines in one process."""
    init_ca(work / "pki")
    transport = Direct()
    consumer = _engine(work, "researcher", transport)
    provider = _engine(work, "city-a", transport)
    transport.engines = {PROVIDER: provider, CONSUMER: consumer}

    def one() -> str:
        record = consumer.start(
            provider_id=PROVIDER,
            provider_address="city-a:7443",
            dataset_id="counts",
            offer_id="counts-research",
            offer_policy=POLICY,
            usage={"purpose": "research"},
        )
        for _ in range(20):
            if not consumer.dispatch_due() + provider.dispatch_due():
                break
        return consumer.store.get(record.id).state.value

    for _ in range(20):
        one()  # warm-up: caches, SQLite pages
    states = []
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        states.append(one())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if set(states) != {"FINALIZED"}:
        raise RuntimeError(f"not every negotiation finalized: {sorted(set(states))}")
    print(
        f"engines in one process: {count} negotiations, {cpu / count * 1000:.2f} ms CPU and "
        f"{wall / count * 1000:.2f} ms wall per negotiation (both sides, SQLite, no gRPC)"
    )


def timeline(work: Path, count: int) -> None:
    """Per-step median offsets of ``count`` sequential negotiations between two nodes."""
    init_ca(work / "pki")
    city = start_city(work, [SENSOR])
    researcher = None
    try:
        researcher = start_researcher(work, city)
        cell = Cell(1)
        with researcher.client() as client:
            for _ in range(count + 10):
                _negotiate(client, 0.0, cell, threading.Lock())
    finally:
        if researcher is not None:
            researcher.stop()
        city.stop()
    steps = _steps(work / "researcher" / "data" / "hanse.db", work / "city-a" / "data" / "hanse.db")
    runs = [run for run in steps if len(run) >= 10][-count:]
    if not runs:
        raise RuntimeError(f"no negotiations found in the audit logs under {work}")
    print(
        f"timeline: {len(runs)} negotiations of {DATASET}, one at a time; client latency "
        f"p50 {statistics.median(cell.latencies[-count:]) * 1000:.1f} ms; median offset of "
        "each step from the researcher's INITIAL->REQUESTING (audit times of both nodes):"
    )
    common = min(len(run) for run in runs)
    typical = runs[len(runs) // 2]
    for index in range(common):
        offset = statistics.median((run[index][0] - run[0][0]) * 1000 for run in runs)
        print(f"  {offset:7.2f} ms  {typical[index][1]:10}  {typical[index][2]}")


def _steps(researcher_db: Path, city_db: Path) -> list[list[tuple[float, str, str]]]:
    """Both logs' entries grouped by negotiation (its consumer pid), in time order."""
    by_consumer_pid: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    city_subject_pid: dict[str, str] = {}
    for side, db in (("researcher", researcher_db), ("city", city_db)):
        with sqlite3.connect(db) as connection:
            rows = connection.execute(
                "SELECT time, kind, subject, payload FROM audit_entry ORDER BY seq"
            ).fetchall()
        for raw_time, kind, subject, raw_payload in rows:
            payload = json.loads(raw_payload) if isinstance(raw_payload, str) else raw_payload
            message = payload.get("message") or {}
            pid = payload.get("consumerPid") or message.get("consumerPid") or ""
            if side == "researcher":
                pid = subject
            elif pid:
                city_subject_pid[subject] = pid
            else:
                pid = city_subject_pid.get(subject, "")
            if not pid:
                continue
            by_consumer_pid[pid].append((_seconds(raw_time), side, _label(kind, payload)))
    return [sorted(entries) for entries in by_consumer_pid.values()]


def _label(kind: str, payload: Mapping[str, Any]) -> str:
    if kind == "negotiation.state":
        return f"state {payload.get('from', '?')} -> {payload.get('to', '?')}"
    message = payload.get("message")
    if kind.startswith("negotiation.message.") and isinstance(message, Mapping):
        return f"{kind.rsplit('.', 1)[-1]} {message.get('@type', '?')}"
    return kind


def _seconds(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="negotiations per measurement")
    parser.add_argument("--only", choices=("engines", "timeline"), help="run just one part")
    args = parser.parse_args()
    base = REPO / ".tools" if (REPO / ".tools").is_dir() else None
    for part, run in (("engines", engines), ("timeline", timeline)):
        if args.only in (None, part):
            with tempfile.TemporaryDirectory(dir=base) as raw:
                run(Path(raw), args.count)


if __name__ == "__main__":
    main()

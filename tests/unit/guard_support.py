"""Builders for the guard tests: a node's PKI, a migrated database, a guard, messages.

Everything is real: certificates from the development PKI, an SQLite file migrated
to the head, the synthetic task's model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.app.metadata import Metadata
from flwr.clientapp import ClientApp

from connector.clock import FixedClock
from connector.identity import init_ca, issue_certificate
from connector.store import create_engine, migrate, sqlite_url
from federation.guard import METRICS_RECORD, NUM_EXAMPLES_KEY, GuardContext, guard_mods
from federation.training import DPSettings, TrainSettings
from tests.unit.synthetic_task import LinearTask

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NODE = "urn:hanse:city-a"
AGGREGATOR = "urn:hanse:researcher"
AGREEMENT = "urn:uuid:agreement-1"
DATASET = "ped-counts"
RUN = 7
ARRAYS = "arrays"


@dataclass(frozen=True)
class Pki:
    """A federation CA and one node's certificate."""

    trust_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def make_federation(directory: Path, participants: Sequence[str]) -> list[Pki]:
    """A fresh federation CA in ``directory`` and a node certificate per participant."""
    clock = FixedClock(NOW)
    ca = init_ca(directory / "ca", clock=clock)
    trust = ca.cert.read_bytes()
    issued = []
    for index, participant in enumerate(participants):
        files = issue_certificate(
            directory / "ca",
            f"node-{index}",
            participant_id=participant,
            out_dir=directory / "nodes",
            clock=clock,
        )
        issued.append(Pki(trust, files.cert.read_bytes(), files.key.read_bytes()))
    return issued


def make_pki(directory: Path, participant: str = NODE) -> Pki:
    """A fresh federation CA in ``directory`` and a certificate for ``participant``."""
    return make_federation(directory, [participant])[0]


def migrated_url(directory: Path) -> str:
    """The URL of a new SQLite database in ``directory``, migrated to the head."""
    url = sqlite_url(directory / "state" / "node.db")
    engine = create_engine(url)
    migrate(engine)
    engine.dispose()
    return url


def make_guard(pki: Pki, url: str, **overrides: Any) -> GuardContext:
    """A guard for the synthetic task's 64 training examples; ``overrides`` replace fields."""
    guard = GuardContext(
        agreement_id=AGREEMENT,
        dataset_id=DATASET,
        max_rounds=3,
        epsilon_budget=50.0,
        dp=DPSettings(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5),
        train=TrainSettings(epochs=1, batch_size=16, learning_rate=0.05, seed=11),
        train_examples=64,
        metric_keys=LinearTask.metrics,
        certificate_pem=pki.cert_pem,
        key_pem=pki.key_pem,
        database_url=url,
        aggregator=AGGREGATOR,
        clock=FixedClock(NOW),
    )
    return replace(guard, **overrides) if overrides else guard


def model_arrays() -> ArrayRecord:
    """The synthetic task's initial model, as the aggregator sends it."""
    return ArrayRecord(LinearTask().build_model().state_dict())


def instruction(
    message_type: str = "train",
    arrays: ArrayRecord | None = None,
    *,
    run_id: int = RUN,
    message_id: str = "instruction-1",
    config: dict[str, Any] | None = None,
) -> Message:
    """A message from the aggregator, as the node receives it."""
    content = RecordDict(
        {
            ARRAYS: arrays if arrays is not None else model_arrays(),
            "config": ConfigRecord(config or {"server-round": 1}),
        }
    )
    metadata = Metadata(
        run_id=run_id,
        message_id=message_id,
        src_node_id=1,
        dst_node_id=2,
        reply_to_message_id="",
        group_id="",
        created_at=NOW.timestamp(),
        ttl=3600.0,
        message_type=message_type,
    )
    # Flower's own constructor for a received message (metadata set by the SuperLink).
    return Message(content=content, metadata=metadata)  # type: ignore[call-overload,no-any-return]


def context(run_id: int = RUN) -> Context:
    """A ClientApp context."""
    return Context(run_id=run_id, node_id=2, node_config={}, state=RecordDict(), run_config={})


def update_reply(message: Message, *, delta: float = 0.5, examples: int = 64) -> Message:
    """A well-formed reply to a train message: every array moved by ``delta``."""
    received = message.content.array_records[ARRAYS]
    arrays = ArrayRecord(
        {key: Array(array.numpy() + np.float32(delta)) for key, array in received.items()}
    )
    metrics = MetricRecord({"mae": 0.5, "mse": 0.25, NUM_EXAMPLES_KEY: examples})
    return Message(RecordDict({ARRAYS: arrays, METRICS_RECORD: metrics}), reply_to=message)


def metrics_reply(message: Message) -> Message:
    """A well-formed reply to an evaluate message."""
    metrics = MetricRecord({"mae": 0.5, "mse": 0.25, NUM_EXAMPLES_KEY: 16})
    return Message(RecordDict({METRICS_RECORD: metrics}), reply_to=message)


class App:
    """A stand-in for the app behind a mod: answers with ``answer`` and counts its calls."""

    def __init__(self, answer: Callable[[Message], Message] = update_reply) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self, message: Message, context: Context) -> Message:
        self.calls += 1
        return self.answer(message)


def reason(reply: Message) -> str:
    """The reason of an Error reply (fails if the reply is no error)."""
    assert reply.has_error(), "expected an Error reply"
    return reply.error.reason or ""


def guarded(guard: GuardContext, app: App) -> ClientApp:
    """A ClientApp whose every handler is ``app``, inside the guard's mods."""
    client = ClientApp(mods=guard_mods(guard))
    client.train()(app)
    client.evaluate()(app)
    client.query()(app)
    return client

"""The audit mod: every reply that leaves and every refusal is on the audit log."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Error, Message

from federation.guard import AuditMod, GuardContext, Refusal, refuse, update_digest
from federation.guard.audit import METRICS_SENT, REFUSED, UPDATE_SENT
from tests.unit.guard_support import (
    AGGREGATOR,
    AGREEMENT,
    DATASET,
    App,
    context,
    guarded,
    instruction,
    make_guard,
    make_pki,
    metrics_reply,
    migrated_url,
    reason,
    update_reply,
)


@pytest.fixture
def guard(tmp_path: Path) -> GuardContext:
    return make_guard(make_pki(tmp_path), migrated_url(tmp_path))


def chained(guard: GuardContext, app: App, message: Message) -> Message:
    """``message`` through the whole guard in front of ``app``."""
    return guarded(guard, app)(message, context())


def test_an_update_that_leaves_is_on_record(guard: GuardContext) -> None:
    # Prepare
    message = instruction()

    # Execute
    reply = chained(guard, App(lambda m: update_reply(m, delta=0.5)), message)

    # Assert: the update moved 5 numbers by 0.5, so its L2 norm is 0.5 * sqrt(5).
    assert not reply.has_error()
    [entry] = guard.audit_log().entries()
    assert (entry.kind, entry.actor, entry.peer, entry.subject) == (
        UPDATE_SENT,
        "node",
        AGGREGATOR,
        AGREEMENT,
    )
    payload = dict(entry.payload)
    assert math.isclose(payload.pop("l2Norm"), 0.5 * math.sqrt(5), rel_tol=1e-6)
    assert payload == {
        "agreement": AGREEMENT,
        "dataset": DATASET,
        "run": "7",
        "messageType": "train",
        "round": 1,
        "bytes": payload["bytes"],
        "epsilon": guard.ledger().total_epsilon(DATASET),
        "epsilonBudget": 50,
        "delta": 1e-5,
        "digest": update_digest(reply.content),
    }
    assert payload["bytes"] > 5 * 4
    assert guard.audit_log().verify().ok


def test_metrics_that_leave_are_on_record(guard: GuardContext) -> None:
    # Execute
    chained(guard, App(metrics_reply), instruction("evaluate"))

    # Assert
    [entry] = guard.audit_log().entries()
    assert entry.kind == METRICS_SENT
    assert entry.payload["metrics"] == {"mae": 0.5, "mse": 0.25, "num-examples": 16}


def test_a_refusal_is_on_record_with_its_local_detail(guard: GuardContext) -> None:
    # Prepare: an app whose reply carries an undeclared metric.
    def leaky(message: Message) -> Message:
        reply = update_reply(message)
        reply.content.metric_records["metrics"]["row_17=42"] = 1.0
        return reply

    # Execute
    reply = chained(guard, App(leaky), instruction())

    # Assert
    [entry] = guard.audit_log().entries()
    assert entry.kind == REFUSED
    assert entry.payload["refusal"] == Refusal.EGRESS_REFUSED
    assert entry.payload["reason"] == reason(reply)
    assert "row_17=42" in entry.payload["detail"]
    assert "row_17" not in reason(reply)
    assert guard.ledger().history(DATASET) == []


def test_an_exception_becomes_a_refusal_whose_message_stays_on_the_node(
    guard: GuardContext,
) -> None:
    # Prepare
    def crashing(message: Message) -> Message:
        raise ValueError("row 17 of the dataset holds 42")

    # Execute
    reply = chained(guard, App(crashing), instruction())

    # Assert
    assert reason(reply) == (
        "TRAINING_FAILED: the node could not complete this train message (ValueError); "
        "nothing was sent, and the node's operator finds the details in its audit log"
    )
    [entry] = guard.audit_log().entries()
    assert entry.kind == REFUSED
    assert entry.payload["detail"] == "ValueError: row 17 of the dataset holds 42"
    assert guard.ledger().history(DATASET) == []


def test_an_error_the_guard_did_not_make_is_on_record_too(guard: GuardContext) -> None:
    # Prepare
    app = App(lambda m: Message(Error(code=0, reason="flower broke"), reply_to=m))

    # Execute
    AuditMod(guard)(instruction(), context(), app)

    # Assert
    [entry] = guard.audit_log().entries()
    assert (entry.payload["refusal"], entry.payload["reason"]) == ("ERROR", "flower broke")


def test_an_update_that_cannot_be_audited_does_not_leave(
    tmp_path: Path, guard: GuardContext
) -> None:
    # Prepare: the audit log's database is gone (never migrated).
    broken = make_guard(make_pki(tmp_path / "b"), f"sqlite:///{tmp_path / 'empty.db'}")

    # Execute
    reply = AuditMod(broken)(instruction("evaluate"), context(), App(metrics_reply))

    # Assert
    assert reason(reply) == (
        "AUDIT_FAILED: the reply could not be put on the node's audit log, so it was not sent"
    )


def test_the_update_norm_is_measured_against_the_received_model(guard: GuardContext) -> None:
    # Prepare: the app replies with the received model unchanged.
    def unchanged(message: Message) -> Message:
        reply = update_reply(message, delta=0.0)
        return reply

    # Execute
    chained(guard, App(unchanged), instruction())

    # Assert
    [entry] = guard.audit_log().entries()
    assert entry.payload["l2Norm"] == 0
    assert np.isfinite(entry.payload["epsilon"])


def test_a_refused_round_is_audited_once(tmp_path: Path) -> None:
    # Prepare
    exhausted = make_guard(make_pki(tmp_path), migrated_url(tmp_path), epsilon_budget=0.01)
    app = App()

    # Execute
    reply = chained(exhausted, app, instruction())

    # Assert
    assert reason(reply).startswith("PRIVACY_BUDGET_EXHAUSTED")
    assert [entry.kind for entry in exhausted.audit_log().entries()] == [REFUSED]
    assert app.calls == 0


def test_refuse_keeps_the_code_first() -> None:
    reply = refuse(instruction(), Refusal.ROUNDS_EXHAUSTED, "done")
    assert reason(reply) == "ROUNDS_EXHAUSTED: done"

"""The governed ClientApp: the node's handlers inside the guard, on the synthetic task."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message

from federation.clientapp import governed_client_app
from federation.guard import (
    METRICS_RECORD,
    SIGNATURE_RECORD,
    GuardContext,
    Refusal,
    verify_update,
)
from federation.guard.audit import METRICS_SENT, REFUSED, UPDATE_SENT
from federation.tasks.base import TaskData
from tests.unit.guard_support import (
    ARRAYS,
    DATASET,
    NOW,
    Pki,
    context,
    instruction,
    make_guard,
    make_pki,
    migrated_url,
    reason,
)
from tests.unit.synthetic_task import LinearTask, synthetic_data


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def guard(tmp_path: Path, pki: Pki) -> GuardContext:
    return make_guard(pki, migrated_url(tmp_path), max_rounds=2)


def arrays_of(reply: Message) -> dict[str, np.ndarray]:
    return {key: array.numpy() for key, array in reply.content.array_records[ARRAYS].items()}


def test_a_train_round_sends_a_signed_update_of_the_received_form(
    guard: GuardContext, pki: Pki
) -> None:
    # Prepare
    app = governed_client_app(LinearTask(), synthetic_data, guard)
    message = instruction()
    received = {key: array.numpy() for key, array in message.content[ARRAYS].items()}  # type: ignore[union-attr]

    # Execute
    reply = app(message, context())

    # Assert
    assert not reply.has_error(), reply.error
    assert list(reply.content) == [ARRAYS, METRICS_RECORD, SIGNATURE_RECORD]
    sent = arrays_of(reply)
    assert {k: (v.shape, v.dtype) for k, v in sent.items()} == {
        k: (v.shape, v.dtype) for k, v in received.items()
    }
    assert not all(np.array_equal(sent[k], received[k]) for k in received)
    metrics = dict(reply.content.metric_records[METRICS_RECORD])
    assert sorted(metrics) == ["mae", "mse", "num-examples"]
    assert metrics["num-examples"] == 64
    assert verify_update(reply, pki.trust_pem, at=NOW).ok
    [recorded] = guard.ledger().history(DATASET)
    assert (recorded.sample_rate, recorded.noise_multiplier, recorded.steps) == guard.round_step
    assert [entry.kind for entry in guard.audit_log().entries()] == [UPDATE_SENT]


def test_evaluation_sends_metrics_only(guard: GuardContext) -> None:
    # Prepare
    app = governed_client_app(LinearTask(), synthetic_data, guard)

    # Execute
    reply = app(instruction("evaluate"), context())

    # Assert
    assert list(reply.content) == [METRICS_RECORD, SIGNATURE_RECORD]
    assert reply.content.metric_records[METRICS_RECORD]["num-examples"] == 16
    assert guard.ledger().history(DATASET) == []
    assert [entry.kind for entry in guard.audit_log().entries()] == [METRICS_SENT]


def test_the_round_after_the_last_is_refused_and_audited(guard: GuardContext) -> None:
    # Prepare
    app = governed_client_app(LinearTask(), synthetic_data, guard)
    for index in range(2):
        assert not app(instruction(message_id=f"m{index}"), context()).has_error()
    history = guard.ledger().history(DATASET)

    # Execute
    reply = app(instruction(message_id="m2"), context())

    # Assert
    assert reason(reply).startswith(f"{Refusal.ROUNDS_EXHAUSTED}: agreement")
    assert guard.ledger().history(DATASET) == history
    assert [entry.kind for entry in guard.audit_log().entries()] == [
        UPDATE_SENT,
        UPDATE_SENT,
        REFUSED,
    ]


def test_the_messages_configuration_does_not_change_training(
    tmp_path: Path, pki: Pki, guard: GuardContext
) -> None:
    # Prepare: two nodes alike; one is asked for a huge learning rate and many epochs.
    other = make_guard(pki, migrated_url(tmp_path / "other"), max_rounds=2)
    plain = governed_client_app(LinearTask(), synthetic_data, guard)
    pushed = governed_client_app(LinearTask(), synthetic_data, other)

    # Execute
    first = plain(instruction(), context())
    second = pushed(instruction(config={"lr": 100.0, "epochs": 50, "noise": 0.0}), context())

    # Assert
    assert all(np.array_equal(v, arrays_of(second)[k]) for k, v in arrays_of(first).items())


def test_each_round_draws_its_own_noise(guard: GuardContext) -> None:
    # Prepare: the same model sent twice, as rounds 1 and 2 of one run.
    app = governed_client_app(LinearTask(), synthetic_data, guard)

    # Execute
    first = app(instruction(message_id="a"), context())
    second = app(instruction(message_id="b"), context())

    # Assert
    assert not all(np.array_equal(v, arrays_of(second)[k]) for k, v in arrays_of(first).items())


def test_a_dataset_that_changed_size_is_refused_before_training(guard: GuardContext) -> None:
    # Prepare
    loader = functools.partial(synthetic_data, train=60)
    app = governed_client_app(LinearTask(), loader, guard)

    # Execute
    reply = app(instruction(), context())

    # Assert
    assert reason(reply).startswith(f"{Refusal.DATASET_CHANGED}: dataset ped-counts now has")
    assert guard.ledger().history(DATASET) == []
    [entry] = guard.audit_log().entries()
    assert entry.payload["detail"] == "60 examples, 64 expected"


def test_arrays_that_do_not_fit_the_model_are_refused(guard: GuardContext) -> None:
    # Prepare
    app = governed_client_app(LinearTask(), synthetic_data, guard)
    wrong = ArrayRecord({"weight": Array(np.zeros((2, 4), np.float32))})

    # Execute
    reply = app(instruction(arrays=wrong), context())

    # Assert
    assert reason(reply).startswith(
        f"{Refusal.INSTRUCTION_INVALID}: the received arrays do not fit the model of task "
        "synthetic-linear"
    )
    assert guard.ledger().history(DATASET) == []


def test_a_message_with_two_models_is_refused(guard: GuardContext) -> None:
    # Prepare
    app = governed_client_app(LinearTask(), synthetic_data, guard)
    message = instruction()
    message.content["second"] = ArrayRecord(LinearTask().build_model().state_dict())

    # Execute
    reply = app(message, context())

    # Assert
    assert reason(reply).startswith(
        "INSTRUCTION_INVALID: a train message must carry exactly one ArrayRecord"
    )


def test_a_query_is_refused_by_the_guard_and_audited(guard: GuardContext) -> None:
    app = governed_client_app(LinearTask(), synthetic_data, guard)
    reply = app(instruction("query"), context())
    assert reason(reply).startswith("MESSAGE_TYPE_REFUSED: this node answers only train")
    assert [entry.kind for entry in guard.audit_log().entries()] == [REFUSED]


def test_a_task_that_cannot_read_its_data_fails_clearly(guard: GuardContext) -> None:
    # Prepare
    def unreadable() -> TaskData:
        raise FileNotFoundError("/srv/data/ped-counts.csv is missing")

    app = governed_client_app(LinearTask(), unreadable, guard)

    # Execute
    reply = app(instruction(), context())

    # Assert: the aggregator learns the kind of failure; the node's log the path.
    assert reason(reply).startswith(
        "TRAINING_FAILED: the node could not complete this train message (FileNotFoundError)"
    )
    assert "/srv" not in reason(reply)
    [entry] = guard.audit_log().entries()
    assert "/srv/data/ped-counts.csv" in entry.payload["detail"]


def test_the_data_is_read_once_per_process(guard: GuardContext) -> None:
    # Prepare
    calls: list[int] = []

    def counting() -> TaskData:
        calls.append(1)
        return synthetic_data()

    app = governed_client_app(LinearTask(), counting, guard)

    # Execute
    app(instruction(message_id="a"), context())
    app(instruction("evaluate", message_id="b"), context())

    # Assert
    assert len(calls) == 1

"""The egress mod: only the received model's form and the declared metrics may leave."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from federation.guard import METRICS_RECORD, EgressMod, GuardContext, Refusal, refuse
from federation.guard.refusal import local_detail
from tests.unit.guard_support import (
    ARRAYS,
    App,
    context,
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


def arrays_of(reply: Message) -> dict[str, np.ndarray]:
    return {key: array.numpy() for key, array in reply.content.array_records[ARRAYS].items()}


def test_a_well_formed_update_leaves_rebuilt_and_unchanged(guard: GuardContext) -> None:
    # Prepare
    message = instruction()
    expected = arrays_of(update_reply(message))

    # Execute
    reply = EgressMod(guard)(message, context(), App())

    # Assert
    assert not reply.has_error()
    assert list(reply.content) == [ARRAYS, METRICS_RECORD]
    sent = arrays_of(reply)
    assert list(sent) == list(expected)
    assert all(np.array_equal(sent[key], expected[key]) for key in expected)
    assert dict(reply.content.metric_records[METRICS_RECORD]) == {
        "mae": 0.5,
        "mse": 0.25,
        "num-examples": 64,
    }
    assert reply.metadata.reply_to_message_id == message.metadata.message_id


def test_evaluation_metrics_leave(guard: GuardContext) -> None:
    reply = EgressMod(guard)(instruction("evaluate"), context(), App(metrics_reply))
    assert not reply.has_error()
    assert list(reply.content) == [METRICS_RECORD]


@pytest.mark.parametrize("message_type", ["query", "query.peek"])
def test_other_message_types_are_refused_before_the_app_runs(
    guard: GuardContext, message_type: str
) -> None:
    # Prepare
    app = App()

    # Execute
    reply = EgressMod(guard)(instruction(message_type), context(), app)

    # Assert
    assert reason(reply).startswith(f"{Refusal.MESSAGE_TYPE_REFUSED}: this node answers only")
    assert app.calls == 0


def test_an_error_from_inside_passes_unchanged(guard: GuardContext) -> None:
    reply = EgressMod(guard)(
        instruction(), context(), App(lambda m: refuse(m, Refusal.TRAINING_FAILED, "broke"))
    )
    assert reason(reply) == "TRAINING_FAILED: broke"


def with_arrays(change: Callable[[dict[str, np.ndarray]], object]) -> Callable[[Message], Message]:
    """A reply whose arrays ``change`` altered."""

    def answer(message: Message) -> Message:
        reply = update_reply(message)
        arrays = arrays_of(reply)
        change(arrays)
        reply.content[ARRAYS] = ArrayRecord({key: Array(value) for key, value in arrays.items()})
        return reply

    return answer


def with_record(
    name: str, record: ArrayRecord | MetricRecord | ConfigRecord
) -> Callable[[Message], Message]:
    def answer(message: Message) -> Message:
        reply = update_reply(message)
        reply.content[name] = record
        return reply

    return answer


def with_metrics(metrics: dict[str, int | float | list[float]]) -> Callable[[Message], Message]:
    def answer(message: Message) -> Message:
        reply = update_reply(message)
        reply.content[METRICS_RECORD] = MetricRecord(metrics)  # type: ignore[arg-type]
        return reply

    return answer


def forged_payload(message: Message) -> Message:
    # Declares the received form, but its bytes hold a bigger array.
    reply = update_reply(message)
    buffer = io.BytesIO()
    np.save(buffer, np.arange(100, dtype=np.float32), allow_pickle=False)
    forged = Array(dtype="float32", shape=(1,), stype="numpy.ndarray", data=buffer.getvalue())
    arrays = dict(reply.content.array_records[ARRAYS].items())
    arrays["bias"] = forged
    reply.content[ARRAYS] = ArrayRecord(arrays)
    return reply


def without_metrics_name(message: Message) -> Message:
    reply = update_reply(message)
    metrics = reply.content[METRICS_RECORD]
    del reply.content[METRICS_RECORD]
    reply.content["row-17"] = metrics
    return reply


SECRET = "row_17_count=42"

VIOLATIONS: dict[str, tuple[Callable[[Message], Message], str]] = {
    "extra array": (
        with_arrays(lambda a: a.update({SECRET: np.zeros(3, np.float32)})),
        r"carries 1 array\(s\) that were not received",
    ),
    "missing array": (
        with_arrays(lambda a: a.pop("bias")),
        r"lacks the received array\(s\) 'bias'",
    ),
    "changed shape": (
        with_arrays(lambda a: a.update(weight=np.zeros((2, 4), np.float32))),
        r"has another shape than received; it must be float32 of shape \(1, 4\)",
    ),
    "dtype change": (
        with_arrays(lambda a: a.update(weight=a["weight"].astype(np.float64))),
        "has another dtype than received",
    ),
    "NaN in an array": (
        with_arrays(lambda a: a["weight"].__setitem__((0, 1), np.nan)),
        r"holds values that are not finite \(NaN or infinity\)",
    ),
    "infinity in an array": (
        with_arrays(lambda a: a["bias"].__setitem__(0, np.inf)),
        "holds values that are not finite",
    ),
    "forged payload": (forged_payload, "has another shape than received"),
    "extra ArrayRecord": (
        with_record(SECRET, ArrayRecord({"x": Array(np.zeros(1, np.float32))})),
        "an ArrayRecord that the train message did not carry",
    ),
    "ConfigRecord": (
        with_record("extra", ConfigRecord({"raw": SECRET})),
        "the reply carries a ConfigRecord",
    ),
    "undeclared metric": (
        with_metrics({"mae": 0.5, SECRET: 1.0}),
        "a metric the agreement does not declare; only mae, mse, num-examples may leave",
    ),
    "metric with raw values": (
        with_metrics({"mae": [1.0, 2.0, 42.0], "mse": 0.1}),
        "metric 'mae' is a list of values",
    ),
    "NaN metric": (with_metrics({"mae": float("nan")}), "metric 'mae' is not finite"),
    "infinite metric": (with_metrics({"mse": float("-inf")}), "metric 'mse' is not finite"),
    "fractional num-examples": (
        with_metrics({"num-examples": 2.5}),
        "'num-examples' must be a whole number",
    ),
    "MetricRecord of another name": (without_metrics_name, "a MetricRecord not named 'metrics'"),
}


@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_a_violation_is_refused_and_nothing_leaves(guard: GuardContext, case: str) -> None:
    # Prepare
    answer, expected = VIOLATIONS[case]

    # Execute
    reply = EgressMod(guard)(instruction(), context(), App(answer))

    # Assert: an Error only, with a clear public reason that repeats nothing the app made.
    assert not reply.has_content()
    text = reason(reply)
    assert text.startswith(f"{Refusal.EGRESS_REFUSED}: ")
    assert text.endswith("; the reply was withheld and nothing left the node")
    assert re.search(expected, text), text
    assert SECRET not in text
    assert "42" not in text
    assert local_detail(reply)


def test_an_evaluate_reply_may_carry_no_arrays(guard: GuardContext) -> None:
    # Prepare: the evaluate handler trains and sends a model no accounting covered.
    reply = EgressMod(guard)(instruction("evaluate"), context(), App(update_reply))

    # Assert
    assert reason(reply).startswith(
        "EGRESS_REFUSED: an evaluate reply may carry no arrays, but it carries an ArrayRecord"
    )


def test_a_train_reply_without_the_update_is_refused(guard: GuardContext) -> None:
    reply = EgressMod(guard)(instruction(), context(), App(metrics_reply))
    assert reason(reply).startswith("EGRESS_REFUSED: the reply lacks ArrayRecord(s) 'arrays'")


def test_the_app_cannot_change_the_received_arrays_to_fit_its_reply(guard: GuardContext) -> None:
    # Prepare: the app reshapes the received model in place, then replies in that shape.
    def reshape_received(message: Message) -> Message:
        received = message.content.array_records[ARRAYS]
        received["weight"] = Array(np.zeros((2, 4), np.float32))
        reply = update_reply(message)
        return reply

    # Execute
    reply = EgressMod(guard)(instruction(), context(), App(reshape_received))

    # Assert
    assert reason(reply).startswith("EGRESS_REFUSED: array 'weight' of ArrayRecord 'arrays' has")


def test_a_reply_with_no_content_is_refused(guard: GuardContext) -> None:
    reply = EgressMod(guard)(
        instruction(), context(), App(lambda m: Message(RecordDict(), reply_to=m))
    )
    assert reason(reply).startswith("EGRESS_REFUSED: the reply lacks ArrayRecord(s)")

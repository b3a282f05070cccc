"""Malicious tasks and apps: whatever they try, nothing but a checked update leaves.

Two doors: a task installed on the node that misbehaves inside the governed ClientApp,
and a ClientApp that is not the node's at all, under the guard's mods. Each attempt is
refused with an Error (nothing else in the reply), put on the audit log with what was
tried, and leaves the privacy ledger untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from torch.utils.data import Dataset

from federation.clientapp import governed_client_app
from federation.guard import METRICS_RECORD, GuardContext, Refusal
from federation.guard.audit import REFUSED, UPDATE_SENT
from tests.unit.guard_support import (
    ARRAYS,
    DATASET,
    App,
    context,
    guarded,
    instruction,
    make_guard,
    make_pki,
    migrated_url,
    reason,
    update_reply,
)
from tests.unit.synthetic_task import FEATURES, LinearTask, synthetic_data

RAW = 4242.0
"""A value standing for raw data a task tries to get out."""


@pytest.fixture
def guard(tmp_path: Path) -> GuardContext:
    return make_guard(make_pki(tmp_path), migrated_url(tmp_path))


def assert_blocked(guard: GuardContext, reply: Message, refusal: Refusal) -> None:
    """Refused, nothing but the Error left, audited, nothing on the ledger."""
    assert not reply.has_content()
    assert reason(reply).startswith(f"{refusal}: ")
    assert "4242" not in reason(reply)
    [entry] = guard.audit_log().entries()
    assert entry.kind == REFUSED
    assert entry.payload["refusal"] == refusal
    assert guard.ledger().history(DATASET) == []
    assert guard.ledger().rounds_used(guard.agreement_id) == 0


class NanTask(LinearTask):
    """Its loss turns every update into NaN."""

    def loss(
        self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        return super().loss(model, batch) * float("nan")


class DoubleTask(LinearTask):
    """Trains in float64, so its update has another dtype than the model it received."""

    def build_model(self) -> torch.nn.Module:
        return super().build_model().double()

    def loss(
        self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        features, target = batch
        return torch.nn.functional.mse_loss(model(features.double()).squeeze(-1), target.double())

    def evaluate(
        self, model: torch.nn.Module, data: Dataset[tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, float]:
        return super().evaluate(model.float(), data)


class MemoModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(FEATURES, 1)
        self.register_buffer("memo", torch.zeros(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.linear(features)
        return output


class ReshapingTask(LinearTask):
    """Stores raw examples in a buffer of the model, changing its shape."""

    def build_model(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return MemoModel()

    def loss(
        self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        inner = getattr(model, "_module", model)
        if batch[0].shape[0]:
            inner.register_buffer("memo", batch[0].flatten().detach().clone())
        return super().loss(model, batch)


class StowawayTask(LinearTask):
    """Hides raw examples in a new buffer of the model."""

    def loss(
        self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        inner = getattr(model, "_module", model)
        inner.register_buffer("stolen", torch.full((3,), RAW))
        return super().loss(model, batch)


class RawMetricTask(LinearTask):
    """Returns raw values as an extra metric."""

    def evaluate(
        self, model: torch.nn.Module, data: Dataset[tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, float]:
        return {**super().evaluate(model, data), "raw": RAW}


class ListMetricTask(LinearTask):
    """Returns a declared metric as a list of raw values."""

    def evaluate(
        self, model: torch.nn.Module, data: Dataset[tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, float]:
        return {"mae": [RAW, RAW], "mse": 1.0}  # type: ignore[dict-item]


TASKS: dict[str, tuple[LinearTask, Refusal]] = {
    "NaN update": (NanTask(), Refusal.EGRESS_REFUSED),
    "dtype change": (DoubleTask(), Refusal.EGRESS_REFUSED),
    "changed shape": (ReshapingTask(), Refusal.EGRESS_REFUSED),
    "undeclared metric with raw values": (RawMetricTask(), Refusal.TRAINING_FAILED),
    "metric as a list of raw values": (ListMetricTask(), Refusal.TRAINING_FAILED),
}


@pytest.mark.parametrize("case", list(TASKS))
def test_a_malicious_task_in_the_governed_app_is_blocked(guard: GuardContext, case: str) -> None:
    # Prepare
    task, refusal = TASKS[case]
    app = governed_client_app(task, synthetic_data, guard)
    message = instruction(arrays=ArrayRecord(task.build_model().float().state_dict()))

    # Execute
    reply = app(message, context())

    # Assert
    assert_blocked(guard, reply, refusal)


def test_a_task_hiding_an_extra_array_in_the_model_sends_only_the_received_ones(
    guard: GuardContext,
) -> None:
    # Prepare
    app = governed_client_app(StowawayTask(), synthetic_data, guard)

    # Execute
    reply = app(instruction(), context())

    # Assert: the governed app answers with the received arrays only; the stowaway stays.
    assert not reply.has_error()
    sent = reply.content.array_records[ARRAYS]
    assert list(sent) == ["weight", "bias"]
    assert all(RAW not in array.numpy() for array in sent.values())
    assert [entry.kind for entry in guard.audit_log().entries()] == [UPDATE_SENT]


def replacing_arrays(
    change: Callable[[dict[str, np.ndarray]], None],
) -> Callable[[Message], Message]:
    def answer(message: Message) -> Message:
        reply = update_reply(message)
        arrays = {k: a.numpy() for k, a in reply.content.array_records[ARRAYS].items()}
        change(arrays)
        reply.content[ARRAYS] = ArrayRecord({k: Array(v) for k, v in arrays.items()})
        return reply

    return answer


def replacing_metrics(metrics: dict[str, object]) -> Callable[[Message], Message]:
    def answer(message: Message) -> Message:
        reply = update_reply(message)
        reply.content[METRICS_RECORD] = MetricRecord(metrics)  # type: ignore[arg-type]
        return reply

    return answer


APPS: dict[str, Callable[[Message], Message]] = {
    "extra array": replacing_arrays(lambda a: a.update(raw=np.full(3, RAW, np.float32))),
    "changed shape": replacing_arrays(lambda a: a.update(bias=np.full(2, RAW, np.float32))),
    "dtype change": replacing_arrays(lambda a: a.update(bias=a["bias"].astype(np.float16))),
    "NaN in the update": replacing_arrays(lambda a: a.update(bias=np.full(1, np.nan, np.float32))),
    "infinity in the update": replacing_arrays(lambda a: a["weight"].fill(np.inf)),
    "undeclared metric key": replacing_metrics({"mae": 1.0, "raw": RAW}),
    "metric as a list": replacing_metrics({"mae": [RAW, RAW]}),
    "infinite metric": replacing_metrics({"mae": float("inf")}),
}


@pytest.mark.parametrize("case", list(APPS))
def test_a_malicious_app_under_the_guard_is_blocked(guard: GuardContext, case: str) -> None:
    # Prepare
    app = App(APPS[case])

    # Execute
    reply = guarded(guard, app)(instruction(), context())

    # Assert
    assert app.calls == 1
    assert_blocked(guard, reply, Refusal.EGRESS_REFUSED)
    [entry] = guard.audit_log().entries()
    assert entry.payload["detail"]

"""The node's training loop (federation.training): DP-SGD with Opacus, plain SGD/Adam, evaluation."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError
from typing import Any, Literal, cast

import pytest
import torch
from opacus.accountants import RDPAccountant
from torch.utils.data import Dataset, TensorDataset

from federation.privacy import DPStep, epsilon_after
from federation.tasks.base import TaskData
from federation.training import (
    DPSettings,
    FitResult,
    TrainingError,
    TrainSettings,
    evaluate,
    fit,
    planned_step,
)
from tests.unit.synthetic_task import LinearTask, synthetic_data

DP = DPSettings(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
SETTINGS = TrainSettings(epochs=2, batch_size=8, learning_rate=0.05, seed=3)


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def same_state(left: Any, right: Any) -> bool:
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_dp_training_takes_the_planned_steps_at_the_planned_rate() -> None:
    # Prepare
    task, data = LinearTask(), synthetic_data(train=64)

    # Execute
    result = fit(task, task.build_model(), data, SETTINGS, DP)

    # Assert: 64 examples in batches of 8 -> 8 batches per epoch, 2 epochs.
    assert result.dp_step == DPStep(sample_rate=1 / 8, noise_multiplier=1.0, steps=16)
    assert result.dp_step == planned_step(64, SETTINGS, DP)
    assert (result.num_examples, result.steps, result.sample_rate) == (64, 16, 1 / 8)
    assert math.isfinite(result.train_loss)


def test_dp_training_is_deterministic_given_the_seed() -> None:
    # Prepare
    task, data = LinearTask(), synthetic_data()

    # Execute
    first = fit(task, task.build_model(), data, SETTINGS, DP)
    second = fit(task, task.build_model(), data, SETTINGS, DP)
    other = fit(task, task.build_model(), data, TrainSettings(2, 8, 0.05, seed=4), DP)

    # Assert
    assert same_state(first.state, second.state)
    assert first.train_loss == second.train_loss
    assert not same_state(first.state, other.state)


def test_without_a_seed_every_round_draws_fresh_noise() -> None:
    # Prepare
    task, data = LinearTask(), synthetic_data()
    unseeded = TrainSettings(epochs=1, batch_size=8, learning_rate=0.05)

    # Execute
    first = fit(task, task.build_model(), data, unseeded, DP)
    second = fit(task, task.build_model(), data, unseeded, DP)

    # Assert
    assert not same_state(first.state, second.state)


def test_training_leaves_the_global_random_state_alone() -> None:
    # Prepare
    task, data = LinearTask(), synthetic_data()
    model = task.build_model()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()

    # Execute
    fit(task, model, data, SETTINGS, DP)

    # Assert
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_plain_training_learns(optimizer: Literal["sgd", "adam"]) -> None:
    # Prepare
    task, data = LinearTask(), synthetic_data(train=128)
    model = task.build_model()
    before = evaluate(task, model, data)["mse"]
    settings = TrainSettings(
        epochs=20, batch_size=16, learning_rate=0.05, seed=1, optimizer=optimizer
    )

    # Execute
    result = fit(task, model, data, settings, None)

    # Assert
    assert result.dp_step is None
    assert result.steps == 20 * 8
    assert evaluate(task, model, data)["mse"] < before / 4
    assert same_state(result.state, model.state_dict())


def test_dp_training_still_learns_with_little_noise() -> None:
    # Prepare
    task, data = LinearTask(), synthetic_data(train=128)
    model = task.build_model()
    before = evaluate(task, model, data)["mse"]
    settings = TrainSettings(epochs=10, batch_size=16, learning_rate=0.1, seed=2)

    # Execute
    fit(task, model, data, settings, DPSettings(0.3, 5.0, 1e-5))

    # Assert
    assert evaluate(task, model, data)["mse"] < before / 2


def test_empty_poisson_batches_are_noisy_steps_and_accounted() -> None:
    # Prepare: 10 examples, expected batch size 1: many batches are empty.
    task, data = LinearTask(), synthetic_data(train=10)
    settings = TrainSettings(epochs=3, batch_size=1, learning_rate=0.05, seed=5)

    # Execute
    result = fit(task, task.build_model(), data, settings, DP)

    # Assert
    assert result.dp_step == DPStep(sample_rate=0.1, noise_multiplier=1.0, steps=30)


def test_the_accounted_epsilon_is_opacus_step_by_step() -> None:
    # Prepare
    task, data = LinearTask(), synthetic_data(train=64)
    result = fit(task, task.build_model(), data, SETTINGS, DP)
    assert result.dp_step is not None
    accountant = RDPAccountant()
    for _ in range(result.steps):
        accountant.step(noise_multiplier=DP.noise_multiplier, sample_rate=result.sample_rate)

    # Execute
    accounted = epsilon_after([], result.dp_step, DP.delta)

    # Assert
    assert accounted == accountant.get_epsilon(delta=DP.delta)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_is_refused_clearly_where_there_is_none() -> None:
    # Prepare
    task, data = LinearTask(), synthetic_data()
    model = task.build_model()
    before = state_of(model)

    # Execute
    with pytest.raises(TrainingError, match=r"no usable CUDA GPU .* device='cpu'"):
        fit(task, model, data, SETTINGS, DP, device="cuda")

    # Assert
    assert same_state(model.state_dict(), before)


def test_an_unknown_device_is_refused() -> None:
    task, data = LinearTask(), synthetic_data()
    with pytest.raises(TrainingError, match="device must be 'cpu' or 'cuda'"):
        fit(task, task.build_model(), data, SETTINGS, DP, device="tpu")  # type: ignore[arg-type]


class BatchNormTask(LinearTask):
    def build_model(self) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))


def test_a_model_dp_sgd_cannot_train_is_refused_before_training() -> None:
    # Prepare
    task, data = BatchNormTask(), synthetic_data()
    model = task.build_model()
    before = state_of(model)

    # Execute
    with pytest.raises(TrainingError, match=r"DP-SGD cannot train this model: .*BatchNorm"):
        fit(task, model, data, SETTINGS, DP)

    # Assert
    assert same_state(model.state_dict(), before)


def test_no_training_examples_is_refused() -> None:
    # Prepare
    task = LinearTask()
    empty = cast(
        Dataset[tuple[torch.Tensor, torch.Tensor]],
        TensorDataset(torch.zeros(0, 4), torch.zeros(0)),
    )
    model = task.build_model()
    before = state_of(model)

    # Execute
    with pytest.raises(TrainingError, match="there are no training examples"):
        fit(task, model, TaskData(train=empty, test=empty), SETTINGS, DP)

    # Assert
    assert same_state(model.state_dict(), before)


class VectorLossTask(LinearTask):
    def loss(
        self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        features, target = batch
        errors: torch.Tensor = (model(features).squeeze(-1) - target) ** 2
        return errors


def test_a_loss_that_is_not_a_scalar_is_refused() -> None:
    task, data = VectorLossTask(), synthetic_data()
    with pytest.raises(TrainingError, match=r"scalar tensor .* of shape \(8,\)"):
        fit(task, task.build_model(), data, SETTINGS, None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"epochs": 0}, "epochs must be a whole number of at least 1"),
        ({"batch_size": 1.5}, "batch_size must be a whole number of at least 1"),
        ({"learning_rate": 0.0}, "learning_rate must be a finite number above 0"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number above 0"),
        ({"seed": -1}, r"seed must be None or a whole number from 0 to 2\*\*63 - 1"),
        ({"seed": 2**63}, r"seed must be None or a whole number"),
        ({"optimizer": "lbfgs"}, "optimizer must be 'sgd' or 'adam'"),
    ],
)
def test_bad_train_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        TrainSettings(**fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((0.0, 1.0, 1e-5), "noise_multiplier must be a finite number above 0"),
        ((1.0, -1.0, 1e-5), "max_grad_norm must be a finite number above 0"),
        ((1.0, 1.0, 0.0), r"delta must be in \(0, 1\)"),
        ((1.0, 1.0, 1.0), r"delta must be in \(0, 1\)"),
    ],
)
def test_bad_dp_settings_are_refused(fields: tuple[float, float, float], message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        DPSettings(*fields)


def test_settings_cannot_be_changed_after_they_are_made() -> None:
    with pytest.raises(FrozenInstanceError):
        DP.noise_multiplier = 0.0  # type: ignore[misc]


def test_planned_step_refuses_an_empty_dataset() -> None:
    with pytest.raises(TrainingError, match="num_examples must be a whole number above 0"):
        planned_step(0, SETTINGS, DP)


def test_evaluate_returns_exactly_the_declared_metrics() -> None:
    task, data = LinearTask(), synthetic_data()
    metrics = evaluate(task, task.build_model(), data)
    assert sorted(metrics) == ["mae", "mse"]
    assert all(isinstance(value, float) for value in metrics.values())


class LeakyTask(LinearTask):
    def evaluate(
        self, model: torch.nn.Module, data: Dataset[tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, float]:
        return {**super().evaluate(model, data), "row_17_count=42": 1.0}


class ListMetricTask(LinearTask):
    def evaluate(
        self, model: torch.nn.Module, data: Dataset[tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, float]:
        return {"mae": [1.0, 2.0], "mse": 0.5}  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (LeakyTask(), r"returned other metrics than it declares \(mae, mse\)"),
        (ListMetricTask(), "something other than a number for metric 'mae'"),
    ],
)
def test_evaluate_refuses_undeclared_metrics_without_repeating_them(
    task: LinearTask, message: str
) -> None:
    # Execute
    with pytest.raises(TrainingError, match=message) as raised:
        evaluate(task, task.build_model(), synthetic_data())

    # Assert: what the task produced is not in the message.
    assert "row_17" not in str(raised.value)
    assert "[1.0, 2.0]" not in str(raised.value)


def test_fit_result_carries_a_cpu_copy_of_the_state() -> None:
    task, data = LinearTask(), synthetic_data()
    model = task.build_model()
    result: FitResult = fit(task, model, data, SETTINGS, DP)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert not torch.equal(result.state["weight"], model.state_dict()["weight"])
    assert all(value.device.type == "cpu" for value in result.state.values())

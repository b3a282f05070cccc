"""A plain Flower ClientApp: the ungoverned baseline that ``bench/training.py`` measures against.

The run bundle names it as its ClientApp (:data:`federation.flower.fab.CLIENT_APP_REF`),
so a SuperNode in Flower's default subprocess isolation loads it with Flower's own
``flwr-clientapp``. A Hanse city never does: its SuperNode runs in process isolation
and every message goes to the node's governed runner. This app has no guard, no
agreement check, no signing, no audit and no privacy ledger; it must never hold data
that needs them.

It trains exactly as the governed ClientApp does (:func:`federation.training.fit`,
then :func:`federation.training.evaluate` on the held-out data), so a benchmark
compares the governance and nothing else. What the governed runner reads from the
node's config and agreement, this app reads from the SuperNode's ``--node-config``:

- ``data-path`` (required): the CSV or Parquet file of an hourly series;
- ``timestamp-column`` (``timestamp``) and ``value-column`` (``count``): its columns;
- ``max-train-examples`` (0: all): use only the most recent training examples, as
  the node's ``training.max_train_examples`` does;
- ``noise-multiplier`` (1.0; 0 trains without DP-SGD), ``max-grad-norm`` (1.0) and
  ``delta`` (1e-5): the DP-SGD parameters.

The task and the training settings (local epochs, batch size, learning rate) come
from the run's :class:`~federation.runspec.RunSpec`, as the governed runner takes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federation.runspec import RunSpec
from federation.tasks import SeriesSource, Task, TaskData, load_task
from federation.training import DPSettings, TrainSettings, capped_train, evaluate, fit

METRICS_RECORD = "metrics"
"""The reply's MetricRecord (the name the governed ClientApp uses)."""

NUM_EXAMPLES_KEY = "num-examples"
"""The metric naming the examples a reply is based on (for FedAvg's weights)."""

app = ClientApp()


class PlainClientAppError(ValueError):
    """The SuperNode's node config or the message is not usable; the message says how to fix it."""


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train the received model one round on the local data; reply the arrays and metrics."""
    name, record = _received(message)
    spec = RunSpec.from_run_config(context.run_config)
    dp = _dp(context.node_config)
    task = load_task(spec.task_id)
    data = _data(task, context.node_config)
    model = _model(task, record)
    settings = TrainSettings(
        epochs=spec.local_epochs,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        optimizer=spec.optimizer,
    )
    result = fit(task, model, data, settings, dp)
    metrics = evaluate(task, model, data)
    arrays = ArrayRecord(
        {key: Array(result.state[key].numpy()) for key in record if key in result.state}
    )
    content = RecordDict(
        {
            name: arrays,
            METRICS_RECORD: MetricRecord({**metrics, NUM_EXAMPLES_KEY: result.num_examples}),
        }
    )
    return Message(content, reply_to=message)


@app.evaluate()
def evaluate_(message: Message, context: Context) -> Message:
    """The task's metrics of the received model on the held-out data."""
    _, record = _received(message)
    spec = RunSpec.from_run_config(context.run_config)
    task = load_task(spec.task_id)
    data = _data(task, context.node_config)
    metrics = evaluate(task, _model(task, record), data)
    examples = len(data.test)  # type: ignore[arg-type]  # the task's datasets are map-style
    content = RecordDict({METRICS_RECORD: MetricRecord({**metrics, NUM_EXAMPLES_KEY: examples})})
    return Message(content, reply_to=message)


def _received(message: Message) -> tuple[str, ArrayRecord]:
    records = message.content.array_records if message.has_content() else {}
    if len(records) != 1:
        raise PlainClientAppError(
            f"a {message.metadata.message_type} message must carry exactly one ArrayRecord "
            f"(the global model), not {len(records)}"
        )
    return next(iter(records.items()))


def _model(task: Task, record: ArrayRecord) -> torch.nn.Module:
    model = task.build_model()
    model.load_state_dict(record.to_torch_state_dict(), strict=True)
    return model


def _data(task: Task, config: Mapping[str, object]) -> TaskData:
    raw_path = config.get("data-path")
    if not isinstance(raw_path, str) or not raw_path:
        raise PlainClientAppError(
            "the SuperNode has no data-path in its node config; start it with "
            "--node-config 'data-path=\"/path/to/series.csv\"'"
        )
    path = Path(raw_path)
    source = SeriesSource(
        dataset_id=path.stem,
        format="parquet" if path.suffix == ".parquet" else "csv",
        path=path,
        timestamp_column=_text(config, "timestamp-column", "timestamp"),
        value_column=_text(config, "value-column", "count"),
    )
    limit = _number(config, "max-train-examples", 0)
    if not math.isfinite(limit) or limit < 0 or limit != int(limit):
        raise PlainClientAppError(
            f"node config max-train-examples must be a whole number >= 0 (0: all), not {limit:g}"
        )
    return capped_train(task.load(source), int(limit))


def _dp(config: Mapping[str, object]) -> DPSettings | None:
    noise = _number(config, "noise-multiplier", 1.0)
    if noise < 0:
        raise PlainClientAppError(
            f"node config noise-multiplier must be 0 (no DP-SGD) or above, not {noise:g}"
        )
    if noise == 0:
        return None
    return DPSettings(
        noise_multiplier=noise,
        max_grad_norm=_number(config, "max-grad-norm", 1.0),
        delta=_number(config, "delta", 1e-5),
    )


def _text(config: Mapping[str, object], key: str, default: str) -> str:
    value = config.get(key, default)
    if not isinstance(value, str) or not value:
        raise PlainClientAppError(f"node config {key} must be a column name, not {value!r}")
    return value


def _number(config: Mapping[str, object], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlainClientAppError(f"node config {key} must be a number, not {value!r}")
    return float(value)

"""The governed ClientApp: a task trained on the node's data, inside the node's guard.

:func:`governed_client_app` builds the Flower ``ClientApp`` a node runs for one
agreement. Its handlers are the node's, not the researcher's:

- ``train``: load the received model into the task's model, train it one round
  with :func:`federation.training.fit` under the node's DP-SGD parameters and
  training settings (from the :class:`~federation.guard.GuardContext`; the
  message's configuration is ignored), and reply with the trained arrays, the
  declared metrics of the trained model on the held-out data and ``num-examples``;
- ``evaluate``: the declared metrics of the received model on the held-out data
  and ``num-examples``;
- ``query``: refused (by the guard, before it runs).

The app is wrapped in the guard (:func:`federation.guard.guard_mods`): rounds,
privacy budget and ledger, egress check, signature and audit. Whatever goes wrong
reaches the aggregator as a Flower Error reply whose reason starts with a
:class:`~federation.guard.Refusal` code.

With :attr:`TrainSettings.seed` set, each round is seeded from the seed, the run and
the round, so rounds never repeat one another's noise; without it every round draws
fresh randomness from the operating system (what real data needs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from typing import Final

import torch
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch.utils.data import Dataset

from federation.guard.chain import guard_mods
from federation.guard.context import NUM_EXAMPLES_KEY, GuardContext
from federation.guard.egress import METRICS_RECORD
from federation.guard.refusal import Refusal, refuse
from federation.guard.rounds import next_round, run_id
from federation.tasks.base import Task, TaskData
from federation.training import Device, TrainingError, evaluate, fit

_SEEDS: Final = 2**63


def governed_client_app(
    task: Task,
    data_loader: Callable[[], TaskData],
    guard: GuardContext,
    *,
    device: Device = "cpu",
) -> ClientApp:
    """The node's ClientApp for ``task`` on the dataset ``data_loader`` reads.

    Args:
        task: The installed task the agreement names (id and content hash checked
            by the caller before).
        data_loader: Reads the dataset (called on the first message in each process).
        guard: The node's facts for the agreement: DP parameters, training settings,
            rounds, budget, metrics, key, database.
        device: ``cpu`` (default) or ``cuda``.

    Returns:
        A ClientApp with ``train`` and ``evaluate`` handlers inside the guard's mods.
        It pickles (for Flower's simulation engine) when ``task`` and
        ``data_loader`` do.
    """
    app = ClientApp(mods=guard_mods(guard))
    data = _Data(data_loader)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        arrays = _received(message)
        if isinstance(arrays, Message):
            return arrays
        name, record = arrays
        loaded = data.get()
        if _count(loaded.train) != guard.train_examples:
            return refuse(
                message,
                Refusal.DATASET_CHANGED,
                f"dataset {guard.dataset_id} now has another number of training examples "
                "than the run's privacy cost was computed for; nothing was trained. "
                "Start the run again",
                local=f"{_count(loaded.train)} examples, {guard.train_examples} expected",
            )
        model = _model(task, message, record)
        if isinstance(model, Message):
            return model
        settings = guard.train
        if settings.seed is not None:
            settings = replace(settings, seed=_round_seed(settings.seed, message, guard))
        try:
            result = fit(task, model, loaded, settings, guard.dp, device=device)
            metrics = evaluate(task, model, loaded)
        except TrainingError as exc:
            return refuse(message, Refusal.TRAINING_FAILED, str(exc))
        if result.dp_step != guard.round_step:  # pragma: no cover - fit checks its own plan
            return refuse(
                message,
                Refusal.TRAINING_FAILED,
                "the round's DP-SGD steps differ from those accounted; the update was withheld",
            )
        reply_arrays = ArrayRecord(
            {key: Array(result.state[key].numpy()) for key in record if key in result.state}
        )
        content = RecordDict(
            {
                name: reply_arrays,
                METRICS_RECORD: MetricRecord({**metrics, NUM_EXAMPLES_KEY: result.num_examples}),
            }
        )
        return Message(content, reply_to=message)

    @app.evaluate()
    def evaluate_(message: Message, context: Context) -> Message:
        arrays = _received(message)
        if isinstance(arrays, Message):
            return arrays
        _, record = arrays
        loaded = data.get()
        model = _model(task, message, record)
        if isinstance(model, Message):
            return model
        try:
            metrics = evaluate(task, model, loaded)
        except TrainingError as exc:
            return refuse(message, Refusal.TRAINING_FAILED, str(exc))
        examples = _count(loaded.test)
        content = RecordDict(
            {METRICS_RECORD: MetricRecord({**metrics, NUM_EXAMPLES_KEY: examples})}
        )
        return Message(content, reply_to=message)

    @app.query()
    def query(message: Message, context: Context) -> Message:
        # Registered so that a query passes through the guard, which refuses it and
        # puts the refusal on the audit log; never reached.
        return refuse(message, Refusal.MESSAGE_TYPE_REFUSED, "this node answers no queries")

    return app


class _Data:
    """The dataset, read once per process on first use (not pickled)."""

    def __init__(self, loader: Callable[[], TaskData]) -> None:
        self._loader = loader
        self._data: TaskData | None = None

    def get(self) -> TaskData:
        if self._data is None:
            self._data = self._loader()
        return self._data

    def __getstate__(self) -> dict[str, object]:
        return {"_loader": self._loader, "_data": None}


def _received(message: Message) -> tuple[str, ArrayRecord] | Message:
    records = message.content.array_records if message.has_content() else {}
    if len(records) != 1:
        return refuse(
            message,
            Refusal.INSTRUCTION_INVALID,
            f"a {message.metadata.message_type} message must carry exactly one ArrayRecord "
            f"(the global model), not {len(records)}; nothing was run",
        )
    name, record = next(iter(records.items()))
    return name, record


def _model(task: Task, message: Message, record: ArrayRecord) -> torch.nn.Module | Message:
    model = task.build_model()
    try:
        state = record.to_torch_state_dict()
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        return refuse(
            message,
            Refusal.INSTRUCTION_INVALID,
            f"the received arrays do not fit the model of task {task.id}; send the "
            f"task's model ({type(exc).__name__}); nothing was run",
            local=str(exc),
        )
    return model


def _count(dataset: Dataset[tuple[torch.Tensor, torch.Tensor]]) -> int:
    return len(dataset)  # type: ignore[arg-type]  # the node's datasets are map-style


def _round_seed(seed: int, message: Message, guard: GuardContext) -> int:
    text = f"{seed}:{guard.agreement_id}:{run_id(message)}:{next_round(guard, message)}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % _SEEDS

"""The ServerApp of every Hanse run: the aggregator's side of governed training.

It is installed with Hanse (the run's bundle only names it), builds the task's
initial model, aggregates with the chosen strategy, records each city's outcome
per round in ``progress.jsonl``, and saves the final model and metrics.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.serverapp import Grid, ServerApp

from federation.progress import METRICS_FILE, MODEL_FILE, ProgressWriter
from federation.runspec import RunSpec
from federation.strategies import make_strategy
from federation.tasks import load_task
from federation.watched_grid import WatchedGrid

_log = logging.getLogger(__name__)

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the governed federated training described by the run config."""
    spec = RunSpec.from_run_config(context.run_config)
    progress = ProgressWriter(spec.output)
    progress.write("start", spec=spec.to_run_config())
    try:
        task = load_task(spec.task_id)
        if task.content_hash() != spec.task_hash:
            raise RuntimeError(
                f"the aggregator's task {spec.task_id} has hash {task.content_hash()}, "
                f"the run asks for {spec.task_hash}"
            )
        torch.manual_seed(spec.seed)
        model = task.build_model()
        watched = WatchedGrid(grid, spec, progress)
        strategy = make_strategy(spec)
        train_config = ConfigRecord(
            {
                "local-epochs": spec.local_epochs,
                "batch-size": spec.batch_size,
                "learning-rate": spec.learning_rate,
            }
        )
        initial = ArrayRecord(model.state_dict())
        result = strategy.start(
            grid=watched,
            initial_arrays=initial,
            num_rounds=spec.rounds,
            timeout=spec.round_timeout,
            train_config=train_config,
        )
        # No round aggregated (each fell below the agreements' floor): the initial model.
        final = result.arrays if len(result.arrays) else initial
        torch.save(final.to_torch_state_dict(), spec.output / MODEL_FILE)
        metrics = {
            "train": _by_round(result.train_metrics_clientapp),
            "evaluate": _by_round(result.evaluate_metrics_clientapp),
            "cities": watched.city_metrics,
        }
        (spec.output / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
        progress.write("end", status="completed", rounds=spec.rounds)
    except Exception as exc:
        progress.write("end", status="failed", reason=f"{type(exc).__name__}: {exc}")
        raise


def _by_round(records: dict[int, Any]) -> dict[str, dict[str, float]]:
    return {str(r): {k: float(v) for k, v in rec.items()} for r, rec in records.items()}


def replies_ok(replies: Iterable[Message]) -> list[Message]:
    """The replies that carry content (not an error)."""
    return [m for m in replies if m.has_content()]

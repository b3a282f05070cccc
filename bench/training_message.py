"""One training message in a fresh process, timed step by step (used by ``bench/training.py``).

Both arms start a new process per message in deployment (Flower's ``flwr-clientapp``,
the node's governed runner), so each measurement runs in a new interpreter too and
pays the same one-time costs a real message pays. Prints one JSON object: ``wall``, seconds
from the parent's launch to the arm's imports done and per step after that, and
``cpu``, the process's CPU seconds (user + system, all threads) for the same steps,
which another tenant's load on a shared machine disturbs far less.

Usage: ``python bench/training_message.py ARM PHASE CITY_CONFIG AGREEMENT NOISE RUN_ID
LAUNCHED`` with ARM ``plain`` or ``governed`` and PHASE ``train`` or ``evaluate``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    arm, phase, config_path, agreement, noise, run_text, launched = sys.argv[1:8]
    run_id = int(run_text)
    if arm == "plain":
        import flwr.supernode.cli.flwr_clientapp  # noqa: F401  (what flwr-clientapp imports)

        from federation.plain_clientapp import app as plain_app
    else:
        from node.training.runner import GovernedRunner
    imported = time.time()
    cpu_imported = _cpu()

    # The training work both arms share (fit, evaluate), timed apart from the rest.
    import federation.clientapp
    import federation.plain_clientapp

    work = {"wall": 0.0, "cpu": 0.0}

    def timed(function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began, cpu_began = time.perf_counter(), _cpu()
            try:
                return function(*args, **kwargs)
            finally:
                work["wall"] += time.perf_counter() - began
                work["cpu"] += _cpu() - cpu_began

        return wrapper

    for module in (federation.clientapp, federation.plain_clientapp):
        module.fit = timed(module.fit)  # type: ignore[attr-defined]
        module.evaluate = timed(module.evaluate)  # type: ignore[attr-defined]

    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from flwr.app.metadata import Metadata
    from flwr.supercore.run import Run

    from federation.runspec import RunSpec
    from federation.tasks import load_task
    from node.config import load_config
    from node.training_data import series_source

    city = load_config(Path(config_path))
    task = load_task("forecast-next-hour")
    spec = RunSpec(
        task_id=task.id,
        task_hash=task.content_hash(),
        rounds=1,
        agreements={city.model.node.participant_id: agreement},
    )
    state = task.build_model().state_dict()
    message = Message(  # type: ignore[call-overload]
        content=RecordDict(
            {
                "arrays": ArrayRecord({k: Array(v.numpy()) for k, v in state.items()}),
                "config": ConfigRecord({"server-round": 1}),
            }
        ),
        metadata=Metadata(
            run_id=run_id,
            message_id=f"bench-{arm}-{phase}-{run_id}",
            src_node_id=1,
            dst_node_id=2,
            reply_to_message_id="",
            group_id="1",
            created_at=time.time(),
            ttl=3600.0,
            message_type=phase,
        ),
    )
    wall: dict[str, float] = {"imports": imported - float(launched)}
    cpu: dict[str, float] = {"imports": cpu_imported}
    if arm == "plain":
        [dataset] = city.model.datasets
        source = series_source(city, dataset.id)
        node_config = {
            "data-path": str(source.path),
            "timestamp-column": source.timestamp_column,
            "value-column": source.value_column,
            "max-train-examples": city.model.training.max_train_examples,
            "noise-multiplier": float(noise),
            "max-grad-norm": city.model.training.max_grad_norm,
            "delta": 1e-5,
        }
        context = Context(
            run_id=run_id,
            node_id=2,
            node_config=node_config,
            state=RecordDict(),
            run_config=spec.to_run_config(),
        )
        began, cpu_began = time.perf_counter(), _cpu()
        reply = plain_app(message, context)
        wall["handler"], cpu["handler"] = time.perf_counter() - began, _cpu() - cpu_began
        began, cpu_began = time.perf_counter(), _cpu()
        task.load(source)
        wall["dataset read (again)"] = time.perf_counter() - began
        cpu["dataset read (again)"] = _cpu() - cpu_began
    else:
        context = Context(
            run_id=run_id,
            node_id=2,
            node_config={},
            state=RecordDict(),
            run_config=spec.to_run_config(),
        )
        marks = [(time.perf_counter(), _cpu())]
        runner = GovernedRunner(city, "urn:hanse:researcher")
        marks.append((time.perf_counter(), _cpu()))
        app = runner.app_for(message, context, Run.create_empty(run_id))
        marks.append((time.perf_counter(), _cpu()))
        reply = app(message, context)
        marks.append((time.perf_counter(), _cpu()))
        for name, before, after in zip(
            ("open stores", "checks + dataset read", "handler"), marks, marks[1:], strict=False
        ):
            wall[name], cpu[name] = after[0] - before[0], after[1] - before[1]
    if reply.has_error():
        raise SystemExit(f"{arm} {phase} failed: {reply.error.reason}")
    wall["handler"] -= work["wall"]
    cpu["handler"] -= work["cpu"]
    wall["fit + evaluate"], cpu["fit + evaluate"] = work["wall"], work["cpu"]
    print(json.dumps({"wall": wall, "cpu": cpu}))


if __name__ == "__main__":
    main()

"""One training message in a fresh process, timed step by step (used by ``bench/training.py``).

Both arms start a new process per message in deployment (Flower's ``flwr-clientapp``,
the node's governed runner), so each measurement runs in a new interpreter too and
pays the same one-time costs a real message pays: the governed arm imports the
runner and ends its process as ``python -m node.training.task_process`` does, the
plain arm imports what ``flwr-clientapp`` imports and ends as it does (the
interpreter's ordinary exit). Prints one JSON object: ``wall``, seconds from the
launch of the message's process to the arm's imports done and per step after that,
and ``cpu``, the process's CPU seconds (user + system, all threads) for the same
steps plus ``process exit`` (from the reply to the process's end, measured from
outside), which another tenant's load on a shared machine disturbs far less. A
train message's ``imports for DP-SGD`` (Opacus, which both arms import only to
train) is timed as a step of its own, right after the arm's imports.

Usage: ``python bench/training_message.py ARM PHASE CITY_CONFIG AGREEMENT NOISE RUN_ID
LAUNCHED`` with ARM ``plain`` or ``governed`` and PHASE ``train`` or ``evaluate``.
This process prepares the message's process (the plain arm's node config) and
measures it; the message runs in a child process.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_CHILD = "HANSE_BENCH_MESSAGE_CHILD"
"""Set (to the plain arm's node config, JSON) in the message's process."""


def _cpu(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def parent(argv: list[str]) -> None:
    """Run the message in a child process; add its exit's CPU to the child's figures."""
    arm, _phase, config_path, _agreement, noise = argv[:5]
    node_config: dict[str, Any] = {}
    if arm == "plain":
        from node.config import load_config
        from node.training_data import series_source

        city = load_config(Path(config_path))
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
    env = {**os.environ, _CHILD: json.dumps(node_config)}
    before = _cpu(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *argv[:6], repr(time.time())],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    process_cpu = _cpu(resource.RUSAGE_CHILDREN) - before
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(done.returncode)
    measured = json.loads(done.stdout.splitlines()[-1])
    steps = sum(v for k, v in measured["cpu"].items() if "again" not in k)
    again = sum(v for k, v in measured["cpu"].items() if "again" in k)
    # The plain arm reads the dataset again in its process (for context); not an exit cost.
    measured["cpu"]["process exit"] = max(process_cpu - steps - again, 0.0)
    print(json.dumps(measured))


def child(argv: list[str], node_config: dict[str, Any]) -> None:
    """The message's process: import as the arm does, handle the message, end as it does."""
    arm, phase, config_path, agreement, _noise, run_text, launched = argv[:7]
    run_id = int(run_text)
    end: Callable[[int], Any] = sys.exit
    if arm == "plain":
        import flwr.supernode.cli.flwr_clientapp  # noqa: F401  (what flwr-clientapp imports)

        import federation.plain_clientapp as handled

        app = handled.app
    else:
        from node.training.task_process import end_process, import_runner

        import_runner()
        import federation.clientapp as handled
        from node.training.runner import GovernedRunner

        end = end_process
    imported = time.time()
    cpu_imported = _cpu()
    dp_import = {"wall": 0.0, "cpu": 0.0}
    if phase == "train":
        # Both arms import Opacus only for DP-SGD (a train message): timed apart, so the
        # steps after it compare the same work whichever step imports it first.
        began, cpu_began = time.perf_counter(), _cpu()
        import opacus  # noqa: F401

        dp_import = {"wall": time.perf_counter() - began, "cpu": _cpu() - cpu_began}

    # The training work both arms share (fit, evaluate), timed apart from the rest.
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

    handled.fit = timed(handled.fit)  # type: ignore[attr-defined]
    handled.evaluate = timed(handled.evaluate)  # type: ignore[attr-defined]

    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from flwr.app.metadata import Metadata
    from flwr.supercore.run import Run

    from federation.runspec import RunSpec
    from federation.tasks import SeriesSource, load_task

    task = load_task("forecast-next-hour")
    spec_fields: dict[str, Any] = {"task_id": task.id, "task_hash": task.content_hash()}
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
    if phase == "train":
        wall["imports for DP-SGD"], cpu["imports for DP-SGD"] = dp_import["wall"], dp_import["cpu"]
    if arm == "plain":
        # The agreement is the governed arm's; plain Flower has none, any name will do.
        spec = RunSpec(**spec_fields, rounds=1, agreements={"plain": agreement})
        context = Context(
            run_id=run_id,
            node_id=2,
            node_config=node_config,
            state=RecordDict(),
            run_config=spec.to_run_config(),
        )
        began, cpu_began = time.perf_counter(), _cpu()
        reply = app(message, context)
        wall["handler"], cpu["handler"] = time.perf_counter() - began, _cpu() - cpu_began
        began, cpu_began = time.perf_counter(), _cpu()
        path = Path(node_config["data-path"])
        task.load(
            SeriesSource(
                dataset_id=path.stem,
                format="parquet" if path.suffix == ".parquet" else "csv",
                path=path,
                timestamp_column=node_config["timestamp-column"],
                value_column=node_config["value-column"],
            )
        )
        wall["dataset read (again)"] = time.perf_counter() - began
        cpu["dataset read (again)"] = _cpu() - cpu_began
    else:
        from node.config import load_config

        city = load_config(Path(config_path))
        spec = RunSpec(
            **spec_fields, rounds=1, agreements={city.model.node.participant_id: agreement}
        )
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
    end(0)


def main() -> None:
    """Measure one message (in a child process), or be that child."""
    config = os.environ.get(_CHILD)
    if config is None:
        if len(sys.argv) != 8 or sys.argv[1] not in ("plain", "governed"):
            print(__doc__)
            raise SystemExit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
        parent(sys.argv[1:])
    else:
        child(sys.argv[1:], json.loads(config))


if __name__ == "__main__":
    main()

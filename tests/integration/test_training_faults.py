"""Governed federated training under faults, in deployment mode on loopback.

A city node killed with SIGKILL in the middle of a run: its SuperNode goes with it,
the rounds go on with the other cities (the run's minimum allows it), and once the
node is started again with the same config its SuperNode rejoins and the city takes
part in the later rounds. An agreement that expires in the middle of a run: the
city's runner refuses the next round with a reason the researcher sees, audits the
refusal, spends no more privacy budget, and the node stops its SuperNode.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from federation.progress import read_progress
from tests.harness import Cluster, NodeProcess, hanse
from tests.integration.training_support import (
    audit_entries,
    audit_kinds,
    federation,
    flower_processes,
    ledger_history,
    now,
    process_alive,
    request_contract,
    show_run,
    start_run,
)

pytestmark = pytest.mark.integration

CITIES = {
    "city-a": "107 Quay Street",
    "city-b": "45 Queen Street",
    "city-c": "Commerce Street West",
}
ROUND_TIMEOUT = 45.0
"""Seconds a round waits for a city that does not answer."""
EXPIRES_AFTER = timedelta(seconds=180)
"""How long after the set-up starts the expiring agreements end."""


@pytest.fixture(autouse=True)
def no_flower_process_survives(tmp_path: Path) -> Iterator[None]:
    """After the cluster fixture stopped the nodes, no SuperLink or SuperNode of theirs runs."""
    yield
    deadline = time.monotonic() + 30
    while flower_processes(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert flower_processes(tmp_path) == {}


def _pid(cluster_root: Path, city: str) -> int:
    """The pid of the city's (one) SuperNode."""
    found = list(flower_processes(cluster_root / city))
    assert len(found) == 1, flower_processes(cluster_root)
    return found[0]


def _kill(cluster: Cluster, node: NodeProcess) -> None:
    """SIGKILL the node process only, no drain; the cluster fixture must not stop it again."""
    assert node.stop(signal.SIGKILL) == -signal.SIGKILL
    cluster.processes.remove(node)


def _wait_for(what: str, found: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"waited {timeout:.0f} s for {what}")


def _rounds(folder: Path, phase: str = "train") -> dict[int, dict[str, Any]]:
    """Round number -> each city's outcome in that phase, as the ServerApp recorded it."""
    return {
        int(event["round"]): event["cities"]
        for event in read_progress(folder)
        if event["event"] == "round" and event["phase"] == phase
    }


def _ok(outcomes: dict[str, Any], city: str) -> bool:
    return bool(outcomes.get(f"urn:hanse:{city}", {}).get("ok"))


def _watch(researcher: NodeProcess, run_id: str, timeout: int) -> str:
    watched = hanse(
        "train",
        "watch",
        run_id,
        "--timeout",
        str(timeout),
        "--config",
        str(researcher.config_path),
        timeout=timeout + 60,
    )
    assert watched.returncode == 0, watched.stdout + watched.stderr
    return watched.stdout


@pytest.mark.timeout(600)
def test_a_killed_city_is_left_out_then_rejoins(cluster: Cluster) -> None:
    # Prepare: three cities, a run of five rounds that needs two cities per round.
    rounds = 5
    researcher, cities = federation(
        cluster, CITIES, round_timeout=ROUND_TIMEOUT, max_train_examples=600
    )
    agreements = [request_contract(researcher, n, s, rounds) for n, s in CITIES.items()]
    run_id = start_run(researcher, agreements, rounds, "--min-nodes", "2")
    folder = Path(show_run(researcher, run_id)["folder"])
    _wait_for(
        "city-c to train in round 1",
        lambda: _ok(_rounds(folder).get(1, {}), "city-c"),
        timeout=240,
    )
    supernode = _pid(cluster.root, "city-c")

    # Execute: kill the city node with SIGKILL; start it again once a round went on without it.
    city_c = cities["city-c"]
    spent_before = len(ledger_history(city_c.config_path, CITIES["city-c"]))
    _kill(cluster, city_c)
    orphan_gone = _wait_for(
        "the SuperNode to die with its node", lambda: not process_alive(supernode), 15
    )
    without = _wait_for(
        "a round without city-c",
        lambda: [
            r
            for r, outcomes in _rounds(folder).items()
            if not _ok(outcomes, "city-c") and _ok(outcomes, "city-a") and _ok(outcomes, "city-b")
        ],
        timeout=ROUND_TIMEOUT + 120,
    )
    restarted = cluster.start(city_c.config_path)
    _watch(researcher, run_id, 600)

    # Assert: the run completed; city-c missed a round, then took part again.
    run = show_run(researcher, run_id)
    assert orphan_gone
    assert run["state"] == "TRAINING_STATE_COMPLETED", run
    assert run["rounds_done"] == rounds
    train = _rounds(folder)
    assert sorted(train) == list(range(1, rounds + 1)), train
    assert all(_ok(train[r], "city-a") and _ok(train[r], "city-b") for r in train), train
    missed = min(without)
    assert missed >= 2, train
    rejoined = [r for r in train if r > missed and _ok(train[r], "city-c")]
    assert rejoined, train
    assert "training.supernode.started" in audit_kinds(restarted)
    # The ledger holds a round for each round city-c took part in; the round it was
    # killed in spent nothing more than what it had recorded before.
    took_part = [r for r in train if _ok(train[r], "city-c")]
    history = ledger_history(restarted.config_path, CITIES["city-c"])
    assert len(history) == len(took_part), (history, train)
    assert spent_before == len([r for r in took_part if r < missed]), (spent_before, train)
    assert len(flower_processes(cluster.root / "city-c")) == 1


@pytest.mark.timeout(600)
def test_an_agreement_that_expires_mid_run_is_refused_by_the_city(cluster: Cluster) -> None:
    # Prepare: city-a's agreement holds; city-b's and city-c's end at ``expires``. city-b
    # re-checks its agreements only at start, so its SuperNode stays up and its runner
    # is the one that must refuse; city-c re-checks every second and stops its SuperNode.
    rounds = 8
    names = ("city-a", "city-b", "city-c")
    expires = now() + EXPIRES_AFTER
    researcher, cities = federation(
        cluster,
        {n: CITIES[n] for n in names},
        round_timeout=ROUND_TIMEOUT,
        max_train_examples=600,
        city_edits={"city-b": {"training": {"reconcile_seconds": 3600}}},
        expiring={"city-b": expires, "city-c": expires},
    )
    agreements = [request_contract(researcher, n, CITIES[n], rounds) for n in names]
    run_id = start_run(researcher, agreements, rounds, "--min-nodes", "1")
    folder = Path(show_run(researcher, run_id)["folder"])
    # The aggregator's SuperLink runs from the first run on: city-b, started again now,
    # connects once (its one check at start) and keeps its SuperNode past the expiry.
    _wait_for("the run's first round", lambda: _rounds(folder), 120)
    city_b = _restart(cluster, cities["city-b"])
    _wait_for("city-b's SuperNode", lambda: "training.supernode.started" in audit_kinds(city_b), 60)
    assert now() < expires, "the set-up took longer than the agreements last; raise EXPIRES_AFTER"

    # Execute: the run goes on past the expiry.
    watched = _watch(researcher, run_id, 900)

    # Assert: the run completed with city-a in every round; city-b took part until the
    # expiry and was refused after it, with the reason shown to the researcher.
    run = show_run(researcher, run_id)
    assert run["state"] == "TRAINING_STATE_COMPLETED", run
    train = _rounds(folder)
    assert all(_ok(train[r], "city-a") for r in train), train
    before = [r for r in train if _ok(train[r], "city-b")]
    after = [r for r in train if "urn:hanse:city-b" in train[r] and not _ok(train[r], "city-b")]
    assert before and after and max(before) < min(after), train
    reason = train[min(after)]["urn:hanse:city-b"]["error"]
    assert "no longer permits the use" in reason, reason
    assert " ".join(reason.split()) in " ".join(watched.split())  # ``hanse train watch`` shows it
    refused = [e for e in audit_entries(city_b) if e["kind"] == "training.refused"]
    assert refused and all("no longer permits" in e["payload"]["reason"] for e in refused)
    # Nothing left the node once it refused: one ledger round per round it took part in
    # (a round begun before the expiry may end after it), none after the first refusal.
    history = ledger_history(city_b.config_path, CITIES["city-b"])
    assert len(history) == len(before), (history, train)
    first_refusal = min(_times(folder, "urn:hanse:city-b", ok=False))
    assert all(entry.time.timestamp() < first_refusal for entry in history), history
    # city-c's node stopped its SuperNode when the agreement ended, and spent nothing after.
    city_c = cities["city-c"]
    stopped = [e for e in audit_entries(city_c) if e["kind"] == "training.supernode.stopped"]
    assert stopped and "no longer applies" in stopped[0]["payload"]["reason"], stopped
    assert not flower_processes(cluster.root / "city-c")
    c_rounds = [r for r in train if _ok(train[r], "city-c")]
    assert len(ledger_history(city_c.config_path, CITIES["city-c"])) == len(c_rounds), train
    assert max(c_rounds) < rounds, train


def _times(folder: Path, city: str, *, ok: bool) -> list[float]:
    """When the ServerApp recorded a round in which ``city``'s outcome was ``ok``."""
    return [
        float(event["time"])
        for event in read_progress(folder)
        if event["event"] == "round" and event["cities"].get(city, {"ok": not ok})["ok"] == ok
    ]


def _restart(cluster: Cluster, node: NodeProcess) -> NodeProcess:
    """Stop the node (SIGTERM) and start it again with the same config."""
    assert node.stop() == 0, node.log()
    cluster.processes.remove(node)
    return cluster.start(node.config_path)

"""Flower in deployment mode on loopback: real SuperLink, SuperNodes and governed runners.

The SuperLink runs with TLS and SuperNode authentication; only the registered city
key may join. SuperNodes run in process isolation, and every ClientApp task goes to
the node's executor and runner, never ``flwr-clientapp``. The ServerApp is the one
installed with Hanse; the run's bundle carries no code.
"""

from __future__ import annotations

import sys
import time
import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pytest
import torch
from flwr.cli.cli_client_interceptor import CliClientHttpInterceptor
from flwr.proto.control_pb2 import ListRunsRequest, RegisterNodeRequest
from flwr.supercore.control.control_http_client import ControlHttpClient
from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor

from connector.identity.pki import IssuedFiles, init_ca, issue_certificate
from federation.flower.fab import build_run_fab
from federation.flower.fleet_proxy import FleetProxy
from federation.flower.keys import public_key_pem_of_certificate
from federation.flower.superlink import RunStatus, SuperLink, SuperLinkSettings
from federation.flower.supernode import SuperNode, SuperNodeSettings
from federation.progress import METRICS_FILE, MODEL_FILE, read_progress
from federation.runspec import RunSpec
from federation.tasks import load_task

pytestmark = pytest.mark.integration

RUNNER = Path(__file__).with_name("flower_runner.py")
CITY1 = "urn:hanse:city1"
CITY2 = "urn:hanse:city2"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, IssuedFiles]:
    ca = tmp_path / "pki"
    init_ca(ca)
    return {
        name: issue_certificate(ca, name, participant_id=pid, out_dir=ca)
        for name, pid in (("agg", "urn:hanse:agg"), ("city1", CITY1), ("city2", CITY2))
    }


@pytest.fixture
def link(pki: dict[str, IssuedFiles], tmp_path: Path) -> Iterator[SuperLink]:
    agg = pki["agg"]
    started = SuperLink(
        SuperLinkSettings(cert=agg.cert, key=agg.key, ca=agg.ca, state_dir=tmp_path / "link")
    )
    yield started
    started.stop()
    assert not started.process.alive()


def supernode(link: SuperLink, files: IssuedFiles, state: Path, *extra: str) -> SuperNode:
    return SuperNode(
        SuperNodeSettings(
            superlink=link.address,
            trust_bundle=files.ca,
            node_key=files.key,
            state_dir=state,
            runner_command=[sys.executable, str(RUNNER), *extra],
        )
    )


def run_to_end(link: SuperLink, spec: RunSpec, timeout: float = 180.0) -> RunStatus:
    config = spec.to_run_config()
    run_id = link.start_run(build_run_fab(config), config)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = link.run_status(run_id)
        if status.finished:
            return status
        time.sleep(0.5)
    link.stop_run(run_id)
    pytest.fail(f"run {run_id} did not finish within {timeout} s")


def spec_for(nodes: dict[int, str], out: Path, rounds: int = 2) -> RunSpec:
    task = load_task("forecast-next-hour")
    return RunSpec(
        task_id=task.id,
        task_hash=task.content_hash(),
        rounds=rounds,
        agreements={city: f"agreement-{city}" for city in nodes.values()},
        nodes=nodes,
        out_dir=str(out),
        round_timeout=90,
    )


def test_a_governed_run_uses_the_node_runner_and_only_registered_keys_join(
    link: SuperLink, pki: dict[str, IssuedFiles], tmp_path: Path
) -> None:
    city1_key = public_key_pem_of_certificate(pki["city1"].cert.read_bytes())
    node_id = link.register_node(city1_key, CITY1)
    assert link.register_node(city1_key, CITY1) == node_id, "registering twice is one node"
    assert [n["node_id"] for n in link.nodes()] == [node_id]

    nodes = [
        supernode(link, pki["city1"], tmp_path / "city1"),
        # city2 holds a federation certificate but the aggregator never registered it.
        supernode(link, pki["city2"], tmp_path / "city2"),
    ]
    try:
        out = tmp_path / "run"
        status = run_to_end(link, spec_for({node_id: CITY1}, out))
        assert (status.status, status.sub_status) == ("finished", "completed"), status.details
        city1, city2 = nodes
        # One runner per message: 2 rounds x (train + evaluate); none for the stranger.
        assert city1.executor.launched == 4
        assert city2.executor.launched == 0
        assert list((tmp_path / "city1" / "tasks").glob("task-*.log"))
        assert not (tmp_path / "city2" / "tasks").exists()
    finally:
        for node in nodes:
            node.stop()
            assert not node.alive()

    events = list(read_progress(out))
    assert [e["event"] for e in events] == ["start", "round", "round", "round", "round", "end"]
    rounds = [e for e in events if e["event"] == "round"]
    assert [(e["phase"], e["round"]) for e in rounds] == [
        ("train", 1),
        ("evaluate", 1),
        ("train", 2),
        ("evaluate", 2),
    ]
    for event in rounds:
        outcome = event["cities"][CITY1]
        assert outcome["ok"] is True
        assert set(event["cities"]) == {CITY1}
    assert rounds[0]["cities"][CITY1]["metrics"]["loss"] == 0.5
    assert rounds[0]["cities"][CITY1]["bytes"] > 0
    assert events[-1]["status"] == "completed"
    # The aggregator saved a loadable model of the task's shape, and the metrics.
    state = torch.load(out / MODEL_FILE)
    model = load_task("forecast-next-hour").build_model()
    model.load_state_dict(state)
    assert (out / METRICS_FILE).is_file()


def test_a_refusal_reaches_the_researcher_with_its_reason(
    link: SuperLink, pki: dict[str, IssuedFiles], tmp_path: Path
) -> None:
    node_id = link.register_node(
        public_key_pem_of_certificate(pki["city1"].cert.read_bytes()), CITY1
    )
    reason = "agreement agreement-x is TERMINATED, not FINALIZED"
    node = supernode(link, pki["city1"], tmp_path / "city1", "--refuse", reason)
    try:
        out = tmp_path / "run"
        status = run_to_end(link, spec_for({node_id: CITY1}, out, rounds=1))
    finally:
        node.stop()
    assert status.finished
    rounds = [e for e in read_progress(out) if e["event"] == "round"]
    assert rounds, "the aggregator recorded no round"
    for event in rounds:
        outcome = event["cities"][CITY1]
        assert outcome == {"ok": False, "error": f"refused: {reason}"}


def test_the_run_bundle_carries_no_code() -> None:
    config = spec_for({1: CITY1}, Path("/nonexistent")).to_run_config()
    with zipfile.ZipFile(BytesIO(build_run_fab(config))) as fab:
        names = fab.namelist()
    assert sorted(names) == [".info/CONTENT", "pyproject.toml"]


def test_through_the_fleet_proxy_supernodes_train_and_the_control_api_is_unreachable(
    link: SuperLink, pki: dict[str, IssuedFiles], tmp_path: Path
) -> None:
    agg = pki["agg"]
    proxy = FleetProxy(
        listen_host="127.0.0.1",
        listen_port=0,
        upstream=f"https://{link.address}",
        cert=agg.cert,
        key=agg.key,
        ca=agg.ca,
    )
    try:
        # A city's own registration request through the proxy: refused, nothing registered.
        city2_key = public_key_pem_of_certificate(pki["city2"].cert.read_bytes())
        control = ControlHttpClient.from_server_address(
            proxy.address,
            insecure=False,
            root_certificates=str(agg.ca),
            interceptors=[
                CliClientHttpInterceptor(),
                RuntimeVersionHttpInterceptor(component_name="flwr CLI"),
            ],
        )
        with pytest.raises(httpx.HTTPStatusError) as refused:
            control.RegisterNode(RegisterNodeRequest(public_key=city2_key, name=CITY2))
        with pytest.raises(httpx.HTTPStatusError) as listing:
            control.ListRuns(ListRunsRequest())
        control.close()
        assert refused.value.response.status_code == 404
        assert listing.value.response.status_code == 404
        assert link.nodes() == []

        node_id = link.register_node(
            public_key_pem_of_certificate(pki["city1"].cert.read_bytes()), CITY1
        )
        node = SuperNode(
            SuperNodeSettings(
                superlink=proxy.address,
                trust_bundle=pki["city1"].ca,
                node_key=pki["city1"].key,
                state_dir=tmp_path / "city1",
                runner_command=[sys.executable, str(RUNNER)],
            )
        )
        try:
            status = run_to_end(link, spec_for({node_id: CITY1}, tmp_path / "run", rounds=1))
        finally:
            node.stop()
        assert (status.status, status.sub_status) == ("finished", "completed"), status.details
        assert node.executor.launched == 2
    finally:
        proxy.stop()

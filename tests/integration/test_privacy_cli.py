"""``hanse privacy list`` and ``show`` against a real node process.

The node's database gets its ledger rounds through :class:`SqlPrivacyLedger` before
the node starts; the CLI runs in process (typer's runner) with the node's config and
reaches the node's management API over TLS with the admin token, as an operator does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from click.testing import Result
from typer.testing import CliRunner

from connector.clock import FixedClock
from connector.errors import from_rpc_error
from connector.identity import channel_credentials
from connector.interceptors.admin import bearer_metadata
from connector.negotiation.model import NegotiationRecord
from connector.negotiation.states import NegotiationState, Role
from connector.store import SqlAuditLog, SqlNegotiationStore, create_engine, migrate
from connector.store.ledger import SqlPrivacyLedger
from connector.v1 import privacy_management_pb2 as pb
from connector.v1 import privacy_management_pb2_grpc
from node.cli import app, output
from node.config import load_config
from node.sample_data import sensor_dataset_id
from node.server import load_node_tls
from tests.harness import Cluster, NodeProcess

pytestmark = pytest.mark.integration

QUAY = sensor_dataset_id("107 Quay Street")
K_ROAD = sensor_dataset_id("150 K Road")
AGREEMENT = "urn:uuid:agreement-quay"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _record_ledger(config_path: Path) -> list[tuple[int, float]]:
    """An agreement on QUAY and three rounds spent under it (two runs)."""
    loaded = load_config(config_path)
    engine = create_engine(loaded.database_url())
    migrate(engine)
    SqlNegotiationStore(engine, SqlAuditLog(engine)).create(
        NegotiationRecord(
            id="urn:uuid:provider-quay",
            role=Role.PROVIDER,
            state=NegotiationState.FINALIZED,
            consumer_pid="urn:uuid:consumer-quay",
            provider_pid="urn:uuid:provider-quay",
            counterparty_id="did:web:researcher.example",
            counterparty_address="127.0.0.1:1",
            dataset_id=QUAY,
            offer_id=f"{QUAY}-fl",
            offer={"@id": f"{QUAY}-fl", "permission": [{"action": "use"}]},
            usage={"epsilon": 4.0, "max_rounds": 3, "delta": 1e-5},
            agreement={"@id": AGREEMENT, "@type": "Agreement"},
        )
    )
    clock = FixedClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    ledger = SqlPrivacyLedger(engine, clock)
    spent = [("run-1", 1, 0.9112), ("run-1", 2, 1.3377), ("run-2", 1, 1.6904)]
    for seq, (run, round_number, epsilon) in enumerate(spent):
        clock.advance(timedelta(minutes=2))
        ledger.record_round(
            dataset_id=QUAY,
            agreement_id=AGREEMENT,
            run_id=run,
            round=round_number,
            sample_rate=0.0312,
            noise_multiplier=1.1,
            steps=32,
            delta=1e-5,
            epsilon_after=epsilon,
            expected_rounds=seq,
        )
    engine.dispose()
    return [(seq + 1, eps) for seq, (_, _, eps) in enumerate(spent)]


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One city node holding two sensors, one of them trained on (three rounds)."""
    cluster = Cluster(tmp_path_factory.mktemp("privacy"))
    config = cluster.init("city-a", sensors=("107 Quay Street", "150 K Road"))
    _record_ledger(config)
    node = cluster.start(config)
    yield node
    assert node.stop() == 0, node.log()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output.console, "width", 240)
    monkeypatch.setattr(output.errors, "width", 240)


def hanse(city: NodeProcess, *args: str) -> Result:
    result = CliRunner().invoke(app, [*args, "--config", str(city.config_path)])
    assert not isinstance(result.exception, AssertionError | TypeError | AttributeError), result
    return result


def plain(text: str) -> str:
    return ANSI.sub("", text)


def test_list_json_gives_every_dataset_of_the_node(city: NodeProcess) -> None:
    # Execute
    result = hanse(city, "privacy", "list", "--json")

    # Assert
    assert result.exit_code == 0, result.output
    budgets = {b["dataset_id"]: b for b in json.loads(result.stdout)}
    assert set(budgets) == {QUAY, K_ROAD}
    assert budgets[QUAY]["epsilon_spent"] == pytest.approx(1.6904)
    assert budgets[QUAY]["rounds"] == 3
    spend = budgets[QUAY]["agreements"][0]
    assert spend.pop("last_spend_time") == "2026-03-01T12:06:00Z"
    assert spend == {
        "agreement_id": AGREEMENT,
        "agreed_epsilon": 4.0,
        "agreed_max_rounds": 3,
        "rounds_used": 3,
        "runs": 2,
        "epsilon_after": pytest.approx(1.6904),
    }
    assert budgets[QUAY]["last_spend_time"] == "2026-03-01T12:06:00Z"
    assert budgets[K_ROAD] == {
        "dataset_id": K_ROAD,
        "epsilon_spent": 0.0,
        "delta": 0.0,
        "rounds": 0,
        "agreements": [],
    }


def test_list_prints_a_table_of_budgets(city: NodeProcess) -> None:
    # Execute
    result = hanse(city, "privacy", "list")

    # Assert
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    assert "privacy budgets" in text
    quay_line = next(line for line in text.splitlines() if QUAY in line)
    assert "1.6904" in quay_line and f"{AGREEMENT} (3 rounds; ε 4, 3 rounds in all)" in quay_line
    k_road_line = next(line for line in text.splitlines() if K_ROAD in line)
    assert "0.0000" in k_road_line


def test_show_prints_the_summary_and_every_round(city: NodeProcess) -> None:
    # Execute
    result = hanse(city, "privacy", "show", QUAY)

    # Assert
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    assert "epsilon spent:  1.6904 (delta 1e-05)" in text
    assert "rounds:         3" in text
    agreement_line = next(line for line in text.splitlines() if "rounds in all" in line)
    assert "ε 4, 3 rounds in all" in agreement_line and "2.3096" in agreement_line
    round_lines = [line for line in text.splitlines() if "run-" in line]
    assert len(round_lines) == 3
    assert "0.9112" in round_lines[0] and "1.3377" in round_lines[1]
    assert "1.6904" in round_lines[2] and "run-2" in round_lines[2]


def test_show_json_of_a_dataset_never_trained_on(city: NodeProcess) -> None:
    # Execute
    result = hanse(city, "privacy", "show", K_ROAD, "--json")

    # Assert
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["budget"]["epsilon_spent"] == 0.0
    assert shown["budget"]["rounds"] == 0
    assert shown["rounds"] == []


def test_show_of_an_unknown_dataset_fails_clearly_and_changes_nothing(city: NodeProcess) -> None:
    # Prepare
    before = hanse(city, "privacy", "list", "--json").stdout

    # Execute
    result = hanse(city, "privacy", "show", "akl-ped-nowhere")

    # Assert
    assert result.exit_code == 1
    message = " ".join(plain(result.stderr).split())
    assert "error: this node holds no dataset 'akl-ped-nowhere'" in message
    assert "hanse privacy list" in message and "[DATASET_NOT_FOUND]" in message
    assert hanse(city, "privacy", "list", "--json").stdout == before


def test_the_privacy_api_refuses_a_wrong_admin_token(city: NodeProcess) -> None:
    # Prepare
    tls = load_node_tls(city.config)
    channel = grpc.secure_channel(city.management, channel_credentials(tls, with_client_cert=False))
    stub = privacy_management_pb2_grpc.PrivacyManagementServiceStub(channel)

    # Execute
    with channel, pytest.raises(grpc.RpcError) as raised:
        stub.ListPrivacyBudgets(
            pb.ListPrivacyBudgetsRequest(), metadata=bearer_metadata("not-the-token"), timeout=10
        )

    # Assert
    assert from_rpc_error(raised.value).code == grpc.StatusCode.UNAUTHENTICATED

"""Which aggregators a city's agreements allow it to connect to now (allowed_aggregators).

Real provider-side negotiations of a real city node, with agreements built from the
city's offer and the researcher's stated usage and signed by both parties. No
process is started here (see tests/integration/test_connectivity.py).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from connector.clock import FixedClock
from connector.negotiation.model import NegotiationRecord
from connector.negotiation.states import NegotiationState, Role
from node.training.connectivity import ROUNDS_GRACE, Allowed, allowed_aggregators, ledger_rounds
from tests.unit.city_support import DATASET, OTHER, RESEARCHER, City, make_city, usage

FLEET = {RESEARCHER: "127.0.0.1:9092", OTHER: "127.0.0.1:9093"}
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    made = make_city(tmp_path_factory.mktemp("city"))
    yield made
    made.close()


def allowed(
    records: list[NegotiationRecord],
    *,
    fleet: dict[str, str] | None = None,
    spent: float = 0.0,
    rounds: dict[str, tuple[int, datetime | None]] | None = None,
    now: datetime = NOW,
) -> tuple[dict[str, Allowed], dict[str, str]]:
    """``allowed_aggregators`` over ``records``, checking it changes none of them.

    ``rounds``: by agreement id, the training rounds used and when the last (none if
    the agreement is not named).
    """
    before = copy.deepcopy(records)
    used = rounds or {}
    result = allowed_aggregators(
        records,
        FLEET if fleet is None else fleet,
        lambda dataset: spent,
        FixedClock(now),
        lambda agreement: used.get(agreement, (0, None)),
    )
    assert records == before
    return result


def test_a_finalized_provider_agreement_allows_its_aggregator(city: City) -> None:
    # Prepare
    record = city.agreement("live")

    # Execute
    grants, blocked = allowed([record])

    # Assert
    assert grants == {
        RESEARCHER: Allowed(RESEARCHER, FLEET[RESEARCHER], ("urn:uuid:agreement-live",))
    }
    assert blocked == {}


def test_the_stated_aggregator_is_the_one_allowed(city: City) -> None:
    # Prepare
    record = city.agreement("stated", stated=usage(aggregator=OTHER))

    # Execute
    grants, blocked = allowed([record])

    # Assert
    assert list(grants) == [OTHER]
    assert grants[OTHER].fleet_address == FLEET[OTHER]
    assert blocked == {}


def test_consumer_side_and_unfinished_negotiations_are_ignored(city: City) -> None:
    # Prepare
    live = city.agreement("ignored")
    records = [
        replace(live, role=Role.CONSUMER),
        *(
            replace(live, state=state)
            for state in NegotiationState
            if state != NegotiationState.FINALIZED
        ),
    ]

    # Execute
    grants, blocked = allowed(records)

    # Assert
    assert (grants, blocked) == ({}, {})


def test_an_expired_agreement_blocks_its_aggregator_with_the_reason(city: City) -> None:
    # Prepare
    record = city.agreement("expiring", expires=NOW + timedelta(hours=1))

    # Execute
    before_grants, _ = allowed([record])
    grants, blocked = allowed([record], now=NOW + timedelta(hours=2))

    # Assert
    assert list(before_grants) == [RESEARCHER]
    assert grants == {}
    reason = blocked[RESEARCHER]
    assert reason.startswith("agreement urn:uuid:agreement-expiring no longer applies: permission")
    assert "dateTime" in reason
    assert "bound method" not in reason


def test_a_spent_budget_blocks_its_aggregator(city: City) -> None:
    # Prepare: the agreement allows epsilon 8.
    record = city.agreement("spent")

    # Execute
    under, _ = allowed([record], spent=7.99)
    grants, blocked = allowed([record], spent=8.0)

    # Assert
    assert list(under) == [RESEARCHER]
    assert grants == {}
    assert blocked == {
        RESEARCHER: f"agreement urn:uuid:agreement-spent: the privacy budget of {DATASET} is spent"
    }


def test_an_agreement_whose_rounds_are_all_used_blocks_its_aggregator(city: City) -> None:
    # Prepare: the agreement allows 3 rounds, counted over all its runs.
    record = city.agreement("rounds-used", stated=usage(max_rounds=3))
    name = "urn:uuid:agreement-rounds-used"
    long_ago = NOW - ROUNDS_GRACE

    # Execute
    under, _ = allowed([record], rounds={name: (2, long_ago)})
    grants, blocked = allowed([record], rounds={name: (3, long_ago)})

    # Assert
    assert list(under) == [RESEARCHER]
    assert grants == {}
    assert blocked == {RESEARCHER: f"agreement {name}: its 3 training round(s) are all used"}


def test_the_last_round_leaves_time_to_evaluate_the_final_model(city: City) -> None:
    # Prepare: the agreement's last round was recorded a moment ago.
    record = city.agreement("rounds-just-used", stated=usage(max_rounds=2))
    name = "urn:uuid:agreement-rounds-just-used"
    last = NOW - timedelta(seconds=5)

    # Execute
    during, _ = allowed([record], rounds={name: (2, last)})
    grants, blocked = allowed([record], rounds={name: (2, last)}, now=last + ROUNDS_GRACE)

    # Assert: allowed within the grace, blocked from its end.
    assert list(during) == [RESEARCHER]
    assert grants == {}
    assert blocked == {RESEARCHER: f"agreement {name}: its 2 training round(s) are all used"}


def test_an_agreement_with_rounds_left_keeps_the_aggregator_another_used_up(city: City) -> None:
    # Prepare
    used_up = city.agreement("rounds-gone", stated=usage(max_rounds=2))
    left = city.agreement("rounds-left", stated=usage(max_rounds=2))
    long_ago = NOW - ROUNDS_GRACE

    # Execute
    grants, blocked = allowed(
        [used_up, left],
        rounds={
            "urn:uuid:agreement-rounds-gone": (2, long_ago),
            "urn:uuid:agreement-rounds-left": (1, long_ago),
        },
    )

    # Assert
    assert grants[RESEARCHER].agreements == ("urn:uuid:agreement-rounds-left",)
    assert blocked == {}


@pytest.mark.parametrize(
    ("stated", "lacks"),
    [
        (usage(task={"id": "forecast-next-hour"}), "does not pin the task's content hash"),
        (usage(max_rounds=None), "states no maxRounds"),
        (usage(epsilon=None), "states no privacy budget (epsilon above 0)"),
        (usage(epsilon=0.0), "states no privacy budget (epsilon above 0)"),
    ],
    ids=["no-task-hash", "no-max-rounds", "no-epsilon", "zero-epsilon"],
)
def test_an_agreement_the_runner_would_refuse_opens_no_connection(
    city: City, stated: dict[str, object], lacks: str
) -> None:
    # Prepare
    record = city.agreement(f"lacking-{uuid.uuid4().hex}", stated=stated)
    name = str((record.agreement or {})["@id"])

    # Execute
    grants, blocked = allowed([record])

    # Assert
    assert grants == {}
    assert blocked == {RESEARCHER: f"agreement {name} {lacks}, so no run may use it"}


def test_an_aggregator_without_a_fleet_address_is_blocked_with_the_reason(city: City) -> None:
    # Prepare
    record = city.agreement("no-fleet")

    # Execute
    grants, blocked = allowed([record], fleet={OTHER: FLEET[OTHER]})

    # Assert
    assert grants == {}
    assert blocked == {
        RESEARCHER: f"agreement urn:uuid:agreement-no-fleet names aggregator {RESEARCHER}, "
        "which is not a peer with a fleet_address in this node's config"
    }


def test_agreements_with_one_aggregator_are_grouped(city: City) -> None:
    # Prepare: two live agreements with the researcher, one with another lab.
    first = city.agreement("group-b")
    second = city.agreement("group-a")
    other = city.agreement("group-other", consumer=OTHER)

    # Execute
    grants, blocked = allowed([first, second, other])

    # Assert
    assert grants == {
        RESEARCHER: Allowed(
            RESEARCHER,
            FLEET[RESEARCHER],
            ("urn:uuid:agreement-group-a", "urn:uuid:agreement-group-b"),
        ),
        OTHER: Allowed(OTHER, FLEET[OTHER], ("urn:uuid:agreement-group-other",)),
    }
    assert blocked == {}


def test_one_live_agreement_keeps_an_aggregator_another_would_block(city: City) -> None:
    # Prepare
    expired = city.agreement("old", expires=NOW - timedelta(days=1))
    live = city.agreement("new")

    # Execute
    grants, blocked = allowed([expired, live])

    # Assert
    assert grants[RESEARCHER].agreements == ("urn:uuid:agreement-new",)
    assert blocked == {}


def test_an_unreadable_agreement_blocks_with_the_reason(city: City) -> None:
    # Prepare: a policy whose permission has no action.
    live = city.agreement("unreadable")
    broken = replace(live, agreement={**dict(live.agreement or {}), "permission": [{}]})

    # Execute
    grants, blocked = allowed([broken])

    # Assert
    assert grants == {}
    assert blocked[RESEARCHER].startswith("agreement urn:uuid:agreement-unreadable is unreadable: ")


def test_ledger_rounds_counts_every_run_of_an_agreement(city: City) -> None:
    # Prepare: two runs under one agreement, one under another.
    name = "urn:uuid:agreement-ledger-rounds"
    for run, agreement in (("1", name), ("2", name), ("1", "urn:uuid:agreement-other")):
        seq = len(city.ledger.history(DATASET))
        city.ledger.record_round(
            dataset_id=DATASET,
            agreement_id=agreement,
            run_id=run,
            round=1,
            sample_rate=0.25,
            noise_multiplier=1.0,
            steps=4,
            delta=1e-5,
            epsilon_after=0.1 * (seq + 1),
            expected_rounds=seq,
        )
    newest = [r for r in city.ledger.history(DATASET) if r.agreement_id == name][-1]

    # Execute
    counted = ledger_rounds(city.ledger)

    # Assert
    assert counted(name) == (2, newest.time)
    assert counted("urn:uuid:agreement-none") == (0, None)

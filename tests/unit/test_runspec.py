"""Tests for the run spec a researcher's node puts in Flower's run config (federation.runspec)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from federation.runspec import OPTIMIZERS, STRATEGIES, RunSpec, RunSpecError

HASH = "sha256:" + "ab" * 32


def a_spec(**fields: Any) -> RunSpec:
    base: dict[str, Any] = {
        "task_id": "forecast-next-hour",
        "task_hash": HASH,
        "rounds": 3,
        "agreements": {"urn:hanse:city-a": "agr-a", "urn:hanse:city-b": "agr-b"},
    }
    return RunSpec(**{**base, **fields})


def a_full_spec() -> RunSpec:
    """A spec with every setting away from its default."""
    return a_spec(
        nodes={101: "urn:hanse:city-a", 202: "urn:hanse:city-b"},
        strategy="fedprox",
        min_nodes=2,
        min_aggregate=2,
        local_epochs=2,
        batch_size=16,
        learning_rate=0.05,
        optimizer="adam",
        proximal_mu=0.3,
        round_timeout=42.5,
        seed=7,
        out_dir="/srv/runs/r1",
        trust_bundle="/srv/pki/ca.pem",
    )


# --- round trip and defaults -------------------------------------------------------------------


def test_a_full_spec_survives_the_run_config_round_trip() -> None:
    # Prepare
    spec = a_full_spec()

    # Execute
    back = RunSpec.from_run_config(spec.to_run_config())

    # Assert
    assert back == spec
    assert back.nodes == {101: "urn:hanse:city-a", 202: "urn:hanse:city-b"}


def test_the_run_config_is_flat_prefixed_and_holds_only_flower_scalar_types() -> None:
    # Prepare
    spec = a_full_spec()

    # Execute
    config = spec.to_run_config()

    # Assert
    assert all(key.startswith("hanse-") for key in config)
    assert all(type(value) in (str, int, float) for value in config.values())
    assert config["hanse-task"] == "forecast-next-hour"
    assert config["hanse-rounds"] == 3
    assert config["hanse-round-timeout"] == 42.5
    assert config["hanse-optimizer"] == "adam"
    assert config["hanse-min-aggregate"] == 2
    assert json.loads(str(config["hanse-agreements"])) == {
        "urn:hanse:city-a": "agr-a",
        "urn:hanse:city-b": "agr-b",
    }
    assert json.loads(str(config["hanse-nodes"])) == {
        "101": "urn:hanse:city-a",
        "202": "urn:hanse:city-b",
    }


def test_a_minimal_run_config_gets_the_defaults() -> None:
    # Prepare
    config = {
        "hanse-task": "forecast-next-hour",
        "hanse-task-hash": HASH,
        "hanse-rounds": 2,
        "hanse-agreements": json.dumps({"urn:hanse:city-a": "agr-a"}),
    }

    # Execute
    spec = RunSpec.from_run_config(config)

    # Assert
    assert spec == RunSpec(
        task_id="forecast-next-hour",
        task_hash=HASH,
        rounds=2,
        agreements={"urn:hanse:city-a": "agr-a"},
    )
    assert spec.nodes == {}
    assert spec.strategy == "fedavg"
    assert spec.min_nodes == 1
    assert spec.min_aggregate == 0
    assert spec.local_epochs == 1
    assert spec.batch_size == 64
    assert spec.learning_rate == 0.01
    assert spec.optimizer == "sgd"
    assert spec.proximal_mu == 0.1
    assert spec.round_timeout == 600.0
    assert spec.seed == 0
    assert spec.out_dir == ""
    assert spec.trust_bundle == ""


def test_an_integer_in_a_float_setting_is_read_as_a_float() -> None:
    # Prepare
    config = {**a_spec().to_run_config(), "hanse-round-timeout": 90, "hanse-learning-rate": 1}

    # Execute
    spec = RunSpec.from_run_config(config)

    # Assert
    assert spec.round_timeout == 90.0
    assert isinstance(spec.round_timeout, float)
    assert isinstance(spec.learning_rate, float)


def test_keys_without_the_prefix_are_ignored() -> None:
    # Prepare
    config = {**a_spec().to_run_config(), "rounds": 99, "other-app-setting": "x"}

    # Execute
    spec = RunSpec.from_run_config(config)

    # Assert
    assert spec == a_spec()


def test_output_is_the_out_dir_as_a_path() -> None:
    # Prepare
    spec = a_spec(out_dir="/srv/runs/r1")

    # Execute
    output = spec.output

    # Assert
    assert output == Path("/srv/runs/r1")


def test_a_spec_without_an_out_dir_has_no_output() -> None:
    # Prepare
    spec = a_spec()

    # Execute / Assert
    with pytest.raises(RunSpecError, match="no hanse-out-dir"):
        _ = spec.output


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_name_is_accepted(strategy: str) -> None:
    # Execute
    spec = a_spec(strategy=strategy)

    # Assert
    assert RunSpec.from_run_config(spec.to_run_config()).strategy == strategy


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_name_survives_the_round_trip(optimizer: str) -> None:
    # Execute
    spec = a_spec(optimizer=optimizer)

    # Assert
    assert spec.to_run_config()["hanse-optimizer"] == optimizer
    assert RunSpec.from_run_config(spec.to_run_config()).optimizer == optimizer


# --- validation of the settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task_id": ""}, "task is required"),
        ({"task_hash": "md5:abc"}, "task hash must look like sha256:<hex>"),
        ({"task_hash": ""}, "task hash must look like sha256:<hex>"),
        ({"rounds": 0}, "rounds must be between 1 and 10000, not 0"),
        ({"rounds": 10_001}, "rounds must be between 1 and 10000, not 10001"),
        ({"agreements": {}}, "a run needs at least one agreement"),
        ({"strategy": "fedsgd"}, "unknown strategy 'fedsgd'; choose one of fedavg, fedprox"),
        ({"optimizer": "rmsprop"}, r"unknown optimizer 'rmsprop'; choose one of sgd, adam$"),
        ({"optimizer": "Adam"}, r"unknown optimizer 'Adam'; choose one of sgd, adam$"),
        ({"optimizer": ""}, r"unknown optimizer ''; choose one of sgd, adam$"),
        (
            {"min_nodes": 0},
            r"min nodes must be between 1 and the number of agreements \(2\), not 0",
        ),
        (
            {"min_nodes": 3},
            r"min nodes must be between 1 and the number of agreements \(2\), not 3",
        ),
        (
            {"min_nodes": 1, "min_aggregate": 2},
            r"min aggregate must be between 0 \(no floor\) and min nodes \(1\), not 2",
        ),
        (
            {"min_aggregate": -1},
            r"min aggregate must be between 0 \(no floor\) and min nodes \(1\), not -1",
        ),
        ({"local_epochs": 0}, "local epochs, batch size and learning rate must be positive"),
        ({"batch_size": 0}, "local epochs, batch size and learning rate must be positive"),
        ({"learning_rate": 0.0}, "local epochs, batch size and learning rate must be positive"),
        ({"learning_rate": -0.1}, "local epochs, batch size and learning rate must be positive"),
        (
            {"learning_rate": float("nan")},
            "local epochs, batch size and learning rate must be positive",
        ),
        ({"round_timeout": 0.0}, "round timeout must be a positive number of seconds, not 0.0"),
        ({"round_timeout": -5.0}, "round timeout must be a positive number of seconds"),
        ({"round_timeout": float("inf")}, "round timeout must be a positive number of seconds"),
        ({"proximal_mu": -0.1}, "proximal mu must be zero or more, not -0.1"),
        ({"proximal_mu": float("nan")}, "proximal mu must be zero or more"),
    ],
)
def test_an_invalid_setting_is_refused_naming_it(fields: dict[str, Any], message: str) -> None:
    # Execute / Assert
    with pytest.raises(RunSpecError, match=message):
        a_spec(**fields)


def test_the_bounds_themselves_are_valid() -> None:
    # Execute
    low = a_spec(rounds=1, min_nodes=1, proximal_mu=0.0)
    high = a_spec(rounds=10_000, min_nodes=2)

    # Assert
    assert (low.rounds, low.min_nodes, low.proximal_mu) == (1, 1, 0.0)
    assert (high.rounds, high.min_nodes) == (10_000, 2)


def test_a_spec_is_frozen() -> None:
    # Prepare
    spec = a_spec()

    # Execute / Assert
    with pytest.raises(AttributeError):
        spec.rounds = 5  # type: ignore[misc]
    assert spec.rounds == 3


def test_replace_validates_again() -> None:
    # Prepare
    spec = a_spec()

    # Execute / Assert
    with pytest.raises(RunSpecError, match="rounds must be between"):
        replace(spec, rounds=0)
    assert spec.rounds == 3


# --- reading a run config that is wrong ---------------------------------------------------------


@pytest.mark.parametrize("key", ["task", "task-hash", "rounds", "agreements"])
def test_a_missing_required_key_is_named(key: str) -> None:
    # Prepare
    config = a_spec().to_run_config()
    del config["hanse-" + key]

    # Execute / Assert
    with pytest.raises(RunSpecError, match=f"run config has no hanse-{key}$"):
        RunSpec.from_run_config(config)


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("task", 5, "str"),
        ("task-hash", 1.5, "str"),
        ("rounds", "3", "int"),
        ("rounds", 3.0, "int"),
        ("rounds", True, "int"),
        ("agreements", 1, "str"),
        ("nodes", 2, "str"),
        ("strategy", 1, "str"),
        ("min-nodes", 1.0, "int"),
        ("local-epochs", "1", "int"),
        ("batch-size", False, "int"),
        ("learning-rate", "0.1", "float"),
        ("learning-rate", True, "float"),
        ("optimizer", 1, "str"),
        ("proximal-mu", "x", "float"),
        ("round-timeout", "600", "float"),
        ("seed", 0.5, "int"),
        ("out-dir", 0, "str"),
        ("trust-bundle", 0.0, "str"),
    ],
)
def test_a_value_of_the_wrong_type_is_named(key: str, value: object, kind: str) -> None:
    # Prepare
    config: dict[str, object] = {**a_spec().to_run_config(), "hanse-" + key: value}

    # Execute / Assert
    with pytest.raises(RunSpecError, match=f"run config hanse-{key} must be of type {kind}$"):
        RunSpec.from_run_config(config)


@pytest.mark.parametrize("key", ["agreements", "nodes"])
def test_settings_that_are_not_json_are_refused(key: str) -> None:
    # Prepare
    config = {**a_spec().to_run_config(), "hanse-" + key: "{not json"}

    # Execute / Assert
    with pytest.raises(RunSpecError, match="run config agreements/nodes are not JSON"):
        RunSpec.from_run_config(config)


@pytest.mark.parametrize(
    "agreements",
    ['["agr-a"]', '{"urn:hanse:city-a": 5}', '"agr-a"', "null"],
)
def test_agreements_that_are_not_a_map_of_strings_are_refused(agreements: str) -> None:
    # Prepare
    config = {**a_spec().to_run_config(), "hanse-agreements": agreements}

    # Execute / Assert
    with pytest.raises(RunSpecError, match="agreements must map participant ids to agreement ids"):
        RunSpec.from_run_config(config)


def test_an_empty_agreement_map_is_refused() -> None:
    # Prepare
    config = {**a_spec().to_run_config(), "hanse-agreements": "{}"}

    # Execute / Assert
    with pytest.raises(RunSpecError, match="a run needs at least one agreement"):
        RunSpec.from_run_config(config)


@pytest.mark.parametrize(
    "nodes",
    ['["urn:hanse:city-a"]', '{"one": "urn:hanse:city-a"}', '{"1": 5}', '{"1.5": "x"}', "null"],
)
def test_nodes_that_are_not_a_map_of_node_ids_to_cities_are_refused(nodes: str) -> None:
    # Prepare
    config = {**a_spec().to_run_config(), "hanse-nodes": nodes}

    # Execute / Assert
    with pytest.raises(RunSpecError, match=r"nodes must map node ids \(integers\) to participant"):
        RunSpec.from_run_config(config)


def test_an_invalid_value_in_the_run_config_is_refused_as_in_the_constructor() -> None:
    # Prepare
    config = {**a_spec().to_run_config(), "hanse-strategy": "fedsgd"}

    # Execute / Assert
    with pytest.raises(RunSpecError, match="unknown strategy 'fedsgd'"):
        RunSpec.from_run_config(config)


def test_an_unknown_optimizer_in_the_run_config_is_refused_naming_the_choices() -> None:
    # Prepare: a run config from a newer researcher node, with an optimizer this city lacks.
    config = {**a_spec().to_run_config(), "hanse-optimizer": "lion"}
    before = dict(config)

    # Execute / Assert
    with pytest.raises(RunSpecError, match=r"^unknown optimizer 'lion'; choose one of sgd, adam$"):
        RunSpec.from_run_config(config)
    assert config == before


def test_a_run_config_without_an_optimizer_trains_with_sgd() -> None:
    # Prepare: a run recorded before the optimizer was a setting (an old spec.json).
    config = a_full_spec().to_run_config()
    del config["hanse-optimizer"]

    # Execute
    spec = RunSpec.from_run_config(config)

    # Assert
    assert spec.optimizer == "sgd"
    assert spec == replace(a_full_spec(), optimizer="sgd")


def test_reading_does_not_change_the_config() -> None:
    # Prepare
    config = a_full_spec().to_run_config()
    before = dict(config)

    # Execute
    RunSpec.from_run_config(config)

    # Assert
    assert config == before

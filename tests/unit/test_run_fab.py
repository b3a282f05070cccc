"""Tests for the configuration-only Flower App Bundle of a run (federation.flower.fab)."""

from __future__ import annotations

import hashlib
import tomllib
import zipfile
from dataclasses import replace
from io import BytesIO
from typing import Any

import pytest
from flwr.common.config import fuse_dicts, get_fab_config, get_fused_config_from_fab
from flwr.supercore.run import Run

from federation.flower.fab import CLIENT_APP_REF, SERVER_APP_REF, build_run_fab
from federation.runspec import RunSpec

HASH = "sha256:" + "cd" * 32


def a_spec(**fields: Any) -> RunSpec:
    base: dict[str, Any] = {
        "task_id": "forecast-next-hour",
        "task_hash": HASH,
        "rounds": 2,
        "agreements": {"urn:hanse:city-a": "agr-a"},
        "nodes": {7: "urn:hanse:city-a"},
        "out_dir": "/srv/runs/r1",
    }
    return RunSpec(**{**base, **fields})


def pyproject_of(fab: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(BytesIO(fab)) as archive:
        return tomllib.loads(archive.read("pyproject.toml").decode())


def test_the_same_keys_give_the_same_bytes() -> None:
    # Prepare
    first = a_spec().to_run_config()
    # Other values, same keys and types, in another order.
    second = dict(reversed(list(a_spec(rounds=9, out_dir="/elsewhere").to_run_config().items())))

    # Execute
    fabs = [build_run_fab(first), build_run_fab(first), build_run_fab(second)]

    # Assert
    assert fabs[0] == fabs[1] == fabs[2]


def test_another_version_or_key_set_gives_other_bytes() -> None:
    # Prepare
    config = a_spec().to_run_config()

    # Execute
    base = build_run_fab(config)
    other_version = build_run_fab(config, version="1.0.1")
    other_keys = build_run_fab({**config, "hanse-extra": 1})

    # Assert
    assert base != other_version
    assert base != other_keys
    assert pyproject_of(other_version)["project"]["version"] == "1.0.1"


def test_the_bundle_holds_only_pyproject_and_its_manifest() -> None:
    # Prepare
    config = a_spec().to_run_config()

    # Execute
    fab = build_run_fab(config)

    # Assert
    with zipfile.ZipFile(BytesIO(fab)) as archive:
        assert sorted(archive.namelist()) == [".info/CONTENT", "pyproject.toml"]
        pyproject = archive.read("pyproject.toml")
        manifest = archive.read(".info/CONTENT").decode()
    assert manifest == (
        f"pyproject.toml,{hashlib.sha256(pyproject).hexdigest()},{len(pyproject) * 8}"
    )
    assert not any(name.endswith(".py") for name in manifest.split(","))


def test_the_bundle_names_the_hanse_server_app() -> None:
    # Execute
    pyproject = pyproject_of(build_run_fab(a_spec().to_run_config()))

    # Assert
    components = pyproject["tool"]["flwr"]["app"]["components"]
    assert components["serverapp"] == "federation.serverapp:app" == SERVER_APP_REF
    assert components["clientapp"] == CLIENT_APP_REF
    assert pyproject["tool"]["flwr"]["app"]["publisher"] == "hanse"
    assert pyproject["project"]["name"] == "hanse-run"
    assert pyproject["project"]["dependencies"] == []


def test_every_key_is_declared_with_an_empty_default_of_its_type() -> None:
    # Prepare
    config = a_spec().to_run_config()

    # Execute
    declared = pyproject_of(build_run_fab(config))["tool"]["flwr"]["app"]["config"]

    # Assert
    assert set(declared) == set(config)
    for key, value in config.items():
        assert type(declared[key]) is type(value), key
        assert declared[key] == type(value)(), key
    assert declared["hanse-rounds"] == 0
    assert declared["hanse-learning-rate"] == 0.0
    assert declared["hanse-task"] == ""


def test_a_boolean_key_is_declared_false() -> None:
    # Execute
    declared = pyproject_of(build_run_fab({"hanse-flag": True, "hanse-n": 3}))["tool"]["flwr"][
        "app"
    ]["config"]

    # Assert
    assert declared == {"hanse-flag": False, "hanse-n": 0}


def test_no_value_of_the_run_travels_in_the_bundle() -> None:
    # Prepare
    config = a_spec().to_run_config()

    # Execute
    with zipfile.ZipFile(BytesIO(build_run_fab(config))) as archive:
        text = archive.read("pyproject.toml").decode()

    # Assert
    for secret in ("forecast-next-hour", HASH, "urn:hanse:city-a", "agr-a", "/srv/runs/r1"):
        assert secret not in text


def test_flower_reads_the_bundle_and_takes_every_setting_as_an_override() -> None:
    # Prepare
    spec = a_spec(strategy="krum", round_timeout=30.0, seed=3)
    config = spec.to_run_config()
    fab = build_run_fab(config)
    run = replace(Run.create_empty(1), override_config=config)

    # Execute
    fused = get_fused_config_from_fab(fab, run)

    # Assert
    assert get_fab_config(fab)["tool"]["flwr"]["app"]["components"]["serverapp"] == SERVER_APP_REF
    assert fused == config
    assert RunSpec.from_run_config(fused) == spec


def test_flower_refuses_an_override_the_bundle_does_not_declare() -> None:
    # Prepare
    config = a_spec().to_run_config()
    declared = pyproject_of(build_run_fab(config))["tool"]["flwr"]["app"]["config"]

    # Execute / Assert
    with pytest.raises(ValueError, match="hanse-undeclared"):
        fuse_dicts(declared, {**config, "hanse-undeclared": 1})

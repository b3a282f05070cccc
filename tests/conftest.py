"""Shared fixtures: node clusters on loopback, and the DSP 2025-1 conformance schemas."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Cluster

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HANSE_SHARED_DIR", REPO.parent / "shared"))
DSP_DIR = SHARED / "dsp-2025-1"
DSP_BASE = "https://w3id.org/dspace/2025/1/"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A federation PKI; every node started from it is stopped at the end."""
    created = Cluster(tmp_path)
    yield created
    for node in created.processes:
        code = node.stop()
        assert code == 0, f"node exited with {code} on SIGTERM:\n{node.log()}"


@pytest.fixture(scope="session")
def dsp_dir() -> Path:
    """The DSP 2025-1 schemas, examples and spec text from ../shared."""
    if not DSP_DIR.is_dir():
        message = f"DSP 2025-1 conformance fixtures not found at {DSP_DIR} (../shared missing)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return DSP_DIR


@pytest.fixture(scope="session")
def dsp_validate(dsp_dir: Path) -> Any:
    """``dsp_validate(document, "catalog/catalog-schema.json")`` raises on a violation.

    Every ``https://w3id.org/dspace/2025/1/...`` reference resolves to the local file.
    """
    from jsonschema import Draft201909Validator
    from referencing import Registry, Resource

    resources = []
    for path in dsp_dir.rglob("*-schema.json"):
        contents = json.loads(path.read_text(encoding="utf-8"))
        uri = DSP_BASE + path.relative_to(dsp_dir).as_posix()
        resources.append((uri, Resource.from_contents(contents)))
        if "$id" in contents and contents["$id"] != uri:
            resources.append((contents["$id"], Resource.from_contents(contents)))
    registry: Registry[Any] = Registry().with_resources(resources)

    def validate(document: Any, schema: str) -> None:
        contents = json.loads((dsp_dir / schema).read_text(encoding="utf-8"))
        Draft201909Validator(contents, registry=registry).validate(document)

    return validate

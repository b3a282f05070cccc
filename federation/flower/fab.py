"""The Flower App Bundle a node submits: configuration only, no code.

A FAB normally carries the researcher's code. Hanse's FAB carries only a
``pyproject.toml`` that points Flower at the ServerApp installed with Hanse
(:mod:`federation.serverapp`); cities ignore the bundle's ClientApp entirely and
run their own governed runner. The bundle is built in memory, deterministically.
"""

from __future__ import annotations

from collections.abc import Mapping

from flwr.cli.build import build_fab_from_files

SERVER_APP_REF = "federation.serverapp:app"
"""The ServerApp every Hanse run uses."""

CLIENT_APP_REF = "federation.plain_clientapp:app"
"""The bundle's ClientApp; only plain Flower (the benchmark baseline) ever loads it."""

_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "hanse-run"
version = "{version}"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "hanse"

[tool.flwr.app.components]
serverapp = "{server}"
clientapp = "{client}"

[tool.flwr.app.config]
{config}
"""


def build_run_fab(config: Mapping[str, str | int | float], version: str = "1.0.0") -> bytes:
    """The FAB for a run whose run config has the keys (and value types) of ``config``.

    Flower accepts a run config override only for keys the bundle declares, so the
    bundle declares each key with an empty default of the same type; the values
    themselves travel in the run's override config. The same keys give the same bytes.
    """
    lines = [f"{key} = {_empty_toml(value)}" for key, value in sorted(config.items())]
    pyproject = _PYPROJECT.format(
        version=version, server=SERVER_APP_REF, client=CLIENT_APP_REF, config="\n".join(lines)
    )
    fab, _metadata = build_fab_from_files({"pyproject.toml": pyproject.encode()})
    return fab


def _empty_toml(value: str | int | float) -> str:
    if isinstance(value, bool):
        return "false"
    if isinstance(value, int):
        return "0"
    if isinstance(value, float):
        return "0.0"
    return '""'

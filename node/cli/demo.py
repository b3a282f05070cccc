"""``hanse demo``: the whole thing on one machine, on embedded defaults."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import typer

from node.cli.output import console, fail, readable_errors
from node.demo import DemoOptions, run_demo
from node.supervisor import NodeStartError


def demo(
    out: Path = typer.Option(Path("hanse-demo"), "--out", help="Output folder (replaced)."),
    cities: int = typer.Option(3, help="City nodes to start."),
    sensors_per_city: int = typer.Option(2, help="Pedestrian sensors each city holds."),
    keep_running: bool = typer.Option(False, help="Leave the nodes running to explore."),
) -> None:
    """Start a local federation (real node processes on loopback) and show it working."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with readable_errors():
            run_demo(
                DemoOptions(
                    out=out,
                    cities=cities,
                    sensors_per_city=sensors_per_city,
                    keep_running=keep_running,
                ),
                console,
            )
    except ValueError as exc:
        raise fail(str(exc), 2) from exc
    except NodeStartError as exc:
        raise fail(f"a node did not start: {exc}") from exc
    except KeyboardInterrupt:
        raise fail("interrupted; every node started was stopped", 130) from None


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt

"""``hanse demo``: the whole thing on one machine, on embedded defaults."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import typer

from node.cli.output import console, fail, readable_errors
from node.demo import DemoOptionError, DemoOptions, run_demo
from node.demo.contracts import ContractError
from node.demo.plots import PlotError
from node.demo.quality import QualityError
from node.demo.training import TrainingError
from node.supervisor import NodeStartError

INTERRUPTED = "interrupted; every node started was stopped"
"""What the demo says on Ctrl-C or SIGTERM (exit code 130)."""


def demo(
    out: Path = typer.Option(
        Path("hanse-demo"), "--out", help="Output folder (replaced if an earlier demo wrote it)."
    ),
    cities: int = typer.Option(4, "--cities", help="City nodes to start (at least 2)."),
    rounds: int = typer.Option(3, "--rounds", help="Federated training rounds."),
    epsilon: float = typer.Option(8.0, "--epsilon", help="Privacy budget each city agrees to."),
    sensors_per_city: int = typer.Option(
        2, "--sensors-per-city", help="Pedestrian sensors each city holds (it trains on one)."
    ),
    keep_running: bool = typer.Option(
        False, "--keep-running", help="Leave the nodes running to explore with the CLI."
    ),
) -> None:
    """Start a local federation, negotiate contracts, train under them, and report."""
    try:
        options = DemoOptions(
            out=out,
            cities=cities,
            sensors_per_city=sensors_per_city,
            rounds=rounds,
            epsilon=epsilon,
            keep_running=keep_running,
        )
    except DemoOptionError as exc:
        raise fail(str(exc), 2) from exc
    # Ctrl-C must stop the demo even when it was started with SIGINT ignored (as a
    # background job of a non-interactive shell is), so both signals are set here.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with readable_errors():
            run_demo(options, console)
    except DemoOptionError as exc:
        raise fail(str(exc), 2) from exc
    except NodeStartError as exc:
        raise fail(f"a node did not start: {exc}") from exc
    except (ContractError, TrainingError, QualityError, PlotError) as exc:
        raise fail(f"{exc}; node logs are in {out / 'logs'}") from exc
    except KeyboardInterrupt:
        raise fail(INTERRUPTED, 130) from None


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt

"""What a governed run is: the settings the researcher's node puts in Flower's run config.

The run config travels to every SuperNode, so it holds only what every party may
see: the task, the rounds, the strategy, which agreement covers which city, and
which Flower node id is which city. A city never trusts it on its own: its runner
checks every field against the city's own copy of the agreement.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

StrategyName = Literal["fedavg", "fedprox", "fedadam", "krum", "trimmed-mean"]
STRATEGIES: tuple[StrategyName, ...] = ("fedavg", "fedprox", "fedadam", "krum", "trimmed-mean")
OptimizerName = Literal["sgd", "adam"]
OPTIMIZERS: tuple[OptimizerName, ...] = ("sgd", "adam")
"""The local optimisers a city may train with: plain SGD or Adam."""

_PREFIX = "hanse-"
_INTEGER = re.compile(r"-?[0-9]+")


class RunSpecError(ValueError):
    """A run's settings are missing or invalid; the message names the setting."""


@dataclass(frozen=True)
class RunSpec:
    """The settings of one governed training run."""

    task_id: str
    """The task (plugin) every city runs."""
    task_hash: str
    """The task's content hash, ``sha256:<hex>``; cities refuse another."""
    rounds: int
    """Federated rounds."""
    agreements: Mapping[str, str]
    """City participant id -> the id of the agreement that covers its part."""
    nodes: Mapping[int, str] = field(default_factory=dict)
    """Flower node id -> city participant id (the keys the aggregator registered)."""
    strategy: StrategyName = "fedavg"
    """Aggregation strategy."""
    min_nodes: int = 1
    """Fewest cities a round needs."""
    min_aggregate: int = 0
    """Fewest cities whose updates a training round aggregates (0: no floor): the
    highest ``minParticipants`` among the run's agreements. A round with fewer accepted
    updates is not aggregated; the model stays as it was."""
    local_epochs: int = 1
    """Passes over the local data per round."""
    batch_size: int = 64
    """Examples per step."""
    learning_rate: float = 0.01
    """Local optimiser step size."""
    optimizer: OptimizerName = "sgd"
    """Local optimiser: ``sgd`` or ``adam`` (a fresh one each round)."""
    epsilon: float = 0.0
    """The researcher's cap on each city's epsilon (0: what each agreement allows)."""
    proximal_mu: float = 0.1
    """FedProx's proximal term weight (fedprox only)."""
    round_timeout: float = 600.0
    """Seconds the aggregator waits for replies in one round."""
    seed: int = 0
    """Seed of the initial model."""
    out_dir: str = ""
    """Where the aggregator writes progress, the model and metrics (aggregator only)."""
    trust_bundle: str = ""
    """The federation trust bundle the aggregator verifies update signatures with."""

    def __post_init__(self) -> None:
        if not self.task_id:
            raise RunSpecError("task is required")
        if not self.task_hash.startswith("sha256:"):
            raise RunSpecError("task hash must look like sha256:<hex>")
        if not 1 <= self.rounds <= 10_000:
            raise RunSpecError(f"rounds must be between 1 and 10000, not {self.rounds}")
        if not self.agreements:
            raise RunSpecError("a run needs at least one agreement")
        if self.strategy not in STRATEGIES:
            raise RunSpecError(
                f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}"
            )
        if not 1 <= self.min_nodes <= len(self.agreements):
            raise RunSpecError(
                f"min nodes must be between 1 and the number of agreements "
                f"({len(self.agreements)}), not {self.min_nodes}"
            )
        if not 0 <= self.min_aggregate <= self.min_nodes:
            raise RunSpecError(
                f"min aggregate must be between 0 (no floor) and min nodes "
                f"({self.min_nodes}), not {self.min_aggregate}"
            )
        if self.epsilon < 0:
            raise RunSpecError(f"epsilon must be 0 (no cap) or positive, not {self.epsilon}")
        if self.optimizer not in OPTIMIZERS:
            raise RunSpecError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if self.local_epochs < 1 or self.batch_size < 1 or not _positive(self.learning_rate):
            raise RunSpecError("local epochs, batch size and learning rate must be positive")
        if not _positive(self.round_timeout):
            raise RunSpecError(
                f"round timeout must be a positive number of seconds, not {self.round_timeout}"
            )
        if not (math.isfinite(self.proximal_mu) and self.proximal_mu >= 0):
            raise RunSpecError(f"proximal mu must be zero or more, not {self.proximal_mu}")

    def to_run_config(self) -> dict[str, str | int | float]:
        """The flat Flower run config for this spec."""
        return {
            _PREFIX + "task": self.task_id,
            _PREFIX + "task-hash": self.task_hash,
            _PREFIX + "rounds": self.rounds,
            _PREFIX + "agreements": json.dumps(dict(self.agreements), sort_keys=True),
            _PREFIX + "nodes": json.dumps({str(k): v for k, v in self.nodes.items()}),
            _PREFIX + "strategy": self.strategy,
            _PREFIX + "min-nodes": self.min_nodes,
            _PREFIX + "min-aggregate": self.min_aggregate,
            _PREFIX + "local-epochs": self.local_epochs,
            _PREFIX + "batch-size": self.batch_size,
            _PREFIX + "learning-rate": self.learning_rate,
            _PREFIX + "optimizer": self.optimizer,
            _PREFIX + "epsilon": self.epsilon,
            _PREFIX + "proximal-mu": self.proximal_mu,
            _PREFIX + "round-timeout": self.round_timeout,
            _PREFIX + "seed": self.seed,
            _PREFIX + "out-dir": self.out_dir,
            _PREFIX + "trust-bundle": self.trust_bundle,
        }

    @classmethod
    def from_run_config(cls, config: Mapping[str, object]) -> RunSpec:
        """Read a spec back from a Flower run config.

        Raises:
            RunSpecError: a setting is missing or has the wrong type.
        """

        def get(key: str, kind: type, default: object = None) -> object:
            value = config.get(_PREFIX + key, default)
            if value is None:
                raise RunSpecError(f"run config has no {_PREFIX + key}")
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise RunSpecError(f"run config {_PREFIX + key} must be of type {kind.__name__}")
            return value

        try:
            agreements = json.loads(cast(str, get("agreements", str)))
            nodes = json.loads(cast(str, get("nodes", str, "{}")))
        except json.JSONDecodeError as exc:
            raise RunSpecError(f"run config agreements/nodes are not JSON: {exc}") from exc
        if not isinstance(agreements, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in agreements.items()
        ):
            raise RunSpecError("run config agreements must map participant ids to agreement ids")
        if not isinstance(nodes, dict) or not all(
            isinstance(k, str) and _INTEGER.fullmatch(k) and isinstance(v, str)
            for k, v in nodes.items()
        ):
            raise RunSpecError("run config nodes must map node ids (integers) to participant ids")
        return cls(
            task_id=cast(str, get("task", str)),
            task_hash=cast(str, get("task-hash", str)),
            rounds=cast(int, get("rounds", int)),
            agreements=agreements,
            nodes={int(k): v for k, v in nodes.items()},
            strategy=cast(StrategyName, get("strategy", str, "fedavg")),
            min_nodes=cast(int, get("min-nodes", int, 1)),
            min_aggregate=cast(int, get("min-aggregate", int, 0)),
            local_epochs=cast(int, get("local-epochs", int, 1)),
            batch_size=cast(int, get("batch-size", int, 64)),
            learning_rate=cast(float, get("learning-rate", float, 0.01)),
            optimizer=cast(OptimizerName, get("optimizer", str, "sgd")),
            epsilon=cast(float, get("epsilon", float, 0.0)),
            proximal_mu=cast(float, get("proximal-mu", float, 0.1)),
            round_timeout=cast(float, get("round-timeout", float, 600.0)),
            seed=cast(int, get("seed", int, 0)),
            out_dir=cast(str, get("out-dir", str, "")),
            trust_bundle=cast(str, get("trust-bundle", str, "")),
        )

    @property
    def output(self) -> Path:
        """The aggregator's output folder.

        Raises:
            RunSpecError: the spec has no output folder.
        """
        if not self.out_dir:
            raise RunSpecError("run config has no hanse-out-dir")
        return Path(self.out_dir)


def _positive(value: float) -> bool:
    """Whether ``value`` is a finite number above zero (NaN is not)."""
    return math.isfinite(value) and value > 0

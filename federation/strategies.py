"""The aggregation strategies a researcher can pick, by name."""

from __future__ import annotations

from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, FedTrimmedAvg, Krum, Strategy

from federation.runspec import RunSpec


def make_strategy(spec: RunSpec) -> Strategy:
    """The Flower strategy named by ``spec``, training and evaluating on every city.

    Every strategy waits for ``spec.min_nodes`` cities and aggregates what they send;
    Krum assumes at most one malicious city when it has at least four.
    """
    n = spec.min_nodes
    if spec.strategy == "fedavg":
        return FedAvg(min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n)
    if spec.strategy == "fedprox":
        return FedProx(
            proximal_mu=spec.proximal_mu,
            min_train_nodes=n,
            min_evaluate_nodes=n,
            min_available_nodes=n,
        )
    if spec.strategy == "fedadam":
        return FedAdam(
            eta=0.01,
            eta_l=spec.learning_rate,
            min_train_nodes=n,
            min_evaluate_nodes=n,
            min_available_nodes=n,
        )
    if spec.strategy == "krum":
        return Krum(
            num_malicious_nodes=1 if len(spec.agreements) >= 4 else 0,
            min_train_nodes=n,
            min_evaluate_nodes=n,
            min_available_nodes=n,
        )
    return FedTrimmedAvg(beta=0.2, min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n)

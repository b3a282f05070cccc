"""The node's training loop: a task's model trained on local data, with DP-SGD when asked.

The loop belongs to the node, never to the task: a task supplies the model, the data
and the loss (:class:`federation.tasks.base.Task`); :func:`fit` does the batching,
the optimizer steps and, given :class:`DPSettings`, example-level differential
privacy with Opacus: per-example gradients clipped to ``max_grad_norm``, Gaussian
noise of ``noise_multiplier * max_grad_norm`` added to every step, batches drawn by
Poisson sampling at ``sample_rate = 1 / ceil(examples / batch_size)``, and
``steps = epochs * ceil(examples / batch_size)`` noisy steps. Those two numbers are
the round's :class:`federation.privacy.DPStep`, known before training
(:func:`planned_step`), so the guard can account a round before it runs it.

Training is deterministic given :attr:`TrainSettings.seed` (data order, Poisson
batches and noise all come from generators seeded from it); without a seed they
are seeded from the operating system's randomness, which is what a node should use
for real data: noise an attacker can predict protects nothing. Opacus' ``secure_mode``
(noise hardened against floating-point attacks) needs ``torchcsprng``, which is not
installed; the noise is drawn by PyTorch's generator.

Opacus is imported by the first DP-SGD round, not with this module: every message
runs in a process of its own, and one that only evaluates or trains without DP-SGD
need not pay for importing it (about 2 s of CPU).
"""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from federation.privacy import DPStep
from federation.tasks.base import Task, TaskData

Device = Literal["cpu", "cuda"]
"""Where training runs."""

_SEEDS = 2**63


class TrainingError(ValueError):
    """Training cannot run as asked; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class TrainSettings:
    """How the node trains one round: the node's choice, never the researcher's message."""

    epochs: int = 1
    """Passes over the training examples per round; at least 1."""
    batch_size: int = 32
    """Examples per batch (the expected batch size under Poisson sampling); at least 1."""
    learning_rate: float = 0.01
    """Optimizer step size; above 0."""
    seed: int | None = None
    """Seed of every generator of the round; ``None`` draws one from the OS (real runs)."""
    optimizer: Literal["sgd", "adam"] = "sgd"
    """``sgd`` (plain stochastic gradient descent) or ``adam``."""

    def __post_init__(self) -> None:
        _check_count(self.epochs, "epochs")
        _check_count(self.batch_size, "batch_size")
        if not _positive(self.learning_rate):
            raise TrainingError(
                f"learning_rate must be a finite number above 0, not {self.learning_rate!r}"
            )
        if self.seed is not None and not (
            isinstance(self.seed, int)
            and not isinstance(self.seed, bool)
            and 0 <= self.seed < _SEEDS
        ):
            raise TrainingError(
                f"seed must be None or a whole number from 0 to 2**63 - 1, not {self.seed!r}"
            )
        if self.optimizer not in ("sgd", "adam"):
            raise TrainingError(f"optimizer must be 'sgd' or 'adam', not {self.optimizer!r}")


@dataclass(frozen=True)
class DPSettings:
    """Example-level DP-SGD parameters: the node's, from its guard, never from a message."""

    noise_multiplier: float
    """Noise standard deviation over the clipping norm; above 0."""
    max_grad_norm: float
    """Each example's gradient is clipped to this L2 norm; above 0."""
    delta: float
    """The delta of the (epsilon, delta) guarantee (the agreement's), in ``(0, 1)``."""

    def __post_init__(self) -> None:
        if not _positive(self.noise_multiplier):
            raise TrainingError(
                f"noise_multiplier must be a finite number above 0, not {self.noise_multiplier!r}"
            )
        if not _positive(self.max_grad_norm):
            raise TrainingError(
                f"max_grad_norm must be a finite number above 0, not {self.max_grad_norm!r}"
            )
        if not (isinstance(self.delta, int | float) and 0.0 < self.delta < 1.0):
            raise TrainingError(f"delta must be in (0, 1), not {self.delta!r}; e.g. 1e-5")


@dataclass(frozen=True)
class FitResult:
    """What one round of training produced."""

    num_examples: int
    """Training examples the round drew from."""
    steps: int
    """Optimizer steps taken."""
    sample_rate: float
    """Probability of an example being in a batch (1 / batches per epoch)."""
    train_loss: float
    """Mean of the batch losses over the round (NaN if no batch held an example)."""
    state: Mapping[str, torch.Tensor]
    """The trained model's ``state_dict``, on the CPU, in the model's key order."""
    dp_step: DPStep | None
    """The round as the privacy accountant sees it, or ``None`` without DP."""


def planned_step(num_examples: int, settings: TrainSettings, dp: DPSettings) -> DPStep:
    """The :class:`DPStep` that :func:`fit` will take on ``num_examples`` examples.

    Raises:
        TrainingError: ``num_examples`` is below 1.
    """
    batches = _batches_per_epoch(num_examples, settings.batch_size)
    return DPStep(
        sample_rate=1.0 / batches,
        noise_multiplier=float(dp.noise_multiplier),
        steps=settings.epochs * batches,
    )


def fit(
    task: Task,
    model: torch.nn.Module,
    data: TaskData,
    settings: TrainSettings,
    dp: DPSettings | None,
    *,
    device: Device = "cpu",
) -> FitResult:
    """Train ``model`` (in place) on ``data.train`` for one round.

    With ``dp``, DP-SGD through Opacus (RDP accounting, Poisson sampling, flat
    clipping); the steps taken are checked against :func:`planned_step`. Without
    it, plain minibatches in a seeded random order. The optimizer is SGD or Adam
    (:attr:`TrainSettings.optimizer`); the loss is the task's.

    Args:
        task: Supplies the loss (:meth:`~federation.tasks.base.Task.loss`).
        model: The model to train, e.g. the task's model loaded with the received arrays.
        data: The dataset; only ``data.train`` is used.
        settings: Epochs, batch size, learning rate, seed, optimizer.
        dp: DP-SGD parameters, or ``None`` to train without differential privacy.
        device: ``cpu`` (default) or ``cuda``.

    Returns:
        The trained state, the loss and the steps taken.

    Raises:
        TrainingError: No training examples, ``cuda`` asked for where there is none,
            a model DP-SGD cannot train (e.g. BatchNorm layers), or the task's loss
            is not a scalar.
    """
    target = _device(device)
    num_examples = len(_sized(data.train))
    seed = settings.seed if settings.seed is not None else secrets.randbelow(_SEEDS - 1)
    model.to(target)
    model.train()
    with _forked_rng(seed, target):
        if dp is None:
            loss, steps = _plain_loop(task, model, data.train, settings, seed, target)
            sample_rate = 1.0 / _batches_per_epoch(num_examples, settings.batch_size)
            step = None
        else:
            loss, step = _dp_loop(task, model, data.train, settings, dp, seed, target)
            steps, sample_rate = step.steps, step.sample_rate
    state = {name: value.detach().to("cpu").clone() for name, value in model.state_dict().items()}
    return FitResult(
        num_examples=num_examples,
        steps=steps,
        sample_rate=sample_rate,
        train_loss=loss,
        state=state,
        dp_step=step,
    )


def evaluate(task: Task, model: torch.nn.Module, data: TaskData) -> dict[str, float]:
    """The task's metrics of ``model`` on the held-out examples ``data.test``.

    Runs on the CPU, where the task's data is (the model is moved there first), with
    gradients off and the model in evaluation mode.

    Returns:
        Exactly the keys in the task's :attr:`~federation.tasks.base.Task.metrics`.

    Raises:
        TrainingError: The task returned other keys than it declares, or a value
            that is not a number (the message repeats neither).
    """
    model.to("cpu")
    model.eval()
    with torch.no_grad():
        metrics = task.evaluate(model, data.test)
    # The names and values a task returns are never repeated in an error: the
    # message may travel to the aggregator, and they are the task's output.
    declared = set(task.metrics)
    if not isinstance(metrics, dict) or set(metrics) != declared:
        raise TrainingError(
            f"task {task.id!r} returned other metrics than it declares "
            f"({', '.join(task.metrics)}); a task must return exactly its declared metrics"
        )
    result: dict[str, float] = {}
    for key in task.metrics:
        value = metrics[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TrainingError(
                f"task {task.id!r} returned something other than a number for metric "
                f"{key!r}; a metric is one number"
            )
        result[key] = float(value)
    return result


def _plain_loop(
    task: Task,
    model: torch.nn.Module,
    train: Dataset[tuple[torch.Tensor, torch.Tensor]],
    settings: TrainSettings,
    seed: int,
    device: torch.device,
) -> tuple[float, int]:
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=settings.batch_size, shuffle=True, generator=generator)
    optimizer = _optimizer(model, settings)
    losses: list[float] = []
    for _ in range(settings.epochs):
        for batch in loader:
            losses.append(_step(task, model, optimizer, batch, device))
    return _mean(losses), len(losses)


def _dp_loop(
    task: Task,
    model: torch.nn.Module,
    train: Dataset[tuple[torch.Tensor, torch.Tensor]],
    settings: TrainSettings,
    dp: DPSettings,
    seed: int,
    device: torch.device,
) -> tuple[float, DPStep]:
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        listed = "; ".join(str(problem) for problem in problems[:3])
        raise TrainingError(
            f"DP-SGD cannot train this model: {listed}. Fix the task's model "
            "(for example GroupNorm instead of BatchNorm; opacus ModuleValidator.fix)"
        )
    plan = planned_step(len(_sized(train)), settings, dp)
    loader = DataLoader(
        train,
        batch_size=settings.batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = _optimizer(model, settings)
    with warnings.catch_warnings():
        # The generators are seeded from the OS unless a seed is set (see the module
        # documentation); Opacus warns about its secure_mode regardless.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="rdp")
    noise = torch.Generator(device=device).manual_seed(seed + 1)
    private_model, private_optimizer, private_loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True,
        noise_generator=noise,
    )
    losses: list[float] = []
    steps = 0
    try:
        with warnings.catch_warnings():
            # Opacus' per-example gradient hooks fire on inputs that need no gradient.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for _ in range(settings.epochs):
                for batch in private_loader:
                    steps += 1
                    if _batch_size(batch) == 0:
                        # An empty Poisson batch is still a step of DP-SGD (noise only),
                        # and the accountant counts it as one.
                        private_optimizer.zero_grad(set_to_none=True)
                        _zero_grads(model)
                        private_optimizer.step()
                        continue
                    losses.append(_step(task, private_model, private_optimizer, batch, device))
    finally:
        private_model.cleanup()
    accounted = sum(count for _, _, count in engine.accountant.history)
    if steps != plan.steps or accounted != plan.steps:
        raise TrainingError(  # pragma: no cover - guards the accounting contract
            f"DP-SGD took {steps} steps ({accounted} accounted) but {plan.steps} were "
            "planned; the round cannot be accounted for"
        )
    return _mean(losses), plan


def _step(
    task: Task,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Any,
    device: torch.device,
) -> float:
    features, target = batch
    optimizer.zero_grad(set_to_none=True)
    loss = task.loss(model, (features.to(device), target.to(device)))
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise TrainingError(
            "the task's loss must return a scalar tensor (the mean loss of the batch), "
            f"not {type(loss).__name__}"
            + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else "")
        )
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return float(loss.detach())


def _zero_grads(model: torch.nn.Module) -> None:
    # Opacus reads the per-example gradients of the last backward pass; for an empty
    # batch there was none, so give every parameter an empty one.
    for parameter in model.parameters():
        if parameter.requires_grad:
            empty = torch.zeros((0, *parameter.shape), device=parameter.device)
            setattr(parameter, "grad_sample", empty)  # noqa: B010  (Opacus' attribute)


def _optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise TrainingError("the task's model has no trainable parameters")
    if settings.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=settings.learning_rate)
    return torch.optim.SGD(parameters, lr=settings.learning_rate)


def _device(device: str) -> torch.device:
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(
                "device 'cuda' was asked for, but this node has no usable CUDA GPU "
                f"(torch {torch.__version__}, cuda available: False); train with device='cpu'"
            )
        return torch.device("cuda")
    raise TrainingError(f"device must be 'cpu' or 'cuda', not {device!r}")


@contextmanager
def _forked_rng(seed: int, device: torch.device) -> Iterator[None]:
    # Anything in the model that draws from the global generator (dropout) draws from
    # a seeded copy; the caller's global state is restored afterwards.
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        yield


def capped_train(data: TaskData, max_train_examples: int) -> TaskData:
    """``data`` with only the latest ``max_train_examples`` training examples (0 = all).

    A node's ``training.max_train_examples`` caps a dataset this way before a run; the
    held-out examples are kept whole.
    """
    count = len(data.train)  # type: ignore[arg-type]  # map-style: the tasks' datasets are sized
    if max_train_examples and count > max_train_examples:
        kept = Subset(data.train, range(count - max_train_examples, count))
        return TaskData(train=kept, test=data.test)
    return data


def _sized(dataset: Dataset[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    if not hasattr(dataset, "__len__"):
        raise TrainingError("the task's datasets must have a length (a map-style Dataset)")
    if len(dataset) < 1:
        raise TrainingError(
            "there are no training examples; the dataset is too short for this task"
        )
    return dataset


def _batches_per_epoch(num_examples: int, batch_size: int) -> int:
    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1:
        raise TrainingError(f"num_examples must be a whole number above 0, not {num_examples!r}")
    _check_count(batch_size, "batch_size")
    return math.ceil(num_examples / batch_size)


def _batch_size(batch: Any) -> int:
    features = batch[0]
    return int(features.shape[0]) if isinstance(features, torch.Tensor) else len(features)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _check_count(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TrainingError(f"{name} must be a whole number of at least 1, not {value!r}")


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )

"""A Flower Grid that answers at once with canned replies, for tests of what runs on a Grid.

The real Grid needs a running SuperLink. This one hands each instruction to the
node's answer function, which builds its reply as a ClientApp does
(``Message(content, reply_to=instruction)``), so replies carry real Flower metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Error, Message, MetricRecord, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

Answer = Callable[[Message], Message | None]
"""How one node answers an instruction: a reply, or None for no reply in time."""


class CannedGrid(Grid):
    """A Grid whose nodes answer at once with canned replies."""

    def __init__(self, answers: dict[int, Answer]) -> None:
        self.answers = answers
        self.sent: list[Message] = []
        self.timeouts: list[float | None] = []
        self._run = Run.create_empty(1)
        self._replies: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.answers)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            self.sent.append(message)
            message_id = f"m{len(self.sent)}"
            reply = self.answers[message.metadata.dst_node_id](message)
            if reply is not None:
                self._replies[message_id] = reply
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies[i] for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        self.timeouts.append(timeout)
        return self.pull_messages(self.push_messages(messages))


def trains(loss: float, examples: int = 10, shift: float = 0.0) -> Answer:
    """A city that returns the model it got, shifted, with its metrics."""

    def answer(message: Message) -> Message:
        received = message.content.array_records["arrays"]
        arrays = ArrayRecord({k: Array(v.numpy() + np.float32(shift)) for k, v in received.items()})
        metrics = MetricRecord({"loss": loss, "num-examples": examples, "history": [1.0, 2.0]})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)

    return answer


def evaluates(accuracy: float, examples: int = 10) -> Answer:
    def answer(message: Message) -> Message:
        metrics = MetricRecord({"accuracy": accuracy, "num-examples": examples})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)

    return answer


def fails(reason: str | None, code: int = 3) -> Answer:
    def answer(message: Message) -> Message:
        return Message(Error(code=code, reason=reason), reply_to=message)

    return answer


def silent(message: Message) -> None:
    return None


def as_serverapp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages take their run and sender from the task identity, as in a ServerApp process."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", SUPERLINK_NODE_ID)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)

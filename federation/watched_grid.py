"""A Flower Grid that records each city's reply and drops replies that fail a check.

The strategies call :meth:`send_and_receive`; this wrapper passes the call on, then
writes one ``round`` event per phase (each city's metrics, bytes or error) and
leaves out any reply the ``check`` rejects (for example a bad update signature), so
the strategy never aggregates it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from federation.progress import ProgressWriter
from federation.runspec import RunSpec

ReplyCheck = Callable[[Message, str], str | None]
"""Given a reply and its city, the reason to reject it, or None to accept it."""


class WatchedGrid(Grid):
    """Delegates to a real Grid; records and filters replies."""

    def __init__(
        self,
        grid: Grid,
        spec: RunSpec,
        progress: ProgressWriter,
        check: ReplyCheck | None = None,
    ) -> None:
        self._grid = grid
        self._spec = spec
        self._progress = progress
        self._check = check
        self._rounds: dict[str, int] = {}
        self.city_metrics: dict[str, dict[str, dict[str, float]]] = {}
        """City -> round -> last metrics it reported (train and evaluate, prefixed)."""

    def set_run(self, run: Run) -> None:  # noqa: D102 - delegated
        self._grid.set_run(run)

    @property
    def run(self) -> Run:  # noqa: D102 - delegated
        return self._grid.run

    def create_message(  # noqa: D102 - delegated
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:  # noqa: D102 - delegated
        return self._grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # noqa: D102
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # noqa: D102
        return self._grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send, wait for replies, record each city's outcome, drop rejected replies."""
        sent = list(messages)
        if not sent:
            return []
        phase = sent[0].metadata.message_type.split(".")[0]
        round_no = self._rounds.get(phase, 0) + 1
        self._rounds[phase] = round_no
        replies = list(self._grid.send_and_receive(sent, timeout=timeout))
        # The SuperLink answers for a node it found unavailable with an error reply from
        # itself, so a reply belongs to the node its instruction went to.
        destination = {m.metadata.message_id: m.metadata.dst_node_id for m in sent}
        destination.pop("", None)
        answered: set[int] = set()
        kept: list[Message] = []
        cities: dict[str, dict[str, Any]] = {}
        for reply in replies:
            node = destination.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
            answered.add(node)
            city = self.city_of(node)
            outcome = self._outcome(reply, city)
            cities[city] = outcome
            if outcome["ok"]:
                kept.append(reply)
                metrics = self.city_metrics.setdefault(city, {}).setdefault(str(round_no), {})
                metrics.update({f"{phase}_{k}": v for k, v in outcome["metrics"].items()})
        for message in sent:
            if message.metadata.dst_node_id not in answered:
                city = self.city_of(message.metadata.dst_node_id)
                cities[city] = {"ok": False, "error": "no reply before the round timed out"}
        floor = self._spec.min_aggregate
        # An agreement allows its city's update only in an aggregate of at least
        # ``floor`` cities: below it, none of this round's updates is used.
        short = phase == "train" and len(kept) < floor
        below: dict[str, Any] = {}
        if short:
            below = {
                "aggregated": False,
                "reason": f"{len(kept)} of the at least {floor} cities the agreements require "
                "(minParticipants) sent an accepted update; the model stays as it was",
            }
        self._progress.write(
            "round", phase=phase, round=round_no, rounds=self._spec.rounds, cities=cities, **below
        )
        return [] if short else kept

    def city_of(self, node_id: int) -> str:
        """The participant id the aggregator registered node ``node_id`` for."""
        return self._spec.nodes.get(node_id, f"node {node_id}")

    def _outcome(self, reply: Message, city: str) -> dict[str, Any]:
        if reply.has_error():
            error = reply.error
            return {"ok": False, "error": error.reason or f"the node replied error {error.code}"}
        if self._check is not None:
            try:
                reason = self._check(reply, city)
            except Exception as exc:  # one city's bad reply must not end the whole run
                reason = f"the check failed: {type(exc).__name__}: {exc}"
            if reason is not None:
                return {"ok": False, "error": f"rejected by the aggregator: {reason}"}
        metrics: dict[str, float] = {}
        size = 0
        for metric_record in reply.content.metric_records.values():
            metrics.update(
                {k: float(v) for k, v in metric_record.items() if isinstance(v, int | float)}
            )
        for array_record in reply.content.array_records.values():
            size += sum(len(array.data) for array in array_record.values())
        return {"ok": True, "metrics": metrics, "bytes": size}

"""The egress check: only a model update of the received model's form, and declared metrics.

The node answers train and evaluate messages only. What may leave in a reply:

- *train*: exactly the ArrayRecords received, each with exactly the received arrays:
  the same names, shapes and dtypes, every value finite (no NaN or infinity);
- *evaluate*: no arrays at all (an evaluate reply carrying a model would be a
  trained model that no privacy accounting covered);
- at most one MetricRecord, named ``metrics``, holding only the declared metric
  keys and ``num-examples``, each a single finite number (``num-examples`` a whole
  number 0 or more), never a list;
- nothing else: no ConfigRecord, no record of another name.

The arrays are read back from their bytes and checked as read, and the reply that
leaves is rebuilt from the checked values (fresh arrays, a fresh MetricRecord, a
fresh reply to the received message), so no byte the app produced leaves unchecked.
A violation replaces the reply with an ``EGRESS_REFUSED`` Error: the update never
leaves; the audit log gets the details (:func:`federation.guard.refusal.local_detail`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    MetricRecordValues,
    RecordDict,
)
from flwr.clientapp.typing import ClientAppCallable

from federation.guard.context import NUM_EXAMPLES_KEY, GuardContext
from federation.guard.refusal import Refusal, refuse
from federation.guard.rounds import category

METRICS_RECORD: Final = "metrics"
"""The name of the one MetricRecord a reply may carry."""

ANSWERED: Final = (MessageType.TRAIN, MessageType.EVALUATE)
"""The message categories the node answers."""

_NUMPY_STYPE: Final = "numpy.ndarray"


@dataclass(frozen=True)
class ArraySpec:
    """The form of one received array."""

    dtype: str
    """NumPy dtype name, e.g. ``float32``."""
    shape: tuple[int, ...]
    """Dimensions."""


Specs = Mapping[str, Mapping[str, ArraySpec]]
"""Per received ArrayRecord, its arrays' forms, in order."""


class EgressError(ValueError):
    """A reply would carry what may not leave.

    ``str()`` is the public sentence (the node's facts only); :attr:`local` names what
    the app produced, for the audit log.
    """

    def __init__(self, public: str, local: str) -> None:
        super().__init__(public)
        self.public = public
        self.local = local


class EgressMod:
    """A Flower mod that lets only a well-formed update and declared metrics leave."""

    def __init__(self, guard: GuardContext) -> None:
        """Check replies against ``guard``'s declared metrics."""
        self.guard = guard

    def __call__(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Refuse other message types; check the reply and rebuild it, or refuse it."""
        kind = category(message)
        if kind not in ANSWERED:
            return refuse(
                message,
                Refusal.MESSAGE_TYPE_REFUSED,
                f"this node answers only train and evaluate messages under agreement "
                f"{self.guard.agreement_id}, not {kind!r}; nothing was run",
            )
        specs = received_specs(message)
        reply = call_next(message, context)
        if reply.has_error():
            return reply
        try:
            content = checked_content(
                reply, specs, train=kind == MessageType.TRAIN, metric_keys=self.guard.metric_keys
            )
        except EgressError as violation:
            return refuse(
                message,
                Refusal.EGRESS_REFUSED,
                f"{violation.public}; the reply was withheld and nothing left the node",
                local=violation.local,
            )
        return Message(content, reply_to=message)


def received_specs(message: Message) -> dict[str, dict[str, ArraySpec]]:
    """The forms of the arrays ``message`` carries, per ArrayRecord, in order."""
    if not message.has_content():
        return {}
    return {
        name: {
            key: ArraySpec(dtype=str(array.dtype), shape=tuple(int(n) for n in array.shape))
            for key, array in record.items()
        }
        for name, record in message.content.array_records.items()
    }


def checked_content(
    reply: Message, specs: Specs, *, train: bool, metric_keys: Sequence[str]
) -> RecordDict:
    """The content of ``reply``, checked and rebuilt (see the module documentation).

    Args:
        reply: The app's reply.
        specs: The forms of the received arrays (:func:`received_specs`).
        train: Whether it answers a train message (arrays required) or an
            evaluate message (no arrays allowed).
        metric_keys: The declared metrics.

    Raises:
        EgressError: Anything that may not leave.
    """
    if not reply.has_content():
        raise EgressError("the reply has no content", "the reply had neither content nor error")
    rebuilt: dict[str, ArrayRecord | MetricRecord | ConfigRecord] = {}
    for name, record in reply.content.items():
        if isinstance(record, ArrayRecord):
            rebuilt[name] = _checked_arrays(name, record, specs, train)
        elif isinstance(record, MetricRecord):
            rebuilt[name] = _checked_metrics(name, record, metric_keys)
        else:
            kind = "a ConfigRecord" if isinstance(record, ConfigRecord) else "a record"
            raise EgressError(
                f"the reply carries {kind}; a reply may carry only the model update "
                f"and the {METRICS_RECORD!r} MetricRecord",
                f"reply record {name!r} is {type(record).__name__}",
            )
    if train:
        missing = [name for name in specs if name not in rebuilt]
        if missing:
            raise EgressError(
                f"the reply lacks ArrayRecord(s) {', '.join(map(repr, missing))} received "
                "with the train message; an update has the received model's form",
                f"reply lacked ArrayRecord(s) {missing}",
            )
    metrics = sum(isinstance(record, MetricRecord) for record in rebuilt.values())
    if metrics > 1:  # pragma: no cover - only one name is allowed
        raise EgressError("the reply carries several MetricRecords", "several MetricRecords")
    return RecordDict(rebuilt)


def _checked_arrays(name: str, record: ArrayRecord, specs: Specs, train: bool) -> ArrayRecord:
    if not train:
        raise EgressError(
            "an evaluate reply may carry no arrays, but it carries an ArrayRecord",
            f"evaluate reply carried ArrayRecord {name!r} ({len(record)} arrays)",
        )
    expected = specs.get(name)
    if expected is None:
        raise EgressError(
            "the reply carries an ArrayRecord that the train message did not carry; "
            "an update has the received model's form",
            f"reply carried ArrayRecord {name!r}, not received",
        )
    extra = [key for key in record if key not in expected]
    if extra:
        raise EgressError(
            f"ArrayRecord {name!r} of the reply carries {len(extra)} array(s) that were "
            "not received; an update has exactly the received arrays",
            f"extra arrays in {name!r}: {extra}",
        )
    missing = [key for key in expected if key not in record]
    if missing:
        raise EgressError(
            f"ArrayRecord {name!r} of the reply lacks the received array(s) "
            f"{', '.join(map(repr, missing))}",
            f"missing arrays in {name!r}: {missing}",
        )
    arrays: dict[str, Array] = {}
    for key, spec in expected.items():
        arrays[key] = Array(_checked_array(name, key, record[key], spec))
    return ArrayRecord(arrays)


def _checked_array(name: str, key: str, array: Array, spec: ArraySpec) -> np.ndarray:
    where = f"array {key!r} of ArrayRecord {name!r}"
    wanted = f"{spec.dtype} of shape {spec.shape}"
    if array.stype != _NUMPY_STYPE:
        raise EgressError(
            f"{where} is not serialised as a NumPy array",
            f"{where}: stype {array.stype!r}",
        )
    try:
        values = array.numpy()
    except Exception as exc:  # any malformed payload is a violation, whatever numpy raises
        raise EgressError(
            f"{where} cannot be read back as a NumPy array", f"{where}: {type(exc).__name__}: {exc}"
        ) from None
    found = f"{values.dtype} of shape {tuple(values.shape)} (declared {array.dtype} {array.shape})"
    if str(values.dtype) != spec.dtype or str(array.dtype) != spec.dtype:
        raise EgressError(
            f"{where} has another dtype than received; it must be {wanted}", f"{where}: {found}"
        )
    if tuple(values.shape) != spec.shape or tuple(array.shape) != spec.shape:
        raise EgressError(
            f"{where} has another shape than received; it must be {wanted}", f"{where}: {found}"
        )
    if values.dtype.kind in "fc" and not bool(np.isfinite(values).all()):
        bad = int(values.size - np.isfinite(values).sum())
        raise EgressError(
            f"{where} holds values that are not finite (NaN or infinity); only finite "
            "updates may leave",
            f"{where}: {bad} non-finite value(s)",
        )
    return np.ascontiguousarray(values)


def _checked_metrics(name: str, record: MetricRecord, metric_keys: Sequence[str]) -> MetricRecord:
    allowed = [*metric_keys, NUM_EXAMPLES_KEY]
    listed = ", ".join(allowed)
    if name != METRICS_RECORD:
        raise EgressError(
            f"the reply carries a MetricRecord not named {METRICS_RECORD!r}; metrics "
            f"leave in one MetricRecord named {METRICS_RECORD!r}",
            f"MetricRecord named {name!r}",
        )
    checked: dict[str, MetricRecordValues] = {}
    for key, value in record.items():
        if key not in allowed:
            raise EgressError(
                f"the reply carries a metric the agreement does not declare; only {listed} "
                "may leave",
                f"undeclared metric {key!r} = {value!r}"[:500],
            )
        if isinstance(value, list):
            raise EgressError(
                f"metric {key!r} is a list of values; a metric leaves as one number",
                f"metric {key!r} held a list of {len(value)} values",
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise EgressError(
                f"metric {key!r} is not finite (NaN or infinity); only finite metrics may leave",
                f"metric {key!r} = {value!r}",
            )
        if key == NUM_EXAMPLES_KEY and (not isinstance(value, int) or value < 0):
            raise EgressError(
                f"metric {NUM_EXAMPLES_KEY!r} must be a whole number 0 or more",
                f"{NUM_EXAMPLES_KEY} = {value!r}",
            )
        checked[key] = value
    return MetricRecord(checked)

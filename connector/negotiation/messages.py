"""DSP 2025-1 JSON-LD forms of the contract-negotiation messages, as pure functions.

Every message travels in its compact JSON-LD form with ``"@context": [DSP_CONTEXT]``
and validates against the matching schema under ``negotiation/`` of the Dataspace
Protocol 2025-1. :meth:`DspMessage.from_json` is the single gate for what a peer
sends: anything malformed is refused with :class:`~connector.errors.ConnectorError`
``MESSAGE_INVALID`` naming the property at fault (``offer.@id``,
``agreement.permission[0].target``, ...). Properties the schemas allow but Hanse does
not model (a policy's ``profile``, an extension property of another connector) are
kept, so ``from_json(doc).to_json()`` gives ``doc`` back.

Two rules of the schemas shape the builders:

- A ``ContractRequestMessage`` has either ``providerPid`` or ``callbackAddress`` and a
  ``ContractOfferMessage`` either ``consumerPid`` or ``callbackAddress`` (``oneOf``):
  only the message that starts a negotiation carries the callback address.
- The rules inside an offer or agreement never carry ``target``; the policy's own
  ``target`` is the dataset.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.dsp import DSP_CONTEXT
from connector.errors import ConnectorError, invalid_argument
from connector.negotiation.states import Message, NegotiationState

__all__ = [
    "DSP_CONTEXT",
    "DSP_STATES",
    "DspMessage",
    "NegotiationAck",
    "accepted_event",
    "agreement_message",
    "build_agreement",
    "finalized_event",
    "merged_constraints",
    "negotiation_ack",
    "negotiation_error",
    "new_pid",
    "offer_message",
    "parse_negotiation_ack",
    "request_message",
    "termination_message",
    "verification_message",
]

EVENT_MESSAGE = "ContractNegotiationEventMessage"
"""The ``@type`` shared by the ACCEPTED and FINALIZED events."""

_EVENT_TYPES: dict[Message, str] = {
    Message.ACCEPTED: "ACCEPTED",
    Message.FINALIZED: "FINALIZED",
}
_EVENT_KINDS = {event: kind for kind, event in _EVENT_TYPES.items()}
_KIND_OF_TYPE: dict[str, Message] = {
    kind.value: kind for kind in Message if kind not in _EVENT_TYPES
}

_COMMON = frozenset({"@context", "@type", "consumerPid", "providerPid"})
_MODELLED: dict[Message, frozenset[str]] = {
    Message.REQUEST: _COMMON | {"offer", "callbackAddress"},
    Message.OFFER: _COMMON | {"offer", "callbackAddress"},
    Message.ACCEPTED: _COMMON | {"eventType"},
    Message.AGREEMENT: _COMMON | {"agreement"},
    Message.VERIFICATION: _COMMON,
    Message.FINALIZED: _COMMON | {"eventType"},
    Message.TERMINATION: _COMMON | {"code", "reason"},
}
"""The properties :class:`DspMessage` models per kind; any other lands in ``extra``."""

DSP_STATES = frozenset(
    {
        NegotiationState.REQUESTED,
        NegotiationState.OFFERED,
        NegotiationState.ACCEPTED,
        NegotiationState.AGREED,
        NegotiationState.VERIFIED,
        NegotiationState.FINALIZED,
        NegotiationState.TERMINATED,
    }
)
"""The states DSP knows (a ``ContractNegotiation`` may carry); not INITIAL, not "-ING"."""

_RULES = ("permission", "prohibition", "obligation")

# XSD dateTime, as the DSP Agreement schema's timestamp pattern (here anchored).
_XSD_DATE_TIME = re.compile(
    r"-?([1-9][0-9]{3,}|0[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T(([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?|(24:00:00(\.0+)?))"
    r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?"
)


class MessageFieldError(ValueError):
    """A DSP message property that is missing or malformed."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field_path = field_path
        super().__init__(message)


@dataclass(frozen=True)
class DspMessage:
    """One DSP contract-negotiation message; :meth:`to_json` gives its JSON-LD form.

    Construction checks what the schema and spec demand of the kind (for example an
    agreement with ``@id``, ``target``, ``assigner``, ``assignee`` and ``timestamp``)
    and raises :class:`MessageFieldError` (a ``ValueError``) naming the property.
    """

    kind: Message
    """Which message this is; the two events are told apart by their ``eventType``."""
    consumer_pid: str = ""
    """The consumer's process id; "" only in a provider's initiating ContractOfferMessage."""
    provider_pid: str = ""
    """The provider's process id; "" only in a consumer's initiating ContractRequestMessage."""
    offer: dict[str, Any] | None = None
    """The ODRL ``Offer`` of a ContractRequestMessage or ContractOfferMessage, else None."""
    agreement: dict[str, Any] | None = None
    """The ODRL ``Agreement`` of a ContractAgreementMessage, else None."""
    callback_address: str = ""
    """Where the initiator receives messages; "" where the message does not carry one."""
    event_type: str = ""
    """``ACCEPTED`` or ``FINALIZED`` for the event messages (filled in from ``kind``), else ""."""
    code: str = ""
    """A termination's code; "" where none is given."""
    reasons: tuple[str, ...] = ()
    """A termination's reasons, as text (a non-text reason is kept verbatim in ``extra``)."""
    context: tuple[str, ...] = (DSP_CONTEXT,)
    """The ``@context`` entries; always includes the DSP 2025-1 context."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Top-level properties a peer sent that Hanse does not model, kept for lossless output.

    The only modelled property that may appear here is ``reason``, holding a peer's
    verbatim reasons where one of them was not a string (a JSON-LD value object, say).
    """

    def __post_init__(self) -> None:
        expected_event = _EVENT_TYPES.get(self.kind, "")
        if expected_event and not self.event_type:
            object.__setattr__(self, "event_type", expected_event)
        elif self.event_type != expected_event:
            raise MessageFieldError(
                "eventType",
                f"a {_describe(self.kind)} cannot have eventType {self.event_type!r}",
            )
        object.__setattr__(self, "extra", dict(self.extra))
        object.__setattr__(self, "reasons", tuple(self.reasons))
        object.__setattr__(self, "context", tuple(self.context))
        _validate(self)

    @property
    def message_type(self) -> str:
        """The DSP ``@type``: the event messages share ``ContractNegotiationEventMessage``."""
        return EVENT_MESSAGE if self.kind in _EVENT_TYPES else self.kind.value

    @property
    def dataset_id(self) -> str:
        """The dataset negotiated: the ``target`` of the offer or agreement, else "".

        DSP 2025-1 has no separate ``dataset`` property: a provider that initiates a
        negotiation names the dataset as its offer's ``target``.
        """
        policy = self.offer if self.offer is not None else self.agreement
        target = policy.get("target", "") if policy is not None else ""
        return target if isinstance(target, str) else ""

    def to_json(self) -> dict[str, Any]:
        """The compact DSP JSON-LD document (a fresh copy, safe to change)."""
        document: dict[str, Any] = {"@context": list(self.context), "@type": self.message_type}
        if self.consumer_pid:
            document["consumerPid"] = self.consumer_pid
        if self.provider_pid:
            document["providerPid"] = self.provider_pid
        if self.offer is not None:
            document["offer"] = copy.deepcopy(self.offer)
        if self.callback_address:
            document["callbackAddress"] = self.callback_address
        if self.agreement is not None:
            document["agreement"] = copy.deepcopy(self.agreement)
        if self.event_type:
            document["eventType"] = self.event_type
        if self.code:
            document["code"] = self.code
        if self.reasons and "reason" not in self.extra:
            document["reason"] = list(self.reasons)
        for name, value in self.extra.items():
            document.setdefault(name, copy.deepcopy(value))
        return document

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, expected: Message | None = None) -> DspMessage:
        """Parse and check a DSP contract-negotiation message.

        Args:
            data: the decoded JSON-LD document.
            expected: the kind the caller's endpoint receives; any other is refused.

        Raises:
            ConnectorError: ``MESSAGE_INVALID`` (``INVALID_ARGUMENT``) naming the property
                at fault: missing ``@context``, unknown ``@type`` or ``eventType``, a
                missing process id, an offer without ``@id``, a rule with a ``target``...
        """
        try:
            return cls._parse(data, expected)
        except MessageFieldError as exc:
            raise _refusal(str(exc), exc.field_path) from None

    @classmethod
    def _parse(cls, data: Mapping[str, Any], expected: Message | None) -> DspMessage:
        if not isinstance(data, Mapping):
            raise MessageFieldError("", "a DSP message must be a JSON object")
        context = _parse_context(data)
        message_type = data.get("@type")
        if not isinstance(message_type, str) or not message_type:
            raise MessageFieldError("@type", "@type is required: the DSP message type")
        if message_type == EVENT_MESSAGE:
            event_type = data.get("eventType")
            if not isinstance(event_type, str) or event_type not in _EVENT_KINDS:
                allowed = " or ".join(sorted(_EVENT_KINDS))
                raise MessageFieldError(
                    "eventType", f"eventType must be {allowed}, got {event_type!r}"
                )
            kind = _EVENT_KINDS[event_type]
        elif message_type in _KIND_OF_TYPE:
            kind = _KIND_OF_TYPE[message_type]
        else:
            raise MessageFieldError(
                "@type", f"{message_type!r} is not a DSP contract-negotiation message"
            )
        if expected is not None and kind is not expected:
            both_events = kind in _EVENT_TYPES and expected in _EVENT_TYPES
            raise MessageFieldError(
                "eventType" if both_events else "@type",
                f"expected a {_describe(expected)}, got a {_describe(kind)}",
            )
        modelled = _MODELLED[kind]
        reasons, raw_reason = _parse_reasons(data) if "reason" in modelled else ((), None)
        extra = {name: value for name, value in data.items() if name not in modelled}
        if raw_reason is not None:
            extra["reason"] = raw_reason
        return cls(
            kind=kind,
            consumer_pid=_string(data, "consumerPid"),
            provider_pid=_string(data, "providerPid"),
            offer=_object(data, "offer") if "offer" in modelled else None,
            agreement=_object(data, "agreement") if "agreement" in modelled else None,
            callback_address=_string(data, "callbackAddress") if "offer" in modelled else "",
            event_type=_EVENT_TYPES.get(kind, ""),
            code=_string(data, "code") if "code" in modelled else "",
            reasons=reasons,
            context=context,
            extra=extra,
        )


def new_pid() -> str:
    """A fresh process id for one side of a negotiation: ``urn:uuid:<uuid4>``."""
    return f"urn:uuid:{uuid.uuid4()}"


def request_message(
    *, consumer_pid: str, offer: Mapping[str, Any], callback_address: str, provider_pid: str = ""
) -> DspMessage:
    """A ContractRequestMessage from the consumer.

    Without ``provider_pid`` it starts a negotiation and carries ``callback_address``;
    with one it answers an offer (a counter-request), and the schema leaves the
    callback address out (``oneOf``), so it is dropped.
    """
    return DspMessage(
        kind=Message.REQUEST,
        consumer_pid=consumer_pid,
        provider_pid=provider_pid,
        offer=_copy(offer),
        callback_address="" if provider_pid else callback_address,
    )


def offer_message(
    *, provider_pid: str, consumer_pid: str, offer: Mapping[str, Any], callback_address: str = ""
) -> DspMessage:
    """A ContractOfferMessage from the provider; ``offer`` needs ``@id`` and ``target``.

    With ``consumer_pid`` "" it starts a negotiation and must carry ``callback_address``;
    with one it answers a request, and the callback address is dropped (``oneOf``).
    """
    return DspMessage(
        kind=Message.OFFER,
        consumer_pid=consumer_pid,
        provider_pid=provider_pid,
        offer=_copy(offer),
        callback_address="" if consumer_pid else callback_address,
    )


def accepted_event(*, consumer_pid: str, provider_pid: str) -> DspMessage:
    """The consumer's ContractNegotiationEventMessage ACCEPTED (it accepts the last offer)."""
    return DspMessage(kind=Message.ACCEPTED, consumer_pid=consumer_pid, provider_pid=provider_pid)


def agreement_message(
    *, provider_pid: str, consumer_pid: str, agreement: Mapping[str, Any]
) -> DspMessage:
    """The provider's ContractAgreementMessage (see :func:`build_agreement`)."""
    return DspMessage(
        kind=Message.AGREEMENT,
        consumer_pid=consumer_pid,
        provider_pid=provider_pid,
        agreement=_copy(agreement),
    )


def verification_message(*, consumer_pid: str, provider_pid: str) -> DspMessage:
    """The consumer's ContractAgreementVerificationMessage."""
    return DspMessage(
        kind=Message.VERIFICATION, consumer_pid=consumer_pid, provider_pid=provider_pid
    )


def finalized_event(*, consumer_pid: str, provider_pid: str) -> DspMessage:
    """The provider's ContractNegotiationEventMessage FINALIZED."""
    return DspMessage(kind=Message.FINALIZED, consumer_pid=consumer_pid, provider_pid=provider_pid)


def termination_message(
    *, consumer_pid: str, provider_pid: str, code: str = "", reasons: Sequence[str] = ()
) -> DspMessage:
    """A ContractNegotiationTerminationMessage from either side; code and reasons optional."""
    return DspMessage(
        kind=Message.TERMINATION,
        consumer_pid=consumer_pid,
        provider_pid=provider_pid,
        code=code,
        reasons=_texts(reasons),
    )


@dataclass(frozen=True)
class NegotiationAck:
    """A peer's ``ContractNegotiation`` answer: the process ids and the state it holds."""

    consumer_pid: str
    """The consumer's process id."""
    provider_pid: str
    """The provider's process id (how a consumer learns it after its first request)."""
    state: NegotiationState
    """The DSP state the peer reports."""


def negotiation_ack(
    *, consumer_pid: str, provider_pid: str, state: NegotiationState
) -> dict[str, Any]:
    """The DSP ``ContractNegotiation`` a node answers a message with (the ACK).

    Raises:
        ValueError: ``state`` is INITIAL or an "-ING" state, which DSP does not know.
    """
    if state not in DSP_STATES:
        raise ValueError(f"{state.value} is not a DSP negotiation state")
    return {
        "@context": [DSP_CONTEXT],
        "@type": "ContractNegotiation",
        "consumerPid": consumer_pid,
        "providerPid": provider_pid,
        "state": state.value,
    }


def parse_negotiation_ack(data: Mapping[str, Any]) -> NegotiationAck:
    """Read a peer's ``ContractNegotiation`` answer.

    Raises:
        ConnectorError: ``MESSAGE_INVALID`` naming the property at fault.
    """
    try:
        if not isinstance(data, Mapping):
            raise MessageFieldError("", "a ContractNegotiation must be a JSON object")
        _parse_context(data)
        if data.get("@type") != "ContractNegotiation":
            raise MessageFieldError(
                "@type", f"expected a ContractNegotiation, got {data.get('@type')!r}"
            )
        consumer_pid = _required(data, "consumerPid")
        provider_pid = _required(data, "providerPid")
        state = data.get("state")
        if state not in {s.value for s in DSP_STATES}:
            raise MessageFieldError("state", f"{state!r} is not a DSP negotiation state")
    except MessageFieldError as exc:
        raise _refusal(str(exc), exc.field_path) from None
    return NegotiationAck(consumer_pid, provider_pid, NegotiationState(state))


def negotiation_error(
    *, consumer_pid: str, provider_pid: str, code: str = "", reasons: Sequence[str] = ()
) -> dict[str, Any]:
    """The DSP ``ContractNegotiationError`` (no state change); code and reasons optional."""
    document: dict[str, Any] = {
        "@context": [DSP_CONTEXT],
        "@type": "ContractNegotiationError",
        "consumerPid": consumer_pid,
        "providerPid": provider_pid,
    }
    if code:
        document["code"] = code
    if reasons:
        document["reason"] = list(_texts(reasons))
    return document


def build_agreement(
    *,
    agreement_id: str,
    offer: Mapping[str, Any],
    assigner: str,
    assignee: str,
    target: str,
    timestamp: datetime,
    extra_constraints: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A DSP ``Agreement`` (no ``@context``: the message carries it) from an offer.

    The offer's rules (``permission``, ``prohibition``, ``obligation``) and its
    ``profile`` are copied; ``extra_constraints`` (the usage the consumer stated) are
    appended to every permission's ``constraint`` list (one the permission already has
    is not repeated). The offer's ``@id``, ``@type``
    and ``target`` are replaced by the agreement's.

    Raises:
        ValueError: a naive ``timestamp``, an offer without permission or prohibition,
            a rule with a ``target``, or stated usage with no permission to attach it to.
    """
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        raise ValueError("the agreement timestamp must be timezone-aware")
    agreement: dict[str, Any] = {
        "@id": agreement_id,
        "@type": "Agreement",
        "target": target,
        "assigner": assigner,
        "assignee": assignee,
        "timestamp": timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if "profile" in offer:
        agreement["profile"] = copy.deepcopy(offer["profile"])
    for name in _RULES:
        if name in offer:
            agreement[name] = copy.deepcopy(offer[name])
    stated = [_copy(constraint) for constraint in extra_constraints]
    if stated:
        permissions = agreement.get("permission")
        if not isinstance(permissions, list) or not permissions:
            raise ValueError("the offer has no permission to attach the stated usage to")
        for permission in permissions:
            if not isinstance(permission, dict):
                continue  # refused by the check below
            existing = permission.get("constraint", [])
            if not isinstance(existing, list):
                raise ValueError("a permission's constraint must be a list")
            permission["constraint"] = merged_constraints(existing, stated)
    _check_agreement(agreement)
    return agreement


def merged_constraints(
    existing: Sequence[Mapping[str, Any]], stated: Sequence[Mapping[str, Any]]
) -> list[Any]:
    """``existing`` followed by copies of the ``stated`` constraints it does not have yet.

    The one rule for adding a consumer's stated usage to a permission: in the request
    it sends and in the agreement built from it, so both list a constraint once.
    """
    added = [c for c in stated if c not in existing]
    return [*existing, *copy.deepcopy(added)]


def _validate(message: DspMessage) -> None:
    kind = message.kind
    if DSP_CONTEXT not in message.context:
        raise MessageFieldError("@context", f"@context must include {DSP_CONTEXT}")
    for name, value in (
        ("consumerPid", message.consumer_pid),
        ("providerPid", message.provider_pid),
        ("callbackAddress", message.callback_address),
        ("code", message.code),
    ):
        if not isinstance(value, str):
            raise MessageFieldError(name, f"{name} must be a string")
    if not message.consumer_pid and kind is not Message.OFFER:
        raise MessageFieldError("consumerPid", f"a {_describe(kind)} needs a consumerPid")
    if not message.provider_pid and kind is not Message.REQUEST:
        raise MessageFieldError("providerPid", f"a {_describe(kind)} needs a providerPid")
    if kind in (Message.REQUEST, Message.OFFER):
        counter_pid = message.provider_pid if kind is Message.REQUEST else message.consumer_pid
        if not counter_pid and not message.callback_address:
            raise MessageFieldError(
                "callbackAddress",
                f"a {_describe(kind)} that starts a negotiation needs a callbackAddress",
            )
        if message.offer is None:
            raise MessageFieldError("offer", f"a {_describe(kind)} needs an offer")
        _check_offer(message.offer, needs_target=kind is Message.OFFER)
    else:
        if message.callback_address:
            raise MessageFieldError(
                "callbackAddress", f"a {_describe(kind)} has no callbackAddress"
            )
        if message.offer is not None:
            raise MessageFieldError("offer", f"a {_describe(kind)} has no offer")
    if kind is Message.AGREEMENT:
        if message.agreement is None:
            raise MessageFieldError("agreement", "a ContractAgreementMessage needs an agreement")
        _check_agreement(message.agreement)
    elif message.agreement is not None:
        raise MessageFieldError("agreement", f"a {_describe(kind)} has no agreement")
    if kind is not Message.TERMINATION and (message.code or message.reasons):
        raise MessageFieldError("code", f"a {_describe(kind)} has no code or reason")
    if not all(isinstance(reason, str) for reason in message.reasons):
        raise MessageFieldError("reason", "reasons must be strings")
    clashing = sorted(set(message.extra) & (_MODELLED[kind] - {"reason"}))
    if clashing:
        raise MessageFieldError(clashing[0], f"{clashing[0]} is modelled, not an extra property")


def _check_offer(offer: Any, *, needs_target: bool) -> None:
    if not isinstance(offer, Mapping):
        raise MessageFieldError("offer", "offer must be a JSON object")
    _nonempty_string(offer, "@id", "offer")
    if offer.get("@type") != "Offer":
        raise MessageFieldError("offer.@type", '@type of an offer must be "Offer"')
    if needs_target:
        _nonempty_string(offer, "target", "offer")
    elif "target" in offer and not isinstance(offer["target"], str):
        raise MessageFieldError("offer.target", "offer.target must be a string")
    _check_rules(offer, "offer")


def _check_agreement(agreement: Any) -> None:
    if not isinstance(agreement, Mapping):
        raise MessageFieldError("agreement", "agreement must be a JSON object")
    _nonempty_string(agreement, "@id", "agreement")
    if agreement.get("@type") != "Agreement":
        raise MessageFieldError("agreement.@type", '@type of an agreement must be "Agreement"')
    for name in ("target", "assigner", "assignee", "timestamp"):
        _nonempty_string(agreement, name, "agreement")
    if not _XSD_DATE_TIME.fullmatch(agreement["timestamp"]):
        raise MessageFieldError(
            "agreement.timestamp", "agreement.timestamp must be an XSD dateTime"
        )
    _check_rules(agreement, "agreement")


def _check_rules(policy: Mapping[str, Any], prefix: str) -> None:
    if "profile" in policy:
        profile = policy["profile"]
        if not isinstance(profile, str) and not (
            isinstance(profile, list) and all(isinstance(p, str) for p in profile)
        ):
            raise MessageFieldError(
                f"{prefix}.profile", "profile must be a string or a list of strings"
            )
    for name in _RULES:
        if name not in policy:
            continue
        rules = policy[name]
        path = f"{prefix}.{name}"
        if not isinstance(rules, list) or not rules:
            raise MessageFieldError(path, f"{path} must be a non-empty list of rules")
        for index, rule in enumerate(rules):
            rule_path = f"{path}[{index}]"
            if not isinstance(rule, Mapping):
                raise MessageFieldError(rule_path, "a rule must be a JSON object")
            if "target" in rule:
                raise MessageFieldError(
                    f"{rule_path}.target",
                    f"rules must not carry a target; the {prefix}'s target applies",
                )
            if not isinstance(rule.get("action"), str) or not rule["action"]:
                raise MessageFieldError(f"{rule_path}.action", "a rule needs an action")
            constraints = rule.get("constraint", [])
            if not isinstance(constraints, list) or not all(
                isinstance(c, Mapping) for c in constraints
            ):
                raise MessageFieldError(
                    f"{rule_path}.constraint", "constraint must be a list of objects"
                )
    if "permission" not in policy and "prohibition" not in policy:
        raise MessageFieldError(
            f"{prefix}.permission", f"the {prefix} needs a permission or a prohibition"
        )


def _parse_context(data: Mapping[str, Any]) -> tuple[str, ...]:
    context = data.get("@context")
    if context is None:
        raise MessageFieldError("@context", f"@context is required and must include {DSP_CONTEXT}")
    if not isinstance(context, list) or not all(isinstance(entry, str) for entry in context):
        raise MessageFieldError("@context", "@context must be a list of context URLs")
    if DSP_CONTEXT not in context:
        raise MessageFieldError("@context", f"@context must include {DSP_CONTEXT}")
    return tuple(context)


def _parse_reasons(data: Mapping[str, Any]) -> tuple[tuple[str, ...], list[Any] | None]:
    """The reasons as text, plus the verbatim list where an item is not a string."""
    if "reason" not in data:
        return (), None
    raw = data["reason"]
    if not isinstance(raw, list) or not raw:
        raise MessageFieldError("reason", "reason must be a non-empty list")
    if all(isinstance(item, str) for item in raw):
        return tuple(raw), None
    return tuple(_reason_text(item) for item in raw), copy.deepcopy(raw)


def _reason_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping) and isinstance(item.get("@value"), str):
        return str(item["@value"])
    return json.dumps(item, sort_keys=True, ensure_ascii=False)


def _string(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise MessageFieldError(name, f"{name} must be a string")
    return value


def _required(data: Mapping[str, Any], name: str) -> str:
    value = _string(data, name)
    if not value:
        raise MessageFieldError(name, f"{name} is required")
    return value


def _object(data: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    if name not in data:
        return None
    value = data[name]
    if not isinstance(value, Mapping):
        raise MessageFieldError(name, f"{name} must be a JSON object")
    return _copy(value)


def _nonempty_string(data: Mapping[str, Any], name: str, prefix: str) -> None:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise MessageFieldError(f"{prefix}.{name}", f"{prefix}.{name} is required (a string)")


def _copy(value: Mapping[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = copy.deepcopy(dict(value))
    return copied


def _texts(reasons: Sequence[str]) -> tuple[str, ...]:
    if isinstance(reasons, str):
        raise TypeError("reasons must be a sequence of strings, not one string")
    return tuple(reasons)


def _describe(kind: Message) -> str:
    if kind in _EVENT_TYPES:
        return f"{EVENT_MESSAGE} with eventType {_EVENT_TYPES[kind]}"
    return kind.value


def _refusal(message: str, field_path: str) -> ConnectorError:
    return invalid_argument(message, field_path, reason="MESSAGE_INVALID")

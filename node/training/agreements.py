"""Finding a node's agreements by the id researchers use for them."""

from __future__ import annotations

from collections.abc import Iterator

from connector.agreement_terms import agreement_id_of
from connector.errors import ConnectorError
from connector.negotiation.model import NegotiationRecord, NegotiationStore
from connector.negotiation.states import Role

_PAGE = 200


class AgreementNotFoundError(LookupError):
    """This node has no agreement with that id in that role."""


def negotiations(store: NegotiationStore, *, state: str = "") -> Iterator[NegotiationRecord]:
    """Every negotiation of the node (optionally in one state), newest first."""
    before = ""
    while True:
        page = store.list_negotiations(limit=_PAGE, before=before, state=state)
        yield from page
        if len(page) < _PAGE:
            return
        before = page[-1].id


def find_agreement(store: NegotiationStore, agreement: str, role: Role) -> NegotiationRecord:
    """The negotiation in ``role`` whose agreement ``@id`` or own id is ``agreement``.

    Researchers may name an agreement by its DSP ``@id`` (the same on both sides) or
    by their node's negotiation id.

    Raises:
        AgreementNotFoundError: no such agreement on this node in that role.
    """
    try:
        record = store.get(agreement)
        if record.role == role:
            return record
    except ConnectorError:
        pass
    for record in negotiations(store):
        if record.role == role and agreement_id_of(record) == agreement:
            return record
    side = "consumer" if role == "consumer" else "provider"
    raise AgreementNotFoundError(f"this node has no agreement {agreement} as {side}")

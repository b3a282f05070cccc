"""The guard: the node's Flower mods between a federated-learning message and its data.

Owned by the node, never by a researcher's code, and a plain chain of Flower mods
(:func:`guard_mods`), so the same guard runs in deployment and in Flower's
simulation engine. It counts rounds, enforces the privacy budget and keeps the
privacy ledger, lets only a well-formed update and declared metrics leave, signs
what leaves and puts everything on the audit log. :func:`verify_update` checks a
signed update on the aggregator's side.
"""

from federation.guard.audit import AuditMod
from federation.guard.chain import guard_mods
from federation.guard.context import (
    NUM_EXAMPLES_KEY,
    GuardConfigError,
    GuardContext,
    close_databases,
)
from federation.guard.egress import METRICS_RECORD, EgressMod
from federation.guard.privacy import PrivacyMod
from federation.guard.refusal import Refusal, refusal_of, refuse
from federation.guard.rounds import RoundsMod
from federation.guard.signing import (
    SIGNATURE_RECORD,
    SigningMod,
    UpdateVerification,
    update_digest,
    verify_update,
)

__all__ = [
    "METRICS_RECORD",
    "NUM_EXAMPLES_KEY",
    "SIGNATURE_RECORD",
    "AuditMod",
    "EgressMod",
    "GuardConfigError",
    "GuardContext",
    "PrivacyMod",
    "Refusal",
    "RoundsMod",
    "SigningMod",
    "UpdateVerification",
    "close_databases",
    "guard_mods",
    "refusal_of",
    "refuse",
    "update_digest",
    "verify_update",
]

"""The guard as one chain of Flower mods, in the order that keeps its promises.

Flower runs the first mod of the list outermost: it sees the message first and the
reply last. The chain, outermost first:

1. :class:`~federation.guard.audit.AuditMod`: records the reply as it leaves, or
   the refusal; turns exceptions into refusals.
2. :class:`~federation.guard.rounds.RoundsMod`: refuses a train message past the
   agreement's rounds, before anything runs.
3. :class:`~federation.guard.privacy.PrivacyMod`: refuses a round over the dataset's
   epsilon budget before it runs; records the round on the ledger before the update
   leaves.
4. :class:`~federation.guard.signing.SigningMod`: signs the checked reply.
5. :class:`~federation.guard.egress.EgressMod`: refuses message types other than
   train and evaluate; checks and rebuilds the reply.

So the signature covers exactly what passed the egress check, the ledger holds
every update that leaves, and the audit log every reply and every refusal. Where
a reply is withheld after its round was put on the ledger (the audit log could not
be written), the round still counts: the ledger errs on the side of privacy.
"""

from __future__ import annotations

from flwr.clientapp.typing import Mod

from federation.guard.audit import AuditMod
from federation.guard.context import GuardContext
from federation.guard.egress import EgressMod
from federation.guard.privacy import PrivacyMod
from federation.guard.rounds import RoundsMod
from federation.guard.signing import SigningMod


def guard_mods(guard: GuardContext) -> list[Mod]:
    """The guard's mods for a ``ClientApp(mods=...)``, outermost first."""
    return [
        AuditMod(guard),
        RoundsMod(guard),
        PrivacyMod(guard),
        SigningMod(guard),
        EgressMod(guard),
    ]

"""What the guard knows: the node's facts about one agreement, never the researcher's.

A :class:`GuardContext` is built by the node from the signed agreement and its own
configuration before a run starts: which agreement and dataset, how many rounds and
how much privacy budget the agreement allows, the node's DP-SGD parameters and
training settings, which metrics may leave, the node's signing key and where its
audit log and privacy ledger live. Nothing in it comes from a Flower message.

It holds only plain values, so it pickles: Flower's simulation engine ships the
ClientApp, and with it the guard, to Ray worker processes. The audit log and the
ledger are therefore named by their database URL and opened in each process on
first use (one engine per database per process).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Final

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from connector.clock import Clock, SystemClock
from connector.identity.tls import participant_id_of
from connector.store import SqlAuditLog, create_engine
from connector.store.ledger import SqlPrivacyLedger
from federation.privacy import DPStep
from federation.training import DPSettings, TrainSettings, planned_step

NUM_EXAMPLES_KEY: Final = "num-examples"
"""The metric every reply may carry besides the declared ones: examples it is based on."""

ACTOR: Final = "node"
"""The actor of the guard's audit entries."""

_ENGINES: dict[str, sa.Engine] = {}
_ENGINES_LOCK = threading.Lock()


class GuardConfigError(ValueError):
    """A guard context cannot be built as given; the message names the field at fault."""


@dataclass(frozen=True)
class GuardContext:
    """The node-side facts the guard mods enforce, for one agreement on one dataset."""

    agreement_id: str
    """The agreement the run is trained under."""
    dataset_id: str
    """The dataset trained on; its privacy ledger spans every agreement."""
    max_rounds: int
    """Training rounds the agreement allows over all its runs (its ``maxRounds``)."""
    epsilon_budget: float
    """The most the dataset's epsilon may reach, over every agreement: the lesser of
    the agreement's ``epsilon`` and the node's budget for the dataset."""
    dp: DPSettings
    """The node's DP-SGD parameters; ``dp.delta`` is the agreement's delta."""
    train: TrainSettings
    """The node's training settings: epochs, batch size, learning rate, seed."""
    train_examples: int
    """Training examples of the dataset; with :attr:`train` it fixes each round's cost."""
    metric_keys: tuple[str, ...]
    """The scalar metrics that may leave (the task's declared metrics)."""
    certificate_pem: bytes
    """The node's certificate (PEM, leaf first); it names the node's participant id."""
    key_pem: bytes = field(repr=False)
    """The certificate's private key (unencrypted PEM, ECDSA P-256)."""
    database_url: str
    """The node's database, holding its audit log and privacy ledger (migrated)."""
    aggregator: str = ""
    """The aggregator's participant id, named in audit entries; empty if unknown."""
    clock: Clock = field(default_factory=SystemClock)
    """Source of audit and ledger times."""

    def __post_init__(self) -> None:
        for name in ("agreement_id", "dataset_id", "database_url"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise GuardConfigError(f"{name} must be a non-empty string, not {value!r}")
        _whole(self.max_rounds, "max_rounds")
        _whole(self.train_examples, "train_examples")
        if not (
            isinstance(self.epsilon_budget, int | float)
            and math.isfinite(self.epsilon_budget)
            and self.epsilon_budget > 0
        ):
            raise GuardConfigError(
                f"epsilon_budget must be a finite number above 0, not {self.epsilon_budget!r}"
            )
        if not isinstance(self.dp, DPSettings) or not isinstance(self.train, TrainSettings):
            raise GuardConfigError("dp must be DPSettings and train TrainSettings")
        if not isinstance(self.metric_keys, tuple) or not all(
            isinstance(key, str) and key and key != NUM_EXAMPLES_KEY for key in self.metric_keys
        ):
            raise GuardConfigError(
                f"metric_keys must be a tuple of non-empty metric names other than "
                f"{NUM_EXAMPLES_KEY!r}, not {self.metric_keys!r}"
            )
        signing_key(self.certificate_pem, self.key_pem)

    @property
    def delta(self) -> float:
        """The delta of the privacy guarantee (the agreement's)."""
        return self.dp.delta

    @property
    def round_step(self) -> DPStep:
        """What one training round costs in privacy (see :func:`planned_step`)."""
        return planned_step(self.train_examples, self.train, self.dp)

    @property
    def signer_id(self) -> str:
        """The node's participant id, as its certificate names it."""
        return signing_key(self.certificate_pem, self.key_pem)[1]

    def ledger(self) -> SqlPrivacyLedger:
        """The privacy ledger in the node's database."""
        return SqlPrivacyLedger(_engine(self.database_url), self.clock)

    def audit_log(self) -> SqlAuditLog:
        """The audit log in the node's database."""
        return SqlAuditLog(_engine(self.database_url), self.clock)


def signing_key(certificate_pem: bytes, key_pem: bytes) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """The node's signing key and participant id, checked to belong together.

    Raises:
        GuardConfigError: No PEM certificate, no unencrypted ECDSA P-256 key, a key
            of another certificate, or a certificate that names no participant.
    """
    try:
        certificate = x509.load_pem_x509_certificates(certificate_pem)[0]
    except (TypeError, ValueError):
        raise GuardConfigError(
            "certificate_pem holds no PEM certificate; give the node's certificate"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (TypeError, ValueError):
        raise GuardConfigError(
            "key_pem is not an unencrypted PEM private key; give the node's key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise GuardConfigError("key_pem is not an ECDSA P-256 key, which ES256 signing needs")
    if _spki(key.public_key()) != _spki(certificate.public_key()):
        raise GuardConfigError(
            "key_pem does not belong to certificate_pem; give the key issued with the certificate"
        )
    participant = participant_id_of(certificate)
    if participant is None:
        raise GuardConfigError(
            "the certificate names no participant (no URI subject alternative name); "
            "use the node's Hanse certificate"
        )
    return key, participant


def close_databases() -> None:
    """Close the engines the guards of this process opened (at node shutdown, in tests).

    A guard used afterwards opens its database again.
    """
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.dispose()


def _engine(url: str) -> sa.Engine:
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = create_engine(url)
        return engine


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _whole(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GuardConfigError(f"{name} must be a whole number of at least 1, not {value!r}")

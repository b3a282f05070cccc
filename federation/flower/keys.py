"""The node key in the forms Flower's SuperNode authentication expects.

A city's SuperNode authenticates with the city node's own ECDSA P-256 key, so the
aggregator can register exactly the key it saw in the city's agreement signature.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class NodeKeyError(ValueError):
    """A key or certificate is not an EC key Flower can use; the message says which."""


def write_openssh_private_key(key_pem: bytes, path: Path) -> Path:
    """Write the node's PEM private key to ``path`` in OpenSSH form, mode 0600.

    Raises:
        NodeKeyError: the key is not an elliptic-curve private key.
    """
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # TypeError: the key is encrypted; UnsupportedAlgorithm: a key type we cannot load.
        raise NodeKeyError(f"cannot read the node key (an unencrypted PEM key): {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise NodeKeyError("SuperNode authentication needs an elliptic-curve node key")
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # The mode above applies only to a new file: an existing one keeps its own mode.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def public_key_pem_of_certificate(cert_pem: str | bytes) -> bytes:
    """The SubjectPublicKeyInfo PEM of the first certificate in ``cert_pem``.

    This is the form the SuperLink's ``RegisterNode`` takes.

    Raises:
        NodeKeyError: not a certificate, or its key is not an elliptic-curve key.
    """
    raw = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    try:
        cert = x509.load_pem_x509_certificate(raw)
    except ValueError as exc:
        raise NodeKeyError(f"cannot read the certificate: {exc}") from exc
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise NodeKeyError("the certificate's key is not an elliptic-curve key")
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

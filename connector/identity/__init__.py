"""Identity and trust: the federation PKI, a node's TLS material, and peer identities.

A participant's identity is the URI subject alternative name of its X.509
certificate, verified by mutual TLS against the federation's trust bundle.
"""

from connector.identity.peer import (
    PeerIdentity,
    fetch_server_participant_id,
    peer_identity_from_auth_context,
)
from connector.identity.pki import CaFiles, IssuedFiles, PkiError, init_ca, issue_certificate
from connector.identity.tls import (
    CertificateInfo,
    IdentityError,
    LoadedTLS,
    TLSFiles,
    certificate_participant_id,
    certificate_summary,
    channel_credentials,
    load_tls,
    server_credentials,
)

__all__ = [
    "CaFiles",
    "CertificateInfo",
    "IdentityError",
    "IssuedFiles",
    "LoadedTLS",
    "PeerIdentity",
    "PkiError",
    "TLSFiles",
    "certificate_participant_id",
    "certificate_summary",
    "channel_credentials",
    "fetch_server_participant_id",
    "init_ca",
    "issue_certificate",
    "load_tls",
    "peer_identity_from_auth_context",
    "server_credentials",
]

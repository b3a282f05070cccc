"""Token authentication for the management API, and the client side of it.

The management server is bound to loopback or a cluster-only address; every call
other than health checks must carry ``authorization: Bearer <admin token>``. The
token lives in a file next to the node config; :func:`generate_admin_token` makes
one and :func:`read_token_file` reads it back.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any, NoReturn

import grpc

from connector.errors import to_rpc_status, unauthenticated
from connector.interceptors.handlers import AroundInterceptor, Behavior

MIN_TOKEN_LENGTH = 32
"""The shortest admin token accepted, in characters."""

AUTHORIZATION_KEY = "authorization"
"""The metadata key carrying the token."""

EXEMPT_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/",)
"""Methods served without a token (health checks)."""

_SCHEME = "bearer"


class AdminTokenError(ValueError):
    """An admin token is unusable; the message says why and what to do."""


def generate_admin_token() -> str:
    """A new random admin token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def check_admin_token(token: str) -> str:
    """Return ``token`` if it is usable as an admin token.

    Raises:
        AdminTokenError: It is shorter than :data:`MIN_TOKEN_LENGTH` or holds
            characters other than printable ASCII without spaces.
    """
    if len(token) < MIN_TOKEN_LENGTH:
        raise AdminTokenError(
            f"admin token is {len(token)} characters; use at least {MIN_TOKEN_LENGTH} "
            "(generate one with generate_admin_token)"
        )
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise AdminTokenError("admin token must be printable ASCII without spaces")
    return token


def read_token_file(path: Path) -> str:
    """Read an admin token from ``path`` (surrounding whitespace is ignored).

    Raises:
        AdminTokenError: The file is missing, unreadable, empty, or its token is unusable.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AdminTokenError(
            f"admin token file {path} not found; create it (the node writes one on init)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminTokenError(f"admin token file {path} cannot be read: {exc}") from None
    token = text.strip()
    if not token:
        raise AdminTokenError(f"admin token file {path} is empty; write the token into it")
    try:
        return check_admin_token(token)
    except AdminTokenError as exc:
        raise AdminTokenError(f"admin token file {path}: {exc}") from None


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token``, for ``stub.Method(request, metadata=...)``.

    Works on any channel, including insecure loopback channels.
    """
    return ((AUTHORIZATION_KEY, f"Bearer {token}"),)


class _BearerPlugin(grpc.AuthMetadataPlugin):
    def __init__(self, token: str) -> None:
        self._metadata = bearer_metadata(token)

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        callback(self._metadata, None)


def admin_call_credentials(token: str) -> grpc.CallCredentials:
    """Call credentials attaching ``token`` to every call of a channel.

    gRPC sends call credentials only over secure channels: combine them with TLS or
    ``grpc.local_channel_credentials()`` through ``grpc.composite_channel_credentials``.
    On an insecure channel use :func:`bearer_metadata` instead.
    """
    return grpc.metadata_call_credentials(_BearerPlugin(check_admin_token(token)), name="hanse")


class AdminTokenInterceptor(AroundInterceptor):
    """Admit management calls that carry the admin token; health checks are exempt."""

    def __init__(self, token: str) -> None:
        """Serve with ``token`` as the only accepted credential.

        Raises:
            AdminTokenError: (a ``ValueError``) the token is too short or malformed.
        """
        self._token = check_admin_token(token).encode("ascii")

    def around(
        self, method: str, request: Any, context: grpc.ServicerContext, behavior: Behavior
    ) -> Any:
        """Run ``behavior`` if the call carries the admin token, else abort it."""
        if method.startswith(EXEMPT_PREFIXES):
            return behavior(request, context)
        values = [
            value for key, value in context.invocation_metadata() or () if key == AUTHORIZATION_KEY
        ]
        if not values:
            _abort(
                context,
                "CREDENTIAL_MISSING",
                "management call without credential: pass the admin token "
                "(hanse reads it from the node config)",
            )
        if not self._accepts(values):
            _abort(
                context,
                "CREDENTIAL_INVALID",
                "management call with a wrong credential: the admin token does not match "
                "this node's (expected 'authorization: Bearer <token>')",
            )
        return behavior(request, context)

    def _accepts(self, values: list[str | bytes]) -> bool:
        if len(values) != 1:
            return False
        value = values[0]
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        scheme, _, presented = text.strip().partition(" ")
        if scheme.lower() != _SCHEME:
            return False
        return hmac.compare_digest(presented.strip().encode("utf-8"), self._token)


def _abort(context: grpc.ServicerContext, reason: str, message: str) -> NoReturn:
    context.abort_with_status(to_rpc_status(unauthenticated(reason, message)))

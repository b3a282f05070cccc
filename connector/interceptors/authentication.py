"""Peer authentication for the protocol API: every call carries a verified peer identity.

The protocol server runs mutual TLS, so gRPC has already verified the peer's
certificate chain when a call arrives. :class:`PeerAuthenticationInterceptor` turns
that certificate into a :class:`~connector.identity.PeerIdentity`, refuses calls that
have none (``UNAUTHENTICATED``, reason ``PEER_IDENTITY_MISSING``), and makes it
available to the servicer through :func:`current_peer` for the duration of the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, cast

import grpc

from connector.errors import to_rpc_status, unauthenticated
from connector.identity.peer import PeerIdentity, peer_identity_from_auth_context
from connector.interceptors.handlers import AroundInterceptor, Behavior

_CURRENT_PEER: ContextVar[PeerIdentity | None] = ContextVar("hanse_current_peer", default=None)


def current_peer() -> PeerIdentity:
    """The authenticated peer of the call being served.

    Raises:
        RuntimeError: Called outside a call admitted by
            :class:`PeerAuthenticationInterceptor`.
    """
    peer = _CURRENT_PEER.get()
    if peer is None:
        raise RuntimeError(
            "current_peer() called outside an authenticated call: "
            "serve this method behind PeerAuthenticationInterceptor"
        )
    return peer


class PeerAuthenticationInterceptor(AroundInterceptor):
    """Admit only calls whose TLS client certificate names a participant."""

    def around(
        self, method: str, request: Any, context: grpc.ServicerContext, behavior: Behavior
    ) -> Any:
        """Run ``behavior`` with the caller's identity set, or abort the call.

        Raises:
            Exception: Whatever ``context.abort_with_status`` raises to end the call.
        """
        # The stubs type auth_context() as str -> bytes; at run time each value is a
        # list of bytes.
        auth_context = cast(Mapping[str, Iterable[bytes]], context.auth_context())
        peer = peer_identity_from_auth_context(auth_context)
        if peer is None:
            context.abort_with_status(
                to_rpc_status(
                    unauthenticated(
                        "PEER_IDENTITY_MISSING",
                        f"{method} needs a mutual-TLS client certificate whose URI subject "
                        "alternative name is the caller's participant id",
                    )
                )
            )
        token = _CURRENT_PEER.set(peer)
        try:
            result = behavior(request, context)
        finally:
            _CURRENT_PEER.reset(token)
        if isinstance(result, Iterator):
            return _with_peer(peer, result)
        return result


def _with_peer(peer: PeerIdentity, responses: Iterator[Any]) -> Iterator[Any]:
    """Yield from a streaming response with ``peer`` set while each item is produced.

    The variable is set and reset around each ``next`` rather than across ``yield``,
    so an abandoned stream never leaves it set on a pool thread.
    """
    while True:
        token = _CURRENT_PEER.set(peer)
        try:
            item = next(responses)
        except StopIteration:
            return
        finally:
            _CURRENT_PEER.reset(token)
        yield item

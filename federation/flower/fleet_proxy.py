"""The only door to an aggregator's SuperLink: its Fleet API, and nothing else.

Flower 1.42 serves the Fleet API (for SuperNodes), the Control API (register keys,
start and stop runs, read logs) and the runtime APIs on one HTTPS port, and the
open-source Control API has no authentication. A SuperLink reachable by cities would
let any of them register keys or start runs. So the node binds the SuperLink to
loopback and puts this proxy on the peer-facing Fleet address: it terminates TLS with
the node's certificate and forwards only ``/v1/fleet/...`` requests (which Flower
authenticates with the SuperNode's key); every other path is answered 404 and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from federation.flower.process import FlowerProcessError, free_port

_log = logging.getLogger(__name__)

FLEET_PREFIX = "/v1/fleet/"
"""The only paths forwarded."""

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


def _app(upstream: str, ca: Path) -> Starlette:
    context = ssl.create_default_context(cafile=str(ca))
    # Loopback hop to our own SuperLink: its certificate must chain to the bundle, but it
    # need not name 127.0.0.1 (a production certificate names the public host).
    context.check_hostname = False
    client = httpx.AsyncClient(base_url=upstream, verify=context, timeout=120.0)

    async def forward(request: Request) -> Response:
        path = request.url.path
        if not path.startswith(FLEET_PREFIX) or ".." in path:
            _log.warning("fleet proxy refused %s %s from %s", request.method, path, request.client)
            return Response("not found", status_code=404)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.body()
        try:
            answer = await client.request(
                request.method, path, params=request.query_params, content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            _log.warning("fleet proxy: SuperLink unreachable: %s", exc)
            return Response("SuperLink unavailable", status_code=503)
        out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
        out.pop("content-encoding", None)  # httpx decoded the body
        return Response(answer.content, status_code=answer.status_code, headers=out)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


class FleetProxy:
    """An HTTPS listener forwarding the Fleet API to a SuperLink on loopback."""

    def __init__(
        self,
        *,
        listen_host: str,
        listen_port: int,
        upstream: str,
        cert: Path,
        key: Path,
        ca: Path,
        start_timeout: float = 30.0,
    ) -> None:
        """Start serving in a background thread.

        Args:
            listen_host: Interface for cities (the aggregator's Fleet address).
            listen_port: Port; 0 picks a free one.
            upstream: ``https://127.0.0.1:PORT`` of the SuperLink.
            cert: The node's certificate (PEM), presented to SuperNodes.
            key: Its private key.
            ca: The federation trust bundle (the SuperLink's certificate chains to it).
            start_timeout: Seconds to wait for the listener.

        Raises:
            FlowerProcessError: the listener did not start.
        """
        self.host = listen_host
        self.port = listen_port or free_port(listen_host)
        config = uvicorn.Config(
            _app(upstream, ca),
            host=listen_host,
            port=self.port,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()), name="fleet-proxy", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise FlowerProcessError(
                    f"the Fleet proxy did not start on {listen_host}:{self.port}"
                )
            time.sleep(0.05)

    @property
    def address(self) -> str:
        """``host:port`` cities connect their SuperNodes to."""
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop listening."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

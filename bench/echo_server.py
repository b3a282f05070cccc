"""Baseline server for the benchmarks: a bare gRPC unary echo plus health, nothing else.

Usage: python bench/echo_server.py PORT_FILE [CERT KEY CA]. With TLS files it serves
mutual TLS exactly as a node's protocol port does; without, plaintext. It writes its
bound port to PORT_FILE and runs until SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ECHO_METHOD = "/bench.Echo/Echo"


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def main() -> None:
    port_file = Path(sys.argv[1])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    if len(sys.argv) == 5:
        cert, key, ca = (Path(p).read_bytes() for p in sys.argv[2:5])
        credentials = grpc.ssl_server_credentials([(key, cert)], ca, require_client_auth=True)
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    port_file.write_text(str(port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()

"""Foundation benchmarks: node start-to-SERVING, and catalog requests/s over mutual TLS.

Each figure is measured side by side with a baseline in the same run and reported
as a ratio:
- start: a node process (``hanse node start``) against a bare gRPC health server
  process (``bench/echo_server.py``), both timed from spawn to a SERVING health answer;
- throughput: ``GetCatalog`` on a city node's protocol port, called by a peer over
  mutual TLS, against a bare unary echo over the same mutual TLS and over plaintext;
  plus the researcher's path (management API -> its node -> peer over mTLS).

Run: ``.venv/bin/python bench/foundation.py`` (writes the table into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from measure import measure_rate, spawn_echo, start_researcher, write_section  # noqa: E402

from connector.identity import TLSFiles, channel_credentials, init_ca, issue_certificate, load_tls  # noqa: E402
from connector.v1 import catalog_protocol_pb2, catalog_protocol_pb2_grpc, peer_management_pb2  # noqa: E402
from node.setup import NodeInit  # noqa: E402
from node.supervisor import start_node  # noqa: E402

MARK_BEGIN = "<!-- bench:foundation:begin -->"
MARK_END = "<!-- bench:foundation:end -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5, help="node starts to time")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per throughput cell")
    parser.add_argument("--write", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(
        dir=REPO / ".tools" if (REPO / ".tools").is_dir() else None
    ) as raw:
        work = Path(raw)
        init_ca(work / "pki")
        city_cfg = NodeInit(
            name="city-a",
            pki_dir=work / "pki",
            out_dir=work / "city-a",
            protocol_listen="127.0.0.1:0",
            management_listen="127.0.0.1:0",
            sensors=["107 Quay Street", "Commerce Street West"],
        ).write()
        peer_files = issue_certificate(
            work / "pki", "bench-peer", participant_id="urn:hanse:bench-peer", out_dir=work / "peer"
        )
        peer_tls = load_tls(
            TLSFiles(peer_files.cert, work / "peer" / "bench-peer.key", peer_files.ca)
        )
        tls_args = [str(peer_files.cert), str(work / "peer" / "bench-peer.key"), str(peer_files.ca)]

        # Start-to-SERVING, alternating node and baseline.
        node_starts, echo_starts = [], []
        for index in range(args.starts):
            began = time.perf_counter()
            node = start_node(city_cfg.path, work / f"start-{index}.log")
            node_starts.append(time.perf_counter() - began)
            node.stop()
            echo, _address, seconds = spawn_echo(work, [])
            echo_starts.append(seconds)
            echo.terminate()
            echo.wait(20)

        city = start_node(city_cfg.path, work / "city.log")
        researcher = start_researcher(work, city)
        echo_tls, echo_tls_address, _ = spawn_echo(work, tls_args)
        echo_plain, echo_plain_address, _ = spawn_echo(work, [])
        rows: list[tuple[str, int, float, float, float]] = []
        try:
            credentials = channel_credentials(peer_tls)
            catalog_channel = grpc.secure_channel(city.protocol, credentials)
            catalog_stub = catalog_protocol_pb2_grpc.CatalogProtocolServiceStub(catalog_channel)
            catalog_request = catalog_protocol_pb2.GetCatalogRequest()
            tls_channel = grpc.secure_channel(echo_tls_address, credentials)
            plain_channel = grpc.insecure_channel(echo_plain_address)
            payload = catalog_stub.GetCatalog(catalog_request, timeout=10).SerializeToString()
            echo_tls_call = tls_channel.unary_unary("/bench.Echo/Echo")
            echo_plain_call = plain_channel.unary_unary("/bench.Echo/Echo")
            with researcher.client() as client:
                through = peer_management_pb2.GetPeerCatalogRequest(peer="city-a")
                cells: dict[str, Callable[[], object]] = {
                    "GetCatalog, peer -> city, mutual TLS": lambda: catalog_stub.GetCatalog(
                        catalog_request, timeout=10
                    ),
                    "echo (same reply size), mutual TLS": lambda: echo_tls_call(
                        payload, timeout=10
                    ),
                    "echo (same reply size), plaintext": lambda: echo_plain_call(
                        payload, timeout=10
                    ),
                    "GetPeerCatalog, CLI path: management -> node -> peer": lambda: client.call(
                        client.peers.GetPeerCatalog, through
                    ),
                }
                for concurrency in (1, 8):
                    for label, call in cells.items():
                        rate, p50, p99 = measure_rate(call, concurrency, args.seconds)
                        rows.append((label, concurrency, rate, p50, p99))
                        print(
                            f"{label:55} c={concurrency:2} {rate:8.0f}/s p50 {p50:6.2f} ms p99 {p99:6.2f} ms",
                            flush=True,
                        )
        finally:
            for process in (echo_tls, echo_plain):
                process.terminate()
                process.wait(20)
            researcher.stop()
            city.stop()

    node_start = statistics.median(node_starts)
    echo_start = statistics.median(echo_starts)
    by = {(label, c): rate for label, c, rate, _p50, _p99 in rows}
    lines = [
        MARK_BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}; command: "
        "`.venv/bin/python bench/foundation.py`.",
        "",
        f"### Node start to SERVING (median of {args.starts}, spawn to a SERVING health answer)",
        "",
        "| process | seconds | ratio to baseline |",
        "| --- | ---: | ---: |",
        f"| `hanse node start` (2 datasets, SQLite, migrations, mTLS + management + metrics) | {node_start:.2f} | {node_start / echo_start:.1f}x |",
        f"| baseline: bare gRPC health server process | {echo_start:.2f} | 1.0x |",
        "",
        f"### Catalog requests per second over mutual TLS ({args.seconds:.0f} s per cell)",
        "",
        "| call | concurrency | calls/s | p50 ms | p99 ms | ratio to mTLS echo |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, concurrency, rate, p50, p99 in rows:
        base = by[("echo (same reply size), mutual TLS", concurrency)]
        lines.append(
            f"| {label} | {concurrency} | {rate:.0f} | {p50:.2f} | {p99:.2f} | {rate / base:.2f} |"
        )
    lines += ["", MARK_END]
    write_section(
        args.write,
        MARK_BEGIN,
        MARK_END,
        "Foundation: node start and catalog throughput",
        "\n".join(lines),
    )


if __name__ == "__main__":
    main()

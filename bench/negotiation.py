"""Negotiation benchmark: complete contract negotiations per second between two nodes.

A city node (one dataset, one auto-agree offer) and a researcher node (peer: the city)
run as real processes on loopback, each with its own SQLite database, talking mutual
TLS. For each concurrency, worker threads repeat for a fixed time: ``StartNegotiation``
on the researcher's management API, then ``WatchManagedNegotiation`` (a stream of
the negotiation's changes) until the negotiation is ``FINALIZED``; with
``--poll-ms``, ``GetManagedNegotiation`` every few milliseconds instead. Latency is
start to the first message that shows ``FINALIZED``; the nodes' own timestamps
(create to FINALIZED) are reported beside it.

Baseline, in the same run and over the same mutual TLS: a bare unary gRPC ping-pong
(``bench/echo_server.py`` with a peer certificate, as ``bench/foundation.py`` uses).
The goal compares negotiations/s with the echo rate divided by the number of peer
round trips a negotiation needs; those round trips are counted from the nodes'
protocol-API RPC counters, not assumed.

Run: ``.venv/bin/python bench/negotiation.py`` (writes the table into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from measure import (  # noqa: E402
    measure_rate,
    spawn_echo,
    start_city,
    start_researcher,
    write_section,
)

from connector.identity import TLSFiles, channel_credentials, init_ca, issue_certificate, load_tls  # noqa: E402
from connector.interceptors.admin import bearer_metadata  # noqa: E402
from connector.v1 import negotiation_management_pb2 as pb  # noqa: E402
from node.client import NodeClient  # noqa: E402
from node.sample_data import sensor_dataset_id  # noqa: E402
from node.supervisor import RunningNode  # noqa: E402

MARK_BEGIN = "<!-- bench:negotiation:begin -->"
MARK_END = "<!-- bench:negotiation:end -->"

SENSOR = "107 Quay Street"
DATASET = sensor_dataset_id(SENSOR)
USAGE = '{"purpose": "research"}'
DSP_ROUND_TRIPS = 4
"""DSP messages of a complete negotiation, each one peer round trip: request,
agreement, verification, finalized (the issue's divisor)."""
GOAL_RATE = 300.0
GOAL_RATIO = 0.25
CONCURRENCY = (1, 16)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Cell:
    """One concurrency's negotiation figures."""

    concurrency: int
    completed: int = 0
    failed: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    """Client side: StartNegotiation sent -> FINALIZED first seen (seconds)."""
    engine: list[float] = field(default_factory=list)
    """Node side: record created -> FINALIZED saved (seconds, the researcher's timestamps)."""
    polls: int = 0
    """Watch messages (or polls) the client received."""
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds used during the cell, by process."""
    protocol_calls: Counter[str] = field(default_factory=Counter)
    """Protocol-API RPCs handled by both nodes during the cell, by method."""
    handler_seconds: dict[str, float] = field(default_factory=dict)
    """Summed handling time of those RPCs (node side), by node and method."""

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0

    def p(self, values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} ([0-9.eE+-]+)$")


def _scrape(node: RunningNode) -> dict[tuple[str, str, str], float]:
    """The node's RPC counters: (metric, api, method) -> value, status codes summed."""
    url = f"http://{node.endpoints.metrics}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[tuple[str, str, str], float] = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if not found or found[1] not in ("hanse_rpc_calls_total", "hanse_rpc_duration_seconds_sum"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found[2]))
        key = (found[1], labels.get("api", ""), labels.get("method", "").rpartition("/")[2])
        out[key] = out.get(key, 0.0) + float(found[3])
    return out


_METADATA: dict[int, tuple[tuple[str, str], ...]] = {}


def _metadata(client: NodeClient) -> tuple[tuple[str, str], ...]:
    """The admin token metadata for a streaming call (read once per client)."""
    if id(client) not in _METADATA:
        _METADATA[id(client)] = tuple(bearer_metadata(client.config.admin_token()))
    return _METADATA[id(client)]


def _negotiate(client: NodeClient, poll: float, cell: Cell, lock: threading.Lock) -> None:
    began = time.perf_counter()
    started = client.call(
        client.negotiations.StartNegotiation,
        pb.StartNegotiationRequest(peer="city-a", dataset_id=DATASET, usage_json=USAGE),
    ).negotiation
    polls = 0
    current = started
    if poll:
        while True:
            time.sleep(poll)
            current = client.call(
                client.negotiations.GetManagedNegotiation,
                pb.GetManagedNegotiationRequest(id=started.id),
            ).negotiation
            polls += 1
            if current.state in ("FINALIZED", "TERMINATED") or time.perf_counter() - began > 60:
                break
    else:
        # The stream ends after the FINALIZED (or TERMINATED) message, or after 60 s.
        for update in client.negotiations.WatchManagedNegotiation(
            pb.WatchManagedNegotiationRequest(id=started.id),
            timeout=90,
            metadata=_metadata(client),
        ):
            current = update.negotiation
            polls += 1
    seen = time.perf_counter() - began
    engine = (current.update_time.ToNanoseconds() - current.create_time.ToNanoseconds()) / 1e9
    with lock:
        cell.polls += polls
        if current.state == "FINALIZED":
            cell.completed += 1
            cell.latencies.append(seen)
            cell.engine.append(engine)
        else:
            cell.failed += 1
            print(f"  not finalized: {current.id} {current.state} {current.reason}", flush=True)


def _negotiation_cell(
    client: NodeClient,
    concurrency: int,
    seconds: float,
    poll: float,
    nodes: dict[str, RunningNode],
) -> Cell:
    cell = Cell(concurrency)
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker() -> None:
        while time.perf_counter() < stop:
            _negotiate(client, poll, cell, lock)

    pids = {name: node.process.pid for name, node in nodes.items()} | {"bench": os.getpid()}
    cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    metrics_before = {name: _scrape(node) for name, node in nodes.items()}
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cell.elapsed = time.perf_counter() - began
    cell.cpu = {name: _cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    for name, node in nodes.items():
        after = _scrape(node)
        for key, value in after.items():
            metric, api, method = key
            delta = value - metrics_before[name].get(key, 0.0)
            if not delta:
                continue
            if metric == "hanse_rpc_calls_total" and api == "protocol":
                cell.protocol_calls[method] += round(delta)
            if metric == "hanse_rpc_duration_seconds_sum":
                cell.handler_seconds[f"{name} {api} {method}"] = delta
    return cell


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{value:.2f}" for value in load)


def _lookups(cells: list[Cell]) -> float:
    """GetCatalogDataset calls per negotiation, over all cells."""
    done = sum(c.completed for c in cells)
    return sum(c.protocol_calls["GetCatalogDataset"] for c in cells) / max(1, done)


def _print_cell(cell: Cell) -> None:
    n = max(1, cell.completed)
    print(
        f"negotiations c={cell.concurrency:2} {cell.rate:7.1f}/s "
        f"p50 {cell.p(cell.latencies, 0.5):7.1f} ms p99 {cell.p(cell.latencies, 0.99):7.1f} ms "
        f"(node timestamps p50 {cell.p(cell.engine, 0.5):6.1f} ms p99 {cell.p(cell.engine, 0.99):6.1f} ms) "
        f"completed {cell.completed} failed {cell.failed} "
        f"watch messages (or polls)/negotiation {cell.polls / n:.1f}",
        flush=True,
    )
    cpu = ", ".join(f"{k} {v / n * 1000:.1f} ms" for k, v in cell.cpu.items())
    busy = sum(cell.cpu.values()) / cell.elapsed
    print(f"  CPU per negotiation: {cpu}; all processes {busy:.2f} cores busy", flush=True)
    calls = ", ".join(f"{m} {c / n:.2f}" for m, c in sorted(cell.protocol_calls.items()))
    print(
        f"  peer round trips per negotiation: {sum(cell.protocol_calls.values()) / n:.2f} ({calls})"
    )
    for key, value in sorted(cell.handler_seconds.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  handler time {key:60} {value / n * 1000:6.2f} ms per negotiation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per cell")
    parser.add_argument(
        "--poll-ms",
        type=float,
        default=0.0,
        help="poll GetManagedNegotiation at this interval instead of watching (0: watch)",
    )
    parser.add_argument("--write", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    poll = args.poll_ms / 1000
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(
        dir=REPO / ".tools" if (REPO / ".tools").is_dir() else None
    ) as raw:
        work = Path(raw)
        init_ca(work / "pki")
        peer_files = issue_certificate(
            work / "pki", "bench-peer", participant_id="urn:hanse:bench-peer", out_dir=work / "peer"
        )
        peer_key = work / "peer" / "bench-peer.key"
        peer_tls = load_tls(TLSFiles(peer_files.cert, peer_key, peer_files.ca))
        tls_args = [str(peer_files.cert), str(peer_key), str(peer_files.ca)]

        city = start_city(work, [SENSOR])
        researcher = None
        echo = None
        cells: list[Cell] = []
        echoes: dict[int, tuple[float, float, float]] = {}
        echo_cpu: dict[int, float] = {}
        """Concurrency -> CPU seconds per echo call, client and server together."""
        try:
            researcher = start_researcher(work, city)
            echo, echo_address, _ = spawn_echo(work, tls_args)
            nodes = {"city": city, "researcher": researcher}
            with researcher.client() as client:
                # Warm-up: peer channels, identity checks, SQLite caches.
                warm = Cell(0)
                for _ in range(5):
                    _negotiate(client, poll, warm, threading.Lock())
                if warm.failed:
                    raise RuntimeError(f"warm-up negotiations failed; see {work}/*.log")
                finalized = client.call(
                    client.negotiations.ListNegotiations,
                    pb.ListNegotiationsRequest(page_size=1, state="FINALIZED"),
                ).negotiations[0]
                # Ping-pong payload: the size of a finalized negotiation (offer, agreement,
                # both signatures), the largest thing the negotiation moves.
                payload = finalized.SerializeToString()
                channel = grpc.secure_channel(echo_address, channel_credentials(peer_tls))
                echo_call = channel.unary_unary("/bench.Echo/Echo")
                for concurrency in CONCURRENCY:
                    cell = _negotiation_cell(client, concurrency, args.seconds, poll, nodes)
                    cells.append(cell)
                    _print_cell(cell)
                    cpu_before = _cpu_seconds(echo.pid) + _cpu_seconds(os.getpid())
                    timed = time.perf_counter()
                    echoes[concurrency] = measure_rate(
                        lambda: echo_call(payload, timeout=10), concurrency, args.seconds
                    )
                    timed = time.perf_counter() - timed
                    rate, p50, p99 = echoes[concurrency]
                    cpu = _cpu_seconds(echo.pid) + _cpu_seconds(os.getpid()) - cpu_before
                    # Calls: about rate x the whole span (its 20 warm-up calls included).
                    echo_cpu[concurrency] = cpu / (rate * timed) if rate else 0.0
                    print(
                        f"echo mTLS    c={concurrency:2} {rate:7.0f}/s p50 {p50:7.2f} ms "
                        f"p99 {p99:7.2f} ms ({len(payload)} B payload); CPU "
                        f"{echo_cpu[concurrency] * 1000:.2f} ms per call (client + server)",
                        flush=True,
                    )
                channel.close()
        finally:
            if echo is not None:
                echo.terminate()
                echo.wait(20)
            if researcher is not None:
                researcher.stop()
            city.stop()

    load_after = os.getloadavg()
    measured_trips = statistics.mean(
        sum(c.protocol_calls.values()) / max(1, c.completed) for c in cells
    )
    print(
        f"peer round trips per complete negotiation: {DSP_ROUND_TRIPS} DSP messages "
        f"(request, agreement, verification, finalized); measured {measured_trips:.2f} "
        "protocol RPCs including StartNegotiation's GetCatalogDataset lookups "
        f"({_lookups(cells):.3f} per negotiation; answers are kept for a few seconds)"
    )
    rows = []
    verdicts = []
    for cell in cells:
        echo_rate, echo_p50, _echo_p99 = echoes[cell.concurrency]
        ratio = cell.rate / (echo_rate / DSP_ROUND_TRIPS)
        met = cell.rate >= GOAL_RATE or ratio >= GOAL_RATIO
        verdicts.append(met)
        n = max(1, cell.completed)
        rows.append(
            f"| {cell.concurrency} | {cell.rate:.1f} | {cell.p(cell.latencies, 0.5):.1f} | "
            f"{cell.p(cell.latencies, 0.99):.1f} | {cell.p(cell.engine, 0.5):.1f} | "
            f"{cell.p(cell.engine, 0.99):.1f} | {cell.polls / n:.0f} | "
            f"{cell.cpu['city'] / n * 1000:.1f} + {cell.cpu['researcher'] / n * 1000:.1f} + "
            f"{cell.cpu['bench'] / n * 1000:.1f} | "
            f"{echo_rate:.0f} | {echo_p50:.2f} | {echo_cpu[cell.concurrency] * 1000:.2f} | "
            f"{ratio:.3f} | {'yes' if met else 'no'} |"
        )
        print(
            f"c={cell.concurrency:2}: {cell.rate:.1f} negotiations/s / ({echo_rate:.0f} echo/s / "
            f"{DSP_ROUND_TRIPS}) = {ratio:.3f}; goal (>= {GOAL_RATE:.0f}/s or >= {GOAL_RATIO}) "
            f"{'met' if met else 'NOT met'}"
        )
    if args.no_write:
        return

    lines = [
        MARK_BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}; command: "
        f"`.venv/bin/python bench/negotiation.py` ({args.seconds:.0f} s per cell, "
        + (f"polling every {args.poll_ms:g} ms)." if poll else "watching).")
        + f" Load average (1/5/15 min) before {_load(load_before)}, after {_load(load_after)}:"
        " the machine is shared with other work.",
        "",
        "Two node processes on loopback (city: one dataset with an auto-agree offer; "
        "researcher: the city as its peer), SQLite each, mutual TLS between them. A worker "
        "calls `StartNegotiation` on the researcher's management API, then "
        + (
            "`GetManagedNegotiation` until `FINALIZED`; *client* latency is start to the "
            "first poll that sees `FINALIZED`"
            if poll
            else "`WatchManagedNegotiation` (a stream of the negotiation's changes) until "
            "`FINALIZED`; *client* latency is start to the streamed `FINALIZED`"
        )
        + ", *node* latency the researcher's own timestamps (record "
        "created to `FINALIZED` saved). A complete negotiation needs "
        f"**{DSP_ROUND_TRIPS} peer round trips** (request, agreement, verification, "
        "finalized; the nodes' protocol-API counters show "
        f"{measured_trips:.2f} RPCs per negotiation, {_lookups(cells):.3f} of them the "
        "`GetCatalogDataset` lookup of `StartNegotiation`, whose answer the researcher keeps "
        "for 2 s). Baseline in the same run: a "
        "bare unary gRPC echo over the same mutual TLS (`bench/echo_server.py`, peer "
        f"certificate, {len(payload)} B payload: a finalized negotiation's size). "
        f"Ratio = negotiations/s ÷ (echo/s ÷ {DSP_ROUND_TRIPS}); goal: "
        f"≥ {GOAL_RATE:.0f} negotiations/s or ratio ≥ {GOAL_RATIO}.",
        "",
        "| concurrency | negotiations/s | client p50 ms | client p99 ms | node p50 ms | "
        f"node p99 ms | {'polls' if poll else 'watch messages'} per negotiation | "
        "CPU ms per negotiation (city + researcher + client) | "
        "mTLS echo calls/s | echo p50 ms | echo CPU ms per call (client + server) | ratio | "
        "goal met |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| :---: |",
        *rows,
        "",
        f"Goal {'met' if all(verdicts) else 'not met'}"
        + ("" if all(verdicts) else f" ({sum(verdicts)} of {len(verdicts)} concurrencies)")
        + ".",
        "",
        MARK_END,
    ]
    write_section(
        args.write,
        MARK_BEGIN,
        MARK_END,
        "Negotiation: complete negotiations per second",
        "\n".join(lines),
    )


if __name__ == "__main__":
    main()

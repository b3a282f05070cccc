"""What the benchmarks share: the two nodes, the echo baseline, a rate meter, the docs writer."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from node.health import check_health
from node.setup import NodeInit, PeerSpec
from node.supervisor import RunningNode, start_node

REPO = Path(__file__).resolve().parents[1]


def start_city(work: Path, sensors: list[str]) -> RunningNode:
    """A city node (``urn:hanse:city-a``) holding ``sensors``, set up under ``work``.

    ``work / "pki"`` must hold the federation CA (``init_ca``).
    """
    config = NodeInit(
        name="city-a",
        pki_dir=work / "pki",
        out_dir=work / "city-a",
        protocol_listen="127.0.0.1:0",
        management_listen="127.0.0.1:0",
        sensors=sensors,
    ).write()
    return start_node(config.path, work / "city.log")


def start_researcher(work: Path, city: RunningNode) -> RunningNode:
    """A researcher node with ``city`` as its peer ``city-a``, set up under ``work``."""
    config = NodeInit(
        name="researcher",
        pki_dir=work / "pki",
        out_dir=work / "researcher",
        protocol_listen="127.0.0.1:0",
        management_listen="127.0.0.1:0",
        peers=[PeerSpec("city-a", "urn:hanse:city-a", city.protocol)],
    ).write()
    return start_node(config.path, work / "researcher.log")


def spawn_echo(work: Path, tls_args: list[str]) -> tuple[subprocess.Popen[bytes], str, float]:
    port_file = work / f"echo-{time.monotonic_ns()}.port"
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "echo_server.py"), str(port_file), *tls_args]
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text():
            address = f"127.0.0.1:{port_file.read_text()}"
            if not tls_args and check_health(address, timeout=1) == "SERVING":
                return process, address, time.perf_counter() - began
            if tls_args:
                return process, address, time.perf_counter() - began
        time.sleep(0.01)
    process.kill()
    raise RuntimeError("echo server did not start")


def measure_rate(
    call: Callable[[], object], concurrency: int, seconds: float
) -> tuple[float, float, float]:
    """Calls per second, p50 and p99 latency (ms), over ``seconds`` with ``concurrency`` threads."""
    stop = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(concurrency)]

    def worker(index: int) -> None:
        mine = latencies[index]
        while True:
            start = time.perf_counter()
            if start >= stop:
                return
            call()
            mine.append(time.perf_counter() - start)

    for _ in range(20):
        call()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    flat = sorted(x for part in latencies for x in part)
    p50 = flat[len(flat) // 2] * 1000
    p99 = flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1000
    return len(flat) / elapsed, p50, p99


def write_section(path: Path, begin: str, end: str, heading: str, section: str) -> None:
    """Put ``section`` (which starts with ``begin`` and ends with ``end``) into ``path``.

    The text between the markers is replaced; without markers, the section is
    appended under ``heading``.
    """
    document = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if begin in document:
        head, _, rest = document.partition(begin)
        _, _, tail = rest.partition(end)
        document = head + section + tail
    else:
        document = document.rstrip() + f"\n\n## {heading}\n\n" + section + "\n"
    path.write_text(document, encoding="utf-8")
    print(f"written: {path}")

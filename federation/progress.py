"""The aggregator's record of a run, one JSON line per event, for ``hanse train watch``.

Events: ``start`` (the spec), ``round`` (per phase: each city's outcome, metrics,
bytes, and the aggregate), ``end`` (how the run ended). The file is appended and
flushed per line, so a reader may follow it while the run goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROGRESS_FILE = "progress.jsonl"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"


class ProgressWriter:
    """Appends events to ``progress.jsonl`` in a run folder."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / PROGRESS_FILE

    def write(self, event: str, **fields: Any) -> None:
        """Append one event with the current time."""
        line = json.dumps({"event": event, "time": time.time(), **fields}, sort_keys=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()


def read_progress(out_dir: Path) -> Iterator[dict[str, Any]]:
    """The events written so far (a partly written last line is skipped)."""
    path = out_dir / PROGRESS_FILE
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            yield json.loads(line)

"""The process of one ClientApp task: ``python -m node.training.task_process``.

The node's executor starts a process per message its SuperNode receives (see
:mod:`node.training.runner`, which this module runs with the same arguments). Most
of such a process is fixed cost: importing torch, Flower and the node's stores, then
tearing all of it down again at exit. This module trims both, and nothing else:

- the runner is imported with Python's cyclic garbage collector paused (imports
  make millions of objects and no garbage; each collection in between would scan
  them all again), and the imported objects are then frozen out of later
  collections; the collector runs as usual for the message itself;
- once the runner has pushed its reply and its final status, the process ends
  with :func:`end_process`: the exit handlers run (log handlers flush and close)
  and the standard streams are flushed, but the interpreter's teardown of every
  module, which cost more CPU than the message's checks and guard together, is
  skipped. Everything the runner writes (audit log, privacy ledger) is committed
  before it returns; a thread that is not a daemon and still runs makes it exit
  the ordinary way instead.

An exception the runner raises ends the process the ordinary way, with its traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn


def import_runner() -> Callable[[Sequence[str] | None], int]:
    """Import :mod:`node.training.runner` with the garbage collector paused.

    Returns:
        The runner's ``main``.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        from node.training.runner import main
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    return main


def end_process(code: int) -> NoReturn:
    """End this process with ``code`` now: exit handlers and streams, no module teardown.

    Falls back to :func:`sys.exit` (the interpreter's ordinary exit) while a thread
    that is not a daemon still runs, so no work in flight is cut short.
    """
    others = [
        thread
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()
    ]
    if others:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing to lose
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one task as :func:`node.training.runner.main` does; its exit code."""
    return import_runner()(argv)


if __name__ == "__main__":
    end_process(main())

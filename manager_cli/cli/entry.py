"""The console script's first module: a Ctrl-C while managerctl is still starting exits 130
with the same one line as later, instead of a traceback from the middle of an import.

Kept to the standard library's ``os``, ``signal`` and ``sys``, so the window in which Python's
own handler would print a traceback is the interpreter's start-up alone.
"""

from __future__ import annotations

import os
import signal


def _interrupted_while_starting(signum: int, frame: object) -> None:
    # Nothing has been opened yet (no connection, no file written): leaving at once is safe.
    os.write(2, b"managerctl: interrupted\n")
    os._exit(130)


def main() -> None:
    # Only where Ctrl-C is live: a background job started with SIGINT ignored stays so.
    guarded = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if guarded:
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    from .main import main as run

    if guarded:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    run()

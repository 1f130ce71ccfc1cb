"""A spinner on stderr while a command waits (RPC calls, gathers), on a terminal only.

Scripts never see it: when stderr is not a TTY, or NO_COLOR / --no-color is set... the spinner is
simply not shown (NO_COLOR concerns colour, but a script that sets it wants plain output too).
Rich is imported only when the spinner is really shown.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


def _interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


@contextlib.contextmanager
def waiting(message: str, *, enabled: bool = True) -> Iterator[None]:
    """Show ``message`` with a spinner on stderr for the duration of the block."""
    if not enabled or not _interactive():
        yield
        return
    from rich.console import Console

    console = Console(file=sys.stderr, no_color="NO_COLOR" in os.environ)
    with console.status(message, spinner="dots"):
        yield

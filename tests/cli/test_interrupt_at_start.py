"""Ctrl-C while managerctl is still importing exits 130 with its one line, as it does later.

The import of the CLI is held up (a finder that sleeps when it is asked for
``manager_cli.cli.main``), so the signal lands inside it every time, not by timing luck.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

SLOW_START = """\
import sys, time

class Slow:
    def find_spec(self, name, path=None, target=None):
        if name == "manager_cli.cli.main":
            print("importing", flush=True)
            time.sleep(30)
        return None

sys.meta_path.insert(0, Slow())
from manager_cli.cli.entry import main
sys.argv = ["managerctl", "--help"]
main()
"""


def _started(preexec=None) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_START],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "importing\n", process.communicate(timeout=30)
    return process


def test_ctrl_c_during_start_up_is_exit_130_in_one_line() -> None:
    process = _started()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err == "managerctl: interrupted\n"


def test_a_job_started_with_sigint_ignored_keeps_ignoring_it() -> None:
    # A shell's background job: the Ctrl-C of the terminal is not meant for it.
    process = _started(preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    process.send_signal(signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=1.0)
    process.kill()
    process.communicate(timeout=30)

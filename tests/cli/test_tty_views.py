"""The capability views in a real pseudo-terminal (tmux), as an operator sees them (issue 17).

The installed console script runs in a tmux pane of a chosen width; the pane's screen is read
back as text (and with its escape sequences, for what is highlighted). Ctrl-C is a real key
press in the pane, and the exit status is echoed by the shell.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from manager_cli.capabilities import open_store

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")
CINDER = {
    "volume_backend_name": "fake",
    "vendor_name": "Open Source",
    "driver_version": "3.0.0",
    "storage_protocol": "fake",
    "pools": [
        {"pool_name": "fake", "total_capacity_gb": "infinite", "free_capacity_gb": "infinite",
         "allocated_capacity_gb": 0, "provisioned_capacity_gb": 0, "reserved_percentage": 100},
        {"pool_name": "gold", "total_capacity_gb": 1000, "free_capacity_gb": 512.5,
         "allocated_capacity_gb": 12, "provisioned_capacity_gb": 20, "reserved_percentage": 5},
    ],
    "filter_function": None,
    "goodness_function": None,
}  # fmt: skip


def hostinfo(cpus: int) -> dict[str, Any]:
    return {
        "cpu_count": cpus,
        "load": {"1m": 0.52, "5m": 0.61, "15m": 0.7},
        "memory_total_mb": 15923,
        "memory_available_mb": 11002,
        "disk_total_gb": 467.3,
        "disk_free_gb": 201.9,
        "platform": "linux",
        "python_version": "3.11.7",
        "hostname": "web01",
    }


@pytest.fixture(autouse=True)
def _tmux() -> None:
    # A real terminal or a failure, never a silent skip (scripts/test.sh installs tmux).
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (apt-get install -y tmux)", pytrace=False)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'caps.sqlite'}"
    with open_store(url) as store:
        store.record_capabilities("hostinfo", "web01.example.org", [hostinfo(8)])
        store.record_capabilities(
            "hostinfo", "web02.example.org", [hostinfo(4)], received_at=time.time() - 400
        )
        store.record_capabilities("volume", "peerhost@fake", [CINDER])
        store.record_service({"service": "hostinfo", "host": "web01.example.org", "topic": "x"})
    return url


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``pane(width, *args, store_url=)``: managerctl ARGS in a tmux pane; returns a Pane."""
    sessions: list[str] = []

    class Pane:
        def __init__(self, name: str) -> None:
            self.name = name

        def screen(self, escapes: bool = False) -> str:
            command = ["tmux", "capture-pane", "-p", "-t", self.name]
            if escapes:
                command.insert(2, "-e")
            return subprocess.run(command, capture_output=True, text=True, check=True).stdout

        def wait_for(self, text: str, timeout: float = 20.0) -> str:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                screen = self.screen()
                if text in screen:
                    return screen
                time.sleep(0.2)
            pytest.fail(f"{text!r} never appeared on the screen:\n{self.screen()}")

        def keys(self, *keys: str) -> None:
            subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def start(width: int, *args: str, store_url: str) -> Pane:
        name = f"caps-tty-{secrets.token_hex(4)}"
        env = {
            "MANAGERCTL_CAPABILITIES_STORE": store_url,
            "TERM": "xterm-256color",
            "XDG_STATE_HOME": str(tmp_path / "state"),
        }
        line = " ".join(
            [*(f"{k}={shlex.quote(v)}" for k, v in env.items()), "exec", "env", "-u", "NO_COLOR",
             shlex.quote(MANAGERCTL), *map(shlex.quote, args)]
        )  # fmt: skip
        # A shell that says how the command ended, then stays so the screen can be read.
        script = f"sh -c {shlex.quote(line)}; echo EXIT=$?; sleep 60"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", name, "-x", str(width), "-y", "40", script],
            check=True,
        )
        sessions.append(name)
        return Pane(name)

    yield start
    for name in sessions:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


@pytest.mark.parametrize("width", [80, 140])
def test_the_table_fits_the_terminal_and_names_what_it_left_out(
    pane: Any, store_url: str, width: int
) -> None:
    shown = pane(width, "capabilities", "show", store_url=store_url)
    screen = shown.wait_for("EXIT=0")
    lines = [line for line in screen.splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= width
    for host in ("web01.example.org", "web02.example.org", "peerhost@fake#fake"):
        assert any(host in line for line in lines), screen  # never wrapped
    assert "left out to fit" in screen.replace("\n", "")
    assert re.search(r"│ stale │\s+6m │", screen)  # the age relative, the stale row marked


def test_each_service_gets_a_table_of_its_own_on_a_terminal(
    pane: Any, store_url: str, tmp_path: Path
) -> None:
    screen = pane(140, "capabilities", "show", store_url=store_url).wait_for("EXIT=0")
    lines = screen.splitlines()
    # A title line a service, then its table: hostinfo's keys are not crowded out by the
    # volume's pools, and no table repeats the service in a column.
    titles = [i for i, line in enumerate(lines) if line.strip() in ("hostinfo", "volume")]
    assert [lines[i].strip() for i in titles] == ["hostinfo", "volume"], screen
    hostinfo_table = "\n".join(lines[titles[0] : titles[1]])
    assert "cpu_count" in hostinfo_table and "pools." not in hostinfo_table, screen
    assert "pools.free_capacity_gb" in "\n".join(lines[titles[1] :]), screen
    assert not re.search(r"┃ service\s+┃", screen), screen
    # A pipe keeps one table with the service column, for scripts.
    piped = subprocess.run(
        [MANAGERCTL, "capabilities", "show", "--store-url", store_url],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    header, *rows = piped.stdout.splitlines()
    assert header.split()[:2] == ["service", "host"], piped.stdout
    assert {row.split()[0] for row in rows} == {"hostinfo", "volume"}, piped.stdout


def test_a_card_of_one_host_with_its_pools(pane: Any, store_url: str) -> None:
    card = pane(120, "capabilities", "show", "peerhost@fake", store_url=store_url)
    screen = card.wait_for("EXIT=0")
    assert "volume on peerhost@fake: fresh" in screen
    assert re.search(r"vendor_name\s+Open Source", screen)
    assert "pools" in screen and re.search(r"│ gold\s+│ 1000", screen)
    host = pane(120, "capabilities", "show", "web01.example.org", store_url=store_url)
    screen = host.wait_for("EXIT=0")
    assert re.search(r"load:\s*\n\s+1m\s+0\.52", screen)  # grouped by dotted prefix


@pytest.mark.parametrize("command", [("capabilities", "show"), ("services", "list")])
def test_watch_refreshes_highlights_changes_and_stops_on_ctrl_c(
    pane: Any, store_url: str, command: tuple[str, ...]
) -> None:
    columns = ("-c", "service", "-c", "host", "-c", "state", "-c", "cpu_count")
    chosen = columns if command[0] == "capabilities" else ()
    watching = pane(140, *command, "--watch", "0.5", *chosen, store_url=store_url)
    watching.wait_for("Ctrl-C to stop")
    first = watching.screen()
    with open_store(store_url) as store:
        store.record_capabilities("hostinfo", "web01.example.org", [hostinfo(16)])
        store.record_service({"service": "hostinfo", "host": "web09.example.org", "topic": "x"})
    changed = "16" if command[0] == "capabilities" else "web09.example.org"
    watching.wait_for(changed if command[0] == "services" else "│        16 │")

    time.sleep(0.3)
    highlighted = watching.screen(escapes=True)
    # reverse video (7) on the changed cell, and the same view redrawn in place, not appended
    assert re.search(r"\x1b\[[0-9;]*7[0-9;]*m[^\x1b]*" + re.escape(changed), highlighted), (
        highlighted
    )
    assert watching.screen().count("Ctrl-C to stop") == 1 and first.count("Ctrl-C to stop") == 1
    watching.keys("C-c")
    screen = watching.wait_for("EXIT=")
    assert "EXIT=130" in screen and "Traceback" not in screen

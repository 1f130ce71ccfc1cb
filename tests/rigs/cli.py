"""Driving the installed console script against a rig: one-shot commands and ``serve``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env.pop("NO_COLOR", None)
    env["MANAGERCTL_PERIODIC_FUZZY_DELAY"] = "0"
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, step: float = 0.05) -> Any:
    """Poll ``predicate`` until it is truthy or ``timeout`` passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def pika_connection(url: str, **parameters: Any) -> Any:
    """A plain pika connection to the first host of a transport URL (to look or set up);
    ``parameters``: more of pika's ConnectionParameters (e.g. heartbeat=0)."""
    import pika

    from manager_cli.rpc.transport import parse_transport_url

    host = parse_transport_url(url).hosts[0]
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host.hostname,
            host.port,
            credentials=pika.PlainCredentials(host.username, host.password),
            **parameters,
        )
    )


def write_config(path: Path, url: str, **rabbit: object) -> Path:
    """A config file with transport_url and ``[oslo_messaging_rabbit]`` options."""
    lines = ["[DEFAULT]", f"transport_url = {url}", "", "[oslo_messaging_rabbit]"]
    for key, value in rabbit.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        lines.append(f"{key} = {value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def managerctl(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MANAGERCTL, *args],
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class Served:
    """One ``managerctl serve`` subprocess in its own process group, with its log file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [MANAGERCTL, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 20.0, *, after: int = 0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log()[after:]:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.2,
    *,
    what: str | None = None,
) -> Any:
    """``predicate()``'s first true value, asked every ``interval`` s; the test fails after
    ``timeout`` s, naming ``what`` (or the predicate) it waited for (wait_for returns the
    last value instead, for tests that assert on it themselves)."""
    import pytest

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g}s: {what or predicate.__name__}")
        time.sleep(interval)

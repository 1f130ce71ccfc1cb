"""Helpers for the tap and metrics tests: console-script subprocesses on the session broker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pika.exceptions
from rigs import cli as rigs_cli
from rigs.cli import MANAGERCTL, pika_connection, unique, wait_for
from rigs.cli import managerctl as managerctl  # the tests take it from here

SENDER = Path(__file__).parent / "tap_peers" / "oslo_sender.py"


def clean_env(url: str, **extra: str) -> dict[str, str]:
    return rigs_cli.clean_env(MANAGERCTL_TRANSPORT_URL=url, PYTHONWARNINGS="ignore", **extra)


def oslo_send(url: str, exchange: str, topic: str, kind: str, *extra: str) -> str:
    """Run the real oslo.messaging sender; its stdout (the replies of calls)."""
    done = subprocess.run(
        [sys.executable, str(SENDER), url, exchange, topic, kind, *extra],
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Background:
    """A managerctl subprocess (tap or serve) with its output in files."""

    def __init__(self, args: list[str], env: dict[str, str], directory: Path, name: str):
        self.out_path = directory / f"{name}.out"
        self.err_path = directory / f"{name}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [MANAGERCTL, *args],
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def lines(self) -> list[str]:
        return [line for line in self.out().splitlines() if line.strip()]

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]

    def wait_for_err(self, text: str, timeout: float = 20.0) -> bool:
        return bool(wait_for(lambda: text in self.err() or self.proc.poll() is not None, timeout))

    def send(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)  # a paused one must see the signal
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return self.proc.returncode


def start_tap(topic: str, env: dict[str, str], directory: Path, *args: str) -> Background:
    tap = Background(["tap", "--topic", topic, *args], env, directory, unique("tap"))
    assert tap.wait_for_err("tapping "), f"tap did not start: {tap.err()}"
    assert tap.proc.poll() is None, tap.err()
    return tap


def start_serve(
    name: str, host: str, topic: str, env: dict[str, str], directory: Path, *args: str
) -> Background:
    served = Background(
        ["serve", name, "--host", host, "--topic", topic, *args], env, directory, f"serve-{host}"
    )
    assert served.wait_for_err("consuming "), f"serve did not start: {served.err()}"
    assert served.proc.poll() is None, served.err()
    return served


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` as {'name{labels}': value} (labels as printed, sorted by the client)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def queue_state(url: str, name: str) -> tuple[int, int] | None:
    """(messages, consumers) of a queue, or None when it does not exist."""
    with contextlib.closing(pika_connection(url)) as connection:
        try:
            frame = connection.channel().queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return None
            raise
        return frame.method.message_count, frame.method.consumer_count


def exchange_exists(url: str, name: str) -> bool:
    with contextlib.closing(pika_connection(url)) as connection:
        try:
            connection.channel().exchange_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return False
            raise
        return True


def delete_queues(url: str, names: list[str]) -> None:
    with contextlib.suppress(Exception), contextlib.closing(pika_connection(url)) as connection:
        for name in names:
            channel = connection.channel()
            with contextlib.suppress(Exception):
                channel.queue_delete(name)


def tap_queues(node: Any) -> list[str]:
    return [
        q["name"] for q in node.list_queues(("name",)) if q["name"].startswith("managerctl-tap-")
    ]

"""Helpers for the interop tests: oslo peers in subprocesses, polling, queue clean-up.

Imported by ``conftest.py`` and the test modules (``tests/interop`` is on sys.path there).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pika.exceptions
from rigs.cli import wait_until as shared_wait_until
from rigs.rabbitmq import RabbitMQNode

PEERS_DIR = Path(__file__).parent / "peers"
PEER_SCRIPT = PEERS_DIR / "oslo_server.py"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def unique_topic(prefix: str = "interop") -> str:
    """A topic no other test module uses (so leftover queues never cross-talk)."""
    return f"{prefix}_{secrets.token_hex(4)}"


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; return it, or fail the test
    (rigs.cli.wait_until, with the interop tests' shorter defaults)."""
    return shared_wait_until(predicate, timeout, interval)


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


# ---------------------------------------------------------------------------------------------
# oslo server peers in subprocesses


@dataclass
class OsloPeer:
    """One running ``oslo_server.py``: a real oslo.messaging RPC server."""

    topic: str
    server: str
    exchange: str
    endpoints: str
    rpc_ping: bool
    record_file: Path
    log_file: Path
    proc: subprocess.Popen | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def records(self) -> list[str]:
        """The values ``record`` wrote, in order."""
        prefix = f"{self.server} "
        return [
            line[len(prefix) :] for line in read_lines(self.record_file) if line.startswith(prefix)
        ]

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(read_lines(self.log_file)[-lines:])

    def start(self, url: str) -> None:
        cmd = [
            sys.executable,
            str(PEER_SCRIPT),
            url,
            self.topic,
            self.server,
            self.exchange,
            self.endpoints,
            "--record-file",
            str(self.record_file),
        ]
        if self.rpc_ping:
            cmd.append("--rpc-ping")
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=str(PEERS_DIR),
                # A session of its own: the peer is stopped by its process group, and oslo's
                # queue manager reads /proc/<process group>/stat, which is gone when the group
                # it inherited has lost its leader (oslo then dies at start).
                start_new_session=True,
            )
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == b"READY":
                self._ready.set()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"oslo peer {self.server} exited with {self.proc.returncode} before READY:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"oslo peer {self.server} not READY within {timeout:g}s:\n{self.log_tail()}"
                )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (a clean oslo stop: its fanout queue is deleted), then SIGKILL."""
        self._signal_and_wait(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: a crashed server; its queues stay behind, as in production."""
        self._signal_and_wait(signal.SIGKILL)

    def _signal_and_wait(self, sig: int) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for current in (sig, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(current)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
                break
            except subprocess.TimeoutExpired:
                continue
        if proc.stdout is not None:
            proc.stdout.close()


def delete_queues(node: RabbitMQNode, prefixes: set[str] | list[str]) -> None:
    """Delete every queue named ``p``, ``p.*`` or ``p_*`` for a ``p`` in ``prefixes``."""
    if not prefixes:
        return
    delete_queue_names(
        node,
        [
            q["name"]
            for q in node.list_queues(("name",))
            if any(q["name"] == p or q["name"].startswith((p + ".", p + "_")) for p in prefixes)
        ],
    )


def delete_queue_names(node: RabbitMQNode, names: list[str]) -> None:
    """Delete these queues (missing ones are fine)."""
    if not names:
        return
    connection = pika.BlockingConnection(pika.URLParameters(node.amqp_url))
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------------
# in-process oslo client transport


@dataclass
class OsloTransport:
    """An oslo.messaging RPC transport for one test module."""

    transport: object
    url: str

    def client(self, topic: str, *, server: str | None = None, timeout: float = 10, **target):
        import oslo_messaging

        return oslo_messaging.get_rpc_client(
            self.transport,
            oslo_messaging.Target(topic=topic, server=server, **target),
            timeout=timeout,
        )

    @property
    def reply_queue(self) -> str | None:
        """The reply queue oslo declared (private attribute of the rabbit driver, 18.x)."""
        return getattr(getattr(self.transport, "_driver", None), "_reply_q", None)


def queue_consumers(node: RabbitMQNode, name: str) -> int | None:
    """The consumer count of queue ``name`` (a passive declare), or None if it does not exist.

    Much faster than ``rabbitmqctl list_queues``, which starts an Erlang VM each time.
    """
    connection = pika.BlockingConnection(pika.URLParameters(node.amqp_url))
    try:
        frame = connection.channel().queue_declare(name, passive=True)
        return frame.method.consumer_count
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return None
        raise
    finally:
        if connection.is_open:
            connection.close()

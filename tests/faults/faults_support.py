"""Helpers of the fault suite: the console script as a subprocess, served managers, raw AMQP.

Every process the suite starts carries ``MANAGERCTL_FAULTS_OWNER=<pid of pytest>`` in its
environment, so the leak check (conftest.py) finds any left behind, whoever started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rigs import cli as rigs_cli
from rigs.cli import wait_for as wait_for  # the fault tests take it from here

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")
OWNER_VARIABLE = "MANAGERCTL_FAULTS_OWNER"
OWNER_MARK = f"{OWNER_VARIABLE}={os.getpid()}"
# Reconnect within a second, not oslo's up-to-30 s backoff, so a test need not wait it out.
FAST_RECONNECT = "?rabbit_retry_interval=0.3&rabbit_retry_backoff=0.3&rabbit_interval_max=1"

COUNTER_MODULE = '''\
"""A manager whose every run leaves a trace: a repeat or a loss shows in the files."""

import os
import time

from manager_cli.manager import Manager


class Counter(Manager):
    TOPIC = os.environ["COUNTER_TOPIC"]

    def increment(self, context, token, delay=0.0):
        with open(os.environ["COUNTER_FILE"] + ".started", "a") as started:
            started.write(token + "\\n")
        time.sleep(delay)
        with open(os.environ["COUNTER_FILE"], "a") as counted:
            counted.write(token + "\\n")
        return token
'''


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a managerctl subprocess: no MANAGERCTL_* of ours, the owner mark."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env.pop("NO_COLOR", None)
    env[OWNER_VARIABLE] = str(os.getpid())
    env.update(extra)
    return env


@dataclass
class Run:
    """A finished managerctl command: its exit code, output and wall-clock time."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    def __str__(self) -> str:
        return (
            f"managerctl {' '.join(self.args)} -> {self.returncode} in {self.elapsed:.2f}s\n"
            f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}"
        )

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def managerctl(*args: str, env: dict[str, str], timeout: float = 60) -> Run:
    """Run the installed console script, as a runbook would; never hangs past ``timeout``."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [MANAGERCTL, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n<killed by the test after {timeout}s>"
    return Run(args, proc.returncode, out, err, time.monotonic() - started)


def start_managerctl(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """Start a managerctl command in the background (stdout and stderr piped, text)."""
    return subprocess.Popen(
        [MANAGERCTL, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rss_kib(pid: int) -> int:
    """Resident set size of a process (VmRSS from /proc/PID/status), in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class Served:
    """One ``managerctl serve`` subprocess, its log, and the commands aimed at it."""

    def __init__(
        self, proc: subprocess.Popen, log_path: Path, host: str, topic: str, env: dict[str, str]
    ) -> None:
        self.proc = proc
        self.log_path = log_path
        self.host = host
        self.topic = topic
        self.env = env

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 20.0, after: int = 0) -> bool:
        return bool(
            wait_for(lambda: text in self.log()[after:] or self.proc.poll() is not None, timeout)
            and text in self.log()[after:]
        )

    @property
    def queues(self) -> list[str]:
        """The queues it consumes: topic, topic.host and (from its log) its fanout queue.

        A service that dies without a clean stop leaves its fanout queue behind (x-expires
        keeps it half an hour), so clean-up deletes it by name.
        """
        names = [self.topic, f"{self.topic}.{self.host}"]
        for line in self.log().splitlines():
            if " consuming " in line:
                names += [n for n in line.split(" consuming ", 1)[1].split(", ") if "_fanout_" in n]
        return sorted(set(names))

    def run(self, *args: str, timeout: float = 60) -> Run:
        """A managerctl command aimed at this service's topic."""
        return managerctl(*args, "--topic", self.topic, env=self.env, timeout=timeout)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def serve(
    name: str,
    *,
    url: str,
    exchange: str,
    log_dir: Path,
    host: str | None = None,
    topic: str | None = None,
    env: dict[str, str] | None = None,
) -> Served:
    """Start ``managerctl serve NAME`` and wait until it consumes its queues.

    Periodic tasks and state reports are off: they would fan out to ``scheduler_fanout`` and
    leave that exchange behind on a broker where nobody collects.
    """
    host = host or unique("h")
    topic = topic or unique("faults")
    full_env = clean_env(
        MANAGERCTL_TRANSPORT_URL=url,
        MANAGERCTL_CONTROL_EXCHANGE=exchange,
        MANAGERCTL_PERIODIC_ENABLE="false",
        MANAGERCTL_REPORT_INTERVAL="0",
        XDG_STATE_HOME=str(log_dir / "state"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(log_dir), os.environ.get("PYTHONPATH")])),
        **(env or {}),
    )
    log_path = log_dir / f"serve-{host}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [MANAGERCTL, "serve", name, "--host", host, "--topic", topic],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = Served(proc, log_path, host, topic, full_env)
    if not served.wait_for_log("consuming ", timeout=30):
        with contextlib.suppress(Exception):
            served.stop()
        raise AssertionError(f"managerctl serve {name} did not start:\n{served.log()}")
    return served


# ---------------------------------------------------------------------------
# Raw AMQP, for set-up and clean-up the code under test must not do for us


def pika_connection(url: str) -> Any:
    return rigs_cli.pika_connection(url, heartbeat=0)


def delete_topology(url: str, queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> None:
    """Delete queues and exchanges over AMQP (rabbitmqctl costs a second or more per call)."""
    with contextlib.closing(pika_connection(url)) as connection:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                channel = connection.channel()
                with contextlib.suppress(Exception):
                    if kind == "queue":
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                with contextlib.suppress(Exception):
                    channel.close()


def queue_state(url: str, name: str) -> tuple[int, int] | None:
    """(messages ready, consumers) of a queue by a passive declare; None if it does not exist."""
    import pika.exceptions

    with contextlib.closing(pika_connection(url)) as connection:
        channel = connection.channel()
        try:
            frame = channel.queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return None
        return frame.method.message_count, frame.method.consumer_count

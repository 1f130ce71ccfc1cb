"""Fixtures of the fault suite: a fault proxy, a private broker to stop, and a leak check.

Every module here is checked at its end: the session broker has the same queues and exchanges
as when the module started, no process the suite started is still running, and no private
broker node (``managerctl-test-faults-*``) is left. Tests that stop a broker use a private,
module-scoped node, so the session broker shared with the rest of the suite stays up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from faults_support import OWNER_MARK, delete_topology
from proxy import FaultProxy
from rigs.rabbitmq import RabbitMQNode

PRIVATE_PREFIX = "managerctl-test-faults"
BROKER_FIXTURES = frozenset({"rabbitmq", "broker_url"})


def _processes() -> Iterator[tuple[int, list[bytes], bytes]]:
    """(pid, environment entries, command line) of every process we may read."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ")
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.rfind(b")") + 2 :][:1] in (b"Z", b"X"):
            continue  # a zombie is gone, whatever its parent has not reaped yet
        yield int(entry), environ, cmdline


def leftover_processes() -> list[tuple[int, str]]:
    """Processes this suite started (its owner mark) and private broker nodes still alive."""
    mark = OWNER_MARK.encode()
    node_mark = f"RABBITMQ_NODENAME={PRIVATE_PREFIX}-".encode()
    found = []
    for pid, environ, cmdline in _processes():
        private_node = any(item.startswith(node_mark) for item in environ)
        if mark in environ or (private_node and b"epmd" not in cmdline):
            found.append((pid, cmdline.decode(errors="replace").strip()))
    return found


def _topology(node: RabbitMQNode) -> tuple[set[str], set[str]]:
    """Queue and exchange names of ``/`` (both rabbitmqctl calls at once: each costs ~1 s)."""
    found: dict[str, set[str]] = {}

    def list_queues() -> None:
        found["queues"] = {q["name"] for q in node.list_queues(("name",))}

    def list_exchanges() -> None:
        found["exchanges"] = {x["name"] for x in node.list_exchanges(("name",))}

    threads = [threading.Thread(target=list_queues), threading.Thread(target=list_exchanges)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found["queues"], found["exchanges"]


@pytest.fixture(scope="module", autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the module if it left a queue, an exchange, a process or a broker node behind."""
    items = [i for i in request.session.items if getattr(i, "module", None) is request.module]
    uses_broker = any(BROKER_FIXTURES & set(item.fixturenames) for item in items)
    node: RabbitMQNode | None = request.getfixturevalue("rabbitmq") if uses_broker else None
    before = _topology(node) if node is not None and node.is_running() else None
    yield
    problems = []
    processes = leftover_processes()
    if processes:
        problems.append(f"processes left running: {processes}")
        for pid, _ in processes:  # ours, by pid: stop them so they do not spoil later modules
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    if before is not None and node is not None and node.is_running():
        extra_queues: set[str] = set()
        extra_exchanges: set[str] = set()
        for _ in range(3):  # the broker deletes a dead connection's exclusive queues soon after
            queues, exchanges = _topology(node)
            extra_queues, extra_exchanges = queues - before[0], exchanges - before[1]
            if not extra_queues and not extra_exchanges:
                break
        if extra_queues or extra_exchanges:
            problems.append(
                f"left on the session broker: queues {sorted(extra_queues)}, "
                f"exchanges {sorted(extra_exchanges)}"
            )
            delete_topology(node.url, extra_queues, extra_exchanges)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def private_broker() -> Iterator[RabbitMQNode]:
    """A broker node of this module's own, which its tests may stop, start and cut."""
    node = RabbitMQNode(PRIVATE_PREFIX)
    try:
        node.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start a private RabbitMQ node: {exc}", pytrace=False)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def running_private_broker(private_broker: RabbitMQNode) -> RabbitMQNode:
    """The private node, started again if an earlier test left it stopped."""
    if not private_broker.is_running():
        private_broker.start()
    return private_broker


@pytest.fixture(scope="module")
def control_exchange(rabbitmq: RabbitMQNode) -> Iterator[str]:
    """A control exchange of this module's own, deleted at its end (oslo never deletes one)."""
    name = f"faults_{uuid.uuid4().hex[:8]}"
    yield name
    if rabbitmq.is_running():
        delete_topology(rabbitmq.url, exchanges=[name])


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[int], FaultProxy]]:
    """``fault_proxy(port)``: a started FaultProxy to 127.0.0.1:port, stopped after the test."""
    proxies: list[FaultProxy] = []

    def make(port: int) -> FaultProxy:
        proxy = FaultProxy(port).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()

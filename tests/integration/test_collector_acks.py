"""The collector acknowledges a fanout batch only once it is in the store.

A real ``managerctl serve collector`` on a real broker, its SQLite store locked by the test
while a batch arrives: the batch stays unacknowledged (delivered, not acked) for as long as the
store refuses it, is written and acknowledged once the store is back, and when the collector
is killed (SIGKILL) with a batch it could not write, every update it had acknowledged is in the
store and every other one is back in its queue, delivered again.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from manager_cli.capabilities import open_store
from manager_cli.rpc import wire

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")
UPDATES = 300


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g}s: {what}")
        time.sleep(0.2)


def publish(connection: Any, topic: str, prefix: str, count: int) -> set[str]:
    """``count`` update_service_capabilities casts (cinder's 3.3) on ``topic``'s fanout."""
    channel = connection.channel()
    props = pika.BasicProperties(**wire.BASE_PROPERTIES)
    hosts = set()
    for n in range(count):
        host = f"{prefix}{n:04d}"
        hosts.add(host)
        body = wire.encode_envelope(
            wire.build_request(
                "update_service_capabilities",
                {"service_name": "volume", "host": host, "capabilities": {"n": n}},
                context={"user": "test"},
                version="3.3",
            )
        )
        channel.basic_publish(f"{topic}_fanout", "", body, props)
    channel.close()
    return hosts


@contextlib.contextmanager
def store_locked(path: Path) -> Iterator[None]:
    """Hold SQLite's write lock: the collector's transactions wait (and time out) meanwhile."""
    lock = sqlite3.connect(str(path), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        lock.execute("ROLLBACK")
        lock.close()


def stored_hosts(url: str) -> set[str]:
    with open_store(url) as store:
        return {record.host for record in store.latest()}


@pytest.fixture
def collector(rabbitmq: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if not rabbitmq.is_running():
        rabbitmq.start()
    tag = secrets.token_hex(3)
    topic = f"acks-{tag}"
    path = tmp_path / "caps.sqlite"
    url = f"sqlite:///{path}"
    open_store(url).close()  # the schema exists before the test locks the file
    before = {q["name"] for q in rabbitmq.list_queues()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env.update(
        MANAGERCTL_TRANSPORT_URL=rabbitmq.url,
        MANAGERCTL_CAPABILITIES_STORE=url,
        MANAGERCTL_SCHEDULER_TOPIC=topic,
        MANAGERCTL_COLLECTOR_TOPICS="",
        MANAGERCTL_PERIODIC_FUZZY_DELAY="0",
    )
    log = tmp_path / "collector.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [MANAGERCTL, "serve", "collector", "--host", f"acks-collector-{tag}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", rabbitmq.port))
    state: dict[str, Any] = {"proc": proc, "topic": topic, "path": path, "url": url}
    try:

        def fanout_queue() -> dict[str, Any] | None:
            for queue in queue_stats(rabbitmq):
                if queue["name"].startswith(f"{topic}_fanout_") and queue["consumers"]:
                    return queue
            return None

        state["queue"] = wait_for(fanout_queue, "the collector consumes its fanout queue")["name"]
        state["stats"] = lambda: next(
            q for q in queue_stats(rabbitmq) if q["name"] == state["queue"]
        )
        state["connection"] = connection
        yield state
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # What a killed collector leaves: its own queues (none of them shared).
        for name in {q["name"] for q in rabbitmq.list_queues()} - before:
            if name.startswith((f"{topic}_fanout_", "managerctl")):
                channel = connection.channel()
                with contextlib.suppress(pika.exceptions.AMQPError):
                    channel.queue_delete(name, if_unused=True)
                with contextlib.suppress(pika.exceptions.AMQPError):
                    channel.close()
        connection.close()
        print(log.read_text(errors="replace")[-3000:])


def queue_stats(rabbitmq: Any) -> list[dict[str, Any]]:
    return rabbitmq.list_queues(("name", "consumers", "messages_ready", "messages_unacknowledged"))


def test_nothing_acknowledged_is_lost_and_the_rest_comes_back(collector: dict) -> None:
    connection, topic, url = collector["connection"], collector["topic"], collector["url"]
    stats = collector["stats"]

    # Written, then acknowledged.
    first = publish(connection, topic, "a", UPDATES)
    wait_for(lambda: stored_hosts(url) >= first, "the first batch is stored")
    wait_for(lambda: stats()["messages_unacknowledged"] == 0, "the first batch is acked")

    # The store refuses: delivered, but not acknowledged while it cannot be written; written
    # and acknowledged once the store is back.
    with store_locked(collector["path"]):
        second = publish(connection, topic, "b", UPDATES)
        wait_for(lambda: stats()["messages_unacknowledged"] == UPDATES, "the batch is held")
        time.sleep(1.0)  # several turns of the intake's loop
        assert stats()["messages_unacknowledged"] == UPDATES
    wait_for(lambda: stored_hosts(url) >= second, "the held batch is stored")
    wait_for(lambda: stats()["messages_unacknowledged"] == 0, "the held batch is acked")

    # Killed while it cannot write: nothing it acknowledged is lost, the rest is queued again.
    with store_locked(collector["path"]):
        third = publish(connection, topic, "c", UPDATES)
        wait_for(lambda: stats()["messages_unacknowledged"] == UPDATES, "the batch is held")
        collector["proc"].kill()
        collector["proc"].wait(timeout=30)
    assert stored_hosts(url) == first | second
    wait_for(lambda: stats()["messages_ready"] == UPDATES, "the broker requeues the batch")
    channel = connection.channel()
    again = set()
    while True:
        method, _props, body = channel.basic_get(collector["queue"], auto_ack=True)
        if method is None:
            break
        assert method.redelivered
        again.add(json.loads(json.loads(body)["oslo.message"])["args"]["host"])
    channel.close()
    assert again == third

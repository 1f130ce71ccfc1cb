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
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from rigs.cli import Served, clean_env, wait_until

from manager_cli.capabilities import open_store
from manager_cli.rpc import wire

UPDATES = 300


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
    env = clean_env(
        MANAGERCTL_TRANSPORT_URL=rabbitmq.url,
        MANAGERCTL_CAPABILITIES_STORE=url,
        MANAGERCTL_SCHEDULER_TOPIC=topic,
        MANAGERCTL_COLLECTOR_TOPICS="",
    )
    served = Served(
        ["serve", "collector", "--host", f"acks-collector-{tag}"], tmp_path / "collector.log", env
    )
    proc = served.proc
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", rabbitmq.port))
    state: dict[str, Any] = {"proc": proc, "topic": topic, "path": path, "url": url}
    try:

        def fanout_queue() -> dict[str, Any] | None:
            for queue in queue_stats(rabbitmq):
                if queue["name"].startswith(f"{topic}_fanout_") and queue["consumers"]:
                    return queue
            return None

        state["queue"] = wait_until(fanout_queue, 60, what="the collector consumes its fanout")[
            "name"
        ]
        state["stats"] = lambda: next(
            q for q in queue_stats(rabbitmq) if q["name"] == state["queue"]
        )
        state["connection"] = connection
        yield state
    finally:
        served.stop(timeout=30)
        # What a killed collector leaves: its own queues (none of them shared).
        for name in {q["name"] for q in rabbitmq.list_queues()} - before:
            if name.startswith((f"{topic}_fanout_", "managerctl")):
                channel = connection.channel()
                with contextlib.suppress(pika.exceptions.AMQPError):
                    channel.queue_delete(name, if_unused=True)
                with contextlib.suppress(pika.exceptions.AMQPError):
                    channel.close()
        connection.close()
        print(served.log()[-3000:])


def queue_stats(rabbitmq: Any) -> list[dict[str, Any]]:
    return rabbitmq.list_queues(("name", "consumers", "messages_ready", "messages_unacknowledged"))


@contextlib.contextmanager
def held_batch(collector: dict, prefix: str) -> Iterator[set[str]]:
    """UPDATES published while the store is locked, once the collector holds them all
    (delivered, unacknowledged); the hosts published."""
    with store_locked(collector["path"]):
        hosts = publish(collector["connection"], collector["topic"], prefix, UPDATES)
        wait_until(
            lambda: collector["stats"]()["messages_unacknowledged"] == UPDATES,
            60,
            what="the collector holds the batch",
        )
        yield hosts


def test_nothing_acknowledged_is_lost_and_the_rest_comes_back(collector: dict) -> None:
    connection, topic, url = collector["connection"], collector["topic"], collector["url"]
    stats = collector["stats"]

    # Written, then acknowledged.
    first = publish(connection, topic, "a", UPDATES)
    wait_until(lambda: stored_hosts(url) >= first, 60, what="the first batch is stored")
    wait_until(lambda: stats()["messages_unacknowledged"] == 0, 60, what="the first batch is acked")

    # The store refuses: delivered, but not acknowledged while it cannot be written; written
    # and acknowledged once the store is back.
    with held_batch(collector, "b") as second:
        time.sleep(1.0)  # several turns of the intake's loop
        assert stats()["messages_unacknowledged"] == UPDATES
    wait_until(lambda: stored_hosts(url) >= second, 60, what="the held batch is stored")
    wait_until(lambda: stats()["messages_unacknowledged"] == 0, 60, what="the held batch is acked")

    # Killed while it cannot write: nothing it acknowledged is lost, the rest is queued again.
    with held_batch(collector, "c") as third:
        collector["proc"].kill()
        collector["proc"].wait(timeout=30)
    assert stored_hosts(url) == first | second
    wait_until(lambda: stats()["messages_ready"] == UPDATES, 60, what="the broker requeues the batch")
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

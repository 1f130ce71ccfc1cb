"""Poison input to a served manager: malformed, oversized, hostile and mistaken requests.

Messages are published raw with pika to the ``<topic>.<host>`` queue's exchange and routing
key, each with a fresh ``_msg_id`` and this test's own reply queue, so every reply can be
counted and checked. What must happen to each kind is in ``KINDS``: a reply whose failure
names the right class, or no reply at all (a message too broken to say where to answer, or one
without ``application/json``, which oslo drops silently too). Either way nothing stays in the
queue, the service keeps serving, and its memory stays flat over another thousand.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pytest
from faults_support import delete_topology, pika_connection, rss_kib, serve, wait_for

from manager_cli.rpc import wire
from manager_cli.rpc.server import DEFAULT_MAX_MESSAGE_BYTES

BATCH = 1000
HUGE_EVERY = 100  # one body over the size limit in every hundred messages
MAX_RSS_GROWTH_KIB = 20 * 1024
JSON_PROPS = pika.BasicProperties(**wire.BASE_PROPERTIES)
NO_TYPE_PROPS = pika.BasicProperties(content_encoding="utf-8", delivery_mode=2)
TEXT_PROPS = pika.BasicProperties(content_type="text/plain", delivery_mode=2)


@dataclass
class Poison:
    """One message to publish, and what the service must answer (None: no reply)."""

    kind: str
    body: bytes
    props: pika.BasicProperties
    msg_id: str
    expect: str | None  # failure class, "result" for a good call, None for no reply


def _inner(method: Any, args: Any, msg_id: str, reply_q: str, **extra: Any) -> dict[str, Any]:
    return {
        "method": method,
        "args": args,
        "_msg_id": msg_id,
        "_reply_q": reply_q,
        "_timeout": None,
        "_unique_id": uuid.uuid4().hex,
        "_context_user": "poison",
        **extra,
    }


def _envelope(inner: Any, version: str = "2.0") -> bytes:
    return json.dumps({"oslo.version": version, "oslo.message": json.dumps(inner)}).encode()


def _call(method: Any, args: Any, **extra: Any) -> Callable[[str, str], bytes]:
    return lambda msg_id, reply_q: _envelope(_inner(method, args, msg_id, reply_q, **extra))


def _versioned(version: str) -> Callable[[str, str], bytes]:
    return lambda msg_id, reply_q: _envelope(_inner("echo", {}, msg_id, reply_q), version)


def _huge(msg_id: str, reply_q: str) -> bytes:
    padding = "x" * (DEFAULT_MAX_MESSAGE_BYTES + 1024)
    return _envelope(_inner("echo", {"value": padding}, msg_id, reply_q))


# name -> (body builder, properties, expected failure class or None for no reply)
KINDS: dict[str, tuple[Callable[[str, str], bytes], pika.BasicProperties, str | None]] = {
    "not json": (lambda m, r: b"\xff\xfe\x00 not json {" + m.encode(), JSON_PROPS, None),
    "json array": (lambda m, r: b"[1, 2, 3]", JSON_PROPS, None),
    "truncated": (lambda m, r: _call("echo", {})(m, r)[:-9], JSON_PROPS, None),
    "deep nesting": (lambda m, r: b'{"a":' * 100_000, JSON_PROPS, None),
    "inner not object": (lambda m, r: _envelope([m, r]), JSON_PROPS, None),
    "envelope 2.1": (_versioned("2.1"), JSON_PROPS, "UnsupportedEnvelopeVersion"),
    "envelope 3.0": (_versioned("3.0"), JSON_PROPS, "UnsupportedEnvelopeVersion"),
    "envelope garbage": (_versioned("two"), JSON_PROPS, "UnsupportedEnvelopeVersion"),
    "unknown method": (_call("no_such_method", {}), JSON_PROPS, "NoSuchMethod"),
    "private method": (_call("_remember", {"x": 1}), JSON_PROPS, "NoSuchMethod"),
    "dunder method": (_call("__init__", {}), JSON_PROPS, "NoSuchMethod"),
    "hidden hook": (_call("init_host", {}), JSON_PROPS, "NoSuchMethod"),
    "wrong arg name": (_call("echo", {"nonsense": 1}), JSON_PROPS, "TypeError"),
    "wrong arg type": (_call("sleep", {"seconds": "soon"}), JSON_PROPS, "ValueError"),
    "args a list": (_call("echo", [1, 2]), JSON_PROPS, "WireFormatError"),
    "method a number": (_call(42, {}), JSON_PROPS, "WireFormatError"),
    "version a number": (_call("echo", {}, version=2), JSON_PROPS, "WireFormatError"),
    "no such version": (_call("echo", {}, version="9.0"), JSON_PROPS, "UnsupportedVersion"),
    "no such namespace": (_call("echo", {}, namespace="nope"), JSON_PROPS, "UnsupportedVersion"),
    "bare 1.0 bad args": (
        lambda m, r: json.dumps(_inner("echo", "args", m, r)).encode(),
        JSON_PROPS,
        "WireFormatError",
    ),
    "no content type": (_call("echo", {"value": 1}), NO_TYPE_PROPS, None),
    "text content type": (_call("echo", {"value": 1}), TEXT_PROPS, None),
    "good call": (_call("echo", {"value": "fine"}), JSON_PROPS, "result"),
}


def poison_batch(size: int, reply_q: str) -> Iterator[Poison]:
    """``size`` messages, every kind in turn, one huge one every HUGE_EVERY."""
    kinds = itertools.cycle(KINDS)
    for number in range(size):
        msg_id = uuid.uuid4().hex
        if number % HUGE_EVERY == HUGE_EVERY - 1:
            yield Poison("huge", _huge(msg_id, reply_q), JSON_PROPS, msg_id, "MessageTooLarge")
            continue
        kind = next(kinds)
        build, props, expect = KINDS[kind]
        yield Poison(kind, build(msg_id, reply_q), props, msg_id, expect)


class Poisoner:
    """A raw pika publisher with its own reply queue, counting every reply by ``_msg_id``."""

    def __init__(self, url: str, exchange: str, routing_key: str) -> None:
        self.connection = pika_connection(url)
        self.channel = self.connection.channel()
        self.exchange = exchange
        self.routing_key = routing_key
        self.reply_q = self.channel.queue_declare("", exclusive=True).method.queue
        self.replies: dict[str, list[dict[str, Any]]] = {}
        self.channel.basic_consume(self.reply_q, self._on_reply, auto_ack=True)

    def _on_reply(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        message = wire.decode_envelope(body)
        self.replies.setdefault(message["_msg_id"], []).append(message)

    def send(self, batch: list[Poison]) -> None:
        for poison in batch:
            self.channel.basic_publish(self.exchange, self.routing_key, poison.body, poison.props)

    def wait_for_replies(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while sum(map(len, self.replies.values())) < count and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.2)
        self.connection.process_data_events(time_limit=0.3)  # a surplus reply would show now

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


def check_replies(batch: list[Poison], replies: dict[str, list[dict[str, Any]]]) -> None:
    wrong = []
    for poison in batch:
        got = replies.get(poison.msg_id, [])
        if poison.expect is None:
            if got:
                wrong.append((poison.kind, "expected no reply", got))
            continue
        if len(got) != 1 or not got[0].get("ending"):
            wrong.append((poison.kind, f"expected one reply, got {len(got)}", got))
            continue
        reply = got[0]
        if poison.expect == "result":
            if reply["failure"] is not None or reply["result"] != "fine":
                wrong.append((poison.kind, "expected the result", reply))
            continue
        failure = json.loads(reply["failure"]) if reply["failure"] else {}
        if failure.get("class") != poison.expect or not failure.get("message"):
            wrong.append((poison.kind, f"expected {poison.expect}", failure.get("class")))
    assert not wrong, f"{len(wrong)} wrong answers, first ones: {wrong[:5]}"


@pytest.fixture
def victim(rabbitmq, broker_url, control_exchange, tmp_path):
    service = serve("hostinfo", url=broker_url, exchange=control_exchange, log_dir=tmp_path)
    yield service
    service.stop()
    delete_topology(broker_url, queues=service.queues)


def test_poison_gets_clear_errors_or_is_dropped_and_the_service_stays_up_and_flat(
    victim, rabbitmq, broker_url, control_exchange
):
    queue = f"{victim.topic}.{victim.host}"
    poisoner = Poisoner(broker_url, control_exchange, queue)
    try:
        rss = []
        for _ in range(2):  # the first thousand warms the allocator up; the second is measured
            batch = list(poison_batch(BATCH, poisoner.reply_q))
            poisoner.replies.clear()
            poisoner.send(batch)
            answered = sum(poison.expect is not None for poison in batch)
            poisoner.wait_for_replies(answered, timeout=90)
            check_replies(batch, poisoner.replies)
            assert victim.proc.poll() is None, victim.log()[-3000:]
            rss.append(rss_kib(victim.proc.pid))
    finally:
        poisoner.close()

    # Nothing was left in the queue (rejected without requeue, or acked and answered).
    def drained() -> bool:
        queues = {q["name"]: q for q in rabbitmq.list_queues(("name", "messages", "consumers"))}
        return (queues[queue]["messages"], queues[queue]["consumers"]) == (0, 1)

    assert wait_for(drained, timeout=10, step=0.5)
    # It serves a good call right after, and it did not grow with the second thousand.
    good = victim.run("call", victim.host, "echo", "value=after-the-poison")
    assert good.returncode == 0 and good.stdout.strip() == '"after-the-poison"', good
    assert rss[1] - rss[0] < MAX_RSS_GROWTH_KIB, f"VmRSS grew from {rss[0]} to {rss[1]} KiB"
    log = victim.log()
    assert "crashed" not in log
    assert "rejecting a malformed request" in log and "dropping a message with content" in log

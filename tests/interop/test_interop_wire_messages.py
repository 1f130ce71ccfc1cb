"""Wire level: the messages managerctl sends look like the ones oslo.messaging sends.

Requests: a raw pika "capture server" consumes a topic (and its fanout) and answers every call
with a fixed result; the same call, cast and fanout cast are sent by a real oslo client and by
managerctl's client, and the captured messages are compared (exchange, routing key, AMQP
properties, envelope, inner keys and values).

Replies: the same raw request is published to a real oslo server and to a managerctl server
with ``_reply_q`` set to a queue of the test's own; the replies (result, failure, call-monitor
heartbeats) are compared the same way (PROTOCOL.md §4-5).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass

import pika
import pytest
from interop_support import delete_queues, unique_topic, wait_for

from manager_cli.rpc.client import RPCClient
from manager_cli.rpc.dispatcher import RPCDispatcher, Target
from manager_cli.rpc.server import RPCServer

pytestmark = pytest.mark.broker

CAPTURE_TOPIC = unique_topic("interop_wire_cap")
OSLO_TOPIC = unique_topic("interop_wire_oslo")
MCTL_TOPIC = unique_topic("interop_wire_mctl")
CONTEXT = {"user": "alice", "request_id": "req-123", "roles": ["admin"]}
HEX32 = re.compile("[0-9a-f]{32}")
PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "delivery_mode",
    "priority",
    "headers",
    "expiration",
    "correlation_id",
    "reply_to",
    "message_id",
)


@dataclass
class Captured:
    exchange: str
    routing_key: str
    properties: dict
    envelope: dict
    message: dict


def _capture(method, properties, body: bytes) -> Captured:
    envelope = json.loads(body)
    return Captured(
        exchange=method.exchange,
        routing_key=method.routing_key,
        properties={name: getattr(properties, name) for name in PROPERTY_NAMES},
        envelope=envelope,
        message=json.loads(envelope["oslo.message"]),
    )


def _envelope(message: dict) -> bytes:
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(message)}).encode()


class CaptureServer:
    """A raw pika consumer of CAPTURE_TOPIC that records requests and answers calls."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.messages: list[Captured] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.fanout_queue = f"{CAPTURE_TOPIC}_fanout_{uuid.uuid4().hex}"

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "capture server did not start"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def take(self, count: int = 1) -> list[Captured]:
        wait_for(lambda: len(self.messages) >= count)
        taken, self.messages[:] = list(self.messages), []
        assert len(taken) == count, taken
        return taken

    def _run(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        channel = connection.channel()
        # oslo's flags (PROTOCOL.md §1-2), so the real clients' declarations agree.
        channel.exchange_declare("openstack", "topic", durable=False, auto_delete=False)
        fanout = f"{CAPTURE_TOPIC}_fanout"
        channel.exchange_declare(fanout, "fanout", durable=False, auto_delete=True)
        for name in (CAPTURE_TOPIC, f"{CAPTURE_TOPIC}.srv"):
            channel.queue_declare(name, durable=False, auto_delete=False)
            channel.queue_bind(name, "openstack", routing_key=name)
            channel.basic_consume(name, self._on_message)
        channel.queue_declare(
            self.fanout_queue, auto_delete=False, arguments={"x-expires": 1800000}
        )
        channel.queue_bind(self.fanout_queue, fanout, routing_key=CAPTURE_TOPIC)
        channel.basic_consume(self.fanout_queue, self._on_message)
        self._ready.set()
        try:
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.05)
        finally:
            channel.queue_delete(self.fanout_queue)
            connection.close()

    def _on_message(self, channel, method, properties, body: bytes) -> None:
        channel.basic_ack(method.delivery_tag)
        captured = _capture(method, properties, body)
        message = captured.message
        if message.get("_msg_id") and message.get("_reply_q"):
            reply = {
                "result": "captured",
                "failure": None,
                "ending": True,
                "_msg_id": message["_msg_id"],
                "_unique_id": uuid.uuid4().hex,
            }
            props = pika.BasicProperties(content_type="application/json")
            channel.basic_publish("", message["_reply_q"], _envelope(reply), props)
        self.messages.append(captured)


class MctlEndpoint:
    """The managerctl twin of the peer's basic endpoint, for the methods used here."""

    target = Target(version="1.3")

    def add(self, context, a, b):
        return a + b

    def fail(self, context):
        raise ValueError("deliberate failure from srv")

    def slow(self, context, seconds):
        time.sleep(seconds)
        return f"slept {seconds}"


@pytest.fixture(scope="module")
def capture(rabbitmq):
    server = CaptureServer(rabbitmq.amqp_url)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        delete_queues(rabbitmq, [CAPTURE_TOPIC])


@pytest.fixture(scope="module")
def mctl_client(rabbitmq):
    with RPCClient(rabbitmq.url, timeout=7) as client:
        yield client


# -- requests --------------------------------------------------------------------------------


def _same_request(oslo: Captured, mctl: Captured, reply_queues: tuple[str, str]) -> None:
    """Everything but the random ids and the reply queue name is equal; those are oslo-shaped."""
    assert (mctl.exchange, mctl.routing_key) == (oslo.exchange, oslo.routing_key)
    assert mctl.properties == oslo.properties
    assert set(mctl.envelope) == set(oslo.envelope) == {"oslo.version", "oslo.message"}
    assert mctl.envelope["oslo.version"] == oslo.envelope["oslo.version"] == "2.0"
    assert set(mctl.message) == set(oslo.message)
    random_keys = {"_msg_id", "_unique_id", "_reply_q"}
    assert {k: v for k, v in mctl.message.items() if k not in random_keys} == {
        k: v for k, v in oslo.message.items() if k not in random_keys
    }
    for captured, reply_queue in zip((oslo, mctl), reply_queues, strict=True):
        assert HEX32.fullmatch(captured.message["_unique_id"])
        if "_msg_id" in captured.message:
            assert HEX32.fullmatch(captured.message["_msg_id"])
            assert captured.message["_reply_q"] == reply_queue


def _reply_queues(oslo_transport, mctl_client) -> tuple[str, str]:
    return oslo_transport.reply_queue, mctl_client.reply_queue


@pytest.mark.parametrize(
    "prepare",
    [
        {},
        {"version": "1.3"},
        {"server": "srv", "version": "1.3"},
        {"namespace": "baseapi", "version": "1.1"},
        {"call_monitor_timeout": 5},
    ],
    ids=["plain", "version", "server", "namespace", "call-monitor"],
)
def test_call_request_matches_oslo(capture, oslo_transport, mctl_client, prepare):
    oslo = oslo_transport.client(CAPTURE_TOPIC, timeout=7).prepare(**prepare)
    assert oslo.call(CONTEXT, "add", a=2, b=3) == "captured"
    assert mctl_client.call(
        CONTEXT, "add", topic=CAPTURE_TOPIC, args={"a": 2, "b": 3}, **prepare
    ) == ("captured")
    oslo_msg, mctl_msg = capture.take(2)
    _same_request(oslo_msg, mctl_msg, _reply_queues(oslo_transport, mctl_client))
    # The request expires from the queue when the caller gives up (PROTOCOL.md §3, §7).
    assert mctl_msg.properties["expiration"] == "7000"
    assert mctl_msg.properties["content_type"] == "application/json"


@pytest.mark.parametrize(
    "prepare", [{}, {"server": "srv"}, {"fanout": True}], ids=["topic", "server", "fanout"]
)
def test_cast_request_matches_oslo(capture, oslo_transport, mctl_client, prepare):
    oslo_transport.client(CAPTURE_TOPIC).prepare(**prepare).cast(CONTEXT, "add", a=1, b=2)
    (oslo_msg,) = capture.take(1)
    mctl_client.cast(CONTEXT, "add", topic=CAPTURE_TOPIC, args={"a": 1, "b": 2}, **prepare)
    (mctl_msg,) = capture.take(1)
    _same_request(oslo_msg, mctl_msg, (None, None))
    assert "_msg_id" not in mctl_msg.message and "_reply_q" not in mctl_msg.message
    assert mctl_msg.properties["expiration"] is None
    if prepare.get("fanout"):
        assert (mctl_msg.exchange, mctl_msg.routing_key) == (f"{CAPTURE_TOPIC}_fanout", "")


# -- replies ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reply_servers(rabbitmq, oslo_peers):
    """An oslo server on OSLO_TOPIC and a managerctl server on MCTL_TOPIC, both host 'srv'."""
    (peer,) = oslo_peers(OSLO_TOPIC, ["srv"], wait=False)
    server = RPCServer(
        rabbitmq.url, topic=MCTL_TOPIC, server="srv", dispatcher=RPCDispatcher([MctlEndpoint()])
    )
    server.start()
    try:
        peer.wait_ready()
        yield
    finally:
        server.stop(graceful_timeout=5)
        delete_queues(rabbitmq, [MCTL_TOPIC])


@pytest.fixture
def raw(rabbitmq):
    """Publish raw requests and collect what comes back on a reply queue of the test's own."""
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.amqp_url))
    channel = connection.channel()
    reply_queue = f"reply_{uuid.uuid4().hex}"
    channel.queue_declare(reply_queue, arguments={"x-expires": 1800000})
    replies: list[Captured] = []

    def on_reply(ch, method, properties, body):
        ch.basic_ack(method.delivery_tag)
        replies.append(_capture(method, properties, body))

    channel.basic_consume(reply_queue, on_reply)

    def call(topic: str, method: str, args: dict, *, timeout=None, ending=True) -> list[Captured]:
        msg_id = uuid.uuid4().hex
        request = {
            "method": method,
            "args": args,
            "version": "1.3",
            "_msg_id": msg_id,
            "_reply_q": reply_queue,
            "_timeout": timeout,
            "_unique_id": uuid.uuid4().hex,
            **{f"_context_{k}": v for k, v in CONTEXT.items()},
        }
        props = pika.BasicProperties(
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            priority=0,
            headers={},
            expiration="10000",
        )
        channel.basic_publish("openstack", f"{topic}.srv", _envelope(request), props)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
            if replies and replies[-1].message.get("ending"):
                break
        got, replies[:] = list(replies), []
        assert got and got[-1].message.get("ending") is True, got
        assert all(reply.message["_msg_id"] == msg_id for reply in got)
        return got

    try:
        yield call
    finally:
        channel.queue_delete(reply_queue)
        connection.close()


def _same_reply(oslo: Captured, mctl: Captured) -> None:
    assert (
        (mctl.exchange, mctl.routing_key)
        == (oslo.exchange, oslo.routing_key)
        == (
            "",
            oslo.routing_key,
        )
    )
    assert mctl.properties == oslo.properties
    assert set(mctl.envelope) == set(oslo.envelope)
    assert set(mctl.message) == set(oslo.message)
    assert HEX32.fullmatch(mctl.message["_unique_id"])
    for key in ("result", "ending"):
        assert mctl.message[key] == oslo.message[key], key
    assert (mctl.message["failure"] is None) == (oslo.message["failure"] is None)


def test_result_reply_matches_oslo(reply_servers, raw):
    (oslo,) = raw(OSLO_TOPIC, "add", {"a": 2, "b": 3})
    (mctl,) = raw(MCTL_TOPIC, "add", {"a": 2, "b": 3})
    _same_reply(oslo, mctl)
    assert mctl.message["result"] == 5 and mctl.message["ending"] is True


@pytest.mark.parametrize(
    ("method", "exc_class", "module"),
    [
        ("fail", "ValueError", "builtins"),
        ("no_such_method", "NoSuchMethod", "oslo_messaging.rpc.dispatcher"),
    ],
    ids=["ValueError", "NoSuchMethod"],
)
def test_failure_reply_matches_oslo(reply_servers, raw, method, exc_class, module):
    (oslo,) = raw(OSLO_TOPIC, method, {})
    (mctl,) = raw(MCTL_TOPIC, method, {})
    _same_reply(oslo, mctl)
    oslo_failure = json.loads(oslo.message["failure"])
    mctl_failure = json.loads(mctl.message["failure"])
    assert set(mctl_failure) == set(oslo_failure)
    for key in ("class", "module", "message", "args", "kwargs"):
        assert mctl_failure[key] == oslo_failure[key], key
    assert (mctl_failure["class"], mctl_failure["module"]) == (exc_class, module)
    assert isinstance(mctl_failure["tb"], list) and mctl_failure["tb"]


def test_call_monitor_heartbeats_match_oslo(reply_servers, raw):
    oslo = raw(OSLO_TOPIC, "slow", {"seconds": 2.5}, timeout=2)
    mctl = raw(MCTL_TOPIC, "slow", {"seconds": 2.5}, timeout=2)
    # A heartbeat every int(2)/2 = 1 s while the method runs, then the result.
    assert len(mctl) == len(oslo) == 3
    for oslo_reply, mctl_reply in zip(oslo, mctl, strict=True):
        _same_reply(oslo_reply, mctl_reply)
    assert [m.message["ending"] for m in mctl] == [False, False, True]
    assert [m.message["result"] for m in mctl] == [None, None, "slept 2.5"]


def test_no_heartbeat_without_a_call_monitor(reply_servers, raw):
    assert len(raw(OSLO_TOPIC, "slow", {"seconds": 1.5})) == 1
    assert len(raw(MCTL_TOPIC, "slow", {"seconds": 1.5})) == 1

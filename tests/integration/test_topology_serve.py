"""The served side of the topologies, on the session broker: things the interop matrix with
oslo peers does not provoke.

* A stream fanout refuses nack and reject with a 540 that closes the whole connection: a bad
  message on the stream must not take the server down.
* QoS is per consumer, never global (global QoS on a quorum queue is a 540 too).
"""

from __future__ import annotations

import contextlib
import json
import uuid

import pika
import pytest

from manager_cli.rpc.client import RPCClient
from manager_cli.rpc.dispatcher import RPCDispatcher
from manager_cli.rpc.server import RPCServer

pytestmark = pytest.mark.broker

STREAM = "?rabbit_quorum_queue=true&rabbit_transient_quorum_queue=true&rabbit_stream_fanout=true&rabbit_qos_prefetch_count=5"


class Echo:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def echo(self, context, value):
        self.seen.append(value)
        return value


@pytest.fixture
def served(rabbitmq, broker_url):
    topic = f"topo_{uuid.uuid4().hex[:8]}"
    endpoint = Echo()
    # An exchange of its own: quorum options make it durable, and the session broker's
    # "openstack" is not (serve would rightly refuse to start, 78).
    server = RPCServer(
        broker_url + STREAM,
        topic=topic,
        server="s1",
        dispatcher=RPCDispatcher([endpoint]),
        exchange=f"x_{topic}",
    )
    server.start()
    try:
        yield server, endpoint, topic
    finally:
        server.stop(graceful_timeout=5)
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.amqp_url))
        with contextlib.closing(connection):
            channel = connection.channel()
            for name in (topic, f"{topic}.s1", f"{topic}_fanout"):
                channel.queue_delete(name)
            channel.exchange_delete(f"{topic}_fanout")
            channel.exchange_delete(f"x_{topic}")


def test_bad_messages_on_a_stream_do_not_close_the_server(rabbitmq, broker_url, served):
    server, endpoint, topic = served
    assert server.fanout_queue == f"{topic}_fanout"
    connection_before = server._connection
    publisher = pika.BlockingConnection(pika.URLParameters(rabbitmq.amqp_url))
    with contextlib.closing(publisher):
        channel = publisher.channel()
        exchange = f"{topic}_fanout"
        channel.basic_publish(
            exchange, "", b"\xff not json", pika.BasicProperties(content_type="application/json")
        )
        channel.basic_publish(exchange, "", b"{}", pika.BasicProperties(content_type="text/plain"))
        good = json.dumps({"method": "echo", "args": {"value": "after-bad"}}).encode()
        channel.basic_publish(
            exchange, "", good, pika.BasicProperties(content_type="application/json")
        )
    with RPCClient(broker_url + STREAM, timeout=10, exclusive=True) as client:
        answer = client.call(
            {}, "echo", topic=topic, server="s1", args={"value": "x"}, exchange=f"x_{topic}"
        )
        assert answer == "x"
    assert "after-bad" in endpoint.seen
    assert server._connection is connection_before  # never lost it


def test_qos_is_per_consumer(rabbitmq, served):
    server, _endpoint, topic = served
    channels = json.loads(
        rabbitmq.rabbitmqctl(
            "list_channels",
            "prefetch_count",
            "global_prefetch_count",
            "consumer_count",
            "--formatter",
            "json",
            "--silent",
        )
    )
    serving = [c for c in channels if c["consumer_count"] == 3]
    assert serving, channels
    assert all(c["global_prefetch_count"] == 0 for c in serving)
    assert all(c["prefetch_count"] == 5 for c in serving)

"""The in-memory transport never lies: each check runs against it AND a real RabbitMQ node.

Every behaviour the client and server rely on (rpc.memory's docstring lists them) is asked of
both transports through the same Transport interface; a divergence fails one of the two rows.
Names are unique per test, and what a test declares it deletes, so the shared node is left
as it was.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika.exceptions
import pytest

from manager_cli.errors import AccessRefusedError, ConfigError, NoConsumerError, UnavailableError
from manager_cli.rpc import get_transport, refusals
from manager_cli.rpc.client import RPCClient
from manager_cli.rpc.dispatcher import RPCDispatcher
from manager_cli.rpc.memory import MemoryBroker, MemoryTransport
from manager_cli.rpc.server import RPCServer
from manager_cli.rpc.target import Target
from manager_cli.rpc.transport_base import Transport


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.broker)])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    if request.param == "memory":
        yield MemoryTransport(broker=MemoryBroker(f"contract-{uuid.uuid4().hex[:8]}"))
    else:
        yield get_transport(url=request.getfixturevalue("broker_url"))


@pytest.fixture
def name() -> str:
    return f"contract-{uuid.uuid4().hex[:12]}"


class Link:
    """A connection and what it opened, closed (and its entities deleted) at the end."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.connection = transport.connect()
        self.cleanup: list[tuple[str, str]] = []

    def channel(self) -> Any:
        return self.connection.channel()

    def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.05)
        return predicate()

    def close(self) -> None:
        if self.connection.is_open:
            channel = self.connection.channel()
            for kind, entity in self.cleanup:
                if kind == "queue":
                    channel.queue_delete(entity)
                else:
                    channel.exchange_delete(entity)
            self.connection.close()


@pytest.fixture
def link(transport: Transport) -> Iterator[Link]:
    opened = Link(transport)
    yield opened
    opened.close()


@pytest.fixture
def other(transport: Transport) -> Iterator[Link]:
    opened = Link(transport)
    yield opened
    opened.close()


def closed_with(action: Callable[[], Any]) -> pika.exceptions.ChannelClosedByBroker:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        action()
    return caught.value


def test_a_mandatory_publish_nobody_can_take_comes_back(link: Link, name: str) -> None:
    channel = link.channel()
    returned: list[Any] = []
    channel.add_on_return_callback(lambda ch, method, props, body: returned.append((method, body)))
    channel.basic_publish("", name, b"lost", link.transport.topology.properties(), mandatory=True)
    channel.basic_publish("", name + "-quiet", b"dropped", link.transport.topology.properties())
    assert link.until(lambda: bool(returned))
    link.connection.process_data_events(time_limit=0.3)
    assert [(m.routing_key, m.reply_code, body) for m, body in returned] == [(name, 312, b"lost")]


def test_a_confirmed_mandatory_publish_raises_unroutable(link: Link, name: str) -> None:
    channel = link.channel()
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        channel.basic_publish("", name, b"lost", mandatory=True)
    channel.basic_publish("", name, b"dropped")  # not mandatory: fine


def test_a_passive_declare_of_what_is_missing_is_404(link: Link, name: str) -> None:
    channel = link.channel()
    error = closed_with(lambda: channel.queue_declare(name, passive=True))
    assert error.reply_code == refusals.NOT_FOUND
    assert not channel.is_open
    mapped = refusals.refusal(error, "checking")
    assert isinstance(mapped, UnavailableError) and mapped.exit_code == 69
    channel = link.channel()
    assert closed_with(lambda: channel.exchange_declare(name, passive=True)).reply_code == 404


def test_publishing_to_a_missing_exchange_closes_the_channel(link: Link, name: str) -> None:
    channel = link.channel()
    channel.confirm_delivery()
    error = closed_with(lambda: channel.basic_publish(name, "key", b"x"))
    assert error.reply_code == refusals.NOT_FOUND
    plain = link.channel()
    plain.basic_publish(name, "key", b"x")  # without confirms the close comes later
    assert link.until(lambda: not plain.is_open)
    assert link.transport.closing_reason(plain).reply_code == refusals.NOT_FOUND


def test_consumer_counts(link: Link, other: Link, name: str) -> None:
    channel = link.channel()
    channel.queue_declare(name)
    link.cleanup.append(("queue", name))
    assert channel.queue_declare(name, passive=True).method.consumer_count == 0
    tag = channel.basic_consume(name, lambda *a: None)
    other.channel().basic_consume(name, lambda *a: None)
    assert channel.queue_declare(name, passive=True).method.consumer_count == 2
    channel.basic_cancel(tag)
    assert channel.queue_declare(name, passive=True).method.consumer_count == 1


def test_an_exclusive_queue_is_locked_to_its_connection(link: Link, other: Link) -> None:
    frame = link.channel().queue_declare("", exclusive=True, auto_delete=True)
    queue = frame.method.queue
    assert queue.startswith("amq.gen-")
    error = closed_with(lambda: other.channel().queue_declare(queue, passive=True))
    assert error.reply_code == refusals.RESOURCE_LOCKED
    assert isinstance(refusals.refusal(error, "x"), ConfigError)
    error = closed_with(lambda: other.channel().basic_consume(queue, lambda *a: None))
    assert error.reply_code == refusals.RESOURCE_LOCKED
    link.connection.close()
    error = closed_with(lambda: other.channel().queue_declare(queue, passive=True))
    assert error.reply_code == refusals.NOT_FOUND


def test_a_declaration_that_differs_is_406_naming_the_argument(link: Link, name: str) -> None:
    link.channel().queue_declare(name, durable=False)
    link.cleanup.append(("queue", name))
    error = closed_with(lambda: link.channel().queue_declare(name, durable=True))
    assert error.reply_code == refusals.PRECONDITION_FAILED
    mapped = refusals.refusal(error, "declaring")
    assert isinstance(mapped, ConfigError) and "durable" in mapped.message
    exchange = name + "-x"
    link.channel().exchange_declare(exchange, "topic")
    link.cleanup.append(("exchange", exchange))
    error = closed_with(lambda: link.channel().exchange_declare(exchange, "fanout"))
    assert error.reply_code == refusals.PRECONDITION_FAILED


def test_declaring_a_reserved_exchange_is_refused(link: Link) -> None:
    error = closed_with(lambda: link.channel().exchange_declare("amq.contract", "topic"))
    assert error.reply_code == refusals.ACCESS_REFUSED
    assert isinstance(refusals.refusal(error, "x"), AccessRefusedError)


def test_fanout_and_topic_routing(link: Link, name: str) -> None:
    channel = link.channel()
    fanout, topic = name + "_fanout", name + "-topic"
    channel.exchange_declare(fanout, "fanout", auto_delete=True)
    channel.exchange_declare(topic, "topic")
    link.cleanup.append(("exchange", topic))
    got: dict[str, list[bytes]] = {}
    for queue, exchange, key in (
        (name + ".a", fanout, name),
        (name + ".b", fanout, name),
        (name + ".h1", topic, name + ".h1"),
        (name + ".any", topic, name + ".*"),
    ):
        channel.queue_declare(queue, exclusive=True)
        channel.queue_bind(queue, exchange, key)
        got[queue] = []
        channel.basic_consume(
            queue, lambda ch, m, p, body, q=queue: got[q].append(body), auto_ack=True
        )
    channel.basic_publish(fanout, "", b"everyone")
    channel.basic_publish(topic, name + ".h1", b"h1")
    channel.basic_publish(topic, name + ".h2", b"h2")
    expected = {
        name + ".a": [b"everyone"],
        name + ".b": [b"everyone"],
        name + ".h1": [b"h1"],
        name + ".any": [b"h1", b"h2"],
    }
    assert link.until(lambda: got == expected)
    # The fanout exchange is auto-delete: it goes with its last binding.
    link.connection.close()
    error = closed_with(
        lambda: Link(link.transport).channel().exchange_declare(fanout, passive=True)
    )
    assert error.reply_code == refusals.NOT_FOUND


def test_prefetch_is_per_consumer_and_acks_make_room(link: Link, name: str) -> None:
    channel = link.channel()
    channel.queue_declare(name, exclusive=True)
    for number in range(5):
        channel.basic_publish("", name, str(number).encode())
    channel.basic_qos(prefetch_count=2, global_qos=False)
    got: list[tuple[int, bytes]] = []
    channel.basic_consume(name, lambda ch, m, p, body: got.append((m.delivery_tag, body)))
    assert link.until(lambda: len(got) == 2)
    link.connection.process_data_events(time_limit=0.3)
    assert [body for _tag, body in got] == [b"0", b"1"]
    channel.basic_ack(got[1][0], multiple=True)
    assert link.until(lambda: len(got) == 4)
    assert channel.queue_declare(name, passive=True).method.message_count == 1


def test_unacked_messages_go_back_when_the_connection_closes(
    link: Link, other: Link, name: str
) -> None:
    channel = link.channel()
    channel.queue_declare(name)
    link.cleanup.append(("queue", name))
    for body in (b"a", b"b"):
        channel.basic_publish("", name, body)
    taken: list[Any] = []
    reader = other.channel()
    reader.basic_consume(name, lambda ch, m, p, body: taken.append((m, body)))
    assert other.until(lambda: len(taken) == 2)
    assert not any(method.redelivered for method, _body in taken)
    other.connection.close()
    again: list[Any] = []
    channel.basic_consume(name, lambda ch, m, p, body: again.append((m.redelivered, body)))
    assert link.until(lambda: len(again) == 2)
    assert sorted(again) == [(True, b"a"), (True, b"b")]


def test_nack_requeues_and_reject_drops(link: Link, name: str) -> None:
    channel = link.channel()
    channel.queue_declare(name, exclusive=True)
    channel.basic_publish("", name, b"x")
    seen: list[Any] = []
    channel.basic_consume(name, lambda ch, m, p, body: seen.append(m))
    assert link.until(lambda: len(seen) == 1)
    channel.basic_nack(seen[0].delivery_tag, requeue=True)
    assert link.until(lambda: len(seen) == 2)
    assert seen[1].redelivered
    channel.basic_reject(seen[1].delivery_tag, requeue=False)
    link.connection.process_data_events(time_limit=0.3)
    assert len(seen) == 2
    assert channel.queue_declare(name, passive=True).method.message_count == 0


def test_an_auto_delete_queue_goes_with_its_last_consumer(link: Link, name: str) -> None:
    channel = link.channel()
    channel.queue_declare(name, auto_delete=True)
    tag = channel.basic_consume(name, lambda *a: None)
    channel.basic_cancel(tag)
    assert link.until(lambda: _missing(link, name), timeout=5), (
        "an auto-delete queue outlived its last consumer"
    )


def _missing(link: Link, queue: str) -> bool:
    try:
        link.channel().queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        return exc.reply_code == refusals.NOT_FOUND
    return False


class Echo:
    def echo(self, context: Any, value: Any) -> Any:
        return value


def test_client_and_server_agree_on_both(transport: Transport, name: str) -> None:
    """The client's answers (and their exit codes) are the same on both transports."""
    server = RPCServer(transport, topic=name, server="h1", dispatcher=RPCDispatcher([Echo()]))
    server.start()
    try:
        with RPCClient(transport, timeout=10, exclusive=True) as client:
            assert client.call({}, "echo", target=Target(name, server="h1"), args={"value": 1}) == 1
            with pytest.raises(NoConsumerError, match="does not exist") as missing:
                client.call({}, "echo", topic=name, server="nobody")
            client.check_consumers = False
            with pytest.raises(NoConsumerError, match="returned the request") as returned:
                client.call({}, "echo", topic=name, server="nobody", timeout=30)
            assert missing.value.exit_code == returned.value.exit_code == 69
            assert client.queue_consumers(name) == 1
            replies = client.broadcast_call(
                {}, "echo", topic=name, args={"value": 2}, timeout=10, expect=1
            )
            assert [reply.result for reply in replies] == [2]
    finally:
        server.stop(5)
        server.wait(10)
        with RPCClient(transport) as cleaner:
            cleaner._ready()
            channel = cleaner._live_connection.channel()
            channel.queue_delete(name)
            channel.queue_delete(f"{name}.h1")

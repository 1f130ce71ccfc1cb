"""RPCClient and RPCServer on the in-memory transport: no broker, the real client and server.

What the broker itself does is held to RabbitMQ's answers by
tests/integration/test_transport_contract.py; here, what client and server make of it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from manager_cli.errors import (
    BadInputError,
    CallTimeoutError,
    NoConsumerError,
    RemoteError,
    UnavailableError,
)
from manager_cli.rpc import get_transport, wire
from manager_cli.rpc.client import RPCClient
from manager_cli.rpc.dispatcher import RPCDispatcher
from manager_cli.rpc.memory import MemoryBroker, MemoryTransport
from manager_cli.rpc.server import RPCServer
from manager_cli.rpc.target import Target
from manager_cli.testing import memory_settings, served

TOPIC = "unit"


class Broken(Exception):
    """Not a builtin, not in allowed_remote_exmods: comes back as a RemoteError."""


class Endpoint:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.casts: list[Any] = []

    def echo(self, context: Any, value: Any) -> Any:
        return value

    def wait_then(self, context: Any, value: Any) -> Any:
        self.release.wait(10)
        return value

    def sleep(self, context: Any, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def fail(self, context: Any) -> None:
        raise Broken("missing")

    def note(self, context: Any, value: Any) -> None:
        self.casts.append(value)


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


@pytest.fixture
def transport() -> MemoryTransport:
    return MemoryTransport(broker=MemoryBroker("unit"))


@pytest.fixture
def endpoint() -> Endpoint:
    return Endpoint()


def start_server(
    transport: MemoryTransport, endpoint: Endpoint, host: str = "h1", threads: int = 4
) -> RPCServer:
    server = RPCServer(
        transport,
        topic=TOPIC,
        server=host,
        dispatcher=RPCDispatcher([endpoint]),
        executor_threads=threads,
    )
    server.start()
    return server


@pytest.fixture
def server(transport: MemoryTransport, endpoint: Endpoint):
    server = start_server(transport, endpoint)
    yield server
    endpoint.release.set()
    server.stop(graceful_timeout=5)
    assert server.wait(10)


@pytest.fixture
def client(transport: MemoryTransport):
    with RPCClient(transport, timeout=10) as client:
        yield client


def test_a_call_is_answered_by_the_server(server: RPCServer, client: RPCClient) -> None:
    assert client.call({}, "echo", topic=TOPIC, args={"value": [1, "a"]}) == [1, "a"]
    assert client.call({}, "echo", target=Target(TOPIC, server="h1"), args={"value": 2}) == 2


def test_a_target_and_keywords_refine_each_other(server: RPCServer, client: RPCClient) -> None:
    target = Target(TOPIC, server="nobody")
    # server= overrides the target's (oslo's prepare())
    assert client.call({}, "echo", target=target, server="h1", args={"value": 3}) == 3
    with pytest.raises(BadInputError):
        client.call({}, "echo", args={"value": 1})
    with pytest.raises(TypeError):
        client.call({}, "echo", topic=TOPIC, serverr="h1")  # type: ignore[call-arg]


def test_replies_are_routed_by_msg_id(
    server: RPCServer, client: RPCClient, endpoint: Endpoint
) -> None:
    slow = client.call_async({}, "wait_then", topic=TOPIC, args={"value": "slow"})
    fast = client.call_async({}, "echo", topic=TOPIC, args={"value": "fast"})
    assert fast.result() == "fast"
    assert not slow.done()
    endpoint.release.set()
    assert slow.result() == "slow"
    assert slow.msg_id != fast.msg_id


def test_call_many_gathers_results_and_errors(server: RPCServer, client: RPCClient) -> None:
    results = client.call_many(
        [
            {"method": "echo", "topic": TOPIC, "args": {"value": 1}},
            {"method": "echo", "target": Target(TOPIC, server="h1"), "args": {"value": 2}},
            {"method": "echo", "topic": TOPIC, "server": "nobody", "args": {"value": 3}},
            {"method": "fail", "topic": TOPIC},
        ]
    )
    assert results[:2] == [1, 2]
    assert isinstance(results[2], NoConsumerError)
    assert isinstance(results[3], RemoteError) and results[3].exc_type == "Broken"
    with pytest.raises(BadInputError):
        client.call_many([{"method": "echo", "topic": TOPIC, "bogus": 1}])


def test_duplicate_replies_are_dropped(transport: MemoryTransport, client: RPCClient) -> None:
    """A server that answers twice with one _unique_id (a reply re-sent after a reconnect):
    a broadcast, which takes every ending reply until its timeout, counts it once."""
    from manager_cli.names import fanout_exchange_name

    connection = transport.connect()
    channel = connection.channel()
    exchange = fanout_exchange_name(TOPIC)
    channel.exchange_declare(exchange, "fanout", auto_delete=True)
    channel.queue_declare(TOPIC)
    channel.queue_bind(TOPIC, exchange, TOPIC)
    requests: list[wire.Request] = []

    def on_request(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        request = wire.parse_request(wire.decode_envelope(body))
        requests.append(request)
        reply = wire.encode_envelope(wire.build_reply(request.msg_id, len(requests), None))
        for _copy in range(2):
            ch.basic_publish("", request.reply_q, reply, transport.topology.properties())
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(TOPIC, on_request)
    answering = threading.Event()

    def answer() -> None:
        while not answering.is_set():
            connection.process_data_events(0.02)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        replies = client.broadcast_call({}, "echo", topic=TOPIC, timeout=1.0)
        assert [reply.result for reply in replies] == [1]  # one answer, though sent twice
        assert len(requests) == 1
    finally:
        answering.set()
        thread.join(5)
        connection.close()


def test_a_returned_request_fails_at_once_as_nobody_consumes(
    server: RPCServer, client: RPCClient
) -> None:
    client.check_consumers = False  # no passive declare: the broker's return must tell
    started = time.monotonic()
    with pytest.raises(NoConsumerError) as caught:
        client.call({}, "echo", topic=TOPIC, server="nobody", args={"value": 1}, timeout=30)
    assert time.monotonic() - started < 10  # not the 30 s timeout
    assert caught.value.exit_code == 69
    assert "returned the request" in caught.value.message


def test_a_missing_queue_is_found_before_sending(server: RPCServer, client: RPCClient) -> None:
    with pytest.raises(NoConsumerError, match="does not exist") as caught:
        client.call({}, "echo", topic="nobody-serves", args={"value": 1})
    assert caught.value.exit_code == 69


def test_casts_and_fanout_casts(server: RPCServer, client: RPCClient, endpoint: Endpoint) -> None:
    client.cast({}, "note", topic=TOPIC, args={"value": "one"})
    client.cast({}, "note", target=Target(TOPIC, fanout=True), args={"value": "all"})
    client.cast({}, "note", topic=TOPIC, fanout=True, args={"value": "all2"})
    assert wait_for(lambda: sorted(endpoint.casts) == ["all", "all2", "one"])
    with pytest.raises(NoConsumerError):
        client.cast({}, "note", topic=TOPIC, server="nobody", args={"value": 1})
    with pytest.raises(NoConsumerError, match="nobody listens"):
        client.cast({}, "note", topic="lonely", fanout=True, require_listener=True)


def test_a_broadcast_gathers_every_server(
    transport: MemoryTransport, server: RPCServer, client: RPCClient, endpoint: Endpoint
) -> None:
    other = start_server(transport, endpoint, host="h2")
    try:
        replies = client.broadcast_call(
            {}, "echo", topic=TOPIC, args={"value": 7}, timeout=10, expect=2
        )
        assert [reply.result for reply in replies] == [7, 7]
        assert client.queue_consumers(TOPIC) == 2
    finally:
        other.stop(5)
    assert client.broadcast_call({}, "echo", topic="nobody", timeout=10) == []


def test_a_call_times_out(server: RPCServer, client: RPCClient, endpoint: Endpoint) -> None:
    with pytest.raises(CallTimeoutError) as caught:
        client.call({}, "wait_then", topic=TOPIC, args={"value": 1}, timeout=0.3)
    assert caught.value.exit_code == 75
    pending = client.call_async({}, "wait_then", topic=TOPIC, args={"value": 2})
    with pytest.raises(CallTimeoutError, match="still pending"):
        pending.result(timeout=0.1)
    endpoint.release.set()
    assert pending.result() == 2


def test_a_remote_failure_comes_back(server: RPCServer, client: RPCClient) -> None:
    with pytest.raises(RemoteError) as caught:
        client.call({}, "fail", topic=TOPIC)
    assert caught.value.exit_code == 1


def test_client_and_server_reconnect_after_a_drop(
    transport: MemoryTransport, server: RPCServer, client: RPCClient
) -> None:
    assert client.call({}, "echo", topic=TOPIC, args={"value": "before"}) == "before"
    transport.broker.drop_connections()
    # The server reconnects with its backoff (rabbit_retry_interval, 1 s); the client on its
    # next call. Until the server is back, nobody consumes the (surviving) queue.
    assert wait_for(lambda: transport.broker.consumer_count(TOPIC) == 1)
    assert client.call({}, "echo", topic=TOPIC, args={"value": "after"}) == "after"


def test_a_drop_while_waiting_fails_the_call(
    transport: MemoryTransport, server: RPCServer, client: RPCClient, endpoint: Endpoint
) -> None:
    pending = client.call_async({}, "wait_then", topic=TOPIC, args={"value": 1})
    assert wait_for(lambda: transport.broker.message_count(TOPIC) == 0)
    threading.Timer(0.2, transport.broker.drop_connections).start()
    with pytest.raises(UnavailableError, match="may or may not have run"):
        pending.result()


def test_the_server_requeues_what_it_did_not_start(transport: MemoryTransport) -> None:
    """Prefetch bounds what waits unacked; stopping gives the backlog back to the queue."""
    endpoint = Endpoint()
    server = start_server(transport, endpoint, threads=1)
    with RPCClient(transport, timeout=10) as client:
        for number in range(5):
            client.cast({}, "wait_then", topic=TOPIC, args={"value": number})
        # one running, one (prefetch 1 per consumer) waiting unacked; three in the queue
        assert wait_for(lambda: transport.broker.message_count(TOPIC) == 3)
        server.stop(graceful_timeout=0.5)
        endpoint.release.set()
        assert server.wait(10)
        assert transport.broker.message_count(TOPIC) == 4  # the backlog went back
        assert transport.broker.consumer_count(TOPIC) == 0


def test_get_transport_reads_the_settings() -> None:
    settings = memory_settings("from-settings")
    first, second = get_transport(settings), get_transport(settings)
    assert isinstance(first, MemoryTransport)
    assert first.broker is second.broker  # one broker per name in the process
    assert first.options.control_exchange == settings.control_exchange


def test_a_served_manager_answers_end_to_end() -> None:
    from manager_cli.manager import Manager

    class Counter(Manager):
        RPC_API_VERSION = "1.1"

        def add(self, context: Any, a: int, b: int) -> int:
            return a + b

    with served(Counter, topic="counter", host="node1") as client:
        assert client.call({}, "add", topic="counter", version="1.1", args={"a": 2, "b": 3}) == 5
        ping = client.call(
            {}, "ping", topic="counter", server="node1", namespace="baseapi", version="1.1"
        )
        assert ping["host"] == "node1"
        with pytest.raises(RemoteError, match="UnsupportedVersion|NoSuchMethod"):
            client.call({}, "add", topic="counter", version="2.0", args={"a": 1, "b": 1})


def test_the_testing_docstring_example_runs() -> None:
    import textwrap

    import manager_cli.testing as testing

    doc = testing.__doc__ or ""
    code = textwrap.dedent(doc.split("::\n", 1)[1].split("\nThe memory broker")[0])
    namespace: dict[str, Any] = {}
    exec(compile(code, "manager_cli.testing docstring", "exec"), namespace)
    namespace["test_hello"]()

"""RPCClient and RPCServer against a real throwaway RabbitMQ node."""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
import threading
import time
import uuid
from typing import Any

import pika
import pytest
from rigs.rabbitmq import free_port

from manager_cli.errors import (
    AccessRefusedError,
    BrokerUnreachableError,
    CallTimeoutError,
    NoConsumerError,
    RemoteError,
)
from manager_cli.rpc import client as client_module
from manager_cli.rpc import wire
from manager_cli.rpc.client import RPCClient
from manager_cli.rpc.dispatcher import RPCDispatcher, Target
from manager_cli.rpc.server import RPCServer
from manager_cli.rpc.transport import RabbitOptions, parse_transport_url

TOPIC = f"rpctest_{uuid.uuid4().hex[:8]}"
CONTEXT = {"user": "alice", "roles": ["admin"]}
FAST_RECONNECT = RabbitOptions(rabbit_retry_interval=0.2, rabbit_retry_backoff=0.2)


class CustomError(Exception):
    """An application exception the client may or may not be allowed to rebuild."""


class Endpoint:
    target = Target(version="1.3")

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: collections.deque[tuple[str, Any]] = collections.deque()
        self.counts: collections.Counter[str] = collections.Counter()

    def echo(self, context: dict, **kwargs: Any) -> dict:
        return {"args": kwargs, "context": context, "server": self.name}

    def whoami(self, context: dict) -> str:
        return self.name

    def record(self, context: dict, token: str) -> None:
        self.events.append((self.name, token))

    def count(self, context: dict, token: str) -> int:
        self.counts[token] += 1
        return self.counts[token]

    def fail(self, context: dict, message: str) -> None:
        raise ValueError(message)

    def fail_custom(self, context: dict) -> None:
        raise CustomError("custom failure")

    def sleep(self, context: dict, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def _private(self, context: dict) -> str:
        return "secret"


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def queue_names(node) -> set[str]:
    return {q["name"] for q in node.list_queues()}


@pytest.fixture(scope="module")
def url(rabbitmq) -> str:
    return rabbitmq.url


@pytest.fixture(scope="module")
def reply_queues_before(rabbitmq) -> set[str]:
    return {name for name in queue_names(rabbitmq) if name.startswith("reply_")}


@pytest.fixture(scope="module")
def endpoints() -> dict[str, Endpoint]:
    return {"srv1": Endpoint("srv1"), "srv2": Endpoint("srv2")}


@pytest.fixture(scope="module")
def servers(url, endpoints, reply_queues_before):
    started = []
    for name, endpoint in endpoints.items():
        server = RPCServer(url, topic=TOPIC, server=name, dispatcher=RPCDispatcher([endpoint]))
        server.start()
        started.append(server)
    yield {server.server: server for server in started}
    for server in started:
        server.stop(graceful_timeout=5)


@pytest.fixture(scope="module")
def client(url, servers):
    with RPCClient(url, timeout=10) as rpc:
        yield rpc


@pytest.fixture(scope="module")
def raw(url):
    """A plain pika channel, to publish what no well-behaved client would."""
    host = parse_transport_url(url).hosts[0]
    params = pika.ConnectionParameters(
        host.hostname, host.port, credentials=pika.PlainCredentials(host.username, host.password)
    )
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    yield connection, channel
    connection.close()


class RawReplies:
    """A reply queue read with plain pika, to see every reply message on the wire."""

    def __init__(self, raw) -> None:
        self.connection, self.channel = raw
        self.name = f"reply_{uuid.uuid4().hex}"
        self.channel.queue_declare(self.name, exclusive=True, auto_delete=True)
        self.messages: list[dict] = []
        self.tag = self.channel.basic_consume(self.name, self._on_message, auto_ack=True)

    def _on_message(self, channel, method, properties, body) -> None:
        self.messages.append(wire.decode_envelope(body))

    def publish(self, routing_key: str, message: dict, *, body: bytes | None = None, **props):
        properties = pika.BasicProperties(**{**wire.BASE_PROPERTIES, **props})
        body = wire.encode_envelope(message) if body is None else body
        self.channel.basic_publish("openstack", routing_key, body, properties)

    def collect(self, seconds: float, until=None) -> list[dict]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until(self.messages)):
            self.connection.process_data_events(time_limit=0.05)
        return self.messages

    def close(self) -> None:
        self.channel.basic_cancel(self.tag)
        self.channel.queue_delete(self.name)


@pytest.fixture
def raw_replies(raw):
    replies = RawReplies(raw)
    yield replies
    replies.close()


# ---------------------------------------------------------------------------
# call, cast, fanout


def test_call_returns_the_result_with_the_context(client):
    result = client.call(CONTEXT, "echo", topic=TOPIC, args={"a": 1, "b": [2, 3]})
    assert result["args"] == {"a": 1, "b": [2, 3]}
    assert result["context"] == {**CONTEXT, "client_timeout": None}
    assert result["server"] in ("srv1", "srv2")


def test_call_to_a_named_server_reaches_that_server(client):
    for _ in range(5):
        assert client.call({}, "whoami", topic=TOPIC, server="srv2") == "srv2"
        assert client.call({}, "whoami", topic=TOPIC, server="srv1") == "srv1"


def test_call_with_compatible_version(client):
    assert client.call({}, "whoami", topic=TOPIC, server="srv1", version="1.2") == "srv1"


def test_cast_runs_on_exactly_one_server(client, endpoints):
    token = uuid.uuid4().hex
    client.cast(CONTEXT, "record", topic=TOPIC, args={"token": token})

    def seen():
        return [name for ep in endpoints.values() for name, t in ep.events if t == token]

    assert wait_for(lambda: len(seen()) == 1)
    time.sleep(0.3)
    assert len(seen()) == 1


def test_cast_to_a_server(client, endpoints):
    token = uuid.uuid4().hex
    client.cast({}, "record", topic=TOPIC, server="srv2", args={"token": token})
    assert wait_for(lambda: ("srv2", token) in endpoints["srv2"].events)
    assert ("srv1", token) not in endpoints["srv1"].events


def test_fanout_cast_runs_on_every_server(client, endpoints):
    token = uuid.uuid4().hex
    client.cast({}, "record", topic=TOPIC, fanout=True, args={"token": token})
    assert wait_for(
        lambda: (
            ("srv1", token) in endpoints["srv1"].events
            and ("srv2", token) in endpoints["srv2"].events
        )
    )


def test_cast_to_a_server_nobody_serves_fails_at_once(client):
    with pytest.raises(NoConsumerError, match=f"{TOPIC}.nohost"):
        client.cast({}, "record", topic=TOPIC, server="nohost", args={"token": "x"})


# ---------------------------------------------------------------------------
# errors from the remote side


def test_builtin_exception_is_reraised(client):
    with pytest.raises(ValueError, match="deliberate failure") as info:
        client.call({}, "fail", topic=TOPIC, args={"message": "deliberate failure"})
    assert "Traceback" in info.value.remote_traceback


def test_custom_exception_becomes_remote_error(client):
    with pytest.raises(RemoteError) as info:
        client.call({}, "fail_custom", topic=TOPIC)
    assert info.value.exc_type == "CustomError"
    assert info.value.value == "custom failure"
    assert info.value.exit_code == 1


def test_custom_exception_of_an_allowed_module_is_rebuilt(url, servers):
    allowed = RPCClient(url, timeout=10, allowed_remote_exmods=[CustomError.__module__])
    with allowed, pytest.raises(CustomError, match="custom failure"):
        allowed.call({}, "fail_custom", topic=TOPIC)


def test_no_such_method(client):
    with pytest.raises(RemoteError) as info:
        client.call({}, "no_such_method", topic=TOPIC)
    assert info.value.exc_type == "NoSuchMethod"
    assert "Endpoint does not support RPC method no_such_method" in info.value.value


def test_private_method_is_no_such_method(client):
    with pytest.raises(RemoteError) as info:
        client.call({}, "_private", topic=TOPIC)
    assert info.value.exc_type == "NoSuchMethod"


@pytest.mark.parametrize(("version", "namespace"), [("2.0", None), ("1.4", None), ("1.0", "ns")])
def test_unsupported_version_or_namespace(client, version, namespace):
    with pytest.raises(RemoteError) as info:
        client.call({}, "whoami", topic=TOPIC, version=version, namespace=namespace)
    assert info.value.exc_type == "UnsupportedVersion"
    assert f"Endpoint does not support RPC version {version}" in info.value.value


# ---------------------------------------------------------------------------
# failing fast


def test_call_to_a_host_nobody_serves_fails_at_once(client):
    started = time.monotonic()
    with pytest.raises(NoConsumerError) as info:
        client.call({}, "whoami", topic=TOPIC, server="nohost", timeout=30)
    assert time.monotonic() - started < 1.0
    assert f"{TOPIC}.nohost" in str(info.value)
    assert "openstack" in str(info.value)
    assert info.value.exit_code == 69


def test_call_to_a_queue_left_by_a_dead_server_fails_at_once(client, raw):
    _connection, channel = raw
    ghost = f"{TOPIC}.ghost"
    channel.queue_declare(ghost)
    channel.queue_bind(ghost, "openstack", ghost)
    try:
        started = time.monotonic()
        with pytest.raises(NoConsumerError, match="no consumer"):
            client.call({}, "whoami", topic=TOPIC, server="ghost", timeout=30)
        assert time.monotonic() - started < 1.0
    finally:
        channel.queue_delete(ghost)


def test_without_the_consumer_check_a_returned_request_still_fails_at_once(url, servers):
    with RPCClient(url, timeout=30, check_consumers=False) as unchecked:
        started = time.monotonic()
        with pytest.raises(NoConsumerError, match="returned"):
            unchecked.call({}, "whoami", topic=TOPIC, server="nohost")
        assert time.monotonic() - started < 1.0
        assert unchecked.call({}, "whoami", topic=TOPIC, server="srv1") == "srv1"


def test_unreachable_broker_fails_fast():
    port = free_port()
    started = time.monotonic()
    rpc = RPCClient(f"rabbit://guest:Sekr1t@127.0.0.1:{port}/", timeout=30)
    with rpc, pytest.raises(BrokerUnreachableError) as info:
        rpc.call({}, "whoami", topic=TOPIC)
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "transport_url" in message
    assert "Sekr1t" not in message
    assert info.value.exit_code == 69
    assert info.value.__suppress_context__


def test_fail_over_to_the_next_host(url, servers):
    good = parse_transport_url(url).hosts[0]
    dead = free_port()
    failover = f"rabbit://guest:guest@127.0.0.1:{dead},guest:guest@127.0.0.1:{good.port}/"
    with RPCClient(failover, timeout=10) as rpc:
        assert rpc.call({}, "whoami", topic=TOPIC, server="srv1") == "srv1"


def test_wrong_password_is_access_refused(url):
    host = parse_transport_url(url).hosts[0]
    rpc = RPCClient(f"rabbit://guest:Wr0ngPa55@127.0.0.1:{host.port}/")
    with rpc, pytest.raises(AccessRefusedError) as info:
        rpc.call({}, "whoami", topic=TOPIC)
    assert "Wr0ngPa55" not in str(info.value)
    assert "guest" in str(info.value)
    assert info.value.exit_code == 77


def test_missing_vhost_is_access_refused(url):
    host = parse_transport_url(url).hosts[0]
    rpc = RPCClient(f"rabbit://guest:guest@127.0.0.1:{host.port}/nosuchvhost")
    with rpc, pytest.raises(AccessRefusedError, match="nosuchvhost"):
        rpc.call({}, "whoami", topic=TOPIC)


# ---------------------------------------------------------------------------
# timeouts and call-monitor heartbeats


def test_timeout_names_the_target_and_the_timeout(client):
    started = time.monotonic()
    with pytest.raises(CallTimeoutError) as info:
        client.call({}, "sleep", topic=TOPIC, server="srv1", args={"seconds": 1.5}, timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 2.0
    assert f"{TOPIC}.srv1" in str(info.value)
    assert "0.5s" in str(info.value)
    assert info.value.exit_code == 75
    # The late reply is dropped, and the next call is not confused by it.
    time.sleep(1.2)
    assert client.call({}, "whoami", topic=TOPIC, server="srv1") == "srv1"


def test_call_monitor_heartbeats_keep_a_long_call_alive(client):
    # 2.5 s of work with a 2 s call monitor: only the heartbeats (every 1 s) keep it going.
    result = client.call(
        {}, "sleep", topic=TOPIC, server="srv1", args={"seconds": 2.5}, call_monitor_timeout=2
    )
    assert result == 2.5


def test_call_monitor_times_out_without_heartbeats(client):
    # Below 2 s the server sends no heartbeat (oslo's rule), so the monitor fires.
    started = time.monotonic()
    with pytest.raises(CallTimeoutError, match="call monitor"):
        client.call(
            {}, "sleep", topic=TOPIC, server="srv2", args={"seconds": 2}, call_monitor_timeout=1
        )
    assert time.monotonic() - started < 1.9
    time.sleep(1.0)  # let srv2 finish before other tests use it


def _request(method: str, reply_q: str, **fields: Any) -> dict:
    msg_id = uuid.uuid4().hex
    return wire.build_request(
        method, fields.pop("args", {}), msg_id=msg_id, reply_q=reply_q, **fields
    )


def test_heartbeats_on_the_wire_only_when_the_caller_asked(servers, raw_replies):
    with_monitor = _request(
        "sleep", raw_replies.name, args={"seconds": 2.5}, call_monitor_timeout=2
    )
    without = _request("sleep", raw_replies.name, args={"seconds": 2.5})
    raw_replies.publish(f"{TOPIC}.srv1", with_monitor)
    raw_replies.publish(f"{TOPIC}.srv2", without)
    messages = raw_replies.collect(6, until=lambda got: sum(1 for m in got if m.get("ending")) == 2)
    by_id = collections.defaultdict(list)
    for message in messages:
        by_id[message["_msg_id"]].append(message)
    monitored = by_id[with_monitor["_msg_id"]]
    plain = by_id[without["_msg_id"]]
    beats = [m for m in monitored if m["ending"] is False]
    assert len(beats) == 2  # at 1 s and 2 s
    assert all(m["result"] is None and m["failure"] is None for m in beats)
    assert monitored[-1]["ending"] is True and monitored[-1]["result"] == 2.5
    assert len(plain) == 1 and plain[0]["ending"] is True and plain[0]["result"] == 2.5


# ---------------------------------------------------------------------------
# broadcast call


def test_broadcast_call_returns_as_soon_as_the_expected_servers_answered(client):
    started = time.monotonic()
    replies = client.broadcast_call({}, "whoami", topic=TOPIC, timeout=10, expect=2)
    assert time.monotonic() - started < 2
    assert sorted(reply.result for reply in replies) == ["srv1", "srv2"]
    assert all(reply.failure is None and 0 <= reply.elapsed < 2 for reply in replies)


def test_broadcast_call_stop_when(client):
    replies = client.broadcast_call(
        {}, "whoami", topic=TOPIC, timeout=10, stop_when=lambda got: len(got) >= 1
    )
    assert len(replies) == 1


def test_broadcast_call_gathers_failures(client):
    replies = client.broadcast_call(
        {}, "fail", topic=TOPIC, args={"message": "everywhere"}, timeout=10, expect=2
    )
    assert len(replies) == 2
    assert all(isinstance(reply.failure, ValueError) for reply in replies)
    assert all(reply.result is None for reply in replies)


def test_broadcast_call_without_expect_waits_the_deadline(client):
    started = time.monotonic()
    replies = client.broadcast_call({}, "whoami", topic=TOPIC, timeout=0.7)
    assert 0.7 <= time.monotonic() - started < 1.5
    assert len(replies) == 2


def test_broadcast_call_to_an_unserved_topic_is_empty_at_once(client):
    started = time.monotonic()
    assert client.broadcast_call({}, "whoami", topic=TOPIC + "_nobody", timeout=10) == []
    assert time.monotonic() - started < 1.0
    # The client is still usable after the 404 on its check channel.
    assert client.call({}, "whoami", topic=TOPIC, server="srv1") == "srv1"


class OldStyleServer(threading.Thread):
    """Replies the way pre-2015 oslo servers did: the result with ``ending: false``, then an
    empty ``ending: true`` message. Between them it sends a different result under the first
    reply's ``_unique_id``, which a client must drop as a duplicate."""

    def __init__(self, url: str, queue: str) -> None:
        super().__init__(daemon=True)
        host = parse_transport_url(url).hosts[0]
        self.params = pika.ConnectionParameters(
            host.hostname,
            host.port,
            credentials=pika.PlainCredentials(host.username, host.password),
        )
        self.queue = queue
        self.ready = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        connection = pika.BlockingConnection(self.params)
        channel = connection.channel()
        channel.queue_declare(self.queue)
        channel.queue_bind(self.queue, "openstack", self.queue)
        props = pika.BasicProperties(**wire.BASE_PROPERTIES)

        def on_request(channel, method, properties, body) -> None:
            channel.basic_ack(method.delivery_tag)
            request = wire.parse_request(wire.decode_envelope(body))
            first = wire.build_reply(request.msg_id, {"answer": 42}, None, ending=False)
            duplicate = {**first, "result": {"answer": "duplicate"}}
            last = wire.build_reply(request.msg_id, None, None, ending=True)
            for message in (first, duplicate, last):
                channel.basic_publish("", request.reply_q, wire.encode_envelope(message), props)

        tag = channel.basic_consume(self.queue, on_request)
        self.ready.set()  # only now: the client checks for a consumer before it calls
        while not self.done.is_set():
            connection.process_data_events(time_limit=0.05)
        channel.basic_cancel(tag)
        channel.queue_delete(self.queue)
        connection.close()


def test_old_two_part_replies_and_duplicate_replies(url, client):
    old = OldStyleServer(url, f"{TOPIC}.old")
    old.start()
    assert old.ready.wait(5)
    try:
        for _ in range(3):
            assert client.call({}, "anything", topic=TOPIC, server="old") == {"answer": 42}
    finally:
        old.done.set()
        old.join(5)


# ---------------------------------------------------------------------------
# pipelining


def test_call_async_and_call_many(client):
    pending = [
        client.call_async({}, "echo", topic=TOPIC, server="srv1", args={"i": i}) for i in range(20)
    ]
    assert [p.result()["args"]["i"] for p in reversed(pending)] == list(reversed(range(20)))
    results = client.call_many(
        [{"method": "echo", "topic": TOPIC, "args": {"i": i}} for i in range(50)]
        + [{"method": "fail", "topic": TOPIC, "args": {"message": "one bad"}}]
        + [{"method": "whoami", "topic": TOPIC, "server": "nohost"}]
    )
    assert [r["args"]["i"] for r in results[:50]] == list(range(50))
    assert isinstance(results[50], ValueError)
    assert isinstance(results[51], NoConsumerError)


def test_a_slow_method_does_not_hold_up_the_next_requests(client):
    """The worker pool isolates a slow method: later calls to the same server are answered
    while it runs (the I/O thread only waits a moment for a reply, never for the method)."""
    slow = client.call_async({}, "sleep", topic=TOPIC, server="srv1", args={"seconds": 3.0})
    for i in range(20):
        assert client.call({}, "echo", topic=TOPIC, server="srv1", args={"i": i})["args"] == {
            "i": i
        }
    assert not slow.done()
    assert slow.result() == 3.0


def test_requests_taken_in_one_pass_are_all_answered_once(client, endpoints):
    """Many requests arrive in one pass of the I/O loop and are acked together: each runs once."""
    tokens = [f"batch-{uuid.uuid4().hex}" for _ in range(40)]
    results = client.call_many(
        [
            {"method": "count", "topic": TOPIC, "server": "srv2", "args": {"token": t}}
            for t in tokens
        ]
    )
    assert results == [1] * len(tokens)
    assert [endpoints["srv2"].counts[token] for token in tokens] == [1] * len(tokens)


def test_pending_call_result_with_a_short_wait_leaves_it_pending(client):
    pending = client.call_async({}, "sleep", topic=TOPIC, server="srv1", args={"seconds": 0.5})
    with pytest.raises(CallTimeoutError):
        pending.result(timeout=0.1)
    assert not pending.done()
    assert pending.result() == 0.5


# ---------------------------------------------------------------------------
# what the server does with bad and duplicate messages


def test_poison_messages_are_rejected_and_the_server_goes_on(rabbitmq, client, raw_replies):
    queue = f"{TOPIC}.srv1"
    raw_replies.publish(queue, {}, body=b"\xff not json at all")
    raw_replies.publish(queue, {}, body=b'{"oslo.version": "2.1", "oslo.message": "{}"}')
    raw_replies.publish(queue, {}, body=b"[1, 2, 3]")
    raw_replies.publish(queue, {"method": "whoami"}, content_type="text/plain")
    raw_replies.publish(queue, {"args": {}})  # no method, and nowhere to reply
    raw_replies.publish(queue, {"method": "echo", "args": {"x": "y" * (2 * 1024 * 1024)}})
    assert client.call({}, "whoami", topic=TOPIC, server="srv1") == "srv1"
    assert wait_for(
        lambda: {q["name"]: q["messages"] for q in rabbitmq.list_queues()}.get(queue) == 0
    )
    assert client.call({}, "whoami", topic=TOPIC, server="srv1") == "srv1"


def test_a_malformed_call_with_a_reply_queue_gets_a_failure(servers, raw_replies):
    msg_id = uuid.uuid4().hex
    raw_replies.publish(
        f"{TOPIC}.srv1", {"args": {}, "_msg_id": msg_id, "_reply_q": raw_replies.name}
    )
    big = _request("echo", raw_replies.name, args={"x": "y" * (2 * 1024 * 1024)})
    raw_replies.publish(f"{TOPIC}.srv1", big)
    messages = raw_replies.collect(5, until=lambda got: len(got) >= 2)
    failures = {m["_msg_id"]: json.loads(m["failure"]) for m in messages}
    assert failures[msg_id]["class"] == "WireFormatError"
    assert "no method" in failures[msg_id]["message"]
    assert failures[big["_msg_id"]]["class"] == "MessageTooLarge"
    assert all(m["ending"] is True and m["result"] is None for m in messages)


def test_a_duplicate_unique_id_runs_once_and_gets_no_second_reply(endpoints, raw_replies):
    token = uuid.uuid4().hex
    request = _request("count", raw_replies.name, args={"token": token})
    raw_replies.publish(f"{TOPIC}.srv1", request)
    raw_replies.publish(f"{TOPIC}.srv1", request)
    messages = raw_replies.collect(1.5)
    assert [m["result"] for m in messages] == [1]
    assert endpoints["srv1"].counts[token] == 1


def test_a_bare_1_0_message_is_served(endpoints, raw_replies):
    token = uuid.uuid4().hex
    body = json.dumps({"method": "record", "args": {"token": token}}).encode()
    raw_replies.publish(f"{TOPIC}.srv2", {}, body=body)
    assert wait_for(lambda: ("srv2", token) in endpoints["srv2"].events)


# ---------------------------------------------------------------------------
# lifecycle: graceful stop, requeue, reconnect, exclusive reply queues


def test_graceful_stop_finishes_the_running_call_and_requeues_the_rest(rabbitmq, url):
    topic = f"{TOPIC}_stop"
    server = RPCServer(
        url, topic=topic, server="s", dispatcher=RPCDispatcher([Endpoint("s")]), executor_threads=1
    )
    server.start()
    fanout_queue = server.fanout_queue
    assert fanout_queue in queue_names(rabbitmq)
    try:
        with RPCClient(url, timeout=10) as rpc:
            running = rpc.call_async({}, "sleep", topic=topic, server="s", args={"seconds": 1.0})
            waiting = rpc.call_async({}, "sleep", topic=topic, server="s", args={"seconds": 0.01})
            # The first runs; the second waits, unacked, in the server's backlog.
            assert wait_for(lambda: len(server._jobs) == 1 and len(server._backlog) == 1)
            stopper = threading.Thread(target=server.stop, kwargs={"graceful_timeout": 10})
            stopper.start()
            assert running.result() == 1.0
            stopper.join(10)
            assert not stopper.is_alive()
            assert server.wait(0)
            assert not waiting.done()
            queues = {q["name"]: q for q in rabbitmq.list_queues()}
            assert queues[f"{topic}.s"]["messages"] == 1  # back in the queue, never run
            assert queues[f"{topic}.s"]["consumers"] == 0
            assert fanout_queue not in queues
    finally:
        server.stop()
        with contextlib.suppress(Exception):
            rabbitmq.rabbitmqctl("delete_queue", f"{topic}.s")
            rabbitmq.rabbitmqctl("delete_queue", topic)


def _close_connection(rabbitmq, connection: pika.BlockingConnection) -> None:
    """Have the broker close a connection (as an operator, or a node going down, would)."""
    local_port = connection._impl._transport._sock.getsockname()[1]
    # The JSON formatter prints pids in a form close_connection does not take: use the tabs.
    listing = rabbitmq.rabbitmqctl("list_connections", "pid", "peer_port", "--silent")
    for line in listing.splitlines():
        pid, _, port = line.partition("\t")
        if port.strip() == str(local_port):
            rabbitmq.rabbitmqctl("close_connection", pid, "test: cut it")
            return
    raise AssertionError(f"no connection from port {local_port} in:\n{listing}")


def test_server_reconnects_after_losing_its_connection(rabbitmq, url):
    topic = f"{TOPIC}_reconnect"
    endpoint = Endpoint("r")
    server = RPCServer(
        url, topic=topic, server="r", dispatcher=RPCDispatcher([endpoint]), options=FAST_RECONNECT
    )
    server.start()
    try:
        with RPCClient(url, timeout=10) as rpc:
            assert rpc.call({}, "whoami", topic=topic, server="r") == "r"
            _close_connection(rabbitmq, server._connection)
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert rpc.call({}, "whoami", topic=topic, server="r", timeout=2) == "r"
                    break
                except (NoConsumerError, CallTimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            token = uuid.uuid4().hex
            rpc.cast({}, "record", topic=topic, fanout=True, args={"token": token})
            assert wait_for(lambda: ("r", token) in endpoint.events)
    finally:
        server.stop(graceful_timeout=5)
        with contextlib.suppress(Exception):
            rabbitmq.rabbitmqctl("delete_queue", f"{topic}.r")
            rabbitmq.rabbitmqctl("delete_queue", topic)


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("probe", [True, False], ids=["idle-probe", "on-publish"])
def test_client_reconnects_after_losing_its_connection(
    rabbitmq, url, servers, monkeypatch, exclusive, probe
):
    if not probe:  # find the loss on the publish (or the wait), not by the idle probe
        monkeypatch.setattr(client_module, "IDLE_PROBE_AFTER", 3600.0)
    with RPCClient(url, timeout=10, exclusive=exclusive) as rpc:
        for server in ("srv1", "srv2"):
            assert rpc.call({}, "whoami", topic=TOPIC, server=server) == server
            before = rpc._connection
            _close_connection(rabbitmq, before)
            time.sleep(0.2)  # the broker's Connection.Close is waiting on the socket
            started = time.monotonic()
            assert rpc.call({}, "whoami", topic=TOPIC, server=server) == server
            assert time.monotonic() - started < 2
            assert rpc._connection is not before
        reply_queue = rpc.reply_queue
    assert reply_queue not in queue_names(rabbitmq)


def test_exclusive_reply_queue_leaves_nothing_behind(rabbitmq, url, servers):
    rpc = RPCClient(url, timeout=10, exclusive=True)
    try:
        assert rpc.call({}, "whoami", topic=TOPIC, server="srv1") == "srv1"
        assert rpc.reply_queue is not None and rpc.reply_queue.startswith("reply_")
        assert rpc.reply_queue in queue_names(rabbitmq)
    finally:
        rpc.close()
    assert rpc.reply_queue not in queue_names(rabbitmq)


def test_reply_queue_is_declared_as_oslo_does(rabbitmq, client):
    client.call({}, "whoami", topic=TOPIC, server="srv1")
    queues = {
        q["name"]: q
        for q in rabbitmq.list_queues(("name", "durable", "auto_delete", "exclusive", "arguments"))
    }
    reply = queues[client.reply_queue]
    assert (reply["durable"], reply["auto_delete"], reply["exclusive"]) == (False, False, False)
    assert _arguments(reply["arguments"]) == {"x-expires": 1800000}
    topic_queue = queues[f"{TOPIC}.srv1"]
    assert (topic_queue["durable"], topic_queue["auto_delete"]) == (False, False)
    assert _arguments(topic_queue["arguments"]) == {}
    fanout_queues = [name for name in queues if name.startswith(f"{TOPIC}_fanout_")]
    assert len(fanout_queues) == 2
    assert _arguments(queues[fanout_queues[0]]["arguments"]) == {"x-expires": 1800000}
    exchanges = {e["name"]: e for e in rabbitmq.list_exchanges()}
    assert exchanges["openstack"]["type"] == "topic"
    assert (exchanges["openstack"]["durable"], exchanges["openstack"]["auto_delete"]) == (
        False,
        False,
    )
    fanout = exchanges[f"{TOPIC}_fanout"]
    assert (fanout["type"], fanout["durable"], fanout["auto_delete"]) == ("fanout", False, True)


def _arguments(value: Any) -> dict:
    """rabbitmqctl's JSON shows queue arguments as [name, type, value] triples."""
    if isinstance(value, dict):
        return value
    return {item[0]: item[-1] for item in value or []}


def test_no_reply_queue_left_at_the_end(rabbitmq, client, servers, reply_queues_before):
    fanout_queues = [s.fanout_queue for s in servers.values()]
    client.close()
    for server in servers.values():
        server.stop(graceful_timeout=5)
    names = queue_names(rabbitmq)
    assert {name for name in names if name.startswith("reply_")} - reply_queues_before == set()
    assert not set(fanout_queues) & names
    with contextlib.suppress(subprocess.SubprocessError, RuntimeError):
        for name in (TOPIC, f"{TOPIC}.srv1", f"{TOPIC}.srv2"):
            rabbitmq.rabbitmqctl("delete_queue", name)

"""``managerctl tap`` on a real broker, driven through the console script.

Requests come from the real oslo.messaging client (tap_peers/oslo_sender.py, with nova-style
contexts carrying tokens), from ``managerctl call`` and from managerctl's RPCClient. Every test
has a topic of its own; services and taps are stopped, and queues deleted, whatever the outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rigs.rabbitmq import free_port
from tap_peers.oslo_sender import SECRETS
from tap_support import (
    Background,
    clean_env,
    delete_queues,
    exchange_exists,
    managerctl,
    oslo_send,
    pika_connection,
    queue_state,
    scrape,
    start_serve,
    start_tap,
    tap_queues,
    unique,
    wait_for,
)

from manager_cli.context import get_admin_context
from manager_cli.rpc.client import RPCClient
from manager_cli.rpc.topology import Topology
from manager_cli.rpc.transport import RabbitOptions

EXCHANGE = "openstack"


@pytest.fixture
def rig(rabbitmq, broker_url, tmp_path) -> Iterator[dict[str, Any]]:
    """A topic of this test's own, its environment, and clean-up of what was started."""
    topic = unique("tap")
    started: list[Background] = []
    # A deployment's control exchange exists (its services and clients declare it); on a fresh
    # session broker nobody has yet, so declare it as oslo does.
    with contextlib.closing(pika_connection(broker_url)) as connection:
        topology = Topology(RabbitOptions())
        topology.declare_exchange(connection.channel(), topology.control_exchange(EXCHANGE))
    state = {
        "topic": topic,
        "env": clean_env(broker_url, XDG_STATE_HOME=str(tmp_path / "state")),
        "url": broker_url,
        "dir": tmp_path,
        "started": started,
    }
    yield state
    for proc in reversed(started):
        with contextlib.suppress(Exception):
            proc.stop()
    if rabbitmq.is_running():
        names = [q["name"] for q in rabbitmq.list_queues(("name",))]
        delete_queues(broker_url, [n for n in names if n == topic or n.startswith(topic + ".")])


def _tap(rig: dict[str, Any], *args: str) -> Background:
    tap = start_tap(rig["topic"], rig["env"], rig["dir"], *args)
    rig["started"].append(tap)
    return tap


def _serve(rig: dict[str, Any], host: str, *args: str) -> Background:
    served = start_serve("hostinfo", host, rig["topic"], rig["env"], rig["dir"], *args)
    rig["started"].append(served)
    return served


def _finish(tap: Background, expected: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Wait for ``expected`` lines, then Ctrl-C: exit 130, the records."""
    wait_for(lambda: len(tap.lines()) >= expected, timeout)
    tap.send(signal.SIGINT)
    assert tap.wait() == 130, tap.err()
    assert "interrupted" in tap.err()
    return tap.records()


def test_tap_sees_oslo_calls_casts_and_fanouts_with_secrets_masked(rig, rabbitmq):
    host = unique("h")
    _serve(rig, host)
    tap = _tap(rig, "-f", "json")
    url, topic = rig["url"], rig["topic"]
    oslo_send(url, EXCHANGE, topic, "cast")
    oslo_send(url, EXCHANGE, topic, "fanout")
    reply = json.loads(oslo_send(url, EXCHANGE, topic, "call", "--server", host))
    assert reply["admin_password"] == SECRETS["admin_password"]  # the service got it whole
    oslo_send(url, EXCHANGE, topic, "cast", "--compression", "gzip")
    records = _finish(tap, 4)
    assert [(r["kind"], r["target"]) for r in records] == [
        ("cast", topic),
        ("fanout", f"{topic}_fanout"),
        ("call", f"{topic}.{host}"),
        ("cast", topic),
    ]
    for record in records:
        assert record["method"] == "echo"
        assert record["error"] is None
        assert record["caller"] == "alice-id/demo-id"
        assert record["request_id"] == "req-11111111-2222-3333-4444-555555555555"
        assert record["bytes"] > 100
        value = record["args"]["value"]
        assert value["admin_password"] == "***"
        assert value["block_device_info"]["connection_info"]["data"]["auth_password"] == "***"
        assert value["note"] == "rabbit://nova:***@mq:5672/"
    assert records[2]["msg_id"]
    assert records[3]["compression"] == "application/x-gzip"
    everything = tap.out() + tap.err()
    for secret in SECRETS.values():
        assert secret not in everything
    assert not tap_queues(rabbitmq)


def test_tap_lines_show_managerctl_call_cast_and_fanout(rig):
    host = unique("h")
    _serve(rig, host)
    tap = _tap(rig)
    env, topic = rig["env"], rig["topic"]
    done = managerctl(
        "call",
        host,
        "echo",
        "--args-json",
        '{"value": {"token": "abc123"}}',
        "--topic",
        topic,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    done = managerctl("call", "-", "echo", "--cast", "--topic", topic, env=env)
    assert done.returncode == 0, done.stderr
    done = managerctl("call", "-", "echo", "--fanout", "--topic", topic, env=env)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: len(tap.lines()) >= 4)
    tap.send(signal.SIGINT)
    assert tap.wait() == 130
    header, *lines = tap.lines()
    assert header.split() == [
        "TIME",
        "KIND",
        "TARGET",
        "METHOD",
        "VERSION",
        "NAMESPACE",
        "REQUEST_ID",
        "CALLER",
        "BYTES",
    ]
    kinds = [(line.split()[1], line.split()[2], line.split()[3]) for line in lines]
    assert kinds == [
        ("call", f"{topic}.{host}", "echo"),
        ("cast", topic, "echo"),
        ("fanout", f"{topic}_fanout", "echo"),
    ]
    assert all("managerctl/-" in line for line in lines)
    assert "abc123" not in tap.out()


def test_filters_method_host_and_fanout(rig, broker_url):
    topic = rig["topic"]
    # The fanout exchange a server of the topic would have declared (the tap never creates it).
    with contextlib.closing(pika_connection(broker_url)) as connection:
        topology = Topology(RabbitOptions())
        topology.declare_exchange(connection.channel(), topology.fanout_exchange(topic))
    by_method = _tap(rig, "-f", "json", "--method", "wanted")
    by_host = _tap(rig, "-f", "json", "--host", "h1")
    fanout_only = _tap(rig, "-f", "json", "--fanout")
    context = get_admin_context()
    with contextlib.closing(RPCClient(broker_url, exclusive=True)) as client:
        client.cast(context, "wanted", topic=topic, fanout=True)
        client.cast(context, "unwanted", topic=topic, fanout=True)
    # Nobody serves TOPIC.HOST here, and a managerctl cast to a server checks for a consumer:
    # publish as oslo does.
    _publish(broker_url, f"{topic}.h1", "wanted")
    _publish(broker_url, f"{topic}.h2", "wanted")
    _publish(broker_url, f"{topic}.h1", "unwanted")
    _publish(broker_url, topic, "unwanted")

    methods = [(r["kind"], r["target"], r["method"]) for r in _finish(by_method, 3)]
    assert methods == [
        ("fanout", f"{topic}_fanout", "wanted"),
        ("cast", f"{topic}.h1", "wanted"),
        ("cast", f"{topic}.h2", "wanted"),
    ]
    hosts = [(r["target"], r["method"]) for r in _finish(by_host, 4)]
    assert hosts == [
        (f"{topic}_fanout", "wanted"),
        (f"{topic}_fanout", "unwanted"),
        (f"{topic}.h1", "wanted"),
        (f"{topic}.h1", "unwanted"),
    ]
    fanouts = [r["method"] for r in _finish(fanout_only, 2)]
    assert fanouts == ["wanted", "unwanted"]


def _publish(url: str, routing_key: str, method: str, count: int = 1) -> None:
    """Casts published as oslo does (the control exchange, key TOPIC or TOPIC.HOST)."""
    import pika

    from manager_cli.rpc import wire

    props = pika.BasicProperties(**wire.BASE_PROPERTIES)
    with contextlib.closing(pika_connection(url)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for _ in range(count):
            body = wire.encode_envelope(
                wire.build_request(method, {"n": 1}, context=get_admin_context())
            )
            channel.basic_publish(EXCHANGE, routing_key, body, props)


def test_a_tap_never_changes_what_the_service_receives(rig, broker_url):
    host = unique("h")
    port = free_port()
    _serve(rig, host, "--metrics-address", f"127.0.0.1:{port}")
    topic = rig["topic"]
    tap = _tap(rig, "-f", "json")
    sent = 400
    context = get_admin_context()
    with contextlib.closing(RPCClient(broker_url, exclusive=True)) as client:
        for number in range(sent):
            client.cast(context, "echo", topic=topic, args={"value": number})
        client.cast(context, "echo", topic=topic, fanout=True, args={"value": -1})
        assert client.call(context, "echo", topic=topic, server=host, args={"value": "x"}) == "x"

    def echoes() -> float:
        return scrape(port).get('managerctl_rpc_requests_total{method="echo",outcome="ok"}', 0)

    wait_for(lambda: echoes() >= sent + 2, 30)
    assert echoes() == sent + 2  # each request once: none lost, none twice
    records = _finish(tap, sent + 2)
    assert len(records) == sent + 2
    assert sorted(r["args"]["value"] for r in records if r["kind"] == "cast") == list(range(sent))
    # The service's own queues kept their one consumer: the tap never joined them.
    for name in (topic, f"{topic}.{host}"):
        assert queue_state(broker_url, name) == (0, 1)


def test_drop_counter_when_the_tap_is_paused(rig, broker_url, rabbitmq):
    topic = rig["topic"]
    limit = 20
    tap = _tap(rig, "-f", "json", "--queue-limit", str(limit))
    tap.send(signal.SIGSTOP)
    sent = 150
    try:
        _publish(broker_url, topic, "echo", count=sent)
        (name,) = [n for n in tap_queues(rabbitmq) if not n.endswith("-dropped")]

        def ready() -> int:  # rabbitmqctl: an exclusive queue refuses other connections
            rows = rabbitmq.list_queues(("name", "messages_ready"))
            return next(int(q["messages_ready"]) for q in rows if q["name"] == name)

        # The queue stays at its limit however much is sent: the broker drops the oldest.
        assert wait_for(lambda: ready() == limit, 30, 0.5)
    finally:
        tap.send(signal.SIGCONT)

    def all_shown() -> int:
        """The lines once no more come for a second: the kept copies and those in flight,
        which arrive a batch at a time (stopping earlier would leave some in the queue)."""
        before = len(tap.lines())
        time.sleep(1.0)
        return before >= limit and len(tap.lines()) == before and before

    shown = wait_for(all_shown, 30)
    assert limit <= shown <= limit + max(1, limit // 10)
    records = _finish(tap, shown)
    dropped = sent - len(records)
    assert f"the broker dropped {dropped} of its copies (queue limit {limit})" in tap.err()
    assert not tap_queues(rabbitmq)


def test_nothing_left_on_the_broker_after_exit(rig, broker_url, rabbitmq):
    topic = rig["topic"]
    # --count: a normal end (exit 0)
    tap = _tap(rig, "-f", "json", "--count", "2")
    _publish(broker_url, topic, "echo", count=3)
    assert tap.wait() == 0, tap.err()
    assert len(tap.records()) == 2
    assert "2 request(s) shown" in tap.err()
    # --duration, with nothing sent
    done = managerctl("tap", "--topic", topic, "--duration", "0.5", env=rig["env"])
    assert done.returncode == 0, done.stderr
    # Ctrl-C: exit 130
    tap = _tap(rig)
    # An observer runs on the CPU time the services leave (it drops copies, they do not slow).
    assert os.sched_getscheduler(tap.proc.pid) == os.SCHED_IDLE
    tap.send(signal.SIGINT)
    assert tap.wait() == 130
    assert not tap_queues(rabbitmq)
    # The tap declares no exchange: none of the topic's is left behind (nobody serves it).
    assert not exchange_exists(broker_url, f"{topic}_fanout")
    assert queue_state(broker_url, topic) is None


def test_stats_totals_as_json_when_piped(rig, broker_url):
    topic = rig["topic"]
    tap = _tap(rig, "--stats", "--duration", "6", "--no-nice")
    assert os.sched_getscheduler(tap.proc.pid) == os.SCHED_OTHER
    _publish(broker_url, topic, "often", count=30)
    _publish(broker_url, f"{topic}.h1", "rarely", count=3)
    assert tap.wait() == 0, tap.err()
    totals = json.loads(tap.lines()[-1])
    assert totals["requests"] == 33 and totals["dropped"] == 0
    rows = {row["method"]: row for row in totals["methods"]}
    assert rows["often"]["requests"] == 30 and rows["rarely"]["requests"] == 3
    assert rows["often"]["callers"] == 1 and rows["often"]["casts"] == 30
    assert [row["method"] for row in totals["methods"]] == ["often", "rarely"]
    assert rows["often"]["bytes"] > rows["rarely"]["bytes"] > 0


def test_a_missing_exchange_is_unavailable(rig):
    done = managerctl(
        "tap", "--topic", rig["topic"], "--exchange", unique("nosuch"), env=rig["env"]
    )
    assert done.returncode == 69
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr
    done = managerctl("tap", "--topic", "a*b", env=rig["env"])
    assert done.returncode == 2 and "without * or #" in done.stderr


def test_the_fanout_exchange_is_bound_once_a_server_creates_it(rig, broker_url):
    topic = rig["topic"]
    tap = _tap(rig, "-f", "json", "--fanout")
    assert f"no {topic}_fanout exchange yet" in tap.err()
    assert not exchange_exists(broker_url, f"{topic}_fanout")  # the tap did not create it
    host = unique("h")
    _serve(rig, host)

    def fanout_seen() -> bool:
        done = managerctl("call", "-", "echo", "--fanout", "--topic", topic, env=rig["env"])
        assert done.returncode == 0, done.stderr
        return bool(tap.lines())

    assert wait_for(fanout_seen, 20, 0.5)
    (first, *_) = _finish(tap, 1)
    assert first["kind"] == "fanout" and first["method"] == "echo"


@pytest.mark.parametrize("name", ["quorum", "quorum-transient", "stream-fanout"])
def test_every_topology(rig, rabbitmq, broker_url, name):
    """Quorum topic queues on a durable control exchange, durable fanout exchanges, a stream
    per fanout: the tap's exclusive queue binds beside them all, sees every kind, and the
    service still gets each request once; Ctrl-C leaves nothing behind."""
    from topologies import BY_NAME

    url = broker_url + BY_NAME[name].query()
    topic, host = rig["topic"], unique("h")
    # An exchange of its own: these options make it durable, the session's "openstack" is not.
    exchange = f"x_{topic}"
    env = dict(rig["env"], MANAGERCTL_TRANSPORT_URL=url, MANAGERCTL_CONTROL_EXCHANGE=exchange)
    port = free_port()
    served = start_serve(
        "hostinfo", host, topic, env, rig["dir"], "--metrics-address", f"127.0.0.1:{port}"
    )
    rig["started"].append(served)
    tap = start_tap(topic, env, rig["dir"], "-f", "json")
    rig["started"].append(tap)
    assert "(no " not in tap.err()  # the server's fanout exchange was there to bind
    context = get_admin_context()
    with contextlib.closing(RPCClient(url, exclusive=True)) as client:
        to = {"topic": topic, "exchange": exchange}
        assert client.call(context, "echo", server=host, args={"value": 1}, **to) == 1
        client.cast(context, "echo", args={"value": 2}, **to)
        client.cast(context, "echo", fanout=True, args={"value": 3}, **to)

    def echoes() -> float:
        return scrape(port).get('managerctl_rpc_requests_total{method="echo",outcome="ok"}', 0)

    wait_for(lambda: echoes() >= 3, 30)
    records = _finish(tap, 3)
    assert [(r["kind"], r["args"]["value"]) for r in records] == [
        ("call", 1),
        ("cast", 2),
        ("fanout", 3),
    ]
    assert echoes() == 3
    assert not tap_queues(rabbitmq)
    types = {q["name"]: q["type"] for q in rabbitmq.list_queues(("name", "type"))}
    assert types[topic] == "quorum"  # the topology really was in force
    if name == "stream-fanout":
        assert types[f"{topic}_fanout"] == "stream"
    served.stop()
    with contextlib.closing(pika_connection(broker_url)) as connection:
        channel = connection.channel()
        for queue in (topic, f"{topic}.{host}", f"{topic}_fanout"):
            with contextlib.suppress(Exception):
                channel.queue_delete(queue)
        for name_ in (f"{topic}_fanout", exchange):
            with contextlib.suppress(Exception):
                channel.exchange_delete(name_)

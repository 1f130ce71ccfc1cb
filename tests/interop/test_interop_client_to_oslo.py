"""managerctl's RPC client against real oslo.messaging RPC servers (subprocess peers).

Peers of this module:

* ``srv1`` and ``srv2`` on TOPIC (endpoint set ``basic``, exchange ``openstack``);
* ``nova1`` on NOVA_TOPIC (endpoint set ``nova``, ``rpc_ping_enabled``, exchange ``interop_nova``);
* ``dead1`` on DEAD_TOPIC, killed with SIGKILL: its queues outlive it with no consumer.
"""

from __future__ import annotations

import datetime
import time

import pytest
from interop_support import queue_consumers, unique_topic, wait_for

from manager_cli.errors import CallTimeoutError, NoConsumerError, RemoteError
from manager_cli.rpc.client import RPCClient
from manager_cli.rpc.transport import RabbitOptions

pytestmark = pytest.mark.broker

TOPIC = unique_topic("interop_c2o")
NOVA_TOPIC = TOPIC + "_nova"
NOVA_EXCHANGE = "interop_nova"
DEAD_TOPIC = TOPIC + "_dead"
CONTEXT = {"user": "alice", "request_id": "req-123", "roles": ["admin"]}


@pytest.fixture(scope="module")
def peers(oslo_peers):
    """All peers of the module, started in parallel: {name: OsloPeer}."""
    started = [
        *oslo_peers(TOPIC, ["srv1", "srv2"], wait=False),
        *oslo_peers(
            NOVA_TOPIC,
            ["nova1"],
            endpoints="nova",
            exchange=NOVA_EXCHANGE,
            rpc_ping=True,
            wait=False,
        ),
        *oslo_peers(DEAD_TOPIC, ["dead1"], wait=False),
    ]
    for peer in started:
        peer.wait_ready()
    return {peer.server: peer for peer in started}


@pytest.fixture(scope="module")
def client(rabbitmq, peers):
    with RPCClient(rabbitmq.url, timeout=10) as rpc:
        yield rpc


def _call(client: RPCClient, method: str, **kwargs):
    kwargs.setdefault("topic", TOPIC)
    return client.call(CONTEXT, method, **kwargs)


# -- results ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "1.0", "1.3"])
def test_call_add(client, version):
    assert _call(client, "add", args={"a": 2, "b": 3}, version=version) == 5


def test_call_returns_json_values_unchanged(client):
    value = {"list": [1, 2.5, None, True], "text": "héllo", "nested": {"k": []}}
    assert _call(client, "echo", args={"value": value}) == value


def test_non_json_types_arrive_as_oslo_converts_them(client):
    assert _call(client, "odd_types") == {
        "when": "2024-01-02T03:04:05.000678",
        "ids": [1, 2, 3],
        "pair": [1, [2, 3]],
    }
    # and the other way: managerctl converts arguments as oslo's client would
    value = {"when": datetime.datetime(2024, 1, 2, 3, 4, 5, 678), "pair": (1, 2)}
    assert _call(client, "echo", args={"value": value}) == {
        "when": "2024-01-02T03:04:05.000678",
        "pair": [1, 2],
    }


@pytest.mark.parametrize("server", ["srv1", "srv2"])
def test_call_to_a_server_directed_topic(client, server):
    assert _call(client, "whoami", server=server, version="1.3") == server


def test_call_reaches_servers_of_the_shared_topic(client):
    # RabbitMQ hands the shared queue's messages to its consumers in turn.
    assert {_call(client, "whoami") for _ in range(8)} == {"srv1", "srv2"}


def test_context_reaches_the_oslo_endpoint_as_oslo_unpacks_it(client):
    # oslo's server strips the _context_ prefix and adds client_timeout (PROTOCOL.md §4.4).
    assert _call(client, "get_context", server="srv1") == {**CONTEXT, "client_timeout": None}
    got = _call(client, "get_context", server="srv1", call_monitor_timeout=5)
    assert got["client_timeout"] == 5


# -- casts -----------------------------------------------------------------------------------


def test_cast_to_a_server_runs_there_only(client, peers):
    client.cast(CONTEXT, "record", topic=TOPIC, server="srv1", args={"value": "cast-srv1"})
    wait_for(lambda: "cast-srv1" in peers["srv1"].records())
    # A later call to srv2 has been served, so a misrouted cast would have had its chance.
    assert _call(client, "whoami", server="srv2") == "srv2"
    assert "cast-srv1" not in peers["srv2"].records()


def test_cast_to_the_topic_runs_on_exactly_one_server(client, peers):
    client.cast(CONTEXT, "record", topic=TOPIC, args={"value": "cast-any"})

    def runs():
        return sum(peer.records().count("cast-any") for peer in (peers["srv1"], peers["srv2"]))

    wait_for(runs)
    time.sleep(0.3)
    assert runs() == 1


def test_fanout_cast_reaches_every_oslo_server(client, peers):
    client.cast(CONTEXT, "record", topic=TOPIC, fanout=True, args={"value": "fanout-1"})
    wait_for(lambda: all("fanout-1" in peers[name].records() for name in ("srv1", "srv2")))
    assert all(peers[name].records().count("fanout-1") == 1 for name in ("srv1", "srv2"))


# -- failures --------------------------------------------------------------------------------


def test_builtin_exception_is_reraised_as_the_builtin_class(client):
    with pytest.raises(ValueError) as info:
        _call(client, "fail", server="srv1")
    assert type(info.value) is ValueError
    assert str(info.value).startswith("deliberate failure from srv1")


def test_custom_exception_is_a_remote_error_unless_its_module_is_allowed(
    client, rabbitmq, peers_on_path
):
    with pytest.raises(RemoteError) as info:
        _call(client, "boom", server="srv2")
    assert info.value.exc_type == "Boom"
    assert info.value.value == "boom from srv2"
    assert "interop_errors.Boom" in (info.value.traceback or "")
    assert info.value.exit_code == 1

    import interop_errors

    allowed = RPCClient(rabbitmq.url, timeout=10, allowed_remote_exmods=["interop_errors"])
    with allowed, pytest.raises(interop_errors.Boom) as own:
        _call(allowed, "boom", server="srv2")
    assert str(own.value).startswith("boom from srv2")


@pytest.mark.parametrize("version", ["2.0", "1.4"])
def test_unsupported_version(client, version):
    with pytest.raises(RemoteError) as info:
        _call(client, "add", args={"a": 1, "b": 1}, version=version)
    assert info.value.exc_type == "UnsupportedVersion"
    assert (
        info.value.value
        == f"Endpoint does not support RPC version {version}. Attempted method: add"
    )


@pytest.mark.parametrize("method", ["no_such_method", "_private"])
def test_no_such_method(client, method):
    with pytest.raises(RemoteError) as info:
        _call(client, method, version="1.3")
    assert info.value.exc_type == "NoSuchMethod"
    assert info.value.value == f"Endpoint does not support RPC method {method}"


def test_wrong_namespace_reads_as_unsupported_version(client):
    with pytest.raises(RemoteError) as info:
        _call(client, "add", args={"a": 1, "b": 1}, namespace="foo", version="1.3")
    assert info.value.exc_type == "UnsupportedVersion"


# -- nova-like peer: base API, rpc ping, another exchange ------------------------------------


def test_baseapi_ping_of_a_nova_like_service(client, peers):
    result = client.call(
        CONTEXT,
        "ping",
        topic=NOVA_TOPIC,
        args={"arg": "hello"},
        namespace="baseapi",
        version="1.1",
        exchange=NOVA_EXCHANGE,
    )
    assert result == {"service": "nova-like", "arg": "hello"}


def test_control_exchange_option_routes_to_the_oslo_exchange(rabbitmq, peers):
    options = RabbitOptions(control_exchange=NOVA_EXCHANGE)
    with RPCClient(rabbitmq.url, options=options, timeout=10) as nova_client:
        assert (
            nova_client.call(None, "whoami", topic=NOVA_TOPIC, server="nova1", version="1.3")
            == "nova1"
        )


def test_wrong_exchange_is_no_consumer_not_a_hang(client, peers):
    # The queue exists and is consumed, but it is bound to interop_nova, not openstack: the
    # request is unroutable. A fast failure is what managerctl promises (PROTOCOL.md §11).
    started = time.monotonic()
    with pytest.raises(NoConsumerError):
        client.call(CONTEXT, "whoami", topic=NOVA_TOPIC, server="nova1", timeout=5)
    assert time.monotonic() - started < 2


def test_oslo_rpc_server_ping(client, peers):
    pong = client.call(
        CONTEXT, "oslo_rpc_server_ping", topic=NOVA_TOPIC, server="nova1", exchange=NOVA_EXCHANGE
    )
    assert pong == "pong"


# -- broadcast call --------------------------------------------------------------------------


def test_broadcast_call_gathers_one_reply_per_oslo_server(client, peers):
    started = time.monotonic()
    replies = client.broadcast_call(CONTEXT, "whoami", topic=TOPIC, timeout=5, expect=2)
    assert time.monotonic() - started < 4  # returned on the second reply, not at the deadline
    assert sorted(reply.result for reply in replies) == ["srv1", "srv2"]
    assert all(reply.failure is None for reply in replies)


def test_broadcast_call_collects_every_failure(client, peers):
    replies = client.broadcast_call(CONTEXT, "fail", topic=TOPIC, timeout=5, expect=2)
    assert len(replies) == 2
    messages = sorted(str(reply.failure).split("\n")[0] for reply in replies)
    assert messages == ["deliberate failure from srv1", "deliberate failure from srv2"]
    assert all(type(reply.failure) is ValueError for reply in replies)


def test_broadcast_call_without_expect_waits_out_the_deadline(client, peers):
    started = time.monotonic()
    replies = client.broadcast_call(CONTEXT, "whoami", topic=TOPIC, timeout=1.5)
    assert time.monotonic() - started >= 1.4
    assert sorted(reply.result for reply in replies) == ["srv1", "srv2"]


def test_broadcast_call_to_an_unserved_topic_is_empty_at_once(client):
    started = time.monotonic()
    assert client.broadcast_call(CONTEXT, "whoami", topic=TOPIC + "_nobody", timeout=5) == []
    assert time.monotonic() - started < 1


# -- call monitor, timeouts, nobody listening ------------------------------------------------


def test_call_monitor_heartbeats_from_oslo_keep_a_slow_call_alive(client):
    # oslo heartbeats every int(2)/2 = 1 s; without them the 2 s monitor would fire at 2 s.
    started = time.monotonic()
    result = _call(
        client, "slow", server="srv1", args={"seconds": 3}, timeout=10, call_monitor_timeout=2
    )
    assert result == "slept 3"
    assert time.monotonic() - started >= 3


def test_call_monitor_without_heartbeats_times_out_on_the_monitor(client):
    # oslo sends no heartbeat when int(N)/2 < 1, so a 1 s monitor fires before the 2.5 s call
    # ends, long before the overall timeout (as an oslo client would raise MessagingTimeout).
    started = time.monotonic()
    with pytest.raises(CallTimeoutError) as info:
        _call(
            client, "slow", server="srv1", args={"seconds": 2.5}, timeout=10, call_monitor_timeout=1
        )
    assert 0.9 <= time.monotonic() - started < 2.4
    assert "call monitor" in str(info.value)
    # The client stays usable; the late reply is dropped whenever it comes.
    assert _call(client, "whoami", server="srv1") == "srv1"


def test_heartbeats_do_not_extend_the_overall_timeout(client):
    # As in oslo: the call monitor restarts on each heartbeat, the overall timeout does not.
    started = time.monotonic()
    with pytest.raises(CallTimeoutError) as info:
        _call(
            client, "slow", server="srv1", args={"seconds": 3}, timeout=1.5, call_monitor_timeout=2
        )
    assert 1.4 <= time.monotonic() - started < 2.5
    assert "1.5s" in str(info.value)


def test_call_many_routes_interleaved_oslo_replies_by_msg_id(client):
    requests = [
        {"context": CONTEXT, "method": "slow", "topic": TOPIC, "args": {"seconds": 1 + n / 10}}
        for n in range(4)
    ] + [{"context": CONTEXT, "method": "fail", "topic": TOPIC, "server": "srv2"}]
    started = time.monotonic()
    results = client.call_many(requests)
    assert time.monotonic() - started < 2.5  # run side by side on the oslo servers
    assert results[:4] == [f"slept {1 + n / 10}" for n in range(4)]
    assert type(results[4]) is ValueError
    assert str(results[4]).startswith("deliberate failure from srv2")


def test_slow_call_past_its_timeout_is_a_call_timeout(client):
    started = time.monotonic()
    with pytest.raises(CallTimeoutError) as info:
        _call(client, "slow", server="srv2", args={"seconds": 2}, timeout=0.5)
    assert 0.4 <= time.monotonic() - started < 1.5
    assert info.value.exit_code == 75
    # The late reply ("slept 2", at about 2 s) comes while the next call waits: it must be
    # told apart by its _msg_id, not taken as the next call's result.
    assert _call(client, "slow", server="srv2", args={"seconds": 2.2}) == "slept 2.2"


def test_call_to_a_host_nobody_serves_fails_fast(client):
    started = time.monotonic()
    with pytest.raises(NoConsumerError) as info:
        _call(client, "whoami", server="no-such-host", timeout=30)
    assert time.monotonic() - started < 1
    assert info.value.exit_code == 69
    assert f"{TOPIC}.no-such-host" in str(info.value)


def test_call_and_cast_to_a_dead_oslo_server_fail_fast(client, peers, rabbitmq):
    peers["dead1"].kill()
    # The killed server's queue outlives it with no consumer (PROTOCOL.md §2, §11).
    assert queue_consumers(rabbitmq, f"{DEAD_TOPIC}.dead1") == 0
    started = time.monotonic()
    with pytest.raises(NoConsumerError) as info:
        _call(client, "whoami", topic=DEAD_TOPIC, server="dead1", timeout=30)
    assert "no consumer" in str(info.value)
    with pytest.raises(NoConsumerError):
        client.cast(CONTEXT, "record", topic=DEAD_TOPIC, server="dead1", args={"value": "x"})
    assert time.monotonic() - started < 2


def test_a_closed_client_leaves_no_reply_queue(rabbitmq, peers):
    with RPCClient(rabbitmq.url, timeout=10) as rpc:
        assert _call(rpc, "add", args={"a": 1, "b": 1}) == 2
        reply_queue = rpc.reply_queue
        assert reply_queue
        assert queue_consumers(rabbitmq, reply_queue) == 1
    assert queue_consumers(rabbitmq, reply_queue) is None

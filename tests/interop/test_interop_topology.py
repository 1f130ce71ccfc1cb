"""Wire level: managerctl declares the same queues, exchanges and bindings as oslo.messaging.

Each kind of server declares its own topic here, and ``rabbitmqctl`` shows what each left on the
broker; the names (with the topic abstracted) and every flag must be equal (PROTOCOL.md §1-2).
Two more topics are shared by both kinds, declared in both orders: any flag that differed
would be a PRECONDITION_FAILED (406) for the second declarer.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass

import pika
import pytest
from interop_support import delete_queues, unique_topic, wait_for

from manager_cli.rpc.client import RPCClient
from manager_cli.rpc.dispatcher import RPCDispatcher, Target
from manager_cli.rpc.server import RPCServer

pytestmark = pytest.mark.broker

BASE = unique_topic("interop_topo")
OSLO_TOPIC = BASE + "o"  # oslo alone, default options
MCTL_TOPIC = BASE + "m"  # managerctl alone, default options
OSLO_OPT_TOPIC = BASE + "od"  # oslo alone, options from the URL
MCTL_OPT_TOPIC = BASE + "md"  # managerctl alone, the same URL
SHARED_M_FIRST = BASE + "s1"  # managerctl declares first, then oslo
SHARED_O_FIRST = BASE + "s2"  # oslo declares first, then managerctl
TOPICS = [OSLO_TOPIC, MCTL_TOPIC, OSLO_OPT_TOPIC, MCTL_OPT_TOPIC, SHARED_M_FIRST, SHARED_O_FIRST]
OPT_EXCHANGE = BASE + "_durable_exchange"
URL_OPTIONS = "?amqp_durable_queues=true&rabbit_transient_queues_ttl=60"

QUEUE_COLUMNS = ("name", "durable", "auto_delete", "exclusive", "arguments", "consumers")
EXCHANGE_COLUMNS = ("name", "type", "durable", "auto_delete", "internal", "arguments")
BINDING_COLUMNS = ("source_name", "destination_name", "destination_kind", "routing_key")

HEX32 = "[0-9a-f]{32}"


class WhoAmI:
    target = Target(version="1.3")

    def __init__(self, name: str) -> None:
        self.name = name

    def whoami(self, context):
        return self.name


@dataclass
class Snapshot:
    queues: list[dict]
    exchanges: list[dict]
    bindings: list[dict]


def _arguments(raw) -> dict:
    """rabbitmqctl's JSON arguments ([[key, type, value], ...]) as {key: value}."""
    return {item[0]: item[-1] for item in raw or []}


def _role(name: str, topic: str) -> str | None:
    """A queue or exchange name with the topic (and a fanout queue's uuid) abstracted."""
    if name == topic:
        return "<topic>"
    if name.startswith(topic + "."):
        return "<topic>." + name[len(topic) + 1 :]
    if name == topic + "_fanout":
        return "<topic>_fanout"
    if re.fullmatch(re.escape(topic) + "_fanout_" + HEX32, name):
        return "<topic>_fanout_<uuid>"
    return None


def queue_shape(queues: list[dict], topic: str) -> dict:
    shape = {}
    for queue in queues:
        role = _role(queue["name"], topic)
        if role is not None:
            shape[role] = {
                "durable": queue["durable"],
                "auto_delete": queue["auto_delete"],
                "exclusive": queue["exclusive"],
                "arguments": _arguments(queue["arguments"]),
                "consumers": queue.get("consumers"),
            }
    return shape


def exchange_shape(exchanges: list[dict], topic: str) -> dict:
    return {
        _role(e["name"], topic): {k: e[k] for k in ("type", "durable", "auto_delete", "internal")}
        | {"arguments": _arguments(e["arguments"])}
        for e in exchanges
        if _role(e["name"], topic) is not None
    }


def binding_shape(bindings: list[dict], topic: str, control_exchange: str) -> set:
    shape = set()
    for binding in bindings:
        destination = _role(binding["destination_name"], topic)
        if destination is None:
            continue
        source = binding["source_name"]
        if source == control_exchange:
            source = "<control_exchange>"
        elif source:
            source = _role(source, topic) or source
        key = _role(binding["routing_key"], topic) or binding["routing_key"]
        shape.add((source, destination, binding["destination_kind"], key))
    return shape


def take_snapshot(node) -> Snapshot:
    bindings_json = node.rabbitmqctl(
        "list_bindings", *BINDING_COLUMNS, "--formatter", "json", "--silent"
    ).strip()
    return Snapshot(
        queues=node.list_queues(QUEUE_COLUMNS),
        exchanges=node.list_exchanges(EXCHANGE_COLUMNS),
        bindings=json.loads(bindings_json) if bindings_json else [],
    )


@dataclass
class World:
    oslo: dict
    managerctl: dict
    oslo_reply_queue: str
    mctl_reply_queue: str
    mctl_exclusive_reply_queue: str
    snapshot: Snapshot


@pytest.fixture(scope="module")
def world(rabbitmq, oslo_peers, oslo_transport):
    url, opt_url = rabbitmq.url, rabbitmq.url + URL_OPTIONS
    servers: dict[str, RPCServer] = {}

    def serve(topic: str, server_url: str = url, exchange: str | None = None) -> None:
        server = RPCServer(
            server_url,
            topic=topic,
            server="srv",
            dispatcher=RPCDispatcher([WhoAmI(f"managerctl@{topic}")]),
            exchange=exchange,
        )
        server.start()
        servers[topic] = server

    clients: list[RPCClient] = []
    try:
        serve(MCTL_TOPIC)
        serve(MCTL_OPT_TOPIC, opt_url, exchange=OPT_EXCHANGE)
        serve(SHARED_M_FIRST)
        starting = [
            *oslo_peers(OSLO_TOPIC, ["srv"], wait=False),
            *oslo_peers(OSLO_OPT_TOPIC, ["srv"], exchange=OPT_EXCHANGE, url=opt_url, wait=False),
            *oslo_peers(SHARED_M_FIRST, ["oslo"], wait=False),
            *oslo_peers(SHARED_O_FIRST, ["oslo"], wait=False),
        ]
        for peer in starting:
            peer.wait_ready()
        serve(SHARED_O_FIRST)
        # Reply queues: oslo's transport, a managerctl client like it, and a one-shot client.
        assert oslo_transport.client(OSLO_TOPIC).call({}, "whoami") == "srv"
        for exclusive in (False, True):
            client = RPCClient(url, timeout=10, exclusive=exclusive)
            clients.append(client)
            assert client.call({}, "whoami", topic=MCTL_TOPIC) == f"managerctl@{MCTL_TOPIC}"
        yield World(
            oslo={peer.topic: peer for peer in starting},
            managerctl=servers,
            oslo_reply_queue=oslo_transport.reply_queue,
            mctl_reply_queue=clients[0].reply_queue,
            mctl_exclusive_reply_queue=clients[1].reply_queue,
            snapshot=take_snapshot(rabbitmq),
        )
    finally:
        for client in clients:
            client.close()
        for server in servers.values():
            server.stop(graceful_timeout=5)
        if rabbitmq.is_running():
            delete_queues(rabbitmq, TOPICS)
            connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.amqp_url))
            with contextlib.closing(connection):
                connection.channel().exchange_delete(OPT_EXCHANGE)


EXPECTED_DEFAULT_QUEUES = {
    "<topic>": {"durable": False, "auto_delete": False, "exclusive": False, "arguments": {}},
    "<topic>.srv": {"durable": False, "auto_delete": False, "exclusive": False, "arguments": {}},
    "<topic>_fanout_<uuid>": {
        "durable": False,
        "auto_delete": False,
        "exclusive": False,
        "arguments": {"x-expires": 1800000},
    },
}


def _without_consumers(shape: dict) -> dict:
    return {role: {k: v for k, v in q.items() if k != "consumers"} for role, q in shape.items()}


def test_server_queues_match_oslo_with_default_options(world):
    oslo = queue_shape(world.snapshot.queues, OSLO_TOPIC)
    mctl = queue_shape(world.snapshot.queues, MCTL_TOPIC)
    assert mctl == oslo
    assert _without_consumers(oslo) == EXPECTED_DEFAULT_QUEUES
    assert all(q["consumers"] == 1 for q in mctl.values())


def test_server_queues_match_oslo_with_url_options(world):
    # amqp_durable_queues and rabbit_transient_queues_ttl given in the transport URL's query.
    oslo = queue_shape(world.snapshot.queues, OSLO_OPT_TOPIC)
    mctl = queue_shape(world.snapshot.queues, MCTL_OPT_TOPIC)
    assert mctl == oslo
    assert oslo["<topic>"]["durable"] is True and oslo["<topic>.srv"]["durable"] is True
    assert oslo["<topic>_fanout_<uuid>"]["durable"] is False
    assert oslo["<topic>_fanout_<uuid>"]["arguments"] == {"x-expires": 60000}


@pytest.mark.parametrize(
    ("oslo_topic", "mctl_topic"),
    [(OSLO_TOPIC, MCTL_TOPIC), (OSLO_OPT_TOPIC, MCTL_OPT_TOPIC)],
    ids=["defaults", "url-options"],
)
def test_fanout_exchanges_match_oslo(world, oslo_topic, mctl_topic):
    oslo = exchange_shape(world.snapshot.exchanges, oslo_topic)
    assert exchange_shape(world.snapshot.exchanges, mctl_topic) == oslo
    assert oslo == {
        "<topic>_fanout": {
            "type": "fanout",
            "durable": False,
            "auto_delete": True,
            "internal": False,
            "arguments": {},
        }
    }


@pytest.mark.parametrize(
    ("name", "durable"), [("openstack", False), (OPT_EXCHANGE, True)], ids=["openstack", "durable"]
)
def test_control_exchanges(world, name, durable):
    # Both kinds declared these (in both orders for openstack): one set of flags, no 406.
    (exchange,) = [e for e in world.snapshot.exchanges if e["name"] == name]
    assert (exchange["type"], exchange["durable"], exchange["auto_delete"]) == (
        "topic",
        durable,
        False,
    )


@pytest.mark.parametrize(
    ("oslo_topic", "mctl_topic", "exchange"),
    [(OSLO_TOPIC, MCTL_TOPIC, "openstack"), (OSLO_OPT_TOPIC, MCTL_OPT_TOPIC, OPT_EXCHANGE)],
    ids=["defaults", "url-options"],
)
def test_bindings_match_oslo(world, oslo_topic, mctl_topic, exchange):
    bindings = world.snapshot.bindings
    oslo = binding_shape(bindings, oslo_topic, exchange)
    assert binding_shape(bindings, mctl_topic, exchange) == oslo
    assert oslo == {
        ("<control_exchange>", "<topic>", "queue", "<topic>"),
        ("<control_exchange>", "<topic>.srv", "queue", "<topic>.srv"),
        ("<topic>_fanout", "<topic>_fanout_<uuid>", "queue", "<topic>"),
        ("", "<topic>", "queue", "<topic>"),
        ("", "<topic>.srv", "queue", "<topic>.srv"),
        ("", "<topic>_fanout_<uuid>", "queue", "<topic>_fanout_<uuid>"),
    }


def _queue(world, name: str) -> dict:
    (queue,) = [q for q in world.snapshot.queues if q["name"] == name]
    return {
        "durable": queue["durable"],
        "auto_delete": queue["auto_delete"],
        "exclusive": queue["exclusive"],
        "arguments": _arguments(queue["arguments"]),
    }


def test_client_reply_queue_matches_oslo(world):
    assert re.fullmatch("reply_" + HEX32, world.oslo_reply_queue)
    assert re.fullmatch("reply_" + HEX32, world.mctl_reply_queue)
    oslo = _queue(world, world.oslo_reply_queue)
    assert _queue(world, world.mctl_reply_queue) == oslo
    assert oslo == {
        "durable": False,
        "auto_delete": False,
        "exclusive": False,
        "arguments": {"x-expires": 1800000},
    }


def test_one_shot_client_reply_queue_is_exclusive(world):
    # managerctl's own decision (PROTOCOL.md §11): nothing is left behind by a CLI run.
    queue = _queue(world, world.mctl_exclusive_reply_queue)
    assert (queue["exclusive"], queue["auto_delete"]) == (True, True)


@pytest.mark.parametrize(
    "topic", [SHARED_M_FIRST, SHARED_O_FIRST], ids=["managerctl-first", "oslo-first"]
)
def test_both_kinds_share_a_topic_in_either_order(world, oslo_transport, topic):
    queues = queue_shape(world.snapshot.queues, topic)
    assert queues["<topic>"]["consumers"] == 2
    assert set(queues) == {"<topic>", "<topic>.srv", "<topic>.oslo", "<topic>_fanout_<uuid>"}
    client = oslo_transport.client(topic)
    answers = {client.call({}, "whoami") for _ in range(8)}
    assert answers == {"oslo", f"managerctl@{topic}"}


@pytest.mark.parametrize(
    "topic", [SHARED_M_FIRST, SHARED_O_FIRST], ids=["managerctl-first", "oslo-first"]
)
def test_broadcast_call_gathers_both_kinds(world, rabbitmq, topic):
    with RPCClient(rabbitmq.url, timeout=10, exclusive=True) as client:
        replies = client.broadcast_call({}, "whoami", topic=topic, timeout=5, expect=2)
    assert sorted(reply.result for reply in replies) == sorted(["oslo", f"managerctl@{topic}"])


@pytest.mark.parametrize("exclusive", [False, True], ids=["shared-reply", "exclusive-reply"])
def test_client_uses_an_exchange_declared_with_other_flags(world, rabbitmq, exclusive):
    # OPT_EXCHANGE is durable (amqp_durable_queues=true); this client declares non-durable.
    # RabbitMQ answers 406 and closes the channel; a stock oslo 18.3.1 client then fails with
    # MessageDeliveryFailure, managerctl reopens its channel and publishes to it as it is.
    with RPCClient(rabbitmq.url, timeout=10, exclusive=exclusive) as client:
        for _ in range(2):
            assert (
                client.call({}, "whoami", topic=OSLO_OPT_TOPIC, server="srv", exchange=OPT_EXCHANGE)
                == "srv"
            )
        client.cast(
            {},
            "record",
            topic=OSLO_OPT_TOPIC,
            server="srv",
            exchange=OPT_EXCHANGE,
            args={"value": "durable-cast"},
        )
    peer = world.oslo[OSLO_OPT_TOPIC]
    wait_for(lambda: "durable-cast" in peer.records())


def test_clean_stop_leaves_what_oslo_leaves(world, rabbitmq):
    # Runs last in this module: it stops one server of each kind.
    world.managerctl[MCTL_TOPIC].stop(graceful_timeout=5)
    world.oslo[OSLO_TOPIC].stop()
    after = take_snapshot(rabbitmq)
    oslo = queue_shape(after.queues, OSLO_TOPIC)
    assert queue_shape(after.queues, MCTL_TOPIC) == oslo
    # The fanout queue is deleted, the shared and per-server queues stay, without consumers.
    assert set(oslo) == {"<topic>", "<topic>.srv"}
    assert all(q["consumers"] == 0 for q in oslo.values())
    # The auto-delete fanout exchange went with its last queue.
    assert exchange_shape(after.exchanges, MCTL_TOPIC) == exchange_shape(
        after.exchanges, OSLO_TOPIC
    )
    assert exchange_shape(after.exchanges, OSLO_TOPIC) == {}

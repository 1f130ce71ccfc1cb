"""The throwaway RabbitMQ node that every broker test stands on."""

from __future__ import annotations

import os
import socket
import uuid

import pika
import pytest
from rigs.rabbitmq import RabbitMQNode, amqp_handshake


def _connect(node: RabbitMQNode) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        host=node.host,
        port=node.port,
        credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=5,
    )
    return pika.BlockingConnection(params)


def test_node_identity(rabbitmq: RabbitMQNode, broker_url: str) -> None:
    assert rabbitmq.nodename.startswith("managerctl-test-")
    assert rabbitmq.nodename.endswith("@localhost")
    assert broker_url == f"rabbit://guest:guest@127.0.0.1:{rabbitmq.port}/"
    assert rabbitmq.port != 5672
    assert rabbitmq.port != rabbitmq.dist_port


def test_pika_connects_as_guest(rabbitmq: RabbitMQNode) -> None:
    conn = _connect(rabbitmq)
    try:
        assert conn.is_open
        channel = conn.channel()
        assert channel.is_open
        # a round trip through the broker, not just an open socket
        result = channel.queue_declare(queue="", exclusive=True)
        name = result.method.queue
        channel.basic_publish(exchange="", routing_key=name, body=b"ping")
        method, _props, body = channel.basic_get(name, auto_ack=True)
        assert method is not None
        assert body == b"ping"
    finally:
        conn.close()


def test_wrong_password_is_refused(rabbitmq: RabbitMQNode) -> None:
    params = pika.ConnectionParameters(
        host=rabbitmq.host,
        port=rabbitmq.port,
        credentials=pika.PlainCredentials("guest", "not-the-password"),
        connection_attempts=1,
        socket_timeout=5,
    )
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(params)


def test_listens_on_127_0_0_1_only(rabbitmq: RabbitMQNode) -> None:
    # Bound to 127.0.0.1 alone (RABBITMQ_NODE_IP_ADDRESS), not to the wildcard address:
    # the same port is still free on another loopback address.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.2", rabbitmq.port))
    finally:
        sock.close()


def test_declared_queue_shows_in_list_queues(rabbitmq: RabbitMQNode) -> None:
    name = f"test-node-{uuid.uuid4().hex[:8]}"
    conn = _connect(rabbitmq)
    try:
        channel = conn.channel()
        channel.queue_declare(queue=name, auto_delete=False)
        channel.basic_publish(exchange="", routing_key=name, body=b"one")
        channel.basic_publish(exchange="", routing_key=name, body=b"two")
        channel.confirm_delivery()  # flush: the publishes above are processed before this
        queues = {q["name"]: q for q in rabbitmq.list_queues()}
        assert name in queues
        assert queues[name]["messages"] == 2
        assert queues[name]["consumers"] == 0
        channel.queue_delete(queue=name)
        assert name not in {q["name"] for q in rabbitmq.list_queues()}
    finally:
        conn.close()


def test_list_exchanges_has_the_defaults(rabbitmq: RabbitMQNode) -> None:
    exchanges = {e["name"]: e for e in rabbitmq.list_exchanges()}
    assert exchanges["amq.topic"]["type"] == "topic"
    assert exchanges["amq.fanout"]["type"] == "fanout"
    assert "" in exchanges  # the default exchange


def test_rabbitmqctl_targets_this_node(rabbitmq: RabbitMQNode) -> None:
    out = rabbitmq.rabbitmqctl("eval", "node().")
    assert rabbitmq.nodename in out


def test_restart_keeps_port_and_durable_state(rabbitmq: RabbitMQNode) -> None:
    port, nodename, data_dir = rabbitmq.port, rabbitmq.nodename, rabbitmq.data_dir
    durable = f"test-durable-{uuid.uuid4().hex[:8]}"
    conn = _connect(rabbitmq)
    channel = conn.channel()
    channel.queue_declare(queue=durable, durable=True)
    conn.close()

    old = _connect(rabbitmq)
    rabbitmq.restart()
    try:
        assert (rabbitmq.port, rabbitmq.nodename, rabbitmq.data_dir) == (port, nodename, data_dir)
        assert rabbitmq.is_running()
        # the connection made before the restart is gone ...
        with pytest.raises(pika.exceptions.AMQPError):
            old.process_data_events(time_limit=1)
            old.channel()
        # ... and a new one works, on the same port, with the durable queue still there
        conn = _connect(rabbitmq)
        try:
            channel = conn.channel()
            ok = channel.queue_declare(queue=durable, passive=True)
            assert ok.method.queue == durable
            channel.queue_delete(queue=durable)
        finally:
            conn.close()
        amqp_handshake(rabbitmq.host, rabbitmq.port)
    finally:
        if old.is_open:
            old.close()


@pytest.mark.broker
def test_own_node_stop_removes_everything() -> None:
    """A second node, started and stopped here: nothing of it survives stop()."""
    node = RabbitMQNode(name_prefix="managerctl-test-stop")
    with node:
        data_dir = node.data_dir
        assert data_dir is not None
        assert node.is_running()
        assert node._node_pids(), "the node's processes should be visible by their env"
    assert not node.is_running()
    assert node.data_dir is None
    assert not os.path.exists(data_dir)
    assert node._node_pids() == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", node.port), timeout=1).close()


def test_a_first_start_on_a_port_taken_meanwhile_moves_to_a_free_one() -> None:
    # The port picked as free is taken before the node listens (here by this test).
    node = RabbitMQNode()
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        node._port = taken.getsockname()[1]
        node.start()
        try:
            assert node.port != taken.getsockname()[1]
            amqp_handshake("127.0.0.1", node.port, timeout=5)
        finally:
            node.stop()
    finally:
        taken.close()

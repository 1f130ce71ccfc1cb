"""rpc.topology gives every entity the shape oslo.messaging 18.3.1's own code gives it.

oslo's ``Connection.declare_*_consumer`` and ``*_send`` are run on a stand-in connection that
records the kombu objects they build (nothing is sent): for every topology of TOPOLOGIES.md,
and a few more option mixes, our shapes must equal oslo's flag for flag, argument for argument.
"""

from __future__ import annotations

import itertools
import warnings
from types import SimpleNamespace

import pytest
from topologies import TOPOLOGY_SETS

from manager_cli.config import _SPECS, RABBIT_GROUP, convert
from manager_cli.errors import ConfigError
from manager_cli.rpc import wire
from manager_cli.rpc.topology import Topology, queue_manager_name
from manager_cli.rpc.transport import RabbitOptions

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from oslo_messaging._drivers import impl_rabbit


def _options(settings: dict[str, str]) -> RabbitOptions:
    typed = {name: convert(_SPECS[(RABBIT_GROUP, name)], value) for name, value in settings.items()}
    return RabbitOptions(**typed)


EXTRA_SETS = {
    "quorum-memory-limits": {
        "rabbit_quorum_queue": "true",
        "rabbit_quorum_max_memory_length": "100",
        "rabbit_quorum_max_memory_bytes": "1000000",
        "rabbit_quorum_delivery_limit": "3",
        "rabbit_transient_quorum_queue": "true",
    },
    "ttl-0": {"rabbit_transient_queues_ttl": "0"},
    "auto-delete": {"amqp_auto_delete": "true"},
    "cancel-on-failover": {"enable_cancel_on_failover": "true", "rabbit_ha_queues": "true"},
    "transient-only": {"rabbit_transient_quorum_queue": "true"},
    "durable-and-quorum": {"amqp_durable_queues": "true", "rabbit_quorum_queue": "true"},
}
ALL_SETS = {t.name: t.options for t in TOPOLOGY_SETS} | EXTRA_SETS


class OsloStandIn:
    """What ``impl_rabbit.Connection``'s declare and send methods read, and nothing else."""

    def __init__(self, options: RabbitOptions) -> None:
        for name in (
            "rabbit_ha_queues",
            "rabbit_quorum_queue",
            "rabbit_transient_quorum_queue",
            "rabbit_stream_fanout",
            "rabbit_transient_queues_ttl",
            "amqp_durable_queues",
            "amqp_auto_delete",
            "enable_cancel_on_failover",
        ):
            setattr(self, name, getattr(options, name))
        self.rabbit_quorum_queue_config = impl_rabbit.QuorumMemConfig(
            options.rabbit_quorum_delivery_limit,
            options.rabbit_quorum_max_memory_length,
            options.rabbit_quorum_max_memory_bytes,
        )
        self.durable = impl_rabbit.Connection.durable.fget(self)
        self.direct_mandatory_flag = True
        counter = itertools.count(1)
        self._q_manager = (
            SimpleNamespace(get=lambda: f"node1:nova-api:{next(counter)}")
            if options.use_queue_manager
            else None
        )
        self.consumers: list = []
        self.exchanges: list = []

    def declare_consumer(self, consumer) -> None:
        self.consumers.append(consumer)

    def _ensure_publishing(self, method, exchange, msg, **kwargs) -> None:
        self.exchanges.append(exchange)

    def _publish(self, *args, **kwargs) -> None:  # only referenced by the send methods
        raise AssertionError

    _publish_and_raises_on_missing_exchange = _publish


def _oslo(options: RabbitOptions) -> OsloStandIn:
    conn = OsloStandIn(options)
    Connection = impl_rabbit.Connection
    Connection.declare_topic_consumer(conn, "openstack", "compute")
    Connection.declare_topic_consumer(conn, "openstack", "compute.host1")
    Connection.declare_fanout_consumer(conn, "compute", None)
    Connection.declare_direct_consumer(conn, "reply_x", None)
    Connection.topic_send(conn, "openstack", "compute", {})
    Connection.fanout_send(conn, "compute", {})
    return conn


def _consumer_arguments(consumer) -> dict | None:
    """What oslo's ``Consumer.declare`` passes when it consumes."""
    arguments = None
    if consumer.enable_cancel_on_failover:
        arguments = {"x-cancel-on-ha-failover": True}
    if consumer.rabbit_stream_fanout:
        arguments = {"x-stream-offset": consumer.next_stream_offset}
    return arguments


def _queue_view(shape) -> dict:
    return {
        "durable": shape.durable,
        "auto_delete": shape.auto_delete,
        "arguments": dict(shape.arguments),
    }


def _oslo_queue_view(consumer) -> dict:
    return {
        "durable": consumer.durable,
        "auto_delete": consumer.queue_auto_delete,
        "arguments": dict(consumer.queue_arguments),
    }


@pytest.mark.parametrize("name", sorted(ALL_SETS))
def test_shapes_equal_oslos(name: str, monkeypatch) -> None:
    options = _options(ALL_SETS[name])
    try:
        oslo = _oslo(options)
    except RuntimeError:
        with pytest.raises(ConfigError):
            Topology(options)
        return
    topology = Topology(options)
    topic, server, fanout, reply = oslo.consumers
    assert _queue_view(topology.topic_queue("compute")) == _oslo_queue_view(topic)
    assert _queue_view(topology.topic_queue("compute.host1")) == _oslo_queue_view(server)
    assert _queue_view(topology.fanout_queue("compute")) == _oslo_queue_view(fanout)
    assert _queue_view(topology.reply_queue("reply_x")) == _oslo_queue_view(reply)
    for ours, theirs in [
        (topology.topic_queue("compute"), topic),
        (topology.fanout_queue("compute"), fanout),
        (topology.reply_queue("reply_x"), reply),
    ]:
        assert topology.consumer_arguments(ours) == _consumer_arguments(theirs)
    # Exchanges: the consumers' (declared by servers) and the senders' (declared by clients).
    control = topology.control_exchange("openstack")
    fanout_exchange = topology.fanout_exchange("compute")
    sent_topic, sent_fanout = oslo.exchanges
    for exchange in (topic.exchange, server.exchange, sent_topic):
        assert (exchange.name, exchange.type, exchange.durable, exchange.auto_delete) == (
            control.name,
            control.type,
            control.durable,
            control.auto_delete,
        )
    for exchange in (fanout.exchange, sent_fanout):
        assert (exchange.name, exchange.type, exchange.durable, exchange.auto_delete) == (
            fanout_exchange.name,
            fanout_exchange.type,
            fanout_exchange.durable,
            fanout_exchange.auto_delete,
        )


@pytest.mark.parametrize("name", sorted(ALL_SETS))
def test_fanout_queue_names_follow_oslo(name: str, monkeypatch) -> None:
    options = _options(ALL_SETS[name])
    try:
        oslo = _oslo(options)
    except RuntimeError:
        return
    monkeypatch.setattr(
        "manager_cli.rpc.topology.queue_manager_name", lambda host, proc: "node1:nova-api:1"
    )
    ours = Topology(options).fanout_queue("compute").name
    theirs = oslo.consumers[2].queue_name
    if options.rabbit_stream_fanout:
        assert ours == theirs == "compute_fanout"
    elif options.use_queue_manager:
        assert ours == theirs == "compute_fanout_node1:nova-api:1"
    else:
        assert ours.startswith("compute_fanout_") and len(ours) == len(theirs)


def test_stream_fanout_without_its_prerequisites_is_a_config_error() -> None:
    for settings in (
        {"rabbit_stream_fanout": "true", "rabbit_transient_quorum_queue": "true"},
        {"rabbit_stream_fanout": "true", "rabbit_qos_prefetch_count": "1"},
        {"rabbit_quorum_queue": "true", "rabbit_ha_queues": "true"},
        {"kombu_compression": "rar"},
    ):
        with pytest.raises(ConfigError):
            Topology(_options(settings))


def test_one_shot_reply_queue_is_exclusive_classic_in_every_topology() -> None:
    for settings in ALL_SETS.values():
        try:
            topology = Topology(_options(settings))
        except ConfigError:
            continue
        shape = topology.reply_queue(exclusive=True)
        assert (shape.exclusive, shape.auto_delete, shape.durable) == (True, True, False)
        assert "x-queue-type" not in shape.arguments


def test_queue_manager_names_count_per_service(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("manager_cli.rpc.topology.os.path.isdir", lambda path: False)
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    names = [queue_manager_name("node1", "mctl-test") for _ in range(3)]
    assert names == ["node1:mctl-test:1", "node1:mctl-test:2", "node1:mctl-test:3"]
    # Another service generation (a restart: another process group) starts over.
    monkeypatch.setattr("manager_cli.rpc.topology._service_identity", lambda: (1, 2))
    assert queue_manager_name("node1", "mctl-test") == "node1:mctl-test:1"


@pytest.mark.parametrize("name", ["gzip", "zlib", "bz2", "bzip2", "xz"])
def test_compression_round_trips_with_kombu(name: str) -> None:
    from kombu import compression as kombu_compression

    body = wire.encode_envelope(wire.build_request("echo", {"value": "x" * 500}))
    content_type = wire.compression_type(name)
    ours = wire.compress_body(body, content_type)
    # kombu (oslo's reader) reads what we send, and we read what kombu sends.
    assert kombu_compression.decompress(ours, content_type) == body
    kombu_name = {"bz2": "bzip2"}.get(name, name)
    theirs, theirs_type = kombu_compression.compress(body, kombu_name)
    assert theirs_type == content_type
    assert wire.decompress_body(theirs, {"compression": theirs_type}) == body
    assert wire.decompress_body(body, {}) == body


def test_unknown_or_corrupt_compression_is_a_wire_error() -> None:
    with pytest.raises(wire.WireFormatError):
        wire.decompress_body(b"xx", {"compression": "application/x-rar"})
    with pytest.raises(wire.WireFormatError):
        wire.decompress_body(b"not zlib", {"compression": "application/x-gzip"})

"""Every exchange and queue managerctl declares, in the shapes oslo.messaging 18.3.1 declares them.

The ``[oslo_messaging_rabbit]`` options of a deployment decide the shape of each entity
(TOPOLOGIES.md; read from ``impl_rabbit.py``: ``_get_queue_arguments``, ``Connection.durable``,
``declare_*_consumer``, ``*_send``). A queue or exchange declared with other flags than the one
that exists is refused (406), and a classic queue left where quorum services expect a quorum
one breaks them, so nothing in client, server or listener declares anything but through a
:class:`Topology`. The shapes are plain values (unit tests compare them with oslo's own); the
``declare_*`` methods apply them on a pika channel, and :meth:`Topology.check_existing` compares
them with what the broker holds without creating anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import sys
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from . import refusals, wire
from .transport import RabbitOptions, fanout_exchange_name

LOG = logging.getLogger(__name__)

# Roles, for messages: which option decides the shape of what.
CONTROL_EXCHANGE = "control exchange"
FANOUT_EXCHANGE = "fanout exchange"
TOPIC_QUEUE = "topic queue"
FANOUT_QUEUE = "fanout queue"
STREAM_QUEUE = "fanout stream"
REPLY_QUEUE = "reply queue"
PRIVATE_QUEUE = "private queue"  # exclusive, auto-delete: managerctl's own (PROTOCOL.md §11)


@dataclass(frozen=True)
class ExchangeShape:
    name: str
    type: str
    durable: bool
    auto_delete: bool
    role: str


@dataclass(frozen=True)
class QueueShape:
    name: str  # "" for a server-named queue
    durable: bool
    auto_delete: bool
    exclusive: bool
    arguments: Mapping[str, Any] = field(default_factory=dict)
    role: str = TOPIC_QUEUE

    @property
    def stream(self) -> bool:
        return self.arguments.get("x-queue-type") == "stream"


# ---------------------------------------------------------------------------------------------
# use_queue_manager names


def _service_identity() -> tuple[int, int]:
    """(process group, its start time): what oslo's QManager resets its counter on."""
    group = os.getpgrp() or os.getpid()
    try:
        with open(f"/proc/{group}/stat", encoding="ascii") as stat:
            start = int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        start = 0
    return group, start


def queue_manager_name(hostname: str, processname: str) -> str:
    """``<hostname>:<processname>:<n>``, as oslo's ``amqpdriver.QManager.get()`` makes it.

    The counter lives where oslo keeps it (``/dev/shm/<hostname>_<processname>_qmanager``,
    ``pg:counter:start``), so two processes of one service never take the same name, and a
    restarted service (a new process group) starts over at 1 and reuses its old queues.
    """
    if os.path.isdir("/dev/shm"):
        directory = "/dev/shm"
    else:
        import tempfile  # off every other path: a one-shot call would pay ~3 ms for it

        directory = tempfile.gettempdir()
    path = os.path.join(directory, f"{hostname}_{processname}_qmanager")
    group, start = _service_identity()
    with open(path, "a+", encoding="ascii") as counter_file:
        fcntl.flock(counter_file, fcntl.LOCK_EX)
        counter_file.seek(0)
        counter = 0
        with contextlib.suppress(ValueError):
            old_group, old_counter, old_start = counter_file.readline().strip().split(":")
            if (int(old_group), int(old_start)) == (group, start):
                counter = int(old_counter)
        counter += 1
        counter_file.seek(0)
        counter_file.truncate()
        counter_file.write(f"{group}:{counter}:{start}")
    return f"{hostname}:{processname}:{counter}"


# ---------------------------------------------------------------------------------------------


class Topology:
    """The shapes one set of rabbit options gives every entity; raises ConfigError for a set
    oslo refuses too (stream fanout without transient quorum queues or a prefetch count,
    quorum with HA queues, an unknown compression)."""

    def __init__(self, options: RabbitOptions) -> None:
        self.options = options
        if options.rabbit_stream_fanout and options.rabbit_qos_prefetch_count <= 0:
            raise ConfigError(
                "rabbit_stream_fanout needs rabbit_qos_prefetch_count > 0",
                hint="set rabbit_qos_prefetch_count (kolla-ansible uses 1, openstack-ansible 10)",
            )
        if options.rabbit_stream_fanout and not options.rabbit_transient_quorum_queue:
            raise ConfigError(
                "rabbit_stream_fanout needs rabbit_transient_quorum_queue = true",
                hint="set both, as the deployment's services do",
            )
        if options.rabbit_ha_queues and (
            options.rabbit_quorum_queue or options.rabbit_transient_quorum_queue
        ):
            # oslo raises for quorum + HA on every queue it declares with both.
            raise ConfigError(
                "rabbit_ha_queues cannot be combined with quorum queues",
                hint="quorum queues are replicated already: set rabbit_ha_queues = false",
            )
        try:
            self.compression = wire.compression_type(options.kombu_compression)
        except ValueError as exc:
            raise ConfigError(f"kombu_compression: {exc}") from None
        self.headers: dict[str, Any] = (
            {wire.COMPRESSION_HEADER: self.compression} if self.compression else {}
        )

    # -- shapes ----------------------------------------------------------------------------------

    @property
    def durable(self) -> bool:
        """oslo's ``Connection.durable``: the control exchange and the topic queues."""
        return self.options.amqp_durable_queues or self.options.rabbit_quorum_queue

    @property
    def stream_fanout(self) -> bool:
        return self.options.rabbit_stream_fanout

    @property
    def transient_durable(self) -> bool:
        """Reply and fanout queues, and the fanout exchange, are durable (quorum) or not."""
        return self.options.rabbit_transient_quorum_queue

    def _arguments(self, *, quorum: bool, ttl: bool, stream: bool = False) -> dict[str, Any]:
        """oslo's ``_get_queue_arguments``, argument for argument."""
        options = self.options
        args: dict[str, Any] = {}
        if options.rabbit_ha_queues:
            args["x-ha-policy"] = "all"
        if quorum:
            args["x-queue-type"] = "quorum"
            if options.rabbit_quorum_delivery_limit:
                args["x-delivery-limit"] = options.rabbit_quorum_delivery_limit
            if options.rabbit_quorum_max_memory_length:
                args["x-max-in-memory-length"] = options.rabbit_quorum_max_memory_length
            if options.rabbit_quorum_max_memory_bytes:
                args["x-max-in-memory-bytes"] = options.rabbit_quorum_max_memory_bytes
        ttl_seconds = int(options.rabbit_transient_queues_ttl)
        if ttl and ttl_seconds > 0:
            args["x-expires"] = ttl_seconds * 1000
        if stream:
            args = {"x-queue-type": "stream"}
            if ttl_seconds > 0:
                args["x-max-age"] = f"{ttl_seconds}s"
        return args

    def control_exchange(self, name: str) -> ExchangeShape:
        return ExchangeShape(
            name, "topic", self.durable, self.options.amqp_auto_delete, CONTROL_EXCHANGE
        )

    def fanout_exchange(self, topic: str) -> ExchangeShape:
        durable = self.transient_durable or self.stream_fanout
        return ExchangeShape(fanout_exchange_name(topic), "fanout", durable, True, FANOUT_EXCHANGE)

    def topic_queue(self, name: str) -> QueueShape:
        """``<topic>`` or ``<topic>.<server>`` (oslo's ``declare_topic_consumer``)."""
        return QueueShape(
            name,
            durable=self.durable,
            auto_delete=self.options.amqp_auto_delete,
            exclusive=False,
            arguments=self._arguments(quorum=self.options.rabbit_quorum_queue, ttl=False),
            role=TOPIC_QUEUE,
        )

    def private_name(self, prefix: str) -> str:
        """``<prefix><uuid hex>``, or ``<prefix><hostname>:<processname>:<n>`` with the queue
        manager (oslo's reply and fanout queue names)."""
        options = self.options
        if not options.use_queue_manager:
            return prefix + uuid.uuid4().hex
        hostname = options.hostname or socket.gethostname()
        processname = options.processname or (
            os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "managerctl"
        )
        return prefix + queue_manager_name(hostname, processname)

    def fanout_queue(self, topic: str, name: str | None = None) -> QueueShape:
        """This server's queue on ``<topic>_fanout`` (``declare_fanout_consumer``): its own
        ``<topic>_fanout_<unique>``, or the one shared stream ``<topic>_fanout``."""
        if self.stream_fanout:
            return QueueShape(
                fanout_exchange_name(topic),
                durable=True,
                auto_delete=False,
                exclusive=False,
                arguments=self._arguments(quorum=False, ttl=True, stream=True),
                role=STREAM_QUEUE,
            )
        return QueueShape(
            name or self.private_name(f"{topic}_fanout_"),
            durable=self.transient_durable,
            auto_delete=False,
            exclusive=False,
            arguments=self._arguments(quorum=self.transient_durable, ttl=True),
            role=FANOUT_QUEUE,
        )

    def reply_queue(self, name: str | None = None, *, exclusive: bool = False) -> QueueShape:
        """A client's reply queue. Long-lived: as oslo's ``declare_direct_consumer``.
        ``exclusive`` (a one-shot CLI): exclusive, auto-delete and classic, which every
        topology and RabbitMQ 4 accept, so a process leaves nothing behind even if it dies."""
        if exclusive:
            return QueueShape(
                name or f"reply_{uuid.uuid4().hex}",
                durable=False,
                auto_delete=True,
                exclusive=True,
                arguments=self._arguments(quorum=False, ttl=True),
                role=PRIVATE_QUEUE,
            )
        return QueueShape(
            name or self.private_name("reply_"),
            durable=self.transient_durable,
            auto_delete=False,
            exclusive=False,
            arguments=self._arguments(quorum=self.transient_durable, ttl=True),
            role=REPLY_QUEUE,
        )

    def listener_queue(self) -> QueueShape:
        """A server-named exclusive queue a temporary listener binds to a fanout exchange."""
        return QueueShape("", durable=False, auto_delete=True, exclusive=True, role=PRIVATE_QUEUE)

    def delete_on_close(self, shape: QueueShape) -> bool:
        """Whether the server deletes its fanout queue on a clean stop: never a shared stream
        (that would cancel every other consumer of it)."""
        return not shape.stream

    def consumer_arguments(self, shape: QueueShape, stream_offset: Any = "last") -> dict | None:
        """Consumer arguments oslo passes (``Consumer.declare``): the stream offset, or
        ``x-cancel-on-ha-failover``."""
        if shape.stream:
            return {"x-stream-offset": stream_offset}
        if self.options.enable_cancel_on_failover:
            return {"x-cancel-on-ha-failover": True}
        return None

    # -- bodies ----------------------------------------------------------------------------------

    def encode(self, body: bytes) -> bytes:
        """The body as published: compressed when ``kombu_compression`` says so (then the
        properties carry ``headers``, the compression header)."""
        return wire.compress_body(body, self.compression) if self.compression else body

    def properties(self, **extra: Any) -> Any:
        import pika

        return pika.BasicProperties(
            **{**wire.BASE_PROPERTIES, "headers": dict(self.headers)}, **extra
        )

    # -- applying shapes on a pika channel -------------------------------------------------------

    @staticmethod
    def declare_exchange(channel: Any, shape: ExchangeShape, *, passive: bool = False) -> None:
        channel.exchange_declare(
            exchange=shape.name,
            exchange_type=shape.type,
            durable=shape.durable,
            auto_delete=shape.auto_delete,
            passive=passive,
        )

    @staticmethod
    def declare_queue(channel: Any, shape: QueueShape, *, passive: bool = False) -> str:
        frame = channel.queue_declare(
            queue=shape.name,
            durable=shape.durable,
            auto_delete=shape.auto_delete,
            exclusive=shape.exclusive,
            arguments=dict(shape.arguments) or None,
            passive=passive,
        )
        return str(frame.method.queue)

    def declare_topic_queue(self, channel: Any, exchange: str, name: str) -> QueueShape:
        """``<topic>`` or ``<topic>.<server>``, bound to the control exchange with its name."""
        shape = self.topic_queue(name)
        self.declare_queue(channel, shape)
        channel.queue_bind(queue=name, exchange=exchange, routing_key=name)
        return shape

    def declare_fanout_queue(self, channel: Any, topic: str, shape: QueueShape) -> None:
        """The fanout exchange, and ``shape`` (from ``fanout_queue``) bound to it."""
        exchange = self.fanout_exchange(topic)
        self.declare_exchange(channel, exchange)
        self.declare_queue(channel, shape)
        channel.queue_bind(queue=shape.name, exchange=exchange.name, routing_key=topic)

    def set_qos(self, channel: Any, prefetch: int) -> None:
        """Per-consumer prefetch (``global=False``, as oslo): global QoS is refused on quorum
        queues (540) and denied as a deprecated feature by RabbitMQ 4.3."""
        if prefetch > 0:
            channel.basic_qos(prefetch_count=prefetch, global_qos=False)

    def check_existing(
        self, connection: Any, shapes: Iterable[ExchangeShape | QueueShape], *, doing: str
    ) -> None:
        """Raise ConfigError, before anything is declared, when an entity that exists has
        another shape than the options give it; create nothing.

        For each: a passive declare (404: missing, fine) on a throwaway channel, since a 404
        or 406 closes the channel; when it exists, a declare with our exact flags, which on an
        existing entity changes nothing and is refused (406) when any flag or argument differs.
        """
        import pika.exceptions

        for shape in shapes:
            channel = connection.channel()
            try:
                try:
                    if isinstance(shape, ExchangeShape):
                        self.declare_exchange(channel, shape, passive=True)
                    else:
                        self.declare_queue(channel, shape, passive=True)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code == refusals.NOT_FOUND:
                        continue
                    raise refusals.refusal(exc, doing) from None
                try:
                    if isinstance(shape, ExchangeShape):
                        self.declare_exchange(channel, shape)
                    else:
                        self.declare_queue(channel, shape)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    raise refusals.refusal(exc, doing, shape=shape) from None
            finally:
                if channel.is_open:
                    channel.close()

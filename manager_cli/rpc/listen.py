"""Join a topic's fanout for a moment: a temporary consumer that leaves nothing behind.

``capabilities show --live`` listens to what services publish to the scheduler without running a
collector. A :class:`FanoutListener` binds an exclusive, auto-delete, server-named queue to
``<topic>_fanout`` (declared with oslo's flags, PROTOCOL.md §1), so the broker deletes the queue
with the connection even if the process dies; ``close()`` deletes it at once. Servers never see
it: it is not a ``<topic>_fanout_<uuid>`` queue of an RPC server, it never replies, and the
requests it reads are only decoded, never dispatched.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import pika
import pika.exceptions

from ..errors import UnavailableError
from . import as_transport, refusals, transport, wire
from .transport_base import Transport

LOG = logging.getLogger(__name__)

_PIKA_ERRORS = (pika.exceptions.AMQPError, OSError)


class FanoutListener:
    """Read the requests fanned out to ``topic`` while it is open (casts only: no replies)."""

    def __init__(
        self,
        transport_url: Transport | str | transport.TransportURL,
        *,
        topic: str,
        options: transport.RabbitOptions | None = None,
    ) -> None:
        self.transport = as_transport(transport_url, options)
        self.url = self.transport.url
        self.options = self.transport.options
        self.topology = self.transport.topology
        self.topic = topic
        self.queue: str | None = None
        self.requests: list[tuple[float, wire.Request]] = []
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._props = self.topology.properties()

    def __enter__(self) -> FanoutListener:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _mapped_errors(self, doing: str):
        try:
            with refusals.map_amqp_errors(doing):
                yield
        except _PIKA_ERRORS as exc:
            raise UnavailableError(
                f"lost the broker while {doing}: {type(exc).__name__} {exc}".rstrip(),
                hint="check that RabbitMQ is running",
            ) from None

    def start(self) -> None:
        """Connect, declare the fanout exchange and a temporary queue bound to it, consume."""
        self._connection = self.transport.connect()
        with self._mapped_errors(f"joining {transport.fanout_exchange_name(self.topic)}"):
            exchange = self.topology.fanout_exchange(self.topic)
            assert self._connection is not None, "start() first"
            channel = self._declare_exchange(self._connection.channel(), exchange)
            self.queue = self.topology.declare_queue(channel, self.topology.listener_queue())
            channel.queue_bind(queue=self.queue, exchange=exchange.name, routing_key=self.topic)
            channel.basic_consume(self.queue, self._on_message, auto_ack=True)
            self._channel = channel

    def _declare_exchange(self, channel: Any, exchange: Any) -> Any:
        """Declare ``exchange``; one that exists with other flags is used as it is (binding to
        it or publishing to it creates nothing): the channel to go on with."""
        try:
            self.topology.declare_exchange(channel, exchange)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != refusals.PRECONDITION_FAILED:
                raise
            LOG.debug("exchange %s exists with other flags; using it as is", exchange.name)
            assert self._connection is not None
            channel = self._connection.channel()
        return channel

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        if properties.content_type != wire.CONTENT_TYPE:
            return  # what an oslo consumer drops too (PROTOCOL.md §4.1)
        try:
            plain = wire.decompress_body(body, properties.headers)
            request = wire.parse_request(wire.decode_envelope(plain))
        except wire.WireFormatError as exc:
            LOG.debug("ignoring an unreadable message on %s: %s", self.queue, exc)
            return
        self.requests.append((time.time(), request))

    def fanout_cast(
        self,
        context: Any,
        topic: str,
        method: str,
        args: Mapping[str, Any] | None = None,
        *,
        version: str | None = None,
    ) -> None:
        """Cast ``method`` to every server of ``topic`` on this listener's connection, at
        ``version`` (the servers' family's: a version they do not speak is refused)."""
        assert self._channel is not None, "start() first"
        body = self.topology.encode(
            wire.encode_envelope(wire.build_request(method, args, context=context, version=version))
        )
        with self._mapped_errors(f"casting {method} to {topic}"):
            exchange = self.topology.fanout_exchange(topic)
            assert self._connection is not None, "start() first"
            channel = self._declare_exchange(self._connection.channel(), exchange)
            channel.basic_publish(exchange.name, "", body, self._props)
            # Its own channel: a 406 must not close the one this listener consumes on.
            channel.close()

    def listen(self, seconds: float) -> list[tuple[float, wire.Request]]:
        """Collect for ``seconds``; returns every (arrival time, request) read so far."""
        assert self._connection is not None, "start() first"
        deadline = time.monotonic() + max(0.0, seconds)
        with self._mapped_errors(f"listening on {self.queue}"):
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._connection.process_data_events(time_limit=remaining)
        return list(self.requests)

    def close(self) -> None:
        """Delete the queue and close the connection (the broker would delete it anyway)."""
        connection, channel = self._connection, self._channel
        self._connection = self._channel = None
        if connection is None or not connection.is_open:
            return
        with contextlib.suppress(*_PIKA_ERRORS):
            if channel is not None and channel.is_open and self.queue:
                for tag in list(channel.consumer_tags):
                    channel.basic_cancel(tag)
                channel.queue_delete(self.queue)
        with contextlib.suppress(*_PIKA_ERRORS):
            connection.close()

"""The Transport interface: what client, server and listener ask of a message broker."""

from __future__ import annotations

from typing import Any

from . import refusals
from .topology import Topology
from .transport import RabbitOptions, TransportURL


class Transport:
    """What client, server and listener ask of a message broker: connections, and the
    options and topology that shape what they declare and send.

    A connection and its channels speak AMQP 0-9-1 the way pika's ``BlockingConnection`` and
    ``BlockingChannel`` do (``channel()``, ``process_data_events``, ``call_later``,
    ``add_callback_threadsafe``; ``queue_declare``, ``basic_publish``, ``basic_consume``,
    ``basic_ack`` ...), and a broker's refusals are pika's exceptions
    (``ChannelClosedByBroker`` with its reply code, ``UnroutableError``, a lost connection's
    ``AMQPConnectionError``), so that :func:`map_amqp_errors` is the one place reply codes
    become managerctl errors, whichever transport met them. ``rpc._pika.PikaTransport`` talks to
    RabbitMQ; ``rpc.memory.MemoryTransport`` is an in-process broker for tests (the contract
    tests in tests/integration/test_transport_contract.py hold the two to the same answers).
    """

    scheme = "rabbit"

    def __init__(self, url: TransportURL, options: RabbitOptions | None = None) -> None:
        self.url = url
        self.options = url.apply_to(options or RabbitOptions())
        self.topology = Topology(self.options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url.masked()}>"

    def connect(self, *, rotate: int = 0) -> Any:
        """A new connection; ``rotate`` starts the fail over ``rotate`` hosts further on (a
        reconnecting server tries the next broker first). Raises BrokerUnreachableError or
        AccessRefusedError."""
        raise NotImplementedError

    def abort(self, connection: Any) -> None:
        """Drop a connection without the close handshake (nothing waits on it any more)."""
        connection.close()

    def publish_nowait(
        self,
        channel: Any,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Any,
        *,
        mandatory: bool = False,
    ) -> None:
        """Publish without waiting for the bytes to leave: the next ``process_data_events``
        writes whatever was queued meanwhile (a server's replies, in one go)."""
        channel.basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)

    @staticmethod
    def closing_reason(channel: Any) -> BaseException | None:
        """What the broker said when it closed ``channel`` (a refused publish, say), if it did."""
        return getattr(channel, "_closing_reason", None)

    # The one boundary where a refusal's reply code becomes a managerctl error (rpc.refusals).
    map_amqp_errors = staticmethod(refusals.map_amqp_errors)

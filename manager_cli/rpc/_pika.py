"""The pika Transport: connections to RabbitMQ (fail over, TLS, names: ``rpc.transport.connect``)
and what client, server and listener declare, in ``rpc.topology``'s shapes."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pika

from . import transport as _transport
from .transport_base import Transport

LOG = logging.getLogger(__name__)


class PikaTransport(Transport):
    """RabbitMQ through pika's BlockingConnection."""

    def connect(self, *, rotate: int = 0) -> pika.BlockingConnection:
        url = self.url
        if rotate % len(url.hosts):
            offset = rotate % len(url.hosts)
            url = dataclasses.replace(url, hosts=url.hosts[offset:] + url.hosts[:offset])
        return _transport.connect(url, self.options)

    def abort(self, connection: Any) -> None:
        # Drop the socket: after a timeout the link may be silent, and a graceful close waits
        # for the broker without a bound (until the AMQP heartbeat gives up, ~2 min).
        socket_transport = getattr(getattr(connection, "_impl", None), "_transport", None)
        try:
            if socket_transport is not None:
                socket_transport.abort()
            else:
                connection.close()
        except Exception:  # the socket is going away either way; the process may be exiting
            LOG.debug("aborting the broker connection failed", exc_info=True)

    def publish_nowait(self, channel: Any, *publish: Any, **flags: Any) -> None:
        # BlockingChannel.basic_publish flushes the socket after every message, a poll round
        # each; the channel under it only queues the frames.
        channel._impl.basic_publish(*publish, **flags)

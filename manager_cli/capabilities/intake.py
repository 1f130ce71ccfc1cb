"""The collector's ear on a scheduler's fanout: a queue of its own, read as fast as it arrives.

The work per message is tiny (decode, keep an update for the batch writer), so the RPC server's
path (a worker thread per request, a wake-up of the I/O thread per reply it never sends) would
be the bottleneck: about 800 requests/s on a busy 2-core machine. Here messages are decoded on
the consumer's own thread, handed to a callback, and acknowledged in batches (``multiple``),
with a prefetch large enough to keep the socket busy: the intake then keeps up with the store's
batched writes.

The queue is the one an oslo server of that topic would declare for its fanout
(``declare_fanout_queue``: ``<topic>_fanout_<uuid>``, x-expires), never the topic's shared
queues. A lost connection is re-established with backoff, on the same queue name, as an oslo
server does; stop() deletes the queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions

from ..errors import BadInputError, ManagerCtlError
from ..rpc import get_transport, wire

LOG = logging.getLogger(__name__)

# Messages the broker may hand over before they are acknowledged; acknowledged every ACK_EVERY
# (and whenever the queue goes quiet), one frame for many.
PREFETCH = 2000
ACK_EVERY = 500
RECONNECT_MAX_DELAY = 30.0
_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    OSError,
    ManagerCtlError,
)


class FanoutIntake:
    """Read ``topic``'s fanout through a queue of its own; ``on_request(request)`` per message.

    Has the listener interface the service expects (start, stop, wait, queues).
    """

    def __init__(
        self,
        settings: Any,
        topic: str,
        on_request: Callable[[wire.Request], None],
        *,
        prefetch: int = PREFETCH,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.on_request = on_request
        self.prefetch = prefetch
        self.queue: str | None = None
        self._shape: Any = None
        self.received = 0
        self._connection: Any = None
        self._channel: Any = None
        self._last_tag = 0
        self._acked_tag = 0
        self._stopping = threading.Event()
        self._dead = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def queues(self) -> list[str]:
        return [self.queue] if self.queue else []

    def start(self) -> None:
        """Declare and consume now (a broker that refuses raises here), then read on a thread."""
        self._setup()
        self._thread = threading.Thread(target=self._run, name=f"intake-{self.topic}", daemon=True)
        self._thread.start()

    def _setup(self) -> None:
        transport = get_transport(self.settings)
        connection = transport.connect()
        try:
            channel = connection.channel()
            # Declared exactly as an oslo server declares its fanout queue, in whatever
            # topology the options say (a shared stream with rabbit_stream_fanout).
            topology = transport.topology
            if self._shape is None:
                self._shape = topology.fanout_queue(self.topic, name=self.queue)
            topology.declare_fanout_queue(channel, self.topic, self._shape)
            self.queue = self._shape.name
            topology.set_qos(channel, self.prefetch)
            channel.basic_consume(
                self.queue, self._on_message, arguments=topology.consumer_arguments(self._shape)
            )
        except BaseException:
            if connection.is_open:
                connection.close()
            raise
        self._connection, self._channel = connection, channel
        self._last_tag = self._acked_tag = 0

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._last_tag = method.delivery_tag
        self.received += 1
        if properties.content_type == wire.CONTENT_TYPE:
            try:
                self.on_request(wire.parse_request(wire.decode_envelope(body)))
            except wire.WireFormatError as exc:
                LOG.info("ignoring an unreadable message on %s: %s", self.queue, exc)
            except BadInputError as exc:
                LOG.info("ignoring a message on %s: %s", self.queue, exc)
            except Exception:
                LOG.exception("a message on %s could not be taken in", self.queue)
        if self._last_tag - self._acked_tag >= ACK_EVERY:
            self._ack()

    def _ack(self) -> None:
        if self._last_tag > self._acked_tag and self._channel is not None:
            self._channel.basic_ack(self._last_tag, multiple=True)
            self._acked_tag = self._last_tag

    def _run(self) -> None:
        delay = 1.0
        try:
            while not self._stopping.is_set():
                try:
                    if self._connection is None:
                        self._setup()
                        LOG.info("listening to %s again (%s)", self.topic, self.queue)
                        delay = 1.0
                    self._connection.process_data_events(time_limit=0.2)
                    self._ack()  # the queue went quiet (or 0.2 s passed): ack what was read
                except _ERRORS as exc:
                    self._drop()
                    if self._stopping.is_set():
                        break
                    LOG.warning(
                        "lost %s's fanout (%s: %s); again in %gs",
                        self.topic,
                        type(exc).__name__,
                        str(exc).splitlines()[0] if str(exc) else "",
                        delay,
                    )
                    self._stopping.wait(delay)
                    delay = min(delay * 2, RECONNECT_MAX_DELAY)
        except BaseException:
            LOG.exception("the intake of %s stopped", self.topic)
            self._dead.set()
            raise
        finally:
            self._close()

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                if connection.is_open:
                    connection.close()
            except Exception as exc:  # a dead connection may fail to close: gone either way
                LOG.debug("closing the intake connection: %s", exc)

    def _close(self) -> None:
        """Ack what was read, delete the queue (nobody else reads it), close."""
        channel, connection = self._channel, self._connection
        try:
            if channel is not None and channel.is_open:
                self._ack()
                for tag in list(channel.consumer_tags):
                    channel.basic_cancel(tag)
                # Never a shared stream: deleting it would cancel every other consumer.
                if self.queue and not (self._shape is not None and self._shape.stream):
                    channel.queue_delete(self.queue)
        except _ERRORS as exc:
            LOG.debug("closing the intake channel: %s", exc)
        self._channel = None
        if connection is not None:
            self._connection = connection
            self._drop()

    def stop(self, graceful_timeout: float = 30.0) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(1.0, min(graceful_timeout, 10.0)))

    def wait(self, timeout: float | None = None) -> bool:
        """True once the intake stopped on its own (it reconnects by itself otherwise)."""
        return self._dead.wait(timeout)

"""The collector's ear on a scheduler's fanout: a queue of its own, read as fast as it arrives.

The work per message is tiny (decode, keep an update), so the RPC server's path (a worker
thread per request, acknowledged before it runs) would be the bottleneck and would lose what
was acknowledged but not yet written. Here messages are decoded on the consumer's own thread
and gathered into a batch; the batch is handed to ``on_batch``, which writes it in one
transaction, and only once that returned (the write committed) is the batch acknowledged, in
one frame (``multiple``). A large prefetch keeps the socket busy meanwhile. What was not
acknowledged when the collector dies stays in its queue and is delivered again; a store that
is away keeps the batch (and, through prefetch, the broker the rest) until it is back.

The queue is the one an oslo server of that topic would declare for its fanout
(``declare_fanout_queue``: ``<topic>_fanout_<uuid>``, x-expires), never the topic's shared
queues. A lost connection is re-established with backoff, on the same queue name, as an oslo
server does; stop() writes what it holds and deletes the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ManagerCtlError
from ..rpc import get_transport, transport, wire

if TYPE_CHECKING:
    from ..config import Settings

LOG = logging.getLogger(__name__)

# Messages the broker may hand over before they are acknowledged: a few batches, so one is
# on the wire while the last is written.
PREFETCH = 6000
# A batch is written when it has BATCH_MAX updates, when the queue went quiet, or BATCH_WAIT
# seconds after its first message.
BATCH_MAX = 2000
BATCH_WAIT = 0.1
# A batch the store refused is tried again after this long (doubling up to the reconnect cap).
RETRY_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0
_ERRORS = transport.RECONNECT_ERRORS


class FanoutIntake:
    """Read ``topic``'s fanout through a queue of its own; ``on_batch([(request, received_at)])``
    per batch, on the intake's thread. ``on_batch`` returns once the batch is written (it is
    acknowledged then); a ManagerCtlError from it means "not now" (the batch is kept and tried
    again); another exception is a bug or a poisonous message: the batch is then written one
    request at a time and the ones that fail are logged and dropped.

    Has the listener interface the service expects (start, stop, wait, queues).
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        on_batch: Callable[[list[tuple[wire.Request, float]]], None],
        *,
        prefetch: int = PREFETCH,
        batch_max: int = BATCH_MAX,
        batch_wait: float = BATCH_WAIT,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.on_batch = on_batch
        self.prefetch = prefetch
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.queue: str | None = None
        self._shape: Any = None
        self.received = 0
        self.batches = 0
        self._connection: Any = None
        self._channel: Any = None
        # Read, not yet written: (request, received_at); and the newest delivery tag read.
        self._pending: list[tuple[wire.Request, float]] = []
        self._first_pending = 0.0
        self._last_tag = 0
        self._acked_tag = 0
        self._retry_at = 0.0
        self._retry_delay = RETRY_DELAY
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
        if properties.content_type != wire.CONTENT_TYPE:
            return
        try:
            request = wire.parse_request(wire.decode_envelope(body))
        except wire.WireFormatError as exc:
            LOG.info("ignoring an unreadable message on %s: %s", self.queue, exc)
            return
        if not self._pending:
            self._first_pending = time.monotonic()
        self._pending.append((request, time.time()))

    def _flush(self) -> bool:
        """Write what is pending, then acknowledge everything read so far; False when the
        store refused (the batch is kept, and tried again after a delay)."""
        if self._pending:
            if time.monotonic() < self._retry_at:
                return False
            try:
                self._write(self._pending)
            except ManagerCtlError as exc:
                LOG.warning(
                    "cannot write %d updates from %s (%s); again in %gs",
                    len(self._pending),
                    self.topic,
                    exc,
                    self._retry_delay,
                )
                self._retry_at = time.monotonic() + self._retry_delay
                self._retry_delay = min(self._retry_delay * 2, RECONNECT_MAX_DELAY)
                return False
            self._pending = []
            self._retry_delay = RETRY_DELAY
            self.batches += 1
        self._ack()
        return True

    def _write(self, batch: list[tuple[wire.Request, float]]) -> None:
        try:
            self.on_batch(batch)
            return
        except ManagerCtlError:
            raise
        except Exception:
            LOG.exception("a batch from %s failed; writing it one update at a time", self.topic)
        for item in batch:
            try:
                self.on_batch([item])
            except ManagerCtlError:
                raise
            except Exception:
                LOG.exception("dropped an update from %s (%s)", self.topic, item[0].method)

    def _ack(self) -> None:
        # Only ever after the write of everything read up to _last_tag returned.
        if self._last_tag > self._acked_tag and self._channel is not None:
            self._channel.basic_ack(self._last_tag, multiple=True)
            self._acked_tag = self._last_tag

    def _due(self) -> bool:
        return bool(self._pending) and (
            len(self._pending) >= self.batch_max
            or time.monotonic() - self._first_pending >= self.batch_wait
        )

    def _run(self) -> None:
        delay = 1.0
        try:
            while not self._stopping.is_set():
                try:
                    if self._connection is None:
                        self._setup()
                        LOG.info("listening to %s again (%s)", self.topic, self.queue)
                        delay = 1.0
                    before = self.received
                    # With a batch open, only what has arrived; else wait a little for more.
                    self._connection.process_data_events(time_limit=0 if self._pending else 0.2)
                    # Quiet (or the batch is full or old enough): write, then acknowledge; a
                    # store that refused is tried again later, the connection kept alive.
                    quiet = self.received == before
                    if (quiet or self._due()) and not self._flush():
                        self._connection.process_data_events(time_limit=0.1)
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
        # What was read on this connection and not acknowledged is delivered again on the
        # next one: forget it here, so nothing is written twice out of order.
        self._pending = []
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                if connection.is_open:
                    connection.close()
            except Exception as exc:  # a dead connection may fail to close: gone either way
                LOG.debug("closing the intake connection: %s", exc)

    def _close(self) -> None:
        """Write and acknowledge what was read, delete the queue (nobody else reads it), close."""
        channel, connection = self._channel, self._connection
        try:
            if channel is not None and channel.is_open:
                for tag in list(channel.consumer_tags):
                    channel.basic_cancel(tag)
                self._retry_at = 0.0
                self._flush()
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

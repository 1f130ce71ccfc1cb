"""The RPC server: consume ``<topic>``, ``<topic>.<server>`` and a fanout queue, dispatch, reply.

Threading. A Transport's connection (pika's BlockingConnection) is not thread-safe, so one I/O
thread owns the connection and its channel: it receives, decodes, acks, publishes replies and
heartbeats. Methods run in a pool of worker threads; a worker hands its reply back through a
queue and wakes the I/O thread with ``add_callback_threadsafe``. The I/O thread is the only one
that touches the connection.

Acknowledgement (at-most-once, as oslo). A request is acked by the I/O thread at the moment a
worker is free to run it, never earlier: requests received while every worker is busy wait
unacked in a local backlog, which ``basic_qos`` bounds, and go back to the queue (nack, requeue)
when the server stops or loses its connection. A request once acked is never run again: the
``_unique_id`` of every started request is remembered (the last 16, as oslo) across reconnects,
so a redelivered copy of an acked request is dropped.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions

from ..errors import BadInputError
from . import as_transport, refusals, transport, wire
from .dispatcher import DispatchError, RPCDispatcher
from .topology import QueueShape
from .transport_base import Transport

LOG = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DUPLICATE_CACHE_SIZE = 16
REPLY_RETRY_INTERVAL = 0.25
DEAD_REPLY_QUEUE_TTL = 60.0
DEAD_REPLY_QUEUE_CACHE = 200

_PIKA_ERRORS = transport.CHANNEL_LOST_ERRORS
_CONNECTION_ERRORS = transport.RECONNECT_ERRORS
RETURNED_CACHE = 1000
# How long the I/O thread, having started a request on an idle server, waits for its reply
# before it goes back to the socket (see _await_quick_reply).
QUICK_REPLY_WAIT = 0.001


class MessageTooLarge(wire.WireFormatError):
    """A request body over the server's ``max_message_bytes``."""


class _Job:
    """One started request: what the worker needs, and the heartbeat timer around it."""

    __slots__ = ("request", "heartbeat_interval", "timer", "finished")

    def __init__(self, request: wire.Request) -> None:
        self.request = request
        timeout = request.call_monitor_timeout if request.wants_reply else None
        # oslo sends a heartbeat every int(_timeout)/2 s, and none at all below 2 s.
        self.heartbeat_interval = int(timeout) / 2 if timeout and timeout >= 2 else None
        self.timer: Any = None
        self.finished = False


class RPCServer:
    """Serve a dispatcher's endpoints on ``topic`` as ``server``, the way oslo's servers do.

    ``exchange`` overrides ``options.control_exchange``. ``executor_threads`` methods run at
    once; as many more requests per consumed queue may wait, unacked, in the server (a
    per-consumer ``basic_qos``, never a global one; oslo's ``rabbit_qos_prefetch_count``
    replaces that bound when set). Every queue and exchange has the shape the rabbit options
    give it (``rpc.topology``), and nothing is declared when one that exists has another
    (ConfigError, naming the option to set). ``on_error(exc, request)`` is
    told of every failed request: a method that raised, a dispatch error, or a malformed
    message (``request`` None); it runs on a worker or the I/O thread and must not block.
    Requests larger than ``max_message_bytes`` are refused. ``on_event(name)`` (metrics) is
    told of the rare events: connected, reconnected, disconnected, closed, poison,
    rejected_content_type, rejected_too_large, duplicate; never of ordinary requests.

    ``fanout_only`` makes it a listener on a topic it does not own: it consumes only a fanout
    queue of its own (declared as oslo declares a server's), never the topic's shared queues,
    which would join the owner's round-robin (a queue name is global to the vhost).
    """

    def __init__(
        self,
        transport_url: Transport | str | transport.TransportURL,
        *,
        topic: str,
        server: str,
        dispatcher: RPCDispatcher,
        options: transport.RabbitOptions | None = None,
        exchange: str | None = None,
        executor_threads: int = 8,
        on_error: Callable[[BaseException, wire.Request | None], None] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        on_event: Callable[[str], None] | None = None,
        fanout_only: bool = False,
    ) -> None:
        if not topic or not server:
            raise ValueError("an RPC server needs a topic and a server name")
        if executor_threads < 1:
            raise ValueError("executor_threads must be at least 1")
        self.transport = as_transport(transport_url, options)
        self.url = self.transport.url
        self.options = self.transport.options
        self.topic = topic
        self.server = server
        self.dispatcher = dispatcher
        self.exchange = exchange or self.options.control_exchange
        self.executor_threads = executor_threads
        self.on_error = on_error
        self.max_message_bytes = max_message_bytes
        self.on_event = on_event
        self.fanout_only = fanout_only
        self.topology = self.transport.topology
        # Per consumer (never global QoS: quorum queues refuse it, RabbitMQ 4.3 denies it), so
        # up to three times this many requests wait unacked in the backlog.
        self.prefetch = self.options.rabbit_qos_prefetch_count or executor_threads
        self.fanout_queue: str | None = None
        self._fanout_shape: QueueShape | None = None
        # Where a stream fanout consumer resumes after a reconnect (oslo: last seen + 1).
        self._stream_offset: Any = "last"
        self._stream_tag: str | None = None
        # Delivery tags from the stream not settled yet: a stream refuses nack and reject
        # (540, which closes the connection), so those are acked instead.
        self._stream_deliveries: set[int] = set()
        self._props = self.topology.properties()
        self._publish_nowait = self.transport.publish_nowait
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._host_offset = 0
        self._io_thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._work: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue[tuple[_Job, bytes | None]] = queue.SimpleQueue()
        # Owned by the I/O thread:
        self._backlog: collections.deque[tuple[int, wire.Request]] = collections.deque()
        self._jobs: set[_Job] = set()
        # Jobs taken on during one pass of the I/O loop, started together by _start_taken().
        self._taken: list[tuple[int, _Job]] = []
        self._seen: collections.deque[str] = collections.deque(maxlen=DUPLICATE_CACHE_SIZE)
        self._unsent: list[tuple[str, bytes]] = []
        # Replies handed to pika but maybe not yet to the socket (see _publish_reply).
        self._unflushed: list[tuple[str, bytes]] = []
        self._returned: dict[str, float] = {}
        self._dead_reply_queues: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._drain_scheduled = False
        self._stopping = False
        self._graceful_deadline = 0.0
        self._stopped = threading.Event()
        self._started = False

    def __repr__(self) -> str:
        return f"<RPCServer topic={self.topic} server={self.server} url={self.url.masked()}>"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, declare and consume; returns once the consumers exist.

        Raises BrokerUnreachableError or AccessRefusedError when the broker cannot be used, and
        ConfigError when a queue exists with flags that do not match the options.
        """
        if self._started:
            raise RuntimeError("this RPC server was already started")
        self._started = True
        try:
            self._setup()
        except BaseException:
            self._started = False
            raise
        self._event("connected")
        for number in range(self.executor_threads):
            worker = threading.Thread(
                target=self._worker, name=f"rpc-{self.topic}-worker-{number}", daemon=True
            )
            worker.start()
            self._workers.append(worker)
        self._io_thread = threading.Thread(
            target=self._io_main, name=f"rpc-{self.topic}-io", daemon=True
        )
        self._io_thread.start()
        LOG.info(
            "serving topic %s as %s on exchange %s at %s",
            self.topic,
            self.server,
            self.exchange,
            self.url.host_list(),
        )

    def stop(self, graceful_timeout: float = 30.0) -> None:
        """Stop consuming, finish the running calls (their replies go out) within
        ``graceful_timeout``, requeue requests not started, delete the fanout queue, close."""
        if not self._started or self._stopped.is_set():
            return
        self._graceful_deadline = time.monotonic() + graceful_timeout
        self._stopping = True
        self._wake(self._begin_stop)
        if self._io_thread is not None and self._io_thread is not threading.current_thread():
            self._io_thread.join(graceful_timeout + 10.0)
        for _ in self._workers:
            self._work.put(None)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped; False if ``timeout`` passed first."""
        return self._stopped.wait(timeout)

    def serve_forever(self) -> None:
        """start(), then block until stop() is called from elsewhere or Ctrl-C."""
        self.start()
        try:
            while not self._stopped.wait(1.0):
                pass
        except KeyboardInterrupt:
            LOG.info("interrupted; stopping")
            self.stop()
            raise

    def __enter__(self) -> RPCServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def queues(self) -> list[str]:
        """The queues this server consumes."""
        names = [] if self.fanout_only else [self.topic, f"{self.topic}.{self.server}"]
        return names + ([self.fanout_queue] if self.fanout_queue else [])

    # -- connection and declarations (I/O thread, or the caller of start()) ----------------

    def _setup(self) -> None:
        connection = self.transport.connect(rotate=self._host_offset)
        topology = self.topology
        try:
            if self._fanout_shape is None:
                self._fanout_shape = topology.fanout_queue(self.topic)
                self.fanout_queue = self._fanout_shape.name
            fanout = self._fanout_shape
            server_queue = f"{self.topic}.{self.server}"
            own = [] if self.fanout_only else [self.topic, server_queue]
            doing = f"declaring the queues of topic {self.topic!r}"
            with refusals.map_amqp_errors(doing):
                # Nothing is declared if anything that exists has another shape: a classic
                # queue where quorum services expect a quorum one would break them.
                shapes: list[Any] = [topology.fanout_exchange(self.topic), fanout]
                if own:
                    shapes[:0] = [topology.control_exchange(self.exchange)]
                    shapes[1:1] = [topology.topic_queue(name) for name in own]
                topology.check_existing(connection, shapes, doing=doing)
                channel = connection.channel()
                channel.add_on_return_callback(self._on_return)
                if own:
                    topology.declare_exchange(channel, topology.control_exchange(self.exchange))
                for name in own:
                    topology.declare_topic_queue(channel, self.exchange, name)
                topology.declare_fanout_queue(channel, self.topic, fanout)
                topology.set_qos(channel, self.prefetch)
                for name in own:
                    arguments = topology.consumer_arguments(topology.topic_queue(name))
                    channel.basic_consume(name, self._on_message, arguments=arguments)
                arguments = topology.consumer_arguments(fanout, self._stream_offset)
                tag = channel.basic_consume(fanout.name, self._on_message, arguments=arguments)
                self._stream_tag = tag if fanout.stream else None
        except BaseException:
            if connection.is_open:
                connection.close()
            raise
        self._connection, self._channel = connection, channel
        for job in self._jobs:
            if job.heartbeat_interval:
                self._schedule_heartbeat(job)
        unsent, self._unsent = self._unsent, []
        for reply_q, body in unsent:
            self._publish_reply(reply_q, body)
        self._drain_outbox()

    def _io_main(self) -> None:
        try:
            while True:
                try:
                    self._serve_connection()
                    return
                except _CONNECTION_ERRORS as exc:
                    self._lost_connection(exc)
                if not self._reconnect():
                    return
        except Exception:  # a bug: say so loudly rather than die in silence
            LOG.exception("RPC server I/O thread crashed")
        finally:
            self._close()
            self._stopped.set()

    def _serve_connection(self) -> None:
        connection = self._connection
        assert connection is not None
        while True:
            # Whatever was published before process_data_events has been written when it
            # returns (it polls until pika's output buffer is empty); replies published by the
            # callbacks it runs are written in the next pass.
            written = len(self._unflushed)
            if self._stopping:
                # (Replies still in pika's buffer go out ahead of the close.)
                if not self._jobs and not self._unsent:
                    return
                remaining = self._graceful_deadline - time.monotonic()
                if remaining <= 0:
                    LOG.warning(
                        "stopping with %d call(s) still running; their replies are lost",
                        len(self._jobs),
                    )
                    return
                connection.process_data_events(time_limit=remaining)
            else:
                connection.process_data_events(time_limit=None)
            del self._unflushed[:written]
            while self._taken:
                self._start_taken()

    def _lost_connection(self, exc: BaseException) -> None:
        LOG.warning(
            "lost the connection to %s: %s",
            self.url.host_list(),
            transport.mask_url_passwords(str(exc) or type(exc).__name__),
        )
        # Requests received but not started were never acked: the broker redelivers them.
        self._backlog.clear()
        self._stream_deliveries.clear()
        # Replies that may have died in pika's buffer go out again after reconnecting (a
        # caller drops a duplicate reply, never a missing one).
        self._unsent.extend(self._unflushed)
        self._unflushed = []
        self._forget_taken(self._taken)
        self._taken = []
        self._returned.clear()
        for job in self._jobs:
            job.timer = None  # timers die with their connection; _setup schedules new ones
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                connection.close()
        self._host_offset += 1
        self._event("disconnected")

    def _reconnect(self) -> bool:
        """Reconnect with oslo's backoff (interval, +backoff each try, up to interval_max)."""
        delay = self.options.rabbit_retry_interval
        while not self._stopping:
            # Sleep in small steps so a stop() (which cannot wake a dead connection) is prompt.
            end = time.monotonic() + delay
            while not self._stopping and time.monotonic() < end:
                time.sleep(min(0.1, max(0.0, end - time.monotonic())))
            if self._stopping:
                break
            try:
                self._setup()
            except Exception as exc:
                # Whatever failed (a mapped connection error, a handshake timeout, a channel
                # error while declaring), the service must keep trying, never lose its I/O
                # thread and linger with no consumers.
                self._host_offset += 1
                delay = min(
                    delay + self.options.rabbit_retry_backoff, self.options.rabbit_interval_max
                )
                LOG.warning(
                    "reconnecting to %s failed (%s); next try in %gs",
                    self.url.host_list(),
                    transport.mask_url_passwords(str(exc) or type(exc).__name__),
                    delay,
                )
                continue
            LOG.info("reconnected to the broker; consuming %s again", ", ".join(self.queues))
            self._event("reconnected")
            return True
        # Stopping without a connection: wait for running calls so their threads end cleanly.
        while self._jobs and time.monotonic() < self._graceful_deadline:
            time.sleep(0.05)
            self._drain_outbox()
        return False

    def _wake(self, callback: Callable[[], None]) -> None:
        connection = self._connection
        if connection is None:
            return  # the I/O thread picks the work up after reconnecting
        with contextlib.suppress(*_CONNECTION_ERRORS):
            connection.add_callback_threadsafe(callback)

    def _begin_stop(self) -> None:
        """Cancel the consumers and give back every request not started (I/O thread)."""
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        for consumer_tag in list(channel.consumer_tags):
            channel.basic_cancel(consumer_tag)
        while self._backlog:
            delivery_tag, _request = self._backlog.popleft()
            self._give_back(channel, delivery_tag, requeue=True)

    def _close(self) -> None:
        """Delete the fanout queue and close, on a clean stop (I/O thread)."""
        connection, channel = self._connection, self._channel
        self._connection = self._channel = None
        self._event("closed")
        if connection is None or not connection.is_open:
            return
        try:
            if (
                self._stopping
                and self._fanout_shape is not None
                and self.topology.delete_on_close(self._fanout_shape)
                and channel is not None
                and channel.is_open
            ):
                channel.queue_delete(self._fanout_shape.name)
            connection.close()
        except _CONNECTION_ERRORS as exc:
            LOG.debug("error while closing: %s", exc)

    # -- receiving (I/O thread) ----------------------------------------------------------------

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        if self._stream_tag is not None and method.consumer_tag == self._stream_tag:
            offset = (properties.headers or {}).get("x-stream-offset")
            if isinstance(offset, int):
                self._stream_offset = offset + 1
            self._stream_deliveries.add(method.delivery_tag)
        try:
            self._receive(channel, method.delivery_tag, properties, body)
        except _PIKA_ERRORS:
            raise
        except Exception as exc:  # never let one message kill the server
            LOG.exception("dropping a request that could not be handled")
            self._event("poison")
            self._report(exc, None)
            self._give_back(channel, method.delivery_tag)

    def _receive(self, channel: Any, delivery_tag: int, properties: Any, body: bytes) -> None:
        if properties.content_type != wire.CONTENT_TYPE:
            # kombu (oslo) cannot decode such a message either, and drops it without a reply.
            LOG.warning(
                "dropping a message with content type %r (expected %s)",
                properties.content_type,
                wire.CONTENT_TYPE,
            )
            self._event("rejected_content_type")
            self._give_back(channel, delivery_tag)
            return
        try:
            if len(body) > self.max_message_bytes:
                raise MessageTooLarge(
                    f"request of {len(body)} bytes exceeds the server's limit of "
                    f"{self.max_message_bytes} bytes"
                )
            # kombu decompresses whenever the header says so: so do we, whatever our setting.
            body = wire.decompress_body(body, properties.headers)
            if len(body) > self.max_message_bytes:
                raise MessageTooLarge(
                    f"request of {len(body)} bytes (decompressed) exceeds the server's limit "
                    f"of {self.max_message_bytes} bytes"
                )
            request = wire.parse_request(wire.decode_envelope(body))
        except wire.WireFormatError as exc:
            self._reject_bad(channel, delivery_tag, body, exc)
            return
        if request.unique_id is not None and request.unique_id in self._seen:
            LOG.info("ignoring duplicate request %s (%s)", request.unique_id, request.method)
            self._event("duplicate")
            channel.basic_ack(delivery_tag)
            self._stream_deliveries.discard(delivery_tag)
            return
        if len(self._jobs) < self.executor_threads and not self._stopping:
            self._start_job(channel, delivery_tag, request)
        else:
            self._backlog.append((delivery_tag, request))

    def _reject_bad(
        self, channel: Any, delivery_tag: int, body: bytes, exc: wire.WireFormatError
    ) -> None:
        """Reject a malformed request without requeue; answer it if it says where to."""
        msg_id, reply_q = _reply_address(body)
        LOG.warning("rejecting a malformed request: %s", exc)
        self._event("rejected_too_large" if isinstance(exc, MessageTooLarge) else "poison")
        self._report(exc, None)
        self._give_back(channel, delivery_tag)
        if msg_id and reply_q:
            failure = wire.serialize_failure(exc)
            self._publish_reply(
                reply_q,
                self.topology.encode(wire.encode_envelope(wire.build_reply(msg_id, None, failure))),
            )

    def _give_back(self, channel: Any, delivery_tag: int, *, requeue: bool = False) -> None:
        """Reject (or requeue) a request; one from a stream is acked: a stream keeps every
        message anyway, and refuses nack and reject."""
        if delivery_tag in self._stream_deliveries:
            self._stream_deliveries.discard(delivery_tag)
            channel.basic_ack(delivery_tag)
        elif requeue:
            channel.basic_nack(delivery_tag, requeue=True)
        else:
            channel.basic_reject(delivery_tag, requeue=False)

    def _start_job(self, channel: Any, delivery_tag: int, request: wire.Request) -> None:
        """Take a request on: it counts as running, and starts with the others taken in this
        pass of the I/O loop (_start_taken)."""
        if request.unique_id is not None:
            if request.unique_id in self._seen:
                LOG.info("ignoring duplicate request %s (%s)", request.unique_id, request.method)
                self._event("duplicate")
                channel.basic_ack(delivery_tag)
                self._stream_deliveries.discard(delivery_tag)
                return
            self._seen.append(request.unique_id)
        job = _Job(request)
        self._jobs.add(job)
        self._taken.append((delivery_tag, job))

    def _start_taken(self) -> None:
        """Ack the requests taken on, then hand them to the workers (I/O thread).

        One pass of the I/O loop may deliver several requests; one ack covers them all
        (``multiple``) when no request waits unacked in the backlog, since then every unacked
        delivery up to the last tag is one of them. The ack goes out before any of them runs:
        at-most-once, a crash from here on loses them rather than running them twice.
        """
        taken, self._taken = self._taken, []
        was_idle = len(self._jobs) == len(taken)
        channel = self._channel
        try:
            if self._backlog:
                for delivery_tag, _job in taken:
                    channel.basic_ack(delivery_tag)
            else:
                channel.basic_ack(max(tag for tag, _job in taken), multiple=True)
        except _CONNECTION_ERRORS:
            self._forget_taken(taken)
            raise
        for tag, job in taken:
            self._stream_deliveries.discard(tag)
            if job.heartbeat_interval:
                self._schedule_heartbeat(job)
            self._work.put(job)
        if was_idle and not self._stopping:
            self._await_quick_reply()

    def _await_quick_reply(self) -> None:
        """Wait up to QUICK_REPLY_WAIT for a reply on the outbox itself, then drain it.

        Most methods answer within a millisecond. Waiting for the reply here, rather than in
        the socket's poll, spares the worker its wake-up call (a pipe write) and this thread a
        poll round to read it: on an otherwise idle server, the hop back from the worker then
        costs about what a queue hand-off costs. A slow method only holds the socket for the
        wait, so it cannot hold up other requests (nor a stop, nor a heartbeat) for longer.
        Setting _drain_scheduled tells the workers no wake-up is needed; _drain_outbox clears
        it before it reads the queue, so a reply put after the wait is never left behind.
        """
        self._drain_scheduled = True
        try:
            first = self._outbox.get(timeout=QUICK_REPLY_WAIT)
        except queue.Empty:
            first = None
        self._drain_outbox(first)

    def _forget_taken(self, taken: list[tuple[int, _Job]]) -> None:
        """Requests taken on but not acked when the connection broke: the broker redelivers
        them, and the copies must run, not be dropped as duplicates."""
        for _tag, job in taken:
            self._jobs.discard(job)
            if job.request.unique_id is not None:
                with contextlib.suppress(ValueError):
                    self._seen.remove(job.request.unique_id)

    def _start_backlog(self) -> None:
        channel = self._channel
        while self._backlog and len(self._jobs) < self.executor_threads and not self._stopping:
            delivery_tag, request = self._backlog.popleft()
            self._start_job(channel, delivery_tag, request)

    # -- running (worker threads) ----------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            job = self._work.get()
            if job is None:
                return
            self._outbox.put((job, self._run(job.request)))
            # One wake-up serves every reply queued before the I/O thread gets to it: under
            # load this saves a socket write and an epoll round per request. _drain_outbox
            # clears the flag before it reads the queue, so no reply is left behind.
            if not self._drain_scheduled:
                self._drain_scheduled = True
                self._wake(self._drain_outbox)

    def _run(self, request: wire.Request) -> bytes | None:
        """Dispatch one request; the encoded reply, or None when nobody waits for one."""
        try:
            result = self.dispatcher.dispatch(request)
            failure = None
        except DispatchError as exc:
            LOG.warning("%s", exc)
            self._report(exc, request)
            result, failure = None, wire.serialize_failure(exc, module=exc.wire_module)
        except BadInputError as exc:
            # The caller's mistake (an unknown task name, say): one line, no traceback.
            LOG.info("%s refused: %s", request.method, exc)
            self._report(exc, request)
            result, failure = None, wire.serialize_failure(exc)
        except Exception as exc:
            LOG.exception("%s raised", request.method)
            self._report(exc, request)
            result, failure = None, wire.serialize_failure(exc)
        if not request.wants_reply:
            return None
        assert request.msg_id is not None
        encode = self.topology.encode
        try:
            return encode(wire.encode_envelope(wire.build_reply(request.msg_id, result, failure)))
        except (TypeError, ValueError) as exc:  # a result JSON cannot carry
            LOG.error("cannot encode the result of %s: %s", request.method, exc)
            failure = wire.serialize_failure(exc)
            return encode(wire.encode_envelope(wire.build_reply(request.msg_id, None, failure)))

    def _event(self, name: str) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(name)
        except Exception:
            LOG.exception("the on_event callback raised")

    def _report(self, exc: BaseException, request: wire.Request | None) -> None:
        if self.on_error is None:
            return
        try:
            self.on_error(exc, request)
        except Exception:
            LOG.exception("the on_error callback raised")

    # -- replying (I/O thread) ---------------------------------------------------------------------

    def _drain_outbox(self, first: tuple[_Job, bytes | None] | None = None) -> None:
        self._drain_scheduled = False
        while True:
            if first is not None:
                (job, body), first = first, None
            else:
                try:
                    job, body = self._outbox.get_nowait()
                except queue.Empty:
                    break
            job.finished = True
            self._jobs.discard(job)
            if job.timer is not None and self._connection is not None:
                self._connection.remove_timeout(job.timer)
            job.timer = None
            if body is not None:
                assert job.request.reply_q is not None
                self._publish_reply(job.request.reply_q, body)
        self._start_backlog()

    def _publish_reply(self, reply_q: str, body: bytes) -> None:
        expiry = self._dead_reply_queues.get(reply_q)
        if expiry is not None:
            if expiry > time.monotonic():
                LOG.debug("not replying to %s: it was gone a moment ago", reply_q)
                return
            del self._dead_reply_queues[reply_q]
        channel = self._channel
        if channel is None:
            self._unsent.append((reply_q, body))
            return
        try:
            # Queued, not flushed: the I/O loop's next pass writes every reply queued meanwhile
            # in one go.
            self._publish_nowait(channel, "", reply_q, body, self._props, mandatory=True)
        except _CONNECTION_ERRORS:
            self._unsent.append((reply_q, body))
            raise
        self._unflushed.append((reply_q, body))

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        """A reply came back: its queue is gone. Retry as oslo does, then give up on it."""
        reply_q = method.routing_key
        try:
            plain = wire.decompress_body(body, properties.headers)
            unique_id = str(wire.decode_envelope(plain).get("_unique_id"))
        except wire.WireFormatError:
            return
        now = time.monotonic()
        if len(self._returned) >= RETURNED_CACHE:
            del self._returned[next(iter(self._returned))]
        first = self._returned.setdefault(unique_id, now)
        if now - first >= self.options.kombu_missing_consumer_retry_timeout:
            del self._returned[unique_id]
            LOG.warning("giving up replying to %s: the queue does not exist", reply_q)
            self._dead_reply_queues[reply_q] = now + DEAD_REPLY_QUEUE_TTL
            while len(self._dead_reply_queues) > DEAD_REPLY_QUEUE_CACHE:
                self._dead_reply_queues.popitem(last=False)
            return
        LOG.debug("reply queue %s is missing; retrying", reply_q)
        assert self._connection is not None
        self._connection.call_later(
            REPLY_RETRY_INTERVAL, functools.partial(self._retry_reply, reply_q, body, unique_id)
        )

    def _retry_reply(self, reply_q: str, body: bytes, unique_id: str) -> None:
        if self._stopping and not self._jobs:
            self._returned.pop(unique_id, None)
            return
        self._publish_reply(reply_q, body)

    def _schedule_heartbeat(self, job: _Job) -> None:
        assert self._connection is not None and job.heartbeat_interval
        job.timer = self._connection.call_later(
            job.heartbeat_interval, functools.partial(self._heartbeat, job)
        )

    def _heartbeat(self, job: _Job) -> None:
        job.timer = None
        if job.finished or self._connection is None:
            return
        request = job.request
        assert request.msg_id is not None and request.reply_q is not None
        self._publish_reply(
            request.reply_q,
            self.topology.encode(wire.encode_envelope(wire.build_heartbeat(request.msg_id))),
        )
        self._schedule_heartbeat(job)


def _reply_address(body: bytes) -> tuple[str | None, str | None]:
    """``_msg_id`` and ``_reply_q`` of a message too broken to parse as a request, if any."""
    try:
        outer = json.loads(body)
        inner = outer
        if isinstance(outer, dict) and isinstance(outer.get(wire.MESSAGE_KEY), str):
            inner = json.loads(outer[wire.MESSAGE_KEY])
    except (ValueError, TypeError, RecursionError):
        return None, None
    if not isinstance(inner, dict):
        return None, None
    msg_id, reply_q = inner.get("_msg_id"), inner.get("_reply_q")
    if isinstance(msg_id, str) and isinstance(reply_q, str) and msg_id and reply_q:
        return msg_id, reply_q
    return None, None

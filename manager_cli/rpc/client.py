"""The RPC client: call, cast, fanout cast and broadcast call over oslo's wire protocol.

One client owns one connection of its Transport (``rpc.get_transport``: RabbitMQ through pika,
or the in-memory broker) and, once it has made a call, one reply queue that all its calls share
(as oslo's transport does). Requests go where an ``rpc.target.Target`` says. Calls are routed back by ``_msg_id``. Everything runs in
the calling thread: replies are read by ``process_data_events`` while a caller waits, so the hot
path has no thread hop, no per-call declare and no per-call channel.

A client is not meant to be shared between threads; a lock serialises the public methods so
sharing is safe, merely not concurrent.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from .. import families
from ..errors import (
    BadInputError,
    CallTimeoutError,
    ManagerCtlError,
    NoConsumerError,
    UnavailableError,
)
from . import as_transport, refusals, transport, wire
from .target import ROUTING_FIELDS, Target, resolve
from .transport_base import Transport

LOG = logging.getLogger(__name__)

# How long a positive consumer check is trusted. Long enough that a busy client pays one passive
# declare per many calls, short enough that a server that died a moment ago is noticed soon after
# (a dead oslo server's queue survives it, so mandatory publishing alone would not tell).
CONSUMER_CHECK_TTL = 2.0
# After this much idle time the connection may have been dropped (missed heartbeats): poll it once
# before publishing, so a dead socket is found and replaced instead of swallowing the request.
IDLE_PROBE_AFTER = 1.0
REPLY_DEDUP_SIZE = 16
# What a call_many request holds besides a target's fields (rpc.target.ROUTING_FIELDS).
_CALL_KEYS = frozenset({"context", "method", "target", "args", "timeout", "call_monitor_timeout"})

_CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ChannelClosed,
    OSError,
)


@dataclass
class BroadcastReply:
    """One server's answer to a broadcast call."""

    result: Any
    failure: BaseException | None
    elapsed: float


class _Call:
    """What a waiting call needs to know, and what its replies told it so far."""

    __slots__ = (
        "client",
        "msg_id",
        "target",
        "method",
        "timeout",
        "started",
        "deadline",
        "monitor_timeout",
        "last_heard",
        "done",
        "value",
        "error",
        "replies",
        "answered_at",
    )

    def __init__(
        self,
        client: RPCClient,
        msg_id: str,
        target: str,
        method: str,
        timeout: float,
        monitor_timeout: float | None = None,
    ) -> None:
        self.client = client
        self.msg_id = msg_id
        self.target = target
        self.method = method
        self.timeout = timeout
        self.started = self.last_heard = time.monotonic()
        self.deadline = self.started + timeout
        self.monitor_timeout = monitor_timeout or None
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.replies: list[BroadcastReply] | None = None
        self.answered_at: float | None = None

    def feed(self, message: Mapping[str, Any]) -> None:
        """Take one reply. As oslo's waiter: keep the last non-null result, stop on ending."""
        self.last_heard = time.monotonic()
        if message.get("ending", False):
            self.answered_at = self.last_heard
        error = self.failure(message)
        if error is not None:
            self.error = error
        elif message.get("result") is not None:
            self.value = message["result"]
        if message.get("ending", False):
            self.done = True

    def failure(self, message: Mapping[str, Any]) -> BaseException | None:
        """The remote exception a reply carries, rebuilt, if it carries one."""
        if not message.get("failure"):
            return None
        return wire.deserialize_failure(
            wire.parse_reply(message).failure or "", self.client.allowed_remote_exmods
        )

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done = True

    def wait_deadline(self) -> float:
        if self.monitor_timeout is None:
            return self.deadline
        return min(self.deadline, self.last_heard + self.monitor_timeout)

    def timeout_error(self) -> CallTimeoutError:
        now = time.monotonic()
        if self.monitor_timeout is not None and now < self.deadline:
            return CallTimeoutError(
                f"no reply or heartbeat for {self.method} from {self.target} within the "
                f"call monitor timeout of {self.monitor_timeout:g}s",
                hint="the server may have died while running the method",
            )
        return CallTimeoutError(
            f"no reply to {self.method} from {self.target} within {self.timeout:g}s",
            hint="the server may be busy or stuck; a retry may help, or raise --timeout",
        )


class _Broadcast(_Call):
    """A call published to a fanout exchange: every server answers, each with ``ending``."""

    __slots__ = ("expect", "stop_when")

    def __init__(
        self,
        *call: Any,
        expect: int | None,
        stop_when: Callable[[list[BroadcastReply]], bool] | None,
    ) -> None:
        """``call``: _Call's arguments up to ``timeout`` (a broadcast has no monitor)."""
        super().__init__(*call)
        self.replies = []
        self.expect = expect
        self.stop_when = stop_when

    def feed(self, message: Mapping[str, Any]) -> None:
        self.last_heard = time.monotonic()
        if not message.get("ending", False):
            return  # heartbeat, or the first half of an old two-part reply
        assert self.replies is not None
        self.replies.append(
            BroadcastReply(
                message.get("result"), self.failure(message), self.last_heard - self.started
            )
        )
        # Decided per reply, so that replies arriving in one read are not all taken.
        if (self.expect is not None and len(self.replies) >= self.expect) or (
            self.stop_when is not None and self.stop_when(list(self.replies))
        ):
            self.done = True


class PendingCall:
    """A call already sent; ``result()`` waits for its reply."""

    __slots__ = ("_call",)

    def __init__(self, call: _Call) -> None:
        self._call = call

    @property
    def msg_id(self) -> str:
        return self._call.msg_id

    def done(self) -> bool:
        return self._call.done

    @property
    def rtt(self) -> float | None:
        """Seconds from publishing the request to its final reply; None before it came."""
        call = self._call
        return None if call.answered_at is None else call.answered_at - call.started

    def result(self, timeout: float | None = None) -> Any:
        """The remote method's return value; raises what it raised, or CallTimeoutError.

        With ``timeout`` shorter than the call's own, CallTimeoutError leaves the call pending
        so ``result()`` may be asked again.
        """
        return self._call.client._result(self._call, timeout)


class RPCClient:
    """Call and cast to oslo.messaging RPC servers (or managerctl ones) over a Transport.

    ``transport`` is a Transport (``rpc.get_transport(settings)``) or a transport URL, with
    ``options`` then. Each method takes a ``target=`` (an ``rpc.target.Target``) or its fields
    as keywords (``topic=``, ``server=``, ``exchange=``, ``namespace=``, ``version=``).
    ``timeout`` is the default for calls (oslo's ``rpc_response_timeout``).
    ``allowed_remote_exmods`` lists the modules whose exceptions are rebuilt as themselves;
    others come back as RemoteError. ``check_consumers`` asks the broker, before a call or a
    cast to a server, whether anyone consumes the target queue (PROTOCOL.md §11).
    ``exclusive`` makes the reply queue exclusive and auto-delete, for one-shot processes: the
    broker removes it even if the process dies. The connection opens at the first use (or
    ``connect()``); ``close()`` deletes the reply queue and closes it.
    """

    def __init__(
        self,
        transport_url: Transport | str | transport.TransportURL,
        *,
        options: transport.RabbitOptions | None = None,
        timeout: float = 60.0,
        allowed_remote_exmods: Iterable[str] = (),
        check_consumers: bool = True,
        exclusive: bool = False,
        infer_exchange: bool = False,
    ) -> None:
        self.transport = as_transport(transport_url, options)
        self.url = self.transport.url
        self.options = self.transport.options
        self.topology = self.transport.topology
        self.timeout = float(timeout)
        self.allowed_remote_exmods = tuple(allowed_remote_exmods)
        self.check_consumers = check_consumers
        self.exclusive = exclusive
        # No exchange configured anywhere: use the one the topic's family sets in its code
        # (nova's services listen on "nova"), not oslo's default (families.py).
        self.infer_exchange = infer_exchange
        self._lock = threading.RLock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None  # calls, fanout and replies
        self._cast_channel: Any = None  # publisher confirms, for casts
        self._check_channel: Any = None  # passive declares; a 404 closes it
        self._reply_q: str | None = None
        self._consuming = False
        self._exchanges_ok: set[str] = set()  # control exchanges known to exist
        self._consumers_ok: dict[str, float] = {}
        self._properties: dict[str | None, pika.BasicProperties] = {}
        self._calls: dict[str, _Call] = {}
        self._seen: collections.deque[str] = collections.deque(maxlen=REPLY_DEDUP_SIZE)
        self._last_io = 0.0
        self._closed = False
        self._timed_out = False

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> RPCClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the reply queue this client declared and close the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connection, self._connection = self._connection, None
            if connection is None or not connection.is_open:
                return
            if self.exclusive and self._timed_out:
                # After a timeout the connection may be silent, and a graceful close waits for
                # the broker without a bound (until the AMQP heartbeat gives up, ~2 min). The
                # exclusive reply queue dies with the connection, so just drop the socket.
                self.transport.abort(connection)
                return
            try:
                # Cancel first: deleting a consumed queue makes the broker cancel the consumer,
                # and pika then warns about it when the channel closes. An exclusive queue
                # needs neither: the broker drops it with the connection.
                channel = self._channel
                if self._reply_q and not self.exclusive and channel is not None and channel.is_open:
                    for tag in list(channel.consumer_tags):
                        channel.basic_cancel(tag)
                    channel.queue_delete(self._reply_q)
            except _CONNECTION_ERRORS:
                LOG.debug("could not delete reply queue %s", self._reply_q)
            with contextlib.suppress(*_CONNECTION_ERRORS):
                connection.close()

    def connect(self) -> None:
        """Connect now rather than at the first call, to report a broker problem early."""
        with self._lock, refusals.map_amqp_errors("connecting"):
            self._ready()

    @property
    def reply_queue(self) -> str | None:
        """The name of this client's reply queue, once it has made a call."""
        return self._reply_q

    # -- connection --------------------------------------------------------------------------

    def _connect(self) -> None:
        if self._closed:
            raise UnavailableError("this RPC client is closed")
        if self._calls:
            # Whether a request sent on the lost connection got through cannot be known, and
            # a broker restart takes the reply queue with it: fail the calls now rather than
            # let them wait out their timeouts.
            for call in self._calls.values():
                call.fail(
                    UnavailableError(
                        f"the connection to the broker was lost while {call.method} was "
                        f"waiting for {call.target}; it may or may not have run"
                    )
                )
            self._calls.clear()
        # An exclusive reply queue died with the old connection; _open_channel declares it again
        # under the same name, so a request re-sent by _publish still names a live queue.
        self._connection = self.transport.connect()
        self._cast_channel = self._check_channel = None
        self._last_io = time.monotonic()
        self._open_channel()

    @property
    def _live_connection(self) -> pika.BlockingConnection:
        """The connection, once _connect() made it (every caller runs after it)."""
        assert self._connection is not None, "not connected"
        return self._connection

    def _open_channel(self) -> None:
        """The channel calls and replies use; consumes the reply queue if there is one."""
        channel = self._live_connection.channel()
        channel.add_on_return_callback(self._on_return)
        self._channel = channel
        self._consuming = False
        if self._reply_q is not None:
            try:
                self._start_replies()
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != refusals.RESOURCE_LOCKED:
                    raise
                # The broker still holds the old connection and its exclusive queue: take a
                # new name (calls in flight were failed already).
                self._reply_q = None
                self._open_channel()

    def _reset(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._cast_channel = self._check_channel = None
        if connection is not None and connection.is_open:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                connection.close()

    def _ready(self) -> None:
        """A usable connection, probed first if it sat idle long enough to have died."""
        connection = self._connection
        if connection is None or not connection.is_open or self._channel is None:
            self._reset()
            self._connect()
        elif not self._channel.is_open:
            # The broker closed it (a publish to a vanished exchange, say): replies too.
            self._open_channel()
        elif time.monotonic() - self._last_io > IDLE_PROBE_AFTER:
            try:
                connection.process_data_events(0)
            except _CONNECTION_ERRORS as exc:
                if refusals.is_refusal(exc):
                    raise
                LOG.info("connection to the broker was lost while idle; reconnecting")
                self._reset()
                self._connect()

    def _start_replies(self) -> None:
        """Declare (or re-declare) the reply queue and consume it, auto-ack."""
        shape = self.topology.reply_queue(self._reply_q, exclusive=self.exclusive)
        self._reply_q = self.topology.declare_queue(self._channel, shape)
        self._channel.basic_consume(
            self._reply_q,
            self._on_reply,
            auto_ack=True,
            arguments=self.topology.consumer_arguments(shape),
        )
        self._consuming = True

    def _props(self, timeout: float | None) -> pika.BasicProperties:
        expiration = None if timeout is None else str(int(timeout * 1000))
        props = self._properties.get(expiration)
        if props is None:
            props = self.topology.properties(expiration=expiration)
            self._properties[expiration] = props
        return props

    def exchange_for(self, topic: str, exchange: str | None = None) -> str:
        """The control exchange a request to ``topic`` goes to."""
        if exchange:
            return exchange
        if self.infer_exchange:
            return families.default_exchange(topic)
        return self.options.control_exchange

    def _check_exchange(self, exchange: str, topic: str) -> None:
        """Make sure the control exchange exists, without ever creating it.

        oslo clients declare it before publishing; managerctl does not: servers declare it for
        their bindings, so where it does not exist nobody can be listening, and a probe or a
        call must not leave an exchange behind on a shared broker (nor meet a 406 because the
        deployment declared it durable). A passive declare asks without creating.
        """
        if exchange in self._exchanges_ok:
            return
        try:
            self._passive_declare("exchange", exchange)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != refusals.NOT_FOUND:
                raise
            raise NoConsumerError(
                f"exchange {exchange!r} does not exist on this virtual host: no service of "
                f"topic {topic!r} listens there",
                hint=families.exchange_hint(topic, exchange),
            ) from None
        self._exchanges_ok.add(exchange)

    def _declare_fanout_exchange(self, topic: str) -> str:
        """``<topic>_fanout`` on the cast channel; one that exists with other flags is used as
        it is (publishing to it is harmless, as for the control exchange)."""
        shape = self.topology.fanout_exchange(topic)
        try:
            self.topology.declare_exchange(self._cast_channel, shape)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != refusals.PRECONDITION_FAILED:
                raise
            LOG.debug("exchange %s exists with other flags; using it as is", shape.name)
            self._open_cast_channel()
        return shape.name

    def _open_cast_channel(self) -> None:
        channel = self._live_connection.channel()
        channel.confirm_delivery()
        self._cast_channel = channel

    # -- consumer check (PROTOCOL.md §11) ----------------------------------------------------

    def _passive_declare(self, kind: str, name: str) -> Any:
        """A passive queue or exchange declare on the check channel (a 404 closes it).

        The connection may have died since the last use without anyone noticing (the broker
        closed it, the idle probe had not run yet): reconnect once and ask again, as
        ``_publish`` does, rather than fail the call with a raw connection error.
        """
        for attempt in (1, 2):
            channel = self._check_channel
            try:
                if channel is None or not channel.is_open:
                    channel = self._check_channel = self._live_connection.channel()
                if kind == "queue":
                    return channel.queue_declare(name, passive=True)
                return channel.exchange_declare(name, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                self._check_channel = None
                raise
            except _CONNECTION_ERRORS as exc:
                if attempt == 2 or refusals.is_refusal(exc):
                    raise
                LOG.info("connection to the broker lost before a check; reconnecting")
                self._reset()
                self._connect()
        raise AssertionError("unreachable")

    def queue_consumers(self, queue: str) -> int:
        """How many consumers ``queue`` has (0 when it does not exist); nothing is declared."""
        with self._lock, refusals.map_amqp_errors(f"looking up queue {queue!r}"):
            self._ready()
            try:
                frame = self._passive_declare("queue", queue)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == refusals.NOT_FOUND:
                    return 0
                raise
            self._last_io = time.monotonic()
            return int(frame.method.consumer_count)

    def _check_consumer(self, queue: str, exchange: str) -> None:
        now = time.monotonic()
        if self._consumers_ok.get(queue, 0.0) > now:
            return
        try:
            frame = self._passive_declare("queue", queue)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != refusals.NOT_FOUND:
                raise
            raise NoConsumerError(
                f"nobody consumes queue {queue!r} (exchange {exchange!r}): it does not exist",
                hint="is the service running, and are topic, host and control_exchange right?",
            ) from None
        if frame.method.consumer_count == 0:
            raise NoConsumerError(
                f"nobody consumes queue {queue!r} (exchange {exchange!r}): it has no consumer",
                hint="the service is down, or was stopped without cleaning up its queue",
            )
        self._consumers_ok[queue] = now + CONSUMER_CHECK_TTL

    # -- incoming --------------------------------------------------------------------------

    def _on_reply(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        try:
            message = wire.decode_envelope(wire.decompress_body(body, properties.headers))
        except wire.WireFormatError as exc:
            LOG.warning("dropping an unreadable reply: %s", exc)
            return
        unique_id = message.get("_unique_id")
        if unique_id is not None:
            if unique_id in self._seen:
                LOG.debug("dropping duplicate reply %s", unique_id)
                return
            self._seen.append(unique_id)
        call = self._calls.get(message.get("_msg_id"))  # type: ignore[arg-type]
        if call is None:
            LOG.debug("dropping a reply for no waiting call: %s", message.get("_msg_id"))
            return
        call.feed(message)
        if call.done:
            del self._calls[call.msg_id]

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        """The broker returned a mandatory request: no queue is bound to its routing key."""
        try:
            msg_id = wire.decode_envelope(wire.decompress_body(body, properties.headers)).get(
                "_msg_id"
            )
        except wire.WireFormatError:
            return
        call = self._calls.pop(msg_id, None)  # type: ignore[arg-type]
        if call is None:
            return
        if isinstance(call, _Broadcast):
            call.done = True  # nobody bound to the fanout exchange: nobody to hear from
            return
        consumed = self._consumers_ok.pop(method.routing_key, None) is not None
        if consumed:
            # The queue has consumers, yet the exchange has no binding for its name: the
            # service listens on another control exchange.
            topic = method.routing_key.split(".", 1)[0]
            error = NoConsumerError(
                f"queue {method.routing_key!r} has consumers, but exchange "
                f"{method.exchange!r} does not route to it: the service listens on another "
                "control exchange",
                hint=families.exchange_hint(topic, method.exchange),
            )
        else:
            error = NoConsumerError(
                f"nobody consumes {method.routing_key!r} on exchange {method.exchange!r}: "
                f"the broker returned the request ({method.reply_text})",
                hint="is the service running, and are topic, host and control_exchange right?",
            )
        call.fail(error)

    # -- waiting -----------------------------------------------------------------------------

    def _result(self, call: _Call, timeout: float | None) -> Any:
        with self._lock, refusals.map_amqp_errors(f"waiting for the reply to {call.method}"):
            limit = None if timeout is None else time.monotonic() + timeout
            self._wait(call, limit)
            if call.error is not None:
                raise call.error
            return call.value

    def _wait(self, call: _Call, limit: float | None = None) -> None:
        """Process events until ``call`` is done, its deadline passed, or ``limit`` passed."""
        while not call.done:
            deadline = call.wait_deadline()
            now = time.monotonic()
            if limit is not None and limit < deadline:
                if now >= limit:
                    raise CallTimeoutError(
                        f"no reply to {call.method} from {call.target} yet "
                        f"({now - call.started:.3g}s after the call)",
                        hint="the call is still pending; ask for its result again",
                    )
                deadline = limit
            elif now >= deadline:
                self._calls.pop(call.msg_id, None)
                call.fail(call.timeout_error())
                # The link itself may be what went silent: close() must not wait on it.
                self._timed_out = True
                return
            self._process_events(deadline - now, "waiting")
            self._check_channel_refused()
        self._last_io = time.monotonic()

    def _call_body(
        self,
        method: str,
        args: Mapping[str, Any] | None,
        context: Any,
        target: Target,
        msg_id: str | None,
        call_monitor_timeout: float | None = None,
    ) -> bytes:
        """The published body of a request: a call (``msg_id``) wants replies on this
        client's reply queue, a cast (None) nothing."""
        return self.topology.encode(
            wire.encode_envelope(
                wire.build_request(
                    method,
                    args,
                    context=context,
                    version=target.version,
                    namespace=target.namespace,
                    msg_id=msg_id,
                    reply_q=self._reply_q if msg_id else None,
                    call_monitor_timeout=call_monitor_timeout,
                )
            )
        )

    def _process_events(self, time_limit: float, doing: str) -> None:
        """Dispatch replies and returns for up to ``time_limit`` seconds; a lost connection is
        reconnected (the calls it carried fail at once, see ``_connect``), a refusal raised."""
        try:
            self._live_connection.process_data_events(time_limit=time_limit)
        except _CONNECTION_ERRORS as exc:
            if refusals.is_refusal(exc):
                raise
            LOG.warning("connection to the broker lost while %s; reconnecting", doing)
            self._reset()
            self._connect()

    def _check_channel_refused(self) -> None:
        """A publish the broker refused (403 on write, say) closes the channel later, without
        an exception in this thread: raise it now, rather than let the calls time out."""
        channel = self._channel
        if channel is None or not channel.is_closed:
            return
        if self._connection is None or not self._connection.is_open:
            return  # a lost connection: the next process_data_events raises, and we reconnect
        reason = self.transport.closing_reason(channel)
        if reason is not None and refusals.is_refusal(reason):
            self._calls.clear()
            raise reason
        self._open_channel()

    # -- sending ---------------------------------------------------------------------------

    def _publish(
        self, exchange: str, routing_key: str, body: bytes, props: Any, *, fanout: bool = False
    ) -> None:
        try:
            self._channel.basic_publish(exchange, routing_key, body, props, mandatory=True)
        except _CONNECTION_ERRORS as exc:
            if refusals.is_refusal(exc):
                raise
            # Nothing was sent, or the server will drop the copy by its _unique_id.
            LOG.info("connection to the broker lost while publishing; reconnecting")
            self._reset()
            self._connect()
            self._channel.basic_publish(exchange, routing_key, body, props, mandatory=True)

    def _send_call(
        self,
        context: Any,
        method: str,
        target: Target,
        args: Mapping[str, Any] | None,
        timeout: float | None,
        call_monitor_timeout: float | None,
    ) -> _Call:
        timeout = self.timeout if timeout is None else float(timeout)
        exchange = self.exchange_for(target.topic, target.exchange)
        routing_key = target.routing_key
        self._ready()
        if not self._consuming:
            self._start_replies()
        if self.check_consumers:
            self._check_consumer(routing_key, exchange)
        self._check_exchange(exchange, target.topic)
        msg_id = uuid.uuid4().hex
        body = self._call_body(method, args, context, target, msg_id, call_monitor_timeout)
        call = _Call(
            self,
            msg_id,
            f"{routing_key!r} (exchange {exchange!r})",
            method,
            timeout,
            call_monitor_timeout,
        )
        # Calls go out mandatory, without publisher confirms. pika's BlockingChannel can only
        # wait for each confirm before the next publish: one more round trip per call, which
        # cost from 5% to half of sequential throughput in our runs (bench/bench_rpc.py, row
        # "raw pika + confirms"; the less loaded the machine, the more it costs), and it would
        # turn call_many back into one call at a time. Confirms would buy little: a call
        # waits for its reply anyway, and the broker sends basic.return (see _on_return)
        # before any reply could come, so an unroutable request still fails at once; a nack
        # (a broker-internal failure) shows as a timeout. Casts, which wait for nothing else,
        # do use confirms.
        self._publish(exchange, routing_key, body, self._props(timeout))
        # Registered once sent (a reconnect in _publish fails the calls it finds waiting);
        # replies and returns are only dispatched later, by process_data_events.
        self._calls[msg_id] = call
        return call

    # -- public API ------------------------------------------------------------------------

    def call(self, context: Any, method: str, **arguments: Any) -> Any:
        """Call ``method`` on one server of the target's topic (or on its ``server``) and
        return its result; takes ``call_async``'s arguments.

        Raises what the remote method raised (builtins and ``allowed_remote_exmods``) or
        RemoteError; NoConsumerError when nobody consumes the target; CallTimeoutError.
        """
        with self._lock:
            return self.call_async(context, method, **arguments).result()

    def call_async(
        self,
        context: Any,
        method: str,
        *,
        target: Target | None = None,
        args: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        call_monitor_timeout: float | None = None,
        **routing: str | None,
    ) -> PendingCall:
        """Send a call and return at once; ``PendingCall.result()`` waits for the reply.

        ``target`` (or its fields as keywords: ``topic=``, ``server=``, ...) says where;
        ``timeout`` defaults to the client's; ``call_monitor_timeout`` asks the server for
        heartbeats, and gives up when they stop.
        """
        target = resolve(target, routing, "a call")
        with self._lock, refusals.map_amqp_errors(f"calling {method}"):
            return PendingCall(
                self._send_call(context, method, target, args, timeout, call_monitor_timeout)
            )

    def call_many(self, requests: Iterable[Mapping[str, Any]]) -> list[Any]:
        """Send every call first, then gather: results, or the exception each call raised.

        Each request is a dict of ``call()``'s arguments (``context``, ``method``, ``target``
        or ``topic``, ``server``, ...).
        """
        prepared = []
        for request in requests:
            routing = {key: value for key, value in request.items() if key not in _CALL_KEYS}
            try:
                if "method" not in request:
                    raise BadInputError("no method")
                target = resolve(request.get("target"), routing, "a call_many request")
            except (TypeError, BadInputError):
                raise BadInputError(
                    "each call_many request needs method and a target (or topic) and takes "
                    f"only {', '.join(sorted(_CALL_KEYS | ROUTING_FIELDS))}"
                ) from None
            prepared.append((request, target))
        with self._lock, refusals.map_amqp_errors("sending calls"):
            sent: list[_Call | BaseException] = []
            for request, target in prepared:
                try:
                    sent.append(
                        self._send_call(
                            request.get("context"),
                            request["method"],
                            target,
                            request.get("args"),
                            request.get("timeout"),
                            request.get("call_monitor_timeout"),
                        )
                    )
                except ManagerCtlError as exc:
                    sent.append(exc)
            results: list[Any] = []
            for call in sent:
                if isinstance(call, BaseException):
                    results.append(call)
                    continue
                self._wait(call)
                results.append(call.error if call.error is not None else call.value)
            return results

    def cast(
        self,
        context: Any,
        method: str,
        *,
        target: Target | None = None,
        fanout: bool | None = None,
        args: Mapping[str, Any] | None = None,
        require_listener: bool = False,
        **routing: str | None,
    ) -> None:
        """Send ``method`` without waiting for a result; returns once the broker has it.

        A cast to a server is checked for a consumer first. A fanout cast (``fanout=True`` or
        a fanout target) reaches every server of the topic, and nobody listening is not an
        error (as in oslo) unless ``require_listener``: then it goes out mandatory and
        NoConsumerError says that no queue was bound to the fanout exchange.
        """
        target = resolve(target, routing, "a cast")
        if fanout is not None and fanout != target.fanout:
            target = target.replace(fanout=fanout)
        topic = target.topic
        body = self._call_body(method, args, context, target, None)
        with self._lock, refusals.map_amqp_errors(f"casting {method} to {topic}"):
            self._ready()
            if self._cast_channel is None or not self._cast_channel.is_open:
                self._open_cast_channel()
            props = self._props(None)
            if target.fanout:
                # Always declared, as oslo does: the exchange vanishes with its last queue.
                name = self._declare_fanout_exchange(topic)
                try:
                    self._cast_channel.basic_publish(
                        name, "", body, props, mandatory=require_listener
                    )
                except pika.exceptions.UnroutableError:
                    raise NoConsumerError(
                        f"nobody listens on {name}: no queue is bound to it",
                        hint=f"is any service of topic {topic!r} running?",
                    ) from None
                self._last_io = time.monotonic()
                return
            exchange = self.exchange_for(topic, target.exchange)
            routing_key = target.routing_key
            if target.server and self.check_consumers:
                self._check_consumer(routing_key, exchange)
            self._check_exchange(exchange, topic)
            try:
                self._cast_channel.basic_publish(exchange, routing_key, body, props, mandatory=True)
            except pika.exceptions.UnroutableError:
                raise NoConsumerError(
                    f"nobody consumes {routing_key!r} on exchange {exchange!r}: "
                    "no queue is bound to it",
                    hint="is the service running, and are topic, host and control_exchange right?",
                ) from None
            except pika.exceptions.NackError:
                raise UnavailableError(
                    f"the broker refused the cast of {method} to {routing_key!r}"
                ) from None
            self._last_io = time.monotonic()

    def broadcast_call(
        self,
        context: Any,
        method: str,
        *,
        target: Target | None = None,
        args: Mapping[str, Any] | None = None,
        timeout: float,
        expect: int | None = None,
        stop_when: Callable[[list[BroadcastReply]], bool] | None = None,
        **routing: str | None,
    ) -> list[BroadcastReply]:
        """Call ``method`` on every server of the target's topic (fanout) and gather their
        replies.

        Gathers until ``expect`` replies came, ``stop_when(replies)`` is true, or ``timeout``
        passed; never raises for missing replies: the caller compares what it got with what
        it expected. Returns at once, empty, when nobody serves the topic.
        """
        target = resolve(target, routing, "a broadcast call")
        topic = target.topic
        if expect is not None and expect <= 0:
            return []
        with self._lock, refusals.map_amqp_errors(f"broadcasting {method} to {topic}"):
            self._ready()
            if not self._consuming:
                self._start_replies()
            exchange = transport.fanout_exchange_name(topic)
            channel = self._check_channel
            if channel is None or not channel.is_open:
                channel = self._check_channel = self._live_connection.channel()
            try:
                channel.exchange_declare(exchange, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                self._check_channel = None
                if exc.reply_code == refusals.NOT_FOUND:
                    return []
                raise
            msg_id = uuid.uuid4().hex
            body = self._call_body(method, args, context, target, msg_id)
            call = _Broadcast(
                self,
                msg_id,
                f"fanout exchange {exchange!r}",
                method,
                timeout,
                expect=expect,
                stop_when=stop_when,
            )
            self._publish(exchange, "", body, self._props(timeout), fanout=True)
            self._calls[msg_id] = call
            try:
                while not call.done:
                    remaining = call.deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._process_events(remaining, "gathering a broadcast call")
            finally:
                self._calls.pop(msg_id, None)
                self._last_io = time.monotonic()
            assert call.replies is not None  # a broadcast's list, from the start
            return list(call.replies)

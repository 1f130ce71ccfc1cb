"""An in-memory Transport: a small AMQP 0-9-1 broker inside the process, for unit tests.

It behaves as RabbitMQ does where managerctl's client and server rely on it, and says so by
raising what pika raises (tests/integration/test_transport_contract.py runs the same checks
against it and against a real RabbitMQ node):

- exchanges (direct, topic with ``*``/``#``, fanout; the default exchange routes to the queue
  of the routing key's name); an auto-delete exchange goes with its last binding;
- a mandatory publish that reaches no queue comes back: to the channel's return callbacks at the
  next ``process_data_events``, or as ``UnroutableError`` on a channel in confirm mode;
- a publish to a missing exchange closes the channel (404), at once in confirm mode;
- a passive declare of what does not exist, a bind or consume of a missing queue: 404; a
  declare that differs from what exists: 406 naming the argument, as RabbitMQ words it; a queue
  exclusive to another connection: 405;
- ``queue_declare`` reports consumer and message counts; server-named queues (``amq.gen-...``);
- exclusive queues die with their connection, auto-delete ones with their last consumer;
- per-consumer prefetch (``basic_qos(global_qos=False)``; global: per channel), round robin
  among a queue's consumers; ack (``multiple`` too), nack and reject with or without requeue;
  what a closed channel or connection had not acked goes back to its queue, redelivered;
- a request's ``expiration`` (ms) drops it unread once passed.

Deliveries, returns, ``call_later`` timers and ``add_callback_threadsafe`` callbacks run in the
thread that calls ``process_data_events``, as with pika's BlockingConnection.

What it leaves out: streams (``x-stream-offset``), quorum delivery limits, queue TTLs
(``x-expires``), alarms, users and permissions. ``MemoryBroker.drop_connections()`` simulates
lost links, ``restart()`` a broker restart (non-durable entities gone) and
``unavailable = True`` a broker nobody can reach.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pika.exceptions

from ..errors import BrokerUnreachableError
from . import refusals
from .transport import BrokerHost, RabbitOptions, TransportURL, parse_transport_url
from .transport_base import Transport

NO_ROUTE = 312
_brokers: dict[str, MemoryBroker] = {}
_brokers_lock = threading.Lock()


def get_broker(name: str = "default") -> MemoryBroker:
    """The in-memory broker ``name`` of this process (created on first use)."""
    with _brokers_lock:
        broker = _brokers.get(name)
        if broker is None:
            broker = _brokers[name] = MemoryBroker(name)
        return broker


def _flag(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


@dataclass(eq=False)
class _Message:
    exchange: str
    routing_key: str
    body: bytes
    properties: Any
    expires_at: float | None
    redelivered: bool = False


@dataclass(eq=False)
class _Exchange:
    name: str
    type: str
    durable: bool
    auto_delete: bool
    bindings: list[tuple[str, str]] = field(default_factory=list)  # (queue, routing key)


@dataclass(eq=False)
class _Queue:
    name: str
    durable: bool
    auto_delete: bool
    owner: MemoryConnection | None  # exclusive to this connection
    arguments: dict[str, Any]
    messages: collections.deque[_Message] = field(default_factory=collections.deque)
    consumers: list[_Consumer] = field(default_factory=list)
    had_consumer: bool = False
    turn: int = 0


@dataclass(eq=False)
class _Consumer:
    channel: MemoryChannel
    tag: str
    queue: _Queue
    callback: Callable[..., Any]
    auto_ack: bool
    prefetch: int
    unacked: int = 0


def _topic_match(pattern: list[str], words: list[str]) -> bool:
    """A topic binding key against a routing key: ``*`` one word, ``#`` zero or more."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_topic_match(rest, words[skip:]) for skip in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _topic_match(rest, words[1:])


class MemoryBroker:
    """Exchanges, queues and connections of one in-memory virtual host."""

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.unavailable = False  # connect() then fails as an unreachable broker does
        self._lock = threading.RLock()
        self._exchanges: dict[str, _Exchange] = {}
        self._queues: dict[str, _Queue] = {}
        self._connections: set[MemoryConnection] = set()
        self._predeclare()

    def _predeclare(self) -> None:
        self._exchanges = {
            "": _Exchange("", "direct", True, False),
            "amq.direct": _Exchange("amq.direct", "direct", True, False),
            "amq.topic": _Exchange("amq.topic", "topic", True, False),
            "amq.fanout": _Exchange("amq.fanout", "fanout", True, False),
        }

    def __repr__(self) -> str:
        return f"<MemoryBroker {self.name}>"

    # -- what tests look at ------------------------------------------------------------------

    def queue_names(self) -> list[str]:
        with self._lock:
            return sorted(self._queues)

    def exchange_names(self) -> list[str]:
        with self._lock:
            return sorted(name for name in self._exchanges if name and not name.startswith("amq."))

    def consumer_count(self, queue: str) -> int:
        with self._lock:
            found = self._queues.get(queue)
            return len(found.consumers) if found else 0

    def message_count(self, queue: str) -> int:
        with self._lock:
            found = self._queues.get(queue)
            return len(found.messages) if found else 0

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    # -- what tests do to it ---------------------------------------------------------------

    def connect(self) -> MemoryConnection:
        if self.unavailable:
            raise BrokerUnreachableError(
                f"cannot reach the message broker at memory://{self.name} (unavailable)",
                hint="the test made the in-memory broker unavailable",
            )
        connection = MemoryConnection(self)
        with self._lock:
            self._connections.add(connection)
        return connection

    def drop_connections(self) -> None:
        """Every connection is lost, as when the network drops: what they had not acked goes
        back to its queue, exclusive queues go; the next use of each raises StreamLostError."""
        with self._lock:
            for connection in list(self._connections):
                self._release(connection, lost=True)

    def restart(self) -> None:
        """A broker restart: the connections are lost, non-durable queues and exchanges gone."""
        with self._lock:
            self.drop_connections()
            for name in [n for n, q in self._queues.items() if not q.durable]:
                self._delete_queue(self._queues[name])
            for name in [n for n, e in self._exchanges.items() if not e.durable]:
                del self._exchanges[name]
            for exchange in self._exchanges.values():
                exchange.bindings = [b for b in exchange.bindings if b[0] in self._queues]

    def reset(self) -> None:
        """Forget everything (between tests)."""
        with self._lock:
            for connection in list(self._connections):
                self._release(connection, lost=True)
            self._queues.clear()
            self._predeclare()

    # -- the broker's work (under the lock) ----------------------------------------------------

    def _release(self, connection: MemoryConnection, *, lost: bool) -> None:
        self._connections.discard(connection)
        for channel in list(connection._channels.values()):
            self._close_channel(channel, None)
        for queue in [q for q in self._queues.values() if q.owner is connection]:
            self._delete_queue(queue)
        connection._closed(lost)

    def _close_channel(self, channel: MemoryChannel, reason: BaseException | None) -> None:
        if not channel._open:
            return
        channel._open = False
        channel._closing_reason = reason
        channel.connection._channels.pop(channel.channel_number, None)
        for consumer in list(channel._consumers.values()):
            self._cancel(consumer)
        touched = set()
        for _tag, (_consumer, queue, message) in sorted(channel._unacked.items(), reverse=True):
            message.redelivered = True
            if queue.name in self._queues:
                queue.messages.appendleft(message)
                touched.add(queue.name)
        channel._unacked.clear()
        for name in touched:
            if name in self._queues:
                self._dispatch(self._queues[name])

    def _cancel(self, consumer: _Consumer) -> None:
        consumer.channel._consumers.pop(consumer.tag, None)
        queue = consumer.queue
        if consumer in queue.consumers:
            queue.consumers.remove(consumer)
        if queue.auto_delete and queue.had_consumer and not queue.consumers:
            self._delete_queue(queue)

    def _delete_queue(self, queue: _Queue) -> int:
        if self._queues.get(queue.name) is not queue:
            return 0
        del self._queues[queue.name]
        for consumer in list(queue.consumers):
            consumer.channel._consumers.pop(consumer.tag, None)
        queue.consumers.clear()
        for exchange in list(self._exchanges.values()):
            before = len(exchange.bindings)
            exchange.bindings = [b for b in exchange.bindings if b[0] != queue.name]
            if exchange.auto_delete and before and not exchange.bindings:
                del self._exchanges[exchange.name]
        return len(queue.messages)

    def _route(self, exchange: _Exchange, routing_key: str) -> list[_Queue]:
        if exchange.name == "":
            queue = self._queues.get(routing_key)
            return [queue] if queue is not None else []
        names: list[str] = []
        for queue_name, key in exchange.bindings:
            if exchange.type == "fanout":
                matched = True
            elif exchange.type == "topic":
                matched = _topic_match(key.split("."), routing_key.split("."))
            elif exchange.type == "direct":
                matched = key == routing_key
            else:
                matched = False
            if matched and queue_name not in names:
                names.append(queue_name)
        return [self._queues[name] for name in names if name in self._queues]

    def _dispatch(self, queue: _Queue) -> None:
        """Hand the queue's messages to consumers with room, in turn."""
        while queue.messages and queue.consumers:
            consumer = self._next_consumer(queue)
            if consumer is None:
                return
            message = queue.messages.popleft()
            if message.expires_at is not None and message.expires_at <= time.monotonic():
                continue
            consumer.channel._deliver(consumer, queue, message)

    @staticmethod
    def _next_consumer(queue: _Queue) -> _Consumer | None:
        count = len(queue.consumers)
        for step in range(count):
            consumer = queue.consumers[(queue.turn + step) % count]
            channel = consumer.channel
            if not consumer.auto_ack:
                if consumer.prefetch and consumer.unacked >= consumer.prefetch:
                    continue
                if channel._global_prefetch and len(channel._unacked) >= channel._global_prefetch:
                    continue
            queue.turn = (queue.turn + step + 1) % count
            return consumer
        return None


class MemoryConnection:
    """A connection to a :class:`MemoryBroker`, used as pika's BlockingConnection is."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self._channels: dict[int, MemoryChannel] = {}
        self._numbers = itertools.count(1)
        self._events: collections.deque[Callable[[], None]] = collections.deque()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        self._cancelled: set[int] = set()
        self._wakeup = threading.Condition(threading.Lock())
        self._open = True
        self._lost = False
        self._lost_raised = False

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def is_closed(self) -> bool:
        return not self._open

    def drop(self) -> None:
        """Lose this connection, as when its socket dies (see MemoryBroker.drop_connections)."""
        with self.broker._lock:
            if self._open:
                self.broker._release(self, lost=True)

    def _closed(self, lost: bool) -> None:
        with self._wakeup:
            self._open = False
            self._lost = lost
            self._events.clear()
            self._timers.clear()
            self._wakeup.notify_all()

    def _check(self) -> None:
        if self._open:
            return
        if self._lost and not self._lost_raised:
            self._lost_raised = True
            raise pika.exceptions.StreamLostError("Stream connection lost: in-memory drop")
        raise pika.exceptions.ConnectionWrongStateError("Connection is closed.")

    def _post(self, event: Callable[[], None]) -> None:
        with self._wakeup:
            if self._open:
                self._events.append(event)
                self._wakeup.notify_all()

    # -- pika's BlockingConnection API ---------------------------------------------------------

    def channel(self, channel_number: int | None = None) -> MemoryChannel:
        self._check()
        channel = MemoryChannel(self, channel_number or next(self._numbers))
        self._channels[channel.channel_number] = channel
        return channel

    def close(self, reply_code: int = 200, reply_text: str = "Normal shutdown") -> None:
        if not self._open:
            raise pika.exceptions.ConnectionWrongStateError("Connection is closed.")
        with self.broker._lock:
            self.broker._release(self, lost=False)

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        self._check()
        self._post(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> int:
        self._check()
        timer_id = next(self._timer_ids)
        with self._wakeup:
            heapq.heappush(self._timers, (time.monotonic() + delay, timer_id, callback))
            self._wakeup.notify_all()
        return timer_id

    def remove_timeout(self, timeout_id: int) -> None:
        with self._wakeup:
            self._cancelled.add(timeout_id)

    def sleep(self, duration: float) -> None:
        deadline = time.monotonic() + duration
        while (remaining := deadline - time.monotonic()) > 0:
            self.process_data_events(remaining)

    def _ready(self, now: float) -> list[Callable[[], None]]:
        ready = list(self._events)
        self._events.clear()
        while self._timers and self._timers[0][0] <= now:
            _due, timer_id, callback = heapq.heappop(self._timers)
            if timer_id in self._cancelled:
                self._cancelled.discard(timer_id)
            else:
                ready.append(callback)
        return ready

    def process_data_events(self, time_limit: float | None = 0) -> None:
        """Run what is ready (deliveries, returns, callbacks, due timers); wait for something
        up to ``time_limit`` seconds (None: until something comes)."""
        self._check()
        deadline = None if time_limit is None else time.monotonic() + time_limit
        with self._wakeup:
            while True:
                now = time.monotonic()
                ready = self._ready(now)
                if ready or not self._open:
                    break
                wait = None if deadline is None else deadline - now
                if self._timers:
                    until_timer = self._timers[0][0] - now
                    wait = until_timer if wait is None else min(wait, until_timer)
                if wait is not None and wait <= 0:
                    if deadline is not None and now >= deadline:
                        break
                    continue
                self._wakeup.wait(wait)
        for event in ready:
            event()
        self._check()


class MemoryChannel:
    """A channel of a :class:`MemoryConnection`, used as pika's BlockingChannel is."""

    def __init__(self, connection: MemoryConnection, number: int) -> None:
        self.connection = connection
        self.channel_number = number
        self._broker = connection.broker
        self._open = True
        self._closing_reason: BaseException | None = None
        self._confirm = False
        self._return_callbacks: list[Callable[..., Any]] = []
        self._consumers: dict[str, _Consumer] = {}
        self._unacked: dict[int, tuple[_Consumer, _Queue, _Message]] = {}
        self._tags = itertools.count(1)
        self._prefetch = 0
        self._global_prefetch = 0

    def __repr__(self) -> str:
        return f"<MemoryChannel {self.channel_number} of {self._broker.name}>"

    @property
    def is_open(self) -> bool:
        return self._open and self.connection._open

    @property
    def is_closed(self) -> bool:
        return not self.is_open

    @property
    def consumer_tags(self) -> list[str]:
        return list(self._consumers)

    def _check(self) -> None:
        self.connection._check()
        if not self._open:
            raise pika.exceptions.ChannelWrongStateError("Channel is closed.")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[MemoryBroker]:
        """The broker, locked, for an operation on this channel (which must be open)."""
        with self._broker._lock:
            self._check()
            yield self._broker

    def _refuse(self, code: int, text: str) -> pika.exceptions.ChannelClosedByBroker:
        """Close this channel as the broker does on an error; the exception to raise."""
        error = pika.exceptions.ChannelClosedByBroker(code, text)
        self._broker._close_channel(self, error)
        return error

    def _not_found(self, kind: str, name: str) -> pika.exceptions.ChannelClosedByBroker:
        return self._refuse(refusals.NOT_FOUND, f"NOT_FOUND - no {kind} '{name}' in vhost '/'")

    def _inequivalent(
        self, arg: str, kind: str, name: str, received: Any, current: Any
    ) -> pika.exceptions.ChannelClosedByBroker:
        return self._refuse(
            refusals.PRECONDITION_FAILED,
            f"PRECONDITION_FAILED - inequivalent arg '{arg}' for {kind} '{name}' in vhost '/': "
            f"received '{_flag(received)}' but current is '{_flag(current)}'",
        )

    def _queue(self, name: str) -> _Queue:
        queue = self._broker._queues.get(name)
        if queue is None:
            raise self._not_found("queue", name)
        if queue.owner is not None and queue.owner is not self.connection:
            raise self._refuse(
                refusals.RESOURCE_LOCKED,
                f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}' "
                "in vhost '/'. It could be originally declared on another connection or the "
                "exclusive property value does not match that of the original declaration.",
            )
        return queue

    # -- declarations --------------------------------------------------------------------------

    def exchange_declare(
        self,
        exchange: str,
        exchange_type: str = "direct",
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> Any:
        with self._locked():
            existing = self._broker._exchanges.get(exchange)
            if passive:
                if existing is None:
                    raise self._not_found("exchange", exchange)
            elif existing is None:
                if exchange == "" or exchange.startswith("amq."):
                    raise self._refuse(
                        refusals.ACCESS_REFUSED,
                        f"ACCESS_REFUSED - exchange name '{exchange}' contains reserved prefix "
                        "'amq.*'",
                    )
                self._broker._exchanges[exchange] = _Exchange(
                    exchange, exchange_type, durable, auto_delete
                )
            else:
                for arg, received, current in (
                    ("type", exchange_type, existing.type),
                    ("durable", durable, existing.durable),
                    ("auto_delete", auto_delete, existing.auto_delete),
                ):
                    if received != current:
                        raise self._inequivalent(arg, "exchange", exchange, received, current)
        return SimpleNamespace(method=SimpleNamespace(NAME="Exchange.DeclareOk"))

    def exchange_delete(self, exchange: str | None = None, if_unused: bool = False) -> Any:
        with self._locked():
            if exchange and not exchange.startswith("amq."):
                self._broker._exchanges.pop(exchange, None)
        return SimpleNamespace(method=SimpleNamespace(NAME="Exchange.DeleteOk"))

    def queue_declare(
        self,
        queue: str,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> Any:
        arguments = dict(arguments or {})
        with self._locked() as broker:
            if passive:
                found = self._queue(queue)
            else:
                name = queue or f"amq.gen-{uuid.uuid4().hex[:22]}"
                existing = broker._queues.get(name)
                if existing is None:
                    found = broker._queues[name] = _Queue(
                        name,
                        durable,
                        auto_delete,
                        self.connection if exclusive else None,
                        arguments,
                    )
                else:
                    found = self._queue(name)  # exclusive to another connection: 405
                    for arg, received, current in (
                        ("durable", durable, found.durable),
                        ("exclusive", exclusive, found.owner is not None),
                        ("auto_delete", auto_delete, found.auto_delete),
                    ):
                        if received != current:
                            raise self._inequivalent(arg, "queue", name, received, current)
                    for arg in sorted(set(arguments) | set(found.arguments)):
                        if arguments.get(arg) != found.arguments.get(arg):
                            raise self._inequivalent(
                                arg, "queue", name, arguments.get(arg), found.arguments.get(arg)
                            )
            return SimpleNamespace(
                method=SimpleNamespace(
                    queue=found.name,
                    message_count=len(found.messages),
                    consumer_count=len(found.consumers),
                )
            )

    def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> Any:
        with self._locked() as broker:
            found = self._queue(queue)
            target = broker._exchanges.get(exchange)
            if target is None:
                raise self._not_found("exchange", exchange)
            if exchange == "":
                raise self._refuse(
                    refusals.ACCESS_REFUSED,
                    "ACCESS_REFUSED - operation not permitted on the default exchange",
                )
            binding = (found.name, queue if routing_key is None else routing_key)
            if binding not in target.bindings:
                target.bindings.append(binding)
        return SimpleNamespace(method=SimpleNamespace(NAME="Queue.BindOk"))

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False) -> Any:
        with self._locked() as broker:
            found = broker._queues.get(queue)
            count = 0
            if found is not None:
                self._queue(queue)
                count = broker._delete_queue(found)
        return SimpleNamespace(method=SimpleNamespace(message_count=count))

    # -- consuming ----------------------------------------------------------------------------

    def basic_qos(
        self, prefetch_size: int = 0, prefetch_count: int = 0, global_qos: bool = False
    ) -> None:
        with self._locked():
            if global_qos:
                self._global_prefetch = prefetch_count
            else:
                self._prefetch = prefetch_count

    def basic_consume(
        self,
        queue: str,
        on_message_callback: Callable[..., Any],
        auto_ack: bool = False,
        exclusive: bool = False,
        consumer_tag: str | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> str:
        with self._locked() as broker:
            found = self._queue(queue)
            tag = consumer_tag or f"ctag{self.channel_number}.{uuid.uuid4().hex}"
            consumer = _Consumer(self, tag, found, on_message_callback, auto_ack, self._prefetch)
            self._consumers[tag] = consumer
            found.consumers.append(consumer)
            found.had_consumer = True
            broker._dispatch(found)
            return tag

    def basic_cancel(self, consumer_tag: str) -> list[Any]:
        with self._locked():
            consumer = self._consumers.get(consumer_tag)
            if consumer is not None:
                self._broker._cancel(consumer)
        return []

    def _deliver(self, consumer: _Consumer, queue: _Queue, message: _Message) -> None:
        """(Broker lock held.) Give ``message`` to ``consumer``, run at its next poll."""
        tag = next(self._tags)
        if not consumer.auto_ack:
            self._unacked[tag] = (consumer, queue, message)
            consumer.unacked += 1
        method = SimpleNamespace(
            consumer_tag=consumer.tag,
            delivery_tag=tag,
            redelivered=message.redelivered,
            exchange=message.exchange,
            routing_key=message.routing_key,
        )

        def run() -> None:
            if self._open and (consumer.auto_ack or tag in self._unacked):
                consumer.callback(self, method, message.properties, message.body)

        self.connection._post(run)

    def _settle(self, delivery_tag: int, multiple: bool, requeue: bool | None) -> None:
        """Ack (``requeue`` None), or reject with or without requeue, one or many deliveries."""
        with self._locked() as broker:
            if multiple:
                tags = [tag for tag in self._unacked if tag <= delivery_tag or delivery_tag == 0]
            elif delivery_tag in self._unacked:
                tags = [delivery_tag]
            else:
                # RabbitMQ closes the channel: PRECONDITION_FAILED - unknown delivery tag.
                self._refuse(
                    refusals.PRECONDITION_FAILED,
                    f"PRECONDITION_FAILED - unknown delivery tag {delivery_tag}",
                )
                return
            touched: dict[str, _Queue] = {}
            for tag in sorted(tags, reverse=True):
                consumer, queue, message = self._unacked.pop(tag)
                consumer.unacked -= 1
                touched[queue.name] = queue
                if requeue:
                    message.redelivered = True
                    if broker._queues.get(queue.name) is queue:
                        queue.messages.appendleft(message)
            for queue in touched.values():
                if broker._queues.get(queue.name) is queue:
                    broker._dispatch(queue)

    def basic_ack(self, delivery_tag: int = 0, multiple: bool = False) -> None:
        self._settle(delivery_tag, multiple, None)

    def basic_nack(
        self, delivery_tag: int = 0, multiple: bool = False, requeue: bool = True
    ) -> None:
        self._settle(delivery_tag, multiple, requeue)

    def basic_reject(self, delivery_tag: int = 0, requeue: bool = True) -> None:
        self._settle(delivery_tag, False, requeue)

    # -- publishing ---------------------------------------------------------------------------

    def confirm_delivery(self) -> None:
        self._check()
        self._confirm = True

    def add_on_return_callback(self, callback: Callable[..., Any]) -> None:
        self._return_callbacks.append(callback)

    def basic_publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Any = None,
        mandatory: bool = False,
    ) -> None:
        with self._locked() as broker:
            target = broker._exchanges.get(exchange)
            if target is None:
                error = pika.exceptions.ChannelClosedByBroker(
                    refusals.NOT_FOUND, f"NOT_FOUND - no exchange '{exchange}' in vhost '/'"
                )
                if self._confirm:
                    broker._close_channel(self, error)
                    raise error
                # Without confirms the broker's close comes later, as it does over a socket.
                self.connection._post(lambda: broker_close(broker, self, error))
                return
            queues = broker._route(target, routing_key)
            expiration = getattr(properties, "expiration", None)
            expires_at = time.monotonic() + int(expiration) / 1000.0 if expiration else None
            for queue in queues:
                queue.messages.append(_Message(exchange, routing_key, body, properties, expires_at))
                broker._dispatch(queue)
            if queues or not mandatory:
                return
            if self._confirm:
                returned = SimpleNamespace(
                    method=_return_method(exchange, routing_key), properties=properties, body=body
                )
                raise pika.exceptions.UnroutableError([returned])
            callbacks = list(self._return_callbacks)

        method = _return_method(exchange, routing_key)

        def returned_message() -> None:
            for callback in callbacks:
                callback(self, method, properties, body)

        self.connection._post(returned_message)

    def close(self, reply_code: int = 0, reply_text: str = "Normal shutdown") -> None:
        with self._broker._lock:
            if not self._open:
                raise pika.exceptions.ChannelWrongStateError("Channel is closed.")
            self._broker._close_channel(self, None)


def broker_close(broker: MemoryBroker, channel: MemoryChannel, error: BaseException) -> None:
    with broker._lock:
        broker._close_channel(channel, error)


def _return_method(exchange: str, routing_key: str) -> Any:
    return SimpleNamespace(
        reply_code=NO_ROUTE, reply_text="NO_ROUTE", exchange=exchange, routing_key=routing_key
    )


class MemoryTransport(Transport):
    """A Transport on a :class:`MemoryBroker` (by default the process's broker named by the
    URL: ``memory://NAME``; ``memory://`` is ``default``)."""

    scheme = "memory"

    def __init__(
        self,
        url: TransportURL | None = None,
        options: RabbitOptions | None = None,
        *,
        broker: MemoryBroker | None = None,
    ) -> None:
        if url is None:
            name = broker.name if broker is not None else "default"
            url = TransportURL(scheme="memory", hosts=(BrokerHost(name, 0),))
        super().__init__(url, options)
        self.broker = broker if broker is not None else get_broker(url.hosts[0].hostname)

    @classmethod
    def from_url(cls, url: str, options: RabbitOptions | None = None) -> MemoryTransport:
        """``memory://[NAME][/][?option=value...]``: the options as in a rabbit URL."""
        rest = url.strip().split("://", 1)[1]
        name, _, tail = rest.partition("/")
        query = tail.partition("?")[2] if "?" in tail else name.partition("?")[2]
        name = name.partition("?")[0] or "default"
        parsed = parse_transport_url("rabbit://" + name + "/" + (f"?{query}" if query else ""))
        return cls(
            TransportURL(
                scheme="memory",
                hosts=(BrokerHost(name, 0),),
                query=parsed.query,
                options=parsed.options,
            ),
            options,
        )

    def __repr__(self) -> str:
        return f"<MemoryTransport memory://{self.broker.name}>"

    def connect(self, *, rotate: int = 0) -> MemoryConnection:
        return self.broker.connect()

    def abort(self, connection: Any) -> None:
        connection.drop()

"""Watch what is sent to a topic: copies of its requests through a queue of the tap's own.

A :class:`Tap` binds one exclusive, auto-delete queue ``managerctl-tap-<uuid>`` to the control
exchange (key ``<topic>.#``, which matches ``<topic>`` itself and every ``<topic>.<host>``, dotted
host names too; or ``<topic>.<host>``) and to the topic's fanout exchange. The broker routes a copy
of every request there besides the service's own queues, so the services receive exactly what
they did before: the tap never consumes, declares or binds a queue of theirs, and being exclusive
its queue is allowed in every topology (quorum deployments, RabbitMQ 4, which refuses transient
non-exclusive classic queues).

Bounded. The queue has ``x-max-length`` with the default overflow (drop-head): a tap that falls
behind loses its oldest copies, never grows broker memory past the limit. The broker does not
count what it drops, so the queue dead-letters every dropped copy (``x-dead-letter-exchange``
"" with the routing key of a second exclusive queue, ``...-dropped``), which nobody consumes: the
tap purges it every second and adds up what each purge removed (no delivery, no ack per dropped
copy). That second queue is bounded too (``DROPPED_QUEUE_FACTOR`` times the limit): should it fill
between two purges (a long pause), the count becomes a lower bound and says so.

Cheap per copy. What a copy costs the tap is mostly the wake-up, the read and the frame parsing
around it, not the decoding, so copies are taken in batches: the tap sleeps ``BATCH_SECONDS``
between drains of its connection and acknowledges each batch at once (a multiple ack), so that
one wake-up, a few large reads and one ack serve every copy that arrived meanwhile. A copy is
shown at most that much later.

Records are plain dicts (see :class:`CopyDecoder`), secrets already masked (manager_cli.redact).
"""

from __future__ import annotations

import collections
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions

from .. import redact
from ..errors import BadInputError, UnavailableError
from . import transport, wire

DEFAULT_QUEUE_LIMIT = 10_000
DROPPED_QUEUE_FACTOR = 10
# Copies in flight to the tap (unacked) are beyond the queue's limit and never dropped, so they
# are kept to a tenth of it: a paused tap holds at most 1.1 x queue_limit copies on the broker.
MAX_PREFETCH = 1000
# The pause between two drains: long enough that a busy topic's copies come many per wake-up,
# short enough that nobody watching notices.
BATCH_SECONDS = 0.05
# A drain that took this many copies is not followed by the pause: they come faster than the
# tap takes them, so they gather anyway (a burst is taken at full speed).
BATCH_COPIES = 100
# How often the dropped copies are counted (a purge) and the fanout exchange looked for.
CHECK_SECONDS = 1.0
QUEUE_PREFIX = "managerctl-tap-"

_PIKA_ERRORS = (pika.exceptions.AMQPError, OSError)


def _first(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value not in (None, ""):
            return value
    return None


_USER_KEYS = ("user_id", "user", "user_name")
_PROJECT_KEYS = ("project_id", "project", "tenant", "project_name")
# The same keys as the request message has them (``_context_user_id``...).
_PACKED_USER_KEYS = tuple(wire.CONTEXT_PREFIX + key for key in _USER_KEYS)
_PACKED_PROJECT_KEYS = tuple(wire.CONTEXT_PREFIX + key for key in _PROJECT_KEYS)


def caller_of(context: Mapping[str, Any], *, packed: bool = False) -> str:
    """``user/project`` of a request context, as oslo.context and nova name them (``packed``:
    the request message itself, its context keys prefixed)."""
    users, projects = (
        (_PACKED_USER_KEYS, _PACKED_PROJECT_KEYS) if packed else (_USER_KEYS, _PROJECT_KEYS)
    )
    return f"{_first(context, users) or '-'}/{_first(context, projects) or '-'}"


class CopyDecoder:
    """Turns the copies of ``topic``'s requests into records: time, kind, target, method,
    version, namespace, request id, caller, bytes, and the masked args (None without
    ``with_args``: statistics need none); ``error`` set for a copy that cannot be decoded."""

    def __init__(self, topic: str, *, with_args: bool = True) -> None:
        self.with_args = with_args
        self._fanout_exchange = transport.fanout_exchange_name(topic)

    def decode(
        self, exchange: str, routing_key: str, properties: Any, body: bytes, when: float
    ) -> dict[str, Any]:
        fanout = exchange == self._fanout_exchange
        headers = properties.headers
        compression = headers.get(wire.COMPRESSION_HEADER) if headers else None
        record: dict[str, Any] = {
            "time": when,
            "kind": "fanout" if fanout else "cast",
            "target": exchange if fanout else routing_key,
            "method": None,
            "version": None,
            "namespace": None,
            "request_id": None,
            "caller": None,
            "bytes": len(body),
            "msg_id": None,
            "args": None,
            "compression": str(compression) if compression else None,
            "error": None,
        }
        try:
            if properties.content_type != wire.CONTENT_TYPE:
                raise wire.WireFormatError(
                    f"content type {properties.content_type!r} (oslo servers drop it)"
                )
            plain = wire.decompress_body(body, headers) if compression else body
            message = wire.decode_envelope(plain)
            if not self.with_args:
                return self._brief(record, message, fanout)
            request = wire.parse_request(message)
        except wire.WireFormatError as exc:
            record["error"] = redact.mask_url_passwords(str(exc))
            return record
        if request.wants_reply and not fanout:
            record["kind"] = "call"
        context = request.context
        record.update(
            method=request.method,
            version=request.version,
            namespace=request.namespace,
            request_id=_first(context, ("request_id", "global_request_id")),
            caller=caller_of(context),
            msg_id=request.msg_id,
            args=redact.mask_secrets(request.args),
        )
        return record

    @staticmethod
    def _brief(record: dict[str, Any], message: Mapping[str, Any], fanout: bool) -> dict[str, Any]:
        """What statistics show (method, caller, kind), read straight from the message: no
        context or request is built, the arguments are never looked at."""
        method = message.get("method")
        if not isinstance(method, str) or not method:
            raise wire.WireFormatError("request has no method name")
        record["method"] = method
        record["caller"] = caller_of(message, packed=True)
        msg_id, reply_q = message.get("_msg_id"), message.get("_reply_q")
        if (
            not fanout
            and isinstance(msg_id, str)
            and msg_id
            and isinstance(reply_q, str)
            and reply_q
        ):
            record["kind"] = "call"  # as Request.wants_reply
        return record


@dataclass
class TapFilter:
    """Which decoded copies to keep: by method name (any of), none means all."""

    methods: frozenset[str] = frozenset()

    def keep(self, record: Mapping[str, Any]) -> bool:
        return not self.methods or record.get("method") in self.methods


@dataclass
class TapCounters:
    """What the tap saw: copies received, kept by the filter, undecodable, dropped."""

    received: int = 0
    kept: int = 0
    undecodable: int = 0
    dropped: int = 0
    dropped_exact: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "kept": self.kept,
            "undecodable": self.undecodable,
            "dropped": self.dropped,
            "dropped_exact": self.dropped_exact,
        }


def _check_name(what: str, value: str) -> None:
    if not value or any(c in value for c in "*#") or value != value.strip():
        raise BadInputError(
            f"{what} {value!r} cannot be tapped", hint=f"give a literal {what}, without * or #"
        )


@dataclass
class Tap:
    """Copies of the requests sent to ``topic`` (see the module docstring).

    ``host`` narrows the topic bindings to ``<topic>.<host>`` (its fanouts still arrive);
    ``fanout_only`` binds the fanout exchange alone. ``on_record(record)`` gets each kept record.
    """

    transport_url: Any
    topic: str
    options: transport.RabbitOptions | None = None
    exchange: str | None = None
    host: str | None = None
    fanout_only: bool = False
    queue_limit: int = DEFAULT_QUEUE_LIMIT
    filter: TapFilter = field(default_factory=TapFilter)
    on_record: Callable[[dict[str, Any]], None] | None = None
    with_args: bool = True
    counters: TapCounters = field(default_factory=TapCounters)
    queue: str | None = None
    bindings: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_name("topic", self.topic)
        if self.host is not None:
            _check_name("host", self.host)
        if self.queue_limit < 1:
            raise BadInputError("the tap's queue limit must be at least 1")
        from . import as_transport

        # A Transport (rpc.get_transport(settings)), or a URL with its options.
        self.transport = as_transport(self.transport_url, self.options)
        self.url, self.options = self.transport.url, self.transport.options
        self.exchange = self.exchange or self.options.control_exchange
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._dropped_queue: str | None = None
        self._dropped_limit = self.queue_limit * DROPPED_QUEUE_FACTOR
        self._last_tag = 0
        self._unacked = 0
        self._delivered = 0  # every delivery, counted or not (a drain ends when none came)
        self.prefetch = max(1, min(MAX_PREFETCH, self.queue_limit // 10))
        self._max_kept: int | None = None
        self._ending = False
        self._ack_every = max(1, self.prefetch // 2)
        self._batch_copies = min(BATCH_COPIES, self._ack_every)
        self._fanout_exchange = transport.fanout_exchange_name(self.topic)
        self.decoder = CopyDecoder(self.topic, with_args=self.with_args)

    # -- set-up --------------------------------------------------------------------------------

    def __enter__(self) -> Tap:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _exchange_exists(self, name: str) -> bool:
        """A passive declare on a channel of its own (a 404 closes the channel)."""
        assert self._connection is not None
        channel = self._connection.channel()
        try:
            channel.exchange_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return False
            raise
        with contextlib.suppress(*_PIKA_ERRORS):
            channel.close()
        return True

    def start(self) -> None:
        """Connect, declare the tap's queues, bind them, start consuming.

        Raises UnavailableError when the control exchange does not exist (nobody ever served
        the topic on it), and the transport's errors when the broker cannot be used.
        """
        self._connection = self.transport.connect()
        try:
            self._declare()
        except BaseException:
            self.close()
            raise

    def _declare(self) -> None:
        assert self._connection is not None and self.options is not None
        exchange = self.exchange  # set by __post_init__, never None from there on
        assert exchange is not None
        bind_topic = not self.fanout_only
        if bind_topic and not self._exchange_exists(exchange):
            from ..families import exchange_hint

            raise UnavailableError(
                f"exchange {exchange!r} does not exist, so nothing is sent to topic "
                f"{self.topic!r} through it",
                hint=exchange_hint(self.topic, exchange),
            )
        channel = self._connection.channel()
        base = QUEUE_PREFIX + uuid.uuid4().hex
        self.queue, self._dropped_queue = base, base + "-dropped"
        channel.queue_declare(
            self._dropped_queue,
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": self._dropped_limit},
        )
        channel.queue_declare(
            self.queue,
            exclusive=True,
            auto_delete=True,
            arguments={
                "x-max-length": self.queue_limit,
                # drop-head is the default overflow; said explicitly so nobody wonders.
                "x-overflow": "drop-head",
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self._dropped_queue,
            },
        )
        if bind_topic:
            # One binding: '#' matches zero or more words, so TOPIC.# routes TOPIC, TOPIC.HOST and
            # TOPIC.host.example.com alike (a second one for TOPIC would only add routing work).
            key = f"{self.topic}.{self.host}" if self.host else f"{self.topic}.#"
            channel.queue_bind(self.queue, exchange, routing_key=key)
            self.bindings.append((exchange, key))
        self._channel = channel
        # The fanout exchange is auto-delete and exists only while a server of the topic runs
        # (or after a client's fanout cast). The tap never creates it: its flags depend on the
        # deployment (durable with rabbit_transient_quorum_queue), and one declared otherwise
        # would make the services' own declarations fail. Bound now if it exists, else as soon
        # as it appears (run() looks every second).
        self._bind_fanout()
        # Per consumer (RabbitMQ applies basic.qos to the consumers started after it): the
        # copies in flight stay few, and quorum-style global QoS is never asked for.
        channel.basic_qos(prefetch_count=self.prefetch)
        channel.basic_consume(self.queue, self._on_copy)

    @property
    def fanout_bound(self) -> bool:
        return (self._fanout_exchange, self.topic) in self.bindings

    def _bind_fanout(self) -> None:
        if self.fanout_bound or not self._exchange_exists(self._fanout_exchange):
            return
        try:
            self._channel.queue_bind(self.queue, self._fanout_exchange, routing_key=self.topic)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            raise UnavailableError(  # it went away between the look and the bind
                f"{self._fanout_exchange} went away while the tap bound to it",
                hint="run the tap again",
            ) from None
        self.bindings.append((self._fanout_exchange, self.topic))

    # -- receiving -----------------------------------------------------------------------------

    def _ack(self, delivery_tag: int) -> None:
        self._last_tag = delivery_tag
        self._unacked += 1
        if self._unacked >= self._ack_every:
            self._flush_acks()

    def _flush_acks(self) -> None:
        if self._unacked and self._channel is not None and self._channel.is_open:
            self._channel.basic_ack(self._last_tag, multiple=True)
        self._unacked = 0

    def _on_copy(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._delivered += 1
        self._ack(method.delivery_tag)  # acks go out by the batch (multiple): see _flush_acks
        if self._ending or (self._max_kept is not None and self.counters.kept >= self._max_kept):
            return  # after the end (--count reached, or closing)
        self.counters.received += 1
        record = self.decoder.decode(
            method.exchange, method.routing_key, properties, body, time.time()
        )
        if record["error"] is not None:
            self.counters.undecodable += 1
        if not self.filter.keep(record):
            return
        self.counters.kept += 1
        if self.on_record is not None:
            self.on_record(record)

    def _drain(self) -> int:
        """Take every copy the connection holds now (a few large reads), ack them at once;
        the number of copies taken."""
        assert self._connection is not None
        before = self._delivered
        while True:
            seen = self._delivered
            self._connection.process_data_events(time_limit=0)
            if self._delivered == seen or (
                self._max_kept is not None and self.counters.kept >= self._max_kept
            ):
                break
        self._flush_acks()
        return self._delivered - before

    def _count_dropped(self) -> int:
        """Add up the dropped copies dead-lettered since the last look (a purge removes and
        counts them: nothing is delivered). A purge that found the queue full may have missed
        some: the count becomes "at least"."""
        assert self._channel is not None and self._dropped_queue is not None
        removed = self._channel.queue_purge(self._dropped_queue).method.message_count
        self.counters.dropped += removed
        if removed >= self._dropped_limit:
            self.counters.dropped_exact = False
        return removed

    def run(
        self,
        *,
        count: int | None = None,
        duration: float | None = None,
        tick: Callable[[], None] | None = None,
        tick_interval: float = 0.5,
    ) -> TapCounters:
        """Consume until ``count`` records were kept or ``duration`` seconds passed (or forever);
        ``tick()`` runs after a batch, at most every ``tick_interval`` seconds, and that often
        on a quiet topic too (a live view refreshes there; 0: lines flushed after each batch)."""
        assert self._connection is not None, "start() first"
        deadline = None if duration is None else time.monotonic() + duration
        self._max_kept = count
        now = time.monotonic()
        next_check, next_tick = now + CHECK_SECONDS, now
        try:
            while count is None or self.counters.kept < count:
                taken = self._drain()
                now = time.monotonic()
                if now >= next_check:
                    self._count_dropped()
                    self._bind_fanout()
                    next_check = now + CHECK_SECONDS
                if tick is not None and now >= next_tick:
                    tick()
                    next_tick = now + tick_interval
                if deadline is not None and now >= deadline:
                    break
                if taken >= self._batch_copies:
                    continue  # a burst: more are coming, or held back by the prefetch window
                if taken == 0:
                    # A quiet topic: sleep in the poll until a copy comes (or it is time to
                    # look, tick or end), not in wake-ups every BATCH_SECONDS.
                    # (A tick_interval of 0 means "after each batch": nothing to wait for.)
                    ends = [next_check, deadline if deadline is not None else next_check]
                    if tick is not None and tick_interval > 0:
                        ends.append(next_tick)
                    wait = min(ends) - now
                    self._connection.process_data_events(time_limit=max(0.0, wait))
                    now = time.monotonic()
                # Let the copies that follow this one gather, to be taken in one drain.
                # (time.sleep, not connection.sleep: that would take each copy as it comes.)
                pause = BATCH_SECONDS if deadline is None else min(BATCH_SECONDS, deadline - now)
                time.sleep(max(0.0, pause))
        except _PIKA_ERRORS as exc:
            raise UnavailableError(
                f"lost the broker while tapping {self.topic}: "
                f"{redact.mask_url_passwords(str(exc) or type(exc).__name__)}",
                hint="check that RabbitMQ is running",
            ) from None
        return self.counters

    def count_dropped(self, timeout: float = 2.0) -> None:
        """Count the dropped copies not counted yet (the last moments, or a pause), within
        ``timeout``: copies the tap still receives meanwhile are taken and not shown."""
        connection, channel = self._connection, self._channel
        if connection is None or channel is None or not channel.is_open:
            return
        deadline = time.monotonic() + timeout
        with contextlib.suppress(*_PIKA_ERRORS):
            # Cancelling the consumer instead would requeue the copies in flight into a full
            # queue, and the broker would drop, and count, as many.
            self._ending = True
            while True:
                # A copy dropped just now may still be on its way to the dropped queue.
                time.sleep(BATCH_SECONDS)
                self._drain()
                if self._count_dropped() == 0:
                    break
                if time.monotonic() >= deadline:
                    self.counters.dropped_exact = False
                    break

    def close(self) -> None:
        """Count the last dropped copies, delete the tap's queues and close (the broker would
        delete them anyway: they are exclusive)."""
        self.count_dropped()
        connection, channel = self._connection, self._channel
        self._connection = self._channel = None
        if connection is None or not connection.is_open:
            return
        with contextlib.suppress(*_PIKA_ERRORS):
            if channel is not None and channel.is_open:
                for tag in list(channel.consumer_tags):
                    channel.basic_cancel(tag)
                for name in (self.queue, self._dropped_queue):
                    if name:
                        channel.queue_delete(name)
        with contextlib.suppress(*_PIKA_ERRORS):
            connection.close()


# ---------------------------------------------------------------------------
# Statistics per method (pure)


class TapStats:
    """Requests per second, bytes and distinct callers per method, for ``tap --stats``.

    ``rate`` in :meth:`rows` is over the last ``window`` seconds (what a live view shows);
    ``totals()`` gives the whole run's average.
    """

    def __init__(self, window: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self._clock = clock
        self.started = clock()
        self._methods: dict[str, dict[str, Any]] = {}
        # (whole second, requests per method in it), for the sliding rate
        self._recent: collections.deque[tuple[int, collections.Counter[str]]] = collections.deque()

    def add(self, record: Mapping[str, Any]) -> None:
        method = record.get("method") or "(undecodable)"
        entry = self._methods.get(method)
        if entry is None:
            entry = self._methods[method] = {
                "requests": 0,
                "bytes": 0,
                "callers": set(),
                "kinds": collections.Counter(),
            }
        entry["requests"] += 1
        entry["bytes"] += int(record.get("bytes") or 0)
        if record.get("caller"):
            entry["callers"].add(record["caller"])
        entry["kinds"][record.get("kind")] += 1
        second = int(self._clock())
        if not self._recent or self._recent[-1][0] != second:
            self._recent.append((second, collections.Counter()))
        self._recent[-1][1][method] += 1

    def _window_counts(self) -> collections.Counter[str]:
        horizon = self._clock() - self.window
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        counts: collections.Counter[str] = collections.Counter()
        for _, per_method in self._recent:
            counts.update(per_method)
        return counts

    def rows(self) -> list[dict[str, Any]]:
        """One row per method, highest recent rate first."""
        elapsed = max(self._clock() - self.started, 1e-9)
        span = min(self.window, elapsed)
        recent = self._window_counts()
        rows = [
            {
                "method": method,
                "rate": round(recent.get(method, 0) / span, 1),
                "requests": entry["requests"],
                "bytes": entry["bytes"],
                "callers": len(entry["callers"]),
                "calls": entry["kinds"]["call"],
                "casts": entry["kinds"]["cast"],
                "fanouts": entry["kinds"]["fanout"],
            }
            for method, entry in self._methods.items()
        ]
        rows.sort(key=lambda row: (-row["rate"], -row["requests"], row["method"]))
        return rows

    def totals(self, counters: TapCounters | None = None) -> dict[str, Any]:
        """The whole run: per method (rate = average over the run), and the tap's counters."""
        elapsed = max(self._clock() - self.started, 1e-9)
        methods = []
        for row in self.rows():
            row = dict(row)
            row["rate"] = round(row["requests"] / elapsed, 3)
            methods.append(row)
        methods.sort(key=lambda row: (-row["rate"], row["method"]))
        result: dict[str, Any] = {
            "seconds": round(elapsed, 3),
            "requests": sum(row["requests"] for row in methods),
            "bytes": sum(row["bytes"] for row in methods),
            "methods": methods,
        }
        if counters is not None:
            result.update(counters.as_dict())
        return result

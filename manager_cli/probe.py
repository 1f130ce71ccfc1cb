"""Liveness probes: does the RPC service of a topic (on a host) take requests and answer them?

Any answer proves life: a result, or a remote failure (``UnsupportedVersion`` from an oslo
service without the base API, ``NoSuchMethod`` from one without ``rpc_ping_enabled``, or whatever
else the service raised), because only a service that took the request off its queue and ran it
through its dispatcher can send one. The rest is told apart without waiting where possible:

* ``down``: nobody consumes ``<topic>.<host>`` (no such queue, or a queue without a consumer,
  since a dead oslo server's queue outlives it). A passive declare finds this before anything is
  sent, so it takes one round trip to the broker, not the timeout (PROTOCOL.md section 11).
* ``stuck``: a consumer exists but no answer came within the timeout: every dispatcher thread is
  busy or blocked, or the service lost its broker connection without the broker noticing yet.

This is the library side: it takes an ``RPCClient`` and returns records; ``cli/probe.py``
renders them and turns the verdicts into exit codes. No click, no rich, and no pika at import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    BadInputError,
    CallTimeoutError,
    ManagerCtlError,
    NoConsumerError,
    PartialResultError,
    RemoteError,
    UnavailableError,
)

ALIVE = "alive"
DOWN = "down"
STUCK = "stuck"

PING = "ping"
OSLO_PING = "oslo_rpc_server_ping"
METHODS = (PING, OSLO_PING)

# The nova-style base API (manager.BASE_API_NAMESPACE; not imported from there because that
# module's imports would cost the probe's start-up some 50 ms).
BASE_API_NAMESPACE = "baseapi"
# Version 1.0 is the most compatible request: an endpoint at any 1.x accepts it, so nova's
# BaseAPI (1.1), managerctl's (1.1) and an older or leaner 1.0 base API all return a real result,
# where asking 1.1 would get UnsupportedVersion from a 1.0 one (alive all the same, but less
# telling). An oslo service without the namespace answers UnsupportedVersion whatever we ask.
PING_VERSION = "1.0"

# Long enough to ride out a garbage-collection pause, a burst of work ahead of the probe in the
# dispatcher pool, or a slow broker, so that one busy moment does not restart a healthy pod; short
# enough that a probe every 30-60 s never overlaps the last one and fits the usual check budgets
# (Kubernetes timeoutSeconds, NRPE's 10-20 s), and the request's AMQP expiration (the same value)
# keeps probes of a stuck service from piling up in its queue.
DEFAULT_TIMEOUT = 10.0


@dataclass
class ProbeResult:
    """The verdict on one service, or one answer to a probe of every service of a topic."""

    host: str | None
    topic: str
    verdict: str  # alive, down or stuck
    rtt_ms: float | None  # request published -> answer received; None without an answer
    answer: str | None  # "result", or the class of the remote failure; None without an answer
    exchange: str | None = None
    method: str = PING
    service: str | None = None  # what a base API ping says the service is
    detail: str | None = None  # the remote failure's message, or why there was no answer
    error: ManagerCtlError | None = field(default=None, repr=False, compare=False)

    @property
    def alive(self) -> bool:
        return self.verdict == ALIVE

    def record(self) -> dict[str, Any]:
        """The fields to show, as a plain dict (JSON keys are these names; keep them stable)."""
        return {name: getattr(self, name) for name in RECORD_FIELDS}


# The keys of ProbeResult.record(), in order.
RECORD_FIELDS = (
    "host",
    "topic",
    "verdict",
    "rtt_ms",
    "answer",
    "exchange",
    "method",
    "service",
    "detail",
)


@dataclass
class TopicProbe:
    """Every answer to a probe of all the services of a topic, and how many were expected."""

    topic: str
    method: str
    consumers: int  # servers consuming the shared topic queue when the probe started
    expected: int
    timeout: float
    answers: list[ProbeResult]

    @property
    def error(self) -> ManagerCtlError | None:
        """None when every expected service answered; else what to report (exit 3 or 69)."""
        answered = len(self.answers)
        if answered >= self.expected:
            return None
        if self.consumers == 0:
            return NoConsumerError(
                f"nobody consumes queue {self.topic!r}: no service of topic {self.topic!r} runs",
                hint="is the service running, and is --topic right?",
            )
        if answered == 0:
            return UnavailableError(
                f"none of the {self.consumers} consumers of topic {self.topic!r} answered "
                f"{self.method} within {self.timeout:g}s",
                hint="the services are stuck or overloaded; a retry may help",
            )
        return PartialResultError(
            f"{answered} of {self.expected} expected services of topic {self.topic!r} answered "
            f"{self.method} within {self.timeout:g}s ({self.consumers} consume its queue)",
            hint="an oslo answer carries no host name: compare the list with your inventory",
        )


def _request(method: str) -> dict[str, Any]:
    """The arguments, namespace and version a probe sends for ``method``."""
    if method == PING:
        # nova's BaseAPI.ping(context, arg) requires ``arg``; it answers {service, arg}.
        return {"args": {"arg": None}, "namespace": BASE_API_NAMESPACE, "version": PING_VERSION}
    if method == OSLO_PING:
        # oslo's PingEndpoint has no target: namespace None, version 1.0 (the default).
        return {"args": {}, "namespace": None, "version": None}
    raise BadInputError(f"unknown probe method {method!r}", hint="use " + " or ".join(METHODS))


def _check_timeout(timeout: float) -> float:
    timeout = float(timeout)
    if not timeout > 0:
        raise BadInputError("the probe timeout must be more than 0 seconds")
    return timeout


def _is_remote_failure(exc: BaseException) -> bool:
    """True for an exception the service raised and sent back (so the service answered)."""
    # wire.deserialize_failure marks what it rebuilds (builtins, allowed_remote_exmods) with
    # ``remote_traceback``, and turns everything else into RemoteError.
    return isinstance(exc, RemoteError) or hasattr(exc, "remote_traceback")


def _failure_fields(exc: BaseException) -> tuple[str, str | None]:
    """(class name, first line of the message) of a remote failure."""
    if isinstance(exc, RemoteError):
        name, text = exc.exc_type or "RemoteError", exc.value or ""
    else:
        name, text = type(exc).__name__, str(exc)
    lines = text.splitlines()
    return name, (lines[0] if lines else None)


def _service_of(result: Any) -> str | None:
    if isinstance(result, dict) and result.get("service") is not None:
        return str(result["service"])
    return None


def probe(
    client: Any,
    topic: str,
    host: str,
    *,
    exchange: str | None = None,
    method: str = PING,
    timeout: float = DEFAULT_TIMEOUT,
    context: Any = None,
) -> ProbeResult:
    """Probe the service of ``topic`` on ``host`` through ``client`` (an ``RPCClient``).

    Returns the verdict (alive, down or stuck) with the round-trip time of the answer.
    Raises only when the probe itself cannot run: the broker is unreachable (exit 69) or
    refuses the credentials (77), or the arguments are wrong (2).
    """
    from .context import get_admin_context

    if not topic or not host:
        raise BadInputError("a probe needs a topic and a host")
    timeout = _check_timeout(timeout)
    request = _request(method)
    exchange = exchange or client.options.control_exchange
    queue = f"{topic}.{host}"
    base = {"host": host, "topic": topic, "exchange": exchange, "method": method}
    try:
        # call_async returns once the request is published (after the consumer check), so the
        # clock below times the service's answer, not our connection set-up.
        pending = client.call_async(
            context if context is not None else get_admin_context(),
            method,
            topic=topic,
            server=host,
            exchange=exchange,
            timeout=timeout,
            **request,
        )
        sent = time.monotonic()
        result = pending.result()
    except NoConsumerError as exc:
        return ProbeResult(
            verdict=DOWN, rtt_ms=None, answer=None, detail=exc.message, error=exc, **base
        )
    except CallTimeoutError:
        error = CallTimeoutError(
            f"the service on queue {queue!r} (exchange {exchange!r}) consumes requests but did "
            f"not answer {method} within {timeout:g}s: it is stuck",
            hint="its RPC worker threads may all be busy or blocked; a retry may help",
        )
        return ProbeResult(
            verdict=STUCK, rtt_ms=None, answer=None, detail=error.message, error=error, **base
        )
    except Exception as exc:
        if not _is_remote_failure(exc):
            raise
        rtt = (time.monotonic() - sent) * 1000
        name, detail = _failure_fields(exc)
        return ProbeResult(verdict=ALIVE, rtt_ms=round(rtt, 2), answer=name, detail=detail, **base)
    rtt = (time.monotonic() - sent) * 1000
    return ProbeResult(
        verdict=ALIVE, rtt_ms=round(rtt, 2), answer="result", service=_service_of(result), **base
    )


def topic_consumers(client: Any, topic: str) -> int:
    """How many servers consume the shared ``topic`` queue (0 when it does not exist).

    Every oslo.messaging RPC server (and every ``managerctl serve``) consumes ``<topic>`` once,
    so this counts the running servers of the topic; dead ones left queues, not consumers.
    """
    consumers = client.queue_consumers(topic)
    return 0 if consumers is None else consumers


def probe_all(
    client: Any,
    topic: str,
    *,
    method: str = PING,
    timeout: float = DEFAULT_TIMEOUT,
    expect: int | None = None,
    context: Any = None,
) -> TopicProbe:
    """Probe every service of ``topic`` at once (a broadcast call) and gather the answers.

    ``expect`` defaults to the number of consumers of the topic queue. Gathering stops when
    ``expect`` answered, when every consumer answered (nobody else can), or at ``timeout``;
    with no consumer at all it returns at once, empty.
    """
    from .context import get_admin_context

    if not topic:
        raise BadInputError("a probe needs a topic")
    if expect is not None and expect < 1:
        raise BadInputError("--expect must be at least 1")
    timeout = _check_timeout(timeout)
    request = _request(method)
    consumers = topic_consumers(client, topic)
    expected = consumers if expect is None else expect
    outcome = TopicProbe(topic, method, consumers, max(expected, 1), timeout, [])
    if consumers == 0:
        return outcome
    replies = client.broadcast_call(
        context if context is not None else get_admin_context(),
        method,
        topic=topic,
        timeout=timeout,
        expect=min(expected, consumers),
        **request,
    )
    for reply in replies:
        result = reply.result
        host = result.get("host") if isinstance(result, dict) else None
        answer, detail = "result", None
        if reply.failure is not None:
            answer, detail = _failure_fields(reply.failure)
        outcome.answers.append(
            ProbeResult(
                host=None if host is None else str(host),
                topic=topic,
                verdict=ALIVE,
                rtt_ms=round(reply.elapsed * 1000, 2),
                answer=answer,
                exchange=f"{topic}_fanout",
                method=method,
                service=_service_of(result),
                detail=detail,
            )
        )
    return outcome

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

import functools
from dataclasses import dataclass, field
from typing import Any

from .. import families, names
from ..errors import (
    BadInputError,
    CallTimeoutError,
    ManagerCtlError,
    NoConsumerError,
    PartialResultError,
)
from . import fleet, verdict

ALIVE = "alive"
DOWN = "down"
STUCK = "stuck"

AUTO = "auto"
PING = names.PING_METHOD
OSLO_PING = families.OSLO_PING
# "quiet": a method oslo logs at DEBUG when it does not exist (families.QUIET_PROBE), at the
# topic's own version: answered NoSuchMethod by any oslo service, no ERROR in its log.
QUIET = "quiet"
METHODS = (AUTO, PING, OSLO_PING, QUIET)

BASE_API_NAMESPACE = names.BASE_API_NAMESPACE
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


def choose_method(topic: str, *, rpc_ping_enabled: bool = False) -> str:
    """The probe that a service of ``topic`` answers without an ERROR in its log.

    The base API ping where the family has it (nova, managerctl); oslo's ping where the
    service runs with rpc_ping_enabled; else, for a family we know (cinder), the quiet probe at
    the topic's version. A topic we know nothing of gets the base API ping.
    """
    family = families.family_of_topic(topic)
    if family is not None and family.base_api:
        return PING
    if rpc_ping_enabled:
        return OSLO_PING
    if family is not None:
        return QUIET
    return PING


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
        """None when every expected service answered; else what to report (3, 69 or 75)."""
        answered = len(self.answers)
        if answered >= self.expected:
            return None
        if self.consumers == 0:
            return NoConsumerError(
                f"nobody consumes queue {self.topic!r}: no service of topic {self.topic!r} runs",
                hint="is the service running, and is --topic right?",
            )
        if answered == 0:
            # Consumers exist, so the services took the request and sat on it: stuck, as a
            # single-host probe says (75), not down.
            return CallTimeoutError(
                f"none of the {self.consumers} consumers of topic {self.topic!r} answered "
                f"{self.method} within {self.timeout:g}s: they are stuck",
                hint="the services are busy or blocked; a retry may help",
            )
        return PartialResultError(
            f"{answered} of {self.expected} expected services of topic {self.topic!r} answered "
            f"{self.method} within {self.timeout:g}s ({self.consumers} consume its queue)",
            hint="an oslo answer carries no host name: name the hosts to probe each one "
            "(probe H1 H2 ... or --hosts-file) and see which",
        )


def _request(method: str, topic: str, version: str | None = None) -> tuple[str, dict[str, Any]]:
    """The method name to send for probe ``method``, with its args, namespace and version."""
    if method == PING:
        # nova's BaseAPI.ping(context, arg) requires ``arg``; it answers {service, arg}.
        return PING, {
            "args": {"arg": None},
            "namespace": BASE_API_NAMESPACE,
            "version": version or PING_VERSION,
        }
    if method == OSLO_PING:
        # oslo's PingEndpoint has no target: namespace None, version 1.0 (the default).
        return OSLO_PING, {"args": {}, "namespace": None, "version": version}
    if method == QUIET:
        version = version or families.default_version(topic)
        if version is None:
            raise BadInputError(
                f"the quiet probe needs the API version of topic {topic!r}",
                hint="pass --version X.0 with the major version its services speak",
            )
        return families.QUIET_PROBE, {"args": {}, "namespace": None, "version": version}
    raise BadInputError(f"unknown probe method {method!r}", hint="use " + ", ".join(METHODS))


def _check_timeout(timeout: float) -> float:
    timeout = float(timeout)
    if not timeout > 0:
        raise BadInputError("the probe timeout must be more than 0 seconds")
    return timeout


def _service_of(result: Any) -> str | None:
    if isinstance(result, dict) and result.get("service") is not None:
        return str(result["service"])
    return None


def probe_hosts(
    client: Any,
    topic: str,
    hosts: list[str],
    *,
    exchange: str | None = None,
    method: str = PING,
    version: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    context: Any = None,
) -> list[ProbeResult]:
    """Probe the service of ``topic`` on each of ``hosts`` at once, over ``client``'s connection.

    One verdict per host (alive, down or stuck), in the order given, each with the round-trip
    time of its answer. Raises only when the probe itself cannot run: the broker is
    unreachable (exit 69) or refuses the credentials (77), or the arguments are wrong (2).
    """
    from ..context import get_admin_context

    if not topic or not hosts:
        raise BadInputError("a probe needs a topic and a host")
    timeout = _check_timeout(timeout)
    name, request = _request(method, topic, version)
    exchange = client.exchange_for(topic, exchange)
    answers = fleet.call_hosts(
        client,
        context if context is not None else get_admin_context(),
        name,
        topic=topic,
        hosts=hosts,
        request=request,
        exchange=exchange,
        timeout=timeout,
    )
    results = []
    for answer in answers:
        probe_result = functools.partial(
            ProbeResult, host=answer.host, topic=topic, exchange=exchange, method=name
        )
        if answer.state in (fleet.DOWN, fleet.STUCK):
            error = answer.error
            results.append(
                probe_result(
                    verdict=DOWN if answer.state == fleet.DOWN else STUCK,
                    rtt_ms=None,
                    answer=None,
                    detail=error.message if error is not None else None,
                    error=error,
                )
            )
        elif answer.state == fleet.FAILED:
            assert answer.failure is not None
            kind, detail = fleet.failure_fields(answer.failure)
            results.append(
                probe_result(verdict=ALIVE, rtt_ms=answer.rtt_ms, answer=kind, detail=detail)
            )
        else:
            results.append(
                probe_result(
                    verdict=ALIVE,
                    rtt_ms=answer.rtt_ms,
                    answer="result",
                    service=_service_of(answer.result),
                )
            )
    return results


def probe(client: Any, topic: str, host: str, **kwargs: Any) -> ProbeResult:
    """Probe the service of ``topic`` on one ``host``; see ``probe_hosts``."""
    if not host:
        raise BadInputError("a probe needs a topic and a host")
    return probe_hosts(client, topic, [host], **kwargs)[0]


def hosts_error(results: list[ProbeResult], topic: str) -> ManagerCtlError | None:
    """The verdict over several probed hosts: None (0), partial (3), down (69), stuck (75)."""
    if len(results) == 1:
        return results[0].error
    states = {ALIVE: verdict.OK, DOWN: verdict.DOWN, STUCK: verdict.STUCK}
    return verdict.decide(
        [(result.host, states[result.verdict]) for result in results], what="the probe", topic=topic
    )


def topic_consumers(client: Any, topic: str) -> int:
    """How many servers consume the shared ``topic`` queue (0 when it does not exist).

    Every oslo.messaging RPC server (and every ``managerctl serve``) consumes ``<topic>`` once,
    so this counts the running servers of the topic; dead ones left queues, not consumers.
    """
    return int(client.queue_consumers(topic))


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
    from ..context import get_admin_context

    if not topic:
        raise BadInputError("a probe needs a topic")
    if expect is not None and expect < 1:
        raise BadInputError("--expect must be at least 1")
    timeout = _check_timeout(timeout)
    name, request = _request(method, topic)
    consumers = topic_consumers(client, topic)
    expected = consumers if expect is None else expect
    outcome = TopicProbe(topic, method, consumers, max(expected, 1), timeout, [])
    if consumers == 0:
        return outcome
    replies = client.broadcast_call(
        context if context is not None else get_admin_context(),
        name,
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
            answer, detail = fleet.failure_fields(reply.failure)
        outcome.answers.append(
            ProbeResult(
                host=None if host is None else str(host),
                topic=topic,
                verdict=ALIVE,
                rtt_ms=round(reply.elapsed * 1000, 2),
                answer=answer,
                exchange=names.fanout_exchange_name(topic),
                method=name,
                service=_service_of(result),
                detail=detail,
            )
        )
    return outcome

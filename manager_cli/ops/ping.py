"""``ping``: the base API ping of one, several or every service of a topic.

A ping asks for a real result (the base API's ``{service, arg}``), so unlike a probe a failure
that comes back is not good news: only failures is exit 1. Hosts named by the operator are
pinged one request each (over one connection), which works against oslo services too, whose
answers carry no host name; ``--all`` broadcasts and counts.
"""

from __future__ import annotations

from typing import Any

from .. import families, names
from ..errors import BadInputError, ManagerCtlError, NoConsumerError
from . import fleet, verdict

BASE_API_NAMESPACE = names.BASE_API_NAMESPACE
BASE_API_VERSION = names.BASE_API_VERSION
COLUMNS = ["host", "service", "arg", "rtt_ms", "outcome", "error"]


def check_base_api(topic: str, namespace: str | None) -> None:
    """Refuse to ping a family we know has no base API: it would log an ERROR for each ping."""
    family = families.family_of_topic(topic)
    if family is None or family.base_api or (namespace and namespace != BASE_API_NAMESPACE):
        return
    raise BadInputError(
        f"{family.name}'s services have no base API: a ping of topic {topic!r} would be "
        "answered UnsupportedVersion and leave an ERROR traceback in their log",
        hint=f"use managerctl probe --topic {topic} (quiet for {family.name})",
    )


def _row(host: str | None, outcome: str, rtt_ms: float | None, result: Any, failure: Any) -> dict:
    result = result if isinstance(result, dict) else {}
    error = None
    if failure is not None:
        kind, text = fleet.failure_fields(failure)
        error = f"{kind}: {text}" if text else kind
    return {
        "host": result.get("host") or host,
        "service": result.get("service"),
        "arg": result.get("arg"),
        "rtt_ms": rtt_ms,
        "outcome": outcome,
        "error": error,
    }


def ping_hosts(
    client: Any,
    context: Any,
    topic: str,
    hosts: list[str],
    *,
    exchange: str | None,
    version: str | None,
    namespace: str | None,
    timeout: float,
) -> tuple[list[dict[str, Any]], ManagerCtlError | None]:
    """Ping each host (one request each, sent together); rows in order, and the verdict."""
    check_base_api(topic, namespace)
    answers = fleet.call_hosts(
        client,
        context,
        "ping",
        topic=topic,
        hosts=hosts,
        request={
            "args": {"arg": None},
            "version": version or BASE_API_VERSION,
            "namespace": namespace or BASE_API_NAMESPACE,
        },
        exchange=exchange,
        timeout=timeout,
    )
    outcome = {
        fleet.ANSWERED: verdict.OK,
        fleet.FAILED: verdict.FAILED,
        fleet.DOWN: verdict.DOWN,
        fleet.STUCK: verdict.STUCK,
    }
    rows = []
    for answer in answers:
        row = _row(answer.host, outcome[answer.state], answer.rtt_ms, answer.result, answer.failure)
        if answer.error is not None:
            row["error"] = answer.error.message
        row["host"] = answer.host  # the name asked for, whatever the answer says
        rows.append(row)
    if len(answers) == 1 and answers[0].state in (fleet.DOWN, fleet.STUCK):
        return rows, answers[0].error
    error = verdict.decide(
        [(row["host"], row["outcome"]) for row in rows], what="ping", topic=topic
    )
    return rows, error


def ping_all(
    client: Any,
    context: Any,
    topic: str,
    *,
    version: str | None,
    namespace: str | None,
    timeout: float,
    expect: int | None,
) -> tuple[list[dict[str, Any]], ManagerCtlError | None]:
    """Broadcast a ping to every server of ``topic``; stop at ``expect`` answers.

    ``expect`` defaults to the number of servers consuming the topic queue, so a healthy
    fleet answers at once instead of waiting out the timeout.
    """
    check_base_api(topic, namespace)
    if expect is not None and expect < 1:
        raise BadInputError("--expect must be at least 1")
    consumers = client.queue_consumers(topic)
    if consumers == 0 and expect is None:
        raise NoConsumerError(
            f"nobody consumes queue {topic!r}: no service of topic {topic!r} runs",
            hint="is the service running, and is --topic right?",
        )
    expected = consumers if expect is None else expect
    replies = client.broadcast_call(
        context,
        "ping",
        topic=topic,
        args={"arg": None},
        version=version or BASE_API_VERSION,
        namespace=namespace or BASE_API_NAMESPACE,
        timeout=timeout,
        expect=expected,
    )
    rows = [
        _row(
            None,
            verdict.OK if reply.failure is None else verdict.FAILED,
            round(reply.elapsed * 1000, 2),
            reply.result,
            reply.failure,
        )
        for reply in replies
    ]
    missing = max(expected - len(rows), 0)
    outcomes = [(row["host"], row["outcome"]) for row in rows]
    outcomes += [(None, verdict.MISSING)] * missing
    return rows, verdict.decide(outcomes, what="ping", topic=topic)

"""The one place where AMQP reply codes become managerctl errors (and so exit codes).

A broker refusal is never a bug in managerctl (70) nor a broker that is down (69 "check that
RabbitMQ is running"): it is the configuration or the permissions, and the message names what to
change. ``refusal()`` maps one pika exception; ``map_amqp_errors()`` is the boundary client,
server, listener and probe put around what they ask of the broker.

| reply code | meaning | error (exit) |
|---|---|---|
| 403 ACCESS_REFUSED, 530 NOT_ALLOWED | permission or vhost | AccessRefusedError (77) |
| 406 PRECONDITION_FAILED | an entity exists with other flags or arguments, or an argument the queue type refuses | ConfigError (78), naming the argument and the option |
| 541 INTERNAL_ERROR about a deprecated feature | RabbitMQ 4.x denies it | ConfigError (78), naming the feature and the option that avoids it |
| 540 NOT_IMPLEMENTED | e.g. global QoS on a quorum queue | ConfigError (78) |
| 405 RESOURCE_LOCKED | an exclusive queue of another connection | ConfigError (78) |
| 404 NOT_FOUND, 320 CONNECTION_FORCED, other | missing entity, broker shutting down | UnavailableError (69) |
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from ..errors import AccessRefusedError, ConfigError, ManagerCtlError, UnavailableError

CONNECTION_FORCED = 320
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

REFUSAL_CODES = frozenset(
    {ACCESS_REFUSED, RESOURCE_LOCKED, PRECONDITION_FAILED, NOT_ALLOWED, NOT_IMPLEMENTED}
)

_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for (?P<kind>exchange|queue) '(?P<name>[^']*)'"
    r"(?: in vhost '[^']*')?: received (?P<received>.+?) but current is (?P<current>.+)$",
    re.DOTALL,
)
_FEATURE = re.compile(r"[Ff]eature `(?P<feature>[a-z_]+)`")

# What a deprecated feature denied by RabbitMQ 4.x takes, and the options that avoid it.
DEPRECATED_FEATURES = {
    "transient_nonexcl_queues": (
        "non-durable, non-exclusive queues",
        "set rabbit_quorum_queue = true and rabbit_transient_quorum_queue = true, as "
        "deployments on RabbitMQ 4 do",
    ),
    "global_qos": (
        "global QoS",
        "managerctl sets a per-consumer prefetch only: set rabbit_qos_prefetch_count > 0",
    ),
    "classic_queue_mirroring": ("classic queue mirroring", "set rabbit_ha_queues = false"),
}


def _code_text(exc: BaseException) -> tuple[int | None, str]:
    code = getattr(exc, "reply_code", None)
    text = getattr(exc, "reply_text", "")
    if code is None and len(getattr(exc, "args", ())) >= 2 and isinstance(exc.args[0], int):
        code, text = exc.args[0], exc.args[1]
    return (code if isinstance(code, int) else None), str(text or "")


def _value(raw: str) -> str:
    """rabbit's "the value 'quorum' of type 'longstr'" / "'true'" / "none" -> quorum/true/none."""
    raw = raw.strip()
    match = re.match(r"the value '?([^']*?)'? of type", raw)
    if match:
        return match.group(1)
    return raw.strip("'")


def _option_for(arg: str, kind: str, name: str, current: str, shape: Any) -> str:
    """What to set so our declaration equals what exists."""
    role = getattr(shape, "role", "")
    transient = role in ("fanout queue", "reply queue", "fanout exchange") or (
        kind == "exchange" and name.endswith("_fanout")
    )
    on = current not in ("false", "none", "classic", "")
    if arg == "x-queue-type":
        if current == "stream":
            return "this vhost uses a stream per fanout: set rabbit_stream_fanout = true"
        if current == "quorum":
            option = "rabbit_transient_quorum_queue" if transient else "rabbit_quorum_queue"
            return f"this vhost uses quorum queues: set {option} = true"
        option = "rabbit_transient_quorum_queue" if transient else "rabbit_quorum_queue"
        return f"this vhost uses classic queues: set {option} = false"
    if arg == "durable":
        if transient:
            return f"set rabbit_transient_quorum_queue = {'true' if on else 'false'}"
        if on:
            return (
                f"the {kind} is durable here: set rabbit_quorum_queue = true (quorum queues) "
                "or amqp_durable_queues = true, as the services of this vhost do"
            )
        return (
            f"the {kind} is not durable here: set rabbit_quorum_queue = false and "
            "amqp_durable_queues = false"
        )
    if arg == "auto_delete":
        return f"set amqp_auto_delete = {'true' if on else 'false'}"
    if arg == "x-expires":
        return f"set rabbit_transient_queues_ttl as the other services do (here {current} ms)"
    if arg == "x-max-age":
        return f"set rabbit_transient_queues_ttl as the other services do (here {current})"
    if arg == "x-ha-policy":
        return f"set rabbit_ha_queues = {'true' if on else 'false'}"
    if arg == "x-delivery-limit":
        return f"set rabbit_quorum_delivery_limit = {current if on else 0}"
    if arg == "x-max-in-memory-length":
        return f"set rabbit_quorum_max_memory_length = {current if on else 0}"
    if arg == "x-max-in-memory-bytes":
        return f"set rabbit_quorum_max_memory_bytes = {current if on else 0}"
    return "set the [oslo_messaging_rabbit] options as the deployment's services do"


def mismatch_message(text: str, shape: Any = None) -> tuple[str, str]:
    """(message, hint) for a 406 reply text."""
    match = _INEQUIVALENT.search(text)
    if match is None:
        return f"the broker refused a declaration: {text}", (
            "set the [oslo_messaging_rabbit] options as the deployment's services do"
        )
    arg, kind, name = match.group("arg"), match.group("kind"), match.group("name")
    current, received = _value(match.group("current")), _value(match.group("received"))
    message = (
        f"{kind} {name!r} exists with {arg} = {current}, the configuration asks for "
        f"{arg} = {received} (406 PRECONDITION_FAILED)"
    )
    return message, _option_for(arg, kind, name, current, shape)


def refusal(exc: BaseException, doing: str, *, shape: Any = None) -> ManagerCtlError:
    """The managerctl error for a channel or connection closed by the broker."""
    code, text = _code_text(exc)
    where = f" while {doing}" if doing else ""
    if code in (ACCESS_REFUSED, NOT_ALLOWED):
        return AccessRefusedError(
            f"the broker refused access{where} ({code} {text})",
            hint="the user needs configure, write and read permission on these names in the "
            "virtual host (rabbitmqctl set_permissions)",
        )
    if code == PRECONDITION_FAILED:
        message, hint = mismatch_message(text, shape)
        return ConfigError(f"{message}{where}", hint=hint)
    if code == INTERNAL_ERROR:
        feature = _FEATURE.search(text)
        if feature is not None:
            name = feature.group("feature")
            what, fix = DEPRECATED_FEATURES.get(
                name, ("a deprecated feature", "see the broker's deprecated_features settings")
            )
            return ConfigError(
                f"the broker denies the deprecated feature {name} ({what}){where} (541)",
                hint=fix,
            )
        return UnavailableError(f"the broker failed{where} ({code} {text})")
    if code == NOT_IMPLEMENTED:
        return ConfigError(
            f"the broker does not implement what was asked{where} ({code} {text})",
            hint="set the [oslo_messaging_rabbit] options as the deployment's services do",
        )
    if code == RESOURCE_LOCKED:
        return ConfigError(
            f"a queue is held exclusively by another connection{where} ({code} {text})",
            hint="another process owns it; use another name or stop that process",
        )
    if code == NOT_FOUND:
        return UnavailableError(f"not found on the broker{where} ({code} {text})")
    if code == CONNECTION_FORCED:
        return UnavailableError(f"the broker closed the connection{where} ({code} {text})")
    return UnavailableError(f"the broker closed the channel{where} ({code} {text})")


def is_refusal(exc: BaseException) -> bool:
    """A close that retrying on a new connection would only meet again."""
    code, text = _code_text(exc)
    if code == INTERNAL_ERROR:
        return _FEATURE.search(text) is not None
    return code in REFUSAL_CODES


def _closed_by_broker() -> tuple[type[BaseException], ...]:
    import pika.exceptions

    return (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker)


@contextlib.contextmanager
def map_amqp_errors(doing: str) -> Iterator[None]:
    """Turn a channel or connection the broker closed into the managerctl error it means."""
    try:
        yield
    except _closed_by_broker() as exc:
        raise refusal(exc, doing) from None

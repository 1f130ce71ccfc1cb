"""Call one method on many hosts of a topic at once, over one connection.

Every request is published before any reply is awaited, so N hosts cost about one round trip
and one timeout, not N: a fleet check of 200 compute nodes takes as long as the slowest
answer. Each host is told apart as oslo's own client cannot: ``down`` when nobody consumes its
``TOPIC.HOST`` queue (known before anything is sent), ``stuck`` when a consumer took the
request but no answer came in time, ``failed`` when the service sent back a failure, and
``answered`` with its result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CallTimeoutError, ManagerCtlError, NoConsumerError, RemoteError

ANSWERED = "answered"
FAILED = "failed"
DOWN = "down"
STUCK = "stuck"


@dataclass
class HostAnswer:
    """What one host of the fleet did with the request."""

    host: str
    state: str  # answered, failed, down or stuck
    rtt_ms: float | None = None  # request published -> final reply; None without an answer
    result: Any = None
    failure: BaseException | None = None  # what the service sent back, for ``failed``
    error: ManagerCtlError | None = field(default=None, repr=False)  # why down or stuck


def is_remote_failure(exc: BaseException) -> bool:
    """True for an exception the service raised and sent back (so the service answered)."""
    # wire.deserialize_failure marks what it rebuilds (builtins, allowed_remote_exmods) with
    # ``remote_traceback``, and turns everything else into RemoteError.
    return isinstance(exc, RemoteError) or hasattr(exc, "remote_traceback")


def failure_fields(exc: BaseException) -> tuple[str, str | None]:
    """(class name, first line of the message) of a remote failure."""
    if isinstance(exc, RemoteError):
        name, text = exc.exc_type or "RemoteError", exc.value or ""
    else:
        name = type(exc).__name__
        text = getattr(exc, "remote_message", None) or str(exc)
    lines = text.splitlines()
    return name, (lines[0] if lines else None)


def unique(hosts: Iterable[str]) -> list[str]:
    """The hosts in their order, each once, blanks dropped."""
    seen: dict[str, None] = {}
    for host in hosts:
        host = host.strip()
        if host:
            seen.setdefault(host, None)
    return list(seen)


def call_hosts(
    client: Any,
    context: Any,
    method: str,
    *,
    topic: str,
    hosts: Iterable[str],
    request: Mapping[str, Any],
    exchange: str | None,
    timeout: float,
) -> list[HostAnswer]:
    """Send ``method`` to ``TOPIC.HOST`` for every host, then gather; one answer per host.

    ``request`` holds the ``args``, ``version`` and ``namespace`` of the call. Raises only
    when the check cannot run at all (broker unreachable, credentials refused).
    """
    from ..rpc.target import Target

    answers: dict[str, HostAnswer] = {}
    pending: dict[str, Any] = {}
    routing = Target(
        topic,
        exchange=exchange,
        version=request.get("version"),
        namespace=request.get("namespace"),
    )
    for host in unique(hosts):
        try:
            pending[host] = client.call_async(
                context,
                method,
                target=routing.replace(server=host),
                args=request.get("args"),
                timeout=timeout,
            )
        except NoConsumerError as exc:
            answers[host] = HostAnswer(host, DOWN, error=exc)
    for host, call in pending.items():
        try:
            result = call.result()
        except NoConsumerError as exc:  # returned by the broker after all
            answers[host] = HostAnswer(host, DOWN, error=exc)
        except CallTimeoutError:
            queue = f"{topic}.{host}"
            answers[host] = HostAnswer(
                host,
                STUCK,
                error=CallTimeoutError(
                    f"the service on queue {queue!r} consumes requests but did not answer "
                    f"{method} within {timeout:g}s: it is stuck",
                    hint="its RPC worker threads may all be busy or blocked; a retry may help",
                ),
            )
        except Exception as exc:
            if not is_remote_failure(exc):
                raise
            answers[host] = HostAnswer(host, FAILED, _ms(call.rtt), failure=exc)
        else:
            answers[host] = HostAnswer(host, ANSWERED, _ms(call.rtt), result=result)
    return [answers[host] for host in unique(hosts)]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def read_hosts_file(path: str) -> list[str]:
    """Hosts from a file (``-`` for standard input): one per line or whitespace separated.

    ``#`` starts a comment, so an inventory file can carry notes.
    """
    import sys

    from ..errors import BadInputError

    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        raise BadInputError(
            f"cannot read the hosts file {path}: {exc.strerror or exc}",
            hint="give a readable file, or - for standard input",
        ) from None
    hosts: list[str] = []
    for line in text.splitlines():
        hosts.extend(line.split("#", 1)[0].split())
    if not hosts:
        raise BadInputError(f"the hosts file {path} names no host", hint="one host per line")
    return hosts

"""Remote periodic-task control: the ``managerctl`` control namespace of served managers.

``managerctl serve`` adds a control endpoint (``service.ControlEndpoint``) that lists the
periodic tasks of the running manager and runs them on demand. This module is its client: one
host by name, or every service of the topic by broadcast, with the expected-vs-answered rule of
``verdict``. Every row of the control endpoint names its host, so a broadcast can tell who
answered (oslo services never get here: they have no such namespace).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    ManagerCtlError,
    NoConsumerError,
    RemoteError,
    TaskFailedError,
    UnknownNameError,
    remote_error_from,
)
from . import verdict

LIST_TASKS = "list_periodic_tasks"
RUN_TASKS = "run_periodic_task"


def control_target(topic: str, host: str | None = None) -> Any:
    """Where control requests go: the managerctl namespace of ``topic`` (on ``host``)."""
    from ..names import CONTROL_API_VERSION, CONTROL_NAMESPACE
    from ..rpc.target import Target

    return Target(topic, server=host, namespace=CONTROL_NAMESPACE, version=CONTROL_API_VERSION)


def control_failure(exc: BaseException, where: str) -> BaseException:
    """A remote failure of the control endpoint as the error to report (exit code included)."""
    if isinstance(exc, RemoteError):
        if exc.exc_type == "UnknownNameError":
            return UnknownNameError(f"{where}: {exc.value}")
        if exc.exc_type in ("NoSuchMethod", "UnsupportedVersion"):
            return RemoteError(
                exc.exc_type,
                f"{where} does not answer the managerctl control namespace ({exc.value})",
                exc.traceback,
            )
    return remote_error_from(exc)


def call_control(
    client: Any, method: str, args: dict[str, Any], *, topic: str, host: str, timeout: float | None
) -> list[dict[str, Any]]:
    """Call a control method on the service of ``topic`` on ``host``; its rows."""
    from ..context import get_admin_context

    try:
        rows = client.call(
            get_admin_context(),
            method,
            target=control_target(topic, host),
            args=args,
            timeout=timeout,
        )
    except Exception as exc:
        raise control_failure(exc, f"{topic} on {host}") from None
    return list(rows or [])


@dataclass
class Gathered:
    """What a broadcast to every service of a topic brought back."""

    topic: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    outcomes: list[tuple[str | None, str]] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return sum(1 for _, state in self.outcomes if state == verdict.OK)

    @property
    def error(self) -> ManagerCtlError | None:
        """Exit 3 when an expected host is missing, 69/75 when none answered, else None."""
        return verdict.decide(self.outcomes, what="the control request", topic=self.topic)

    def failure_error(self) -> BaseException | None:
        """What the services that answered with a failure raised, as one error."""
        if not self.failures:
            return None
        if all(isinstance(exc, UnknownNameError) for exc in self.failures):
            return self.failures[0]
        return TaskFailedError(
            f"{len(self.failures)} service(s) raised: {self.failures[0]}",
            hint="rerun with --host for one of them",
        )


def _reply_host(result: Any) -> str | None:
    if isinstance(result, list) and result and isinstance(result[0], dict):
        host = result[0].get("host")
        return str(host) if host is not None else None
    return None


def gather_control(
    client: Any,
    method: str,
    args: dict[str, Any],
    *,
    topic: str,
    timeout: float,
    expect: int | None = None,
    expect_hosts: list[str] | None = None,
) -> Gathered:
    """Call a control method on every service of ``topic`` and gather the rows.

    Gathering ends when the hosts of ``expect_hosts`` answered, when ``expect`` answers came,
    or (with neither) when every consumer of the topic queue answered; else at ``timeout``.
    A service with nothing to list answers anonymously.
    """
    from ..context import get_admin_context

    wanted = list(expect_hosts or [])
    if not wanted and expect is None:
        expect = client.queue_consumers(topic)
        if expect == 0:
            raise NoConsumerError(
                f"nobody consumes queue {topic!r}: no service of topic {topic!r} runs",
                hint="is it served by `managerctl serve`, and are --topic and the exchange right?",
            )

    def all_wanted_answered(replies: list[Any]) -> bool:
        answered = {_reply_host(reply.result) for reply in replies}
        return all(host in answered for host in wanted)

    replies = client.broadcast_call(
        get_admin_context(),
        method,
        target=control_target(topic),
        args=args,
        timeout=timeout,
        expect=None if wanted else expect,
        stop_when=all_wanted_answered if wanted else None,
    )
    gathered = Gathered(topic)
    hosts: set[str] = set()
    for reply in replies:
        host = _reply_host(reply.result)
        gathered.outcomes.append((host, verdict.OK))
        if reply.failure is not None:
            gathered.failures.append(control_failure(reply.failure, f"a service of {topic}"))
            continue
        if host is not None:
            hosts.add(host)
        gathered.rows.extend(row for row in reply.result or [] if isinstance(row, dict))
    if wanted:
        gathered.outcomes = [(host, verdict.OK) for host in wanted if host in hosts]
        gathered.outcomes += [(host, verdict.MISSING) for host in wanted if host not in hosts]
    elif expect is not None and len(replies) < expect:
        gathered.outcomes += [(None, verdict.MISSING)] * (expect - len(replies))
    return gathered

"""``managerctl periodic list NAME`` and ``managerctl run-periodic NAME``: in this process, or on
running services through their control endpoint (namespace ``managerctl``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import click

from ..errors import (
    TaskFailedError,
)
from ..timefmt import iso_utc_or_as_is
from .common import load_manager, manager_name_argument, output_from
from .complete import complete_hosts, complete_task_names, complete_topics
from .output import output_options, render_list

TASK_COLUMNS = ["name", "spacing", "run_immediately", "external_process_ok", "next_due_in"]
REMOTE_TASK_COLUMNS = ["name", "spacing", "last_run", "last_outcome", "last_error", "next_due_in"]
RUN_COLUMNS = ["task", "outcome", "duration", "error", "reason"]


# ---------------------------------------------------------------------------
# Options shared by the two commands


def _remote_options(function: Callable[..., Any]) -> Callable[..., Any]:
    decorators = [
        click.option(
            "--host",
            metavar="HOST",
            help="Ask the service running on HOST (over RPC) instead of this process.",
            shell_complete=complete_hosts,
        ),
        click.option(
            "--all-hosts",
            is_flag=True,
            help="Ask every service of the topic and gather the answers (a host column).",
        ),
        click.option(
            "--topic",
            metavar="TOPIC",
            help="The services' RPC topic (default: the manager's).",
            shell_complete=complete_topics,
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            metavar="SECONDS",
            help="Reply timeout; with --all-hosts, how long to gather answers (default: "
            "rpc_response_timeout, or 5 s with --all-hosts and neither --expect option).",
        ),
        click.option(
            "--expect",
            type=click.IntRange(min=1),
            metavar="N",
            help="With --all-hosts: stop gathering after N answers; fewer is exit 3.",
        ),
        click.option(
            "--expect-hosts",
            metavar="H1,H2",
            help="With --all-hosts: the hosts that must answer; missing ones are listed (exit 3).",
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


@dataclass
class Remote:
    """Where a command runs: here (host and all_hosts unset), on one host, or on all of them."""

    host: str | None = None
    all_hosts: bool = False
    topic: str | None = None
    timeout: float | None = None
    expect: int | None = None
    expect_hosts: list[str] = field(default_factory=list)

    @property
    def local(self) -> bool:
        return self.host is None and not self.all_hosts


def _remote_from(kwargs: dict[str, Any]) -> Remote:
    remote = Remote(
        host=kwargs.pop("host"),
        all_hosts=kwargs.pop("all_hosts"),
        topic=kwargs.pop("topic"),
        timeout=kwargs.pop("timeout"),
        expect=kwargs.pop("expect"),
        expect_hosts=[
            h.strip() for h in (kwargs.pop("expect_hosts") or "").split(",") if h.strip()
        ],
    )
    if remote.host is not None and remote.all_hosts:
        raise click.UsageError("give --host or --all-hosts, not both")
    if (remote.expect is not None or remote.expect_hosts) and not remote.all_hosts:
        raise click.UsageError("--expect and --expect-hosts need --all-hosts")
    if remote.local and (remote.topic or remote.timeout is not None):
        raise click.UsageError("--topic and --timeout need --host or --all-hosts")
    return remote


# ---------------------------------------------------------------------------
# Talking to the control endpoint


def _topic(name: str, remote: Remote) -> str:
    from ..loader import load_manager_class, topic_for

    cls = load_manager_class(name)  # also checks the name: exit 2 unknown, 78 broken
    return remote.topic or topic_for(name, cls)


def _client(remote: Remote) -> Any:
    from ..ops.clients import one_shot_client
    from .common import app_state

    return one_shot_client(app_state().settings, remote.timeout)


def _call(method: str, args: dict[str, Any], name: str, remote: Remote) -> list[dict[str, Any]]:
    """Call a control method on one host; its rows."""
    from ..ops.periodic import call_control

    assert remote.host is not None
    with _client(remote) as client:
        return call_control(
            client,
            method,
            args,
            topic=_topic(name, remote),
            host=remote.host,
            timeout=remote.timeout,
        )


def _broadcast(method: str, args: dict[str, Any], name: str, remote: Remote) -> Any:
    """Call a control method on every service of the topic and gather the rows."""
    from ..ops.periodic import gather_control
    from .common import app_state
    from .rpc import DEFAULT_GATHER_TIMEOUT

    if remote.timeout is not None:
        timeout = remote.timeout
    elif remote.expect_hosts or remote.expect:
        # It ends as soon as they answered.
        timeout = float(app_state().settings.rpc_response_timeout)
    else:
        timeout = DEFAULT_GATHER_TIMEOUT
    with _client(remote) as client:
        return gather_control(
            client,
            method,
            args,
            topic=_topic(name, remote),
            timeout=timeout,
            expect=remote.expect,
            expect_hosts=remote.expect_hosts,
        )


def _check(gathered: Any, *, failures: bool = True) -> None:
    """Raise the verdict over the gathered answers, then the failures they carried."""
    error = gathered.error
    if error is not None:
        raise error
    failure = gathered.failure_error() if failures else None
    if failure is not None:
        raise failure


# ---------------------------------------------------------------------------
# Presentation


def _timestamp(value: Any) -> Any:
    """Epoch seconds as ISO 8601 in UTC (what services list shows too); other values as given."""
    return iso_utc_or_as_is(value)


def _rounded(value: Any, digits: int) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def _task_row(task: dict[str, Any]) -> dict[str, Any]:
    return {
        **task,
        "last_run": _timestamp(task.get("last_run")),
        "next_due_in": _rounded(task.get("next_due_in"), 1),
    }


def _run_row(run: dict[str, Any]) -> dict[str, Any]:
    return {
        **run,
        "started": _timestamp(run.get("started")),
        "duration": _rounded(run.get("duration"), 3),
    }


def _with_host(columns: list[str], remote: Remote) -> list[str]:
    return ["host", *columns] if remote.all_hosts else columns


# ---------------------------------------------------------------------------
# Commands


@click.group()
def periodic() -> None:
    """List a manager's periodic tasks."""


@periodic.command("list")
@manager_name_argument
@_remote_options
@output_options
def list_tasks(name: str, **kwargs: Any) -> None:
    """List the periodic tasks of manager NAME with spacing and when each is next due.

    In-process, the schedule is the one a service would have right after it starts. With
    --host, the running service's view: last run, its outcome and error, next due. With
    --all-hosts, every service of the topic (exit 3 when an expected host did not answer,
    69 when none did).

    \b
    Examples:
      managerctl periodic list hostinfo
      managerctl periodic list hostinfo --host web01
      managerctl periodic list hostinfo --all-hosts --expect-hosts web01,web02
    """
    output = output_from(kwargs)
    remote = _remote_from(kwargs)
    if remote.local:
        _, manager = load_manager(name)
        render_list(manager.periodic_task_info(), TASK_COLUMNS, output)
        return
    columns = _with_host(REMOTE_TASK_COLUMNS, remote)
    if remote.host is not None:
        tasks = _call("list_periodic_tasks", {}, name, remote)
        render_list([_task_row(task) for task in tasks], columns, output)
        return
    gathered = _broadcast("list_periodic_tasks", {}, name, remote)
    render_list([_task_row(task) for task in gathered.rows], columns, output)
    _check(gathered)


@click.command("run-periodic")
@manager_name_argument
@click.option(
    "--task",
    "-t",
    "tasks",
    multiple=True,
    metavar="TASK",
    help="Run this task (repeatable).",
    shell_complete=complete_task_names,
)
@click.option("--all", "run_all", is_flag=True, help="Run every task (the default).")
@_remote_options
@output_options
def run_periodic(name: str, tasks: tuple[str, ...], run_all: bool, **kwargs: Any) -> None:
    """Run the periodic tasks of manager NAME now, once: in this process, or on the running
    service of --host (or of every host, --all-hosts) without shifting their schedule.

    Prints each task's outcome. Exit 1 when a task raised; exit 2 for an unknown task name;
    with --all-hosts, exit 3 when an expected host did not answer, 69 when none did.

    \b
    Examples:
      managerctl run-periodic hostinfo --task gather_cpu
      managerctl run-periodic hostinfo --host web01
      managerctl run-periodic hostinfo --all-hosts --expect 3 -f json
    """
    output = output_from(kwargs)
    remote = _remote_from(kwargs)
    if tasks and run_all:
        raise click.UsageError("give --task or --all, not both")
    names = None if run_all or not tasks else list(tasks)
    if remote.local:
        from ..context import get_admin_context

        _, manager = load_manager(name)
        runs = [asdict(run) for run in manager.run_tasks_now(get_admin_context(), names)]
        render_list(runs, RUN_COLUMNS, output)
    elif remote.host is not None:
        runs = _call("run_periodic_task", {"task": names}, name, remote)
        render_list([_run_row(run) for run in runs], RUN_COLUMNS, output)
    else:
        gathered = _broadcast("run_periodic_task", {"task": names}, name, remote)
        runs = gathered.rows
        render_list([_run_row(run) for run in runs], _with_host(RUN_COLUMNS, remote), output)
        if gathered.answered == 0:
            _check(gathered)
        failure = gathered.failure_error()
        if failure is not None:
            raise failure
    failed = sorted({run["task"] for run in runs if run.get("outcome") == "failed"})
    if failed:
        raise TaskFailedError(
            f"periodic task {', '.join(failed)} failed", hint="see the error column"
        )
    if remote.all_hosts:
        _check(gathered, failures=False)

"""``managerctl periodic list NAME`` and ``managerctl run-periodic NAME``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from ..errors import TaskFailedError
from .common import load_manager, manager_name_argument, output_from
from .complete import complete_task_names
from .output import output_options, render_list

TASK_COLUMNS = ["name", "spacing", "run_immediately", "external_process_ok", "next_due_in"]
RUN_COLUMNS = ["task", "outcome", "duration", "error", "reason"]


@click.group()
def periodic() -> None:
    """List a manager's periodic tasks."""


@periodic.command("list")
@manager_name_argument
@output_options
def list_tasks(name: str, **kwargs: Any) -> None:
    """List the periodic tasks of manager NAME with spacing and when each is next due.

    In-process, the schedule is the one a service would have right after it starts.
    """
    output = output_from(kwargs)
    _, manager = load_manager(name)
    render_list(manager.periodic_task_info(), TASK_COLUMNS, output)


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
@output_options
def run_periodic(name: str, tasks: tuple[str, ...], run_all: bool, **kwargs: Any) -> None:
    """Run the periodic tasks of manager NAME now, once, in this process.

    Exit 1 when a task raised; exit 2 for an unknown task name.
    """
    from ..context import get_admin_context

    output = output_from(kwargs)
    if tasks and run_all:
        raise click.UsageError("give --task or --all, not both")
    _, manager = load_manager(name)
    runs = manager.run_tasks_now(get_admin_context(), None if run_all or not tasks else tasks)
    render_list([asdict(run) for run in runs], RUN_COLUMNS, output)
    failed = [run.task for run in runs if run.outcome == "failed"]
    if failed:
        raise TaskFailedError(
            f"periodic task {', '.join(failed)} failed", hint="see the error column"
        )

"""``managerctl capabilities``: what services publish to the scheduler."""

from __future__ import annotations

from typing import Any

import click

from ..errors import BadInputError, TaskFailedError
from .common import load_manager, manager_name_argument, output_from
from .output import output_options, render_list


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: {"load": {"1m": 0.5}} -> {"load.1m": 0.5}."""
    if not isinstance(value, dict):
        return {prefix or "value": value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(item, dict) and item:
            flat.update(flatten(item, path))
        else:
            flat[path] = item
    return flat


@click.group()
def capabilities() -> None:
    """Gather and show service capabilities."""


@capabilities.command("gather")
@manager_name_argument
@output_options
def gather(name: str, **kwargs: Any) -> None:
    """Run manager NAME's periodic tasks in this process and show the capabilities it would
    publish to the scheduler (one row per capability set, one column per key)."""
    from ..context import get_admin_context
    from ..manager import SchedulerDependentManager

    output = output_from(kwargs)
    _, manager = load_manager(name)
    if not isinstance(manager, SchedulerDependentManager):
        raise BadInputError(
            f"manager {name!r} is not a SchedulerDependentManager",
            hint="only those publish capabilities",
        )
    runs = manager.run_tasks_now(get_admin_context())
    rows = [
        {"service": manager.service_name, "host": manager.host, **flatten(item)}
        for item in manager.last_capabilities or []
    ]
    columns = ["service", "host"]
    for row in rows:
        columns += [key for key in row if key not in columns]
    render_list(rows, columns, output)
    failed = [run.task for run in runs if run.outcome == "failed"]
    if failed:
        raise TaskFailedError(f"periodic task {', '.join(failed)} failed while gathering")

"""``managerctl managers list | show NAME``."""

from __future__ import annotations

from typing import Any

import click

from .common import manager_name_argument, output_from
from .output import output_options, render_list, render_one


@click.group()
def managers() -> None:
    """List installed managers and show what one is."""


@managers.command("list")
@output_options
def list_managers(**kwargs: Any) -> None:
    """List the managers registered by entry point (group managerctl.managers)."""
    from ..loader import list_managers as entries

    output = output_from(kwargs)
    records = [
        {"name": e.name, "class": e.target, "distribution": e.distribution} for e in entries()
    ]
    render_list(records, ["name", "class", "distribution"], output)


@managers.command("show")
@manager_name_argument
@output_options
def show_manager(name: str, **kwargs: Any) -> None:
    """Show a manager: class, RPC API version, RPC methods, periodic tasks, hooks.

    NAME is an entry-point name (see `managers list`) or module:Class.
    """
    from ..loader import load_manager_class, resolve_name
    from ..manager import describe_manager_class

    output = output_from(kwargs)
    shown, _ = resolve_name(name)
    description = describe_manager_class(load_manager_class(name), shown)
    if output.format in ("json", "yaml") or output.columns:
        render_one(description, output)
        return
    summary = {
        key: description[key]
        for key in ("name", "class", "topic", "rpc_api_version", "scheduler_dependent", "summary")
    }
    render_one(summary, output, title=f"manager {shown}")
    render_list(
        description["rpc_methods"], ["name", "signature", "summary"], output, title="RPC methods"
    )
    render_list(
        description["periodic_tasks"],
        ["name", "spacing", "run_immediately", "external_process_ok"],
        output,
        title="periodic tasks",
    )
    render_list(description["hooks"], ["hook", "overridden"], output, title="hooks")

"""``managerctl hooks run NAME [HOOK...]``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from ..errors import TaskFailedError
from .common import load_manager, manager_name_argument, output_from
from .complete import complete_hook_names
from .output import output_options, render_list


@click.group()
def hooks() -> None:
    """Run a manager's lifecycle hooks."""


@hooks.command("run")
@manager_name_argument
@click.argument("hook_names", nargs=-1, metavar="[HOOK]...", shell_complete=complete_hook_names)
@output_options
def run_hooks_command(name: str, hook_names: tuple[str, ...], **kwargs: Any) -> None:
    """Run the lifecycle hooks (all by default) in seed order and report each.

    HOOK is one of init_host, pre_start_hook, post_start_hook. The order is always the
    service's: init_host, pre_start_hook, post_start_hook; a failing hook stops the rest
    (exit 1).
    """
    from ..manager import run_hooks

    output = output_from(kwargs)
    _, manager = load_manager(name)
    runs = run_hooks(manager, hook_names)
    render_list([asdict(run) for run in runs], ["hook", "outcome", "duration", "error"], output)
    failed = [run.hook for run in runs if run.outcome != "ok"]
    if failed:
        raise TaskFailedError(f"hook {failed[0]} failed", hint="see the error column")

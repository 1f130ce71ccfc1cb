"""Helpers shared by the command modules: the app state, loading managers, output."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .output import OutputOptions, options_from_kwargs

if TYPE_CHECKING:
    from .main import AppState


def app_state() -> AppState:
    """The global options of this invocation."""
    ctx = click.get_current_context()
    obj = ctx.find_root().obj
    if obj is None:  # invoked without the root group (e.g. in a test)
        from .main import AppState

        obj = ctx.find_root().obj = AppState()
    state: AppState = obj
    return state


def output_from(kwargs: dict[str, Any]) -> OutputOptions:
    return options_from_kwargs(kwargs, no_color=app_state().no_color)


def load_manager(name: str, host: str | None = None) -> tuple[str, Any]:
    """(topic, instance) of the named manager, built with this invocation's settings."""
    from ..loader import load_manager_class, resolve_name, topic_for

    cls = load_manager_class(name)
    shown, _ = resolve_name(name)
    settings = app_state().settings
    try:
        manager = cls(host=host or settings.host, service_name=shown, settings=settings)
    except Exception as exc:
        from ..errors import ManagerLoadError

        raise ManagerLoadError(
            f"manager {shown!r} failed to start: {type(exc).__name__}: {exc}",
            hint="check its constructor and configuration (--debug shows the traceback)",
        ) from exc
    return topic_for(name, cls), manager


def manager_name_argument(function: Any) -> Any:
    from .complete import complete_manager_names

    return click.argument("name", metavar="NAME", shell_complete=complete_manager_names)(function)


def watch_option(function: Any) -> Any:
    """``--watch [SECONDS]``: a refreshing view (cli.output.watch), for the views of the store."""
    return click.option(
        "--watch",
        type=click.FloatRange(min=0.2),
        is_flag=False,
        flag_value=2.0,
        default=None,
        metavar="[SECONDS]",
        help="Refresh every SECONDS (default 2) until Ctrl-C; a terminal highlights what "
        "changed, a pipe gets one snapshot per interval.",
    )(function)


def store_url_option(function: Any) -> Any:
    """``--store-url``: the collector's store, for the commands that read it."""
    return click.option(
        "--store-url",
        metavar="URL",
        help="The collector's store: sqlite:///PATH or postgresql://... (default: the "
        "capabilities_store option, $MANAGERCTL_CAPABILITIES_STORE, else the local SQLite file).",
    )(function)


def open_existing_store(store_url: str | None) -> Any:
    """The store ``--store-url`` (or the settings) names; it must exist already."""
    from ..capabilities import open_store, store_url_from

    return open_store(store_url or store_url_from(app_state().settings), must_exist=True)

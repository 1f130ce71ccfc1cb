"""Dynamic shell completion: manager, task, hook, RPC method, ``key=`` and host names.

Each function is a click ``shell_complete`` callback. They run on every TAB press, so they read
only what is already on this machine (entry points, manager classes, a small state file) and
never talk to a broker. A completion must never break the shell: any error yields no candidates.
Module level imports stay light (click, and of the stdlib only what a one-shot ``call`` loads
anyway) because the command modules import this for their ``shell_complete=``.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pathlib import Path

    from click.shell_completion import CompletionItem

Completer = Callable[[click.Context, click.Parameter, str], "list[CompletionItem]"]

# Parameter names that carry the request context rather than an RPC argument.
_CONTEXT_PARAMS = ("context", "ctxt", "ctx")


def _quiet(function: Completer) -> Completer:
    """Turn any error into "no candidates": a traceback in the middle of a prompt helps nobody."""

    @functools.wraps(function)
    def wrapper(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        try:
            return function(ctx, param, incomplete)
        except Exception:
            return []

    return wrapper


def _items(pairs: Iterable[tuple[str, str | None]], incomplete: str) -> list[CompletionItem]:
    from click.shell_completion import CompletionItem

    return [
        CompletionItem(value, help=help_text)
        for value, help_text in pairs
        if value.startswith(incomplete)
    ]


def _param(ctx: click.Context, name: str) -> Any:
    """A parameter given earlier on the line, even while an option's value is being completed."""
    value = ctx.params.get(name)
    if value is None and ctx.args:
        # click stops parsing at the option still waiting for its value (the one being
        # completed) and leaves the positional arguments unparsed in ctx.args: parse them alone.
        command, parent = ctx.command, ctx.parent
        with command.make_context(
            ctx.info_name, list(ctx.args), parent=parent, resilient_parsing=True
        ) as again:
            value = again.params.get(name)
    return value


def _manager_class(name: str) -> type | None:
    from ..loader import load_manager_class

    try:
        return load_manager_class(name)
    except Exception:
        return None


def _classes_for_topic(topic: str | None) -> list[type]:
    """The installed manager classes that serve ``topic`` (every one when it is unknown)."""
    from ..loader import manager_names, topic_for

    names = manager_names()
    if topic and topic in names:
        # The common case (TOPIC defaults to the entry-point name): import one class, not all.
        cls = _manager_class(topic)
        if cls is not None and topic_for(topic, cls) == topic:
            return [cls]
    classes = [(name, _manager_class(name)) for name in names]
    return [
        cls
        for name, cls in classes
        if cls is not None and (not topic or topic_for(name, cls) == topic)
    ]


@_quiet
def complete_manager_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Entry-point names of the installed managers; nothing is imported."""
    from ..loader import list_managers

    return _items(((entry.name, entry.target) for entry in list_managers()), incomplete)


@_quiet
def complete_topics(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The RPC topics of the installed managers."""
    from ..loader import list_managers, topic_for

    topics: dict[str, str] = {}
    for entry in list_managers():
        cls = _manager_class(entry.name)
        if cls is not None:
            topics.setdefault(topic_for(entry.name, cls), f"manager {entry.name}")
    return _items(sorted(topics.items()), incomplete)


@_quiet
def complete_task_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The periodic tasks of the manager named earlier on the line, minus those already given."""
    from ..periodic import task_specs

    cls = _manager_class(_param(ctx, "name") or "")
    if cls is None:
        return []
    given = set(ctx.params.get(param.name or "") or ())
    specs = [spec for spec in task_specs(cls) if spec.name not in given]
    return _items(((spec.name, f"every {spec.spacing:g}s") for spec in specs), incomplete)


@_quiet
def complete_hook_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The lifecycle hooks, in service order, minus those already given."""
    from ..names import HOOKS

    given = set(ctx.params.get(param.name or "") or ())
    return _items(((hook, None) for hook in HOOKS if hook not in given), incomplete)


@_quiet
def complete_rpc_methods(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """RPC methods of the managers serving ``--topic`` (of every installed one before it is
    given, since the topic usually comes after METHOD on the line)."""
    from ..manager import describe_manager_class

    methods: dict[str, str] = {}
    for cls in _classes_for_topic(_param(ctx, "topic")):
        for method in describe_manager_class(cls)["rpc_methods"]:
            methods.setdefault(method["name"], method["summary"] or method["signature"])
    return _items(sorted(methods.items()), incomplete)


@_quiet
def complete_rpc_arguments(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """``key=`` for each parameter of METHOD not given yet, read from the manager's signature."""
    from ..manager import describe_manager_class

    method = _param(ctx, "method")
    if not method or "=" in incomplete:
        return []
    pairs = ctx.params.get(param.name or "") or ()
    if any("=" not in pair for pair in pairs):
        # bash splits "key=" at the "=" (COMP_WORDBREAKS): the user is typing a value.
        return []
    given = {pair.partition("=")[0] for pair in pairs}
    keys: dict[str, str] = {}
    for cls in _classes_for_topic(_param(ctx, "topic")):
        exposed = {m["name"]: m["signature"] for m in describe_manager_class(cls)["rpc_methods"]}
        if method not in exposed:
            continue
        import inspect

        parameters = list(inspect.signature(getattr(cls, method)).parameters.values())[1:]
        if parameters and parameters[0].name in _CONTEXT_PARAMS:
            parameters = parameters[1:]
        for parameter in parameters:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if parameter.name not in given:
                keys.setdefault(f"{parameter.name}=", exposed[method])
    return _items(keys.items(), incomplete)


def hosts_file() -> Path:
    """Where completion reads known hosts: $MANAGERCTL_STATE_DIR/hosts, else
    $XDG_STATE_HOME/managerctl/hosts (~/.local/state/managerctl/hosts)."""
    from pathlib import Path

    state_dir = os.environ.get("MANAGERCTL_STATE_DIR")
    if state_dir:
        return Path(state_dir) / "hosts"
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local/state")
    return Path(xdg) / "managerctl" / "hosts"


def _store_path() -> Path | None:
    """The local SQLite store, if that is where capabilities and heartbeats are kept."""
    from ..capabilities import default_store_path, sqlite_path, store_url_from
    from ..errors import BadInputError

    url = store_url_from()
    if url is None:
        return default_store_path()
    try:
        return sqlite_path(url)  # None for a shared database: no network round trip on TAB
    except BadInputError:
        return None


def _store_hosts() -> set[str]:
    """Hosts the collector has seen (services and capabilities), read-only, never blocking."""
    path = _store_path()
    if not path or not os.path.exists(path):
        return set()
    import sqlite3

    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        ) as db:
            rows = db.execute(
                "SELECT host FROM managerctl_services UNION SELECT host FROM managerctl_capabilities"
            ).fetchall()
    except sqlite3.Error:
        return set()
    return {str(row[0]) for row in rows if row[0]}


def known_hosts() -> list[str]:
    """Last-known hosts: those in the local store, plus the hosts file (one a line, ``#``
    starts a comment). Never a live broker round trip, which would make TAB slow."""
    hosts = _store_hosts()
    try:
        text = hosts_file().read_text(encoding="utf-8")
    except OSError:
        text = ""
    hosts.update(line.split("#", 1)[0].strip() for line in text.splitlines())
    return sorted(host for host in hosts if host)


@_quiet
def complete_hosts(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Last-known hosts (see known_hosts)."""
    return _items(((host, None) for host in known_hosts()), incomplete)


@_quiet
def complete_call_hosts(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Last-known hosts, and ``-`` for any server of the topic."""
    pairs = [("-", "any server of the topic"), *((host, None) for host in known_hosts())]
    return _items(pairs, incomplete)

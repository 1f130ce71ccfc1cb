"""``managerctl capabilities``: what services publish to the scheduler, and what changed."""

from __future__ import annotations

import time
from typing import Any

import click

from ..capabilities import flatten
from ..errors import BadInputError, ManagerCtlError, TaskFailedError, UnavailableError
from .common import app_state, load_manager, manager_name_argument, output_from
from .complete import complete_hosts, complete_topics
from .output import output_options, render_list, text_value

__all__ = ["capabilities", "flatten"]

# How long `show --live` listens when --wait is not given.
DEFAULT_LIVE_WAIT = 3.0
PUBLISH_METHOD = "publish_service_capabilities"
UPDATE_METHOD = "update_service_capabilities"
HISTORY_COLUMNS = ["received_at", "service", "host", "summary", "added", "removed", "changed"]
# What a person reads; -f json/yaml/csv keep the whole diff, and -c picks any column.
HISTORY_TABLE_COLUMNS = ["received_at", "service", "host", "summary"]


def _store_url_option(function: Any) -> Any:
    return click.option(
        "--store-url",
        metavar="URL",
        help="The collector's store: sqlite:///PATH or postgresql://... (default: the "
        "capabilities_store option, $MANAGERCTL_CAPABILITIES_STORE, else the local SQLite file).",
    )(function)


def _topic_option(help_text: str) -> Any:
    return click.option(
        "--topic",
        "topics",
        multiple=True,
        metavar="TOPIC",
        help=help_text,
        shell_complete=complete_topics,
    )


def _open_store(store_url: str | None) -> Any:
    from ..capabilities import open_store, store_url_from

    return open_store(store_url or store_url_from(app_state().settings), must_exist=True)


def _default_topics(store_url: str | None, service: str | None = None) -> list[str]:
    """Topics to ask: those of the known services (of ``service``), else the configured ones."""
    from ..capabilities import known_topics

    settings = app_state().settings
    try:
        store = _open_store(store_url)
    except ManagerCtlError:
        # No store yet (or unreachable): asking the configured topics is still useful.
        store = None
    try:
        if service is not None:
            seen = [] if store is None else store.services(service=service)
            return list(dict.fromkeys(str(s["topic"]) for s in seen if s.get("topic"))) or [service]
        return known_topics(store, settings)
    finally:
        if store is not None:
            store.close()


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


def _listen_live(topics: list[str], wait: float) -> list[Any]:
    """Join the scheduler fanout, ask ``topics`` to publish, gather for ``wait`` seconds."""
    from ..capabilities import CapabilityRecord
    from ..context import get_admin_context
    from ..manager import SCHEDULER_TOPIC
    from ..rpc.listen import FanoutListener
    from ..rpc.transport import from_settings

    url, options = from_settings(app_state().settings)
    with FanoutListener(url, topic=SCHEDULER_TOPIC, options=options) as listener:
        context = get_admin_context()
        for topic in topics:
            listener.fanout_cast(context, topic, PUBLISH_METHOD)
        heard = listener.listen(wait)
    latest: dict[tuple[str, str], CapabilityRecord] = {}
    for received_at, request in heard:
        args = request.args
        if request.method != UPDATE_METHOD or not args.get("service_name") or not args.get("host"):
            continue
        caps = args.get("capabilities")
        record = CapabilityRecord(
            str(args["service_name"]),
            str(args["host"]),
            caps if isinstance(caps, list) else [caps],
            received_at,
        )
        latest[(record.service, record.host)] = record
    return [latest[key] for key in sorted(latest)]


@capabilities.command("show")
@click.option("--service", metavar="SERVICE", help="Only this service.")
@click.option("--host", metavar="HOST", help="Only this host.", shell_complete=complete_hosts)
@click.option(
    "--stale",
    "stale_after",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Mark a record older than this stale (default: capabilities_stale_after, 180).",
)
@_store_url_option
@click.option(
    "--live",
    is_flag=True,
    help="Do not read the store: join the scheduler fanout, ask services to publish, gather.",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=DEFAULT_LIVE_WAIT,
    show_default=True,
    metavar="SECONDS",
    help="With --live: how long to gather.",
)
@_topic_option(
    "With --live: ask this topic to publish (repeatable; default: the known services' "
    "topics and collector_topics)."
)
@output_options
def show(
    service: str | None,
    host: str | None,
    stale_after: float,
    store_url: str | None,
    live: bool,
    wait: float,
    topics: tuple[str, ...],
    **kwargs: Any,
) -> None:
    """Show the last capabilities of every service and host: one row each, with their age,
    a state (stale or fresh) and one column per capability key (nested keys dotted).

    By default from the collector's store (managerctl serve collector keeps it). With --live,
    without any collector: a temporary queue joins the scheduler fanout, every service of the
    topics is asked to publish now, and what arrives within --wait seconds is shown; the queue
    is deleted afterwards. Exit 69 when --live heard nobody.

    \b
    Examples:
      managerctl capabilities show
      managerctl capabilities show --host web01 -f json
      managerctl capabilities show --live --wait 5 -c host -c cpu_count
    """
    from ..capabilities import capability_columns, capability_rows

    output = output_from(kwargs)
    if topics and not live:
        raise click.UsageError("--topic is for --live (the store keeps every topic)")
    if live:
        asked = list(topics) or _default_topics(store_url)
        records = _listen_live(asked, wait)
        if not records:
            raise UnavailableError(
                f"no service published capabilities within {wait:g}s "
                f"(asked: {', '.join(asked) or 'nobody'})",
                hint="are services running, and is --topic right? raise --wait",
            )
        records = [
            record
            for record in records
            if (service is None or record.service == service)
            and (host is None or record.host == host)
        ]
    else:
        with _open_store(store_url) as store:
            records = store.latest(service=service, host=host)
    if stale_after is None:
        stale_after = float(app_state().settings.capabilities_stale_after)
    rows = capability_rows(records, time.time(), stale_after)
    render_list(rows, capability_columns(rows), output)


@capabilities.command("publish")
@click.option(
    "--service",
    metavar="SERVICE",
    help="Ask only the topics this service was seen on (else the topic named like it).",
)
@_topic_option(
    "Ask this topic (repeatable; default: the known services' topics and collector_topics)."
)
@_store_url_option
@output_options
def publish(
    service: str | None, topics: tuple[str, ...], store_url: str | None, **kwargs: Any
) -> None:
    """Ask services to publish their capabilities now (a fanout cast of
    publish_service_capabilities to each topic); a running collector stores what they send.

    Prints the topics asked. Nothing listening on a topic is not an error (as in oslo).
    """
    from ..context import get_admin_context
    from ..rpc.client import RPCClient
    from ..rpc.transport import fanout_exchange_name, from_settings

    output = output_from(kwargs)
    chosen = list(dict.fromkeys(topics)) or _default_topics(store_url, service)
    url, options = from_settings(app_state().settings)
    with RPCClient(url, options=options) as client:
        context = get_admin_context()
        for topic in chosen:
            client.cast(context, PUBLISH_METHOD, topic=topic, fanout=True)
    rows = [{"topic": topic, "exchange": fanout_exchange_name(topic)} for topic in chosen]
    render_list(rows, ["topic", "exchange"], output)


def _summary(diff: dict[str, dict[str, Any]]) -> str:
    parts = [f"+{key}={text_value(value)}" for key, value in diff.get("added", {}).items()]
    parts += [
        f"{key}: {text_value(change.get('old'))} -> {text_value(change.get('new'))}"
        for key, change in diff.get("changed", {}).items()
    ]
    parts += [f"-{key}" for key in diff.get("removed", {})]
    return "; ".join(parts)


@capabilities.command("history")
@click.argument("host", shell_complete=complete_hosts)
@click.option("--service", metavar="SERVICE", help="Only this service.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Show at most the last N changes.",
)
@_store_url_option
@output_options
def history(
    host: str, service: str | None, limit: int, store_url: str | None, **kwargs: Any
) -> None:
    """Show what changed in HOST's capabilities, and when: one row per change, oldest first.

    The table shows a summary (+key=value added, key: old -> new changed, -key removed);
    -f json, yaml and csv also carry the diff as added, removed and changed (keys dotted).
    """
    from ..capabilities import iso_time

    output = output_from(kwargs)
    with _open_store(store_url) as store:
        changes = store.history(host, service=service, limit=limit)
    rows = [
        {
            "received_at": iso_time(change.received_at),
            "service": change.service,
            "host": change.host,
            "summary": _summary(change.diff),
            "added": change.diff.get("added", {}),
            "removed": change.diff.get("removed", {}),
            "changed": change.diff.get("changed", {}),
        }
        for change in changes
    ]
    human = output.format in ("table", "value")
    render_list(rows, HISTORY_TABLE_COLUMNS if human else HISTORY_COLUMNS, output)

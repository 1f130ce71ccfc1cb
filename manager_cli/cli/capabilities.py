"""``managerctl capabilities``: what services publish to the scheduler, and what changed."""

from __future__ import annotations

import time
from typing import Any

import click

from ..capabilities import flatten
from ..errors import BadInputError, TaskFailedError
from .common import (
    app_state,
    load_manager,
    manager_name_argument,
    open_existing_store,
    output_from,
    store_url_option,
    watch_option,
)
from .complete import complete_hosts, complete_topics
from .output import check_column_names, output_options, render_list, text_value

__all__ = ["capabilities", "flatten"]

# How long `show --live` listens when --wait is not given.
DEFAULT_LIVE_WAIT = 3.0
HISTORY_COLUMNS = ["received_at", "service", "host", "summary", "added", "removed", "changed"]
# What a person reads; -f json/yaml/csv keep the whole diff, and -c picks any column.
HISTORY_TABLE_COLUMNS = ["received_at", "service", "host", "summary"]


def _topic_option(help_text: str) -> Any:
    return click.option(
        "--topic",
        "topics",
        multiple=True,
        metavar="TOPIC[:VERSION]",
        help=help_text,
        shell_complete=complete_topics,
    )


def _scheduler_topic_option(function: Any) -> Any:
    return click.option(
        "--scheduler-topic",
        metavar="TOPIC",
        help="The family's scheduler topic, whose fanout capabilities go to (default: the "
        "scheduler_topic option, scheduler; cinder: cinder-scheduler).",
        shell_complete=complete_topics,
    )(function)


def _version_option(function: Any) -> Any:
    return click.option(
        "--version",
        "rpc_version",
        metavar="VERSION",
        help="Cast publish_service_capabilities at this version (default: the family's: "
        "cinder-volume 3.0, managerctl's own 1.0, or what a service's heartbeat reported).",
    )(function)


def _scheduler_topic(given: str | None) -> str:
    from ..ops.capabilities import scheduler_topic

    return scheduler_topic(app_state().settings, given)


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


@capabilities.command("show")
@click.argument("host_arg", metavar="[HOST]", required=False, shell_complete=complete_hosts)
@click.option("--service", metavar="SERVICE", help="Only this service.")
@click.option(
    "--host",
    metavar="HOST",
    help="Only this host (host@backend#pool: only that pool).",
    shell_complete=complete_hosts,
)
@click.option(
    "--stale",
    "stale_after",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Mark a record older than this stale (default: capabilities_stale_after, 180).",
)
@store_url_option
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
@_scheduler_topic_option
@_topic_option(
    "With --live: ask this topic to publish, at VERSION if given (repeatable; default: the "
    "family's publishers and the managerctl services that publish)."
)
@_version_option
@watch_option
@output_options
def show(
    host_arg: str | None,
    service: str | None,
    host: str | None,
    stale_after: float,
    store_url: str | None,
    live: bool,
    wait: float,
    scheduler_topic: str | None,
    topics: tuple[str, ...],
    rpc_version: str | None,
    watch: float | None,
    **kwargs: Any,
) -> None:
    """Show the last capabilities of every service and host: one row each, with their age,
    a state (stale or fresh) and one column per capability key (nested keys dotted).

    With HOST (or --host matching one host) a table shows one card instead: every key and
    value, grouped by dotted prefix, pools as a sub-table. A terminal table shows what fits,
    identity columns whole, and names what it left out (--wide for all, -c to choose).

    A list of dicts such as cinder's pools gives one row per pool, named as cinder names
    pools (host@backend#pool), with the pool's keys as columns: -c pools.total_capacity_gb.

    By default from the collector's store (managerctl serve collector keeps it). With --live,
    without any collector: a queue of its own joins the scheduler topic's fanout, the family's
    publishers are asked to publish now (each at its version), and what arrives within --wait
    seconds is shown; the queue is deleted afterwards. Exit 69 when --live heard nobody.

    \b
    Examples:
      managerctl capabilities show
      managerctl capabilities show web01
      managerctl capabilities show --watch 5
      managerctl capabilities show --host web01 -f json
      managerctl capabilities show --live --wait 5 -c host -c cpu_count
      managerctl capabilities show --live --scheduler-topic cinder-scheduler \\
          -c host -c pools.total_capacity_gb -c pools.free_capacity_gb
    """
    from ..capabilities import capability_columns, capability_rows
    from ..capabilities.families import parse_target

    output = output_from(kwargs)
    if host_arg and host and host_arg != host:
        raise click.UsageError("give HOST or --host, not both")
    host = host_arg or host
    if (topics or rpc_version or scheduler_topic) and not live:
        raise click.UsageError(
            "--scheduler-topic, --topic and --version are for --live (the store keeps every topic)"
        )
    if watch is not None and live:
        raise click.UsageError("--watch reads the store: run a collector, or repeat --live")
    # Everything that can be checked is checked before any waiting.
    check_column_names(output)
    for topic in (*topics, *(() if rpc_version is None else ("-",))):
        parse_target(topic, rpc_version)
    record_host, _, pool = (host or "").partition("#")
    if stale_after is None:
        stale_after = float(app_state().settings.capabilities_stale_after)

    def records_now() -> list[Any]:
        if live:
            from ..ops.capabilities import live_records

            found = live_records(
                app_state().settings,
                store_url,
                _scheduler_topic(scheduler_topic),
                topics,
                rpc_version,
                wait,
            )
            return [
                record
                for record in found
                if (service is None or record.service == service)
                and (not record_host or record.host == record_host)
            ]
        with open_existing_store(store_url) as store:
            if record_host:
                # One host (a card): its keys in the order it published them.
                return store.latest(service=service, host=record_host)
            return store.latest_flat(service=service)

    def rows_of(records: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
        rows = capability_rows(records, time.time(), stale_after)
        if pool:
            rows = [row for row in rows if row["host"] == host]
        columns = capability_columns(rows)
        if output.format == "table":
            # The age says when, at a glance; the timestamp stays in json/csv and with -c.
            columns.remove("received_at")
        return rows, columns

    if watch is not None:
        from .output import watch as watch_view

        watch_view(
            lambda: rows_of(records_now()),
            watch,
            output,
            title=lambda: f"capabilities at {time.strftime('%H:%M:%S')} (Ctrl-C to stop)",
        )
        return
    # The rows make no cycles: the cyclic collector would only walk the millions of objects
    # of a big store's rows again and again (100,000 hosts: a tenth of the time).
    import gc

    collecting = gc.isenabled()
    gc.disable()
    try:
        records = records_now()
        if host and output.format == "table" and not output.columns and len(records) == 1:
            _card(records[0], stale_after, output)
            return
        rows, columns = rows_of(records)
        services = sorted({row["service"] for row in rows})
        if (
            output.format == "table"
            and not output.columns
            and len(services) > 1
            and (output.is_tty())
        ):
            # On a terminal, a table a service: each shows its own keys first, and what one
            # service publishes never crowds out another's (json, csv and a pipe: one table).
            for name in services:
                part = [row for row in rows if row["service"] == name]
                # The title names the service: its column would only take the width.
                part_columns = [
                    c for c in capability_columns(part) if c in columns and c != "service"
                ]
                render_list(part, part_columns, output, title=name, open_columns=live)
            return
        # Live keys are only known once the wait is over: a key no host published is an empty
        # column and a note, not an error that throws the whole wait away.
        render_list(rows, columns, output, open_columns=live)
    finally:
        if collecting:
            gc.enable()


def _card(record: Any, stale_after: float, output: Any) -> None:
    from ..capabilities import iso_time
    from .output import relative_age, render_card

    age = max(0.0, time.time() - record.received_at)
    state = "stale" if age > stale_after else "fresh"
    heading = (
        f"{record.service} on {record.host}: {state}, published {relative_age(age)} ago "
        f"({iso_time(record.received_at)})"
    )
    render_card(heading, record.flat, output)


@capabilities.command("publish")
@click.option(
    "--service",
    metavar="SERVICE",
    help="Ask only the topics this service was seen on (its heartbeats say where).",
)
@_scheduler_topic_option
@_topic_option(
    "Ask this topic, at VERSION if given (repeatable; default: the family's publishers and "
    "the managerctl services that publish to the scheduler topic)."
)
@_version_option
@store_url_option
@output_options
def publish(
    service: str | None,
    scheduler_topic: str | None,
    topics: tuple[str, ...],
    rpc_version: str | None,
    store_url: str | None,
    **kwargs: Any,
) -> None:
    """Ask services to publish their capabilities now: a fanout cast of
    publish_service_capabilities to each topic, at the version its family speaks (cinder-volume
    3.0, managerctl's own managers 1.0); a running collector stores what they send.

    One row per topic asked, with whether any queue was bound to its fanout exchange. The
    broker can tell whether anybody could receive the request, not whether they accepted it:
    capabilities show --live confirms what came back. Exit 0 when every topic had a listener,
    3 when some had none, 69 when none had (nobody could accept it).

    \b
    Examples:
      managerctl capabilities publish
      managerctl capabilities publish --scheduler-topic cinder-scheduler
      managerctl capabilities publish --topic cinder-volume:3.0
    """
    from ..errors import NoConsumerError, PartialResultError
    from ..names import fanout_exchange_name
    from ..ops import capabilities as live

    output = output_from(kwargs)
    check_column_names(output)
    settings = app_state().settings
    scheduler = _scheduler_topic(scheduler_topic)
    chosen = live.publish_targets(settings, store_url, scheduler, topics, rpc_version, service)
    if not chosen:
        raise BadInputError(
            f"no publisher of {scheduler!r} is known",
            hint="give --topic TOPIC[:VERSION], or set collector_topics",
        )
    rows = live.publish(settings, chosen)
    render_list(rows, ["topic", "version", "exchange", "listeners"], output)
    unheard = [row["topic"] for row in rows if row["listeners"] == "none"]
    if len(unheard) == len(rows):
        raise NoConsumerError(
            f"nobody listens on {', '.join(fanout_exchange_name(t) for t in unheard)}: "
            "no service could accept the request",
            hint="are the services running, and is --topic (or --scheduler-topic) right?",
        )
    if unheard:
        raise PartialResultError(f"nobody listens on {', '.join(unheard)}'s fanout")


def _summary(diff: dict[str, dict[str, Any]]) -> str:
    parts = [f"+{key}={text_value(value)}" for key, value in diff.get("added", {}).items()]
    parts += [
        f"{key}: {text_value(change.get('old'))} -> {text_value(change.get('new'))}"
        for key, change in diff.get("changed", {}).items()
    ]
    parts += [f"-{key}" for key in diff.get("removed", {})]
    return "; ".join(parts)


def _since(text: str | None) -> float | None:
    """``--since``: a duration back from now (90s, 30m, 6h, 2d) or an ISO 8601 time."""
    import datetime
    import re

    if text is None:
        return None
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if found:
        size = {"s": 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)]
        return time.time() - float(found.group(1)) * size
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInputError(
            f"bad --since {text!r}", hint="give a duration (30m, 6h, 2d) or an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


@capabilities.command("history")
@click.argument("host", shell_complete=complete_hosts)
@click.option("--service", metavar="SERVICE", help="Only this service.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Show at most the last N changes (default 100; with --key 10000).",
)
@click.option(
    "--key",
    metavar="KEY",
    help="Plot this (dotted) capability key's values over time, with min / max / last; "
    "-f json/csv give the raw points.",
)
@click.option(
    "--since",
    metavar="WHEN",
    help="Only changes since WHEN: a duration back from now (30m, 6h, 2d) or an ISO 8601 time.",
)
@store_url_option
@output_options
def history(
    host: str,
    service: str | None,
    limit: int | None,
    key: str | None,
    since: str | None,
    store_url: str | None,
    **kwargs: Any,
) -> None:
    """Show what changed in HOST's capabilities, and when: one row per change, oldest first.

    The table shows a summary (+key=value added, key: old -> new changed, -key removed);
    -f json, yaml and csv also carry the diff as added, removed and changed (keys dotted).
    With --key, the values of that key are plotted in the terminal instead (a step line: the
    history keeps changes only), with min, max and last.

    \b
    Examples:
      managerctl capabilities history web01 --since 6h
      managerctl capabilities history web01 --key load.1m
      managerctl capabilities history web01 --key memory_available_mb -f csv
    """
    from ..capabilities import iso_time

    output = output_from(kwargs)
    check_column_names(output)
    starting = _since(since)
    chosen_limit = limit or (10_000 if key else 100)
    with open_existing_store(store_url) as store:
        changes = store.history(host, service=service, limit=chosen_limit, since=starting)
    if key:
        _plot_history(host, key, changes, output)
        return
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


def _plot_history(host: str, key: str, changes: list[Any], output: Any) -> None:
    import shutil

    from ..capabilities import iso_time
    from ..capabilities.records import key_series
    from .output import message, plot_series

    series = key_series(changes, key)
    if output.format != "table":
        rows = [
            {"received_at": iso_time(at), "service": name, "host": host, "key": key, "value": v}
            for name, points in series.items()
            for at, v in points
        ]
        render_list(rows, ["received_at", "service", "host", "key", "value"], output)
        return
    if not series:
        raise BadInputError(
            f"no change of {key!r} on {host!r} in the history",
            hint="capabilities history HOST lists what changed; keys are dotted (load.1m)",
        )
    width = output.width or shutil.get_terminal_size((100, 24)).columns
    out = output.out
    for name, points in series.items():
        numeric = [(at, v) for at, v in points if isinstance(v, (int, float))]
        numeric = [(at, v) for at, v in numeric if not isinstance(v, bool)]
        if not numeric:
            message(f"{key} of {name} on {host} is not a number: nothing to plot (try -f json)")
            continue
        values = [v for _, v in numeric]
        out.write(
            f"{key} of {name} on {host}: min {text_value(min(values))}, "
            f"max {text_value(max(values))}, last {text_value(values[-1])} "
            f"({len(numeric)} changes, {iso_time(numeric[0][0])} .. {iso_time(numeric[-1][0])})\n"
        )
        for line in plot_series(numeric, width):
            out.write(line.rstrip() + "\n")

"""``managerctl services list``: every service seen, up or down by the age of its heartbeat."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import click

from ..timefmt import iso_utc_or_as_is
from .common import (
    app_state,
    open_existing_store,
    output_from,
    store_url_option,
    watch_option,
)
from .complete import complete_hosts
from .output import output_options, render_list

SERVICE_COLUMNS = ["service", "host", "topic", "state", "updated_at", "age_s", "version", "pid"]


def service_rows(
    records: Iterable[Mapping[str, Any]], now: float, service_down_time: float
) -> list[dict[str, Any]]:
    """One row per service record, ``state`` as ``nova service-list`` decides it.

    A service is up while ``now - updated_at <= service_down_time``; one that said it stopped
    (its last report has status ``stopped``) is down at once.
    """
    rows = []
    for record in records:
        updated_at = record.get("updated_at")
        age = max(0.0, now - float(updated_at)) if updated_at is not None else None
        up = age is not None and age <= service_down_time and record.get("status") != "stopped"
        rows.append(
            {
                "service": record.get("service"),
                "host": record.get("host"),
                "topic": record.get("topic"),
                "state": "up" if up else "down",
                "updated_at": iso_utc_or_as_is(updated_at),
                "age_s": None if age is None else round(age, 1),
                "version": record.get("version"),
                "pid": record.get("pid"),
                "status": record.get("status"),
                "started": iso_utc_or_as_is(record.get("started")),
                "report_count": record.get("report_count"),
            }
        )
    return rows


@click.group()
def services() -> None:
    """Show the services that report their state (heartbeats) to the collector."""


@services.command("list")
@store_url_option
@click.option("--service", "service_name", metavar="NAME", help="Only this service.")
@click.option(
    "--host", metavar="HOST", help="Only the services of this host.", shell_complete=complete_hosts
)
@watch_option
@output_options
def list_services(
    store_url: str | None,
    service_name: str | None,
    host: str | None,
    watch: float | None,
    **kwargs: Any,
) -> None:
    """List every service the collector has heard from, as nova service-list does.

    A service is up while its last state report is at most service_down_time seconds old
    (default 60; services report every report_interval, default 10), and down once it is
    older, or at once when its last report said it stopped. Reports are stored by a running
    collector (managerctl serve collector).

    \b
    Examples:
      managerctl services list
      managerctl services list --host web01 -f json
      managerctl services list --watch
      managerctl services list --store-url postgresql://ops:secret@db/managerctl
    """
    output = output_from(kwargs)
    settings = app_state().settings

    def rows_now() -> tuple[list[dict[str, Any]], list[str]]:
        with open_existing_store(store_url) as store:
            records = store.services(service=service_name, host=host)
        rows = service_rows(records, time.time(), float(settings.service_down_time))
        return rows, SERVICE_COLUMNS

    if watch is not None:
        from .output import watch as watch_view

        watch_view(
            rows_now,
            watch,
            output,
            title=lambda: f"services at {time.strftime('%H:%M:%S')} (Ctrl-C to stop)",
        )
        return
    rows, columns = rows_now()
    render_list(rows, columns, output)


@services.command("delete")
@click.argument("host", shell_complete=complete_hosts)
@click.option(
    "--service", "service_name", metavar="NAME", help="Only this service of HOST (default: all)."
)
@store_url_option
@output_options
def delete_service(host: str, service_name: str | None, store_url: str | None, **kwargs: Any):
    """Forget the services of HOST (their heartbeat records and capabilities), as nova
    service-delete does: for a host taken out of the cloud. A service still running comes back
    with its next heartbeat. Exit 2 when no such service is known."""
    output = output_from(kwargs)
    with open_existing_store(store_url) as store:
        found = store.services(service=service_name, host=host)
        names = [str(r["service"]) for r in found]
        if service_name and not names:
            names = [r.service for r in store.latest(service=service_name, host=host)]
        if not names:
            names = sorted({r.service for r in store.latest(host=host)})
        if not names:
            from ..errors import UnknownNameError

            raise UnknownNameError(
                f"no service {service_name + ' ' if service_name else ''}on {host!r} is known",
                hint="managerctl services list shows what is",
            )
        for name in names:
            store.delete_service(name, host)
    render_list([{"service": n, "host": host, "deleted": "yes"} for n in names],
                ["service", "host", "deleted"], output)  # fmt: skip


@services.command("prune")
@click.option(
    "--older-than",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Forget services whose last heartbeat is older than this (default: the "
    "services_prune_after option, else 7 days).",
)
@store_url_option
@output_options
def prune_services(older_than: float | None, store_url: str | None, **kwargs: Any) -> None:
    """Forget every service that has not reported for --older-than seconds (and its
    capabilities), one row per service forgotten."""
    output = output_from(kwargs)
    configured = float(getattr(app_state().settings, "services_prune_after", 0) or 0)
    limit = older_than or configured or 7 * 86400.0
    with open_existing_store(store_url) as store:
        gone = store.prune_services(limit)
        store.reclaim()
    render_list([{"service": s, "host": h} for s, h in gone], ["service", "host"], output)

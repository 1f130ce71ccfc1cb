"""``managerctl services list``: every service seen, up or down by the age of its heartbeat."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import click

from ..timefmt import iso_utc_or_as_is
from .common import app_state, output_from
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
@click.option(
    "--store-url",
    metavar="URL",
    help="The collector's store: sqlite:///PATH or postgresql://... (default: the "
    "capabilities_store option, $MANAGERCTL_CAPABILITIES_STORE, else the local SQLite file).",
)
@click.option("--service", "service_name", metavar="NAME", help="Only this service.")
@click.option(
    "--host", metavar="HOST", help="Only the services of this host.", shell_complete=complete_hosts
)
@output_options
def list_services(
    store_url: str | None, service_name: str | None, host: str | None, **kwargs: Any
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
      managerctl services list --store-url postgresql://ops:secret@db/managerctl
    """
    from ..capabilities import open_store, store_url_from

    output = output_from(kwargs)
    settings = app_state().settings
    with open_store(store_url or store_url_from(settings), must_exist=True) as store:
        records = store.services(service=service_name, host=host)
    rows = service_rows(records, time.time(), float(settings.service_down_time))
    render_list(rows, SERVICE_COLUMNS, output)

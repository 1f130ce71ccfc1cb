"""Capabilities: what services publish to the scheduler, kept by the collector, shown by the CLI.

- :mod:`.records`: the records and pure views over them (flatten, diff, rows, columns);
- :mod:`.backends`: the databases a store runs on (SQLite, any SQLAlchemy URL);
- :mod:`.families`: SchedulerDependentManager families (scheduler topic, publishers, versions);
- :mod:`.store`: the store (last capabilities, their history, service heartbeats) and where it is;
- :mod:`.collector`: the collector manager (``managerctl serve collector``).

The collector fills a store from every ``update_service_capabilities`` fanout cast and keeps the
last capabilities per (service, host) with the time they arrived, a history row with the diff
whenever they change, and the services' heartbeat records. Core package: no pika, click or rich;
the collector module is imported only by whoever serves it.
"""

from __future__ import annotations

from .families import PublishTarget, collector_topics, parse_target, publish_targets
from .records import (
    DEFAULT_STALE_AFTER,
    ROW_COLUMNS,
    CapabilityRecord,
    Change,
    capability_columns,
    capability_rows,
    diff_capabilities,
    flatten,
    flatten_capabilities,
    iso_time,
)
from .store import (
    STORE_ENV,
    CapabilityStore,
    default_store_path,
    open_store,
    sqlite_path,
    store_url_from,
)

__all__ = [
    "DEFAULT_STALE_AFTER",
    "ROW_COLUMNS",
    "STORE_ENV",
    "CapabilityRecord",
    "CapabilityStore",
    "PublishTarget",
    "Change",
    "capability_columns",
    "capability_rows",
    "collector_topics",
    "default_store_path",
    "diff_capabilities",
    "flatten",
    "flatten_capabilities",
    "iso_time",
    "parse_target",
    "publish_targets",
    "open_store",
    "sqlite_path",
    "store_url_from",
]

"""The capabilities store: what the collector keeps, what ``capabilities`` shows.

The collector (``managerctl serve collector``) receives every ``update_service_capabilities``
fanout cast and keeps the last capabilities per (service, host) with the time they arrived, a
history row with the diff whenever they change, and the services' heartbeat records. The store is
an embedded SQLite file by default, or any SQLAlchemy URL (PostgreSQL) when a team shares one.

Core module: no pika, click or rich. ``sqlite3`` and SQLAlchemy are imported only by
:func:`open_store`, so importing this module stays cheap.

Concurrency: one writer (the collector) and any number of readers (``capabilities show``, in
other processes). SQLite runs in WAL mode, so readers never block the writer nor the writer the
readers, and every connection waits (``busy_timeout``) rather than failing on a lock. Within one
process a store object may be shared between threads: its operations are serialised.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import DEFAULT_GROUP
from ..config import default as _option_default
from ..errors import BadInputError, ManagerCtlError, UnavailableError
from ..redact import mask_url_passwords
from .backends import (
    _CAPS,
    _CHANGES,
    _DELETE_CAPS,
    _DELETE_OLD_CHANGES,
    _DELETE_SERVICE,
    _INSERT_CHANGE,
    _MIGRATIONS,
    _PRUNE_CHANGES,
    _REWRITE_CAPS,
    _SCHEMA,
    _SERVICES,
    _TOUCH_CAPS,
    _UPSERT_CAPS_FINAL,
    _UPSERT_SERVICE,
    SCHEMA_VERSION,
    _Backend,
    _schema,
    _sqlalchemy_url,
    _SQLAlchemyBackend,
    _SQLiteBackend,
    _where,
)
from .records import (
    CapabilityRecord,
    Change,
    FlatRecord,
    compact_json,
    diff_flat,
    diff_from_text,
    diff_text,
    flatten_capabilities,
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "STORE_ENV",
    "CapabilityStore",
    "default_store_path",
    "open_store",
    "sqlite_path",
    "store_url_from",
]

STORE_ENV = "MANAGERCTL_CAPABILITIES_STORE"
# History rows kept per (service, host): what changed lately, whatever the host. A publisher
# whose load changes every minute keeps its last hour, one that changes seldom its last 60
# changes (up to DEFAULT_HISTORY_MAX_AGE). bench_capabilities.py's day: 10,000 hosts, every
# publication a change, stay under 100 MB on SQLite; a store of hosts that change less, less.
# The numbers are the options' (capabilities_history_keep: 60 changes; ..._max_age: one day,
# whatever the count), declared once in manager_cli.config.
DEFAULT_HISTORY_KEEP: int = _option_default("capabilities_history_keep", DEFAULT_GROUP)
DEFAULT_HISTORY_MAX_AGE: float = _option_default("capabilities_history_max_age", DEFAULT_GROUP)
# Hosts whose current rows one batch reads per query (well under SQLite's parameter limit).
BATCH_LOOKUP = 500
_TOUCH_KEYS = ("service", "host", "received_at")
_REWRITE_KEYS = (*_TOUCH_KEYS, "capabilities")
# Old history rows of a host are pruned on its first change and then every this many changes.
PRUNE_EVERY = 50

_T = TypeVar("_T")

# ---------------------------------------------------------------------------
# Where the store is


def default_store_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/managerctl/capabilities.sqlite`` (``~/.local/state/...`` by default)."""
    environ = os.environ if environ is None else environ
    state_home = environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state_home) / "managerctl" / "capabilities.sqlite"


def store_url_from(
    settings: Settings | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The configured store URL: ``[DEFAULT] capabilities_store``, else $MANAGERCTL_CAPABILITIES_STORE.

    None means the default SQLite file (:func:`default_store_path`).
    """
    environ = os.environ if environ is None else environ
    configured = getattr(settings, "capabilities_store", None) if settings is not None else None
    return configured or environ.get(STORE_ENV) or None


# ---------------------------------------------------------------------------
# The store


class CapabilityStore:
    """Last capabilities per (service, host), their change history, and service heartbeats."""

    def __init__(self, backend: _Backend, *, history_keep: int = DEFAULT_HISTORY_KEEP) -> None:
        self._backend = backend
        self.history_keep = history_keep
        self._errors = backend.errors()
        self._closed = False
        # Whether the store has the flattened capabilities column (schema 2; a reader of an
        # older store it cannot migrate does without).
        self._has_flat = True
        self._changes_since_prune: dict[tuple[str, str], int] = {}
        # At most a tenth of history_keep past it, so the cap is what bounds the store.
        self.prune_every = max(1, min(PRUNE_EVERY, history_keep // 10))

    @property
    def description(self) -> str:
        """Where the store is, safe to print (passwords masked)."""
        return self._backend.description

    def __repr__(self) -> str:
        return f"<CapabilityStore {self.description}>"

    def __enter__(self) -> CapabilityStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection(s); the store cannot be used afterwards."""
        if not self._closed:
            self._closed = True
            self._backend.close()

    @contextlib.contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Database errors become managerctl's (exit 69): the store is unusable right now."""
        try:
            yield
        except ManagerCtlError:
            raise
        except self._errors as exc:
            text = mask_url_passwords(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise UnavailableError(
                f"the capabilities store {self.description} failed: {text}",
                hint="check that the database is reachable and not locked by another writer",
            ) from None

    def _run(self, write: bool, work: Callable[[_Backend], _T]) -> _T:
        """``work(db)`` in one transaction; retried once on a fresh connection if the server
        had dropped the old one (the transaction then never happened)."""
        with self._mapped_errors():
            for attempt in (1, 2):
                try:
                    with self._backend.write() if write else self._backend.read() as db:
                        return work(db)
                except self._errors as exc:
                    if attempt == 2 or not self._backend.is_disconnect(exc):
                        raise
        raise AssertionError("unreachable")

    def _create_schema(self) -> None:
        backend = self._backend
        serial = backend.serial_key

        def create(db: _Backend) -> None:
            for statement in _schema(serial):
                db.execute(statement)
            if not db.query(f"SELECT version FROM {_SCHEMA}"):
                db.execute(f"INSERT INTO {_SCHEMA} (version) VALUES (:v)", {"v": SCHEMA_VERSION})

        if backend.schema_missing():
            self._run(True, create)
        self._migrate()

    def _migrate(self) -> None:
        """Bring an older store up to SCHEMA_VERSION. A reader that cannot write (a read-only
        file) goes on without: what a newer column would hold is then computed when read."""
        rows = self._run(False, lambda db: db.query(f"SELECT max(version) FROM {_SCHEMA}"))
        version = int(rows[0][0] or SCHEMA_VERSION) if rows else SCHEMA_VERSION
        if version >= SCHEMA_VERSION:
            return

        def migrate(db: _Backend) -> None:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS.get(step, []):
                    db.execute(statement)
            db.execute(f"UPDATE {_SCHEMA} SET version = :v", {"v": SCHEMA_VERSION})

        try:
            self._run(True, migrate)
        except UnavailableError:
            self._has_flat = False

    # -- capabilities ------------------------------------------------------------------

    def record_capabilities(
        self,
        service: str,
        host: str,
        capabilities: Any,
        received_at: float | None = None,
    ) -> bool:
        """Keep these as the last capabilities of (service, host); True when they changed.

        A single value is wrapped in a list, as SchedulerDependentManager does. A change also
        appends a history row with the diff (the first record of a host is all "added").
        """
        received_at = time.time() if received_at is None else float(received_at)
        return self.record_many([(service, host, capabilities, received_at)]) == 1

    def record_many(self, updates: Sequence[tuple[str, str, Any, float]]) -> int:
        """Keep many (service, host, capabilities, received_at) updates, in order, in one
        transaction; the number that changed something. What a collector under load writes:
        one read of the current rows per BATCH_LOOKUP hosts, then one statement per kind.

        Capabilities are kept as compact JSON in the order they were published, so an update
        is compared with what is stored as text, and flattened and diffed only when the text
        differs; a history row is written only when the values changed (the same values in
        another order only replace the text).
        """
        prepared = []
        for service, host, capabilities, received_at in updates:
            if not service or not host:
                raise BadInputError("a capability record needs a service and a host")
            items = capabilities if isinstance(capabilities, list) else [capabilities]
            prepared.append(
                (str(service), str(host), compact_json(items), float(received_at), items)
            )
        if not prepared:
            return 0

        def record(db: _Backend) -> tuple[int, list[tuple[str, str]]]:
            current = self._current_texts(db, {(service, host) for service, host, *_ in prepared})
            flats: dict[tuple[str, str], dict[str, Any]] = {}
            final: dict[tuple[str, str], dict[str, Any]] = {}
            changes = []
            changed_keys: list[tuple[str, str]] = []
            for service, host, text, received_at, new in prepared:
                key = (service, host)
                state = final.get(key)
                if state is None:
                    state = final[key] = {"service": service, "host": host, "changed_at": None}
                state["received_at"] = received_at
                old_text = current.get(key)
                if old_text == text:
                    continue
                current[key] = text
                # The previous update of a host in this batch is flattened already.
                before = flats.get(key)
                if before is None:
                    before = {} if old_text is None else flatten_capabilities(json.loads(old_text))
                after = flats[key] = flatten_capabilities(new)
                diff = diff_flat(before, after)
                state["capabilities"] = text
                if old_text is not None and not any(diff.values()):
                    continue  # the same values in another order: the text only
                state["changed_at"] = received_at
                state["flat"] = compact_json(dict(sorted(after.items())))
                changed_keys.append(key)
                changes.append(
                    {
                        "service": service,
                        "host": host,
                        "received_at": received_at,
                        "diff": diff_text(diff),
                    }
                )
            upserts, rewrites, touches = [], [], []
            for state in final.values():
                if state["changed_at"] is not None:
                    upserts.append(state)
                elif "capabilities" in state:
                    rewrites.append(state)
                else:
                    touches.append(state)
            db.execute_many(_UPSERT_CAPS_FINAL, upserts)
            db.execute_many(_REWRITE_CAPS, [{k: s[k] for k in _REWRITE_KEYS} for s in rewrites])
            db.execute_many(_TOUCH_CAPS, [{k: s[k] for k in _TOUCH_KEYS} for s in touches])
            db.execute_many(_INSERT_CHANGE, changes)
            if self.history_keep > 0:
                # A host's history is pruned on its first change and then every prune_every
                # changes: when this batch's changes of it (it may hold several) number one
                # that is a multiple of prune_every.
                every = max(1, self.prune_every)
                prune = []
                for key, count in collections.Counter(changed_keys).items():
                    done = self._changes_since_prune.get(key, 0)
                    if -(-done // every) * every < done + count:
                        prune.append({"service": key[0], "host": key[1], "keep": self.history_keep})
                db.execute_many(_PRUNE_CHANGES, prune)
            return len(changes), changed_keys

        changed, changed_keys = self._run(True, record)
        for key in changed_keys:
            self._changes_since_prune[key] = self._changes_since_prune.get(key, 0) + 1
        return changed

    @staticmethod
    def _current_texts(db: _Backend, keys: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The stored capabilities (JSON text) of these (service, host), read for update."""
        current: dict[tuple[str, str], str] = {}
        hosts = sorted({host for _, host in keys})
        for start in range(0, len(hosts), BATCH_LOOKUP):
            chunk = hosts[start : start + BATCH_LOOKUP]
            names = ", ".join(f":h{i}" for i in range(len(chunk)))
            sql = (
                f"SELECT service, host, capabilities FROM {_CAPS} WHERE host IN ({names})"
                + db.for_update
            )
            for service, host, text in db.query(sql, {f"h{i}": h for i, h in enumerate(chunk)}):
                if (service, host) in keys:
                    current[(service, host)] = text
        return current

    def prune_history(self, older_than: float, now: float | None = None) -> None:
        """Drop the history rows that arrived more than ``older_than`` seconds ago."""
        before = (time.time() if now is None else now) - float(older_than)
        self._run(True, lambda db: db.execute(_DELETE_OLD_CHANGES, {"before": before}))

    def reclaim(self) -> None:
        """Give the space of pruned rows back to the file system (SQLite: incremental vacuum
        and a WAL checkpoint; PostgreSQL: its autovacuum does it)."""
        with self._mapped_errors():
            self._backend.reclaim()

    def latest(self, service: str | None = None, host: str | None = None) -> list[CapabilityRecord]:
        """The last capabilities of every (service, host), optionally filtered, sorted."""
        where, params = _where(service=service, host=host)
        sql = f"SELECT service, host, capabilities, received_at FROM {_CAPS}{where}"
        rows = self._run(False, lambda db: db.query(sql + " ORDER BY service, host", params))
        # One decode for all of them: the decoder's work per call, and its key cache, are
        # shared (100,000 hosts: about a third less than one call each).
        decoded = json.loads("[" + ",".join(row[2] for row in rows) + "]")
        return [
            CapabilityRecord(service, host_, caps, float(received))
            for (service, host_, _, received), caps in zip(rows, decoded, strict=True)
        ]

    def latest_flat(self, service: str | None = None, host: str | None = None) -> list[FlatRecord]:
        """latest(), flattened (what capability_rows shows), as the store keeps it: one query,
        one decode, no flattening but for rows written before schema 2."""
        if not self._has_flat:
            return [FlatRecord.of(record) for record in self.latest(service, host)]
        where, params = _where(service=service, host=host)
        sql = f"SELECT service, host, flat, received_at, capabilities FROM {_CAPS}{where}"
        rows = self._run(False, lambda db: db.query(sql + " ORDER BY service, host", params))
        decoded = json.loads("[" + ",".join(row[2] or "null" for row in rows) + "]")
        return [
            FlatRecord(
                service,
                host_,
                flatten_capabilities(json.loads(caps)) if flat is None else flat,
                float(received),
            )
            for (service, host_, _, received, caps), flat in zip(rows, decoded, strict=True)
        ]

    def history(
        self,
        host: str,
        service: str | None = None,
        limit: int = 100,
        since: float | None = None,
    ) -> list[Change]:
        """The last ``limit`` changes of ``host`` (optionally one service, only those that
        arrived at or after ``since``), oldest first."""
        where, params = _where(host=host, service=service)
        if since is not None:
            where += " AND received_at >= :since"
            params = {**params, "since": float(since)}
        sql = (
            f"SELECT service, host, received_at, diff FROM {_CHANGES}{where} "
            "ORDER BY id DESC LIMIT :limit"
        )
        rows = self._run(False, lambda db: db.query(sql, {**params, "limit": int(limit)}))
        return [
            Change(service_, host_, float(received), diff_from_text(diff))
            for service_, host_, received, diff in reversed(rows)
        ]

    # -- service heartbeats ------------------------------------------------------------

    def record_service(self, record: Mapping[str, Any], received_at: float | None = None) -> None:
        """Keep a service's heartbeat record (service, host, topic, version, started, pid, ...)."""
        if not isinstance(record, Mapping) or not record.get("service") or not record.get("host"):
            raise BadInputError("a service record needs a service and a host")
        updated_at = time.time() if received_at is None else float(received_at)
        params = {
            "service": str(record["service"]),
            "host": str(record["host"]),
            "topic": None if record.get("topic") is None else str(record["topic"]),
            "record": json.dumps(dict(record), default=str),
            "updated_at": updated_at,
        }
        self._run(True, lambda db: db.execute(_UPSERT_SERVICE, params))

    def record_services(self, records: Sequence[tuple[Mapping[str, Any], float]]) -> None:
        """Keep many (heartbeat record, received_at) in one transaction (the last one wins)."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for record, received_at in records:
            if (
                not isinstance(record, Mapping)
                or not record.get("service")
                or not record.get("host")
            ):
                raise BadInputError("a service record needs a service and a host")
            key = (str(record["service"]), str(record["host"]))
            rows[key] = {
                "service": key[0],
                "host": key[1],
                "topic": None if record.get("topic") is None else str(record["topic"]),
                "record": json.dumps(dict(record), default=str),
                "updated_at": float(received_at),
            }
        if rows:
            self._run(True, lambda db: db.execute_many(_UPSERT_SERVICE, list(rows.values())))

    def delete_service(self, service: str, host: str) -> bool:
        """Forget a service (its heartbeat record and its capabilities), as nova
        service-delete does; its history stays until retention drops it. True if it existed."""
        params = {"service": str(service), "host": str(host)}

        def delete(db: _Backend) -> bool:
            found = (
                db.query(
                    f"SELECT count(*) FROM {_SERVICES} WHERE service = :service AND host = :host",
                    params,
                )[0][0]
                or db.query(
                    f"SELECT count(*) FROM {_CAPS} WHERE service = :service AND host = :host",
                    params,
                )[0][0]
            )
            db.execute(_DELETE_SERVICE, params)
            db.execute(_DELETE_CAPS, params)
            return bool(found)

        return self._run(True, delete)

    def prune_services(self, older_than: float, now: float | None = None) -> list[tuple[str, str]]:
        """Forget every service whose last heartbeat is older than ``older_than`` seconds;
        the (service, host) pairs forgotten."""
        before = (time.time() if now is None else now) - float(older_than)

        def prune(db: _Backend) -> list[tuple[str, str]]:
            gone = [
                (str(service), str(host))
                for service, host in db.query(
                    f"SELECT service, host FROM {_SERVICES} WHERE updated_at < :before",
                    {"before": before},
                )
            ]
            rows = [{"service": service, "host": host} for service, host in gone]
            db.execute_many(_DELETE_SERVICE, rows)
            db.execute_many(_DELETE_CAPS, rows)
            return gone

        return self._run(True, prune)

    def services(self, service: str | None = None, host: str | None = None) -> list[dict[str, Any]]:
        """Every service's last heartbeat record, with ``updated_at``, sorted by service, host."""
        where, params = _where(service=service, host=host)
        sql = f"SELECT record, updated_at FROM {_SERVICES}{where} ORDER BY service, host"
        rows = self._run(False, lambda db: db.query(sql, params))
        return [{**json.loads(record), "updated_at": float(updated)} for record, updated in rows]


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL (or a plain path); None for other URLs."""
    if "://" not in url:
        return Path(url).expanduser()
    scheme, _, rest = url.partition("://")
    if scheme != "sqlite":
        return None
    # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy reads them.
    if not rest.startswith("/") or rest == "/" or "?" in rest:
        raise BadInputError(
            f"bad SQLite store URL {url!r}",
            hint="use sqlite:///relative/path or sqlite:////absolute/path",
        )
    return Path(rest[1:]).expanduser()


def open_store(
    url: str | None = None,
    *,
    default_path: str | os.PathLike[str] | None = None,
    must_exist: bool = False,
    history_keep: int = DEFAULT_HISTORY_KEEP,
) -> CapabilityStore:
    """Open (and create if needed) the capabilities store.

    ``url`` None means the SQLite file ``default_path`` (default :func:`default_store_path`);
    ``sqlite:///path`` or a plain path is a SQLite file through the standard library; any other
    URL goes through SQLAlchemy (``postgresql://user:pass@host/db`` uses psycopg 3).
    ``must_exist`` refuses to create a missing SQLite file (a reader with nothing to read):
    UnavailableError, exit 69.
    """
    if url is None or url == "":
        path: Path | None = Path(default_path) if default_path else default_store_path()
    else:
        path = sqlite_path(url)
    if path is not None:
        if must_exist and not path.exists():
            raise UnavailableError(
                f"no capabilities store at {path}",
                hint="run a collector (managerctl serve collector), give --store-url, "
                "or look live with --live",
            )
        backend: _Backend = _SQLiteBackend(path)
    else:
        backend = _SQLAlchemyBackend(_sqlalchemy_url(str(url)))
    store = CapabilityStore(backend, history_keep=history_keep)
    try:
        store._create_schema()
    except BaseException:
        store.close()
        raise
    return store

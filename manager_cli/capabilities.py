"""Capability records and their store: what the collector keeps, what ``capabilities`` shows.

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

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import BadInputError, ConfigError, ManagerCtlError, UnavailableError
from .redact import mask_url_passwords
from .timefmt import iso_utc

__all__ = [
    "DEFAULT_STALE_AFTER",
    "ROW_COLUMNS",
    "STORE_ENV",
    "CapabilityRecord",
    "CapabilityStore",
    "Change",
    "capability_columns",
    "capability_rows",
    "collector_topics",
    "default_store_path",
    "diff_capabilities",
    "flatten",
    "flatten_capabilities",
    "iso_time",
    "known_topics",
    "open_store",
    "store_url_from",
]

STORE_ENV = "MANAGERCTL_CAPABILITIES_STORE"
TOPICS_ENV = "MANAGERCTL_COLLECTOR_TOPICS"
# Topics a collector asks to publish when nothing else is known (the shipped example publishes).
DEFAULT_COLLECTOR_TOPICS: tuple[str, ...] = ("hostinfo",)
# A service publishes every 60 s by default (periodic spacing); three missed publications make
# its record stale, so one late run (fuzzy delay, a slow task) never flags a healthy host.
DEFAULT_STALE_AFTER = 180.0
# History rows kept per (service, host): enough to see a day of changes at one a minute.
DEFAULT_HISTORY_KEEP = 2000
# Old history rows of a host are pruned on its first change and then every this many changes.
PRUNE_EVERY = 50
BUSY_TIMEOUT_S = 10.0
SCHEMA_VERSION = 1

# The fixed columns of a capability row; capability keys follow them.
ROW_COLUMNS: tuple[str, ...] = ("service", "host", "state", "age_s", "received_at")
# A capability key that would shadow a fixed column is shown under this prefix.
SHADOW_PREFIX = "capabilities."


_T = TypeVar("_T")

# ---------------------------------------------------------------------------
# Records and pure functions


@dataclass(frozen=True)
class CapabilityRecord:
    """The last capabilities one service on one host published, and when they arrived."""

    service: str
    host: str
    capabilities: list[Any]
    received_at: float


@dataclass(frozen=True)
class Change:
    """One change of a service's capabilities: what was added, removed or changed, and when.

    ``diff`` is ``{"added": {key: new}, "removed": {key: old}, "changed": {key: {"old", "new"}}}``
    over flattened (dotted) keys.
    """

    service: str
    host: str
    received_at: float
    diff: dict[str, dict[str, Any]] = field(default_factory=dict)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: {"load": {"1m": 0.5}} -> {"load.1m": 0.5}.

    Lists and empty dicts are kept as values; a value that is not a dict becomes
    ``{prefix or "value": value}``.
    """
    if not isinstance(value, dict):
        return {prefix or "value": value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(item, dict) and item:
            flat.update(flatten(item, path))
        else:
            flat[path] = item
    return flat


def flatten_capabilities(capabilities: Sequence[Any]) -> dict[str, Any]:
    """A published capability list as dotted keys.

    Services almost always publish one dict, whose keys are used as they are; several items
    are told apart by their index (``0.cpu_count``, ``1.cpu_count``).
    """
    if not capabilities:
        return {}
    if len(capabilities) == 1:
        return flatten(capabilities[0])
    flat: dict[str, Any] = {}
    for index, item in enumerate(capabilities):
        flat.update(flatten(item, str(index)))
    return flat


def _canonical(value: Any) -> str:
    # Compared as canonical JSON, not with ==: 1 == True == 1.0 in Python, not to an operator.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def diff_capabilities(old: Sequence[Any] | None, new: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """What changed from ``old`` to ``new``, on flattened keys (``old`` None: all added)."""
    before = flatten_capabilities(old or [])
    after = flatten_capabilities(new)
    added = {key: value for key, value in after.items() if key not in before}
    removed = {key: value for key, value in before.items() if key not in after}
    changed = {
        key: {"old": before[key], "new": value}
        for key, value in after.items()
        if key in before and _canonical(before[key]) != _canonical(value)
    }
    return {"added": added, "removed": removed, "changed": changed}


def iso_time(timestamp: float) -> str:
    """A Unix time as ISO 8601 in UTC, to the second: ``2026-05-20T13:24:00Z``."""
    return iso_utc(timestamp)


def capability_rows(
    records: Iterable[CapabilityRecord], now: float, stale_after: float
) -> list[dict[str, Any]]:
    """One row per (service, host): the fixed columns, then each capability key as a column.

    ``state`` is ``"stale"`` when the record is older than ``stale_after`` seconds, else
    ``"fresh"``; ``age_s`` is its age in seconds, ``received_at`` when it arrived (ISO 8601, UTC).
    """
    rows = []
    for record in records:
        age = max(0.0, now - record.received_at)
        row: dict[str, Any] = {
            "service": record.service,
            "host": record.host,
            "state": "stale" if age > stale_after else "fresh",
            "age_s": round(age, 1),
            "received_at": iso_time(record.received_at),
        }
        for key, value in flatten_capabilities(record.capabilities).items():
            row[SHADOW_PREFIX + key if key in row else key] = value
        rows.append(row)
    return rows


def capability_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The fixed columns, then every capability key of ``rows`` in sorted order."""
    keys: set[str] = set()
    for row in rows:
        keys.update(row)
    return list(ROW_COLUMNS) + sorted(keys.difference(ROW_COLUMNS))


# ---------------------------------------------------------------------------
# Where the store is


def default_store_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/managerctl/capabilities.sqlite`` (``~/.local/state/...`` by default)."""
    environ = os.environ if environ is None else environ
    state_home = environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state_home) / "managerctl" / "capabilities.sqlite"


def store_url_from(settings: Any = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The configured store URL: ``[DEFAULT] capabilities_store``, else $MANAGERCTL_CAPABILITIES_STORE.

    None means the default SQLite file (:func:`default_store_path`).
    """
    environ = os.environ if environ is None else environ
    configured = getattr(settings, "capabilities_store", None) if settings is not None else None
    return configured or environ.get(STORE_ENV) or None


def collector_topics(settings: Any = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """``[DEFAULT] collector_topics``, else $MANAGERCTL_COLLECTOR_TOPICS (comma separated), else
    ``hostinfo``: the topics asked to publish when no service is known yet."""
    environ = os.environ if environ is None else environ
    configured = getattr(settings, "collector_topics", None) if settings is not None else None
    if configured is None:
        configured = environ.get(TOPICS_ENV)
    if configured is None:
        return list(DEFAULT_COLLECTOR_TOPICS)
    items = configured.split(",") if isinstance(configured, str) else list(configured)
    return [str(item).strip() for item in items if str(item).strip()]


def known_topics(
    store: CapabilityStore | None,
    settings: Any = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The configured collector topics, then those of every service in ``store``, no repeats.

    The scheduler topic itself is left out: the collector does not publish capabilities.
    """
    from .manager import SCHEDULER_TOPIC

    topics = collector_topics(settings, environ)
    if store is not None:
        topics += [str(s["topic"]) for s in store.services() if s.get("topic")]
    return [topic for topic in dict.fromkeys(topics) if topic != SCHEDULER_TOPIC]


# ---------------------------------------------------------------------------
# SQL, written once for SQLite and PostgreSQL (``:name`` parameters work with both sqlite3 and
# SQLAlchemy's text(); ``INSERT ... ON CONFLICT`` needs SQLite 3.24+ or PostgreSQL 9.5+).

_CAPS = "managerctl_capabilities"
_CHANGES = "managerctl_capability_changes"
_SERVICES = "managerctl_services"
_SCHEMA = "managerctl_schema"


def _schema(serial_key: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {_SCHEMA} (version INTEGER NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS {_CAPS} (
            service TEXT NOT NULL,
            host TEXT NOT NULL,
            capabilities TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL,
            changed_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (service, host))""",
        f"""CREATE TABLE IF NOT EXISTS {_CHANGES} (
            id {serial_key},
            service TEXT NOT NULL,
            host TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL,
            diff TEXT NOT NULL)""",
        f"CREATE INDEX IF NOT EXISTS {_CHANGES}_by_host ON {_CHANGES} (host, service, id)",
        f"""CREATE TABLE IF NOT EXISTS {_SERVICES} (
            service TEXT NOT NULL,
            host TEXT NOT NULL,
            topic TEXT,
            record TEXT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (service, host))""",
    ]


_SELECT_CURRENT = f"SELECT capabilities FROM {_CAPS} WHERE service = :service AND host = :host"
_UPSERT_CAPS = f"""
    INSERT INTO {_CAPS} (service, host, capabilities, received_at, changed_at)
    VALUES (:service, :host, :capabilities, :received_at, :received_at)
    ON CONFLICT (service, host) DO UPDATE SET
        capabilities = excluded.capabilities,
        received_at = excluded.received_at,
        changed_at = excluded.changed_at"""
_TOUCH_CAPS = (
    f"UPDATE {_CAPS} SET received_at = :received_at WHERE service = :service AND host = :host"
)
_INSERT_CHANGE = f"""
    INSERT INTO {_CHANGES} (service, host, received_at, diff)
    VALUES (:service, :host, :received_at, :diff)"""
# Keep the newest ``keep`` changes of a (service, host): one indexed lookup and a range delete.
_PRUNE_CHANGES = f"""
    DELETE FROM {_CHANGES} WHERE service = :service AND host = :host AND id <= (
        SELECT id FROM {_CHANGES} WHERE service = :service AND host = :host
        ORDER BY id DESC LIMIT 1 OFFSET :keep)"""
_UPSERT_SERVICE = f"""
    INSERT INTO {_SERVICES} (service, host, topic, record, updated_at)
    VALUES (:service, :host, :topic, :record, :updated_at)
    ON CONFLICT (service, host) DO UPDATE SET
        topic = excluded.topic, record = excluded.record, updated_at = excluded.updated_at"""


def _where(**filters: Any) -> tuple[str, dict[str, Any]]:
    given = {name: value for name, value in filters.items() if value is not None}
    if not given:
        return "", {}
    return " WHERE " + " AND ".join(f"{name} = :{name}" for name in given), given


# ---------------------------------------------------------------------------
# Back ends: a connection that runs SQL, in a write transaction or a read.


class _Backend:
    """What the store needs from a database: run SQL inside a write transaction or a read."""

    description = ""
    for_update = ""
    serial_key = "INTEGER PRIMARY KEY"

    def schema_missing(self) -> bool:
        """Whether the tables may be missing (CREATE ... IF NOT EXISTS then runs)."""
        return True

    def write(self) -> contextlib.AbstractContextManager[_Backend]:
        raise NotImplementedError

    def read(self) -> contextlib.AbstractContextManager[_Backend]:
        raise NotImplementedError

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        raise NotImplementedError

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions of this database library, mapped to UnavailableError by the store."""
        raise NotImplementedError

    def is_disconnect(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the server dropped the connection (worth one retry)."""
        return False


class _SQLiteBackend(_Backend):
    """The standard library's sqlite3 on one file, WAL mode, one connection per store."""

    def __init__(self, path: Path) -> None:
        import sqlite3

        self._sqlite3 = sqlite3
        self.path = path
        self.description = f"SQLite file {path}"
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; writes BEGIN IMMEDIATE themselves,
            # so a read-compare-write holds the write lock from its first read.
            self._conn = sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(
                    f"the capabilities store {path} cannot use WAL mode (got {mode})",
                    hint="put it on a local file system",
                )
            # In WAL mode NORMAL loses at most the last transactions on power loss, never
            # consistency: right for data that is re-published every minute.
            self._conn.execute("PRAGMA synchronous = NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the capabilities store {path}: {exc}",
                hint="check the path and its permissions",
            ) from None

    @contextlib.contextmanager
    def write(self) -> Iterator[_Backend]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[_Backend]:
        with self._lock:
            # One read transaction, so the rows of one query belong to one snapshot.
            self._conn.execute("BEGIN")
            try:
                yield self
            finally:
                self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._conn.execute(sql, params or {})

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params or {}).fetchall()

    def schema_missing(self) -> bool:
        row = self._conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (_CHANGES,)
        ).fetchone()
        return not row[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def errors(self) -> tuple[type[BaseException], ...]:
        return (self._sqlite3.Error,)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


class _SQLAlchemyBackend(_Backend):
    """Any SQLAlchemy URL (PostgreSQL for a shared store); a pooled engine."""

    def __init__(self, url: str) -> None:
        try:
            import sqlalchemy
            import sqlalchemy.exc
        except ImportError:
            raise ConfigError(
                "a capabilities store URL other than sqlite:/// needs SQLAlchemy",
                hint="pip install 'managerctl[postgres]'",
            ) from None
        self._sa = sqlalchemy
        self.description = mask_url_passwords(url)
        self._texts: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._conn: Any = None
        self._connection: Any = None
        try:
            parsed = sqlalchemy.engine.make_url(url)
            connect_args: dict[str, Any] = {}
            if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
                # libpq waits forever for a host that drops packets; a CLI must not.
                connect_args["connect_timeout"] = int(BUSY_TIMEOUT_S)
            self.engine = sqlalchemy.create_engine(parsed, connect_args=connect_args)
        except (sqlalchemy.exc.ArgumentError, ImportError) as exc:
            # NoSuchModuleError (unknown dialect) is an ArgumentError; a missing DB-API driver
            # is an ImportError.
            raise ConfigError(
                f"cannot use the capabilities store URL {self.description}: {exc}",
                hint="use sqlite:///PATH or postgresql://user:pass@host/db "
                "(pip install 'managerctl[postgres]')",
            ) from None
        # Row locks only where the dialect has them: the read-compare-write of one update.
        if self.engine.dialect.name == "postgresql":
            self.for_update = " FOR UPDATE"
            self.serial_key = "BIGSERIAL PRIMARY KEY"
        if self.engine.dialect.name == "sqlite":
            # The same one-writer-many-readers set-up as the standard-library back end.
            sqlalchemy.event.listen(self.engine, "connect", _sqlite_pragmas)

    def _text(self, sql: str) -> Any:
        clause = self._texts.get(sql)
        if clause is None:
            clause = self._texts[sql] = self._sa.text(sql)
        return clause

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_Backend]:
        # One connection kept for the store's life: the store serialises its operations anyway,
        # and a pool check-out with a liveness ping would cost a round trip per operation. A
        # connection the server dropped is replaced on the next use (the store retries once).
        with self._lock:
            if self._connection is None:
                self._connection = self.engine.connect()
            conn = self._connection
            self._conn = conn
            try:
                with conn.begin():
                    yield self
            except self._sa.exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    self._drop_connection()
                raise
            finally:
                self._conn = None

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def is_disconnect(self, exc: BaseException) -> bool:
        return bool(getattr(exc, "connection_invalidated", False))

    def write(self) -> contextlib.AbstractContextManager[_Backend]:
        return self._transaction()

    def read(self) -> contextlib.AbstractContextManager[_Backend]:
        return self._transaction()

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._conn.execute(self._text(sql), dict(params or {}))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._conn.execute(self._text(sql), dict(params or {}))]

    def close(self) -> None:
        with self._lock:
            self._drop_connection()
            self.engine.dispose()

    def errors(self) -> tuple[type[BaseException], ...]:
        return (self._sa.exc.SQLAlchemyError,)


# ---------------------------------------------------------------------------
# The store


class CapabilityStore:
    """Last capabilities per (service, host), their change history, and service heartbeats."""

    def __init__(self, backend: _Backend, *, history_keep: int = DEFAULT_HISTORY_KEEP) -> None:
        self._backend = backend
        self.history_keep = history_keep
        self._errors = backend.errors()
        self._closed = False
        self._changes_since_prune: dict[tuple[str, str], int] = {}
        self.prune_every = PRUNE_EVERY

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
        if not backend.schema_missing():
            return
        serial = backend.serial_key

        def create(db: _Backend) -> None:
            for statement in _schema(serial):
                db.execute(statement)
            if not db.query(f"SELECT version FROM {_SCHEMA}"):
                db.execute(f"INSERT INTO {_SCHEMA} (version) VALUES (:v)", {"v": SCHEMA_VERSION})

        self._run(True, create)

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
        if not service or not host:
            raise BadInputError("a capability record needs a service and a host")
        if not isinstance(capabilities, list):
            capabilities = [capabilities]
        received_at = time.time() if received_at is None else float(received_at)
        text = json.dumps(capabilities, default=str)
        params = {"service": str(service), "host": str(host), "received_at": received_at}
        new = json.loads(text)  # what a reader will get back: tuples as lists, and so on
        key = (params["service"], params["host"])

        def record(db: _Backend) -> bool:
            rows = db.query(_SELECT_CURRENT + db.for_update, params)
            old = json.loads(rows[0][0]) if rows else None
            if old is not None and _canonical(old) == _canonical(new):
                db.execute(_TOUCH_CAPS, params)
                return False
            db.execute(_UPSERT_CAPS, {**params, "capabilities": text})
            diff = diff_capabilities(old, new)
            db.execute(_INSERT_CHANGE, {**params, "diff": json.dumps(diff, default=str)})
            # Pruning is a statement of its own: do it every prune_every changes of a host
            # (and on its first), so the history holds at most history_keep + prune_every.
            count = self._changes_since_prune.get(key, 0)
            if self.history_keep > 0 and count % max(1, self.prune_every) == 0:
                db.execute(_PRUNE_CHANGES, {**params, "keep": self.history_keep})
            return True

        changed = self._run(True, record)
        if changed:
            self._changes_since_prune[key] = self._changes_since_prune.get(key, 0) + 1
        return changed

    def latest(self, service: str | None = None, host: str | None = None) -> list[CapabilityRecord]:
        """The last capabilities of every (service, host), optionally filtered, sorted."""
        where, params = _where(service=service, host=host)
        sql = f"SELECT service, host, capabilities, received_at FROM {_CAPS}{where}"
        rows = self._run(False, lambda db: db.query(sql + " ORDER BY service, host", params))
        return [
            CapabilityRecord(service, host_, json.loads(caps), float(received))
            for service, host_, caps, received in rows
        ]

    def history(self, host: str, service: str | None = None, limit: int = 100) -> list[Change]:
        """The last ``limit`` changes of ``host`` (optionally one service), oldest first."""
        where, params = _where(host=host, service=service)
        sql = (
            f"SELECT service, host, received_at, diff FROM {_CHANGES}{where} "
            "ORDER BY id DESC LIMIT :limit"
        )
        rows = self._run(False, lambda db: db.query(sql, {**params, "limit": int(limit)}))
        return [
            Change(service_, host_, float(received), json.loads(diff))
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


def _sqlalchemy_url(url: str) -> str:
    # postgresql:// means psycopg2 to SQLAlchemy; managerctl's extra installs psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


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

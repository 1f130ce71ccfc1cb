"""The databases a capabilities store runs on: SQLite (standard library) or any SQLAlchemy URL.

SQL is written once for SQLite and PostgreSQL. ``sqlite3`` and SQLAlchemy are imported only when
a back end is built, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..redact import mask_url_passwords

BUSY_TIMEOUT_S = 10.0
# SQLite: the WAL file is cut back to this many bytes after each checkpoint.
WAL_SIZE_LIMIT = 8 * 1024 * 1024
SQLITE_INCREMENTAL_VACUUM = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
# A file without incremental auto_vacuum is VACUUMed once more than this share of it is free.
VACUUM_FREE_SHARE = 0.25
# 2: managerctl_capabilities.flat, the flattened capabilities (what a table shows).
SCHEMA_VERSION = 2

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
            flat TEXT,
            PRIMARY KEY (service, host))""",
        f"""CREATE TABLE IF NOT EXISTS {_CHANGES} (
            id {serial_key},
            service TEXT NOT NULL,
            host TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL,
            diff TEXT NOT NULL)""",
        f"CREATE INDEX IF NOT EXISTS {_CHANGES}_by_host ON {_CHANGES} (host, service, id)",
        f"CREATE INDEX IF NOT EXISTS {_CHANGES}_by_time ON {_CHANGES} (received_at)",
        f"""CREATE TABLE IF NOT EXISTS {_SERVICES} (
            service TEXT NOT NULL,
            host TEXT NOT NULL,
            topic TEXT,
            record TEXT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (service, host))""",
    ]


_TOUCH_CAPS = (
    f"UPDATE {_CAPS} SET received_at = :received_at WHERE service = :service AND host = :host"
)
_REWRITE_CAPS = f"""
    UPDATE {_CAPS} SET capabilities = :capabilities, received_at = :received_at
    WHERE service = :service AND host = :host"""
_INSERT_CHANGE = f"""
    INSERT INTO {_CHANGES} (service, host, received_at, diff)
    VALUES (:service, :host, :received_at, :diff)"""
# Keep the newest ``keep`` changes of a (service, host): one indexed lookup and a range delete.
_PRUNE_CHANGES = f"""
    DELETE FROM {_CHANGES} WHERE service = :service AND host = :host AND id <= (
        SELECT id FROM {_CHANGES} WHERE service = :service AND host = :host
        ORDER BY id DESC LIMIT 1 OFFSET :keep)"""
# A batch's final state of a (service, host): its last capabilities, when they last arrived
# and when they last changed.
_UPSERT_CAPS_FINAL = f"""
    INSERT INTO {_CAPS} (service, host, capabilities, received_at, changed_at, flat)
    VALUES (:service, :host, :capabilities, :received_at, :changed_at, :flat)
    ON CONFLICT (service, host) DO UPDATE SET
        capabilities = excluded.capabilities,
        received_at = excluded.received_at,
        changed_at = excluded.changed_at,
        flat = excluded.flat"""
# Schema 1 to 2: the flattened capabilities (NULL until a host's next change: flattened when
# read meanwhile).
_MIGRATIONS = {2: [f"ALTER TABLE {_CAPS} ADD COLUMN flat TEXT"]}
_DELETE_OLD_CHANGES = f"DELETE FROM {_CHANGES} WHERE received_at < :before"
_DELETE_SERVICE = f"DELETE FROM {_SERVICES} WHERE service = :service AND host = :host"
_DELETE_CAPS = f"DELETE FROM {_CAPS} WHERE service = :service AND host = :host"
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

    def execute_many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """One statement for many parameter sets (one round trip per batch where the driver
        pipelines: psycopg 3)."""
        for params in rows:
            self.execute(sql, params)

    def reclaim(self) -> None:
        """Give the space of deleted rows back to the file system, where the database leaves
        that to the caller (PostgreSQL's autovacuum does it by itself)."""

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
            # Before the first table (a new file): pages freed by pruning can be given back to
            # the file system (reclaim), so the file shrinks with its history.
            self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(
                    f"the capabilities store {path} cannot use WAL mode (got {mode})",
                    hint="put it on a local file system",
                )
            # In WAL mode NORMAL loses at most the last transactions on power loss, never
            # consistency: right for data that is re-published every minute.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            # The WAL file is truncated back to this after a checkpoint (it would otherwise keep
            # the size of the largest batch ever written).
            self._conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
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

    def execute_many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self._conn.executemany(sql, rows)

    def reclaim(self) -> None:
        with self._lock:
            conn = self._conn
            mode = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            if mode == SQLITE_INCREMENTAL_VACUUM:
                # It frees one page a step, and sqlite3's execute steps a pragma once:
                # executescript runs it to the end.
                conn.executescript("PRAGMA incremental_vacuum;")
            elif pages and free > pages * VACUUM_FREE_SHARE:
                # A file made before auto_vacuum (or by another tool): one VACUUM, which also
                # turns incremental auto_vacuum on for good.
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

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

    def execute_many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self._conn.execute(self._text(sql), [dict(row) for row in rows])

    def close(self) -> None:
        with self._lock:
            self._drop_connection()
            self.engine.dispose()

    def errors(self) -> tuple[type[BaseException], ...]:
        return (self._sa.exc.SQLAlchemyError,)


def _sqlalchemy_url(url: str) -> str:
    # postgresql:// means psycopg2 to SQLAlchemy; managerctl's extra installs psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url

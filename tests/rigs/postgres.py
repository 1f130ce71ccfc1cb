"""A throwaway PostgreSQL server on loopback, for tests and demos.

Debian's ``postgresql`` package puts its server binaries in ``/usr/lib/postgresql/<N>/bin``;
this module runs ``initdb`` on a temporary data directory (as user ``postgres`` when run as root:
the server refuses to run as root) and starts ``postgres`` on a free port of 127.0.0.1 with its
socket in that directory, so nothing of the system's clusters is touched. Standard library only.

Typical use::

    with PostgresServer() as server:
        url = server.create_database("test1")   # postgresql://postgres@127.0.0.1:PORT/test1

Run ``python -m rigs.postgres (from tests/)`` to keep a server in the foreground until Ctrl-C.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from ._local import LOOPBACK, chown_tree, port_accepts, tail
from .rabbitmq import free_port

__all__ = ["PostgresServer", "ensure_postgres_installed"]

SUPERUSER = "postgres"
INSTALL_HINT = (
    "PostgreSQL is not installed. On Debian/Ubuntu install it with "
    "'sudo apt-get update && sudo apt-get install -y postgresql' "
    "(scripts/test.sh does this for you)."
)

# Servers started by this process and not yet stopped, stopped at interpreter exit.
_LIVE_SERVERS: set[PostgresServer] = set()


def _version_key(path: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", os.path.basename(os.path.dirname(path)))
    return tuple(int(n) for n in numbers)


def ensure_postgres_installed() -> str:
    """The directory holding ``initdb`` and ``postgres`` (newest Debian version first).

    Raises RuntimeError saying how to install PostgreSQL when there is none.
    """
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: _version_key(os.path.join(path, "x")),
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    for directory in candidates:
        if all(
            os.access(os.path.join(directory, tool), os.X_OK) for tool in ("initdb", "postgres")
        ):
            return directory
    raise RuntimeError(INSTALL_HINT)


class PostgresServer:
    """One throwaway PostgreSQL server: own data directory, free port, trust auth on loopback.

    ``stop()`` shuts it down (fast mode) and removes the data directory unless ``keep_data``.
    """

    def __init__(self, *, port: int | None = None, keep_data: bool = False) -> None:
        self.bindir = ensure_postgres_installed()
        self.port = port or free_port()
        self.keep_data = keep_data
        self._dir: str | None = None
        self._proc: subprocess.Popen | None = None
        self._log_handle: Any = None
        self.last_start_seconds: float | None = None

    # -- paths and properties ----------------------------------------------------------

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def data_dir(self) -> str | None:
        return os.path.join(self._dir, "data") if self._dir else None

    @property
    def log_file(self) -> str | None:
        return os.path.join(self._dir, "server.log") if self._dir else None

    def url(self, database: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/<database>`` (trust auth: no password)."""
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<PostgresServer port={self.port} {state}>"

    def _tool(self, name: str) -> str:
        return os.path.join(self.bindir, name)

    def _as_postgres(self) -> dict[str, Any]:
        """Popen arguments that drop root to user ``postgres`` (initdb and postgres refuse root)."""
        if os.geteuid() != 0:
            return {}
        try:
            user = pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise RuntimeError(
                "running as root, but there is no 'postgres' user to run the server as; "
                "install Debian's postgresql package, which creates it"
            ) from None
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env["LANG"] = "C"
        return env

    # -- lifecycle ---------------------------------------------------------------------

    def is_running(self) -> bool:
        """True when the server we started is alive and its port accepts connections."""
        if self._proc is None or self._proc.poll() is not None:
            return False
        return port_accepts(self.port)

    def start(self, timeout: float = 60) -> PostgresServer:
        """initdb (first time), start the server and wait until it accepts queries."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("the PostgreSQL server is already running")
        started = time.monotonic()
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="managerctl-pg-")
            os.chmod(self._dir, 0o755)
            os.mkdir(os.path.join(self._dir, "data"), 0o700)
            chown_tree(self._dir, SUPERUSER)
            init = subprocess.run(
                [
                    self._tool("initdb"),
                    "-D",
                    self.data_dir,
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                env=self._env(),
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                **self._as_postgres(),
            )
            if init.returncode != 0:
                output = (init.stderr or init.stdout).strip()
                self._cleanup()
                raise RuntimeError(f"initdb failed with code {init.returncode}:\n{output}")
        assert self._dir is not None and self.data_dir is not None
        self._log_handle = open(self.log_file, "ab")  # noqa: SIM115 - closed in _kill
        self._proc = subprocess.Popen(
            [
                self._tool("postgres"),
                "-D",
                self.data_dir,
                "-p",
                str(self.port),
                "-k",
                self._dir,
                "-c",
                f"listen_addresses={LOOPBACK}",
                # A throwaway server: durability buys nothing, speed does.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            env=self._env(),
            cwd=self._dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self._as_postgres(),
        )
        _LIVE_SERVERS.add(self)
        deadline = started + timeout
        while not self._ready():
            code = self._proc.poll()
            if code is not None:
                self._fail(f"postgres exited with code {code} during start-up")
            if time.monotonic() > deadline:
                self._fail(f"PostgreSQL did not accept connections within {timeout:g}s")
            time.sleep(0.1)
        self.last_start_seconds = time.monotonic() - started
        return self

    def _ready(self) -> bool:
        isready = self._tool("pg_isready")
        if os.access(isready, os.X_OK):
            result = subprocess.run(
                [isready, "-q", "-h", LOOPBACK, "-p", str(self.port), "-U", SUPERUSER],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
            )
            return result.returncode == 0
        return "ready to accept connections" in tail(self.log_file or "", 200)

    def _fail(self, message: str) -> None:
        detail = f"\n--- tail of {self.log_file} ---\n{tail(self.log_file or '', 30)}"
        self._kill()
        if not self.keep_data:
            self._cleanup()
        raise RuntimeError(message + detail)

    def psql(self, sql: str, database: str = "postgres", timeout: float = 30) -> str:
        """Run one SQL command with ``psql`` and return its unaligned output."""
        psql = self._tool("psql")
        if not os.access(psql, os.X_OK):
            psql = shutil.which("psql") or psql
        result = subprocess.run(
            [
                psql,
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                LOOPBACK,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {(result.stderr or result.stdout).strip()}")
        return result.stdout

    def create_database(self, name: str | None = None) -> str:
        """Create a new empty database (a random name by default) and return its URL."""
        name = name or f"test_{secrets.token_hex(4)}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT), then kill what is left, and remove the data unless kept."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        self._kill()
        if not self.keep_data:
            self._cleanup()

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        self._proc = None
        _LIVE_SERVERS.discard(self)

    def _cleanup(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> PostgresServer:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@atexit.register
def _stop_leftover_servers() -> None:
    for server in list(_LIVE_SERVERS):
        with contextlib.suppress(Exception):
            server.stop(timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m rigs.postgres",
        description="Run a throwaway PostgreSQL server on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument("--database", default="managerctl", help="database to create")
    parser.add_argument("--keep-data", action="store_true", help="keep the data dir on exit")
    args = parser.parse_args(argv)
    try:
        server = PostgresServer(port=args.port, keep_data=args.keep_data)
        print("starting PostgreSQL ...", file=sys.stderr, flush=True)
        server.start()
        url = server.create_database(args.database)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 69

    def _on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print(
        f"PostgreSQL up in {server.last_start_seconds:.1f}s, data in {server.data_dir}",
        file=sys.stderr,
    )
    print(f"  export MANAGERCTL_CAPABILITIES_STORE={url}", file=sys.stderr)
    print("Ctrl-C to stop.", file=sys.stderr, flush=True)
    print(url, flush=True)
    try:
        while server.is_running():
            time.sleep(1)
        print("error: the server exited", file=sys.stderr)
        server.stop()
        return 1
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

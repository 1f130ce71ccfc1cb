"""Real nova 34.0.0 and cinder 29.0.0 as test peers (design/PEERS.md).

The venvs come from ``scripts/_setup.sh`` (``managerctl_peer_venvs``), cached under
``$MANAGERCTL_PEERS_CACHE``. This module writes their config files, syncs fresh sqlite
databases, answers placement's version document, starts every service in a process group of
its own and stops it by that group, and reads each service's log: the evidence of what
managerctl did to a real service.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")

NOVA_VENV = "nova-34.0.0"
CINDER_VENV = "cinder-29.0.0"
MARKER = ".managerctl-peer-complete"

NOVA_COMPUTES = ("peer-compute1", "peer-compute2")
# oslo gives up a reply to a missing queue after 60 s (and logs it), plus some slack.
LATE_REPLY_WINDOW = 90.0
NOVA_HOST = "peer-nova"  # conductor and scheduler
CINDER_HOST = "peerhost"
CINDER_BACKENDS = ("fake", "fake2")


def peers_cache() -> Path:
    """Where scripts/_setup.sh keeps the venvs (same rule as managerctl_peers_cache)."""
    if os.environ.get("MANAGERCTL_PEERS_CACHE"):
        return Path(os.environ["MANAGERCTL_PEERS_CACHE"])
    default = Path("/var/cache/managerctl-peers")
    with contextlib.suppress(OSError):
        default.mkdir(parents=True, exist_ok=True)
    if default.is_dir() and os.access(default, os.W_OK):
        return default
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "managerctl-peers"


def venv_ready(venv: Path) -> bool:
    return (venv / MARKER).is_file() and (venv / "bin" / "python").exists()


def ensure_venvs() -> tuple[Path, Path] | str:
    """The nova and cinder venvs, built now if missing; else the reason they cannot be had."""
    cache = peers_cache()
    nova, cinder = cache / NOVA_VENV, cache / CINDER_VENV
    if os.environ.get("MANAGERCTL_PEERS") == "0":
        return "MANAGERCTL_PEERS=0: the real nova/cinder tier is switched off"
    if not (venv_ready(nova) and venv_ready(cinder)):
        # Not run through scripts/test.sh (or its build failed): try the same set-up once.
        subprocess.run(
            ["bash", "-c", ". scripts/_setup.sh && managerctl_peer_venvs"],
            cwd=REPO,
            env={**os.environ, "MANAGERCTL_PEERS_CACHE": str(cache)},
            check=False,
        )
    missing = [str(v) for v in (nova, cinder) if not venv_ready(v)]
    if missing:
        logs = ", ".join(f"{m}.log" for m in missing)
        return f"could not build the peer venvs {', '.join(missing)} (pip failed; see {logs})"
    return nova, cinder


def peer_env(**extra: str) -> dict[str, str]:
    """The environment of a peer process: none of managerctl's venv, nothing of the test's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("MANAGERCTL_")
    }
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------
# placement stand-in


def placement_versions(href: str) -> dict[str, Any]:
    # keystoneauth 5.18 matches the version by its self link: without one, nova-compute dies
    # on DiscoveryFailure ("No version data found remotely at all").
    version = {"id": "v1.0", "max_version": "1.39", "min_version": "1.0", "status": "CURRENT"}
    return {"versions": [{**version, "links": [{"rel": "self", "href": href}]}]}


def side_by_side(functions: Iterable[Callable[[], object]]) -> None:
    """Run each function on a thread of its own and wait for all of them."""
    threads = [threading.Thread(target=function) for function in functions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class _PlacementHandler(BaseHTTPRequestHandler):
    """Placement's version document at /placement (and /), 503 for everything else."""

    def _answer(self) -> None:
        if self.path.rstrip("/") in ("", "/placement"):
            href = f"http://{self.headers.get('Host', '127.0.0.1')}/placement/"
            body, status = json.dumps(placement_versions(href)).encode(), 200
        else:
            body, status = b'{"errors": [{"status": 503, "title": "stand-in"}]}', 503
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class PlacementStandIn:
    """Enough of placement for nova-conductor and nova-compute to start (PEERS.md)."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _PlacementHandler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/placement"

    def start(self) -> PlacementStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------
# one peer process and its log

# oslo.log: "DATE TIME PID LEVEL LOGGER [CONTEXT] message"; the lines of a traceback repeat the
# prefix without the [context] (logging_exception_prefix), so they continue the record above.
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \d+ ([A-Z]+) (\S+) ?(.*)$")


@dataclass
class LogEntry:
    """One ERROR/CRITICAL record of a peer's log, with the lines (traceback) that follow it."""

    logger: str
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class PeerProcess:
    """A real service in a session of its own (setsid), stopped by its process group."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str]
    grace: float = 10.0
    proc: subprocess.Popen | None = None

    def start(self) -> PeerProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        """Send *signum* to the peer's whole process group (cinder-volume forks per backend)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGCONT)  # a test may have stopped it
        self.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=self.grace)
        # Children (cinder-volume's backend workers) may outlive the leader: kill the group.
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def mark(self) -> int:
        """A position in the log: pass it to errors_since()."""
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def text_since(self, mark: int = 0) -> str:
        with open(self.log, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def errors_since(self, mark: int = 0) -> list[LogEntry]:
        """Every ERROR/CRITICAL record (with its traceback) logged after *mark*."""
        entries: list[LogEntry] = []
        current: list[str] | None = None
        logger = ""

        def close() -> None:
            if current is not None:
                entries.append(LogEntry(logger, "\n".join(current)))

        for line in self.text_since(mark).splitlines():
            record = _LOG_LINE.match(line)
            if record is None:
                # A bare traceback on stderr (a crash), or a multi-line message.
                if current is not None:
                    current.append(line)
                elif line.startswith("Traceback"):
                    current, logger = [line], "<stderr>"
                continue
            level, name, rest = record.groups()
            continues = not rest.startswith("[") and current is not None and name == logger
            if continues:
                current.append(line)
                continue
            close()
            current = [line] if level in ("ERROR", "CRITICAL") else None
            logger = name
        close()
        return entries

    def rpc_errors_since(self, mark: int = 0) -> list[LogEntry]:
        """ERRORs of the service's RPC layer: what a request it could not dispatch leaves."""
        return [e for e in self.errors_since(mark) if e.logger.startswith("oslo_messaging")]

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.text_since().splitlines()[-lines:])
        return ""


# --------------------------------------------------------------------------------------
# config files


def sqlite_url(path: Path) -> str:
    # pysqlite waits 5 s for a lock by default; cinder-scheduler and the volume backends write
    # the same file every report_interval, and a loaded CI machine outlasted 5 s.
    return f"sqlite:///{path}?timeout=60"


def write_ini(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines: list[str] = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value}" for key, value in options.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@dataclass
class Cloud:
    """The peers of the session: config files, processes, and what managerctl needs."""

    root: Path
    url: str
    nova_venv: Path
    cinder_venv: Path
    placement: str
    procs: dict[str, PeerProcess] = field(default_factory=dict)
    nova_conf: Path = field(init=False)
    cinder_conf: Path = field(init=False)
    compute_confs: dict[str, Path] = field(default_factory=dict)
    resumed: dict[str, float] = field(default_factory=dict)  # peer -> when a test resumed it
    volume_restarts: int = 0  # cinder-volume started again after a backend failed to start

    def __post_init__(self) -> None:
        for sub in ("nova", "cinder", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.nova_conf = self._write_nova()
        self.cinder_conf = self._write_cinder()

    # -- config

    def _write_nova(self) -> Path:
        d = self.root / "nova"
        conf = write_ini(
            d / "nova.conf",
            {
                "DEFAULT": {
                    # The operator's nova.conf on the first compute host: probe's default HOST.
                    "host": NOVA_COMPUTES[0],
                    "transport_url": self.url,
                    "compute_driver": "fake.FakeDriver",
                    "state_path": d / "state",
                    "instances_path": d / "state" / "instances",
                    "report_interval": 10,
                    "periodic_fuzzy_delay": 0,
                },
                "database": {"connection": sqlite_url(d / "nova.db")},
                "api_database": {"connection": sqlite_url(d / "api.db")},
                "oslo_concurrency": {"lock_path": d / "lock"},
                "conductor": {"workers": 1},
                "scheduler": {"workers": 1},
                "placement": {"auth_type": "none", "endpoint_override": self.placement},
            },
        )
        # Each compute: its own host and state_path (the fake driver's node identity lives
        # there), layered over nova.conf as a second --config-file.
        for host in NOVA_COMPUTES:
            state = d / f"state-{host}"
            self.compute_confs[host] = write_ini(
                d / f"{host}.conf",
                {"DEFAULT": {"host": host, "state_path": state, "instances_path": state / "i"}},
            )
        write_ini(d / "control.conf", {"DEFAULT": {"host": NOVA_HOST}})
        return conf

    def _write_cinder(self) -> Path:
        d = self.root / "cinder"
        sections: dict[str, dict[str, Any]] = {
            "DEFAULT": {
                "host": CINDER_HOST,
                "transport_url": self.url,
                "enabled_backends": ",".join(CINDER_BACKENDS),
                "auth_strategy": "noauth",
                "state_path": d / "state",
                "periodic_fuzzy_delay": 0,
                "report_interval": 10,
                # oslo's own ping, the clean probe of a service without the base API.
                "rpc_ping_enabled": "true",
            },
            "database": {"connection": sqlite_url(d / "cinder.db")},
            "oslo_concurrency": {"lock_path": d / "locks"},
        }
        for backend in CINDER_BACKENDS:
            sections[backend] = {
                "volume_driver": "cinder.tests.fake_driver.FakeLoggingVolumeDriver",
                "volume_backend_name": backend,
            }
        return write_ini(d / "cinder.conf", sections)

    # -- running things

    def _bin(self, venv: Path, name: str) -> list[str]:
        # Through the venv's python, so a moved venv with stale shebangs still runs.
        return [str(venv / "bin" / "python"), str(venv / "bin" / name)]

    def nova(self, name: str, *args: str) -> list[str]:
        return [*self._bin(self.nova_venv, name), "--config-file", str(self.nova_conf), *args]

    def cinder(self, name: str, *args: str) -> list[str]:
        return [*self._bin(self.cinder_venv, name), "--config-file", str(self.cinder_conf), *args]

    def sync_databases(self) -> None:
        """Fresh databases: nova's four steps and cinder's one, the two projects in parallel."""
        nova_env = peer_env(OS_NOVA_DISABLE_EVENTLET_PATCHING="1")
        steps = {
            "nova": [
                self.nova("nova-manage", "api_db", "sync"),
                self.nova("nova-manage", "cell_v2", "map_cell0"),
                self.nova("nova-manage", "cell_v2", "create_cell", "--name", "cell1"),
                self.nova("nova-manage", "db", "sync"),
            ],
            "cinder": [self.cinder("cinder-manage", "db", "sync")],
        }
        failures: list[str] = []

        def run(project: str) -> None:
            log = self.root / "logs" / f"{project}-manage.log"
            env = nova_env if project == "nova" else peer_env()
            for argv in steps[project]:
                with open(log, "ab") as out:
                    rc = subprocess.run(
                        argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600
                    ).returncode
                if rc != 0:
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                    failures.append(f"{' '.join(argv[1:])} exited {rc}:\n{tail}")
                    return

        side_by_side(functools.partial(run, project) for project in steps)
        if failures:
            raise RuntimeError("database sync failed: " + "\n".join(failures))

    def _start(self, name: str, argv: list[str], grace: float = 10.0) -> PeerProcess:
        proc = PeerProcess(
            name, argv, self.root / "logs" / f"{name}.log", peer_env(), grace=grace
        ).start()
        self.procs[name] = proc
        return proc

    def start_services(self, list_queues: Callable[[], list[dict]]) -> None:
        control = str(self.root / "nova" / "control.conf")
        self._start("nova-conductor", self.nova("nova-conductor", "--config-file", control))
        self._start("nova-scheduler", self.nova("nova-scheduler", "--config-file", control))
        for host, conf in self.compute_confs.items():
            self._start(
                f"nova-compute-{host}",
                self.nova("nova-compute", "--config-file", str(conf)),
                grace=15.0,
            )
        self._start("cinder-scheduler", self.cinder("cinder-scheduler"))
        # cinder-volume once cinder-scheduler is up: both write cinder's SQLite file while they
        # start, and a backend whose start meets "database is locked" is not tried again
        # (cinder.cmd.volume logs "failed to start" and runs without it).
        self.wait_consuming(list_queues, ["cinder-scheduler", f"cinder-scheduler.{CINDER_HOST}"])
        self._start_cinder_volume()

    def _start_cinder_volume(self) -> None:
        self._start("cinder-volume", self.cinder("cinder-volume"), grace=15.0)

    def _restart_failed_backends(self) -> None:
        """Start cinder-volume again (twice at most) when one of its backends failed to start."""
        volume = self.procs.get("cinder-volume")
        if volume is None or self.volume_restarts >= 2:
            return
        if "failed to start" not in volume.text_since():
            return
        self.volume_restarts += 1
        volume.stop()
        volume.log.rename(volume.log.with_suffix(f".failed-{self.volume_restarts}.log"))
        self._start_cinder_volume()

    # The queues whose consumers prove the services are up.
    @staticmethod
    def expected_queues() -> list[str]:
        return [
            "conductor",
            f"conductor.{NOVA_HOST}",
            "scheduler",
            f"scheduler.{NOVA_HOST}",
            "compute",
            *(f"compute.{h}" for h in NOVA_COMPUTES),
            "cinder-scheduler",
            f"cinder-scheduler.{CINDER_HOST}",
            "cinder-volume",
            *(f"cinder-volume.{CINDER_HOST}@{b}" for b in CINDER_BACKENDS),
        ]

    def wait_consuming(
        self,
        list_queues: Callable[[], list[dict]],
        queues: Sequence[str] | None = None,
        timeout: float = 180,
    ) -> None:
        """Wait until every one of *queues* (default: all the services') has a consumer."""
        expected = list(queues or self.expected_queues())
        deadline = time.monotonic() + timeout
        missing = expected
        while time.monotonic() < deadline:
            self._restart_failed_backends()
            dead = [p.name for p in self.procs.values() if not p.running()]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited early:\n{self.tails(dead)}")
            consumed = {q["name"] for q in list_queues() if q.get("consumers", 0) > 0}
            missing = [q for q in expected if q not in consumed]
            if not missing:
                return
            time.sleep(1)
        raise RuntimeError(
            f"no consumer on {', '.join(missing)} after {timeout:g}s:\n{self.tails()}"
        )

    def tails(self, names: Iterable[str] | None = None) -> str:
        chosen = self.procs if names is None else {n: self.procs[n] for n in names}
        tails = "".join(f"\n--- {n} ---\n{p.tail()}\n" for n, p in chosen.items())
        return f"{tails}(whole logs in {self.root / 'logs'})"

    def stop(self) -> None:
        side_by_side(p.stop for p in self.procs.values())

    @contextlib.contextmanager
    def paused(self, *names: str) -> Iterator[None]:
        """SIGSTOP the peers *names* (their process groups): consumers stay, answers stop.

        Keep it short: a peer stopped past the AMQP heartbeat timeout loses its connection.
        """
        for name in names:
            self.procs[name].signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for name in names:
                self.procs[name].signal(signal.SIGCONT)
                self.resumed[name] = time.time()

    # -- evidence

    def marks(self) -> dict[str, int]:
        return {name: p.mark() for name, p in self.procs.items()}

    def rpc_errors_since(
        self, marks: dict[str, int], names: Sequence[str] | None = None
    ) -> dict[str, list[LogEntry]]:
        """Per peer, the RPC-layer ERRORs logged since *marks* (only peers that have some)."""
        out: dict[str, list[LogEntry]] = {}
        for name in names or self.procs:
            errors = [
                e
                for e in self.procs[name].rpc_errors_since(marks.get(name, 0))
                if not self._late_reply(name, e)
            ]
            if errors:
                out[name] = errors
        return out

    def _late_reply(self, name: str, entry: LogEntry) -> bool:
        """An answer to a probe the peer took while a test had it stopped, sent on resuming.

        The prober's reply queue is gone by then: oslo retries for 60 s and logs "failed to send
        ... due to a missing queue". That is the stuck tests' own doing (they stop a real
        service on purpose), not what the test reading the log is about.
        """
        resumed = self.resumed.get(name)
        if resumed is None or "due to a missing queue" not in entry.text:
            return False
        stamp = entry.text[:23]
        try:
            logged = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        except ValueError:
            return False
        return logged <= resumed + LATE_REPLY_WINDOW

    def wait_rpc_errors(self, marks: dict[str, int], name: str, timeout: float = 10) -> list:
        """The RPC ERRORs *name* logged since *marks*, waiting up to *timeout* for the first."""
        deadline = time.monotonic() + timeout
        while True:
            errors = self.procs[name].rpc_errors_since(marks.get(name, 0))
            if errors or time.monotonic() > deadline:
                return errors
            time.sleep(0.2)


def format_errors(errors: dict[str, list[LogEntry]]) -> str:
    return "".join(
        f"\n--- {name}: {len(entries)} ERROR(s) ---\n" + "\n".join(map(str, entries[:3]))
        for name, entries in errors.items()
    )


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.returncode} in {self.seconds:.2f}s\n"
            f"stdout: {self.stdout}\nstderr: {self.stderr}"
        )

    def json(self) -> Any:
        return json.loads(self.stdout)


def managerctl_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def managerctl(
    *args: str | os.PathLike,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,  # noqa: A002 - subprocess's name
    cwd: str | os.PathLike | None = None,
) -> Result:
    """Run the installed console script as an operator would; never raises on exit codes.

    A command still running after *timeout* is killed and reported as exit -1.
    """
    argv = [MANAGERCTL, *map(str, args)]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env or managerctl_env(),
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return Result(argv, -1, out, err + f"\n<still running after {timeout:g}s>", timeout)
    return Result(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


# --------------------------------------------------------------------------------------
# managerctl's own long-running processes beside the peers

REPORT_INTERVAL = 2  # seconds between a served manager's heartbeats, small to see several
SERVED_HOSTS = ("peer-hi-a", "peer-hi-b")
OWN_SCHEDULER_TOPIC = "managerctl-scheduler"


@dataclass
class Fleet:
    """``serve collector`` (one beside nova, one beside cinder) and two served managers.

    Each reads the service's own config file, as an operator on that box would, plus a small
    managerctl.conf of its own after it (later files win in oslo.config): the heartbeat interval
    and the collector's store.
    """

    cloud: Cloud
    root: Path
    procs: dict[str, PeerProcess] = field(default_factory=dict)
    nova_store: str = field(init=False)
    cinder_store: str = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.nova_store = f"sqlite:///{self.root / 'nova-collector.db'}"
        self.cinder_store = f"sqlite:///{self.root / 'cinder-collector.db'}"

    def own_conf(self, name: str, **options: Any) -> Path:
        base = {"report_interval": REPORT_INTERVAL, "periodic_fuzzy_delay": 0}
        return write_ini(self.root / f"{name}.conf", {"DEFAULT": {**base, **options}})

    def serve(self, name: str, service_conf: Path, *args: str, **options: Any) -> PeerProcess:
        own = self.own_conf(name, **options)
        argv = [MANAGERCTL, "--config-file", str(service_conf), "--config-file", str(own)]
        proc = PeerProcess(
            name, [*argv, "serve", *args], self.root / f"{name}.log", managerctl_env()
        ).start()
        self.procs[name] = proc
        return proc

    def start(self) -> None:
        c = self.cloud
        self.serve("collector-nova", c.nova_conf, "collector", capabilities_store=self.nova_store)
        self.serve(
            "collector-cinder",
            c.cinder_conf,
            "collector",
            "--scheduler-topic",
            "cinder-scheduler",
            capabilities_store=self.cinder_store,
        )
        # As the README says beside real nova: managerctl's own publishers get a scheduler
        # topic of their own (nova-scheduler no longer has update_service_capabilities).
        own = {"scheduler_topic": OWN_SCHEDULER_TOPIC}
        self.serve("hostinfo-a", c.nova_conf, "hostinfo", "--host", SERVED_HOSTS[0], **own)
        self.serve("hostinfo-b", c.cinder_conf, "hostinfo", "--host", SERVED_HOSTS[1], **own)

    def wait_started(self, timeout: float = 60) -> list[str]:
        """Wait until each has run post_start_hook; returns the names of those that did not."""
        deadline = time.monotonic() + timeout
        pending = set(self.procs)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                proc = self.procs[name]
                if "post_start_hook done" in proc.text_since() or not proc.running():
                    pending.discard(name)
            time.sleep(0.3)
        return sorted(
            n for n, p in self.procs.items() if "post_start_hook done" not in p.text_since()
        )

    def require(self, *names: str) -> None:
        """Fail the calling test, with the log, when one of *names* is not serving."""
        import pytest

        for name in names:
            proc = self.procs[name]
            if not proc.running() or "post_start_hook done" not in proc.text_since():
                pytest.fail(f"managerctl {name} is not serving:\n{proc.tail()}", pytrace=False)

    def stop(self) -> None:
        side_by_side(p.stop for p in self.procs.values())

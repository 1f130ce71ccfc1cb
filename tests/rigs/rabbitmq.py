"""A throwaway RabbitMQ node on loopback, for tests and demos.

Standard library only: the readiness probe speaks just enough AMQP 0-9-1 to
open and close a connection as ``guest``, so this module needs no client
library.  See ``design/RABBITMQ.md`` for the machine facts it relies on.

Typical use::

    with RabbitMQNode() as node:
        url = node.url            # rabbit://guest:guest@127.0.0.1:PORT/
        node.list_queues()        # [{'name': ..., 'messages': 0, 'consumers': 1}, ...]
        node.restart()            # same data dir, same ports

Run ``python -m rigs.rabbitmq (from tests/)`` to keep a node in the
foreground until Ctrl-C.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from ._local import LOOPBACK, chown_tree, port_accepts, tail

__all__ = ["RabbitMQNode", "ensure_rabbitmq_installed", "free_port"]

DEFAULT_NAME_PREFIX = "managerctl-test"
INSTALL_HINT = (
    "rabbitmq-server is not installed. On Debian/Ubuntu install it with "
    "'sudo apt-get update && sudo apt-get install -y rabbitmq-server' "
    "(scripts/test.sh does this for you)."
)

# Debian puts the server scripts in /usr/sbin, which is not on a normal user's PATH.
_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/lib/rabbitmq/bin")

# Nodes started by this process and not yet stopped, stopped at interpreter exit.
_LIVE_NODES: set[RabbitMQNode] = set()


def ensure_rabbitmq_installed() -> str:
    """Return the path of ``rabbitmq-server``, or raise RuntimeError saying how to install it."""
    path = shutil.which("rabbitmq-server")
    if path:
        return path
    for directory in _EXTRA_DIRS:
        candidate = os.path.join(directory, "rabbitmq-server")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(INSTALL_HINT)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on *host* that is free right now (the kernel's pick for port 0)."""
    return _free_ports(1, host)[0]


# rabbitmqctl's own Erlang distribution ports (RABBITMQ_CTL_DIST_PORT_MIN..MAX in 3.10).
_CTL_DIST_PORTS = range(35672, 35683)


def _free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    # Hold all sockets open together so the kernel hands out distinct ports.
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)  # kept bound until the end, so it isn't handed out twice
            s.bind((host, 0))
            port = s.getsockname()[1]
            if port not in _CTL_DIST_PORTS:
                ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


def _pid_alive(pid: int) -> bool:
    """True if *pid* exists and is not a zombie (reparented zombies may never be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------------------
# Minimal AMQP 0-9-1 handshake, used only as a readiness probe.


class _AMQPProbeError(Exception):
    pass


def _shortstr(value: str) -> bytes:
    data = value.encode()
    return struct.pack("B", len(data)) + data


def _longstr(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _method_frame(class_id: int, method_id: int, args: bytes) -> bytes:
    payload = struct.pack(">HH", class_id, method_id) + args
    return struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _AMQPProbeError("connection closed by the broker")
        buf += chunk
    return buf


def _recv_method(sock: socket.socket) -> tuple[int, int, bytes]:
    while True:
        header = _recv_exact(sock, 7)
        if header[:4] == b"AMQP":  # protocol mismatch answer
            raise _AMQPProbeError("broker rejected the protocol header")
        frame_type, _channel, size = struct.unpack(">BHI", header)
        body = _recv_exact(sock, size + 1)
        if body[-1:] != b"\xce":
            raise _AMQPProbeError("bad frame end")
        if frame_type == 1:
            class_id, method_id = struct.unpack(">HH", body[:4])
            if (class_id, method_id) == (10, 50):  # connection.close from the broker
                code = struct.unpack(">H", body[4:6])[0]
                text = body[7 : 7 + body[6]].decode(errors="replace")
                raise _AMQPProbeError(f"broker closed the connection: {code} {text}")
            return class_id, method_id, body[4:-1]
        # heartbeat or other frames: ignore


def _expect(sock: socket.socket, class_id: int, method_id: int) -> bytes:
    got_class, got_method, args = _recv_method(sock)
    if (got_class, got_method) != (class_id, method_id):
        raise _AMQPProbeError(
            f"expected method {class_id}.{method_id}, got {got_class}.{got_method}"
        )
    return args


def amqp_handshake(
    host: str,
    port: int,
    username: str = "guest",
    password: str = "guest",
    vhost: str = "/",
    timeout: float = 5.0,
) -> None:
    """Open and close an AMQP 0-9-1 connection; raise OSError/_AMQPProbeError on failure."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        _expect(sock, 10, 10)  # connection.start
        response = b"\0" + username.encode() + b"\0" + password.encode()
        start_ok = (
            struct.pack(">I", 0)  # empty client-properties table
            + _shortstr("PLAIN")
            + _longstr(response)
            + _shortstr("en_US")
        )
        sock.sendall(_method_frame(10, 11, start_ok))
        tune = _expect(sock, 10, 30)  # connection.tune
        channel_max, frame_max, _heartbeat = struct.unpack(">HIH", tune[:8])
        sock.sendall(_method_frame(10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
        sock.sendall(_method_frame(10, 40, _shortstr(vhost) + _shortstr("") + b"\x00"))
        _expect(sock, 10, 41)  # connection.open-ok
        close = struct.pack(">H", 200) + _shortstr("probe done") + struct.pack(">HH", 0, 0)
        sock.sendall(_method_frame(10, 50, close))
        with contextlib.suppress(OSError, _AMQPProbeError):
            _expect(sock, 10, 51)  # connection.close-ok


# --------------------------------------------------------------------------------------


class RabbitMQNode:
    """One throwaway RabbitMQ node: own name, ports and state directory, on 127.0.0.1.

    The node's AMQP listener and its Erlang distribution port are free ports
    picked at construction time and kept across :meth:`restart`.  All state
    (Mnesia, logs, pid file, feature flags) lives in one temporary directory,
    removed by :meth:`stop` unless ``keep_data`` is true.
    """

    def __init__(
        self,
        name_prefix: str = DEFAULT_NAME_PREFIX,
        *,
        port: int | None = None,
        dist_port: int | None = None,
        keep_data: bool = False,
    ) -> None:
        self._server = ensure_rabbitmq_installed()
        self._ctl = self._tool("rabbitmqctl")
        self._server = self._tool("rabbitmq-server")
        suffix = secrets.token_hex(4)
        self._nodename = f"{name_prefix}-{suffix}@localhost"
        self._own_ports = port is None and dist_port is None
        ports = _free_ports(2)
        self._port = port or ports[0]
        self._dist_port = dist_port or (ports[1] if ports[1] != self._port else ports[0])
        self.keep_data = keep_data
        self._dir: str | None = None
        self._proc: subprocess.Popen | None = None
        self._log_handle = None
        self._beam_pid: int | None = None
        self.last_start_seconds: float | None = None
        self.last_stop_seconds: float | None = None

    # -- paths and properties ----------------------------------------------------------

    def _tool(self, name: str) -> str:
        """Path of a RabbitMQ script (rabbitmq-server, rabbitmqctl) next to rabbitmq-server.

        Debian's /usr/sbin wrappers switch to user ``rabbitmq`` when run as root and refuse
        to run for anybody else; other users run the real scripts directly.
        """
        wrapper_dir = os.path.dirname(self._server)
        path = os.path.join(wrapper_dir, name)
        if not os.path.exists(path):
            path = shutil.which(name) or path
        if os.geteuid() != 0 and self._is_debian_wrapper(path):
            real = os.path.join(os.path.dirname(os.path.realpath(path)), name)
            if os.path.exists(real):
                return real
        return path

    @staticmethod
    def _is_debian_wrapper(path: str) -> bool:
        try:
            with open(os.path.realpath(path), "rb") as f:
                return b"Only root or rabbitmq should run" in f.read(8192)
        except OSError:
            return False

    @property
    def nodename(self) -> str:
        return self._nodename

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self._port

    @property
    def dist_port(self) -> int:
        return self._dist_port

    @property
    def url(self) -> str:
        return f"rabbit://guest:guest@{LOOPBACK}:{self._port}/"

    @property
    def amqp_url(self) -> str:
        """The same broker as a pika/AMQP URL."""
        return f"amqp://guest:guest@{LOOPBACK}:{self._port}/%2F"

    @property
    def data_dir(self) -> str | None:
        return self._dir

    @property
    def log_file(self) -> str | None:
        """Where the server's stdout/stderr go."""
        return os.path.join(self._dir, "server.log") if self._dir else None

    @property
    def node_log_file(self) -> str | None:
        """RabbitMQ's own log file."""
        if not self._dir:
            return None
        return os.path.join(self._dir, "log", f"{self._nodename}.log")

    @property
    def pid(self) -> int | None:
        """OS pid of the node's Erlang VM (beam), once it has written its pid file."""
        return self._read_beam_pid() or self._beam_pid

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<RabbitMQNode {self._nodename} port={self._port} {state}>"

    # -- environment -------------------------------------------------------------------

    def _prepare_dir(self) -> None:
        if self._dir is not None:
            return
        path = tempfile.mkdtemp(prefix=self._nodename.split("@")[0] + "-")
        os.chmod(path, 0o755)
        for sub in ("mnesia", "log"):
            os.mkdir(os.path.join(path, sub))
        with open(os.path.join(path, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        # Empty config files so that nothing from /etc/rabbitmq leaks in.
        open(os.path.join(path, "rabbitmq.conf"), "w").close()
        open(os.path.join(path, "rabbitmq-env.conf"), "w").close()
        os.mkdir(os.path.join(path, "conf.d"))
        self._dir = path
        chown_tree(path, "rabbitmq")

    def env(self) -> dict[str, str]:
        """Environment for rabbitmq-server / rabbitmqctl aimed at this node."""
        if self._dir is None:
            raise RuntimeError("node has no data directory (not started)")
        d = self._dir
        env = dict(os.environ)
        # Don't inherit settings meant for another node.
        for key in list(env):
            if key.startswith("RABBITMQ_") or key == "ERL_LIBS":
                del env[key]
        env.update(
            {
                "RABBITMQ_NODENAME": self._nodename,
                "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
                "RABBITMQ_NODE_PORT": str(self._port),
                "RABBITMQ_DIST_PORT": str(self._dist_port),
                "RABBITMQ_MNESIA_BASE": os.path.join(d, "mnesia"),
                "RABBITMQ_LOG_BASE": os.path.join(d, "log"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(d, "enabled_plugins"),
                "RABBITMQ_FEATURE_FLAGS_FILE": os.path.join(d, "feature_flags"),
                "RABBITMQ_PID_FILE": os.path.join(d, "rabbitmq.pid"),
                "RABBITMQ_CONFIG_FILE": os.path.join(d, "rabbitmq.conf"),
                "RABBITMQ_CONFIG_FILES": os.path.join(d, "conf.d"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(d, "advanced.config"),
                "RABBITMQ_CONF_ENV_FILE": os.path.join(d, "rabbitmq-env.conf"),
                # RabbitMQ 3.10 passes the node name through the environment only; this
                # inert Erlang flag puts it on the VM's command line, so that
                # `ps aux | grep managerctl-test` finds a left-over node.
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-managerctl_node {self._nodename}",
            }
        )
        return env

    # -- lifecycle ---------------------------------------------------------------------

    def is_running(self) -> bool:
        """True when the node process we started is alive and its AMQP port accepts."""
        if self._proc is None or self._proc.poll() is not None:
            return False
        return port_accepts(self._port)

    def start(self, timeout: float = 60) -> RabbitMQNode:
        """Start the node and wait until an AMQP client can log in; return self.

        A port picked as free can be taken by someone else before the node listens on it
        (another test's client gets it as its local port): a first start that fails with
        eaddrinuse is tried again on new ports. A restart keeps its ports, as do given ones.
        """
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError(f"{self._nodename} is already running")
        fresh = self._dir is None and self._own_ports
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except RuntimeError as exc:
                if not fresh or attempt == 2 or "eaddrinuse" not in str(exc):
                    raise
            self._cleanup()
            self._port, self._dist_port = _free_ports(2)
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> RabbitMQNode:
        self._prepare_dir()
        assert self._dir is not None
        started = time.monotonic()
        self._log_handle = open(self.log_file, "ab")  # noqa: SIM115 - closed in _reap
        self._proc = subprocess.Popen(
            [self._server],
            env=self.env(),
            cwd=self._dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() can kill exactly this
        )
        _LIVE_NODES.add(self)
        deadline = started + timeout
        last_error: Exception | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                self._fail(f"rabbitmq-server exited with code {code} during start-up")
            try:
                amqp_handshake(LOOPBACK, self._port, timeout=2)
                break
            except (OSError, _AMQPProbeError) as exc:
                last_error = exc
            if time.monotonic() > deadline:
                self._fail(
                    f"RabbitMQ node {self._nodename} did not accept AMQP logins on "
                    f"{LOOPBACK}:{self._port} within {timeout:g}s (last error: {last_error})"
                )
            time.sleep(0.1)
        self._beam_pid = self._read_beam_pid()
        self.last_start_seconds = time.monotonic() - started
        return self

    def _fail(self, message: str) -> None:
        log, node_log = self.log_file, self.node_log_file
        detail = f"\n--- tail of {log} ---\n{tail(log)}"
        if node_log and os.path.exists(node_log):
            detail += f"\n--- tail of {node_log} ---\n{tail(node_log)}"
        self._kill()
        if not self.keep_data:
            self._cleanup()
        raise RuntimeError(message + detail)

    def stop(self, timeout: float = 30, *, cleanup: bool | None = None) -> None:
        """Stop the node (rabbitmqctl stop, else kill what we started) and remove its data.

        ``cleanup=False`` keeps the data directory (as :meth:`restart` does); the default
        removes it unless the node was made with ``keep_data=True``.
        """
        started = time.monotonic()
        if self._proc is not None:
            if self._proc.poll() is None:
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self.rabbitmqctl("stop", timeout=timeout)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=timeout)
            self._kill()
            self.last_stop_seconds = time.monotonic() - started
        if cleanup is None:
            cleanup = not self.keep_data
        if cleanup:
            self._cleanup()

    def restart(self, timeout: float = 60) -> RabbitMQNode:
        """Stop and start again with the same name, ports and data (durable state survives)."""
        self.stop(cleanup=False)
        return self.start(timeout=timeout)

    def _read_beam_pid(self) -> int | None:
        if not self._dir:
            return None
        try:
            with open(os.path.join(self._dir, "rabbitmq.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _node_pids(self) -> list[int]:
        """Pids of processes started for this node, found by RABBITMQ_NODENAME in their env.

        The node name carries a random suffix, so this matches nothing else.  epmd is
        skipped: the first node on a machine starts it and every node shares it.
        """
        marker = f"RABBITMQ_NODENAME={self._nodename}".encode()
        me = os.getpid()
        pids = []
        try:
            entries = os.listdir("/proc")
        except OSError:
            return pids
        for entry in entries:
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    environ = f.read().split(b"\0")
            except OSError:
                continue
            if marker in environ and "epmd" not in _cmdline(int(entry)):
                pids.append(int(entry))
        return pids

    def _kill(self) -> None:
        """Make sure every process we started is gone: our process group, then the node's."""
        proc = self._proc
        if proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    continue
        # As root, Debian's wrapper runs the node through `su -c`, which puts it in a new
        # session: our process group does not include the Erlang VM, so find it by its env.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self._node_pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            end = time.monotonic() + 5
            while time.monotonic() < end and any(_pid_alive(p) for p in pids):
                time.sleep(0.05)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        self._proc = None
        self._beam_pid = None
        _LIVE_NODES.discard(self)

    def _cleanup(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RabbitMQNode:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- rabbitmqctl -------------------------------------------------------------------

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl -n NODE ARGS...`` against this node and return its stdout."""
        cmd = [self._ctl, "-n", self._nodename, *args]
        result = subprocess.run(
            cmd,
            env=self.env(),
            cwd=self._dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed with code {result.returncode}:\n"
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def _list(self, command: str, columns: Sequence[str]) -> list[dict]:
        out = self.rabbitmqctl(command, *columns, "--formatter", "json", "--silent")
        out = out.strip()
        return json.loads(out) if out else []

    def list_queues(self, columns: Sequence[str] = ("name", "messages", "consumers")) -> list[dict]:
        """Queues of vhost ``/``: a list of dicts with the given columns."""
        return self._list("list_queues", columns)

    def list_exchanges(
        self, columns: Sequence[str] = ("name", "type", "durable", "auto_delete")
    ) -> list[dict]:
        """Exchanges of vhost ``/``: a list of dicts with the given columns."""
        return self._list("list_exchanges", columns)

    def list_connections(self, columns: Sequence[str] = ("name", "user", "state")) -> list[dict]:
        return self._list("list_connections", columns)


@atexit.register
def _stop_leftover_nodes() -> None:
    for node in list(_LIVE_NODES):
        with contextlib.suppress(Exception):
            node.stop(timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m rigs.rabbitmq",
        description="Run a throwaway RabbitMQ node on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--name-prefix", default="managerctl-dev")
    parser.add_argument("--port", type=int, default=None, help="AMQP port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--keep-data", action="store_true", help="keep the data dir on exit")
    args = parser.parse_args(argv)

    try:
        node = RabbitMQNode(args.name_prefix, port=args.port, keep_data=args.keep_data)
        print(f"starting {node.nodename} ...", file=sys.stderr, flush=True)
        node.start(timeout=args.timeout)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 69

    def _on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_sigterm)  # same clean stop as Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    print(
        f"{node.nodename} up in {node.last_start_seconds:.1f}s, data in {node.data_dir}",
        file=sys.stderr,
    )
    print(f"  export MANAGERCTL_TRANSPORT_URL={node.url}", file=sys.stderr)
    print(
        f"  rabbitmqctl -n {node.nodename} list_queues name messages consumers",
        file=sys.stderr,
    )
    print("Ctrl-C to stop.", file=sys.stderr, flush=True)
    print(node.url, flush=True)
    try:
        while True:
            if node._proc is None or node._proc.poll() is not None:
                print("error: the node exited", file=sys.stderr)
                node.stop()
                return 1
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    print(f"stopping {node.nodename} ...", file=sys.stderr, flush=True)
    node.stop()
    print(f"stopped in {node.last_stop_seconds:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

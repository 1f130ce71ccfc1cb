"""A throwaway RabbitMQ 4.0 node, run from the Debian 13 chroot scripts/_setup.sh caches.

The chroot (``MANAGERCTL_RABBITMQ4_ROOT``, default /var/cache/managerctl-rabbitmq4/trixie) is
built once by ``scripts/test.sh``; this module only runs nodes from it (design/RABBITMQ.md):

- every command runs under ``unshare --mount --propagation private`` with ``/proc`` and
  ``/sys`` mounted inside that namespace only, as the chroot's ``rabbitmq`` user;
- each node has its own epmd on a free loopback port (``ERL_EPMD_PORT``), so it shares nothing
  with the host's 3.10 nodes or another agent's 4.0 node, and no epmd outlives the node;
- the node's state lives in a temp dir under the chroot's /tmp, removed on stop;
- ``strict=True`` denies the deprecated features RabbitMQ 4.3 denies by default.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence

from ._local import LOOPBACK, tail
from .rabbitmq import _AMQPProbeError, _free_ports, amqp_handshake

DEFAULT_ROOT = "/var/cache/managerctl-rabbitmq4/trixie"
MARKER = ".managerctl-rabbitmq4-ready"
SETUP_HINT = (
    "run scripts/test.sh once (it builds the RabbitMQ 4.0 chroot), or set MANAGERCTL_RABBITMQ4_ROOT"
)

# What RabbitMQ 4.3 denies by default; 4.0.5 permits both unless told otherwise.
STRICT_CONF = (
    "deprecated_features.permit.transient_nonexcl_queues = false\n"
    "deprecated_features.permit.global_qos = false\n"
)

_LIVE: set[RabbitMQ4Node] = set()


def chroot_root() -> str:
    return os.environ.get("MANAGERCTL_RABBITMQ4_ROOT", DEFAULT_ROOT)


def chroot_ready(root: str | None = None) -> str | None:
    """None when the chroot is usable, else why not."""
    root = root or chroot_root()
    if not os.path.isfile(os.path.join(root, MARKER)):
        return f"no RabbitMQ 4.0 chroot at {root} (marker {MARKER} missing)"
    if os.geteuid() != 0:
        return "RabbitMQ 4.0 nodes run from a chroot and need root"
    return None


def _killpg(proc: subprocess.Popen | None, grace: float = 10) -> None:
    """TERM then KILL the process group of a process we started with start_new_session."""
    if proc is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no member of its group is left either.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


class RabbitMQ4Node:
    """One RabbitMQ 4.0 node on 127.0.0.1 with its own name, ports, epmd and state dir."""

    def __init__(
        self,
        *,
        strict: bool = False,
        extra_conf: str = "",
        name_prefix: str = "managerctl-test-rmq4",
        root: str | None = None,
    ) -> None:
        self.root = root or chroot_root()
        problem = chroot_ready(self.root)
        if problem:
            raise RuntimeError(f"{problem}: {SETUP_HINT}")
        self.strict = strict
        self.extra_conf = extra_conf
        self.nodename = f"{name_prefix}-{secrets.token_hex(4)}@localhost"
        self.port, self.dist_port, self.epmd_port = _free_ports(3)
        passwd = os.path.join(self.root, "etc/passwd")
        with open(passwd) as f:
            entry = next(line for line in f if line.startswith("rabbitmq:"))
        self.uid, self.gid = (int(x) for x in entry.split(":")[2:4])
        self._dir: str | None = None  # host path of the state dir
        self._node: subprocess.Popen | None = None
        self._epmd: subprocess.Popen | None = None
        self.last_start_seconds: float | None = None

    # -- paths -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"rabbit://guest:guest@{LOOPBACK}:{self.port}/"

    def vhost_url(self, vhost: str) -> str:
        from urllib.parse import quote

        return f"rabbit://guest:guest@{LOOPBACK}:{self.port}/{quote(vhost, safe='')}"

    def _inside(self, host_path: str) -> str:
        return "/" + os.path.relpath(host_path, self.root)

    @property
    def node_log_file(self) -> str | None:
        return os.path.join(self._dir, "log", f"{self.nodename}.log") if self._dir else None

    def _env(self) -> dict[str, str]:
        assert self._dir is not None
        d = self._inside(self._dir)
        return {
            "HOME": "/var/lib/rabbitmq",  # the chroot's Erlang cookie
            "PATH": "/usr/lib/rabbitmq/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": f"{d}/mnesia",
            "RABBITMQ_LOG_BASE": f"{d}/log",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{d}/enabled_plugins",
            "RABBITMQ_FEATURE_FLAGS_FILE": f"{d}/feature_flags",
            "RABBITMQ_PID_FILE": f"{d}/rabbitmq.pid",
            "RABBITMQ_CONFIG_FILE": f"{d}/rabbitmq.conf",
            "RABBITMQ_CONFIG_FILES": f"{d}/conf.d",
            "RABBITMQ_ADVANCED_CONFIG_FILE": f"{d}/advanced.config",
            "RABBITMQ_CONF_ENV_FILE": f"{d}/rabbitmq-env.conf",
            # The dist port would otherwise listen on every interface.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                f"-kernel inet_dist_use_interface {{127,0,0,1}} -managerctl_node {self.nodename}"
            ),
        }

    def _command(self, argv: Sequence[str]) -> list[str]:
        """argv run inside the chroot, in a private mount namespace, as the rabbitmq user."""
        # bash -c SCRIPT ROOT USERSPEC ENV... ARGV...: $0 is the root, $1 the userspec.
        script = (
            'mount -t proc proc "$0/proc" && mount -t sysfs sys "$0/sys" && '
            'exec chroot --userspec="$1" "$0" env -i "${@:2}"'
        )
        env = [f"{k}={v}" for k, v in self._env().items()]
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            script,
            self.root,
            f"{self.uid}:{self.gid}",
            *env,
            *argv,
        ]

    # -- lifecycle ---------------------------------------------------------------------

    def _prepare_dir(self) -> None:
        tmp = os.path.join(self.root, "tmp")
        path = tempfile.mkdtemp(prefix=self.nodename.split("@")[0] + "-", dir=tmp)
        os.chmod(path, 0o755)
        for sub in ("mnesia", "log", "conf.d"):
            os.mkdir(os.path.join(path, sub))
        with open(os.path.join(path, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        with open(os.path.join(path, "rabbitmq.conf"), "w") as f:
            f.write(STRICT_CONF if self.strict else "")
            f.write(self.extra_conf)
        open(os.path.join(path, "rabbitmq-env.conf"), "w").close()
        for base, dirs, files in os.walk(path):
            os.chown(base, self.uid, self.gid)
            for name in dirs + files:
                os.chown(os.path.join(base, name), self.uid, self.gid)
        self._dir = path

    def start(self, timeout: float = 90) -> RabbitMQ4Node:
        if self._node is not None:
            raise RuntimeError(f"{self.nodename} is already running")
        started = time.monotonic()
        self._prepare_dir()
        assert self._dir is not None
        _LIVE.add(self)
        log = open(os.path.join(self._dir, "server.log"), "ab")  # noqa: SIM115
        with log:
            # epmd in the foreground (no -daemon) so that it stays in our process group.
            self._epmd = subprocess.Popen(
                self._command(["epmd", "-address", LOOPBACK, "-port", str(self.epmd_port)]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._node = subprocess.Popen(
                self._command(["/usr/lib/rabbitmq/bin/rabbitmq-server"]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        last: Exception | None = None
        while True:
            if self._node.poll() is not None:
                self._fail(f"rabbitmq-server 4.0 exited with code {self._node.returncode}")
            try:
                amqp_handshake(LOOPBACK, self.port, timeout=2)
                break
            except (OSError, _AMQPProbeError) as exc:
                last = exc
            if time.monotonic() - started > timeout:
                self._fail(f"{self.nodename} did not accept AMQP within {timeout:g}s ({last})")
            time.sleep(0.1)
        self.last_start_seconds = time.monotonic() - started
        return self

    def _fail(self, message: str) -> None:
        detail = ""
        if self._dir:
            detail += f"\n--- server.log ---\n{tail(os.path.join(self._dir, 'server.log'))}"
            if self.node_log_file and os.path.exists(self.node_log_file):
                detail += f"\n--- node log ---\n{tail(self.node_log_file)}"
        self.stop(graceful=False)
        raise RuntimeError(message + detail)

    def stop(self, *, graceful: bool = True) -> None:
        """Stop the node and its epmd (by process group) and remove the state dir."""
        if self._node is not None:
            if graceful and self._node.poll() is None:
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self.rabbitmqctl("stop", timeout=30)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._node.wait(timeout=15)
            _killpg(self._node)
            self._node = None
        _killpg(self._epmd, grace=5)
        self._epmd = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        _LIVE.discard(self)

    def is_running(self) -> bool:
        return self._node is not None and self._node.poll() is None

    def __enter__(self) -> RabbitMQ4Node:
        return self.start() if self._node is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- rabbitmqctl -------------------------------------------------------------------

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl -n NODE ARGS`` run inside the chroot (its cookie, its epmd)."""
        cmd = self._command(["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", self.nodename, *args])
        result = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} failed with code {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result.stdout

    def list_queues(
        self, columns: Sequence[str] = ("name", "messages", "consumers"), *, vhost: str = "/"
    ) -> list[dict]:
        out = self.rabbitmqctl(
            "list_queues", "-p", vhost, *columns, "--formatter", "json", "--silent"
        ).strip()
        return json.loads(out) if out else []

    def add_vhost(self, vhost: str | None = None) -> str:
        """A fresh vhost that guest may use; returns its transport URL."""
        vhost = vhost or f"managerctl-{secrets.token_hex(3)}"
        self.rabbitmqctl("add_vhost", vhost)
        self.rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return self.vhost_url(vhost)

    def is_permitted(self, feature: str) -> bool:
        out = self.rabbitmqctl("eval", f"rabbit_deprecated_features:is_permitted({feature}).")
        return out.strip() == "true"


@atexit.register
def stop_leftovers() -> None:
    """Nodes a crashed or interrupted run left: stopped at interpreter exit."""
    for node in list(_LIVE):
        with contextlib.suppress(Exception):
            node.stop(graceful=False)

"""Run a manager as a service: start order, RPC consumers, periodic timer, heartbeat, stop.

Start order (SEED.md): ``init_host`` -> service record -> ``pre_start_hook`` -> consumers on
TOPIC, TOPIC.HOST and the TOPIC fanout -> ``post_start_hook`` -> periodic timer and state report.
Stop: stop consuming, let in-flight calls finish within a graceful timeout, then return.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from . import __version__
from .context import get_admin_context
from .manager import HOOKS, HookRun, Manager, SchedulerDependentManager, run_hook
from .rpc.dispatcher import Target

LOG = logging.getLogger(__name__)

CONTROL_NAMESPACE = "managerctl"
CONTROL_API_VERSION = "1.0"


@dataclass
class ServiceRecord:
    """What a service announces about itself."""

    service: str
    host: str
    topic: str
    version: str
    started: float
    pid: int
    hooks: list[dict[str, Any]] = field(default_factory=list)


class ControlEndpoint:
    """Remote control of a served manager, in its own namespace so oslo peers never see it."""

    target = Target(namespace=CONTROL_NAMESPACE, version=CONTROL_API_VERSION)

    def __init__(self, service: Service) -> None:
        self._service = service

    def list_periodic_tasks(self, context: Any) -> list[dict[str, Any]]:
        """Each task with spacing, last run, last outcome and error, next due."""
        with self._service.periodic_lock:
            return self._service.manager.periodic_task_info()

    def run_periodic_task(self, context: Any, task: str | list[str] | None = None) -> list[dict]:
        """Run one task, several, or all (task=None) now, without shifting their schedule."""
        names = [task] if isinstance(task, str) else task
        with self._service.periodic_lock:
            runs = self._service.manager.run_tasks_now(context, names)
        return [asdict(run) for run in runs]

    def get_capabilities(self, context: Any) -> Any:
        """The capabilities the manager would publish next (null for a plain Manager)."""
        return getattr(self._service.manager, "last_capabilities", None)

    def get_service(self, context: Any) -> dict[str, Any]:
        """The service record, including the hooks that ran and how they ended."""
        return asdict(self._service.record) if self._service.record else {}


class _LockedPublisher:
    """Fanout casts from several threads through one client (pika is not thread-safe)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def fanout_cast(self, context: Any, topic: str, method: str, args: dict[str, Any]) -> None:
        with self._lock:
            self._client.cast(context, method, topic=topic, fanout=True, args=args)


class Service:
    """A manager served over RPC, with its periodic timer."""

    def __init__(
        self,
        manager: Manager,
        *,
        topic: str,
        settings: Any,
        graceful_timeout: float = 30.0,
    ) -> None:
        self.manager = manager
        self.topic = topic
        self.settings = settings
        self.graceful_timeout = graceful_timeout
        self.record: ServiceRecord | None = None
        self.hook_runs: list[HookRun] = []
        self.periodic_lock = threading.RLock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._client: Any = None

    # -- start -------------------------------------------------------------------

    def _hook(self, hook: str) -> None:
        run = run_hook(self.manager, hook)
        self.hook_runs.append(run)
        if self.record is not None:
            self.record.hooks = [asdict(r) for r in self.hook_runs]
        LOG.info("hook %s: %s%s", hook, run.outcome, f" ({run.error})" if run.error else "")
        if run.outcome != "ok":
            raise RuntimeError(f"{hook} failed: {run.error}")

    def start(self) -> None:
        from .config import rabbit_options
        from .rpc.client import RPCClient
        from .rpc.server import RPCServer
        from .rpc.transport import RabbitOptions, parse_transport_url

        url = parse_transport_url(self.settings.transport_url)
        options = RabbitOptions(**rabbit_options(self.settings))
        self._hook(HOOKS[0])
        self.record = ServiceRecord(
            service=self.manager.service_name,
            host=self.manager.host,
            topic=self.topic,
            version=__version__,
            started=time.time(),
            pid=os.getpid(),
            hooks=[asdict(r) for r in self.hook_runs],
        )
        self._hook(HOOKS[1])
        if isinstance(self.manager, SchedulerDependentManager):
            self._client = RPCClient(url, options=options)
            self.manager.publisher = _LockedPublisher(self._client)
        dispatcher = self.manager.create_rpc_dispatcher(
            backdoor_port=self.manager.backdoor_port, additional_apis=[ControlEndpoint(self)]
        )
        self._server = RPCServer(
            url, topic=self.topic, server=self.manager.host, dispatcher=dispatcher, options=options
        )
        self._server.start()
        LOG.info(
            "serving %s on topic %s (host %s) at %s",
            self.manager.service_name,
            self.topic,
            self.manager.host,
            url.masked(),
        )
        self._hook(HOOKS[2])
        if self.settings.periodic_enable:
            self._spawn(self._periodic_loop, "periodic")

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- timers ------------------------------------------------------------------

    def _periodic_loop(self) -> None:
        fuzzy = int(self.settings.periodic_fuzzy_delay or 0)
        delay = random.randint(0, fuzzy) if fuzzy > 0 else 0
        if self._stopping.wait(delay):
            return
        context = get_admin_context()
        while not self._stopping.is_set():
            try:
                with self.periodic_lock:
                    idle = self.manager.periodic_tasks(context)
            except Exception:
                # An error escaping the runner must never stop the timer.
                LOG.exception("periodic task runner failed")
                idle = 1.0
            interval_max = self.settings.periodic_interval_max
            if interval_max:
                idle = min(idle, interval_max)
            self._stopping.wait(max(idle, 0.1))

    # -- stop --------------------------------------------------------------------

    def stop(self) -> None:
        """Stop consuming, let in-flight calls finish (graceful timeout), then close."""
        self._stopping.set()
        if self._server is not None:
            self._server.stop(graceful_timeout=self.graceful_timeout)
        for thread in self._threads:
            thread.join(timeout=self.graceful_timeout)
        if self._client is not None:
            self._client.close()
        LOG.info("stopped %s on %s", self.manager.service_name, self.manager.host)

    def request_stop(self) -> None:
        """Ask wait() to return (safe from a signal handler)."""
        self._stopping.set()

    def wait(self) -> None:
        """Block until stop() is called."""
        while not self._stopping.wait(0.5):
            pass

    def reload(self, settings: Any) -> None:
        """Apply re-read configuration (SIGHUP) to what can change while running."""
        self.settings = settings
        self.manager.settings = settings
        self.manager.run_external_periodic_tasks = settings.run_external_periodic_tasks
        LOG.info("configuration reloaded from %s", ", ".join(settings.config_files) or "defaults")

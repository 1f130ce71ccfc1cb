"""Run a manager as a service: start order, RPC consumers, periodic timer, heartbeat, stop.

Start order (SEED.md): ``init_host`` -> service record (announced to the collector) ->
``pre_start_hook`` -> consumers on TOPIC, TOPIC.HOST and the TOPIC fanout -> ``post_start_hook``
-> the periodic-task timer and the state-report (heartbeat) timer. Stop: stop consuming, let
in-flight calls finish within a graceful timeout, then return.

The broker may go away while a service runs. The RPC server reconnects on its own (with backoff,
across the hosts of the URL). The periodic timer never needs the broker, so tasks keep running.
What the service itself sends (state reports, capabilities) goes through a :class:`BrokerPublisher`
that never raises: a failed send is one log line, and the next interval tries again on a new
connection.

State reports (heartbeats) go to managerctl's own topic (``MANAGERCTL_TOPIC``), where the
collector listens, never to a scheduler topic: a real scheduler (nova's, cinder's) shares that
topic's fanout and would log every report it cannot dispatch as an error.

A manager may also listen to other topics' fanouts (the collector joins the scheduler's):
``fanout_listeners()`` returns (topic, dispatcher) pairs, each served by a server that consumes a
fanout queue of its own and nothing else.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from . import __version__, names
from .context import get_admin_context
from .errors import ManagerCtlError, TaskFailedError, UnavailableError
from .manager import MANAGERCTL_TOPIC, HookRun, Manager, SchedulerDependentManager, run_hook
from .rpc.dispatcher import Target

if TYPE_CHECKING:
    from .config import Settings

__all__ = [
    "CONTROL_API_VERSION",
    "CONTROL_NAMESPACE",
    "REPORT_METHOD",
    "REPORT_TOPIC",
    "BrokerPublisher",
    "ControlEndpoint",
    "Service",
    "ServiceRecord",
]

LOG = logging.getLogger(__name__)

CONTROL_NAMESPACE = names.CONTROL_NAMESPACE
CONTROL_API_VERSION = names.CONTROL_API_VERSION
# The fanout cast a service sends every report_interval to REPORT_TOPIC; the collector stores
# what it carries.
REPORT_METHOD = names.REPORT_METHOD
REPORT_TOPIC = MANAGERCTL_TOPIC
# Shortest sleep of the periodic timer, so a task with a tiny spacing cannot spin a core.
MIN_PERIODIC_SLEEP = 0.1
# How often a service whose reports were turned off by a reload looks at the option again.
DEFAULT_REPORT_PAUSE = 60.0
# Options a SIGHUP cannot change in a running service (they shape its connection and queues).
RESTART_OPTIONS = ("transport_url", "control_exchange", "host", "periodic_enable")


@dataclass
class ServiceRecord:
    """What a service announces about itself, and what its state reports carry."""

    service: str
    host: str
    topic: str
    version: str
    started: float
    pid: int
    status: str = "starting"  # starting, running, stopping, stopped
    updated_at: float | None = None
    report_count: int = 0
    # What a collector needs to ask this service to publish, without guessing: whether it
    # publishes capabilities at all, to which scheduler topic, and the RPC API it speaks.
    rpc_api_version: str | None = None
    publishes_capabilities: bool = False
    scheduler_topic: str | None = None
    hooks: list[dict[str, Any]] = field(default_factory=list)

    def state_report(self) -> dict[str, Any]:
        """The record as the heartbeat sends it (the hooks stay home: ask get_service)."""
        report = asdict(self)
        del report["hooks"]
        return report


class ControlEndpoint:
    """Remote control of a served manager, in its own namespace so oslo peers never see it.

    Every row carries ``host`` and ``service``, so the answers of a broadcast call (which carry no
    server identity on the wire) can be told apart.
    """

    target = Target(namespace=CONTROL_NAMESPACE, version=CONTROL_API_VERSION)

    def __init__(self, service: Service) -> None:
        self._service = service

    def _identity(self) -> dict[str, Any]:
        manager = self._service.manager
        return {"host": manager.host, "service": manager.service_name}

    def list_periodic_tasks(self, context: Any) -> list[dict[str, Any]]:
        """Each task with spacing, last run, last outcome and error, next due."""
        with self._service.periodic_lock:
            tasks = self._service.manager.periodic_task_info()
        return [{**self._identity(), **task} for task in tasks]

    def run_periodic_task(
        self, context: Any, task: str | list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Run one task, several, or all (task=None) now, without shifting their schedule."""
        names = [task] if isinstance(task, str) else task
        with self._service.periodic_lock:
            runs = self._service.manager.run_tasks_now(context, names)
        return [{**self._identity(), **asdict(run)} for run in runs]

    def get_capabilities(self, context: Any) -> dict[str, Any]:
        """The capabilities the manager would publish next (null for a plain Manager)."""
        capabilities = getattr(self._service.manager, "last_capabilities", None)
        return {**self._identity(), "capabilities": capabilities}

    def get_service(self, context: Any) -> dict[str, Any]:
        """The service record, including the hooks that ran and how they ended."""
        record = self._service.record
        return asdict(record) if record is not None else self._identity()

    def list_hooks(self, context: Any) -> list[dict[str, Any]]:
        """The lifecycle hooks that ran, in the order they ran, with their outcome."""
        return [{**self._identity(), **asdict(run)} for run in self._service.hook_runs]


# The capabilities publication of a SchedulerDependentManager (manager.py), and how long the
# answer to "does a scheduler of another service consume this topic?" is kept.
CAPABILITIES_METHOD = "update_service_capabilities"
FOREIGN_SCHEDULER_CHECK_TTL = 60.0


class BrokerPublisher:
    """Fanout casts that survive the broker going away: never raises, one log line a failure.

    One client serves every thread (its lock serialises them). After a failure the client is
    dropped and the next send opens a new connection, so a restarted broker, or another host of a
    multi-host URL, is picked up at the next interval.
    """

    def __init__(self, client_factory: Callable[[], Any]) -> None:
        self._client_factory = client_factory
        self._client: Any = None
        self._lock = threading.Lock()
        self._failing = False
        self.failures = 0
        self._scheduler_checks: dict[str, tuple[bool, float]] = {}
        self._warned: set[str] = set()
        # Told (method, sent) of every cast (service metrics); must not raise or block.
        self.on_send: Callable[[str, bool], None] | None = None

    def fanout_cast(self, context: Any, topic: str, method: str, args: dict[str, Any]) -> bool:
        """Send ``method(**args)`` to every server of ``topic``; False (logged) if it failed.

        Nobody listening is not a failure: the client declares the fanout exchange first.
        """
        with self._lock:
            try:
                if self._client is None:
                    self._client = self._client_factory()
                if method == CAPABILITIES_METHOD and self._foreign_scheduler(topic):
                    self._sent(method, False)
                    return False
                self._client.cast(context, method, topic=topic, fanout=True, args=args)
            except Exception as exc:
                self.failures += 1
                self._failing = True
                self._discard_client()
                LOG.warning(
                    "cannot send %s to %s (%s); trying again at the next interval",
                    method,
                    topic,
                    _one_line(exc),
                )
                self._sent(method, False)
                return False
            if self._failing:
                self._failing = False
                LOG.info("the broker is reachable again: %s to %s sent", method, topic)
            self._sent(method, True)
            return True

    def _foreign_scheduler(self, topic: str) -> bool:
        """True when a real scheduler (nova's, cinder's) consumes ``topic``'s shared queue.

        managerctl never consumes a scheduler topic's shared queue (its collector hears the
        fanout through a queue of its own), so a consumer there is a service of another family:
        nova-scheduler logs an ERROR traceback for every update_service_capabilities at a
        version it does not speak. Such a publication is skipped, with one warning that says
        what to set. The answer is kept for a minute: one passive declare per interval at most.
        """
        now = time.monotonic()
        known = self._scheduler_checks.get(topic)
        if known is not None and known[1] > now:
            return known[0]
        counter = getattr(self._client, "queue_consumers", None)
        consumers = int(counter(topic)) if counter is not None else 0
        foreign = consumers > 0
        self._scheduler_checks[topic] = (foreign, now + FOREIGN_SCHEDULER_CHECK_TTL)
        if foreign and topic not in self._warned:
            self._warned.add(topic)
            LOG.warning(
                "not publishing capabilities to topic %s: %d scheduler(s) of another service "
                "(nova-scheduler?) consume it and would log an ERROR for each; set "
                "[DEFAULT] scheduler_topic to a topic of managerctl's own (and the same for "
                "serve collector)",
                topic,
                consumers,
            )
        return foreign

    def _sent(self, method: str, ok: bool) -> None:
        if self.on_send is not None:
            try:
                self.on_send(method, ok)
            except Exception:
                LOG.exception("the on_send observer raised")

    def close(self) -> None:
        with self._lock:
            self._discard_client()

    def _discard_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.close()
        except Exception as exc:  # a dead connection may fail to close: it is gone either way
            LOG.debug("closing the publisher's client: %s", _one_line(exc))


def _one_line(exc: BaseException) -> str:
    from .redact import mask_url_passwords

    # A ManagerCtlError's hint is for a person at a prompt, not for a service log.
    text = exc.message if isinstance(exc, ManagerCtlError) else str(exc)
    text = text.splitlines()[0] if text else ""
    return mask_url_passwords(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _default_server_factory(settings: Settings) -> Callable[..., Any]:
    def build(**kwargs: Any) -> Any:
        from .rpc import get_transport
        from .rpc.server import RPCServer

        kwargs.setdefault("max_message_bytes", int(settings.max_message_size))
        return RPCServer(get_transport(settings), **kwargs)

    return build


def _default_client_factory(settings: Settings) -> Callable[[], Any]:
    def build() -> Any:
        from .rpc import get_transport
        from .rpc.client import RPCClient

        return RPCClient(get_transport(settings), timeout=settings.rpc_response_timeout)

    return build


class Service:
    """A manager served over RPC, with its periodic timer and its state reports.

    ``server_factory(topic=, server=, dispatcher=)`` and ``client_factory()`` build the RPC server
    and the publishing client; the defaults use the settings' transport URL (tests pass fakes).
    ``metrics`` (a manager_cli.metrics.ServiceMetrics) is fed by observers when given.
    """

    def __init__(
        self,
        manager: Manager,
        *,
        topic: str,
        settings: Settings,
        graceful_timeout: float = 30.0,
        server_factory: Callable[..., Any] | None = None,
        client_factory: Callable[[], Any] | None = None,
        randint: Callable[[int, int], int] = random.randint,
        metrics: Any = None,
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self.topic = topic
        self.settings = settings
        self.graceful_timeout = graceful_timeout
        self.record: ServiceRecord | None = None
        self.hook_runs: list[HookRun] = []
        # Held while tasks run, by the timer or on demand, so two runs never overlap.
        self.periodic_lock = threading.RLock()
        self.publisher = BrokerPublisher(client_factory or _default_client_factory(settings))
        self._server_factory = server_factory or _default_server_factory(settings)
        self._randint = randint
        self._server: Any = None
        self._listeners: list[Any] = []
        self._stopping = threading.Event()
        self._wakers: list[threading.Event] = []
        self._threads: list[threading.Thread] = []
        self._stopped = False

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the hooks and start consuming, in seed order; returns once the timers run.

        Raises TaskFailedError when a hook fails (the later steps do not happen), and the
        transport's errors when the broker cannot be used.
        """
        manager = self.manager
        LOG.info(
            "Starting %s node (version %s) on topic %s as host %s",
            manager.service_name,
            __version__,
            self.topic,
            manager.host,
        )
        if self.metrics is not None:
            self.metrics.describe_service(
                manager.service_name, manager.host, self.topic, __version__
            )
            manager.on_task_run = self.metrics.task_run
            self.publisher.on_send = self.metrics.cast_sent
        self._hook("init_host")
        publishes = isinstance(manager, SchedulerDependentManager)
        self.record = ServiceRecord(
            service=manager.service_name,
            host=manager.host,
            topic=self.topic,
            version=__version__,
            started=time.time(),
            pid=os.getpid(),
            rpc_api_version=str(manager.RPC_API_VERSION),
            publishes_capabilities=publishes,
            scheduler_topic=(
                manager.scheduler_topic if isinstance(manager, SchedulerDependentManager) else None
            ),
            hooks=[asdict(run) for run in self.hook_runs],
        )
        LOG.info("service record of %s on %s created", manager.service_name, manager.host)
        if self._reports_enabled():
            self.report_state()
        self._hook("pre_start_hook")
        if isinstance(manager, SchedulerDependentManager):
            manager.publisher = self.publisher
        dispatcher = manager.create_rpc_dispatcher(
            backdoor_port=manager.backdoor_port, additional_apis=[ControlEndpoint(self)]
        )
        if self.metrics is not None:
            dispatcher = self.metrics.instrument(dispatcher)
        server = self._server_factory(topic=self.topic, server=manager.host, dispatcher=dispatcher)
        if self.metrics is not None and hasattr(server, "on_event"):
            server.on_event = self.metrics.server_event
        server.start()
        self._server = server
        LOG.info("consuming %s", ", ".join(getattr(server, "queues", None) or [self.topic]))
        try:
            self._start_listeners()
            self._hook("post_start_hook")
        except BaseException:
            self._stop_servers()
            raise
        self.record.status = "running"
        if self.settings.periodic_enable:
            self._spawn(self._periodic_loop, "periodic-tasks")
        else:
            LOG.info("periodic tasks are disabled (periodic_enable is false)")
        # Spawned even with report_interval 0, so that a reload can turn the reports on.
        self._spawn(self._report_loop, "state-report")
        if not self._reports_enabled():
            LOG.info("state reports are disabled (report_interval is 0)")

    def _start_listeners(self) -> None:
        listeners = getattr(self.manager, "fanout_listeners", None)
        for item in listeners() if listeners is not None else ():
            # (topic, dispatcher): an RPC server on that fanout only; or a ready listener
            # (start, stop, wait, queues, topic) that the manager built itself.
            if isinstance(item, tuple):
                topic, dispatcher = item
                listener = self._server_factory(
                    topic=topic, server=self.manager.host, dispatcher=dispatcher, fanout_only=True
                )
            else:
                listener, topic = item, item.topic
            listener.start()
            self._listeners.append(listener)
            queues = getattr(listener, "queues", None) or [names.fanout_exchange_name(topic)]
            LOG.info("listening to %s (a queue of its own: %s)", topic, ", ".join(queues))

    def _stop_servers(self) -> None:
        servers = [*self._listeners, self._server]
        self._listeners, self._server = [], None
        for server in servers:
            if server is not None:
                server.stop(graceful_timeout=self.graceful_timeout)

    def _hook(self, hook: str) -> None:
        run = run_hook(self.manager, hook)
        self.hook_runs.append(run)
        if self.record is not None:
            self.record.hooks = [asdict(r) for r in self.hook_runs]
        if run.outcome != "ok":
            LOG.error("%s failed: %s; not starting", hook, run.error)
            raise TaskFailedError(f"{hook} of {self.manager.service_name} failed: {run.error}")
        LOG.info("%s done in %.3fs", hook, run.duration)

    def _spawn(self, target: Callable[[threading.Event], None], name: str) -> None:
        waker = threading.Event()
        self._wakers.append(waker)
        thread = threading.Thread(target=target, args=(waker,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _sleep(self, waker: threading.Event, seconds: float) -> bool:
        """Sleep up to ``seconds`` (cut short by a stop or a reload); True when stopping."""
        waker.wait(max(0.0, seconds))
        waker.clear()
        return self._stopping.is_set()

    # -- timers --------------------------------------------------------------------------------

    def _periodic_loop(self, waker: threading.Event) -> None:
        fuzzy = int(self.settings.periodic_fuzzy_delay or 0)
        delay = self._randint(0, fuzzy) if fuzzy > 0 else 0
        LOG.info(
            "periodic tasks start in %ds, then at most every %ss",
            delay,
            self.settings.periodic_interval_max or "-",
        )
        if delay and self._sleep(waker, delay):
            return
        while not self._stopping.is_set():
            idle = self.run_periodic_tasks()
            if self._sleep(waker, idle):
                return

    def run_periodic_tasks(self) -> float:
        """One pass of the timer: run what is due; the seconds to sleep before the next pass."""
        try:
            with self.periodic_lock:
                idle = float(self.manager.periodic_tasks(get_admin_context()))
        except Exception:
            # The runner records and logs a task's error itself; this is anything else. It must
            # never stop the timer.
            LOG.exception("the periodic task runner failed")
            idle = 1.0
        interval_max = self.settings.periodic_interval_max
        if interval_max and interval_max > 0:
            idle = min(idle, float(interval_max))
        return max(idle, MIN_PERIODIC_SLEEP)

    def _report_loop(self, waker: threading.Event) -> None:
        while True:
            # Read each time: a reload may change the interval (0 pauses the reports).
            interval = float(self.settings.report_interval or 0)
            if self._sleep(waker, interval if interval > 0 else DEFAULT_REPORT_PAUSE):
                return
            if self._reports_enabled():
                self.report_state()

    def _reports_enabled(self) -> bool:
        return float(self.settings.report_interval or 0) > 0

    def report_state(self) -> bool:
        """Send one state report (heartbeat) to managerctl's topic; False (logged) if it failed."""
        record = self.record
        if record is None:
            return False
        record.updated_at = time.time()
        record.report_count += 1
        return self.publisher.fanout_cast(
            get_admin_context(), REPORT_TOPIC, REPORT_METHOD, {"service": record.state_report()}
        )

    # -- stop ------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask wait() to return and the timers to end (safe from a signal handler)."""
        self._stopping.set()
        for waker in self._wakers:
            waker.set()

    def wait(self) -> None:
        """Block until request_stop() is called; raise UnavailableError if the RPC server
        stopped on its own.

        A server whose I/O thread died consumes nothing any more: rather than linger as a
        process that looks alive and serves nobody, the service fails (exit 69 from `serve`),
        so that a supervisor can restart it.
        """
        while not self._stopping.wait(0.5):
            stopped = [
                server
                for server in [self._server, *self._listeners]
                if getattr(server, "wait", None) is not None and server.wait(0)
            ]
            if stopped and not self._stopping.is_set():
                LOG.error("the RPC server stopped on its own; stopping the service")
                raise UnavailableError(
                    f"the RPC server of {self.manager.service_name} on topic {self.topic} "
                    "stopped on its own and consumes nothing any more",
                    hint="the log says why; restart the service",
                )

    def stop(self) -> None:
        """Stop consuming, let in-flight calls finish (graceful timeout), then close."""
        if self._stopped:
            return
        self._stopped = True
        self.request_stop()
        if self.record is not None:
            self.record.status = "stopping"
        if self._server is not None or self._listeners:
            LOG.info(
                "stopping consumers; in-flight calls have %gs to finish", self.graceful_timeout
            )
            self._stop_servers()
        deadline = time.monotonic() + self.graceful_timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                LOG.warning("%s is still running a task; leaving it behind", thread.name)
        cleanup = getattr(self.manager, "cleanup_host", None)
        if cleanup is not None:
            # What the manager still holds (the collector's queued writes), as nova's
            # cleanup_host: after the consumers stopped, before the process ends.
            try:
                cleanup()
            except Exception:
                LOG.exception("cleanup_host failed")
        if self.record is not None:
            # A last report, so the collector can show the service down at once instead of
            # after service_down_time.
            self.record.status = "stopped"
            if self.record.report_count and self._reports_enabled():
                self.report_state()
        self.publisher.close()
        LOG.info("stopped %s on %s", self.manager.service_name, self.manager.host)

    # -- reload ------------------------------------------------------------------------------------

    def reload(self, settings: Settings) -> None:
        """Apply re-read configuration (SIGHUP): intervals and task options change at once;
        the connection, the host and the queues need a restart."""
        needs_restart = [
            name
            for name in RESTART_OPTIONS
            if getattr(settings, name, None) != getattr(self.settings, name, None)
        ]
        self.settings = settings
        self.manager.settings = settings
        self.manager.run_external_periodic_tasks = settings.run_external_periodic_tasks
        for waker in self._wakers:
            waker.set()  # the timers pick the new intervals up now, not after the old sleep
        LOG.info(
            "configuration reloaded from %s", ", ".join(settings.config_files) or "the defaults"
        )
        if needs_restart:
            LOG.warning("changed options need a restart to apply: %s", ", ".join(needs_restart))

"""``collector``: the scheduler side of the capabilities pattern, keeping what services publish.

``managerctl serve collector`` is a good citizen on a broker it shares with real schedulers:

- Its own RPC (``report_service_state`` heartbeats, the control endpoint) lives on managerctl's
  own topic (``MANAGERCTL_TOPIC``): it consumes ``managerctl``, ``managerctl.HOST`` and a
  ``managerctl_fanout`` queue, all of a topic managerctl owns.
- It hears capabilities by joining the scheduler topic's fanout (``<scheduler_topic>_fanout``)
  through a queue of its own, declared as oslo declares a server's fanout queue. It never
  consumes the topic's shared queues (``scheduler``, ``scheduler.HOST``, ``cinder-scheduler``):
  a queue name is global to the vhost, and consuming one joins the real scheduler's
  round-robin, taking half of the requests meant for it.
- From that fanout it takes ``update_service_capabilities`` only, at any version, with the
  arguments real publishers send (cinder 29: version 3.3, ``cluster_name``, ``timestamp``, and
  room for more). Everything else a scheduler's fanout carries (nova-compute's
  ``update_instance_info``, say) is the real scheduler's business and is ignored.
- At start it asks the publishers of its family to publish again (a fanout cast of
  ``publish_service_capabilities``), each at the version it speaks (capabilities.families), so a
  restarted collector recovers the picture at once, and nothing it sends reaches a real service
  as a method or version the service does not know.

What it cannot hear: cinder-volume also casts ``notify_service_capabilities`` (3.5) to the
``cinder-scheduler`` topic queue, meant for cinder-scheduler alone. Consuming that queue is
exactly what the collector must not do; the periodic ``update_service_capabilities`` fanout
carries the same capabilities.

The store comes from ``[DEFAULT] capabilities_store`` or ``$MANAGERCTL_CAPABILITIES_STORE``; the
scheduler topic from ``[DEFAULT] scheduler_topic`` (``serve --scheduler-topic``).

Writes are batched. What the fanout brings (the bulk: every publisher, every interval) is read
by the intake (capabilities.intake), written a batch per transaction on the intake's thread,
and acknowledged only once that transaction committed: a collector that dies loses nothing it
acknowledged, and what it had not is delivered again. The collector's own RPC (heartbeats, an
update cast to it directly) goes through one writer thread that writes whatever has queued (up
to BATCH_MAX, waiting at most BATCH_WAIT for more) in one transaction; those requests are
acknowledged before they run, as oslo does.
History is kept bounded: per (service, host) by ``capabilities_history_keep``, and by age by
``capabilities_history_max_age`` (a periodic task); ``services_prune_after`` forgets services
that stopped reporting.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import BadInputError, ManagerCtlError
from ..manager import MANAGERCTL_TOPIC, SCHEDULER_TOPIC, Manager
from ..periodic import periodic_task
from .families import PublishTarget, publish_targets
from .store import DEFAULT_HISTORY_KEEP, CapabilityStore, open_store, store_url_from

if TYPE_CHECKING:
    from ..config import Settings

LOG = logging.getLogger(__name__)

PUBLISH_METHOD = "publish_service_capabilities"
UPDATE_METHOD = "update_service_capabilities"
# One transaction takes at most this many updates, gathered for at most BATCH_WAIT seconds.
BATCH_MAX = 2000
BATCH_WAIT = 0.05
# Updates waiting for the writer; past this the RPC workers wait (backpressure to the broker).
QUEUE_MAX = 20_000


class BatchWriter:
    """One thread writing what the RPC workers hand it, many updates per transaction."""

    def __init__(self, store_of: Any, batch_max: int = BATCH_MAX, wait: float = BATCH_WAIT):
        self._store_of = store_of
        self.batch_max = batch_max
        self.wait = wait
        self._queue: queue.Queue[tuple[str, Any, float] | None] = queue.Queue(QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.written = 0

    def submit(self, kind: str, item: Any) -> None:
        self._ensure_started()
        self._queue.put((kind, item, time.time()))

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="collector-writer", daemon=True
                    )
                    self._thread.start()

    def flush(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the thread (the service is stopping)."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.wait
            while len(batch) < self.batch_max:
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=max(0.0, remaining))
                        if remaining > 0
                        else (self._queue.get_nowait())
                    )
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[tuple[str, Any, float]]) -> None:
        updates = [(*item, at) for (kind, item, at) in batch if kind == "capabilities"]
        services = [(item, at) for kind, item, at in batch if kind == "service"]
        store = self._store_of()
        try:
            if updates:
                store.record_many(updates)
            if services:
                store.record_services(services)
        except ManagerCtlError as exc:
            # The database is away: these are lost (publishers send again every interval).
            LOG.warning("dropped %d updates: %s", len(batch), exc)
            return
        except Exception:
            LOG.exception("dropped %d updates", len(batch))
            return
        self.batches += 1
        self.written += len(batch)


def ask_to_publish(settings: Settings, targets: Iterable[PublishTarget]) -> list[PublishTarget]:
    """Fanout-cast ``publish_service_capabilities`` to each target at its version."""
    from ..context import get_admin_context
    from ..rpc import get_transport
    from ..rpc.client import RPCClient

    chosen = list({target.topic: target for target in targets}.values())
    if not chosen:
        return []
    with RPCClient(get_transport(settings)) as client:
        context = get_admin_context()
        for target in chosen:
            client.cast(
                context, PUBLISH_METHOD, topic=target.topic, fanout=True, version=target.version
            )
    return chosen


class CapabilityIntake:
    """What the collector takes from a scheduler's fanout: ``update_service_capabilities``.

    A dispatcher for a listen-only server: every version is accepted (a listener never replies,
    and publishers of several families speak several majors), unknown extra arguments are kept
    out of the store, and any other method is the real scheduler's and ignored without a word
    above DEBUG.
    """

    def __init__(self, collector: CollectorManager, scheduler_topic: str) -> None:
        self._collector = collector
        self.scheduler_topic = scheduler_topic

    def update_of(self, request: Any) -> tuple[str, str, Any] | None:
        """(service, host, capabilities) of an update; None for any other method; BadInputError
        for an update that lacks what the store needs."""
        if request.method != UPDATE_METHOD:
            LOG.debug(
                "ignoring %s on %s's fanout (not a capabilities update)",
                request.method,
                self.scheduler_topic,
            )
            return None
        args = request.args
        missing = [name for name in ("service_name", "host") if not args.get(name)]
        if missing or "capabilities" not in args:
            raise BadInputError(
                f"an {UPDATE_METHOD} on {self.scheduler_topic}'s fanout lacks "
                f"{', '.join(missing or ['capabilities'])}"
            )
        return str(args["service_name"]), str(args["host"]), args["capabilities"]

    def dispatch(self, request: Any) -> None:
        """One request, through the collector's batch writer (its RPC method's path)."""
        update = self.update_of(request)
        if update is not None:
            self._collector.update_service_capabilities(request.context, *update)

    def take(self, batch: list[tuple[Any, float]]) -> None:
        """A batch the fanout intake read, written to the store in one transaction before this
        returns (the intake acknowledges it then); a bad update is logged and left out."""
        updates = []
        for request, received_at in batch:
            try:
                update = self.update_of(request)
            except BadInputError as exc:
                LOG.info("ignoring a message on %s's fanout: %s", self.scheduler_topic, exc)
                continue
            if update is not None:
                updates.append((*update, received_at))
        if updates:
            self._collector.store.record_many(updates)


class CollectorManager(Manager):
    """Keeps the capabilities services publish to the scheduler topic, and their heartbeats."""

    TOPIC = MANAGERCTL_TOPIC
    # SchedulerDependentManager's local update_service_capabilities is, here, the RPC method
    # every publisher calls.
    RPC_EXPOSED = frozenset({"update_service_capabilities"})
    RPC_HIDDEN = frozenset(
        {
            "store",
            "writer",
            "scheduler_topic",
            "fanout_listeners",
            "publish_targets",
            "prune_store",
            "cleanup_host",
        }
    )

    def __init__(self, *args: Any, store: CapabilityStore | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("service_name", "collector")
        super().__init__(*args, **kwargs)
        self._store = store
        self._store_lock = threading.Lock()
        self.store_url = store_url_from(self.settings)
        self.writer = BatchWriter(lambda: self.store)

    @property
    def store(self) -> CapabilityStore:
        """The capabilities store, opened on first use (it is shared by the worker threads)."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    self._store = open_store(
                        self.store_url,
                        history_keep=int(
                            getattr(
                                self.settings, "capabilities_history_keep", DEFAULT_HISTORY_KEEP
                            )
                        ),
                    )
        return self._store

    @property
    def scheduler_topic(self) -> str:
        """The scheduler topic whose fanout the collector joins (``scheduler_topic``)."""
        return str(getattr(self.settings, "scheduler_topic", None) or SCHEDULER_TOPIC)

    def fanout_listeners(self) -> list[Any]:
        """The fanouts the service joins for us, each through a queue of its own only: a
        FanoutIntake (decoded on its own thread, acked in batches), not an RPC server, since
        the intake rate is what a collector of a large cloud needs."""
        from .intake import FanoutIntake

        intake = CapabilityIntake(self, self.scheduler_topic)
        return [FanoutIntake(self.settings, self.scheduler_topic, intake.take)]

    def publish_targets(self) -> list[PublishTarget]:
        """Whom the start-up request goes to: the family's publishers, each at its version."""
        try:
            services = self.store.services()
        except ManagerCtlError as exc:
            LOG.warning("cannot read the known services from the store: %s", exc)
            services = []
        return publish_targets(self.scheduler_topic, settings=self.settings, services=services)

    def init_host(self) -> None:
        """Open the store now, so a bad store URL stops the service before it consumes."""
        LOG.info("capabilities store: %s", self.store.description)

    def post_start_hook(self) -> None:
        """Ask the family's publishers to publish their capabilities again, at once."""
        try:
            targets = ask_to_publish(self.settings, self.publish_targets())
            LOG.info(
                "asked %s to publish their capabilities to %s",
                ", ".join(str(target) for target in targets) or "nobody",
                self.scheduler_topic,
            )
        except ManagerCtlError as exc:
            # Not fatal: services publish on their own interval anyway.
            LOG.warning("could not ask services to publish their capabilities: %s", exc)

    def cleanup_host(self) -> None:
        """The service is stopping: write what is queued."""
        self.writer.flush()

    @periodic_task(spacing=600, run_immediately=True)
    def prune_store(self, context: Any) -> None:
        """Keep the store bounded: history past its age, services gone past theirs."""
        max_age = float(getattr(self.settings, "capabilities_history_max_age", 0) or 0)
        if max_age > 0:
            self.store.prune_history(max_age)
        prune_after = float(getattr(self.settings, "services_prune_after", 0) or 0)
        if prune_after > 0:
            for gone in self.store.prune_services(prune_after):
                LOG.info("forgot %s on %s (no heartbeat for %gs)", *gone, prune_after)
        self.store.reclaim()

    # RPC methods -------------------------------------------------------------------------

    def update_service_capabilities(
        self,
        context: Any,
        service_name: str,
        host: str,
        capabilities: Any,
        cluster_name: str | None = None,
        timestamp: Any = None,
        **kwargs: Any,
    ) -> None:
        """Keep the capabilities ``service_name`` on ``host`` published (cast by publishers).

        Takes what cinder's scheduler takes (``cluster_name``, ``timestamp``, ``**kwargs``); the
        store keeps the arrival time (the publisher's clock may be off), not ``timestamp``.
        """
        if not service_name or not host:
            raise BadInputError("a capability record needs a service and a host")
        self.writer.submit("capabilities", (str(service_name), str(host), capabilities))

    def report_service_state(self, context: Any, service: dict[str, Any]) -> None:
        """Keep a service's heartbeat record (cast by every service each report_interval)."""
        if not isinstance(service, dict) or not service.get("service") or not service.get("host"):
            raise BadInputError("a service record needs a service and a host")
        self.writer.submit("service", service)

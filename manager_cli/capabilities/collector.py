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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from ..errors import BadInputError, ManagerCtlError
from ..manager import MANAGERCTL_TOPIC, SCHEDULER_TOPIC, Manager
from .families import PublishTarget, publish_targets
from .store import CapabilityStore, open_store, store_url_from

LOG = logging.getLogger(__name__)

PUBLISH_METHOD = "publish_service_capabilities"
UPDATE_METHOD = "update_service_capabilities"


def ask_to_publish(settings: Any, targets: Iterable[PublishTarget]) -> list[PublishTarget]:
    """Fanout-cast ``publish_service_capabilities`` to each target at its version."""
    from ..context import get_admin_context
    from ..rpc.client import RPCClient
    from ..rpc.transport import from_settings

    chosen = list({target.topic: target for target in targets}.values())
    if not chosen:
        return []
    url, options = from_settings(settings)
    with RPCClient(url, options=options) as client:
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

    def dispatch(self, request: Any) -> None:
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
        self._collector.update_service_capabilities(
            request.context,
            args["service_name"],
            args["host"],
            args["capabilities"],
            **{k: v for k, v in args.items() if k not in ("service_name", "host", "capabilities")},
        )
        return None


class CollectorManager(Manager):
    """Keeps the capabilities services publish to the scheduler topic, and their heartbeats."""

    TOPIC = MANAGERCTL_TOPIC
    # SchedulerDependentManager's local update_service_capabilities is, here, the RPC method
    # every publisher calls.
    RPC_EXPOSED = frozenset({"update_service_capabilities"})
    RPC_HIDDEN = frozenset({"store", "scheduler_topic", "fanout_listeners", "publish_targets"})

    def __init__(self, *args: Any, store: CapabilityStore | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("service_name", "collector")
        super().__init__(*args, **kwargs)
        self._store = store
        self._store_lock = threading.Lock()
        self.store_url = store_url_from(self.settings)

    @property
    def store(self) -> CapabilityStore:
        """The capabilities store, opened on first use (it is shared by the worker threads)."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    self._store = open_store(self.store_url)
        return self._store

    @property
    def scheduler_topic(self) -> str:
        """The scheduler topic whose fanout the collector joins (``scheduler_topic``)."""
        return str(getattr(self.settings, "scheduler_topic", None) or SCHEDULER_TOPIC)

    def fanout_listeners(self) -> list[tuple[str, CapabilityIntake]]:
        """The fanouts the service joins for us, each through a queue of its own only."""
        return [(self.scheduler_topic, CapabilityIntake(self, self.scheduler_topic))]

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
        changed = self.store.record_capabilities(service_name, host, capabilities)
        LOG.debug(
            "capabilities of %s on %s%s: %s",
            service_name,
            host,
            f" (cluster {cluster_name})" if cluster_name else "",
            "changed" if changed else "same",
        )

    def report_service_state(self, context: Any, service: dict[str, Any]) -> None:
        """Keep a service's heartbeat record (cast by every service each report_interval)."""
        self.store.record_service(service)

"""``collector``: the scheduler side of the capabilities pattern, keeping what services publish.

Served on topic ``scheduler`` (``managerctl serve collector``), it receives every
``update_service_capabilities`` fanout cast a SchedulerDependentManager (or any oslo.messaging
peer) sends, and every ``report_service_state`` heartbeat, and keeps them in the capabilities
store (manager_cli.capabilities.store): an SQLite file by default, or a shared PostgreSQL database.
When it starts it asks every service to publish again at once (a fanout cast of
``publish_service_capabilities``), so a restarted collector recovers the picture in seconds
instead of a publishing interval (SEED.md, SchedulerDependentManager).

The store comes from ``[DEFAULT] capabilities_store`` or ``$MANAGERCTL_CAPABILITIES_STORE``; the
topics asked at start from ``collector_topics`` or ``$MANAGERCTL_COLLECTOR_TOPICS`` (comma
separated, default ``hostinfo``) plus those of the services already in the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from ..errors import ManagerCtlError
from ..manager import SCHEDULER_TOPIC, Manager
from .store import CapabilityStore, known_topics, open_store, store_url_from

LOG = logging.getLogger(__name__)


def ask_to_publish(settings: Any, topics: Iterable[str]) -> list[str]:
    """Fanout-cast ``publish_service_capabilities`` to each topic; returns the topics asked."""
    from ..context import get_admin_context
    from ..rpc.client import RPCClient
    from ..rpc.transport import from_settings

    chosen = list(dict.fromkeys(topics))
    if not chosen:
        return []
    url, options = from_settings(settings)
    client = RPCClient(url, options=options)
    with client:
        context = get_admin_context()
        for topic in chosen:
            client.cast(context, "publish_service_capabilities", topic=topic, fanout=True)
    return chosen


class CollectorManager(Manager):
    """Keeps the capabilities and heartbeats services publish to the scheduler topic."""

    TOPIC = SCHEDULER_TOPIC
    # SchedulerDependentManager's local update_service_capabilities is, here, the RPC method
    # every publisher calls.
    RPC_EXPOSED = frozenset({"update_service_capabilities"})
    RPC_HIDDEN = frozenset({"store"})

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

    def init_host(self) -> None:
        """Open the store now, so a bad store URL stops the service before it consumes."""
        LOG.info("capabilities store: %s", self.store.description)

    def post_start_hook(self) -> None:
        """Ask every known service to publish its capabilities again, at once."""
        try:
            topics = ask_to_publish(self.settings, known_topics(self.store, self.settings))
            LOG.info("asked %s to publish their capabilities", ", ".join(topics) or "nobody")
        except ManagerCtlError as exc:
            # Not fatal: services publish on their own interval anyway.
            LOG.warning("could not ask services to publish their capabilities: %s", exc)

    # RPC methods -------------------------------------------------------------------------

    def update_service_capabilities(
        self, context: Any, service_name: str, host: str, capabilities: Any
    ) -> None:
        """Keep the capabilities ``service_name`` on ``host`` published (cast by publishers)."""
        changed = self.store.record_capabilities(service_name, host, capabilities)
        LOG.debug(
            "capabilities of %s on %s: %s", service_name, host, "changed" if changed else "same"
        )

    def report_service_state(self, context: Any, service: dict[str, Any]) -> None:
        """Keep a service's heartbeat record (cast by every service each report_interval)."""
        self.store.record_service(service)

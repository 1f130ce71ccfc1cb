"""What manager authors need to test their managers: an in-memory broker.

:func:`served` serves a manager exactly as ``managerctl serve`` does (a :class:`Service`: hooks,
the RPC server with its control endpoint, timers), on a :class:`MemoryTransport` of its own,
and hands you an :class:`RPCClient` on the same broker. No RabbitMQ, no threads to stop by hand::

    from manager_cli import Manager
    from manager_cli.testing import served


    class GreeterManager(Manager):
        RPC_API_VERSION = "1.0"

        def hello(self, context, name):
            return f"hello {name} from {self.host}"


    def test_hello():
        with served(GreeterManager, topic="greeter", host="web01") as client:
            assert client.call({}, "hello", topic="greeter", args={"name": "ann"}) == (
                "hello ann from web01"
            )
            # the same call to one host, as `managerctl call web01 hello name=ann` makes it
            assert client.call({}, "hello", topic="greeter", server="web01", args={"name": "ann"})

The memory broker answers as RabbitMQ does where managerctl relies on it (nobody listening,
consumer counts, exclusive queues, fanout, prefetch, redelivery; see ``rpc.memory``), so a call
to a host nobody serves raises ``NoConsumerError`` here as it does in production.
``client.transport.broker.drop_connections()`` simulates a network drop. Any code that takes
settings reaches the same broker with ``transport_url = memory://NAME``
(``rpc.get_transport(settings)``); ``RPCClient(MemoryTransport(...))`` and
``RPCServer(MemoryTransport(...), ...)`` take one directly.

(The throwaway RabbitMQ and PostgreSQL servers of managerctl's own tests are under tests/rigs.)
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..rpc.memory import MemoryBroker, MemoryTransport, get_broker

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["MemoryBroker", "MemoryTransport", "get_broker", "served", "memory_settings"]

_names = itertools.count(1)


def memory_settings(name: str | None = None, **overrides: Any) -> Any:
    """Settings whose transport is the in-memory broker ``name`` (a fresh one by default):
    periodic tasks and state reports off, unless ``overrides`` turn them on."""
    from ..config import load_settings

    name = name or f"test-{next(_names)}"
    values = {
        "transport_url": f"memory://{name}",
        "periodic_enable": False,
        "report_interval": 0,
        "periodic_fuzzy_delay": 0,
        **overrides,
    }
    return load_settings(environ={}).with_overrides(values)


@contextlib.contextmanager
def served(
    manager: Any,
    *,
    topic: str | None = None,
    host: str = "test-host",
    settings: Settings | None = None,
    timeout: float = 5.0,
) -> Iterator[Any]:
    """Serve ``manager`` (a Manager class or instance) on a fresh in-memory broker; yields an
    RPCClient on it (calls time out after ``timeout`` s). Stops the service at the end."""
    from ..rpc import get_transport
    from ..rpc.client import RPCClient
    from ..service import Service

    settings = settings or memory_settings(host=host)
    if isinstance(manager, type):
        manager = manager(host=host, settings=settings)
    if manager.host is None:
        manager.host = host
    topic = topic or getattr(manager, "TOPIC", None) or type(manager).__name__.lower()
    service = Service(manager, topic=topic, settings=settings, graceful_timeout=timeout)
    service.start()
    try:
        with RPCClient(get_transport(settings), timeout=timeout) as client:
            yield client
    finally:
        service.stop()

"""A service whose RPC server died on its own must not linger as a process serving nobody.

RPCServer's I/O thread ends on a stop, or when something it does not expect kills it (it logs
"RPC server I/O thread crashed"); the consumers are gone then. Service.wait() notices and fails
with exit 69, so that a supervisor restarts the service. No broker needed: a fake server.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from manager_cli.config import load_settings
from manager_cli.errors import UnavailableError
from manager_cli.manager import Manager
from manager_cli.service import Service


class DyingServer:
    """An RPC server stand-in whose I/O thread can be made to die."""

    def __init__(self, **kwargs: Any) -> None:
        self.stopped = threading.Event()
        self.stop_calls = 0

    def start(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> bool:
        return self.stopped.wait(timeout)

    def stop(self, graceful_timeout: float = 30.0) -> None:
        self.stop_calls += 1
        self.stopped.set()


def make_service() -> tuple[Service, list[DyingServer]]:
    settings = load_settings(environ={}).with_overrides(
        {"host": "h1", "transport_url": "rabbit://127.0.0.1:1/", "report_interval": 0}
    )
    servers: list[DyingServer] = []

    def server_factory(**kwargs: Any) -> DyingServer:
        servers.append(DyingServer(**kwargs))
        return servers[-1]

    manager = Manager(service_name="plain", settings=settings)
    service = Service(
        manager,
        topic="t",
        settings=settings,
        graceful_timeout=1,
        server_factory=server_factory,
        client_factory=lambda: None,
    )
    return service, servers


def test_a_dead_rpc_server_makes_the_service_fail_instead_of_lingering():
    service, servers = make_service()
    service.start()
    try:
        threading.Timer(0.2, servers[0].stopped.set).start()  # the I/O thread "crashes"
        started = time.monotonic()
        with pytest.raises(UnavailableError, match="stopped on its own") as info:
            service.wait()
        assert time.monotonic() - started < 2.0
        assert info.value.exit_code == 69
    finally:
        service.stop()


def test_a_requested_stop_is_not_mistaken_for_a_dead_server():
    service, servers = make_service()
    service.start()
    try:
        threading.Timer(0.2, service.request_stop).start()
        service.wait()  # returns, no error
    finally:
        service.stop()
    assert servers[0].stop_calls == 1

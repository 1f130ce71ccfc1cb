"""Fixtures for the interop tests: real oslo.messaging peers, in a subprocess or in-process.

* ``oslo_peers`` is a module-scoped factory that starts ``peers/oslo_server.py`` processes (real
  oslo RPC servers) in parallel, waits for each to print READY, and at the end of the module
  stops them (SIGTERM, then SIGKILL) and deletes their queues.
* ``oslo_transport`` is an in-process oslo RPC transport on the global ``cfg.CONF`` (PROTOCOL.md
  §10: a private ConfigOpts breaks every call in 18.x), shared by a module and cleaned up after.
* an autouse check fails a module that leaves a ``reply_*`` or ``interop_*`` queue behind.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from interop_support import (
    PEERS_DIR,
    OsloPeer,
    OsloTransport,
    delete_queue_names,
    delete_queues,
)
from rigs.rabbitmq import RabbitMQNode


@pytest.fixture(scope="session")
def peers_on_path() -> Iterator[Path]:
    """``peers/`` on sys.path, so the test process can import ``interop_errors``."""
    path = str(PEERS_DIR)
    sys.path.insert(0, path)
    try:
        yield PEERS_DIR
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(path)


StartPeers = Callable[..., list[OsloPeer]]


@pytest.fixture(scope="module")
def oslo_peers(
    rabbitmq: RabbitMQNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartPeers]:
    """``start(topic, servers, *, endpoints, exchange, rpc_ping, wait, url)``: oslo peers.

    Starts one oslo server per name in ``servers`` (in parallel) and returns them once all are
    READY; with ``wait=False`` at once, so that the peers of several calls start in parallel
    (then call ``peer.wait_ready()`` on each). ``url`` may add ``[oslo_messaging_rabbit]``
    options as a query string to the test broker's URL. At the end of the module everything
    started is stopped and every queue of their topics is deleted (oslo leaves topic and
    per-server queues by design, and a killed peer its fanout queue).
    """
    directory = tmp_path_factory.mktemp("oslo-peers")
    started: list[OsloPeer] = []

    def start(
        topic: str,
        servers: list[str] | tuple[str, ...],
        *,
        endpoints: str = "basic",
        exchange: str = "openstack",
        rpc_ping: bool = False,
        wait: bool = True,
        url: str | None = None,
    ) -> list[OsloPeer]:
        if not rabbitmq.is_running():
            rabbitmq.start()
        peers = [
            OsloPeer(
                topic=topic,
                server=name,
                exchange=exchange,
                endpoints=endpoints,
                rpc_ping=rpc_ping,
                record_file=directory / f"{topic}.records",
                log_file=directory / f"{topic}.{name}.log",
            )
            for name in servers
        ]
        for peer in peers:
            peer.start(url or rabbitmq.url)
            started.append(peer)
        if wait:
            for peer in peers:
                peer.wait_ready()
        return peers

    try:
        yield start
    finally:
        threads = [threading.Thread(target=peer.stop) for peer in started]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if rabbitmq.is_running():
            delete_queues(rabbitmq, {peer.topic for peer in started})


@pytest.fixture(scope="module")
def oslo_transport(rabbitmq: RabbitMQNode) -> Iterator[OsloTransport]:
    """An oslo RPC transport on ``cfg.CONF``; cleaned up, and its reply queue deleted, after."""
    with warnings.catch_warnings():
        # oslo.messaging imports oslo.service, which warns about eventlet at import time.
        warnings.simplefilter("ignore")
        import oslo_messaging
        from oslo_config import cfg

    if not rabbitmq.is_running():
        rabbitmq.start()
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=rabbitmq.url)
    wrapper = OsloTransport(transport, rabbitmq.url)
    try:
        yield wrapper
    finally:
        reply_queue = wrapper.reply_queue
        transport.cleanup()
        # oslo leaves its reply queue to expire (x-expires 30 min) by design; this module is
        # done with it, so do not leave it on the session's broker.
        if reply_queue and rabbitmq.is_running():
            delete_queue_names(rabbitmq, [reply_queue])


LEAK_PREFIXES = ("reply_", "interop_")


@pytest.fixture(scope="module", autouse=True)
def no_leftover_queues(request: pytest.FixtureRequest, rabbitmq: RabbitMQNode) -> Iterator[None]:
    """Fail a module that leaves a reply or interop queue on the broker.

    Autouse, so set up before and torn down after the module's other fixtures (peers stopped,
    clients closed, oslo's reply queue deleted): what remains was leaked by the code under test.
    """
    if not rabbitmq.is_running():
        rabbitmq.start()
    before = {q["name"] for q in rabbitmq.list_queues(("name",))}
    yield
    if not rabbitmq.is_running():
        return
    leaked = sorted(
        q["name"]
        for q in rabbitmq.list_queues(("name",))
        if q["name"] not in before and q["name"].startswith(LEAK_PREFIXES)
    )
    if leaked:
        delete_queue_names(rabbitmq, leaked)
        pytest.fail(f"queues left behind by {request.node.name}: {', '.join(leaked)}")

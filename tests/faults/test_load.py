"""Load on one broker: fifty services answering one broadcast, ten thousand calls in flight.

The fifty services are RPCServers in threads of this process (one worker each), each with a
manager's dispatcher and a server name of its own, all on one topic: what ``ping --all`` meets
on a big deployment. The pipelined calls go to one ``managerctl serve`` subprocess.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from faults_support import delete_topology, serve, unique

from manager_cli.config import load_settings
from manager_cli.manager import BASE_API_NAMESPACE, BASE_API_VERSION, Manager
from manager_cli.rpc.client import RPCClient
from manager_cli.rpc.server import RPCServer
from manager_cli.rpc.transport import RabbitOptions

SERVICES = 50
PIPELINED = 10_000
# Bounds with room to spare: on a busy two-core machine the gather took ~0.1 s and the ten
# thousand calls ~7.5 s (~1,300 calls/s).
GATHER_BOUND = 10.0
PIPELINED_BOUND = 60.0


class Plain(Manager):
    """A manager with nothing of its own: the base API's ping is what is asked."""


@pytest.fixture
def fifty_services(rabbitmq, broker_url, control_exchange):
    topic = unique("fifty")
    options = RabbitOptions(control_exchange=control_exchange)
    settings = load_settings(environ={})
    servers = []
    for number in range(SERVICES):
        manager = Plain(host=f"load-{number:02d}", service_name="plain", settings=settings)
        servers.append(
            RPCServer(
                broker_url,
                topic=topic,
                server=manager.host,
                dispatcher=manager.create_rpc_dispatcher(),
                options=options,
                executor_threads=1,
            )
        )
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(RPCServer.start, servers))
        yield topic, [server.server for server in servers]
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda server: server.stop(graceful_timeout=5), servers))
        delete_topology(broker_url, queues=[topic] + [f"{topic}.{s.server}" for s in servers])


def test_a_broadcast_ping_gathers_all_fifty_services(
    fifty_services, rabbitmq, broker_url, control_exchange
):
    topic, hosts = fifty_services
    queues = {q["name"]: q["consumers"] for q in rabbitmq.list_queues(("name", "consumers"))}
    assert queues[topic] == SERVICES
    options = RabbitOptions(control_exchange=control_exchange)
    with RPCClient(broker_url, options=options, exclusive=True) as client:
        ask = {
            "topic": topic,
            "args": {"arg": "all"},
            "namespace": BASE_API_NAMESPACE,
            "version": BASE_API_VERSION,
        }
        started = time.monotonic()
        replies = client.broadcast_call({}, "ping", timeout=30, expect=SERVICES, **ask)
        gathered = time.monotonic() - started
        assert gathered < GATHER_BOUND
        assert [reply.failure for reply in replies] == [None] * SERVICES
        assert sorted(reply.result["host"] for reply in replies) == hosts
        assert {reply.result["arg"] for reply in replies} == {"all"}
        # Without a count, gathering until the deadline: exactly one answer from each.
        everyone = client.broadcast_call({}, "ping", timeout=2, **ask)
        assert sorted(reply.result["host"] for reply in everyone) == hosts


def test_ten_thousand_pipelined_calls_lose_no_reply(
    rabbitmq, broker_url, control_exchange, tmp_path
):
    service = serve("hostinfo", url=broker_url, exchange=control_exchange, log_dir=tmp_path)
    try:
        options = RabbitOptions(control_exchange=control_exchange)
        target = {"method": "echo", "topic": service.topic, "server": service.host}
        with RPCClient(broker_url, options=options, timeout=PIPELINED_BOUND) as client:
            started = time.monotonic()
            results = client.call_many(
                {**target, "args": {"value": number}} for number in range(PIPELINED)
            )
            elapsed = time.monotonic() - started
        errors = [result for result in results if isinstance(result, BaseException)]
        assert not errors, f"{len(errors)} calls failed, the first: {errors[0]!r}"
        assert results == list(range(PIPELINED))  # every reply, each matched to its call
        assert elapsed < PIPELINED_BOUND
        queue = f"{service.topic}.{service.host}"
        messages = {q["name"]: q["messages"] for q in rabbitmq.list_queues(("name", "messages"))}
        assert messages[queue] == 0
        assert service.proc.poll() is None
    finally:
        service.stop()
        delete_topology(broker_url, queues=service.queues)

"""A real oslo.messaging RPC client (in-process, on cfg.CONF) against managerctl's RPC server.

``mc1`` is served the way ``managerctl serve`` does it (``Service``: hooks, the ``managerctl``
control endpoint, RPCServer); ``mc2`` is a bare RPCServer. Both serve an InteropManager on TOPIC
with the default control exchange.
"""

from __future__ import annotations

import datetime
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from interop_support import (
    delete_queue_names,
    delete_queues,
    queue_consumers,
    unique_topic,
    wait_for,
)

from manager_cli.config import load_settings
from manager_cli.manager import Manager
from manager_cli.periodic import periodic_task
from manager_cli.rpc.server import RPCServer
from manager_cli.service import CONTROL_NAMESPACE, Service

pytestmark = pytest.mark.broker

TOPIC = unique_topic("interop_o2s")
CONTEXT = {"user": "bob", "request_id": "req-456", "roles": ["member"]}
SERVICE_NAME = "interop-svc"


class Boom(Exception):
    """Raised by the manager; its module is not in any oslo client's allowed_remote_exmods."""


class InteropManager(Manager):
    """What the oslo client calls."""

    RPC_API_VERSION = "1.3"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self.records: list[str] = []
        self.slow_started = threading.Event()

    def add(self, context, a, b):
        return a + b

    def echo(self, context, value):
        return value

    def whoami(self, context):
        return self.host

    def get_context(self, context):
        return dict(context)

    def odd_types(self, context):
        return {
            "when": datetime.datetime(2024, 1, 2, 3, 4, 5, 678),
            "ids": {3, 1, 2},
            "pair": (1, (2, 3)),
        }

    def fail(self, context):
        raise ValueError(f"deliberate failure from {self.host}")

    def boom(self, context):
        raise Boom(f"boom from {self.host}")

    def slow(self, context, seconds):
        self.slow_started.set()
        time.sleep(seconds)
        return f"slept {seconds}"

    def record(self, context, value):
        with self._lock:
            self.records.append(value)

    def _secret(self, context):
        return "must never be reachable"

    @periodic_task(spacing=3600)
    def tidy_up(self, context):
        return None


def _settings(url: str, host: str):
    overrides = {"transport_url": url, "host": host, "periodic_enable": False}
    return load_settings(environ={}).with_overrides(overrides)


@pytest.fixture(scope="module")
def managers(rabbitmq):
    """{host: manager} served on TOPIC: mc1 by a Service, mc2 by a bare RPCServer."""
    mc1 = InteropManager(
        host="mc1", service_name=SERVICE_NAME, settings=_settings(rabbitmq.url, "mc1")
    )
    mc2 = InteropManager(
        host="mc2", service_name=SERVICE_NAME, settings=_settings(rabbitmq.url, "mc2")
    )
    service = Service(mc1, topic=TOPIC, settings=mc1.settings, graceful_timeout=5)
    server = RPCServer(
        rabbitmq.url, topic=TOPIC, server="mc2", dispatcher=mc2.create_rpc_dispatcher()
    )
    service.start()
    try:
        server.start()
        try:
            yield {"mc1": mc1, "mc2": mc2}
        finally:
            server.stop(graceful_timeout=5)
    finally:
        service.stop()
        if rabbitmq.is_running():
            delete_queues(rabbitmq, [TOPIC])


@pytest.fixture(scope="module")
def oslo(oslo_transport, managers):
    """oslo_transport, with the servers running."""
    return oslo_transport


# -- results ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "1.0", "1.3"])
def test_oslo_call_add(oslo, version):
    assert oslo.client(TOPIC, version=version).call(CONTEXT, "add", a=2, b=3) == 5


def test_oslo_call_echoes_json_values(oslo):
    value = {"list": [1, 2.5, None, True], "text": "héllo", "nested": {"k": []}}
    assert oslo.client(TOPIC).call(CONTEXT, "echo", value=value) == value


def test_managerctl_converts_results_as_an_oslo_server_does(oslo):
    # What an oslo server's jsonutils makes of these (see the peer's odd_types).
    assert oslo.client(TOPIC).call(CONTEXT, "odd_types") == {
        "when": "2024-01-02T03:04:05.000678",
        "ids": [1, 2, 3],
        "pair": [1, [2, 3]],
    }


@pytest.mark.parametrize("host", ["mc1", "mc2"])
def test_oslo_call_to_a_managerctl_host(oslo, host):
    assert oslo.client(TOPIC, server=host).call(CONTEXT, "whoami") == host


def test_managerctl_unpacks_the_oslo_context_as_oslo_does(oslo):
    got = oslo.client(TOPIC, server="mc1").call(CONTEXT, "get_context")
    assert got == {**CONTEXT, "client_timeout": None}
    monitored = oslo.client(TOPIC, server="mc1").prepare(call_monitor_timeout=4)
    assert monitored.call(CONTEXT, "get_context")["client_timeout"] == 4


# -- casts -----------------------------------------------------------------------------------


def test_oslo_cast_to_a_managerctl_host(oslo, managers):
    oslo.client(TOPIC, server="mc2").cast(CONTEXT, "record", value="cast-mc2")
    wait_for(lambda: "cast-mc2" in managers["mc2"].records)
    assert oslo.client(TOPIC, server="mc1").call(CONTEXT, "whoami") == "mc1"
    assert "cast-mc2" not in managers["mc1"].records


def test_oslo_fanout_cast_reaches_every_managerctl_server(oslo, managers):
    oslo.client(TOPIC, fanout=True).cast(CONTEXT, "record", value="fanout-o2s")
    wait_for(lambda: all("fanout-o2s" in m.records for m in managers.values()))
    assert [m.records.count("fanout-o2s") for m in managers.values()] == [1, 1]


# -- failures as an oslo client sees them ----------------------------------------------------


def test_value_error_is_reraised_in_the_oslo_client(oslo):
    with pytest.raises(ValueError) as info:
        oslo.client(TOPIC, server="mc1").call(CONTEXT, "fail")
    assert type(info.value) is ValueError
    assert str(info.value).startswith("deliberate failure from mc1")


def test_custom_exception_is_an_oslo_remote_error(oslo):
    import oslo_messaging

    with pytest.raises(oslo_messaging.RemoteError) as info:
        oslo.client(TOPIC, server="mc2").call(CONTEXT, "boom")
    assert info.value.exc_type == "Boom"
    assert info.value.value == "boom from mc2"


@pytest.mark.parametrize("method", ["no_such_method", "_secret", "init_host", "periodic_tasks"])
def test_unknown_private_and_framework_methods_are_no_such_method(oslo, method):
    import oslo_messaging

    with pytest.raises(oslo_messaging.RemoteError) as info:
        oslo.client(TOPIC).call(CONTEXT, method)
    assert info.value.exc_type == "NoSuchMethod"
    assert info.value.value == f"Endpoint does not support RPC method {method}"


@pytest.mark.parametrize("version", ["2.0", "1.4"])
def test_unsupported_version(oslo, version):
    import oslo_messaging

    with pytest.raises(oslo_messaging.RemoteError) as info:
        oslo.client(TOPIC, version=version).call(CONTEXT, "add", a=1, b=1)
    assert info.value.exc_type == "UnsupportedVersion"
    assert info.value.value == (
        f"Endpoint does not support RPC version {version}. Attempted method: add"
    )


def test_unknown_namespace_reads_as_unsupported_version(oslo):
    import oslo_messaging

    with pytest.raises(oslo_messaging.RemoteError) as info:
        oslo.client(TOPIC, namespace="foo").call(CONTEXT, "add", a=1, b=1)
    assert info.value.exc_type == "UnsupportedVersion"


# -- the base API and the managerctl control namespace ---------------------------------------


@pytest.mark.parametrize("host", ["mc1", "mc2"])
def test_baseapi_ping_from_an_oslo_client(oslo, host):
    client = oslo.client(TOPIC, server=host).prepare(namespace="baseapi", version="1.1")
    got = client.call(CONTEXT, "ping", arg="hello")
    # The seed answers {service, arg}; managerctl may add its host (callers ignore extra keys).
    assert {key: got[key] for key in ("service", "arg")} == {
        "service": SERVICE_NAME,
        "arg": "hello",
    }
    assert set(got) <= {"service", "arg", "host"}
    assert got.get("host", host) == host
    assert client.call(CONTEXT, "get_backdoor_port") is None


def test_baseapi_1_2_is_unsupported(oslo):
    import oslo_messaging

    client = oslo.client(TOPIC).prepare(namespace="baseapi", version="1.2")
    with pytest.raises(oslo_messaging.RemoteError) as info:
        client.call(CONTEXT, "ping", arg="x")
    assert info.value.exc_type == "UnsupportedVersion"


@pytest.mark.parametrize("version", [None, "1.3"])
def test_control_namespace_is_invisible_without_asking_for_it(oslo, version):
    import oslo_messaging

    with pytest.raises(oslo_messaging.RemoteError) as info:
        oslo.client(TOPIC, server="mc1", version=version).call(CONTEXT, "list_periodic_tasks")
    assert info.value.exc_type in ("NoSuchMethod", "UnsupportedVersion")


def test_control_namespace_answers_an_oslo_client_that_asks(oslo):
    client = oslo.client(TOPIC, server="mc1", namespace=CONTROL_NAMESPACE, version="1.0")
    tasks = client.call(CONTEXT, "list_periodic_tasks")
    assert [task["name"] for task in tasks] == ["tidy_up"]


# -- call monitor and concurrency ------------------------------------------------------------


def test_call_monitor_heartbeats_from_managerctl_keep_an_oslo_call_alive(oslo):
    # Without heartbeats every int(2)/2 = 1 s, oslo would raise MessagingTimeout at 2 s.
    client = oslo.client(TOPIC, server="mc2", timeout=10).prepare(call_monitor_timeout=2)
    started = time.monotonic()
    assert client.call(CONTEXT, "slow", seconds=3) == "slept 3"
    assert time.monotonic() - started >= 3


def test_no_heartbeat_to_an_oslo_client_without_call_monitor(oslo):
    # A heartbeat to such a client crashes its call (AttributeError in oslo, PROTOCOL.md §5).
    client = oslo.client(TOPIC, server="mc1", timeout=10)
    assert client.call(CONTEXT, "slow", seconds=2.5) == "slept 2.5"


def test_call_monitor_timeout_below_two_seconds_sends_no_heartbeat(oslo):
    import oslo_messaging

    # oslo servers send nothing when int(N)/2 < 1, so such a call times out on the monitor.
    client = oslo.client(TOPIC, server="mc1", timeout=10).prepare(call_monitor_timeout=1)
    started = time.monotonic()
    with pytest.raises(oslo_messaging.MessagingTimeout):
        client.call(CONTEXT, "slow", seconds=2.5)
    assert time.monotonic() - started < 2.4
    time.sleep(1.2)  # let the late reply arrive and be dropped before the next test


def test_calls_from_an_oslo_client_run_in_parallel(oslo):
    client = oslo.client(TOPIC, server="mc2", timeout=10)
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: client.call(CONTEXT, "slow", seconds=1), range(4)))
    assert results == ["slept 1"] * 4
    assert time.monotonic() - started < 2.5


# -- stopping --------------------------------------------------------------------------------


def test_graceful_stop_still_answers_the_oslo_call_in_flight(oslo, rabbitmq):
    topic = TOPIC + "_stop"
    manager = InteropManager(
        host="mc3", service_name=SERVICE_NAME, settings=_settings(rabbitmq.url, "mc3")
    )
    server = RPCServer(
        rabbitmq.url, topic=topic, server="mc3", dispatcher=manager.create_rpc_dispatcher()
    )
    server.start()
    try:
        client = oslo.client(topic, server="mc3", timeout=10)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.call, CONTEXT, "slow", seconds=1.5)
            assert manager.slow_started.wait(10)  # the call is running
            server.stop(graceful_timeout=5)
            assert pending.result(timeout=10) == "slept 1.5"
        assert server.wait(timeout=1)
        # Stopped: nobody consumes its queues any more, and its fanout queue is gone.
        assert queue_consumers(rabbitmq, f"{topic}.mc3") == 0
        assert server.fanout_queue and queue_consumers(rabbitmq, server.fanout_queue) is None
    finally:
        server.stop(graceful_timeout=1)
        delete_queue_names(rabbitmq, [topic, f"{topic}.mc3"])

"""The collector beside real oslo.messaging schedulers (issue 13, items 1, 2 and 4).

Real oslo.messaging servers stand where nova-scheduler and cinder-scheduler / cinder-volume
stand in a cloud (same topics, same versions, cinder's exact capabilities message from
PEERS.md), on one throwaway broker with ``managerctl serve collector`` and a served manager as
subprocesses. What must hold:

- the collector consumes none of the schedulers' shared queues: every call and cast sent to
  ``scheduler`` / ``cinder-scheduler`` is handled by the oslo server, and the broker shows the
  collector's consumers on managerctl's own topic and on a fanout queue of its own only;
- heartbeats reach ``services list`` without ever touching a scheduler topic;
- cinder's ``update_service_capabilities`` at 3.3 (``cluster_name``, ``timestamp``) is collected,
  the start-up publish request reaches cinder-volume at 3.x, and the pools show one row each;
- no oslo server logs an error (a request at a version or of a method it does not know is an
  ERROR traceback in a real service's log).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import secrets
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rigs.cli import wait_until

from manager_cli.capabilities import open_store

sys.path.insert(0, os.path.dirname(__file__))
from test_capabilities_collector import (  # noqa: E402
    Served,
    clean_env,
    consumed,
    delete_idle_queues,
)

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")

# What cinder-volume 29 casts to cinder-scheduler_fanout (PEERS.md, captured on the wire).
CINDER_UPDATE = {
    "service_name": "volume",
    "host": "peerhost@fake",
    "capabilities": {
        "volume_backend_name": "fake",
        "vendor_name": "Open Source",
        "driver_version": "3.0.0",
        "storage_protocol": "fake",
        "pools": [
            {
                "pool_name": "fake",
                "total_capacity_gb": "infinite",
                "free_capacity_gb": "infinite",
                "allocated_capacity_gb": 0,
                "provisioned_capacity_gb": 0,
                "reserved_percentage": 100,
            }
        ],
        "filter_function": None,
        "goodness_function": None,
    },
    "cluster_name": None,
    "timestamp": "2026-12-01T20:15:52.815205",
}

PLAIN_MODULE = '''
from manager_cli.manager import Manager


class Plain(Manager):
    """A manager that only reports its state (no capabilities)."""

    TOPIC = "plain"

    def hello(self, context):
        return "hello"
'''


def _oslo() -> tuple[Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # oslo.messaging imports warn about eventlet
        import oslo_messaging
        from oslo_config import cfg
    return oslo_messaging, cfg


class ErrorRecords(logging.Handler):
    """Every ERROR oslo.messaging logs in this process: what a real service's log would show."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


@pytest.fixture
def oslo(rabbitmq: Any) -> Iterator[dict[str, Any]]:
    """A real oslo.messaging transport, its servers stopped and errors collected."""
    if not rabbitmq.is_running():
        rabbitmq.start()
    oslo_messaging, cfg = _oslo()
    before = {q["name"] for q in rabbitmq.list_queues()}
    errors = ErrorRecords()
    logger = logging.getLogger("oslo_messaging")
    logger.addHandler(errors)
    # cfg.CONF, not a private ConfigOpts: PROTOCOL.md §10.
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=rabbitmq.url)
    servers: list[Any] = []

    def serve(topic: str, server: str, endpoint: object) -> Any:
        rpc = oslo_messaging.get_rpc_server(
            transport, oslo_messaging.Target(topic=topic, server=server), [endpoint],
            executor="threading",
        )  # fmt: skip
        rpc.start()
        servers.append(rpc)
        return rpc

    state = {"om": oslo_messaging, "transport": transport, "serve": serve, "errors": errors}
    try:
        yield state
    finally:
        for rpc in servers:
            with contextlib.suppress(Exception):
                rpc.stop()
                rpc.wait()
        transport.cleanup()
        logger.removeHandler(errors)
        # oslo's clients leave their reply queue to its x-expires; this test leaves nothing.
        replies = [
            q["name"]
            for q in rabbitmq.list_queues()
            if q["name"].startswith("reply_") and q["name"] not in before
        ]
        delete_idle_queues(rabbitmq, replies)


@pytest.fixture
def services(rabbitmq: Any, tmp_path: Path) -> Iterator[Any]:
    """Start ``managerctl serve ...`` subprocesses; stop them and delete managerctl's queues."""
    started: list[Served] = []
    hosts: list[str] = []
    (tmp_path / "plain_mod.py").write_text(PLAIN_MODULE)
    env = clean_env(
        MANAGERCTL_TRANSPORT_URL=rabbitmq.url,
        MANAGERCTL_CAPABILITIES_STORE=f"sqlite:///{tmp_path / 'caps.sqlite'}",
        MANAGERCTL_REPORT_INTERVAL="1",
        XDG_STATE_HOME=str(tmp_path / "state"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
    )

    def start(*args: str, host: str) -> Served:
        served = Served((*args, "--host", host), tmp_path / f"{host}.log")
        served.start(env)
        started.append(served)
        hosts.append(host)
        return served

    start.env = env  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for served in started:
            served.stop()
        names = ["managerctl", "plain", *(f"managerctl.{h}" for h in hosts)]
        delete_idle_queues(rabbitmq, names + [f"plain.{h}" for h in hosts])


def run(env: dict[str, str], *args: str) -> Any:
    import subprocess

    return subprocess.run([MANAGERCTL, *args], capture_output=True, text=True, env=env, timeout=60)


def queues(rabbitmq: Any) -> dict[str, int]:
    return {q["name"]: q["consumers"] for q in rabbitmq.list_queues()}


def fanout_consumers(rabbitmq: Any, topic: str) -> int:
    prefix = f"{topic}_fanout_"
    return sum(1 for name, n in queues(rabbitmq).items() if name.startswith(prefix) and n)


def delete_server_queues(rabbitmq: Any, names: list[str]) -> None:
    """The oslo servers' topic queues outlive them, as oslo's do."""
    delete_idle_queues(rabbitmq, names)


def test_the_collector_takes_none_of_a_schedulers_requests(
    oslo: dict[str, Any], services: Any, rabbitmq: Any
) -> None:
    om = oslo["om"]

    class NovaSchedulerLike:
        """Where nova-scheduler stands: topic scheduler, RPC 4.x."""

        target = om.Target(version="4.25")

        def __init__(self) -> None:
            self.calls: list[int] = []
            self.casts: list[int] = []
            self.lock = threading.Lock()

        def select_destinations(self, ctxt: Any, n: int) -> str:
            with self.lock:
                self.calls.append(n)
            return "oslo-scheduler"

        def update_aggregates(self, ctxt: Any, n: int) -> None:
            with self.lock:
                self.casts.append(n)

        def update_instance_info(self, ctxt: Any, host_name: str, instance_info: Any) -> None:
            pass

    tag = secrets.token_hex(3)
    scheduler = NovaSchedulerLike()
    oslo["serve"]("scheduler", f"sched-{tag}", scheduler)
    collector_host, plain_host = f"coll-{tag}", f"plain-{tag}"
    collector = services("collector", host=collector_host)
    services("plain_mod:Plain", host=plain_host)
    try:
        wait_until(lambda: consumed(rabbitmq, f"managerctl.{collector_host}"), 30)
        wait_until(lambda: fanout_consumers(rabbitmq, "scheduler") >= 2, 30)  # oslo's and ours
        seen = queues(rabbitmq)
        # The shared queue has the real scheduler only; no per-server queue of the collector.
        assert seen["scheduler"] == 1
        assert f"scheduler.{collector_host}" not in seen
        assert seen["managerctl"] == 1 and seen[f"managerctl.{collector_host}"] == 1

        client = om.get_rpc_client(oslo["transport"], om.Target(topic="scheduler", version="4.0"))
        answers = [client.call({}, "select_destinations", n=n) for n in range(20)]
        assert answers == ["oslo-scheduler"] * 20
        for n in range(10):
            client.cast({}, "update_aggregates", n=n)
        # nova-compute's fanout to the scheduler: the collector must ignore it quietly.
        fanout = client.prepare(fanout=True)
        fanout.cast({}, "update_instance_info", host_name="c1", instance_info={})
        wait_until(lambda: len(scheduler.casts) == 10, 10)
        assert sorted(scheduler.calls) == list(range(20))

        # Heartbeats travelled on managerctl's topic: services list sees the plain service.
        def plain_up() -> list[dict[str, Any]]:
            result = run(services.env, "services", "list", "-f", "json", "--host", plain_host)
            assert result.returncode == 0, result.stderr
            return [row for row in json.loads(result.stdout) if row["state"] == "up"]

        (row,) = wait_until(plain_up, 20)
        assert row["topic"] == "plain"
        time.sleep(2.5)  # more heartbeats, each a chance to reach the scheduler
        assert oslo["errors"].records == []
        assert len(scheduler.casts) == 10 and len(scheduler.calls) == 20
        log = collector.log.read_text()
        assert " ERROR " not in log and " WARNING " not in log, log
        assert "listening to scheduler" in log
    finally:
        delete_server_queues(rabbitmq, ["scheduler", f"scheduler.sched-{tag}"])


def test_cinders_capabilities_are_collected_at_3_x(
    oslo: dict[str, Any], services: Any, rabbitmq: Any
) -> None:
    om = oslo["om"]
    transport = oslo["transport"]

    class CinderSchedulerLike:
        """Where cinder-scheduler stands: topic cinder-scheduler, RPC 3.x, its real signature."""

        target = om.Target(version="3.12")

        def __init__(self) -> None:
            self.updates: list[str] = []
            self.calls = 0

        def update_service_capabilities(
            self, ctxt, service_name, host, capabilities, cluster_name=None, timestamp=None,
            **kwargs,
        ):  # fmt: skip
            self.updates.append(host)

        def get_pools(self, ctxt: Any, filters: Any = None) -> list[str]:
            self.calls += 1
            return ["oslo-cinder-scheduler"]

    class CinderVolumeLike:
        """Where cinder-volume stands: topic cinder-volume, RPC 3.x; publishes as cinder does."""

        target = om.Target(version="3.19")

        def __init__(self) -> None:
            self.asked = 0

        def publish_service_capabilities(self, ctxt: Any) -> None:
            self.asked += 1
            publisher = om.get_rpc_client(
                transport, om.Target(topic="cinder-scheduler", fanout=True, version="3.3")
            )
            publisher.cast(ctxt, "update_service_capabilities", **copy.deepcopy(CINDER_UPDATE))

    tag = secrets.token_hex(3)
    scheduler, volume = CinderSchedulerLike(), CinderVolumeLike()
    oslo["serve"]("cinder-scheduler", f"peerhost-{tag}", scheduler)
    oslo["serve"]("cinder-volume", f"peerhost@fake-{tag}", volume)
    collector_host = f"coll-{tag}"
    collector = services("collector", "--scheduler-topic", "cinder-scheduler", host=collector_host)
    env = services.env
    try:
        wait_until(lambda: fanout_consumers(rabbitmq, "cinder-scheduler") >= 2, 30)
        # The start-up request reached cinder-volume at a version it speaks, and what it sent
        # back (cinder's exact message, 3.3) is in the store.
        wait_until(lambda: volume.asked >= 1, 20)

        def stored() -> list[Any]:
            with open_store(env["MANAGERCTL_CAPABILITIES_STORE"]) as store:
                return store.latest(service="volume")

        (record,) = wait_until(stored, 20)
        assert record.host == "peerhost@fake"
        assert record.capabilities == [CINDER_UPDATE["capabilities"]]

        seen = queues(rabbitmq)
        assert seen["cinder-scheduler"] == 1 and f"cinder-scheduler.{collector_host}" not in seen
        client = om.get_rpc_client(transport, om.Target(topic="cinder-scheduler", version="3.0"))
        assert [client.call({}, "get_pools") for _ in range(10)] == [["oslo-cinder-scheduler"]] * 10

        # One row per pool, host@backend#pool, capacity columns by name; json and csv.
        shown = run(env, "capabilities", "show", "-f", "json", "-c", "host",
                    "-c", "pools.total_capacity_gb", "-c", "pools.free_capacity_gb")  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout) == [
            {
                "host": "peerhost@fake#fake",
                "pools.total_capacity_gb": "infinite",
                "pools.free_capacity_gb": "infinite",
            }
        ]
        csv_out = run(env, "capabilities", "show", "-f", "csv", "-c", "host",
                      "-c", "pools.reserved_percentage")  # fmt: skip
        assert csv_out.stdout.splitlines() == [
            "host,pools.reserved_percentage",
            "peerhost@fake#fake,100",
        ]

        # Asked again on purpose: at 3.0, and the broker knew someone was listening.
        asked = volume.asked
        published = run(env, "capabilities", "publish", "--scheduler-topic", "cinder-scheduler",
                        "-f", "json")  # fmt: skip
        assert published.returncode == 0, published.stderr
        assert json.loads(published.stdout) == [
            {"topic": "cinder-volume", "version": "3.0", "exchange": "cinder-volume_fanout",
             "listeners": "yes"}
        ]  # fmt: skip
        wait_until(lambda: volume.asked > asked, 10)

        live = run(env, "capabilities", "show", "--live", "--wait", "2", "--scheduler-topic",
                   "cinder-scheduler", "-c", "host", "-c", "pools.free_capacity_gb",
                   "-f", "json")  # fmt: skip
        assert live.returncode == 0, live.stderr
        assert json.loads(live.stdout) == [
            {"host": "peerhost@fake#fake", "pools.free_capacity_gb": "infinite"}
        ]

        nobody = run(env, "capabilities", "publish", "--topic", f"nobody-{tag}:3.0")
        assert nobody.returncode == 69, nobody.stderr
        assert f"nobody-{tag}_fanout" in nobody.stderr and "Traceback" not in nobody.stderr

        assert oslo["errors"].records == []
        assert scheduler.calls == 10 and "peerhost@fake" in scheduler.updates
        log = collector.log.read_text()
        assert " ERROR " not in log and " WARNING " not in log, log
        assert "asked cinder-volume:3.0 to publish" in log
    finally:
        delete_server_queues(
            rabbitmq,
            [
                "cinder-scheduler",
                f"cinder-scheduler.peerhost-{tag}",
                "cinder-volume",
                f"cinder-volume.peerhost@fake-{tag}",
            ],
        )

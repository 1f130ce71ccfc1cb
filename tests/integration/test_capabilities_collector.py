"""Capabilities end to end on a real broker: two hostinfo services, a collector, the CLI.

Everything runs as an operator would run it: ``managerctl serve hostinfo --host A`` and ``B``
and ``managerctl serve collector`` as subprocesses, and ``managerctl capabilities ...`` read the
store the collector fills. The whole module runs twice: with the default SQLite store and with a
real throwaway PostgreSQL (the ``postgres`` fixture; it fails, never skips, when missing).

The tests of one run share one set of services and follow its life: published, collected,
an oslo.messaging peer collected too, one host stopped (stale), the collector stopped (--live).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pytest
from rigs.cli import clean_env, wait_until

from manager_cli.capabilities import ROW_COLUMNS, open_store

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")
START_TIMEOUT = 30.0


@dataclass
class Served:
    """One ``managerctl serve`` subprocess, its log in a file."""

    args: tuple[str, ...]
    log: Path
    proc: subprocess.Popen | None = None

    def start(self, env: dict[str, str]) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [MANAGERCTL, "serve", *self.args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "".join(self.log.read_text(errors="replace").splitlines(True)[-20:])
        return ""


@dataclass
class Cluster:
    env: dict[str, str]
    store_url: str
    host_a: str
    host_b: str
    collector_host: str
    services: dict[str, Served] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MANAGERCTL, *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )

    def show(self, *args: str) -> list[dict[str, Any]]:
        result = self.run("capabilities", "show", "-f", "json", *args)
        assert result.returncode == 0, result.stderr + self.logs()
        return json.loads(result.stdout)

    def mine(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {row["host"]: row for row in rows if row["host"] in (self.host_a, self.host_b)}

    def logs(self) -> str:
        return "".join(f"\n--- {name} ---\n{s.tail()}" for name, s in self.services.items())


def consumed(rabbitmq: Any, queue: str) -> bool:
    return any(q["name"] == queue and q["consumers"] > 0 for q in rabbitmq.list_queues())


def delete_idle_queues(rabbitmq: Any, names: list[str]) -> None:
    """Delete what the services leave by design (oslo's topic queues outlive servers)."""
    if not rabbitmq.is_running():
        return
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", rabbitmq.port))
    try:
        for name in names:
            channel = connection.channel()
            with contextlib.suppress(pika.exceptions.AMQPError):
                channel.queue_delete(name, if_unused=True)
            with contextlib.suppress(pika.exceptions.AMQPError):
                channel.close()
    finally:
        connection.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('store') / 'caps.sqlite'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture(scope="module")
def cluster(
    store_url: str, rabbitmq: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    if not rabbitmq.is_running():
        rabbitmq.start()
    directory = tmp_path_factory.mktemp("capabilities")
    tag = secrets.token_hex(3)
    cluster = Cluster(
        env=clean_env(
            MANAGERCTL_TRANSPORT_URL=rabbitmq.url,
            MANAGERCTL_CAPABILITIES_STORE=store_url,
            MANAGERCTL_REPORT_INTERVAL="1",
            XDG_STATE_HOME=str(directory / "state"),
        ),
        store_url=store_url,
        host_a=f"cap-a-{tag}",
        host_b=f"cap-b-{tag}",
        collector_host=f"cap-collector-{tag}",
    )
    for host in (cluster.host_a, cluster.host_b):
        cluster.services[host] = Served(("hostinfo", "--host", host), directory / f"{host}.log")
    cluster.services["collector"] = Served(
        ("collector", "--host", cluster.collector_host), directory / "collector.log"
    )
    try:
        for host in (cluster.host_a, cluster.host_b):
            cluster.services[host].start(cluster.env)
        for host in (cluster.host_a, cluster.host_b):
            wait_until(lambda h=host: consumed(rabbitmq, f"hostinfo.{h}"), START_TIMEOUT)
        cluster.services["collector"].start(cluster.env)
        wait_until(lambda: consumed(rabbitmq, f"managerctl.{cluster.collector_host}"), START_TIMEOUT)
        yield cluster
    finally:
        for served in cluster.services.values():
            served.stop()
        delete_idle_queues(
            rabbitmq,
            [
                f"hostinfo.{cluster.host_a}",
                f"hostinfo.{cluster.host_b}",
                f"managerctl.{cluster.collector_host}",
                "managerctl",
                "hostinfo",
            ],
        )


def collected(cluster: Cluster, hosts: tuple[str, ...]) -> dict:
    """The hosts' rows once all are in the store, asking services again now and then."""
    asked = [time.monotonic()]

    def both_present() -> dict[str, dict[str, Any]]:
        rows = {host: row for host, row in cluster.mine(cluster.show()).items() if host in hosts}
        if len(rows) == len(hosts):
            return rows
        if time.monotonic() - asked[0] > 3:
            # The start-up request may have come before a service had gathered anything.
            cluster.run("capabilities", "publish", "--topic", "hostinfo")
            asked[0] = time.monotonic()
        return {}

    return wait_until(both_present, timeout=30)


def test_the_collector_keeps_both_hosts_with_real_values(cluster: Cluster) -> None:
    rows = collected(cluster, (cluster.host_a, cluster.host_b))
    for host in (cluster.host_a, cluster.host_b):
        row = rows[host]
        assert row["service"] == "hostinfo"
        assert row["state"] == "fresh"
        assert row["cpu_count"] == os.cpu_count()
        assert row["platform"] == sys.platform
        assert isinstance(row["load.1m"], float)
        assert list(row)[: len(ROW_COLUMNS)] == list(ROW_COLUMNS)
    # Stable keys: the same columns for both hosts, the fixed ones first.
    assert list(rows[cluster.host_a]) == list(rows[cluster.host_b])


def test_csv_columns_and_piped_table(cluster: Cluster) -> None:
    collected(cluster, (cluster.host_a, cluster.host_b))
    result = cluster.run("capabilities", "show", "--service", "hostinfo", "-f", "csv")
    assert result.returncode == 0, result.stderr
    rows = {row["host"]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert rows[cluster.host_a]["cpu_count"] == str(os.cpu_count())
    assert rows[cluster.host_b]["state"] == "fresh"

    picked = cluster.show("--host", cluster.host_b, "-c", "host", "-c", "cpu_count")
    assert picked == [{"host": cluster.host_b, "cpu_count": os.cpu_count()}]

    table = cluster.run("capabilities", "show")
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout + table.stderr
    assert cluster.host_a in table.stdout and "cpu_count" in table.stdout.splitlines()[0]


def test_history_of_a_host(cluster: Cluster) -> None:
    collected(cluster, (cluster.host_a, cluster.host_b))
    result = cluster.run("capabilities", "history", cluster.host_a, "-f", "json")
    assert result.returncode == 0, result.stderr
    changes = json.loads(result.stdout)
    assert changes and changes[0]["host"] == cluster.host_a
    assert changes[0]["added"]["cpu_count"] == os.cpu_count()
    assert set(changes[0]) == {
        "received_at",
        "service",
        "host",
        "summary",
        "added",
        "removed",
        "changed",
    }
    table = cluster.run("capabilities", "history", cluster.host_a)
    assert f"+cpu_count={os.cpu_count()}" in table.stdout


def test_heartbeats_are_stored(cluster: Cluster) -> None:
    def both_reported() -> bool:
        with open_store(cluster.store_url) as store:
            records = {s["host"]: s for s in store.services(service="hostinfo")}
        return all(
            records.get(host, {}).get("topic") == "hostinfo"
            for host in (cluster.host_a, cluster.host_b)
        )

    wait_until(both_reported, timeout=20)


def test_an_oslo_messaging_publisher_is_collected_like_any_other(
    cluster: Cluster, rabbitmq: Any
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # oslo.messaging imports warn about eventlet
        import oslo_messaging
        from oslo_config import cfg

    oslo_host = f"oslo-compute-{secrets.token_hex(3)}"
    capabilities = [{"vcpus": 8, "hypervisor": {"type": "kvm", "version": 6002000}}]
    # cfg.CONF, not a private ConfigOpts: PROTOCOL.md §10.
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=rabbitmq.url)
    try:
        client = oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic="scheduler", fanout=True)
        )
        client.cast(
            {"user": "nova"},
            "update_service_capabilities",
            service_name="compute",
            host=oslo_host,
            capabilities=capabilities,
        )
    finally:
        transport.cleanup()

    def oslo_row() -> list[dict[str, Any]]:
        return cluster.show("--service", "compute", "--host", oslo_host)

    (row,) = wait_until(oslo_row, timeout=15)
    assert row["vcpus"] == 8
    assert row["hypervisor.type"] == "kvm" and row["hypervisor.version"] == 6002000
    with open_store(cluster.store_url) as store:
        (record,) = store.latest(service="compute", host=oslo_host)
    assert record.capabilities == capabilities


def test_a_stopped_host_turns_stale(cluster: Cluster) -> None:
    collected(cluster, (cluster.host_a, cluster.host_b))
    cluster.services[cluster.host_a].stop()
    wait_until(lambda: cluster.mine(cluster.show())[cluster.host_a]["age_s"] > 2.5, timeout=70)

    def b_fresh_again() -> dict[str, dict[str, Any]]:
        # Ask again (only B answers) and look at once: on a loaded machine a reading may come
        # more than 2 s after B's answer, so try a few times; A must be stale in every one.
        published = cluster.run("capabilities", "publish", "--topic", "hostinfo", "-f", "json")
        assert published.returncode == 0, published.stderr
        assert json.loads(published.stdout) == [
            {"topic": "hostinfo", "version": "1.0", "exchange": "hostinfo_fanout",
             "listeners": "yes"}
        ]  # fmt: skip
        time.sleep(0.3)
        rows = cluster.mine(cluster.show("--stale", "2"))
        assert rows[cluster.host_a]["state"] == "stale", rows
        return rows if rows[cluster.host_b]["state"] == "fresh" else {}

    rows = wait_until(b_fresh_again, timeout=30, interval=0)
    assert rows[cluster.host_b]["age_s"] <= 2 < rows[cluster.host_a]["age_s"]


def test_live_needs_no_collector_and_leaves_no_queue(cluster: Cluster, rabbitmq: Any) -> None:
    cluster.services["collector"].stop()
    wait_until(lambda: not consumed(rabbitmq, f"managerctl.{cluster.collector_host}"))
    before = {q["name"] for q in rabbitmq.list_queues()}
    # No --topic: the topics of the services in the store (hostinfo) are asked.
    result = cluster.run("capabilities", "show", "--live", "--wait", "3", "-f", "json")
    assert result.returncode == 0, result.stderr
    rows = cluster.mine(json.loads(result.stdout))
    assert set(rows) == {cluster.host_b}  # A is stopped: live shows only who answered
    assert rows[cluster.host_b]["cpu_count"] == os.cpu_count()
    assert rows[cluster.host_b]["state"] == "fresh"
    assert {q["name"] for q in rabbitmq.list_queues()} == before

    # With every service stopped, nothing can arrive, not even a periodic publication.
    cluster.services[cluster.host_b].stop()
    before = {q["name"] for q in rabbitmq.list_queues()}
    nobody = cluster.run("capabilities", "show", "--live", "--wait", "1", "--topic", "hostinfo")
    assert nobody.returncode == 69, nobody.stderr
    assert "no service published" in nobody.stderr
    assert {q["name"] for q in rabbitmq.list_queues()} == before

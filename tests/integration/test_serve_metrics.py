"""``serve --metrics-address``: scrape /metrics of a served manager while calls, failures,
poison messages, periodic tasks and a lost connection happen, and find the counts they caused.

The console script serves a manager of this module's own (a file on PYTHONPATH); requests come
from ``managerctl call`` and raw pika, so each count is known in advance.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from rigs.rabbitmq import free_port
from tap_support import (
    Background,
    clean_env,
    delete_queues,
    managerctl,
    pika_connection,
    scrape,
    start_serve,
    unique,
    wait_for,
)

from manager_cli.context import get_admin_context
from manager_cli.rpc import wire

FAST_RECONNECT = "?rabbit_retry_interval=0.2&rabbit_retry_backoff=0.2&rabbit_interval_max=0.5"

MODULE = """\
import os

from manager_cli.manager import SchedulerDependentManager
from manager_cli.periodic import periodic_task


class Metered(SchedulerDependentManager):
    TOPIC = os.environ["METERED_TOPIC"]

    def hello(self, context, name="world"):
        return "hello " + name

    def fail(self, context):
        raise RuntimeError("deliberate")

    @periodic_task(spacing=0.5, run_immediately=True)
    def works(self, context):
        self.update_service_capabilities({"ok": True})
        self.publish_service_capabilities(context)

    @periodic_task(spacing=0.5, run_immediately=True)
    def explodes(self, context):
        raise ValueError("disk on fire")
"""


@pytest.fixture
def metered(rabbitmq, broker_url, tmp_path) -> Iterator[dict[str, Any]]:
    topic = unique("metered")
    host = unique("h")
    (tmp_path / "metered_mod.py").write_text(MODULE)
    env = clean_env(
        broker_url + FAST_RECONNECT,
        METERED_TOPIC=topic,
        PYTHONPATH=str(tmp_path),
        XDG_STATE_HOME=str(tmp_path / "state"),
        MANAGERCTL_REPORT_INTERVAL="1",
    )
    state: dict[str, Any] = {"topic": topic, "host": host, "env": env, "dir": tmp_path}
    started: list[Background] = []
    state["started"] = started
    yield state
    for proc in started:
        with contextlib.suppress(Exception):
            proc.stop()
    if rabbitmq.is_running():
        delete_queues(broker_url, [topic, f"{topic}.{host}"])


def _serve(state: dict[str, Any], *args: str) -> Background:
    served = start_serve(
        "metered_mod:Metered", state["host"], state["topic"], state["env"], state["dir"], *args
    )
    state["started"].append(served)
    return served


def _call(state: dict[str, Any], method: str, *args: str) -> int:
    done = managerctl(
        "call", state["host"], method, *args, "--topic", state["topic"], env=state["env"]
    )
    return done.returncode


def _publish_raw(url: str, routing_key: str, body: bytes, content_type: str) -> None:
    props = pika.BasicProperties(content_type=content_type, delivery_mode=2)
    with contextlib.closing(pika_connection(url)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("openstack", routing_key, body, props)


def test_metrics_count_what_the_service_did(metered, broker_url, rabbitmq):
    port = free_port()
    served = _serve(metered, "--metrics-address", f"127.0.0.1:{port}")
    assert f"Prometheus metrics at http://127.0.0.1:{port}/metrics" in served.err()
    topic, host = metered["topic"], metered["host"]
    for number in range(5):
        assert _call(metered, "hello", f"name=n{number}") == 0
    for _ in range(3):
        assert _call(metered, "fail") == 1
    assert _call(metered, "no_such_thing") == 1
    key = f"{topic}.{host}"
    _publish_raw(broker_url, key, b"{not json", "application/json")
    _publish_raw(broker_url, key, b"plain text", "text/plain")
    good = wire.encode_envelope(wire.build_request("hello", {}, context=get_admin_context()))
    _publish_raw(broker_url, key, good + b" " * (1024 * 1024), "application/json")

    def sample(name: str) -> float:
        return scrape(port).get(name, 0.0)

    assert wait_for(lambda: sample("managerctl_rpc_poison_messages_total") >= 1)
    assert wait_for(
        lambda: sample('managerctl_rpc_rejected_messages_total{reason="too_large"}') >= 1
    )
    # Periodic tasks run every 0.5 s: wait for a few of each.
    assert wait_for(
        lambda: sample('managerctl_periodic_task_runs_total{outcome="failed",task="explodes"}') >= 3
    )
    metrics = scrape(port)
    assert metrics['managerctl_rpc_requests_total{method="hello",outcome="ok"}'] == 5
    assert metrics['managerctl_rpc_requests_total{method="fail",outcome="error"}'] == 3
    assert (
        metrics['managerctl_rpc_requests_total{method="(unknown)",outcome="no_such_method"}'] == 1
    )
    assert metrics['managerctl_rpc_request_duration_seconds_count{method="hello"}'] == 5
    assert metrics['managerctl_rpc_request_duration_seconds_bucket{le="+Inf",method="fail"}'] == 3
    assert metrics["managerctl_rpc_requests_in_flight"] == 0
    assert metrics["managerctl_rpc_poison_messages_total"] == 1
    assert metrics['managerctl_rpc_rejected_messages_total{reason="content_type"}'] == 1
    assert metrics['managerctl_rpc_rejected_messages_total{reason="too_large"}'] == 1
    assert metrics['managerctl_rpc_rejected_messages_total{reason="duplicate"}'] == 0
    failed = metrics['managerctl_periodic_task_runs_total{outcome="failed",task="explodes"}']
    assert metrics['managerctl_periodic_task_failures_total{task="explodes"}'] == failed
    assert 'managerctl_periodic_task_last_success_timestamp_seconds{task="explodes"}' not in metrics
    assert metrics['managerctl_periodic_task_runs_total{outcome="ok",task="works"}'] >= 3
    assert metrics['managerctl_periodic_task_last_success_timestamp_seconds{task="works"}'] > 1e9
    assert metrics['managerctl_periodic_task_duration_seconds_count{task="works"}'] >= 3
    assert metrics["managerctl_capabilities_published_total"] >= 1
    assert (
        metrics[
            'managerctl_published_messages_total{method="update_service_capabilities",outcome="ok"}'
        ]
        == metrics["managerctl_capabilities_published_total"]
    )
    assert metrics["managerctl_broker_connected"] == 1
    assert metrics["managerctl_broker_reconnects_total"] == 0
    (info,) = [k for k in metrics if k.startswith("managerctl_service_info")]
    assert f'host="{host}"' in info and f'topic="{topic}"' in info

    # A lost connection: counted, then the reconnection.
    rabbitmq.rabbitmqctl("close_all_connections", "metrics test")
    assert wait_for(lambda: sample("managerctl_broker_reconnects_total") >= 1, 30)
    metrics = scrape(port)
    assert metrics["managerctl_broker_connection_losses_total"] >= 1
    assert metrics["managerctl_broker_connected"] == 1
    assert _call(metered, "hello") == 0
    assert wait_for(
        lambda: sample('managerctl_rpc_requests_total{method="hello",outcome="ok"}') == 6
    )
    served.send(signal.SIGTERM)
    assert served.wait() == 0


def test_metrics_listen_from_the_config_file(metered, tmp_path):
    port = free_port()
    conf = tmp_path / "managerctl.conf"
    conf.write_text(f"[managerctl]\nmetrics_listen = 127.0.0.1:{port}\n")
    metered["env"]["MANAGERCTL_CONFIG_FILE"] = str(conf)
    _serve(metered)
    assert _call(metered, "hello") == 0
    assert wait_for(
        lambda: scrape(port).get('managerctl_rpc_requests_total{method="hello",outcome="ok"}')
    )


def test_no_metrics_unless_asked(metered):
    served = _serve(metered)
    assert "Prometheus" not in served.err()
    # A bad address is a usage error, named, before anything starts.
    done = managerctl(
        "serve", "metered_mod:Metered", "--metrics-address", "nowhere", env=metered["env"]
    )
    assert done.returncode == 2
    assert "--metrics-address 'nowhere' is not HOST:PORT" in done.stderr

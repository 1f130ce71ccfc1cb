"""managerctl on RabbitMQ 4.0 denying deprecated features as 4.3 does (issue 14).

The node comes from the Debian 13 chroot scripts/test.sh builds (tests/rigs/rabbitmq4.py);
each test works in a vhost of its own, deleted at the end.
"""

from __future__ import annotations

import contextlib
import json

import pika
import pika.exceptions
import pytest
from rigs.cli import Served, clean_env, managerctl, unique, write_config

# What deployments on RabbitMQ 4.x set (TOPOLOGIES.md): quorum topic queues, quorum reply and
# fanout queues; nothing non-durable and non-exclusive is left for the broker to refuse.
QUORUM = {"rabbit_quorum_queue": True, "rabbit_transient_quorum_queue": True}


@pytest.fixture
def vhost_url(rabbitmq4_strict):
    vhost = unique("managerctl-v")
    url = rabbitmq4_strict.add_vhost(vhost)
    yield url
    with contextlib.suppress(Exception):
        rabbitmq4_strict.rabbitmqctl("delete_vhost", vhost)


def _pika(node, url: str) -> pika.BlockingConnection:
    vhost = url.rsplit("/", 1)[1]
    from urllib.parse import unquote

    return pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", node.port, virtual_host=unquote(vhost))
    )


def test_strict_node_refuses_a_transient_non_exclusive_queue_with_541(rabbitmq4_strict, vhost_url):
    assert not rabbitmq4_strict.is_permitted("transient_nonexcl_queues")
    connection = _pika(rabbitmq4_strict, vhost_url)
    try:
        channel = connection.channel()
        # What stays allowed: durable queues and exclusive ones.
        channel.queue_declare("managerctl-durable", durable=True)
        channel.queue_declare("", exclusive=True)
        channel.queue_delete("managerctl-durable")
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as refused:
            channel.queue_declare("managerctl-transient", durable=False, exclusive=False)
        assert refused.value.reply_code == 541
        assert "transient_nonexcl_queues" in refused.value.reply_text
    finally:
        if connection.is_open:
            connection.close()


def test_oslo_defaults_on_the_strict_node_fail_with_one_line_naming_the_feature(
    rabbitmq4_strict, vhost_url, tmp_path
):
    config = write_config(tmp_path / "defaults.conf", vhost_url)
    topic = unique("rmq4")
    result = managerctl(
        "--config-file", str(config), "serve", "hostinfo", "--host", "h1", "--topic", topic,
        timeout=60,
    )  # fmt: skip
    assert result.returncode not in (0, 70), result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert any("transient_nonexcl_queues" in line for line in lines), result.stderr
    assert "rabbit_transient_quorum_queue" in result.stderr or (
        "rabbit_quorum_queue" in result.stderr
    )
    assert "check that RabbitMQ is running" not in result.stderr


def test_managerctl_serves_and_calls_on_the_strict_node_with_quorum_queues(
    rabbitmq4_strict, vhost_url, tmp_path
):
    config = write_config(tmp_path / "quorum.conf", vhost_url, **QUORUM)
    host, topic = "rmq4-h1", unique("rmq4")
    env = clean_env(MANAGERCTL_CONFIG_FILE=str(config), XDG_STATE_HOME=str(tmp_path / "state"))
    served = Served(
        ["serve", "hostinfo", "--host", host, "--topic", topic], tmp_path / "s.log", env
    )
    try:
        assert served.wait_for_log("consuming "), served.log()

        call = managerctl("call", host, "get_facts", "--topic", topic, env=env)
        assert call.returncode == 0, call.stderr
        assert json.loads(call.stdout)["cpu_count"] >= 1

        fanout = managerctl("call", "-", "get_facts", "--topic", topic, "--fanout", env=env)
        assert fanout.returncode == 0, fanout.stderr

        ping = managerctl("ping", "--all", "--topic", topic, "--expect", "1", "-f", "json", env=env)
        assert ping.returncode == 0, ping.stderr
        assert [row["host"] for row in json.loads(ping.stdout)] == [host]

        probe = managerctl("probe", host, "--topic", topic, env=env)
        assert probe.returncode == 0, probe.stderr + probe.stdout

        queues = {
            q["name"]: q
            for q in rabbitmq4_strict.list_queues(
                ("name", "type", "durable"), vhost=vhost_url.rsplit("/", 1)[1]
            )
        }
        for name in (topic, f"{topic}.{host}"):
            assert queues[name]["type"] == "quorum" and queues[name]["durable"], queues
        assert all(q["durable"] for q in queues.values()), queues
    finally:
        code = served.stop()
    assert code == 0, served.log()
    assert "Traceback" not in served.log()

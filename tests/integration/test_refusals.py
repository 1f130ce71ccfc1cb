"""Every broker-facing command meets a broker refusal the same way: one exit code, one message
that names it, never 70 (a bug) nor "check that RabbitMQ is running" (rpc/refusals.py).

* 403: a user who may connect to a vhost but has no permission on anything in it;
* 406: ``serve`` in a vhost whose entities have another shape than its configuration gives
  them exits 78 naming the option to set, and declares nothing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid

import pika
import pytest

pytestmark = pytest.mark.broker

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")
VHOST = "refusals"
USER, PASSWORD = "nobody", "n0body-pw"


def _env(url: str, tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env.update(
        MANAGERCTL_TRANSPORT_URL=url,
        MANAGERCTL_PERIODIC_FUZZY_DELAY="0",
        XDG_STATE_HOME=str(tmp_path / "state"),
    )
    return env


def managerctl(*args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MANAGERCTL, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture(scope="module")
def vhost(rabbitmq):
    """VHOST, where guest may do anything and USER may connect but touch nothing."""
    if not rabbitmq.is_running():
        rabbitmq.start()
    rabbitmq.rabbitmqctl(
        "eval",
        f'rabbit_vhost:add(<<"{VHOST}">>, <<"tests">>), '
        f'rabbit_auth_backend_internal:add_user(<<"{USER}">>, <<"{PASSWORD}">>, <<"tests">>), '
        f'rabbit_auth_backend_internal:set_permissions(<<"guest">>, <<"{VHOST}">>, '
        '<<".*">>, <<".*">>, <<".*">>, <<"tests">>), '
        f'rabbit_auth_backend_internal:set_permissions(<<"{USER}">>, <<"{VHOST}">>, '
        '<<"^$">>, <<"^$">>, <<"^$">>, <<"tests">>), ok.',
    )
    # The targets exist and are consumed, so that every command gets as far as the refusal
    # (not "nobody consumes", which would be true and a 69).
    params = pika.ConnectionParameters(
        "127.0.0.1",
        rabbitmq.port,
        virtual_host=VHOST,
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0,
    )
    consumer = pika.BlockingConnection(params)
    channel = consumer.channel()
    channel.exchange_declare("openstack", "topic")
    for name in ("refused", "refused.h1"):
        channel.queue_declare(name, auto_delete=True)
        channel.queue_bind(name, "openstack", routing_key=name)
        channel.basic_consume(name, lambda *args: None)
    try:
        yield VHOST
    finally:
        with contextlib.suppress(Exception):
            consumer.close()
        with contextlib.suppress(Exception):
            rabbitmq.rabbitmqctl(
                "eval",
                f'rabbit_vhost:delete(<<"{VHOST}">>, <<"tests">>), '
                f'rabbit_auth_backend_internal:delete_user(<<"{USER}">>, <<"tests">>), ok.',
            )


COMMANDS = {
    "call": ("call", "h1", "echo", "value=1", "-t", "refused"),
    "cast": ("call", "h1", "echo", "value=1", "-t", "refused", "--cast"),
    "fanout": ("call", "-", "echo", "-t", "refused", "--fanout"),
    "ping": ("ping", "h1", "-t", "refused"),
    "ping-all": ("ping", "--all", "-t", "refused", "--timeout", "2"),
    "probe": ("probe", "h1", "-t", "refused"),
    "probe-all": ("probe", "--all", "-t", "refused", "--timeout", "2"),
    "capabilities-live": ("capabilities", "show", "--live", "--wait", "1"),
    "capabilities-publish": ("capabilities", "publish", "--topic", "refused"),
    "run-periodic": ("run-periodic", "hostinfo", "--host", "h1"),
    "serve": ("serve", "hostinfo", "--host", "h1", "--topic", "refused"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_access_refused_is_77_everywhere(rabbitmq, vhost, tmp_path, command):
    url = f"rabbit://{USER}:{PASSWORD}@127.0.0.1:{rabbitmq.port}/{vhost}"
    result = managerctl(*COMMANDS[command], env=_env(url, tmp_path), timeout=30)
    assert result.returncode == 77, (result.returncode, result.stdout, result.stderr)
    assert "refused access" in result.stderr and "403" in result.stderr, result.stderr
    assert "internal error" not in result.stderr
    assert "RabbitMQ is running" not in result.stderr
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


# -- 406: serve refuses to start in a vhost of another shape -----------------------------------


@contextlib.contextmanager
def _guest_channel(rabbitmq, vhost: str):
    params = pika.ConnectionParameters(
        "127.0.0.1",
        rabbitmq.port,
        virtual_host=vhost,
        credentials=pika.PlainCredentials("guest", "guest"),
    )
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        connection.close()


@pytest.fixture
def shaped(rabbitmq, vhost):
    """``shaped(exchange=..., topic_queue=..., fanout=...)``: pre-existing entities of a
    deployment's shape in VHOST, on a topic of their own; removed after."""
    made: list[tuple[str, str]] = []

    def make(topic: str, *, exchange_durable=None, quorum_queue=False, fanout_durable=None):
        with _guest_channel(rabbitmq, vhost) as channel:
            if exchange_durable is not None:
                exchange = f"x_{topic}"
                channel.exchange_declare(exchange, "topic", durable=exchange_durable)
                made.append(("exchange", exchange))
            if quorum_queue:
                channel.queue_declare(topic, durable=True, arguments={"x-queue-type": "quorum"})
                made.append(("queue", topic))
            if fanout_durable is not None:
                channel.exchange_declare(
                    f"{topic}_fanout", "fanout", durable=fanout_durable, auto_delete=True
                )
                made.append(("exchange", f"{topic}_fanout"))

    yield make
    with _guest_channel(rabbitmq, vhost) as channel:
        for kind, name in made:
            (channel.exchange_delete if kind == "exchange" else channel.queue_delete)(name)


def _queue_exists(rabbitmq, vhost: str, name: str) -> bool:
    with _guest_channel(rabbitmq, vhost) as channel:
        try:
            channel.queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return False
    return True


@pytest.mark.parametrize(
    ("case", "options", "expected"),
    [
        ("durable-exchange", "", "rabbit_quorum_queue = true (quorum queues) or amqp_durable"),
        ("quorum-queue", "amqp_durable_queues=true", "uses quorum queues: set rabbit_quorum_queue"),
        ("durable-fanout", "", "set rabbit_transient_quorum_queue = true"),
        ("not-durable", "rabbit_quorum_queue=true", "rabbit_quorum_queue = false"),
    ],
)
def test_serve_refuses_a_vhost_of_another_shape(
    rabbitmq, vhost, shaped, tmp_path, case, options, expected
):
    topic = f"shape_{uuid.uuid4().hex[:8]}"
    if case == "durable-exchange":
        shaped(topic, exchange_durable=True)
    elif case == "quorum-queue":
        shaped(topic, exchange_durable=True, quorum_queue=True)
    elif case == "durable-fanout":
        shaped(topic, exchange_durable=False, fanout_durable=True)
    else:
        shaped(topic, exchange_durable=False)
    url = f"rabbit://guest:guest@127.0.0.1:{rabbitmq.port}/{vhost}" + (
        f"?{options}" if options else ""
    )
    env = _env(url, tmp_path) | {"MANAGERCTL_CONTROL_EXCHANGE": f"x_{topic}"}
    result = managerctl("serve", "hostinfo", "--host", "h1", "--topic", topic, env=env)
    assert result.returncode == 78, (result.returncode, result.stderr)
    assert expected in result.stderr, result.stderr
    assert "406" in result.stderr
    # Nothing was declared: no classic queue left where the deployment has another shape.
    assert not _queue_exists(rabbitmq, vhost, f"{topic}.h1")
    if case != "quorum-queue":
        assert not _queue_exists(rabbitmq, vhost, topic)


# -- 541: a deprecated feature RabbitMQ 4.x denies ---------------------------------------------


def _have_rabbitmq4_rig() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("rigs.rabbitmq4") is not None
    except ImportError:
        return False


if _have_rabbitmq4_rig():

    def test_a_denied_deprecated_feature_is_78_naming_it_and_the_option(rabbitmq4_strict, tmp_path):
        # oslo's default topology: a non-durable, non-exclusive topic queue, which a strict
        # RabbitMQ 4 (as 4.3 by default) refuses with a connection-level 541.
        env = _env(rabbitmq4_strict.url, tmp_path)
        result = managerctl("serve", "hostinfo", "--host", "h1", "--topic", "strict", env=env)
        assert result.returncode == 78, (result.returncode, result.stderr)
        assert "transient_nonexcl_queues" in result.stderr
        assert "rabbit_transient_quorum_queue = true" in result.stderr
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr

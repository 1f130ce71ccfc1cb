"""TLS for real: a 3.10 node with a TLS listener and a CA these tests make (tests/rigs/tls.py).

Everything goes through the installed console script: ``amqps://`` URLs and
``[oslo_messaging_rabbit] ssl = true``, certificate problems (wrong CA, a host name the
certificate does not name), a client certificate with the EXTERNAL mechanism, and no secret in
any output.
"""

from __future__ import annotations

import json
import secrets
import time
from urllib.parse import quote

import pytest
from rigs.cli import Served, clean_env, managerctl, unique, write_config
from rigs.tls import CLIENT_USER, WRONG_NAME_ADDRESS, TLSRabbitMQNode, make_certs

SECRET_USER = "managerctl-tls-secret"
# A reply wait far above what a certificate failure may take: failing must not wait it out.
TIMEOUT = 30


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    node = TLSRabbitMQNode(certs)
    try:
        node.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start a RabbitMQ node with a TLS listener: {exc}", pytrace=False)
    try:
        node.add_client_user()
        node.secret = "s3cret-" + secrets.token_hex(8)
        node.rabbitmqctl("add_user", SECRET_USER, node.secret)
        node.rabbitmqctl("set_permissions", "-p", "/", SECRET_USER, ".*", ".*", ".*")
        yield node
    finally:
        node.stop()


@pytest.fixture
def served(tls_node: TLSRabbitMQNode, tmp_path):
    """hostinfo served over TLS (ssl = true + ssl_ca_file in its config file)."""
    config = write_config(
        tmp_path / "serve.conf",
        f"rabbit://guest:guest@127.0.0.1:{tls_node.tls_port}/",
        ssl=True,
        ssl_ca_file=tls_node.certs.ca,
    )
    host, topic = "tls-h1", unique("tls")
    env = clean_env(MANAGERCTL_CONFIG_FILE=str(config), XDG_STATE_HOME=str(tmp_path / "state"))
    service = Served(
        ["serve", "hostinfo", "--host", host, "--topic", topic], tmp_path / "s.log", env
    )
    service.host, service.topic, service.env = host, topic, env
    try:
        assert service.wait_for_log("consuming "), service.log()
        yield service
    finally:
        code = service.stop()
    assert code == 0, service.log()


def _amqps(node: TLSRabbitMQNode, host: str = "127.0.0.1", ca=None, user="guest", pw="guest"):
    ca = ca or node.certs.ca
    return f"amqps://{user}:{quote(pw)}@{host}:{node.tls_port}/?ssl_ca_file={quote(str(ca))}"


def test_serve_call_ping_and_probe_over_tls(tls_node, served):
    url_env = clean_env(MANAGERCTL_TRANSPORT_URL=_amqps(tls_node))
    call = managerctl("call", served.host, "get_facts", "--topic", served.topic, env=url_env)
    assert call.returncode == 0, call.stderr
    assert json.loads(call.stdout)["cpu_count"] >= 1

    # The served manager's own config (ssl = true, ssl_ca_file) works for the clients too.
    ping = managerctl(
        "ping", "--all", "--expect", "1", "--topic", served.topic, "-f", "json", env=served.env
    )
    assert ping.returncode == 0, ping.stderr
    assert [row["host"] for row in json.loads(ping.stdout)] == [served.host]
    probe = managerctl("probe", served.host, "--topic", served.topic, env=url_env)
    assert probe.returncode == 0, probe.stderr + probe.stdout

    # The service's connection really is a TLS one, on the TLS port.
    connections = tls_node.list_connections(("name", "ssl", "port"))
    assert connections and all(c["ssl"] and c["port"] == tls_node.tls_port for c in connections)


@pytest.mark.parametrize(
    "problem, expected",
    [
        ("wrong-ca", "self-signed certificate in certificate chain"),
        ("wrong-host", f"certificate is not valid for '{WRONG_NAME_ADDRESS}'"),
    ],
)
@pytest.mark.parametrize("command", ["call", "ping", "probe", "serve"])
def test_a_certificate_problem_fails_fast_with_one_line_and_no_secret(
    tls_node, tmp_path, problem, expected, command
):
    if problem == "wrong-ca":
        url = _amqps(tls_node, ca=tls_node.certs.other_ca, user=SECRET_USER, pw=tls_node.secret)
    else:
        url = _amqps(tls_node, host=WRONG_NAME_ADDRESS, user=SECRET_USER, pw=tls_node.secret)
    topic = unique("tls")
    args = {
        "call": ["call", "h1", "get_facts", "--timeout", str(TIMEOUT)],
        "ping": ["ping", "--all", "--timeout", str(TIMEOUT)],
        "probe": ["probe", "h1", "--timeout", str(TIMEOUT)],
        "serve": ["serve", "hostinfo", "--host", "h1"],
    }[command]
    env = clean_env(MANAGERCTL_TRANSPORT_URL=url, XDG_STATE_HOME=str(tmp_path))
    started = time.monotonic()
    result = managerctl(*args, "--topic", topic, env=env, timeout=TIMEOUT * 2)
    elapsed = time.monotonic() - started
    assert result.returncode == 69, result.stderr
    # serve logs its start-up steps (and their warnings) first; the error is one line, last.
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("managerctl:")]
    assert errors == lines[-1:], result.stderr
    assert expected in errors[0] and "TLS" in errors[0], errors[0]
    assert "check that RabbitMQ is running" not in errors[0]
    assert "Traceback" not in result.stderr
    assert tls_node.secret not in result.stderr + result.stdout
    assert elapsed < TIMEOUT / 2, f"took {elapsed:.1f}s, as if it waited for the reply timeout"


def test_a_client_certificate_logs_in_with_external(tls_node, served, tmp_path):
    config = write_config(
        tmp_path / "external.conf",
        f"rabbit://127.0.0.1:{tls_node.tls_port}/",  # no user or password: the cert says who
        ssl=True,
        ssl_ca_file=tls_node.certs.ca,
        ssl_cert_file=tls_node.certs.client_cert,
        ssl_key_file=tls_node.certs.client_key,
        rabbit_login_method="EXTERNAL",
    )
    env = clean_env(MANAGERCTL_CONFIG_FILE=str(config))
    call = managerctl("call", served.host, "get_facts", "--topic", served.topic, env=env)
    assert call.returncode == 0, call.stderr
    probe = managerctl("probe", served.host, "--topic", served.topic, env=env)
    assert probe.returncode == 0, probe.stderr + probe.stdout

    # Without the certificate, EXTERNAL has nothing to log in with: refused, 77.
    no_cert = write_config(
        tmp_path / "nocert.conf",
        f"rabbit://127.0.0.1:{tls_node.tls_port}/",
        ssl=True,
        ssl_ca_file=tls_node.certs.ca,
        rabbit_login_method="EXTERNAL",
    )
    refused = managerctl(
        "probe",
        served.host,
        "--topic",
        served.topic,
        env=clean_env(MANAGERCTL_CONFIG_FILE=str(no_cert)),
    )
    assert refused.returncode == 77, refused.stderr
    assert "Traceback" not in refused.stderr


def test_debug_output_of_a_tls_session_shows_no_secret(tls_node, served):
    url = _amqps(tls_node, user=SECRET_USER, pw=tls_node.secret)
    env = clean_env(MANAGERCTL_TRANSPORT_URL=url)
    probe = managerctl("--debug", "probe", served.host, "--topic", served.topic, env=env)
    assert probe.returncode == 0, probe.stderr
    assert "DEBUG" in probe.stderr  # the run did log its connection steps
    assert tls_node.secret not in probe.stderr + probe.stdout
    assert CLIENT_USER not in probe.stderr


def test_tls_and_plain_ports_mixed_up_say_so_in_one_line(tls_node):
    mixed = {
        f"amqps://guest:guest@127.0.0.1:{tls_node.port}/": "TLS: handshake failed",
        f"rabbit://guest:guest@127.0.0.1:{tls_node.tls_port}/": "set ssl = true",
    }
    for url, expected in mixed.items():
        result = managerctl(
            "probe", "h1", "--topic", "x", env=clean_env(MANAGERCTL_TRANSPORT_URL=url)
        )
        assert result.returncode == 69, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert expected in result.stderr, result.stderr

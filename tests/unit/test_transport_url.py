"""Transport URL parsing (PROTOCOL.md §8) and password masking; no broker needed."""

from __future__ import annotations

import pytest

from manager_cli.errors import BadInputError
from manager_cli.rpc.transport import (
    BrokerHost,
    RabbitOptions,
    TransportURL,
    mask_url_passwords,
    parse_transport_url,
)

SECRET = "s3cr3t-PW"


def hosts(url: TransportURL) -> list[tuple[str, int, str, str]]:
    return [(h.hostname, h.port, h.username, h.password) for h in url.hosts]


@pytest.mark.parametrize(
    ("text", "expected_hosts", "vhost"),
    [
        ("rabbit://", [("localhost", 5672, "guest", "guest")], "/"),
        ("rabbit:///", [("localhost", 5672, "guest", "guest")], "/"),
        ("rabbit://guest:guest@127.0.0.1:5672/", [("127.0.0.1", 5672, "guest", "guest")], "/"),
        ("rabbit://guest:guest@127.0.0.1:5672//", [("127.0.0.1", 5672, "guest", "guest")], "/"),
        ("rabbit://u:p@h:5673/nova", [("h", 5673, "u", "p")], "nova"),
        ("rabbit://u:p@h/%2Fnova", [("h", 5672, "u", "p")], "/nova"),
        ("rabbit://u:p@h", [("h", 5672, "u", "p")], "/"),
        ("amqp://u:p@h:1234/v", [("h", 1234, "u", "p")], "v"),
        ("amqps://u:p@h/v", [("h", 5671, "u", "p")], "v"),
        ("RABBIT://u:p@h/", [("h", 5672, "u", "p")], "/"),
        (
            "rabbit://a:pa@h1:5672,b:pb@h2:5673,h3/vh",
            [("h1", 5672, "a", "pa"), ("h2", 5673, "b", "pb"), ("h3", 5672, "guest", "guest")],
            "vh",
        ),
        ("rabbit://u:p@h1,,h2/", [("h1", 5672, "u", "p"), ("h2", 5672, "guest", "guest")], "/"),
        # Percent escapes in user, password and vhost; a raw '@' in a password (oslo splits on
        # the last '@') and a ':' after the first one.
        ("rabbit://us%40er:p%2Fa%3Ass@h/v%20h", [("h", 5672, "us@er", "p/a:ss")], "v h"),
        ("rabbit://u:p@ss:w:rd@h/", [("h", 5672, "u", "p@ss:w:rd")], "/"),
        ("rabbit://u@h/", [("h", 5672, "u", "guest")], "/"),
        ("rabbit://u:@h/", [("h", 5672, "u", "")], "/"),
        ("rabbit://u:p@[::1]:5673/", [("::1", 5673, "u", "p")], "/"),
        ("rabbit://u:p@[fe80::1]/", [("fe80::1", 5672, "u", "p")], "/"),
        ("rabbit://u:p@h/v#fragment", [("h", 5672, "u", "p")], "v"),
    ],
)
def test_parse_table(text: str, expected_hosts: list, vhost: str) -> None:
    url = parse_transport_url(text)
    assert hosts(url) == expected_hosts
    assert url.virtual_host == vhost


def test_default_url_and_none() -> None:
    for text in (None, "", "rabbit://"):
        url = parse_transport_url(text)
        assert url.scheme == "rabbit"
        assert hosts(url) == [("localhost", 5672, "guest", "guest")]
        assert url.virtual_host == "/"
        assert url.query == {}
        assert url.apply_to(RabbitOptions()) == RabbitOptions()


def test_parse_is_idempotent_on_parsed_urls() -> None:
    url = parse_transport_url("rabbit://u:p@h/")
    assert parse_transport_url(url) is url


def test_tls_scheme() -> None:
    assert parse_transport_url("amqps://h/").tls
    assert not parse_transport_url("rabbit://h/").tls


def test_query_options_override_rabbit_options() -> None:
    url = parse_transport_url(
        "rabbit://h/?heartbeat_timeout_threshold=30&amqp_durable_queues=true"
        "&rabbit_retry_interval=0.5&ssl=1&rabbit_login_method=plain&ssl_ca_file=/etc/ca.pem"
    )
    base = RabbitOptions(control_exchange="nova", heartbeat_timeout_threshold=60)
    options = url.apply_to(base)
    assert options.heartbeat_timeout_threshold == 30
    assert options.amqp_durable_queues is True
    assert options.rabbit_retry_interval == 0.5
    assert options.ssl is True
    assert options.rabbit_login_method == "PLAIN"
    assert options.ssl_ca_file == "/etc/ca.pem"
    assert options.control_exchange == "nova"  # [DEFAULT], not overridable from the URL
    assert url.query["heartbeat_timeout_threshold"] == "30"


def test_harmless_oslo_options_are_accepted_and_ignored() -> None:
    url = parse_transport_url("rabbit://h/?heartbeat_rate=3&kombu_reconnect_delay=2")
    assert url.apply_to(RabbitOptions()) == RabbitOptions()


def test_topology_options_from_the_url() -> None:
    url = parse_transport_url(
        "rabbit://h/?rabbit_quorum_queue=true&rabbit_transient_quorum_queue=1"
        "&rabbit_stream_fanout=yes&rabbit_qos_prefetch_count=10&use_queue_manager=true"
        "&hostname=node1&processname=nova-api&rabbit_ha_queues=false&kombu_compression=gzip"
        "&rabbit_quorum_delivery_limit=5&enable_cancel_on_failover=true"
    )
    options = url.apply_to(RabbitOptions())
    assert options.rabbit_quorum_queue and options.rabbit_transient_quorum_queue
    assert options.rabbit_stream_fanout and options.use_queue_manager
    assert (options.hostname, options.processname) == ("node1", "nova-api")
    assert options.rabbit_qos_prefetch_count == 10
    assert options.rabbit_quorum_delivery_limit == 5
    assert options.kombu_compression == "gzip" and not options.rabbit_ha_queues
    assert options.enable_cancel_on_failover


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("guest:guest@localhost:5672", "no scheme"),
        ("localhost:5672", "no scheme"),
        ("kafka://h/", "unsupported transport URL scheme 'kafka'"),
        ("rabbit://h:notaport/", "bad port"),
        ("rabbit://h:0/", "bad port"),
        ("rabbit://h:70000/", "bad port"),
        ("rabbit://u:p@[::1/", "malformed"),
        ("rabbit://h/?no_such_option=1", "unknown transport URL option 'no_such_option'"),
        ("rabbit://h/?control_exchange=nova", "unknown transport URL option 'control_exchange'"),
        ("rabbit://h/?heartbeat_timeout_threshold=soon", "expects an integer"),
        ("rabbit://h/?ssl=maybe", "expects true or false"),
        ("rabbit://h/?rabbit_retry_interval=x", "expects a number"),
        ("rabbit://h/?rabbit_login_method=KERBEROS", "rabbit_login_method must be one of"),
        ("rabbit://h/?rabbit_quorum_queue=perhaps", "expects true or false"),
        ("rabbit://h/?kombu_compression=rar", "unknown compression"),
    ],
)
def test_bad_urls_raise_bad_input(text: str, words: str) -> None:
    with pytest.raises(BadInputError) as info:
        parse_transport_url(text)
    assert words in str(info.value)
    assert info.value.exit_code == 2


def test_not_a_string() -> None:
    with pytest.raises(BadInputError, match="must be a string"):
        parse_transport_url(5672)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Masking


def test_repr_and_str_mask_passwords() -> None:
    url = parse_transport_url(f"rabbit://alice:{SECRET}@h1:5672,bob:{SECRET}2@h2/nova")
    for text in (str(url), repr(url), url.masked(), repr(url.hosts), str(url.hosts[0])):
        assert SECRET not in text
    assert url.masked() == "rabbit://alice:***@h1:5672,bob:***@h2:5672/nova"
    assert "alice:***@h1:5672" in repr(url)
    assert repr(url.hosts[1]) == "BrokerHost('bob:***@h2:5672')"
    assert url.host_list() == "h1:5672, h2:5672"


def test_unmasked_round_trips() -> None:
    text = "rabbit://us%40er:p%2Fa%3Ass@h:5673,h2/v%20h?heartbeat_timeout_threshold=30"
    url = parse_transport_url(text)
    again = parse_transport_url(url.unmasked())
    assert hosts(again) == hosts(url)
    assert again.virtual_host == "v h"
    assert again.options == {"heartbeat_timeout_threshold": 30}


def test_masked_default_vhost_and_ipv6() -> None:
    assert parse_transport_url("rabbit://").masked() == "rabbit://guest:***@localhost:5672/"
    assert parse_transport_url("rabbit://u:p@[::1]:5673//").masked() == "rabbit://u:***@[::1]:5673/"


def test_broker_host_defaults() -> None:
    host = BrokerHost()
    assert (host.hostname, host.port, host.username) == ("localhost", 5672, "guest")
    assert "guest:***@" in repr(host)


@pytest.mark.parametrize(
    "text",
    [
        f"rabbit://{SECRET}:{SECRET}@h:70000/",  # user is echoed nowhere either
        f"rabbit://u:{SECRET}@h:bad/",
        f"rabbit://u:{SECRET},x@h/",  # unescaped ',' splits the password into a "host"
        f"rabbit://u:{SECRET}@[::1/",
        f"rabbit://u:{SECRET}@h/?nope=1",
        f"rabbit://u:{SECRET}@h/?ssl={SECRET}",
        f"rabbit://u:{SECRET}@h/?rabbit_quorum_queue={SECRET}",
        f"u:{SECRET}@h:5672/",
        f"rabbit//u:{SECRET}@h/",
        f"ra:bbit://u:{SECRET}@h/",
    ],
)
def test_errors_never_contain_the_password(text: str) -> None:
    with pytest.raises(BadInputError) as info:
        parse_transport_url(text)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no url here", "no url here"),
        ("rabbit://h:5672/ has no credentials", "rabbit://h:5672/ has no credentials"),
        (
            f"cannot connect to rabbit://u:{SECRET}@h:5672/nova: refused",
            "cannot connect to rabbit://u:***@h:5672/nova: refused",
        ),
        (
            f"url='rabbit://a:{SECRET}@h1,b:{SECRET}@h2:5673//' failed",
            "url='rabbit://a:***@h1,b:***@h2:5673//' failed",
        ),
        (
            f"two: amqp://x:{SECRET}@h and rabbit://y:{SECRET}@g/?ssl=1",
            "two: amqp://x:***@h and rabbit://y:***@g/?ssl=1",
        ),
        (f"at sign rabbit://u:{SECRET}@x@h/", "at sign rabbit://u:***@h/"),
        (
            f"user only rabbit://u@h/ and https://k:{SECRET}@web/",
            "user only rabbit://u@h/ and https://k:***@web/",
        ),
    ],
)
def test_mask_url_passwords(text: str, expected: str) -> None:
    assert mask_url_passwords(text) == expected
    assert SECRET not in mask_url_passwords(text)


def test_mask_url_passwords_with_unescaped_slash_masks_too_much_rather_than_leak() -> None:
    masked = mask_url_passwords(f"rabbit://u:{SECRET}/x@h/vhost")
    assert SECRET not in masked

"""Sanity of the fixtures: a real oslo client against the real oslo peer, no managerctl code.

If these fail, the managerctl interop tests that use the same peers mean nothing.
"""

from __future__ import annotations

import pytest
from interop_support import unique_topic, wait_for

pytestmark = pytest.mark.broker

TOPIC = unique_topic("interop_peers")


@pytest.fixture(scope="module")
def peers(oslo_peers):
    return oslo_peers(TOPIC, ["srv1", "srv2"])


@pytest.fixture(scope="module")
def ping_peer(oslo_peers):
    (peer,) = oslo_peers(
        TOPIC + "_nova", ["nova1"], endpoints="nova", exchange="interop_nova", rpc_ping=True
    )
    return peer


def test_call_and_server_directed_call(peers, oslo_transport):
    import oslo_messaging

    assert oslo_transport.client(TOPIC).call({}, "add", a=2, b=3) == 5
    assert oslo_transport.client(TOPIC, version="1.3").call({}, "add", a=2, b=3) == 5
    assert oslo_transport.client(TOPIC, server="srv2").call({}, "whoami") == "srv2"
    with pytest.raises(oslo_messaging.RemoteError) as info:
        oslo_transport.client(TOPIC, version="2.0").call({}, "add", a=1, b=1)
    assert info.value.exc_type == "UnsupportedVersion"


def test_errors_as_an_oslo_client_sees_them(peers, oslo_transport):
    import oslo_messaging

    client = oslo_transport.client(TOPIC, server="srv1")
    with pytest.raises(ValueError) as info:
        client.call({}, "fail")
    assert str(info.value).startswith("deliberate failure from srv1")
    with pytest.raises(oslo_messaging.RemoteError) as remote:
        client.call({}, "boom")
    assert remote.value.exc_type == "Boom"


def test_cast_and_fanout_cast_reach_the_record_file(peers, oslo_transport):
    oslo_transport.client(TOPIC, server="srv1").cast({}, "record", value="sanity-cast")
    oslo_transport.client(TOPIC, fanout=True).cast({}, "record", value="sanity-fanout")
    wait_for(lambda: "sanity-cast" in peers[0].records())
    wait_for(lambda: all("sanity-fanout" in peer.records() for peer in peers))
    assert "sanity-cast" not in peers[1].records()


def test_nova_peer_on_its_own_exchange_with_rpc_ping(ping_peer, oslo_transport):
    topic = ping_peer.topic
    base = oslo_transport.client(topic, exchange="interop_nova", namespace="baseapi", version="1.1")
    assert base.call({}, "ping", arg="x") == {"service": "nova-like", "arg": "x"}
    plain = oslo_transport.client(topic, exchange="interop_nova")
    assert plain.call({}, "oslo_rpc_server_ping") == "pong"

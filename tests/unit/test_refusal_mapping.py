"""rpc.refusals: each AMQP refusal becomes one managerctl error, naming what to change."""

from __future__ import annotations

import pika.exceptions
import pytest

from manager_cli.errors import (
    EXIT_ACCESS_REFUSED,
    EXIT_CONFIG,
    EXIT_UNAVAILABLE,
)
from manager_cli.rpc import refusals
from manager_cli.rpc.topology import Topology
from manager_cli.rpc.transport import RabbitOptions

# Reply texts as RabbitMQ 3.10 and 4.0 send them.
QUORUM_406 = (
    "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'compute' in vhost '/': "
    "received none but current is the value 'quorum' of type 'longstr'"
)
DURABLE_406 = (
    "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'openstack' in vhost '/': "
    "received 'false' but current is 'true'"
)
FEATURE_541 = (
    "INTERNAL_ERROR - Feature `transient_nonexcl_queues` is deprecated.\n"
    "Its use is not permitted per the configuration (overriding the default, which is "
    "permitted):\n    deprecated_features.permit.transient_nonexcl_queues = false"
)


def _channel_closed(code: int, text: str) -> Exception:
    return pika.exceptions.ChannelClosedByBroker(code, text)


@pytest.mark.parametrize(
    ("code", "text", "exit_code", "words"),
    [
        (
            403,
            "ACCESS_REFUSED - access to exchange 'openstack' refused",
            EXIT_ACCESS_REFUSED,
            "403",
        ),
        (406, QUORUM_406, EXIT_CONFIG, "this vhost uses quorum queues: set rabbit_quorum_queue"),
        (406, DURABLE_406, EXIT_CONFIG, "rabbit_quorum_queue = true (quorum queues) or amqp_"),
        (541, FEATURE_541, EXIT_CONFIG, "rabbit_transient_quorum_queue = true"),
        (540, "NOT_IMPLEMENTED - queue 'q' does not support global qos", EXIT_CONFIG, "540"),
        (404, "NOT_FOUND - no exchange 'x'", EXIT_UNAVAILABLE, "404"),
        (320, "CONNECTION_FORCED - broker forced connection closure", EXIT_UNAVAILABLE, "320"),
    ],
)
def test_each_code_maps_to_one_exit_code(code, text, exit_code, words):
    error = refusals.refusal(_channel_closed(code, text), "declaring things")
    assert error.exit_code == exit_code
    assert words in str(error)
    assert "while declaring things" in str(error)


def test_a_denied_feature_is_named():
    error = refusals.refusal(pika.exceptions.ConnectionClosedByBroker(541, FEATURE_541), "x")
    assert "transient_nonexcl_queues" in error.message


def test_a_transient_queue_mismatch_names_the_transient_option():
    text = QUORUM_406.replace("'compute'", "'reply_abc'")
    shape = Topology(RabbitOptions()).reply_queue("reply_abc")
    error = refusals.refusal(_channel_closed(406, text), "x", shape=shape)
    assert "rabbit_transient_quorum_queue = true" in str(error)


def test_refusals_are_not_retried_but_lost_connections_are():
    assert refusals.is_refusal(_channel_closed(403, "ACCESS_REFUSED"))
    assert refusals.is_refusal(pika.exceptions.ConnectionClosedByBroker(541, FEATURE_541))
    assert not refusals.is_refusal(pika.exceptions.ConnectionClosedByBroker(320, "forced"))
    assert not refusals.is_refusal(pika.exceptions.StreamLostError("gone"))


def test_the_boundary_maps_and_lets_the_rest_through():
    with pytest.raises(refusals.ConfigError), refusals.map_amqp_errors("x"):
        raise _channel_closed(406, QUORUM_406)
    with pytest.raises(ValueError), refusals.map_amqp_errors("x"):
        raise ValueError("not ours")

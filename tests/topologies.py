"""The topologies of TOPOLOGIES.md as ``[oslo_messaging_rabbit]`` settings, for the unit tests
(shapes against oslo's own code) and the interop matrix (real peers on a real broker).

``strict_ok``: oslo's own services work with the set on a RabbitMQ 4 node that denies the
deprecated features (no non-durable non-exclusive queue, no global QoS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode


@dataclass(frozen=True)
class TopologySet:
    name: str
    options: dict[str, str] = field(default_factory=dict)
    strict_ok: bool = False

    def query(self) -> str:
        return "?" + urlencode(self.options) if self.options else ""

    def config_lines(self) -> str:
        lines = "".join(f"{key} = {value}\n" for key, value in self.options.items())
        return "[oslo_messaging_rabbit]\n" + lines


TOPOLOGY_SETS = (
    TopologySet("defaults"),
    TopologySet("quorum", {"rabbit_quorum_queue": "true", "rabbit_quorum_delivery_limit": "10"}),
    TopologySet(
        "quorum-transient",
        {"rabbit_quorum_queue": "true", "rabbit_transient_quorum_queue": "true"},
        strict_ok=True,
    ),
    TopologySet(
        "stream-fanout",
        {
            "rabbit_quorum_queue": "true",
            "rabbit_transient_quorum_queue": "true",
            "rabbit_stream_fanout": "true",
            "rabbit_qos_prefetch_count": "10",
        },
        strict_ok=True,
    ),
    TopologySet("queue-manager", {"use_queue_manager": "true"}),
    TopologySet("durable", {"amqp_durable_queues": "true"}),
    TopologySet("ha", {"rabbit_ha_queues": "true"}),
    TopologySet("compression", {"kombu_compression": "gzip"}),
    TopologySet(
        "kolla-2025.1",
        {
            "rabbit_quorum_queue": "true",
            "rabbit_transient_quorum_queue": "true",
            "use_queue_manager": "true",
            "rabbit_stream_fanout": "true",
            "rabbit_qos_prefetch_count": "1",
        },
        strict_ok=True,
    ),
    TopologySet(
        "openstack-helm-master",
        {
            "amqp_durable_queues": "true",
            "rabbit_transient_quorum_queue": "true",
            "use_queue_manager": "true",
        },
        strict_ok=True,
    ),
)
BY_NAME = {topology.name: topology for topology in TOPOLOGY_SETS}

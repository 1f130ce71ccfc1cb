"""What managerctl knows of the OpenStack service families it meets on a shared broker.

Some facts a real service sets in its code, not in its config file, so a tool that reads only
``nova.conf`` cannot learn them: nova's control exchange is ``nova``
(``rpc.set_defaults(control_exchange='nova')``), cinder has no base API (a ``baseapi`` ping
leaves an ERROR traceback in its log), and each topic's endpoints answer only their own major
version (a request at 1.0 gets UnsupportedVersion from cinder's 3.x). This table holds those
facts, read from nova 34 and cinder 29 (design/PEERS.md), so that the defaults fit the service
in front of the operator. Pure data: it imports only names.py, so every command can afford it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import names

# oslo.messaging's own default control exchange, used by cinder and by managerctl.
OSLO_DEFAULT_EXCHANGE = "openstack"

# oslo's PingEndpoint method, there when the service runs with [DEFAULT] rpc_ping_enabled.
OSLO_PING = names.OSLO_PING_METHOD

# oslo.messaging's RPC server logs a NoSuchMethod for a method whose name ends in
# "_ignore_errors" at DEBUG instead of as an ERROR with a traceback
# (oslo_messaging/rpc/server.py, _process_incoming), and still sends the failure back. So a
# request for this name, at a version one of the topic's endpoints accepts, is answered by any
# oslo service and leaves nothing in its log: the quiet probe for services without a base API.
QUIET_PROBE = "managerctl_probe_ignore_errors"


@dataclass(frozen=True)
class Family:
    """One project's RPC services: where they listen and what they answer."""

    name: str
    exchange: str
    # topic -> a version the topic's namespace-None endpoints accept (their major, minor 0)
    topics: dict[str, str] = field(default_factory=dict)
    base_api: bool = False  # serves the baseapi namespace (ping)
    # The topic the family's SchedulerDependentManagers publish capabilities to, and the
    # topic whose services are asked to publish.
    scheduler_topic: str | None = None
    publisher_topic: str | None = None
    # A server of this topic is named host@backend, one per entry of [DEFAULT] enabled_backends.
    backend_topics: tuple[str, ...] = ()

    def version_for(self, topic: str) -> str | None:
        return self.topics.get(topic)


NOVA = Family(
    name="nova",
    exchange="nova",
    topics={"compute": "6.0", "compute-alt": "6.0", "conductor": "3.0", "scheduler": "4.0"},
    base_api=True,
)

CINDER = Family(
    name="cinder",
    exchange=OSLO_DEFAULT_EXCHANGE,
    topics={"cinder-volume": "3.0", "cinder-scheduler": "3.0", "cinder-backup": "2.0"},
    base_api=False,
    scheduler_topic="cinder-scheduler",
    publisher_topic="cinder-volume",
    backend_topics=("cinder-volume",),
)

FAMILIES: tuple[Family, ...] = (NOVA, CINDER)

# Names of config files that belong to a service, not to managerctl (see config.py).
SERVICE_CONFIG_NAMES = tuple(f"{family.name}.conf" for family in FAMILIES) + (
    "neutron.conf",
    "glance-api.conf",
    "keystone.conf",
    "placement.conf",
    "heat.conf",
    "manila.conf",
    "octavia.conf",
    "ironic.conf",
    "designate.conf",
)


def family_of_topic(topic: str | None) -> Family | None:
    """The family whose services consume ``topic``, or None for a topic we do not know."""
    if not topic:
        return None
    for family in FAMILIES:
        if topic in family.topics:
            return family
    return None


def default_exchange(topic: str | None, configured: str | None = None) -> str:
    """The control exchange to use for ``topic``: the configured one, else the family's."""
    if configured:
        return configured
    family = family_of_topic(topic)
    return family.exchange if family else OSLO_DEFAULT_EXCHANGE


def default_version(topic: str | None) -> str | None:
    """A version the topic's endpoints accept, for a request that names none."""
    family = family_of_topic(topic)
    return family.version_for(topic or "") if family else None


def exchange_hint(topic: str | None, tried: str) -> str:
    """What to tell an operator whose request found no binding on exchange ``tried``."""
    family = family_of_topic(topic)
    if family is not None and family.exchange != tried:
        return (
            f"{family.name}'s services listen on exchange {family.exchange!r} (set in its "
            f"code, not in {family.name}.conf): pass --exchange {family.exchange}"
        )
    if tried == NOVA.exchange:
        return "pass --exchange with the service's control_exchange"
    return "pass --exchange with the service's control_exchange (nova's is 'nova')"

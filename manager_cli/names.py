"""The wire vocabulary: names that managerctl, its peers and its operators agree on.

This module imports nothing, so any module (the CLI's completion code at TAB time included) can
use the one true spelling of a name without paying for, or cycling through, the module that
gives the name its meaning. PROTOCOL.md and TOPOLOGIES.md say where each name appears on the wire.
"""

# The package's own names.
PROG_NAME = "managerctl"
# Entry-point group of the managers managerctl can load by name.
MANAGER_ENTRY_POINT_GROUP = "managerctl.managers"

# The nova-style base API every served manager carries (ping, get_backdoor_port).
BASE_API_NAMESPACE = "baseapi"
BASE_API_VERSION = "1.1"
PING_METHOD = "ping"
# oslo.messaging's own liveness method (rpc_ping_enabled), answered by any oslo server that has it.
OSLO_PING_METHOD = "oslo_rpc_server_ping"

# The control endpoint ``serve`` adds, which ordinary oslo peers never see unless they ask.
CONTROL_NAMESPACE = "managerctl"
CONTROL_API_VERSION = "1.0"

# The fanout cast a service sends every report_interval; the collector stores what it carries.
REPORT_METHOD = "report_service_state"
# Where SchedulerDependentManager publishes capabilities unless told otherwise (nova's topic).
SCHEDULER_TOPIC = "scheduler"
# managerctl's own topic: the collector's RPC (heartbeats, its control endpoint) travels here, so
# that nothing of managerctl's bookkeeping reaches a real scheduler (a topic managerctl does not
# own).
MANAGERCTL_TOPIC = "managerctl"

# The lifecycle hooks, in the order a service calls them.
HOOKS: tuple[str, ...] = ("init_host", "pre_start_hook", "post_start_hook")

FANOUT_SUFFIX = "_fanout"
REPLY_QUEUE_PREFIX = "reply_"


def fanout_exchange_name(topic: str) -> str:
    """``<topic>_fanout``: the exchange of a topic's fanout casts (never prefixed)."""
    return topic + FANOUT_SUFFIX


def fanout_queue_name(topic: str, unique: str) -> str:
    """``<topic>_fanout_<unique>``: one RPC server's queue on that exchange."""
    return f"{topic}{FANOUT_SUFFIX}_{unique}"


def reply_queue_name(unique: str) -> str:
    """``reply_<unique>``: a client's reply queue, as oslo names it."""
    return REPLY_QUEUE_PREFIX + unique

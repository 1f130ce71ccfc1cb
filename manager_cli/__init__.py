"""managerctl: an operator toolkit for services built on the OpenStack Manager pattern.

The public API is re-exported here, lazily (PEP 562): ``from manager_cli import Manager`` loads
``manager_cli.manager`` at that moment and not before, so ``import manager_cli`` stays free and the
console script's ``--help`` imports nothing it does not need (no pika, no oslo.config, no rich).
Names not listed in ``__all__`` live in their modules and may change between versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    # writing a manager
    "Manager": "manager_cli.manager",
    "SchedulerDependentManager": "manager_cli.manager",
    "periodic_task": "manager_cli.periodic",
    "RequestContext": "manager_cli.context",
    "get_admin_context": "manager_cli.context",
    # serving it and calling it
    "Service": "manager_cli.service",
    "RPCClient": "manager_cli.rpc.client",
    "RPCServer": "manager_cli.rpc.server",
    "RPCDispatcher": "manager_cli.rpc.dispatcher",
    "Target": "manager_cli.rpc.target",
    "get_transport": "manager_cli.rpc",
    "Settings": "manager_cli.config",
    "load_settings": "manager_cli.config",
    # what can go wrong (each error knows its exit code)
    "ManagerCtlError": "manager_cli.errors",
    "BadInputError": "manager_cli.errors",
    "ConfigError": "manager_cli.errors",
    "RemoteError": "manager_cli.errors",
    "TaskFailedError": "manager_cli.errors",
    "UnavailableError": "manager_cli.errors",
    "BrokerUnreachableError": "manager_cli.errors",
    "NoConsumerError": "manager_cli.errors",
    "CallTimeoutError": "manager_cli.errors",
    "AccessRefusedError": "manager_cli.errors",
    "PartialResultError": "manager_cli.errors",
}

__all__ = [
    "__version__",
    "Manager",
    "SchedulerDependentManager",
    "periodic_task",
    "RequestContext",
    "get_admin_context",
    "Service",
    "RPCClient",
    "RPCServer",
    "RPCDispatcher",
    "Target",
    "get_transport",
    "Settings",
    "load_settings",
    "ManagerCtlError",
    "BadInputError",
    "ConfigError",
    "RemoteError",
    "TaskFailedError",
    "UnavailableError",
    "BrokerUnreachableError",
    "NoConsumerError",
    "CallTimeoutError",
    "AccessRefusedError",
    "PartialResultError",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'manager_cli' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # the next look-up is an ordinary one
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .config import Settings, load_settings
    from .context import RequestContext, get_admin_context
    from .errors import (
        AccessRefusedError,
        BadInputError,
        BrokerUnreachableError,
        CallTimeoutError,
        ConfigError,
        ManagerCtlError,
        NoConsumerError,
        PartialResultError,
        RemoteError,
        TaskFailedError,
        UnavailableError,
    )
    from .manager import Manager, SchedulerDependentManager
    from .periodic import periodic_task
    from .rpc import get_transport
    from .rpc.client import RPCClient
    from .rpc.dispatcher import RPCDispatcher
    from .rpc.server import RPCServer
    from .rpc.target import Target
    from .service import Service

"""The public API of ``manager_cli``: the names, pinned, and that they load lazily."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import manager_cli

PUBLIC_API = [
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


def test_all_is_pinned():
    """Adding or removing a public name is a decision: change this list with a note."""
    assert manager_cli.__all__ == PUBLIC_API
    assert sorted(manager_cli._EXPORTS) == sorted(PUBLIC_API[1:])


@pytest.mark.parametrize("name", [name for name in PUBLIC_API if name != "__version__"])
def test_each_name_is_its_module_s_object(name):
    value = getattr(manager_cli, name)
    module = importlib.import_module(manager_cli._EXPORTS[name])
    assert value is getattr(module, name)
    assert name in dir(manager_cli)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        manager_cli.no_such_thing  # noqa: B018


def test_star_import_gives_the_public_api():
    namespace: dict[str, object] = {}
    exec("from manager_cli import *", namespace)
    assert set(PUBLIC_API) <= set(namespace)


def test_importing_the_package_loads_no_submodule():
    code = (
        "import sys, manager_cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('manager_cli.')"
        " or m.split('.')[0] in ('pika', 'rich', 'oslo_config')))\n"
        "manager_cli.Manager\n"
        "print('manager_cli.manager' in sys.modules, 'pika' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == ["[]", "True False"]

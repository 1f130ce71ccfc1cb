"""The Manager pattern: Manager, SchedulerDependentManager and the base RPC API (SEED.md).

A manager groups all the logic for one part of a system. Local code calls its methods directly;
other hosts reach them over RPC through the service that wraps it. This module is core: it knows
nothing of AMQP, click or rich. Capabilities are published through a small ``CapabilityPublisher``
interface that the RPC layer implements.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import names
from .errors import UnknownNameError
from .periodic import PeriodicTasks, periodic_task, task_specs
from .rpc.dispatcher import JsonSerializer, RPCDispatcher, Target, rpc_methods

if TYPE_CHECKING:
    from .config import Settings

LOG = logging.getLogger(__name__)

# The seed's scheduler topic: where a SchedulerDependentManager publishes unless the
# ``scheduler_topic`` option says otherwise (cinder's family uses ``cinder-scheduler``).
SCHEDULER_TOPIC = names.SCHEDULER_TOPIC
MANAGERCTL_TOPIC = names.MANAGERCTL_TOPIC
BASE_API_NAMESPACE = names.BASE_API_NAMESPACE
BASE_API_VERSION = names.BASE_API_VERSION
# The lifecycle hooks, in the order a service calls them.
HOOKS = names.HOOKS


class CapabilityPublisher(Protocol):
    """What a SchedulerDependentManager needs to publish: a fanout cast to a topic."""

    def fanout_cast(self, context: Any, topic: str, method: str, args: dict[str, Any]) -> bool:
        """Send ``method(**args)`` to every server of ``topic``, without waiting; False when it
        could not be sent (the publisher says why in its log, and the next interval retries)."""


class BaseRPCAPI:
    """The RPC API every service has, in namespace ``baseapi``, version 1.1."""

    target = Target(namespace=BASE_API_NAMESPACE, version=BASE_API_VERSION)

    def __init__(
        self, service_name: str, backdoor_port: int | None = None, host: str | None = None
    ) -> None:
        self.service_name = service_name
        self.backdoor_port = backdoor_port
        self.host = host

    def ping(self, context: Any, arg: Any = None) -> dict[str, Any]:
        """Answer with the service name and the argument, to prove the service is alive.

        managerctl adds its ``host`` (the seed's reply has only ``service`` and ``arg``; callers
        ignore extra keys), so a broadcast ping can name the hosts that answered.
        """
        reply = {"service": self.service_name, "arg": arg}
        if self.host is not None:
            reply["host"] = self.host
        return reply

    def get_backdoor_port(self, context: Any) -> int | None:
        """The service's backdoor port, or null (added in 1.1)."""
        return self.backdoor_port


class Manager(PeriodicTasks):
    """Base class of managers: lifecycle hooks, periodic tasks and an RPC API."""

    RPC_API_VERSION = "1.0"
    # The RPC topic the manager's service consumes; None means the entry-point name.
    TOPIC: str | None = None
    # Framework names this class serves over RPC after all (e.g. a collector's
    # update_service_capabilities), and public names of its own that it keeps local.
    RPC_EXPOSED: frozenset[str] = frozenset()
    RPC_HIDDEN: frozenset[str] = frozenset()

    def __init__(
        self,
        host: str | None = None,
        db_driver: str | None = None,
        service_name: str = "undefined",
        *,
        settings: Settings | None = None,
        **periodic_options: Any,
    ) -> None:
        if settings is None:
            from .config import load_settings

            settings = load_settings()
        self.settings = settings
        periodic_options.setdefault(
            "run_external_periodic_tasks", settings.run_external_periodic_tasks
        )
        super().__init__(**periodic_options)
        self.host = host or settings.host
        self.service_name = service_name
        self.backdoor_port: int | None = None
        # The original imports the db driver module and keeps it as self.db.
        self.db = importlib.import_module(db_driver) if db_driver else None

    @property
    def target(self) -> Target:
        """The namespace-less target at this manager's RPC API version."""
        return Target(version=self.RPC_API_VERSION)

    @property
    def rpc_hidden_methods(self) -> frozenset[str]:
        """Framework methods a remote caller must never reach (hooks, runners, ...)."""
        return hidden_methods(type(self))

    def create_rpc_dispatcher(
        self, backdoor_port: int | None = None, additional_apis: Sequence[object] | None = None
    ) -> RPCDispatcher:
        """The dispatcher for incoming RPC: additional APIs, this manager, the base API."""
        endpoints = list(additional_apis or ())
        endpoints.append(self)
        endpoints.append(BaseRPCAPI(self.service_name, backdoor_port, self.host))
        return RPCDispatcher(endpoints, JsonSerializer())

    def periodic_tasks(self, context: Any, raise_on_error: bool = False) -> float:
        """Run the periodic tasks that are due; returns the seconds until one is due again."""
        return self.run_periodic_tasks(context, raise_on_error=raise_on_error)

    def init_host(self) -> None:
        """Set up the host, before any service record exists."""

    def pre_start_hook(self) -> None:
        """Called after the service record exists, before any RPC consumer is created."""

    def post_start_hook(self) -> None:
        """Called after the RPC consumers exist and the service is running."""


class SchedulerDependentManager(Manager):
    """A manager that periodically tells the scheduler what it can do."""

    def __init__(
        self,
        host: str | None = None,
        db_driver: str | None = None,
        service_name: str = "undefined",
        *,
        publisher: CapabilityPublisher | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(host, db_driver, service_name, **kwargs)
        self.last_capabilities: list[Any] | None = None
        self.publisher = publisher

    @property
    def scheduler_topic(self) -> str:
        """The topic whose fanout the capabilities go to: the ``scheduler_topic`` option."""
        return str(getattr(self.settings, "scheduler_topic", None) or SCHEDULER_TOPIC)

    def update_service_capabilities(self, capabilities: Any) -> None:
        """Remember these capabilities for the next publication; a single value is wrapped."""
        if not isinstance(capabilities, list):
            capabilities = [capabilities]
        self.last_capabilities = capabilities

    @periodic_task
    def publish_service_capabilities(self, context: Any) -> None:
        """Send the remembered capabilities to the scheduler (a fanout cast), if any.

        Called by the service on its periodic interval, and over RPC when a scheduler (the
        collector) starts and asks every service to publish again.
        """
        if not self.last_capabilities:
            return
        if self.publisher is None:
            LOG.debug("no publisher: capabilities of %s not sent", self.service_name)
            return
        self.publisher.fanout_cast(
            context,
            self.scheduler_topic,
            "update_service_capabilities",
            {
                "service_name": self.service_name,
                "host": self.host,
                "capabilities": self.last_capabilities,
            },
        )


# Public names of the framework classes that are not RPC methods. publish_service_capabilities
# stays callable: the scheduler asks services to publish by a fanout cast of it.
FRAMEWORK_METHODS: frozenset[str] = frozenset(
    name
    for cls in (PeriodicTasks, Manager, SchedulerDependentManager)
    for name in vars(cls)
    if not name.startswith("_") and name != "publish_service_capabilities"
) | frozenset({"settings", "publisher", "db", "scheduler_topic"})


def hidden_methods(cls: type) -> frozenset[str]:
    """The public names of a manager class that are not RPC methods."""
    return (FRAMEWORK_METHODS - getattr(cls, "RPC_EXPOSED", frozenset())) | getattr(
        cls, "RPC_HIDDEN", frozenset()
    )


# ---------------------------------------------------------------------------
# Running hooks and describing managers, for the CLI and the service.


@dataclass(frozen=True)
class HookRun:
    """The outcome of one lifecycle hook."""

    hook: str
    started: float
    duration: float
    outcome: str  # "ok" or "failed"
    error: str | None = None


def run_hook(manager: Manager, hook: str) -> HookRun:
    """Run one lifecycle hook and record its outcome (errors are captured, not raised)."""
    if hook not in HOOKS:
        raise UnknownNameError(f"unknown hook {hook!r}", hint="choose from " + ", ".join(HOOKS))
    started = time.time()
    begin = time.monotonic()
    try:
        getattr(manager, hook)()
    except Exception as exc:
        LOG.exception("hook %s failed", hook)
        return HookRun(
            hook, started, time.monotonic() - begin, "failed", f"{type(exc).__name__}: {exc}"
        )
    return HookRun(hook, started, time.monotonic() - begin, "ok")


def run_hooks(manager: Manager, hooks: Sequence[str] = ()) -> list[HookRun]:
    """Run the chosen hooks (all by default) in seed order, stopping after a failure."""
    chosen = list(hooks) or list(HOOKS)
    for hook in chosen:
        if hook not in HOOKS:
            raise UnknownNameError(f"unknown hook {hook!r}", hint="choose from " + ", ".join(HOOKS))
    runs = []
    for hook in HOOKS:
        if hook in chosen:
            run = run_hook(manager, hook)
            runs.append(run)
            if run.outcome != "ok":
                break
    return runs


def _overridden_hooks(cls: type) -> list[str]:
    return [hook for hook in HOOKS if getattr(cls, hook) is not getattr(Manager, hook)]


def call_signature(name: str, signature: inspect.Signature | None) -> str:
    """How an operator calls a method: ``echo(value=None)``, context and annotations left out."""
    if signature is None:
        return f"{name}(...)"
    parts = []
    for index, param in enumerate(signature.parameters.values()):
        if index == 0 and param.name in ("context", "ctxt", "ctx"):
            continue
        if param.kind is param.VAR_KEYWORD:
            parts.append(f"**{param.name}")
        elif param.kind is param.VAR_POSITIONAL:
            parts.append(f"*{param.name}")
        elif param.default is param.empty:
            parts.append(param.name)
        else:
            parts.append(f"{param.name}={param.default!r}")
    return f"{name}({', '.join(parts)})"


def describe_manager_class(cls: type[Manager], name: str | None = None) -> dict[str, Any]:
    """What a manager class is: RPC API, methods with signatures, periodic tasks, hooks."""
    methods = []
    for method_name, signature in rpc_methods(_ClassView(cls)):
        doc = inspect.getdoc(getattr(cls, method_name)) or ""
        methods.append(
            {
                "name": method_name,
                "signature": call_signature(method_name, signature),
                "summary": doc.splitlines()[0] if doc else "",
            }
        )
    return {
        "name": name or cls.__name__,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "topic": cls.TOPIC or name or cls.__name__.lower(),
        "rpc_api_version": cls.RPC_API_VERSION,
        "scheduler_dependent": issubclass(cls, SchedulerDependentManager),
        "summary": (inspect.getdoc(cls) or "").split("\n")[0],
        "rpc_methods": methods,
        "periodic_tasks": [
            {
                "name": spec.name,
                "spacing": spec.spacing,
                "run_immediately": spec.run_immediately,
                "external_process_ok": spec.external_process_ok,
            }
            for spec in task_specs(cls)
        ],
        "hooks": [{"hook": hook, "overridden": hook in _overridden_hooks(cls)} for hook in HOOKS],
    }


class _ClassView:
    """Lets the dispatcher's exposure rules look at a class without instantiating it."""

    def __init__(self, cls: type) -> None:
        self._cls = cls
        self.rpc_hidden_methods = hidden_methods(cls)

    def __dir__(self) -> list[str]:
        return dir(self._cls)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._cls, name)
        if inspect.isfunction(value):
            # Bind to a dummy so the signature drops ``self`` like a bound method's would.
            return value.__get__(object(), self._cls)
        return value

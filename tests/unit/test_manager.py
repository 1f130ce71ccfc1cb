"""Tests for manager_cli.manager: every Manager behaviour of SEED.md, without a broker."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from manager_cli.config import load_settings
from manager_cli.errors import EXIT_USAGE, UnknownNameError
from manager_cli.examples.hostinfo import HostInfoManager
from manager_cli.manager import (
    BASE_API_NAMESPACE,
    BASE_API_VERSION,
    HOOKS,
    SCHEDULER_TOPIC,
    BaseRPCAPI,
    Manager,
    SchedulerDependentManager,
    describe_manager_class,
    run_hook,
    run_hooks,
)
from manager_cli.periodic import periodic_task
from manager_cli.rpc.dispatcher import (
    JsonSerializer,
    NoSuchMethod,
    RPCDispatcher,
    Target,
    UnsupportedVersion,
)
from manager_cli.rpc.wire import Request

CONTEXT = {"request_id": "req-test", "user": "tester"}


@pytest.fixture
def settings():
    return load_settings(environ={})


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingPublisher:
    """A CapabilityPublisher that remembers every fanout cast."""

    def __init__(self) -> None:
        self.casts: list[tuple[Any, str, str, dict[str, Any]]] = []

    def fanout_cast(self, context: Any, topic: str, method: str, args: dict[str, Any]) -> None:
        self.casts.append((context, topic, method, args))


class CalcManager(Manager):
    """A manager with a small RPC API at version 1.2."""

    RPC_API_VERSION = "1.2"

    def add(self, context, a, b):
        return a + b

    def pair(self, context):
        return ("x", "y")

    def whoami(self, context):
        return "manager"


class HookRecorder(Manager):
    """Records which hooks ran; a hook named in ``failing`` raises."""

    def __init__(self, *args, failing: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ran: list[str] = []
        self.failing = failing

    def _hook(self, name: str) -> None:
        self.ran.append(name)
        if name == self.failing:
            raise RuntimeError(f"{name} broke")

    def init_host(self) -> None:
        self._hook("init_host")

    def pre_start_hook(self) -> None:
        self._hook("pre_start_hook")

    def post_start_hook(self) -> None:
        self._hook("post_start_hook")


def request(method: str, version: str | None = None, namespace: str | None = None, **args):
    return Request(method=method, args=args, version=version, namespace=namespace, context=CONTEXT)


# ---------------------------------------------------------------------------
# Constructor


def test_host_defaults_to_the_configured_host_which_defaults_to_the_host_name(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "compute-7")
    manager = Manager(settings=load_settings(environ={}))
    assert manager.host == "compute-7"


def test_host_follows_the_configured_host_option(settings):
    configured = settings.with_overrides({"host": "configured-host"})
    assert Manager(settings=configured).host == "configured-host"


def test_explicit_host_wins_over_the_configured_one(settings):
    configured = settings.with_overrides({"host": "configured-host"})
    assert Manager(host="given", settings=configured).host == "given"


def test_constructor_defaults(settings):
    manager = Manager(settings=settings)
    assert manager.service_name == "undefined"
    assert manager.backdoor_port is None
    assert manager.db is None


def test_service_name_is_kept(settings):
    assert Manager(service_name="compute", settings=settings).service_name == "compute"


def test_db_driver_module_becomes_self_db(settings):
    manager = Manager(db_driver="json", settings=settings)
    assert manager.db is json


def test_unimportable_db_driver_raises(settings):
    with pytest.raises(ImportError):
        Manager(db_driver="no_such_db_driver_module", settings=settings)


def test_run_external_periodic_tasks_comes_from_settings():
    settings = load_settings(environ={"MANAGERCTL_RUN_EXTERNAL_PERIODIC_TASKS": "false"})
    assert Manager(settings=settings).run_external_periodic_tasks is False


# ---------------------------------------------------------------------------
# RPC API version and target


def test_rpc_api_version_defaults_to_1_0(settings):
    assert Manager.RPC_API_VERSION == "1.0"
    assert Manager(settings=settings).target == Target(namespace=None, version="1.0")


def test_subclass_raises_the_rpc_api_version(settings):
    manager = CalcManager(settings=settings)
    assert manager.RPC_API_VERSION == "1.2"
    assert manager.target.version == "1.2"
    assert manager.target.namespace is None


# ---------------------------------------------------------------------------
# create_rpc_dispatcher


class ExtraAPI:
    """An additional API in the manager's (empty) namespace that shadows one of its methods."""

    target = Target(version="1.0")

    def whoami(self, context):
        return "extra"


def test_dispatcher_endpoints_in_seed_order(settings):
    manager = CalcManager(service_name="calc", settings=settings)
    extra_a, extra_b = ExtraAPI(), object()
    dispatcher = manager.create_rpc_dispatcher(additional_apis=[extra_a, extra_b])
    assert isinstance(dispatcher, RPCDispatcher)
    assert dispatcher.endpoints[:3] == [extra_a, extra_b, manager]
    assert isinstance(dispatcher.endpoints[3], BaseRPCAPI)
    assert len(dispatcher.endpoints) == 4
    assert isinstance(dispatcher.serializer, JsonSerializer)


def test_additional_apis_come_before_the_manager(settings):
    manager = CalcManager(settings=settings)
    dispatcher = manager.create_rpc_dispatcher(additional_apis=[ExtraAPI()])
    assert dispatcher.dispatch(request("whoami", version="1.0")) == "extra"
    assert manager.create_rpc_dispatcher().dispatch(request("whoami")) == "manager"


def test_base_api_target():
    assert BaseRPCAPI.target == Target(namespace="baseapi", version="1.1")
    assert (BASE_API_NAMESPACE, BASE_API_VERSION) == ("baseapi", "1.1")


def test_ping_in_baseapi_returns_service_and_arg(settings):
    manager = Manager(host="node1", service_name="compute", settings=settings)
    result = manager.create_rpc_dispatcher().dispatch(
        request("ping", "1.1", "baseapi", arg={"n": 1})
    )
    # The seed's two keys, plus the host managerctl adds so a broadcast ping can name hosts.
    assert result == {"service": "compute", "arg": {"n": 1}, "host": "node1"}


def test_ping_at_version_1_0_of_baseapi_is_compatible(settings):
    dispatcher = Manager(service_name="compute", settings=settings).create_rpc_dispatcher()
    assert dispatcher.dispatch(request("ping", "1.0", "baseapi", arg="x"))["arg"] == "x"


def test_get_backdoor_port_returns_the_given_port(settings):
    dispatcher = Manager(settings=settings).create_rpc_dispatcher(backdoor_port=4444)
    assert dispatcher.dispatch(request("get_backdoor_port", "1.1", "baseapi")) == 4444


def test_get_backdoor_port_is_null_without_one(settings):
    dispatcher = Manager(settings=settings).create_rpc_dispatcher()
    assert dispatcher.dispatch(request("get_backdoor_port", "1.1", "baseapi")) is None


def test_baseapi_version_1_2_is_unsupported(settings):
    dispatcher = Manager(settings=settings).create_rpc_dispatcher()
    with pytest.raises(UnsupportedVersion):
        dispatcher.dispatch(request("ping", "1.2", "baseapi", arg=1))


def test_baseapi_methods_are_not_in_the_manager_namespace(settings):
    dispatcher = Manager(settings=settings).create_rpc_dispatcher()
    with pytest.raises(NoSuchMethod):
        dispatcher.dispatch(request("ping", "1.0", None, arg=1))


def test_manager_method_at_the_manager_version(settings):
    dispatcher = CalcManager(settings=settings).create_rpc_dispatcher()
    assert dispatcher.dispatch(request("add", "1.2", a=2, b=3)) == 5
    assert dispatcher.dispatch(request("add", "1.0", a=2, b=3)) == 5


def test_manager_method_above_the_manager_version_is_unsupported(settings):
    dispatcher = CalcManager(settings=settings).create_rpc_dispatcher()
    with pytest.raises(UnsupportedVersion):
        dispatcher.dispatch(request("add", "1.3", a=2, b=3))


def test_results_go_through_the_json_serializer(settings):
    dispatcher = CalcManager(settings=settings).create_rpc_dispatcher()
    assert dispatcher.dispatch(request("pair")) == ["x", "y"]


@pytest.mark.parametrize(
    "method",
    [
        "init_host",
        "pre_start_hook",
        "post_start_hook",
        "update_service_capabilities",
        "periodic_tasks",
        "run_periodic_tasks",
        "run_task_now",
        "run_tasks_now",
        "create_rpc_dispatcher",
        "periodic_task_info",
        "_remember",
    ],
)
def test_framework_methods_are_not_remotely_callable(settings, method):
    manager = HostInfoManager(settings=settings)
    dispatcher = manager.create_rpc_dispatcher()
    with pytest.raises(NoSuchMethod):
        dispatcher.dispatch(request(method, "1.1", capabilities={"a": 1}))
    assert manager.last_capabilities is None


def test_publish_service_capabilities_is_remotely_callable(settings):
    publisher = RecordingPublisher()
    manager = SchedulerDependentManager(
        service_name="compute", host="node1", settings=settings, publisher=publisher
    )
    manager.update_service_capabilities({"vcpus": 8})
    manager.create_rpc_dispatcher().dispatch(request("publish_service_capabilities"))
    assert [(topic, method) for _, topic, method, _ in publisher.casts] == [
        ("scheduler", "update_service_capabilities")
    ]


# ---------------------------------------------------------------------------
# Periodic tasks


class Ticker(Manager):
    @periodic_task(spacing=30, run_immediately=True)
    def tick(self, context):
        self.ticks.append(context)

    @periodic_task(spacing=10)
    def later(self, context):
        raise RuntimeError("later broke")


def test_periodic_tasks_delegates_to_the_runner(settings):
    clock = FakeClock()
    manager = Ticker(settings=settings, clock=clock)
    manager.ticks = []
    idle = manager.periodic_tasks(CONTEXT)
    assert manager.ticks == [CONTEXT]
    assert idle == 10  # "later" is due one spacing after start
    assert manager.periodic_task_info()[0]["last_outcome"] == "ok"


def test_periodic_tasks_passes_raise_on_error(settings):
    clock = FakeClock()
    manager = Ticker(settings=settings, clock=clock)
    manager.ticks = []
    clock.now += 10
    with pytest.raises(RuntimeError, match="later broke"):
        manager.periodic_tasks(CONTEXT, raise_on_error=True)


def test_periodic_tasks_swallows_errors_by_default(settings):
    clock = FakeClock()
    manager = Ticker(settings=settings, clock=clock)
    manager.ticks = []
    clock.now += 10
    manager.periodic_tasks(CONTEXT)
    assert manager.last_run_record("later").outcome == "failed"


# ---------------------------------------------------------------------------
# Hooks


def test_hooks_are_no_ops_by_default(settings):
    manager = Manager(settings=settings)
    before = dict(vars(manager))
    for hook in HOOKS:
        assert getattr(manager, hook)() is None
    assert vars(manager) == before


def test_hooks_constant_is_the_seed_order():
    assert HOOKS == ("init_host", "pre_start_hook", "post_start_hook")


def test_run_hooks_runs_all_in_seed_order_by_default(settings):
    manager = HookRecorder(settings=settings)
    runs = run_hooks(manager)
    assert manager.ran == list(HOOKS)
    assert [(run.hook, run.outcome) for run in runs] == [(hook, "ok") for hook in HOOKS]


def test_run_hooks_uses_seed_order_whatever_order_given(settings):
    manager = HookRecorder(settings=settings)
    runs = run_hooks(manager, ["post_start_hook", "init_host"])
    assert manager.ran == ["init_host", "post_start_hook"]
    assert [run.hook for run in runs] == ["init_host", "post_start_hook"]


def test_run_hooks_unknown_hook_runs_nothing(settings):
    manager = HookRecorder(settings=settings)
    with pytest.raises(UnknownNameError) as info:
        run_hooks(manager, ["init_host", "start"])
    assert info.value.exit_code == EXIT_USAGE
    assert "start" in str(info.value)
    assert "init_host" in str(info.value)  # the hint lists the valid hooks
    assert manager.ran == []


def test_run_hook_unknown_hook(settings):
    with pytest.raises(UnknownNameError):
        run_hook(Manager(settings=settings), "create_rpc_dispatcher")


def test_a_failing_hook_stops_the_rest(settings):
    manager = HookRecorder(settings=settings, failing="pre_start_hook")
    runs = run_hooks(manager)
    assert manager.ran == ["init_host", "pre_start_hook"]
    assert [(run.hook, run.outcome) for run in runs] == [
        ("init_host", "ok"),
        ("pre_start_hook", "failed"),
    ]
    assert runs[1].error == "RuntimeError: pre_start_hook broke"
    assert runs[0].error is None


# ---------------------------------------------------------------------------
# SchedulerDependentManager


def test_update_service_capabilities_wraps_a_single_value(settings):
    manager = SchedulerDependentManager(settings=settings)
    manager.update_service_capabilities({"vcpus": 4})
    assert manager.last_capabilities == [{"vcpus": 4}]


def test_update_service_capabilities_keeps_a_list(settings):
    manager = SchedulerDependentManager(settings=settings)
    capabilities = [{"vcpus": 4}, {"vcpus": 8}]
    manager.update_service_capabilities(capabilities)
    assert manager.last_capabilities == capabilities


def test_update_service_capabilities_replaces_the_previous_ones(settings):
    manager = SchedulerDependentManager(settings=settings)
    manager.update_service_capabilities({"vcpus": 4})
    manager.update_service_capabilities({"vcpus": 8})
    assert manager.last_capabilities == [{"vcpus": 8}]


def test_publish_sends_nothing_while_nothing_remembered(settings):
    publisher = RecordingPublisher()
    manager = SchedulerDependentManager(settings=settings, publisher=publisher)
    manager.publish_service_capabilities(CONTEXT)
    assert publisher.casts == []


def test_publish_sends_one_fanout_cast_to_the_scheduler(settings):
    publisher = RecordingPublisher()
    manager = SchedulerDependentManager(
        host="node1", service_name="compute", settings=settings, publisher=publisher
    )
    manager.update_service_capabilities({"vcpus": 4})
    manager.publish_service_capabilities(CONTEXT)
    assert SCHEDULER_TOPIC == "scheduler"
    assert publisher.casts == [
        (
            CONTEXT,
            "scheduler",
            "update_service_capabilities",
            {"service_name": "compute", "host": "node1", "capabilities": [{"vcpus": 4}]},
        )
    ]


def test_publish_without_a_publisher_is_not_an_error(settings):
    manager = SchedulerDependentManager(settings=settings)
    manager.update_service_capabilities({"vcpus": 4})
    assert manager.publish_service_capabilities(CONTEXT) is None
    assert manager.last_capabilities == [{"vcpus": 4}]


def test_hostinfo_publishes_its_gathered_facts(settings):
    publisher = RecordingPublisher()
    manager = HostInfoManager(host="node1", settings=settings, publisher=publisher)
    runs = manager.run_tasks_now(CONTEXT)
    assert {run.outcome for run in runs} == {"ok"}
    manager.publish_service_capabilities(CONTEXT)
    (_, _, _, args) = publisher.casts[0]
    assert args["service_name"] == "hostinfo"
    assert args["host"] == "node1"
    assert args["capabilities"][0]["cpu_count"] >= 1


# ---------------------------------------------------------------------------
# describe_manager_class

FRAMEWORK_NAMES = {
    "init_host",
    "pre_start_hook",
    "post_start_hook",
    "create_rpc_dispatcher",
    "periodic_tasks",
    "run_periodic_tasks",
    "run_task_now",
    "run_tasks_now",
    "update_service_capabilities",
    "periodic_task_info",
    "run_history",
    "last_run_record",
    "target",
    "rpc_hidden_methods",
    "settings",
    "publisher",
    "db",
}


@pytest.fixture
def hostinfo_description():
    return describe_manager_class(HostInfoManager, "hostinfo")


def test_describe_lists_rpc_methods_with_signatures(hostinfo_description):
    signatures = {m["name"]: m["signature"] for m in hostinfo_description["rpc_methods"]}
    assert signatures["echo"] == "echo(value=None)"
    assert signatures["get_facts"] == "get_facts()"
    assert signatures["sleep"] == "sleep(seconds=1.0)"
    assert signatures["fail"] == "fail(message='deliberate failure')"
    assert signatures["publish_service_capabilities"] == "publish_service_capabilities()"
    assert all("context" not in signature for signature in signatures.values())


def test_describe_has_method_summaries(hostinfo_description):
    summaries = {m["name"]: m["summary"] for m in hostinfo_description["rpc_methods"]}
    assert summaries["echo"] == "Return the value unchanged (a round-trip check)."


def test_describe_leaves_out_framework_methods(hostinfo_description):
    names = {m["name"] for m in hostinfo_description["rpc_methods"]}
    assert names.isdisjoint(FRAMEWORK_NAMES)
    assert not any(name.startswith("_") for name in names)


def test_describe_lists_periodic_tasks_with_spacing(hostinfo_description):
    tasks = {task["name"]: task for task in hostinfo_description["periodic_tasks"]}
    # The inherited publishing task comes first (base classes first), as in nova.
    assert list(tasks) == [
        "publish_service_capabilities",
        "gather_cpu",
        "gather_memory",
        "gather_disk",
        "gather_system",
    ]
    assert tasks["publish_service_capabilities"]["spacing"] == 60
    assert tasks["publish_service_capabilities"]["run_immediately"] is False
    assert tasks["gather_cpu"]["spacing"] == 10
    assert tasks["gather_memory"]["spacing"] == 30
    assert tasks["gather_disk"]["run_immediately"] is True


def test_describe_summary_fields(hostinfo_description):
    assert hostinfo_description["name"] == "hostinfo"
    assert hostinfo_description["class"] == "manager_cli.examples.hostinfo:HostInfoManager"
    assert hostinfo_description["topic"] == "hostinfo"
    assert hostinfo_description["rpc_api_version"] == "1.1"
    assert hostinfo_description["scheduler_dependent"] is True
    assert [h["hook"] for h in hostinfo_description["hooks"]] == list(HOOKS)
    assert not any(h["overridden"] for h in hostinfo_description["hooks"])


def test_describe_marks_overridden_hooks():
    description = describe_manager_class(HookRecorder)
    assert all(h["overridden"] for h in description["hooks"])
    assert description["scheduler_dependent"] is False


def test_described_methods_are_exactly_the_callable_ones(settings, hostinfo_description):
    # The class view (no instance) and the dispatcher (an instance) must agree.
    dispatcher = HostInfoManager(settings=settings).create_rpc_dispatcher()
    for method in hostinfo_description["rpc_methods"]:
        assert callable(dispatcher.find(method["name"], "1.1", None))
    for name in FRAMEWORK_NAMES:
        with pytest.raises(NoSuchMethod):
            dispatcher.find(name, "1.1", None)


def test_describe_is_json_serialisable(hostinfo_description):
    assert json.loads(json.dumps(hostinfo_description)) == hostinfo_description

"""Service with a fake RPC server and a fake publishing client: start order, timers, stop."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from manager_cli.config import load_settings
from manager_cli.errors import BrokerUnreachableError, TaskFailedError, UnknownNameError
from manager_cli.manager import Manager, SchedulerDependentManager
from manager_cli.periodic import periodic_task
from manager_cli.service import (
    CONTROL_API_VERSION,
    CONTROL_NAMESPACE,
    REPORT_METHOD,
    BrokerPublisher,
    ControlEndpoint,
    Service,
)

HOST = "unit-host"


def settings(**overrides: Any) -> Any:
    values = {
        "host": HOST,
        "transport_url": "rabbit://guest:guest@127.0.0.1:1/",
        "periodic_fuzzy_delay": 0,
        "report_interval": 3600,
        **overrides,
    }
    return load_settings(environ={}).with_overrides(values)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class Events(list):
    """What happened, in order, across the manager, the server and the client."""


class FakeServer:
    def __init__(self, events: Events, **kwargs: Any) -> None:
        self.events = events
        self.kwargs = kwargs
        self.queues = [kwargs["topic"], f"{kwargs['topic']}.{kwargs['server']}"]
        self.stopped_with: float | None = None

    def start(self) -> None:
        self.events.append("consumers")

    def stop(self, graceful_timeout: float = 30.0) -> None:
        self.events.append("server stopped")
        self.stopped_with = graceful_timeout


class FakeClient:
    """An RPCClient stand-in: records casts; ``fail`` makes the next casts raise."""

    instances: list[FakeClient] = []

    def __init__(self, events: Events, fail: list[BaseException]) -> None:
        self.events = events
        self.fail = fail
        self.casts: list[dict[str, Any]] = []
        self.closed = False
        FakeClient.instances.append(self)

    def cast(self, context: Any, method: str, **kwargs: Any) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.casts.append({"method": method, **kwargs})
        self.events.append(f"cast {method}")

    def close(self) -> None:
        self.closed = True


class Hooked(Manager):
    """Records its hooks and periodic runs in ``events``."""

    def __init__(self, *args: Any, events: Events, fail_hook: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.events = events
        self.fail_hook = fail_hook

    def _hook(self, name: str) -> None:
        self.events.append(name)
        if name == self.fail_hook:
            raise RuntimeError(f"{name} broke")

    def init_host(self) -> None:
        self._hook("init_host")

    def pre_start_hook(self) -> None:
        self._hook("pre_start_hook")

    def post_start_hook(self) -> None:
        self._hook("post_start_hook")

    @periodic_task(spacing=0.05, run_immediately=True)
    def tick(self, context: Any) -> None:
        self.events.append("tick")

    @periodic_task(spacing=3600)
    def rare(self, context: Any) -> None:
        raise ValueError("rare failure")


class Publishing(SchedulerDependentManager):
    @periodic_task(spacing=3600, run_immediately=True)
    def remember(self, context: Any) -> None:
        self.update_service_capabilities({"free": 1})


def make_service(
    manager_cls: type[Manager] = Hooked,
    *,
    fail_hook: str | None = None,
    cast_failures: list[BaseException] | None = None,
    randint: Any = None,
    **overrides: Any,
) -> tuple[Service, Events, list[FakeServer]]:
    events = Events()
    servers: list[FakeServer] = []
    failures = cast_failures if cast_failures is not None else []
    conf = settings(**overrides)
    extra = {"events": events, "fail_hook": fail_hook} if manager_cls is Hooked else {}
    manager = manager_cls(service_name="unit", settings=conf, **extra)

    def server_factory(**kwargs: Any) -> FakeServer:
        servers.append(FakeServer(events, **kwargs))
        return servers[-1]

    service = Service(
        manager,
        topic="unit_topic",
        settings=conf,
        graceful_timeout=2.5,
        server_factory=server_factory,
        client_factory=lambda: FakeClient(events, failures),
        randint=randint or (lambda low, high: 0),
    )
    return service, events, servers


@pytest.fixture
def started():
    """make_service(...) and start it; every service made here is stopped at the end."""
    made: list[Service] = []

    def start(*args: Any, **kwargs: Any) -> tuple[Service, Events, list[FakeServer]]:
        service, events, servers = make_service(*args, **kwargs)
        made.append(service)
        service.start()
        return service, events, servers

    yield start
    for service in made:
        service.stop()


# ---------------------------------------------------------------------------
# Start order


def test_start_follows_the_seed_order(started):
    service, events, servers = started()
    assert wait_for(lambda: "tick" in events)
    assert events[:5] == [
        "init_host",
        f"cast {REPORT_METHOD}",  # the service record, announced
        "pre_start_hook",
        "consumers",
        "post_start_hook",
    ]
    assert servers[0].kwargs["topic"] == "unit_topic"
    assert servers[0].kwargs["server"] == HOST
    assert service.record is not None and service.record.status == "running"


def test_the_consumers_get_the_manager_the_base_api_and_the_control_endpoint(started):
    _, _, servers = started()
    dispatcher = servers[0].kwargs["dispatcher"]
    types = [type(endpoint).__name__ for endpoint in dispatcher.endpoints]
    assert types == ["ControlEndpoint", "Hooked", "BaseRPCAPI"]
    control = dispatcher.find("list_periodic_tasks", CONTROL_API_VERSION, CONTROL_NAMESPACE)
    assert control.__self__.__class__ is ControlEndpoint


def test_an_oslo_peer_without_the_namespace_never_reaches_the_control_endpoint(started):
    from manager_cli.rpc.dispatcher import NoSuchMethod

    _, _, servers = started()
    dispatcher = servers[0].kwargs["dispatcher"]
    for method in ("list_periodic_tasks", "run_periodic_task", "get_service"):
        with pytest.raises(NoSuchMethod):
            dispatcher.find(method, None, None)


def test_the_record_says_who_the_service_is_and_which_hooks_ran(started):
    import os

    from manager_cli import __version__

    service, _, _ = started()
    record = ControlEndpoint(service).get_service({})
    assert {k: record[k] for k in ("service", "host", "topic", "version", "pid")} == {
        "service": "unit",
        "host": HOST,
        "topic": "unit_topic",
        "version": __version__,
        "pid": os.getpid(),
    }
    assert record["started"] == pytest.approx(time.time(), abs=5)
    assert [(h["hook"], h["outcome"]) for h in record["hooks"]] == [
        ("init_host", "ok"),
        ("pre_start_hook", "ok"),
        ("post_start_hook", "ok"),
    ]


@pytest.mark.parametrize("hook", ["init_host", "pre_start_hook"])
def test_a_failing_hook_before_the_consumers_stops_the_start(hook):
    service, events, servers = make_service(fail_hook=hook)
    with pytest.raises(TaskFailedError, match=f"{hook} of unit failed: RuntimeError"):
        service.start()
    assert "consumers" not in events and "post_start_hook" not in events
    assert servers == []
    service.stop()


def test_a_failing_post_start_hook_stops_the_consumers_again():
    service, events, servers = make_service(fail_hook="post_start_hook")
    with pytest.raises(TaskFailedError):
        service.start()
    assert servers[0].stopped_with == 2.5
    assert "tick" not in events
    service.stop()


def test_a_broker_that_cannot_be_reached_at_start_is_the_transports_error():
    service, _, _ = make_service()

    def unreachable(**kwargs: Any) -> Any:
        server = FakeServer(Events(), **kwargs)
        server.start = lambda: (_ for _ in ()).throw(BrokerUnreachableError("no broker"))
        return server

    service._server_factory = unreachable
    with pytest.raises(BrokerUnreachableError):
        service.start()
    service.stop()


def test_a_scheduler_dependent_manager_publishes_through_the_service(started):
    service, events, _ = started(Publishing)
    assert service.manager.publisher is service.publisher
    assert wait_for(lambda: service.manager.last_capabilities)
    ControlEndpoint(service).run_periodic_task({}, "publish_service_capabilities")
    assert "cast update_service_capabilities" in events
    cast = next(
        c for c in FakeClient.instances[-1].casts if c["method"] == "update_service_capabilities"
    )
    assert cast["topic"] == "scheduler" and cast["fanout"] is True
    assert cast["args"] == {"service_name": "unit", "host": HOST, "capabilities": [{"free": 1}]}
    record = service.record.state_report()
    assert record["publishes_capabilities"] is True and record["scheduler_topic"] == "scheduler"


def test_the_scheduler_topic_option_moves_publications_and_the_heartbeat_says_so(started):
    service, _, _ = started(Publishing, scheduler_topic="cinder-scheduler")
    assert wait_for(lambda: service.manager.last_capabilities)
    ControlEndpoint(service).run_periodic_task({}, "publish_service_capabilities")
    cast = next(
        c for c in FakeClient.instances[-1].casts if c["method"] == "update_service_capabilities"
    )
    assert cast["topic"] == "cinder-scheduler"
    assert service.record.state_report()["scheduler_topic"] == "cinder-scheduler"


class Listening(Manager):
    """A manager that joins another topic's fanout, as the collector joins the scheduler's."""

    def fanout_listeners(self) -> list[tuple[str, Any]]:
        return [("someone-elses", "a dispatcher")]


def test_fanout_listeners_consume_a_fanout_queue_of_their_own_only(started):
    service, events, servers = started(Listening)
    main, listener = servers
    assert "fanout_only" not in main.kwargs
    assert listener.kwargs == {
        "topic": "someone-elses",
        "server": HOST,
        "dispatcher": "a dispatcher",
        "fanout_only": True,
    }
    service.stop()
    assert events.count("server stopped") == 2


# ---------------------------------------------------------------------------
# The periodic timer


def test_the_timer_runs_tasks_again_and_again(started):
    _, events, _ = started()
    assert wait_for(lambda: events.count("tick") >= 3)


def test_the_fuzzy_delay_is_randint_0_to_periodic_fuzzy_delay(started):
    asked: list[tuple[int, int]] = []

    def randint(low: int, high: int) -> int:
        asked.append((low, high))
        return 0

    _, events, _ = started(randint=randint, periodic_fuzzy_delay=7)
    assert wait_for(lambda: "tick" in events)
    assert asked == [(0, 7)]


def test_a_fuzzy_delay_postpones_the_first_pass_and_a_stop_cuts_it_short():
    service, events, _ = make_service(randint=lambda low, high: high, periodic_fuzzy_delay=30)
    service.start()
    time.sleep(0.2)
    assert "tick" not in events
    begin = time.monotonic()
    service.stop()
    assert time.monotonic() - begin < 2


def test_periodic_interval_max_caps_the_sleep():
    service, _, _ = make_service(periodic_interval_max=5)
    service.manager.periodic_tasks = lambda context: 3600.0
    assert service.run_periodic_tasks() == 5
    service.settings = settings(periodic_interval_max=0)
    assert service.run_periodic_tasks() == 3600
    service.manager.periodic_tasks = lambda context: 0.0
    assert service.run_periodic_tasks() > 0  # never a busy loop


def test_an_error_escaping_the_runner_never_stops_the_timer(started, caplog):
    service, events, _ = make_service()
    calls: list[int] = []

    def broken(context: Any) -> float:
        calls.append(1)
        raise RuntimeError("runner bug")

    service.manager.periodic_tasks = broken
    with caplog.at_level(logging.ERROR, logger="manager_cli.service"):
        assert service.run_periodic_tasks() == 1.0
    assert "the periodic task runner failed" in caplog.text
    assert len(calls) == 1


def test_a_failing_task_is_recorded_and_the_timer_goes_on(started):
    service, events, _ = started()
    control = ControlEndpoint(service)
    rows = control.run_periodic_task({}, "rare")
    assert rows[0]["outcome"] == "failed" and rows[0]["error"] == "ValueError: rare failure"
    count = events.count("tick")
    assert wait_for(lambda: events.count("tick") > count)
    listed = {row["name"]: row for row in control.list_periodic_tasks({})}
    assert listed["rare"]["last_outcome"] == "failed"
    assert listed["rare"]["last_error"] == "ValueError: rare failure"


def test_periodic_enable_false_means_no_timer(started):
    _, events, _ = started(periodic_enable=False)
    time.sleep(0.2)
    assert "tick" not in events


# ---------------------------------------------------------------------------
# State reports (heartbeats)


def test_state_reports_every_report_interval(started):
    service, _, _ = started(report_interval=0.05)
    assert wait_for(lambda: len(FakeClient.instances[-1].casts) >= 4)
    casts = FakeClient.instances[-1].casts
    assert all(c["method"] == REPORT_METHOD for c in casts)
    # managerctl's own topic: a real scheduler shares the scheduler topic's fanout and logs
    # every report_service_state it cannot dispatch as an ERROR traceback.
    assert all(c["topic"] == "managerctl" and c["fanout"] for c in casts)
    report = casts[-1]["args"]["service"]
    assert set(report) == {
        "service",
        "host",
        "topic",
        "version",
        "started",
        "pid",
        "status",
        "updated_at",
        "report_count",
        "rpc_api_version",
        "publishes_capabilities",
        "scheduler_topic",
    }
    assert report["host"] == HOST and report["status"] == "running"
    # A plain Manager: a collector must never ask it to publish.
    assert report["publishes_capabilities"] is False and report["scheduler_topic"] is None
    assert report["rpc_api_version"] == "1.0"
    assert report["updated_at"] >= report["started"]
    counts = [c["args"]["service"]["report_count"] for c in casts]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_report_interval_0_sends_nothing(started):
    _, events, _ = started(report_interval=0)
    assert wait_for(lambda: "tick" in events)
    assert not any(event.startswith("cast") for event in events)


def test_a_failed_report_is_one_log_line_and_the_next_interval_reconnects(started, caplog):
    failures: list[BaseException] = [
        BrokerUnreachableError("cannot reach the message broker", hint="a hint for people"),
        OSError("connection reset"),
    ]
    with caplog.at_level(logging.INFO, logger="manager_cli.service"):
        service, _, _ = started(report_interval=0.05, cast_failures=failures)
        assert wait_for(lambda: FakeClient.instances[-1].casts)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("\n" not in r.getMessage() for r in warnings)
    assert "a hint for people" not in caplog.text
    assert "the broker is reachable again" in caplog.text
    # Each failure dropped its client; the next interval built a new one.
    clients = [c for c in FakeClient.instances if c.events is service.manager.events]
    assert [c.closed for c in clients[:-1]] == [True] * (len(clients) - 1)
    assert len(clients) >= 3
    assert service.publisher.failures == 2


def test_the_publisher_never_raises():
    def factory() -> Any:
        raise BrokerUnreachableError("down")

    publisher = BrokerPublisher(factory)
    assert publisher.fanout_cast({}, "scheduler", REPORT_METHOD, {"service": {}}) is False
    publisher.close()


# ---------------------------------------------------------------------------
# Stop and reload


def test_stop_stops_the_consumers_sends_a_last_report_and_closes():
    service, events, servers = make_service(report_interval=3600)
    service.start()
    service.stop()
    assert servers[0].stopped_with == 2.5
    last = FakeClient.instances[-1]
    assert last.casts[-1]["args"]["service"]["status"] == "stopped"
    assert last.closed
    assert service.record.status == "stopped"
    service.stop()  # twice is harmless
    assert events.count("server stopped") == 1


def test_request_stop_wakes_wait_and_the_timers():
    service, events, _ = make_service(report_interval=3600)
    service.start()
    waiter = threading.Thread(target=service.wait)
    waiter.start()
    service.request_stop()
    waiter.join(2)
    assert not waiter.is_alive()
    begin = time.monotonic()
    service.stop()
    assert time.monotonic() - begin < 2


def test_reload_applies_intervals_at_once_and_names_what_needs_a_restart(started, caplog):
    service, _, _ = started(report_interval=3600)
    before = len(FakeClient.instances[-1].casts)
    with caplog.at_level(logging.INFO, logger="manager_cli.service"):
        service.reload(
            settings(
                report_interval=0.05,
                run_external_periodic_tasks=False,
                transport_url="rabbit://elsewhere//",
            )
        )
    assert wait_for(lambda: len(FakeClient.instances[-1].casts) >= before + 3)
    assert service.manager.run_external_periodic_tasks is False
    assert "configuration reloaded" in caplog.text
    assert "need a restart to apply: transport_url" in caplog.text


# ---------------------------------------------------------------------------
# The control endpoint


def test_control_rows_name_their_host_and_service(started):
    service, _, _ = started()
    control = ControlEndpoint(service)
    tasks = control.list_periodic_tasks({})
    assert [t["name"] for t in tasks] == ["tick", "rare"]
    assert all(t["host"] == HOST and t["service"] == "unit" for t in tasks)
    runs = control.run_periodic_task({}, ["tick"])
    assert [(r["host"], r["task"], r["outcome"], r["on_demand"]) for r in runs] == [
        (HOST, "tick", "ok", True)
    ]
    assert [r["task"] for r in control.run_periodic_task({})] == ["tick", "rare"]
    hooks = control.list_hooks({})
    assert [h["hook"] for h in hooks] == ["init_host", "pre_start_hook", "post_start_hook"]
    assert control.get_capabilities({}) == {"host": HOST, "service": "unit", "capabilities": None}


def test_control_unknown_task_is_unknown_name_error(started):
    service, _, _ = started()
    with pytest.raises(UnknownNameError, match="nosuch"):
        ControlEndpoint(service).run_periodic_task({}, "nosuch")


def test_on_demand_runs_do_not_shift_the_schedule(started):
    service, _, _ = started()
    control = ControlEndpoint(service)
    due = {t["name"]: t["next_due_in"] for t in control.list_periodic_tasks({})}["rare"]
    control.run_periodic_task({}, "rare")
    again = {t["name"]: t["next_due_in"] for t in control.list_periodic_tasks({})}["rare"]
    assert again == pytest.approx(due, abs=1)


class _CountingClient:
    """A client whose topic queues have ``consumers`` consumers; records the casts."""

    def __init__(self, consumers: int) -> None:
        self.consumers = consumers
        self.casts: list[tuple[str, str]] = []
        self.asked: list[str] = []

    def queue_consumers(self, queue: str) -> int:
        self.asked.append(queue)
        return self.consumers

    def cast(self, context, method, *, topic, fanout, args):
        self.casts.append((topic, method))

    def close(self) -> None:
        pass


def test_capabilities_are_not_published_where_a_real_scheduler_consumes(caplog):
    from manager_cli.service import BrokerPublisher

    client = _CountingClient(consumers=1)  # nova-scheduler consumes "scheduler"
    publisher = BrokerPublisher(lambda: client)
    args = {"service_name": "hostinfo", "host": "h1", "capabilities": [{}]}
    assert publisher.fanout_cast({}, "scheduler", "update_service_capabilities", args) is False
    assert publisher.fanout_cast({}, "scheduler", "update_service_capabilities", args) is False
    assert client.casts == []
    assert client.asked == ["scheduler"]  # asked once, then remembered
    warnings = [r for r in caplog.records if "not publishing capabilities" in r.getMessage()]
    assert len(warnings) == 1 and "scheduler_topic" in warnings[0].getMessage()
    # Other casts are not concerned, and a topic nobody else consumes gets the publication.
    assert publisher.fanout_cast({}, "managerctl", "report_service_state", {}) is True
    quiet = _CountingClient(consumers=0)
    publisher = BrokerPublisher(lambda: quiet)
    assert publisher.fanout_cast({}, "mine", "update_service_capabilities", args) is True
    assert quiet.casts == [("mine", "update_service_capabilities")]

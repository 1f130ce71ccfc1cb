"""Service metrics without a broker: the observers, the dispatcher wrapper, the address."""

from __future__ import annotations

import subprocess
import sys

import pytest

from manager_cli.errors import BadInputError
from manager_cli.manager import Manager
from manager_cli.metrics import ServiceMetrics, parse_listen_address
from manager_cli.periodic import TaskRun
from manager_cli.rpc import wire
from manager_cli.rpc.dispatcher import RPCDispatcher


def _value(metrics: ServiceMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (":9464", ("0.0.0.0", 9464)),
        ("9464", ("0.0.0.0", 9464)),
        ("[::1]:0", ("::1", 0)),
        ("metrics.example.org:80", ("metrics.example.org", 80)),
    ],
)
def test_listen_addresses(text, expected):
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize("text", ["", "host", "host:", "h:99999", "[::1]", "h:-1"])
def test_bad_listen_addresses(text):
    with pytest.raises(BadInputError, match="is not HOST:PORT"):
        parse_listen_address(text)


class Endpoint:
    def ok(self, context):
        return 1

    def boom(self, context):
        raise RuntimeError("no")

    def refuse(self, context):
        from manager_cli.errors import BadInputError

        raise BadInputError("bad task")


def test_dispatcher_wrapper_counts_outcomes_and_bounds_method_labels():
    metrics = ServiceMetrics()
    dispatcher = metrics.instrument(RPCDispatcher([Endpoint()]))
    assert dispatcher.dispatch(wire.Request("ok", {})) == 1
    for method in ("boom", "refuse", "no_such_1", "no_such_2"):
        with pytest.raises(Exception):  # noqa: B017 - each raises its own class
            dispatcher.dispatch(wire.Request(method, {}))
    with pytest.raises(Exception):  # noqa: B017
        dispatcher.dispatch(wire.Request("ok", {}, version="9.0"))
    counts = {
        (s.labels["method"], s.labels["outcome"]): s.value
        for family in metrics.registry.collect()
        if family.name == "managerctl_rpc_requests"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert counts == {
        ("ok", "ok"): 1,
        ("boom", "error"): 1,
        ("refuse", "bad_input"): 1,
        ("(unknown)", "no_such_method"): 2,
        ("(unknown)", "unsupported_version"): 1,
    }
    assert _value(metrics, "managerctl_rpc_requests_in_flight") == 0
    assert _value(metrics, "managerctl_rpc_request_duration_seconds_count", method="ok") == 1
    assert dispatcher.endpoints is not None  # the rest of the dispatcher shows through


def test_task_runs_server_events_and_casts():
    metrics = ServiceMetrics()
    metrics.task_run(TaskRun("t", 1000.0, 0.5, "ok"))
    metrics.task_run(TaskRun("t", 2000.0, 0.25, "failed", "boom"))
    metrics.task_run(TaskRun("t", 3000.0, 0.0, "skipped", reason="external"))
    assert _value(metrics, "managerctl_periodic_task_runs_total", task="t", outcome="ok") == 1
    assert _value(metrics, "managerctl_periodic_task_failures_total", task="t") == 1
    assert _value(metrics, "managerctl_periodic_task_duration_seconds_count", task="t") == 2
    assert (
        _value(metrics, "managerctl_periodic_task_last_success_timestamp_seconds", task="t")
        == 1000.5
    )
    for event in ("connected", "disconnected", "reconnected", "poison", "duplicate", "other"):
        metrics.server_event(event)
    assert _value(metrics, "managerctl_broker_connected") == 1
    assert _value(metrics, "managerctl_broker_reconnects_total") == 1
    assert _value(metrics, "managerctl_broker_connection_losses_total") == 1
    assert _value(metrics, "managerctl_rpc_poison_messages_total") == 1
    assert _value(metrics, "managerctl_rpc_rejected_messages_total", reason="duplicate") == 1
    assert _value(metrics, "managerctl_rpc_rejected_messages_total", reason="too_large") == 0
    metrics.server_event("closed")
    assert _value(metrics, "managerctl_broker_connected") == 0
    metrics.cast_sent("update_service_capabilities", True)
    metrics.cast_sent("update_service_capabilities", False)
    metrics.cast_sent("report_service_state", True)
    assert _value(metrics, "managerctl_capabilities_published_total") == 1
    assert (
        _value(
            metrics,
            "managerctl_published_messages_total",
            method="update_service_capabilities",
            outcome="failed",
        )
        == 1
    )


def test_the_observer_slot_is_not_an_rpc_method():
    manager = Manager(host="h", service_name="s")
    manager.on_task_run = ServiceMetrics().task_run
    assert "on_task_run" in manager.rpc_hidden_methods
    dispatcher = manager.create_rpc_dispatcher()
    with pytest.raises(Exception, match="does not support RPC method on_task_run"):
        dispatcher.dispatch(wire.Request("on_task_run", {"run": None}))


def test_metrics_are_served_over_http_and_closed():
    import urllib.request

    metrics = ServiceMetrics()
    host, port = metrics.serve("127.0.0.1", 0)
    metrics.server_event("connected")
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert "managerctl_broker_connected 1.0" in text
    finally:
        metrics.close()
    other = ServiceMetrics()
    with pytest.raises(Exception, match="cannot expose metrics"):
        busy = ServiceMetrics()
        _, taken = busy.serve("127.0.0.1", 0)
        try:
            other.serve("127.0.0.1", taken)
        finally:
            busy.close()


def test_a_service_without_metrics_never_imports_prometheus_client():
    code = (
        "import sys; from manager_cli.service import Service; from manager_cli.rpc import server;"
        "from manager_cli.cli import serve;"
        "print('prometheus_client' in sys.modules, 'manager_cli.metrics' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]

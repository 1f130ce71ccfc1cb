"""Connections that break under a running call: cut, blackholed or slowed by the fault proxy.

Client side: a ``managerctl call`` goes through the proxy to a service connected directly.
Service side: a ``managerctl serve`` goes through the proxy, and clients connect directly, so
a cut hits only the service, which must reconnect, consume again, run no acknowledged request
twice and lose none of the requests the broker still holds.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from faults_support import (
    COUNTER_MODULE,
    FAST_RECONNECT,
    Served,
    delete_topology,
    managerctl,
    serve,
    start_managerctl,
    unique,
    wait_for,
)

from manager_cli.errors import CallTimeoutError
from manager_cli.rpc.client import RPCClient
from manager_cli.rpc.transport import RabbitOptions

# What the test process lets a command's own start-up and clean-up take beyond a bound.
SLACK = 2.0


@pytest.fixture
def served(broker_url, control_exchange, tmp_path):
    """``served(name, url=..., env=...)``: managerctl serve subprocesses, stopped after the test,
    with their queues deleted."""
    started: list[Served] = []

    def start(name: str = "hostinfo", *, url: str | None = None, **kwargs) -> Served:
        service = serve(
            name, url=url or broker_url, exchange=control_exchange, log_dir=tmp_path, **kwargs
        )
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
    delete_topology(broker_url, queues=[q for service in started for q in service.queues])


# ---------------------------------------------------------------------------
# Client side


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_a_cut_under_a_waiting_call_exits_69_at_once(
    reset, served, rabbitmq, broker_url, fault_proxy
):
    """Exit 69 (unavailable), not 75: the client cannot know whether the request ran, and its
    exclusive reply queue died with the connection, so no reply can come; it says so at once
    ("the connection to the broker was lost while sleep was waiting ...; it may or may not
    have run") instead of waiting out its --timeout."""
    service = served()
    proxy = fault_proxy(rabbitmq.port)
    env = {**service.env, "MANAGERCTL_TRANSPORT_URL": proxy.url(broker_url)}
    started = time.monotonic()
    call = start_managerctl(
        "call",
        service.host,
        "sleep",
        "seconds=3",
        "--topic",
        service.topic,
        "--timeout",
        "20",
        env=env,
    )
    try:
        # The call waits for its reply once the service has started sleeping.
        assert wait_for(lambda: proxy.connections >= 1, timeout=10)
        time.sleep(1.0)
        assert call.poll() is None, call.communicate()
        cut_at = time.monotonic()
        assert proxy.cut(reset=reset) >= 1
        out, err = call.communicate(timeout=20)
    finally:
        if call.poll() is None:
            call.kill()
            call.communicate()
    assert call.returncode == 69, (out, err)
    assert time.monotonic() - cut_at < SLACK, err
    assert time.monotonic() - started < 20
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "lost while sleep was waiting" in lines[0] and "may or may not have run" in lines[0]
    # The service did not notice: it answers the next call.
    assert service.run("call", service.host, "echo", "value=7").stdout.strip() == "7"


def test_a_blackhole_under_a_waiting_call_raises_the_timeout_on_time(
    served, rabbitmq, broker_url, control_exchange, fault_proxy
):
    """In the library: the call gives up at its timeout (CallTimeoutError, exit 75 in the CLI)
    even though the connection went silent rather than closed."""
    service = served()
    proxy = fault_proxy(rabbitmq.port)
    options = RabbitOptions(control_exchange=control_exchange)
    client = RPCClient(proxy.url(broker_url), options=options, timeout=2, exclusive=True)
    try:
        threading.Timer(0.5, proxy.blackhole).start()
        started = time.monotonic()
        with pytest.raises(CallTimeoutError, match="within 2s"):
            client.call({}, "sleep", topic=service.topic, server=service.host, args={"seconds": 3})
        assert 2.0 <= time.monotonic() - started < 2.0 + SLACK
    finally:
        proxy.cut()  # close() would wait on the silent connection (see the next test)
        client.close()


def test_a_blackhole_under_a_waiting_call_never_holds_the_cli_past_its_timeout(
    served, rabbitmq, broker_url, fault_proxy
):
    service = served()
    proxy = fault_proxy(rabbitmq.port)
    env = {**service.env, "MANAGERCTL_TRANSPORT_URL": proxy.url(broker_url)}
    threading.Timer(1.0, proxy.blackhole).start()
    run = managerctl(
        "call",
        service.host,
        "sleep",
        "seconds=3",
        "--topic",
        service.topic,
        "--timeout",
        "2",
        env=env,
        timeout=2 + 2 * SLACK,  # killed there: a hang shows as -9 instead of costing minutes
    )
    assert run.returncode == 75, run
    assert run.elapsed < 2 + SLACK, run


def test_a_slow_link_is_not_a_fault_but_the_timeout_still_bounds_the_wait(
    served, rabbitmq, broker_url, fault_proxy
):
    """0.1 s each way on every chunk: calls still work, and a --timeout shorter than the round
    trip still ends the wait with exit 75 (the rest of the elapsed time is the handshake)."""
    service = served()
    proxy = fault_proxy(rabbitmq.port)
    proxy.delay(0.1)
    env = {**service.env, "MANAGERCTL_TRANSPORT_URL": proxy.url(broker_url)}
    ok = managerctl("call", service.host, "echo", "value=slow", "--topic", service.topic, env=env)
    assert ok.returncode == 0 and ok.stdout.strip() == '"slow"', ok
    late = managerctl(
        "call", service.host, "echo", "value=1", "--topic", service.topic, "--timeout", "0.1",
        env=env,
    )  # fmt: skip
    assert late.returncode == 75, late
    assert "within 0.1s" in late.stderr
    assert late.elapsed < ok.elapsed + SLACK, (ok, late)


def test_a_long_lived_client_reconnects_after_a_cut(
    served, rabbitmq, broker_url, control_exchange, fault_proxy
):
    """A client kept open (as a service's publisher is) works again right after a cut: at
    once (the publish finds the dead socket) and after an idle second (the idle probe does)."""
    service = served()
    proxy = fault_proxy(rabbitmq.port)
    options = RabbitOptions(control_exchange=control_exchange)
    with RPCClient(proxy.url(broker_url), options=options, timeout=10) as client:
        target = {"topic": service.topic, "server": service.host}
        assert client.call({}, "echo", args={"value": 1}, **target) == 1
        proxy.cut()
        assert client.call({}, "echo", args={"value": 2}, **target) == 2
        proxy.cut(reset=True)
        time.sleep(1.5)
        assert client.call({}, "echo", args={"value": 3}, **target) == 3
        assert proxy.accepted == 3


# ---------------------------------------------------------------------------
# Service side


def test_a_service_survives_cuts_without_repeating_or_losing_work(
    served, rabbitmq, broker_url, control_exchange, fault_proxy, tmp_path
):
    (tmp_path / "faults_counter_mod.py").write_text(COUNTER_MODULE)
    topic = unique("counter")
    count_file = tmp_path / "count"
    count_file.write_text("")
    started_file = Path(f"{count_file}.started")
    started_file.write_text("")
    proxy = fault_proxy(rabbitmq.port)
    service = served(
        "faults_counter_mod:Counter",
        url=proxy.url(broker_url) + FAST_RECONNECT,
        topic=topic,
        env={"COUNTER_FILE": str(count_file), "COUNTER_TOPIC": topic},
    )
    target = {"topic": topic, "server": service.host}
    tokens = [f"t{n}" for n in range(40)]
    options = RabbitOptions(control_exchange=control_exchange)
    with RPCClient(broker_url, options=options, timeout=30) as client:
        # A call that is running (acked) when the first cut comes: its reply goes out later.
        running = client.call_async(
            {}, "increment", args={"token": "running", "delay": 1.5}, **target
        )
        assert wait_for(lambda: "running" in started_file.read_text().split(), timeout=10)
        # Eight run at once (acked), eight more wait unacked in the service, the rest queue.
        for token in tokens:
            client.cast({}, "increment", args={"token": token, "delay": 0.4}, **target)
        queued = client.call_async({}, "increment", args={"token": "queued"}, **target)
        log_mark = len(service.log())
        for reset in (False, True, False):
            time.sleep(0.6)
            assert proxy.cut(reset=reset) == 1, service.log()
            assert service.wait_for_log("reconnected to the broker", after=log_mark), service.log()
            log_mark = len(service.log())
        assert running.result() == "running"
        assert queued.result() == "queued"
        assert wait_for(lambda: len(count_file.read_text().split()) >= len(tokens) + 2, 20)
        time.sleep(0.5)  # a repeat would show up now
        assert client.call({}, "increment", args={"token": "after"}, **target) == "after"

    expected = sorted([*tokens, "running", "queued", "after"])
    assert sorted(count_file.read_text().split()) == expected  # none lost, none twice
    assert sorted(started_file.read_text().split()) == expected  # none started twice
    assert proxy.accepted == 4  # the first connection and one per cut: no reconnect storm
    queues = {q["name"]: q for q in rabbitmq.list_queues(("name", "messages", "consumers"))}
    for name in (topic, f"{topic}.{service.host}"):
        assert (queues[name]["messages"], queues[name]["consumers"]) == (0, 1), queues[name]
    fanout = [q for name, q in queues.items() if name.startswith(f"{topic}_fanout_")]
    assert [q["consumers"] for q in fanout] == [1]
    log = service.log()
    assert log.count("lost the connection") == 3 and "Traceback" not in log, log
    assert service.stop() == 0


def test_a_service_behind_a_silent_link_reconnects_once_it_heals(
    served, rabbitmq, broker_url, fault_proxy
):
    """A network that swallows everything (no FIN, no RST): the service finds out by the AMQP
    heartbeat (2 s here), keeps trying, and consumes again once the link heals."""
    proxy = fault_proxy(rabbitmq.port)
    url = proxy.url(broker_url) + FAST_RECONNECT + "&heartbeat_timeout_threshold=2"
    service = served(url=url)
    direct = {**service.env, "MANAGERCTL_TRANSPORT_URL": broker_url}
    assert managerctl("ping", service.host, "--topic", service.topic, env=direct).returncode == 0
    log_mark = len(service.log())
    proxy.blackhole()
    assert service.wait_for_log("lost the connection", timeout=15, after=log_mark), service.log()
    time.sleep(3)  # reconnect attempts go into the blackhole meanwhile
    proxy.heal()
    assert service.wait_for_log("reconnected to the broker", after=log_mark), service.log()
    ping = managerctl("ping", service.host, "--topic", service.topic, env=direct)
    assert ping.returncode == 0, ping
    assert service.proc.poll() is None

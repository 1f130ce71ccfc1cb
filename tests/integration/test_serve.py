"""``managerctl serve`` as a subprocess on a real broker, driven by the console script.

Every service here runs on a topic of its own, so tests (and other modules sharing the session
broker) never see each other's services. Services are stopped, and their queues deleted, by the
``serve`` fixture's finalizer whatever the outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rigs.cli import clean_env, managerctl, unique, wait_for

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")
# Fast reconnection for the broker-restart test: oslo's defaults wait up to 30 s between tries.
FAST_RECONNECT = "?rabbit_retry_interval=0.5&rabbit_retry_backoff=0.5&rabbit_interval_max=1"

COUNTER_MODULE = """\
import os
import time

from manager_cli.manager import Manager
from manager_cli.periodic import periodic_task

COUNT_FILE = os.environ["COUNTER_FILE"]


class Counter(Manager):
    \"\"\"Appends one line per increment, so a test can tell a repeat from a loss.\"\"\"

    TOPIC = os.environ["COUNTER_TOPIC"]

    def increment(self, context, token, delay=0.0):
        with open(COUNT_FILE + ".started", "a") as started:
            started.write(token + "\\n")
        time.sleep(delay)
        with open(COUNT_FILE, "a") as counted:
            counted.write(token + "\\n")

    def count(self, context):
        with open(COUNT_FILE) as counted:
            return len(counted.read().split())

    @periodic_task(spacing=0.5, run_immediately=True)
    def tick(self, context):
        with open(COUNT_FILE + ".ticks", "a") as ticks:
            ticks.write(f"{time.time()}\\n")
"""

FLAKY_MODULE = """\
import os

from manager_cli.manager import Manager
from manager_cli.periodic import periodic_task


class Flaky(Manager):
    \"\"\"One task that works and one that raises, every second.\"\"\"

    TOPIC = os.environ["FLAKY_TOPIC"]

    @periodic_task(spacing=1, run_immediately=True)
    def works(self, context):
        pass

    @periodic_task(spacing=1, run_immediately=True)
    def explodes(self, context):
        raise RuntimeError("disk on fire")
"""


class Served:
    """One ``managerctl serve`` subprocess and its log."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, host: str, topic: str, env: dict):
        self.proc = proc
        self.log_path = log_path
        self.host = host
        self.topic = topic
        self.env = env

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 15.0) -> bool:
        return bool(wait_for(lambda: text in self.log() or self.proc.poll() is not None, timeout))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A managerctl command aimed at this service's topic."""
        return managerctl(*args, "--topic", self.topic, env=self.env, timeout=timeout)


@pytest.fixture
def serve(rabbitmq, broker_url, tmp_path) -> Iterator[Callable[..., Served]]:
    """``serve(name, host, topic, url=, env=, args=)``: a started service (consumers ready)."""
    started: list[Served] = []

    def start(
        name: str = "hostinfo",
        host: str | None = None,
        topic: str | None = None,
        *,
        url: str | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        topic_option: bool = True,
    ) -> Served:
        host = host or unique("h")
        topic = topic or unique("serve")
        full_env = clean_env(
            MANAGERCTL_TRANSPORT_URL=url or broker_url,
            XDG_STATE_HOME=str(tmp_path / "state"),
            PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
            **(env or {}),
        )
        log_path = tmp_path / f"serve-{host}.log"
        command = [MANAGERCTL, "serve", name, "--host", host, *args]
        if topic_option:
            command += ["--topic", topic]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        served = Served(proc, log_path, host, topic, full_env)
        started.append(served)
        if not served.wait_for_log("consuming ") or proc.poll() is not None:
            pytest.fail(f"managerctl serve {name} did not start:\n{served.log()}")
        return served

    yield start
    for served in started:
        with contextlib.suppress(Exception):
            served.stop(timeout=20)
    if started and rabbitmq.is_running():
        delete_queues(
            broker_url,
            {q for served in started for q in (served.topic, f"{served.topic}.{served.host}")},
        )


def delete_queues(url: str, names: set[str]) -> None:
    """Delete queues over AMQP (rabbitmqctl costs a second or two per call)."""
    import pika

    from manager_cli.rpc.transport import parse_transport_url

    host = parse_transport_url(url).hosts[0]
    params = pika.ConnectionParameters(
        host.hostname, host.port, credentials=pika.PlainCredentials(host.username, host.password)
    )
    with contextlib.suppress(Exception), contextlib.closing(pika.BlockingConnection(params)) as c:
        for name in names:
            channel = c.channel()
            with contextlib.suppress(Exception):
                channel.queue_delete(name)


def as_json(result: subprocess.CompletedProcess) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------
# A running hostinfo service


def test_serve_answers_ping_call_and_the_control_endpoint(serve):
    service = serve("hostinfo")
    ping = as_json(service.run("ping", service.host, "-f", "json"))
    assert ping[0]["host"] == service.host and ping[0]["service"] == "hostinfo"
    facts = as_json(service.run("call", service.host, "get_facts"))
    assert facts["cpu_count"] >= 1

    tasks = as_json(
        service.run("periodic", "list", "hostinfo", "--host", service.host, "-f", "json")
    )
    by_name = {task["name"]: task for task in tasks}
    assert by_name["gather_cpu"]["last_outcome"] == "ok"  # run_immediately: ran at start
    assert by_name["gather_cpu"]["last_run"].endswith("Z")
    assert by_name["publish_service_capabilities"]["last_run"] is None
    assert 0 < by_name["gather_cpu"]["next_due_in"] <= 10

    runs = as_json(
        service.run(
            "run-periodic", "hostinfo", "--host", service.host, "--task", "gather_cpu", "-f", "json"
        )
    )
    assert [(run["task"], run["outcome"]) for run in runs] == [("gather_cpu", "ok")]

    unknown = service.run("run-periodic", "hostinfo", "--host", service.host, "--task", "nosuch")
    assert unknown.returncode == 2
    assert "unknown periodic task 'nosuch'" in unknown.stderr

    # The control namespace exists only for those who ask for it.
    hidden = service.run("call", service.host, "list_periodic_tasks")
    assert hidden.returncode == 1 and "NoSuchMethod" in hidden.stderr


def test_start_order_hooks_and_log_lines(serve):
    service = serve("hostinfo")
    record = as_json(service.run("call", service.host, "get_service", "--namespace", "managerctl"))
    assert record["host"] == service.host and record["topic"] == service.topic
    assert record["pid"] == service.proc.pid and record["status"] == "running"
    hooks = record["hooks"]
    assert [(h["hook"], h["outcome"]) for h in hooks] == [
        ("init_host", "ok"),
        ("pre_start_hook", "ok"),
        ("post_start_hook", "ok"),
    ]
    assert hooks[0]["started"] <= record["started"] <= hooks[1]["started"] <= hooks[2]["started"]
    log = service.log()
    steps = [
        "Starting hostinfo node",
        "init_host done",
        "service record of hostinfo",
        "pre_start_hook done",
        f"consuming {service.topic}, {service.topic}.{service.host}, {service.topic}_fanout_",
        "post_start_hook done",
        "periodic tasks start in 0s",
    ]
    positions = [log.find(step) for step in steps]
    assert -1 not in positions, log
    assert positions == sorted(positions), log
    # The OpenStack log shape: date time.ms pid LEVEL logger [-] message
    first = log.splitlines()[0].split()
    assert first[2] == str(service.proc.pid) and first[3] == "INFO" and first[5] == "[-]"
    assert service.stop() == 0


def test_sighup_rereads_the_config_files(serve, tmp_path):
    config = tmp_path / "serve.conf"
    config.write_text("[DEFAULT]\nreport_interval = 3600\n")
    service = serve("hostinfo", env={"MANAGERCTL_CONFIG_FILE": str(config)})
    config.write_text("[DEFAULT]\nreport_interval = 5\nperiodic_interval_max = 2\n")
    service.proc.send_signal(signal.SIGHUP)
    assert service.wait_for_log("configuration reloaded from " + str(config))
    assert service.proc.poll() is None
    assert service.run("ping", service.host).returncode == 0
    assert service.stop() == 0


# ---------------------------------------------------------------------------
# Stopping


def test_sigterm_lets_the_running_call_finish_then_exits_0(serve):
    from rigs.rabbitmq import free_port
    from tap_support import scrape

    port = free_port()
    service = serve(
        "hostinfo", args=("--graceful-timeout", "10", "--metrics-address", f"127.0.0.1:{port}")
    )
    slow = subprocess.Popen(
        [MANAGERCTL, "call", service.host, "sleep", "seconds=3", "--topic", service.topic],
        env=service.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Signal once the service is running the call (its in-flight gauge says so), however
        # long the call's own start-up took on a loaded machine.
        def running() -> bool:
            try:
                return scrape(port).get("managerctl_rpc_requests_in_flight", 0.0) >= 1
            except OSError:
                return False

        assert wait_for(running, timeout=20, step=0.05), service.log()
        signalled = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        out, err = slow.communicate(timeout=20)
        assert slow.returncode == 0, err
        assert out.strip() == "3.0"
        assert service.proc.wait(timeout=20) == 0
        assert time.monotonic() - signalled >= 0.5  # it waited for the call
    finally:
        if slow.poll() is None:
            slow.kill()
    log = service.log()
    assert "Caught SIGTERM, stopping" in log
    assert log.index("Caught SIGTERM") < log.index("stopped hostinfo on " + service.host)
    # Consumers are gone: nothing answers the host any more.
    assert service.run("ping", service.host, "--timeout", "2").returncode == 69


def test_sigint_stops_gracefully_too(serve):
    service = serve("hostinfo")
    assert service.stop(signal.SIGINT) == 0
    assert "Caught SIGINT, stopping" in service.log()


# ---------------------------------------------------------------------------
# Periodic tasks on a running service


def test_a_failing_periodic_task_is_logged_and_shown_and_the_service_goes_on(serve, tmp_path):
    (tmp_path / "flaky_serve_mod.py").write_text(FLAKY_MODULE)
    topic = unique("flaky")
    service = serve("flaky_serve_mod:Flaky", topic=topic, env={"FLAKY_TOPIC": topic})

    def failed_row() -> dict | None:
        tasks = as_json(
            service.run(
                "periodic", "list", "flaky_serve_mod:Flaky", "--host", service.host, "-f", "json"
            )
        )
        rows = {task["name"]: task for task in tasks}
        return rows["explodes"] if rows["explodes"]["last_outcome"] == "failed" else None

    row = wait_for(failed_row, timeout=10, step=0.3)
    assert row and row["last_error"] == "RuntimeError: disk on fire"
    assert service.wait_for_log("Error during Flaky.explodes")
    assert "RuntimeError: disk on fire" in service.log()
    # It keeps running and answering, and keeps running the tasks.
    assert service.run("ping", service.host).returncode == 0
    assert wait_for(lambda: service.log().count("Error during Flaky.explodes") >= 2, timeout=5)

    run = service.run("run-periodic", "flaky_serve_mod:Flaky", "--host", service.host, "-f", "json")
    assert run.returncode == 1
    outcomes = {row["task"]: (row["outcome"], row["error"]) for row in json.loads(run.stdout)}
    assert outcomes == {"works": ("ok", None), "explodes": ("failed", "RuntimeError: disk on fire")}
    assert "periodic task explodes failed" in run.stderr
    assert service.proc.poll() is None
    assert service.stop() == 0


def test_all_hosts_gathers_every_service_of_the_topic(serve):
    topic = unique("all")
    one = serve("hostinfo", host=unique("a1"), topic=topic)
    two = serve("hostinfo", host=unique("a2"), topic=topic)
    both = f"{one.host},{two.host}"

    tasks = as_json(
        one.run("periodic", "list", "hostinfo", "--all-hosts", "--expect-hosts", both, "-f", "json")
    )
    assert {task["host"] for task in tasks} == {one.host, two.host}
    table = one.run("periodic", "list", "hostinfo", "--all-hosts", "--expect", "2")
    assert table.returncode == 0 and table.stdout.split()[0] == "host"

    runs = as_json(
        one.run(
            "run-periodic",
            "hostinfo",
            "--all-hosts",
            "--expect",
            "2",
            "--task",
            "gather_cpu",
            "-f",
            "json",
        )
    )
    assert sorted((run["host"], run["task"], run["outcome"]) for run in runs) == sorted(
        [(one.host, "gather_cpu", "ok"), (two.host, "gather_cpu", "ok")]
    )

    partial = one.run(
        "periodic",
        "list",
        "hostinfo",
        "--all-hosts",
        "--expect-hosts",
        f"{one.host},ghost",
        "--timeout",
        "1",
        "-f",
        "json",
    )
    assert partial.returncode == 3, partial.stderr
    assert "ghost (missing)" in partial.stderr

    fewer = one.run("run-periodic", "hostinfo", "--all-hosts", "--expect", "3", "--timeout", "1")
    assert fewer.returncode == 3 and "2 of 3" in fewer.stderr

    nobody = managerctl(
        "periodic",
        "list",
        "hostinfo",
        "--all-hosts",
        "--topic",
        unique("nobody"),
        "--timeout",
        "1",
        env=one.env,
    )
    assert nobody.returncode == 69


# ---------------------------------------------------------------------------
# The broker goes away under a running service


def report_listener(url: str, topic: str = "managerctl"):
    """A plain pika queue bound to ``<topic>_fanout``: what services report, as they send it."""
    import pika

    from manager_cli.rpc import wire
    from manager_cli.rpc.transport import parse_transport_url

    host = parse_transport_url(url).hosts[0]
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(
            host.hostname, host.port, credentials=pika.PlainCredentials("guest", "guest")
        )
    )
    channel = connection.channel()
    channel.exchange_declare(f"{topic}_fanout", "fanout", durable=False, auto_delete=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, f"{topic}_fanout")
    messages: list[dict] = []
    channel.basic_consume(
        queue, lambda ch, m, p, body: messages.append(wire.decode_envelope(body)), auto_ack=True
    )

    def collect(until: Callable[[list[dict]], bool], timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(messages):
            connection.process_data_events(time_limit=0.1)
        return messages

    return connection, collect


def reports_from(host: str) -> Callable[[list[dict]], bool]:
    return lambda messages: any(
        m.get("method") == "report_service_state" and m["args"]["service"]["host"] == host
        for m in messages
    )


def test_a_broker_restart_loses_no_acknowledged_work_and_repeats_none(
    serve, rabbitmq, broker_url, tmp_path
):
    from manager_cli.rpc.client import RPCClient

    (tmp_path / "counter_serve_mod.py").write_text(COUNTER_MODULE)
    topic = unique("counter")
    count_file = tmp_path / "count"
    count_file.write_text("")
    url = broker_url.rstrip("/") + "/" + FAST_RECONNECT
    service = serve(
        "counter_serve_mod:Counter",
        topic=topic,
        url=url,
        env={
            "COUNTER_FILE": str(count_file),
            "COUNTER_TOPIC": topic,
            "MANAGERCTL_REPORT_INTERVAL": "1",
        },
    )
    connection, collect = report_listener(broker_url)
    try:
        assert reports_from(service.host)(collect(reports_from(service.host), timeout=5))
    finally:
        connection.close()

    tokens = [f"t{n}" for n in range(30)]
    with RPCClient(broker_url, timeout=10) as client:
        for token in tokens:
            client.cast({}, "increment", topic=topic, server=service.host, args={"token": token})
        assert wait_for(lambda: len(count_file.read_text().split()) == len(tokens))
        # One more, acked and still running when the broker goes away.
        client.cast(
            {}, "increment", topic=topic, server=service.host, args={"token": "slow", "delay": 3}
        )
    started_file = Path(str(count_file) + ".started")
    assert wait_for(lambda: "slow" in started_file.read_text().split())

    cut = time.time()
    rabbitmq.restart()
    back = time.time()
    assert service.proc.poll() is None, service.log()

    # The same process answers again once it has reconnected.
    ping = wait_for(
        lambda: service.run("ping", service.host, "--timeout", "2").returncode == 0,
        timeout=30,
        step=0.5,
    )
    assert ping, service.log()
    assert as_json(service.run("call", service.host, "count")) == len(tokens) + 1
    counted = count_file.read_text().split()
    assert sorted(counted) == sorted([*tokens, "slow"])  # each exactly once
    assert started_file.read_text().split().count("slow") == 1

    # Work sent after the restart is done once as well.
    assert service.run("call", service.host, "increment", "token=after", "--cast").returncode == 0
    assert wait_for(lambda: "after" in count_file.read_text().split())
    assert count_file.read_text().split().count("after") == 1

    # Periodic tasks kept running while the broker was away.
    ticks = [float(t) for t in Path(str(count_file) + ".ticks").read_text().split()]
    assert any(cut + 1 < tick < back - 1 for tick in ticks), (cut, back)

    # State reports came back on a new connection, and each failure was one log line.
    connection, collect = report_listener(broker_url)
    try:
        assert reports_from(service.host)(collect(reports_from(service.host), timeout=5))
    finally:
        connection.close()
    log = service.log()
    assert "lost the connection" in log and "reconnected to the broker" in log
    assert "cannot send report_service_state to managerctl" in log
    assert "Traceback" not in log
    assert service.stop() == 0


# ---------------------------------------------------------------------------
# Heartbeats into the collector's store, and services list


def test_services_list_shows_up_and_down_from_the_collectors_store(serve, tmp_path):
    store = f"sqlite:///{tmp_path / 'store.sqlite'}"
    env = {"MANAGERCTL_CAPABILITIES_STORE": store, "MANAGERCTL_REPORT_INTERVAL": "1"}
    # managerctl's own topic, so the fixture deletes the queues the collector leaves (as oslo's do)
    serve("collector", topic="managerctl", env=env, topic_option=False)
    service = serve("hostinfo", env=env)

    columns = ("service", "host", "topic", "state", "age_s", "version", "pid", "status")

    def row() -> dict | None:
        result = managerctl(
            "services",
            "list",
            "--store-url",
            store,
            "-f",
            "json",
            *(arg for column in columns for arg in ("-c", column)),
            env=service.env,
        )
        rows = [r for r in as_json(result) if r["host"] == service.host]
        return rows[0] if rows else None

    seen = wait_for(row, timeout=10, step=0.3)
    assert seen, "no state report reached the collector's store"
    assert seen["service"] == "hostinfo" and seen["topic"] == service.topic
    assert seen["state"] == "up" and seen["pid"] == service.proc.pid
    assert seen["age_s"] <= 5 and seen["version"]

    table = managerctl("services", "list", "--store-url", store, env=service.env)
    assert table.stdout.split()[:8] == [
        "service",
        "host",
        "topic",
        "state",
        "updated_at",
        "age",  # age_s reads as a relative age in a table (12s); json keeps seconds
        "version",
        "pid",
    ]
    stale = managerctl(
        "services",
        "list",
        "--store-url",
        store,
        "--host",
        service.host,
        "-f",
        "json",
        env={**service.env, "MANAGERCTL_SERVICE_DOWN_TIME": "0"},
    )
    assert [r["state"] for r in as_json(stale)] == ["down"]

    assert service.stop() == 0
    stopped = wait_for(lambda: (r := row()) and r["state"] == "down" and r, timeout=5, step=0.3)
    assert stopped and stopped["status"] == "stopped"


def test_services_list_without_a_store_is_unavailable(tmp_path):
    result = managerctl(
        "services",
        "list",
        "--store-url",
        f"sqlite:///{tmp_path / 'none.sqlite'}",
        env=clean_env(XDG_STATE_HOME=str(tmp_path)),
    )
    assert result.returncode == 69
    assert "no capabilities store" in result.stderr

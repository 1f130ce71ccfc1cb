"""``managerctl probe`` against real oslo.messaging services on the real throwaway broker.

(The verdict logic of ``manager_cli.probe`` is also checked at the end against a fake client,
without a broker; the broker tests are marked by the fixtures they use.)

The services are ``tests/probe_peers/oslo_probe_peer.py`` processes: oslo RPC servers
(``executor='threading'``) with a nova-style base API, without one, with ``rpc_ping_enabled``,
with a ping that blocks, with a single busy executor thread, and one started from a nova.conf
full of options managerctl does not know. The console script runs as a subprocess, as a
Kubernetes exec probe or a monitoring check runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pytest
from rigs.rabbitmq import RabbitMQNode, free_port

from manager_cli.errors import (
    AccessRefusedError,
    CallTimeoutError,
    NoConsumerError,
    RemoteError,
)
from manager_cli.ops import probe as probing

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")
PEER_SCRIPT = Path(__file__).resolve().parents[1] / "probe_peers" / "oslo_probe_peer.py"
SUFFIX = secrets.token_hex(3)
SVC = f"probe_svc_{SUFFIX}"  # one topic, a server per kind of service
FLEET = f"probe_fleet_{SUFFIX}"  # three healthy services, for --all
PARTIAL = f"probe_partial_{SUFFIX}"  # one healthy, one stuck, for --all
COMPUTE = f"probe_compute_{SUFFIX}"  # the nova.conf service, on exchange nova
NOVA_HOST = f"compute-{SUFFIX}"
QUORUM = f"probe_quorum_{SUFFIX}"  # rabbit_quorum_queue = true: durable queues and exchange
QUORUM_EXCHANGE = f"probe_quorum_{SUFFIX}"
STUCK_TOPIC = f"probe_stuck_{SUFFIX}"  # every consumer stuck, for --all
NOVA_TOPIC = "compute"  # nova's real topic name, so the family table applies
REAL_NOVA_HOST = f"nova-compute-{SUFFIX}"  # served on exchange nova, nova.conf naming none
TOPICS = (SVC, FLEET, PARTIAL, COMPUTE, QUORUM, STUCK_TOPIC)
SECRET = "Wr0ngButSecret"
# "Nobody consumes" is told without waiting for an answer: the whole process (Python start-up,
# connect, one passive declare) ends well inside the probe's 10 s timeout. Half of it leaves
# room for a loaded machine (a process start alone took 1.4 s at load 15) and still fails a
# probe that waited for the timeout.
AT_ONCE = 5.0

NOVA_CONF = """\
[DEFAULT]
host = {host}
transport_url = {url}
control_exchange = nova
compute_driver = libvirt.LibvirtDriver
my_ip = 10.0.0.11
state_path = /var/lib/nova
instances_path = $state_path/instances
log_dir = /var/log/nova
debug = false
rpc_response_timeout = 180
reserved_host_memory_mb = 2048
cpu_allocation_ratio = 4.0
allow_resize_to_same_host = true
enabled_apis = osapi_compute,metadata
instance_usage_audit_period = hour

[api]
auth_strategy = keystone

[api_database]
connection = mysql+pymysql://nova:secret@db/nova_api

[database]
connection = mysql+pymysql://nova:secret@db/nova
max_pool_size = 20

[libvirt]
virt_type = kvm
cpu_mode = host-passthrough
images_type = rbd
images_rbd_pool = vms
rbd_user = cinder
rbd_secret_uuid = 457eb676-33da-42ec-9a8c-9293d545c337

[keystone_authtoken]
www_authenticate_uri = http://controller:5000/
auth_url = http://controller:5000/
memcached_servers = controller:11211
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = nova
password = Keyst0ne%Pa$$word

[placement]
region_name = RegionOne
auth_type = password
auth_url = http://controller:5000/v3
username = placement
password = placement-secret

[neutron]
auth_url = http://controller:5000
auth_type = password
region_name = RegionOne
service_metadata_proxy = true
metadata_proxy_shared_secret = metadata-secret

[glance]
api_servers = http://controller:9292

[vnc]
enabled = true
server_listen = $my_ip
server_proxyclient_address = $my_ip
novncproxy_base_url = http://controller:6080/vnc_auto.html

[oslo_concurrency]
lock_path = /var/lib/nova/tmp

[oslo_messaging_notifications]
driver = messagingv2

[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 30
amqp_durable_queues = false
rabbit_ha_queues = false

[scheduler]
discover_hosts_in_cells_interval = 300

[wsgi]
api_paste_config = /etc/nova/api-paste.ini
"""


# ---------------------------------------------------------------------------------------------
# oslo services in subprocesses


@dataclass
class Peer:
    """One running oslo_probe_peer.py: a real oslo.messaging RPC server."""

    topic: str
    server: str
    options: list[str]
    log_file: Path
    proc: subprocess.Popen | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self, url: str | None) -> None:
        cmd = [sys.executable, str(PEER_SCRIPT), "--topic", self.topic, "--server", self.server]
        cmd += ["--url", url] if url else []
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [*cmd, *self.options],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore"),
            )
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == b"READY":
                self._ready.set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self.log_file.read_text(errors="replace")[-3000:]
                pytest.fail(f"probe peer {self.server} never became READY:\n{log}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for current in (sig, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(current)
            try:
                proc.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        if proc.stdout is not None:
            proc.stdout.close()


def delete_topic_queues(node: RabbitMQNode, topics: tuple[str, ...]) -> None:
    """Delete every queue of ``topics`` (oslo leaves its topic and server queues by design)."""
    names = [
        q["name"]
        for q in node.list_queues(("name",))
        if any(q["name"] == t or q["name"].startswith((t + ".", t + "_")) for t in topics)
    ]
    if not names:
        return
    connection = pika.BlockingConnection(pika.URLParameters(node.amqp_url))
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
    finally:
        connection.close()


@pytest.fixture(scope="module")
def nova_conf(rabbitmq: RabbitMQNode, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nova") / "nova.conf"
    path.write_text(NOVA_CONF.format(host=NOVA_HOST, url=rabbitmq.url))
    return path


@pytest.fixture(scope="module")
def peers(
    rabbitmq: RabbitMQNode, nova_conf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Peer]]:
    """Every service the tests probe, started in parallel, stopped at the end of the module."""
    if not rabbitmq.is_running():
        rabbitmq.start()
    logs = tmp_path_factory.mktemp("probe-peers")
    quorum_conf = logs / "quorum.conf"
    quorum_conf.write_text("[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\n")
    wanted = {
        "nova": (SVC, []),
        "old": (SVC, ["--baseapi", "1.0"]),
        "bare": (SVC, ["--baseapi", "none"]),
        "rpcping": (SVC, ["--baseapi", "none", "--rpc-ping"]),
        "slow": (SVC, ["--ping-delay", "60"]),
        "busy": (SVC, ["--threads", "1", "--rpc-ping"]),
        "killed": (SVC, []),
        "fleet1": (FLEET, []),
        "fleet2": (FLEET, ["--baseapi", "1.0"]),
        "fleet3": (FLEET, ["--baseapi", "none"]),
        "partial-ok": (PARTIAL, []),
        "partial-slow": (PARTIAL, ["--ping-delay", "60"]),
        NOVA_HOST: (COMPUTE, ["--config-file", str(nova_conf)]),
        "stuck1": (STUCK_TOPIC, ["--ping-delay", "60"]),
        "stuck2": (STUCK_TOPIC, ["--ping-delay", "60"]),
        REAL_NOVA_HOST: (NOVA_TOPIC, ["--exchange", "nova"]),
        "quorum": (
            QUORUM,
            ["--config-file", str(quorum_conf), "--exchange", QUORUM_EXCHANGE],
        ),
    }
    started: dict[str, Peer] = {}
    try:
        for server, (topic, options) in wanted.items():
            peer = Peer(topic, server, options, logs / f"{server}.log")
            # The nova.conf service finds the broker and its exchange in its config file.
            peer.start(None if topic == COMPUTE else rabbitmq.url)
            started[server] = peer
        for peer in started.values():
            peer.wait_ready()
        yield started
    finally:
        threads = [threading.Thread(target=peer.stop) for peer in started.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if rabbitmq.is_running():
            delete_topic_queues(rabbitmq, TOPICS)
            with contextlib.suppress(Exception):
                rabbitmq.rabbitmqctl("delete_queue", f"{NOVA_TOPIC}.{REAL_NOVA_HOST}")


def run(
    *args: str, url: str | None = None, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the console script; return its result and its whole-process wall time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env.pop("NO_COLOR", None)
    if url:
        env["MANAGERCTL_TRANSPORT_URL"] = url
    started = time.perf_counter()
    result = subprocess.run(
        [MANAGERCTL, *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    return result, time.perf_counter() - started


def probe_json(*args: str, url: str | None = None) -> tuple[int, object]:
    result, _ = run("probe", *args, "-f", "json", url=url)
    return result.returncode, json.loads(result.stdout)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("managerctl: error:"), result.stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------
# alive: any answer


def test_nova_style_base_api_answers_ping(peers, broker_url):
    result, _ = run("probe", "nova", "--topic", SVC, url=broker_url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (line,) = result.stdout.splitlines()
    host, topic, verdict, rtt = line.split(" ")
    assert (host, topic, verdict) == ("nova", SVC, "alive")
    assert 0 < float(rtt) < 1000


def test_json_is_one_object_with_the_round_trip_time(peers, broker_url):
    code, data = probe_json("nova", "--topic", SVC, url=broker_url)
    assert code == 0
    assert data == {
        "host": "nova",
        "topic": SVC,
        "verdict": "alive",
        "rtt_ms": data["rtt_ms"],
        "answer": "result",
        "exchange": "openstack",
        "method": "ping",
        "service": "nova-like",
        "detail": None,
    }
    assert isinstance(data["rtt_ms"], float) and data["rtt_ms"] > 0


def test_a_base_api_at_1_0_answers_the_default_ping_with_a_result(peers, broker_url):
    # Why the probe asks 1.0: asking 1.1 would get UnsupportedVersion from this service.
    code, data = probe_json("old", "--topic", SVC, url=broker_url)
    assert (code, data["verdict"], data["answer"]) == (0, "alive", "result")


def test_a_service_without_base_api_is_alive_through_unsupported_version(peers, broker_url):
    code, data = probe_json("bare", "--topic", SVC, url=broker_url)
    assert (code, data["verdict"], data["answer"]) == (0, "alive", "UnsupportedVersion")
    assert data["detail"].startswith("Endpoint does not support RPC version 1.0")
    assert data["rtt_ms"] > 0


def test_oslo_rpc_server_ping_where_rpc_ping_is_enabled(peers, broker_url):
    code, data = probe_json(
        "rpcping", "--topic", SVC, "--method", "oslo_rpc_server_ping", url=broker_url
    )
    assert (code, data["verdict"], data["answer"]) == (0, "alive", "result")
    assert data["method"] == "oslo_rpc_server_ping"


def test_oslo_rpc_server_ping_without_rpc_ping_is_alive_through_no_such_method(peers, broker_url):
    code, data = probe_json(
        "bare", "--topic", SVC, "--method", "oslo_rpc_server_ping", url=broker_url
    )
    assert (code, data["verdict"], data["answer"]) == (0, "alive", "NoSuchMethod")


def test_a_service_on_quorum_queues_and_a_durable_exchange(peers, rabbitmq, broker_url):
    # managerctl declares the exchange non-durable (amqp_durable_queues is false here), gets a
    # 406 from the broker, and publishes to the existing durable exchange all the same.
    types = {q["name"]: q["type"] for q in rabbitmq.list_queues(("name", "type"))}
    assert types[f"{QUORUM}.quorum"] == "quorum"
    code, data = probe_json(
        "quorum", "--topic", QUORUM, "--exchange", QUORUM_EXCHANGE, url=broker_url
    )
    assert (code, data["verdict"], data["answer"]) == (0, "alive", "result")
    code, rows = probe_json("--all", "--topic", QUORUM, url=broker_url)
    assert (code, [row["answer"] for row in rows]) == (0, ["result"])


# ---------------------------------------------------------------------------------------------
# stuck: a consumer, but no answer in time


def test_a_blocked_ping_is_stuck_after_the_timeout(peers, broker_url):
    result, elapsed = run("probe", "slow", "--topic", SVC, "--timeout", "2", url=broker_url)
    assert result.returncode == 75, result.stderr
    assert result.stdout.split() == ["slow", SVC, "stuck"]
    assert "did not answer ping within 2s: it is stuck" in one_error_line(result)
    assert 2.0 <= elapsed < 5.0, elapsed


def test_busy_executor_threads_leave_a_service_stuck(peers, broker_url):
    # The same service answers while its single executor thread is free...
    code, data = probe_json(
        "busy", "--topic", SVC, "--method", "oslo_rpc_server_ping", url=broker_url
    )
    assert (code, data["answer"]) == (0, "result")
    # ... and not once a long method holds it (released when the peer stops).
    cast, _ = run("call", "busy", "block", "seconds=120", "--topic", SVC, "--cast", url=broker_url)
    assert cast.returncode == 0, cast.stderr
    code, data = probe_json(
        "busy", "--topic", SVC, "--method", "oslo_rpc_server_ping", "--timeout", "2", url=broker_url
    )
    assert (code, data["verdict"], data["rtt_ms"], data["answer"]) == (75, "stuck", None, None)


# ---------------------------------------------------------------------------------------------
# down: nobody consumes, told at once


def test_a_host_without_service_is_down_at_once(peers, broker_url):
    result, elapsed = run("probe", "no-such-host", "--topic", SVC, url=broker_url)
    assert result.returncode == 69, result.stderr
    assert result.stdout.split() == ["no-such-host", SVC, "down"]
    assert f"'{SVC}.no-such-host'" in one_error_line(result)
    assert elapsed < AT_ONCE, f"took {elapsed:.3f}s"
    print(f"\nprobe of a host nobody serves: exit 69 in {elapsed * 1000:.0f} ms (whole process)")


def test_a_dead_service_whose_queue_outlives_it_is_down_at_once(peers, broker_url):
    peers["killed"].stop(signal.SIGKILL)  # its queue stays, without a consumer
    result, elapsed = run("probe", "killed", "--topic", SVC, "--timeout", "1", url=broker_url)
    for _ in range(20):  # the broker notices the dead connection almost at once
        if result.returncode == 69:
            break
        time.sleep(0.25)
        result, elapsed = run("probe", "killed", "--topic", SVC, "--timeout", "1", url=broker_url)
    assert result.returncode == 69, result.stderr
    assert "it has no consumer" in one_error_line(result)
    assert elapsed < AT_ONCE, f"took {elapsed:.3f}s"
    print(f"\nprobe of a dead service's queue: exit 69 in {elapsed * 1000:.0f} ms (whole process)")


def test_the_wrong_exchange_is_down_at_once(peers, broker_url):
    # The queue is consumed, but not bound to this exchange: the broker returns the request.
    result, elapsed = run(
        "probe", NOVA_HOST, "--topic", COMPUTE, "--exchange", "openstack", url=broker_url
    )
    assert result.returncode == 69, result.stderr
    assert "exchange 'openstack'" in one_error_line(result)
    assert elapsed < AT_ONCE, f"took {elapsed:.3f}s"


# ---------------------------------------------------------------------------------------------
# the service's own config file


def test_nova_conf_is_read_as_is_with_exchange_nova(peers, nova_conf):
    result, _ = run(
        "--config-file",
        str(nova_conf),
        "probe",
        NOVA_HOST,
        "--topic",
        COMPUTE,
        "--exchange",
        "nova",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == [NOVA_HOST, COMPUTE, "alive"]


def test_nova_conf_gives_the_exchange_and_the_host(peers, nova_conf):
    # control_exchange = nova and host = ... come from the file, as the service reads them.
    result, _ = run("--config-file", str(nova_conf), "probe", "--topic", COMPUTE, "-f", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["host"], data["exchange"], data["verdict"]) == (NOVA_HOST, "nova", "alive")


def test_nova_conf_with_wrong_credentials_exits_77_without_the_password(peers, nova_conf, tmp_path):
    bad = tmp_path / "nova.conf"
    bad.write_text(nova_conf.read_text().replace("guest:guest@", f"guest:{SECRET}@"))
    for debug in ([], ["--debug"]):
        result, _ = run(*debug, "--config-file", str(bad), "probe", "--topic", COMPUTE)
        assert result.returncode == 77, result.stderr
        assert SECRET not in result.stdout + result.stderr
        assert "refused" in result.stderr


def test_wrong_credentials_in_the_url_exit_77_without_the_password(peers, rabbitmq):
    url = rabbitmq.url.replace("guest:guest@", f"guest:{SECRET}@")
    result, _ = run("--transport-url", url, "probe", "nova", "--topic", SVC, "--quiet")
    assert result.returncode == 77
    assert SECRET not in result.stdout + result.stderr
    assert result.stdout == ""
    assert one_error_line(result)  # --quiet still says why the probe could not run


def test_an_unreachable_broker_exits_69_even_quiet_without_the_password():
    url = f"rabbit://guest:{SECRET}@127.0.0.1:{free_port()}/"
    for extra in ([], ["--quiet"]):
        result, _ = run("--transport-url", url, "probe", "nova", "--topic", SVC, *extra)
        assert result.returncode == 69
        assert result.stdout == ""
        assert "cannot reach the message broker" in one_error_line(result)
        assert SECRET not in result.stderr


def test_an_unreadable_config_file_exits_78(tmp_path):
    result, _ = run("--config-file", str(tmp_path / "missing.conf"), "probe", "--topic", SVC)
    assert result.returncode == 78


# ---------------------------------------------------------------------------------------------
# --quiet


@pytest.mark.parametrize(
    ("host", "extra", "code"),
    [("nova", [], 0), ("no-such-host", [], 69), ("slow", ["--timeout", "1"], 75)],
)
def test_quiet_prints_nothing(peers, broker_url, host, extra, code):
    result, _ = run("probe", host, "--topic", SVC, "--quiet", *extra, url=broker_url)
    assert (result.returncode, result.stdout, result.stderr) == (code, "", "")


def test_json_of_a_down_service_parses(peers, broker_url):
    code, data = probe_json("no-such-host", "--topic", SVC, url=broker_url)
    assert code == 69
    assert (data["verdict"], data["rtt_ms"], data["answer"]) == ("down", None, None)
    assert "does not exist" in data["detail"]


# ---------------------------------------------------------------------------------------------
# --all


def test_all_answer_with_their_times(peers, broker_url):
    code, rows = probe_json("--all", "--topic", FLEET, url=broker_url)
    assert code == 0
    assert len(rows) == 3
    assert all(row["verdict"] == "alive" and row["rtt_ms"] > 0 for row in rows)
    assert sorted(row["answer"] for row in rows) == ["UnsupportedVersion", "result", "result"]
    assert all(list(row) == list(probing.RECORD_FIELDS) for row in rows)
    (bare,) = [row for row in rows if row["answer"] == "UnsupportedVersion"]
    assert bare["detail"].startswith("Endpoint does not support RPC version 1.0")
    assert {row["topic"] for row in rows} == {FLEET}


def test_all_table_lists_each_answer(peers, broker_url):
    result, _ = run("probe", "--all", "--topic", FLEET, "--expect", "3", url=broker_url)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["host", "service", "verdict", "rtt_ms", "answer"]
    assert len(lines) == 3
    assert all("alive" in line for line in lines)


def test_all_with_fewer_than_expected_is_partial_without_waiting(peers, broker_url):
    # Three consume the topic, so once three answered nobody else can: no need to wait.
    result, elapsed = run("probe", "--all", "--topic", FLEET, "--expect", "5", url=broker_url)
    assert result.returncode == 3, result.stderr
    assert "3 of 5 expected" in one_error_line(result)
    assert elapsed < 5.0, elapsed


def test_all_with_a_stuck_service_is_partial(peers, broker_url):
    result, elapsed = run("probe", "--all", "--topic", PARTIAL, "--timeout", "2", url=broker_url)
    assert result.returncode == 3, result.stderr
    assert len(result.stdout.splitlines()) == 2  # header and the one answer
    assert "1 of 2 expected" in one_error_line(result)
    assert 2.0 <= elapsed < 5.0


def test_all_of_a_topic_nobody_serves_is_69_at_once(peers, broker_url):
    result, elapsed = run("probe", "--all", "--topic", f"probe_nobody_{SUFFIX}", url=broker_url)
    assert result.returncode == 69, result.stderr
    assert elapsed < AT_ONCE, f"took {elapsed:.3f}s"


def test_all_quiet(peers, broker_url):
    result, _ = run("probe", "--all", "--topic", FLEET, "--quiet", url=broker_url)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(
    "args", [["nova", "--all"], ["nova", "--expect", "2"], ["nova", "--method", "reboot"]]
)
def test_usage_errors_exit_2(args, broker_url):
    result, _ = run("probe", *args, "--topic", SVC, url=broker_url)
    assert result.returncode == 2


# ---------------------------------------------------------------------------------------------
# start-up


@pytest.mark.parametrize("extra", [["-f", "value"], ["--quiet"], ["-f", "json"]])
def test_probe_imports_neither_oslo_config_nor_rich(broker_url, extra):
    code = textwrap.dedent(
        f"""\
        import sys
        from manager_cli.cli.main import main
        sys.argv = ["managerctl", "probe", "nobody", "--topic", "{SVC}", *{extra!r}]
        try:
            main()
        except SystemExit as exc:
            print("exit", exc.code, file=sys.stderr)
        heavy = ("oslo_config", "oslo_messaging", "rich")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy), file=sys.stderr)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env["MANAGERCTL_TRANSPORT_URL"] = broker_url
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    lines = result.stderr.strip().splitlines()
    assert lines[-2] == "exit 69", result.stderr
    assert lines[-1] == "[]"


# ---------------------------------------------------------------------------------------------
# the verdicts, against a fake client (no broker)


class FakePending:
    rtt = 0.001

    def __init__(self, outcome: object) -> None:
        self.outcome = outcome

    def result(self) -> object:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class FakeClient:
    """Answers every call with ``outcome`` (raised if it is an exception); records requests."""

    class options:  # noqa: N801 - stands for RabbitOptions
        control_exchange = "openstack"

    def __init__(self, outcome: object = None, *, at_send: BaseException | None = None) -> None:
        self.outcome = outcome
        self.at_send = at_send
        self.requests: list[dict] = []

    def exchange_for(self, topic: str, exchange: str | None = None) -> str:
        return exchange or self.options.control_exchange

    def call_async(
        self, context: object, method: str, *, target: Any = None, **kwargs: object
    ) -> FakePending:
        if target is not None:  # recorded field by field, as the assertions read them
            kwargs.update(
                (name, getattr(target, name))
                for name in ("topic", "server", "exchange", "namespace", "version")
            )
        self.requests.append({"method": method, **kwargs})
        if self.at_send is not None:
            raise self.at_send
        return FakePending(self.outcome)


def remote_builtin(cls: type[Exception], message: str) -> Exception:
    exc = cls(message + "\nTraceback ...")
    exc.remote_traceback = "Traceback ..."  # as wire.deserialize_failure marks it
    return exc


def test_the_default_probe_asks_the_base_api_ping_at_1_0():
    client = FakeClient({"service": "compute", "arg": None})
    result = probing.probe(client, "compute", "web01")
    (request,) = client.requests
    assert request["method"] == "ping"
    assert (request["namespace"], request["version"], request["args"]) == (
        "baseapi",
        "1.0",
        {"arg": None},
    )
    assert (request["topic"], request["server"], request["exchange"]) == (
        "compute",
        "web01",
        "openstack",
    )
    assert request["timeout"] == probing.DEFAULT_TIMEOUT == 10.0
    assert (result.verdict, result.answer, result.service, result.error) == (
        "alive",
        "result",
        "compute",
        None,
    )


def test_oslo_rpc_server_ping_has_no_namespace_nor_version():
    client = FakeClient("pong")
    probing.probe(client, "compute", "web01", method="oslo_rpc_server_ping", exchange="nova")
    (request,) = client.requests
    assert (request["namespace"], request["version"], request["args"]) == (None, None, {})
    assert request["exchange"] == "nova"


@pytest.mark.parametrize(
    ("outcome", "answer"),
    [
        (RemoteError("UnsupportedVersion", "Endpoint does not support RPC version 1.0"), None),
        (RemoteError("NoSuchMethod", "Endpoint does not support RPC method ping"), None),
        (RemoteError("OperationalError", "(pymysql) MySQL server has gone away"), None),
        (remote_builtin(ValueError, "bad value"), "ValueError"),
    ],
)
def test_any_remote_failure_means_alive(outcome, answer):
    result = probing.probe(FakeClient(outcome), "compute", "web01")
    assert result.verdict == "alive" and result.error is None
    assert result.answer == (answer or outcome.exc_type)
    assert "\n" not in (result.detail or "")


def test_nobody_consuming_is_down_and_exits_69():
    exc = NoConsumerError("nobody consumes queue 'compute.web01'")
    result = probing.probe(FakeClient(at_send=exc), "compute", "web01")
    assert (result.verdict, result.rtt_ms, result.error.exit_code) == ("down", None, 69)


def test_no_answer_in_time_is_stuck_and_exits_75():
    result = probing.probe(FakeClient(CallTimeoutError("late")), "compute", "web01", timeout=3)
    assert (result.verdict, result.rtt_ms, result.error.exit_code) == ("stuck", None, 75)
    assert "within 3s" in result.detail


@pytest.mark.parametrize("exc", [AccessRefusedError("refused"), KeyError("a local bug")])
def test_errors_that_are_not_answers_propagate(exc):
    with pytest.raises(type(exc)):
        probing.probe(FakeClient(exc), "compute", "web01")


@pytest.mark.parametrize(
    ("consumers", "expected", "answered", "code"),
    # consumers but no answer at all is stuck (75), as a single-host probe says; none is 69
    [(3, 3, 3, None), (3, 5, 3, 3), (3, 3, 0, 75), (0, 1, 0, 69), (2, 1, 2, None)],
)
def test_topic_probe_exit_codes(consumers, expected, answered, code):
    answer = probing.ProbeResult("h", "t", "alive", 1.0, "result")
    outcome = probing.TopicProbe("t", "ping", consumers, expected, 10.0, [answer] * answered)
    assert (outcome.error.exit_code if outcome.error else None) == code


def test_the_base_api_namespace_is_the_managers():
    from manager_cli.manager import BASE_API_NAMESPACE

    assert probing.BASE_API_NAMESPACE == BASE_API_NAMESPACE


# ---------------------------------------------------------------------------------------------
# several hosts at once, over one connection (issue 13)


def rows_of(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    return [line.split(" ") for line in result.stdout.splitlines()]


def test_several_hosts_one_line_each_in_order_and_partial_is_3(peers, broker_url):
    result, _ = run("probe", "old", "nova", "ghost", "bare", "--topic", SVC, url=broker_url)
    assert result.returncode == 3, result.stderr
    verdicts = [(row[0], row[2]) for row in rows_of(result)]
    assert verdicts == [("old", "alive"), ("nova", "alive"), ("ghost", "down"), ("bare", "alive")]
    assert "ghost (down)" in one_error_line(result)


def test_every_host_alive_is_0_and_a_host_named_twice_is_probed_once(peers, broker_url):
    result, _ = run(
        "probe", "fleet1", "fleet2", "fleet3", "fleet1", "--topic", FLEET, url=broker_url
    )
    assert result.returncode == 0, result.stderr
    assert [row[0] for row in rows_of(result)] == ["fleet1", "fleet2", "fleet3"]


def test_hosts_file_from_stdin_with_comments(peers, broker_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env["MANAGERCTL_TRANSPORT_URL"] = broker_url
    result = subprocess.run(
        [MANAGERCTL, "probe", "--hosts-file", "-", "--topic", FLEET, "-f", "json"],
        input="# the fleet\nfleet1\nfleet2  fleet3 # two on a line\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert [row["host"] for row in json.loads(result.stdout)] == ["fleet1", "fleet2", "fleet3"]


def test_all_hosts_down_is_69_and_one_stuck_among_them_is_75(peers, broker_url):
    result, _ = run("probe", "ghost1", "ghost2", "--topic", SVC, url=broker_url)
    assert result.returncode == 69, result.stderr
    result, _ = run(
        "probe", "ghost1", "partial-slow", "--topic", PARTIAL, "--timeout", "2", url=broker_url
    )
    assert result.returncode == 75, result.stderr
    assert [row[2] for row in rows_of(result)] == ["down", "stuck"]


def test_probe_all_with_every_consumer_stuck_is_75_not_69(peers, broker_url):
    result, _ = run("probe", "--all", "--topic", STUCK_TOPIC, "--timeout", "2", url=broker_url)
    assert result.returncode == 75, result.stderr
    assert "stuck" in one_error_line(result)


def test_ping_expect_hosts_works_against_oslo_whose_answers_carry_no_host(peers, broker_url):
    result, _ = run(
        "ping",
        "--all",
        "--topic",
        FLEET,
        "--expect-hosts",
        "fleet1,fleet2",
        "--version",
        "1.0",  # fleet2's base API is 1.0
        "-f",
        "json",
        url=broker_url,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(row["host"], row["outcome"]) for row in rows] == [("fleet1", "ok"), ("fleet2", "ok")]
    assert all(row["service"] == "nova-like" for row in rows)


def test_ping_only_failures_is_1_and_a_mix_is_3(peers, broker_url):
    result, _ = run("ping", "fleet3", "--topic", FLEET, "-f", "json", url=broker_url)
    assert result.returncode == 1, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["outcome"] == "failed" and row["error"].startswith("UnsupportedVersion")
    result, _ = run("ping", "fleet1", "fleet3", "--topic", FLEET, url=broker_url)
    assert result.returncode == 3, result.stderr


def test_ping_all_stops_when_every_consumer_answered(peers, broker_url):
    # Three consumers, three answers: it must not wait out a 120 s gathering time (the
    # subprocess limit below is 60 s, so waiting would fail the test).
    result, _ = run(
        "ping",
        "--all",
        "--topic",
        FLEET,
        "--timeout",
        "120",
        "-f",
        "json",
        url=broker_url,
        timeout=60,
    )
    # ping asks 1.1: fleet2's base API is 1.0 and fleet3 has none, both answer a failure
    assert result.returncode == 3, result.stderr
    assert sorted(r["outcome"] for r in json.loads(result.stdout)) == ["failed", "failed", "ok"]


def test_ping_all_with_only_failures_is_1(peers, broker_url):
    result, _ = run(
        "ping", "--all", "--topic", SVC, "--expect-hosts", "bare", "-f", "json", url=broker_url
    )
    assert result.returncode == 1, result.stderr


def test_nova_exchange_is_known_without_being_told(peers, broker_url, tmp_path):
    conf = tmp_path / "nova.conf"
    # A stock nova.conf names no exchange: nova sets "nova" in its code.
    conf.write_text(f"[DEFAULT]\nhost = {REAL_NOVA_HOST}\ntransport_url = {broker_url}\n")
    result, _ = run("--config-file", str(conf), "probe", "--topic", NOVA_TOPIC, "-f", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["host"], data["exchange"], data["verdict"]) == (REAL_NOVA_HOST, "nova", "alive")


def test_a_configured_exchange_wins_and_a_wrong_one_is_diagnosed(peers, broker_url, rabbitmq):
    # The queue has a consumer, but exchange openstack has no binding for it.
    result, _ = run(
        "probe", REAL_NOVA_HOST, "--topic", NOVA_TOPIC, "--exchange", "openstack", url=broker_url
    )
    if "openstack" not in {e["name"] for e in rabbitmq.list_exchanges()}:
        pytest.skip("no openstack exchange on the session broker to route through")
    assert result.returncode == 69, result.stderr
    line = one_error_line(result)
    assert "does not route to it" in line and "--exchange nova" in line


def test_a_probe_creates_no_exchange(peers, broker_url, rabbitmq):
    name = f"never-declared-{SUFFIX}"
    result, _ = run("probe", "nova", "--topic", SVC, "--exchange", name, url=broker_url)
    assert result.returncode == 69, result.stderr
    assert f"exchange {name!r} does not exist" in one_error_line(result)
    assert name not in {e["name"] for e in rabbitmq.list_exchanges()}


def _log_errors(peer: Peer) -> list[str]:
    text = peer.log_file.read_text(errors="replace")
    return [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line]


def test_the_quiet_probe_leaves_no_error_in_an_oslo_services_log(peers, broker_url):
    bare = peers["bare"]
    before = len(_log_errors(bare))
    result, _ = run(
        "probe",
        "bare",
        "--topic",
        SVC,
        "--method",
        "quiet",
        "--version",
        "1.0",
        "-f",
        "json",
        url=broker_url,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["verdict"], data["answer"]) == ("alive", "NoSuchMethod")
    time.sleep(0.5)
    assert len(_log_errors(bare)) == before
    # The base API ping, by contrast, costs that service an ERROR traceback: the check above
    # can tell the difference.
    result, _ = run("probe", "bare", "--topic", SVC, "--method", "ping", url=broker_url)
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 5
    while len(_log_errors(bare)) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_log_errors(bare)) > before


def test_auto_picks_oslo_ping_when_the_service_config_enables_it(peers, broker_url, tmp_path):
    conf = tmp_path / "svc.conf"
    conf.write_text(f"[DEFAULT]\nrpc_ping_enabled = true\ntransport_url = {broker_url}\n")
    result, _ = run("--config-file", str(conf), "probe", "rpcping", "--topic", SVC, "-f", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["method"], data["answer"]) == ("oslo_rpc_server_ping", "result")

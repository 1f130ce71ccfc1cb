"""The interop matrix (issue 14): every topology of TOPOLOGIES.md with real oslo.messaging peers.

For each topology (``tests/topologies.py``), in a virtual host of its own on the session broker:

* ``managerctl serve hostinfo`` (the console script, options from a config file) starts first,
  then a real oslo RPC server (options from its transport URL's query) joins the same topic:
  it must start, and every queue both declared must have one shape (the same flags, arguments
  and queue type as oslo gives them);
* managerctl's CLI -> the oslo server: call, cast, fanout cast, broadcast ping, probe;
* an oslo client -> managerctl's server: call, cast, fanout cast;
* ``capabilities show --live`` hears the served manager;
* after managerctl exits: the oslo server restarts and works, and managerctl left nothing of
  its own behind.

``MATRIX_BROKERS`` is the hook for more brokers: each entry builds a node for the module; the
RabbitMQ 4 node that denies deprecated features (tests/rigs) runs the ``strict_ok`` sets there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from interop_support import OsloPeer, unique_topic, wait_for
from topologies import TOPOLOGY_SETS, TopologySet

pytestmark = pytest.mark.broker

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")
PEER_NAME = "oslo1"
MCTL_HOST = "mc1"
START_AT_ONCE = 3
PEER_READY_TIMEOUT = 90.0


def _session_broker(request):
    return request.getfixturevalue("rabbitmq")


def _strict_broker(request):
    """RabbitMQ 4.0 denying deprecated features as 4.3 does (helper "rigs", tests/rigs)."""
    return request.getfixturevalue("rabbitmq4_strict")


def _have_rabbitmq4_rig() -> bool:
    try:
        return importlib.util.find_spec("rigs.rabbitmq4") is not None
    except ImportError:
        return False


# (name, node factory, which sets run there). The strict RabbitMQ 4 node runs the sets oslo
# itself supports there (quorum and transient quorum queues: no non-durable non-exclusive
# queue, no global QoS), as soon as its rig is in the tree.
MATRIX_BROKERS = [("rabbitmq3", _session_broker, lambda topology: True)]
if _have_rabbitmq4_rig() and os.environ.get("MANAGERCTL_MATRIX_RABBITMQ4", "1") != "0":
    MATRIX_BROKERS.append(("rabbitmq4-strict", _strict_broker, lambda t: t.strict_ok))

CASES = [
    pytest.param((broker, factory, topology), id=f"{broker}-{topology.name}")
    for broker, factory, runs in MATRIX_BROKERS
    for topology in TOPOLOGY_SETS
    if runs(topology)
]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env["MANAGERCTL_PERIODIC_FUZZY_DELAY"] = "0"
    env.update(extra)
    return env


@dataclass
class World:
    topology: TopologySet
    node: object
    vhost: str
    url: str  # with the topology's options in the query (what the oslo peer uses)
    topic: str
    config: Path
    env: dict
    serve: subprocess.Popen | None
    serve_log: Path
    peer: OsloPeer
    oslo_transport: object = None
    serve_rc: int | None = None
    restart_error: str | None = None

    def managerctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [MANAGERCTL, "--config-file", str(self.config), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )

    def queues(self) -> dict[str, dict]:
        out = self.node.rabbitmqctl(
            "list_queues",
            "-p",
            self.vhost,
            "name",
            "type",
            "durable",
            "auto_delete",
            "exclusive",
            "arguments",
            "--formatter",
            "json",
            "--silent",
        ).strip()
        rows = json.loads(out) if out else []
        return {
            row["name"]: {
                "type": row.get("type"),
                "durable": row["durable"],
                "auto_delete": row["auto_delete"],
                "exclusive": row["exclusive"],
                "arguments": {a[0]: a[-1] for a in row["arguments"] or []}
                if isinstance(row["arguments"], list)
                else row["arguments"],
            }
            for row in rows
        }

    def oslo_client(self, server: str | None = None, **target):
        import oslo_messaging

        return oslo_messaging.get_rpc_client(
            self.oslo_transport,
            oslo_messaging.Target(topic=self.topic, server=server, **target),
            timeout=15,
        )


def _serve(world_env: dict, config: Path, topic: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [MANAGERCTL, "--config-file", str(config), "serve", "hostinfo"]
            + ["--host", MCTL_HOST, "--topic", topic],
            env=world_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_served(world: World) -> None:
    log, proc = world.serve_log, world.serve
    ok = wait_for(lambda: "consuming " in log.read_text() or proc.poll() is not None, 60)
    if not ok or proc.poll() is not None:
        raise RuntimeError(f"managerctl serve did not start:\n{log.read_text()}")


def _stop(proc: subprocess.Popen) -> int | None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def _erl_vhosts(names: list[str], action: str) -> str:
    """One ``rabbitmqctl eval`` for every vhost (each rabbitmqctl run starts an Erlang VM)."""
    calls = []
    for name in names:
        binary = f'<<"{name}">>'
        if action == "add":
            calls.append(f'rabbit_vhost:add({binary}, <<"tests">>)')
            calls.append(
                "rabbit_auth_backend_internal:set_permissions("
                f'<<"guest">>, {binary}, <<".*">>, <<".*">>, <<".*">>, <<"tests">>)'
            )
        else:
            calls.append(f'catch rabbit_vhost:delete({binary}, <<"tests">>)')
    return ", ".join(calls) + ", ok."


class Matrix:
    """The worlds of one broker, all started at once (process start-ups overlap), and
    "managerctl exits" applied to all at once too."""

    def __init__(self, request, directory: Path) -> None:
        self.request = request
        self.directory = directory
        self.worlds: dict[tuple[str, str], World] = {}
        self.nodes: dict[str, tuple[object, list[str]]] = {}
        self.exited: set[str] = set()
        self.started: list[World] = []  # every world, also those that failed to start

    def get(self, broker: str, factory, name: str) -> World:
        if (broker, name) not in self.worlds:
            self._start(broker, factory)
        world = self.worlds[(broker, name)]
        if isinstance(world, BaseException):
            raise world
        return world

    def _start(self, broker: str, factory) -> None:
        node = factory(self.request)
        if not node.is_running():
            node.start()
        sets = [t for b, _, runs in MATRIX_BROKERS if b == broker for t in TOPOLOGY_SETS if runs(t)]
        vhosts = [f"mx-{t.name}" for t in sets]
        try:
            node.rabbitmqctl("eval", _erl_vhosts(vhosts, "add"))
        except RuntimeError:  # another broker version's internal API: the slow way
            for vhost in vhosts:
                node.rabbitmqctl("add_vhost", vhost)
                node.rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        self.nodes[broker] = (node, vhosts)
        lock_path = self.directory / "locks"
        lock_path.mkdir(exist_ok=True)
        os.environ.setdefault("OSLO_LOCK_PATH", str(lock_path))
        worlds = []
        for topology, vhost in zip(sets, vhosts, strict=True):
            directory = self.directory / f"{broker}-{topology.name}"
            directory.mkdir()
            base = node.url.rstrip("/") + "/" + vhost
            config = directory / "managerctl.conf"
            config.write_text(
                f"[DEFAULT]\ntransport_url = {base}\n"
                f"capabilities_store = {directory / 'caps.sqlite'}\n" + topology.config_lines()
            )
            env = _env(XDG_STATE_HOME=str(directory / "state"), OSLO_LOCK_PATH=str(lock_path))
            topic = unique_topic("mx")
            serve_log = directory / "serve.log"
            peer = OsloPeer(
                topic=topic,
                server=PEER_NAME,
                exchange="openstack",
                endpoints="nova",
                rpc_ping=True,
                record_file=directory / "records",
                log_file=directory / "peer.log",
            )
            peer_url = base + topology.query()
            world = World(
                topology, node, vhost, peer_url, topic, config, env, None, serve_log, peer
            )
            worlds.append(world)

        self.started.extend(worlds)

        def join(world: World) -> World | BaseException:
            try:
                # managerctl serves first; an oslo server joins once it consumes.
                world.serve = _serve(world.env, world.config, world.topic, world.serve_log)
                _wait_served(world)
                world.peer.start(world.url)
                world.peer.wait_ready(timeout=PEER_READY_TIMEOUT)
                return world
            except BaseException as exc:  # reported by that topology's tests
                return exc

        # A few at a time: a dozen Python processes starting at once on a small machine would
        # take longer than they are given to become ready.
        with ThreadPoolExecutor(max_workers=START_AT_ONCE) as pool:
            joined = list(pool.map(join, worlds))
        # oslo's clients in this process: imported and built in this thread (oslo's import
        # is not safe to run from several threads at once).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import oslo_messaging
            from oslo_concurrency import lockutils
            from oslo_config import cfg

        lockutils.set_defaults(str(lock_path))
        for world, outcome in zip(worlds, joined, strict=True):
            if isinstance(outcome, World):
                world.oslo_transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=world.url)
            self.worlds[(broker, world.topology.name)] = outcome

    def managerctl_exits(self, broker: str) -> None:
        """Stop every managerctl serve of ``broker``, then restart every oslo server."""
        if broker in self.exited:
            return
        self.exited.add(broker)
        worlds = [w for (b, _), w in self.worlds.items() if b == broker and isinstance(w, World)]

        def restart(world: World) -> None:
            world.serve_rc = _stop(world.serve)
            world.peer.stop()
            world.peer.start(world.url)
            try:
                world.peer.wait_ready(timeout=PEER_READY_TIMEOUT)
            except RuntimeError as exc:
                world.restart_error = str(exc)

        with ThreadPoolExecutor(max_workers=START_AT_ONCE) as pool:
            list(pool.map(restart, worlds))

    def close(self) -> None:
        worlds = self.started

        def stop(world: World) -> None:
            world.peer.stop()
            if world.serve is not None:
                _stop(world.serve)
            if world.oslo_transport is not None:
                with contextlib.suppress(Exception):
                    world.oslo_transport.cleanup()

        with ThreadPoolExecutor(max_workers=max(1, len(worlds))) as pool:
            list(pool.map(stop, worlds))
        for node, vhosts in self.nodes.values():
            with contextlib.suppress(Exception):
                if node.is_running():
                    node.rabbitmqctl("eval", _erl_vhosts(vhosts, "delete"))


@pytest.fixture(scope="module")
def matrix(request, tmp_path_factory):
    matrix = Matrix(request, tmp_path_factory.mktemp("matrix"))
    try:
        yield matrix
    finally:
        matrix.close()


@pytest.fixture(params=CASES)
def world(request, matrix) -> World:
    broker, factory, topology = request.param
    return matrix.get(broker, factory, topology.name)


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


# -- managerctl serves first, an oslo server joins -----------------------------------------------


def _shape(queue: dict) -> dict:
    return {k: v for k, v in queue.items() if k != "exclusive"}


def test_oslo_joins_and_both_declared_one_shape(world):
    assert world.peer.alive, world.peer.log_tail()
    queues = world.queues()
    topic, options = world.topic, world.topology.options
    ours, theirs = queues[f"{topic}.{MCTL_HOST}"], queues[f"{topic}.{PEER_NAME}"]
    assert _shape(ours) == _shape(theirs)
    quorum = options.get("rabbit_quorum_queue") == "true"
    assert queues[topic]["type"] == ("quorum" if quorum else "classic")
    fanout = {name: q for name, q in queues.items() if name.startswith(f"{topic}_fanout")}
    if options.get("rabbit_stream_fanout") == "true":
        assert list(fanout) == [f"{topic}_fanout"]
        assert fanout[f"{topic}_fanout"]["type"] == "stream"
    else:
        mine = [n for n in fanout if "managerctl" in n or re.search("_fanout_[0-9a-f]{32}$", n)]
        assert len(fanout) == 2, fanout
        shapes = {json.dumps(_shape(q), sort_keys=True) for q in fanout.values()}
        assert len(shapes) == 1, fanout
        if options.get("use_queue_manager") == "true":
            assert all(re.search(r"_fanout_[^:]+:[^:]+:\d+$", n) for n in fanout), fanout
        else:
            assert len(mine) == 2


# -- managerctl's CLI -> the oslo server ---------------------------------------------------------


def test_cli_call_and_cast_to_oslo(world):
    out = _ok(world.managerctl("call", PEER_NAME, "echo", "value=hi", "-t", world.topic))
    assert json.loads(out) == "hi"
    _ok(world.managerctl("call", PEER_NAME, "record", "value=cast1", "-t", world.topic, "--cast"))
    wait_for(lambda: "cast1" in world.peer.records())


def test_cli_fanout_cast_reaches_oslo(world):
    _ok(world.managerctl("call", "-", "record", "value=fan1", "-t", world.topic, "--fanout"))
    wait_for(lambda: "fan1" in world.peer.records())


def test_cli_broadcast_ping_hears_both(world):
    out = _ok(world.managerctl("ping", "--all", "--expect", "2", "-t", world.topic, "-f", "json"))
    assert len(json.loads(out)) >= 2, out


def test_cli_probe_oslo_and_managerctl(world):
    for host in (PEER_NAME, MCTL_HOST):
        out = _ok(world.managerctl("probe", host, "-t", world.topic, "-f", "json"))
        assert "alive" in out, out


def test_capabilities_show_live(world):
    out = _ok(
        world.managerctl(
            "capabilities", "show", "--live", "--wait", "3", "--topic", world.topic, "-f", "json"
        )
    )
    assert MCTL_HOST in out, out


# -- an oslo client -> managerctl's server -------------------------------------------------------


def test_oslo_client_calls_managerctl(world):
    client = world.oslo_client(server=MCTL_HOST)
    assert client.call({}, "echo", value="from-oslo") == "from-oslo"
    client.cast({}, "echo", value="cast-from-oslo")
    # Any server of the topic: both kinds answer, through one shared queue.
    shared = world.oslo_client()
    assert {shared.call({}, "echo", value=n) for n in range(6)} == set(range(6))


def test_oslo_fanout_reaches_managerctl(world):
    # A fanout publish_service_capabilities from oslo makes the served manager publish to the
    # scheduler's fanout, where a listener with the same config hears it.
    from manager_cli.config import load_settings
    from manager_cli.manager import SCHEDULER_TOPIC
    from manager_cli.rpc import get_transport
    from manager_cli.rpc.listen import FanoutListener

    transport = get_transport(load_settings([str(world.config)], environ={}))
    with FanoutListener(transport, topic=SCHEDULER_TOPIC) as listener:
        world.oslo_client(fanout=True).cast({}, "publish_service_capabilities")
        heard = wait_for(
            lambda: [r for _, r in listener.listen(0.2) if r.args.get("host") == MCTL_HOST],
            timeout=10,
        )
    assert heard[0].method == "update_service_capabilities"


# -- after managerctl exits ----------------------------------------------------------------------


def test_after_managerctl_exits(request, matrix, world):
    broker = request.node.callspec.params["world"][0]
    matrix.managerctl_exits(broker)
    assert world.serve_rc == 0, world.serve_log.read_text()[-2000:]
    assert world.restart_error is None, world.restart_error
    assert world.oslo_client(server=PEER_NAME).call({}, "echo", value="again") == "again"
    out = _ok(world.managerctl("call", PEER_NAME, "echo", "value=after", "-t", world.topic))
    assert json.loads(out) == "after"
    _ok(world.managerctl("call", "-", "record", "value=fan2", "-t", world.topic, "--fanout"))
    wait_for(lambda: "fan2" in world.peer.records())
    queues = world.queues()
    # What managerctl's processes owned is gone: one-shot reply queues, serve's own fanout
    # queue (a shared stream stays, as with oslo).
    left = [n for n in queues if n.startswith("reply_") and queues[n]["exclusive"]]
    assert not left, left

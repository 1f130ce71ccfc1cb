"""RPC call throughput of managerctl's server and client beside raw pika and oslo.messaging.

Starts a throwaway RabbitMQ node (or uses ``--url``) and, each in a child process of its own and
on a topic of its own, three servers with an ``echo`` method:

* the floor: a minimal raw-pika echo server (one thread, decode, ack, reply), with the same
  contract as managerctl's server (at-most-once: ack before replying; prefetch bounded to
  ``executor_threads``), so the gap to it is the framework's cost and nothing else;
* managerctl's served manager, the ``serve`` path: a Service around the hostinfo manager, its
  dispatcher carrying the control and base API endpoints;
* an oslo.messaging RPC server (threading executor), for reference.

Servers: a raw-pika client (the same wire format, one reply queue reused) against each of them,
sequential and pipelined; ratios to the floor (targets for managerctl: >= 0.8 sequential,
>= 0.7 pipelined).

Clients, against managerctl's server:

* sequential calls/s, p50 and p99 latency: a raw-pika client, managerctl's RPCClient, and
  oslo.messaging's RPCClient;
* pipelined calls/s (send all, then gather): raw pika and managerctl's ``call_many``.

The rows "raw pika + confirms" show what publisher confirms would cost (pika's BlockingChannel
waits for each confirm): the reason managerctl's calls go out mandatory without them
(see client.py).

The clients and servers take turns (every 100 sequential calls; every pipelined round, median
of ``--rounds``), so that noise from other processes hits all of them alike; the ratio to raw
pika is printed beside each client's figure (targets: >= 0.9 sequential, >= 0.8 pipelined).
Not a test: it prints figures and never fails a build.

    .venv/bin/python bench/bench_rpc.py [--url rabbit://...] [--sequential 3000] [--pipelined 10000]
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

# The throwaway RabbitMQ / PostgreSQL servers are the test suite's rigs (tests/rigs), not the package's.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))

TOPIC = "bench_rpc"  # managerctl's served manager
FLOOR_TOPIC = "bench_floor"  # the raw-pika echo server
OSLO_TOPIC = "bench_oslo"  # the oslo.messaging server
# Quorum queues beside classic ones (issue 14), in the same run: a floor and managerctl serve
# with rabbit_quorum_queue. Their control exchange is durable (oslo: durable = durable queues
# or quorum), so it cannot be the classic servers' "openstack": it has a name of its own.
QUORUM_EXCHANGE = "bench_quorum"
QUORUM_TOPIC = "bench_rpc_quorum"
QUORUM_FLOOR_TOPIC = "bench_floor_quorum"
EXCHANGE_OF = {QUORUM_TOPIC: QUORUM_EXCHANGE, QUORUM_FLOOR_TOPIC: QUORUM_EXCHANGE}
SERVER = "bench-1"
CONTEXT = {"user": "bench", "request_id": "req-bench"}
CHUNK = 100
WARM_UP = 200
# managerctl's default executor_threads, and so its default prefetch: the floor's too.
PREFETCH = 8

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event


# ---------------------------------------------------------------------------
# The servers (child processes)


def _pika_parameters(url: str):
    import pika

    from manager_cli.rpc.transport import parse_transport_url

    host = parse_transport_url(url).hosts[0]
    return pika.ConnectionParameters(
        host.hostname, host.port, credentials=pika.PlainCredentials(host.username, host.password)
    )


def serve_floor(url: str, ready: Event, stop: Event, quorum: bool = False) -> None:
    """The floor: what a careful hand-written pika echo server does per request, nothing more.

    With ``quorum`` its queue is a quorum queue (durable, on a durable exchange) and its
    prefetch per consumer, since a quorum queue refuses global QoS.
    """
    import pika

    topic = QUORUM_FLOOR_TOPIC if quorum else FLOOR_TOPIC
    exchange = QUORUM_EXCHANGE if quorum else "openstack"
    connection = pika.BlockingConnection(_pika_parameters(url))
    channel = connection.channel()
    channel.exchange_declare(exchange, "topic", durable=quorum, auto_delete=False)
    channel.queue_declare(
        topic,
        durable=quorum,
        auto_delete=False,
        arguments={"x-queue-type": "quorum"} if quorum else None,
    )
    channel.queue_bind(topic, exchange, routing_key=topic)
    channel.basic_qos(prefetch_count=PREFETCH, global_qos=not quorum)
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        priority=0,
        headers={},
    )

    def on_message(channel, method, properties, body: bytes) -> None:
        message = json.loads(json.loads(body)["oslo.message"])
        channel.basic_ack(method.delivery_tag)  # at-most-once: ack before running
        reply = {
            "result": message["args"].get("value"),
            "failure": None,
            "ending": True,
            "_msg_id": message["_msg_id"],
            "_unique_id": uuid.uuid4().hex,
        }
        envelope = {"oslo.version": "2.0", "oslo.message": json.dumps(reply)}
        channel.basic_publish("", message["_reply_q"], json.dumps(envelope).encode(), props)

    channel.basic_consume(topic, on_message)
    ready.set()
    while not stop.is_set():
        connection.process_data_events(time_limit=0.5)
    channel.queue_delete(topic)
    if quorum:
        channel.exchange_delete(exchange)
    connection.close()


def serve_floor_quorum(url: str, ready: Event, stop: Event) -> None:
    serve_floor(url, ready, stop, quorum=True)


def serve_managerctl(url: str, ready: Event, stop: Event, quorum: bool = False) -> None:
    """managerctl's ``serve`` path: a Service around the hostinfo manager (with ``quorum``:
    rabbit_quorum_queue = true, from the transport URL as a deployment may give it)."""
    import logging

    from manager_cli.config import load_settings
    from manager_cli.examples.hostinfo import HostInfoManager
    from manager_cli.service import Service

    logging.basicConfig(level=logging.WARNING)
    overrides = {"transport_url": url, "host": SERVER}
    topic = TOPIC
    if quorum:
        separator = "&" if "?" in url else "?"
        overrides["transport_url"] = f"{url}{separator}rabbit_quorum_queue=true"
        overrides["control_exchange"] = QUORUM_EXCHANGE
        topic = QUORUM_TOPIC
    settings = load_settings([], []).with_overrides(overrides)
    service = Service(HostInfoManager(host=SERVER), topic=topic, settings=settings)
    service.start()
    ready.set()
    stop.wait()
    service.stop()
    if quorum:  # quorum queues are durable: leave nothing behind on the broker
        import pika

        connection = pika.BlockingConnection(_pika_parameters(url))
        channel = connection.channel()
        for queue in (topic, f"{topic}.{SERVER}"):
            channel.queue_delete(queue)
        channel.exchange_delete(QUORUM_EXCHANGE)
        connection.close()


def serve_managerctl_quorum(url: str, ready: Event, stop: Event) -> None:
    serve_managerctl(url, ready, stop, quorum=True)


def serve_oslo(url: str, ready: Event, stop: Event) -> None:
    warnings.simplefilter("ignore")
    import oslo_messaging
    from oslo_config import cfg

    class Echo:
        def echo(self, context, value=None):
            return value

    cfg.CONF([], project="bench_rpc")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=url)
    target = oslo_messaging.Target(topic=OSLO_TOPIC, server=SERVER)
    server = oslo_messaging.get_rpc_server(transport, target, [Echo()], executor="threading")
    server.start()
    ready.set()
    stop.wait()
    server.stop()
    server.wait()
    transport.cleanup()


# ---------------------------------------------------------------------------
# A minimal raw-pika client: what a careful hand-written client would do, nothing more.


class RawPikaClient:
    def __init__(self, url: str, *, confirm: bool = False) -> None:
        import pika

        params = _pika_parameters(url)
        self.pika = pika
        self.connection = pika.BlockingConnection(params)
        self.channel = self.connection.channel()
        if confirm:
            self.channel.confirm_delivery()
        self.channel.exchange_declare("openstack", "topic", durable=False, auto_delete=False)
        self.reply_q = "reply_" + uuid.uuid4().hex
        self.channel.queue_declare(self.reply_q, arguments={"x-expires": 1800000})
        self.channel.basic_consume(self.reply_q, self._on_reply, auto_ack=True)
        self.replies: dict[str, object] = {}
        self.props = pika.BasicProperties(
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            priority=0,
            headers={},
            expiration="60000",
        )

    def _on_reply(self, channel, method, properties, body: bytes) -> None:
        message = json.loads(json.loads(body)["oslo.message"])
        self.replies[message["_msg_id"]] = message["result"]

    def send(self, args: dict, topic: str = TOPIC) -> str:
        msg_id = uuid.uuid4().hex
        message = {"method": "echo", "args": args, "_msg_id": msg_id, "_reply_q": self.reply_q}
        message.update({"_timeout": None, "_unique_id": uuid.uuid4().hex})
        message.update({"_context_" + k: v for k, v in CONTEXT.items()})
        body = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(message)})
        self.channel.basic_publish(EXCHANGE_OF.get(topic, "openstack"), topic, body, self.props)
        return msg_id

    def wait(self, msg_id: str, timeout: float = 60.0) -> object:
        deadline = time.monotonic() + timeout
        while msg_id not in self.replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(msg_id)
            self.connection.process_data_events(time_limit=remaining)
        return self.replies.pop(msg_id)

    def call(self, args: dict, topic: str = TOPIC) -> object:
        return self.wait(self.send(args, topic))

    def call_many(self, count: int, topic: str = TOPIC) -> list[object]:
        ids = [self.send({"value": i}, topic) for i in range(count)]
        return [self.wait(msg_id) for msg_id in ids]

    def caller(self, topic: str) -> Callable[[dict], object]:
        return functools.partial(self.call, topic=topic)

    def pipeliner(self, topic: str) -> Callable[[int], list[object]]:
        return functools.partial(self.call_many, topic=topic)

    def close(self) -> None:
        self.channel.queue_delete(self.reply_q)
        self.connection.close()


# ---------------------------------------------------------------------------
# Measurement


class Sequential:
    """Latencies of one client's sequential calls, gathered chunk by chunk."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.elapsed = 0.0

    def run(self, call: Callable[[dict], object], count: int) -> None:
        started = time.perf_counter()
        for i in range(count):
            t0 = time.perf_counter()
            result = call({"value": i})
            self.latencies.append(time.perf_counter() - t0)
            if result != i:
                raise AssertionError(f"bad echo {result!r}")
        self.elapsed += time.perf_counter() - started

    def figures(self) -> tuple[float, float, float]:
        """(calls/s, p50 ms, p99 ms)."""
        latencies = sorted(self.latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return len(latencies) / self.elapsed, statistics.median(latencies) * 1000, p99 * 1000


def pipelined(call_many: Callable[[int], list[object]], count: int) -> float:
    started = time.perf_counter()
    results = call_many(count)
    total = time.perf_counter() - started
    if results[-1] != count - 1:
        raise AssertionError(f"bad echo {results[-1]!r}")
    return count / total


def oslo_client(url: str):
    warnings.simplefilter("ignore")
    import oslo_messaging
    from oslo_config import cfg

    # oslo.messaging registers its tracing options on the global CONF only (PROTOCOL.md §10).
    cfg.CONF([], project="bench_rpc")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=url)
    target = oslo_messaging.Target(topic=TOPIC)
    client = oslo_messaging.get_rpc_client(transport, target, timeout=60)

    def call(args: dict) -> object:
        return client.call(CONTEXT, "echo", **args)

    return call, transport.cleanup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="use this broker instead of a throwaway node")
    parser.add_argument("--sequential", type=int, default=3000)
    parser.add_argument("--pipelined", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-oslo", action="store_true", help="skip the oslo.messaging client and server"
    )
    parser.add_argument(
        "--no-quorum", action="store_true", help="skip the quorum-queue floor and server"
    )
    options = parser.parse_args()

    node = None
    url = options.url
    if url is None:
        from rigs.rabbitmq import RabbitMQNode

        node = RabbitMQNode("managerctl-bench")
        print(f"starting a throwaway RabbitMQ node ({node.nodename}) ...", file=sys.stderr)
        node.start()
        url = node.url
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    targets = [serve_floor, serve_managerctl] + ([] if options.no_oslo else [serve_oslo])
    if not options.no_quorum:
        targets += [serve_floor_quorum, serve_managerctl_quorum]
    servers = []
    pids: dict[str, int] = {}
    try:
        for target in targets:
            ready = context.Event()
            server = context.Process(target=target, args=(url, ready, stop), daemon=True)
            server.start()
            servers.append(server)
            pids[target.__name__] = server.pid
            if not ready.wait(60):
                print(f"the server {target.__name__} did not start", file=sys.stderr)
                return 1
        return run(url, options, pids)
    finally:
        stop.set()
        for server in servers:
            server.join(15)
            if server.is_alive():
                server.kill()
        if node is not None:
            node.stop()


def interleaved(calls: dict[str, Callable[[dict], object]], count: int) -> dict[str, Sequential]:
    """Sequential figures of each call, taking turns every CHUNK calls, after a warm-up.

    Taking turns means a burst of load from elsewhere on the machine hits them all alike; the
    figures then cover all of each one's calls.
    """
    for call in calls.values():  # warm up: connections, reply queues, caches
        Sequential().run(call, WARM_UP)
    seq = {name: Sequential() for name in calls}
    for done in range(0, count, CHUNK):
        for name, call in calls.items():
            seq[name].run(call, min(CHUNK, count - done))
    return seq


def rounds(
    pipelines: dict[str, Callable[[int], list[object]]], options: argparse.Namespace, what: str
) -> dict[str, float]:
    """The median pipelined rate of each, over ``options.rounds`` rounds taken in turn."""
    pipe: dict[str, list[float]] = {name: [] for name in pipelines}
    for round_number in range(options.rounds):
        print(f"{what}: pipelined round {round_number + 1}/{options.rounds} ...", file=sys.stderr)
        for name, many in pipelines.items():
            pipe[name].append(pipelined(many, options.pipelined))
    return {name: statistics.median(rates) for name, rates in pipe.items()}


def print_table(
    title: str,
    column: str,
    seq: dict[str, Sequential],
    pipe: dict[str, float],
    base: str,
    vs: str,
    options: argparse.Namespace,
    cpu: tuple[dict[str, float], dict[str, float]] | None = None,
) -> None:
    base_seq = seq[base].figures()[0]
    base_pipe = pipe[base]
    print(f"\n{title}: sequential calls ({options.sequential} each, interleaved by {CHUNK})")
    cpu_title = f"{'CPU us/call':>13}" if cpu else ""
    print(f"{column:<28}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}{vs:>10}{cpu_title}")
    for name, measured in seq.items():
        rate, p50, p99 = measured.figures()
        line = f"{name:<28}{rate:>10.0f}{p50:>9.3f}{p99:>9.3f}{rate / base_seq:>9.2f}x"
        print(line + (f"{cpu[0][name]:>13.0f}" if cpu else ""))
    print(
        f"\n{title}: pipelined calls ({options.pipelined} per round, send all then gather, "
        f"median of {options.rounds})"
    )
    print(f"{column:<28}{'calls/s':>10}{vs:>10}{cpu_title}")
    for name, rate in pipe.items():
        line = f"{name:<28}{rate:>10.0f}{rate / base_pipe:>9.2f}x"
        print(line + (f"{cpu[1][name]:>13.0f}" if cpu else ""))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CPUMeter:
    """Server CPU per call over a phase: robust to a loaded machine, where rates mostly
    measure the neighbours. Covers each server's idle time during the others' turns too
    (timers and heartbeats: small)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def per_call_us(self, calls: int) -> dict[str, float]:
        return {
            name: (cpu_seconds(pid) - self.start[name]) / calls * 1e6
            for name, pid in self.pids.items()
        }


def run(url: str, options: argparse.Namespace, pids: dict[str, int]) -> int:
    from manager_cli.rpc.client import RPCClient

    raw = RawPikaClient(url)

    def ours_call(args: dict) -> object:
        return ours.call(CONTEXT, "echo", topic=TOPIC, args=args)

    def ours_many(count: int) -> list[object]:
        requests = [
            {"context": CONTEXT, "method": "echo", "topic": TOPIC, "args": {"value": i}}
            for i in range(count)
        ]
        return ours.call_many(requests)

    # Servers: the same raw-pika client against each.
    servers = {
        "raw-pika echo server": (FLOOR_TOPIC, pids["serve_floor"]),
        "managerctl serve": (TOPIC, pids["serve_managerctl"]),
    }
    if not options.no_oslo:
        servers["oslo.messaging server"] = (OSLO_TOPIC, pids["serve_oslo"])
    if not options.no_quorum:
        servers["raw-pika echo, quorum"] = (QUORUM_FLOOR_TOPIC, pids["serve_floor_quorum"])
        servers["managerctl serve, quorum"] = (QUORUM_TOPIC, pids["serve_managerctl_quorum"])
    server_pids = {name: pid for name, (_topic, pid) in servers.items()}
    meter = CPUMeter(server_pids)
    server_seq = interleaved(
        {n: raw.caller(t) for n, (t, _) in servers.items()}, options.sequential
    )
    seq_cpu = meter.per_call_us(WARM_UP + options.sequential)
    meter = CPUMeter(server_pids)
    server_pipe = rounds({n: raw.pipeliner(t) for n, (t, _) in servers.items()}, options, "servers")
    pipe_cpu = meter.per_call_us(options.rounds * options.pipelined)

    # Clients: each against managerctl's server. Connected only now: a BlockingConnection
    # left idle through the servers' turns would miss its heartbeats and be dropped.
    confirmed = RawPikaClient(url, confirm=True)
    ours = RPCClient(url)
    clients: dict[str, Callable[[dict], object]] = {
        "raw pika": raw.call,
        "raw pika + confirms": confirmed.call,
        "managerctl": ours_call,
    }
    cleanup = []
    if not options.no_oslo:
        oslo_call, oslo_cleanup = oslo_client(url)
        clients["oslo.messaging"] = oslo_call
        cleanup.append(oslo_cleanup)
    client_seq = interleaved(clients, options.sequential)
    pipelines = {
        "raw pika": raw.call_many,
        "raw pika + confirms": confirmed.call_many,
        "managerctl": ours_many,
    }
    client_pipe = rounds(pipelines, options, "clients")

    raw.close()
    confirmed.close()
    ours.close()
    for func in cleanup:
        func()

    print_table(
        "servers (a raw-pika client)",
        "server",
        server_seq,
        server_pipe,
        "raw-pika echo server",
        "vs floor",
        options,
        (seq_cpu, pipe_cpu),
    )
    if not options.no_quorum:
        quorum_floor, quorum_ours = "raw-pika echo, quorum", "managerctl serve, quorum"
        seq_ratio = server_seq[quorum_ours].figures()[0] / server_seq[quorum_floor].figures()[0]
        pipe_ratio = server_pipe[quorum_ours] / server_pipe[quorum_floor]
        classic_seq = (
            server_seq[quorum_floor].figures()[0] / server_seq["raw-pika echo server"].figures()[0]
        )
        classic_pipe = server_pipe[quorum_floor] / server_pipe["raw-pika echo server"]
        print(
            f"\nquorum queues: managerctl serve at {seq_ratio:.2f}x the quorum floor sequential, "
            f"{pipe_ratio:.2f}x pipelined; the quorum floor at {classic_seq:.2f}x / "
            f"{classic_pipe:.2f}x the classic floor"
        )
    print_table(
        "clients (to managerctl serve)",
        "client",
        client_seq,
        client_pipe,
        "raw pika",
        "vs raw",
        options,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""RPC call throughput of managerctl's RPCClient beside a minimal raw-pika client and oslo.messaging.

Starts a throwaway RabbitMQ node (or uses ``--url``), runs a managerctl RPCServer with an ``echo``
endpoint in a child process, then measures, against that one server:

* sequential calls/s, p50 and p99 latency: a raw-pika client (the same wire format, one reply
  queue reused), managerctl's RPCClient, and oslo.messaging's RPCClient;
* pipelined calls/s (send all, then gather): raw pika and managerctl's ``call_many``.

The rows "raw pika + confirms" show what publisher confirms would cost (pika's BlockingChannel
waits for each confirm): the reason managerctl's calls go out mandatory without them
(see client.py).

The clients take turns (every 100 sequential calls; every pipelined round, median of
``--rounds``), so that noise from other processes hits all of them alike; the ratio to raw pika
is printed beside each figure (targets: >= 0.9 sequential, >= 0.8 pipelined). Not a test: it prints figures and never fails a build.

    .venv/bin/python bench/bench_rpc.py [--url rabbit://...] [--sequential 3000] [--pipelined 10000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Callable

TOPIC = "bench_rpc"
SERVER = "bench-1"
CONTEXT = {"user": "bench", "request_id": "req-bench"}
CHUNK = 100


# ---------------------------------------------------------------------------
# The server (child process)


def serve(
    url: str, ready: multiprocessing.synchronize.Event, stop: multiprocessing.synchronize.Event
) -> None:
    from manager_cli.rpc.dispatcher import RPCDispatcher
    from manager_cli.rpc.server import RPCServer

    class Echo:
        def echo(self, context: dict, **kwargs: object) -> object:
            return kwargs

    server = RPCServer(url, topic=TOPIC, server=SERVER, dispatcher=RPCDispatcher([Echo()]))
    server.start()
    ready.set()
    stop.wait()
    server.stop(graceful_timeout=5)


# ---------------------------------------------------------------------------
# A minimal raw-pika client: what a careful hand-written client would do, nothing more.


class RawPikaClient:
    def __init__(self, url: str, *, confirm: bool = False) -> None:
        import pika

        from manager_cli.rpc.transport import parse_transport_url

        host = parse_transport_url(url).hosts[0]
        params = pika.ConnectionParameters(
            host.hostname,
            host.port,
            credentials=pika.PlainCredentials(host.username, host.password),
        )
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

    def send(self, args: dict) -> str:
        msg_id = uuid.uuid4().hex
        message = {"method": "echo", "args": args, "_msg_id": msg_id, "_reply_q": self.reply_q}
        message.update({"_timeout": None, "_unique_id": uuid.uuid4().hex})
        message.update({"_context_" + k: v for k, v in CONTEXT.items()})
        body = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(message)})
        self.channel.basic_publish("openstack", TOPIC, body, self.props)
        return msg_id

    def wait(self, msg_id: str, timeout: float = 60.0) -> object:
        deadline = time.monotonic() + timeout
        while msg_id not in self.replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(msg_id)
            self.connection.process_data_events(time_limit=remaining)
        return self.replies.pop(msg_id)

    def call(self, args: dict) -> object:
        return self.wait(self.send(args))

    def call_many(self, count: int) -> list[object]:
        ids = [self.send({"i": i}) for i in range(count)]
        return [self.wait(msg_id) for msg_id in ids]

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
            result = call({"i": i})
            self.latencies.append(time.perf_counter() - t0)
            if result != {"i": i}:
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
    if results[-1] != {"i": count - 1}:
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
    parser.add_argument("--no-oslo", action="store_true", help="skip the oslo.messaging client")
    options = parser.parse_args()

    node = None
    url = options.url
    if url is None:
        from manager_cli.testing.rabbitmq import RabbitMQNode

        node = RabbitMQNode("managerctl-bench")
        print(f"starting a throwaway RabbitMQ node ({node.nodename}) ...", file=sys.stderr)
        node.start()
        url = node.url
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    server = context.Process(target=serve, args=(url, ready, stop), daemon=True)
    server.start()
    try:
        if not ready.wait(60):
            print("the RPC server did not start", file=sys.stderr)
            return 1
        return run(url, options)
    finally:
        stop.set()
        server.join(15)
        if server.is_alive():
            server.kill()
        if node is not None:
            node.stop()


def run(url: str, options: argparse.Namespace) -> int:
    from manager_cli.rpc.client import RPCClient

    raw = RawPikaClient(url)
    confirmed = RawPikaClient(url, confirm=True)
    ours = RPCClient(url)

    def ours_call(args: dict) -> object:
        return ours.call(CONTEXT, "echo", topic=TOPIC, args=args)

    def ours_many(count: int) -> list[object]:
        requests = [
            {"context": CONTEXT, "method": "echo", "topic": TOPIC, "args": {"i": i}}
            for i in range(count)
        ]
        return ours.call_many(requests)

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
    for call in clients.values():  # warm up: connections, reply queues, caches
        Sequential().run(call, 200)

    # The clients take turns every CHUNK calls, so a burst of load from elsewhere on the
    # machine hits them all alike; the figures then cover all of each client's calls.
    seq = {name: Sequential() for name in clients}
    for done in range(0, options.sequential, CHUNK):
        for name, call in clients.items():
            seq[name].run(call, min(CHUNK, options.sequential - done))
    pipelines = {
        "raw pika": raw.call_many,
        "raw pika + confirms": confirmed.call_many,
        "managerctl": ours_many,
    }
    pipe: dict[str, list[float]] = {name: [] for name in pipelines}
    for round_number in range(options.rounds):
        print(f"pipelined round {round_number + 1}/{options.rounds} ...", file=sys.stderr)
        for name, many in pipelines.items():
            pipe[name].append(pipelined(many, options.pipelined))

    raw.close()
    confirmed.close()
    ours.close()
    for func in cleanup:
        func()

    base_seq = seq["raw pika"].figures()[0]
    base_pipe = statistics.median(pipe["raw pika"])
    print(f"\nsequential calls ({options.sequential} each, interleaved by {CHUNK})")
    print(f"{'client':<22}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs raw':>9}")
    for name, measured in seq.items():
        rate, p50, p99 = measured.figures()
        print(f"{name:<22}{rate:>10.0f}{p50:>9.3f}{p99:>9.3f}{rate / base_seq:>8.2f}x")
    print(
        f"\npipelined calls ({options.pipelined} per round, send all then gather, "
        f"median of {options.rounds})"
    )
    print(f"{'client':<22}{'calls/s':>10}{'vs raw':>9}")
    for name, rates in pipe.items():
        rate = statistics.median(rates)
        print(f"{name:<22}{rate:>10.0f}{rate / base_pipe:>8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

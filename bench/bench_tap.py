"""What seeing costs: ``tap --stats`` decoding speed, and a served manager with a tap attached
and with Prometheus metrics on, beside the same manager without either, in the same run.

Starts a throwaway RabbitMQ node (or uses ``--url``), then:

1. **tap keep-up**: publishes a burst of ``--burst`` casts (raw pika, as fast as it can) to a
   topic nobody serves, with ``managerctl tap --stats --count N`` attached; the figure is the
   decoded copies/s from the first publish to the tap's exit, beside a raw-pika consumer of
   the same burst through the same kind of queue that only acks (the floor of any consumer).
2. **served manager throughput**: three ``managerctl serve hostinfo`` processes, identical but
   for one thing: plain (the baseline), plain with ``managerctl tap --stats`` attached to its
   topic for the whole run, and with ``--metrics-address``. Pipelined ``echo`` calls
   (``RPCClient.call_many``) take turns among the three every round, so that noise from
   elsewhere on the machine hits all alike; the median of ``--rounds`` is shown with its ratio
   to the baseline (target: within 5% each, i.e. >= 0.95x).

Not a test: it prints figures and never fails a build.

    .venv/bin/python bench/bench_tap.py [--url rabbit://...] [--burst 20000] [--calls 3000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

# The throwaway RabbitMQ / PostgreSQL servers are the test suite's rigs (tests/rigs), not the package's.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")
CONTEXT = {"user": "bench", "project_id": "p", "request_id": "req-bench"}


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env.update(MANAGERCTL_TRANSPORT_URL=url, MANAGERCTL_PERIODIC_FUZZY_DELAY="0")
    return env


def _pika(url: str):
    import pika

    from manager_cli.rpc.transport import parse_transport_url

    host = parse_transport_url(url).hosts[0]
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host.hostname,
            host.port,
            credentials=pika.PlainCredentials(host.username, host.password),
        )
    )


def _wait_text(path: str, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, errors="replace") as handle:
            if text in handle.read():
                return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(path, errors="replace") as handle:
        raise RuntimeError(f"{text!r} not seen:\n{handle.read()[-2000:]}")


def _bodies(count: int) -> list[bytes]:
    from manager_cli.rpc import wire

    return [
        wire.encode_envelope(
            wire.build_request(
                f"method_{i % 7}",
                {"instance": {"uuid": str(uuid.uuid4()), "flavor": i % 5, "password": "x"}},
                context=dict(CONTEXT, user_id=f"u{i % 13}"),
            )
        )
        for i in range(count)
    ]


def _publish(url: str, exchange: str, key: str, bodies: list[bytes]) -> None:
    import pika

    from manager_cli.rpc import wire

    props = pika.BasicProperties(**wire.BASE_PROPERTIES)
    connection = _pika(url)
    channel = connection.channel()
    for body in bodies:
        channel.basic_publish(exchange, key, body, props)
    connection.close()


def tap_keepup(url: str, burst: int, workdir: str) -> tuple[float, float, int]:
    """(tap copies/s, raw-pika floor copies/s, copies the tap's broker queue dropped)."""
    bodies = _bodies(burst)
    topic = f"bench_tap_{uuid.uuid4().hex[:6]}"
    exchange = "openstack"
    connection = _pika(url)
    connection.channel().exchange_declare(exchange, "topic")
    connection.close()

    # The floor: a consumer that only acks, on an exclusive queue bound the same way.
    connection = _pika(url)
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(queue, exchange, routing_key=topic)
    channel.basic_qos(prefetch_count=1000)
    seen = [0]

    def on_message(ch, method, properties, body):
        seen[0] += 1
        if seen[0] % 500 == 0 or seen[0] == burst:
            ch.basic_ack(method.delivery_tag, multiple=True)

    channel.basic_consume(queue, on_message)
    started = time.monotonic()
    _publish(url, exchange, topic, bodies)
    while seen[0] < burst:
        connection.process_data_events(time_limit=0.5)
    floor = burst / (time.monotonic() - started)
    connection.close()

    err = os.path.join(workdir, "tap-keepup.err")
    with open(err, "wb") as err_file:
        tap = subprocess.Popen(
            [MANAGERCTL, "tap", "--topic", topic, "--stats", "--count", str(burst),
             "--queue-limit", str(burst * 2)],
            env=_env(url), stdout=subprocess.PIPE, stderr=err_file, text=True,
        )  # fmt: skip
    _wait_text(err, "tapping ", tap)
    started = time.monotonic()
    _publish(url, exchange, topic, bodies)
    out, _ = tap.communicate(timeout=600)
    elapsed = time.monotonic() - started
    totals = json.loads(out.splitlines()[-1])
    return totals["requests"] / elapsed, floor, totals["dropped"]


class Service:
    def __init__(self, url: str, name: str, workdir: str, *args: str) -> None:
        self.topic = f"bench_{name}_{uuid.uuid4().hex[:6]}"
        self.host = f"{name}-1"
        self.log = os.path.join(workdir, f"serve-{name}.log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [MANAGERCTL, "serve", "hostinfo", "--host", self.host, "--topic", self.topic,
                 *args],
                env=_env(url), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _wait_text(self.log, "consuming ", self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (0 when unknown)."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pipelined(client, topic: str, calls: int) -> float:
    requests = [
        {"context": CONTEXT, "method": "echo", "topic": topic, "args": {"value": i}}
        for i in range(calls)
    ]
    started = time.perf_counter()
    results = client.call_many(requests)
    elapsed = time.perf_counter() - started
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise RuntimeError(f"{len(failures)} calls failed: {failures[0]!r}")
    return calls / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="use this broker instead of a throwaway node")
    parser.add_argument("--burst", type=int, default=20000, help="casts in the keep-up burst")
    parser.add_argument("--calls", type=int, default=3000, help="pipelined calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()

    node = None
    url = options.url
    if url is None:
        from rigs.rabbitmq import RabbitMQNode

        node = RabbitMQNode("managerctl-bench")
        print(f"starting a throwaway RabbitMQ node ({node.nodename}) ...", file=sys.stderr)
        node.start()
        url = node.url
    workdir = tempfile.mkdtemp(prefix="bench-tap-")
    services: list[Service] = []
    tap = None
    try:
        print(f"tap keep-up: a burst of {options.burst} casts ...", file=sys.stderr)
        tap_rate, floor, dropped = tap_keepup(url, options.burst, workdir)

        from manager_cli.rpc.client import RPCClient

        plain = Service(url, "plain", workdir)
        tapped = Service(url, "tapped", workdir)
        metered = Service(url, "metrics", workdir, "--metrics-address", "127.0.0.1:0")
        services += [plain, tapped, metered]
        tap_err = os.path.join(workdir, "tap-attached.err")
        tap_out = os.path.join(workdir, "tap-attached.out")
        with open(tap_err, "wb") as err_file, open(tap_out, "wb") as out_file:
            tap = subprocess.Popen(
                [MANAGERCTL, "tap", "--topic", tapped.topic, "--stats"],
                env=_env(url), stdout=out_file, stderr=err_file, start_new_session=True,
            )  # fmt: skip
        _wait_text(tap_err, "tapping ", tap)
        client = RPCClient(url, exclusive=True)
        variants = {"plain (baseline)": plain, "tap attached": tapped, "metrics on": metered}
        for service in variants.values():  # warm up
            pipelined(client, service.topic, 300)
        rates: dict[str, list[float]] = {name: [] for name in variants}
        # CPU seconds spent during each variant's rounds: its server, the broker, the tap.
        cpu: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in variants}
        broker_pid = node.pid if node is not None else None
        for number in range(options.rounds):
            print(f"round {number + 1}/{options.rounds} ...", file=sys.stderr)
            order = list(variants.items())
            order = order[number % 3 :] + order[: number % 3]  # rotate who goes first
            for name, service in order:
                pids = (service.proc.pid, broker_pid, tap.pid)
                before = [cpu_seconds(pid) for pid in pids]
                rates[name].append(pipelined(client, service.topic, options.calls))
                for i, pid in enumerate(pids):
                    cpu[name][i] += cpu_seconds(pid) - before[i]
        client.close()
        tap.send_signal(signal.SIGINT)
        tap.wait(30)
        with open(tap_out) as handle:
            attached = json.loads(handle.read().splitlines()[-1])
    finally:
        if tap is not None and tap.poll() is None:
            tap.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                tap.wait(20)
        for service in services:
            service.stop()
        if node is not None:
            node.stop()

    print(f"\ntap keep-up ({options.burst} casts in one burst)")
    print(f"{'consumer':<34}{'copies/s':>10}{'vs floor':>10}")
    print(f"{'raw pika, ack only (floor)':<34}{floor:>10.0f}{1:>9.2f}x")
    print(f"{'managerctl tap --stats':<34}{tap_rate:>10.0f}{tap_rate / floor:>9.2f}x")
    print(f"  copies the tap's queue dropped: {dropped}")
    base = statistics.median(rates["plain (baseline)"])
    print(
        f"\nserved hostinfo, pipelined echo calls ({options.calls} per round, "
        f"median of {options.rounds}, rounds interleaved)"
    )
    print(
        f"{'service':<34}{'calls/s':>10}{'vs base':>10}  {'target':<10}"
        f"{'CPU us per call: server':>24}{'broker':>8}{'tap':>6}"
    )
    total_calls = options.calls * options.rounds
    for name, values in rates.items():
        rate = statistics.median(values)
        target = "" if name.startswith("plain") else ">= 0.95x"
        server_us, broker_us, tap_us = (1e6 * seconds / total_calls for seconds in cpu[name])
        print(
            f"{name:<34}{rate:>10.0f}{rate / base:>9.2f}x  {target:<10}"
            f"{server_us:>24.0f}{broker_us:>8.0f}{tap_us:>6.0f}"
        )
    print(
        f"  the attached tap decoded {attached['received']} copies and its queue dropped "
        f"{attached['dropped']} (it runs at a lower CPU priority: it yields, the service does not)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What seeing costs: ``tap --stats`` decoding speed, and a served manager with a tap attached
and with Prometheus metrics on, beside the same manager without either, in the same run.

Starts a throwaway RabbitMQ node (or uses ``--url``), then:

1. **tap keep-up**: publishes a burst of ``--burst`` casts (raw pika, as fast as it can) to a
   topic nobody serves, with ``managerctl tap --stats --count N`` attached; the figure is the
   decoded copies/s from the first publish to the tap's exit, beside a raw-pika consumer of
   the same burst through the same kind of queue that only acks (the floor of any consumer).
2. **served manager throughput**: four ``managerctl serve hostinfo`` processes, identical but
   for one thing: plain (the baseline), with ``managerctl tap --stats`` attached to its topic
   for the whole run (as an operator runs it: at the idle CPU priority), with
   ``--metrics-address``, and with a tap attached at ``nice 10`` instead (``--no-nice`` under
   ``nice``), which shows what the priority does. Pipelined ``echo`` calls
   (``RPCClient.call_many``) take turns among them every round, the first one rotating, so
   that noise from elsewhere on the machine hits all alike. Shown: the median rate of
   ``--rounds``, and the median of each round's ratio to the baseline's rate in the same round
   (target: within 5% each, i.e. >= 0.95x); the CPU each process spent per call during the
   variant's rounds (its server, the broker, its tap); what the taps decoded and dropped.

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

from rigs.cli import MANAGERCTL, pika_connection  # noqa: E402 (the path above first)

CONTEXT = {"user": "bench", "project_id": "p", "request_id": "req-bench"}


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env.update(MANAGERCTL_TRANSPORT_URL=url, MANAGERCTL_PERIODIC_FUZZY_DELAY="0")
    return env


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
    connection = pika_connection(url)
    channel = connection.channel()
    for body in bodies:
        channel.basic_publish(exchange, key, body, props)
    connection.close()


def tap_keepup(url: str, burst: int, workdir: str) -> tuple[float, float, int]:
    """(tap copies/s, raw-pika floor copies/s, copies the tap's broker queue dropped)."""
    bodies = _bodies(burst)
    topic = f"bench_tap_{uuid.uuid4().hex[:6]}"
    exchange = "openstack"
    connection = pika_connection(url)
    connection.channel().exchange_declare(exchange, "topic")
    connection.close()

    # The floor: a consumer that only acks, on an exclusive queue bound the same way.
    connection = pika_connection(url)
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
             "--queue-limit", str(burst * 2), "--no-nice"],  # the floor's priority
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


def attach_tap(url: str, topic: str, workdir: str, *prefix: str) -> subprocess.Popen:
    """``managerctl tap --stats`` on ``topic`` for the whole run (``prefix``: e.g. ``nice``,
    which then runs it with ``--no-nice``); its JSON totals go to ``tap-<topic>.out``."""
    err = os.path.join(workdir, f"tap-{topic}.err")
    args = [MANAGERCTL, "tap", "--topic", topic, "--stats"] + (["--no-nice"] if prefix else [])
    with open(err, "wb") as err_file, open(err[:-4] + ".out", "wb") as out_file:
        proc = subprocess.Popen(
            [*prefix, *args], env=_env(url), stdout=out_file, stderr=err_file,
            start_new_session=True,
        )  # fmt: skip
    _wait_text(err, "tapping ", proc)
    TAP_CPU_AT_START[proc.pid] = cpu_seconds(proc.pid)  # its start-up is not a copy's cost
    return proc


TAP_CPU_AT_START: dict[int, float] = {}


def settle(proc: subprocess.Popen | None, node=None, quiet: float = 0.3, limit: float = 30.0):
    """Wait until a tap caught up: its queue empty (``node``: the throwaway broker, asked with
    rabbitmqctl, since an exclusive queue answers no other connection), then no CPU used for
    ``quiet`` seconds (a tap at the idle priority may be starved a while, not done)."""
    if proc is None:
        return
    deadline = time.monotonic() + limit
    while node is not None and time.monotonic() < deadline:
        rows = node.list_queues(("name", "messages"))
        if not any(
            int(row["messages"]) for row in rows if row["name"].startswith("managerctl-tap-")
        ):
            break
        time.sleep(0.2)
    last = cpu_seconds(proc.pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_seconds(proc.pid)
        if now == last:
            return
        last = now


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
    taps: dict[str, subprocess.Popen] = {}  # by the topic each one watches
    attached: dict[str, dict] = {}  # their JSON totals
    tap_cpu: dict[str, float] = {}  # their CPU seconds over the whole run
    try:
        print(f"tap keep-up: a burst of {options.burst} casts ...", file=sys.stderr)
        tap_rate, floor, dropped = tap_keepup(url, options.burst, workdir)

        from manager_cli.rpc.client import RPCClient

        plain = Service(url, "plain", workdir)
        tapped = Service(url, "tapped", workdir)
        metered = Service(url, "metrics", workdir, "--metrics-address", "127.0.0.1:0")
        niced = Service(url, "niced", workdir)
        services += [plain, tapped, metered, niced]
        taps[tapped.topic] = attach_tap(url, tapped.topic, workdir)
        taps[niced.topic] = attach_tap(url, niced.topic, workdir, "nice", "-n", "10")
        client = RPCClient(url, exclusive=True)
        variants = {
            "plain (baseline)": plain,
            "tap attached": tapped,
            "metrics on": metered,
            "tap attached at nice 10": niced,
        }
        for service in variants.values():  # warm up
            pipelined(client, service.topic, 300)
        rates: dict[str, list[float]] = {name: [] for name in variants}
        # CPU seconds spent during each variant's rounds: its server, the broker, its tap.
        cpu: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in variants}
        broker_pid = node.pid if node is not None else None
        for number in range(options.rounds):
            print(f"round {number + 1}/{options.rounds} ...", file=sys.stderr)
            order = list(variants.items())
            order = order[number % len(order) :] + order[: number % len(order)]
            for name, service in order:
                tap_proc = taps.get(service.topic)
                pids = (service.proc.pid, broker_pid, tap_proc.pid if tap_proc else None)
                before = [cpu_seconds(pid) for pid in pids]
                rates[name].append(pipelined(client, service.topic, options.calls))
                # A tap at the idle priority catches up after the burst: wait for it, so that
                # its work (and the broker's, delivering the copies) counts here, not in the
                # next variant's round.
                settle(tap_proc, node)
                for i, pid in enumerate(pids):
                    cpu[name][i] += cpu_seconds(pid) - before[i]
        client.close()
        for topic, proc in taps.items():
            tap_cpu[topic] = cpu_seconds(proc.pid) - TAP_CPU_AT_START[proc.pid]
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
            with open(os.path.join(workdir, f"tap-{topic}.out")) as handle:
                attached[topic] = json.loads(handle.read().splitlines()[-1])
    finally:
        for proc in taps.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(20)
        for service in services:
            service.stop()
        if node is not None:
            node.stop()

    print(f"\ntap keep-up ({options.burst} casts in one burst)")
    print(f"{'consumer':<34}{'copies/s':>10}{'vs floor':>10}")
    print(f"{'raw pika, ack only (floor)':<34}{floor:>10.0f}{1:>9.2f}x")
    print(f"{'managerctl tap --stats':<34}{tap_rate:>10.0f}{tap_rate / floor:>9.2f}x")
    print(f"  copies the tap's queue dropped: {dropped}")
    print(
        f"\nserved hostinfo, pipelined echo calls ({options.calls} per round, "
        f"median of {options.rounds}, rounds interleaved)"
    )
    print(
        f"{'service':<34}{'calls/s':>10}{'vs base':>10}  {'target':<10}"
        f"{'CPU us per call: server':>24}{'broker':>8}{'tap':>6}"
    )
    base = rates["plain (baseline)"]
    total_calls = options.calls * options.rounds
    for name, values in rates.items():
        # Each round's ratio to the baseline's round: slow drifts of the machine cancel out.
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        target = ">= 0.95x" if name in ("tap attached", "metrics on") else ""
        server_us, broker_us, tap_us = (1e6 * seconds / total_calls for seconds in cpu[name])
        print(
            f"{name:<34}{statistics.median(values):>10.0f}{ratio:>9.2f}x  {target:<10}"
            f"{server_us:>24.0f}{broker_us:>8.0f}{tap_us:>6.0f}"
        )
    budget = 1e6 * (os.cpu_count() or 1) / statistics.median(base)
    print(
        f"  the machine has {os.cpu_count()} cores: at the baseline's rate, {budget:.0f} us of "
        "CPU per call in all (client, server, broker, tap)"
    )
    # What a copy adds, beside the baseline's own CPU per call: on a CPU-bound machine where
    # all of it came out of the calls' share, the rate would be budget / (budget + extra).
    plain_us = [1e6 * seconds / total_calls for seconds in cpu["plain (baseline)"]]
    for name in ("tap attached", "tap attached at nice 10"):
        server_us, broker_us, tap_us = (1e6 * seconds / total_calls for seconds in cpu[name])
        extra = tap_us + (broker_us - plain_us[1]) + (server_us - plain_us[0])
        print(
            f"  {name}: a copy adds {extra:.0f} us of CPU per call (tap {tap_us:.0f}, broker "
            f"{broker_us - plain_us[1]:+.0f}, server {server_us - plain_us[0]:+.0f}); "
            f"all taken from the calls, that is {budget / (budget + extra):.2f}x"
        )
    for label, service in (("idle priority", tapped), ("nice 10", niced)):
        totals = attached[service.topic]
        per_copy = 1e6 * tap_cpu[service.topic] / max(1, totals["received"])
        print(
            f"  the tap at {label} decoded {totals['received']} copies ({per_copy:.0f} us of "
            f"CPU per copy over the run), its queue dropped {totals['dropped']}"
            f"{'' if totals['dropped_exact'] else ' at least'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

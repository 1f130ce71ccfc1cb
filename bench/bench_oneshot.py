"""Whole-process time of one ``managerctl call`` beside a minimal raw-pika call script.

Starts a throwaway RabbitMQ node (or uses ``--url``) and ``managerctl serve hostinfo``, then
times, interleaved so load hits both alike, the median wall time of:
  - a minimal raw-pika script doing the same call (connect, exclusive reply queue, publish the
    oslo envelope to ``hostinfo.<host>``, wait for the reply, print it);
  - ``managerctl call HOST echo value=1 --topic hostinfo`` (piped, so no spinner and no Rich);
  - ``managerctl ping HOST --topic hostinfo -f value`` and ``managerctl probe HOST --topic
    hostinfo --quiet``.
Target: the managerctl call within 1.3x of the raw-pika process. Prints figures, never fails.

    .venv/bin/python bench/bench_oneshot.py [--runs 20] [--url rabbit://...]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

# The throwaway RabbitMQ / PostgreSQL servers are the test suite's rigs (tests/rigs), not the package's.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))

HOST = "bench-oneshot"

RAW_PIKA_CALL = r"""
import json, sys, uuid
import pika
host, port = sys.argv[1], int(sys.argv[2])
connection = pika.BlockingConnection(pika.ConnectionParameters(
    host=host, port=port, credentials=pika.PlainCredentials("guest", "guest")))
channel = connection.channel()
reply_q = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
msg_id = uuid.uuid4().hex
inner = {"method": "echo", "args": {"value": 1}, "_msg_id": msg_id, "_reply_q": reply_q,
         "_timeout": None, "_unique_id": uuid.uuid4().hex}
body = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(inner)})
channel.basic_publish("openstack", sys.argv[3], body, pika.BasicProperties(
    content_type="application/json", content_encoding="utf-8", expiration="10000"))
for _method, _props, reply in channel.consume(reply_q, auto_ack=True, inactivity_timeout=10):
    message = json.loads(json.loads(reply)["oslo.message"])
    if message.get("_msg_id") == msg_id and message.get("ending"):
        print(json.dumps(message["result"]))
        break
connection.close()
"""


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed


def bench(url: str, port: int, runs: int) -> None:
    managerctl = os.path.join(os.path.dirname(sys.executable), "managerctl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    # The shell may set this; it would make every run recompile managerctl's modules.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(MANAGERCTL_TRANSPORT_URL=url, MANAGERCTL_PERIODIC_FUZZY_DELAY="0")
    service = subprocess.Popen(
        [managerctl, "serve", "hostinfo", "--host", HOST],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(RAW_PIKA_CALL)
    try:
        deadline = time.monotonic() + 30
        ping = [managerctl, "ping", HOST, "--topic", "hostinfo", "-f", "value"]
        while subprocess.run(ping, env=env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("the hostinfo service did not come up")
            time.sleep(0.3)
        commands = {
            "raw pika call process": [
                sys.executable,
                script.name,
                "127.0.0.1",
                str(port),
                f"hostinfo.{HOST}",
            ],
            "managerctl call": [managerctl, "call", HOST, "echo", "value=1", "--topic", "hostinfo"],
            "managerctl ping": ping,
            "managerctl probe --quiet": [
                managerctl,
                "probe",
                HOST,
                "--topic",
                "hostinfo",
                "--quiet",
            ],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():  # warm the page cache and the .pyc files
            timed(argv, env)
        for _ in range(runs):
            for name, argv in commands.items():
                samples[name].append(timed(argv, env))
    finally:
        os.unlink(script.name)
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)
    baseline = statistics.median(samples["raw pika call process"])
    print(f"{'process (median of ' + str(runs) + ')':<32} {'ms':>8} {'x raw pika':>11}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<32} {median:>8.1f} {median / baseline:>11.2f}")
    ratio = statistics.median(samples["managerctl call"]) / baseline
    verdict = "meets" if ratio <= 1.3 else "MISSES"
    print(f"\none-shot managerctl call = {ratio:.2f}x the raw-pika process ({verdict} 1.3x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--url", help="use this broker (guest/guest on 127.0.0.1) instead")
    options = parser.parse_args()
    if options.url:
        port = int(options.url.rsplit(":", 1)[1].split("/")[0])
        bench(options.url, port, options.runs)
        return
    from rigs.rabbitmq import RabbitMQNode

    with RabbitMQNode(name_prefix="managerctl-bench") as node:
        bench(node.url, node.port, options.runs)


if __name__ == "__main__":
    main()

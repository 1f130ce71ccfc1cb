"""Whole-process time of ``managerctl probe`` beside an oslo.messaging probe script doing the same.

Starts a throwaway RabbitMQ node (or uses ``--url``) and one real oslo.messaging RPC server with
a nova-style base API (``tests/probe_peers/oslo_probe_peer.py``), then times, in the same run and
taking turns so that noise hits both alike:

* ``managerctl probe HOST --topic T --quiet``: the base API ping, alive -> exit 0;
* a minimal oslo.messaging script: import oslo_messaging, get_rpc_transport, an RPCClient on
  Target(namespace='baseapi', version='1.0'), ``call(ping, arg=None)`` with a short timeout,
  ``transport.cleanup()``: what a hand-written liveness check does today;
* ``managerctl probe`` of a host nobody serves (exit 69 at once), for reference;
* ``python -c pass``, the floor.

Prints the median of ``--runs`` runs of each and the ratio managerctl / oslo (target: at most
1/3). Not a test: it prints figures and never fails a build.

Every process runs with bytecode caching on, in a throwaway ``PYTHONPYCACHEPREFIX``, as an
installed package runs: with ``PYTHONDONTWRITEBYTECODE`` (set in some development shells) the
editable managerctl would recompile its own modules on every run (some 90 ms) while the
installed oslo.messaging reads the .pyc files pip wrote, which is not the comparison we want.

    .venv/bin/python bench/bench_probe.py [--runs 10] [--url rabbit://...]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The throwaway RabbitMQ / PostgreSQL servers are the test suite's rigs (tests/rigs), not the package's.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))

ROOT = Path(__file__).resolve().parent.parent
PEER_SCRIPT = ROOT / "tests" / "probe_peers" / "oslo_probe_peer.py"
TOPIC = "bench_probe"
SERVER = "bench-host"

OSLO_PROBE = """\
import sys
import warnings

warnings.simplefilter("ignore")
import oslo_messaging
from oslo_config import cfg

url, topic, server = sys.argv[1:4]
cfg.CONF([], project="oslo-probe")
transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=url)
target = oslo_messaging.Target(topic=topic, server=server, namespace="baseapi", version="1.0")
client = oslo_messaging.get_rpc_client(transport, target, timeout=5)
try:
    client.call({}, "ping", arg=None)
    code = 0
except oslo_messaging.MessagingTimeout:
    code = 75
except oslo_messaging.RemoteError:
    code = 0  # any answer proves the service alive
transport.cleanup()
sys.exit(code)
"""


def start_peer(url: str) -> subprocess.Popen:
    peer = subprocess.Popen(
        [sys.executable, str(PEER_SCRIPT), "--url", url, "--topic", TOPIC, "--server", SERVER],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1"),
    )
    assert peer.stdout is not None
    line = peer.stdout.readline()
    if line.strip() != b"READY":
        peer.kill()
        raise SystemExit(f"the oslo server did not start: {line!r}")
    return peer


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str], expect: int) -> tuple[float, float]:
    """(wall, CPU) ms of one whole process; complain if it did not exit ``expect``."""
    cpu = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = (time.perf_counter() - started) * 1000
    if result.returncode != expect:
        raise SystemExit(
            f"{' '.join(argv)} exited {result.returncode}, not {expect}:\n{result.stderr.decode()}"
        )
    return elapsed, (_children_cpu() - cpu) * 1000


def run(url: str, runs: int) -> None:
    python = sys.executable
    managerctl = os.path.join(os.path.dirname(python), "managerctl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    pycache = tempfile.TemporaryDirectory(prefix="bench-probe-pycache-")
    env["PYTHONPYCACHEPREFIX"] = pycache.name
    env["PYTHONWARNINGS"] = "ignore"
    env["MANAGERCTL_TRANSPORT_URL"] = url
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(OSLO_PROBE)
    cases = [
        ("managerctl probe (alive)", [managerctl, "probe", SERVER, "--topic", TOPIC, "-q"], 0),
        ("oslo.messaging probe script", [python, script.name, url, TOPIC, SERVER], 0),
        ("managerctl probe (nobody, 69)", [managerctl, "probe", "nobody", "--topic", TOPIC], 69),
        ("python -c pass", [python, "-c", "pass"], 0),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    peer = start_peer(url)
    try:
        for _name, argv, expect in cases:  # write the bytecode, warm the page cache
            timed(argv, env, expect)
        for _ in range(runs):
            for name, argv, expect in cases:
                wall, used = timed(argv, env, expect)
                times[name].append(wall)
                cpu[name].append(used)
    finally:
        peer.terminate()
        try:
            peer.wait(timeout=20)
        except subprocess.TimeoutExpired:
            peer.kill()
        os.unlink(script.name)
        pycache.cleanup()
    medians = {name: statistics.median(values) for name, values in times.items()}
    title = f"process (median of {runs} runs)"
    print(f"{title:<36} {'wall ms':>8} {'min':>8} {'max':>8} {'CPU ms':>8}")
    for name, values in times.items():
        print(
            f"{name:<36} {medians[name]:>8.1f} {min(values):>8.1f} {max(values):>8.1f} "
            f"{statistics.median(cpu[name]):>8.1f}"
        )
    ratio = medians["managerctl probe (alive)"] / medians["oslo.messaging probe script"]
    cpu_ratio = statistics.median(cpu["managerctl probe (alive)"]) / statistics.median(
        cpu["oslo.messaging probe script"]
    )
    verdict = "meets" if ratio <= 1 / 3 else "MISSES"
    print(
        f"\nmanagerctl probe takes {ratio:.2f}x the wall time of the oslo.messaging script "
        f"({verdict} the 1/3 target); {cpu_ratio:.2f}x its CPU time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--url", help="use this broker instead of a throwaway node")
    options = parser.parse_args()
    if options.url:
        run(options.url, options.runs)
        return
    from rigs.rabbitmq import RabbitMQNode

    print("starting a throwaway RabbitMQ node ...", file=sys.stderr, flush=True)
    with RabbitMQNode("managerctl-bench") as node:
        run(node.url, options.runs)


if __name__ == "__main__":
    main()

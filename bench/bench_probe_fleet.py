"""A fleet check: ``managerctl probe --hosts-file`` over 200 hosts, beside the ways without it.

Starts a throwaway RabbitMQ node (or uses ``--url``) and 200 real oslo.messaging RPC servers of
one topic, each its own ``TOPIC.host-N`` server (threads of one process:
``tests/probe_peers/oslo_fleet_peer.py``), then times, in the same run and taking turns:

* ``managerctl probe --hosts-file hosts.txt --topic T``: every host at once, one connection;
* a shell loop of 200 one-shot ``managerctl probe host-N --topic T --quiet`` processes: what a
  runbook does without a multi-host probe;
* one single-host ``managerctl probe host-0``: the floor of any probe process.

Prints the medians and the ratios (targets: the fleet probe at least 50x faster than the loop,
and at most 3x one probe). Not a test: it prints figures and never fails a build.

    .venv/bin/python bench/bench_probe_fleet.py [--runs 5] [--hosts 200] [--url rabbit://...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The throwaway RabbitMQ / PostgreSQL servers are the test suite's rigs (tests/rigs), not the package's.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))

ROOT = Path(__file__).resolve().parent.parent
PEER_SCRIPT = ROOT / "tests" / "probe_peers" / "oslo_fleet_peer.py"
TOPIC = "bench_fleet"


def start_fleet(url: str, hosts: int) -> subprocess.Popen:
    peer = subprocess.Popen(
        [sys.executable, str(PEER_SCRIPT), "--url", url, "--topic", TOPIC, "--servers", str(hosts)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1"),
        start_new_session=True,
    )
    assert peer.stdout is not None
    line = peer.stdout.readline()
    if line.strip() != b"READY":
        peer.kill()
        raise SystemExit(f"the oslo fleet did not start: {line!r}")
    return peer


def timed(argv: list[str], env: dict[str, str], *, shell: bool = False) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        argv if not shell else argv[0],
        shell=shell,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    elapsed = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise SystemExit(f"{str(argv)[:200]} exited {result.returncode}:\n{result.stderr.decode()}")
    return elapsed


def run(url: str, runs: int, hosts: int) -> None:
    managerctl = os.path.join(os.path.dirname(sys.executable), "managerctl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["MANAGERCTL_TRANSPORT_URL"] = url
    names = [f"host-{n}" for n in range(hosts)]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as hosts_file:
        hosts_file.write("\n".join(names) + "\n")
    loop = (
        f"for h in {' '.join(names)}; do "
        f"{managerctl} probe $h --topic {TOPIC} --quiet || exit $?; done"
    )
    cases = {
        f"probe --hosts-file ({hosts} hosts)": (
            [managerctl, "probe", "--hosts-file", hosts_file.name, "--topic", TOPIC],
            False,
        ),
        "probe host-0 (one host)": ([managerctl, "probe", "host-0", "--topic", TOPIC], False),
        f"shell loop of {hosts} probes": ([loop], True),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    print(f"starting {hosts} oslo.messaging servers ...", file=sys.stderr, flush=True)
    fleet = start_fleet(url, hosts)
    try:
        for argv, shell in cases.values():  # warm the page and bytecode caches
            if not shell:
                timed(argv, env)
        for _ in range(runs):
            for name, (argv, shell) in cases.items():
                times[name].append(timed(argv, env, shell=shell))
    finally:
        os.killpg(fleet.pid, 15)
        try:
            fleet.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(fleet.pid, 9)
        os.unlink(hosts_file.name)
    medians = {name: statistics.median(values) for name, values in times.items()}
    title = f"process (median of {runs} runs)"
    print(f"{title:<36} {'wall ms':>10} {'min':>10} {'max':>10}")
    for name, values in times.items():
        print(f"{name:<36} {medians[name]:>10.1f} {min(values):>10.1f} {max(values):>10.1f}")
    fleet_ms = medians[f"probe --hosts-file ({hosts} hosts)"]
    faster = medians[f"shell loop of {hosts} probes"] / fleet_ms
    over_one = fleet_ms / medians["probe host-0 (one host)"]
    print(
        f"\nthe fleet probe is {faster:.1f}x faster than the loop "
        f"({'meets' if faster >= 50 else 'MISSES'} the 50x target) and takes {over_one:.2f}x "
        f"one single-host probe ({'meets' if over_one <= 3 else 'MISSES'} the 3x target)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--url", help="use this broker instead of a throwaway node")
    options = parser.parse_args()
    if options.url:
        run(options.url, options.runs, options.hosts)
        return
    from rigs.rabbitmq import RabbitMQNode

    print("starting a throwaway RabbitMQ node ...", file=sys.stderr, flush=True)
    with RabbitMQNode("managerctl-bench") as node:
        run(node.url, options.runs, options.hosts)


if __name__ == "__main__":
    main()

"""How fast ``capabilities show`` renders a big store, how fast a collector takes updates in, and
how big the store stays.

1. Render: a SQLite store pre-filled with ``--hosts`` hosts x ``--keys`` capability keys
   (100,000 x 20 by default, as issue 17 asks); the wall time of the whole ``managerctl
   capabilities show`` process, output piped, for json, csv and the (plain, piped) table; best
   of ``--rounds``. Targets: json < 3 s, piped table < 5 s. The Rich table a terminal gets is
   timed too, through a pseudo-terminal.
2. Intake, store alone: ``record_capabilities`` calls/s in one process (every call a change, so
   each one also writes a history row), and ``record_many`` in batches of 1000, on SQLite and,
   when PostgreSQL is installed, PostgreSQL.
3. Intake, collector end to end: ``managerctl serve collector`` started and frozen (SIGSTOP),
   ``--updates`` casts of ``update_service_capabilities`` (cinder's 3.3) fanned out to
   ``scheduler_fanout`` so they queue on its own fanout queue, then thawed: updates/s from the
   first write to the last one in the store (start-up excluded), beside the same run's
   store-alone figures. Targets: >= 5,000/s SQLite, >= 2,000/s PostgreSQL.
4. Store size: ``--day-hosts`` hosts (10,000) publishing every 60 s, each publication a change,
   written through the store's own API with synthetic timestamps, with the default retention
   and the collector's periodic prune (every 10 simulated minutes); the SQLite file's size
   (with its WAL). By default until the history is at its per-host cap and some rounds past it
   (a day holds no more: the size is printed at two points to show it stays flat);
   ``--full-day`` writes all 1,440 rounds.

Not a test: it prints figures and never fails a build.

    .venv/bin/python bench/bench_capabilities.py [--hosts 100000] [--keys 20] [--updates 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import resource
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The throwaway RabbitMQ / PostgreSQL servers are the test suite's rigs (tests/rigs), not the package's.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")


def capabilities_of(host_number: int, keys: int, round_: int = 0) -> list[dict]:
    """``keys`` flattened keys: some nested (dotted), numbers and strings, one that changes."""
    caps: dict = {"round": round_, "load": {"1m": 0.5, "5m": 0.25, "15m": 0.125}}
    for n in range(keys - 4):
        caps[f"key_{n:02d}"] = host_number * n if n % 2 else f"value-{n}"
    return [caps]


def fill_store(url: str, hosts: int, keys: int) -> float:
    from manager_cli.capabilities import open_store

    started = time.perf_counter()
    with open_store(url) as store:
        now = time.time()
        for start in range(0, hosts, 2000):
            store.record_many(
                [("hostinfo", f"host{host:06d}", capabilities_of(host, keys), now)
                 for host in range(start, min(hosts, start + 2000))]
            )  # fmt: skip
    return time.perf_counter() - started


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def time_piped(args: list[str], env: dict[str, str], rounds: int) -> tuple[float, float, int]:
    """Best wall time (s) of the whole process with stdout piped, the CPU seconds (user + system)
    of that run, and the bytes it printed. The CPU time says what the wall time would be on a
    machine nobody else loads."""
    best, cpu, size = float("inf"), 0.0, 0
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run([MANAGERCTL, *args], capture_output=True, env=env, check=False)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.decode(errors="replace"))
        if elapsed < best:
            best, size = elapsed, len(result.stdout)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return best, cpu, size


def time_tty(args: list[str], env: dict[str, str], rounds: int) -> float:
    """Best wall time (s) of the whole process writing to a pseudo-terminal (Rich's table)."""
    best = float("inf")
    for _ in range(rounds):
        main_fd, child_fd = pty.openpty()
        started = time.perf_counter()
        proc = subprocess.Popen(
            [MANAGERCTL, *args],
            stdin=subprocess.DEVNULL,
            stdout=child_fd,
            stderr=child_fd,
            env={**env, "COLUMNS": "400"},
        )
        os.close(child_fd)
        while True:  # drain, or the child blocks on a full terminal buffer
            ready, _, _ = select.select([main_fd], [], [], 0.5)
            if ready:
                try:
                    if not os.read(main_fd, 1 << 16):
                        break
                except OSError:
                    break
            elif proc.poll() is not None:
                break
        proc.wait()
        best = min(best, time.perf_counter() - started)
        os.close(main_fd)
    return best


def bench_render(options: argparse.Namespace, workdir: Path) -> None:
    url = f"sqlite:///{workdir / 'render.sqlite'}"
    filled = fill_store(url, options.hosts, options.keys)
    print(
        f"\nrender `capabilities show`: {options.hosts} hosts x {options.keys} keys "
        f"(store filled in {filled:.1f}s), whole process, best of {options.rounds}"
    )
    env = clean_env(MANAGERCTL_CAPABILITIES_STORE=url)
    baseline, baseline_cpu, _ = time_piped(["--version"], env, options.rounds)
    print(f"{'view':<28}{'seconds':>9}{'cpu s':>9}{'MB out':>9}{'target':>9}")
    print(f"{'managerctl --version':<28}{baseline:>9.3f}{baseline_cpu:>9.3f}{'':>9}{'':>9}")
    for label, args, target in (
        ("-f json", ["-f", "json"], "< 3 s"),
        ("-f csv", ["-f", "csv"], ""),
        ("table (piped)", [], "< 5 s"),
        ("-f json --host one", ["-f", "json", "--host", "host000042"], ""),
    ):
        seconds, cpu, size = time_piped(["capabilities", "show", *args], env, options.rounds)
        print(f"{label:<28}{seconds:>9.3f}{cpu:>9.3f}{size / 1e6:>9.2f}{target:>9}")
    if not options.no_tty:
        seconds = time_tty(["capabilities", "show"], env, 1)
        print(f"{'table (terminal, Rich)':<28}{seconds:>9.3f}{'':>9}{'':>9}{'':>9}")


def bench_store_intake(url: str, label: str, updates: int) -> None:
    from manager_cli.capabilities import open_store

    with open_store(url) as store:
        started = time.perf_counter()
        for n in range(updates):
            store.record_capabilities("hostinfo", f"h{n % 100}", capabilities_of(n % 100, 20, n))
        changed = time.perf_counter() - started
        started = time.perf_counter()
        for n in range(updates):
            host = n % 100
            store.record_capabilities("hostinfo", f"h{host}", capabilities_of(host, 20, -1))
        same = time.perf_counter() - started
    # The second pass writes every host's "-1" once, then touches only.
    print(f"{label:<28}{updates / changed:>12.0f}{updates / same:>14.0f}")
    with open_store(url) as store:
        batch = [
            ("hostinfo", f"b{n % 100}", capabilities_of(n % 100, 20, n), time.time())
            for n in range(updates)
        ]
        started = time.perf_counter()
        for start in range(0, updates, 1000):
            store.record_many(batch[start : start + 1000])
        batched = time.perf_counter() - started
    print(f"{label + ', batches of 1000':<28}{updates / batched:>12.0f}")


def store_bytes(path: str) -> int:
    """The SQLite file and its WAL."""
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def bench_day(url: str, hosts: int, full_day: bool) -> None:
    """``hosts`` publishing a change every 60 s, default retention, the collector's pruning."""
    from manager_cli.capabilities import open_store
    from manager_cli.capabilities.store import DEFAULT_HISTORY_KEEP, DEFAULT_HISTORY_MAX_AGE

    day = 24 * 60
    with open_store(url) as store:
        cap = store.history_keep + store.prune_every
        rounds = day if full_day or store.history_keep <= 0 else min(day, cap + 30)
        print(
            f"{hosts} hosts, a change every 60 s, keep {DEFAULT_HISTORY_KEEP} changes a host "
            f"and {DEFAULT_HISTORY_MAX_AGE / 3600:g} h (SQLite); {rounds} rounds"
            + ("" if rounds == day else f" (at most {cap} rows a host after {cap} rounds)")
        )
        path = url.removeprefix("sqlite:///")
        started = time.perf_counter()
        seen = []
        start = 1_000_000.0
        for round_ in range(rounds):
            at = start + 60 * round_
            for first in range(0, hosts, 2000):
                store.record_many(
                    [("hostinfo", f"host{h:05d}", capabilities_of(h, 20, round_), at)
                     for h in range(first, min(hosts, first + 2000))]
                )  # fmt: skip
            if round_ % 10 == 9:  # the collector's prune_store, every 600 s
                store.prune_history(DEFAULT_HISTORY_MAX_AGE, now=at)
                store.reclaim()
            if round_ + 1 in (cap, rounds):
                with store._backend.read() as db:
                    rows = int(db.query("SELECT count(*) FROM managerctl_capability_changes")[0][0])
                seen.append((round_ + 1, rows, store_bytes(path)))
        seconds = time.perf_counter() - started
    for done, rows, size in seen:
        print(
            f"  after {done:>4} rounds ({done / 60:4.1f} h): {rows:>9} history rows, "
            f"{size / 1e6:7.1f} MB ({size / hosts / 1e3:.1f} kB a host, "
            f"{size / max(rows, 1):.0f} B a history row)"
        )
    print(f"  written in {seconds:.0f}s")


def bench_collector(options: argparse.Namespace, store_url: str, label: str, rabbit_url: str):
    """Start a collector, freeze it, queue the casts on its scheduler fanout queue, thaw it:
    the rate from the first write seen to the last."""
    import pika

    from manager_cli.capabilities import open_store
    from manager_cli.rpc import transport, wire

    hosts = 500
    env = clean_env(
        MANAGERCTL_TRANSPORT_URL=rabbit_url,
        MANAGERCTL_CAPABILITIES_STORE=store_url,
        MANAGERCTL_COLLECTOR_TOPICS="",
        MANAGERCTL_PERIODIC_FUZZY_DELAY="0",
    )
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [MANAGERCTL, "serve", "collector", "--host", "bench-collector"],
        env=env,
        stdout=log,
        stderr=log,
    )
    connection = transport.connect(rabbit_url)
    try:
        channel = connection.channel()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # The collector's own queue on the fanout exists once it listens.
            with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                probe = connection.channel()
                probe.exchange_declare("scheduler_fanout", passive=True)
                probe.close()
                break
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGSTOP)  # the casts queue up while it cannot read them
        props = pika.BasicProperties(**wire.BASE_PROPERTIES)
        for n in range(options.updates):
            body = wire.encode_envelope(
                wire.build_request(
                    "update_service_capabilities",
                    {
                        "service_name": "hostinfo",
                        "host": f"host{n % hosts:04d}",
                        "capabilities": capabilities_of(n % hosts, 20, n),
                    },
                    context={"user": "bench"},
                    version="3.3",
                )
            )
            channel.basic_publish("scheduler_fanout", "", body, props)
        started = time.perf_counter()
        proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 600
        first_seen: tuple[float, int] | None = None
        with open_store(store_url) as store:
            while time.monotonic() < deadline:
                changes = _count_changes(store)
                if changes and first_seen is None:
                    first_seen = (time.perf_counter(), changes)
                if changes >= options.updates:
                    break
                time.sleep(0.05)
            drained = time.perf_counter() - started
        # Writes are batched, so arrival times say little: the rate is what reached the
        # store between the first write seen and the last.
        assert first_seen is not None
        span = time.perf_counter() - first_seen[0]
        rate = (options.updates - first_seen[1]) / span if span > 0 else float("nan")
        print(f"{label:<28}{rate:>12.0f}{drained:>14.1f}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        if proc.poll() is None:
            proc.kill()
        log.close()
        for name in ("managerctl", "managerctl.bench-collector"):
            with contextlib.suppress(Exception):
                connection.channel().queue_delete(name)
        connection.close()


def _count_changes(store) -> int:
    with store._backend.read() as db:
        return int(db.query("SELECT count(*) FROM managerctl_capability_changes")[0][0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=20_000, help="collector casts to queue")
    parser.add_argument("--store-updates", type=int, default=5_000)
    parser.add_argument("--url", help="use this RabbitMQ instead of a throwaway node")
    parser.add_argument("--no-tty", action="store_true", help="skip the Rich (terminal) table")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-render", action="store_true", help="skip the render figures")
    parser.add_argument(
        "--day-hosts", type=int, default=10_000, help="hosts of the store-size day (0: skip)"
    )
    parser.add_argument("--full-day", action="store_true", help="write all 1,440 rounds")
    options = parser.parse_args()
    print(
        f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    )

    with tempfile.TemporaryDirectory(prefix="bench-capabilities-") as tmp:
        workdir = Path(tmp)
        if not options.skip_render:
            bench_render(options, workdir)

        postgres = None
        if not options.skip_postgres:
            from rigs.postgres import PostgresServer

            try:
                postgres = PostgresServer().start()
            except RuntimeError as exc:
                print(f"(no PostgreSQL figures: {str(exc).splitlines()[0]})", file=sys.stderr)
        try:
            print(f"\nstore intake, one process, {options.store_updates} updates")
            print(f"{'store':<28}{'changed/s':>12}{'unchanged/s':>14}")
            bench_store_intake(
                f"sqlite:///{workdir / 'intake.sqlite'}", "SQLite", options.store_updates
            )
            if postgres is not None:
                bench_store_intake(
                    postgres.create_database("intake"), "PostgreSQL", options.store_updates
                )

            if options.day_hosts:
                print("\nstore size after a simulated day")
                bench_day(
                    f"sqlite:///{workdir / 'day.sqlite'}", options.day_hosts, options.full_day
                )

            node = None
            rabbit_url = options.url
            if rabbit_url is None:
                from rigs.rabbitmq import RabbitMQNode

                node = RabbitMQNode("managerctl-bench")
                print(
                    f"\nstarting a throwaway RabbitMQ node ({node.nodename}) ...", file=sys.stderr
                )
                node.start()
                rabbit_url = node.url
            try:
                print(f"\ncollector intake: {options.updates} queued casts, `serve collector`")
                print(f"{'store':<28}{'updates/s':>12}{'drained in s':>14}")
                bench_collector(
                    options, f"sqlite:///{workdir / 'collector.sqlite'}", "SQLite", rabbit_url
                )
                if postgres is not None:
                    bench_collector(
                        options, postgres.create_database("collector"), "PostgreSQL", rabbit_url
                    )
            finally:
                if node is not None:
                    node.stop()
        finally:
            if postgres is not None:
                postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

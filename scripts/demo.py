"""The README demo: the bundled hostinfo manager end to end, through the real console script.

1. its periodic tasks run on demand, and the capabilities they gather;
2. an RPC round trip: a throwaway RabbitMQ node (or the broker already on 127.0.0.1:5672 with
   --use-local-broker), ``managerctl serve hostinfo`` in the background, then ``ping``, ``call``
   and remote ``run-periodic`` / ``periodic list`` against it; everything started is stopped.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

from manager_cli.redact import mask_url_passwords

LOCAL_BROKER_URL = "rabbit://guest:guest@127.0.0.1:5672/"
DEMO_HOST = "demo-host"


def _managerctl() -> str:
    candidate = os.path.join(os.path.dirname(sys.executable), "managerctl")
    return candidate if os.path.exists(candidate) else "managerctl"


def _banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> int:
    """Show and run one managerctl command, as a person would type it."""
    shown = "managerctl " + " ".join(shlex.quote(arg) for arg in args)
    print(f"$ {mask_url_passwords(shown)}", flush=True)
    result = subprocess.run([_managerctl(), *args], env=env, check=False)
    if check and result.returncode != 0:
        raise SystemExit(f"demo: `{shown}` exited {result.returncode}")
    return result.returncode


def _local_broker_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_for_service(env: dict[str, str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [_managerctl(), "ping", DEMO_HOST, "--topic", "hostinfo", "--timeout", "2"],
            env=env,
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return
        time.sleep(0.3)
    raise SystemExit("demo: the hostinfo service did not come up; see its log above")


def local_part() -> None:
    _banner("the managers this installation knows")
    run("managers", "list")
    _banner("what hostinfo is: RPC API, methods, periodic tasks, hooks")
    run("managers", "show", "hostinfo")
    _banner("hostinfo's periodic tasks, run now, in this process")
    run("run-periodic", "hostinfo")
    _banner("the capabilities they gathered (what the service publishes to the scheduler)")
    run("capabilities", "gather", "hostinfo")


def rpc_part(url: str) -> None:
    env = dict(os.environ, MANAGERCTL_TRANSPORT_URL=url, MANAGERCTL_PERIODIC_FUZZY_DELAY="0")
    _banner(f"serving hostinfo as host {DEMO_HOST} on {mask_url_passwords(url)}")
    service = subprocess.Popen(
        [_managerctl(), "serve", "hostinfo", "--host", DEMO_HOST],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_service(env)
        print(f"(service pid {service.pid} is up)")
        _banner("RPC round trips with managerctl")
        run("ping", DEMO_HOST, "--topic", "hostinfo", env=env)
        run(
            "call", DEMO_HOST, "echo", "value=hello from managerctl", "--topic", "hostinfo", env=env
        )
        run("call", DEMO_HOST, "get_facts", "--topic", "hostinfo", "-f", "table", env=env)
        _banner("the running service's periodic tasks, driven remotely")
        run("run-periodic", "hostinfo", "--host", DEMO_HOST, "--task", "gather_cpu", env=env)
        run("periodic", "list", "hostinfo", "--host", DEMO_HOST, env=env)
        run("ping", "--all", "--topic", "hostinfo", "--expect", "1", env=env)
        _banner("a remote failure comes back as exit 1, with the remote error")
        code = run("call", DEMO_HOST, "fail", "--topic", "hostinfo", env=env, check=False)
        print(f"(exit {code})")
        _banner("a host nobody serves fails at once with exit 69")
        code = run("call", "no-such-host", "echo", "--topic", "hostinfo", env=env, check=False)
        print(f"(exit {code})")
    finally:
        _banner("stopping the service (SIGTERM)")
        service.send_signal(signal.SIGTERM)
        try:
            _, log = service.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            _, log = service.communicate()
        print(f"(service exited {service.returncode}); its log, without tracebacks:")
        # Log records start with a date; traceback lines (of the deliberate failure) do not.
        records = [line for line in (log or "").splitlines() if line[:2].isdigit()]
        for line in records[-14:]:
            print("  " + mask_url_passwords(line))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--use-local-broker",
        action="store_true",
        help=f"use the broker at {LOCAL_BROKER_URL} instead of starting a throwaway one",
    )
    parser.add_argument("--skip-rpc", action="store_true", help="only the in-process part")
    options = parser.parse_args(argv)
    local_part()
    if options.skip_rpc:
        return
    if options.use_local_broker:
        if not _local_broker_answers():
            raise SystemExit("demo: nothing answers on 127.0.0.1:5672")
        rpc_part(LOCAL_BROKER_URL)
        return
    # The throwaway node is the test suite's rig (tests/rigs), not part of the package.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
    from rigs.rabbitmq import RabbitMQNode

    _banner("starting a throwaway RabbitMQ node on a free loopback port")
    started = time.monotonic()
    with RabbitMQNode(name_prefix="managerctl-demo") as node:
        print(f"({node.nodename} up on port {node.port} in {time.monotonic() - started:.1f} s)")
        rpc_part(node.url)
        _banner("stopping the throwaway RabbitMQ node")
    print("\ndemo complete.")


if __name__ == "__main__":
    main()

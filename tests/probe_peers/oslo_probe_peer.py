"""A real oslo.messaging RPC server to probe, run as a subprocess by the probe tests and bench.

Usage::

    python oslo_probe_peer.py --topic T --server S [--url URL] [--config-file F]...
        [--exchange E] [--baseapi {1.1,1.0,none}] [--ping-delay SECONDS] [--rpc-ping]
        [--threads N]

Without ``--url`` the transport comes from the config files' ``transport_url``, and without
``--exchange`` the exchange from their ``control_exchange``, as an OpenStack service reads its own
``nova.conf``. It prints ``READY`` once ``server.start()`` returned (its queues exist and are
consumed), and on SIGTERM or SIGINT releases any blocked method and stops cleanly.

Endpoints (``get_rpc_server(executor='threading')``):

* ``Work`` (no namespace, version 1.0): ``block(seconds)`` holds an executor thread until the
  time is up or the peer stops; with ``--threads 1`` one ``block`` leaves nobody to answer.
  ``whoami`` answers the server name.
* ``BaseAPI`` (namespace ``baseapi``, version ``--baseapi``; none leaves it out), nova-style:
  ``ping(arg)`` answers ``{'service': 'nova-like', 'arg': arg}``, after ``--ping-delay``
  seconds (cut short when the peer stops).

``--rpc-ping`` sets ``[DEFAULT] rpc_ping_enabled = true`` (oslo adds ``oslo_rpc_server_ping``);
``--threads`` sets ``executor_thread_pool_size`` (oslo's default is 64).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import warnings

# oslo.messaging warns about eventlet at import and about the executor argument: noise here.
warnings.simplefilter("ignore")

import oslo_messaging  # noqa: E402
from oslo_config import cfg  # noqa: E402

# Set when the peer stops: blocked methods return at once, so the server can stop.
RELEASE = threading.Event()


class Work:
    target = oslo_messaging.Target(version="1.0")

    def __init__(self, server: str) -> None:
        self.server = server

    def block(self, context, seconds):
        RELEASE.wait(seconds)
        return "released"

    def whoami(self, context):
        return self.server


def base_api(version: str) -> object:
    class BaseAPI:
        """Like nova's BaseAPI: namespace 'baseapi'."""

        target = oslo_messaging.Target(namespace="baseapi", version=version)

        def __init__(self, ping_delay: float) -> None:
            self.ping_delay = ping_delay

        def ping(self, context, arg):
            if self.ping_delay:
                RELEASE.wait(self.ping_delay)
            return {"service": "nova-like", "arg": arg}

        def get_backdoor_port(self, context):
            return None

    return BaseAPI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--url")
    parser.add_argument("--config-file", action="append", default=[])
    parser.add_argument("--exchange")
    parser.add_argument("--baseapi", choices=("1.1", "1.0", "none"), default="1.1")
    parser.add_argument("--ping-delay", type=float, default=0.0)
    parser.add_argument("--rpc-ping", action="store_true")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        stream=sys.stderr,
        format=f"[probe peer {args.server}] %(levelname)s %(name)s: %(message)s",
    )

    # The peer's own settings go in a file read after the given ones, so they win; a reply to a
    # probe that gave up (its exclusive reply queue is gone) is retried for 2 s, not 60.
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as overrides:
        overrides.write("[DEFAULT]\n")
        if args.exchange:
            overrides.write(f"control_exchange = {args.exchange}\n")
        overrides.write(f"rpc_ping_enabled = {'true' if args.rpc_ping else 'false'}\n")
        if args.threads:
            overrides.write(f"executor_thread_pool_size = {args.threads}\n")
        overrides.write("[oslo_messaging_rabbit]\nkombu_missing_consumer_retry_timeout = 2\n")
    files = [*args.config_file, overrides.name]
    try:
        cfg.CONF([arg for path in files for arg in ("--config-file", path)], project="probe-peer")
    finally:
        os.unlink(overrides.name)

    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=args.url)
    target = oslo_messaging.Target(topic=args.topic, server=args.server)
    endpoints: list[object] = [Work(args.server)]
    if args.baseapi != "none":
        endpoints.append(base_api(args.baseapi)(args.ping_delay))
    server = oslo_messaging.get_rpc_server(transport, target, endpoints, executor="threading")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    server.start()
    print("READY", flush=True)
    while not stop.wait(0.2):
        pass
    RELEASE.set()
    server.stop()
    waiter = threading.Thread(target=server.wait, daemon=True)
    waiter.start()
    waiter.join(5)
    transport.cleanup()
    sys.stdout.flush()
    sys.stderr.flush()
    # The executor's threads are not daemons: never let one that is still busy hold the exit.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())

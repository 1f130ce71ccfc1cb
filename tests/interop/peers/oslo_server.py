"""A real oslo.messaging RPC server, run as a subprocess peer by the interop tests.

Usage::

    python oslo_server.py URL TOPIC SERVER EXCHANGE {basic,nova} [--rpc-ping] [--record-file F]

It prints ``READY`` on stdout once ``server.start()`` returned (its queues exist and are
consumed), and stops cleanly (``server.stop()``, ``server.wait()``, ``transport.cleanup()``, so
its fanout queue is deleted) on SIGTERM or SIGINT.

Endpoint sets:

* ``basic``: one endpoint at target version 1.3 (add, echo, fail, boom, slow, whoami, record,
  get_context, odd_types).
* ``nova``: the same, plus a nova-style base API endpoint (namespace ``baseapi``, version 1.1)
  whose ``ping`` answers ``{'service': 'nova-like', 'arg': arg}``.

``--rpc-ping`` sets ``[DEFAULT] rpc_ping_enabled = true`` (oslo then adds
``oslo_rpc_server_ping``). The control exchange is set through a config file, as a deployment
sets it, so ``[DEFAULT] control_exchange`` is what the server uses.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import signal
import sys
import tempfile
import threading
import time

import interop_errors
import oslo_messaging
from oslo_config import cfg


class BasicEndpoint:
    target = oslo_messaging.Target(version="1.3")

    def __init__(self, server: str, record_file: str | None) -> None:
        self.server = server
        self.record_file = record_file
        self._lock = threading.Lock()

    def add(self, context, a, b):
        return a + b

    def echo(self, context, value):
        return value

    def fail(self, context):
        raise ValueError(f"deliberate failure from {self.server}")

    def boom(self, context):
        raise interop_errors.Boom(f"boom from {self.server}")

    def slow(self, context, seconds):
        time.sleep(seconds)
        return f"slept {seconds}"

    def whoami(self, context):
        return self.server

    def get_context(self, context):
        return context

    def odd_types(self, context):
        """Values JSON has no type for: oslo's jsonutils turns them into plain JSON."""
        return {
            "when": datetime.datetime(2024, 1, 2, 3, 4, 5, 678),
            "ids": {3, 1, 2},
            "pair": (1, (2, 3)),
        }

    def record(self, context, value):
        if not self.record_file:
            raise RuntimeError("no --record-file given")
        with self._lock, open(self.record_file, "a", encoding="utf-8") as f:
            f.write(f"{self.server} {value}\n")
        return None


class NovaLikeBaseAPI:
    """Like nova's BaseRPCAPI: namespace 'baseapi', version 1.1."""

    target = oslo_messaging.Target(namespace="baseapi", version="1.1")

    def ping(self, context, arg):
        return {"service": "nova-like", "arg": arg}

    def get_backdoor_port(self, context):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("topic")
    parser.add_argument("server")
    parser.add_argument("exchange")
    parser.add_argument("endpoints", choices=("basic", "nova"))
    parser.add_argument("--rpc-ping", action="store_true")
    parser.add_argument("--record-file")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        stream=sys.stderr,
        format=f"[peer {args.server}] %(levelname)s %(name)s: %(message)s",
    )

    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as conf_file:
        conf_file.write("[DEFAULT]\n")
        conf_file.write(f"control_exchange = {args.exchange}\n")
        conf_file.write(f"rpc_ping_enabled = {'true' if args.rpc_ping else 'false'}\n")
    try:
        cfg.CONF(["--config-file", conf_file.name], project="interop-peer")
    finally:
        os.unlink(conf_file.name)

    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=args.url)
    target = oslo_messaging.Target(topic=args.topic, server=args.server)
    endpoints: list[object] = [BasicEndpoint(args.server, args.record_file)]
    if args.endpoints == "nova":
        endpoints.append(NovaLikeBaseAPI())
    server = oslo_messaging.get_rpc_server(transport, target, endpoints, executor="threading")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    server.start()
    print("READY", flush=True)
    while not stop.wait(0.2):
        pass
    server.stop()
    server.wait()
    transport.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

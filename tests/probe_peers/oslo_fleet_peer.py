"""Many real oslo.messaging RPC servers in one process: a fleet to probe, for bench_probe_fleet.

Usage::

    python oslo_fleet_peer.py --url URL --topic T --servers N [--prefix host-]

Starts N oslo.messaging RPC servers (``get_rpc_server(executor='threading')``) of topic T, named
``<prefix>0`` .. ``<prefix>N-1``, all on one transport, each with a nova-style base API
(namespace ``baseapi``, version 1.1: ``ping(arg)``). Prints ``READY`` once every server
consumes its queues, and stops them all on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import warnings

warnings.simplefilter("ignore")

import oslo_messaging  # noqa: E402
from oslo_config import cfg  # noqa: E402


class BaseAPI:
    target = oslo_messaging.Target(namespace="baseapi", version="1.1")

    def __init__(self, server: str) -> None:
        self.server = server

    def ping(self, context, arg):
        return {"service": "fleet", "arg": arg}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--prefix", default="host-")
    options = parser.parse_args()
    # Few executor threads each: 200 servers x oslo's default of 64 would be 12,800 threads.
    # The option is registered only when a server is made, so it comes from a config file.
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as conf:
        conf.write("[DEFAULT]\nexecutor_thread_pool_size = 2\n")
    cfg.CONF([], project="fleet-peer", default_config_files=[conf.name])
    os.unlink(conf.name)
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=options.url)
    servers = []
    for number in range(options.servers):
        name = f"{options.prefix}{number}"
        target = oslo_messaging.Target(topic=options.topic, server=name)
        server = oslo_messaging.get_rpc_server(
            transport, target, [BaseAPI(name)], executor="threading"
        )
        server.start()
        servers.append(server)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("READY", flush=True)
    stop.wait()
    for server in servers:
        server.stop()
    for server in servers:
        server.wait()
    transport.cleanup()
    sys.exit(0)


if __name__ == "__main__":
    main()

"""Three RabbitMQ 3.10 nodes clustered on loopback (design/RABBITMQ.md "A cluster on one machine").

Each node is a :class:`RabbitMQNode` (own name, AMQP and dist ports, state dir) whose Erlang
distribution listens on 127.0.0.1 only. The nodes start side by side, then the second and the
third join the first. :meth:`RabbitMQCluster.stop` stops every node still running and removes
all state, whatever happened before.
"""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor

from .rabbitmq import RabbitMQNode


class ClusterNode(RabbitMQNode):
    def env(self) -> dict[str, str]:
        env = super().env()
        # The dist port would otherwise listen on every interface.
        env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] = (
            "-kernel inet_dist_use_interface {127,0,0,1} "
            + env.get("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "")
        )
        return env


class RabbitMQCluster:
    def __init__(self, size: int = 3) -> None:
        self.nodes = [ClusterNode(f"managerctl-test-c{n + 1}") for n in range(size)]

    @property
    def url(self) -> str:
        """A multi-host transport URL, the first node first (managerctl tries them in order)."""
        hosts = ",".join(f"guest:guest@127.0.0.1:{node.port}" for node in self.nodes)
        return f"rabbit://{hosts}/"

    def node_for(self, nodename: str) -> ClusterNode:
        return next(node for node in self.nodes if node.nodename == nodename)

    def start(self, timeout: float = 120) -> RabbitMQCluster:
        try:
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                for future in [pool.submit(node.start, timeout) for node in self.nodes]:
                    future.result()
            first = self.nodes[0]
            for node in self.nodes[1:]:
                node.rabbitmqctl("stop_app")
                node.rabbitmqctl("join_cluster", first.nodename)
                node.rabbitmqctl("start_app")
            running = self.running_nodes(first)
            if sorted(running) != sorted(n.nodename for n in self.nodes):
                raise RuntimeError(f"the cluster runs {running}, not all three nodes")
        except BaseException:
            self.stop()
            raise
        return self

    def running_nodes(self, via: RabbitMQNode) -> list[str]:
        status = json.loads(via.rabbitmqctl("cluster_status", "--formatter", "json"))
        return status["running_nodes"]

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            for future in [pool.submit(node.stop, 30) for node in self.nodes]:
                with contextlib.suppress(Exception):
                    future.result()

    def __enter__(self) -> RabbitMQCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

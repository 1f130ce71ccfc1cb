"""Do no harm (issue 13 items 1, 2, 4, 8): managerctl's services beside real schedulers.

Two ``serve collector`` (one with nova.conf, one with cinder.conf and the cinder-scheduler
topic) and two served managers run for more than two heartbeat intervals. Meanwhile every one
of N requests meant for nova-scheduler and cinder-scheduler must be answered by the real
scheduler, and no real service may log an RPC ERROR for anything managerctl sent by itself.
"""

from __future__ import annotations

import json
import time

from peers_support import (
    CINDER_HOST,
    NOVA_HOST,
    REPORT_INTERVAL,
    SERVED_HOSTS,
    Cloud,
    Fleet,
    format_errors,
    managerctl,
)

N_CALLS = 8


def _heartbeat_hosts(fleet: Fleet) -> set[str]:
    hosts: set[str] = set()
    for store in (fleet.nova_store, fleet.cinder_store):
        result = managerctl("services", "list", "--store-url", store, "-f", "json")
        if result.returncode == 0:
            hosts.update(row.get("host") for row in json.loads(result.stdout or "[]"))
    return hosts


def test_every_request_to_nova_scheduler_is_answered_by_it(cloud: Cloud, fleet: Fleet) -> None:
    fleet.require("collector-nova", "hostinfo-a", "hostinfo-b")
    # Past two heartbeat intervals of the served managers before the first request.
    time.sleep(2 * REPORT_INTERVAL + 1)
    answers = []
    for i in range(N_CALLS):
        result = managerctl(
            "--config-file",
            cloud.nova_conf,
            "call",
            "-",
            "ping",
            f"arg=peers-{i}",
            "--topic",
            "scheduler",
            "--exchange",
            "nova",
            "--namespace",
            "baseapi",
            "--version",
            "1.0",
            "--timeout",
            "20",
        )
        assert result.returncode == 0, result
        answers.append(result.json())
    # nova's base API answers {"service": "scheduler", "arg": ...}; anything else (a "host",
    # "service": "collector") was a managerctl process taking nova-scheduler's requests.
    assert answers == [{"service": "scheduler", "arg": f"peers-{i}"} for i in range(N_CALLS)]


def test_every_request_to_cinder_scheduler_is_answered_by_it(cloud: Cloud, fleet: Fleet) -> None:
    fleet.require("collector-cinder", "hostinfo-a", "hostinfo-b")
    time.sleep(2 * REPORT_INTERVAL + 1)
    for _ in range(N_CALLS):
        result = managerctl(
            "--config-file",
            cloud.cinder_conf,
            "call",
            "-",
            "get_pools",
            "--topic",
            "cinder-scheduler",
            "--version",
            "3.0",
            "--timeout",
            "20",
        )
        assert result.returncode == 0, result
        pools = result.json()
        assert isinstance(pools, list) and pools, result
        assert all(p["name"].startswith("peerhost@") for p in pools), result


def test_no_real_service_consumes_a_managerctl_heartbeat_or_logs_an_error(
    cloud: Cloud, fleet: Fleet, fleet_marks: dict[str, int], peer_broker
) -> None:
    fleet.require("collector-nova", "collector-cinder", "hostinfo-a", "hostinfo-b")
    # Heartbeats flow, and the collectors keep them...
    deadline = time.monotonic() + 6 * REPORT_INTERVAL + 10
    while not set(SERVED_HOSTS) <= _heartbeat_hosts(fleet) and time.monotonic() < deadline:
        time.sleep(1)
    assert set(SERVED_HOSTS) <= _heartbeat_hosts(fleet), "no heartbeats reached a collector"
    time.sleep(2 * REPORT_INTERVAL + 1)
    # ...without a single RPC ERROR in any real service's log since managerctl started.
    errors = cloud.rpc_errors_since(fleet_marks)
    assert not errors, format_errors(errors)
    # And no managerctl process joined a real scheduler's shared queues.
    consumers = {q["name"]: q["consumers"] for q in peer_broker.list_queues()}
    assert consumers["scheduler"] == 1
    assert consumers["cinder-scheduler"] == 1
    own = {f"scheduler.{NOVA_HOST}", f"cinder-scheduler.{CINDER_HOST}"}
    joined = [
        name
        for name, count in consumers.items()
        if name.startswith(("scheduler.", "cinder-scheduler.")) and name not in own and count
    ]
    assert not joined, f"managerctl consumes a real scheduler's queue: {joined}"

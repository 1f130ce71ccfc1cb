"""Stopping the node a served manager and its caller are on, while calls flow (issue 14).

Three 3.10 nodes clustered on loopback (tests/rigs/cluster.py), quorum queues (oslo's
``rabbit_quorum_queue`` + ``rabbit_transient_quorum_queue``) and a multi-host transport URL
whose first host is node A. ``managerctl serve`` runs a manager that appends every request it
runs to a file. A caller makes calls at a fixed rate, and a second client casts with publisher
confirms (a confirmed cast is one a quorum queue holds). Node A is stopped (``rabbitmqctl
stop``) or crashed (SIGKILL of its VM) mid-run. Then:

- the served manager is consuming again from another node within a few seconds,
- calls succeed again, nothing restarted,
- no request ran twice, and every confirmed cast ran (none lost).

The figures (outage seen by the caller, failed calls, lost, duplicates) are printed and kept
in ``cluster-failover-<how>.json`` beside the test's temp dir, for the record, never for
pass/fail.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from rigs.cli import Served, clean_env, unique, write_config
from rigs.cluster import RabbitMQCluster

RECORDER_MODULE = """\
import os

from manager_cli.manager import Manager

RUN_FILE = os.environ["RECORDER_FILE"]


class Recorder(Manager):
    \"\"\"Appends one line per request it runs: a repeat or a loss shows in the file.\"\"\"

    TOPIC = os.environ["RECORDER_TOPIC"]

    def record(self, context, token):
        with open(RUN_FILE, "a") as runs:
            runs.write(token + "\\n")
        return token
"""

CALLS = 200
RATE = 20.0  # calls per second: 10 s of calls, node A stopped after the first 2 s
STOP_AT = 40
# A graceful stop closes the clients' connections at once, but the node's quorum queue leaders
# go only when its VM exits (seconds later on a loaded machine), and that election is a second
# outage: the loop goes on until SETTLE seconds after it, MAX_CALLS at most.
SETTLE = 5.0
MAX_CALLS = 600
CALL_TIMEOUT = 10.0
# oslo's retry settings, shortened: the defaults wait up to 30 s between tries.
FAST_RETRY = {"rabbit_retry_interval": 0.5, "rabbit_retry_backoff": 0.5, "rabbit_interval_max": 1}
QUORUM = {"rabbit_quorum_queue": True, "rabbit_transient_quorum_queue": True}


@pytest.fixture(scope="module")
def cluster():
    rig = RabbitMQCluster(3)
    try:
        rig.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start a three-node RabbitMQ cluster: {exc}", pytrace=False)
    try:
        yield rig
    finally:
        rig.stop()


def _served_ports(node, pid: int) -> list[int]:
    """AMQP ports (so: nodes) the connections of process ``pid`` are on, cluster-wide."""
    rows = json.loads(
        node.rabbitmqctl("list_connections", "port", "client_properties", "--formatter", "json")
    )
    ports = []
    for row in rows:
        props = {item[0]: item[2] for item in row["client_properties"]}
        if str(props.get("connection_name", "")).split(":")[1:2] == [str(pid)]:
            ports.append(row["port"])
    return ports


def _reconnect_seconds(log: str) -> float | None:
    """Seconds from the served manager's "lost the connection" to its "reconnected" line."""
    import datetime

    def stamp(line: str) -> float:
        return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()

    lines = log.splitlines()
    lost = next((stamp(x) for x in lines if "rpc.server" in x and "lost the connection" in x), None)
    back = next((stamp(x) for x in lines if "reconnected to the broker" in x), None)
    return None if lost is None or back is None else round(back - lost, 2)


def _crash(node) -> None:
    """SIGKILL the node's VM (found by its pid file and checked by its env), then tidy up."""
    pid = node.pid
    assert pid and pid in node._node_pids(), (pid, node._node_pids())
    os.kill(pid, signal.SIGKILL)
    node.stop(cleanup=False)  # reaps the wrapper; nothing is left to stop gracefully


@pytest.mark.parametrize("how", ["stop", "crash"])
def test_losing_the_node_of_a_served_manager_and_its_caller_loses_and_repeats_nothing(
    cluster: RabbitMQCluster, tmp_path: Path, how: str
):
    from manager_cli.rpc.client import RPCClient
    from manager_cli.rpc.transport import RabbitOptions

    node_a, node_b = cluster.nodes[0], cluster.nodes[1]
    if not node_a.is_running():  # an earlier case took it down: it rejoins with its data
        node_a.start()
        assert sorted(cluster.running_nodes(node_b)) == sorted(n.nodename for n in cluster.nodes)
    (tmp_path / "recorder_mod.py").write_text(RECORDER_MODULE)
    runs = tmp_path / "runs"
    runs.write_text("")
    host, topic = "cluster-h1", unique("cluster")
    config = write_config(tmp_path / "cluster.conf", cluster.url, **QUORUM, **FAST_RETRY)
    env = clean_env(
        MANAGERCTL_CONFIG_FILE=str(config),
        XDG_STATE_HOME=str(tmp_path / "state"),
        PYTHONPATH=str(tmp_path),
        RECORDER_FILE=str(runs),
        RECORDER_TOPIC=topic,
    )
    served = Served(
        ["serve", "recorder_mod:Recorder", "--host", host, "--topic", topic],
        tmp_path / "serve.log",
        env,
    )
    options = RabbitOptions(**QUORUM, **FAST_RETRY)
    caller = RPCClient(cluster.url, options=options, timeout=CALL_TIMEOUT)
    # Casts go out even while nobody consumes: the quorum queue holds them for the server.
    caster = RPCClient(cluster.url, options=options, check_consumers=False)
    outcomes: list[tuple[str, float, float, str]] = []  # token, start, end, "ok" / error
    confirmed: list[str] = []
    cast_failures: list[str] = []
    stopped_at: list[float] = []
    try:
        assert served.wait_for_log("consuming "), served.log()
        queue = f"{topic}.{host}"
        served_ports = _served_ports(node_b, served.proc.pid)
        assert served_ports and set(served_ports) == {node_a.port}, served_ports
        queues = {q["name"]: q for q in node_b.list_queues(("name", "type", "members"))}
        assert queues[queue]["type"] == "quorum" and len(queues[queue]["members"]) == 3

        def stop_a() -> None:
            stopped_at.append(time.monotonic())
            if how == "crash":
                _crash(node_a)
            else:
                node_a.stop(cleanup=False)
            stopped_at.append(time.monotonic())

        stopper = threading.Thread(target=stop_a)
        begin = time.monotonic()
        n = -1
        while (n := n + 1) < MAX_CALLS:
            if n >= CALLS and len(stopped_at) == 2 and time.monotonic() > stopped_at[1] + SETTLE:
                break
            time.sleep(max(0.0, begin + n / RATE - time.monotonic()))
            if n == STOP_AT:
                stopper.start()
            token = f"call-{n}"
            start = time.monotonic()
            try:
                assert caller.call({}, "record", topic=topic, server=host, args={"token": token})
                outcome = "ok"
            except Exception as exc:  # every failure is counted, and kept for the report
                outcome = f"{type(exc).__name__}: {exc}"
            outcomes.append((token, start, time.monotonic(), outcome))
            cast_token = f"cast-{n}"
            try:
                caster.cast({}, "record", topic=topic, server=host, args={"token": cast_token})
                confirmed.append(cast_token)
            except Exception as exc:  # not confirmed: the broker may or may not hold it
                cast_failures.append(f"{type(exc).__name__}: {exc}")
        stopper.join(60)
        # Casts confirmed at the end may still be on their way to the server.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ran = runs.read_text().split()
            if set(confirmed) <= set(ran):
                break
            time.sleep(0.2)
        served_ports = _served_ports(node_b, served.proc.pid)
    finally:
        caller.close()
        caster.close()
        code = served.stop()
    log = served.log()

    ran = runs.read_text().split()
    counts = collections.Counter(ran)
    duplicates = sorted(token for token, seen in counts.items() if seen > 1)
    failed = [(t, s, e, o) for t, s, e, o in outcomes if o != "ok"]
    ok_calls = [t for t, _s, _e, o in outcomes if o == "ok"]
    lost = sorted(set(confirmed) - set(ran)) + sorted(set(ok_calls) - set(ran))
    # The outage callers saw: the longest time, from the stop on, with no call succeeding.
    ok_ends = [stopped_at[0]] + [e for _t, s, e, o in outcomes if o == "ok" and s >= stopped_at[0]]
    outage = max((b - a for a, b in zip(ok_ends, ok_ends[1:], strict=False)), default=None)
    slowest_ok = max(e - s for _t, s, e, o in outcomes if o == "ok")
    reconnected = [line for line in log.splitlines() if "reconnected to the broker" in line]
    figures = {
        "node_a": how,
        "calls": len(outcomes),
        "rate_per_s": RATE,
        "node_stop_seconds": round(stopped_at[1] - stopped_at[0], 2),
        "outage_seen_by_caller_s": None if outage is None else round(outage, 2),
        "served_manager_reconnect_s": _reconnect_seconds(log),
        "slowest_successful_call_s": round(slowest_ok, 2),
        "calls_failed": len(failed),
        "casts_confirmed": len(confirmed),
        "casts_unconfirmed": sorted({f.split(":")[0] for f in cast_failures}),
        "lost": len(lost),
        "duplicates": len(duplicates),
        "failures": sorted({o.split(":")[0] for _t, _s, _e, o in failed}),
    }
    print("\ncluster failover figures:", json.dumps(figures))
    (tmp_path.parent / f"cluster-failover-{how}.json").write_text(
        json.dumps(figures, indent=2) + "\n"
    )

    assert code == 0, log
    assert reconnected, log
    # "Within a few seconds": generous, for a loaded CI machine; the figure is in the record.
    assert figures["served_manager_reconnect_s"] is not None, log
    assert figures["served_manager_reconnect_s"] < 10, figures
    assert served_ports and node_a.port not in served_ports, served_ports
    # Calls succeed again: all those made once the node was gone for a while went through.
    settled = [o for o in outcomes if o[1] > stopped_at[1] + SETTLE / 2]
    assert settled and all(o[3] == "ok" for o in settled), [o for o in settled if o[3] != "ok"]
    assert duplicates == [], duplicates
    assert lost == [], lost
    assert outage is not None and outage < 15, figures

"""cinder-volume's real capabilities through managerctl (issue 13 item 4).

cinder-volume, the living SchedulerDependentManager, fanout-casts update_service_capabilities
(3.3) to cinder-scheduler_fanout, one record per backend with a ``pools`` list. managerctl's
collector (``serve collector --scheduler-topic cinder-scheduler``) must keep them, and
``capabilities show`` / ``--live`` / ``history`` show one row per pool (host@backend#pool),
with -f json/csv and -c on the pool columns; asking cinder-volume to publish leaves no ERROR.
"""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from peers_support import (
    CINDER_BACKENDS,
    CINDER_HOST,
    Cloud,
    Fleet,
    format_errors,
    managerctl,
)

POOL_HOSTS = {f"{CINDER_HOST}@{backend}#fake" for backend in CINDER_BACKENDS}
POOL_COLUMNS = ("pools.total_capacity_gb", "pools.free_capacity_gb", "pools.reserved_percentage")
# As the README's cinder recipes say: cinder's scheduler topic, named on the command line.
CINDER = ("--scheduler-topic", "cinder-scheduler")


def show(*args: str, conf: object = None):
    """``managerctl [--config-file CONF] capabilities show ARGS``."""
    config = ("--config-file", str(conf)) if conf else ()
    return managerctl(*config, "capabilities", "show", *args)


@pytest.fixture(scope="module")
def collected(cloud: Cloud, fleet: Fleet) -> list[dict]:
    """The collector's store once it holds a row per cinder pool (asked to publish now)."""
    fleet.require("collector-cinder")
    mark = cloud.marks()
    asked = managerctl(
        "--config-file",
        cloud.cinder_conf,
        "capabilities",
        "publish",
        *CINDER,
        "--store-url",
        fleet.cinder_store,
    )
    assert asked.returncode == 0, asked
    rows: list[dict] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        result = show("--store-url", fleet.cinder_store, "-f", "json")
        if result.returncode == 0:
            rows = json.loads(result.stdout)
            if {r.get("host") for r in rows} >= POOL_HOSTS:
                break
        time.sleep(2)
    assert {r.get("host") for r in rows} >= POOL_HOSTS, (
        f"no row per cinder pool in the collector's store: {rows}\n"
        + fleet.procs["collector-cinder"].tail()
    )
    # publish went out at a version cinder-volume speaks: no traceback in its log.
    errors = cloud.rpc_errors_since(mark, ["cinder-volume"])
    assert not errors, format_errors(errors)
    return rows


def test_show_has_one_row_per_cinder_pool_with_its_capacity(collected: list[dict]) -> None:
    pools = [r for r in collected if r["host"] in POOL_HOSTS]
    assert len(pools) == len(POOL_HOSTS)
    for row in pools:
        assert row["service"] == "volume"
        assert row["pools.total_capacity_gb"] == "infinite"
        assert row["pools.free_capacity_gb"] == "infinite"
        assert row["vendor_name"] == "Open Source"
        assert row["storage_protocol"] == "fake"


def test_show_columns_and_csv(collected: list[dict], fleet: Fleet) -> None:
    cols = [arg for c in ("host", *POOL_COLUMNS) for arg in ("-c", c)]
    result = show("--store-url", fleet.cinder_store, "--service", "volume", "-f", "json", *cols)
    assert result.returncode == 0, result
    rows = json.loads(result.stdout)
    assert {r["host"] for r in rows} >= POOL_HOSTS
    assert all(set(r) == {"host", *POOL_COLUMNS} for r in rows), rows

    result = show("--store-url", fleet.cinder_store, "--service", "volume", "-f", "csv", *cols)
    assert result.returncode == 0, result
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["host"] for r in table} >= POOL_HOSTS
    assert all(r["pools.total_capacity_gb"] == "infinite" for r in table if r["host"] in POOL_HOSTS)


def test_history_of_a_backend_carries_its_pools(collected: list[dict], fleet: Fleet) -> None:
    for backend in CINDER_BACKENDS:
        result = managerctl(
            "capabilities",
            "history",
            f"{CINDER_HOST}@{backend}",
            "--store-url",
            fleet.cinder_store,
            "-f",
            "json",
        )
        assert result.returncode == 0, result
        changes = json.loads(result.stdout)
        assert changes, result
        assert "total_capacity_gb" in json.dumps(changes[0]), changes[0]


def test_live_gathers_cinder_pools_without_a_collector_and_without_errors(
    cloud: Cloud, collected: list[dict]
) -> None:
    mark = cloud.marks()
    result = show(
        "--live",
        "--wait",
        "5",
        *CINDER,
        "-f",
        "json",
        "-c",
        "host",
        "-c",
        "pools.total_capacity_gb",
        conf=cloud.cinder_conf,
    )
    assert result.returncode == 0, result
    rows = json.loads(result.stdout)
    assert {r["host"] for r in rows} >= POOL_HOSTS, rows
    errors = cloud.rpc_errors_since(mark)
    assert not errors, format_errors(errors)

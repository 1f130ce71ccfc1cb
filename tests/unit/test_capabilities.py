"""The capabilities store and its pure helpers, the collector endpoint, and the CLI over a store.

The store contract runs on every back end: SQLite through the standard library, SQLite through
SQLAlchemy, and a real throwaway PostgreSQL (the session's ``postgres`` fixture, which fails
rather than skips when PostgreSQL is missing). No broker is needed here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rigs.rabbitmq import free_port

from manager_cli.capabilities import (
    DEFAULT_STALE_AFTER,
    ROW_COLUMNS,
    CapabilityRecord,
    capability_columns,
    capability_rows,
    collector_topics,
    default_store_path,
    diff_capabilities,
    flatten,
    flatten_capabilities,
    iso_time,
    open_store,
    parse_target,
    publish_targets,
    store_url_from,
)
from manager_cli.capabilities.collector import CapabilityIntake
from manager_cli.capabilities.records import FlatRecord
from manager_cli.config import load_settings
from manager_cli.errors import BadInputError, ConfigError, UnavailableError
from manager_cli.rpc import wire

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")
HOSTINFO = {"cpu_count": 4, "load": {"1m": 0.5, "5m": 0.25}, "platform": "linux"}


# ---------------------------------------------------------------------------
# Pure functions


def test_flatten_dots_nested_keys_and_keeps_lists_and_empty_dicts() -> None:
    value = {"a": 1, "b": {"c": {"d": 2}, "e": []}, "f": {}}
    assert flatten(value) == {"a": 1, "b.c.d": 2, "b.e": [], "f": {}}


def test_flatten_of_a_scalar_is_one_value_column() -> None:
    assert flatten(5) == {"value": 5}
    assert flatten(5, "x") == {"x": 5}
    assert flatten({"a": {"b": 1}}, "p") == {"p.a.b": 1}


def test_flatten_is_still_importable_from_the_cli_module() -> None:
    from manager_cli.cli import capabilities as cli_capabilities

    assert cli_capabilities.flatten is flatten


def test_flatten_capabilities_single_item_uses_its_keys() -> None:
    assert flatten_capabilities([HOSTINFO]) == {
        "cpu_count": 4,
        "load.1m": 0.5,
        "load.5m": 0.25,
        "platform": "linux",
    }


def test_flatten_capabilities_several_items_are_indexed() -> None:
    assert flatten_capabilities([{"vcpus": 4}, {"vcpus": 8}]) == {"0.vcpus": 4, "1.vcpus": 8}
    assert flatten_capabilities([]) == {}
    assert flatten_capabilities(["x"]) == {"value": "x"}


def test_diff_added_removed_changed_on_dotted_keys() -> None:
    old = [{"cpu_count": 4, "load": {"1m": 0.5}, "gone": True}]
    new = [{"cpu_count": 4, "load": {"1m": 0.7}, "fresh": "yes"}]
    assert diff_capabilities(old, new) == {
        "added": {"fresh": "yes"},
        "removed": {"gone": True},
        "changed": {"load.1m": {"old": 0.5, "new": 0.7}},
    }


def test_diff_from_nothing_is_all_added_and_same_is_empty() -> None:
    assert diff_capabilities(None, [{"a": 1}]) == {"added": {"a": 1}, "removed": {}, "changed": {}}
    assert diff_capabilities([{"a": [1, 2]}], [{"a": [1, 2]}]) == {
        "added": {},
        "removed": {},
        "changed": {},
    }


def test_diff_tells_one_from_true() -> None:
    # Python says 1 == True; an operator reading the capabilities does not.
    assert diff_capabilities([{"a": 1}], [{"a": True}])["changed"] == {"a": {"old": 1, "new": True}}


def record(host: str, received_at: float, caps: dict[str, Any] | None = None) -> CapabilityRecord:
    return CapabilityRecord("hostinfo", host, [caps or dict(HOSTINFO)], received_at)


def test_capability_rows_mark_stale_past_the_threshold_only() -> None:
    now = 1_000_000.0
    rows = capability_rows(
        [record("fresh", now - 10), record("edge", now - 60), record("old", now - 60.5)],
        now,
        stale_after=60,
    )
    assert [(row["host"], row["state"]) for row in rows] == [
        ("fresh", "fresh"),
        ("edge", "fresh"),
        ("old", "stale"),
    ]
    assert rows[2]["age_s"] == 60.5


def test_capability_rows_have_fixed_columns_first_then_the_keys() -> None:
    now = time.time()
    (row,) = capability_rows([record("h1", now - 1.26)], now, DEFAULT_STALE_AFTER)
    assert list(row)[: len(ROW_COLUMNS)] == list(ROW_COLUMNS)
    assert row["age_s"] == 1.3
    assert row["received_at"] == iso_time(now - 1.26)
    assert row["received_at"].endswith("Z")
    assert row["cpu_count"] == 4 and row["load.1m"] == 0.5


def test_capability_rows_never_show_a_negative_age() -> None:
    # The collector's clock may be ahead of the reader's.
    (row,) = capability_rows([record("h1", 1005.0)], 1000.0, 60)
    assert row["age_s"] == 0.0 and row["state"] == "fresh"


def test_capability_key_named_like_a_fixed_column_is_prefixed() -> None:
    (row,) = capability_rows(
        [record("h1", 10.0, {"host": "other", "state": "x", "a": 1})], 10.0, 60
    )
    assert row["host"] == "h1" and row["state"] == "fresh"
    assert row["capabilities.host"] == "other" and row["capabilities.state"] == "x"


def test_capability_columns_are_the_fixed_ones_then_sorted_keys() -> None:
    rows = [{"service": "s", "host": "h", "b": 1}, {"service": "s", "host": "g", "a": 2}]
    assert capability_columns(rows) == [*ROW_COLUMNS, "a", "b"]


def test_hostinfos_headline_keys_are_ones_it_publishes() -> None:
    """A narrow table keeps HEADLINE_KEYS first: for hostinfo they must be keys it sends (a
    misspelt one silently gave the memory column's place to load.5m)."""
    from manager_cli.capabilities.records import HEADLINE_KEYS
    from manager_cli.examples.hostinfo import HostInfoManager

    manager = HostInfoManager(host="h1")
    for task in ("gather_cpu", "gather_memory", "gather_disk", "gather_system"):
        getattr(manager, task)(None)
    published = flatten(manager.last_capabilities[0])
    hostinfo_headlines = ("load.1m", "cpu_count", "memory_available_mb", "disk_free_gb")
    assert set(hostinfo_headlines) <= set(HEADLINE_KEYS)
    assert set(hostinfo_headlines) <= set(published)


# ---------------------------------------------------------------------------
# Where the store is


def test_default_store_path_follows_xdg_state_home(tmp_path: Path) -> None:
    assert default_store_path({"XDG_STATE_HOME": str(tmp_path)}) == (
        tmp_path / "managerctl" / "capabilities.sqlite"
    )
    home = default_store_path({})
    assert home.parts[-4:] == (".local", "state", "managerctl", "capabilities.sqlite")


def test_store_url_from_settings_then_environment() -> None:
    class WithOption:
        capabilities_store = "sqlite:///from-settings"

    env = {"MANAGERCTL_CAPABILITIES_STORE": "sqlite:///from-env"}
    assert store_url_from(WithOption(), env) == "sqlite:///from-settings"
    assert store_url_from(load_settings(environ={}), env) == "sqlite:///from-env"
    assert store_url_from(None, {}) is None


def test_collector_topics_default_environment_and_settings() -> None:
    class WithOption:
        collector_topics = ["compute", "volume"]

    assert collector_topics(None, {}) is None  # then the family's known publishers
    assert collector_topics(None, {"MANAGERCTL_COLLECTOR_TOPICS": " a, b ,,"}) == ["a", "b"]
    assert collector_topics(None, {"MANAGERCTL_COLLECTOR_TOPICS": ""}) == []
    assert collector_topics(WithOption(), {"MANAGERCTL_COLLECTOR_TOPICS": "x"}) == [
        "compute",
        "volume",
    ]


def test_open_store_without_url_uses_the_default_path(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "caps.sqlite"
    with open_store(None, default_path=path) as store:
        store.record_capabilities("hostinfo", "h1", [HOSTINFO])
    assert path.exists()
    with open_store(str(path)) as store:  # a plain path is a SQLite file too
        assert [r.host for r in store.latest()] == ["h1"]


def test_open_store_must_exist_refuses_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite"
    with pytest.raises(UnavailableError, match="no capabilities store at"):
        open_store(f"sqlite:///{missing}", must_exist=True)
    assert not missing.exists()


def test_open_store_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(BadInputError):
        open_store("sqlite://relative-without-third-slash")
    with pytest.raises(ConfigError):
        open_store("nosuchdialect://user:pw@host/db")


def test_open_store_unreachable_postgres_is_unavailable_without_the_password() -> None:
    url = f"postgresql://ops:s3cret-pw@127.0.0.1:{free_port()}/caps?connect_timeout=2"
    with pytest.raises(UnavailableError) as caught:
        open_store(url)
    assert "s3cret-pw" not in str(caught.value)
    assert "***" in str(caught.value)


def test_open_store_unwritable_sqlite_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot open the capabilities store"):
        open_store(f"sqlite:///{blocker}/caps.sqlite")


# ---------------------------------------------------------------------------
# The store contract, on every back end


@pytest.fixture(params=["sqlite", "sqlalchemy-sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'caps.sqlite'}"
    if request.param == "sqlalchemy-sqlite":
        return f"sqlite+pysqlite:///{tmp_path / 'caps.sqlite'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def store(store_url: str):
    with open_store(store_url) as opened:
        yield opened


def test_record_reports_changed_only_when_the_capabilities_change(store) -> None:
    assert store.record_capabilities("hostinfo", "h1", [HOSTINFO], received_at=100.0) is True
    same = {"platform": "linux", "load": {"5m": 0.25, "1m": 0.5}, "cpu_count": 4}  # other order
    assert store.record_capabilities("hostinfo", "h1", [same], received_at=110.0) is False
    changed = dict(HOSTINFO, cpu_count=8)
    assert store.record_capabilities("hostinfo", "h1", [changed], received_at=120.0) is True


def test_an_unchanged_record_still_refreshes_its_time(store) -> None:
    store.record_capabilities("hostinfo", "h1", [HOSTINFO], received_at=100.0)
    store.record_capabilities("hostinfo", "h1", [HOSTINFO], received_at=150.0)
    (latest,) = store.latest()
    assert latest.received_at == 150.0
    assert len(store.history("h1")) == 1


def test_latest_keeps_the_list_as_published(store) -> None:
    store.record_capabilities("compute", "node1", [{"vcpus": 4}, {"vcpus": 8}], received_at=1.0)
    store.record_capabilities("hostinfo", "h1", {"single": "value"}, received_at=2.0)
    store.record_capabilities("hostinfo", "h2", ({"as": "tuple"},), received_at=3.0)
    records = {(r.service, r.host): r for r in store.latest()}
    assert records[("compute", "node1")].capabilities == [{"vcpus": 4}, {"vcpus": 8}]
    assert records[("hostinfo", "h1")].capabilities == [{"single": "value"}]
    assert records[("hostinfo", "h2")].capabilities == [[{"as": "tuple"}]]
    assert records[("compute", "node1")].received_at == 1.0


def test_latest_filters_and_sorts(store) -> None:
    for service, host in [("hostinfo", "h2"), ("compute", "h1"), ("hostinfo", "h1")]:
        store.record_capabilities(service, host, [{"on": host}])
    assert [(r.service, r.host) for r in store.latest()] == [
        ("compute", "h1"),
        ("hostinfo", "h1"),
        ("hostinfo", "h2"),
    ]
    assert [(r.service, r.host) for r in store.latest(service="hostinfo")] == [
        ("hostinfo", "h1"),
        ("hostinfo", "h2"),
    ]
    assert [(r.service, r.host) for r in store.latest(host="h1")] == [
        ("compute", "h1"),
        ("hostinfo", "h1"),
    ]
    assert [r.host for r in store.latest(service="hostinfo", host="h2")] == ["h2"]
    assert store.latest(host="nowhere") == []


def test_history_has_the_diff_of_each_change_oldest_first(store) -> None:
    store.record_capabilities("hostinfo", "h1", [{"cpu": 4, "load": {"1m": 0.5}}], 100.0)
    store.record_capabilities("hostinfo", "h1", [{"cpu": 4, "load": {"1m": 0.5}}], 110.0)
    store.record_capabilities("hostinfo", "h1", [{"cpu": 4, "load": {"1m": 0.9}, "x": 1}], 120.0)
    store.record_capabilities("hostinfo", "h1", [{"load": {"1m": 0.9}, "x": 1}], 130.0)
    changes = store.history("h1")
    assert [c.received_at for c in changes] == [100.0, 120.0, 130.0]
    assert changes[0].diff == {"added": {"cpu": 4, "load.1m": 0.5}, "removed": {}, "changed": {}}
    assert changes[1].diff == {
        "added": {"x": 1},
        "removed": {},
        "changed": {"load.1m": {"old": 0.5, "new": 0.9}},
    }
    assert changes[2].diff == {"added": {}, "removed": {"cpu": 4}, "changed": {}}
    assert {(c.service, c.host) for c in changes} == {("hostinfo", "h1")}


def test_history_limit_filters_and_other_hosts(store) -> None:
    for n in range(5):
        store.record_capabilities("hostinfo", "h1", [{"n": n}], received_at=float(n))
        store.record_capabilities("compute", "h1", [{"n": n}], received_at=float(n) + 0.5)
    store.record_capabilities("hostinfo", "h2", [{"n": 0}])
    assert [c.received_at for c in store.history("h1", limit=3)] == [3.5, 4.0, 4.5]
    assert [c.received_at for c in store.history("h1", service="compute", limit=2)] == [3.5, 4.5]
    assert len(store.history("h1")) == 10
    assert len(store.history("h2")) == 1
    assert store.history("nowhere") == []


def test_history_is_pruned_per_service_and_host(store_url: str) -> None:
    with open_store(store_url, history_keep=3) as store:
        store.prune_every = 1
        for n in range(6):
            store.record_capabilities("hostinfo", "h1", [{"n": n}], received_at=float(n))
        store.record_capabilities("hostinfo", "h2", [{"n": 0}])
        assert [c.received_at for c in store.history("h1")] == [3.0, 4.0, 5.0]
        assert len(store.history("h2")) == 1


def test_history_pruning_is_batched_but_bounded(store_url: str) -> None:
    with open_store(store_url) as default:
        # One statement less for most changes, and never far past the keep.
        assert 1 < default.prune_every <= default.history_keep // 10
    with open_store(store_url, history_keep=3) as store:
        store.prune_every = 4
        for n in range(14):
            store.record_capabilities("hostinfo", "h1", [{"n": n}], received_at=float(n))
            assert len(store.history("h1", limit=100)) <= 3 + 4
        # Pruned at changes 1, 5, 9 and 13: the newest three then, plus one since.
        assert [c.received_at for c in store.history("h1")] == [10.0, 11.0, 12.0, 13.0]


def test_records_survive_reopening(store_url: str) -> None:
    with open_store(store_url) as store:
        store.record_capabilities("hostinfo", "h1", [HOSTINFO], received_at=5.0)
        store.record_service({"service": "hostinfo", "host": "h1", "topic": "hostinfo"}, 6.0)
    with open_store(store_url) as store:
        assert store.latest()[0].capabilities == [HOSTINFO]
        assert store.services()[0]["updated_at"] == 6.0
        # Same capabilities after a restart: not a change.
        assert store.record_capabilities("hostinfo", "h1", [HOSTINFO]) is False


def test_bad_records_are_refused(store) -> None:
    with pytest.raises(BadInputError):
        store.record_capabilities("", "h1", [HOSTINFO])
    with pytest.raises(BadInputError):
        store.record_service({"service": "hostinfo"})
    with pytest.raises(BadInputError):
        store.record_service("not a dict")  # type: ignore[arg-type]


def test_service_records_keep_every_field_and_the_last_report(store) -> None:
    report = {
        "service": "hostinfo",
        "host": "h1",
        "topic": "hostinfo",
        "version": "0.1.0",
        "started": 10.0,
        "pid": 42,
        "status": "running",
        "extra": {"nested": [1, 2]},
    }
    store.record_service(report, received_at=20.0)
    store.record_service({**report, "pid": 43}, received_at=30.0)
    store.record_service({"service": "compute", "host": "h1", "topic": None}, received_at=25.0)
    services = store.services()
    assert [(s["service"], s["host"]) for s in services] == [("compute", "h1"), ("hostinfo", "h1")]
    assert services[1] == {**report, "pid": 43, "updated_at": 30.0}
    assert services[0]["topic"] is None
    assert [s["service"] for s in store.services(service="compute")] == ["compute"]
    assert store.services(host="h2") == []


def test_publish_targets_are_the_familys_publishers_at_their_version() -> None:
    assert [str(t) for t in publish_targets("scheduler", environ={})] == ["hostinfo:1.0"]
    assert [str(t) for t in publish_targets("cinder-scheduler", environ={})] == [
        "cinder-volume:3.0"
    ]
    # An unknown family has no publishers but those that said so.
    assert publish_targets("my-scheduler", environ={}) == []
    env = {"MANAGERCTL_COLLECTOR_TOPICS": "cinder-volume, mine:2.1"}
    assert [str(t) for t in publish_targets("scheduler", environ=env)] == [
        "cinder-volume:3.0",
        "mine:2.1",
    ]


def test_publish_targets_ask_only_services_that_said_they_publish_there(store) -> None:
    base = {"rpc_api_version": "2.4", "publishes_capabilities": True}
    store.record_service({**base, "service": "a", "host": "h1", "topic": "a",
                          "scheduler_topic": "scheduler"})  # fmt: skip
    store.record_service({**base, "service": "b", "host": "h1", "topic": "b",
                          "scheduler_topic": "cinder-scheduler"})  # fmt: skip
    # A plain Manager (no publish_service_capabilities), and an older record that does not say.
    store.record_service({"service": "plain", "host": "h1", "topic": "plain",
                          "publishes_capabilities": False})  # fmt: skip
    store.record_service({"service": "old", "host": "h1", "topic": "old"})
    store.record_service({"service": "collector", "host": "c1", "topic": "managerctl"})
    targets = publish_targets("scheduler", services=store.services(), environ={})
    assert [str(t) for t in targets] == ["hostinfo:1.0", "a:2.0"]
    targets = publish_targets("cinder-scheduler", services=store.services(), environ={})
    assert [str(t) for t in targets] == ["cinder-volume:3.0", "b:2.0"]


def test_parse_target_versions() -> None:
    assert str(parse_target("cinder-volume")) == "cinder-volume:3.0"
    assert str(parse_target("hostinfo")) == "hostinfo:1.0"
    assert str(parse_target("x:4.2")) == "x:4.2"
    assert str(parse_target("x:4.2", "5.0")) == "x:5.0"
    for bad in ("", ":1.0", "x:one", "x:1"):
        with pytest.raises(BadInputError):
            parse_target(bad)


def test_one_store_shared_by_many_writer_threads(store) -> None:
    """The collector's RPC server runs its methods on 8 worker threads, all on one store."""
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for n in range(25):
                store.record_capabilities("hostinfo", f"h{worker}", [{"n": n}])
                store.record_service({"service": "hostinfo", "host": f"h{worker}", "n": n})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [r.capabilities for r in store.latest()] == [[{"n": 24}]] * 8
    assert all(len(store.history(f"h{worker}")) == 25 for worker in range(8))


def test_readers_while_one_writer_writes(store_url: str) -> None:
    """Readers with their own connections always see a consistent, advancing picture."""
    hosts = [f"h{n}" for n in range(10)]
    with open_store(store_url) as writer_store:
        for host in hosts:
            writer_store.record_capabilities("hostinfo", host, [{"round": 0, "host": host}])
    done = threading.Event()
    errors: list[BaseException] = []
    reads: list[int] = []

    def writer() -> None:
        try:
            with open_store(store_url) as writer_store:
                for round_ in range(1, 31):
                    for host in hosts:
                        writer_store.record_capabilities(
                            "hostinfo", host, [{"round": round_, "host": host}]
                        )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            with open_store(store_url, must_exist=True) as reader_store:
                last_seen = {host: 0 for host in hosts}
                count = 0
                while not done.is_set() or count == 0:
                    latest = reader_store.latest(service="hostinfo")
                    assert [r.host for r in latest] == hosts
                    for r in latest:
                        (caps,) = r.capabilities
                        assert caps["host"] == r.host
                        assert caps["round"] >= last_seen[r.host], "a reader went back in time"
                        last_seen[r.host] = caps["round"]
                    history = reader_store.history("h0")
                    assert [c.diff for c in history][0]["added"]["round"] == 0
                    count += 1
                reads.append(count)
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(4)]
    write_thread = threading.Thread(target=writer)
    for thread in readers:
        thread.start()
    write_thread.start()
    write_thread.join(timeout=120)
    for thread in readers:
        thread.join(timeout=120)
    assert errors == []
    assert len(reads) == 4 and all(count >= 1 for count in reads)
    with open_store(store_url) as check:
        assert {r.capabilities[0]["round"] for r in check.latest()} == {30}
        assert len(check.history("h3")) == 31


# ---------------------------------------------------------------------------
# The collector endpoint, without a broker


def collector(store: Any, **settings_env: str) -> Any:
    from manager_cli.capabilities.collector import CollectorManager

    settings = load_settings(environ=settings_env)
    return CollectorManager(host="c1", service_name="collector", settings=settings, store=store)


def dispatch(manager: Any, method: str, **args: Any) -> Any:
    request = wire.parse_request(wire.build_request(method, args, context={"user": "oslo"}))
    return manager.create_rpc_dispatcher().dispatch(request)


def test_collector_stores_what_publishers_cast(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'caps.sqlite'}") as store:
        manager = collector(store)
        # managerctl's own topic: never a real scheduler's.
        assert manager.TOPIC == "managerctl"
        dispatch(
            manager,
            "update_service_capabilities",
            service_name="compute",
            host="node1",
            capabilities=[{"vcpus": 4}],
        )
        dispatch(manager, "report_service_state", service={"service": "compute", "host": "node1"})
        manager.cleanup_host()  # the batch writer writes what is queued
        assert [(r.service, r.host, r.capabilities) for r in store.latest()] == [
            ("compute", "node1", [{"vcpus": 4}])
        ]
        assert store.services()[0]["host"] == "node1"


# cinder-volume 29's message, as captured on the wire (PEERS.md).
CINDER_ARGS = {
    "service_name": "volume",
    "host": "peerhost@fake",
    "capabilities": {
        "volume_backend_name": "fake",
        "vendor_name": "Open Source",
        "driver_version": "3.0.0",
        "storage_protocol": "fake",
        "pools": [
            {
                "pool_name": "fake",
                "total_capacity_gb": "infinite",
                "free_capacity_gb": "infinite",
                "allocated_capacity_gb": 0,
                "provisioned_capacity_gb": 0,
                "reserved_percentage": 100,
            }
        ],
        "filter_function": None,
        "goodness_function": None,
    },
    "cluster_name": None,
    "timestamp": "2026-12-01T20:15:52.815205",
}


def intake_request(method: str, version: str | None, **args: Any) -> wire.Request:
    return wire.parse_request(
        wire.build_request(method, args, context={"user": "cinder"}, version=version)
    )


def test_the_intake_takes_cinders_update_at_3_3_with_its_extra_arguments(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'caps.sqlite'}") as store:
        manager = collector(store)
        ((listener),) = manager.fanout_listeners()
        assert listener.topic == "scheduler"
        intake = CapabilityIntake(manager, "scheduler")
        intake.dispatch(intake_request("update_service_capabilities", "3.3", **CINDER_ARGS))
        # and tomorrow's argument too
        args = dict(CINDER_ARGS, host="peerhost@other", some_new_argument=1)
        intake.dispatch(intake_request("update_service_capabilities", "3.9", **args))
        # managerctl's own publishers send no version
        intake.dispatch(
            intake_request(
                "update_service_capabilities",
                None,
                service_name="hostinfo",
                host="h1",
                capabilities=[HOSTINFO],
            )  # fmt: skip
        )
        manager.cleanup_host()  # the batch writer writes what is queued
        records = {r.host: r for r in store.latest()}
        assert records["peerhost@fake"].capabilities == [CINDER_ARGS["capabilities"]]
        assert set(records) == {"peerhost@fake", "peerhost@other", "h1"}


def test_the_intake_ignores_the_real_schedulers_other_traffic(tmp_path: Path, caplog) -> None:
    with open_store(f"sqlite:///{tmp_path / 'caps.sqlite'}") as store:
        intake = CapabilityIntake(collector(store), "scheduler")
        with caplog.at_level("INFO"):
            # nova-compute fans these out to the scheduler topic
            intake.dispatch(intake_request("update_instance_info", "4.2", host_name="c1"))
            intake.dispatch(intake_request("sync_instance_info", "4.2", host_name="c1"))
        assert store.latest() == []
        assert caplog.text == ""
        with pytest.raises(BadInputError, match="lacks host"):
            intake.dispatch(intake_request("update_service_capabilities", "3.3",
                                           service_name="volume", capabilities={}))  # fmt: skip


def test_the_collector_joins_the_configured_scheduler_topic(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'caps.sqlite'}") as store:
        manager = collector(store, MANAGERCTL_SCHEDULER_TOPIC="cinder-scheduler")
        assert [item.topic for item in manager.fanout_listeners()] == ["cinder-scheduler"]
        assert [str(t) for t in manager.publish_targets()] == ["cinder-volume:3.0"]


def test_pools_are_one_row_each_named_as_cinder_names_pools() -> None:
    caps = dict(CINDER_ARGS["capabilities"])
    caps["pools"] = [dict(caps["pools"][0]), dict(caps["pools"][0], pool_name="gold",
                                                    total_capacity_gb=100)]  # fmt: skip
    records = [CapabilityRecord("volume", "peerhost@fake", [caps], 100.0)]
    rows = capability_rows(records, now=105.0, stale_after=180)
    assert [r["host"] for r in rows] == ["peerhost@fake#fake", "peerhost@fake#gold"]
    assert [r["pools.total_capacity_gb"] for r in rows] == ["infinite", 100]
    assert all(r["volume_backend_name"] == "fake" and "pools" not in r for r in rows)
    columns = capability_columns(rows)
    assert "pools.free_capacity_gb" in columns and "pools" not in columns
    # What a scheduler decides by comes first, so a narrow table keeps it.
    keys = columns[len(ROW_COLUMNS) :]
    assert keys[:2] == ["pools.free_capacity_gb", "pools.total_capacity_gb"], keys
    # A list of scalars, or two lists of dicts, stay one row.
    one = [CapabilityRecord("x", "h", [{"a": [1, 2], "b": [{"n": 1}], "c": [{"n": 2}]}], 100.0)]
    assert len(capability_rows(one, now=100.0, stale_after=180)) == 1


def test_collector_exposes_its_rpc_methods_but_not_its_store(tmp_path: Path) -> None:
    from manager_cli.rpc.dispatcher import NoSuchMethod

    with open_store(f"sqlite:///{tmp_path / 'caps.sqlite'}") as store:
        manager = collector(store)
        for hidden in (
            "store",
            "init_host",
            "post_start_hook",
            "periodic_tasks",
            "cleanup_host",
            "prune_store",
            "writer",
        ):
            with pytest.raises(NoSuchMethod):
                dispatch(manager, hidden)


def test_collector_opens_its_store_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.sqlite'}"
    monkeypatch.setenv("MANAGERCTL_CAPABILITIES_STORE", url)
    manager = collector(None)
    manager.init_host()
    assert "from-env.sqlite" in manager.store.description
    manager.store.close()


def test_collector_start_survives_an_unreachable_broker(tmp_path: Path, caplog) -> None:
    """Asking services to publish is a courtesy: the collector still starts without it."""
    with open_store(f"sqlite:///{tmp_path / 'caps.sqlite'}") as store:
        manager = collector(
            store, MANAGERCTL_TRANSPORT_URL=f"rabbit://guest:guest@127.0.0.1:{free_port()}/"
        )
        with caplog.at_level("WARNING"):
            manager.post_start_hook()
    assert "could not ask services to publish" in caplog.text


# ---------------------------------------------------------------------------
# The CLI over a store (the installed script, as a runbook runs it)


def run(*args: str, store_url: str, env: dict[str, str] | None = None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    environ.pop("NO_COLOR", None)
    environ["MANAGERCTL_CAPABILITIES_STORE"] = store_url
    environ.update(env or {})
    return subprocess.run(
        [MANAGERCTL, *args], capture_output=True, text=True, env=environ, timeout=60
    )


@pytest.fixture
def filled(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'caps.sqlite'}"
    now = time.time()
    with open_store(url) as store:
        store.record_capabilities("hostinfo", "h1", [HOSTINFO], received_at=now - 500)
        store.record_capabilities("hostinfo", "h1", [dict(HOSTINFO, cpu_count=8)], now - 5)
        store.record_capabilities("hostinfo", "h2", [HOSTINFO], received_at=now - 400)
    return url


def test_cli_show_json_is_one_record_per_service_and_host(filled: str) -> None:
    result = run("capabilities", "show", "-f", "json", store_url=filled)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["host"], r["state"], r["cpu_count"]) for r in rows] == [
        ("h1", "fresh", 8),
        ("h2", "stale", 4),
    ]
    assert all(list(r)[: len(ROW_COLUMNS)] == list(ROW_COLUMNS) for r in rows)
    assert all("load.1m" in r for r in rows)


def test_cli_show_filters_stale_csv_and_columns(filled: str) -> None:
    result = run("capabilities", "show", "--stale", "1000", "-f", "csv", store_url=filled)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["host"], r["state"]) for r in rows] == [("h1", "fresh"), ("h2", "fresh")]
    result = run("capabilities", "show", "--host", "h2", "-c", "host", "-c", "state", "-f", "json",
                 store_url=filled)  # fmt: skip
    assert json.loads(result.stdout) == [{"host": "h2", "state": "stale"}]
    table = run("capabilities", "show", store_url=filled)
    assert table.returncode == 0 and "\x1b" not in table.stdout
    assert table.stdout.splitlines()[0].split()[:4] == ["service", "host", "state", "age"]


def test_cli_history_rows_and_json_diff(filled: str) -> None:
    table = run("capabilities", "history", "h1", store_url=filled)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["received_at", "service", "host", "summary"]
    assert "cpu_count: 4 -> 8" in lines[2]
    data = json.loads(run("capabilities", "history", "h1", "-f", "json", store_url=filled).stdout)
    assert [list(row) for row in data] == [
        ["received_at", "service", "host", "summary", "added", "removed", "changed"]
    ] * 2
    assert data[1]["changed"] == {"cpu_count": {"old": 4, "new": 8}}
    assert data[0]["added"]["load.1m"] == 0.5


def test_cli_without_a_store_exits_69_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite"
    for args in (("capabilities", "show"), ("capabilities", "history", "h1")):
        result = run(*args, store_url=f"sqlite:///{missing}")
        assert result.returncode == 69, result.stderr
        assert "serve collector" in result.stderr
    assert not missing.exists()


def test_cli_topic_without_live_is_a_usage_error(filled: str) -> None:
    result = run("capabilities", "show", "--topic", "hostinfo", store_url=filled)
    assert result.returncode == 2
    assert "--live" in result.stderr


def test_a_dropped_postgres_connection_is_replaced(postgres) -> None:
    """The store keeps one connection; one the server killed is replaced, the write retried."""
    url = postgres.create_database()
    database = url.rsplit("/", 1)[1]
    with open_store(url) as store:
        store.record_capabilities("hostinfo", "h1", [{"n": 1}])
        postgres.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )
        assert store.record_capabilities("hostinfo", "h1", [{"n": 2}]) is True
        assert store.latest()[0].capabilities == [{"n": 2}]


@pytest.fixture
def cinder_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cinder.sqlite'}"
    with open_store(url) as store:
        store.record_capabilities("volume", "peerhost@fake", CINDER_ARGS["capabilities"])
    return url


def test_cli_pools_json_csv_and_columns(cinder_store: str) -> None:
    result = run("capabilities", "show", "-f", "json", "-c", "host",
                 "-c", "pools.total_capacity_gb", "-c", "pools.free_capacity_gb",
                 store_url=cinder_store)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "host": "peerhost@fake#fake",
            "pools.total_capacity_gb": "infinite",
            "pools.free_capacity_gb": "infinite",
        }
    ]
    result = run("capabilities", "show", "-f", "csv", store_url=cinder_store)
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert row["pools.reserved_percentage"] == "100" and row["host"] == "peerhost@fake#fake"
    # A pool's own name selects it; the backend's name selects all its pools.
    for host in ("peerhost@fake#fake", "peerhost@fake"):
        result = run("capabilities", "show", "--host", host, "-f", "value", "-c", "host",
                     store_url=cinder_store)  # fmt: skip
        assert result.stdout == "peerhost@fake#fake\n", result.stderr
    # In the store every key is known at once: a typo is refused (exit 2).
    result = run("capabilities", "show", "-c", "pools.nope", store_url=cinder_store)
    assert result.returncode == 2 and "pools.nope" in result.stderr


def test_cli_live_columns_are_checked_before_any_wait(cinder_store: str) -> None:
    """A bad -c, --topic or --version is refused at once, not after --wait (and no broker)."""
    dead = {"MANAGERCTL_TRANSPORT_URL": f"rabbit://guest:guest@127.0.0.1:{free_port()}/"}
    for bad in (("-c", "pools."), ("--topic", "cinder-volume:three"), ("--version", "3")):
        started = time.monotonic()
        result = run("capabilities", "show", "--live", "--wait", "30", *bad,
                     store_url=cinder_store, env=dead)  # fmt: skip
        assert result.returncode == 2, (bad, result.stderr)
        assert time.monotonic() - started < 15
        assert "Traceback" not in result.stderr


def test_cli_publish_without_a_known_publisher_is_bad_input(tmp_path: Path) -> None:
    result = run("capabilities", "publish", "--scheduler-topic", "my-scheduler",
                 store_url=f"sqlite:///{tmp_path / 'none.sqlite'}")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "no publisher of 'my-scheduler' is known" in result.stderr


# ---------------------------------------------------------------------------
# Batched writes, retention, forgetting services


def test_record_many_equals_one_by_one(tmp_path: Path) -> None:
    """A batch leaves the store as the same updates one by one would (rows and history)."""
    updates = []
    for n in range(60):
        host = f"h{n % 4}"
        caps = [{"round": n // 8, "cpu_count": 4}]  # same value several times in a row
        updates.append(("hostinfo", host, caps, 1000.0 + n))
    with open_store(f"sqlite:///{tmp_path / 'one.sqlite'}") as one:
        for update in updates:
            one.record_capabilities(*update[:3], received_at=update[3])
        expected = (one.latest(), [one.history(f"h{i}", limit=1000) for i in range(4)])
    with open_store(f"sqlite:///{tmp_path / 'many.sqlite'}") as many:
        changed = many.record_many(updates[:25]) + many.record_many(updates[25:])
        got = (many.latest(), [many.history(f"h{i}", limit=1000) for i in range(4)])
    assert got == expected
    assert changed == sum(len(h) for h in expected[1])


def test_history_by_age_and_services_forgotten(store) -> None:
    store.record_many(
        [("hostinfo", "old", [{"a": 1}], 100.0), ("hostinfo", "new", [{"a": 1}], 900.0)]
    )
    store.prune_history(older_than=500, now=1000.0)
    assert store.history("old") == [] and len(store.history("new")) == 1
    store.record_services([({"service": "hostinfo", "host": "old"}, 100.0),
                           ({"service": "hostinfo", "host": "new"}, 900.0)])  # fmt: skip
    assert store.prune_services(older_than=500, now=1000.0) == [("hostinfo", "old")]
    assert [s["host"] for s in store.services()] == ["new"]
    assert [r.host for r in store.latest()] == ["new"]
    assert store.delete_service("hostinfo", "new") is True
    assert store.delete_service("hostinfo", "new") is False
    assert store.services() == [] and store.latest() == []


def test_the_batch_writer_batches_and_flushes(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'caps.sqlite'}") as store:
        manager = collector(store)
        for n in range(3000):
            manager.update_service_capabilities({}, "hostinfo", f"h{n % 50}", [{"n": n}])
        manager.cleanup_host()
        assert len(store.latest()) == 50
        assert manager.writer.written == 3000
        assert manager.writer.batches < 3000 / 10  # many per transaction


@pytest.fixture
def loads(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'loads.sqlite'}"
    now = time.time()
    with open_store(url) as store:
        for n, load in enumerate([0.5, 1.5, 3.0, 1.0, 2.0]):
            store.record_capabilities(
                "hostinfo", "h1", [{"load": {"1m": load}, "cpu_count": 4}], now - 3000 + n * 600
            )
    return url


def test_history_key_plots_min_max_last_and_raw_points(loads: str) -> None:
    result = run("capabilities", "history", "h1", "--key", "load.1m", store_url=loads,
                 env={"COLUMNS": "60"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("load.1m of hostinfo on h1: min 0.5, max 3, last 2 (5 changes")
    chart = lines[1:11]
    assert chart[0].startswith("  3 ┤") and chart[-1].startswith("0.5 ┤")
    assert "█" in chart[0] and "─" in lines[11]
    data = json.loads(run("capabilities", "history", "h1", "--key", "load.1m", "-f", "json",
                          store_url=loads).stdout)  # fmt: skip
    assert [row["value"] for row in data] == [0.5, 1.5, 3.0, 1.0, 2.0]
    assert set(data[0]) == {"received_at", "service", "host", "key", "value"}
    recent = run("capabilities", "history", "h1", "--key", "load.1m", "--since", "25m", "-f",
                 "csv", store_url=loads)  # fmt: skip
    assert recent.stdout.splitlines()[1:] and len(recent.stdout.splitlines()) == 3  # 2 points
    # cpu_count never changed after it was added: one point, still a plot
    nothing = run("capabilities", "history", "h1", "--key", "nope", store_url=loads)
    assert nothing.returncode == 2 and "no change of 'nope'" in nothing.stderr
    bad = run("capabilities", "history", "h1", "--since", "yesterday", store_url=loads)
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_cli_services_delete_and_prune(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'services.sqlite'}"
    now = time.time()
    with open_store(url) as store:
        store.record_services([({"service": "hostinfo", "host": "gone", "topic": "hostinfo"},
                                now - 9000), ({"service": "hostinfo", "host": "web01",
                                               "topic": "hostinfo"}, now)])  # fmt: skip
        store.record_capabilities("hostinfo", "web01", [HOSTINFO])
        store.record_capabilities("volume", "web01", [{"pools": []}])
    pruned = run("services", "prune", "--older-than", "3600", "-f", "json", store_url=url)
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout) == [{"service": "hostinfo", "host": "gone"}]
    deleted = run("services", "delete", "web01", "-f", "json", store_url=url)
    assert deleted.returncode == 0, deleted.stderr
    # the services that reported from the host first ...
    assert [r["service"] for r in json.loads(deleted.stdout)] == ["hostinfo"]
    with open_store(url) as store:
        assert store.services() == []
        assert [r.service for r in store.latest()] == ["volume"]
    # ... then a publisher known only by its capabilities
    again = run("services", "delete", "web01", "-f", "json", store_url=url)
    assert [r["service"] for r in json.loads(again.stdout)] == ["volume"]
    with open_store(url) as store:
        assert store.latest() == []
    missing = run("services", "delete", "nohost", store_url=url)
    assert missing.returncode == 2 and "no service on 'nohost'" in missing.stderr


def test_latest_flat_is_latest_flattened(store) -> None:
    """What the big table reads (flattened as stored) is what flattening latest() gives."""
    store.record_capabilities("hostinfo", "h1", [{"cpu": 4, "load": {"5m": 0.2, "1m": 0.5}}], 1.0)
    store.record_capabilities("volume", "v1@b", [CINDER_ARGS["capabilities"]], 2.0)
    store.record_capabilities("compute", "c1", [{"vcpus": 4}, {"vcpus": 8}], 3.0)
    store.record_capabilities("hostinfo", "h1", [{"cpu": 8, "load": {"5m": 0.2, "1m": 0.5}}], 4.0)
    flat = store.latest_flat()
    assert flat == [FlatRecord.of(record) for record in store.latest()]
    assert flat[1].flat == {"cpu": 8, "load.1m": 0.5, "load.5m": 0.2}
    assert [r.host for r in store.latest_flat(service="hostinfo")] == ["h1"]


def test_a_schema_1_store_is_migrated_and_its_rows_still_read(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(str(path))
    old.executescript(
        """
        CREATE TABLE managerctl_schema (version INTEGER NOT NULL);
        INSERT INTO managerctl_schema VALUES (1);
        CREATE TABLE managerctl_capabilities (service TEXT NOT NULL, host TEXT NOT NULL,
            capabilities TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL,
            changed_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (service, host));
        CREATE TABLE managerctl_capability_changes (id INTEGER PRIMARY KEY,
            service TEXT NOT NULL, host TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL,
            diff TEXT NOT NULL);
        CREATE TABLE managerctl_services (service TEXT NOT NULL, host TEXT NOT NULL,
            topic TEXT, record TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (service, host));
        INSERT INTO managerctl_capabilities VALUES
            ('hostinfo', 'h1', '[{"load": {"1m": 0.5}, "cpu": 4}]', 10.0, 10.0);
        INSERT INTO managerctl_capability_changes (service, host, received_at, diff) VALUES
            ('hostinfo', 'h1', 10.0,
             '{"added": {"load.1m": 0.5, "cpu": 4}, "removed": {}, "changed": {}}');
        """
    )
    old.commit()
    old.close()
    with open_store(f"sqlite:///{path}") as store:
        assert store.latest_flat()[0].flat == {"load.1m": 0.5, "cpu": 4}
        # The same values in another order are no change; a change is diffed from the old text.
        assert not store.record_capabilities("hostinfo", "h1", [{"cpu": 4, "load": {"1m": 0.5}}])
        assert not store.record_capabilities("hostinfo", "h1", {"cpu": 4, "load": {"1m": 0.5}})
        assert store.record_capabilities("hostinfo", "h1", [{"cpu": 8, "load": {"1m": 0.5}}], 30)
        assert [c.diff for c in store.history("h1")] == [
            {"added": {"load.1m": 0.5, "cpu": 4}, "removed": {}, "changed": {}},
            {"added": {}, "removed": {}, "changed": {"cpu": {"old": 4, "new": 8}}},
        ]
        assert store.latest_flat()[0].flat == {"cpu": 8, "load.1m": 0.5}
    version = sqlite3.connect(str(path)).execute("SELECT version FROM managerctl_schema")
    assert version.fetchone()[0] == 2


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


@pytest.mark.parametrize("made_before_auto_vacuum", [False, True])
def test_pruning_gives_the_space_back(tmp_path: Path, made_before_auto_vacuum: bool) -> None:
    path = tmp_path / "caps.sqlite"
    if made_before_auto_vacuum:  # a file another tool (or an older managerctl) created
        sqlite3.connect(str(path)).execute("CREATE TABLE other (x)").connection.close()
    with open_store(f"sqlite:///{path}", history_keep=0) as store:
        for round_ in range(30):
            store.record_many(
                [("hostinfo", f"h{h}", [{"round": round_, "note": "x" * 200}], 1000.0 + round_)
                 for h in range(200)]
            )  # fmt: skip
        store.reclaim()
        full = _file_bytes(path)
        store.prune_history(older_than=0, now=5000.0)
        assert store.history("h1") == []
        store.reclaim()
        assert _file_bytes(path) < full / 3
        assert len(store.latest()) == 200  # the last capabilities stay


def test_history_stays_within_its_cap_when_a_batch_holds_many_changes_of_a_host(
    store_url: str,
) -> None:
    with open_store(store_url, history_keep=10) as store:
        store.prune_every = 3
        for batch in range(12):
            store.record_many(
                [("hostinfo", "h1", [{"n": batch * 4 + n}], float(batch * 4 + n)) for n in range(4)]
            )
            assert len(store.history("h1", limit=1000)) <= 10 + 3 + 4
        assert len(store.history("h1", limit=1000)) <= 10 + 3


def _collector(tmp_path: Path, **options: str) -> Any:
    from manager_cli.capabilities.collector import CollectorManager

    environ = {"MANAGERCTL_CAPABILITIES_STORE": f"sqlite:///{tmp_path / 'collector.sqlite'}"}
    environ.update({f"MANAGERCTL_{name.upper()}": value for name, value in options.items()})
    return CollectorManager(host="c1", settings=load_settings(environ=environ))


def _aged(store: Any, now: float, ages: dict[str, float]) -> None:
    store.record_many([("hostinfo", host, [{"a": 1}], now - age) for host, age in ages.items()])
    store.record_services([({"service": "hostinfo", "host": h}, now - a) for h, a in ages.items()])


def test_the_collectors_prune_task_applies_the_retention_options(tmp_path: Path) -> None:
    collector = _collector(tmp_path, capabilities_history_max_age="500", services_prune_after="500")
    store = collector.store
    _aged(store, time.time(), {"old": 1000.0, "new": 10.0})
    collector.prune_store(None)
    assert store.history("old") == [] and len(store.history("new")) == 1
    assert [s["host"] for s in store.services()] == ["new"]
    store.close()


def test_the_default_retention_is_60_changes_a_day_and_every_service(tmp_path: Path) -> None:
    collector = _collector(tmp_path)
    store = collector.store
    assert store.history_keep == 60
    day = 86400.0
    _aged(store, time.time(), {"two-days": 2 * day, "an-hour": 3600.0, "a-week": 7 * day + 1})
    collector.prune_store(None)
    assert store.history("two-days") == [] and store.history("a-week") == []
    assert len(store.history("an-hour")) == 1
    # services_prune_after 0: nobody is forgotten without being asked (services prune).
    assert {s["host"] for s in store.services()} == {"two-days", "an-hour", "a-week"}
    store.close()

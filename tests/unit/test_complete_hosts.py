"""Host completion reads the last-known hosts from the local store, never the broker."""

from __future__ import annotations

from manager_cli.capabilities import open_store
from manager_cli.cli.complete import known_hosts


def test_hosts_come_from_services_and_capabilities_in_the_store(tmp_path, monkeypatch):
    path = tmp_path / "caps.sqlite"
    store = open_store(str(path))
    store.record_service(
        {
            "service": "hostinfo",
            "host": "web07",
            "topic": "hostinfo",
            "version": "1",
            "started": 0.0,
            "pid": 1,
        }
    )
    store.record_capabilities("hostinfo", "web08", [{"cpu_count": 2}])
    store.close()
    monkeypatch.setenv("MANAGERCTL_CAPABILITIES_STORE", f"sqlite:///{path}")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert known_hosts() == ["web07", "web08"]


def test_no_store_and_a_shared_database_give_no_hosts(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("MANAGERCTL_CAPABILITIES_STORE", raising=False)
    assert known_hosts() == []
    monkeypatch.setenv("MANAGERCTL_CAPABILITIES_STORE", "postgresql://u:p@db.invalid/x")
    assert known_hosts() == []

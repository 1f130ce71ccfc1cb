"""ping and probe over several real hosts (issue 13 items 3, 5, 6).

Two nova-computes (peer-compute1, peer-compute2) and a cinder-volume with two backends
(peerhost@fake, peerhost@fake2). Exit codes: 0 every host answered, 3 some did, 69 nobody
consumes, 75 consumers but no answer, 1 only failures came back. "Stuck" is a real nova-compute
stopped with SIGSTOP: its consumers stay registered, its answers stop.
"""

from __future__ import annotations

import json

from peers_support import (
    CINDER_BACKENDS,
    CINDER_HOST,
    NOVA_COMPUTES,
    Cloud,
    format_errors,
    managerctl,
)

C1, C2 = NOVA_COMPUTES
GONE = "peer-compute-gone"
STUCK_TIMEOUT = "3"


def nova(cloud: Cloud, *args: str, **kw):
    return managerctl("--config-file", cloud.nova_conf, *args, **kw)


def cinder(cloud: Cloud, *args: str, **kw):
    return managerctl("--config-file", cloud.cinder_conf, *args, **kw)


def verdicts(result) -> dict[str, str]:
    rows = result.json()
    rows = rows if isinstance(rows, list) else [rows]
    return {row["host"]: row["verdict"] for row in rows}


# -- nova: the exchange is known, several hosts at once


def test_probe_nova_compute_from_nova_conf_is_alive(cloud: Cloud) -> None:
    """README's first probe: nova's exchange (nova) is set in code, not in nova.conf."""
    result = nova(cloud, "probe", "--topic", "compute")
    assert result.returncode == 0, result
    assert result.stdout.split()[:3] == [C1, "compute", "alive"], result


def test_probe_two_computes_at_once(cloud: Cloud) -> None:
    result = nova(cloud, "probe", C1, C2, "--topic", "compute", "-f", "json")
    assert result.returncode == 0, result
    assert verdicts(result) == {C1: "alive", C2: "alive"}


def test_probe_hosts_file_from_stdin(cloud: Cloud) -> None:
    hosts = f"# the computes\n{C1}\n{C2}\n"
    result = nova(
        cloud, "probe", "--hosts-file", "-", "--topic", "compute", "-f", "json", input=hosts
    )
    assert result.returncode == 0, result
    assert verdicts(result) == {C1: "alive", C2: "alive"}


def test_probe_some_hosts_missing_is_partial(cloud: Cloud) -> None:
    result = nova(cloud, "probe", C1, GONE, "--topic", "compute", "-f", "json")
    assert result.returncode == 3, result
    assert verdicts(result) == {C1: "alive", GONE: "down"}


def test_probe_no_host_served_is_down(cloud: Cloud) -> None:
    result = nova(cloud, "probe", GONE, GONE + "2", "--topic", "compute", "-f", "json")
    assert result.returncode == 69, result


def test_probe_one_compute_alive_down_stuck_with_its_exchange(cloud: Cloud) -> None:
    """One host per probe, exchange named: alive 0, down 69 at once, stuck 75, --all 3."""
    probe = ("probe", "--topic", "compute", "--exchange", "nova", "--timeout", STUCK_TIMEOUT)
    alive = nova(cloud, *probe, C2)
    # Down is told at once: waiting out --timeout 60 would outlast the 45 s given here.
    down = nova(cloud, *probe, GONE, "--timeout", "60", timeout=45)
    with cloud.paused(f"nova-compute-{C2}"):
        stuck = nova(cloud, *probe, C2)
        everyone = nova(cloud, *probe, "--all")
    assert alive.returncode == 0 and alive.stdout.split()[:3] == [C2, "compute", "alive"], alive
    assert down.returncode == 69 and down.stdout.split()[:3] == [GONE, "compute", "down"], down
    assert stuck.returncode == 75 and stuck.stdout.split()[:3] == [C2, "compute", "stuck"], stuck
    assert everyone.returncode == 3, everyone


def test_probe_two_computes_one_stuck_is_partial(cloud: Cloud) -> None:
    with cloud.paused(f"nova-compute-{C2}"):
        both = nova(
            cloud, "probe", C1, C2, "--topic", "compute", "--timeout", STUCK_TIMEOUT, "-f", "json"
        )
    assert both.returncode == 3, both
    assert verdicts(both) == {C1: "alive", C2: "stuck"}


def test_every_compute_stuck_is_75_not_69(cloud: Cloud) -> None:
    with cloud.paused(*(f"nova-compute-{h}" for h in NOVA_COMPUTES)):
        both = nova(cloud, "probe", C1, C2, "--topic", "compute", "--timeout", STUCK_TIMEOUT)
        everyone = nova(cloud, "probe", "--all", "--topic", "compute", "--timeout", STUCK_TIMEOUT)
    assert both.returncode == 75, both
    assert everyone.returncode == 75, everyone


def test_ping_several_computes_names_each_host(cloud: Cloud) -> None:
    result = nova(cloud, "ping", C1, C2, "--topic", "compute", "-f", "json")
    assert result.returncode == 0, result
    rows = result.json()
    assert {row["host"] for row in rows} == {C1, C2}, rows
    assert all(row["outcome"] == "ok" for row in rows), rows


def test_ping_all_expect_hosts_against_oslo_answers(cloud: Cloud) -> None:
    """oslo's answers carry no host: --expect-hosts must use per-host calls."""
    hosts = ",".join(NOVA_COMPUTES)
    result = nova(cloud, "ping", "--all", "--topic", "compute", "--expect-hosts", hosts)
    assert result.returncode == 0, result
    partial = nova(
        cloud, "ping", "--all", "--topic", "compute", "--expect-hosts", f"{C1},{GONE}", "-f", "json"
    )
    assert partial.returncode == 3, partial
    assert GONE in partial.stdout + partial.stderr


def test_ping_all_returns_once_every_consumer_answered(cloud: Cloud) -> None:
    # Waiting out --timeout 60 would outlast the 45 s this test gives the command.
    result = nova(cloud, "ping", "--all", "--topic", "compute", "--timeout", "60", timeout=45)
    assert result.returncode == 0, result
    assert result.stdout.count("ok") == len(NOVA_COMPUTES), result


# -- cinder: no base API, servers named host@backend


def test_probe_cinder_volume_from_cinder_conf_checks_each_backend_cleanly(cloud: Cloud) -> None:
    mark = cloud.marks()
    result = cinder(cloud, "probe", "--topic", "cinder-volume", "-f", "json")
    assert result.returncode == 0, result
    assert verdicts(result) == {f"{CINDER_HOST}@{b}": "alive" for b in CINDER_BACKENDS}
    errors = cloud.rpc_errors_since(mark)
    assert not errors, format_errors(errors)


def test_probe_cinder_scheduler_cleanly(cloud: Cloud) -> None:
    mark = cloud.marks()
    result = cinder(cloud, "probe", "--topic", "cinder-scheduler")
    assert result.returncode == 0, result
    assert result.stdout.split()[:3] == [CINDER_HOST, "cinder-scheduler", "alive"], result
    errors = cloud.rpc_errors_since(mark)
    assert not errors, format_errors(errors)


def test_probe_all_cinder_volume_cleanly(cloud: Cloud) -> None:
    mark = cloud.marks()
    result = cinder(cloud, "probe", "--all", "--topic", "cinder-volume", "-f", "json")
    assert result.returncode == 0, result
    rows = json.loads(result.stdout)
    assert len(rows) >= len(CINDER_BACKENDS)
    assert all(row["verdict"] == "alive" for row in rows), rows
    errors = cloud.rpc_errors_since(mark)
    assert not errors, format_errors(errors)


def test_ping_refuses_cinder_which_has_no_base_api(cloud: Cloud) -> None:
    mark = cloud.marks()
    result = cinder(cloud, "ping", "--all", "--topic", "cinder-volume", "--timeout", "10")
    assert result.returncode == 2, result
    assert "probe" in result.stderr, result  # the hint names what to use instead
    assert not cloud.rpc_errors_since(mark)


def test_ping_with_only_failures_exits_1(cloud: Cloud) -> None:
    """The operator asks nova for a base API version it does not speak: only failures."""
    mark = cloud.marks()
    ping = ("ping", "--topic", "compute", "--version", "1.9", "--timeout", "10")
    each = nova(cloud, *ping, C1, C2, "-f", "json")
    everyone = nova(cloud, *ping, "--all")
    assert each.returncode == 1, each
    assert {row["host"]: row["outcome"] for row in each.json()} == {C1: "failed", C2: "failed"}
    assert "UnsupportedVersion" in each.stdout, each
    assert everyone.returncode == 1, everyone
    # What the operator asked for is what nova logged, and only nova-compute.
    errors = cloud.rpc_errors_since(mark)
    assert set(errors) <= {f"nova-compute-{h}" for h in NOVA_COMPUTES}, format_errors(errors)
    assert all("UnsupportedVersion" in str(e) for es in errors.values() for e in es)


# -- call: the family's version when none is given, and a hint when the service refuses


def test_call_cinder_without_version_asks_at_the_familys_version(cloud: Cloud) -> None:
    """cinder has no 1.0 API: a bare call goes out at cinder-scheduler's 3.0 and is answered."""
    mark = cloud.marks()
    result = cinder(cloud, "call", "-", "get_pools", "--topic", "cinder-scheduler", "-f", "json")
    assert result.returncode == 0, result
    # Pools appear once cinder-volume has reported; whatever is there is cinder's.
    assert all(pool["name"].startswith(f"{CINDER_HOST}@") for pool in result.json()), result
    assert not cloud.rpc_errors_since(mark)


def test_call_refused_at_the_default_version_hints_at_version(cloud: Cloud) -> None:
    """The operator asks for a method cinder-scheduler lacks (this call is exactly that, so
    its ERROR in cinder-scheduler's log is what was asked for): one line, and what to try."""
    result = cinder(cloud, "call", "-", "no_such_method", "--topic", "cinder-scheduler")
    assert result.returncode == 1, result
    first = result.stderr.strip().splitlines()[0]
    assert "NoSuchMethod" in first and "Traceback" not in result.stderr, result
    assert "default version 3.0" in result.stderr and "--version" in result.stderr, result

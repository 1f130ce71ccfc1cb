"""The rig itself: real services up on several hosts, and their logs as evidence."""

from __future__ import annotations

from peers_support import (
    CINDER_BACKENDS,
    CINDER_HOST,
    NOVA_COMPUTES,
    Cloud,
    managerctl,
)


def test_every_real_service_consumes_its_queues(cloud: Cloud, peer_broker) -> None:
    consumed = {q["name"]: q["consumers"] for q in peer_broker.list_queues()}
    for host in NOVA_COMPUTES:
        assert consumed.get(f"compute.{host}", 0) == 1, host
    # Both computes, the one scheduler and the one conductor share their topic queues.
    assert consumed["compute"] == len(NOVA_COMPUTES)
    for backend in CINDER_BACKENDS:
        # cinder-volume consumes its server queue twice (RPC server and its backend target).
        assert consumed.get(f"cinder-volume.{CINDER_HOST}@{backend}", 0) >= 1, backend
    # (>= 1: the good-citizen tests, not this one, say who else may consume these.)
    for queue in ("cinder-scheduler", "scheduler", "conductor", "cinder-volume"):
        assert consumed.get(queue, 0) >= 1, queue
    dead = [name for name, proc in cloud.procs.items() if not proc.running()]
    assert not dead, cloud.tails(dead)


def test_a_peer_log_shows_what_a_bad_request_did(cloud: Cloud) -> None:
    """The "no ERROR caused by managerctl" checks are only worth something if this one fails.

    The operator asks cinder-scheduler for a method it does not have, on purpose: cinder
    answers NoSuchMethod and logs oslo's ERROR traceback, which the rig must find.
    """
    mark = cloud.marks()
    result = managerctl(
        "--config-file",
        cloud.cinder_conf,
        "call",
        "-",
        "no_such_method_from_the_peers_tier",
        "--topic",
        "cinder-scheduler",
        "--version",
        "3.0",
        "--timeout",
        "20",
    )
    assert result.returncode == 1, result
    assert "NoSuchMethod" in result.stderr, result
    errors = cloud.wait_rpc_errors(mark, "cinder-scheduler")
    assert any("no_such_method_from_the_peers_tier" in str(e) for e in errors), errors
    assert all("Traceback" in str(e) for e in errors)
    # Nothing else heard of it.
    others = [n for n in cloud.procs if n != "cinder-scheduler"]
    assert not cloud.rpc_errors_since(mark, others)

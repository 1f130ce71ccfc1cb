"""Shared fixtures: one throwaway RabbitMQ node per test session (design/RABBITMQ.md).

Tests that use ``rabbitmq`` or ``broker_url`` are marked ``broker`` automatically, so
``pytest -m "not broker"`` runs the rest without RabbitMQ.  When RabbitMQ is not
installed those tests FAIL: CI must never skip broker tests silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from rigs.postgres import PostgresServer, ensure_postgres_installed
from rigs.rabbitmq import RabbitMQNode, ensure_rabbitmq_installed

BROKER_FIXTURES = frozenset({"rabbitmq", "broker_url", "rabbitmq4", "rabbitmq4_strict"})

# A leaked reply or managerctl queue fails the run; MANAGERCTL_FAIL_ON_LEAKS=0 only warns.
_LEAKS_KEY = pytest.StashKey[list]()
_USED_KEY = pytest.StashKey[bool]()


def _lead_our_own_process_group() -> None:
    """Become a process group leader when the group we were started in has lost its leader.

    oslo.messaging's queue manager (use_queue_manager, in the interop matrix's oslo clients
    running in this process) reads /proc/<process group>/stat and raises FileNotFoundError when
    the group's leader has exited, as it has under a runner that started the tests in the
    background. With a live leader (a terminal, a CI runner) nothing changes.
    """
    group = os.getpgrp()
    if group and not os.path.exists(f"/proc/{group}/stat"):
        os.setpgid(0, 0)


def pytest_configure(config: pytest.Config) -> None:
    _lead_our_own_process_group()
    # A SIGTERM (CI's timeout, `timeout 600 pytest`) unwinds like Ctrl-C, so fixtures still stop
    # the brokers and peers they started; Python's default would exit without running them.
    import signal

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _interrupt)
    # A shell starts background jobs with SIGINT ignored, and an ignored signal is inherited
    # through exec: every managerctl the tests start would then ignore the Ctrl-C a test sends
    # (test_exit_130_interrupted saw exit 0). Tests run as if started from a terminal.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


def _leaked_queues(node: RabbitMQNode) -> list[dict]:
    return [
        q
        for q in node.list_queues()
        if q.get("name", "").startswith("reply_") or "managerctl" in q.get("name", "")
    ]


@pytest.fixture(scope="session")
def rabbitmq(request: pytest.FixtureRequest):
    """A started RabbitMQNode for the whole session, stopped (and its data removed) at the end."""
    try:
        ensure_rabbitmq_installed()
    except RuntimeError as exc:
        pytest.fail(f"broker tests need RabbitMQ: {exc}", pytrace=False)
    node = RabbitMQNode()
    try:
        node.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start a throwaway RabbitMQ node: {exc}", pytrace=False)
    request.config.stash[_USED_KEY] = True
    try:
        yield node
    finally:
        try:
            if node.is_running():
                request.config.stash[_LEAKS_KEY] = _leaked_queues(node)
        except Exception as exc:  # the check must never hide the real test outcome
            request.config.stash[_LEAKS_KEY] = [{"name": f"<leak check failed: {exc}>"}]
        finally:
            node.stop()


@pytest.fixture
def broker_url(rabbitmq: RabbitMQNode) -> str:
    """Transport URL of the session's node; restarts it if an earlier test left it down."""
    if not rabbitmq.is_running():
        rabbitmq.start()
    return rabbitmq.url


def _rabbitmq4_node(strict: bool):
    # tests/ is on sys.path (rootdir conftest): the rigs package lives beside the tests.
    from rigs.rabbitmq4 import RabbitMQ4Node

    try:
        node = RabbitMQ4Node(strict=strict).start()
    except RuntimeError as exc:  # no chroot, or the node did not start: FAIL, never skip
        pytest.fail(f"could not start a RabbitMQ 4.0 node: {exc}", pytrace=False)
    return node


@pytest.fixture(scope="session")
def rabbitmq4() -> Iterator:
    """A RabbitMQ 4.0.5 node (Debian 13 chroot, design/RABBITMQ.md) with 4.0's defaults."""
    node = _rabbitmq4_node(strict=False)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def rabbitmq4_strict() -> Iterator:
    """A RabbitMQ 4.0.5 node denying transient_nonexcl_queues and global_qos, as 4.3 does.

    Give each test its own vhost (``rabbitmq4_strict.add_vhost()``).
    """
    node = _rabbitmq4_node(strict=True)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A started throwaway PostgreSQL server for the session, stopped (data removed) at the end.

    Like the broker, it FAILS when PostgreSQL is missing: scripts/test.sh installs it, so a
    missing server is a broken set-up, never a reason to skip. ``postgres.create_database()``
    gives each test an empty database.
    """
    try:
        ensure_postgres_installed()
    except RuntimeError as exc:
        pytest.fail(f"store tests need PostgreSQL: {exc}", pytrace=False)
    server = PostgresServer()
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start a throwaway PostgreSQL server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not config.stash.get(_USED_KEY, False):
        return
    leaks = config.stash.get(_LEAKS_KEY, [])
    if not leaks:
        return
    terminalreporter.section("broker leak check", sep="-", yellow=True)
    terminalreporter.write_line(
        f"WARNING: {len(leaks)} queue(s) left on the test broker at the end of the session "
        "(reply_* or *managerctl*):",
        yellow=True,
    )
    for q in leaks:
        terminalreporter.write_line(
            f"  {q.get('name')}  messages={q.get('messages', '?')} "
            f"consumers={q.get('consumers', '?')}"
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = session.config.stash.get(_LEAKS_KEY, [])
    if leaks and exitstatus == 0 and os.environ.get("MANAGERCTL_FAIL_ON_LEAKS", "1") != "0":
        session.exitstatus = 1

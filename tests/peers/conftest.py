"""The real nova + cinder tier (design/PEERS.md): one set of peers for the whole session.

``cloud`` starts, once per session: a throwaway RabbitMQ node of its own (nova and cinder leave
reply and fanout queues that are not managerctl's to clean), a placement stand-in, fresh sqlite
databases, then nova-conductor, nova-scheduler, two nova-computes (hosts peer-compute1 and
peer-compute2, each with its own state_path), cinder-scheduler and cinder-volume with two fake
backends (peerhost@fake, peerhost@fake2). It waits until every one consumes its queues.

Every test here is marked ``peers`` (and ``broker``). The tier skips, saying why, only when the
peer venvs cannot be built; a broker or a peer that does not start is a failure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from peers_support import Cloud, Fleet, PlacementStandIn, ensure_venvs
from rigs.rabbitmq import RabbitMQNode, ensure_rabbitmq_installed

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = []
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.peers)
            item.add_marker(pytest.mark.broker)
            ours.append(item)
    # The tests that need managerctl's long-running processes beside the peers come last, so
    # the others see the real services alone; the tier stays in one run of items, so that its
    # peers can stop as soon as it ends (pytest_runtest_teardown below).
    late = [item for item in ours if "fleet" in getattr(item, "fixturenames", ())]
    if late:
        rest = [item for item in items if item not in late]
        early = [item for item in ours if item not in late]
        at = rest.index(early[-1]) + 1 if early else items.index(late[0])
        items[:] = rest[:at] + late + rest[at:]


# What the session fixtures below started, stopped as soon as the last test of the tier has run:
# the rest of a whole-suite run should not share two cores with nova and cinder.
_STOPPERS: list[Callable[[], None]] = []


def _in_tier(item: pytest.Item | None) -> bool:
    return item is not None and HERE in Path(str(item.path)).resolve().parents


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _in_tier(item) and not _in_tier(nextitem):
        while _STOPPERS:
            _STOPPERS.pop()()


@pytest.fixture(scope="session")
def peer_venvs() -> tuple[Path, Path]:
    venvs = ensure_venvs()
    if isinstance(venvs, str):
        pytest.skip(venvs)
    return venvs


@pytest.fixture(scope="session")
def peer_broker(peer_venvs: tuple[Path, Path]) -> Iterator[RabbitMQNode]:
    try:
        ensure_rabbitmq_installed()
    except RuntimeError as exc:
        pytest.fail(f"the peers tier needs RabbitMQ: {exc}", pytrace=False)
    node = RabbitMQNode("managerctl-peers")
    _STOPPERS.append(node.stop)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def cloud(
    peer_venvs: tuple[Path, Path],
    peer_broker: RabbitMQNode,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cloud]:
    placement = PlacementStandIn().start()
    _STOPPERS.append(placement.stop)
    nova, cinder = peer_venvs
    peers = Cloud(
        tmp_path_factory.mktemp("peers"), peer_broker.url, nova, cinder, placement.endpoint
    )
    # The database syncs (tens of seconds) need no broker: run them while the node starts.
    sync_error: list[BaseException] = []

    def sync() -> None:
        try:
            peers.sync_databases()
        except BaseException as exc:  # reported below, in the test's thread
            sync_error.append(exc)

    _STOPPERS.append(peers.stop)
    syncing = threading.Thread(target=sync)
    syncing.start()
    try:
        try:
            peer_broker.start()
        finally:
            syncing.join()
        if sync_error:
            pytest.fail(str(sync_error[0]), pytrace=False)
        try:
            peers.start_services(peer_broker.list_queues)
            peers.wait_consuming(peer_broker.list_queues)
        except RuntimeError as exc:
            pytest.fail(f"the real services did not start: {exc}", pytrace=False)
        yield peers
    finally:
        peers.stop()
        placement.stop()


@pytest.fixture(scope="session")
def fleet_marks(cloud: Cloud) -> dict[str, int]:
    """Where each peer's log stood before managerctl's long-running processes started."""
    return cloud.marks()


@pytest.fixture(scope="session")
def fleet(
    cloud: Cloud, fleet_marks: dict[str, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """Two ``serve collector`` and two ``serve hostinfo`` beside the real services.

    A process that does not start does not stop the others: each test that needs one calls
    ``fleet.require(name)``, which fails it with that process's log.
    """
    procs = Fleet(cloud, tmp_path_factory.mktemp("fleet"))
    _STOPPERS.append(procs.stop)
    procs.start()
    try:
        procs.wait_started()
        yield procs
    finally:
        procs.stop()

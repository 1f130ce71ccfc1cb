"""Capabilities from running services: whom to ask, asking them, and gathering what they send.

``publish_targets`` picks the topics (and the version each speaks) to ask; ``publish`` asks them
with a fanout cast and says who could hear it; ``live_records`` joins the scheduler fanout through
a queue of its own, asks, and returns the latest record per (service, host) it heard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import BadInputError, ManagerCtlError, UnavailableError

if TYPE_CHECKING:
    from ..capabilities import CapabilityRecord
    from ..capabilities.families import PublishTarget
    from ..config import Settings


def scheduler_topic(settings: Settings, given: str | None = None) -> str:
    """``--scheduler-topic`` when given, else the ``scheduler_topic`` option."""
    from ..manager import SCHEDULER_TOPIC

    return given or settings.scheduler_topic or SCHEDULER_TOPIC


def publish_targets(
    settings: Settings,
    store_url: str | None,
    scheduler: str,
    topics: Sequence[str] = (),
    version: str | None = None,
    service: str | None = None,
) -> list[PublishTarget]:
    """Whom to ask, each at its version: ``topics`` as given, else the family's publishers
    and the managerctl services that said they publish (only those of ``service``, if given)."""
    from ..capabilities import open_store, store_url_from
    from ..capabilities.families import parse_target
    from ..capabilities.families import publish_targets as family_targets

    if topics:
        return list({t.topic: t for t in (parse_target(x, version) for x in topics)}.values())
    try:
        store = open_store(store_url or store_url_from(settings), must_exist=True)
    except ManagerCtlError:
        # No store yet (or unreachable): asking the family's known publishers is still useful.
        store = None
    try:
        services = [] if store is None else store.services(service=service)
    finally:
        if store is not None:
            store.close()
    targets = family_targets(scheduler, settings=settings, services=services)
    if service is not None:
        targets = [t for t in targets if t.topic in {s.get("topic") for s in services}]
        if not targets:
            raise BadInputError(
                f"no service {service!r} that publishes to {scheduler!r} is known",
                hint="give --topic TOPIC[:VERSION], or check --scheduler-topic",
            )
    if version is not None:
        targets = [parse_target(t.topic, version) for t in targets]
    return targets


def publish(settings: Settings, targets: Sequence[PublishTarget]) -> list[dict[str, Any]]:
    """Ask each target to publish now (a fanout cast); one row per topic with ``listeners``
    "yes" when a queue was bound to its fanout exchange, "none" when nobody could hear it."""
    from ..capabilities.collector import PUBLISH_METHOD
    from ..context import get_admin_context
    from ..errors import NoConsumerError
    from ..names import fanout_exchange_name
    from ..rpc import get_transport
    from ..rpc.client import RPCClient

    rows = []
    with RPCClient(get_transport(settings)) as client:
        context = get_admin_context()
        for target in targets:
            try:
                client.cast(
                    context,
                    PUBLISH_METHOD,
                    topic=target.topic,
                    fanout=True,
                    version=target.version,
                    require_listener=True,
                )
                listening = "yes"
            except NoConsumerError:
                listening = "none"
            rows.append(
                {
                    "topic": target.topic,
                    "version": target.version,
                    "exchange": fanout_exchange_name(target.topic),
                    "listeners": listening,
                }
            )
    return rows


def listen_live(
    settings: Settings, scheduler: str, targets: Sequence[PublishTarget], wait: float
) -> list[CapabilityRecord]:
    """Join the scheduler fanout, ask ``targets`` to publish, gather for ``wait`` seconds."""
    from ..capabilities import CapabilityRecord
    from ..capabilities.collector import PUBLISH_METHOD, UPDATE_METHOD
    from ..context import get_admin_context
    from ..rpc import get_transport
    from ..rpc.listen import FanoutListener

    with FanoutListener(get_transport(settings), topic=scheduler) as listener:
        context = get_admin_context()
        for target in targets:
            listener.fanout_cast(context, target.topic, PUBLISH_METHOD, version=target.version)
        heard = listener.listen(wait)
    latest: dict[tuple[str, str], CapabilityRecord] = {}
    for received_at, request in heard:
        args = request.args
        if request.method != UPDATE_METHOD or not args.get("service_name") or not args.get("host"):
            continue
        caps = args.get("capabilities")
        record = CapabilityRecord(
            str(args["service_name"]),
            str(args["host"]),
            caps if isinstance(caps, list) else [caps],
            received_at,
        )
        latest[(record.service, record.host)] = record
    return [latest[key] for key in sorted(latest)]


def live_records(
    settings: Settings,
    store_url: str | None,
    scheduler: str,
    topics: Sequence[str],
    version: str | None,
    wait: float,
) -> list[CapabilityRecord]:
    """What the services publish within ``wait`` seconds of being asked (never empty: nobody
    answering is UnavailableError, exit 69, naming whom it asked)."""
    targets = publish_targets(settings, store_url, scheduler, topics, version)
    records = listen_live(settings, scheduler, targets, wait)
    if not records:
        asked = ", ".join(str(target) for target in targets) or "nobody"
        raise UnavailableError(
            f"no service published capabilities to {scheduler!r} within {wait:g}s (asked: {asked})",
            hint="are services running, and are --scheduler-topic and --topic right? raise --wait",
        )
    return records

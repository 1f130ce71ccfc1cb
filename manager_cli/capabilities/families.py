"""SchedulerDependentManager families: where capabilities go, who publishes, at which version.

A family is a scheduler topic (publishers fanout-cast ``update_service_capabilities`` to
``<scheduler_topic>_fanout``) and the topics of its publishers (asked to publish again by a fanout
cast of ``publish_service_capabilities``, at the RPC version they speak). A request at a version a
service does not speak is refused and leaves an ERROR traceback in its log (cinder-volume refuses
1.0), so every publish request managerctl sends by itself goes to a known family, at its version:

- the seed's family (``scheduler``): managerctl's own managers (``hostinfo``), at 1.0;
- cinder's (``cinder-scheduler``): ``cinder-volume`` at 3.0 (cinder-volume's RPC API is 3.x);
- managerctl services that reported a heartbeat and said they publish: at the major version of
  the RPC API they reported.

Core module: pure, no broker, no database.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import BadInputError
from ..families import FAMILIES

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "DEFAULT_PUBLISH_VERSION",
    "KNOWN_FAMILIES",
    "TOPICS_ENV",
    "PublishTarget",
    "collector_topics",
    "parse_target",
    "publish_targets",
    "version_for",
]

TOPICS_ENV = "MANAGERCTL_COLLECTOR_TOPICS"
# What managerctl's own SchedulerDependentManagers speak (their RPC APIs are 1.x by default).
DEFAULT_PUBLISH_VERSION = "1.0"
_VERSION = re.compile(r"^\d+\.\d+$")


@dataclass(frozen=True)
class PublishTarget:
    """A topic of publishers, and the version ``publish_service_capabilities`` is cast at."""

    topic: str
    version: str

    def __str__(self) -> str:
        return f"{self.topic}:{self.version}"


# The scheduler topic of each known family -> its publishers: the seed's, and those of the
# OpenStack families in manager_cli.families (cinder-volume's manager is at 3.x in cinder 29;
# its own scheduler asks it to publish with a 3.x fanout cast).
KNOWN_FAMILIES: dict[str, tuple[PublishTarget, ...]] = {
    "scheduler": (PublishTarget("hostinfo", DEFAULT_PUBLISH_VERSION),),
    **{
        family.scheduler_topic: (
            PublishTarget(
                family.publisher_topic,
                family.version_for(family.publisher_topic) or DEFAULT_PUBLISH_VERSION,
            ),
        )
        for family in FAMILIES
        if family.scheduler_topic and family.publisher_topic
    },
}
_KNOWN_VERSIONS = {
    target.topic: target.version for targets in KNOWN_FAMILIES.values() for target in targets
}


def version_for(topic: str) -> str:
    """The version a publish request to ``topic`` goes out at when nobody said: the family's."""
    return _KNOWN_VERSIONS.get(topic, DEFAULT_PUBLISH_VERSION)


def _check_version(version: str, where: str) -> str:
    if not _VERSION.match(version):
        raise BadInputError(
            f"bad RPC version {version!r} in {where}", hint="give MAJOR.MINOR, e.g. 3.0"
        )
    return version


def parse_target(text: str, version: str | None = None) -> PublishTarget:
    """``TOPIC`` or ``TOPIC:VERSION``; ``version`` (e.g. ``--version``) wins over both."""
    topic, _, given = str(text).strip().partition(":")
    topic = topic.strip()
    if not topic:
        raise BadInputError(f"bad publisher topic {text!r}", hint="give TOPIC or TOPIC:VERSION")
    chosen = version or given.strip() or version_for(topic)
    return PublishTarget(topic, _check_version(chosen, repr(text)))


def collector_topics(
    settings: Settings | None = None, environ: Mapping[str, str] | None = None
) -> list[str] | None:
    """``[DEFAULT] collector_topics``, else $MANAGERCTL_COLLECTOR_TOPICS (comma separated);
    None when neither is set (then the family's known publishers are asked)."""
    environ = os.environ if environ is None else environ
    configured = getattr(settings, "collector_topics", None) if settings is not None else None
    if configured is None:
        configured = environ.get(TOPICS_ENV)
    if configured is None:
        return None
    items = configured.split(",") if isinstance(configured, str) else list(configured)
    return [str(item).strip() for item in items if str(item).strip()]


def _major_zero(version: Any) -> str | None:
    text = str(version or "")
    major = text.split(".", 1)[0]
    return f"{major}.0" if major.isdigit() else None


def publish_targets(
    scheduler_topic: str,
    *,
    settings: Settings | None = None,
    services: Iterable[Mapping[str, Any]] = (),
    environ: Mapping[str, str] | None = None,
) -> list[PublishTarget]:
    """Whom to ask to publish to ``scheduler_topic``, each at its version, no repeats.

    The configured ``collector_topics`` (else the family's known publishers), then every
    managerctl service whose heartbeat said it publishes to this scheduler topic. A service
    record that does not say so (a plain Manager, or an older managerctl) is never asked: a
    publish request it does not know would only land in its log as an error.
    """
    configured = collector_topics(settings, environ)
    if configured is None:
        targets = list(KNOWN_FAMILIES.get(scheduler_topic, ()))
    else:
        targets = [parse_target(item) for item in configured]
    for record in services:
        if not record.get("publishes_capabilities") or not record.get("topic"):
            continue
        if record.get("scheduler_topic", scheduler_topic) != scheduler_topic:
            continue
        version = _major_zero(record.get("rpc_api_version")) or DEFAULT_PUBLISH_VERSION
        targets.append(PublishTarget(str(record["topic"]), version))
    chosen: dict[str, PublishTarget] = {}
    for target in targets:
        if target.topic != scheduler_topic:
            chosen.setdefault(target.topic, target)
    return list(chosen.values())

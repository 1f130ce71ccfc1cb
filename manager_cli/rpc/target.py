"""Where a request goes: a :class:`Target`, as oslo.messaging routes with one (pure).

``topic`` names the service; ``server`` one host of it (the queue ``<topic>.<server>``);
``exchange`` the control exchange (None: the client's, from the settings or the topic's
family); ``namespace`` and ``version`` what the endpoint must serve; ``fanout`` every server of
the topic, through ``<topic>_fanout``. The endpoints' own target (what they serve) is
``rpc.dispatcher.Target``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BadInputError


@dataclass(frozen=True, slots=True)
class Target:
    topic: str
    server: str | None = None
    exchange: str | None = None
    namespace: str | None = None
    version: str | None = None
    fanout: bool = False

    @property
    def routing_key(self) -> str:
        """``<topic>.<server>`` for one server, ``<topic>`` for any (the queue's name too)."""
        return f"{self.topic}.{self.server}" if self.server else self.topic

    def replace(self, **changes: Any) -> Target:
        """This target with some fields changed (oslo's ``Target(...)`` + ``prepare``)."""
        return dataclasses.replace(self, **changes)


# The loose keywords client methods take for a target's fields (``fanout`` is cast's own).
ROUTING_FIELDS = frozenset({"topic", "server", "exchange", "namespace", "version"})


def resolve(target: Target | None, routing: Mapping[str, Any], doing: str) -> Target:
    """The target of a client method given ``target=``, loose keywords (``topic=``,
    ``server=``, ...), or both: keywords that are not None refine the target, as
    ``client.prepare(...)`` does in oslo."""
    if target is not None and not routing and target.topic:
        return target
    unknown = set(routing) - ROUTING_FIELDS
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    given = {name: value for name, value in routing.items() if value is not None}
    if target is None:
        if not given.get("topic"):
            raise BadInputError(f"{doing} needs a topic")
        return Target(**given)
    result = dataclasses.replace(target, **given) if given else target
    if not result.topic:
        raise BadInputError(f"{doing} needs a topic")
    return result

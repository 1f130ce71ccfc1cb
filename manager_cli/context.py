"""The request context passed to every RPC method and periodic task.

oslo.messaging flattens the context into ``_context_<key>`` entries; on the receiving side it is a
plain dict. managerctl keeps it a dict (``RequestContext`` is a dict subclass with a couple of
conveniences), so it round-trips unchanged through any oslo peer.
"""

from __future__ import annotations

import uuid
from typing import Any


class RequestContext(dict):
    """A dict of context fields with a generated ``request_id``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setdefault("request_id", "req-" + str(uuid.uuid4()))

    def to_dict(self) -> dict[str, Any]:
        return dict(self)


def get_admin_context(**fields: Any) -> RequestContext:
    """The context managerctl uses when an operator drives a manager directly."""
    fields.setdefault("user", "managerctl")
    fields.setdefault("is_admin", True)
    return RequestContext(fields)

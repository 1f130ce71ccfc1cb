"""The one-shot RPC client of a command, built from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Settings
    from ..rpc.client import RPCClient


def one_shot_client(settings: Settings, timeout: float | None = None) -> RPCClient:
    """An ``RPCClient`` for one command: its reply queue is exclusive, so it goes away with
    the process, and with no control_exchange set anywhere the topic's family picks it
    (nova's services listen on ``nova``, which nova sets in its code, not in nova.conf)."""
    from ..rpc import get_transport
    from ..rpc.client import RPCClient

    return RPCClient(
        get_transport(settings),
        timeout=timeout or settings.rpc_response_timeout,
        exclusive=True,
        infer_exchange=settings.explicit("control_exchange") is None,
    )

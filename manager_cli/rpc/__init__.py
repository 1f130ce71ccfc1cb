"""The oslo.messaging RPC protocol over RabbitMQ, on pika.

``wire``, ``dispatcher`` and ``target`` are pure and may be used by the core; ``transport``,
``client`` and ``server`` do I/O and import pika, so import them only where a broker is needed.
:func:`get_transport` builds the one Transport a process's clients and servers share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Settings
    from .transport import RabbitOptions, TransportURL
    from .transport_base import Transport

MEMORY_SCHEME = "memory"


def get_transport(
    settings: Settings | None = None,
    *,
    url: str | TransportURL | None = None,
    options: RabbitOptions | None = None,
) -> Transport:
    """The Transport of ``settings`` (its ``transport_url`` and rabbit options), or of ``url``
    and ``options``; ``memory://NAME`` gives the in-memory broker NAME of this process
    (``manager_cli.testing``), any other URL RabbitMQ through pika."""
    if settings is not None:
        from ..config import rabbit_options
        from .transport import RabbitOptions as _Options

        if url is None:
            url = settings.transport_url
        if options is None:
            options = _Options(**rabbit_options(settings))
    if isinstance(url, str) and url.strip().lower().startswith(MEMORY_SCHEME + "://"):
        from .memory import MemoryTransport

        return MemoryTransport.from_url(url, options)
    from ._pika import PikaTransport
    from .transport import parse_transport_url

    parsed = parse_transport_url(url)
    if parsed.scheme == MEMORY_SCHEME:
        from .memory import MemoryTransport

        return MemoryTransport(parsed, options)
    return PikaTransport(parsed, options)


def as_transport(
    transport: Transport | TransportURL | str | None, options: RabbitOptions | None = None
) -> Transport:
    """``transport`` itself, or the one a URL names (client, server and listener take either)."""
    from .transport_base import Transport

    if isinstance(transport, Transport):
        if options is not None:
            raise TypeError("options go with a transport URL, not with a Transport")
        return transport
    return get_transport(url=transport, options=options)

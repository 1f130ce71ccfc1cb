"""Transport URLs, connections and the declarations oslo.messaging's rabbit driver makes.

``parse_transport_url`` reads ``rabbit://user:pass@host:port,host2/vhost?opt=value`` exactly as
oslo does (PROTOCOL.md §8); ``connect`` opens a pika connection with fail over across the hosts
and maps every connection error, once, to managerctl's taxonomy. What is declared, and in
which shape, is ``rpc.topology``'s business; broker refusals become errors in ``rpc.refusals``.

Passwords leave this module in clear only through ``TransportURL.unmasked()``: ``repr``/``str``
of a URL or host mask them, and no error message quotes the raw URL.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import ssl
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib import parse

import pika
import pika.exceptions
from pika.adapters.utils import connection_workflow

from .. import names
from .. import redact as _redact
from ..config import DEFAULT_GROUP, boolean
from ..config import default as _default
from ..errors import (
    AccessRefusedError,
    BadInputError,
    BrokerUnreachableError,
    ConfigError,
    ManagerCtlError,
)

LOG = logging.getLogger(__name__)


class _ExpectedNotFound(logging.Filter):
    """Drop pika's WARNING for a 404 that closes a channel: managerctl asks with passive
    declares on throwaway channels whether a queue or exchange exists (``serve``'s shape check,
    the consumer check of a call), and "no" is an answer there, not a problem for the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.WARNING and "Channel.Close (404)" in record.getMessage()
        )


logging.getLogger("pika.channel").addFilter(_ExpectedNotFound())

DEFAULT_PORT = 5672
DEFAULT_TLS_PORT = 5671
DEFAULT_USER = "guest"
DEFAULT_PASSWORD = "guest"
DEFAULT_HOST = "localhost"
SCHEMES = ("rabbit", "amqp", "amqps")
MASK = "***"
BLOCKED_CONNECTION_TIMEOUT = 60.0


@dataclass(frozen=True)
class RabbitOptions:
    """The ``[oslo_messaging_rabbit]`` options managerctl honours, with the defaults
    ``config.py`` declares (one copy of oslo's defaults).

    ``control_exchange`` comes from ``[DEFAULT]``; ``connect_timeout`` is managerctl's own (oslo
    has none): a CLI should fail fast on an unreachable broker.
    """

    control_exchange: str = _default("control_exchange", DEFAULT_GROUP)
    heartbeat_timeout_threshold: int = _default("heartbeat_timeout_threshold")
    connect_timeout: float = _default("connect_timeout", DEFAULT_GROUP)
    amqp_durable_queues: bool = _default("amqp_durable_queues")
    amqp_auto_delete: bool = _default("amqp_auto_delete")
    rabbit_transient_queues_ttl: int = _default("rabbit_transient_queues_ttl")
    rabbit_qos_prefetch_count: int = _default("rabbit_qos_prefetch_count")
    ssl: bool = _default("ssl")
    ssl_ca_file: str | None = _default("ssl_ca_file")
    ssl_cert_file: str | None = _default("ssl_cert_file")
    ssl_key_file: str | None = _default("ssl_key_file")
    rabbit_login_method: str = _default("rabbit_login_method")
    rabbit_retry_interval: float = _default("rabbit_retry_interval")
    rabbit_retry_backoff: float = _default("rabbit_retry_backoff")
    rabbit_interval_max: float = _default("rabbit_interval_max")
    kombu_missing_consumer_retry_timeout: float = _default("kombu_missing_consumer_retry_timeout")
    # What changes the topology or the body (TOPOLOGIES.md); rpc.topology turns them into the
    # shapes oslo declares.
    rabbit_ha_queues: bool = _default("rabbit_ha_queues")
    rabbit_quorum_queue: bool = _default("rabbit_quorum_queue")
    rabbit_quorum_delivery_limit: int = _default("rabbit_quorum_delivery_limit")
    rabbit_quorum_max_memory_length: int = _default("rabbit_quorum_max_memory_length")
    rabbit_quorum_max_memory_bytes: int = _default("rabbit_quorum_max_memory_bytes")
    rabbit_transient_quorum_queue: bool = _default("rabbit_transient_quorum_queue")
    rabbit_stream_fanout: bool = _default("rabbit_stream_fanout")
    use_queue_manager: bool = _default("use_queue_manager")
    hostname: str | None = None  # queue manager names; None: this machine's host name
    processname: str | None = None  # ... None: the program's name (oslo: basename(argv[0]))
    enable_cancel_on_failover: bool = _default("enable_cancel_on_failover")
    kombu_compression: str | None = _default("kombu_compression")


# Query options oslo accepts that do not change what managerctl sends or declares.
_IGNORED_OPTIONS = frozenset(
    {
        "rpc_conn_pool_size",
        "conn_pool_min_size",
        "conn_pool_ttl",
        "ssl_version",
        "ssl_enforce_hostname_verification",
        "ssl_enforce_fips_mode",
        "kombu_reconnect_delay",
        "kombu_reconnect_splay",
        "kombu_failover_strategy",
        "heartbeat_rate",
        "heartbeat_in_pthread",
        "direct_mandatory_flag",
    }
)
_LOGIN_METHODS = ("PLAIN", "AMQPLAIN", "EXTERNAL")
# Only [oslo_messaging_rabbit] options may come from the URL (control_exchange is [DEFAULT]).
_URL_OPTION_FIELDS = {
    f.name: f.type for f in dataclasses.fields(RabbitOptions) if f.name != "control_exchange"
}


@dataclass(frozen=True)
class BrokerHost:
    """One broker of a transport URL; ``repr`` and ``str`` mask the password."""

    hostname: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    username: str = DEFAULT_USER
    password: str = field(default=DEFAULT_PASSWORD, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 hosts in brackets), without credentials."""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{self.port}"

    def netloc(self, *, mask: bool = True) -> str:
        password = MASK if mask else parse.quote(self.password, safe="")
        return f"{parse.quote(self.username, safe='')}:{password}@{self.address}"

    def __str__(self) -> str:
        return self.netloc(mask=True)

    def __repr__(self) -> str:
        return f"BrokerHost({self.netloc(mask=True)!r})"


@dataclass(frozen=True)
class TransportURL:
    """A parsed transport URL. ``str``/``repr`` mask passwords; ``unmasked()`` does not."""

    scheme: str = "rabbit"
    hosts: tuple[BrokerHost, ...] = (BrokerHost(),)
    virtual_host: str = "/"
    query: Mapping[str, str] = field(default_factory=dict)
    # Typed overrides of RabbitOptions taken from ``query``.
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.scheme == "amqps"

    def _to_string(self, mask: bool) -> str:
        netloc = ",".join(host.netloc(mask=mask) for host in self.hosts)
        path = "/" if self.virtual_host == "/" else "/" + parse.quote(self.virtual_host, safe="")
        query = "?" + parse.urlencode(dict(self.query)) if self.query else ""
        return f"{self.scheme}://{netloc}{path}{query}"

    def masked(self) -> str:
        """The URL with every password replaced by ``***``: safe to print and log."""
        return self._to_string(mask=True)

    def unmasked(self) -> str:
        """The URL with its passwords, e.g. to hand to oslo.messaging. Never print it."""
        return self._to_string(mask=False)

    def host_list(self) -> str:
        """``host:port, host2:port2``: what error messages name."""
        return ", ".join(host.address for host in self.hosts)

    def apply_to(self, options: RabbitOptions) -> RabbitOptions:
        """``options`` with the URL's query options applied (the URL wins, as in oslo)."""
        return dataclasses.replace(options, **self.options) if self.options else options

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"TransportURL({self.masked()!r})"


def _convert_option(name: str, raw: str) -> Any:
    kind = _URL_OPTION_FIELDS[name]
    if "bool" in str(kind):
        try:
            return boolean(raw)
        except ValueError:
            raise BadInputError(f"transport URL option {name} expects true or false") from None
    if str(kind) == "int":
        try:
            return int(raw)
        except ValueError:
            raise BadInputError(f"transport URL option {name} expects an integer") from None
    if str(kind) == "float":
        try:
            return float(raw)
        except ValueError:
            raise BadInputError(f"transport URL option {name} expects a number") from None
    if name == "rabbit_login_method":
        if raw.upper() not in _LOGIN_METHODS:
            raise BadInputError(
                f"transport URL option rabbit_login_method must be one of {', '.join(_LOGIN_METHODS)}"
            )
        return raw.upper()
    if name == "kombu_compression":
        from .wire import compression_type

        try:
            compression_type(raw)
        except ValueError as exc:
            raise BadInputError(f"transport URL option kombu_compression: {exc}") from None
        return raw or None
    return raw


def _parse_query(query: str) -> tuple[dict[str, str], dict[str, Any]]:
    raw: dict[str, str] = {}
    typed: dict[str, Any] = {}
    for name, values in parse.parse_qs(query).items():
        value = ",".join(values)
        raw[name] = value
        if name in _URL_OPTION_FIELDS:
            typed[name] = _convert_option(name, value)
        elif name not in _IGNORED_OPTIONS:
            raise BadInputError(
                f"unknown transport URL option {name!r}",
                hint="query options must be [oslo_messaging_rabbit] options",
            )
    return raw, typed


def _parse_host(piece: str, number: int, default_port: int) -> BrokerHost:
    username, password, hostport = DEFAULT_USER, DEFAULT_PASSWORD, piece
    if "@" in piece:
        credentials, hostport = piece.rsplit("@", 1)
        user_part, _, password_part = credentials.partition(":")
        username = parse.unquote(user_part) or DEFAULT_USER
        password = parse.unquote(password_part) if ":" in credentials else DEFAULT_PASSWORD
    if hostport.startswith("["):
        hostname, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise BadInputError(f"host #{number} of the transport URL has unbalanced brackets")
        port_text = rest[1:]
    elif hostport.count(":") > 1:
        # A bare IPv6 address: oslo's parse_host_port takes it whole, without a port.
        hostname, port_text = hostport, ""
    else:
        hostname, _, port_text = hostport.partition(":")
    port = default_port
    if port_text:
        # Never quote the text: with an unescaped ',' in a password, this is part of it.
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise BadInputError(
                f"host #{number} of the transport URL has a bad port",
                hint="ports are 1-65535; percent-encode special characters in user and password",
            )
        port = int(port_text)
    return BrokerHost(hostname or DEFAULT_HOST, port, username, password)


def parse_transport_url(url: str | TransportURL | None) -> TransportURL:
    """Parse ``rabbit://[user:pass@]host[:port][,...]/[vhost][?opt=value...]`` as oslo does.

    ``rabbit://`` (or None, or empty) means ``guest:guest@localhost:5672``; an empty vhost means
    ``/``; user, password and vhost are percent-decoded. Raises BadInputError, whose message
    never contains a password.
    """
    if isinstance(url, TransportURL):
        return url
    if url is None or url == "":
        url = "rabbit://"
    if not isinstance(url, str):
        raise BadInputError(f"a transport URL must be a string, not {type(url).__name__}")
    url = url.strip()
    if "://" not in url:
        raise BadInputError(
            "the transport URL has no scheme",
            hint="it must look like rabbit://user:pass@host:5672/",
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        if any(c in scheme for c in ":@/"):
            raise BadInputError("the transport URL is malformed")
        raise BadInputError(
            f"unsupported transport URL scheme {scheme!r}", hint="use rabbit:// (or amqp://)"
        )
    try:
        parts = parse.urlsplit(url)
    except ValueError:
        raise BadInputError("the transport URL is malformed (check the host brackets)") from None
    netloc, path, query = parts.netloc, parts.path, parts.query
    default_port = DEFAULT_TLS_PORT if scheme == "amqps" else DEFAULT_PORT
    hosts = tuple(
        _parse_host(piece, number, default_port)
        for number, piece in enumerate((p for p in netloc.split(",") if p), start=1)
    )
    virtual_host = parse.unquote(path[1:]) if path else ""
    raw_query, typed = _parse_query(query)
    return TransportURL(
        scheme=scheme,
        hosts=hosts or (BrokerHost(port=default_port),),
        virtual_host=virtual_host or "/",
        query=MappingProxyType(raw_query),
        options=MappingProxyType(typed),
    )


# One masker for the whole package (manager_cli.redact); re-exported here for the RPC layer.
mask_url_passwords = _redact.mask_url_passwords


# ---------------------------------------------------------------------------
# Connections


def connection_name() -> str:
    """``<argv0>:<pid>:<uuid>``, the name oslo gives its connections (shown by rabbitmqctl)."""
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"{argv0}:{os.getpid()}:{uuid.uuid4()}"


def _ssl_options(host: BrokerHost, options: RabbitOptions) -> pika.SSLOptions:
    try:
        context = ssl.create_default_context(cafile=options.ssl_ca_file or None)
        if options.ssl_cert_file:
            context.load_cert_chain(options.ssl_cert_file, options.ssl_key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS files: {exc}") from None
    return pika.SSLOptions(context, server_hostname=host.hostname)


def connection_parameters(
    url: TransportURL, host: BrokerHost, options: RabbitOptions, name: str
) -> pika.ConnectionParameters:
    """pika parameters for one host: short timeouts, oslo's heartbeat, login and name."""
    if options.rabbit_login_method == "EXTERNAL":
        credentials: Any = pika.credentials.ExternalCredentials()
    elif options.rabbit_login_method in ("PLAIN", "AMQPLAIN"):
        # pika speaks PLAIN only; RabbitMQ accepts it wherever it accepts AMQPLAIN.
        credentials = pika.PlainCredentials(host.username, host.password, erase_on_connect=False)
    else:
        raise ConfigError(f"unsupported rabbit_login_method {options.rabbit_login_method!r}")
    tls = options.ssl or url.tls
    return pika.ConnectionParameters(
        host=host.hostname,
        port=host.port,
        virtual_host=url.virtual_host,
        credentials=credentials,
        heartbeat=int(options.heartbeat_timeout_threshold),
        connection_attempts=1,
        socket_timeout=options.connect_timeout,
        # The whole connect (TCP, TLS, AMQP handshake) within connect_timeout, as documented.
        stack_timeout=options.connect_timeout,
        # Under a memory or disk alarm the broker blocks publishers; without a bound a publish
        # (a heartbeat, a confirm) would wait forever. pika then closes the connection, which
        # the callers already handle as a lost connection.
        blocked_connection_timeout=BLOCKED_CONNECTION_TIMEOUT,
        ssl_options=_ssl_options(host, options) if tls else None,
        client_properties={"connection_name": name},
    )


def _failure_reason(exc: BaseException) -> str:
    """A short reason for a failed connection, from pika's nested exceptions."""
    seen = 0
    while seen < 8:
        seen += 1
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve the host name ({exc.strerror})"
        if isinstance(exc, ssl.SSLError):  # an OSError too: say what TLS found, verbatim
            return _tls_reason(exc)
        if isinstance(exc, pika.exceptions.IncompatibleProtocolError):
            # What a plain client meets at a TLS listener (or at anything that is not AMQP).
            return "the port does not speak plain AMQP 0-9-1 (a TLS listener? set ssl = true)"
        if isinstance(exc, (socket.timeout, TimeoutError)) or "Timeout" in type(exc).__name__:
            return "timed out"
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror.lower()
        # pika wraps the socket error: connector errors keep it in .exception, a failed
        # connection workflow in .exceptions, AMQPConnectionError in args.
        inner = getattr(exc, "exception", None)
        if not isinstance(inner, BaseException):
            nested = getattr(exc, "exceptions", None) or ()
            inner = nested[-1] if nested and isinstance(nested[-1], BaseException) else None
        if inner is None:
            inner = next(
                (a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)), None
            )
        if inner is None:
            break
        exc = inner
    return mask_url_passwords(type(exc).__name__)


_TLS_PREFIX = "TLS: "


def _tls_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = (exc.verify_message or "").rstrip(".") or "certificate verify failed"
        return f"{_TLS_PREFIX}the broker's certificate was rejected: {detail}"
    reason = (exc.reason or exc.strerror or type(exc).__name__).replace("_", " ").lower()
    if "alert" in reason:  # the broker ended the handshake: it refused our certificate
        return f"{_TLS_PREFIX}the broker refused the handshake ({reason})"
    return f"{_TLS_PREFIX}handshake failed ({reason})"


def _tls_hint(reasons: list[str]) -> str:
    """What to change when every host failed in the TLS handshake."""
    text = " ".join(reasons)
    if "mismatch" in text:
        return "connect with a host name the broker's certificate names (transport_url)"
    if "certificate was rejected" in text:
        return "set ssl_ca_file to the CA that signed the broker's certificate"
    if "refused the handshake" in text:
        return "check ssl_cert_file / ssl_key_file: the broker must trust the client certificate"
    return "check that the port is the broker's TLS listener and the ssl_* options"


# A handshake that times out surfaces as a connector error, which is neither an AMQPError nor
# an OSError.
_CONNECTOR_ERRORS = connection_workflow.AMQPConnectorException

_AUTH_ERRORS = (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)

# What pika raises when a connection or channel a long-running consumer holds is lost or
# closed under it (a server and the collector's intake reconnect on these).
CHANNEL_LOST_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    OSError,
)
# ... and, while it gets a new one, a failed attempt (transport.connect raises managerctl's).
RECONNECT_ERRORS = (*CHANNEL_LOST_ERRORS, ManagerCtlError)


def connect(
    url: TransportURL | str, options: RabbitOptions | None = None, *, name: str | None = None
) -> pika.BlockingConnection:
    """Open a BlockingConnection to the first host of ``url`` that accepts one (in order).

    Raises AccessRefusedError (credentials or vhost refused) or BrokerUnreachableError (no host
    answered); neither message contains a password.
    """
    url = parse_transport_url(url)
    options = url.apply_to(options or RabbitOptions())
    name = name or connection_name()
    refused: list[str] = []
    unreachable: list[str] = []
    for host in url.hosts:
        params = connection_parameters(url, host, options, name)
        try:
            connection = pika.BlockingConnection(params)
        except _AUTH_ERRORS:
            refused.append(f"{host.address} refused the credentials of user {host.username!r}")
        except pika.exceptions.ProbableAccessDeniedError:
            # A vhost holding '@' may be the tail of a mistyped password: do not echo it.
            vhost = url.virtual_host if "@" not in url.virtual_host else "(as given)"
            refused.append(
                f"{host.address} denied user {host.username!r} access to virtual host "
                f"{vhost!r} (missing, or no permission)"
            )
        except pika.exceptions.ConnectionClosedByBroker as exc:
            if exc.reply_code in (403, 530):
                refused.append(f"{host.address} refused access ({exc.reply_code})")
            else:
                unreachable.append(f"{host.address} ({exc.reply_code} {exc.reply_text})")
        except (pika.exceptions.AMQPError, OSError, _CONNECTOR_ERRORS) as exc:
            unreachable.append(f"{host.address} ({_failure_reason(exc)})")
        else:
            LOG.debug("connected to %s as %s", host.address, name)
            return connection
        LOG.debug("cannot connect to %s", host.address)
    if refused:
        raise AccessRefusedError(
            "the broker refused access: " + "; ".join(refused),
            hint="check the user, password and virtual host of transport_url",
        ) from None
    tls_failures = [reason for reason in unreachable if _TLS_PREFIX in reason]
    raise BrokerUnreachableError(
        "cannot reach the message broker at " + ", ".join(unreachable),
        hint=_tls_hint(tls_failures)
        if tls_failures and len(tls_failures) == len(unreachable)
        else "check transport_url and that RabbitMQ is running",
    ) from None


# ---------------------------------------------------------------------------
# Names (every declaration is in rpc.topology, in the shapes the options give)


fanout_exchange_name = names.fanout_exchange_name

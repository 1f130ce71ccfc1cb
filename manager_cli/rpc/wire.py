"""The oslo.messaging rabbit-driver wire format, as pure functions over dicts (no I/O).

PROTOCOL.md is the reference; the captured messages in ``tests/data/wire-samples`` are the test
vectors. Be strict on receive and generous on send: bare "1.0" messages and old two-part replies
are read; only 2.0 envelopes, one reply with ``ending: true``, and heartbeats only to callers that
set ``_timeout`` are ever sent.
"""

from __future__ import annotations

import datetime
import decimal
import importlib
import json
import traceback as traceback_module
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ManagerCtlError, RemoteError

ENVELOPE_VERSION = "2.0"
VERSION_KEY = "oslo.version"
MESSAGE_KEY = "oslo.message"
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
CONTEXT_PREFIX = "_context_"

# Every message oslo sends carries these AMQP properties; calls add ``expiration``.
BASE_PROPERTIES: Mapping[str, Any] = {
    "content_type": CONTENT_TYPE,
    "content_encoding": CONTENT_ENCODING,
    "delivery_mode": 2,
    "priority": 0,
    "headers": {},
}

# oslo treats Python 2's ``exceptions`` module as ``builtins``.
_BUILTIN_MODULES = ("builtins", "exceptions")
_REMOTE_SUFFIX = "_Remote"
# oslo_utils.timeutils.PERFECT_TIME_FORMAT, what jsonutils turns a datetime into.
_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


class WireFormatError(ManagerCtlError):
    """A message that is not a valid oslo.messaging message."""


class UnsupportedEnvelopeVersion(WireFormatError):
    """An envelope whose ``oslo.version`` is not compatible with 2.0."""


def new_id() -> str:
    """A fresh id in oslo's form (uuid4 hex), for ``_msg_id`` and ``_unique_id``."""
    return uuid.uuid4().hex


def to_primitive(value: Any) -> Any:
    """Turn a value into plain JSON types the way oslo's jsonutils does for common types."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_primitive(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_primitive(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.strftime(_DATETIME_FORMAT)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_primitive(to_dict())
    if hasattr(value, "__dict__"):
        return to_primitive(vars(value))
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=to_primitive)


# ---------------------------------------------------------------------------
# Envelope


def encode_envelope(message: Mapping[str, Any]) -> bytes:
    """Wrap an inner message in a 2.0 envelope, as UTF-8 JSON bytes."""
    body = {VERSION_KEY: ENVELOPE_VERSION, MESSAGE_KEY: _dumps(message)}
    return json.dumps(body).encode(CONTENT_ENCODING)


def _check_envelope_version(version: Any) -> None:
    try:
        major, minor = (int(part) for part in str(version).split(".")[:2])
    except ValueError:
        raise UnsupportedEnvelopeVersion(f"unreadable envelope version {version!r}") from None
    if major != 2 or minor > 0:
        raise UnsupportedEnvelopeVersion(f"envelope version {version} is not compatible with 2.0")


def decode_envelope(body: bytes | str) -> dict[str, Any]:
    """Read a message body: a 2.0 envelope, or a bare ("1.0") message dict.

    Raises WireFormatError for anything that is not a JSON object message.
    """
    try:
        text = body.decode(CONTENT_ENCODING) if isinstance(body, (bytes, bytearray)) else body
        outer = json.loads(text)
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise WireFormatError(f"message body is not JSON: {exc}") from None
    if not isinstance(outer, dict):
        raise WireFormatError(f"message body is a JSON {type(outer).__name__}, not an object")
    if VERSION_KEY not in outer or MESSAGE_KEY not in outer:
        return outer
    _check_envelope_version(outer[VERSION_KEY])
    inner_text = outer[MESSAGE_KEY]
    if not isinstance(inner_text, str):
        raise WireFormatError("oslo.message is not a JSON string")
    try:
        inner = json.loads(inner_text)
    except (ValueError, RecursionError) as exc:
        raise WireFormatError(f"oslo.message is not JSON: {exc}") from None
    if not isinstance(inner, dict):
        raise WireFormatError(f"oslo.message is a JSON {type(inner).__name__}, not an object")
    return inner


# ---------------------------------------------------------------------------
# Body compression (``[oslo_messaging_rabbit] kombu_compression``)

# What kombu puts in the ``compression`` header, by the names kombu_compression accepts. kombu's
# "gzip" is really zlib; "bz2" is the name oslo documents (kombu itself only knows bzip2).
COMPRESSION_HEADER = "compression"
_COMPRESSION_TYPES = {
    "gzip": "application/x-gzip",
    "zlib": "application/x-gzip",
    "bz2": "application/x-bz2",
    "bzip2": "application/x-bz2",
    "bzip": "application/x-bz2",
    "lzma": "application/x-lzma",
    "xz": "application/x-lzma",
}


def _codec(content_type: str) -> tuple[Any, Any] | None:
    if content_type == "application/x-gzip":
        import zlib

        return zlib.compress, zlib.decompress
    if content_type == "application/x-bz2":
        import bz2

        return bz2.compress, bz2.decompress
    if content_type == "application/x-lzma":
        import lzma

        return lzma.compress, lzma.decompress
    return None


def compression_type(name: str | None) -> str | None:
    """The header value for a ``kombu_compression`` setting (None: no compression).

    Raises ValueError for a name kombu would not know either.
    """
    if not name:
        return None
    key = name.strip().lower()
    content_type = _COMPRESSION_TYPES.get(key, key)
    if _codec(content_type) is None:
        known = ", ".join(sorted(_COMPRESSION_TYPES))
        raise ValueError(f"unknown compression {name!r} (known: {known})")
    return content_type


def compress_body(body: bytes, content_type: str) -> bytes:
    """``body`` compressed as kombu does for the header value ``content_type``."""
    codec = _codec(content_type)
    if codec is None:
        raise ValueError(f"unknown compression {content_type!r}")
    return codec[0](body)


def decompress_body(body: bytes, headers: Mapping[str, Any] | None) -> bytes:
    """The plain body of a message, whatever our own setting: kombu decompresses whenever the
    ``compression`` header is present, so every reader must. Raises WireFormatError."""
    content_type = headers.get(COMPRESSION_HEADER) if headers else None
    if not content_type:
        return body
    if isinstance(content_type, bytes):
        content_type = content_type.decode("utf-8", "replace")
    codec = _codec(str(content_type))
    if codec is None:
        raise WireFormatError(f"message compressed with unsupported {content_type!r}")
    try:
        return codec[1](body)
    except Exception as exc:  # zlib.error, OSError, lzma.LZMAError: a corrupt body
        raise WireFormatError(f"cannot decompress a {content_type} message body: {exc}") from None


# ---------------------------------------------------------------------------
# Context


def pack_context(context: Any) -> dict[str, Any]:
    """Flatten a context (dict, or object with ``to_dict()``) into ``_context_<key>`` entries."""
    if context is None:
        return {}
    if not isinstance(context, Mapping):
        to_dict = getattr(context, "to_dict", None)
        if not callable(to_dict):
            raise TypeError(f"a context must be a mapping or have to_dict(), not {context!r}")
        context = to_dict()
    return {CONTEXT_PREFIX + str(key): to_primitive(value) for key, value in context.items()}


def unpack_context(message: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a request into (context, the rest), as oslo's server does.

    The context also gets ``client_timeout`` (the request's ``_timeout``); ``_msg_id``,
    ``_reply_q`` and ``_timeout`` are removed from the rest.
    """
    context: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in message.items():
        if key.startswith(CONTEXT_PREFIX):
            context[key[len(CONTEXT_PREFIX) :]] = value
        elif key not in ("_msg_id", "_reply_q", "_timeout"):
            rest[key] = value
    context["client_timeout"] = message.get("_timeout")
    return context, rest


# ---------------------------------------------------------------------------
# Requests


@dataclass
class Request:
    """An incoming RPC request, parsed from its inner message."""

    method: str
    args: dict[str, Any]
    version: str | None = None
    namespace: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    msg_id: str | None = None
    reply_q: str | None = None
    call_monitor_timeout: float | None = None
    unique_id: str | None = None

    @property
    def wants_reply(self) -> bool:
        """oslo replies to any request carrying a non-empty ``_msg_id`` (and a reply queue)."""
        return bool(self.msg_id) and bool(self.reply_q)


def build_request(
    method: str,
    args: Mapping[str, Any] | None = None,
    *,
    context: Any = None,
    version: str | None = None,
    namespace: str | None = None,
    msg_id: str | None = None,
    reply_q: str | None = None,
    call_monitor_timeout: float | None = None,
    unique_id: str | None = None,
) -> dict[str, Any]:
    """The inner message of a call (``msg_id`` and ``reply_q`` given) or a cast."""
    message: dict[str, Any] = {"method": method, "args": dict(args or {})}
    if version is not None:
        message["version"] = version
    if namespace is not None:
        message["namespace"] = namespace
    if msg_id is not None:
        message["_msg_id"] = msg_id
        message["_reply_q"] = reply_q
        message["_timeout"] = call_monitor_timeout
    message["_unique_id"] = unique_id or new_id()
    message.update(pack_context(context))
    return message


def parse_request(message: Mapping[str, Any]) -> Request:
    """Validate an inner message and return it as a Request; WireFormatError if malformed."""
    context, rest = unpack_context(message)
    method = rest.get("method")
    if not isinstance(method, str) or not method:
        raise WireFormatError("request has no method name")
    args = rest.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise WireFormatError(f"request args is a JSON {type(args).__name__}, not an object")
    version = rest.get("version")
    if version is not None and not isinstance(version, str):
        raise WireFormatError("request version is not a string")
    namespace = rest.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise WireFormatError("request namespace is not a string")
    msg_id = message.get("_msg_id")
    reply_q = message.get("_reply_q")
    timeout = message.get("_timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        timeout = None
    unique_id = rest.get("_unique_id")
    return Request(
        method=method,
        args=args,
        version=version,
        namespace=namespace,
        context=context,
        msg_id=msg_id if isinstance(msg_id, str) and msg_id else None,
        reply_q=reply_q if isinstance(reply_q, str) and reply_q else None,
        call_monitor_timeout=timeout,
        unique_id=unique_id if isinstance(unique_id, str) else None,
    )


# ---------------------------------------------------------------------------
# Replies


@dataclass
class Reply:
    """A reply (or call-monitor heartbeat) to one call."""

    msg_id: str | None
    result: Any = None
    failure: str | None = None
    ending: bool = True
    unique_id: str | None = None

    @property
    def is_heartbeat(self) -> bool:
        return not self.ending and self.result is None and self.failure is None


def build_reply(
    msg_id: str, result: Any = None, failure: str | None = None, *, ending: bool = True
) -> dict[str, Any]:
    """The inner message of a reply; ``failure`` is a string from ``serialize_failure``."""
    return {
        "result": result,
        "failure": failure,
        "ending": ending,
        "_msg_id": msg_id,
        "_unique_id": new_id(),
    }


def build_heartbeat(msg_id: str) -> dict[str, Any]:
    """A call-monitor heartbeat; send only when the request's ``_timeout`` was set."""
    return build_reply(msg_id, None, None, ending=False)


def parse_reply(message: Mapping[str, Any]) -> Reply:
    """Read a reply; a missing ``ending`` means "more to come", as oslo's client reads it."""
    failure = message.get("failure")
    if failure is not None and not isinstance(failure, str):
        failure = _dumps(failure)
    return Reply(
        msg_id=message.get("_msg_id"),
        result=message.get("result"),
        failure=failure,
        ending=bool(message.get("ending", False)),
        unique_id=message.get("_unique_id"),
    )


# ---------------------------------------------------------------------------
# Failures


def _strip_remote_suffix(cls_name: str, module: str) -> tuple[str, str]:
    if cls_name.endswith(_REMOTE_SUFFIX) and module.endswith(_REMOTE_SUFFIX):
        return cls_name[: -len(_REMOTE_SUFFIX)], module[: -len(_REMOTE_SUFFIX)]
    return cls_name, module


def serialize_failure(exc: BaseException, *, module: str | None = None) -> str:
    """The JSON string oslo puts in a reply's ``failure`` for an exception.

    ``module`` overrides the class's module, so managerctl's dispatcher errors travel as
    ``oslo_messaging.rpc.dispatcher`` errors, exactly as oslo servers send them.
    """
    cls = type(exc)
    cls_name, mod = _strip_remote_suffix(cls.__name__, module or cls.__module__)
    tb_lines = traceback_module.format_exception(cls, exc, exc.__traceback__)
    kwargs = getattr(exc, "kwargs", None)
    data = {
        "class": cls_name,
        "module": mod,
        "message": str(exc),
        "tb": tb_lines,
        "args": [to_primitive(arg) for arg in exc.args],
        "kwargs": to_primitive(kwargs) if isinstance(kwargs, Mapping) else {},
    }
    return _dumps(data)


def _tb_lines(data: Mapping[str, Any]) -> list[str]:
    tb = data.get("tb") or []
    return [str(line) for line in tb] if isinstance(tb, list) else [str(tb)]


def _remote_error(data: Mapping[str, Any]) -> RemoteError:
    return RemoteError(
        str(data.get("class")), str(data.get("message", "")), "".join(_tb_lines(data))
    )


def deserialize_failure(failure: str, allowed_remote_exmods: Iterable[str] = ()) -> BaseException:
    """Rebuild the exception a remote method raised, as oslo's client does.

    Builtin exceptions and those of modules in ``allowed_remote_exmods`` come back as their own
    class; anything else (including the dispatcher's NoSuchMethod) becomes a RemoteError.
    """
    try:
        data = json.loads(failure)
    except (ValueError, TypeError, RecursionError):
        return RemoteError("unknown", str(failure), "")
    if not isinstance(data, dict):
        return RemoteError("unknown", str(failure), "")
    cls_name = str(data.get("class", "Exception"))
    module = str(data.get("module", "builtins"))
    if module in _BUILTIN_MODULES:
        module = "builtins"
    if module != "builtins" and module not in set(allowed_remote_exmods):
        return _remote_error(data)
    message = str(data.get("message", ""))
    tb_text = "\n".join(_tb_lines(data))
    try:
        cls = getattr(importlib.import_module(module), cls_name)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise TypeError(f"{module}.{cls_name} is not an exception class")
        args = data.get("args") or []
        kwargs = data.get("kwargs") or {}
        exc = cls(*args, **kwargs)
    except (AttributeError, TypeError, ImportError, ValueError):
        return _remote_error(data)
    remote_text = message + ("\n" + tb_text if tb_text else "")
    # Builtins refuse a class change; oslo then puts the remote traceback in args[0].
    exc.args = (remote_text,) + tuple(exc.args[1:])
    exc.remote_traceback = tb_text  # type: ignore[attr-defined]
    # The message alone, for one-line reports: str() of a KeyError is its repr, traceback and all.
    exc.remote_message = message  # type: ignore[attr-defined]
    return exc

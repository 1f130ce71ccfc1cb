"""Route a request to the first compatible endpoint, with oslo.messaging's rules (pure, no I/O).

An endpoint is any object; its ``target`` attribute (a Target) gives its namespace and version,
and an endpoint without one counts as ``Target()``: no namespace, version 1.0. Endpoints are
scanned in order; the first one whose namespace matches, whose version is compatible and that has
the method wins. If some endpoint was compatible but none had the method the error is
NoSuchMethod, otherwise UnsupportedVersion -- so a namespace mismatch reads as UnsupportedVersion,
as oslo reports it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .wire import Request, to_primitive

# The module oslo's dispatcher errors travel under, so peers see exactly what oslo sends.
WIRE_ERROR_MODULE = "oslo_messaging.rpc.dispatcher"


@dataclass(frozen=True)
class Target:
    """The namespace and version an endpoint serves."""

    namespace: str | None = None
    version: str = "1.0"
    legacy_namespaces: tuple[str | None, ...] = ()


DEFAULT_TARGET = Target()


class DispatchError(Exception):
    """Base of the errors a dispatcher sends back to the caller."""

    wire_module = WIRE_ERROR_MODULE


class NoSuchMethod(DispatchError):
    """No compatible endpoint has the method (or the method is private)."""

    def __init__(self, method: str) -> None:
        super().__init__(f"Endpoint does not support RPC method {method}")
        self.method = method


class UnsupportedVersion(DispatchError):
    """No endpoint serves the requested namespace and version."""

    def __init__(self, version: str, method: str | None = None) -> None:
        message = f"Endpoint does not support RPC version {version}"
        if method:
            message += f". Attempted method: {method}"
        super().__init__(message)
        self.version = version
        self.method = method


def _version_tuple(version: str) -> tuple[int, int, int]:
    parts = [int(part) for part in version.split(".")]
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"bad version {version!r}")
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def version_is_compatible(endpoint_version: str, requested_version: str) -> bool:
    """Same major; requested minor <= endpoint's; with equal minors, revision <= endpoint's."""
    try:
        have = _version_tuple(endpoint_version)
        want = _version_tuple(requested_version)
    except ValueError:
        return False
    if have[0] != want[0] or want[1] > have[1]:
        return False
    return not (want[1] == have[1] and want[2] > have[2])


class JsonSerializer:
    """oslo's Serializer interface, turning results into plain JSON types."""

    def serialize_entity(self, context: Any, entity: Any) -> Any:
        return to_primitive(entity)

    def deserialize_entity(self, context: Any, entity: Any) -> Any:
        return entity

    def serialize_context(self, context: Any) -> Any:
        return to_primitive(context)

    def deserialize_context(self, context: Any) -> Any:
        return context


def endpoint_target(endpoint: object) -> Target:
    target = getattr(endpoint, "target", None)
    return target if isinstance(target, Target) else DEFAULT_TARGET


def is_exposed(endpoint: object, name: str) -> bool:
    """Whether ``name`` may be called remotely on ``endpoint``.

    Private names never are (oslo's default access policy). An endpoint can hide more public
    names with a ``rpc_hidden_methods`` collection: a Manager hides its lifecycle hooks and
    framework methods that way, so a remote caller cannot run ``init_host``.
    """
    if not name or name.startswith("_"):
        return False
    if name in getattr(endpoint, "rpc_hidden_methods", ()):
        return False
    return callable(getattr(endpoint, name, None))


def rpc_methods(endpoint: object) -> list[tuple[str, inspect.Signature | None]]:
    """The methods a remote caller can reach on an endpoint, with their signatures."""
    methods = []
    for name in sorted(dir(endpoint)):
        if name == "target" or not is_exposed(endpoint, name):
            continue
        try:
            signature = inspect.signature(getattr(endpoint, name))
        except (TypeError, ValueError):
            signature = None
        methods.append((name, signature))
    return methods


class RPCDispatcher:
    """Find and call the endpoint method a request names."""

    def __init__(self, endpoints: Sequence[object], serializer: Any = None) -> None:
        self.endpoints = list(endpoints)
        self.serializer = serializer or JsonSerializer()

    def find(self, method: str, version: str | None, namespace: str | None) -> Callable[..., Any]:
        """The bound method to call; raises NoSuchMethod or UnsupportedVersion."""
        requested = version or "1.0"
        found_compatible = False
        for endpoint in self.endpoints:
            target = endpoint_target(endpoint)
            if namespace not in (target.namespace, *target.legacy_namespaces):
                continue
            if not version_is_compatible(target.version, requested):
                continue
            found_compatible = True
            if is_exposed(endpoint, method):
                return getattr(endpoint, method)
        if found_compatible:
            raise NoSuchMethod(method)
        raise UnsupportedVersion(requested, method=method)

    def dispatch(self, request: Request) -> Any:
        """Call the method with the request's context and args; return the serialised result."""
        func = self.find(request.method, request.version, request.namespace)
        context = self.serializer.deserialize_context(request.context)
        kwargs = {
            str(key): self.serializer.deserialize_entity(context, value)
            for key, value in request.args.items()
        }
        result = func(context, **kwargs)
        return self.serializer.serialize_entity(context, result)


def describe_endpoints(endpoints: Iterable[object]) -> list[Mapping[str, Any]]:
    """One record per endpoint: namespace, version and callable methods (for ``managers show``)."""
    records: list[Mapping[str, Any]] = []
    for endpoint in endpoints:
        target = endpoint_target(endpoint)
        records.append(
            {
                "endpoint": type(endpoint).__name__,
                "namespace": target.namespace,
                "version": target.version,
                "methods": [name for name, _ in rpc_methods(endpoint)],
            }
        )
    return records

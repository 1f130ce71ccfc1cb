"""Unit tests for manager_cli.rpc.dispatcher: oslo.messaging's dispatch rules (PROTOCOL.md §6)."""

from __future__ import annotations

import datetime
import decimal
import inspect
import json
import uuid
from pathlib import Path

import pytest

from manager_cli.errors import RemoteError
from manager_cli.rpc.dispatcher import (
    DEFAULT_TARGET,
    WIRE_ERROR_MODULE,
    DispatchError,
    JsonSerializer,
    NoSuchMethod,
    RPCDispatcher,
    Target,
    UnsupportedVersion,
    describe_endpoints,
    endpoint_target,
    is_exposed,
    rpc_methods,
    version_is_compatible,
)
from manager_cli.rpc.wire import (
    build_request,
    decode_envelope,
    deserialize_failure,
    encode_envelope,
    parse_request,
    serialize_failure,
)

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "wire-samples"


def load(name: str) -> dict:
    return json.loads((SAMPLES_DIR / f"{name}.json").read_text())


def sample_failure(name: str) -> dict:
    return json.loads(load(name)["oslo_message_decoded"]["failure"])


def request(method: str, version: str | None = None, namespace: str | None = None, **args):
    return parse_request(build_request(method, args, version=version, namespace=namespace))


# ---------------------------------------------------------------------------
# Endpoints


class Calculator:
    """Like the oslo test server's endpoint at version 1.3."""

    target = Target(version="1.3")
    rpc_hidden_methods = ("init_host", "reset")

    def __init__(self):
        self.calls = []
        self.label = "not callable"

    def add(self, ctxt, a, b):
        self.calls.append(("add", ctxt, a, b))
        return a + b

    def echo(self, ctxt, value):
        return value

    def whoami(self, ctxt):
        return "calc"

    def context(self, ctxt):
        return ctxt

    def init_host(self, ctxt):
        raise AssertionError("hidden method was called")

    def reset(self, ctxt):
        raise AssertionError("hidden method was called")

    def _secret(self, ctxt):
        raise AssertionError("private method was called")

    def __dunder__(self, ctxt):
        raise AssertionError("dunder method was called")


class Other:
    """A second endpoint, at the default target."""

    def whoami(self, ctxt):
        return "other"

    def only_here(self, ctxt, x=1):
        return ("other", x)


class Namespaced:
    target = Target(namespace="foo", version="2.5")

    def whoami(self, ctxt):
        return "namespaced"

    def add(self, ctxt, a, b):
        return ("namespaced", a + b)


# ---------------------------------------------------------------------------
# version_is_compatible


@pytest.mark.parametrize(
    ("endpoint", "requested", "ok"),
    [
        # [verified] against an endpoint at 1.3
        ("1.3", "1.0", True),
        ("1.3", "1.3", True),
        ("1.3", "1.4", False),
        ("1.3", "2.0", False),
        ("1.3", "1.1", True),
        ("1.3", "0.9", False),
        ("1.3", "1.2.9", True),  # lower minor: any revision
        ("1.3", "1.3.0", True),
        ("1.3", "1.3.1", False),  # same minor: revision must be <=
        ("1.3.2", "1.3.1", True),
        ("1.3.2", "1.3.2", True),
        ("1.3.2", "1.3.3", False),
        ("1.3.2", "1.3", True),
        ("1.3.2", "1.4.0", False),
        ("1.0", "1.0", True),
        ("1.0", "1.1", False),
        ("2.0", "1.0", False),
        ("2.5", "2.0", True),
        ("2.5", "2.10", False),  # numeric, not lexicographic
        ("2.10", "2.9", True),
        ("1.3", "1", True),  # a bare major counts as X.0
        ("1", "1.0", True),
    ],
)
def test_version_is_compatible_table(endpoint, requested, ok):
    assert version_is_compatible(endpoint, requested) is ok


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "abc",
        "1.x",
        "x.1",
        "1..2",
        "1.2.3.4",
        ".",
        "1.",
        "v1.0",
        "1.0-beta",
        "1,0",
        "9" * 5000 + ".0",
    ],
)
def test_version_is_compatible_rejects_junk(junk):
    assert version_is_compatible("1.3", junk) is False
    assert version_is_compatible(junk, "1.0") is False


def test_missing_version_is_1_0():
    dispatcher = RPCDispatcher([Calculator()])
    assert dispatcher.dispatch(request("add", a=1, b=2)) == 3
    newer = type("Newer", (Calculator,), {"target": Target(version="2.0")})
    with pytest.raises(UnsupportedVersion) as info:
        RPCDispatcher([newer()]).dispatch(request("add", a=1, b=2))
    assert str(info.value) == "Endpoint does not support RPC version 1.0. Attempted method: add"


# ---------------------------------------------------------------------------
# find / dispatch


@pytest.mark.parametrize("version", ["1.0", "1.3", None, "1.2.7"])
def test_endpoint_1_3_accepts(version):
    assert RPCDispatcher([Calculator()]).dispatch(request("add", version, a=2, b=3)) == 5


@pytest.mark.parametrize("version", ["1.4", "2.0", "1.3.1", "0.1", "junk", "1.x"])
def test_endpoint_1_3_rejects(version):
    with pytest.raises(UnsupportedVersion) as info:
        RPCDispatcher([Calculator()]).dispatch(request("add", version, a=2, b=3))
    assert (
        str(info.value) == f"Endpoint does not support RPC version {version}. Attempted method: add"
    )
    assert info.value.version == version
    assert info.value.method == "add"


def test_version_2_0_message_matches_sample():
    req = parse_request(load("call_request_version_2.0")["oslo_message_decoded"])
    with pytest.raises(UnsupportedVersion) as info:
        RPCDispatcher([Calculator()]).dispatch(req)
    assert str(info.value) == sample_failure("call_reply_failure_UnsupportedVersion_2.0")["message"]


def test_first_compatible_endpoint_with_the_method_wins():
    first, second = Calculator(), Other()
    assert RPCDispatcher([first, second]).dispatch(request("whoami")) == "calc"
    assert RPCDispatcher([second, first]).dispatch(request("whoami")) == "other"


def test_compatible_endpoint_without_the_method_is_skipped():
    assert RPCDispatcher([Calculator(), Other()]).dispatch(request("only_here", x=4)) == [
        "other",
        4,
    ]


def test_incompatible_endpoint_with_the_method_is_skipped():
    # Other (1.0) comes first and has whoami, but cannot serve a 1.3 request.
    assert RPCDispatcher([Other(), Calculator()]).dispatch(request("whoami", "1.3")) == "calc"


def test_namespace_selects_endpoint():
    endpoints = [Calculator(), Namespaced()]
    assert RPCDispatcher(endpoints).dispatch(request("whoami", "2.1", "foo")) == "namespaced"
    assert RPCDispatcher(endpoints).dispatch(request("whoami", "1.0")) == "calc"


def test_namespace_mismatch_is_unsupported_version_with_oslo_message():
    req = parse_request(load("call_request_namespace_foo")["oslo_message_decoded"])
    assert req.namespace == "foo"
    with pytest.raises(UnsupportedVersion) as info:
        RPCDispatcher([Calculator()]).dispatch(req)
    assert str(info.value) == "Endpoint does not support RPC version 1.3. Attempted method: add"
    assert str(info.value) == sample_failure("call_reply_failure_namespace_mismatch")["message"]


def test_request_without_namespace_does_not_reach_namespaced_endpoint():
    with pytest.raises(UnsupportedVersion):
        RPCDispatcher([Namespaced()]).dispatch(request("whoami", "2.0"))


def test_missing_method_on_compatible_endpoint_is_no_such_method():
    with pytest.raises(NoSuchMethod) as info:
        RPCDispatcher([Calculator()]).dispatch(request("nosuch", "1.3"))
    assert str(info.value) == "Endpoint does not support RPC method nosuch"
    assert str(info.value) == sample_failure("call_reply_failure_NoSuchMethod")["message"]
    assert info.value.method == "nosuch"


def test_no_such_method_wins_over_unsupported_version():
    # one endpoint is compatible (but lacks the method), another is not: NoSuchMethod
    with pytest.raises(NoSuchMethod):
        RPCDispatcher([Namespaced(), Calculator()]).dispatch(request("nosuch", "1.3"))


def test_method_only_on_incompatible_endpoint_is_unsupported_version():
    with pytest.raises(UnsupportedVersion):
        RPCDispatcher([Other()]).dispatch(request("only_here", "1.1"))


def test_no_endpoints_is_unsupported_version():
    with pytest.raises(UnsupportedVersion) as info:
        RPCDispatcher([]).dispatch(request("add", "1.0"))
    assert str(info.value) == "Endpoint does not support RPC version 1.0. Attempted method: add"


@pytest.mark.parametrize(
    "method", ["_secret", "__dunder__", "__init__", "__class__", "_", "__getattribute__"]
)
def test_private_methods_are_no_such_method(method):
    with pytest.raises(NoSuchMethod) as info:
        RPCDispatcher([Calculator()]).dispatch(request(method, "1.0"))
    assert str(info.value) == f"Endpoint does not support RPC method {method}"


@pytest.mark.parametrize("method", ["init_host", "reset"])
def test_rpc_hidden_methods_are_no_such_method(method):
    with pytest.raises(NoSuchMethod):
        RPCDispatcher([Calculator()]).dispatch(request(method, "1.0"))


def test_hidden_method_on_first_endpoint_falls_through_to_next():
    class Host:
        def init_host(self, ctxt):
            return "visible here"

    assert RPCDispatcher([Calculator(), Host()]).dispatch(request("init_host")) == "visible here"


@pytest.mark.parametrize("method", ["label", "target", "rpc_hidden_methods", "calls"])
def test_non_callable_attributes_are_no_such_method(method):
    with pytest.raises(NoSuchMethod):
        RPCDispatcher([Calculator()]).dispatch(request(method, "1.0"))


def test_legacy_namespaces():
    class Renamed:
        target = Target(namespace="new", version="1.1", legacy_namespaces=("old", None))

        def ping(self, ctxt):
            return "pong"

    dispatcher = RPCDispatcher([Renamed()])
    for namespace in ("new", "old", None):
        assert dispatcher.dispatch(request("ping", "1.1", namespace)) == "pong"
    with pytest.raises(UnsupportedVersion):
        dispatcher.dispatch(request("ping", "1.1", "other"))
    with pytest.raises(UnsupportedVersion):
        dispatcher.dispatch(request("ping", "1.2", "old"))


def test_endpoint_without_target_is_default_target():
    assert endpoint_target(Other()) is DEFAULT_TARGET
    assert (DEFAULT_TARGET.namespace, DEFAULT_TARGET.version) == (None, "1.0")
    assert DEFAULT_TARGET.legacy_namespaces == ()
    dispatcher = RPCDispatcher([Other()])
    assert dispatcher.dispatch(request("whoami")) == "other"
    assert dispatcher.dispatch(request("whoami", "1.0")) == "other"
    with pytest.raises(UnsupportedVersion):
        dispatcher.dispatch(request("whoami", "1.1"))


def test_endpoint_with_non_target_target_attribute_is_default_target():
    class Odd:
        target = "1.3"

        def ping(self, ctxt):
            return "pong"

    assert endpoint_target(Odd()) is DEFAULT_TARGET
    with pytest.raises(UnsupportedVersion):
        RPCDispatcher([Odd()]).dispatch(request("ping", "1.3"))


def test_find_returns_bound_method_of_first_match():
    calc = Calculator()
    found = RPCDispatcher([calc, Other()]).find("whoami", None, None)
    assert found.__self__ is calc
    assert found.__name__ == "whoami"


# ---------------------------------------------------------------------------
# Calling


def test_dispatch_call_request_add_sample_gives_reply_sample_result():
    calc = Calculator()
    req = parse_request(load("call_request_add")["oslo_message_decoded"])
    result = RPCDispatcher([calc]).dispatch(req)
    assert result == load("call_reply_success_add")["oslo_message_decoded"]["result"] == 5
    assert calc.calls == [
        (
            "add",
            {"user": "alice", "request_id": "req-123", "roles": ["admin"], "client_timeout": None},
            2,
            3,
        )
    ]


def test_args_passed_as_kwargs_with_context_first():
    seen = {}

    class Recorder:
        def record(self, *args, **kwargs):
            seen["args"] = args
            seen["kwargs"] = kwargs
            return "ok"

    req = parse_request(
        build_request(
            "record",
            {"b": 2, "a": 1},
            context={"user": "u"},
            msg_id="m",
            reply_q="q",
            call_monitor_timeout=4,
        )
    )
    assert RPCDispatcher([Recorder()]).dispatch(req) == "ok"
    assert seen["args"] == ({"user": "u", "client_timeout": 4},)
    assert seen["kwargs"] == {"a": 1, "b": 2}


def test_context_reaches_endpoint_through_wire_round_trip():
    body = encode_envelope(
        build_request("context", {}, context={"user": "alice", "roles": ["admin"]}, version="1.3")
    )
    result = RPCDispatcher([Calculator()]).dispatch(parse_request(decode_envelope(body)))
    assert result == {"user": "alice", "roles": ["admin"], "client_timeout": None}


@pytest.mark.parametrize(
    "args",
    [{"a": 1, "c": 2}, {"a": 1}, {"a": 1, "b": 2, "extra": 3}, {"ctxt": 1, "a": 1, "b": 2}],
)
def test_wrong_argument_names_raise_type_error(args):
    with pytest.raises(TypeError):
        RPCDispatcher([Calculator()]).dispatch(request("add", "1.3", **args))


def test_endpoint_exception_propagates_unchanged():
    class Failing:
        def fail(self, ctxt):
            raise ValueError("deliberate failure from srv1")

    with pytest.raises(ValueError, match="deliberate failure from srv1"):
        RPCDispatcher([Failing()]).dispatch(request("fail"))


def test_result_serialised_to_primitives():
    class Rich:
        def rich(self, ctxt):
            return {
                "when": datetime.datetime(2024, 1, 2, 3, 4, 5),
                "ids": {uuid.UUID(int=1)},
                "amount": decimal.Decimal("10.50"),
                "pair": (1, 2),
                "obj": type("Obj", (), {"to_dict": lambda self: {"k": "v"}})(),
            }

    result = RPCDispatcher([Rich()]).dispatch(request("rich"))
    assert result == {
        "when": "2024-01-02T03:04:05.000000",
        "ids": ["00000000-0000-0000-0000-000000000001"],
        "amount": "10.50",
        "pair": [1, 2],
        "obj": {"k": "v"},
    }
    assert json.loads(json.dumps(result)) == result


def test_custom_serializer_is_used():
    events = []

    class Serializer:
        def deserialize_context(self, context):
            events.append("context")
            return {"wrapped": context}

        def deserialize_entity(self, context, entity):
            events.append(("entity", entity))
            return entity * 10

        def serialize_entity(self, context, entity):
            events.append("result")
            return {"ctx_user": context["wrapped"]["user"], "value": entity}

    class Ep:
        def twice(self, ctxt, n):
            return n * 2

    req = parse_request(build_request("twice", {"n": 3}, context={"user": "u"}))
    assert RPCDispatcher([Ep()], serializer=Serializer()).dispatch(req) == {
        "ctx_user": "u",
        "value": 60,
    }
    assert events == ["context", ("entity", 3), "result"]


def test_json_serializer_methods():
    serializer = JsonSerializer()
    assert serializer.serialize_entity(None, {1: {2}}) == {"1": [2]}
    assert serializer.deserialize_entity(None, {"x": 1}) == {"x": 1}
    assert serializer.serialize_context({"when": datetime.date(2024, 1, 1)}) == {
        "when": "2024-01-01"
    }
    ctx = {"a": 1}
    assert serializer.deserialize_context(ctx) is ctx


def test_default_serializer_is_json_serializer():
    assert isinstance(RPCDispatcher([]).serializer, JsonSerializer)


# ---------------------------------------------------------------------------
# Errors on the wire


def test_no_such_method_serialised_like_oslo_sample():
    sample = sample_failure("call_reply_failure_NoSuchMethod")
    try:
        RPCDispatcher([Calculator()]).dispatch(request("nosuch", "1.3"))
    except NoSuchMethod as exc:
        failure = serialize_failure(exc, module=exc.wire_module)
    data = json.loads(failure)
    assert list(data) == list(sample)
    for key in ("class", "module", "message", "args", "kwargs"):
        assert data[key] == sample[key], key
    assert data["module"] == "oslo_messaging.rpc.dispatcher"
    # tb is informational; its last line names the Python class that was raised
    assert data["tb"][-1].endswith("NoSuchMethod: Endpoint does not support RPC method nosuch\n")


@pytest.mark.parametrize(
    ("sample_request", "sample_reply"),
    [
        ("call_request_version_2.0", "call_reply_failure_UnsupportedVersion_2.0"),
        ("call_request_namespace_foo", "call_reply_failure_namespace_mismatch"),
    ],
)
def test_unsupported_version_serialised_like_oslo_sample(sample_request, sample_reply):
    sample = sample_failure(sample_reply)
    req = parse_request(load(sample_request)["oslo_message_decoded"])
    with pytest.raises(UnsupportedVersion) as info:
        RPCDispatcher([Calculator()]).dispatch(req)
    data = json.loads(serialize_failure(info.value, module=info.value.wire_module))
    for key in ("class", "module", "message", "args", "kwargs"):
        assert data[key] == sample[key], key


def test_dispatch_errors_reach_an_oslo_style_client_as_remote_error():
    try:
        RPCDispatcher([Calculator()]).dispatch(request("nosuch", "1.3"))
    except NoSuchMethod as exc:
        failure = serialize_failure(exc, module=exc.wire_module)
    rebuilt = deserialize_failure(failure)
    assert isinstance(rebuilt, RemoteError)
    assert rebuilt.exc_type == "NoSuchMethod"
    assert rebuilt.value == "Endpoint does not support RPC method nosuch"


def test_dispatch_error_classes():
    assert WIRE_ERROR_MODULE == "oslo_messaging.rpc.dispatcher"
    for cls in (NoSuchMethod, UnsupportedVersion):
        assert issubclass(cls, DispatchError)
        assert cls.wire_module == WIRE_ERROR_MODULE
    assert NoSuchMethod("m").args == ("Endpoint does not support RPC method m",)
    assert str(UnsupportedVersion("3.1")) == "Endpoint does not support RPC version 3.1"
    assert UnsupportedVersion("3.1").method is None


# ---------------------------------------------------------------------------
# Introspection


def test_is_exposed():
    calc = Calculator()
    assert is_exposed(calc, "add")
    assert is_exposed(calc, "whoami")
    for name in ("", "_secret", "__dunder__", "init_host", "reset", "label", "target", "missing"):
        assert not is_exposed(calc, name), name


def test_rpc_methods_names_and_signatures():
    methods = dict(rpc_methods(Calculator()))
    assert list(methods) == ["add", "context", "echo", "whoami"]
    assert list(methods["add"].parameters) == ["ctxt", "a", "b"]
    assert isinstance(methods["echo"], inspect.Signature)
    assert list(methods["echo"].parameters) == ["ctxt", "value"]


def test_rpc_methods_default_values_in_signature():
    methods = dict(rpc_methods(Other()))
    assert list(methods) == ["only_here", "whoami"]
    assert methods["only_here"].parameters["x"].default == 1


def test_rpc_methods_includes_callable_without_signature():
    class Ep:
        builtin = len  # a callable whose signature may or may not be introspectable

    names = [name for name, _ in rpc_methods(Ep())]
    assert names == ["builtin"]


def test_describe_endpoints():
    records = describe_endpoints([Calculator(), Other(), Namespaced()])
    assert [dict(r) for r in records] == [
        {
            "endpoint": "Calculator",
            "namespace": None,
            "version": "1.3",
            "methods": ["add", "context", "echo", "whoami"],
        },
        {
            "endpoint": "Other",
            "namespace": None,
            "version": "1.0",
            "methods": ["only_here", "whoami"],
        },
        {
            "endpoint": "Namespaced",
            "namespace": "foo",
            "version": "2.5",
            "methods": ["add", "whoami"],
        },
    ]


def test_describe_no_endpoints():
    assert describe_endpoints([]) == []


def test_every_described_method_is_dispatchable_and_hidden_ones_are_not():
    calc = Calculator()
    dispatcher = RPCDispatcher([calc])
    described = set(describe_endpoints([calc])[0]["methods"])
    public = {name for name in dir(calc) if not name.startswith("_")}
    for name in public:
        if name in described:
            assert dispatcher.find(name, "1.3", None) == getattr(calc, name)
        else:
            with pytest.raises(NoSuchMethod):
                dispatcher.find(name, "1.3", None)

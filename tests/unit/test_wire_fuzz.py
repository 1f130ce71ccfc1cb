"""Property tests for manager_cli.rpc.wire: hostile input only ever raises WireFormatError."""

from __future__ import annotations

import builtins
import json
import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from manager_cli.errors import RemoteError
from manager_cli.rpc.wire import (
    Reply,
    Request,
    WireFormatError,
    build_reply,
    build_request,
    decode_envelope,
    deserialize_failure,
    encode_envelope,
    parse_reply,
    parse_request,
    serialize_failure,
)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=15,
)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=6)

version_values = st.one_of(
    st.sampled_from(["2.0", "2.0.0", "2.1", "3.0", "1.0", "2", "", "x.y", "2.0.1"]),
    json_values,
)
inner_texts = st.one_of(
    json_values.map(json.dumps),
    json_objects.map(json.dumps),
    st.text(max_size=40),
    json_values,  # not a string at all
)
envelopes = st.builds(
    lambda version, inner, extra: {**extra, "oslo.version": version, "oslo.message": inner},
    version_values,
    inner_texts,
    json_objects,
)

# Request-ish dicts: the real keys with arbitrary (often wrong-typed) values, plus noise.
request_keys = st.fixed_dictionaries(
    {},
    optional={
        "method": st.one_of(st.text(max_size=10), json_values),
        "args": st.one_of(json_objects, json_values),
        "version": st.one_of(st.sampled_from(["1.0", "1.3", "2.0"]), json_values),
        "namespace": st.one_of(st.text(max_size=5), json_values),
        "_msg_id": json_values,
        "_reply_q": json_values,
        "_timeout": st.one_of(st.floats(), json_values),
        "_unique_id": json_values,
        "_context_user": json_values,
        "_context_roles": json_values,
    },
)
request_dicts = st.builds(lambda known, noise: {**noise, **known}, request_keys, json_objects)

reply_keys = st.fixed_dictionaries(
    {},
    optional={
        "result": json_values,
        "failure": st.one_of(st.text(max_size=20), json_values),
        "ending": json_values,
        "_msg_id": json_values,
        "_unique_id": json_values,
    },
)
reply_dicts = st.builds(lambda known, noise: {**noise, **known}, reply_keys, json_objects)

ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
context_keys = st.text(min_size=1, max_size=12).filter(lambda k: k != "client_timeout")
contexts = st.dictionaries(context_keys, json_values, max_size=5)
timeouts = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=3600),
    st.floats(min_value=0, max_value=3600, allow_nan=False),
)


def _is_invalid_request(message: dict) -> bool:
    """What PROTOCOL.md §4.3 requires of a request's method, args, version and namespace."""
    method = message.get("method")
    args = message.get("args")
    version = message.get("version")
    namespace = message.get("namespace")
    return (
        not isinstance(method, str)
        or not method
        or (args is not None and not isinstance(args, dict))
        or (version is not None and not isinstance(version, str))
        or (namespace is not None and not isinstance(namespace, str))
    )


def _decodes_or_wire_error(body) -> dict | None:
    try:
        result = decode_envelope(body)
    except WireFormatError:
        return None
    assert isinstance(result, dict)
    return result


# ---------------------------------------------------------------------------
# decode_envelope


@FUZZ
@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes(body):
    _decodes_or_wire_error(body)


@FUZZ
@given(st.text(max_size=200))
def test_decode_arbitrary_text(body):
    _decodes_or_wire_error(body)
    _decodes_or_wire_error(body.encode("utf-8", errors="surrogatepass"))


@FUZZ
@given(json_values)
def test_decode_arbitrary_json(value):
    result = _decodes_or_wire_error(json.dumps(value))
    if not isinstance(value, dict):
        assert result is None
    elif "oslo.version" not in value or "oslo.message" not in value:
        assert result == value  # a bare 1.0 message passes through


@FUZZ
@given(envelopes, st.booleans())
def test_decode_arbitrary_envelopes(envelope, as_bytes):
    body = json.dumps(envelope)
    result = _decodes_or_wire_error(body.encode("utf-8") if as_bytes else body)
    if result is not None:
        # PROTOCOL.md §4.2: same major, minor <= 0 (a revision is not checked)
        major, minor = str(envelope["oslo.version"]).split(".")[:2]
        assert (int(major), int(minor)) == (2, 0)
        assert result == json.loads(envelope["oslo.message"])


@FUZZ
@given(json_objects, json_objects)
def test_decode_well_formed_envelope_returns_inner(inner, extra):
    body = json.dumps({**extra, "oslo.version": "2.0", "oslo.message": json.dumps(inner)})
    assert decode_envelope(body) == inner


@FUZZ
@given(st.binary(max_size=60), st.integers(min_value=0, max_value=200))
def test_decode_corrupted_real_envelope(noise, position):
    body = encode_envelope({"method": "add", "args": {"a": 2, "b": 3}, "_unique_id": "u"})
    position = min(position, len(body))
    _decodes_or_wire_error(body[:position] + noise + body[position:])


# ---------------------------------------------------------------------------
# parse_request / parse_reply


@FUZZ
@given(request_dicts)
def test_parse_request_only_raises_wire_format_error(message):
    try:
        req = parse_request(message)
    except WireFormatError:
        assert _is_invalid_request(message)
        return
    assert not _is_invalid_request(message)
    assert isinstance(req, Request)
    assert isinstance(req.method, str) and req.method
    assert isinstance(req.args, dict)
    assert req.version is None or isinstance(req.version, str)
    assert req.namespace is None or isinstance(req.namespace, str)
    assert req.msg_id is None or (isinstance(req.msg_id, str) and req.msg_id)
    assert req.reply_q is None or (isinstance(req.reply_q, str) and req.reply_q)
    assert req.call_monitor_timeout is None or isinstance(req.call_monitor_timeout, (int, float))
    assert not isinstance(req.call_monitor_timeout, bool)
    assert req.context["client_timeout"] == message.get("_timeout") or (
        isinstance(message.get("_timeout"), float) and math.isnan(message["_timeout"])
    )
    assert not any(key.startswith("_context_") for key in req.context)
    assert req.wants_reply == (req.msg_id is not None and req.reply_q is not None)


@FUZZ
@given(json_objects)
def test_parse_request_on_any_json_object(message):
    try:
        req = parse_request(message)
    except WireFormatError:
        assert _is_invalid_request(message)
    else:
        assert not _is_invalid_request(message)
        assert req.method == message["method"]


@FUZZ
@given(reply_dicts)
def test_parse_reply_never_raises(message):
    reply = parse_reply(message)
    assert isinstance(reply, Reply)
    assert isinstance(reply.ending, bool)
    assert reply.failure is None or isinstance(reply.failure, str)
    assert reply.ending == bool(message.get("ending", False))
    if reply.is_heartbeat:
        assert not reply.ending and reply.result is None and reply.failure is None


@FUZZ
@given(json_objects)
def test_parse_reply_on_any_json_object(message):
    assert isinstance(parse_reply(message), Reply)


# ---------------------------------------------------------------------------
# Round trips


@FUZZ
@given(
    method=st.text(min_size=1, max_size=30),
    args=json_objects,
    context=contexts,
    version=st.one_of(st.none(), st.from_regex(r"\A[0-9]{1,3}\.[0-9]{1,3}(\.[0-9]{1,3})?\Z")),
    namespace=st.one_of(st.none(), st.text(max_size=10)),
    msg_id=st.one_of(st.none(), ids),
    reply_q=st.one_of(ids.map(lambda i: "reply_" + i), st.text(min_size=1, max_size=20)),
    timeout=timeouts,
    unique_id=st.one_of(st.none(), ids),
)
def test_build_encode_decode_parse_round_trip(
    method, args, context, version, namespace, msg_id, reply_q, timeout, unique_id
):
    message = build_request(
        method,
        args,
        context=context,
        version=version,
        namespace=namespace,
        msg_id=msg_id,
        reply_q=reply_q,
        call_monitor_timeout=timeout,
        unique_id=unique_id,
    )
    body = encode_envelope(message)
    outer = json.loads(body)
    assert set(outer) == {"oslo.version", "oslo.message"}
    assert isinstance(outer["oslo.message"], str)
    decoded = decode_envelope(body)
    assert decoded == message
    req = parse_request(decoded)
    assert req.method == method
    assert req.args == args
    assert req.version == version
    assert req.namespace == namespace
    if msg_id is None:
        assert (req.msg_id, req.reply_q, req.call_monitor_timeout) == (None, None, None)
        assert not req.wants_reply
        assert req.context == {**context, "client_timeout": None}
    else:
        assert (req.msg_id, req.reply_q, req.call_monitor_timeout) == (msg_id, reply_q, timeout)
        assert req.wants_reply
        assert req.context == {**context, "client_timeout": timeout}
    if unique_id is not None:
        assert req.unique_id == unique_id
    else:
        assert isinstance(req.unique_id, str) and len(req.unique_id) == 32


@FUZZ
@given(msg_id=ids, result=json_values, ending=st.booleans())
def test_reply_round_trip(msg_id, result, ending):
    reply = parse_reply(
        decode_envelope(encode_envelope(build_reply(msg_id, result, ending=ending)))
    )
    assert reply.msg_id == msg_id
    assert reply.result == result
    assert reply.failure is None
    assert reply.ending is ending
    assert reply.is_heartbeat == (not ending and result is None)


BUILTIN_EXCEPTIONS = sorted(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)


@FUZZ
@given(
    st.text(max_size=40),
    st.sampled_from(["ValueError", "KeyError", "RuntimeError", "TypeError", "LookupError"]),
)
def test_builtin_failure_round_trip(message, cls_name):
    exc = getattr(builtins, cls_name)(message)
    reply = parse_reply(
        decode_envelope(encode_envelope(build_reply("m", failure=serialize_failure(exc))))
    )
    rebuilt = deserialize_failure(reply.failure)
    assert type(rebuilt) is type(exc)
    assert rebuilt.args[0].startswith(str(exc) + "\n")


@FUZZ
@given(
    cls_name=st.one_of(st.sampled_from(BUILTIN_EXCEPTIONS), st.text(max_size=15), json_values),
    module=st.one_of(
        st.sampled_from(["builtins", "exceptions", "myapp.errors", "json", "os", ""]), json_values
    ),
    message=json_values,
    tb=st.one_of(st.lists(st.text(max_size=10), max_size=3), json_values),
    args=st.one_of(st.lists(json_values, max_size=3), json_values),
    kwargs=st.one_of(st.just({}), json_objects, json_values),
    allowed=st.lists(st.sampled_from(["json", "os", "myapp.errors"]), max_size=2),
)
def test_deserialize_any_failure_shape_never_raises(
    cls_name, module, message, tb, args, kwargs, allowed
):
    failure = json.dumps(
        {
            "class": cls_name,
            "module": module,
            "message": message,
            "tb": tb,
            "args": args,
            "kwargs": kwargs,
        }
    )
    rebuilt = deserialize_failure(failure, allowed)
    assert isinstance(rebuilt, Exception)
    if module not in ("builtins", "exceptions", *allowed):
        assert isinstance(rebuilt, RemoteError)
        assert rebuilt.exc_type == str(cls_name)


@FUZZ
@given(st.one_of(st.text(max_size=100), json_values.map(json.dumps)))
def test_deserialize_arbitrary_text_never_raises(text):
    assume(text is not None)
    assert isinstance(deserialize_failure(text), Exception)

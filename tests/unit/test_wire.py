"""Unit tests for manager_cli.rpc.wire, checked against real captured oslo.messaging messages.

The vectors in ``tests/data/wire-samples`` were captured from oslo.messaging 18.3.1 talking to
RabbitMQ (see PROTOCOL.md); every decoder must read them and every encoder must produce their
shapes.
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import sys
import types
import uuid
from pathlib import Path

import pytest

from manager_cli.errors import ManagerCtlError, RemoteError
from manager_cli.rpc import wire
from manager_cli.rpc.wire import (
    BASE_PROPERTIES,
    Reply,
    Request,
    UnsupportedEnvelopeVersion,
    WireFormatError,
    build_heartbeat,
    build_reply,
    build_request,
    decode_envelope,
    deserialize_failure,
    encode_envelope,
    pack_context,
    parse_reply,
    parse_request,
    serialize_failure,
    to_primitive,
    unpack_context,
)

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "wire-samples"
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def load(name: str) -> dict:
    return json.loads((SAMPLES_DIR / f"{name}.json").read_text())


def all_captured_messages() -> list[tuple[str, dict]]:
    """Every captured message, broadcast replies flattened (id, sample)."""
    messages = []
    for path in sorted(SAMPLES_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        if "replies" in data:
            for index, reply in enumerate(data["replies"]):
                messages.append((f"{path.stem}[{index}]", reply))
        else:
            messages.append((path.stem, data))
    return messages


CAPTURED = all_captured_messages()
REQUEST_SAMPLES = [
    "call_request_add",
    "call_request_directed_topic_server",
    "call_request_fail",
    "call_request_namespace_foo",
    "call_request_version_2.0",
    "call_request_with_call_monitor_timeout",
    "cast_request",
    "fanout_cast_request",
    "broadcast_call_request_fanout_with_msg_id",
]
CALL_REQUEST_SAMPLES = [name for name in REQUEST_SAMPLES if "cast_request" not in name]
CAST_REQUEST_SAMPLES = ["cast_request", "fanout_cast_request"]
REPLY_SAMPLES = [
    "call_reply_call_monitor_heartbeat",
    "call_reply_failure_NoSuchMethod",
    "call_reply_failure_UnsupportedVersion_2.0",
    "call_reply_failure_ValueError",
    "call_reply_failure_namespace_mismatch",
    "call_reply_final_after_heartbeats",
    "call_reply_success_add",
]
FAILURE_SAMPLES = [name for name in REPLY_SAMPLES if "failure" in name]
SAMPLE_CONTEXT = {"user": "alice", "request_id": "req-123", "roles": ["admin"]}


def sample_failure(name: str) -> dict:
    return json.loads(load(name)["oslo_message_decoded"]["failure"])


def raised(exc: BaseException) -> BaseException:
    """The exception after a real raise, so it carries a traceback like a server's would."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_every_sample_file_is_classified():
    names = {path.stem for path in SAMPLES_DIR.glob("*.json")}
    assert len(CAPTURED) >= 18  # 17 files, one holding two replies
    assert names == set(REQUEST_SAMPLES) | set(REPLY_SAMPLES) | {
        "broadcast_call_replies_from_two_servers"
    }


# ---------------------------------------------------------------------------
# decode_envelope on the captured messages


@pytest.mark.parametrize(("name", "sample"), CAPTURED, ids=[name for name, _ in CAPTURED])
def test_every_sample_decodes_to_its_oslo_message(name, sample):
    decoded = decode_envelope(sample["body_raw"].encode("utf-8"))
    assert decoded == sample["oslo_message_decoded"]


@pytest.mark.parametrize(("name", "sample"), CAPTURED, ids=[name for name, _ in CAPTURED])
def test_every_sample_decodes_from_str_too(name, sample):
    assert decode_envelope(sample["body_raw"]) == sample["oslo_message_decoded"]


@pytest.mark.parametrize(("name", "sample"), CAPTURED, ids=[name for name, _ in CAPTURED])
def test_every_sample_is_a_2_0_envelope_with_json_properties(name, sample):
    outer = json.loads(sample["body_raw"])
    assert set(outer) == {"oslo.version", "oslo.message"}
    assert outer["oslo.version"] == wire.ENVELOPE_VERSION
    assert sample["properties"]["content_type"] == wire.CONTENT_TYPE
    assert sample["properties"]["content_encoding"] == wire.CONTENT_ENCODING


def test_base_properties_match_captured_properties():
    props = load("call_reply_success_add")["properties"]
    assert dict(BASE_PROPERTIES) == props
    call_props = dict(load("call_request_add")["properties"])
    assert call_props.pop("expiration") == "10000"
    assert dict(BASE_PROPERTIES) == call_props


# ---------------------------------------------------------------------------
# Requests


def test_parse_call_request_add():
    req = parse_request(load("call_request_add")["oslo_message_decoded"])
    assert isinstance(req, Request)
    assert req.method == "add"
    assert req.args == {"a": 2, "b": 3}
    assert req.version == "1.3"
    assert req.namespace is None
    assert req.msg_id == "efd67e6a54ab41c0a2aba5ed24339975"
    assert req.reply_q == "reply_ec364eb4d3c24b81a616e2e5e7cb0898"
    assert req.call_monitor_timeout is None
    assert req.unique_id == "86bfe432358447f590f4aa1b26976b95"
    # PROTOCOL.md §4.4 [verified]: exactly what an oslo endpoint receives.
    assert req.context == {**SAMPLE_CONTEXT, "client_timeout": None}
    assert req.wants_reply


def test_parse_request_with_call_monitor_timeout():
    req = parse_request(load("call_request_with_call_monitor_timeout")["oslo_message_decoded"])
    assert req.method == "slow"
    assert req.args == {"seconds": 3}
    assert req.call_monitor_timeout == 2
    assert req.context["client_timeout"] == 2
    assert req.wants_reply


def test_parse_request_namespace_and_version():
    req = parse_request(load("call_request_namespace_foo")["oslo_message_decoded"])
    assert req.namespace == "foo"
    assert req.version == "1.3"
    req = parse_request(load("call_request_version_2.0")["oslo_message_decoded"])
    assert req.version == "2.0"
    assert req.namespace is None


@pytest.mark.parametrize("name", CAST_REQUEST_SAMPLES)
def test_parse_cast_request_wants_no_reply(name):
    req = parse_request(load(name)["oslo_message_decoded"])
    assert req.method == "echo"
    assert req.msg_id is None
    assert req.reply_q is None
    assert req.call_monitor_timeout is None
    assert not req.wants_reply
    assert req.context == {**SAMPLE_CONTEXT, "client_timeout": None}


def test_parse_broadcast_call_request_wants_reply():
    req = parse_request(load("broadcast_call_request_fanout_with_msg_id")["oslo_message_decoded"])
    assert req.method == "whoami"
    assert req.args == {}
    assert req.wants_reply
    assert req.reply_q == "reply_8180b0e2003c4a83a392a1342fc7ff02"
    assert req.context == {"user": "pika-user", "request_id": "req-pika-1", "client_timeout": None}


@pytest.mark.parametrize("name", REQUEST_SAMPLES)
def test_parsed_request_context_and_args_hold_no_private_keys(name):
    message = load(name)["oslo_message_decoded"]
    req = parse_request(message)
    expected = {k[len("_context_") :]: v for k, v in message.items() if k.startswith("_context_")}
    expected["client_timeout"] = message.get("_timeout")
    assert req.context == expected
    assert req.unique_id == message["_unique_id"]
    assert req.args == message["args"]


def test_parse_request_missing_version_and_args():
    req = parse_request({"method": "ping"})
    assert req.version is None
    assert req.namespace is None
    assert req.args == {}
    assert req.context == {"client_timeout": None}
    assert req.unique_id is None  # a missing _unique_id is allowed (PROTOCOL.md §7)
    assert not req.wants_reply


def test_parse_request_null_args_is_empty():
    assert parse_request({"method": "ping", "args": None}).args == {}


def test_parse_request_msg_id_without_reply_q_wants_no_reply():
    req = parse_request({"method": "ping", "args": {}, "_msg_id": "abc"})
    assert req.msg_id == "abc"
    assert not req.wants_reply


def test_parse_request_empty_msg_id_is_none():
    req = parse_request({"method": "ping", "args": {}, "_msg_id": "", "_reply_q": "reply_x"})
    assert req.msg_id is None
    assert not req.wants_reply


@pytest.mark.parametrize("timeout", [True, "5", [5], {"t": 5}])
def test_parse_request_ignores_non_numeric_timeout(timeout):
    req = parse_request(
        {"method": "m", "args": {}, "_msg_id": "a", "_reply_q": "q", "_timeout": timeout}
    )
    assert req.call_monitor_timeout is None


@pytest.mark.parametrize("timeout", [0, 2, 2.5, 60])
def test_parse_request_keeps_numeric_timeout(timeout):
    req = parse_request({"method": "m", "_msg_id": "a", "_reply_q": "q", "_timeout": timeout})
    assert req.call_monitor_timeout == timeout


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"args": {}},
        {"method": ""},
        {"method": None},
        {"method": 5},
        {"method": ["add"]},
        {"method": "add", "args": []},
        {"method": "add", "args": "a=1"},
        {"method": "add", "args": 3},
        {"method": "add", "version": 1.3},
        {"method": "add", "version": ["1", "3"]},
        {"method": "add", "namespace": 7},
        {"method": "add", "namespace": {"ns": 1}},
    ],
)
def test_parse_request_rejects_malformed(message):
    with pytest.raises(WireFormatError):
        parse_request(message)


def test_wire_format_error_is_a_manager_ctl_error():
    assert issubclass(WireFormatError, ManagerCtlError)
    assert issubclass(UnsupportedEnvelopeVersion, WireFormatError)


# ---------------------------------------------------------------------------
# build_request


def _build_like(name: str, **overrides) -> dict:
    """build_request with a sample's ids, method, args, version, namespace and context."""
    message = load(name)["oslo_message_decoded"]
    context = {k[len("_context_") :]: v for k, v in message.items() if k.startswith("_context_")}
    kwargs = {
        "context": context,
        "version": message.get("version"),
        "namespace": message.get("namespace"),
        "msg_id": message.get("_msg_id"),
        "reply_q": message.get("_reply_q"),
        "call_monitor_timeout": message.get("_timeout"),
        "unique_id": message["_unique_id"],
    }
    kwargs.update(overrides)
    return build_request(message["method"], message["args"], **kwargs)


def test_build_call_request_equals_call_request_add():
    expected = load("call_request_add")["oslo_message_decoded"]
    built = build_request(
        "add",
        {"a": 2, "b": 3},
        context=dict(SAMPLE_CONTEXT),
        version="1.3",
        msg_id="efd67e6a54ab41c0a2aba5ed24339975",
        reply_q="reply_ec364eb4d3c24b81a616e2e5e7cb0898",
        unique_id="86bfe432358447f590f4aa1b26976b95",
    )
    assert set(built) == set(expected)
    assert built == expected
    assert built["_timeout"] is None  # present as null when unused (PROTOCOL.md §4.3)


def test_encoded_call_request_is_byte_identical_to_oslo():
    sample = load("call_request_add")
    body = encode_envelope(_build_like("call_request_add"))
    assert body == sample["body_raw"].encode("utf-8")


@pytest.mark.parametrize("name", REQUEST_SAMPLES)
def test_build_request_reproduces_every_request_sample(name):
    expected = load(name)["oslo_message_decoded"]
    built = _build_like(name)
    assert set(built) == set(expected)
    assert built == expected
    assert decode_envelope(encode_envelope(built)) == expected


@pytest.mark.parametrize("name", CAST_REQUEST_SAMPLES)
def test_build_cast_has_no_call_keys(name):
    built = _build_like(name, msg_id=None, reply_q=None)
    for key in ("_msg_id", "_reply_q", "_timeout"):
        assert key not in built
    assert built == load(name)["oslo_message_decoded"]


def test_build_cast_ignores_timeout_without_msg_id():
    built = build_request("echo", {"value": 1}, call_monitor_timeout=5)
    assert "_timeout" not in built
    assert "_msg_id" not in built
    assert "_reply_q" not in built


def test_build_request_call_monitor_timeout():
    built = build_request("slow", {"seconds": 3}, msg_id="m", reply_q="q", call_monitor_timeout=2)
    assert built["_timeout"] == 2
    assert parse_request(built).call_monitor_timeout == 2


def test_build_request_omits_unset_version_and_namespace():
    built = build_request("ping")
    assert set(built) == {"method", "args", "_unique_id"}
    assert built["args"] == {}
    assert HEX_ID.match(built["_unique_id"])


def test_build_request_fresh_unique_id_each_time():
    ids = {build_request("ping")["_unique_id"] for _ in range(20)}
    assert len(ids) == 20
    assert all(HEX_ID.match(i) for i in ids)


def test_build_request_copies_args():
    args = {"a": 1}
    built = build_request("m", args)
    built["args"]["a"] = 2
    assert args == {"a": 1}


def test_new_id_is_uuid4_hex():
    value = wire.new_id()
    assert HEX_ID.match(value)
    assert uuid.UUID(hex=value).version == 4


# ---------------------------------------------------------------------------
# Envelope


def test_encode_envelope_outer_has_exactly_two_keys_with_string_inner():
    message = {"method": "add", "args": {"a": 1}, "_unique_id": "u"}
    body = encode_envelope(message)
    assert isinstance(body, bytes)
    outer = json.loads(body.decode("utf-8"))
    assert list(outer) == ["oslo.version", "oslo.message"]
    assert outer["oslo.version"] == "2.0"
    assert isinstance(outer["oslo.message"], str)
    assert json.loads(outer["oslo.message"]) == message


def test_encode_decode_round_trip_with_unicode_and_nesting():
    message = {
        "method": "héllo",
        "args": {"snow": "☃", "nested": {"list": [1, 2.5, None, True, "x"]}, "emoji": "🐇"},
        "_context_user": "ñandú",
    }
    assert decode_envelope(encode_envelope(message)) == message


def test_encode_envelope_converts_non_json_values():
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    message = {"args": {"when": when, "ids": {3}, "u": uuid.UUID(int=1)}}
    decoded = decode_envelope(encode_envelope(message))
    assert decoded == {
        "args": {
            "when": "2024-01-02T03:04:05.000000",
            "ids": [3],
            "u": "00000000-0000-0000-0000-000000000001",
        }
    }


@pytest.mark.parametrize("body_type", [bytes, bytearray, str])
def test_decode_envelope_accepts_bytes_bytearray_and_str(body_type):
    text = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps({"method": "m"})})
    body = text if body_type is str else body_type(text.encode("utf-8"))
    assert decode_envelope(body) == {"method": "m"}


def test_decode_bare_1_0_message_is_accepted():
    bare = {"method": "add", "args": {"a": 1, "b": 2}, "_msg_id": "m", "_reply_q": "q"}
    assert decode_envelope(json.dumps(bare).encode()) == bare
    assert parse_request(decode_envelope(json.dumps(bare))).method == "add"


@pytest.mark.parametrize("only_key", ["oslo.version", "oslo.message"])
def test_decode_dict_with_one_envelope_key_is_a_bare_message(only_key):
    bare = {only_key: "2.0", "method": "m"}
    assert decode_envelope(json.dumps(bare)) == bare


@pytest.mark.parametrize("version", ["2.1", "3.0", "1.0", "1.9", "2", "", "two", None, "x.0", 3])
def test_decode_rejects_incompatible_envelope_versions(version):
    body = json.dumps({"oslo.version": version, "oslo.message": json.dumps({"method": "m"})})
    with pytest.raises(UnsupportedEnvelopeVersion):
        decode_envelope(body)


@pytest.mark.parametrize("version", ["2.0", "2.0.0"])
def test_decode_accepts_compatible_envelope_versions(version):
    body = json.dumps({"oslo.version": version, "oslo.message": json.dumps({"method": "m"})})
    assert decode_envelope(body) == {"method": "m"}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{'single': 'quotes'}",
        b"[1, 2, 3]",
        b'"a string"',
        b"42",
        b"null",
        b"true",
        b"\xff\xfe\xfa",
        b'{"method": "caf\xe9"}',  # latin-1, not UTF-8
        b"[" * 100_000,  # too deep to parse
        "[]",
        "",
    ],
)
def test_decode_rejects_non_object_bodies(body):
    with pytest.raises(WireFormatError):
        decode_envelope(body)


def test_decode_rejects_invalid_utf8_not_as_unicode_error():
    with pytest.raises(WireFormatError) as info:
        decode_envelope(b'{"oslo.version": "2.0", "oslo.message": "\xc3\x28"}')
    assert not isinstance(info.value, UnsupportedEnvelopeVersion)


@pytest.mark.parametrize(
    "inner",
    [None, 5, ["method"], {"method": "m"}, True],
)
def test_decode_rejects_non_string_inner_message(inner):
    with pytest.raises(WireFormatError):
        decode_envelope(json.dumps({"oslo.version": "2.0", "oslo.message": inner}))


@pytest.mark.parametrize("inner", ["", "not json", "[1, 2]", '"s"', "null", "1", "[" * 100_000])
def test_decode_rejects_inner_that_is_not_a_json_object(inner):
    with pytest.raises(WireFormatError) as info:
        decode_envelope(json.dumps({"oslo.version": "2.0", "oslo.message": inner}))
    assert not isinstance(info.value, UnsupportedEnvelopeVersion)


def test_decode_rejects_non_body_types():
    with pytest.raises(WireFormatError):
        decode_envelope(None)  # type: ignore[arg-type]
    with pytest.raises(WireFormatError):
        decode_envelope(123)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Replies


def test_parse_heartbeat_sample():
    reply = parse_reply(load("call_reply_call_monitor_heartbeat")["oslo_message_decoded"])
    assert isinstance(reply, Reply)
    assert reply.is_heartbeat
    assert reply.ending is False
    assert reply.result is None
    assert reply.failure is None
    assert reply.msg_id == "e5f8e82eca02476bb512976b92d96d55"


def test_parse_final_reply_after_heartbeats_matches_heartbeat_msg_id():
    heartbeat = parse_reply(load("call_reply_call_monitor_heartbeat")["oslo_message_decoded"])
    final = parse_reply(load("call_reply_final_after_heartbeats")["oslo_message_decoded"])
    request = parse_request(load("call_request_with_call_monitor_timeout")["oslo_message_decoded"])
    assert heartbeat.msg_id == final.msg_id == request.msg_id
    assert not final.is_heartbeat
    assert final.ending is True
    assert final.result == "slept 3"
    assert final.unique_id != heartbeat.unique_id


def test_parse_success_reply():
    sample = load("call_reply_success_add")["oslo_message_decoded"]
    reply = parse_reply(sample)
    assert reply.result == 5
    assert reply.failure is None
    assert reply.ending is True
    assert not reply.is_heartbeat
    assert reply.msg_id == load("call_request_add")["oslo_message_decoded"]["_msg_id"]
    assert reply.unique_id == "fbf3de0854454b2e812f2c667173f8a3"


@pytest.mark.parametrize("name", FAILURE_SAMPLES)
def test_parse_failure_reply(name):
    sample = load(name)["oslo_message_decoded"]
    reply = parse_reply(sample)
    assert reply.result is None
    assert isinstance(reply.failure, str)
    assert reply.failure == sample["failure"]
    assert reply.ending is True
    assert not reply.is_heartbeat


def test_parse_broadcast_replies_from_two_servers():
    data = load("broadcast_call_replies_from_two_servers")
    request = load("broadcast_call_request_fanout_with_msg_id")["oslo_message_decoded"]
    replies = [parse_reply(decode_envelope(r["body_raw"])) for r in data["replies"]]
    assert [r.result for r in replies] == ["srv1", "srv2"]
    assert {r.msg_id for r in replies} == {request["_msg_id"]}
    assert all(r.ending for r in replies)
    assert replies[0].unique_id != replies[1].unique_id


def test_parse_reply_without_ending_means_more_to_come():
    reply = parse_reply({"result": 7, "failure": None, "_msg_id": "m"})
    assert reply.ending is False
    assert not reply.is_heartbeat  # it carries a result
    assert parse_reply({"_msg_id": "m"}).is_heartbeat


def test_parse_old_two_part_reply():
    first = parse_reply({"result": "value", "failure": None, "ending": False, "_msg_id": "m"})
    second = parse_reply({"result": None, "ending": True, "_msg_id": "m"})
    assert (first.result, first.ending, first.is_heartbeat) == ("value", False, False)
    assert (second.result, second.ending, second.is_heartbeat) == (None, True, False)


def test_parse_reply_failure_object_becomes_a_json_string():
    failure = {"class": "ValueError", "module": "builtins", "message": "x"}
    reply = parse_reply({"result": None, "failure": failure, "ending": True})
    assert isinstance(reply.failure, str)
    assert json.loads(reply.failure) == failure


def test_build_reply_has_the_five_keys_and_ending_true():
    reply = build_reply("msgid", {"a": 1})
    sample = load("call_reply_success_add")["oslo_message_decoded"]
    assert list(reply) == list(sample)
    assert set(reply) == {"result", "failure", "ending", "_msg_id", "_unique_id"}
    assert reply["ending"] is True
    assert reply["result"] == {"a": 1}
    assert reply["failure"] is None
    assert reply["_msg_id"] == "msgid"
    assert HEX_ID.match(reply["_unique_id"])
    assert build_reply("msgid")["_unique_id"] != reply["_unique_id"]


def test_build_reply_matches_sample_body_shape():
    sample = load("call_reply_success_add")["oslo_message_decoded"]
    built = build_reply(sample["_msg_id"], 5)
    built["_unique_id"] = sample["_unique_id"]
    assert built == sample
    body = encode_envelope(built)
    assert body == load("call_reply_success_add")["body_raw"].encode("utf-8")


def test_build_heartbeat_is_ending_false_with_no_result():
    sample = load("call_reply_call_monitor_heartbeat")["oslo_message_decoded"]
    heartbeat = build_heartbeat(sample["_msg_id"])
    assert heartbeat["ending"] is False
    assert heartbeat["result"] is None
    assert heartbeat["failure"] is None
    assert set(heartbeat) == set(sample)
    heartbeat["_unique_id"] = sample["_unique_id"]
    assert heartbeat == sample
    assert parse_reply(heartbeat).is_heartbeat


def test_build_reply_with_failure_round_trips():
    failure = serialize_failure(raised(ValueError("bad")))
    reply = parse_reply(decode_envelope(encode_envelope(build_reply("m", failure=failure))))
    assert reply.failure == failure
    assert reply.ending is True
    assert not reply.is_heartbeat


# ---------------------------------------------------------------------------
# Failures: serialisation


def test_serialize_failure_matches_value_error_sample_shape():
    sample = sample_failure("call_reply_failure_ValueError")
    data = json.loads(serialize_failure(raised(ValueError("deliberate failure from srv1"))))
    assert list(data) == list(sample)
    assert set(data) == {"class", "module", "message", "tb", "args", "kwargs"}
    for key in ("class", "module", "message", "args", "kwargs"):
        assert data[key] == sample[key], key
    assert isinstance(data["tb"], list)
    assert all(isinstance(line, str) for line in data["tb"])
    assert data["tb"][0] == sample["tb"][0] == "Traceback (most recent call last):\n"
    assert data["tb"][-1] == sample["tb"][-1] == "ValueError: deliberate failure from srv1\n"


def test_serialize_failure_not_raised_has_one_tb_line():
    data = json.loads(serialize_failure(KeyError("k")))
    assert data["class"] == "KeyError"
    assert data["module"] == "builtins"
    assert data["message"] == "'k'"
    assert data["args"] == ["k"]
    assert data["tb"] == ["KeyError: 'k'\n"]


def test_serialize_failure_kwargs_and_args_become_primitives():
    class WithKwargs(Exception):
        def __init__(self, msg, when=None):
            super().__init__(msg, when)
            self.kwargs = {"when": when}

    when = datetime.datetime(2024, 5, 6, 7, 8, 9)
    data = json.loads(serialize_failure(WithKwargs("m", when=when)))
    assert data["class"] == "WithKwargs"
    assert data["module"] == __name__
    assert data["args"] == ["m", "2024-05-06T07:08:09.000000"]
    assert data["kwargs"] == {"when": "2024-05-06T07:08:09.000000"}


def test_serialize_failure_non_mapping_kwargs_is_empty():
    exc = ValueError("x")
    exc.kwargs = ["not", "a", "mapping"]  # type: ignore[attr-defined]
    assert json.loads(serialize_failure(exc))["kwargs"] == {}


def test_serialize_failure_module_override():
    data = json.loads(serialize_failure(RuntimeError("x"), module="some.where"))
    assert (data["class"], data["module"]) == ("RuntimeError", "some.where")


def test_serialize_failure_strips_remote_suffix():
    remote_cls = type("Boom_Remote", (Exception,), {"__module__": "myapp.errors_Remote"})
    data = json.loads(serialize_failure(remote_cls("m")))
    assert data["class"] == "Boom"
    assert data["module"] == "myapp.errors"


def test_serialize_failure_strips_suffix_only_when_both_have_it():
    half = type("Boom_Remote", (Exception,), {"__module__": "myapp.errors"})
    data = json.loads(serialize_failure(half("m")))
    assert (data["class"], data["module"]) == ("Boom_Remote", "myapp.errors")
    other_half = type("Boom", (Exception,), {"__module__": "myapp.errors_Remote"})
    data = json.loads(serialize_failure(other_half("m")))
    assert (data["class"], data["module"]) == ("Boom", "myapp.errors_Remote")


def test_serialize_failure_remote_suffix_with_module_override():
    remote_cls = type("Boom_Remote", (Exception,), {"__module__": "ignored"})
    data = json.loads(serialize_failure(remote_cls("m"), module="pkg_Remote"))
    assert (data["class"], data["module"]) == ("Boom", "pkg")


# ---------------------------------------------------------------------------
# Failures: rebuilding (PROTOCOL.md §5.2)


def oslo_remote_text(data: dict) -> str:
    """oslo's client: ``message + "\\n" + "\\n".join(tb)``."""
    return data["message"] + "\n" + "\n".join(data["tb"])


def test_value_error_sample_rebuilt_as_value_error_with_traceback():
    raw = load("call_reply_failure_ValueError")["oslo_message_decoded"]["failure"]
    data = json.loads(raw)
    exc = deserialize_failure(raw)
    assert type(exc) is ValueError
    assert exc.args == (oslo_remote_text(data),)
    assert str(exc).startswith("deliberate failure from srv1\nTraceback (most recent call last):")
    assert "raise ValueError('deliberate failure from %s' % server_name)" in str(exc)
    assert exc.remote_traceback == "\n".join(data["tb"])


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad value"), KeyError("k"), TypeError("t", 2), LookupError(), IndexError(3)],
    ids=repr,
)
def test_builtin_round_trip_same_class_message_and_traceback_in_args0(exc):
    original = raised(exc)
    failure = serialize_failure(original)
    data = json.loads(failure)
    rebuilt = deserialize_failure(failure)
    assert type(rebuilt) is type(original)
    assert rebuilt is not original
    assert rebuilt.args[0] == oslo_remote_text(data)
    assert rebuilt.args[0].startswith(str(original) + "\nTraceback (most recent call last):")
    assert rebuilt.args[1:] == original.args[1:]


def test_key_error_round_trip_like_protocol():
    rebuilt = deserialize_failure(serialize_failure(raised(KeyError("k"))))
    assert type(rebuilt) is KeyError
    assert rebuilt.args[0].startswith("'k'\n")  # PROTOCOL.md: KeyError("'k'\n...")
    assert "KeyError: 'k'" in rebuilt.args[0]


def test_exceptions_module_counts_as_builtins():
    failure = json.dumps(
        {
            "class": "ValueError",
            "module": "exceptions",
            "message": "py2",
            "tb": ["tb\n"],
            "args": ["py2"],
            "kwargs": {},
        }
    )
    rebuilt = deserialize_failure(failure)
    assert type(rebuilt) is ValueError
    assert rebuilt.args == ("py2\ntb\n",)


class Boom(Exception):
    """A custom exception living in a fake ``myapp.errors`` module."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.kwargs = {"code": code} if code is not None else {}
        self.code = code


@pytest.fixture
def myapp_errors(monkeypatch):
    package = types.ModuleType("myapp")
    module = types.ModuleType("myapp.errors")
    boom = type("Boom", (Boom,), {"__module__": "myapp.errors"})
    module.Boom = boom
    module.NotAnException = type("NotAnException", (), {})
    package.errors = module
    monkeypatch.setitem(sys.modules, "myapp", package)
    monkeypatch.setitem(sys.modules, "myapp.errors", module)
    return module


def test_custom_module_not_allowed_becomes_remote_error(myapp_errors):
    failure = serialize_failure(raised(myapp_errors.Boom("kaboom")))
    assert json.loads(failure)["module"] == "myapp.errors"
    rebuilt = deserialize_failure(failure)
    assert type(rebuilt) is RemoteError
    assert rebuilt.exc_type == "Boom"
    assert rebuilt.value == "kaboom"
    assert "Traceback (most recent call last):" in rebuilt.traceback
    assert "Boom: kaboom" in rebuilt.traceback
    assert rebuilt.exit_code == 1


def test_custom_module_not_allowed_even_when_another_is(myapp_errors):
    failure = serialize_failure(myapp_errors.Boom("kaboom"))
    rebuilt = deserialize_failure(failure, allowed_remote_exmods=["myapp.other", "myapp"])
    assert isinstance(rebuilt, RemoteError)


def test_allowed_module_rebuilds_own_class_with_kwargs(myapp_errors):
    failure = serialize_failure(raised(myapp_errors.Boom("kaboom", code=42)))
    data = json.loads(failure)
    assert data["kwargs"] == {"code": 42}
    rebuilt = deserialize_failure(failure, allowed_remote_exmods=["myapp.errors"])
    assert type(rebuilt) is myapp_errors.Boom
    assert rebuilt.code == 42
    assert rebuilt.args[0] == oslo_remote_text(data)
    assert "Boom: kaboom" in rebuilt.remote_traceback


def test_allowed_module_with_missing_class_falls_back(myapp_errors):
    failure = json.dumps(
        {
            "class": "Nope",
            "module": "myapp.errors",
            "message": "m",
            "tb": [],
            "args": [],
            "kwargs": {},
        }
    )
    rebuilt = deserialize_failure(failure, ["myapp.errors"])
    assert isinstance(rebuilt, RemoteError)
    assert (rebuilt.exc_type, rebuilt.value) == ("Nope", "m")


def test_allowed_module_with_non_exception_class_falls_back(myapp_errors):
    failure = json.dumps(
        {
            "class": "NotAnException",
            "module": "myapp.errors",
            "message": "m",
            "tb": [],
            "args": [],
            "kwargs": {},
        }
    )
    assert isinstance(deserialize_failure(failure, ["myapp.errors"]), RemoteError)


def test_allowed_module_that_cannot_be_imported_falls_back():
    failure = json.dumps(
        {
            "class": "E",
            "module": "no_such_module_xyz",
            "message": "m",
            "tb": [],
            "args": [],
            "kwargs": {},
        }
    )
    rebuilt = deserialize_failure(failure, ["no_such_module_xyz"])
    assert isinstance(rebuilt, RemoteError)
    assert rebuilt.exc_type == "E"


def test_allowed_module_with_bad_kwargs_falls_back(myapp_errors):
    failure = json.dumps(
        {
            "class": "Boom",
            "module": "myapp.errors",
            "message": "m",
            "tb": [],
            "args": ["m"],
            "kwargs": {"nope": 1},
        }
    )
    assert isinstance(deserialize_failure(failure, ["myapp.errors"]), RemoteError)


def test_allowed_manager_cli_errors_rebuilds_own_class():
    from manager_cli.errors import BadInputError

    failure = serialize_failure(raised(BadInputError("bad input")))
    rebuilt = deserialize_failure(failure, ["manager_cli.errors"])
    assert type(rebuilt) is BadInputError
    assert rebuilt.exit_code == 2


@pytest.mark.parametrize(
    ("name", "exc_type", "message"),
    [
        (
            "call_reply_failure_NoSuchMethod",
            "NoSuchMethod",
            "Endpoint does not support RPC method nosuch",
        ),
        (
            "call_reply_failure_UnsupportedVersion_2.0",
            "UnsupportedVersion",
            "Endpoint does not support RPC version 2.0. Attempted method: add",
        ),
        (
            "call_reply_failure_namespace_mismatch",
            "UnsupportedVersion",
            "Endpoint does not support RPC version 1.3. Attempted method: add",
        ),
    ],
)
def test_dispatcher_failure_samples_become_remote_error(name, exc_type, message):
    raw = load(name)["oslo_message_decoded"]["failure"]
    rebuilt = deserialize_failure(raw)
    assert type(rebuilt) is RemoteError
    assert rebuilt.exc_type == exc_type
    assert rebuilt.value == message
    assert rebuilt.traceback == "".join(json.loads(raw)["tb"])
    assert f"oslo_messaging.rpc.dispatcher.{exc_type}: {message}" in rebuilt.traceback
    assert exc_type in str(rebuilt)
    assert message in str(rebuilt)


def test_remote_suffix_round_trip_rebuilds_the_original_builtin():
    # A server re-raising an exception oslo rebuilt (class ValueError_Remote in builtins_Remote)
    # sends it under the original names.
    remote_cls = type("ValueError_Remote", (ValueError,), {"__module__": "builtins_Remote"})
    failure = serialize_failure(raised(remote_cls("again")))
    assert json.loads(failure)["class"] == "ValueError"
    assert type(deserialize_failure(failure)) is ValueError


@pytest.mark.parametrize(
    "failure",
    [
        "",
        "not json",
        "[1, 2, 3]",
        '"just a string"',
        "null",
        "42",
        "{",
        "[" * 100_000,
        None,
        b"\xff",
        json.dumps({}),
        json.dumps({"class": "ValueError", "module": "builtins", "tb": [1, None, {"x": 1}]}),
        json.dumps({"class": "Boom", "module": "myapp.errors", "tb": [1, None]}),
        json.dumps({"class": "ValueError", "module": "builtins", "tb": "one string"}),
        json.dumps({"class": "ValueError", "module": "builtins", "tb": {"a": 1}}),
        json.dumps({"class": "ValueError", "module": "builtins", "args": 5}),
        json.dumps({"class": "ValueError", "module": "builtins", "kwargs": [1, 2]}),
        json.dumps({"class": "ValueError", "module": "builtins", "kwargs": {"x": 1}}),
        json.dumps({"class": "UnicodeDecodeError", "module": "builtins", "args": ["a"]}),
        json.dumps({"class": "print", "module": "builtins"}),
        json.dumps({"class": "SystemExit", "module": "builtins", "args": [1]}),
        json.dumps({"class": "KeyboardInterrupt", "module": "builtins"}),
        json.dumps({"class": "NoSuchBuiltin", "module": "builtins"}),
        json.dumps({"class": None, "module": None}),
        json.dumps({"class": "", "module": ""}),
        json.dumps({"class": "ExceptionGroup", "module": "builtins", "args": ["m", []]}),
        json.dumps({"class": "ExceptionGroup", "module": "builtins", "args": ["m", [1]]}),
        json.dumps({"class": "Exception", "module": ["builtins"]}),
    ],
)
def test_malformed_failure_never_raises(failure):
    rebuilt = deserialize_failure(failure)  # type: ignore[arg-type]
    assert isinstance(rebuilt, BaseException)
    if not isinstance(rebuilt, RemoteError):
        assert isinstance(rebuilt, Exception)
        assert type(rebuilt).__module__ == "builtins"


def test_malformed_failure_json_is_remote_error_with_raw_text():
    rebuilt = deserialize_failure("this is not json")
    assert isinstance(rebuilt, RemoteError)
    assert rebuilt.value == "this is not json"


def test_failure_with_non_string_tb_lines_keeps_them_as_text():
    failure = json.dumps(
        {"class": "Boom", "module": "elsewhere", "message": "m", "tb": ["a\n", 2, None]}
    )
    rebuilt = deserialize_failure(failure)
    assert isinstance(rebuilt, RemoteError)
    assert rebuilt.traceback == "a\n2None"
    failure = json.dumps(
        {"class": "ValueError", "module": "builtins", "message": "m", "tb": ["a", 2], "args": ["m"]}
    )
    rebuilt = deserialize_failure(failure)
    assert type(rebuilt) is ValueError
    assert rebuilt.args == ("m\na\n2",)


def test_builtin_without_args_still_carries_message():
    failure = json.dumps(
        {"class": "RuntimeError", "module": "builtins", "message": "m", "tb": ["t"]}
    )
    rebuilt = deserialize_failure(failure)
    assert type(rebuilt) is RuntimeError
    assert rebuilt.args == ("m\nt",)


# ---------------------------------------------------------------------------
# Context


def test_pack_context_flattens_with_prefix():
    packed = pack_context(SAMPLE_CONTEXT)
    sample = load("call_request_add")["oslo_message_decoded"]
    assert packed == {k: v for k, v in sample.items() if k.startswith("_context_")}


def test_pack_context_none_is_empty():
    assert pack_context(None) == {}
    assert pack_context({}) == {}


def test_pack_context_object_with_to_dict():
    class Ctx:
        def to_dict(self):
            return {"user": "bob", "when": datetime.date(2024, 2, 3), "tags": ("a",)}

    assert pack_context(Ctx()) == {
        "_context_user": "bob",
        "_context_when": "2024-02-03",
        "_context_tags": ["a"],
    }


def test_pack_context_rejects_objects_without_to_dict():
    with pytest.raises(TypeError):
        pack_context(42)
    with pytest.raises(TypeError):
        pack_context(["user", "alice"])


def test_pack_context_non_string_keys_become_strings():
    assert pack_context({1: "a"}) == {"_context_1": "a"}


def test_pack_unpack_round_trip():
    context = {"user": "alice", "roles": ["admin"], "nested": {"k": [1, 2]}, "n": None}
    message = {"method": "m", "args": {}, "_msg_id": "id", "_reply_q": "q", "_timeout": 4}
    message.update(pack_context(context))
    unpacked, rest = unpack_context(message)
    assert unpacked == {**context, "client_timeout": 4}
    assert rest == {"method": "m", "args": {}}


def test_unpack_context_of_cast_sample():
    message = load("cast_request")["oslo_message_decoded"]
    context, rest = unpack_context(message)
    assert context == {**SAMPLE_CONTEXT, "client_timeout": None}
    assert rest == {
        "method": "echo",
        "args": {"value": "cast-value"},
        "version": "1.3",
        "_unique_id": "4c658cf601ea4f92a7ccf333b7509abe",
    }


def test_unpack_context_does_not_mutate_message():
    message = dict(load("call_request_add")["oslo_message_decoded"])
    before = dict(message)
    unpack_context(message)
    assert message == before


def test_pack_context_real_oslo_request_context():
    oslo_context = pytest.importorskip("oslo_context.context")
    ctx = oslo_context.RequestContext(user_id="u1", project_id="p1", request_id="req-1")
    packed = pack_context(ctx)
    assert packed["_context_user"] == "u1"
    assert packed["_context_project_id"] == "p1"
    assert packed["_context_roles"] == []
    assert packed["_context_request_id"] == "req-1"
    assert set(packed) == {"_context_" + k for k in ctx.to_dict()}
    json.dumps(packed)  # plain JSON all the way down
    unpacked, _ = unpack_context(packed)
    assert {k: v for k, v in unpacked.items() if k != "client_timeout"} == json.loads(
        json.dumps(ctx.to_dict(), default=str)
    )


# ---------------------------------------------------------------------------
# to_primitive


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y


class WithToDict:
    def __init__(self, inner):
        self.inner = inner

    def to_dict(self):
        return {"inner": self.inner, "kind": "w"}


@pytest.mark.parametrize("value", [None, "s", "", 0, -3, 2.5, True, False])
def test_to_primitive_keeps_simple_values(value):
    result = to_primitive(value)
    assert result == value
    assert type(result) is type(value)


def test_to_primitive_datetime_like_oslo_jsonutils():
    assert to_primitive(datetime.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05.000000"
    assert to_primitive(datetime.datetime(2024, 1, 2, 3, 4, 5, 6)) == "2024-01-02T03:04:05.000006"
    aware = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert to_primitive(aware) == "2024-01-02T03:04:05.000000"


def test_to_primitive_date_and_time():
    assert to_primitive(datetime.date(2024, 1, 2)) == "2024-01-02"
    assert to_primitive(datetime.time(3, 4, 5)) == "03:04:05"


def test_to_primitive_set_tuple_frozenset():
    assert sorted(to_primitive({3, 1, 2})) == [1, 2, 3]
    assert isinstance(to_primitive({1}), list)
    assert to_primitive((1, "a", (2,))) == [1, "a", [2]]
    assert sorted(to_primitive(frozenset({"x", "y"}))) == ["x", "y"]


def test_to_primitive_decimal_keeps_precision():
    assert to_primitive(decimal.Decimal("1.5")) == "1.5"
    precise = decimal.Decimal("0.1000000000000000000000000001")
    assert decimal.Decimal(to_primitive(precise)) == precise


def test_to_primitive_uuid_and_bytes():
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert to_primitive(value) == "12345678-1234-5678-1234-567812345678"
    assert to_primitive(b"caf\xc3\xa9") == "café"
    assert to_primitive(b"\xff") == "\ufffd"


def test_to_primitive_nested_objects():
    value = {
        "point": Point(1, [Point(2, 3)]),
        "wrapped": WithToDict({"ids": {uuid.UUID(int=5)}}),
        "list": [decimal.Decimal("2"), datetime.date(2020, 1, 1), None],
        7: "int key",
    }
    assert to_primitive(value) == {
        "point": {"x": 1, "y": [{"x": 2, "y": 3}]},
        "wrapped": {"inner": {"ids": ["00000000-0000-0000-0000-000000000005"]}, "kind": "w"},
        "list": ["2", "2020-01-01", None],
        "7": "int key",
    }
    json.dumps(to_primitive(value))


def test_to_primitive_falls_back_to_str():
    assert to_primitive(3 + 4j) == "(3+4j)"


def test_to_primitive_prefers_to_dict_over_attributes():
    obj = WithToDict(1)
    obj.secret = "hidden"
    assert to_primitive(obj) == {"inner": 1, "kind": "w"}


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2024, 1, 2, 3, 4, 5),
        datetime.datetime(1999, 12, 31, 23, 59, 59, 999999),
        datetime.date(2024, 1, 2),
        decimal.Decimal("1.5"),
        decimal.Decimal("-0.000001"),
        uuid.UUID(int=99),
        b"bytes",
        (1, 2),
        {"a": [1, {"b": (2, 3)}]},
    ],
    ids=repr,
)
def test_to_primitive_matches_oslo_jsonutils(value):
    jsonutils = pytest.importorskip("oslo_serialization.jsonutils")
    assert to_primitive(value) == jsonutils.to_primitive(value)


@pytest.mark.parametrize(
    "value",
    [
        {"when": datetime.datetime(2024, 1, 2, 3, 4, 5), "d": decimal.Decimal("3.25")},
        {1: "int key", "s": {5}, "u": uuid.UUID(int=7)},
        [b"x", (datetime.date(2000, 2, 29),)],
    ],
    ids=repr,
)
def test_encoded_json_matches_oslo_jsonutils_dumps(value):
    jsonutils = pytest.importorskip("oslo_serialization.jsonutils")
    ours = decode_envelope(encode_envelope({"v": value}))
    assert ours == json.loads(jsonutils.dumps({"v": value}))


def test_a_remote_key_error_reads_as_one_line_with_its_traceback_kept() -> None:
    from manager_cli.errors import RemoteError, remote_error_from

    failure = json.dumps(
        {
            "class": "KeyError",
            "module": "builtins",
            "message": "'volume-7'",
            "tb": ["Traceback (most recent call last):\n", "KeyError: 'volume-7'\n"],
            "args": ["volume-7"],
            "kwargs": {},
        }
    )
    rebuilt = wire.deserialize_failure(failure)
    assert isinstance(rebuilt, KeyError)
    assert "\\n" in str(rebuilt)  # str() of a KeyError: the repr, traceback escaped into it
    error = remote_error_from(rebuilt)
    assert isinstance(error, RemoteError)
    assert str(error) == "remote error: KeyError: 'volume-7'"
    assert "KeyError: 'volume-7'" in (error.traceback or "")

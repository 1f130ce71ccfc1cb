"""The tap's pure parts: decoding captured oslo requests, compression, masking, statistics."""

from __future__ import annotations

import bz2
import io
import json
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from manager_cli.cli.output import OutputOptions, RecordStream
from manager_cli.errors import BadInputError, UnknownNameError
from manager_cli.redact import is_secret_key, mask_secrets
from manager_cli.rpc import wire
from manager_cli.rpc.tap import CopyDecoder, Tap, TapStats, caller_of

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "wire-samples"


def _props(content_type=wire.CONTENT_TYPE, headers=None):
    return SimpleNamespace(content_type=content_type, headers=headers)


def decode_copy(exchange, routing_key, properties, body, *, topic, with_args=True):
    return CopyDecoder(topic, with_args=with_args).decode(
        exchange, routing_key, properties, body, 1700000000.5
    )


def _sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("call_request_add.json", "call"),
        ("call_request_directed_topic_server.json", "call"),
        ("cast_request.json", "cast"),
        ("fanout_cast_request.json", "fanout"),
        ("broadcast_call_request_fanout_with_msg_id.json", "fanout"),
        ("call_request_namespace_foo.json", "call"),
    ],
)
def test_captured_oslo_requests_decode(name, kind):
    sample = _sample(name)
    body = sample["body_raw"].encode()
    record = decode_copy(
        sample["exchange"], sample["routing_keys"][0], _props(), body, topic="wiretest"
    )
    inner = sample["oslo_message_decoded"]
    brief = decode_copy(
        sample["exchange"], sample["routing_keys"][0], _props(), body, topic="wiretest",
        with_args=False,
    )  # fmt: skip
    for key in ("kind", "target", "method", "caller", "bytes", "error"):
        assert brief[key] == record[key], key  # what statistics show, read the short way
    assert record["error"] is None and record["time"] == 1700000000.5
    assert record["kind"] == kind
    assert record["method"] == inner["method"]
    assert record["version"] == inner.get("version")
    assert record["namespace"] == inner.get("namespace")
    assert record["bytes"] == len(body)
    if kind == "fanout":
        assert record["target"] == "wiretest_fanout"
    else:
        assert record["target"] == sample["routing_keys"][0]


@pytest.mark.parametrize(
    ("mime", "compress"),
    [("application/x-gzip", zlib.compress), ("application/x-bz2", bz2.compress)],
)
def test_compressed_bodies_are_decoded(mime, compress):
    body = wire.encode_envelope(wire.build_request("resize", {"flavor": 2}, context={"user": "u"}))
    packed = compress(body)
    record = decode_copy(
        "nova", "compute", _props(headers={"compression": mime}), packed, topic="compute"
    )
    assert record["method"] == "resize" and record["args"] == {"flavor": 2}
    assert record["bytes"] == len(packed) and record["compression"] == mime


@pytest.mark.parametrize(
    ("content_type", "compression", "body", "error"),
    [
        (wire.CONTENT_TYPE, None, b"{nope", "message body is not JSON"),
        ("text/plain", None, b"x", "content type 'text/plain'"),
        (wire.CONTENT_TYPE, "application/zstd", b"x", "unsupported 'application/zstd'"),
        (wire.CONTENT_TYPE, "application/x-gzip", b"x", "cannot decompress"),
    ],
)
def test_undecodable_copies_are_reported_not_raised(content_type, compression, body, error):
    headers = {"compression": compression} if compression else None
    record = decode_copy("nova", "compute", _props(content_type, headers), body, topic="compute")
    assert error in record["error"] and record["method"] is None


def test_caller_and_request_id_from_nova_and_oslo_contexts():
    assert caller_of({"user_id": "u1", "project_id": "p1", "user": "ignored"}) == "u1/p1"
    assert caller_of({"user": "u", "tenant": "t"}) == "u/t"
    assert caller_of({}) == "-/-"
    message = wire.build_request(
        "m", {}, context={"global_request_id": "req-g", "user_name": "alice"}
    )
    record = decode_copy("x", "t", _props(), wire.encode_envelope(message), topic="t")
    assert record["request_id"] == "req-g" and record["caller"] == "alice/-"


def test_secrets_are_masked_however_deep():
    args = {
        "admin_password": "pw",
        "instance": {"metadata": {"Secret_Key": "s"}, "name": "vm1"},
        "bdms": [{"connection_info": {"data": {"auth_password": "chap", "target_iqn": "iqn"}}}],
        "auth_token": "t",
        "keypair": "k",
        "note": "see rabbit://nova:pw2@mq/ and amqp://a:b@c,d:e@f/",
        "password_empty": None,
    }
    masked = mask_secrets(args)
    assert masked["admin_password"] == "***" and masked["auth_token"] == "***"
    assert masked["instance"] == {"metadata": {"Secret_Key": "***"}, "name": "vm1"}
    assert masked["bdms"][0]["connection_info"]["data"] == {
        "auth_password": "***",
        "target_iqn": "iqn",
    }
    assert masked["keypair"] == "***"
    assert masked["note"] == "see rabbit://nova:***@mq/ and amqp://a:***@c,d:***@f/"
    assert masked["password_empty"] is None
    assert args["admin_password"] == "pw"  # a copy: the original is untouched
    for key in ("_context_auth_token", "auth_token_info", "service_token", "X-Subject-Token"):
        assert is_secret_key(key)
    assert not is_secret_key("flavor") and not is_secret_key(3)


def test_stats_rates_bytes_callers_sorted_by_rate():
    now = [100.0]
    stats = TapStats(window=5, clock=lambda: now[0])
    for second in range(10):
        now[0] = 100.0 + second
        for _ in range(3):
            stats.add(
                {"method": "often", "bytes": 10, "caller": f"u{second % 2}/p", "kind": "cast"}
            )
        if second >= 8:
            stats.add({"method": "burst", "bytes": 100, "caller": "x/y", "kind": "call"})
            stats.add({"method": "burst", "bytes": 100, "caller": "x/y", "kind": "call"})
    rows = stats.rows()
    assert [row["method"] for row in rows] == ["often", "burst"]
    often, burst = rows
    assert often["requests"] == 30 and often["bytes"] == 300 and often["callers"] == 2
    assert often["casts"] == 30 and burst["calls"] == 4
    assert often["rate"] == pytest.approx(3.0, abs=0.7)
    totals = stats.totals()
    assert totals["requests"] == 34 and totals["bytes"] == 700
    assert [row["method"] for row in totals["methods"]] == ["often", "burst"]


def test_record_stream_formats():
    out = io.StringIO()
    stream = RecordStream(("a", "b"), {"a": 4}, OutputOptions(format="table", stream=out))
    stream.write({"a": "x", "b": 1})
    stream.write({"a": "yy", "b": None})
    assert out.getvalue() == "A     B\nx     1\nyy\n"
    out = io.StringIO()
    stream = RecordStream(("a",), {}, OutputOptions(format="json", stream=out), available=("b",))
    stream.write({"a": 1, "b": 2})
    assert out.getvalue() == '{"a":1}\n'
    out = io.StringIO()
    opts = OutputOptions(format="csv", columns=("b",), stream=out)
    stream = RecordStream(("a",), {}, opts, available=("b",))
    stream.write({"a": 1, "b": "x,y"})
    assert out.getvalue() == 'b\n"x,y"\n'
    with pytest.raises(UnknownNameError):
        RecordStream(("a",), {}, OutputOptions(format="yaml"))
    with pytest.raises(UnknownNameError):
        RecordStream(("a",), {}, OutputOptions(columns=("zz",)))


@pytest.mark.parametrize("bad", [{"topic": "a.*"}, {"topic": "t", "host": "h#"}, {"topic": ""}])
def test_wildcards_cannot_be_tapped(bad):
    with pytest.raises(BadInputError):
        Tap("rabbit://", **bad)


def test_statistics_records_carry_no_arguments():
    message = wire.build_request("m", {"token": "t", "n": 1}, context={"user_id": "u"})
    body = wire.encode_envelope(message)
    record = decode_copy("x", "t", _props(), body, topic="t", with_args=False)
    assert record["args"] is None and record["method"] == "m" and record["caller"] == "u/-"
    assert decode_copy("x", "t", _props(), body, topic="t")["args"] == {"token": "***", "n": 1}

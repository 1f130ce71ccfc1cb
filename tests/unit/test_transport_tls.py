"""How a failed TLS handshake is named (rpc.transport); tests/tls has the real listener."""

from __future__ import annotations

import ssl

from pika.adapters.utils import connection_workflow

from manager_cli.rpc import transport


def _verify_error(message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    exc.verify_message = message
    return exc


def test_a_rejected_certificate_is_named_as_tls_wrapped_or_not():
    exc = _verify_error("self-signed certificate in certificate chain")
    wrapped = connection_workflow.AMQPConnectorSocketConnectError(exc)
    for error in (exc, wrapped):
        reason = transport._failure_reason(error)
        assert reason == (
            "TLS: the broker's certificate was rejected: self-signed certificate in certificate chain"
        )
    assert "ssl_ca_file" in transport._tls_hint([reason])


def test_a_host_name_mismatch_asks_for_a_name_the_certificate_holds():
    reason = transport._failure_reason(
        _verify_error("Hostname mismatch, certificate is not valid for 'rabbit.example'.")
    )
    assert reason.endswith("not valid for 'rabbit.example'")
    assert "host name the broker's certificate names" in transport._tls_hint([reason])


def test_a_handshake_the_broker_ends_points_at_the_client_certificate():
    exc = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    exc.reason = "TLSV1_ALERT_UNKNOWN_CA"
    reason = transport._failure_reason(exc)
    assert reason == "TLS: the broker refused the handshake (tlsv1 alert unknown ca)"
    assert "ssl_cert_file" in transport._tls_hint([reason])


def test_plain_amqp_at_a_tls_listener_suggests_ssl():
    import pika.exceptions

    reason = transport._failure_reason(
        pika.exceptions.AMQPConnectionError(pika.exceptions.IncompatibleProtocolError("eof"))
    )
    assert "set ssl = true" in reason

"""A CA made by the tests, its certificates, and a RabbitMQ 3.10 node with a TLS listener.

The node keeps its plain listener (readiness, rabbitmqctl-free checks) and adds TLS ones:
``127.0.0.1:TLS_PORT``, whose certificate names 127.0.0.1 and localhost, and the same port on
``127.0.0.2`` (still loopback) for a host name the certificate does not cover. Client
certificates are verified when sent, not required, and the EXTERNAL mechanism
(rabbitmq_auth_mechanism_ssl) logs in the certificate's common name.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from ._local import chown_tree
from .rabbitmq import RabbitMQNode, _free_ports

CLIENT_USER = "managerctl-tls-client"
WRONG_NAME_ADDRESS = "127.0.0.2"


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing the node presents


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _ca(name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(ca_key, ca_cert, common_name: str, *, server: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def make_certs(directory: Path) -> Certs:
    """A CA, a server certificate for 127.0.0.1/localhost, a client one, and an unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca("managerctl test CA")
    server_key, server_cert = _leaf(ca_key, ca_cert, "localhost", server=True)
    client_key, client_cert = _leaf(ca_key, ca_cert, CLIENT_USER, server=False)
    _other_key, other_cert = _ca("managerctl other CA")
    return Certs(
        ca=_write(directory / "ca.pem", _pem_cert(ca_cert)),
        server_cert=_write(directory / "server.pem", _pem_cert(server_cert)),
        server_key=_write(directory / "server.key", _pem_key(server_key), 0o600),
        client_cert=_write(directory / "client.pem", _pem_cert(client_cert)),
        client_key=_write(directory / "client.key", _pem_key(client_key), 0o600),
        other_ca=_write(directory / "other-ca.pem", _pem_cert(other_cert)),
    )


class TLSRabbitMQNode(RabbitMQNode):
    """A 3.10 node with TLS listeners using ``certs`` (copied into its state dir)."""

    def __init__(self, certs: Certs, **kwargs) -> None:
        super().__init__(name_prefix="managerctl-test-tls", **kwargs)
        self.certs = certs
        self.tls_port = next(p for p in _free_ports(3) if p not in (self.port, self.dist_port))

    def _prepare_dir(self) -> None:
        fresh = self.data_dir is None
        super()._prepare_dir()
        if not fresh:
            return
        d = Path(self.data_dir)
        names = {}
        for field in ("ca", "server_cert", "server_key"):
            source = getattr(self.certs, field)
            names[field] = _write(d / source.name, source.read_bytes(), 0o600)
        (d / "enabled_plugins").write_text("[rabbitmq_auth_mechanism_ssl].\n")
        (d / "rabbitmq.conf").write_text(
            f"listeners.ssl.1 = 127.0.0.1:{self.tls_port}\n"
            f"listeners.ssl.2 = {WRONG_NAME_ADDRESS}:{self.tls_port}\n"
            f"ssl_options.cacertfile = {names['ca']}\n"
            f"ssl_options.certfile = {names['server_cert']}\n"
            f"ssl_options.keyfile = {names['server_key']}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
            "auth_mechanisms.1 = PLAIN\n"
            "auth_mechanisms.2 = AMQPLAIN\n"
            "auth_mechanisms.3 = EXTERNAL\n"
            "ssl_cert_login_from = common_name\n"
        )
        chown_tree(str(d), "rabbitmq")

    def tls_url(self, host: str = "127.0.0.1", *, scheme: str = "amqps") -> str:
        return f"{scheme}://guest:guest@{host}:{self.tls_port}/"

    def add_client_user(self) -> str:
        """The user the client certificate logs in as (EXTERNAL), with rights on ``/``."""
        self.rabbitmqctl("add_user", CLIENT_USER, os.urandom(12).hex())
        self.rabbitmqctl("clear_password", CLIENT_USER)
        self.rabbitmqctl("set_permissions", "-p", "/", CLIENT_USER, ".*", ".*", ".*")
        return CLIENT_USER

"""TLS for ``wss://``: a self-signed certificate for local gateways, and SSL contexts.

The JS SDK only talks ``wss``; our SDK does too unless told otherwise. A development
gateway uses :func:`generate_self_signed` once, serves with :func:`server_ssl_context`,
and our SDK connects with :func:`client_ssl_context` trusting exactly that cert file
(the cert is its own CA, so the file is both the server's chain and the client's
trust anchor).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _san(host: str) -> x509.GeneralName:
    """An IP SAN for addresses, a DNS SAN for names."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def generate_self_signed(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    hosts: Iterable[str] = ("localhost", "127.0.0.1"),
    days: int = 365,
    *,
    now: float | None = None,
) -> None:
    """Write a self-signed EC P-256 certificate for ``hosts`` and its private key (PEM).

    The certificate is a CA for itself (so a client can trust the file directly) and a
    TLS server certificate valid from ``now`` minus a day (clock skew) for ``days`` days.
    The key file is created with mode 0600.
    """
    names = list(hosts)
    if not names:
        raise ValueError("at least one host is needed for the certificate")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    start = datetime.datetime.fromtimestamp(
        datetime.datetime.now(datetime.UTC).timestamp() if now is None else now, datetime.UTC
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - datetime.timedelta(days=1))
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as key_file:
        os.fchmod(fd, 0o600)  # also when the file already existed
        key_file.write(key_pem)
    with open(cert_path, "wb") as cert_file:
        cert_file.write(cert.public_bytes(serialization.Encoding.PEM))


def server_ssl_context(
    cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]
) -> ssl.SSLContext:
    """A TLS 1.2+ server context presenting ``cert_path`` / ``key_path``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context


def client_ssl_context(cafile: str | None, verify: bool = True) -> ssl.SSLContext:
    """A TLS 1.2+ client context for connecting to a gateway.

    ``cafile`` given: trust only that file (e.g. a self-signed gateway cert); None: the
    system's CAs. ``verify=False`` disables certificate and hostname checks entirely
    (local debugging only).
    """
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context

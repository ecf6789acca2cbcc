"""Self-signed certificates and SSL contexts, exercised over a real loopback handshake."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from softphone.gateway.tls import client_ssl_context, generate_self_signed, server_ssl_context

NOW = 1_700_000_000.0


@pytest.fixture
async def tls_server(cert_files: tuple[Path, Path]) -> AsyncIterator[int]:
    """An echo-once TLS server on 127.0.0.1; yields its port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await reader.readline())
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    cert, key = cert_files
    server = await asyncio.start_server(
        handle, "127.0.0.1", 0, ssl=server_ssl_context(str(cert), str(key))
    )
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


def test_certificate_contents(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    generate_self_signed(
        cert_path, key_path, hosts=("gw.local", "127.0.0.1", "::1"), days=10, now=NOW
    )
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw.local"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.issuer == cert.subject
    assert cert.not_valid_after_utc.timestamp() == NOW + 10 * 86400
    assert cert.not_valid_before_utc.timestamp() < NOW
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key_path.read_bytes()


def test_no_hosts_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", hosts=())


@pytest.mark.parametrize("server_hostname", ["127.0.0.1", "localhost"])
async def test_handshake_with_trusted_cert(
    tls_server: int, cert_files: tuple[Path, Path], server_hostname: str
) -> None:
    context = client_ssl_context(str(cert_files[0]))
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", tls_server, ssl=context, server_hostname=server_hostname
    )
    try:
        writer.write(b"ping\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 5) == b"ping\n"
        assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    finally:
        writer.close()
        await writer.wait_closed()


async def test_handshake_fails_without_trust(tls_server: int) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection("127.0.0.1", tls_server, ssl=ssl.create_default_context())


async def test_handshake_fails_for_wrong_hostname(
    tls_server: int, cert_files: tuple[Path, Path]
) -> None:
    context = client_ssl_context(str(cert_files[0]))
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection(
            "127.0.0.1", tls_server, ssl=context, server_hostname="example.com"
        )


async def test_unverified_client_context(tls_server: int) -> None:
    context = client_ssl_context(None, verify=False)
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_server, ssl=context)
    try:
        writer.write(b"x\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 5) == b"x\n"
    finally:
        writer.close()
        await writer.wait_closed()

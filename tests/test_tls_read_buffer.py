"""The gateway's TLS sockets read through a small buffer, and large frames still arrive.

asyncio gives each TLS connection a 256 KiB read buffer (a private setting,
``SSLProtocol.max_size``); a gateway shrinks it (``softphone.gateway.tls_read_buffer``)
because it holds one mostly idle socket per device. These tests fail loudly when a
Python upgrade moves that setting, and check that a frame many times the buffer's size
still crosses intact.
"""

from __future__ import annotations

import asyncio.sslproto
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from softphone.gateway.accounts import AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tls import client_ssl_context, server_ssl_context
from softphone.gateway.tls_read_buffer import GATEWAY_TLS_READ_BUFFER, shrink_tls_read_buffer
from softphone.signaling.messages import Listen, encode

ASYNCIO_DEFAULT = 256 * 1024


@pytest.fixture
def restored_max_size() -> Iterator[None]:
    """Put asyncio's own buffer size back after the test (the setting is process-wide)."""
    before = asyncio.sslproto.SSLProtocol.max_size
    yield
    asyncio.sslproto.SSLProtocol.max_size = before


def test_asyncio_still_sizes_tls_read_buffers_by_max_size(restored_max_size: None) -> None:
    # if this fails, a Python upgrade changed asyncio's SSL transport: revisit the module
    assert isinstance(asyncio.sslproto.SSLProtocol.max_size, int)
    asyncio.sslproto.SSLProtocol.max_size = ASYNCIO_DEFAULT
    assert shrink_tls_read_buffer(8192)
    assert asyncio.sslproto.SSLProtocol.max_size == 8192
    assert shrink_tls_read_buffer(65536)  # never grows it back
    assert asyncio.sslproto.SSLProtocol.max_size == 8192


async def test_gateway_tls_sockets_use_the_small_buffer_and_large_frames_arrive(
    restored_max_size: None,
    accounts: AccountStore,
    cert_files: tuple[Path, Path],
    make_token: Callable[..., str],
) -> None:
    asyncio.sslproto.SSLProtocol.max_size = ASYNCIO_DEFAULT
    cert, key = cert_files
    config = GatewayConfig(port=0, ssl_context=server_ssl_context(cert, key))
    async with Gateway(accounts, config) as gateway:
        assert asyncio.sslproto.SSLProtocol.max_size == GATEWAY_TLS_READ_BUFFER
        # a listen frame 10x the buffer (padded browserinfo) is read in pieces, intact
        padding = "x" * (10 * GATEWAY_TLS_READ_BUFFER)
        listen = Listen(token=make_token("alice"), browserinfo={"pad": padding})
        async with connect(gateway.url, ssl=client_ssl_context(str(cert))) as ws:
            await ws.send(encode(listen))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply["type"] == "connected"
            assert reply["payload"]["token"]["identity"] == "alice"
            (conn,) = gateway.connections
            ssl_protocol = conn.websocket.transport._ssl_protocol  # type: ignore[attr-defined]
            assert len(ssl_protocol._ssl_buffer) == GATEWAY_TLS_READ_BUFFER

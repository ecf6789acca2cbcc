"""Signaling and the REST API share the gateway's one port (and its TLS setting)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from softphone.core.device import Device
from softphone.gateway.accounts import DEV_ACCOUNT_SID, DEV_API_KEY_SID, DEV_SECRET, AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tls import client_ssl_context, server_ssl_context

BASIC = "Basic " + base64.b64encode(f"{DEV_API_KEY_SID}:{DEV_SECRET}".encode()).decode()


async def test_rest_and_signaling_on_one_port(
    gateway: Gateway, make_device: Callable[..., Device]
) -> None:
    assert gateway.rest_api is not None
    assert gateway.rest_api.url == f"http://127.0.0.1:{gateway.port}"
    device = make_device("alice")
    await device.register()
    client = Client(DEV_API_KEY_SID, DEV_SECRET, DEV_ACCOUNT_SID)
    client.api.base_url = gateway.rest_api.url
    with pytest.raises(TwilioRestException) as no_turn:  # the API answered, as JSON
        await asyncio.to_thread(client.tokens.create)
    assert (no_turn.value.status, no_turn.value.code) == (503, 20005)
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gateway.port}/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Tokens.json"
        async with session.post(url) as refused:
            assert refused.status == 401
    assert device.state == "registered", "REST traffic must not disturb signaling"


async def test_https_and_wss_share_the_port_with_the_system_style_trust(
    accounts: AccountStore,
    cert_files: tuple[Path, Path],
    loopback_media: None,
    make_token: Callable[..., str],
) -> None:
    cert, key = cert_files
    config = GatewayConfig(port=0, ssl_context=server_ssl_context(cert, key))
    gw = await Gateway(accounts, config).start()
    trust = client_ssl_context(cert)
    try:
        assert gw.rest_api is not None and gw.rest_api.url.startswith("https://")
        connector = aiohttp.TCPConnector(ssl=trust)
        async with aiohttp.ClientSession(connector=connector) as session:
            url = f"{gw.rest_api.url}/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Tokens.json"
            async with session.post(url, headers={"Authorization": BASIC}) as response:
                body = json.loads(await response.read())
        assert response.status == 503 or "ice_servers" in body  # no TURN configured here
        device = Device(make_token("alice"), chunderw=gw.url, ssl_context=trust)
        try:
            await device.register()
            assert device.state == "registered"
        finally:
            await device.destroy()
    finally:
        await gw.stop()


async def test_a_silent_or_garbage_connection_is_dropped(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET /" + b"a" * 9000)  # a request line that never ends
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the gateway
    writer.close()
    tls = ssl.create_default_context()
    with pytest.raises((ssl.SSLError, ConnectionError)):  # at once: a TLS client fails fast
        await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", gateway.port, ssl=tls, server_hostname="x"), 5
        )
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readline(), 5)
    assert head.startswith(b"HTTP/1.1 404") or head.startswith(b"HTTP/1.1 401")
    writer.close()


@pytest.mark.parametrize("path", ["/signal", "/prefix/signal"])
async def test_plain_http_to_the_signaling_path_is_refused_by_websockets(
    gateway: Gateway, path: str
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readline(), 5)
    assert head.startswith(b"HTTP/1.1 426") or head.startswith(b"HTTP/1.1 400"), head
    writer.close()

"""Issue 9, SDK half: wss verified by default, and register()/connect() never wait forever.

Every case runs against real sockets on 127.0.0.1 (a real TLS gateway, a refused port,
a tiny HTTP server, a WebSocket server that never says ``connected``); the unresolvable
host is under ``.invalid`` (RFC 6761: it never resolves, no traffic leaves).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from recorders import EventLog, eventually
from websockets.asyncio.server import ServerConnection, serve

from benchmarks.wire import free_port
from softphone.core.device import Device
from softphone.core.errors import InvalidArgumentError, TwilioError
from softphone.gateway.accounts import AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tls import client_ssl_context, generate_self_signed, server_ssl_context

TokenFactory = Callable[..., str]

BOUND_S = 12.0
"""Outer guard of every rejection test: the Device's own bound (5 s connect timeout for
one URL, ``signaling_connect_timeout_ms`` otherwise) is well inside it, while the code
before issue 9 hung here forever."""


async def assert_no_loop_errors(recorded: list[dict[str, Any]]) -> None:
    """Collect dead tasks (asyncio reports unretrieved exceptions when they are freed)."""
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0.01)
    assert recorded == []


@pytest.fixture
async def tls_gateway(
    accounts: AccountStore, cert_files: tuple[Path, Path], loopback_media: None
) -> AsyncIterator[Gateway]:
    cert, key = cert_files
    config = GatewayConfig(port=0, ssl_context=server_ssl_context(cert, key))
    gateway = await Gateway(accounts, config).start()
    yield gateway
    await gateway.stop()


@pytest.fixture
async def devices() -> AsyncIterator[list[Device]]:
    """Devices appended here are destroyed at teardown."""
    made: list[Device] = []
    yield made
    for device in made:
        await device.destroy()


async def rejection(device: Device, action: str) -> TwilioError:
    """Run ``register()`` or ``connect()`` and return the TwilioError it rejects with."""
    call = device.register() if action == "register" else device.connect()
    with pytest.raises(TwilioError) as info:
        await asyncio.wait_for(call, BOUND_S)
    return info.value


# -- wss by default -------------------------------------------------------------------


async def test_readme_snippet_registers_when_ssl_cert_file_trusts_the_gateway(
    tls_gateway: Gateway,
    cert_files: tuple[Path, Path],
    make_token: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
    devices: list[Device],
    loop_errors: list[dict[str, Any]],
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_files[0]))
    device = Device(make_token("alice"), chunderw=f"wss://{tls_gateway.host_port}")
    devices.append(device)
    assert device.options.ssl_context is None  # the default: verify, with the trust store
    await asyncio.wait_for(device.register(), BOUND_S)
    assert device.state == "registered" and device.identity == "alice"
    await assert_no_loop_errors(loop_errors)


async def test_default_context_rejects_a_certificate_it_does_not_trust(
    tls_gateway: Gateway,
    make_token: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    devices: list[Device],
    loop_errors: list[dict[str, Any]],
) -> None:
    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other.key"
    generate_self_signed(other_cert, other_key)  # trusted, but not the gateway's
    monkeypatch.setenv("SSL_CERT_FILE", str(other_cert))
    device = Device(make_token("alice"), chunderw=tls_gateway.host_port)  # bare host = wss
    devices.append(device)
    log = EventLog(device, "error")
    for action in ("register", "connect"):
        error = await rejection(device, action)
        assert error.code == 53000
        expected = f"certificate verify failed: self-signed certificate for {tls_gateway.host_port}"
        assert expected in error.message
        assert "ssl_context=" in error.message and "SSL_CERT_FILE" in error.message
    assert device.state == "unregistered" and device.stream is None
    assert 31000 in {args[0].code for args in log.args("error")}  # the JS per-socket event
    assert not tls_gateway.connections  # no socket ever got past TLS
    await assert_no_loop_errors(loop_errors)


async def test_an_explicit_ssl_context_wins_over_the_environment(
    tls_gateway: Gateway,
    cert_files: tuple[Path, Path],
    make_token: TokenFactory,
    monkeypatch: pytest.MonkeyPatch,
    devices: list[Device],
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    context = client_ssl_context(str(cert_files[0]))
    device = Device(
        make_token("bob"), chunderw=f"wss://{tls_gateway.host_port}", ssl_context=context
    )
    devices.append(device)
    await asyncio.wait_for(device.register(), BOUND_S)
    assert device.state == "registered"


# -- nothing waits forever ------------------------------------------------------------


@pytest.mark.parametrize("action", ["register", "connect"])
async def test_refused_port_rejects_and_a_later_register_works(
    action: str,
    accounts: AccountStore,
    make_token: TokenFactory,
    devices: list[Device],
    loopback_media: None,
    loop_errors: list[dict[str, Any]],
) -> None:
    port = free_port()
    device = Device(make_token("carol"), chunderw=f"ws://127.0.0.1:{port}")
    devices.append(device)
    log = EventLog(device, "error")
    error = await rejection(device, action)
    assert error.code == 53000
    assert f"connection refused by 127.0.0.1:{port}" in error.message
    assert {args[0].code for args in log.args("error")} == {31000, 31005}  # JS events kept
    assert device.state == "unregistered" and device.stream is None
    gateway = await Gateway(accounts, GatewayConfig(port=port)).start()
    try:  # nothing stale: the next register() walks the edges afresh and succeeds
        await asyncio.wait_for(device.register(), BOUND_S)
        assert device.state == "registered"
    finally:
        await device.destroy()
        await gateway.stop()
    await assert_no_loop_errors(loop_errors)


@pytest.mark.parametrize("action", ["register", "connect"])
async def test_unresolvable_host_rejects(
    action: str, make_token: TokenFactory, devices: list[Device]
) -> None:
    device = Device(make_token("dan"), chunderw="wss://signal.softphone.invalid")
    devices.append(device)
    error = await rejection(device, action)
    assert error.code == 53000
    assert "cannot resolve host 'signal.softphone.invalid'" in error.message


async def _http_server(status: str) -> tuple[asyncio.Server, int]:
    """A plain HTTP server that answers every request with ``status`` and no upgrade."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("status", ["404 Not Found", "500 Internal Server Error"])
@pytest.mark.parametrize("action", ["register", "connect"])
async def test_http_error_instead_of_an_upgrade_rejects(
    status: str, action: str, make_token: TokenFactory, devices: list[Device]
) -> None:
    server, port = await _http_server(status)
    try:
        device = Device(make_token("erin"), chunderw=f"ws://127.0.0.1:{port}")
        devices.append(device)
        error = await rejection(device, action)
        assert error.code == 53000
        assert f"answered HTTP {status}" in error.message
        assert "/signal" in error.message
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("action", ["register", "connect"])
async def test_ws_scheme_against_a_tls_port_rejects(
    action: str, tls_gateway: Gateway, make_token: TokenFactory, devices: list[Device]
) -> None:
    device = Device(make_token("fay"), chunderw=f"ws://{tls_gateway.host_port}")
    devices.append(device)
    error = await rejection(device, action)
    assert error.code == 53000
    assert "use a wss:// URL" in error.message


async def test_wss_scheme_against_a_plain_port_rejects(
    gateway: Gateway, make_token: TokenFactory, devices: list[Device]
) -> None:
    device = Device(make_token("fay"), chunderw=f"wss://{gateway.host_port}")
    devices.append(device)
    error = await rejection(device, "register")
    assert error.code == 53000
    assert "TLS handshake" in error.message and "use a ws:// URL" in error.message


@pytest.fixture
async def mute_server() -> AsyncIterator[str]:
    """Accepts the WebSocket, reads everything, never answers (no ``connected``)."""

    async def handler(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    server = await serve(handler, "127.0.0.1", 0, ping_interval=None)
    port = next(iter(server.sockets)).getsockname()[1]
    yield f"ws://127.0.0.1:{port}"
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("action", ["register", "connect"])
async def test_server_that_never_says_connected_rejects_within_the_bound(
    action: str, mute_server: str, make_token: TokenFactory, devices: list[Device]
) -> None:
    device = Device(make_token("gus"), chunderw=mute_server, signaling_connect_timeout_ms=800)
    devices.append(device)
    error = await rejection(device, action)
    assert error.code == 53000
    assert "accepted the WebSocket but sent no `connected` within 0.8 s" in error.message
    assert device.stream is None


async def test_server_that_never_says_ready_rejects_register_within_the_bound(
    make_token: TokenFactory, devices: list[Device]
) -> None:
    received: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        async for text in ws:
            if text == "\n":
                continue
            message = json.loads(text)
            received.append(message)
            if message["type"] == "listen":
                await ws.send(json.dumps({"type": "connected", "payload": {}, "version": "1.6"}))

    server = await serve(handler, "127.0.0.1", 0, ping_interval=None)
    port = next(iter(server.sockets)).getsockname()[1]
    try:
        device = Device(
            make_token("kim"), chunderw=f"ws://127.0.0.1:{port}", signaling_connect_timeout_ms=800
        )
        devices.append(device)
        error = await rejection(device, "register")
        assert error.code == 53000
        assert "did not confirm the registration (no `ready`) within 0.8 s" in error.message
        assert device.state == "unregistered"

        def presence() -> list[bool]:
            return [m["payload"]["media"]["audio"] for m in received if m["type"] == "register"]

        await eventually(lambda: presence() == [True, False])  # it took the registration back
    finally:
        server.close()
        await server.wait_closed()


async def test_silent_tcp_listener_hits_the_connect_timeout(
    make_token: TokenFactory, devices: list[Device]
) -> None:
    """TCP accepts (kernel backlog) but no HTTP answer: the 5 s connect timeout gives up."""
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        device = Device(make_token("hal"), chunderw=f"ws://127.0.0.1:{port}")
        devices.append(device)
        error = await rejection(device, "register")
        assert f"no WebSocket connection to 127.0.0.1:{port} within 5 s" in error.message
    finally:
        listener.close()


async def test_every_url_failing_names_them_all(
    make_token: TokenFactory, devices: list[Device]
) -> None:
    urls = [f"ws://127.0.0.1:{free_port()}" for _ in range(2)]
    device = Device(make_token("ivy"), chunderw=urls, backoff_max_ms=200)
    devices.append(device)
    error = await rejection(device, "register")
    assert "all 2 signaling URLs failed" in error.message
    assert device.stream is None


async def test_unhandled_error_log_line_names_the_cause(
    make_token: TokenFactory, devices: list[Device], caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    device = Device(make_token("jo"), chunderw=f"ws://127.0.0.1:{port}")
    devices.append(device)
    with caplog.at_level(logging.ERROR, logger="softphone.events"):
        await rejection(device, "register")
    unhandled = [r.getMessage() for r in caplog.records if "unhandled 'error'" in r.getMessage()]
    assert unhandled and all(f"127.0.0.1:{port}" in line for line in unhandled)
    assert any(f"connection refused by 127.0.0.1:{port}" in line for line in unhandled)


# -- option validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"chunderw": "https://voice.example"}, "uses https://"),
        ({"chunderw": ["127.0.0.1:1", "http://127.0.0.1:2"]}, "uses http://"),
        ({"chunderw": "wss://:443"}, "Bad signaling URL"),
        ({"chunderw": "wss://host:abc"}, "Bad signaling URL"),
        ({"chunderw": "wss://host:99999"}, "Bad signaling URL"),
        ({"ssl_context": True}, "`ssl_context` must be an ssl.SSLContext"),
        ({"signaling_connect_timeout_ms": 0}, "`signaling_connect_timeout_ms` must be"),
        ({"signaling_connect_timeout_ms": float("inf")}, "`signaling_connect_timeout_ms`"),
    ],
)
def test_wrong_schemes_and_values_fail_at_option_validation(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        Device("token", options)


def test_good_schemes_and_contexts_are_accepted() -> None:
    device = Device(
        "token",
        chunderw=["wss://a.example:443", "ws://127.0.0.1:8080", "b.example"],
        ssl_context=ssl.create_default_context(),
        signaling_connect_timeout_ms=2500,
    )
    assert device.options.signaling_connect_timeout_ms == 2500

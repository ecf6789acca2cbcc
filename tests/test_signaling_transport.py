"""The signaling transport against real sockets: heartbeats, queueing, edge fallback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from faults import GatewayProcess
from recorders import EventLog, eventually
from websockets.asyncio.server import ServerConnection, serve

from benchmarks.wire import free_port
from softphone.core.device import Device
from softphone.gateway.accounts import AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.signaling.messages import Error, MalformedMessage
from softphone.signaling.pstream import PStream, StreamStatus
from softphone.signaling.transport import WSTransport


class RecordingServer:
    """A bare WebSocket server that records every frame and can send or drop at will."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.sockets: list[ServerConnection] = []
        self.port = 0
        self._server: Any = None

    async def _handler(self, ws: ServerConnection) -> None:
        self.sockets.append(ws)
        async for frame in ws:
            self.frames.append(str(frame))

    async def start(self, port: int = 0) -> RecordingServer:
        self._server = await serve(self._handler, "127.0.0.1", port, ping_interval=None)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/signal"

    def types(self) -> list[str]:
        return [json.loads(f)["type"] for f in self.frames if f != "\n"]


@pytest.fixture
async def recording_server() -> AsyncIterator[RecordingServer]:
    server = await RecordingServer().start()
    yield server
    await server.stop()


async def test_silent_server_is_dropped_after_heartbeat_timeout(accounts: AccountStore) -> None:
    gateway = await Gateway(accounts, GatewayConfig(port=0, heartbeat_interval_s=3600)).start()
    transport = WSTransport([gateway.url], heartbeat_timeout_ms=400)
    log = EventLog(transport, "open", "close")
    try:
        transport.open()
        await log.wait_for("open")
        await log.wait_for("close", timeout=3)
        await log.wait_for("open", count=2, timeout=5)  # reconnected by itself
        assert transport.connect_attempts >= 2
    finally:
        transport.close()
        await gateway.stop()


async def test_heartbeats_keep_the_socket(accounts: AccountStore) -> None:
    gateway = await Gateway(accounts, GatewayConfig(port=0, heartbeat_interval_s=0.1)).start()
    transport = WSTransport([gateway.url], heartbeat_timeout_ms=400)
    log = EventLog(transport, "open", "close")
    try:
        transport.open()
        await log.wait_for("open")
        await asyncio.sleep(1.5)  # several heartbeat timeouts' worth of time
        assert log.count("close") == 0 and transport.connect_attempts == 1
        conn = next(iter(gateway.connections))
        # the client echoes each heartbeat, which keeps the gateway's idle timer fresh
        assert asyncio.get_running_loop().time() - conn.last_inbound < 0.5
    finally:
        transport.close()
        await gateway.stop()


async def test_frames_sent_while_down_are_queued_and_sent_after_listen(
    recording_server: RecordingServer,
) -> None:
    stream = PStream("tok", [recording_server.url])
    errors = EventLog(stream, "error")
    try:
        await eventually(lambda: stream.status is StreamStatus.CONNECTED)
        await eventually(lambda: recording_server.types() == ["listen"])
        port = recording_server.port
        await recording_server.stop()
        await eventually(lambda: stream.status is StreamStatus.DISCONNECTED)
        stream.register(True)
        stream.hangup("CA1")
        stream.reinvite("sdp", "CA1")  # never queued
        assert [a[0]["error"]["code"] for a in errors.args("error")][-3:] == [31009] * 3
        await recording_server.start(port)
        await eventually(
            lambda: recording_server.types() == ["listen", "listen", "register", "hangup"],
            timeout=10,
        )
    finally:
        stream.destroy()


async def test_retry_after_is_remembered(recording_server: RecordingServer) -> None:
    transport = WSTransport([recording_server.url])
    log = EventLog(transport, "open", "message")
    try:
        transport.open()
        await log.wait_for("open")
        frame = {
            "type": "error",
            "version": "1.6",
            "payload": {"error": {"code": 31902, "message": "busy", "retryAfter": 3}},
        }
        await recording_server.sockets[0].send(json.dumps(frame))
        await log.wait_for("message")
        assert transport.retry_after_ms == 3000
    finally:
        transport.close()


async def test_frames_arrive_decoded_once_and_broken_ones_as_malformed(
    recording_server: RecordingServer,
) -> None:
    """The transport decodes each frame with the codec; PStream gets typed messages."""
    transport = WSTransport([recording_server.url])
    log = EventLog(transport, "open", "message", "malformed")
    try:
        transport.open()
        await log.wait_for("open")
        socket = recording_server.sockets[0]
        await socket.send('{"type":"error","payload":{"error":{"code":31206,"retryAfter":2}}}')
        await socket.send('{"type":"invite","payload":{"callsid":"CA1"}}')
        (message,) = await log.wait_for("message")
        (broken,) = await log.wait_for("malformed")
        assert isinstance(message, Error) and message.code == 31206
        assert message.retry_after == 2.0 and transport.retry_after_ms == 2000
        assert isinstance(broken, MalformedMessage) and broken.msg_type == "invite"
    finally:
        transport.close()


@pytest.fixture
async def two_edges() -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    a, b = GatewayProcess("edge-a"), GatewayProcess("edge-b")
    await asyncio.gather(a.start(), b.start())
    yield a, b
    a.kill()
    b.kill()


async def test_first_edge_down_falls_back_to_second(
    two_edges: tuple[GatewayProcess, GatewayProcess], make_token: Callable[..., str]
) -> None:
    a, b = two_edges
    a.kill()
    device = Device(make_token("alice"), chunderw=[a.url, b.url])
    log = EventLog(device, "error")
    try:
        await asyncio.wait_for(device.register(), 20)
        assert device.edge == "edge-b"
        assert {e[0].code for e in log.args("error")} <= {31000, 31005}
    finally:
        await device.destroy()


async def test_edge_killed_mid_session_moves_to_the_other_edge(
    two_edges: tuple[GatewayProcess, GatewayProcess], make_token: Callable[..., str]
) -> None:
    a, b = two_edges
    device = Device(make_token("alice"), chunderw=[a.url, b.url])
    log = EventLog(device, "registered", "unregistered", "error")
    try:
        await device.register()
        assert device.edge == "edge-a"
        a.kill()
        await log.wait_for("unregistered")
        await log.wait_for("registered", count=2, timeout=30)
        assert device.edge == "edge-b"
        assert 31005 in {e[0].code for e in log.args("error")}  # abnormal close reported
    finally:
        await device.destroy()


@pytest.mark.parametrize("cap", [None, 200])
async def test_backoff_max_ms_bounds_the_reconnect_delay(cap: int | None) -> None:
    """With two URLs the JS primary backoff starts at 1-5 s; ``backoff_max_ms`` caps it."""
    dead = [f"ws://127.0.0.1:{free_port()}/signal" for _ in range(2)]
    transport = WSTransport(dead, backoff_max_ms=cap)
    try:
        transport.open()
        await eventually(lambda: len(transport.reconnect_delays_ms) >= (3 if cap else 1))
        if cap is None:
            assert transport.reconnect_delays_ms[0] >= 600  # 1000 ms minus 40 % jitter
        else:
            assert max(transport.reconnect_delays_ms) <= cap
    finally:
        transport.close()

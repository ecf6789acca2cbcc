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


def error_frame(retry_after: float) -> str:
    """A server ``error`` frame asking the client to wait ``retry_after`` seconds."""
    error = {"code": 31902, "message": "busy", "retryAfter": retry_after}
    return json.dumps({"type": "error", "version": "1.6", "payload": {"error": error}})


@pytest.mark.parametrize(
    ("retry_after", "first_delay_ms", "keeps_preferred"),
    [
        # JS stores only a truthy retryAfter: 0 leaves the normal preferred backoff
        # (100 ms + 20 % jitter at u = 0.5), whose window of 0 ms ends at its first ready
        (0, 120, False),
        # a real retryAfter is the first delay exactly, in a 75 s preferred window
        (0.2, 200, True),
    ],
)
async def test_retry_after_zero_is_no_retry_after(
    recording_server: RecordingServer,
    retry_after: float,
    first_delay_ms: int,
    keeps_preferred: bool,
) -> None:
    transport = WSTransport([recording_server.url], rng=lambda: 0.5, max_preferred_duration_ms=0)
    log = EventLog(transport, "open", "message")
    try:
        transport.open()
        await log.wait_for("open")
        transport.update_preferred_uri(recording_server.url)  # as during a call
        await recording_server.sockets[0].send(error_frame(retry_after))
        await log.wait_for("message")
        assert transport.retry_after_ms == (retry_after * 1000 or None)
        await recording_server.sockets[0].close()
        await log.wait_for("open", count=2)
        assert transport.reconnect_delays_ms[0] == first_delay_ms
        assert (transport.preferred_uri is not None) is keeps_preferred
    finally:
        transport.close()


async def test_a_retry_after_of_zero_keeps_the_one_before(
    recording_server: RecordingServer,
) -> None:
    transport = WSTransport([recording_server.url])
    log = EventLog(transport, "open", "message")
    try:
        transport.open()
        await log.wait_for("open")
        await recording_server.sockets[0].send(error_frame(3))
        await recording_server.sockets[0].send(error_frame(0))
        await log.wait_for("message", count=2)
        assert transport.retry_after_ms == 3000
    finally:
        transport.close()


async def test_preferred_edge_window_is_measured_on_the_transport_clock(
    recording_server: RecordingServer,
) -> None:
    """The 15 s preferred window ends when the injected clock says so, not the wall."""
    now = [1_000.0]
    dead = f"ws://127.0.0.1:{free_port()}/signal"
    transport = WSTransport([recording_server.url], clock=lambda: now[0], rng=lambda: 0.0)
    log = EventLog(transport, "open")
    try:
        transport.open()
        await log.wait_for("open")
        transport.update_preferred_uri(dead)
        await recording_server.sockets[0].close()
        await eventually(lambda: transport.connect_attempts >= 4)  # the clock stands still
        assert transport.preferred_uri == dead and transport.uri == dead
        now[0] += 15.001  # past MAX_PREFERRED_DURATION_MS since the first preferred step
        await log.wait_for("open", count=2)
        assert transport.preferred_uri is None and transport.uri == recording_server.url
    finally:
        transport.close()


async def test_a_socket_open_over_10_s_on_the_clock_restarts_the_backoff(
    recording_server: RecordingServer,
) -> None:
    now = [0.0]
    transport = WSTransport([recording_server.url], clock=lambda: now[0], rng=lambda: 0.0)
    log = EventLog(transport, "open")
    try:
        transport.open()
        await log.wait_for("open")
        await recording_server.stop()  # every reconnect now fails and the delay doubles
        await eventually(lambda: len(transport.reconnect_delays_ms) >= 3)
        assert transport.reconnect_delays_ms[:3] == [100, 200, 400]
        await recording_server.start(recording_server.port)
        await log.wait_for("open", count=2)
        now[0] += 10.001  # "open for more than CONNECT_SUCCESS_TIMEOUT_MS"
        delays_before = len(transport.reconnect_delays_ms)
        await recording_server.sockets[-1].close()
        await log.wait_for("open", count=3)
        assert transport.reconnect_delays_ms[delays_before] == 100  # back to step 0
    finally:
        transport.close()


async def test_flush_waits_for_the_writes_and_a_close_ends_it() -> None:
    """``flush`` joins the outbox: it returns once every queued frame was written, or
    as soon as the socket goes away (its frames are dropped), never by polling."""
    reading = asyncio.Event()
    received: list[list[str | bytes]] = []  # the frames of each connection

    async def handler(ws: ServerConnection) -> None:
        frames: list[str | bytes] = []
        received.append(frames)
        await reading.wait()
        async for frame in ws:
            frames.append(frame)

    server = await serve(handler, "127.0.0.1", 0, ping_interval=None)
    url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}/signal"
    frames, size = 400, 65_536  # 26 MB: more than the socket buffers hold unread
    try:
        for keep_reading in (False, True):
            transport = WSTransport([url])
            log = EventLog(transport, "open")
            transport.open()
            await log.wait_for("open")
            assert all(transport.send("x" * size) for _ in range(frames))
            flushing = asyncio.ensure_future(transport.flush(timeout=60))
            with pytest.raises(TimeoutError):  # the server does not read yet
                await asyncio.wait_for(asyncio.shield(flushing), 0.3)
            if keep_reading:
                reading.set()
                await asyncio.wait_for(flushing, 30)  # everything written
                transport.close()  # right away: nothing written may be lost
                await eventually(lambda: len(received[-1]) == frames, timeout=30)
            else:
                transport.close()  # drops the unsent frames, which ends the flush
                await asyncio.wait_for(flushing, 10)
    finally:
        server.close()
        await server.wait_closed()

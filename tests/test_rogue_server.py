"""Issue 9: a rogue or broken signaling server never kills a task of the SDK.

A tiny hostile WebSocket server on 127.0.0.1 speaks just enough of the protocol for
``register()`` (``connected``, ``ready``) and then sends whatever each test says. After
each hostile frame the Device must report the right error (or nothing), still read the
socket (a probe error frame comes through), and asyncio must report nothing to the
loop's exception handler ("Task exception was never retrieved" and the like).
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from recorders import EventLog, eventually
from websockets.asyncio.server import ServerConnection, serve

from softphone.core.device import Device
from softphone.core.errors import TwilioError
from softphone.signaling import transport as transport_module
from softphone.signaling.messages import S2C, decode
from softphone.signaling.transport import MAX_RETRY_AFTER_DELAY_MS, retry_after_ms


def frame(msg_type: str, payload: Any = None) -> str:
    body: dict[str, Any] = {"type": msg_type, "version": "1.6"}
    if payload is not None:
        body["payload"] = payload
    return json.dumps(body)


class RogueServer:
    """Answers ``listen`` with ``connected`` and ``register`` with ``ready``; the rest is
    up to the test (:meth:`send`, :meth:`drop`)."""

    def __init__(self) -> None:
        self.sockets: list[ServerConnection] = []
        self.port = 0
        self._server: Any = None

    async def _handler(self, ws: ServerConnection) -> None:
        self.sockets.append(ws)
        async for text in ws:
            if text == "\n":
                continue
            message = json.loads(text)
            if message["type"] == "listen":
                connected = {"edge": "rogue", "token": {"identity": "mallory", "ttl": 3600}}
                await ws.send(frame("connected", connected))
            elif message["type"] == "register":
                await ws.send(frame("ready" if message["payload"]["media"]["audio"] else "offline"))

    async def start(self) -> RogueServer:
        self._server = await serve(self._handler, "127.0.0.1", 0, ping_interval=None)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def send(self, text: str | bytes) -> None:
        await self.sockets[-1].send(text)

    async def drop(self) -> None:
        """Close the current socket without a close frame (an abnormal 1006 for the client)."""
        self.sockets[-1].transport.abort()


@pytest.fixture
async def rogue() -> AsyncIterator[RogueServer]:
    server = await RogueServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def registered(rogue: RogueServer) -> AsyncIterator[tuple[Device, EventLog]]:
    device = Device("any-token", chunderw=rogue.url)
    log = EventLog(device, "error", "incoming", "registered", "tokenWillExpire")
    await asyncio.wait_for(device.register(), 10)
    yield device, log
    await device.destroy()


async def probe(rogue: RogueServer, log: EventLog, tag: str) -> TwilioError:
    """The socket is still read: an error frame sent now comes out as a Device error."""
    before = log.count("error")
    await rogue.send(frame("error", {"error": {"code": 31005, "message": f"probe {tag}"}}))
    (error,) = await log.wait_for("error", count=before + 1)
    assert isinstance(error, TwilioError) and f"probe {tag}" in error.message
    return error


async def finish(device: Device, loop_errors: list[dict[str, Any]]) -> None:
    """Destroy the Device, free its dead tasks, and check asyncio reported nothing."""
    await device.destroy()
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0.01)
    assert loop_errors == []


async def test_error_frames_without_details_are_53000_and_nothing_dies(
    rogue: RogueServer,
    registered: tuple[Device, EventLog],
    loop_errors: list[dict[str, Any]],
) -> None:
    device, log = registered
    for bare in (frame("error"), frame("error", {}), frame("error", {"error": None})):
        before = log.count("error")
        await rogue.send(bare)
        (error,) = await log.wait_for("error", count=before + 1)
        assert error.code == 53000
        assert "`error` frame without error details" in error.message
    await rogue.send(frame("error", {"error": "not an object"}))  # malformed: logged, dropped
    await rogue.send(frame("error", {"error": {"code": 31005, "message": "x" * 1_000_000}}))
    (huge,) = await log.wait_for("error", count=4)
    assert len(huge.message) < 1_000  # the server's text is kept, but bounded
    await probe(rogue, log, "after bare errors")
    assert device.state == "registered" and device.stream is not None
    assert device.stream.transport.connect_attempts == 1  # the same socket all along
    await finish(device, loop_errors)


async def test_deeply_nested_json_is_dropped_and_the_socket_still_read(
    rogue: RogueServer,
    registered: tuple[Device, EventLog],
    loop_errors: list[dict[str, Any]],
) -> None:
    device, log = registered
    deep = "[" * 100_000 + "]" * 100_000
    await rogue.send(deep)
    await rogue.send('{"type":"error","payload":{"error":{"retryAfter":' + deep + "}}}")
    await rogue.send(b"\x00binary")
    await probe(rogue, log, "after nesting")
    assert device.state == "registered"
    assert device.stream is not None and device.stream.transport.connect_attempts == 1
    await finish(device, loop_errors)


@pytest.mark.parametrize(
    ("raw", "expected_ms"),
    [
        ("Infinity", MAX_RETRY_AFTER_DELAY_MS),
        ("1e308", MAX_RETRY_AFTER_DELAY_MS),
        ("1e999", MAX_RETRY_AFTER_DELAY_MS),
        ("1" + "0" * 400, MAX_RETRY_AFTER_DELAY_MS),  # an integer beyond float range
        ("-" + "1" * 400, 0.0),
        ("-5", 0.0),
        ("-Infinity", 0.0),
        ("2.5", 2500.0),
        ("NaN", None),
        ('"10"', None),
        ("true", None),
        ("null", None),
    ],
)
def test_retry_after_is_clamped_to_sane_bounds(raw: str, expected_ms: float | None) -> None:
    text = '{"type":"error","payload":{"error":{"code":31902,"retryAfter":' + raw + "}}}"
    assert retry_after_ms(decode(text, S2C)) == expected_ms


@pytest.mark.parametrize("retry_after", ["Infinity", "1e308"])
async def test_huge_retry_after_cannot_overflow_the_reconnect_backoff(
    retry_after: str,
    rogue: RogueServer,
    registered: tuple[Device, EventLog],
    loop_errors: list[dict[str, Any]],
) -> None:
    """The stored retryAfter feeds the preferred-edge backoff at the next drop; an
    unclamped infinity used to raise OverflowError inside the socket task there."""
    device, log = registered
    stream = device.stream
    assert stream is not None
    stream.update_preferred_uri(stream.uri)  # as during a call: reconnect to this edge
    text = '{"type":"error","payload":{"error":{"code":31902,"retryAfter":' + retry_after + "}}}"
    await rogue.send(text)
    await log.wait_for("error")
    assert stream.transport.retry_after_ms == MAX_RETRY_AFTER_DELAY_MS
    await rogue.drop()
    await eventually(lambda: len(stream.transport.reconnect_delays_ms) == 1)
    assert stream.transport.reconnect_delays_ms == [MAX_RETRY_AFTER_DELAY_MS]
    await finish(device, loop_errors)


async def test_negative_retry_after_reconnects_promptly_and_reregisters(
    rogue: RogueServer,
    registered: tuple[Device, EventLog],
    loop_errors: list[dict[str, Any]],
) -> None:
    device, log = registered
    stream = device.stream
    assert stream is not None
    stream.update_preferred_uri(stream.uri)
    await rogue.send('{"type":"error","payload":{"error":{"code":31902,"retryAfter":-5}}}')
    await log.wait_for("error")
    assert stream.transport.retry_after_ms is None  # clamped to 0, and 0 is not stored (JS)
    await rogue.drop()
    await log.wait_for("registered", count=2)  # back through the normal preferred backoff
    assert all(delay >= 0 for delay in stream.transport.reconnect_delays_ms)
    await probe(rogue, log, "after reconnect")
    await finish(device, loop_errors)


@pytest.mark.parametrize(
    ("payload", "cause"),
    [
        ({"callsid": "CA1", "parameters": {}}, "'invite' needs 'sdp'"),
        ({"callsid": "CA1", "sdp": 42}, "'invite.sdp' has the wrong type"),
        ({"sdp": "v=0"}, "'invite' needs 'callsid'"),
        ({"callsid": "CA1", "sdp": ""}, "empty sdp"),
        ({"callsid": "", "sdp": "v=0"}, "empty callsid"),
    ],
)
async def test_invite_without_sdp_is_a_31400_and_no_call(
    payload: dict[str, Any],
    cause: str,
    rogue: RogueServer,
    registered: tuple[Device, EventLog],
    loop_errors: list[dict[str, Any]],
) -> None:
    device, log = registered
    await rogue.send(frame("invite", payload))
    (error,) = await log.wait_for("error")
    assert error.code == 31400 and error.name == "BadRequest"
    assert error.message == f"BadRequest (31400): Malformed invite from gateway. Cause: {cause}"
    assert log.count("incoming") == 0 and device.calls == []
    await probe(rogue, log, "after invite")
    await finish(device, loop_errors)


async def test_odd_connected_frames_are_survived(
    rogue: RogueServer,
    registered: tuple[Device, EventLog],
    loop_errors: list[dict[str, Any]],
) -> None:
    device, log = registered
    for token in ('{"ttl":1e999}', '{"ttl":NaN}', '{"ttl":-1e999}', '{"identity":7}'):
        await rogue.send('{"type":"connected","payload":{"edge":[],"token":' + token + "}}")
    await rogue.send(frame("surprise", {"what": "an unknown type"}))
    await probe(rogue, log, "after odd connected")
    assert log.count("tokenWillExpire") == 0  # an infinite or NaN ttl schedules nothing
    assert device.identity == "mallory"
    await finish(device, loop_errors)


async def test_an_internal_failure_in_the_socket_task_is_reported_not_lost(
    rogue: RogueServer,
    registered: tuple[Device, EventLog],
    loop_errors: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The safety net under every frame handler: a bug that escapes the socket task
    becomes a 31000 ``error`` and a reconnect, never a silently dead task."""
    device, log = registered

    def broken(frame: str) -> float | None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(transport_module, "retry_after_ms", broken)
    await rogue.send(frame("ready"))
    (error,) = await log.wait_for("error")
    assert error.code == 31000
    assert "internal error in the signaling socket: RuntimeError('simulated bug')" in (
        error.message
    )
    monkeypatch.undo()
    await log.wait_for("registered", count=2)  # reconnected and registered again
    await probe(rogue, log, "after the bug")
    await finish(device, loop_errors)

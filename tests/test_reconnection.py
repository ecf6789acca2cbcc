"""Issue 5, signaling side: calls survive a broken WebSocket (real gateway, real media)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from faults import TcpProxy
from recorders import EventLog, eventually

from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.gateway.server import Gateway

ALICE_HZ, BOB_HZ = 1000.0, 1500.0
DeviceFactory = Callable[..., Device]


@pytest.fixture
async def proxy(gateway: Gateway) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy(gateway.port).start()
    yield proxy
    await proxy.stop()


class LiveCall:
    """Alice (behind the proxy) in a call with bob (direct), both recording."""

    def __init__(self, alice: Device, bob: Device) -> None:
        self.alice, self.bob = alice, bob
        self.alice_heard, self.bob_heard = MemorySink(), MemorySink()
        self.bob_calls: list[Call] = []
        self.call: Call | None = None

    async def start(self) -> LiveCall:
        def on_incoming(call: Call) -> None:
            self.bob_calls.append(call)
            call.on("accept", lambda c: c.get_remote_stream().add_sink(self.bob_heard))
            call.accept()

        self.bob.on("incoming", on_incoming)
        await asyncio.gather(self.alice.register(), self.bob.register())
        self.call = await self.alice.connect(params={"To": "client:bob"})
        await self.call.wait_for("accept", timeout=10)
        self.call.get_remote_stream().add_sink(self.alice_heard)
        await self.audio_flows()
        return self

    async def audio_flows(self, timeout: float = 10.0) -> None:
        """Both sides hear the other's tone in audio that arrived from now on."""
        marks = len(self.alice_heard.pcm()), len(self.bob_heard.pcm())

        def fresh(sink: MemorySink, mark: int, hz: float) -> bool:
            new = sink.pcm()[mark:]
            return len(new) > SAMPLE_RATE // 2 and detect_tone(new[-SAMPLE_RATE // 2 :], hz)

        await eventually(
            lambda: (
                fresh(self.alice_heard, marks[0], BOB_HZ)
                and fresh(self.bob_heard, marks[1], ALICE_HZ)
            ),
            timeout=timeout,
        )


async def _live_call(make_device: DeviceFactory, proxy: TcpProxy, **alice_opts: Any) -> LiveCall:
    alice_opts.setdefault("max_call_signaling_timeout_ms", 10_000)
    alice = make_device(
        "alice", chunderw=proxy.url, file_input_stream=ToneSource([ALICE_HZ]), **alice_opts
    )
    bob = make_device("bob", file_input_stream=ToneSource([BOB_HZ]))
    return await LiveCall(alice, bob).start()


@pytest.mark.parametrize("fault", ["cut", "reset"])
async def test_call_survives_a_dropped_websocket(
    make_device: DeviceFactory, proxy: TcpProxy, gateway: Gateway, fault: str
) -> None:
    live = await _live_call(make_device, proxy)
    call = live.call
    assert call is not None
    log = EventLog(call, "reconnecting", "reconnected", "disconnect", "error")
    device_log = EventLog(live.alice, "unregistered", "registered")
    getattr(proxy, fault)()
    (error,) = await log.wait_for("reconnecting")
    assert error.code == 53001
    assert call.status() in ("reconnecting", "open")
    await log.wait_for("reconnected")
    assert call.status() == "open"
    await device_log.wait_for("registered")  # registration came back too
    assert live.alice.state == "registered"
    await live.audio_flows()
    assert log.count("disconnect") == 0 and log.count("error") == 0
    assert live.bob_calls[0].status() == "open"
    assert len(gateway.calls.calls) == 1  # the same call, re-attached, not a new one
    call.disconnect()
    await live.bob_calls[0].wait_for("disconnect", timeout=5)


async def test_call_ends_when_the_client_misses_its_window(
    make_device: DeviceFactory, proxy: TcpProxy, gateway: Gateway
) -> None:
    live = await _live_call(make_device, proxy, max_call_signaling_timeout_ms=1000)
    call = live.call
    assert call is not None
    log = EventLog(call, "reconnecting", "reconnected", "error", "disconnect")
    bob_log = EventLog(live.bob_calls[0], "disconnect")
    proxy.refusing = True
    proxy.cut()
    await log.wait_for("reconnecting")
    await bob_log.wait_for("disconnect", timeout=5)  # the gateway gave up after 1 s
    proxy.refusing = False
    (error,) = await log.wait_for("error", timeout=30)
    assert error.code == 31005  # 31107 from the gateway; precision off
    await log.wait_for("disconnect")
    assert log.count("reconnected") == 0 and call.status() == "closed"
    assert gateway.calls.records[-1]["reason"] == "caller did not reconnect in time"


async def test_without_a_window_the_call_ends_at_once(
    make_device: DeviceFactory, proxy: TcpProxy
) -> None:
    live = await _live_call(make_device, proxy, max_call_signaling_timeout_ms=0)
    call = live.call
    assert call is not None
    log = EventLog(call, "error", "disconnect")
    bob_log = EventLog(live.bob_calls[0], "disconnect")
    proxy.cut()
    await bob_log.wait_for("disconnect", timeout=5)
    await log.wait_for("disconnect", timeout=30)
    assert call.status() == "closed"


async def test_update_token_during_a_call_keeps_the_media(
    make_device: DeviceFactory, proxy: TcpProxy, make_token: Callable[..., str], gateway: Gateway
) -> None:
    live = await _live_call(make_device, proxy)
    call = live.call
    assert call is not None
    old_token = call.reconnect_token
    log = EventLog(call, "reconnecting", "disconnect")
    live.alice.update_token(make_token("alice"))
    await eventually(lambda: call.reconnect_token != old_token)
    await live.audio_flows()
    assert log.names() == [] and len(gateway.calls.calls) == 1


async def test_connect_token_takes_over_a_ringing_call(make_device: DeviceFactory) -> None:
    alice = make_device("alice", file_input_stream=ToneSource([ALICE_HZ]))
    ringing_bob = make_device("bob")
    pending: list[Call] = []
    ringing_bob.on("incoming", pending.append)
    await ringing_bob.register()
    call = await alice.connect(params={"To": "client:bob", "topic": "billing"})
    await eventually(lambda: pending != [])
    token = pending[0].connect_token
    assert token is not None
    cancelled = EventLog(pending[0], "cancel")

    other_bob = make_device("bob", file_input_stream=ToneSource([BOB_HZ]))
    taken = await other_bob.connect(connect_token=token)
    assert taken.is_connect_token_call and taken.custom_parameters == {"topic": "billing"}
    await taken.wait_for("accept", timeout=10)
    await call.wait_for("accept", timeout=10)
    await cancelled.wait_for("cancel")
    heard = MemorySink()
    taken.get_remote_stream().add_sink(heard)
    await eventually(
        lambda: (
            len(heard.pcm()) > SAMPLE_RATE // 2
            and detect_tone(heard.pcm()[-SAMPLE_RATE // 2 :], ALICE_HZ)
        )
    )
    assert "outgoing" not in other_bob.sounds.played
    call.disconnect()
    await taken.wait_for("disconnect", timeout=5)


async def test_bad_connect_tokens_are_rejected(make_device: DeviceFactory) -> None:
    import base64
    import json

    from softphone.core.errors import InvalidArgumentError

    device = make_device("bob")
    with pytest.raises(InvalidArgumentError, match="Cannot parse connectToken"):
        await device.connect(connect_token="%%%not base64")
    missing = base64.b64encode(json.dumps({"parameters": {}}).encode()).decode()
    with pytest.raises(InvalidArgumentError, match="Invalid connectToken"):
        await device.connect(connect_token=missing)
    unknown = base64.b64encode(
        json.dumps({"parameters": {"CallSid": "CA1"}, "signalingReconnectToken": "RTx"}).encode()
    ).decode()
    call = await device.connect(connect_token=unknown)
    log = EventLog(call, "error", "disconnect")
    (error,) = await log.wait_for("error", timeout=10)
    assert error.code == 31005  # the gateway's 31107, precision off
    await log.wait_for("disconnect")

"""The 1.x Device and Connection documentation's samples, ported to the facade.

Each test follows a sample or a documented item of the Twilio Client 1.x
``Twilio.Device`` / ``Twilio.Connection`` pages, in snake_case, against a real
gateway with real media. docs/porting-from-1x.md holds the item-by-item checklist.
"""

from __future__ import annotations

import asyncio
import io
import logging
import wave
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from recorders import EventLog, eventually

from softphone.audio_backends import ToneSource
from softphone.audio_backends.base import AudioSource
from softphone.core.audio_helper import AudioHelper
from softphone.core.errors import InvalidArgumentError, InvalidStateError, TwilioError
from softphone.core.legacy import Connection, Device, region_to_edge, translate_options
from softphone.gateway.server import Gateway

TokenFactory = Callable[..., str]


@pytest.fixture
async def devices() -> AsyncIterator[list[Device]]:
    """Facade Devices a test made; destroyed at teardown."""
    made: list[Device] = []
    yield made
    for device in made:
        await device.destroy()


async def _ready(
    devices: list[Device], token: str, options: dict[str, Any], *, answer: bool = True
) -> tuple[Device, list[Connection]]:
    """A set-up facade Device; with ``answer``, it accepts incoming calls."""
    device = Device()
    devices.append(device)
    connections: list[Connection] = []

    def incoming(conn: Connection) -> None:
        connections.append(conn)
        if answer:
            conn.accept()

    device.incoming(incoming)
    await device.setup(token, options)
    return device, connections


async def test_constructor_with_a_token_runs_setup_and_maps_every_1x_option(
    gateway: Gateway, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="softphone.legacy")
    options = {
        "chunderw": gateway.url,
        "debug": True,
        "warnings": True,
        "region": "ie1",
        "enableRingingState": True,
        "fakeLocalDTMF": True,
        "audioConstraints": {"echoCancellation": False},
        "enableIceRestart": False,
        "closeProtection": "Leave?",
        "dscp": True,
        "codecPreferences": ["opus", "pcmu"],
        "allowIncomingWhileBusy": False,
        "appName": "ported",
        "appVersion": "1.0",
        "backoffMaxMs": 20_000,
        "disableAudioContextSounds": True,
        "forceAggressiveIceNomination": False,
        "maxAverageBitrate": 32_000,
        "rtcConfiguration": {"iceServers": []},
    }
    device = Device(make_token("alice"), options)  # 1.x: setup runs on construction
    log = EventLog(device, "ready")
    try:
        assert device.setup_task is not None and device.is_initialized
        await log.wait_for("ready")
        assert device.status() == "ready"
        v2 = device.device
        assert v2 is not None
        assert v2.options.log_level == "debug"
        assert v2.options.edge == "dublin"
        assert v2.options.rtc_constraints == {"audio": {"echoCancellation": False}}
        assert v2.options.codec_preferences == ("opus", "pcmu")
        assert v2.options.app_name == "ported"
        assert isinstance(device.audio, AudioHelper) and device.audio is v2.audio
        assert isinstance(device.region(), str) and device.region()
        warned = [r.getMessage() for r in caplog.records if r.name == "softphone.legacy"]
        for name in ("fakeLocalDTMF", "closeProtection", "dscp", "enableIceRestart"):
            assert sum(f"`{name}" in text for text in warned) == 1, (name, warned)
    finally:
        await device.destroy()


def test_constructor_with_a_token_needs_a_running_loop(make_token: TokenFactory) -> None:
    with pytest.raises(InvalidStateError):
        Device(make_token("alice"), {})


def test_option_translation() -> None:
    assert translate_options({"debug": False, "warnings": False}).options["log_level"] == "error"
    assert translate_options({"warnings": True}).options["log_level"] == "warn"
    assert translate_options({}).options == {}
    both = translate_options({"region": "au1", "edge": "tokyo"})
    assert both.options["edge"] == "tokyo" and both.warnings
    assert not translate_options({"enableRingingState": False}).enable_ringing_state
    split = translate_options({"sounds": {"incoming": "http://h/a.wav", "outgoing": "/x.wav"}})
    assert split.sound_urls == {"incoming": "http://h/a.wav"}
    assert split.options["sounds"] == {"outgoing": "/x.wav"}


@pytest.mark.parametrize(
    ("region", "edge"),
    [
        ("ie1", "dublin"),
        ("us1", "ashburn"),
        ("us2", "umatilla"),
        ("gll", "roaming"),
        ("au1", "sydney"),
        ("jp1", "tokyo"),
        ("sg1", "singapore"),
        ("de1", "frankfurt"),
        ("br1", "sao-paulo"),
        ("europe-ireland", "dublin"),
        ("us-virginia", "ashburn"),
        ("US1-IX", "ashburn-ix"),
    ],
)
def test_region_maps_to_edge_as_the_migration_table(region: str, edge: str) -> None:
    assert region_to_edge(region) == edge


async def test_unknown_options_and_regions_still_fail_loudly(
    gateway: Gateway, make_token: TokenFactory
) -> None:
    with pytest.raises(InvalidArgumentError, match="debug"):
        await Device().setup(make_token("alice"), {"chunderw": gateway.url, "debugg": True})
    with pytest.raises(InvalidArgumentError, match="region"):
        await Device().setup(make_token("alice"), {"chunderw": gateway.url, "region": "mars1"})


async def test_connection_sample_calls_and_handler_idioms(
    gateway: Gateway, make_token: TokenFactory, devices: list[Device]
) -> None:
    seen_constraints: list[dict[str, Any]] = []

    def get_user_media(constraints: dict[str, Any]) -> AudioSource:
        seen_constraints.append(constraints)
        return ToneSource([1000.0])

    bob, _ = await _ready(devices, make_token("bob"), {"chunderw": gateway.url}, answer=False)
    bob_conns: list[Connection] = []
    constraints = {"optional": [{"sourceId": "XXX"}]}
    # the 1.x sample: conn.accept(audioConstraints) answers with those constraints
    bob.incoming(lambda conn: (bob_conns.append(conn), conn.accept(constraints)))
    bob.device.update_options({"getUserMedia": get_user_media})  # type: ignore[union-attr]

    alice, _ = await _ready(devices, make_token("alice"), {"chunderw": gateway.url})
    connected: list[Connection] = []
    assert alice.connect(connected.append) is alice  # connect(handler) registers
    conn = await alice.connect({"To": "client:bob"}, {"autoGainControl": False})
    accepted: list[Connection] = []
    conn.accept(accepted.append)  # accept(handler) registers; the call is outgoing
    await eventually(lambda: connected == [conn] and accepted == [conn])
    await eventually(lambda: bob_conns and bob_conns[0].status() == "open")
    assert seen_constraints == [{"audio": constraints}]
    bob_conn = bob_conns[0]

    mutes: list[tuple[Any, ...]] = []
    conn.mute(lambda *args: mutes.append(args))  # mute(handler) registers, does not mute
    assert not conn.is_muted()
    conn.mute(True)
    assert conn.is_muted() and mutes == [(True, conn)]
    conn.unmute()
    assert not conn.is_muted() and mutes[-1] == (False, conn)

    volumes: list[tuple[Any, ...]] = []
    for register in (conn.cancel, conn.error, conn.volume):
        assert register(lambda *args: None) is conn
    conn.volume(lambda *args: volumes.append(args))
    conn.call.emit("volume", 0.5, 0.25)  # forwarded once the call emits it
    assert volumes == [(0.5, 0.25)]
    forwarded = EventLog(conn, "sample", "warning-cleared", "audio")
    conn.call.emit("sample", {"mos": 4.2})
    conn.call.emit("warning-cleared", "high-rtt")
    assert forwarded.names() == ["sample", "warning-cleared"]

    assert conn.get_local_stream() is not None and conn.get_remote_stream() is not None
    assert bob_conn.caller_info is None  # no SHAKEN/STIR on a client call
    await conn.post_feedback(5, "echo")
    assert conn.call.feedback[-1]["score"] == 5

    digits = EventLog(bob_conn.call, "dtmf")
    conn.send_digits("12w3")
    await digits.wait_for("dtmf", count=3)
    assert "".join(a[0] for a in digits.args("dtmf")) == "123"

    ended = EventLog(alice, "disconnect")
    conn.disconnect(lambda c: None)  # registers, does not hang up
    assert conn.status() == "open"
    conn.disconnect()
    (gone,) = await ended.wait_for("disconnect")
    assert gone is conn


async def test_ignore_emits_cancel_on_the_connection_and_the_device(
    gateway: Gateway, make_token: TokenFactory, devices: list[Device]
) -> None:
    bob, pending = await _ready(devices, make_token("bob"), {"chunderw": gateway.url}, answer=False)
    alice, _ = await _ready(devices, make_token("alice"), {"chunderw": gateway.url})
    device_log = EventLog(bob, "cancel")
    conn = await alice.connect({"To": "client:bob"})
    await eventually(lambda: len(pending) == 1)
    cancels: list[tuple[Any, ...]] = []
    pending[0].ignore(lambda *args: cancels.append(args))  # ignore(handler) registers
    assert pending[0].status() == "pending"
    pending[0].ignore()
    assert cancels == [()] and pending[0].status() == "closed"
    (cancelled,) = await device_log.wait_for("cancel")
    assert cancelled is pending[0]
    conn.disconnect()


@pytest.mark.parametrize("ringing_state", [True, False])
async def test_enable_ringing_state(
    gateway: Gateway, make_token: TokenFactory, devices: list[Device], ringing_state: bool
) -> None:
    await _ready(devices, make_token("bob"), {"chunderw": gateway.url}, answer=False)
    options = {"chunderw": gateway.url, "enableRingingState": ringing_state}
    alice, _ = await _ready(devices, make_token("alice"), options)
    conn = await alice.connect({"To": "client:bob"})
    log = EventLog(conn, "ringing")
    await eventually(lambda: conn.call.status() == "ringing")
    await asyncio.sleep(0.1)
    assert log.count("ringing") == (1 if ringing_state else 0)
    assert conn.status() == ("ringing" if ringing_state else "connecting")
    conn.disconnect()


async def test_call_errors_reach_the_device_error_with_the_connection(
    gateway: Gateway, make_token: TokenFactory, devices: list[Device]
) -> None:
    alice, _ = await _ready(devices, make_token("alice"), {"chunderw": gateway.url})
    errors = EventLog(alice, "error")
    conn = await alice.connect({"To": "client:nobody"})
    (error,) = await errors.wait_for("error")
    assert isinstance(error, TwilioError)
    assert error.connection is conn  # type: ignore[attr-defined]
    await asyncio.sleep(0.2)
    assert errors.count("error") == 1


def _wav_bytes(samples: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes((np.ones(samples, np.int16) * 1000).tobytes())
    return out.getvalue()


async def test_sounds_from_http_urls(
    gateway: Gateway, make_token: TokenFactory, devices: list[Device]
) -> None:
    async def ring(_: web.Request) -> web.Response:
        return web.Response(body=_wav_bytes(8000))

    app = web.Application()
    app.router.add_get("/ring.wav", ring)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        url = f"http://127.0.0.1:{port}/ring.wav"
        options = {"chunderw": gateway.url, "sounds": {"incoming": url}}
        device, _ = await _ready(devices, make_token("alice"), options)
        assert device.device is not None
        pcm = device.device.sounds.pcm("incoming")
        assert 0.9 * 48000 < len(pcm) < 1.1 * 48000 or 0.9 * 8000 < len(pcm) < 1.1 * 8000
        assert int(np.abs(pcm).max()) > 500  # the file's samples, not the synthesised ring
        missing = {"chunderw": gateway.url, "sounds": {"outgoing": url + ".missing"}}
        with pytest.raises(InvalidArgumentError, match="404"):
            await Device().setup(make_token("carol"), missing)
    finally:
        await runner.cleanup()


async def test_destroy_removes_the_facade_handlers_and_setup_can_run_again(
    gateway: Gateway, make_token: TokenFactory, devices: list[Device]
) -> None:
    await _ready(devices, make_token("bob"), {"chunderw": gateway.url})
    alice, _ = await _ready(devices, make_token("alice"), {"chunderw": gateway.url})
    log = EventLog(alice, "ready", "offline")
    conn = await alice.connect({"To": "client:bob"})
    await conn.call.wait_for("accept", timeout=10)
    call = conn.call
    await alice.destroy()
    assert log.names() == ["offline"] and alice.device is None and alice.status() == "offline"
    heard = EventLog(conn, "volume", "mute")
    call.emit("volume", 0.1, 0.1)
    call.emit("mute", True, call)
    assert heard.names() == []  # the Connection no longer listens to its Call
    await alice.setup(make_token("alice"), {"chunderw": gateway.url})
    await log.wait_for("ready")
    assert alice.status() == "ready"

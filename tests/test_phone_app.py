"""The interactive ``softphone phone``, driven through its Textual UI with Pilot.

Real calls through a real gateway: the UI dials, shows the call connect, mutes,
sends DTMF from the keyboard, hangs up and logs the call; incoming calls ring with
Accept/Reject; the device pickers follow hot-plugged devices and the choice really
changes what the far end hears. Audio is tones, files and memory (no sound card).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from calltools import Listener, recent, silent
from recorders import eventually
from rich.console import Console
from test_quality_impairment import RelayedPeerConnection
from textual.pilot import Pilot
from textual.widgets import DataTable, Select

from benchmarks.udp_relay import UdpRelay, fixed_delay
from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.memory import MemorySink
from softphone.core.device import Device
from softphone.gateway.server import Gateway
from softphone.media.peer_connection import PeerConnection
from softphone.phone.app import PhoneApp, meter
from softphone.phone.audio_specs import parse_input, parse_output
from softphone.phone.connection import open_phone
from softphone.phone.session import Outcome, Phase, PhoneSession
from softphone.phone.settings import PhoneSettings

TokenFactory = Callable[..., str]
DeviceFactory = Callable[..., Device]
SIZE = (110, 40)


def screen_text(app: PhoneApp) -> str:
    """The screen as plain text (``export_screenshot`` without the SVG)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


async def until(pilot: Pilot[int], predicate: Callable[[], object], timeout: float = 15) -> None:
    """Let the app run until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the UI did not get there in time"
        await pilot.pause(0.05)


@asynccontextmanager
async def phone_ui(
    settings: PhoneSettings, tmp_path: Path
) -> AsyncIterator[tuple[PhoneApp, Pilot[int], PhoneSession]]:
    """The phone's UI on ``settings``, registered; saves a screenshot at the end."""
    session = PhoneSession(time.time(), identity=settings.identity)
    async with open_phone(settings, session, time.time) as controller:
        app = PhoneApp(controller, rescan_portaudio=False)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: session.registration == "registered")
            yield app, pilot, session
            app.save_screenshot("phone.svg", path=str(tmp_path))


def alice_settings(gateway: Gateway, make_token: TokenFactory, tmp_path: Path) -> PhoneSettings:
    return PhoneSettings(
        url=gateway.url,
        token=make_token("alice"),
        input=parse_input("tone:440"),
        output=parse_output(f"file:{tmp_path / 'alice-heard.wav'}"),
    )


async def test_dial_mute_dtmf_hang_up_and_the_call_log(
    gateway: Gateway, make_token: TokenFactory, make_device: DeviceFactory, tmp_path: Path
) -> None:
    bob = Listener(make_device("bob"))
    digits: list[str] = []
    bob.device.on("incoming", lambda call: call.on("dtmf", digits.append))
    await bob.device.register()
    settings = alice_settings(gateway, make_token, tmp_path)
    async with phone_ui(settings, tmp_path) as (app, pilot, session):
        assert "alice: registered" in screen_text(app)
        await pilot.press(*"two words", "enter")  # not something one can call
        assert "cannot call 'two words'" in screen_text(app)
        assert session.phase is Phase.IDLE  # and the text stays, to be corrected

        await pilot.press("ctrl+u", *"bob", "enter")  # a bare name calls client:bob
        await until(pilot, lambda: session.phase is Phase.CONNECTED)
        assert "In call with client:bob" in screen_text(app)
        assert detect_tone(await recent(bob.heard, 0.5), 440)

        await pilot.press("m")
        await until(pilot, lambda: session.muted)
        assert "MUTED" in screen_text(app) and "(muted)" in screen_text(app)
        assert silent(await recent(bob.heard, 0.5))

        await pilot.press("1", "number_sign")
        await eventually(lambda: "".join(digits) == "1#")
        assert "DTMF sent 1#" in screen_text(app)

        await pilot.press("h")
        await until(pilot, lambda: session.phase is Phase.IDLE)
        await eventually(lambda: bob.calls[0].status() == "closed")
        table = app.query_one("#call-log", DataTable)
        assert table.row_count == 1
        row = [str(cell) for cell in table.get_row_at(0)]
        assert row[1:4] == ["out", "client:bob", "completed"]
        assert row[5] == "hung up by you"
        text = screen_text(app)
        assert "Ready: type a number or client:NAME" in text
        assert "call ended: outgoing call to client:bob: completed" in text
    assert (tmp_path / "phone.svg").read_text().startswith("<svg")


async def test_incoming_calls_ring_with_accept_and_reject(
    gateway: Gateway, make_token: TokenFactory, make_device: DeviceFactory, tmp_path: Path
) -> None:
    bob = make_device("bob")
    settings = alice_settings(gateway, make_token, tmp_path)
    async with phone_ui(settings, tmp_path) as (app, pilot, session):
        first = await bob.connect(params={"To": "client:alice"})
        await until(pilot, lambda: session.phase is Phase.INCOMING)
        text = screen_text(app)
        assert "Incoming call from client:bob" in text
        assert "Accept" in text and "Reject" in text and "a/Enter accept" in text
        await pilot.press("r")
        await until(pilot, lambda: session.phase is Phase.IDLE)
        await eventually(lambda: first.status() == "closed")
        assert session.log[-1].outcome is Outcome.REJECTED

        heard = MemorySink()
        second = await bob.connect(params={"To": "client:alice"})
        second.on("accept", lambda call: call.get_remote_stream().add_sink(heard))
        await until(pilot, lambda: session.phase is Phase.INCOMING)
        await pilot.click("#accept")
        await until(pilot, lambda: session.phase is Phase.CONNECTED)
        assert detect_tone(await recent(heard, 0.5), 440)  # bob hears alice
        assert "Accept" not in screen_text(app) and "Hang up" in screen_text(app)
        second.disconnect()
        await until(pilot, lambda: session.phase is Phase.IDLE)
        table = app.query_one("#call-log", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)][1:4] for i in range(table.row_count)]
        assert rows == [
            ["in", "client:bob", "completed"],
            ["in", "client:bob", "rejected"],
        ]


async def test_device_pickers_follow_hot_plug_and_change_what_is_heard(
    tmp_path: Path, loopback_media: None
) -> None:
    settings = PhoneSettings(input=parse_input("tone:440"), output=parse_output("null"))
    async with phone_ui(settings, tmp_path) as (app, pilot, session):  # local dev gateway
        assert session.notes[0].text.startswith("local dev gateway listening on ws://127.0.0.1:")
        plugins = app.controller.device.plugins
        assert app.query_one("#input-device", Select).value == "tone:440"

        plugins.tone.add_tone("880", [880.0])  # "plugged in" while the phone runs
        ears = MemorySink()
        plugins.memory.add_output("ears", ears)
        await until(pilot, lambda: any(c.device_id == "memory:ears" for c in session.outputs))
        text = screen_text(app)
        assert "input device added: 880 Hz (tone:880)" in text
        assert "output device added: ears (memory:ears)" in text

        await pilot.press("f2", "enter")  # open the input picker: every input is listed
        assert "Silence (null:silence)" in screen_text(app)
        await pilot.press(*"880", "enter")  # type to find the new tone, choose it
        await pilot.press("f3", "enter", *"ears", "enter")
        await until(
            pilot, lambda: (session.input_id, session.output_id) == ("tone:880", "memory:ears")
        )
        assert app.query_one("#input-device", Select).value == "tone:880"
        assert "input device: 880 Hz (tone:880)" in screen_text(app)

        app.query_one("#dial").focus()
        await pilot.press(*"echo", "enter")
        await until(pilot, lambda: session.phase is Phase.CONNECTED)
        assert detect_tone(await recent(ears, 0.5), 880)  # the echo of the chosen input
        await until(pilot, lambda: session.output_level > 0.05)
        assert f"out {meter(session.output_level)}"[:8] in screen_text(app)  # a live meter

        plugins.memory.remove("memory:ears")  # unplugged during the call
        await until(pilot, lambda: session.output_id == "default")
        assert "output device removed: ears (memory:ears)" in screen_text(app)
        assert session.phase is Phase.CONNECTED  # the call goes on
        await pilot.press("h")
        await until(pilot, lambda: session.phase is Phase.IDLE)


async def test_quality_warnings_show_while_the_network_is_bad(
    gateway: Gateway, make_token: TokenFactory, tmp_path: Path
) -> None:
    relay = UdpRelay()  # 250 ms each way between the phone and the gateway: high rtt
    relay.a_to_b.policy = relay.b_to_a.policy = fixed_delay(250)

    def relayed(config: Mapping[str, Any]) -> PeerConnection:
        return RelayedPeerConnection(relay, ice_servers=list(config.get("iceServers") or []))

    settings = alice_settings(gateway, make_token, tmp_path)
    try:
        async with phone_ui(settings, tmp_path) as (app, pilot, session):
            app.controller.device.update_options({"rtc_peer_connection": relayed})
            await pilot.press(*"echo", "enter")
            await until(pilot, lambda: "high-rtt" in session.warnings, timeout=40)
            text = screen_text(app)
            assert "⚠ high-rtt: high round-trip time (delay)" in text
            assert "quality warning: high-rtt" in text
            await pilot.press("h")
            await until(pilot, lambda: session.phase is Phase.IDLE)
            assert "high-rtt" in session.log[-1].warnings
            assert "⚠" not in screen_text(app)  # the call is over: no warning shown
    finally:
        relay.close()


def test_the_interactive_phone_without_textual_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "textual").mkdir()
    (tmp_path / "textual" / "__init__.py").write_text("raise ImportError('no textual here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    result = subprocess.run(
        [sys.executable, "-m", "softphone.cli", "phone", "--input", "null", "--output", "null"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("softphone phone: the interactive phone needs Textual: ")
    assert "pip install 'softphone[phone]'" in result.stderr


@pytest.mark.pure
def test_meters_scale_and_clip() -> None:
    assert meter(0.0, 10) == "░" * 10
    assert meter(0.5, 10) == "█" * 5 + "░" * 5
    assert meter(2.0, 4) == "████"

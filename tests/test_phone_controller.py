"""``PhoneController``: the phone's Device events reach its session, on a real gateway."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from recorders import eventually

from softphone.audio_backends import portaudio
from softphone.audio_backends.devices import AUDIO_INPUT, MediaDeviceInfo
from softphone.core.device import Device
from softphone.gateway.server import Gateway
from softphone.phone import controller as controller_module
from softphone.phone.controller import PhoneController
from softphone.phone.session import Phase, PhoneSession

TokenFactory = Callable[..., str]
DeviceFactory = Callable[..., Device]


async def test_a_token_about_to_expire_is_renewed_when_the_phone_can_mint_one(
    make_device: DeviceFactory, make_token: TokenFactory
) -> None:
    # tokenWillExpire fires token_refresh_ms (10 s) before expiry: at once for a 11 s token
    device = make_device("alice", token=make_token("alice", ttl=11))
    minted: list[str | None] = []

    def renew(identity: str | None) -> str:
        minted.append(identity)
        return make_token("alice", ttl=3600)

    session = PhoneSession(time.time())
    controller = PhoneController(device, session, renew_token=renew)
    assert await controller.register()
    await eventually(lambda: "access token renewed" in [n.text for n in session.notes])
    assert minted == ["alice"] and device.token != make_token("alice", ttl=11)


async def test_a_token_that_cannot_be_renewed_is_announced(
    make_device: DeviceFactory, make_token: TokenFactory
) -> None:
    device = make_device("alice", token=make_token("alice", ttl=11))
    session = PhoneSession(time.time())
    controller = PhoneController(device, session)
    assert await controller.register()
    expected = "the access token expires soon: restart with a fresh --token"
    await eventually(lambda: expected in [n.text for n in session.notes])


async def test_a_second_call_while_one_rings_is_left_to_ring_elsewhere(
    gateway: Gateway, make_device: DeviceFactory
) -> None:
    alice = make_device("alice")
    session = PhoneSession(time.time())
    controller = PhoneController(alice, session)
    assert await controller.register()
    bob, carol = make_device("bob"), make_device("carol")
    first = await bob.connect(params={"To": "client:alice"})
    await eventually(lambda: session.phase is Phase.INCOMING)
    second = await carol.connect(params={"To": "client:alice"})
    await eventually(lambda: "ignored a second call from client:carol" in session.notes[-1].text)
    assert session.current is not None and session.current.peer == "client:bob"
    controller.accept()
    await eventually(lambda: session.phase is Phase.CONNECTED)
    await eventually(lambda: first.status() == "open")
    assert second.status() == "ringing"  # still ringing: alice's other devices may take it
    second.disconnect()
    controller.hangup()
    await controller.wait_ended()
    assert [r.peer for r in session.log] == ["client:bob"]


async def test_sound_cards_plugged_in_later_appear_after_a_portaudio_rescan(
    make_device: DeviceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PortAudio lists devices once, at initialisation; only a re-scan shows a new card.
    # No card can be plugged in here, so PortAudio's device list is played by a stand-in.
    plugged: list[MediaDeviceInfo] = []
    listed: list[MediaDeviceInfo] = []

    def rescan() -> bool:
        listed[:] = plugged
        return True

    monkeypatch.setattr(portaudio, "is_available", lambda: True)
    monkeypatch.setattr(portaudio, "rescan", rescan)
    monkeypatch.setattr(portaudio, "list_devices", lambda: list(listed))
    monkeypatch.setattr(controller_module, "RESCAN_INTERVAL_S", 0.05)
    session = PhoneSession(time.time())
    controller = PhoneController(make_device("alice"), session)
    controller.watch_devices()
    try:
        headset = MediaDeviceInfo("portaudio:ALSA:USB headset", AUDIO_INPUT, "USB headset")
        plugged.append(headset)
        await eventually(lambda: any(c.device_id == headset.device_id for c in session.inputs))
        added = "input device added: USB headset (portaudio:ALSA:USB headset)"
        assert added in [n.text for n in session.notes]
        plugged.clear()
        await eventually(lambda: all(c.device_id != headset.device_id for c in session.inputs))
    finally:
        await controller.close()

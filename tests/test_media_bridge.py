"""The gateway's media bridge on real calls: forward when codecs match, transcode once if not.

Device -> gateway -> Device on 127.0.0.1 with real aiortc media; each side
sends its own tone and must hear only the other's. The bridge's counters tell
whether a payload was forwarded untouched or decoded and re-encoded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from recorders import eventually

from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.gateway.calls import BridgedCall
from softphone.gateway.server import Gateway
from softphone.media.peer_connection import PeerConnection

ALICE_HZ = 1000.0
BOB_HZ = 1500.0

DeviceFactory = Callable[..., Device]


async def _recent(sink: MemorySink, seconds: float = 0.6) -> np.ndarray[Any, Any]:
    target = len(sink.pcm()) + int(SAMPLE_RATE * seconds)
    await eventually(lambda: len(sink.pcm()) >= target)
    return sink.pcm()[-int(SAMPLE_RATE * seconds) :]


def _only(codec: str) -> Callable[[Any], PeerConnection]:
    """A ``rtc_peer_connection`` option: a device that speaks nothing but ``codec``."""
    return lambda config: PeerConnection(
        ice_servers=[], codec_preferences=(codec,), codecs=(codec,)
    )


async def _call(
    make_device: DeviceFactory, gateway: Gateway, alice_codec: str, bob_codec: str
) -> tuple[Call, MemorySink, MemorySink, BridgedCall]:
    """Alice calls bob, each speaking one codec only; returns alice's call, what each
    hears and the gateway's call."""
    alice = make_device(
        "alice", file_input_stream=ToneSource([ALICE_HZ]), rtc_peer_connection=_only(alice_codec)
    )
    bob = make_device(
        "bob", file_input_stream=ToneSource([BOB_HZ]), rtc_peer_connection=_only(bob_codec)
    )
    bob_hears, alice_hears = MemorySink(), MemorySink()

    def on_incoming(call: Call) -> None:
        call.on("accept", lambda c: c.get_remote_stream().add_sink(bob_hears))
        call.accept()

    bob.on("incoming", on_incoming)
    await bob.register()
    call = await alice.connect(params={"To": "client:bob"})
    await call.wait_for("accept", timeout=10)
    call.get_remote_stream().add_sink(alice_hears)
    (bridged,) = gateway.calls.calls
    assert bridged.bridge is not None
    return call, alice_hears, bob_hears, bridged


async def _assert_two_way_audio(alice_hears: MemorySink, bob_hears: MemorySink) -> None:
    heard_by_bob = await _recent(bob_hears)
    heard_by_alice = await _recent(alice_hears)
    assert detect_tone(heard_by_bob, ALICE_HZ) and not detect_tone(heard_by_bob, BOB_HZ)
    assert detect_tone(heard_by_alice, BOB_HZ) and not detect_tone(heard_by_alice, ALICE_HZ)


@pytest.mark.parametrize("codec", ["opus", "pcmu"])
async def test_same_codec_legs_are_forwarded_without_decoding(
    make_device: DeviceFactory, gateway: Gateway, codec: str
) -> None:
    call, alice_hears, bob_hears, bridged = await _call(make_device, gateway, codec, codec)
    await _assert_two_way_audio(alice_hears, bob_hears)
    bridge = bridged.bridge
    assert bridge is not None and bridge.mode == "forward"
    for direction in bridge.stats():
        assert direction.forwarded > 25 and direction.transcoded_in == 0
    assert call.codec.lower() == codec
    # The gateway's legs never decode: their receive path played nothing.
    for leg in (bridged.caller, bridged.connected):
        assert leg is not None and leg.pc is not None
        stats = await leg.pc.get_stats()
        assert stats["totalSamplesReceived"] == 0 and stats["packetsReceived"] > 25
    call.disconnect()
    await eventually(lambda: bridge.closed)


async def test_mixed_codec_legs_are_transcoded_once(
    make_device: DeviceFactory, gateway: Gateway
) -> None:
    call, alice_hears, bob_hears, bridged = await _call(make_device, gateway, "opus", "pcmu")
    await _assert_two_way_audio(alice_hears, bob_hears)
    bridge = bridged.bridge
    assert bridge is not None and bridge.mode == "transcode"
    assert call.codec.lower() == "opus"
    assert bridged.connected is not None and bridged.connected.pc is not None
    assert (bridged.connected.pc.codec or "").lower() == "pcmu"
    for direction in bridge.stats():
        assert direction.forwarded == 0
        assert direction.transcoded_in > 25 and direction.transcoded_out > 25
    call.disconnect()


async def test_echo_forwards_the_callers_own_audio(
    make_device: DeviceFactory, gateway: Gateway
) -> None:
    alice = make_device("alice", file_input_stream=ToneSource([ALICE_HZ]))
    call = await alice.connect(params={"To": "echo"})
    await call.wait_for("accept", timeout=10)
    heard = MemorySink()
    call.get_remote_stream().add_sink(heard)
    assert detect_tone(await _recent(heard), ALICE_HZ)
    (bridged,) = gateway.calls.calls
    assert bridged.bridge is not None and bridged.bridge.mode == "forward"
    (direction,) = bridged.bridge.stats()
    assert direction.forwarded > 25
    call.disconnect()


async def test_each_leg_gets_the_codec_its_peer_asked_for(
    make_device: DeviceFactory, gateway: Gateway
) -> None:
    """Alice prefers Opus, bob PCMU (both accept both): each hears what it asked for."""
    alice = make_device(
        "alice", file_input_stream=ToneSource([ALICE_HZ]), codec_preferences=["opus", "pcmu"]
    )
    bob = make_device(
        "bob", file_input_stream=ToneSource([BOB_HZ]), codec_preferences=["pcmu", "opus"]
    )
    bob_hears, alice_hears = MemorySink(), MemorySink()

    def on_incoming(incoming: Call) -> None:
        incoming.on("accept", lambda c: c.get_remote_stream().add_sink(bob_hears))
        incoming.accept()

    bob.on("incoming", on_incoming)
    await bob.register()
    call = await alice.connect(params={"To": "client:bob"})
    await call.wait_for("accept", timeout=10)
    call.get_remote_stream().add_sink(alice_hears)
    await _assert_two_way_audio(alice_hears, bob_hears)
    (bridged,) = gateway.calls.calls
    assert bridged.bridge is not None and bridged.bridge.mode == "transcode"
    to_bob, to_alice = bridged.bridge.stats()
    # Alice's Opus is the bob leg's first codec: forwarded. Bob's PCMU is neither what
    # alice sends nor her leg's first codec: transcoded to Opus.
    assert to_bob.forwarded > 25 and to_bob.transcoded_in == 0
    assert to_alice.transcoded_out > 25 and to_alice.forwarded == 0
    call.disconnect()

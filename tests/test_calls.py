"""Issue 3 on a real gateway with real aiortc media: every call flow, audio both ways."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from calltools import Listener
from recorders import EventLog, eventually

from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import detect_tone, rms_dbfs
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.core.device import Device
from softphone.core.errors import InvalidArgumentError, InvalidStateError
from softphone.gateway.server import Gateway
from softphone.media.peer_connection import PeerConnection

ALICE_HZ = 1000.0
BOB_HZ = 1500.0

DeviceFactory = Callable[..., Device]


async def _pair(make_device: DeviceFactory, **options: Any) -> tuple[Device, Device, Listener]:
    alice = make_device("alice", file_input_stream=ToneSource([ALICE_HZ]), **options)
    bob = make_device("bob", file_input_stream=ToneSource([BOB_HZ]), **options)
    answerer = Listener(bob)
    await bob.register()
    return alice, bob, answerer


async def _recent(sink: MemorySink, seconds: float = 0.6) -> np.ndarray:
    await eventually(lambda: len(sink.pcm()) > SAMPLE_RATE * seconds)
    return sink.pcm()[-int(SAMPLE_RATE * seconds) :]


@pytest.mark.parametrize("codec", ["opus", "pcmu"])
async def test_outgoing_call_carries_audio_both_ways(
    make_device: DeviceFactory, codec: str, gateway: Gateway
) -> None:
    prefs = [codec, "pcmu" if codec == "opus" else "opus"]
    alice, bob, answerer = await _pair(make_device, codec_preferences=prefs)
    call = await alice.connect(params={"To": "client:bob", "greeting": "hi there"})
    log = EventLog(call, "ringing", "accept", "disconnect", "error")
    assert call.status() in ("connecting", "ringing") and alice.is_busy
    await log.wait_for("accept")
    heard_by_alice = MemorySink()
    call.get_remote_stream().add_sink(heard_by_alice)
    assert log.names() == ["ringing", "accept"] and log.args("ringing") == [(False,)]
    assert call.status() == "open"
    assert call.codec.lower() == codec
    assert call.parameters["CallSid"].startswith("CA")

    bob_call = await answerer.wait_call()
    assert bob_call.direction == "INCOMING" and bob_call.status() == "open"
    assert bob_call.parameters["From"] == "client:alice"
    assert bob_call.parameters["To"] == "client:bob"
    assert bob_call.parameters["AccountSid"].startswith("AC")
    assert bob_call.custom_parameters == {"greeting": "hi there"}
    assert bob.is_busy and bob.calls == []

    # real audio both ways: each side hears the other's tone, not its own
    bob_hears = await _recent(answerer.heard)
    alice_hears = await _recent(heard_by_alice)
    assert detect_tone(bob_hears, ALICE_HZ) and not detect_tone(bob_hears, BOB_HZ)
    assert detect_tone(alice_hears, BOB_HZ) and not detect_tone(alice_hears, ALICE_HZ)

    bob_log = EventLog(bob_call, "disconnect")
    call.disconnect()
    assert call.status() == "closed" and log.count("disconnect") == 1
    await bob_log.wait_for("disconnect")
    assert bob_call.status() == "closed"
    await eventually(lambda: gateway.calls.records and gateway.calls.records[-1]["answered"])
    assert not alice.is_busy and not bob.is_busy


async def test_callee_hangs_up(make_device: DeviceFactory) -> None:
    alice, _, answerer = await _pair(make_device)
    call = await alice.connect(params={"To": "client:bob"})
    log = EventLog(call, "accept", "disconnect", "error")
    await log.wait_for("accept")
    bob_call = await answerer.wait_call()
    bob_call.disconnect()
    await log.wait_for("disconnect")
    assert log.count("error") == 0 and call.status() == "closed"


async def test_echo_app_plays_the_caller_back(make_device: DeviceFactory) -> None:
    alice = make_device("alice", file_input_stream=ToneSource([ALICE_HZ]))
    call = await alice.connect(params={"To": "echo"})
    await call.wait_for("accept", timeout=10)
    heard = MemorySink()
    call.get_remote_stream().add_sink(heard)
    assert detect_tone(await _recent(heard), ALICE_HZ)
    call.disconnect()


async def test_reject_ends_the_call_for_every_device_of_the_identity(
    make_device: DeviceFactory,
) -> None:
    alice = make_device("alice", file_input_stream=ToneSource([ALICE_HZ]))
    bob1 = Listener(make_device("bob"), accept=False)
    bob2 = Listener(make_device("bob"), accept=False)
    await asyncio.gather(bob1.device.register(), bob2.device.register())
    call = await alice.connect(params={"To": "client:bob"})
    log = EventLog(call, "error", "disconnect")
    first, second = await bob1.wait_call(), await bob2.wait_call()
    second_log = EventLog(second, "cancel")
    first_log = EventLog(first, "reject")
    first.reject()
    assert first.status() == "closed" and first_log.count("reject") == 1
    await second_log.wait_for("cancel")
    assert second.status() == "closed"
    await log.wait_for("disconnect")
    assert log.names() == ["error", "disconnect"]
    assert log.args("error")[0][0].code == 31005  # precision off: generic wrapper
    assert bob1.device.calls == [] and bob2.device.calls == []


async def test_reject_with_precise_errors_reports_decline(make_device: DeviceFactory) -> None:
    alice = make_device("alice", enable_improved_signaling_error_precision=True)
    bob = Listener(make_device("bob"), accept=False)
    await bob.device.register()
    call = await alice.connect(params={"To": "client:bob"})
    log = EventLog(call, "error", "disconnect")
    (await bob.wait_call()).reject()
    (error,) = await log.wait_for("error")
    assert error.code == 31603 and error.name == "Decline"


async def test_ignore_lets_the_other_devices_ring(make_device: DeviceFactory) -> None:
    alice = make_device("alice", file_input_stream=ToneSource([ALICE_HZ]))
    bob1 = Listener(make_device("bob"), accept=False)
    bob2 = Listener(make_device("bob", file_input_stream=ToneSource([BOB_HZ])), accept=False)
    await asyncio.gather(bob1.device.register(), bob2.device.register())
    call = await alice.connect(params={"To": "client:bob"})
    first, second = await bob1.wait_call(), await bob2.wait_call()
    ignored = EventLog(first, "cancel", "reject", "disconnect")
    first.ignore()
    assert first.status() == "closed" and ignored.names() == []
    await asyncio.sleep(0.3)
    assert second.status() == "pending" and call.status() == "ringing"
    second.accept()
    await call.wait_for("accept", timeout=10)
    await ignored.wait_for("cancel")  # the ignored call learns it was answered elsewhere
    heard = MemorySink()
    call.get_remote_stream().add_sink(heard)
    assert detect_tone(await _recent(heard), BOB_HZ)
    call.disconnect()


async def test_caller_gives_up_before_answer_cancels_the_callee(
    make_device: DeviceFactory,
) -> None:
    alice = make_device("alice")
    bob = Listener(make_device("bob"), accept=False)
    await bob.device.register()
    bob_log = EventLog(bob.device, "incoming")
    call = await alice.connect(params={"To": "client:bob"})
    await call.wait_for("ringing", timeout=10)
    pending = await bob.wait_call()
    assert bob.device.calls == [pending]
    assert bob.device.sounds.is_playing("incoming")
    log = EventLog(pending, "cancel")
    call.disconnect()
    await log.wait_for("cancel")
    assert pending.status() == "closed" and bob.device.calls == []
    assert not bob.device.sounds.is_playing("incoming")
    assert bob_log.count("incoming") == 1


async def test_unregistered_callee_is_unavailable(make_device: DeviceFactory) -> None:
    alice = make_device("alice", enable_improved_signaling_error_precision=True)
    call = await alice.connect(params={"To": "client:nobody"})
    log = EventLog(call, "error", "disconnect")
    (error,) = await log.wait_for("error")
    assert error.code == 31480
    await log.wait_for("disconnect")


@pytest.mark.parametrize(("precise", "code"), [(False, 31005), (True, 31103)])
async def test_params_over_800_bytes_are_rejected(
    make_device: DeviceFactory, precise: bool, code: int
) -> None:
    alice = make_device("alice", enable_improved_signaling_error_precision=precise)
    call = await alice.connect(params={"To": "client:bob", "blob": "x" * 800})
    log = EventLog(call, "error", "disconnect")
    (error,) = await log.wait_for("error")
    assert error.code == code
    await log.wait_for("disconnect")
    assert call.status() == "closed" and not alice.is_busy


@pytest.mark.parametrize("rfc4733", [True, False], ids=["rfc4733", "signaling-dtmf"])
async def test_digits_arrive_at_the_far_end(
    make_device: DeviceFactory, rfc4733: bool, gateway: Gateway
) -> None:
    options: dict[str, Any] = {}
    if not rfc4733:  # a media stack without telephone-event: the `dtmf` frame is used
        options["rtc_peer_connection"] = lambda config: PeerConnection(ice_servers=[], dtmf=False)
    alice = make_device("alice", **options)
    bob = Listener(make_device("bob"))
    await bob.device.register()
    call = await alice.connect(params={"To": "client:bob"})
    await call.wait_for("accept", timeout=10)
    assert call.peer_connection is not None
    assert call.peer_connection.can_insert_dtmf is rfc4733
    bob_call = await bob.wait_call()
    received = EventLog(bob_call, "dtmf")
    with pytest.raises(InvalidArgumentError):
        call.send_digits("12a")
    call.send_digits("12w#*9")
    await received.wait_for("dtmf", count=5, timeout=10)
    assert "".join(a[0] for a in received.args("dtmf")) == "12#*9"
    assert alice.sounds.played.count("dtmf1") == 1 and "dtmfh" in alice.sounds.played
    call.disconnect()
    await eventually(lambda: gateway.calls.records != [])
    assert gateway.calls.records[-1]["digits"] == "12#*9"


async def test_mute_sends_silence_and_keeps_rtp_flowing(make_device: DeviceFactory) -> None:
    alice, _, answerer = await _pair(make_device)
    call = await alice.connect(params={"To": "client:bob"})
    log = EventLog(call, "accept", "mute")
    await log.wait_for("accept")
    await _recent(answerer.heard)
    stats_before = await call.peer_connection.get_stats()  # type: ignore[union-attr]
    call.mute()
    assert call.is_muted() and log.args("mute") == [(True, call)]
    call.mute(True)  # no change, no event
    # the last half second the answerer heard is silent: >= 25 packets sent since the mute
    await eventually(lambda: rms_dbfs(answerer.heard.pcm()[-SAMPLE_RATE // 2 :]) < -60)
    stats_after = await call.peer_connection.get_stats()  # type: ignore[union-attr]
    assert stats_after["packetsSent"] > stats_before["packetsSent"] + 20
    call.mute(False)
    await eventually(lambda: detect_tone(answerer.heard.pcm()[-SAMPLE_RATE // 2 :], ALICE_HZ))
    assert log.args("mute")[-1] == (False, call)
    call.disconnect()


async def test_user_messages_are_acked_and_delivered(make_device: DeviceFactory) -> None:
    alice, _, answerer = await _pair(make_device)
    call = await alice.connect(params={"To": "client:bob"})
    await call.wait_for("accept", timeout=10)
    bob_call = await answerer.wait_call()
    sent, received = EventLog(call, "messageSent", "error"), EventLog(bob_call, "messageReceived")
    sid = call.send_message({"content": {"hello": "bob"}, "message_type": "user-defined-message"})
    assert sid.startswith("KX") and len(sid) == 34
    (event,) = await sent.wait_for("messageSent")
    assert event["voiceEventSid"] == sid and event["content"] == {"hello": "bob"}
    (got,) = await received.wait_for("messageReceived")
    assert got == {
        "content": {"hello": "bob"},
        "contentType": "application/json",
        "messageType": "user-defined-message",
        "voiceEventSid": sid,
    }
    call.send_message(content="x", message_type="something-else")
    (error,) = await sent.wait_for("error")
    assert error.code == 31210
    with pytest.raises(InvalidArgumentError):
        call.send_message(content=None, message_type="user-defined-message")
    call.disconnect()


async def test_busy_device_drops_invites_unless_allowed(make_device: DeviceFactory) -> None:
    alice, bob, answerer = await _pair(make_device)
    call = await alice.connect(params={"To": "client:bob"})
    await call.wait_for("accept", timeout=10)
    carol = make_device("carol")
    carol_call = await carol.connect(params={"To": "client:bob"})
    await carol_call.wait_for("ringing", timeout=10)
    await asyncio.sleep(0.3)
    assert len(answerer.calls) == 1 and bob.calls == []  # dropped silently
    carol_call.disconnect()

    bob.update_options({"allowIncomingWhileBusy": True})
    answerer.auto_accept = False
    dave = make_device("dave")
    dave_call = await dave.connect(params={"To": "client:bob"})
    second = await answerer.wait_call(2)
    assert bob.calls == [second] and not bob.sounds.is_playing("incoming")
    first_log = EventLog(answerer.calls[0], "disconnect")
    second.accept()  # accepting the second call ends the first
    await dave_call.wait_for("accept", timeout=10)
    await first_log.wait_for("disconnect")
    assert bob.active_call is second
    dave_call.disconnect()


async def test_connect_while_busy_and_disconnect_all(make_device: DeviceFactory) -> None:
    alice, _, answerer = await _pair(make_device)
    call = await alice.connect(params={"To": "client:bob"})
    with pytest.raises(InvalidStateError, match="A Call is already active"):
        await alice.connect(params={"To": "client:bob"})
    await call.wait_for("accept", timeout=10)
    bob_call = await answerer.wait_call()
    log = EventLog(bob_call, "disconnect")
    answerer.device.disconnect_all()
    await log.wait_for("disconnect")
    await eventually(lambda: call.status() == "closed")


async def test_sounds_play_through_the_speaker_and_can_be_disabled(
    make_device: DeviceFactory, tmp_path: Any
) -> None:
    from softphone.audio_backends import FileSink

    custom = tmp_path / "disconnect.wav"
    sink = FileSink(custom)
    t = np.arange(SAMPLE_RATE // 5) / SAMPLE_RATE
    sink.write((np.sin(2 * np.pi * 2500 * t) * 12000).astype(np.int16))
    sink.close()
    speaker = MemorySink()
    alice = make_device("alice", speaker=speaker, sounds={"disconnect": str(custom)})
    bob_speaker = MemorySink()
    bob = Listener(
        make_device("bob", speaker=bob_speaker, file_input_stream=ToneSource([BOB_HZ])),
        accept=False,
    )
    await bob.device.register()
    call = await alice.connect(params={"To": "client:bob"})
    pending = await bob.wait_call()
    await eventually(lambda: len(bob_speaker.pcm()) > SAMPLE_RATE // 2)
    assert detect_tone(bob_speaker.pcm()[: SAMPLE_RATE // 2], 440) or detect_tone(
        bob_speaker.pcm()[: SAMPLE_RATE // 2], 480
    )  # the ringtone reached bob's speaker
    pending.accept()
    await call.wait_for("accept", timeout=10)
    assert alice.sounds.played == ["outgoing"]
    assert "outgoing" not in bob.device.sounds.played  # only outgoing calls play it
    await eventually(lambda: detect_tone(speaker.pcm()[-SAMPLE_RATE // 2 :], BOB_HZ))
    # the speaker carries the call: bob's tone, as a person would hear it
    before = len(speaker.pcm())
    call.disconnect()
    assert alice.sounds.played == ["outgoing", "disconnect"]
    await eventually(lambda: len(speaker.pcm()) >= before + SAMPLE_RATE // 5)
    await asyncio.sleep(0.1)
    tail = speaker.pcm()[before:]
    assert detect_tone(tail, 2500) and not detect_tone(tail, BOB_HZ)  # the custom file

    assert alice.audio is not None
    alice.audio.outgoing(False)
    alice.audio.disconnect(False)
    await eventually(lambda: not bob.device.is_busy)
    second = await alice.connect(params={"To": "client:bob"})
    (await bob.wait_call(2)).accept()
    await second.wait_for("accept", timeout=10)
    second.disconnect()
    assert alice.sounds.played == ["outgoing", "disconnect"]  # nothing new


async def test_max_average_bitrate_changes_the_opus_encoder(make_device: DeviceFactory) -> None:
    async def payload_kbps(**options: Any) -> float:
        alice = make_device(
            "alice",
            codec_preferences=["opus"],
            file_input_stream=ToneSource([440, 1200, 3100]),
            **options,
        )
        call = await alice.connect(params={"To": "echo"})
        await call.wait_for("accept", timeout=10)
        pc = call.peer_connection
        assert pc is not None
        first = await pc.get_stats()
        await asyncio.sleep(2.0)  # the measurement window
        second = await pc.get_stats()
        call.disconnect()
        await alice.destroy()
        return (second["bytesSent"] - first["bytesSent"]) * 8 / 2.0 / 1000

    default = await payload_kbps()
    capped = await payload_kbps(max_average_bitrate=12000)
    assert capped < default * 0.5, (default, capped)
    assert capped < 20


async def test_an_app_source_serves_call_after_call(make_device: DeviceFactory) -> None:
    """The app's own ``file_input_stream`` is not closed when a call ends (soak found it)."""
    alice = make_device("alice", file_input_stream=ToneSource([ALICE_HZ]))
    for _ in range(2):
        call = await alice.connect(params={"To": "echo"})
        await call.wait_for("accept", timeout=10)
        heard = MemorySink()
        call.get_remote_stream().add_sink(heard)
        assert detect_tone(await _recent(heard), ALICE_HZ)
        call.disconnect()

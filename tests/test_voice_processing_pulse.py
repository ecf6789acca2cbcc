"""Echo cancellation through a real speaker-to-microphone loop: PulseAudio via PortAudio.

A private PulseAudio daemon (``benchmarks.pulse_loop``) has one null sink as
the default output and its monitor as the default input: what alice's
PortAudio speaker plays is exactly what her PortAudio microphone captures,
after the real buffering of PortAudio, ALSA's pulse plugin and the daemon
(about half a second here). Bob talks through a real call; with alice's
default voice processing (on for a real device) he must hear his own speech
at least 25 dB down, and with it switched off mid-call, at full level.
Without PulseAudio, ALSA's pulse plugin or PortAudio the test skips naming
what to install.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from calltools import Listener, open_call
from recorders import eventually

from benchmarks.pulse_loop import PulseUnavailableError, pulse_loop
from benchmarks.voice import DEFAULT, FAR_LEVEL_DBFS, FAR_TEXT, at_level, energy_db, espeak
from softphone.audio_backends import MemorySource, portaudio
from softphone.audio_backends.base import SAMPLE_RATE, Pcm
from softphone.core.device import Device

pytest.importorskip("livekit", reason="voice processing needs the voice extra")

DeviceFactory = Callable[..., Device]


@pytest.fixture
def pulse(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    try:
        with pulse_loop(monkeypatch.setenv):
            yield
    except PulseUnavailableError as exc:
        pytest.skip(str(exc))


def _per_second_db(speech: Pcm, heard: Pcm) -> list[float]:
    """How far below its own speech the far end hears itself, second by second."""
    own = energy_db(speech) - 10 * np.log10(len(speech) / SAMPLE_RATE)
    return [
        round(float(own - energy_db(heard[i : i + SAMPLE_RATE])), 1)
        for i in range(0, len(heard) - SAMPLE_RATE + 1, SAMPLE_RATE)
    ]


async def _heard(bob: Listener, seconds: float) -> Pcm:
    start = bob.heard.samples_written
    await eventually(lambda: bob.heard.samples_written - start >= seconds * SAMPLE_RATE, 20)
    pcm: Pcm = bob.heard.pcm()[-int(seconds * SAMPLE_RATE) :]
    return pcm


async def test_far_end_hears_its_echo_25_db_down_through_a_pulseaudio_loop(
    pulse: None, make_device: DeviceFactory
) -> None:
    speech = np.clip(at_level(espeak(FAR_TEXT), FAR_LEVEL_DBFS), -32768, 32767).astype(np.int16)
    bob = Listener(make_device("bob", file_input_stream=MemorySource(speech, loop=True)))
    await bob.device.register()
    alice = make_device("alice")
    assert alice.audio is not None
    voice = alice.audio.voice_processing
    await alice.audio.set_input_device(portaudio.DEFAULT_DEVICE_ID)
    await alice.audio.speaker_devices.set([portaudio.DEFAULT_DEVICE_ID])
    call, _ = await open_call(alice, bob)
    try:
        await asyncio.sleep(10.0)  # the canceller converges while bob talks
        (stream,) = voice.streams
        assert stream.real_device and stream.active and stream.settings == DEFAULT
        # The typical second, over 10 s: a loop starved of CPU (PortAudio's callbacks
        # late, buffers under- or overrun) changes the echo path, and the canceller
        # leaks for one to a few seconds while it re-converges.
        seconds = _per_second_db(speech, await _heard(bob, 10.0))
        on = float(np.median(seconds))
        (sink,) = alice.audio.speaker_devices.sinks()
        glitches = (
            f"per second {seconds}; speaker underruns {getattr(sink, 'underruns', '?')}, "
            f"microphone under/overrun samples {getattr(stream.source, 'underrun_samples', '?')}"
            f"/{getattr(stream.source, 'overflow_samples', '?')}, lead {stream.lead_ms} ms"
        )
        assert on >= 25.0, f"bob hears his echo only {on:.1f} dB down: {glitches}"

        off = {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False}
        await alice.audio.set_audio_constraints(off)  # re-acquires the microphone, as in JS
        await asyncio.sleep(2.0)
        assert not any(s.active for s in voice.streams)
        loop = float(np.median(_per_second_db(speech, await _heard(bob, 3.0))))
        assert loop < 10.0, f"without processing the loop returns bob {loop:.1f} dB down"
        assert call.status() == "open"
    finally:
        call.disconnect()
        await eventually(lambda: alice.active_call is None)
        await alice.audio.unset_input_device()
        await alice.audio.speaker_devices.set("default")

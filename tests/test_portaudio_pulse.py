"""The PortAudio backend on real (PulseAudio null-sink) devices, in a real call.

A private PulseAudio daemon (``benchmarks.pulse_loop``) with two null sinks
stands in for hardware (aiortc-probe.md §7): ``mic_src``, whose monitor is
the default source (the "microphone": the test plays into it), and ``spk``,
the default sink (the "speaker": the test records its monitor). The SDK opens
the default devices through PortAudio and ALSA's pulse plugin, as it would on
a desktop. A tone played into the microphone reaches bob through alice's
PortAudio input, aiortc and the gateway; bob's voice comes out of alice's
PortAudio speaker. The daemon is started by the fixture and stopped by PID;
without PulseAudio or PortAudio the tests skip and say what to install.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from calltools import Listener, open_call
from recorders import eventually

from benchmarks.pulse_loop import INSTALL, PulseUnavailableError, pulse_loop
from softphone.audio_backends import FileSink, ToneSource, portaudio
from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.core.device import Device

DeviceFactory = Callable[..., Device]
MIC_HZ, BOB_HZ = 1000.0, 1900.0
CLIENTS = ("paplay", "parec")


class Pulse:
    """The running daemon's environment, to play into a sink and record a source."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def play(self, wav: Path, sink: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["paplay", "-d", sink, str(wav)], env=self.env)

    def record(self, source: str, out: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["parec", "-d", source, "--raw", "--format=s16le", "--rate=48000", "--channels=1"],
            env=self.env,
            stdout=out.open("wb"),
        )


@pytest.fixture
def pulse(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pulse]:
    absent = [tool for tool in CLIENTS if shutil.which(tool) is None]
    if absent:
        pytest.skip(f"PulseAudio's clients are not installed ({', '.join(absent)}): {INSTALL}")
    try:
        with pulse_loop(
            monkeypatch.setenv, sinks=("spk", "mic_src"), source="mic_src.monitor"
        ) as env:
            yield Pulse(env)
    except PulseUnavailableError as exc:
        pytest.skip(str(exc))


def _tone_wav(path: Path, freq: float, seconds: float) -> Path:
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    with FileSink(path) as sink:
        sink.write((np.sin(2 * np.pi * freq * t) * 12000).astype(np.int16))
    return path


def test_pulse_devices_are_enumerated(pulse: Pulse) -> None:
    devices = portaudio.list_devices()
    ids = {(d.kind, d.device_id) for d in devices}
    assert ("audioinput", portaudio.DEFAULT_DEVICE_ID) in ids
    assert ("audiooutput", portaudio.DEFAULT_DEVICE_ID) in ids
    assert any(d.device_id.endswith(":pulse") for d in devices)


async def test_portaudio_devices_in_a_real_call(
    pulse: Pulse, make_device: DeviceFactory, tmp_path: Path
) -> None:
    bob = Listener(make_device("bob", file_input_stream=ToneSource([BOB_HZ])))
    await bob.device.register()
    alice = make_device("alice")
    assert alice.audio is not None
    assert portaudio.DEFAULT_DEVICE_ID in alice.audio.available_input_devices
    mic = pulse.play(_tone_wav(tmp_path / "mic.wav", MIC_HZ, 20.0), "mic_src")
    recording = tmp_path / "speaker.raw"
    speaker = pulse.record("spk.monitor", recording)
    try:
        await alice.audio.set_input_device(portaudio.DEFAULT_DEVICE_ID)
        await alice.audio.speaker_devices.set([portaudio.DEFAULT_DEVICE_ID])
        call, _ = await open_call(alice, bob)
        # the "microphone" reaches bob (PulseAudio may take a moment to start the capture)
        await eventually(
            lambda: detect_tone(bob.heard.pcm()[-SAMPLE_RATE // 2 :], MIC_HZ), timeout=20
        )

        def heard() -> np.ndarray:
            return np.frombuffer(recording.read_bytes(), dtype=np.int16)

        # bob comes out of the speaker
        await eventually(lambda: detect_tone(heard()[-SAMPLE_RATE // 2 :], BOB_HZ), timeout=20)
        sink = alice.audio._open_outputs[portaudio.DEFAULT_DEVICE_ID][0]
        assert isinstance(sink, portaudio.PortAudioSink) and sink.samples_played > 0
        call.disconnect()
        await eventually(lambda: alice.active_call is None)
        await alice.audio.unset_input_device()
        await alice.audio.speaker_devices.set("default")
    finally:
        mic.terminate()
        speaker.terminate()
        mic.wait(5)
        speaker.wait(5)

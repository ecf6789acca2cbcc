"""The PortAudio backend on real (PulseAudio null-sink) devices, in a real call.

A private PulseAudio daemon with two null sinks stands in for hardware
(aiortc-probe.md §7): ``mic_src``, whose monitor is the default source (the
"microphone": the test plays into it), and ``spk``, the default sink (the
"speaker": the test records its monitor). The SDK opens the default devices
through PortAudio and ALSA's pulse plugin, as it would on a desktop. A tone
played into the microphone reaches bob through alice's PortAudio input, aiortc
and the gateway; bob's voice comes out of alice's PortAudio speaker. The daemon
is started by the fixture and stopped by PID; without PulseAudio or PortAudio
the tests skip and say what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from calltools import Listener, open_call
from recorders import eventually

from softphone.audio_backends import FileSink, ToneSource, portaudio
from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.core.device import Device

DeviceFactory = Callable[..., Device]
MIC_HZ, BOB_HZ = 1000.0, 1900.0

TOOLS = ("pulseaudio", "pactl", "paplay", "parec")
INSTALL = (
    "apt-get install -y --no-install-recommends pulseaudio pulseaudio-utils "
    "libasound2-plugins alsa-utils libportaudio2; pip install sounddevice"
)


class Pulse:
    """The running daemon: its environment and helpers to play and record."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def pactl(self, *args: str) -> str:
        return subprocess.run(
            ["pactl", *args], env=self.env, capture_output=True, text=True, check=True, timeout=10
        ).stdout

    def play(self, wav: Path, sink: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["paplay", "-d", sink, str(wav)], env=self.env)

    def record(self, source: str, out: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["parec", "-d", source, "--raw", "--format=s16le", "--rate=48000", "--channels=1"],
            env=self.env,
            stdout=out.open("wb"),
        )


@pytest.fixture
def pulse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pulse]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"PulseAudio is not installed ({', '.join(missing)} missing): {INSTALL}")
    if not portaudio.is_available():
        pytest.skip(f"PortAudio (sounddevice + libportaudio2) is not available: {INSTALL}")
    if not Path("/usr/share/alsa/alsa.conf.d/50-pulseaudio.conf").exists() and not list(
        Path("/usr/share/alsa/alsa.conf.d").glob("*pulse*")
    ):
        pytest.skip(f"ALSA's pulse plugin (libasound2-plugins) is not installed: {INSTALL}")
    home = tmp_path / "pulse-home"
    runtime = home / "run"
    runtime.mkdir(parents=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "PULSE_RUNTIME_PATH": str(runtime),
        "XDG_RUNTIME_DIR": str(runtime),
        "PULSE_SERVER": f"unix:{runtime}/native",
    }
    daemon = subprocess.Popen(
        [
            "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
            "--log-target=stderr", "--log-level=error",
            "--load=module-native-protocol-unix",
            "--load=module-null-sink sink_name=mic_src",
            "--load=module-null-sink sink_name=spk",
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    server = Pulse(env)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                server.pactl("info")
                break
            except subprocess.CalledProcessError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    err = daemon.stderr.read().decode() if daemon.stderr else ""
                    pytest.skip(f"PulseAudio did not start here: {err.strip()[:300]}")
                time.sleep(0.1)
        server.pactl("set-default-sink", "spk")
        server.pactl("set-default-source", "mic_src.monitor")
        for key in ("HOME", "PULSE_RUNTIME_PATH", "XDG_RUNTIME_DIR", "PULSE_SERVER"):
            monkeypatch.setenv(key, env[key])
        assert portaudio.rescan(), "a PortAudio stream was left open by an earlier test"
        yield server
    finally:
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        if portaudio.is_available():
            portaudio.rescan()


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

"""The PortAudio backend without a sound card: missing library, no devices, playout buffer.

Only the sound card is fake here (a stand-in ``sounddevice`` module whose
stream callbacks the test drives, as PortAudio's thread would); the real device
path runs in ``test_portaudio_pulse.py``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest

from softphone.audio_backends import portaudio
from softphone.audio_backends.devices import AudioDeviceError
from softphone.audio_backends.portaudio import PortAudioSink, PortAudioSource
from softphone.plugins import SoftphonePluginManager


class FakeStream:
    """Records its settings; the test calls ``callback`` like PortAudio's thread."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.callback = kwargs["callback"]
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


def fake_sounddevice(devices: list[dict[str, Any]], default: tuple[int, int]) -> Any:
    module = types.ModuleType("sounddevice")
    module.streams = []  # type: ignore[attr-defined]

    def stream(**kwargs: Any) -> FakeStream:
        made = FakeStream(**kwargs)
        module.streams.append(made)  # type: ignore[attr-defined]
        return made

    def check(device: int, samplerate: int, channels: int, dtype: str) -> None:
        if samplerate not in devices[device].get("rates", (48000,)):
            raise ValueError("Invalid sample rate")

    module.query_devices = lambda index=None: devices if index is None else devices[index]  # type: ignore[attr-defined]
    module.query_hostapis = lambda index: {"name": "Fake"}  # type: ignore[attr-defined]
    module.default = types.SimpleNamespace(device=list(default))  # type: ignore[attr-defined]
    module.check_input_settings = check  # type: ignore[attr-defined]
    module.check_output_settings = check  # type: ignore[attr-defined]
    module.InputStream = stream  # type: ignore[attr-defined]
    module.OutputStream = stream  # type: ignore[attr-defined]
    module._terminate = module._initialize = lambda: None  # type: ignore[attr-defined]
    return module


CARD = {
    "name": "USB headset",
    "hostapi": 0,
    "max_input_channels": 1,
    "max_output_channels": 2,
    "default_samplerate": 44100.0,
    "rates": (44100,),
}


def test_missing_library_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as when uninstalled
    assert not portaudio.is_available()
    assert portaudio.list_devices() == []
    with pytest.raises(portaudio.PortAudioUnavailableError, match=r"softphone\[portaudio\]"):
        PortAudioSource()
    pm = SoftphonePluginManager(entry_points=False)
    assert not [d for d in pm.enumerate_devices_now() if d.device_id.startswith("portaudio:")]


def test_no_device_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice([], (-1, -1)))
    assert portaudio.is_available() and portaudio.list_devices() == []
    with pytest.raises(AudioDeviceError, match="no default PortAudio audioinput device"):
        PortAudioSource()
    with pytest.raises(AudioDeviceError, match="no PortAudio audiooutput device 'portaudio:x'"):
        PortAudioSink("portaudio:x")


def test_devices_are_listed_and_resampled(monkeypatch: pytest.MonkeyPatch) -> None:
    sd = fake_sounddevice([CARD], (0, 0))
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    ids = [(d.kind, d.device_id, d.label) for d in portaudio.list_devices()]
    assert ids == [
        ("audioinput", "portaudio:default", "Default (USB headset)"),
        ("audioinput", "portaudio:Fake:USB headset", "USB headset"),
        ("audiooutput", "portaudio:default", "Default (USB headset)"),
        ("audiooutput", "portaudio:Fake:USB headset", "USB headset"),
    ]
    source = PortAudioSource("portaudio:Fake:USB headset")
    stream = sd.streams[-1]
    assert stream.kwargs["samplerate"] == 44100 and stream.kwargs["channels"] == 1
    t = np.arange(4410) / 44100
    block = (np.sin(2 * np.pi * 1000 * t) * 8000).astype(np.int16).reshape(-1, 1)
    stream.callback(block, 4410, None, None)  # 100 ms at 44.1 kHz ...
    assert abs(source.buffered_samples - 4800) <= 64  # ... arrives as about 100 ms at 48 kHz
    out = source.read(6000)
    assert len(out) == 6000 and source.underrun_samples > 0
    source.close()
    assert stream.closed and source.read(10).tolist() == [0] * 10


def test_sink_playout_buffer_absorbs_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    card = {**CARD, "rates": (48000,), "default_samplerate": 48000.0}
    sd = fake_sounddevice([card], (0, 0))
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    sink = PortAudioSink(prebuffer_ms=40, max_buffer_ms=100)
    stream = sd.streams[-1]
    assert stream.kwargs["channels"] == 1
    out = np.zeros((480, 1), dtype=np.int16)

    def play() -> np.ndarray:
        stream.callback(out, 480, None, None)
        return out[:, 0].copy()

    sink.write(np.full(960, 1000, np.int16))  # 20 ms: below the 40 ms margin
    assert not play().any() and sink.samples_played == 0  # waits instead of underrunning
    sink.write(np.full(960, 1000, np.int16))
    assert (play() == 1000).all() and (play() == 1000).all()
    assert (play() == 1000).all() and (play() == 1000).all()
    assert sink.underruns == 0
    assert not play().any() and sink.underruns == 1  # dry: counted, then re-buffers
    sink.write(np.full(960 * 8, 7, np.int16))  # 160 ms burst > 100 ms cap: oldest dropped
    assert sink.buffered_samples == 4800 and sink.dropped_samples == 960 * 8 - 4800
    sink.close()
    assert stream.closed

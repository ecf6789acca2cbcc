"""Real sound cards through PortAudio (the ``sounddevice`` package), an optional extra.

Install with ``pip install softphone[portaudio]`` plus the system PortAudio
library (``libportaudio2`` on Debian). Without either, or on a machine with
no sound card, nothing here crashes at import: :func:`is_available` says
False, :func:`list_devices` returns ``[]``, and opening a device raises
:class:`AudioDeviceError` with a message saying what is missing.

PortAudio runs its callbacks on its own thread. Both directions therefore
meet the event loop through a locked FIFO:

* :class:`PortAudioSource` (microphone): the callback appends captured audio;
  ``read`` takes what the media layer's clock asks for, zero-padding if the
  card is late and dropping the oldest audio if nobody reads (bounded latency).
* :class:`PortAudioSink` (speaker): ``write`` appends remote audio; the callback
  plays it once a *playout buffer* of ``prebuffer_ms`` has built up, and after
  an underrun waits for that margin again. aiortc hands over frames without
  playout timing, so without this margin the card underruns (crackles) on
  every scheduling hiccup (aiortc-probe.md §7).

Devices are identified as ``portaudio:default`` (the system default) or
``portaudio:<host API>:<device name>``, stable across restarts, unlike
PortAudio's indices.
"""

from __future__ import annotations

import logging
import threading
from types import ModuleType
from typing import Any

import av
import numpy as np

from softphone.audio_backends.base import SAMPLE_RATE, Pcm, silence
from softphone.audio_backends.devices import (
    AUDIO_INPUT,
    AUDIO_OUTPUT,
    AudioDeviceError,
    DeviceKind,
    MediaDeviceInfo,
)
from softphone.audio_backends.memory import PcmFifo

__all__ = [
    "DEFAULT_DEVICE_ID",
    "AudioDeviceError",
    "PortAudioSink",
    "PortAudioSource",
    "PortAudioUnavailableError",
    "is_available",
    "list_devices",
    "load_sounddevice",
    "rescan",
]

log = logging.getLogger("softphone.audio.portaudio")

PREFIX = "portaudio:"
DEFAULT_DEVICE_ID = "portaudio:default"
_INSTALL_HINT = (
    "install the 'portaudio' extra (pip install 'softphone[portaudio]') and the PortAudio "
    "library (apt-get install libportaudio2)"
)

DEFAULT_LATENCY_S = 0.1
"""Device buffer PortAudio is asked for. Smaller buffers starve through ALSA's pulse
plugin (measured: capture stalls for seconds at 20 ms); the SDK's own FIFOs, not
this buffer, decide the latency the far end perceives."""

_open_streams = 0
_open_lock = threading.Lock()


class PortAudioUnavailableError(AudioDeviceError):
    """``sounddevice`` or the PortAudio library is not installed."""


def load_sounddevice() -> ModuleType:
    """Import ``sounddevice``; raises :class:`PortAudioUnavailableError` with an install hint.

    ``sounddevice`` raises OSError at import when the PortAudio shared library is
    missing, ImportError when the package itself is; both end up here.
    """
    try:
        import sounddevice
    except ImportError as exc:
        raise PortAudioUnavailableError(f"sounddevice is not installed: {_INSTALL_HINT}") from exc
    except OSError as exc:
        raise PortAudioUnavailableError(
            f"PortAudio library not found ({exc}): {_INSTALL_HINT}"
        ) from exc
    module: ModuleType = sounddevice
    return module


def is_available() -> bool:
    """Whether PortAudio can be used here at all (library present; devices may still be none)."""
    try:
        load_sounddevice()
    except PortAudioUnavailableError:
        return False
    return True


def rescan() -> bool:
    """Re-initialise PortAudio so devices added or removed since start-up are seen.

    PortAudio lists devices once, at initialisation. Re-initialising closes
    every stream, so this does nothing (returns False) while a stream is open.
    """
    sd = load_sounddevice()
    with _open_lock:
        if _open_streams:
            return False
        sd._terminate()
        sd._initialize()
    return True


def _channels_key(kind: DeviceKind) -> str:
    return "max_input_channels" if kind == AUDIO_INPUT else "max_output_channels"


def _device_id(sd: ModuleType, info: Any) -> str:
    hostapi = sd.query_hostapis(info["hostapi"])["name"]
    return f"{PREFIX}{hostapi}:{info['name']}"


def _default_index(sd: ModuleType, kind: DeviceKind) -> int:
    index = sd.default.device[0 if kind == AUDIO_INPUT else 1]
    return int(index) if index is not None else -1


def list_devices() -> list[MediaDeviceInfo]:
    """Every PortAudio input and output, plus ``portaudio:default`` per kind when one exists.

    Returns ``[]`` (never raises) without the library or without devices.
    """
    try:
        sd = load_sounddevice()
        devices = list(sd.query_devices())
    except Exception as exc:  # a missing library or broken host API must not break apps
        log.debug("PortAudio enumeration unavailable: %s", exc)
        return []
    out: list[MediaDeviceInfo] = []
    for kind in (AUDIO_INPUT, AUDIO_OUTPUT):
        default = _default_index(sd, kind)
        if 0 <= default < len(devices) and devices[default][_channels_key(kind)] > 0:
            name = devices[default]["name"]
            out.append(MediaDeviceInfo(DEFAULT_DEVICE_ID, kind, f"Default ({name})", "portaudio"))
        for info in devices:
            if info[_channels_key(kind)] > 0:
                device_id = _device_id(sd, info)
                out.append(MediaDeviceInfo(device_id, kind, str(info["name"]), device_id))
    return out


def _resolve(sd: ModuleType, device: str | int | None, kind: DeviceKind) -> int:
    """The PortAudio index for ``device`` (an id from :func:`list_devices`, an index or None)."""
    devices = list(sd.query_devices())
    if device is None or device == DEFAULT_DEVICE_ID:
        index = _default_index(sd, kind)
        if not 0 <= index < len(devices):
            raise AudioDeviceError(
                f"no default PortAudio {kind} device: PortAudio found {len(devices)} devices "
                "and none is a default (no sound card, or no sound server running)"
            )
        return index
    if isinstance(device, int):
        if not 0 <= device < len(devices):
            raise AudioDeviceError(f"no PortAudio device with index {device}")
        return device
    for index, info in enumerate(devices):
        if _device_id(sd, info) == device and info[_channels_key(kind)] > 0:
            return index
    raise AudioDeviceError(f"no PortAudio {kind} device {device!r}")


def _negotiate(sd: ModuleType, index: int, kind: DeviceKind) -> tuple[int, int]:
    """(sample rate, channels) to open ``index`` with: 48 kHz mono if it takes it."""
    check = sd.check_input_settings if kind == AUDIO_INPUT else sd.check_output_settings
    info = sd.query_devices(index)
    max_channels = int(info[_channels_key(kind)])
    for rate in (SAMPLE_RATE, int(info["default_samplerate"])):
        for channels in sorted({1, min(2, max_channels)}):
            try:
                check(device=index, samplerate=rate, channels=channels, dtype="int16")
            except Exception:
                continue
            return rate, channels
    raise AudioDeviceError(f"PortAudio {kind} {info['name']!r} accepts no usable format")


class _RateConverter:
    """Stateful mono int16 resampling between a device rate and the contract's 48 kHz."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self._from = from_rate
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)

    def convert(self, pcm: Pcm) -> Pcm:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self._from
        parts = [
            np.asarray(f.to_ndarray(), dtype=np.int16).reshape(-1)
            for f in self._resampler.resample(frame)
        ]
        return np.concatenate(parts) if parts else silence(0)


def _start_stream(factory: Any, kind: str, name: str, **kwargs: Any) -> Any:
    """Open and start a PortAudio stream of 16-bit samples; clear error if it cannot."""
    try:
        stream = factory(dtype="int16", blocksize=0, **kwargs)  # blocksize 0: PortAudio picks
        stream.start()
    except Exception as exc:
        raise AudioDeviceError(f"cannot open PortAudio {kind} {name!r}: {exc}") from exc
    _track_open(1)
    return stream


def _stop_stream(stream: Any) -> None:
    """Stop and close a stream from :func:`_start_stream`, releasing its open count."""
    try:
        stream.stop()
        stream.close()
    finally:
        _track_open(-1)


def _stream_latency(stream: Any) -> float:
    """The latency PortAudio reports for an open stream (seconds), 0 if it reports none."""
    try:
        return max(0.0, float(stream.latency))
    except (AttributeError, TypeError, ValueError):
        return 0.0


def _track_open(delta: int) -> None:
    global _open_streams
    with _open_lock:
        _open_streams += delta


class PortAudioSource:
    """An ``AudioSource`` capturing from a PortAudio input device.

    ``device``: an id from :func:`list_devices`, a PortAudio index, or None for
    the default input. Raises :class:`AudioDeviceError` if it cannot be opened.
    ``max_buffer_ms`` bounds the backlog when the media layer reads late.
    """

    def __init__(
        self,
        device: str | int | None = None,
        *,
        max_buffer_ms: int = 200,
        latency: str | float = DEFAULT_LATENCY_S,
    ) -> None:
        sd = load_sounddevice()
        index = _resolve(sd, device, AUDIO_INPUT)
        rate, channels = _negotiate(sd, index, AUDIO_INPUT)
        self.device_name = str(sd.query_devices(index)["name"])
        self._lock = threading.Lock()
        self._fifo = PcmFifo()
        self._max = SAMPLE_RATE * max_buffer_ms // 1000
        self._converter = _RateConverter(rate, SAMPLE_RATE) if rate != SAMPLE_RATE else None
        self._closed = False
        self.overflow_samples = 0
        self.underrun_samples = 0
        self._stream = _start_stream(
            sd.InputStream,
            "input",
            self.device_name,
            device=index,
            samplerate=rate,
            channels=channels,
            latency=latency,
            callback=self._callback,
        )
        self._device_latency_s = _stream_latency(self._stream)

    def _callback(self, indata: Any, frames: int, _time: Any, status: Any) -> None:
        if status:
            log.debug("PortAudio input status: %s", status)
        block = np.asarray(indata)
        mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
        pcm = np.asarray(mono, dtype=np.int16).copy()
        if self._converter is not None:
            pcm = self._converter.convert(pcm)
        with self._lock:
            self._fifo.push(pcm)
            excess = len(self._fifo) - self._max
            if excess > 0:
                self._fifo.pop(excess)
                self.overflow_samples += excess

    @property
    def buffered_samples(self) -> int:
        """Captured samples not yet read."""
        with self._lock:
            return len(self._fifo)

    @property
    def capture_delay_s(self) -> float:
        """How long ago the next sample ``read`` returns was captured: the samples
        queued ahead of it plus the device's input latency (for echo cancellation)."""
        return self.buffered_samples / SAMPLE_RATE + self._device_latency_s

    def read(self, samples: int) -> Pcm:
        """The oldest ``samples`` captured samples, zero-padded if the card is behind."""
        if samples < 0:
            raise ValueError(f"samples must be >= 0, got {samples}")
        with self._lock:
            if self._closed:
                return silence(samples)
            short = max(0, samples - len(self._fifo))
            self.underrun_samples += short
            return self._fifo.pop(samples)

    def close(self) -> None:
        """Stop capturing and release the device (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._fifo.clear()
        _stop_stream(self._stream)


class PortAudioSink:
    """An ``AudioSink`` playing to a PortAudio output device, behind a playout buffer.

    Playback starts once ``prebuffer_ms`` is queued and restarts the same way
    after an underrun; audio beyond ``max_buffer_ms`` is dropped oldest-first
    so latency cannot grow without bound. Counters (``underruns``,
    ``dropped_samples``) let apps and tests see how playout went.
    """

    def __init__(
        self,
        device: str | int | None = None,
        *,
        prebuffer_ms: int = 60,
        max_buffer_ms: int = 400,
        latency: str | float = DEFAULT_LATENCY_S,
    ) -> None:
        if not 0 <= prebuffer_ms < max_buffer_ms:
            raise ValueError("need 0 <= prebuffer_ms < max_buffer_ms")
        sd = load_sounddevice()
        index = _resolve(sd, device, AUDIO_OUTPUT)
        rate, channels = _negotiate(sd, index, AUDIO_OUTPUT)
        self.device_name = str(sd.query_devices(index)["name"])
        self._rate = rate
        self._channels = channels
        self._lock = threading.Lock()
        self._fifo = PcmFifo()
        self._prebuffer = rate * prebuffer_ms // 1000
        self._max = rate * max_buffer_ms // 1000
        self._converter = _RateConverter(SAMPLE_RATE, rate) if rate != SAMPLE_RATE else None
        self._playing = False
        self._closed = False
        self.underruns = 0
        self.dropped_samples = 0
        self.samples_played = 0
        self._stream = _start_stream(
            sd.OutputStream,
            "output",
            self.device_name,
            device=index,
            samplerate=rate,
            channels=channels,
            latency=latency,
            callback=self._callback,
        )
        self._device_latency_s = _stream_latency(self._stream)

    @property
    def buffered_samples(self) -> int:
        """Samples queued for playout (at the device's rate)."""
        with self._lock:
            return len(self._fifo)

    @property
    def playout_delay_s(self) -> float:
        """How long until a sample written now is heard: the queue ahead of it (at
        least the playout margin while waiting for it) plus the device's output
        latency. The echo canceller lines its reference up with this."""
        with self._lock:
            queued = len(self._fifo) if self._playing else max(len(self._fifo), self._prebuffer)
        return queued / self._rate + self._device_latency_s

    def write(self, pcm: Pcm) -> None:
        """Queue ``pcm`` for playout; never blocks on the device."""
        block = np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1)
        if self._converter is not None:
            block = self._converter.convert(block)
        with self._lock:
            if self._closed:
                return
            self._fifo.push(block)
            excess = len(self._fifo) - self._max
            if excess > 0:
                self._fifo.pop(excess)
                self.dropped_samples += excess

    def _callback(self, outdata: Any, frames: int, _time: Any, status: Any) -> None:
        if status:
            log.debug("PortAudio output status: %s", status)
        with self._lock:
            if not self._playing and len(self._fifo) >= max(self._prebuffer, 1):
                self._playing = True
            if not self._playing:
                block = silence(frames)
            else:
                if len(self._fifo) < frames:
                    self.underruns += 1
                    self._playing = False  # wait for the playout margin again
                block = self._fifo.pop(frames)
                self.samples_played += frames
        outdata[:] = np.repeat(block.reshape(-1, 1), self._channels, axis=1)

    def close(self) -> None:
        """Stop playback and release the device (queued audio is dropped; idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._fifo.clear()
        _stop_stream(self._stream)

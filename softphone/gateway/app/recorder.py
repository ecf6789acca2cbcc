"""``<Record>``: the caller's audio kept as a telephone-quality WAV, and voice activity.

What: :class:`Recorder` is the remote-audio sink of the gateway's leg while a
``<Record>`` runs. It keeps the caller's audio at 8 kHz (what Twilio's recordings
are: 8 kHz mono 16-bit WAV), bounded by ``max_length``; it tells the application
runner when the caller starts and stops speaking (``on_voice(bool)``), which is how
``<Record timeout>`` measures silence; :meth:`finish` trims leading and trailing
silence (``trim="trim-silence"``, Twilio's default) and writes the file.

Why a level detector and not a model: silence detection only has to find the end of
a voicemail; a 20 ms energy gate with a hang-over is what telephone systems use and
costs nothing per frame.
"""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from softphone.audio_backends.analysis import rms_dbfs
from softphone.audio_backends.base import SAMPLE_RATE, Pcm
from softphone.media.resample import Resampler

RECORDING_RATE = 8000
FRAME = RECORDING_RATE // 50
"""20 ms at 8 kHz: the unit of voice detection and trimming."""
SPEECH_DBFS = -45.0
"""A 20 ms frame louder than this is speech (a quiet line sits near -70 dBFS)."""
HANGOVER_FRAMES = 15
"""300 ms below the threshold before "stopped speaking" (pauses between words)."""


class Recorder:
    """Keeps the caller's audio at 8 kHz and reports voice activity edges."""

    def __init__(self, max_length_s: float, on_voice: Callable[[bool], None]) -> None:
        self._resampler = Resampler(SAMPLE_RATE, RECORDING_RATE)
        self._max_samples = max(0, int(max_length_s * RECORDING_RATE))
        self._chunks: list[Pcm] = []
        self._kept = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self._on_voice = on_voice
        self._speaking = False
        self._quiet_frames = 0
        self._closed = False

    @property
    def seconds(self) -> float:
        """Audio kept so far, before trimming."""
        return self._kept / RECORDING_RATE

    def write(self, pcm: Pcm) -> None:
        """Sink face: keep ``pcm`` (48 kHz) as 8 kHz, up to ``max_length``."""
        if self._closed or self._kept >= self._max_samples:
            return
        usable = len(pcm) - len(pcm) % self._resampler.factor
        low = self._resampler.process(np.asarray(pcm[:usable], dtype=np.int16))
        low = low[: self._max_samples - self._kept]
        self._chunks.append(low)
        self._kept += len(low)
        self._detect(low)

    def _detect(self, low: Pcm) -> None:
        self._pending = np.concatenate([self._pending, low])
        while len(self._pending) >= FRAME:
            frame, self._pending = self._pending[:FRAME], self._pending[FRAME:]
            loud = rms_dbfs(frame) > SPEECH_DBFS
            if loud:
                self._quiet_frames = 0
                if not self._speaking:
                    self._speaking = True
                    self._on_voice(True)
            elif self._speaking:
                self._quiet_frames += 1
                if self._quiet_frames >= HANGOVER_FRAMES:
                    self._speaking = False
                    self._on_voice(False)

    def audio(self, *, trim: bool) -> Pcm:
        """Everything kept, with leading and trailing silence cut when ``trim``."""
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        if not trim or not len(pcm):
            return pcm
        frames = len(pcm) // FRAME
        loud = [rms_dbfs(pcm[i * FRAME : (i + 1) * FRAME]) > SPEECH_DBFS for i in range(frames)]
        if not any(loud):
            return pcm[:0]
        first = loud.index(True)
        last = frames - 1 - loud[::-1].index(True)
        pad = HANGOVER_FRAMES // 3  # keep 100 ms around the speech so it does not sound clipped
        return pcm[max(0, first - pad) * FRAME : min(frames, last + 1 + pad) * FRAME]

    @property
    def samples(self) -> int:
        """Samples kept so far (8 kHz)."""
        return self._kept

    def finish(self, path: Path, *, trim: bool) -> float:
        """Stop recording, write the WAV at ``path``; the seconds it holds (0: nothing kept,
        and no file written)."""
        self._closed = True
        pcm = self.audio(trim=trim)
        self._chunks = []
        if not len(pcm):
            return 0.0
        _write_wav(path, pcm.reshape(-1, 1))
        return len(pcm) / RECORDING_RATE

    def close(self) -> None:
        """Stop accepting audio (the leg's sink is being detached)."""
        self._closed = True


def write_dial_recording(path: Path, legs: list[tuple[Recorder, int]], *, dual: bool) -> float:
    """``<Dial record>``: each leg's audio from its start ``offset`` (samples), mixed to
    mono, or one channel per leg when ``dual`` (the caller first); the seconds written."""
    tracks = []
    for recorder, offset in legs:
        recorder.close()
        tracks.append(
            np.concatenate([np.zeros(offset, dtype=np.int16), recorder.audio(trim=False)])
        )
    length = max((len(t) for t in tracks), default=0)
    if not length:
        return 0.0
    padded = np.stack([np.pad(t, (0, length - len(t))).astype(np.int32) for t in tracks], axis=1)
    if not dual:
        padded = np.clip(padded.sum(axis=1, keepdims=True), -32768, 32767)
    _write_wav(path, padded.astype(np.int16))
    return length / RECORDING_RATE


def _write_wav(path: Path, frames: Pcm) -> None:
    """``frames`` (samples x channels, int16) as an 8 kHz 16-bit WAV at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(frames.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(RECORDING_RATE)
        wav.writeframes(frames.astype("<i2").tobytes())


__all__ = ["RECORDING_RATE", "Recorder", "write_dial_recording"]

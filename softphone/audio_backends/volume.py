"""The JS SDK's volume meter: a Web Audio ``AnalyserNode`` port, pure and tiny.

``call.on('volume')`` and ``device.audio.on('inputVolume')`` report the mean of
an analyser's byte frequency bins divided by 255 (stats-and-quality.md §5):
``fftSize`` 32 (16 bins), Blackman window, time smoothing 0.3, and each bin's
dB value mapped linearly from [-100, -30] dB to [0, 255]. 0 means at most
-100 dB in every bin, 1 means at least -30 dB in every bin. Apps that ported
meters from JS get the same scale.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from softphone.audio_backends.base import Pcm

__all__ = ["VolumeAnalyser"]

Floats = npt.NDArray[np.float64]


def _blackman(n: int) -> Floats:
    """The Web Audio spec's Blackman window (alpha 0.16)."""
    alpha = 0.16
    a0, a1, a2 = 0.5 * (1 - alpha), 0.5, 0.5 * alpha
    i = np.arange(n, dtype=np.float64)
    window: Floats = a0 - a1 * np.cos(2 * math.pi * i / n) + a2 * np.cos(4 * math.pi * i / n)
    return window


class VolumeAnalyser:
    """Feed PCM with :meth:`push`; :meth:`volume` gives the JS 0..1 reading.

    Like the browser's analyser, only the last ``fft_size`` samples count at the
    moment of reading, and smoothing applies between successive readings.
    """

    def __init__(
        self,
        fft_size: int = 32,
        smoothing: float = 0.3,
        min_decibels: float = -100.0,
        max_decibels: float = -30.0,
    ) -> None:
        if fft_size < 32 or fft_size & (fft_size - 1):
            raise ValueError(f"fft_size must be a power of two >= 32, got {fft_size}")
        if not 0.0 <= smoothing <= 1.0:
            raise ValueError(f"smoothing must be within [0, 1], got {smoothing}")
        if min_decibels >= max_decibels:
            raise ValueError("min_decibels must be below max_decibels")
        self.fft_size = fft_size
        self.smoothing = smoothing
        self.min_decibels = min_decibels
        self.max_decibels = max_decibels
        self._window = _blackman(fft_size)
        self._recent: Floats = np.zeros(fft_size)
        self._smoothed: Floats = np.zeros(fft_size // 2)

    def push(self, pcm: Pcm) -> None:
        """Add audio (48 kHz mono int16); only the newest ``fft_size`` samples are kept."""
        x = np.asarray(pcm, dtype=np.float64).reshape(-1) / 32768.0
        n = self.fft_size
        if x.size >= n:
            self._recent = x[-n:].copy()
        elif x.size:
            self._recent = np.concatenate([self._recent[x.size :], x])

    def byte_frequency_data(self) -> npt.NDArray[np.uint8]:
        """``getByteFrequencyData``: one smoothed, dB-scaled byte per bin (updates smoothing)."""
        n = self.fft_size
        spectrum = np.fft.rfft(self._recent * self._window)[: n // 2]
        magnitude = np.abs(spectrum) / n
        self._smoothed = self.smoothing * self._smoothed + (1 - self.smoothing) * magnitude
        with np.errstate(divide="ignore"):
            db = 20 * np.log10(self._smoothed)
        scale = 255.0 / (self.max_decibels - self.min_decibels)
        scaled = np.floor(scale * (db - self.min_decibels))
        out: npt.NDArray[np.uint8] = np.clip(np.nan_to_num(scaled, neginf=0.0), 0, 255).astype(
            np.uint8
        )
        return out

    def volume(self) -> float:
        """The JS volume: mean byte bin / 255, in [0, 1]."""
        return float(np.mean(self.byte_frequency_data())) / 255.0

    def reset(self) -> None:
        """Forget the audio and the smoothing state (a new input stream)."""
        self._recent = np.zeros(self.fft_size)
        self._smoothed = np.zeros(self.fft_size // 2)

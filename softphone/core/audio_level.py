"""The audio level the stats monitor averages into ``audioInputLevel`` / ``audioOutputLevel``.

The JS SDK reads a second Web Audio analyser per direction every
``VOLUME_INTERVAL_MS`` (50 ms): ``fftSize`` 32, no time smoothing, bins mapped
from [-127, 0] dB to bytes 0..255; the mean byte is scaled to the legacy
0..32767 range (``v / 255 * 32767``) and handed to ``StatsMonitor.addVolumes``.
Without smoothing the reading depends only on the newest 32 samples, so it is a
plain function here.
"""

from __future__ import annotations

from softphone.audio_backends.base import Pcm
from softphone.audio_backends.volume import VolumeAnalyser

__all__ = [
    "LEVEL_FFT_SIZE",
    "LEVEL_MAX_DECIBELS",
    "LEVEL_MIN_DECIBELS",
    "LEVEL_SCALE",
    "audio_level",
]

LEVEL_FFT_SIZE = 32
"""Analyser ``fftSize``: the level looks at the newest 32 samples (16 frequency bins)."""

LEVEL_MIN_DECIBELS = -127.0
"""Analyser ``minDecibels``: a bin at or below this reads 0."""

LEVEL_MAX_DECIBELS = 0.0
"""Analyser ``maxDecibels``: a bin at or above this reads 255."""

LEVEL_SCALE = 2**15 - 1
"""Full scale of the legacy level range (JS: "mock the 0 -> 32767 format used by legacy
getStats")."""


def audio_level(pcm: Pcm) -> int:
    """Level (0..32767) of the newest :data:`LEVEL_FFT_SIZE` samples of ``pcm`` (int16).

    Fewer samples count as preceded by silence. The JS SDK passes the unrounded
    ``v / 255 * 32767`` on; rounding here moves a second's mean by at most 0.5.
    """
    analyser = VolumeAnalyser(
        fft_size=LEVEL_FFT_SIZE,
        smoothing=0.0,
        min_decibels=LEVEL_MIN_DECIBELS,
        max_decibels=LEVEL_MAX_DECIBELS,
    )
    analyser.push(pcm)
    return round(analyser.volume() * LEVEL_SCALE)

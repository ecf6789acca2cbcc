"""A call's volume meter: the JS ``volume(inputVolume, outputVolume)`` and the stats levels.

The JS SDK reads two Web Audio analysers per direction every 50 ms: a public one
(``fftSize`` 32, smoothing 0.3, -100..-30 dB) whose mean byte / 255 is the 0..1
``volume`` event, and an internal one (no smoothing, -127..0 dB) whose mean byte,
scaled to 0..32767, feeds the stats monitor's ``audioInputLevel`` /
``audioOutputLevel``. :class:`CallVolume` holds the four analysers; the Call
pushes what it sends and what it receives, and reads it on its 50 ms tick. No I/O.
"""

from __future__ import annotations

import attrs

from softphone.audio_backends.base import Pcm
from softphone.audio_backends.volume import VolumeAnalyser
from softphone.core.audio_level import (
    LEVEL_FFT_SIZE,
    LEVEL_MAX_DECIBELS,
    LEVEL_MIN_DECIBELS,
    LEVEL_SCALE,
)
from softphone.core.stats_monitor import VOLUME_INTERVAL_MS

VOLUME_INTERVAL_S = VOLUME_INTERVAL_MS / 1000
"""How often a call emits ``volume`` (JS: every 50 ms)."""


@attrs.frozen
class VolumeReading:
    """One 50 ms reading: the event's volumes (0..1) and the monitor's levels (0..32767)."""

    input_volume: float
    output_volume: float
    input_level: float
    output_level: float


def _level_analyser() -> VolumeAnalyser:
    return VolumeAnalyser(
        fft_size=LEVEL_FFT_SIZE,
        smoothing=0.0,
        min_decibels=LEVEL_MIN_DECIBELS,
        max_decibels=LEVEL_MAX_DECIBELS,
    )


class CallVolume:
    """The four analysers of one call; push PCM as it passes, :meth:`read` every 50 ms."""

    def __init__(self) -> None:
        self._input = VolumeAnalyser()
        self._output = VolumeAnalyser()
        self._input_level = _level_analyser()
        self._output_level = _level_analyser()
        self.latest = VolumeReading(0.0, 0.0, 0.0, 0.0)
        """The last reading (insights attach it to each metrics sample)."""

    def push_input(self, pcm: Pcm) -> None:
        """A block we sent (silence while muted, as a disabled track reads in a browser)."""
        self._input.push(pcm)
        self._input_level.push(pcm)

    def push_output(self, pcm: Pcm) -> None:
        """A block we received and played."""
        self._output.push(pcm)
        self._output_level.push(pcm)

    def read(self) -> VolumeReading:
        """Read all four analysers once (advances the public ones' smoothing)."""
        self.latest = VolumeReading(
            input_volume=self._input.volume(),
            output_volume=self._output.volume(),
            input_level=self._input_level.volume() * LEVEL_SCALE,
            output_level=self._output_level.volume() * LEVEL_SCALE,
        )
        return self.latest


class OutputTap:
    """An :class:`~softphone.audio_backends.base.AudioSink` that meters what it is given."""

    def __init__(self, volume: CallVolume) -> None:
        self._volume = volume

    def write(self, pcm: Pcm) -> None:
        """Meter one received block."""
        self._volume.push_output(pcm)

    def close(self) -> None:
        """Nothing to release."""


__all__ = ["VOLUME_INTERVAL_S", "CallVolume", "OutputTap", "VolumeReading"]

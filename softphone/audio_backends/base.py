"""The audio contract between backends and the media layer.

Every backend speaks one format so the media layer never resamples twice:
signed 16-bit mono PCM at 48 kHz, handed over as 1-D ``numpy.int16`` arrays.
Sources are *pulled* (the media layer's clocked track asks for 20 ms at a time,
so a source never has to keep time itself); sinks are *pushed* (remote audio is
written as it is played out).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48_000
"""Sample rate of every PCM array that crosses the backend boundary."""

FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
"""Samples in one 20 ms frame (960): the unit the media layer reads and writes."""

Pcm = npt.NDArray[np.int16]


@runtime_checkable
class AudioSource(Protocol):
    """Where local audio comes from (a microphone, a file, a tone, an app)."""

    def read(self, samples: int) -> Pcm:
        """Return exactly ``samples`` samples; pad with zeros when nothing is available."""
        ...

    def close(self) -> None:
        """Release the device or file; further reads return silence."""
        ...


@runtime_checkable
class AudioSink(Protocol):
    """Where remote audio (or a sound) goes (a speaker, a file, a buffer)."""

    def write(self, pcm: Pcm) -> None:
        """Accept ``pcm`` for playback; must not block for long (called on the event loop)."""
        ...

    def close(self) -> None:
        """Flush and release the device or file."""
        ...


def silence(samples: int) -> Pcm:
    """A zero-filled PCM block of ``samples`` samples."""
    return np.zeros(samples, dtype=np.int16)

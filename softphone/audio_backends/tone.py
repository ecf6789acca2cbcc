"""A synthesized tone source: one sine or a sum of them (DTMF-style dual tones).

Useful wherever a call needs known, measurable audio: ringback-like prompts,
DTMF-like test signals, and loopback tests that check the far end hears the
right frequency. Each frequency keeps its own phase accumulator, so audio read
in any block sizes is identical to one long read: no clicks at block edges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from softphone.audio_backends.base import SAMPLE_RATE, Pcm, silence

__all__ = ["ToneSource"]

_FADE_OUT_S = 0.005
"""Length of the ramp that ends a timed tone, so stopping it does not click."""


class ToneSource:
    """An ``AudioSource`` producing the sum of sines at ``frequencies``.

    ``amplitude`` is the peak level of the *sum* as a fraction of full scale,
    shared equally between the tones so the mix never clips. With
    ``duration_s`` the tone fades out over its last 5 ms and is followed by
    silence; without it, it plays until closed.
    """

    def __init__(
        self,
        frequencies: Sequence[float] = (440.0,),
        amplitude: float = 0.3,
        duration_s: float | None = None,
    ) -> None:
        freqs = [float(f) for f in frequencies]
        if not freqs:
            raise ValueError("ToneSource needs at least one frequency")
        nyquist = SAMPLE_RATE / 2
        for freq in freqs:
            if not 0 < freq < nyquist:
                raise ValueError(f"frequency {freq} Hz is outside (0, {nyquist:g}) Hz")
        if not 0.0 <= amplitude <= 1.0:
            raise ValueError(f"amplitude must be within [0, 1], got {amplitude}")
        if duration_s is not None and duration_s < 0:
            raise ValueError(f"duration_s must be >= 0, got {duration_s}")
        self._frequencies = tuple(freqs)
        self._step: npt.NDArray[np.float64] = np.array(freqs) * (2 * math.pi / SAMPLE_RATE)
        self._phase: npt.NDArray[np.float64] = np.zeros(len(freqs))
        self._scale = amplitude * 32767 / len(freqs)
        self._total = None if duration_s is None else round(duration_s * SAMPLE_RATE)
        self._fade = (
            1
            if self._total is None
            else max(1, min(round(_FADE_OUT_S * SAMPLE_RATE), self._total // 2))
        )
        self._position = 0
        self._closed = False

    @property
    def frequencies(self) -> tuple[float, ...]:
        """The frequencies being summed, in Hz."""
        return self._frequencies

    @property
    def finished(self) -> bool:
        """True once a timed tone has played out (or the source was closed)."""
        return self._closed or (self._total is not None and self._position >= self._total)

    def read(self, samples: int) -> Pcm:
        """Return the next ``samples`` samples of the tone (silence once finished)."""
        if samples < 0:
            raise ValueError(f"samples must be >= 0, got {samples}")
        if self._closed:
            return silence(samples)
        active = samples
        if self._total is not None:
            active = max(0, min(samples, self._total - self._position))
        out = silence(samples)
        if active:
            n = np.arange(active, dtype=np.float64)
            waves = np.sin(self._phase[:, np.newaxis] + self._step[:, np.newaxis] * n)
            mix = waves.sum(axis=0) * self._scale
            if self._total is not None:
                remaining = self._total - self._position - n
                mix *= np.clip(remaining / self._fade, 0.0, 1.0)
            out[:active] = np.round(mix).astype(np.int16)
        self._phase = np.mod(self._phase + self._step * samples, 2 * math.pi)
        self._position += samples
        return out

    def close(self) -> None:
        """Stop the tone; further reads are silence."""
        self._closed = True

"""Streaming integer-ratio resampling between 48 kHz and the 8/16 kHz codec rates.

Everything above the codecs runs at 48 kHz (the backend contract); G.711 runs
at 8 kHz and G.722 at 16 kHz. FFmpeg's resampler (what aiortc uses) holds a
whole 20 ms frame back when going from 48 to 8 kHz (aiortc-probe.md §4: PCMU
calls are 20 ms slower than Opus calls). A windowed-sinc FIR with its history
carried between blocks costs 2 ms of delay each way, keeps 20 ms in
and 20 ms out, and needs nothing but numpy.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from softphone.audio_backends.base import Pcm

__all__ = ["Resampler", "lowpass_taps"]

Floats = npt.NDArray[np.float64]


def lowpass_taps(factor: int, taps_per_phase: int = 32) -> Floats:
    """A Kaiser-windowed sinc low-pass for changing the rate by ``factor``.

    The cutoff sits at 0.95 of the lower rate's Nyquist frequency. For 8 kHz:
    -0.3 dB at 3.4 kHz, -14 dB at 4 kHz and -63 dB from 4.4 kHz, so aliases
    stay out of the telephone band. The filter has ``factor * taps_per_phase +
    1`` taps (linear phase, unity DC gain).
    """
    count = factor * taps_per_phase + 1
    n = np.arange(count, dtype=np.float64) - (count - 1) / 2
    cutoff = 0.95 / factor  # as a fraction of the high rate's Nyquist frequency
    taps = cutoff * np.sinc(cutoff * n) * np.kaiser(count, 8.0)
    result: Floats = taps / taps.sum()
    return result


class Resampler:
    """Converts mono int16 PCM from ``rate_in`` to ``rate_out`` block by block.

    One rate must be an integer multiple of the other (48000 <-> 8000 or
    16000). Blocks may have any length that is a multiple of the ratio when
    decimating; state carries over, so consecutive blocks join seamlessly.
    The group delay is ``taps_per_phase / 2`` samples of the lower rate
    (2 ms at 8 kHz). :meth:`reset` forgets the history (a new stream).
    """

    def __init__(self, rate_in: int, rate_out: int, *, taps_per_phase: int = 32) -> None:
        high, low = max(rate_in, rate_out), min(rate_in, rate_out)
        if low <= 0 or high % low:
            raise ValueError(f"cannot resample {rate_in} -> {rate_out}: not an integer ratio")
        self.rate_in = rate_in
        self.rate_out = rate_out
        self.factor = high // low
        self._up = rate_out > rate_in
        self._taps = lowpass_taps(self.factor, taps_per_phase) if self.factor > 1 else None
        if self._taps is not None and self._up:
            # Polyphase bank: output phase p uses taps p, p + factor, ...
            scaled = self._taps * self.factor
            length = math.ceil(len(scaled) / self.factor) * self.factor
            padded = np.zeros(length)
            padded[: len(scaled)] = scaled
            self._phases: Floats = padded.reshape(-1, self.factor).T[:, ::-1].copy()
        self._history_len = 0 if self._taps is None else self._history_length()
        self._history: Floats = np.zeros(self._history_len)

    def _history_length(self) -> int:
        assert self._taps is not None
        if self._up:
            return int(self._phases.shape[1]) - 1
        return len(self._taps) - 1

    def reset(self) -> None:
        """Forget the carried-over samples."""
        self._history = np.zeros(self._history_len)

    def process(self, pcm: Pcm) -> Pcm:
        """Resample one block; returns ``len(pcm) * rate_out / rate_in`` samples."""
        if self._taps is None:
            return np.asarray(pcm, dtype=np.int16).copy()
        x = np.concatenate([self._history, np.asarray(pcm, dtype=np.float64)])
        if self._up:
            out = self._upsample(x, len(pcm))
        else:
            if len(pcm) % self.factor:
                raise ValueError(f"block of {len(pcm)} samples is not a multiple of {self.factor}")
            out = self._downsample(x, len(pcm))
        if self._history_len:
            self._history = x[len(x) - self._history_len :]
        result: Pcm = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        return result

    def _downsample(self, x: Floats, count: int) -> Floats:
        assert self._taps is not None
        windows = np.lib.stride_tricks.sliding_window_view(x, len(self._taps))
        picked = windows[self.factor - 1 :: self.factor][: count // self.factor]
        result: Floats = picked @ self._taps[::-1]
        return result

    def _upsample(self, x: Floats, count: int) -> Floats:
        width = self._phases.shape[1]
        windows = np.lib.stride_tricks.sliding_window_view(x, width)[:count]
        # (count, width) @ (width, factor) -> (count, factor), interleaved per input sample.
        result: Floats = (windows @ self._phases.T).reshape(-1)
        return result

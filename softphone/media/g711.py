"""G.711 (PCMU/PCMA) without FFmpeg, plus packet loss concealment for it.

The codec is a table lookup each way, so it is done here with numpy instead of
a round trip through an FFmpeg codec context: bit-exact with ITU-T G.711
decoding, nearest-level encoding. G.711 has no concealment of its own;
:class:`G711Concealer` follows the idea of ITU-T G.711 Appendix I (repeat the
last pitch period, fade out over 60 ms, cross-fade back into real audio)
in a simplified form that adds no delay.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from softphone.audio_backends.base import Pcm

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "G711Concealer",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

ULAW_SILENCE = 0xFF
"""The μ-law code for zero."""
ALAW_SILENCE = 0xD5
"""The A-law code for (nearly) zero."""

Floats = npt.NDArray[np.float64]


def _ulaw_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (codes & 0x70) >> 4
    value = (codes & 0x0F) << 4
    value = np.where(segment == 0, value + 8, (value + 0x108) << np.maximum(segment - 1, 0))
    return np.where(codes & 0x80, value, -value).astype(np.int16)


def _encoder_table(decode: npt.NDArray[np.int16], zero_code: int) -> npt.NDArray[np.uint8]:
    """For every int16 value, the code whose decoded value is nearest.

    Ties go to the level of larger magnitude, as FFmpeg's encoders do.
    """
    order = np.argsort(decode, kind="stable")
    levels = decode[order].astype(np.float64)
    codes = order.astype(np.uint8)
    # Collapse equal levels (μ-law has +0 and -0); keep the preferred zero code.
    unique_levels, first = np.unique(levels, return_index=True)
    unique_codes = codes[first]
    unique_codes[unique_levels == 0] = zero_code
    midpoints = (unique_levels[1:] + unique_levels[:-1]) / 2
    negative = np.arange(-32768, 0, dtype=np.float64)
    positive = np.arange(0, 32768, dtype=np.float64)
    index = np.concatenate(
        [
            np.searchsorted(midpoints, negative, side="left"),
            np.searchsorted(midpoints, positive, side="right"),
        ]
    )
    table: npt.NDArray[np.uint8] = unique_codes[index]
    return table


_ULAW_DECODE = _ulaw_table()
_ALAW_DECODE = _alaw_table()
_ULAW_ENCODE = _encoder_table(_ULAW_DECODE, ULAW_SILENCE)
_ALAW_ENCODE = _encoder_table(_ALAW_DECODE, ALAW_SILENCE)


def ulaw_decode(payload: bytes) -> Pcm:
    """μ-law bytes to int16 samples (one per byte)."""
    result: Pcm = _ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]
    return result


def alaw_decode(payload: bytes) -> Pcm:
    """A-law bytes to int16 samples (one per byte)."""
    result: Pcm = _ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]
    return result


def ulaw_encode(pcm: Pcm) -> bytes:
    """int16 samples to μ-law bytes (nearest quantization level)."""
    index = np.asarray(pcm, dtype=np.int16).astype(np.int32) + 32768
    return bytes(_ULAW_ENCODE[index])


def alaw_encode(pcm: Pcm) -> bytes:
    """int16 samples to A-law bytes (nearest quantization level)."""
    index = np.asarray(pcm, dtype=np.int16).astype(np.int32) + 32768
    return bytes(_ALAW_ENCODE[index])


class G711Concealer:
    """Pitch-repetition loss concealment for narrowband PCM (after G.711 Appendix I).

    Feed every decoded frame through :meth:`good` (it returns the frame,
    cross-faded from the synthetic signal when it ends a loss) and call
    :meth:`conceal` for each missing frame. Concealment repeats the last pitch
    period (found by autocorrelation over 5..15 ms) at full level for 10 ms,
    then fades it out linearly to silence at 60 ms.
    """

    def __init__(self, sample_rate: int = 8000) -> None:
        self.rate = sample_rate
        self._min_period = sample_rate * 5 // 1000
        self._max_period = sample_rate * 15 // 1000
        self._history_len = sample_rate * 4875 // 100000  # 48.75 ms, as in Appendix I
        self._history: Floats = np.zeros(self._history_len)
        self._cycle: Floats | None = None
        self._position = 0
        self._erased = 0
        self._hold = sample_rate // 100  # full level for 10 ms
        self._fade = sample_rate * 50 // 1000  # then down to nothing over 50 ms

    @property
    def concealing(self) -> bool:
        """True between a :meth:`conceal` and the next :meth:`good` frame."""
        return self._cycle is not None

    def reset(self) -> None:
        """Forget the history (a new stream)."""
        self._history = np.zeros(self._history_len)
        self._cycle = None
        self._erased = 0

    def good(self, pcm: Pcm) -> Pcm:
        """Record a received frame; returns it (faded in if it ends a loss)."""
        x = np.asarray(pcm, dtype=np.float64)
        if self._cycle is not None:
            extra = max(0, self._erased // (self.rate // 100) - 1) * (self.rate // 250)
            overlap = min(len(x), len(self._cycle) // 4 + extra)
            overlap = min(overlap, self.rate // 100)
            if overlap > 0:
                synthetic = self._synthesize(overlap)
                ramp = np.linspace(0.0, 1.0, overlap, endpoint=False)
                x = x.copy()
                x[:overlap] = synthetic * (1 - ramp) + x[:overlap] * ramp
            self._cycle = None
            self._erased = 0
        self._remember(x)
        out: Pcm = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
        return out

    def conceal(self, samples: int) -> Pcm:
        """Synthesize ``samples`` samples for a missing stretch of audio."""
        if self._cycle is None:
            period = self._pitch_period()
            self._cycle = self._history[-period:].copy()
            self._position = 0
        out = self._synthesize(samples)
        self._remember(out)
        result: Pcm = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        return result

    def _synthesize(self, samples: int) -> Floats:
        """The next ``samples`` of the repeated period, with the fade applied."""
        cycle = self._cycle
        assert cycle is not None
        index = (self._position + np.arange(samples)) % len(cycle)
        elapsed = self._erased + np.arange(samples)
        gain = np.clip(1.0 - (elapsed - self._hold) / self._fade, 0.0, 1.0)
        self._position = int((self._position + samples) % len(cycle))
        self._erased += samples
        result: Floats = cycle[index] * gain
        return result

    def _pitch_period(self) -> int:
        """The lag in [5, 15] ms that best predicts the last 10 ms from the audio before it."""
        h = self._history
        window = self.rate // 100
        target = h[-window:]
        lags = np.arange(self._min_period, self._max_period + 1)
        starts = len(h) - window - lags
        segments = np.stack([h[s : s + window] for s in starts])
        energy = np.einsum("ij,ij->i", segments, segments) + 1e-9
        score = (segments @ target) / np.sqrt(energy)
        return int(lags[int(np.argmax(score))])

    def _remember(self, x: Floats) -> None:
        self._history = np.concatenate([self._history, x])[-self._history_len :]

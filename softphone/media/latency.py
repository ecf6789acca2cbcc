"""Mouth-to-ear delay of a media path, measured from the audio itself.

A :class:`TimedSource` plays a known clip into a call and remembers when each
block was read; a :class:`TimedSink` records what came out and when each block
was written. :func:`delay_at` finds where a stretch of the output lies in the
clip by cross-correlation and returns the time between that audio being read
and being written: the delay the SDK, the network and the gateway added
(device buffers excluded). Measuring at several points shows whether the delay
changed, e.g. after a lost packet. Used by the tests and the benchmarks.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from softphone.audio_backends.analysis import align_offset
from softphone.audio_backends.base import SAMPLE_RATE, Pcm

__all__ = ["Delay", "TimedSink", "TimedSource", "delay_at"]


class _Timeline:
    """Block start indices and the times they were handled, for index → time lookups."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.times: list[float] = []
        self.total = 0

    def add(self, count: int, at: float) -> None:
        self.starts.append(self.total)
        self.times.append(at)
        self.total += count

    def time_of(self, index: int) -> float | None:
        """When sample ``index`` was handled: its block's time plus its offset in the block."""
        if not 0 <= index < self.total:
            return None
        block = bisect.bisect_right(self.starts, index) - 1
        return self.times[block] + (index - self.starts[block]) / SAMPLE_RATE


class TimedSource:
    """An :class:`AudioSource` that plays ``clip`` once, then silence, timing each read."""

    def __init__(self, clip: Pcm, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clip = np.asarray(clip, dtype=np.int16)
        self._clock = clock
        self._reads = _Timeline()

    @property
    def samples_read(self) -> int:
        """Samples handed out so far."""
        return self._reads.total

    def read(self, samples: int) -> Pcm:
        """The next ``samples`` of the clip (zeros past its end)."""
        start = self._reads.total
        out = np.zeros(samples, dtype=np.int16)
        chunk = self.clip[start : start + samples]
        out[: len(chunk)] = chunk
        self._reads.add(samples, self._clock())
        return out

    def time_of(self, index: int) -> float | None:
        """When clip sample ``index`` was read (None if not yet)."""
        return self._reads.time_of(index)

    def close(self) -> None:
        """Nothing to release."""


class TimedSink:
    """An :class:`AudioSink` that keeps everything written and when each block arrived."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._blocks: list[Pcm] = []
        self._writes = _Timeline()

    @property
    def samples(self) -> int:
        """Samples written so far."""
        return self._writes.total

    def write(self, pcm: Pcm) -> None:
        """Record one block."""
        self._blocks.append(np.asarray(pcm, dtype=np.int16).copy())
        self._writes.add(len(pcm), self._clock())

    def pcm(self) -> Pcm:
        """Everything written, in order."""
        if not self._blocks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._blocks)

    def time_of(self, index: int) -> float | None:
        """When output sample ``index`` was written (None if not yet)."""
        return self._writes.time_of(index)

    def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True, slots=True)
class Delay:
    """One measurement by :func:`delay_at`."""

    seconds: float
    """Time from the clip audio being read to the same audio being written."""
    clip_index: int
    """Where in the clip the measured output stretch came from."""
    correlation: float
    """Normalized correlation of the match (1.0: identical waveforms)."""


def delay_at(
    source: TimedSource,
    sink: TimedSink,
    output_index: int,
    *,
    window_s: float = 0.3,
    max_delay_s: float = 1.0,
    min_correlation: float = 0.5,
) -> Delay | None:
    """The delay of the output audio that starts at sink sample ``output_index``.

    None when that stretch is not (yet) recorded, matches nothing in the clip
    (silence, heavy concealment) or correlates below ``min_correlation``.
    """
    window = int(window_s * SAMPLE_RATE)
    output = sink.pcm()[output_index : output_index + window]
    if len(output) < window or not np.any(output):
        return None
    # Output sample i plays clip sample i - lag; search lags up to max_delay_s either way.
    span = int(max_delay_s * SAMPLE_RATE)
    lo = max(0, output_index - span)
    hi = min(len(source.clip), output_index + window + span)
    reference = source.clip[lo:hi]
    if len(reference) < window:
        return None
    offset = align_offset(reference, output, max_lag_s=(hi - lo) / SAMPLE_RATE)
    clip_index = lo - offset
    if clip_index < 0 or clip_index + window > len(source.clip):
        return None
    matched = source.clip[clip_index : clip_index + window].astype(np.float64)
    got = output.astype(np.float64)
    denominator = float(np.linalg.norm(matched) * np.linalg.norm(got))
    correlation = float(np.dot(matched, got) / denominator) if denominator else 0.0
    if correlation < min_correlation:
        return None
    read_at = source.time_of(clip_index)
    written_at = sink.time_of(output_index)
    if read_at is None or written_at is None:
        return None
    return Delay(written_at - read_at, clip_index, correlation)

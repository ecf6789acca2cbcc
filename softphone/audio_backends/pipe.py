"""A bounded PCM pipe: a sink on one face, a source on the other.

The gateway bridges two media legs with two pipes (and echoes with one looped
back); the output mixer gives each of its inputs one. The pipe bounds its
backlog: when the writer runs ahead of the reader (bursty arrival), the oldest
audio is dropped rather than letting latency grow without limit.
"""

from __future__ import annotations

import threading

import numpy as np

from softphone.audio_backends.base import FRAME_SAMPLES, SAMPLE_RATE, Pcm

MAX_BACKLOG_MS = 120


class PcmPipe:
    """A bounded FIFO of 48 kHz mono int16 PCM with sink and source faces."""

    def __init__(self, max_backlog_ms: int = MAX_BACKLOG_MS) -> None:
        self._chunks: list[Pcm] = []
        self._buffered = 0
        self._max = SAMPLE_RATE * max_backlog_ms // 1000
        self._lock = threading.Lock()
        self._closed = False
        self.dropped_samples = 0
        self.underrun_samples = 0

    @property
    def buffered_samples(self) -> int:
        """Samples written and not yet read."""
        return self._buffered

    def write(self, pcm: Pcm) -> None:
        """Sink face: queue ``pcm``; drop the oldest audio past the backlog limit."""
        if self._closed or not len(pcm):
            return
        with self._lock:
            self._chunks.append(np.asarray(pcm, dtype=np.int16))
            self._buffered += len(pcm)
            excess = self._buffered - self._max
            if excess > 0:
                self._take(excess)
                self.dropped_samples += excess

    def read(self, samples: int = FRAME_SAMPLES) -> Pcm:
        """Source face: the next ``samples`` samples, zero-padded on underrun."""
        with self._lock:
            out = self._take(min(samples, self._buffered))
        if len(out) < samples:
            self.underrun_samples += samples - len(out)
            out = np.concatenate([out, np.zeros(samples - len(out), dtype=np.int16)])
        return out

    def _take(self, samples: int) -> Pcm:
        parts: list[Pcm] = []
        needed = samples
        while needed > 0 and self._chunks:
            head = self._chunks[0]
            if len(head) <= needed:
                parts.append(head)
                self._chunks.pop(0)
                needed -= len(head)
            else:
                parts.append(head[:needed])
                self._chunks[0] = head[needed:]
                needed = 0
        self._buffered -= samples - needed
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def close(self) -> None:
        """Stop accepting audio; reads return silence."""
        with self._lock:
            self._closed = True
            self._chunks.clear()
            self._buffered = 0

"""A clocked aiortc audio track that pulls 20 ms frames from an :class:`AudioSource`.

aiortc's sender does no pacing: it sends whatever its track yields, so a
track that falls behind and catches up sends a burst (aiortc-probe.md §4).
This track keeps time with the event loop's monotonic clock and, when late
by more than a frame, *drops* the overdue frames (reading and discarding
their audio so the source stays in step with real time) instead of bursting.
The RTP timestamps then jump over the gap, which is what a receiver expects.
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from softphone.audio_backends.base import FRAME_SAMPLES, SAMPLE_RATE, AudioSource, Pcm

__all__ = ["FRAME_SECONDS", "MAX_CATCH_UP_FRAMES", "SourceTrack"]

FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
"""Duration of one frame (0.02 s)."""
MAX_CATCH_UP_FRAMES = 50
"""At most this many overdue frames are read and discarded after a stall; older ones are skipped."""
_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


class SourceTrack(MediaStreamTrack):
    """Audio track: 48 kHz mono s16 frames of 960 samples, pts in 1/48000 units.

    ``muted`` sends zeros (RTP keeps flowing, like a disabled browser track);
    the source is still read so a live input does not build up a backlog.
    :meth:`replace_source` swaps the input without renegotiation. The track
    never closes its sources: their owner does.
    """

    kind = "audio"

    def __init__(
        self, source: AudioSource | None, *, clock: Callable[[], float] | None = None
    ) -> None:
        """``clock`` (monotonic seconds) defaults to the running event loop's ``time``."""
        super().__init__()
        self._source = source
        self._clock = clock
        self.muted = False
        self._start: float | None = None
        self._index = 0
        self.frames_sent = 0
        self.frames_dropped = 0

    @property
    def source(self) -> AudioSource | None:
        """The current input (None sends silence)."""
        return self._source

    def replace_source(self, source: AudioSource | None) -> None:
        """Read from ``source`` from the next frame on (None sends silence)."""
        self._source = source

    on_pcm: Callable[[Pcm], None] | None = None
    """Called with each 20 ms block as sent (silence while muted): the call's input meter."""

    def _read(self) -> Pcm:
        source = self._source
        if source is None:
            return np.zeros(FRAME_SAMPLES, dtype=np.int16)
        pcm = np.asarray(source.read(FRAME_SAMPLES), dtype=np.int16).reshape(-1)
        if pcm.shape[0] != FRAME_SAMPLES:  # be lenient with sources that get it wrong
            fixed = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            fixed[: min(FRAME_SAMPLES, pcm.shape[0])] = pcm[:FRAME_SAMPLES]
            pcm = fixed
        return pcm

    async def recv(self) -> AudioFrame:
        """Wait for the next 20 ms slot and return its frame (skipping overdue slots)."""
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock() if self._clock else asyncio.get_running_loop().time()
        if self._start is None:
            self._start, self._index = now, 0
        else:
            self._index += 1
            due = self._start + self._index * FRAME_SECONDS
            if now - due >= FRAME_SECONDS:
                # Late by a frame or more: drop the overdue slots, keep the newest.
                current = int((now - self._start) / FRAME_SECONDS)
                skipped = current - self._index
                for _ in range(min(skipped, MAX_CATCH_UP_FRAMES)):
                    self._read()
                self.frames_dropped += skipped
                self._index = current
            elif due > now:
                await asyncio.sleep(due - now)
            if self.readyState != "live":
                raise MediaStreamError
        pcm = self._read()
        if self.muted:
            pcm = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        if self.on_pcm is not None:
            self.on_pcm(pcm)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._index * FRAME_SAMPLES
        frame.time_base = _TIME_BASE
        self.frames_sent += 1
        return frame

"""``OutputMixer``: several clocked streams into one output sink.

The speaker hears the call and the Device's sounds (DTMF feedback, the
disconnect tone) at the same time; writing both into one sink would interleave
their blocks. The mixer gives each producer its own input pipe and, every
20 ms, sums whatever the inputs hold into one frame for the sink. It only runs
while some input has audio, so an idle Device costs nothing.

One input must have one producer: a pipe is a FIFO, so two producers writing
into the same input interleave their frames (each then plays at half speed,
with a phase jump at every frame boundary) instead of being summed. The
helper therefore gives every producer (each sound playback, each call) its own
route and input, and keeps one mixer, hence one clock, per sink.

Because the mixer produces exactly what the sink plays, it is also where the
echo canceller's reference comes from: every frame written to the sink is
handed to the mixer's ``taps`` with the time it will be heard (now plus the
sink's playout delay, :class:`~softphone.plugins.types.PlayoutTiming`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import numpy as np

from softphone.audio_backends.base import FRAME_MS, FRAME_SAMPLES, AudioSink, Pcm
from softphone.audio_backends.pipe import PcmPipe
from softphone.plugins.types import playout_delay_s

log = logging.getLogger("softphone.audio")

PlayTap = Callable[[Pcm, float], None]
"""Told of each frame the mixer writes and the loop time at which it will be heard."""

IDLE_STOP_FRAMES = 25
"""Stop the clock after this many frames (0.5 s) with no input audio."""


class MixerInput:
    """One producer's face of the mixer: an AudioSink feeding a bounded pipe.

    :meth:`close` detaches at once (queued audio is dropped: a stopped sound or
    an ended call goes quiet immediately); :meth:`finish` detaches once the
    queued audio has been mixed (a sound that played to its end keeps its
    last frames). Either way later writes are ignored, so a stale input can
    neither feed nor wake the mixer again.
    """

    def __init__(self, mixer: OutputMixer) -> None:
        self._mixer = mixer
        self.pipe = PcmPipe(max_backlog_ms=200)
        self.finishing = False
        self.closed = False

    def write(self, pcm: Pcm) -> None:
        """Queue ``pcm`` for mixing and make sure the mixer clock runs."""
        if self.closed or self.finishing:
            return
        self.pipe.write(pcm)
        self._mixer.wake()

    def finish(self) -> None:
        """No more audio: detach once what is queued has been mixed."""
        if self.closed or self.finishing:
            return
        self.finishing = True
        if not self.pipe.buffered_samples:
            self.close()

    def close(self) -> None:
        """Detach from the mixer now, dropping queued audio."""
        self.closed = True
        self.pipe.close()
        self._mixer.remove(self)


class OutputMixer:
    """Sums its inputs 20 ms at a time into ``sink``, on a single clock task."""

    def __init__(self, sink: AudioSink) -> None:
        self.sink = sink
        self._inputs: list[MixerInput] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.taps: list[PlayTap] = []
        """Called with every frame written to the sink and when it will be heard."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (a closed mixer never restarts its clock)."""
        return self._closed

    @property
    def running(self) -> bool:
        """Whether the clock task is running now."""
        return self._task is not None and not self._task.done()

    def input(self) -> MixerInput:
        """A new input for one producer (close or finish it to detach)."""
        handle = MixerInput(self)
        if self._closed:
            handle.closed = True  # detached from the start: writes are dropped
        else:
            self._inputs.append(handle)
        return handle

    def remove(self, handle: MixerInput) -> None:
        """Detach ``handle``."""
        if handle in self._inputs:
            self._inputs.remove(handle)

    def wake(self) -> None:
        """Start the clock if it is not running (called on every write)."""
        if self._closed or self.running:
            return
        with contextlib.suppress(RuntimeError):
            self._task = asyncio.get_running_loop().create_task(self._run())

    def mix_once(self) -> Pcm | None:
        """Sum one frame from the inputs that hold audio; None when all are empty.

        Finished inputs whose audio has now all been mixed are detached.
        """
        active = [h for h in self._inputs if h.pipe.buffered_samples]
        for handle in [h for h in self._inputs if h.finishing and h not in active]:
            handle.close()
        if not active:
            return None
        total = np.zeros(FRAME_SAMPLES, dtype=np.int32)
        for handle in active:
            total += handle.pipe.read(FRAME_SAMPLES)
            if handle.finishing and not handle.pipe.buffered_samples:
                handle.close()
        return np.clip(total, -32768, 32767).astype(np.int16)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        idle = 0
        while idle < IDLE_STOP_FRAMES:
            frame = self.mix_once()
            if frame is None:
                idle += 1
            else:
                idle = 0
                self.play(frame, loop.time())
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * FRAME_MS / 1000 - loop.time()))

    def play(self, frame: Pcm, now: float) -> None:
        """Write ``frame`` to the sink at loop time ``now`` and tell the taps when it is heard.

        The delay is read before the write: the frame is heard after what is
        queued ahead of it. A failing tap is detached (the sink keeps playing).
        """
        heard_at = now + playout_delay_s(self.sink) if self.taps else now
        self.sink.write(frame)
        for tap in list(self.taps):
            try:
                tap(frame, heard_at)
            except Exception:
                log.exception("output tap %r failed; detaching it", tap)
                self.taps.remove(tap)

    def close(self) -> None:
        """Stop the clock for good and drop the inputs."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        for handle in list(self._inputs):
            handle.closed = True
        self._inputs.clear()
        self.taps.clear()

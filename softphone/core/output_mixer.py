"""``OutputMixer``: several clocked streams into one output sink.

The speaker hears the call and the Device's sounds (DTMF feedback, the
disconnect tone) at the same time; writing both into one sink would interleave
their blocks. The mixer gives each producer its own input pipe and, every
20 ms, sums whatever the inputs hold into one frame for the sink. It only runs
while some input has audio, so an idle Device costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np

from softphone.audio_backends.base import FRAME_MS, FRAME_SAMPLES, AudioSink, Pcm
from softphone.audio_backends.pipe import PcmPipe

IDLE_STOP_FRAMES = 25
"""Stop the clock after this many frames (0.5 s) with no input audio."""


class MixerInput:
    """One producer's face of the mixer: an AudioSink feeding a bounded pipe."""

    def __init__(self, mixer: OutputMixer) -> None:
        self._mixer = mixer
        self.pipe = PcmPipe(max_backlog_ms=200)

    def write(self, pcm: Pcm) -> None:
        """Queue ``pcm`` for mixing and make sure the mixer clock runs."""
        self.pipe.write(pcm)
        self._mixer.wake()

    def close(self) -> None:
        """Detach from the mixer."""
        self._mixer.remove(self)


class OutputMixer:
    """Sums its inputs 20 ms at a time into ``sink``."""

    def __init__(self, sink: AudioSink) -> None:
        self.sink = sink
        self._inputs: list[MixerInput] = []
        self._task: asyncio.Task[None] | None = None

    def input(self) -> MixerInput:
        """A new input (close it to detach)."""
        handle = MixerInput(self)
        self._inputs.append(handle)
        return handle

    def remove(self, handle: MixerInput) -> None:
        """Detach ``handle``."""
        if handle in self._inputs:
            self._inputs.remove(handle)

    def wake(self) -> None:
        """Start the clock if it is not running (called on every write)."""
        if self._task is None or self._task.done():
            with contextlib.suppress(RuntimeError):
                self._task = asyncio.get_running_loop().create_task(self._run())

    def mix_once(self) -> Pcm | None:
        """Sum one frame from the inputs that hold audio; None when all are empty."""
        active = [h for h in self._inputs if h.pipe.buffered_samples]
        if not active:
            return None
        total = np.zeros(FRAME_SAMPLES, dtype=np.int32)
        for handle in active:
            total += handle.pipe.read(FRAME_SAMPLES)
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
                self.sink.write(frame)
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * FRAME_MS / 1000 - loop.time()))

    def close(self) -> None:
        """Stop the clock and drop the inputs."""
        if self._task is not None:
            self._task.cancel()
        self._inputs.clear()

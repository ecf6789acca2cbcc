"""What an application call hears: prompts queued one after another, silence between.

What: :class:`PromptPlayer` is the :class:`~softphone.audio_backends.base.AudioSource`
of the gateway's leg in an application call. ``<Say>`` and ``<Play>`` audio is queued
on it with the ref of the action that asked; the media layer pulls 20 ms at a time,
and when the last sample of a prompt has been pulled (that is, sent to the caller) the
player reports ``done(ref)``. ``stop(ref)`` drops a prompt (a digit interrupted a
``<Gather>``), mid-sentence.

Why pulled, not timed: the prompt is "heard" when the media clock took it, so a
``<Gather>``'s timeout starts when the caller has actually heard the question,
whatever the encoder or the event loop was doing meanwhile.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from softphone.audio_backends.base import Pcm, silence


class PromptPlayer:
    """A queue of ``(ref, pcm)`` prompts read as one audio source."""

    def __init__(self, on_done: Callable[[int], None]) -> None:
        """``on_done(ref)`` is called (from :meth:`read`) once a prompt is fully read."""
        self._on_done = on_done
        self._queue: deque[tuple[int, Pcm]] = deque()
        self._offset = 0
        self._closed = False

    @property
    def playing(self) -> int | None:
        """The ref of the prompt being played, or None when silent."""
        return self._queue[0][0] if self._queue else None

    def play(self, ref: int, pcm: Pcm) -> None:
        """Queue ``pcm`` after whatever is queued; an empty one is done at the next read."""
        if not self._closed:
            self._queue.append((ref, np.asarray(pcm, dtype=np.int16)))

    def stop(self, ref: int) -> None:
        """Drop the prompt ``ref`` (playing or queued) without reporting it done."""
        if self._queue and self._queue[0][0] == ref:
            self._offset = 0
        self._queue = deque(item for item in self._queue if item[0] != ref)

    def read(self, samples: int) -> Pcm:
        """The next ``samples`` of the queue (silence once it runs dry)."""
        parts: list[Pcm] = []
        needed = samples
        finished: list[int] = []
        while needed and self._queue:
            ref, pcm = self._queue[0]
            chunk = pcm[self._offset : self._offset + needed]
            parts.append(chunk)
            needed -= len(chunk)
            self._offset += len(chunk)
            if self._offset >= len(pcm):
                self._queue.popleft()
                self._offset = 0
                finished.append(ref)
        if needed:
            parts.append(silence(needed))
        for ref in finished:
            self._on_done(ref)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def close(self) -> None:
        """Forget every prompt; reads return silence."""
        self._closed = True
        self._queue.clear()
        self._offset = 0


__all__ = ["PromptPlayer"]

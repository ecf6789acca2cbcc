"""In-process audio pipes: a source an app feeds and a sink that keeps what it hears.

``MemorySource`` and ``MemorySink`` are how applications and tests move PCM in
and out of a call without a device or a file: an app ``feed``s synthesized
speech into the source (possibly from a worker thread) and reads the far end's
audio back from the sink. ``PcmFifo`` is the chunk queue they (and the file
source) share, and ``as_pcm`` is the one place incoming arrays are checked
against the backend contract.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import numpy.typing as npt

from softphone.audio_backends.base import SAMPLE_RATE, Pcm, silence

__all__ = ["MemorySink", "MemorySource", "PcmFifo", "as_pcm"]


def as_pcm(pcm: npt.ArrayLike, *, copy: bool = False) -> Pcm:
    """Check ``pcm`` against the contract and return it as a 1-D ``int16`` array.

    Other integer dtypes are clipped into range (a convenience for callers who
    mix in ``int32`` arithmetic); floats and multi-channel arrays are rejected
    because silently truncating or interleaving them would corrupt the audio.
    ``copy=True`` guarantees the result does not alias the caller's buffer,
    which matters for anything that keeps the array after returning.
    """
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise ValueError(f"PCM must be a 1-D mono array, got shape {arr.shape}")
    if arr.dtype == np.int16:
        same: Pcm = arr.astype(np.int16, copy=copy)
        return same
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"PCM must be int16 samples, got dtype {arr.dtype}")
    clipped: Pcm = np.clip(arr, -32768, 32767).astype(np.int16)
    return clipped


class PcmFifo:
    """A first-in first-out queue of PCM chunks, read back in arbitrary sizes.

    Keeping the chunks as they were pushed (instead of concatenating on every
    push) makes both ends O(samples moved). Not thread-safe: owners lock.
    """

    def __init__(self) -> None:
        self._chunks: deque[Pcm] = deque()
        self._head = 0  # samples of ``_chunks[0]`` already consumed
        self._size = 0

    def __len__(self) -> int:
        """Samples queued and not yet read."""
        return self._size

    def push(self, pcm: Pcm) -> None:
        """Append ``pcm`` (kept by reference: pass an array you will not mutate)."""
        if pcm.size:
            self._chunks.append(pcm)
            self._size += int(pcm.size)

    def pop(self, samples: int) -> Pcm:
        """Remove and return exactly ``samples`` samples, zero-padded if the queue runs dry."""
        out = silence(samples)
        filled = 0
        while filled < samples and self._chunks:
            chunk = self._chunks[0]
            take = min(samples - filled, int(chunk.size) - self._head)
            out[filled : filled + take] = chunk[self._head : self._head + take]
            filled += take
            self._head += take
            if self._head == chunk.size:
                self._chunks.popleft()
                self._head = 0
        self._size -= filled
        return out

    def clear(self) -> None:
        """Drop everything queued."""
        self._chunks.clear()
        self._head = 0
        self._size = 0


class MemorySource:
    """An ``AudioSource`` that plays PCM handed to it, from any thread.

    ``read`` never blocks: when the producer falls behind, the gap is silence
    (the media layer's clock keeps running, as a real microphone's would).
    With ``loop=True`` everything ever fed is replayed from the start once the
    queue drains, which suits hold music and test signals.
    """

    def __init__(self, pcm: Pcm | None = None, loop: bool = False) -> None:
        self._lock = threading.Lock()
        self._fifo = PcmFifo()
        self._loop = loop
        self._history: list[Pcm] = []  # only kept when looping
        self._history_samples = 0
        self._closed = False
        if pcm is not None:
            self.feed(pcm)

    @property
    def available(self) -> int:
        """Samples fed and not yet read (ignoring any loop replay)."""
        with self._lock:
            return len(self._fifo)

    @property
    def closed(self) -> bool:
        """Whether ``close`` has been called."""
        return self._closed

    def feed(self, pcm: Pcm) -> None:
        """Queue ``pcm`` after everything fed so far; ignored once closed.

        The array is copied, so the caller may reuse its buffer immediately.
        """
        chunk = as_pcm(pcm, copy=True)
        with self._lock:
            if self._closed:
                return
            self._fifo.push(chunk)
            if self._loop:
                self._history.append(chunk)
                self._history_samples += int(chunk.size)

    def read(self, samples: int) -> Pcm:
        """Return exactly ``samples`` samples: queued audio, then zeros (or a replay)."""
        if samples < 0:
            raise ValueError(f"samples must be >= 0, got {samples}")
        with self._lock:
            if self._closed:
                return silence(samples)
            if self._loop and self._history_samples:
                while len(self._fifo) < samples:
                    for chunk in self._history:
                        self._fifo.push(chunk)
            return self._fifo.pop(samples)

    def close(self) -> None:
        """Drop queued audio; later reads are silence and later feeds are ignored."""
        with self._lock:
            self._closed = True
            self._fifo.clear()
            self._history.clear()
            self._history_samples = 0


class MemorySink:
    """An ``AudioSink`` that keeps what is written so apps and tests can inspect it.

    ``max_seconds`` bounds memory for long calls by keeping only the most
    recent audio; ``samples_written`` still counts everything ever written.
    """

    def __init__(self, max_seconds: float | None = None) -> None:
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self._max_samples = (
            None if max_seconds is None else max(1, round(max_seconds * SAMPLE_RATE))
        )
        self._lock = threading.Lock()
        self._chunks: deque[Pcm] = deque()
        self._kept = 0
        self._written = 0
        self._closed = False

    @property
    def samples_written(self) -> int:
        """Total samples accepted since creation (or the last ``clear``)."""
        with self._lock:
            return self._written

    @property
    def closed(self) -> bool:
        """Whether ``close`` has been called."""
        return self._closed

    def write(self, pcm: Pcm) -> None:
        """Keep a copy of ``pcm``; dropped silently once the sink is closed."""
        chunk = as_pcm(pcm, copy=True)
        with self._lock:
            if self._closed or not chunk.size:
                return
            self._chunks.append(chunk)
            self._kept += int(chunk.size)
            self._written += int(chunk.size)
            self._trim()

    def _trim(self) -> None:
        """Forget the oldest audio beyond ``max_seconds`` (lock held)."""
        limit = self._max_samples
        if limit is None:
            return
        while self._kept - int(self._chunks[0].size) >= limit:
            self._kept -= int(self._chunks.popleft().size)
        excess = self._kept - limit
        if excess > 0:
            self._chunks[0] = self._chunks[0][excess:]
            self._kept = limit

    def pcm(self) -> Pcm:
        """Everything kept so far, concatenated into one array (a copy)."""
        with self._lock:
            if not self._chunks:
                return silence(0)
            return np.concatenate(list(self._chunks))

    def clear(self) -> None:
        """Forget the audio kept so far and reset ``samples_written``."""
        with self._lock:
            self._chunks.clear()
            self._kept = 0
            self._written = 0

    def close(self) -> None:
        """Stop accepting audio; what was kept stays readable through ``pcm``."""
        with self._lock:
            self._closed = True

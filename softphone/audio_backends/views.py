"""Borrowed views of sources and sinks: use a stream without taking ownership of it.

Whoever closes a stream owns it. A call closes its input when it ends, yet a
device the app selected (``device.audio.set_input_device``) or a memory pipe
the app created must outlive the call. Handing out a view whose ``close`` only
detaches keeps ownership where it belongs.
"""

from __future__ import annotations

from softphone.audio_backends.base import AudioSink, AudioSource, Pcm, silence

__all__ = ["BorrowedSink", "BorrowedSource"]


class BorrowedSource:
    """An ``AudioSource`` reading from ``source``; ``close`` detaches without closing it."""

    def __init__(self, source: AudioSource) -> None:
        self.source: AudioSource | None = source

    def read(self, samples: int) -> Pcm:
        """Read from the borrowed source; silence once detached."""
        source = self.source
        return source.read(samples) if source is not None else silence(samples)

    def close(self) -> None:
        """Detach; the borrowed source stays open for its owner."""
        self.source = None


class BorrowedSink:
    """An ``AudioSink`` writing to ``sink``; ``close`` detaches without closing it."""

    def __init__(self, sink: AudioSink) -> None:
        self.sink: AudioSink | None = sink

    def write(self, pcm: Pcm) -> None:
        """Write to the borrowed sink; dropped once detached."""
        sink = self.sink
        if sink is not None:
            sink.write(pcm)

    def close(self) -> None:
        """Detach; the borrowed sink stays open for its owner."""
        self.sink = None

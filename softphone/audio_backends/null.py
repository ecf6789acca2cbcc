"""Backends that produce nothing and swallow everything.

``NullSource`` (alias ``SilenceSource``) stands in for a microphone when a call
should send silence, e.g. a headless receiver or a muted leg; ``NullSink``
stands in for a speaker when remote audio is not wanted but the pipeline must
still drain, and counts what it discards so tests can see audio flowing.
"""

from __future__ import annotations

from softphone.audio_backends.base import Pcm, silence

__all__ = ["NullSink", "NullSource", "SilenceSource"]


class NullSource:
    """An ``AudioSource`` that always returns silence."""

    def __init__(self) -> None:
        self._samples_read = 0

    @property
    def samples_read(self) -> int:
        """Total samples handed out, so tests can see the source being pulled."""
        return self._samples_read

    def read(self, samples: int) -> Pcm:
        """Return ``samples`` zeros."""
        if samples < 0:
            raise ValueError(f"samples must be >= 0, got {samples}")
        self._samples_read += samples
        return silence(samples)

    def close(self) -> None:
        """Nothing to release."""


SilenceSource = NullSource
"""The same source under the name that says what it sounds like."""


class NullSink:
    """An ``AudioSink`` that discards audio and counts the samples it was given."""

    def __init__(self) -> None:
        self._samples_written = 0

    @property
    def samples_written(self) -> int:
        """Total samples written and discarded."""
        return self._samples_written

    def write(self, pcm: Pcm) -> None:
        """Count and drop ``pcm``."""
        self._samples_written += int(pcm.size)

    def close(self) -> None:
        """Nothing to release."""

"""``RemoteAudio``: where a call's received audio goes, fanned out to any number of sinks.

It is itself an :class:`~softphone.audio_backends.base.AudioSink`, handed to the
peer connection; apps add sinks to record, play or redirect what the far end
says (the Python analogue of the JS ``call.on('audio', element)``).
"""

from __future__ import annotations

import logging

from softphone.audio_backends.base import AudioSink, Pcm

log = logging.getLogger("softphone.remote_audio")


class RemoteAudio:
    """A fan-out sink: every written block goes to each attached sink, in order."""

    def __init__(self) -> None:
        self._sinks: list[AudioSink] = []
        self.samples_received = 0

    def add_sink(self, sink: AudioSink) -> None:
        """Also send remote audio to ``sink`` from now on."""
        if sink not in self._sinks:
            self._sinks.append(sink)

    def remove_sink(self, sink: AudioSink) -> None:
        """Stop sending remote audio to ``sink`` (it is not closed)."""
        if sink in self._sinks:
            self._sinks.remove(sink)

    @property
    def sinks(self) -> list[AudioSink]:
        """The attached sinks."""
        return list(self._sinks)

    def write(self, pcm: Pcm) -> None:
        """Deliver one block to every sink; a failing sink is logged and detached."""
        self.samples_received += len(pcm)
        for sink in list(self._sinks):
            try:
                sink.write(pcm)
            except Exception:
                log.exception("remote audio sink %r failed; detaching it", sink)
                self._sinks.remove(sink)

    def close(self) -> None:
        """Detach all sinks (their owners close them)."""
        self._sinks.clear()

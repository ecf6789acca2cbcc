"""The stream plumbing behind ``device.audio``: processed inputs and routed outputs.

* :class:`ProcessedInput`: an acquired input, run through the local processor
  chain (JS ``addProcessor``) and metered for ``inputVolume``. Processors can be
  swapped while a call reads from it.
* :class:`RemoteChain`: remote processors applied to pushed audio. Processors
  work on sources (pull), remote audio arrives pushed, so each block is fed to
  the chain's input and the same number of samples read from its output:
  sample-for-sample processors add no latency.
* :class:`OutputRoute`: one producer's path to the devices of an output
  collection (speaker or ringtone), through one mixer per device, so a sound
  and the call can play on the same device at once, and a change of the
  selected devices moves the producer's audio at the next block.
* :class:`CallOutput`: a call's remote audio: remote processors, then the
  speaker route and any sinks plugins asked for (``softphone_remote_audio``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from softphone.audio_backends.base import AudioSink, AudioSource, Pcm, silence
from softphone.audio_backends.memory import PcmFifo
from softphone.core.output_mixer import MixerInput, OutputMixer
from softphone.plugins.types import AudioProcessor

__all__ = ["CallOutput", "OutputRoute", "ProcessedInput", "RemoteChain", "call_soon_or_run"]

log = logging.getLogger("softphone.audio")


def call_soon_or_run(result: Any) -> None:
    """Run a possibly-async cleanup result: schedule an awaitable, ignore anything else."""
    if inspect.isawaitable(result):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            return
        task = asyncio.ensure_future(result)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("audio processor cleanup failed: %s", task.exception())


async def _build_chain(
    head: AudioSource, processors: Sequence[AudioProcessor]
) -> list[tuple[AudioProcessor, AudioSource]]:
    """Create one processed stream per processor, each reading the previous one."""
    chain: list[tuple[AudioProcessor, AudioSource]] = []
    try:
        for processor in processors:
            created = processor.create_processed_stream(head)
            head = await created if inspect.isawaitable(created) else created
            chain.append((processor, head))
    except BaseException:
        await _destroy_chain(chain)
        raise
    return chain


async def _destroy_chain(chain: Iterable[tuple[AudioProcessor, AudioSource]]) -> None:
    for processor, stream in reversed(list(chain)):
        try:
            result = processor.destroy_processed_stream(stream)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("destroy_processed_stream failed")


class ProcessedInput:
    """An acquired input (``raw``) behind the local processor chain, with a meter tap.

    It is an ``AudioSource``. ``close`` destroys the chain and, when ``owns_raw``,
    closes ``raw``. ``on_read(pcm)`` sees every block handed out (the meter);
    ``last_read`` is the loop time of the last read, so the volume poller can
    tell whether a call is reading.
    """

    def __init__(
        self,
        raw: AudioSource,
        *,
        owns_raw: bool = True,
        on_read: Callable[[Pcm], None] | None = None,
    ) -> None:
        self.raw = raw
        self.owns_raw = owns_raw
        self.on_read = on_read
        self._chain: list[tuple[AudioProcessor, AudioSource]] = []
        self._closed = False
        self.last_read: float | None = None

    @property
    def head(self) -> AudioSource:
        """What reads return: the last processed stream, or the raw input."""
        return self._chain[-1][1] if self._chain else self.raw

    @property
    def processed(self) -> AudioSource | None:
        """The processed stream, None without processors."""
        return self._chain[-1][1] if self._chain else None

    async def set_processors(self, processors: Sequence[AudioProcessor]) -> None:
        """(Re)build the chain; reads switch to the new chain at once, the old one is destroyed."""
        chain = await _build_chain(self.raw, processors) if processors else []
        old, self._chain = self._chain, chain
        await _destroy_chain(old)

    def read(self, samples: int) -> Pcm:
        """Read through the chain (silence once closed)."""
        if self._closed:
            return silence(samples)
        pcm = self.head.read(samples)
        with contextlib.suppress(RuntimeError):
            self.last_read = asyncio.get_running_loop().time()
        if self.on_read is not None:
            self.on_read(pcm)
        return pcm

    def poll(self, samples: int) -> Pcm:
        """Read for the meter alone (when no call reads); does not count as a reader."""
        if self._closed:
            return silence(samples)
        pcm = self.head.read(samples)
        if self.on_read is not None:
            self.on_read(pcm)
        return pcm

    def close(self) -> None:
        """Destroy the chain and release ``raw`` if owned (idempotent)."""
        if self._closed:
            return
        self._closed = True
        chain, self._chain = self._chain, []
        for processor, stream in reversed(chain):
            try:
                call_soon_or_run(processor.destroy_processed_stream(stream))
            except Exception:
                log.exception("destroy_processed_stream failed")
        if self.owns_raw:
            self.raw.close()

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed


class _FeedSource:
    """The head of a remote chain: a FIFO the pushed audio goes into."""

    def __init__(self) -> None:
        self.fifo = PcmFifo()

    def read(self, samples: int) -> Pcm:
        return self.fifo.pop(samples)

    def close(self) -> None:
        self.fifo.clear()


class RemoteChain:
    """Remote processors applied to pushed blocks: ``process(pcm)`` returns the processed block.

    Built asynchronously (processors may be async); until it is ready, audio
    passes through unprocessed rather than being held up.
    """

    def __init__(self, processors: Sequence[AudioProcessor]) -> None:
        self._feed = _FeedSource()
        self._chain: list[tuple[AudioProcessor, AudioSource]] = []
        self._ready = not processors
        self._closed = False
        self._task: asyncio.Future[None] | None = None
        if processors:
            self._task = asyncio.ensure_future(self._build(processors))

    async def _build(self, processors: Sequence[AudioProcessor]) -> None:
        chain = await _build_chain(self._feed, processors)
        if self._closed:
            await _destroy_chain(chain)
            return
        self._chain = chain
        self._ready = True

    @property
    def output(self) -> AudioSource | None:
        """The processed stream, once built (None without processors)."""
        return self._chain[-1][1] if self._chain else None

    def process(self, pcm: Pcm) -> Pcm:
        """The processed version of ``pcm`` (``pcm`` itself without a ready chain)."""
        if not self._ready or not self._chain:
            return pcm
        self._feed.fifo.push(pcm)
        return self._chain[-1][1].read(len(pcm))

    def close(self) -> None:
        """Destroy the processed streams."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        chain, self._chain = self._chain, []
        for processor, stream in reversed(chain):
            try:
                call_soon_or_run(processor.destroy_processed_stream(stream))
            except Exception:
                log.exception("destroy_processed_stream failed")


class OutputRoute:
    """One producer's way to every device of an output collection.

    ``targets()`` returns the mixers of the devices selected now; the route keeps
    one mixer input per target, adding and dropping inputs as the selection
    changes, so the producer never needs to know. A route serves exactly one
    producer (one sound playback, one call): two producers sharing a route
    would share its mixer inputs and interleave frame by frame instead of
    being mixed.
    """

    def __init__(self, targets: Callable[[], list[OutputMixer]]) -> None:
        self._targets = targets
        self._inputs: dict[int, tuple[OutputMixer, MixerInput]] = {}
        self._closed = False

    def write(self, pcm: Pcm) -> None:
        """Queue ``pcm`` on every selected device."""
        if self._closed:
            return
        mixers = self._targets()
        wanted = {id(m): m for m in mixers}
        for key in [k for k in self._inputs if k not in wanted]:
            self._inputs.pop(key)[1].close()
        for key, mixer in wanted.items():
            entry = self._inputs.get(key)
            if entry is None or entry[0] is not mixer:
                entry = (mixer, mixer.input())
                self._inputs[key] = entry
            entry[1].write(pcm)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (writes are ignored from then on)."""
        return self._closed

    def close(self, *, drain: bool = False) -> None:
        """Detach from every mixer: at once, or with ``drain`` once the audio
        already written has been played (a sound that ends is not clipped).

        A draining route can still be closed at once later (its tail dropped: the
        same sound restarted must not play over the end of its last playback).
        """
        self._closed = True
        for _, handle in self._inputs.values():
            if drain:
                handle.finish()
            else:
                handle.close()
        if not drain:
            self._inputs.clear()


class CallOutput:
    """Where a call's remote audio goes: remote processors, the speakers, plugin sinks.

    The call closes it when it ends; plugin sinks are closed with it.
    ``chain_version`` lets the helper swap the remote processors mid-call.
    """

    def __init__(
        self,
        route: OutputRoute,
        extra_sinks: Sequence[AudioSink],
        processors: Callable[[], tuple[int, Sequence[AudioProcessor]]],
        on_close: Callable[[CallOutput], None] | None = None,
    ) -> None:
        self.route = route
        self.extra_sinks = list(extra_sinks)
        self._processors = processors
        self._version, procs = processors()
        self.chain = RemoteChain(procs)
        self._on_close = on_close
        self._closed = False

    def write(self, pcm: Pcm) -> None:
        """Process ``pcm`` and deliver it to the speakers and the plugin sinks."""
        if self._closed:
            return
        version, procs = self._processors()
        if version != self._version:
            self.chain.close()
            self.chain = RemoteChain(procs)
            self._version = version
        out = self.chain.process(pcm)
        self.route.write(out)
        for sink in list(self.extra_sinks):
            try:
                sink.write(out)
            except Exception:
                log.exception("remote audio sink %r failed; detaching it", sink)
                self.extra_sinks.remove(sink)

    def close(self) -> None:
        """Stop delivering; close the plugin sinks and the remote chain."""
        if self._closed:
            return
        self._closed = True
        self.route.close()
        self.chain.close()
        for sink in self.extra_sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing remote audio sink %r failed", sink)
        if self._on_close is not None:
            self._on_close(self)

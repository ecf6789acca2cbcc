"""Our receive path: RTP packets in, 48 kHz PCM out to a sink on a 20 ms playout clock.

:class:`RemotePlayout` joins the sans-I/O :class:`JitterBuffer` to a decoder
(:mod:`softphone.media.audio_codecs`) and an asyncio playout clock. Packets
are pushed from the receive shim (SRTP already removed), so aiortc's own jitter
buffer and decoder thread never see them. Every 20 ms the clock asks the
buffer for the next frame and writes exactly 960 samples to the sink:
decoded audio, FEC-recovered audio, or concealment.

The clock starts on a stream's first frame, at the moment the buffer says it
is due, so its phase follows the packets' arrivals and no extra half frame of
waiting is added on average. It stops when the buffer goes idle (no packet
for a second), so a silent far end costs nothing; the sink then receives
nothing until packets come back, like aiortc's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from softphone.audio_backends.base import FRAME_SAMPLES, SAMPLE_RATE, AudioSink, Pcm
from softphone.audio_backends.memory import PcmFifo
from softphone.media.audio_codecs import AudioDecoder, make_decoder
from softphone.media.jitter_buffer import FrameKind, JitterBuffer, JitterBufferConfig, PlayoutFrame
from softphone.media.sdp import CodecInfo

__all__ = [
    "MAX_CATCH_UP_TICKS",
    "PLC_LIMIT_S",
    "TICK_S",
    "PlayoutStats",
    "RemotePlayout",
    "buffer_config",
]

log = logging.getLogger(__name__)

TICK_S = FRAME_SAMPLES / SAMPLE_RATE
"""The playout clock's period: one 20 ms block per tick."""
PLC_LIMIT_S = 0.1
"""After this much consecutive concealment, silence is written without running
the decoder's concealment (it has faded out by then anyway)."""
MAX_CATCH_UP_TICKS = 10
"""After an event-loop stall, at most this many overdue ticks are played at once;
older ones are skipped (the jitter buffer then catches up by itself)."""


@dataclass(frozen=True, slots=True)
class PlayoutStats:
    """Receive-side counters; samples are 48 kHz output samples, times seconds.

    Names follow WebRTC's ``inbound-rtp`` stats where the meaning matches.
    """

    total_samples_received: int
    """Samples written to the sink (decoded, recovered or concealed)."""
    concealed_samples: int
    """Samples synthesized because their packet was missing (PLC and silence)."""
    silent_concealed_samples: int
    """Part of ``concealed_samples`` written as plain silence after a long loss."""
    concealment_events: int
    fec_samples: int
    """Samples rebuilt from the next packet's in-band FEC instead of concealed."""
    inserted_samples_for_deceleration: int
    removed_samples_for_acceleration: int
    jitter_buffer_delay: float
    """Sum over emitted samples of the time each spent buffered (WebRTC semantics)."""
    jitter_buffer_emitted_count: int
    jitter_buffer_target_delay: float
    """The buffer's current target delay."""
    buffer_delay: float
    """How long the last played packet waited in the buffer."""
    jitter: float
    """Interarrival jitter (RFC 3550) seen by the buffer."""
    packets_late: int
    packets_duplicated: int
    packets_reordered: int
    packets_discarded: int
    """Late, duplicate and overflowing packets that were not played."""


def buffer_config(codec: CodecInfo) -> JitterBufferConfig:
    """The jitter buffer settings for a stream of ``codec`` (20 ms frames)."""
    return JitterBufferConfig(clock_rate=codec.clock_rate, frame_duration=codec.clock_rate // 50)


class RemotePlayout:
    """Jitter buffer, decoder and playout clock for one received audio stream.

    ``codecs`` maps payload types to codecs (the negotiated audio codecs;
    telephone-event must already be replaced by the receive shim). A packet
    of another codec than the current stream's restarts the stream with a
    new decoder. ``clock`` (monotonic seconds) defaults to the event loop's.
    """

    def __init__(
        self,
        codecs: Sequence[CodecInfo],
        sink: AudioSink,
        *,
        clock: Callable[[], float] | None = None,
        config_factory: Callable[[CodecInfo], JitterBufferConfig] = buffer_config,
    ) -> None:
        self._codecs = {c.pt: c for c in codecs}
        self._sink = sink
        self._clock = clock
        self._config_factory = config_factory
        self._codec: CodecInfo | None = None
        self._buffer: JitterBuffer | None = None
        self._decoder: AudioDecoder | None = None
        self._fifo = PcmFifo()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._concealed_run = 0
        self._counters = {
            "total": 0,
            "concealed": 0,
            "silent": 0,
            "fec": 0,
            "inserted": 0,
            "removed": 0,
            "emitted": 0,
        }
        self._delay_sum = 0.0
        self._retired = _RetiredBuffers()

    # ------------------------------------------------------------------ control

    @property
    def sink(self) -> AudioSink:
        """Where the audio goes."""
        return self._sink

    @sink.setter
    def sink(self, sink: AudioSink) -> None:
        self._sink = sink

    @property
    def buffer(self) -> JitterBuffer | None:
        """The current stream's jitter buffer (None before the first packet)."""
        return self._buffer

    def reset(self) -> None:
        """Drop the current stream: nothing more is written until new packets arrive."""
        if self._buffer is not None:
            self._retired.add(self._buffer.stats)
        self._codec = None
        self._buffer = None
        self._decoder = None
        self._fifo = PcmFifo()

    def start(self) -> None:
        """Start the playout clock task (on the running loop)."""
        if self._task is None and not self._closed:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Stop the clock; the sink stays open (its owner closes it)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    # ------------------------------------------------------------------ input

    def push(
        self, *, payload_type: int, sequence_number: int, timestamp: int, ssrc: int, payload: bytes
    ) -> None:
        """Hand over one received RTP packet (call on the event loop, as it arrives)."""
        if self._closed:
            return
        codec = self._codecs.get(payload_type)
        if codec is None or not payload:
            return
        if self._codec is None or codec.name.lower() != self._codec.name.lower():
            self._switch_codec(codec)
            if self._codec is not codec:
                return  # no decoder for it
        assert self._buffer is not None and self._decoder is not None
        self._buffer.push(
            sequence_number=sequence_number,
            timestamp=timestamp,
            payload=payload,
            now=self._now(),
            ssrc=ssrc,
            duration=self._decoder.duration(payload),
        )
        self._wakeup.set()

    def _switch_codec(self, codec: CodecInfo) -> None:
        try:
            decoder = make_decoder(codec)
        except ValueError:
            log.warning("no decoder for %s: its packets are dropped", codec.name)
            self._codecs.pop(codec.pt, None)
            return
        if self._buffer is not None:
            self._retired.add(self._buffer.stats)
        self._codec = codec
        self._decoder = decoder
        self._buffer = JitterBuffer(self._config_factory(codec))
        self._fifo = PcmFifo()

    # ------------------------------------------------------------------ the clock

    async def _run(self) -> None:
        """The playout clock: wait for a stream, tick every 20 ms while it plays."""
        while True:
            buffer = self._buffer
            start = buffer.start_time() if buffer is not None else None
            if start is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            tick = start
            if tick > self._now():
                await asyncio.sleep(tick - self._now())
            tick = max(tick, self._now() - TICK_S)
            while await self._play_until(tick):
                tick += TICK_S
                lateness = self._now() - tick
                if lateness > MAX_CATCH_UP_TICKS * TICK_S:
                    tick += (int(lateness / TICK_S) - 1) * TICK_S  # drop what cannot be caught up
                elif lateness < 0:
                    await asyncio.sleep(-lateness)
                elif lateness < TICK_S:
                    await asyncio.sleep(0)  # on time: still let packets in first

    async def _play_until(self, tick: float) -> bool:
        """Write one 20 ms block for the tick at ``tick``; False once the stream went idle."""
        buffer, decoder = self._buffer, self._decoder
        if buffer is None or decoder is None:
            return False
        while len(self._fifo) < FRAME_SAMPLES:
            due = tick + len(self._fifo) / SAMPLE_RATE
            frame = buffer.pop(due)
            if frame is None:
                if not buffer.playing and len(self._fifo) == 0:
                    return False
                break
            self._fifo.push(self._render(frame, decoder))
        block = self._fifo.pop(FRAME_SAMPLES)
        self._counters["total"] += len(block)
        try:
            self._sink.write(block)
        except Exception:
            log.exception("remote audio sink failed")
        return True

    def _render(self, frame: PlayoutFrame, decoder: AudioDecoder) -> Pcm:
        """Decode, recover or conceal one jitter buffer frame into 48 kHz PCM."""
        clock = decoder.clock_rate
        if frame.new_stream:
            decoder.reset()
            self._concealed_run = 0
        for skipped in frame.skipped:
            removed = decoder.decode(skipped)  # keeps a stateful decoder continuous
            self._counters["removed"] += len(removed)
        samples = frame.duration * SAMPLE_RATE // clock
        if frame.kind is FrameKind.NORMAL:
            assert frame.payload is not None
            self._concealed_run = 0
            try:
                pcm = decoder.decode(frame.payload)
            except ValueError:
                pcm = decoder.conceal(frame.duration)
            self._counters["emitted"] += len(pcm)
            buffer = self._buffer
            if buffer is not None:
                self._delay_sum += buffer.stats.buffer_delay * len(pcm)
            return pcm
        if frame.inserted:
            self._counters["inserted"] += samples
            return decoder.conceal(frame.duration)
        self._counters["concealed"] += samples
        self._concealed_run += samples
        if frame.next_payload is not None:
            recovered = decoder.recover(frame.next_payload, frame.duration)
            if recovered is not None:
                self._counters["fec"] += len(recovered)
                self._counters["concealed"] -= samples
                self._concealed_run = 0
                return recovered
        if self._concealed_run > PLC_LIMIT_S * SAMPLE_RATE:
            self._counters["silent"] += samples
            return np.zeros(samples, dtype=np.int16)
        return decoder.conceal(frame.duration)

    # ------------------------------------------------------------------ stats

    def stats(self) -> PlayoutStats:
        """A snapshot of the counters (buffer counters summed over codec switches)."""
        buffer = self._buffer
        current = buffer.stats if buffer is not None else None
        totals = self._retired.with_current(current)
        c = self._counters
        return PlayoutStats(
            total_samples_received=c["total"],
            concealed_samples=c["concealed"],
            silent_concealed_samples=c["silent"],
            concealment_events=totals["concealment_events"],
            fec_samples=c["fec"],
            inserted_samples_for_deceleration=c["inserted"],
            removed_samples_for_acceleration=c["removed"],
            jitter_buffer_delay=self._delay_sum,
            jitter_buffer_emitted_count=c["emitted"],
            jitter_buffer_target_delay=current.target_delay if current else 0.0,
            buffer_delay=current.buffer_delay if current else 0.0,
            jitter=current.jitter if current else 0.0,
            packets_late=totals["packets_late"],
            packets_duplicated=totals["packets_duplicate"],
            packets_reordered=totals["packets_reordered"],
            packets_discarded=totals["packets_late"]
            + totals["packets_duplicate"]
            + totals["packets_overflow"],
        )


class _RetiredBuffers:
    """Counters of the jitter buffers replaced by codec switches."""

    _FIELDS = (
        "concealment_events",
        "packets_late",
        "packets_duplicate",
        "packets_reordered",
        "packets_overflow",
    )

    def __init__(self) -> None:
        self._sums = dict.fromkeys(self._FIELDS, 0)

    def add(self, stats: Any) -> None:
        for name in self._FIELDS:
            self._sums[name] += getattr(stats, name)

    def with_current(self, stats: Any) -> dict[str, int]:
        return {
            name: self._sums[name] + (getattr(stats, name) if stats is not None else 0)
            for name in self._FIELDS
        }

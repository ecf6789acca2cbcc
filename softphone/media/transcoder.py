"""Re-encode one RTP audio stream into another codec, once, keeping its timeline.

The gateway bridges two legs that negotiated different codecs (a browser on
Opus, a SIP trunk on PCMU) with one decode and one encode per packet, in the
order packets arrive: no jitter buffer and no concealment here, because the
endpoint that plays the audio does both (one buffer and one concealer per
path, not two in series as in aiortc's decode/re-encode bridging).

Timestamps map linearly from the source clock to the target clock, so a gap
upstream (a lost packet) is a gap downstream and the far end conceals it. The
one thing only the middle can do: when a single source packet is missing and
the next one carries Opus in-band FEC, the lost frame is rebuilt from it and
sent as well, since the target codec may have no FEC of its own.
"""

from __future__ import annotations

from softphone.audio_backends.base import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from softphone.audio_backends.memory import PcmFifo
from softphone.media.audio_codecs import make_decoder, make_encoder
from softphone.media.opus import OpusSettings
from softphone.media.sdp import CodecInfo

__all__ = ["Transcoder"]

_TS_MOD = 1 << 32


class Transcoder:
    """Source-codec RTP payloads in, target-codec payloads out (sans-I/O).

    Each :meth:`feed` returns ``(timestamp, payload)`` pairs in the target
    codec's RTP units; the first source packet maps to timestamp 0.
    """

    def __init__(
        self, source: CodecInfo, target: CodecInfo, opus: OpusSettings | None = None
    ) -> None:
        self.source = source
        self.target = target
        self._decoder = make_decoder(source)
        self._encoder = make_encoder(target, opus)
        self._first: int | None = None
        self._highest: int | None = None
        self._expected: int | None = None
        self._fifo = PcmFifo()
        self._fifo_start = 0  # source timestamp (extended) of the first sample in the FIFO
        self.packets_in = 0
        self.packets_out = 0
        self.frames_recovered = 0

    def _extend(self, timestamp: int) -> int:
        if self._highest is None:
            self._highest = timestamp
            return timestamp
        diff = (timestamp - self._highest) % _TS_MOD
        if diff >= _TS_MOD // 2:
            diff -= _TS_MOD
        extended = self._highest + diff
        self._highest = max(self._highest, extended)
        return extended

    def _target_timestamp(self, source_ts: int) -> int:
        assert self._first is not None
        elapsed = source_ts - self._first
        return (elapsed * self.target.clock_rate // self.source.clock_rate) % _TS_MOD

    def feed(self, timestamp: int, payload: bytes) -> list[tuple[int, bytes]]:
        """Transcode one source packet (in arrival order)."""
        self.packets_in += 1
        ts = self._extend(timestamp)
        if self._first is None:
            self._first = ts
        duration = self._decoder.duration(payload) or self.source.clock_rate // 50
        if self._expected is not None and ts != self._expected:
            missing = ts - self._expected
            recovered = None
            if 0 < missing <= self.source.clock_rate // 50:
                recovered = self._decoder.recover(payload, missing)
            self._fifo = PcmFifo()
            self._fifo_start = ts
            out: list[tuple[int, bytes]] = []
            if recovered is not None:
                self.frames_recovered += 1
                self._fifo_start = self._expected
                out += self._push(recovered)
            out += self._push(self._decoder.decode(payload))
            self._expected = ts + duration
            return out
        if self._expected is None:
            self._fifo_start = ts
        self._expected = ts + duration
        return self._push(self._decoder.decode(payload))

    def _push(self, pcm: Pcm) -> list[tuple[int, bytes]]:
        """Encode every whole 20 ms block now in the FIFO."""
        self._fifo.push(pcm)
        out: list[tuple[int, bytes]] = []
        block_units = self.source.clock_rate * FRAME_SAMPLES // SAMPLE_RATE
        while len(self._fifo) >= FRAME_SAMPLES:
            block = self._fifo.pop(FRAME_SAMPLES)
            stamp = self._target_timestamp(self._fifo_start)
            self._fifo_start += block_units
            for encoded in self._encoder.encode(block):
                out.append((stamp, encoded))
                self.packets_out += 1
        return out

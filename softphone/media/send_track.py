"""``SendTrack``: the one track of a call leg's aiortc sender, yielding encoded packets.

aiortc encodes the ``AudioFrame`` a track yields with its own encoder (a fixed
96 kbit/s stereo Opus that ignores the peer's fmtp, 139 kbit/s measured on
speech; a G.711 resampler that holds a whole 20 ms frame back, aiortc-probe.md
§4), but sends an ``av.Packet`` as it is: that is its public route for
pre-encoded media (``MediaPlayer(decode=False)``), where the payload goes out
unchanged and the packet's ``pts`` (in its ``time_base``) becomes the RTP
timestamp. So every leg's sender reads this track, and it:

* encodes the :class:`SourceTrack`'s 20 ms frames with our encoder
  (:func:`softphone.media.audio_codecs.make_encoder`): Opus mono with the
  bitrate, FEC and DTX the peer's fmtp asks for, G.711 through our 2 ms FIR
  resampler;
* or sends the payloads of a :class:`PacketTrack` (RTP forwarding) as they are,
  telling the payload-type send hook which PT each one has (:attr:`payload_type`);
* keeps the RTP timestamps continuous whenever it switches between the two.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import functools
from typing import Any, Final

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.packet import Packet

from softphone.audio_backends.base import Pcm
from softphone.media.audio_codecs import AudioEncoder, make_encoder
from softphone.media.opus import OpusSettings
from softphone.media.packet_track import PacketTrack
from softphone.media.sdp import CodecInfo
from softphone.media.source_track import SourceTrack

__all__ = ["SendTrack"]

_TS_MOD: Final = 1 << 32


@functools.cache
def _time_base(clock_rate: int) -> fractions.Fraction:
    return fractions.Fraction(1, clock_rate)


class SendTrack(MediaStreamTrack):
    """Already-encoded audio for one aiortc sender: ours, or forwarded (see the module doc).

    Encoding waits for :meth:`configure` (the negotiated codec), so install it
    with ``addTransceiver`` before negotiating and configure it right after.
    """

    kind = "audio"

    def __init__(self, source: SourceTrack) -> None:
        super().__init__()
        self.source = source
        self._codec: CodecInfo | None = None
        self._opus = OpusSettings()
        self._configured = asyncio.Event()
        self._encoder: AudioEncoder | None = None
        self._encoded: collections.deque[tuple[bytes, int]] = collections.deque()
        self._packets: PacketTrack | None = None
        self._producer: object = None
        self._offset = 0
        self._last_timestamp: int | None = None
        self.payload_type: int | None = None
        """Payload type of the packet :meth:`recv` returned last (None: the sender's own)."""

    @property
    def codec(self) -> CodecInfo | None:
        """The codec our own audio is encoded with (None before :meth:`configure`)."""
        return self._codec

    @property
    def opus_settings(self) -> OpusSettings:
        """The Opus settings the encoder has (or will have when made)."""
        return self._opus

    @property
    def packets(self) -> PacketTrack | None:
        """The forwarded payloads being sent instead of our own audio, if any."""
        return self._packets

    def configure(self, codec: CodecInfo, opus: OpusSettings) -> bool:
        """Encode our audio with ``codec`` (the leg's first negotiated one) and ``opus``.

        The encoder is made when the first frame is encoded, so this only
        reaches an encoder not made yet: returns False, changing nothing, once
        the track encodes (a new encoder mid-stream would restart the Opus
        state, e.g. on an ICE restart's renegotiation).
        """
        if self._encoder is not None:
            return False
        self._codec = codec
        self._opus = opus
        self._configured.set()
        return True

    def use_packets(self, packets: PacketTrack | None) -> None:
        """Send ``packets``' payloads instead of our audio from now on (None: ours again).

        A sender waiting for the previous packet track's next payload gets the
        new input's instead; the previous one is detached.
        """
        previous, self._packets = self._packets, packets
        if previous is not None and previous is not packets:
            previous.detach()

    def stop(self) -> None:
        """End the track and its source (the sender stops reading it)."""
        super().stop()
        self.source.stop()
        self._configured.set()  # a recv waiting for the codec ends with MediaStreamError
        if self._packets is not None:
            self._packets.detach()

    async def recv(self) -> Packet[Any]:
        """The next packet to send: a pushed payload, or our next frame encoded."""
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._encoded and self._codec is not None:
                payload, timestamp = self._encoded.popleft()
                return self._packet(payload, timestamp, self._codec.clock_rate, None)
            packets = self._packets
            if packets is not None:
                queued = await packets.next()
                if queued is None:
                    continue  # detached while waiting: read whatever is current now
                clock = self._codec.clock_rate if self._codec else packets.clock_rate
                timestamp = queued.timestamp * clock // packets.clock_rate
                aligned = self._align(packets, timestamp, clock // 50)
                return self._packet(queued.payload, aligned, clock, queued.payload_type)
            await self._encode_next()

    async def _encode_next(self) -> None:
        """Encode the source's next frame into :attr:`_encoded` (nothing when it buffers)."""
        await self._configured.wait()
        codec = self._codec
        if codec is None or self.readyState != "live":
            return
        frame = await self.source.recv()
        encoder = self._encoder
        if encoder is None:
            encoder = self._encoder = make_encoder(codec, self._opus)
        pcm: Pcm = np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)
        # Off the event loop, as aiortc runs its own encoders.
        payloads = await asyncio.get_running_loop().run_in_executor(None, encoder.encode, pcm)
        base = frame.time_base or fractions.Fraction(1, frame.sample_rate)
        timestamp = int((frame.pts or 0) * base * codec.clock_rate)
        for index, payload in enumerate(payloads):
            units = timestamp + index * encoder.frame_units
            self._encoded.append((payload, self._align(self.source, units, encoder.frame_units)))

    def _align(self, producer: object, timestamp: int, frame_units: int) -> int:
        """``timestamp`` on the track's own RTP timeline, continuous across producers.

        Our frames and forwarded payloads have unrelated timelines; without this
        a switch between them would make the far end see the RTP timestamp
        jump, possibly backwards. A gap within one producer (a lost packet
        upstream, frames skipped after a stall) is kept.
        """
        if producer is not self._producer:
            if self._last_timestamp is not None:
                self._offset = (self._last_timestamp + frame_units - timestamp) % _TS_MOD
            self._producer = producer
        aligned = (timestamp + self._offset) % _TS_MOD
        self._last_timestamp = aligned
        return aligned

    def _packet(
        self, payload: bytes, timestamp: int, clock_rate: int, payload_type: int | None
    ) -> Packet[Any]:
        """An ``av.Packet`` aiortc sends as is, ``timestamp`` in ``clock_rate`` units.

        ``clock_rate`` is the sender codec's, so aiortc's ``pack`` keeps the
        timestamp unchanged.
        """
        packet: Packet[Any] = Packet(payload)
        packet.pts = timestamp
        packet.time_base = _time_base(clock_rate)
        self.payload_type = payload_type
        return packet

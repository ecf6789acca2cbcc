"""``OutgoingRtp``: one sender's RTP numbering, whoever produces its packets (sans-I/O).

A gateway leg sends on one SSRC packets from two producers: aiortc's sender loop
(the leg's own audio: prompts, hold music, DTMF-only legs) and payloads forwarded
straight from another leg, which skip aiortc's loop altogether (the bridge's hot
path: no asyncio queue, no re-parse and re-serialize, SRTP and UDP right away,
see :class:`softphone.media.aiortc_hooks.SendPath`). The far end must see one
stream:

* one sequence-number counter, +1 per packet whoever sent it (SRTP's packet
  index and the far end's loss statistics depend on it; a counter that went back
  after a bridge ended would have the packets rejected as replays);
* one timestamp line: each producer's timestamps keep their own spacing (gaps
  upstream stay gaps, for the far end's concealment), re-anchored whenever the
  producer changes so that the line moves on by the time that passed, in whole
  20 ms frames (at least one: decoders conceal in steps of 2.5 ms, and an odd
  step left our own receive path a gap libopus refused to fill), never back;
* the pair (NTP time, RTP timestamp) of the last packet sent, for the RTCP
  sender reports (which the far end uses for round-trip time and sync).

The first producer keeps its own numbers (aiortc's packets go out untouched until
a forwarded one comes), so a leg that never forwards sends exactly what aiortc made.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Final

__all__ = ["NTP_UNIX_OFFSET_S", "OutgoingRtp", "ntp_timestamp"]

NTP_UNIX_OFFSET_S: Final = 2_208_988_800
"""Seconds from the NTP epoch (1900) to the Unix epoch (1970)."""
_TS_MOD: Final = 1 << 32
_FRAME_S: Final = 0.02
_HEADER: Final = struct.Struct("!BBHII")
_SR_INFO: Final = struct.Struct("!QI")
_RTCP_SR: Final = 200


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point) of a Unix time in seconds."""
    return int((unix_time + NTP_UNIX_OFFSET_S) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


class OutgoingRtp:
    """The sequence numbers and timestamps one SSRC sends (see the module doc).

    ``first_sequence`` is used when a forwarded packet is the first one sent
    (pick it at random, in the lower half like aiortc, to stay clear of an early
    wrap). ``clock_rates`` maps the leg's payload types to their RTP clocks (for
    the re-anchoring step); unknown types count as 48 kHz.
    """

    def __init__(self, *, first_sequence: int, clock_rates: Mapping[int, int] = {}) -> None:
        self._first_sequence = first_sequence & 0xFFFF
        self._clock_rates = dict(clock_rates)
        self._sequence: int | None = None
        self._producer: object = None
        self._offset = 0
        self._last_timestamp: int | None = None
        self._last_time = 0.0
        self.packets_sent = 0
        """Packets numbered here, either producer."""
        self.forwarded = 0
        """Of those, packets :meth:`build` made (the forwarded ones)."""

    def configure(self, clock_rates: Mapping[int, int]) -> None:
        """Set the payload type -> RTP clock map (the leg's negotiated codecs)."""
        self._clock_rates = dict(clock_rates)

    @property
    def next_sequence(self) -> int | None:
        """The sequence number the next packet gets (None before the first one)."""
        return self._sequence

    @property
    def last_sent(self) -> tuple[float, int] | None:
        """(Unix time, RTP timestamp) of the last packet numbered here, if any."""
        if self._last_timestamp is None:
            return None
        return self._last_time, self._last_timestamp

    def _timestamp(self, producer: object, timestamp: int, payload_type: int, now: float) -> int:
        if producer is not self._producer:
            last = self._last_timestamp
            if last is None:
                self._offset = 0
            else:
                clock = self._clock_rates.get(payload_type, 48000)
                frames = max(1, round((now - self._last_time) / _FRAME_S))
                step = frames * clock // 50
                self._offset = (last + step - timestamp) % _TS_MOD
            self._producer = producer
        wire = (timestamp + self._offset) % _TS_MOD
        self._last_timestamp = wire
        self._last_time = now
        return wire

    def _next_sequence(self, proposed: int) -> int:
        sequence = self._sequence
        if sequence is None:
            sequence = proposed
        self._sequence = (sequence + 1) & 0xFFFF
        self.packets_sent += 1
        return sequence

    def restamp(self, data: bytes, producer: object, now: float) -> bytes:
        """A packet another producer made, renumbered onto this stream (else unchanged).

        ``data`` is plaintext RTP (before SRTP). Only the sequence number and
        timestamp change, and only once the stream has moved away from what
        ``producer`` numbered itself.
        """
        sequence = self._next_sequence(int.from_bytes(data[2:4], "big"))
        timestamp = int.from_bytes(data[4:8], "big")
        wire = self._timestamp(producer, timestamp, data[1] & 0x7F, now)
        if data[2:4] == sequence.to_bytes(2, "big") and wire == timestamp:
            return data
        return data[:2] + sequence.to_bytes(2, "big") + wire.to_bytes(4, "big") + data[8:]

    def build(
        self,
        *,
        first_byte: int,
        extension: bytes,
        ssrc: int,
        payload: bytes,
        timestamp: int,
        payload_type: int,
        marker: bool,
        producer: object,
        now: float,
    ) -> bytes:
        """A new plaintext RTP packet for a forwarded ``payload``.

        ``first_byte`` (version, extension bit) and ``extension`` (the header
        extension block, if any) come from the sender: the same every packet.
        ``timestamp`` is in the payload's own clock, on any origin.
        """
        sequence = self._next_sequence(self._first_sequence)
        wire = self._timestamp(producer, timestamp, payload_type, now)
        self.forwarded += 1
        second = payload_type | 0x80 if marker else payload_type
        return _HEADER.pack(first_byte, second, sequence, wire, ssrc) + extension + payload

    def header_into(
        self,
        buffer: bytearray | memoryview,
        first_byte: int,
        second_byte: int,
        timestamp: int,
        ssrc: int,
        producer: object,
        now: float,
    ) -> None:
        """Write the 12-byte RTP header :meth:`build` would make at the start of ``buffer``.

        The fused forwarding path's numbering (one call, no bytes made):
        ``second_byte`` is the marker bit and payload type as sent. The same
        sequence counter, timestamp line and counts as :meth:`build`, which it
        must stay identical to (tested side by side).
        """
        sequence = self._sequence
        if sequence is None:
            sequence = self._first_sequence
        self._sequence = (sequence + 1) & 0xFFFF
        self.packets_sent += 1
        self.forwarded += 1
        if producer is self._producer:
            wire = (timestamp + self._offset) % _TS_MOD
            self._last_timestamp = wire
            self._last_time = now
        else:
            wire = self._timestamp(producer, timestamp, second_byte & 0x7F, now)
        _HEADER.pack_into(buffer, 0, first_byte, second_byte, sequence, wire, ssrc)

    def patch_sender_report(self, data: bytes, ssrc: int) -> tuple[bytes, int | None]:
        """``data`` (a plaintext RTCP compound) with our SR's NTP/RTP pair; and that NTP.

        Only a first sender report of ``ssrc`` is touched, and only once a packet
        was numbered here; otherwise ``(data, None)``. The NTP time is the last
        packet's, with its timestamp (what aiortc reports for its own packets).
        """
        last = self.last_sent
        if (
            last is None
            or len(data) < 28
            or data[1] != _RTCP_SR
            or int.from_bytes(data[4:8], "big") != ssrc
        ):
            return data, None
        ntp = ntp_timestamp(last[0])
        return data[:8] + _SR_INFO.pack(ntp, last[1]) + data[20:], ntp

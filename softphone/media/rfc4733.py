"""RFC 4733 DTMF events, sans-I/O: payload codec, send scheduler, receive detector.

aiortc has no DTMF at all (aiortc-probe.md §6). We send events by rewriting
outgoing *audio* RTP packets in place (so sequence numbers, SRTP and RTCP are
untouched) and, on receive, turn event packets into digits and into a silence
packet of the audio codec so aiortc's decoder never sees ``telephone-event``.
This module holds the pure parts; ``aiortc_hooks`` wires them into aiortc.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from dataclasses import dataclass

__all__ = [
    "DTMF_EVENTS",
    "PAUSE_MS",
    "AudioTimeline",
    "EventDetector",
    "EventPacket",
    "Rfc4733Event",
    "ToneScheduler",
    "event_digit",
    "is_rtcp",
    "normalize_tones",
    "rewrite_rtp",
    "rtp_ssrc",
    "silence_payload",
]

DTMF_EVENTS: dict[str, int] = {
    **{str(d): d for d in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}
"""Tone character → RFC 4733 event code."""
_DIGITS = {code: char for char, code in DTMF_EVENTS.items()}

PAUSE_MS = 2000
"""A ``,`` in the tone string pauses this long (W3C ``insertDTMF``)."""
MIN_DURATION_MS, MAX_DURATION_MS, MIN_GAP_MS = 40, 6000, 30
_RTP_HEADER = 12
_MAX_DURATION_UNITS = 0xFFFF


def event_digit(code: int) -> str | None:
    """The tone character for an event code (0-15), None for other events."""
    return _DIGITS.get(code)


def normalize_tones(tones: str) -> str:
    """Upper-case ``tones`` and check every character is ``0-9 * # A-D ,``.

    Raises ValueError naming the first bad character.
    """
    for char in tones:
        if char != "," and char.upper() not in DTMF_EVENTS:
            raise ValueError(f"invalid DTMF tone character {char!r}")
    return tones.upper()


@dataclass(frozen=True)
class Rfc4733Event:
    """One RFC 4733 §2.3 event block: event code, E bit, volume (-dBm0) and duration."""

    event: int
    end: bool
    volume: int
    duration: int
    """Duration so far in RTP timestamp units of the telephone-event clock."""

    def encode(self) -> bytes:
        """The 4-byte payload."""
        flags = (0x80 if self.end else 0) | (self.volume & 0x3F)
        return struct.pack("!BBH", self.event & 0xFF, flags, self.duration & 0xFFFF)

    @classmethod
    def decode(cls, payload: bytes) -> Rfc4733Event | None:
        """Parse the first event block of ``payload``; None when it is too short."""
        if len(payload) < 4:
            return None
        event, flags, duration = struct.unpack("!BBH", payload[:4])
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)


# --------------------------------------------------------------------------- RTP bytes


def is_rtcp(data: bytes) -> bool:
    """True for RTCP in a muxed RTP/RTCP stream (RFC 5761 §4: PT 192..223)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def rtp_ssrc(data: bytes) -> int | None:
    """The SSRC of a plaintext RTP packet, None if too short."""
    if len(data) < _RTP_HEADER:
        return None
    return int.from_bytes(data[8:12], "big")


def _header_length(data: bytes) -> int:
    cc = data[0] & 0x0F
    length = _RTP_HEADER + 4 * cc
    if data[0] & 0x10:  # header extension
        if len(data) < length + 4:
            raise ValueError("truncated RTP header extension")
        words = int.from_bytes(data[length + 2 : length + 4], "big")
        length += 4 + 4 * words
    if len(data) < length:
        raise ValueError("truncated RTP header")
    return length


def rewrite_rtp(
    data: bytes, *, payload_type: int, marker: bool, timestamp: int, payload: bytes
) -> bytes:
    """Return ``data`` with PT, M bit, timestamp and payload replaced.

    CSRCs and header extensions are kept; padding is dropped (P cleared).
    Sequence number and SSRC stay, so SRTP indices are unaffected.
    """
    if len(data) < _RTP_HEADER:
        raise ValueError("not an RTP packet")
    header = bytearray(data[: _header_length(data)])
    header[0] &= ~0x20 & 0xFF
    header[1] = (0x80 if marker else 0) | (payload_type & 0x7F)
    header[4:8] = (timestamp & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(header) + payload


def silence_payload(codec_name: str) -> bytes | None:
    """A 20 ms payload that decodes to (near) silence, None for unknown codecs.

    Opus: a CELT-only 20 ms frame of silence; G.711: the zero-level code words;
    G.722: the encoder's first frame for digital silence (peak 2 LSB).
    """
    name = codec_name.lower()
    if name == "opus":
        return b"\xf8\xff\xfe"
    if name == "pcmu":
        return b"\xff" * 160
    if name == "pcma":
        return b"\xd5" * 160
    if name == "g722":
        return b"\xfa" * 160
    return None


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class EventPacket:
    """How to rewrite one outgoing audio packet into a telephone-event packet."""

    timestamp: int
    marker: bool
    payload: bytes


@dataclass
class _Step:
    char: str  # the tone character, "," for a pause, "" for the gap after a tone
    event: int | None  # None: a pause/gap that lets audio through
    frames: int
    done: int = 0
    start_ts: int = 0


class ToneScheduler:
    """Turns queued tones into a per-packet plan for in-place RTP rewriting.

    Call :meth:`next_packet` once per outgoing audio packet (every 20 ms); it
    returns None (send the audio as is) or the event packet to send instead.
    A tone of ``n`` frames becomes ``n`` packets whose duration grows by one
    frame each, the last with the E bit, followed by two copies of that end
    packet (RFC 4733 §2.5.1.4 redundancy), then ``gap`` frames of audio.
    All packets of one tone carry the timestamp of its first packet.
    """

    def __init__(self, clock_rate: int, *, frame_ms: int = 20, volume: int = 10) -> None:
        self.clock_rate = clock_rate
        self.frame_ms = frame_ms
        self.volume = volume
        self._frame_units = clock_rate * frame_ms // 1000
        self._steps: deque[_Step] = deque()

    @property
    def busy(self) -> bool:
        """True while tones, gaps or pauses remain."""
        return bool(self._steps)

    @property
    def tone_buffer(self) -> str:
        """Tones not yet started (W3C ``toneBuffer``)."""
        return "".join(step.char for step in self._steps if not step.done)

    def _frames(self, ms: int) -> int:
        return max(1, math.ceil(ms / self.frame_ms))

    def insert(self, tones: str, duration_ms: int = 100, gap_ms: int = 70) -> None:
        """Queue ``tones``, replacing any not yet started (W3C ``insertDTMF``).

        ``duration_ms`` is clamped to 40..6000 and to what the 16-bit duration
        field holds at this clock rate (1360 ms at 48 kHz); ``gap_ms`` is at
        least 30. A tone already on the wire finishes first.
        """
        tones = normalize_tones(tones)
        duration_ms = min(max(duration_ms, MIN_DURATION_MS), MAX_DURATION_MS)
        gap_ms = max(gap_ms, MIN_GAP_MS)
        frames = min(self._frames(duration_ms), _MAX_DURATION_UNITS // self._frame_units)
        keep: list[_Step] = []
        if self._steps and self._steps[0].done and self._steps[0].event is not None:
            keep = [self._steps[0]]
            if len(self._steps) > 1 and self._steps[1].event is None:
                keep.append(self._steps[1])
        self._steps = deque(keep)
        for char in tones:
            if char == ",":
                self._steps.append(_Step(",", None, self._frames(PAUSE_MS)))
            else:
                self._steps.append(_Step(char, DTMF_EVENTS[char], frames))
                self._steps.append(_Step("", None, self._frames(gap_ms)))

    def clear(self) -> None:
        """Drop everything queued (a tone on the wire is cut short)."""
        self._steps.clear()

    def next_packet(self, audio_timestamp: int) -> EventPacket | None:
        """Plan for the next outgoing audio packet whose RTP timestamp is ``audio_timestamp``."""
        if not self._steps:
            return None
        step = self._steps[0]
        if step.event is None:
            step.done += 1
            if step.done >= step.frames:
                self._steps.popleft()
            return None
        k = step.done
        if k == 0:
            step.start_ts = audio_timestamp
        event = Rfc4733Event(
            event=step.event,
            end=k >= step.frames - 1,
            volume=self.volume,
            duration=min(k + 1, step.frames) * self._frame_units,
        )
        step.done += 1
        if step.done >= step.frames + 2:
            self._steps.popleft()
        return EventPacket(step.start_ts, k == 0, event.encode())


# --------------------------------------------------------------------------- receiving


class EventDetector:
    """Reports each received DTMF event once, on its first packet to arrive.

    Packets of one event share an RTP timestamp, so a new timestamp means a
    new event; retransmitted end packets are ignored.
    """

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None

    def feed(self, ssrc: int, timestamp: int, payload: bytes) -> str | None:
        """The digit of a newly started event, else None."""
        event = Rfc4733Event.decode(payload)
        if event is None or self._last == (ssrc, timestamp):
            return None
        self._last = (ssrc, timestamp)
        return event_digit(event.event)


class AudioTimeline:
    """Remembers the last audio packet so a substituted packet lands where audio would.

    aiortc's jitter buffer groups packets by timestamp, so each substitute
    needs its own timestamp: interpolated from the last audio packet by the
    sequence-number distance times one 20 ms frame.
    """

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None

    def audio(self, sequence_number: int, timestamp: int) -> None:
        """Record a real audio packet."""
        self._last = (sequence_number, timestamp)

    def substitute_timestamp(self, sequence_number: int, frame_units: int, fallback: int) -> int:
        """Timestamp for a substitute at ``sequence_number`` (``fallback`` before any audio)."""
        if self._last is None:
            return fallback
        last_seq, last_ts = self._last
        delta = (sequence_number - last_seq) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        return (last_ts + delta * frame_units) & 0xFFFFFFFF

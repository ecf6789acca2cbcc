"""Pure parts of RTP forwarding: one SSRC's numbering, the packet track's sink, the parser.

No sockets: :class:`OutgoingRtp` is fed packets and ``now``; the packet track and
the fast RTP parser are plain functions of their input.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from softphone.media import aiortc_hooks as hooks
from softphone.media.packet_track import PacketTrack
from softphone.media.rtp_forwarder import OutgoingRtp, ntp_timestamp

pytestmark = pytest.mark.pure

SSRC = 0x11223344
OPUS, PCMU = 111, 0
CLOCKS = {OPUS: 48000, PCMU: 8000}
EXTENSION = b"\xbe\xde\x00\x01\x10\x30\x00\x00"  # one-byte header: MID "0", padded


def _rtp(seq: int, ts: int, *, pt: int = OPUS, payload: bytes = b"own") -> bytes:
    packet = RtpPacket(payload_type=pt, marker=1, sequence_number=seq, timestamp=ts, ssrc=SSRC)
    packet.payload = payload
    return bytes(packet.serialize())


def _forward(out: OutgoingRtp, ts: int, now: float, *, producer: object, **kw: object) -> bytes:
    fields: dict[str, object] = {
        "first_byte": 0x90,
        "extension": EXTENSION,
        "ssrc": SSRC,
        "payload": b"fwd",
        "payload_type": OPUS,
        "marker": False,
    }
    fields.update(kw)
    return out.build(timestamp=ts, producer=producer, now=now, **fields)  # type: ignore[arg-type]


def _header(data: bytes) -> tuple[int, int, int, int, int]:
    _, second, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
    return second >> 7, second & 0x7F, seq, ts, ssrc


def test_the_first_producer_keeps_its_own_numbers() -> None:
    out = OutgoingRtp(first_sequence=9, clock_rates=CLOCKS)
    own = [_rtp(500 + i, 7000 + 960 * i) for i in range(3)]
    assert [out.restamp(p, "aiortc", 1.0 + i * 0.02) for i, p in enumerate(own)] == own
    assert out.next_sequence == 503 and out.last_sent == (1.04, 7000 + 2 * 960)


def test_forwarded_packets_get_this_streams_header_fields() -> None:
    out = OutgoingRtp(first_sequence=4000, clock_rates=CLOCKS)
    source = object()
    first = _forward(out, 123_000, 10.0, producer=source, marker=True)
    second = _forward(out, 123_960, 10.02, producer=source, payload_type=PCMU)
    assert first[:1] == b"\x90" and first[12:20] == EXTENSION and first[20:] == b"fwd"
    assert _header(first) == (1, OPUS, 4000, 123_000, SSRC)  # first producer: its timeline
    assert _header(second) == (0, PCMU, 4001, 123_960, SSRC)
    assert out.packets_sent == out.forwarded == 2


def test_numbering_continues_across_producers_without_gaps_or_going_back() -> None:
    """aiortc's own audio, then forwarded audio on another timeline, then aiortc's again."""
    out = OutgoingRtp(first_sequence=1, clock_rates=CLOCKS)
    wire = [out.restamp(_rtp(65534 + i, 1_000 + 960 * i), "own", 0.02 * i) for i in range(2)]
    source = object()
    # forwarded payloads start 60 ms after our last packet, on an unrelated timeline
    wire += [_forward(out, 5_000_000 + 960 * i, 0.08 + 0.02 * i, producer=source) for i in range(3)]
    # aiortc's loop resumes where *it* left off (it never saw the forwarded packets)
    wire += [
        out.restamp(_rtp(0 + i, 1_000 + 960 * (2 + i)), "own", 0.2 + 0.02 * i) for i in range(2)
    ]
    headers = [_header(p) for p in wire]
    assert [h[2] for h in headers] == [65534, 65535, 0, 1, 2, 3, 4]
    stamps = [h[3] for h in headers]
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    # within a producer its own spacing; at a switch the time that passed, in whole frames
    assert steps == [960, 960 * 3, 960, 960, 960 * 4, 960]
    assert {h[4] for h in headers} == {SSRC}


def test_a_switch_steps_at_least_one_frame_in_the_packets_clock() -> None:
    out = OutgoingRtp(first_sequence=1, clock_rates=CLOCKS)
    out.restamp(_rtp(1, 800, pt=PCMU), "own", 5.0)
    same_instant = _forward(out, 42, 5.0, producer=object(), payload_type=PCMU)
    assert _header(same_instant)[3] == 800 + 160  # 20 ms at 8 kHz, never 0 or back


def test_the_sender_report_carries_the_last_packets_time_and_timestamp() -> None:
    out = OutgoingRtp(first_sequence=1, clock_rates=CLOCKS)
    sr = bytes([0x80, 200, 0, 6]) + SSRC.to_bytes(4, "big") + bytes(20) + b"SDES"
    assert out.patch_sender_report(sr, SSRC) == (sr, None)  # nothing sent yet
    _forward(out, 777, 1_700_000_000.25, producer=object())
    patched, ntp = out.patch_sender_report(sr, SSRC)
    assert ntp == ntp_timestamp(1_700_000_000.25)
    assert patched[8:16] == ntp.to_bytes(8, "big")
    assert patched[16:20] == (777).to_bytes(4, "big")
    assert patched[:8] == sr[:8] and patched[20:] == sr[20:]  # counts and SDES untouched
    other = bytes([0x80, 200, 0, 6]) + (5).to_bytes(4, "big") + bytes(20)
    receiver_report = bytes([0x80, 201, 0, 1]) + SSRC.to_bytes(4, "big")
    assert out.patch_sender_report(other, SSRC) == (other, None)
    assert out.patch_sender_report(receiver_report, SSRC) == (receiver_report, None)


def test_the_fused_paths_header_is_what_build_makes() -> None:
    """``header_into`` (the fused forwarding path) and ``build`` (the general one) number
    on one line: any mix of the two, with producer switches in between, gives the same
    packets and the same state as ``build`` alone."""
    built, fused = (OutgoingRtp(first_sequence=65530, clock_rates=CLOCKS) for _ in range(2))
    sources = [object(), object()]
    steps: list[tuple[str, int, int, bool, float, int]] = []
    now = 100.0
    for i in range(40):
        now += 0.02 if i % 7 else 0.065  # now and then a late one
        producer = "own" if i in (10, 11, 30) else ("a" if i < 20 else "b")
        steps.append(
            (producer, 7_000 + 960 * i + (5_000_000 if i >= 20 else 0), OPUS, i % 9 == 0, now, i)
        )
    buffer = bytearray(12)
    for producer, ts, pt, marker, when, i in steps:
        if producer == "own":
            own = _rtp(1000 + i, 3_000 + 960 * i)
            assert built.restamp(own, "own", when) == fused.restamp(own, "own", when)
            continue
        source = sources[producer == "b"]
        expected = _forward(built, ts, when, producer=source, marker=marker, payload_type=pt)
        if i % 3:  # the fused path
            fused.header_into(buffer, 0x90, pt | (0x80 if marker else 0), ts, SSRC, source, when)
            got = bytes(buffer) + EXTENSION + b"fwd"
        else:
            got = _forward(fused, ts, when, producer=source, marker=marker, payload_type=pt)
        assert got == expected, i
    assert (fused.packets_sent, fused.forwarded) == (built.packets_sent, built.forwarded)
    assert fused.next_sequence == built.next_sequence and fused.last_sent == built.last_sent


def test_ntp_timestamp_is_32_32_fixed_point_since_1900() -> None:
    assert ntp_timestamp(0.0) == 2_208_988_800 << 32
    assert ntp_timestamp(0.5) == (2_208_988_800 << 32) | (1 << 31)


# ---------------------------------------------------------------------- packet track sink


def test_pushes_go_to_the_sink_and_queue_only_what_it_refuses() -> None:
    track = PacketTrack(48000)
    taken: list[tuple[bytes, int, int | None, bool]] = []
    accept = True

    def sink(payload: bytes, timestamp: int, payload_type: int | None, marker: bool) -> bool:
        if accept:
            taken.append((payload, timestamp, payload_type, marker))
        return accept

    track.use_sink(sink)
    track.push(b"a", 0, 111, False)
    accept = False  # the leg is not connected (yet, or any more)
    track.push(b"b", 960)
    accept = True
    track.push(b"c", 1920)  # queued behind "b": order kept, the sender's loop takes both
    assert taken == [(b"a", 0, 111, False)]
    assert track.packets_pushed == 3 and track.packets_sent_directly == 1
    assert [q.payload for q in track._queue] == [b"b", b"c"]
    track.detach()
    track.push(b"d", 2880)
    assert len(taken) == 1 and track.packets_pushed == 3


# ---------------------------------------------------------------------- the fast parser


def _extension_map() -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid")
            ]
        )
    )
    return extensions


@pytest.mark.parametrize("csrcs", [[], [7, 8]])
@pytest.mark.parametrize("padding", [0, 3])
def test_fast_parser_reads_what_aiortcs_parser_reads(csrcs: list[int], padding: int) -> None:
    extensions = _extension_map()
    packet = RtpPacket(payload_type=111, marker=1, sequence_number=65000, timestamp=2**32 - 5)
    packet.ssrc, packet.csrc, packet.payload = 99, csrcs, b"\x01\x02\x03\x04\x05"
    packet.extensions.mid = "0"
    data = bytes(packet.serialize(extensions))
    if padding:
        data = bytes([data[0] | 0x20]) + data[1:] + bytes(padding - 1) + bytes([padding])
    ours, theirs = hooks._parse_rtp(data), RtpPacket.parse(data, extensions)
    for name in ("version", "marker", "payload_type", "sequence_number", "timestamp", "ssrc"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.csrc == theirs.csrc == csrcs
    assert ours.payload == theirs.payload == b"\x01\x02\x03\x04\x05"
    assert ours.padding_size == theirs.padding_size == padding
    view = hooks._parse_view(data, 42)  # the inline receive path's parser
    assert view == (111, 65000, 2**32 - 5, True, 99, b"\x01\x02\x03\x04\x05", 42)


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x00" + bytes(9),  # short
        b"\x40" + bytes(11),  # version 1
        b"\x82" + bytes(11) + bytes(4),  # two CSRCs announced, one there
        b"\x90" + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4),  # extension longer than the data
        b"\xa0" + bytes(11) + b"\x00",  # padding length 0
        b"\xa0" + bytes(11) + b"\x05",  # padding longer than the payload
    ],
)
def test_fast_parser_rejects_what_aiortcs_parser_rejects(data: bytes) -> None:
    with pytest.raises(ValueError):
        RtpPacket.parse(data)
    with pytest.raises(ValueError):
        hooks._parse_rtp(data)
    with pytest.raises(ValueError):
        hooks._parse_view(data, 0)

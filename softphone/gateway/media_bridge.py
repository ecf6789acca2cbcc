"""Media between the gateway's call legs: forward RTP, transcode only across codecs.

The router asks for a bridge once both legs have negotiated:

* :func:`bridge` joins two legs. Where a received payload is in the codec the
  other leg uses (the usual case: both Opus, or both PCMU) it is forwarded as
  it is, under that leg's payload type: no decoding, no encoding, no jitter
  buffer in the middle, so the only buffering on the path is the receiving
  endpoint's own (about 10x cheaper than decoding and re-encoding,
  aiortc-probe.md §5). "The codec the other leg uses" is its first
  negotiated codec or the one its peer put first in its own SDP (what that
  peer sends): the JS SDK's codec-order munging makes the two differ, and
  either is what the peer asked to receive. The decision is per packet.
  Otherwise (Opus <-> PCMU) each direction decodes and re-encodes once, in
  arrival order, in our own :class:`~softphone.media.transcoder.Transcoder`,
  into the other leg's first codec.
* :func:`echo` sends a leg's audio back to it (the echo application).

Both legs keep their own SRTP, SSRC, sequence numbers, timestamps and RTCP: a
forwarded packet is received, decrypted and re-sent under the target leg's
header on the one event-loop step its datagram arrived on (no queue, no
sender task: :class:`~softphone.media.aiortc_hooks.SendPath`), numbered on
one line with what the leg sends itself before and after the bridge, and
counted in its sender reports. Plain forwarded audio takes the fused path
(:class:`~softphone.media.aiortc_hooks.ForwardRoute`: the same steps in one
function, from the source leg's socket callback to the target leg's socket),
everything else the general one (tap, packet track, sink). RFC 4733 events
reach the other leg through the router, which relays digits (injected into the
forwarded stream), while the audio stream carries codec silence in their place.
Closing either peer connection ends the bridge with it; :meth:`Bridge.close`
detaches it while both live (each leg then sends its own source again).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from softphone.media import aiortc_hooks as hooks
from softphone.media.audio_codecs import codec_key
from softphone.media.packet_track import PacketTrack
from softphone.media.peer_connection import PeerConnection
from softphone.media.rtp_tap import RtpTapPacket
from softphone.media.sdp import CodecInfo
from softphone.media.transcoder import Transcoder

__all__ = ["Bridge", "BridgeMode", "DirectionStats", "bridge", "echo"]

log = logging.getLogger(__name__)

BridgeMode = Literal["forward", "transcode"]


@dataclass(frozen=True, slots=True)
class DirectionStats:
    """Packets of one direction of a bridge."""

    received: int
    """Audio packets taken from the source leg."""
    forwarded: int
    """Payloads passed on untouched."""
    transcoded_in: int
    """Payloads decoded for transcoding."""
    transcoded_out: int
    """Payloads encoded for the target leg."""
    recovered: int
    """Lost source frames rebuilt from Opus FEC while transcoding."""
    dropped: int
    """Payloads dropped because the target leg's sender fell behind."""
    sent_directly: int = 0
    """Payloads the target leg sent on the event-loop step they arrived on (once its
    sender runs: the forwarding fast path), not through aiortc's sender task."""
    fused: int = 0
    """Of those, packets the fused path forwarded (received, decrypted, renumbered,
    encrypted and sent in one step: :class:`~softphone.media.aiortc_hooks.ForwardRoute`)."""


class _Direction:
    """Audio from ``source``'s remote to ``target``'s remote."""

    def __init__(self, source: PeerConnection, target: PeerConnection) -> None:
        target_codec = _send_codec(target)
        self._target = target
        self._target_codec = target_codec
        self._source_codecs = {c.pt: c for c in _audio_codecs(source)}
        target_pts = _forwardable(target)
        self._forward_pts = {  # source PT -> target PT, for payloads forwarded as they are
            pt: target_pts[codec_key(codec)]
            for pt, codec in self._source_codecs.items()
            if codec_key(codec) in target_pts
        }
        self._transcoders: dict[int, Transcoder] = {}
        self.track = PacketTrack(target_codec.clock_rate)
        self.received = 0
        self.forwarded = 0
        target.use_packet_track(self.track)
        self._remove_tap: Callable[[], None] | None = source.add_rtp_tap(
            self._on_packet, consume=True, audio_only=True
        )
        self.route = (
            hooks.fuse_forwarding(
                source.rtc_peer_connection,
                target.rtc_peer_connection,
                self._on_packet,
                self.track,
                self._forward_pts,
            )
            if self._forward_pts
            else None
        )
        """The fused fast path of the payloads forwarded as they are (None: none)."""

    def _on_packet(self, packet: RtpTapPacket) -> None:
        self.received += 1
        target_pt = self._forward_pts.get(packet.payload_type)
        if target_pt is not None:
            self.forwarded += 1
            self.track.push(packet.payload, packet.timestamp, target_pt, packet.marker)
            return
        codec = self._source_codecs.get(packet.payload_type)
        if codec is None:
            return
        transcoder = self._transcoders.get(packet.payload_type)
        if transcoder is None:
            try:
                transcoder = Transcoder(codec, self._target_codec, self._target.opus_settings)
            except ValueError as exc:
                log.warning("cannot bridge %s to %s: %s", codec.name, self._target_codec.name, exc)
                self._source_codecs.pop(packet.payload_type, None)
                return
            self._transcoders[packet.payload_type] = transcoder
        for timestamp, payload in transcoder.feed(packet.timestamp, packet.payload):
            self.track.push(payload, timestamp, self._target_codec.pt)

    def stats(self) -> DirectionStats:
        coders = self._transcoders.values()
        fused = self.route.forwarded if self.route is not None else 0
        return DirectionStats(
            received=self.received + fused,
            forwarded=self.forwarded + fused,
            transcoded_in=sum(t.packets_in for t in coders),
            transcoded_out=sum(t.packets_out for t in coders),
            recovered=sum(t.frames_recovered for t in coders),
            dropped=self.track.packets_dropped,
            sent_directly=self.track.packets_sent_directly + fused,
            fused=fused,
        )

    def close(self) -> None:
        remove, self._remove_tap = self._remove_tap, None
        if remove is None:
            return
        remove()  # the fused route goes with the tap
        with contextlib.suppress(RuntimeError):  # never negotiated: nothing to restore
            self._target.use_packet_track(None)


class Bridge:
    """A media bridge made by :func:`bridge` or :func:`echo`."""

    def __init__(self, forward: bool, directions: list[_Direction]) -> None:
        self._forward = forward
        self._directions = directions
        self._closed = False

    @property
    def mode(self) -> BridgeMode:
        """``"transcode"`` once any payload was transcoded, else ``"forward"``.

        Before any audio: what the negotiated codecs predict.
        """
        if any(d.stats().transcoded_in for d in self._directions):
            return "transcode"
        return "forward" if self._forward else "transcode"

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def stats(self) -> list[DirectionStats]:
        """One entry per direction (A to B first; a single one for an echo)."""
        return [d.stats() for d in self._directions]

    def close(self) -> None:
        """Stop bridging; each leg goes back to sending its own source (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for direction in self._directions:
            direction.close()


def _audio_codecs(pc: PeerConnection) -> list[CodecInfo]:
    return [c for c in pc.codecs if c.name.lower() != "telephone-event"]


def _forwardable(pc: PeerConnection) -> dict[tuple[str, int], int]:
    """Codecs ``pc``'s peer takes as they are, with their payload types on ``pc``."""
    keys = {codec_key(_send_codec(pc))}
    if pc.remote_preferred_codec is not None:
        keys.add(codec_key(pc.remote_preferred_codec))
    return {codec_key(c): c.pt for c in _audio_codecs(pc) if codec_key(c) in keys}


def _expected_codec(pc: PeerConnection) -> CodecInfo:
    """The codec ``pc``'s peer most likely sends."""
    return pc.remote_preferred_codec or _send_codec(pc)


def _send_codec(pc: PeerConnection) -> CodecInfo:
    codec = pc.send_codec
    if codec is None:
        raise RuntimeError("bridge: the peer connection has not negotiated yet")
    return codec


def bridge(a: PeerConnection, b: PeerConnection) -> Bridge:
    """Bridge two negotiated legs: what ``a``'s remote says reaches ``b``'s, and back."""
    forward = codec_key(_expected_codec(a)) in _forwardable(b) and codec_key(
        _expected_codec(b)
    ) in _forwardable(a)
    directions = [_Direction(a, b), _Direction(b, a)]
    log.debug("bridge %s <-> %s: %s", a.codec, b.codec, "forward" if forward else "transcode")
    return Bridge(forward, directions)


def echo(pc: PeerConnection) -> Bridge:
    """Send a negotiated leg's own audio back to it (forwarded, no decoding)."""
    return Bridge(True, [_Direction(pc, pc)])

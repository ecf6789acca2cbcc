"""``PeerConnection``: the one WebRTC adapter the SDK core and the gateway use.

One audio transceiver over aiortc, shaped after the JS SDK's PeerConnection
wrapper (media-behaviour.md §1, §2, §4, §5):

* local offers/answers: codec order via ``setCodecPreferences`` and the
  ``maxaveragebitrate`` munge; remote SDPs: codec-order munging;
* send: a clocked :class:`SourceTrack` (mute = silence, RTP keeps flowing),
  an Opus encoder honouring our and the peer's ``maxaveragebitrate``;
* receive: aiortc's decoder path, resampled to 48 kHz mono int16 and written
  to an :class:`AudioSink` (our own jitter buffer replaces this later);
* RFC 4733 DTMF both ways and stats with jitter in seconds.

Every aiortc private it needs goes through :mod:`softphone.media.aiortc_hooks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from softphone.audio_backends.base import SAMPLE_RATE, AudioSink, AudioSource
from softphone.media import aiortc_hooks as hooks
from softphone.media.sdp import (
    BITRATE_MAX,
    BITRATE_MIN,
    CodecInfo,
    apply_codec_preferences,
    opus_fmtp,
    set_max_average_bitrate,
    strip_stray_cr,
)
from softphone.media.source_track import SourceTrack

__all__ = ["DEFAULT_CODEC_PREFERENCES", "PeerConnection", "ice_servers_to_aiortc"]

logger = logging.getLogger(__name__)

DEFAULT_CODEC_PREFERENCES = ("pcmu", "opus")
"""The JS SDK's default ``codecPreferences``."""
_TELEPHONE_EVENT = "telephone-event"


def ice_servers_to_aiortc(servers: Sequence[Mapping[str, Any]] | None) -> list[RTCIceServer]:
    """Convert JS-style ``{"urls", "username", "credential"}`` dicts (``url`` accepted too)."""
    out: list[RTCIceServer] = []
    for server in servers or []:
        urls = server.get("urls", server.get("url"))
        if not urls:
            raise ValueError(f"ICE server without urls: {server!r}")
        out.append(
            RTCIceServer(
                urls=urls, username=server.get("username"), credential=server.get("credential")
            )
        )
    return out


def _mono_pcm(frame: av.AudioFrame) -> np.ndarray[Any, np.dtype[np.int16]]:
    return np.ascontiguousarray(frame.to_ndarray().reshape(-1), dtype=np.int16)


class PeerConnection:
    """One audio call leg over aiortc.

    Args:
        ice_servers: JS-style ICE server dicts; None or ``[]`` means host
            candidates only. aiortc's Google STUN default is never used.
        codec_preferences: codec names in preference order (case-insensitive,
            e.g. ``("pcmu", "opus")``); other codecs follow in aiortc's order.
        max_average_bitrate: Opus bitrate cap in bit/s (6000..510000, else
            ignored): munged into our SDPs and applied to our own encoder.
        dtmf: offer/accept ``telephone-event`` (RFC 4733 DTMF).

    Flow: caller ``await create_offer(src)`` → send SDP → ``await
    apply_answer(sdp)``; callee ``await create_answer(offer, src)``. SDPs we
    return carry every candidate (aiortc gathers fully first).
    Callbacks run on the event loop: ``on_dtmf(digit)`` for received RFC 4733
    digits and ``on_connection_state_change(state)``.
    """

    def __init__(
        self,
        *,
        ice_servers: Sequence[Mapping[str, Any]] | None = None,
        codec_preferences: Sequence[str] = DEFAULT_CODEC_PREFERENCES,
        max_average_bitrate: int | None = None,
        dtmf: bool = True,
    ) -> None:
        hooks.register_telephone_event()
        self._codec_preferences = tuple(p.lower() for p in codec_preferences)
        self._max_average_bitrate = (
            max_average_bitrate
            if isinstance(max_average_bitrate, int)
            and BITRATE_MIN <= max_average_bitrate <= BITRATE_MAX
            else None
        )
        self._dtmf_enabled = dtmf
        self._pc = RTCPeerConnection(
            configuration=RTCConfiguration(iceServers=ice_servers_to_aiortc(ice_servers))
        )
        self._pc.on("connectionstatechange", self._on_state_change)
        self._track = SourceTrack(None)
        self._transceiver: Any = None
        self._shim: hooks.ReceiveShim | None = None
        self._dtmf: hooks.DtmfSender | None = None
        self._codecs: list[CodecInfo] = []
        self._sink: AudioSink | None = None
        self._pump: asyncio.Task[None] | None = None
        self._closed = False
        self.on_dtmf: Callable[[str], None] | None = None
        self.on_connection_state_change: Callable[[str], None] | None = None

    # ------------------------------------------------------------------ properties

    @property
    def rtc_peer_connection(self) -> Any:
        """The underlying aiortc ``RTCPeerConnection`` (escape hatch; prefer this class)."""
        return self._pc

    @property
    def local_sdp(self) -> str | None:
        """The applied local description's SDP (with candidates), None before one."""
        description = self._pc.localDescription
        return str(description.sdp) if description is not None else None

    @property
    def remote_sdp(self) -> str | None:
        """The applied remote description's SDP as aiortc holds it, None before one."""
        description = self._pc.remoteDescription
        return str(description.sdp) if description is not None else None

    @property
    def connection_state(self) -> str:
        """aiortc's ``connectionState``: new, connecting, connected, failed or closed."""
        return str(self._pc.connectionState)

    @property
    def codec(self) -> str | None:
        """The negotiated send codec, MIME subtype spelling (``PCMU``, ``opus``); None before."""
        audio = self._audio_codec()
        return audio.name if audio else None

    @property
    def can_insert_dtmf(self) -> bool:
        """True when telephone-event at the audio codec's clock rate was negotiated."""
        return self._dtmf is not None and self._dtmf.can_insert

    @property
    def muted(self) -> bool:
        """Send silence instead of the source (RTP keeps flowing)."""
        return self._track.muted

    @muted.setter
    def muted(self, value: bool) -> None:
        self._track.muted = bool(value)

    @property
    def source(self) -> AudioSource | None:
        """The current local audio source."""
        return self._track.source

    def replace_source(self, source: AudioSource | None) -> None:
        """Read local audio from ``source`` from the next frame on (no renegotiation)."""
        self._track.replace_source(source)

    def set_remote_sink(self, sink: AudioSink | None) -> None:
        """Write remote audio (48 kHz mono int16) to ``sink``; None discards it."""
        self._sink = sink

    # ------------------------------------------------------------------ negotiation

    async def create_offer(self, source: AudioSource | None) -> str:
        """Create and apply a local offer; returns its SDP (candidates included)."""
        self._setup(source)
        offer = await self._pc.createOffer()
        sdp = set_max_average_bitrate(offer.sdp, self._max_average_bitrate)
        await self._pc.setLocalDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        return str(self._pc.localDescription.sdp)

    async def apply_answer(self, sdp: str) -> None:
        """Apply the remote answer (codec-order munged) and start media handling."""
        munged = apply_codec_preferences(strip_stray_cr(sdp), self._codec_preferences)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=munged, type="answer"))
        self._negotiated(munged)

    async def create_answer(self, offer_sdp: str, source: AudioSource | None) -> str:
        """Apply a remote offer (codec-order munged) and return our applied answer's SDP."""
        self._setup(source)
        offer = apply_codec_preferences(strip_stray_cr(offer_sdp), self._codec_preferences)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        answer = await self._pc.createAnswer()
        sdp = set_max_average_bitrate(answer.sdp, self._max_average_bitrate)
        await self._pc.setLocalDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self._negotiated(offer)
        return str(self._pc.localDescription.sdp)

    def _capabilities(self) -> list[Any]:
        """aiortc's audio capabilities, stable-sorted by preference; telephone-event last."""
        caps = RTCRtpSender.getCapabilities("audio").codecs
        audio = [c for c in caps if c.name.lower() != _TELEPHONE_EVENT]
        events = [c for c in caps if c.name.lower() == _TELEPHONE_EVENT]
        prefs = self._codec_preferences

        def rank(cap: Any) -> int:
            name = cap.name.lower()
            return prefs.index(name) if name in prefs else len(prefs)

        return sorted(audio, key=rank) + (events if self._dtmf_enabled else [])

    def _setup(self, source: AudioSource | None) -> None:
        if self._closed:
            raise RuntimeError("PeerConnection is closed")
        if self._transceiver is not None:
            raise RuntimeError("this PeerConnection already negotiated (no renegotiation yet)")
        self._track.replace_source(source)
        transceiver = self._pc.addTransceiver(self._track, direction="sendrecv")
        transceiver.setCodecPreferences(self._capabilities())
        self._shim = hooks.receive_shim(transceiver.receiver)
        self._shim.on_dtmf = self._dispatch_dtmf
        self._dtmf = hooks.dtmf_sender(transceiver.sender)
        hooks.set_sender_opus_params(
            transceiver.sender, bitrate=self._max_average_bitrate, fec=False, dtx=False
        )
        self._transceiver = transceiver

    def _audio_codec(self) -> CodecInfo | None:
        return next((c for c in self._codecs if c.name.lower() != _TELEPHONE_EVENT), None)

    def _negotiated(self, remote_sdp: str) -> None:
        """Configure shims, DTMF and the encoder from the negotiated codecs; start the pump."""
        transceiver = self._transceiver
        assert transceiver is not None and self._shim is not None and self._dtmf is not None
        self._codecs = hooks.transceiver_codecs(transceiver)
        self._shim.configure(self._codecs)
        audio = self._audio_codec()
        event = next(
            (
                c
                for c in self._codecs
                if c.name.lower() == _TELEPHONE_EVENT
                and audio is not None
                and c.clock_rate == audio.clock_rate
            ),
            None,
        )
        if self._dtmf_enabled and event is not None and audio is not None:
            self._dtmf.configure(event.pt, audio.clock_rate)
        else:
            self._dtmf.configure(None)
        remote = opus_fmtp(remote_sdp)
        caps = [self._max_average_bitrate, remote.max_average_bitrate if remote else None]
        bitrates = [b for b in caps if b is not None]
        hooks.set_sender_opus_params(
            transceiver.sender,
            bitrate=min(bitrates) if bitrates else None,
            fec=bool(remote and remote.use_inband_fec),
            dtx=bool(remote and remote.use_dtx),
        )
        track = transceiver.receiver.track
        if track is not None and self._pump is None:
            self._pump = asyncio.ensure_future(self._pump_remote(track))

    # ------------------------------------------------------------------ media

    async def _pump_remote(self, track: Any) -> None:
        """Pull decoded frames from aiortc, resample to 48 kHz mono s16, feed the sink.

        Runs even without a sink so aiortc's unbounded frame queue never grows.
        """
        resampler: av.AudioResampler | None = None
        layout: tuple[str, str, int] | None = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            shape = (frame.format.name, frame.layout.name, frame.sample_rate)
            if resampler is None or shape != layout:
                resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
                layout = shape
            for out in resampler.resample(frame):
                sink = self._sink
                if sink is None:
                    continue
                try:
                    sink.write(_mono_pcm(out))
                except Exception:
                    logger.exception("remote audio sink failed")

    def add_rtp_tap(
        self, tap: Callable[[hooks.RtpTapPacket], None], *, consume: bool = False
    ) -> Callable[[], None]:
        """Receive every incoming RTP packet (encoded payload, seq, timestamp) in ``tap``.

        For RTP forwarding and our own jitter buffer. ``consume=True`` keeps
        packets from aiortc's decoder (the remote sink goes quiet). Available
        after :meth:`create_offer` / :meth:`create_answer`; returns a remover.
        """
        if self._shim is None:
            raise RuntimeError("no transceiver yet: call create_offer or create_answer first")
        return self._shim.add_tap(tap, consume=consume)

    def _dispatch_dtmf(self, digit: str) -> None:
        if self.on_dtmf is not None:
            self.on_dtmf(digit)

    def _on_state_change(self) -> None:
        if self.on_connection_state_change is not None:
            try:
                self.on_connection_state_change(self.connection_state)
            except Exception:
                logger.exception("on_connection_state_change callback failed")

    async def insert_dtmf(self, tones: str, duration_ms: int = 160, gap_ms: int = 70) -> None:
        """Send ``tones`` as RFC 4733 events; returns once all have been sent.

        Defaults are the JS SDK's (160 ms tones, 70 ms gaps); ``,`` pauses 2 s.
        Raises RuntimeError when telephone-event was not negotiated (callers
        then fall back to the ``dtmf`` signaling message) and ValueError for
        characters outside ``0-9 * # A-D ,``.
        """
        if self._dtmf is None or not self._dtmf.can_insert:
            raise RuntimeError("telephone-event was not negotiated")
        await self._dtmf.insert(tones, duration_ms, gap_ms)

    # ------------------------------------------------------------------ stats

    async def get_stats(self) -> dict[str, Any]:
        """A flat snapshot of cumulative counters, JS-style names.

        Keys: ``timestamp`` (ms since the epoch), ``codecName``, ``packetsSent``,
        ``bytesSent`` (RTP payload bytes), ``packetsReceived``, ``bytesReceived``
        (payload bytes), ``packetsLost``, ``jitter`` (seconds; aiortc reports RTP
        units), ``rtt`` (seconds, from RTCP; None until known),
        ``remotePacketsLost``, ``remoteJitter`` (s), ``fractionLost`` (0..1,
        as reported by the peer), ``transport`` (packets/bytes over the
        wire) and ``selectedCandidatePair`` (dict or None).
        """
        audio = self._audio_codec()
        clock = audio.clock_rate if audio else SAMPLE_RATE
        out: dict[str, Any] = {
            "timestamp": time.time() * 1000.0,
            "codecName": audio.name if audio else None,
            "packetsSent": 0,
            "bytesSent": 0,
            "packetsReceived": 0,
            "bytesReceived": self._shim.bytes_received if self._shim else 0,
            "packetsLost": 0,
            "jitter": 0.0,
            "rtt": None,
            "remotePacketsLost": None,
            "remoteJitter": None,
            "fractionLost": None,
            "transport": None,
            "selectedCandidatePair": hooks.selected_candidate_pair(self._pc),
        }
        if self._closed:
            return out
        report = await self._pc.getStats()
        for stat in report.values():
            kind = stat.type
            if kind == "outbound-rtp":
                out["packetsSent"] = stat.packetsSent
                out["bytesSent"] = stat.bytesSent
            elif kind == "inbound-rtp":
                out["packetsReceived"] = stat.packetsReceived
                out["packetsLost"] = stat.packetsLost
                out["jitter"] = stat.jitter / clock
            elif kind == "remote-inbound-rtp":
                out["rtt"] = stat.roundTripTime
                out["remotePacketsLost"] = stat.packetsLost
                out["remoteJitter"] = stat.jitter / clock
                out["fractionLost"] = stat.fractionLost / 256.0
            elif kind == "transport":
                out["transport"] = {
                    "packetsSent": stat.packetsSent,
                    "packetsReceived": stat.packetsReceived,
                    "bytesSent": stat.bytesSent,
                    "bytesReceived": stat.bytesReceived,
                }
        return out

    # ------------------------------------------------------------------ teardown

    async def close(self) -> None:
        """Stop media and close the connection (sources and sinks stay open: caller owns them)."""
        if self._closed:
            return
        self._closed = True
        if self._dtmf is not None:
            self._dtmf.close()
        await self._pc.close()
        self._track.stop()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

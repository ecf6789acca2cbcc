"""``PeerConnection``: the one WebRTC adapter the SDK core and the gateway use.

One audio transceiver over aiortc, shaped after the JS SDK's PeerConnection
wrapper (media-behaviour.md §1, §2, §4, §5):

* local offers/answers: codec order via ``setCodecPreferences``, the
  ``maxaveragebitrate`` munge and ``useinbandfec=1`` (our receive path uses
  the peer's Opus FEC); remote SDPs: codec-order munging;
* send: a :class:`SendTrack` hands aiortc packets it encoded itself, from a
  clocked :class:`SourceTrack` (mute = silence, RTP keeps flowing) with our
  encoder honouring the peer's fmtp (``maxaveragebitrate``, ``useinbandfec``,
  ``usedtx``, mono), 20 ms packets; or, for a gateway, the already-encoded
  payloads of a :class:`PacketTrack` (:meth:`use_packet_track`);
* receive: RTP taken from aiortc right after SRTP into our own adaptive jitter
  buffer, decoder and concealment, played out on a 20 ms clock into an
  :class:`AudioSink` as 48 kHz mono int16 (:mod:`softphone.media.playout`).
  aiortc's own jitter buffer and decoder never run (``receive_path="aiortc"``
  keeps them, as the baseline the benchmarks compare against);
* RFC 4733 DTMF both ways and stats with jitter in seconds, plus the receive
  path's (concealment, buffer delay);
* ICE as the JS ``rtcConfiguration`` asks (:mod:`softphone.media.rtc_configuration`):
  every STUN/TURN server (``turn:`` over UDP or TCP, ``turns:`` over TLS), the
  ``relay`` transport policy, a bounded gathering wait
  (:data:`~softphone.media.ice_gathering.ICE_GATHERING_TIMEOUT_S`) and ICE
  restarts that keep all of it and survive a dead old path.

Every aiortc private it needs goes through :mod:`softphone.media.aiortc_hooks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from softphone.audio_backends.base import SAMPLE_RATE, AudioSink, AudioSource, Pcm
from softphone.audio_backends.null import NullSink
from softphone.media import aiortc_hooks as hooks
from softphone.media.ice_gathering import (
    ICE_GATHERING_TIMEOUT_S,
    GatheringFailure,
    GatheringReport,
    IceGatheringSettings,
)
from softphone.media.opus import OpusSettings
from softphone.media.packet_track import PacketTrack
from softphone.media.playout import RemotePlayout
from softphone.media.rtc_configuration import RtcConfiguration, parse_rtc_configuration
from softphone.media.rtp_tap import RtpTapPacket
from softphone.media.sdp import (
    BITRATE_MAX,
    BITRATE_MIN,
    CodecInfo,
    add_opus_fmtp,
    advertise_address,
    apply_codec_preferences,
    ice_credentials,
    negotiated_codec,
    new_dtls_session,
    opus_fmtp,
    set_max_average_bitrate,
    strip_stray_cr,
)
from softphone.media.send_track import SendTrack
from softphone.media.source_track import SourceTrack

__all__ = [
    "DEFAULT_CODEC_PREFERENCES",
    "OPUS_RECEIVE_FMTP",
    "PeerConnection",
    "ReceivePath",
]

logger = logging.getLogger(__name__)

DEFAULT_CODEC_PREFERENCES = ("pcmu", "opus")
"""The JS SDK's default ``codecPreferences``."""
OPUS_RECEIVE_FMTP: Mapping[str, str] = {"useinbandfec": "1"}
"""What our SDPs ask of the peer's Opus encoder: in-band FEC, which our receive
path uses to rebuild a lost packet from the next one (PESQ-WB at 1 % loss:
4.41 with FEC, 3.55 with concealment alone; aiortc-probe figures re-measured)."""
ReceivePath = Literal["softphone", "aiortc"]
_TELEPHONE_EVENT = "telephone-event"


def _aiortc_configuration(rtc: RtcConfiguration) -> RTCConfiguration:
    """aiortc's configuration: the policy and the STUN server (TURN is gathered by our hooks)."""
    stun = [RTCIceServer(urls=rtc.stun_servers[0].url)] if rtc.stun_servers else []
    return RTCConfiguration(
        iceServers=stun, iceTransportPolicy=RTCIceTransportPolicy(rtc.ice_transport_policy)
    )


def _log_restart_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("ICE restart did not connect: %s", task.exception())


def _mono_pcm(frame: av.AudioFrame) -> np.ndarray[Any, np.dtype[np.int16]]:
    return np.ascontiguousarray(frame.to_ndarray().reshape(-1), dtype=np.int16)


log = logging.getLogger("softphone.media.peer_connection")


_NO_SINK = NullSink()
"""Stands in until a sink is set (remote audio is dropped meanwhile)."""


class PeerConnection:
    """One audio call leg over aiortc.

    Args:
        ice_servers: JS-style ICE server dicts (``urls``, ``username``,
            ``credential``); None or ``[]`` means host candidates only.
            aiortc's Google STUN default is never used. Every TURN server is
            used, over UDP, TCP (``?transport=tcp``) or TLS (``turns:``).
        ice_transport_policy: ``"all"`` or ``"relay"`` (only TURN relay
            candidates are offered and used, also after ICE restarts).
        ice_gathering_timeout: seconds an offer or answer waits for STUN/TURN
            candidates (None: aioice's 5 s); what is gathered by then is sent.
        turn_tls_context: verifies ``turns:`` servers (None: the system trust
            store, or the ``SSL_CERT_FILE`` file).
        codec_preferences: codec names in preference order (case-insensitive,
            e.g. ``("pcmu", "opus")``); other codecs follow in aiortc's order.
        max_average_bitrate: Opus bitrate cap in bit/s (6000..510000, else
            ignored): munged into our SDPs and applied to our own encoder.
        dtmf: offer/accept ``telephone-event`` (RFC 4733 DTMF).
        codecs: when given, negotiate only these audio codecs (names as in
            ``codec_preferences``; telephone-event still follows ``dtmf``), like
            a SIP trunk that only speaks PCMU. None offers every codec aiortc has.
        receive_path: ``"softphone"`` (default) plays remote audio through our
            jitter buffer, concealment and playout clock; ``"aiortc"`` through
            aiortc's fixed 80 ms buffer and decoder thread (no concealment,
            latency grows after loss), kept as the benchmarks' baseline.
        advertised_address: put in every SDP we send instead of our host
            candidates' address (1:1 NAT: bind the private address, advertise the
            public one); None sends the bound address.

    Flow: caller ``await create_offer(src)`` → send SDP → ``await
    apply_answer(sdp)``; callee ``await create_answer(offer, src)``. SDPs we
    return carry every candidate gathered within the time bound.
    Callbacks run on the event loop: ``on_dtmf(digit)`` for received RFC 4733
    digits, ``on_connection_state_change(state)`` and
    ``on_ice_gathering_failure(reason)`` (``"none"``/``"timeout"``, the JS
    ``Call.IceGatheringFailureReason``) when an SDP goes out with no candidate.

    Raises ``ValueError`` for an invalid ICE configuration (an unknown
    policy, a malformed server URL, a TURN server without credentials).
    """

    def __init__(
        self,
        *,
        ice_servers: Sequence[Mapping[str, Any]] | None = None,
        ice_transport_policy: str = "all",
        ice_gathering_timeout: float | None = ICE_GATHERING_TIMEOUT_S,
        turn_tls_context: ssl.SSLContext | None = None,
        codec_preferences: Sequence[str] = DEFAULT_CODEC_PREFERENCES,
        max_average_bitrate: int | None = None,
        dtmf: bool = True,
        codecs: Sequence[str] | None = None,
        receive_path: ReceivePath = "softphone",
        advertised_address: str | None = None,
    ) -> None:
        if receive_path not in ("softphone", "aiortc"):
            raise ValueError(f"unknown receive_path {receive_path!r}")
        self._rtc = parse_rtc_configuration(
            {"iceServers": ice_servers, "iceTransportPolicy": ice_transport_policy}
        )
        for url in self._rtc.skipped_urls:
            log.info("ICE server %s skipped: no STUN over TLS or TURN over DTLS here", url)
        self._gathering_timeout = ice_gathering_timeout
        self._advertised = advertised_address
        self._turn_tls_context = turn_tls_context
        hooks.register_telephone_event()
        self._receive_path: ReceivePath = receive_path
        self._codec_preferences = tuple(p.lower() for p in codec_preferences)
        self._max_average_bitrate = (
            max_average_bitrate
            if isinstance(max_average_bitrate, int)
            and BITRATE_MIN <= max_average_bitrate <= BITRATE_MAX
            else None
        )
        self._dtmf_enabled = dtmf
        self._allowed = None if codecs is None else {c.lower() for c in codecs}
        self._pc = RTCPeerConnection(configuration=_aiortc_configuration(self._rtc))
        self._pc.on("connectionstatechange", self._on_state_change)
        self._source_track = SourceTrack(None)
        self._send_track = SendTrack(self._source_track)
        self._transceiver: Any = None
        self._shim: hooks.ReceiveShim | None = None
        self._dtmf: hooks.DtmfSender | None = None
        self._codecs: list[CodecInfo] = []
        self._opus_settings = OpusSettings(bitrate=self._max_average_bitrate)
        self._remote_preferred: CodecInfo | None = None
        self._sink: AudioSink | None = None
        self._playout: RemotePlayout | None = None
        self._pump: asyncio.Task[None] | None = None
        self._closed = False
        self._restart_tasks: set[asyncio.Future[None]] = set()
        self.on_dtmf: Callable[[str], None] | None = None
        self.on_connection_state_change: Callable[[str], None] | None = None
        self.on_ice_gathering_failure: Callable[[GatheringFailure], None] | None = None

    # ------------------------------------------------------------------ properties

    @property
    def rtc_peer_connection(self) -> Any:
        """The underlying aiortc ``RTCPeerConnection`` (escape hatch; prefer this class)."""
        return self._pc

    @property
    def rtc_configuration(self) -> RtcConfiguration:
        """The validated ICE configuration: policy, STUN and TURN servers."""
        return self._rtc

    @property
    def ice_gathering(self) -> GatheringReport | None:
        """What the last gathering produced (candidate types, TURN outcomes, seconds)."""
        return hooks.gathering_report(self._pc)

    @property
    def local_sdp(self) -> str | None:
        """The applied local description's SDP as sent (with candidates), None before one."""
        return self._outgoing_sdp() if self._pc.localDescription is not None else None

    def _outgoing_sdp(self) -> str:
        """The applied local SDP, host addresses replaced by ``advertised_address`` if set."""
        sdp = str(self._pc.localDescription.sdp)
        return advertise_address(sdp, self._advertised) if self._advertised else sdp

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
    def send_codec(self) -> CodecInfo | None:
        """The negotiated audio codec in full (both directions use it); None before."""
        return self._audio_codec()

    @property
    def remote_preferred_codec(self) -> CodecInfo | None:
        """The first audio codec of the peer's own SDP, before our codec-order munging.

        What a peer that orders codecs by its own preference (the JS SDK, our
        SDK) sends to us; None before negotiation.
        """
        return self._remote_preferred

    @property
    def codecs(self) -> list[CodecInfo]:
        """Every negotiated codec (telephone-event included), in aiortc's order."""
        return list(self._codecs)

    @property
    def opus_settings(self) -> OpusSettings:
        """What an Opus encoder sending to this peer uses (our cap and the peer's fmtp)."""
        return self._opus_settings

    @property
    def receive_path(self) -> ReceivePath:
        """``"softphone"`` (our jitter buffer) or ``"aiortc"`` (aiortc's, the baseline)."""
        return self._receive_path

    @property
    def can_insert_dtmf(self) -> bool:
        """True when telephone-event at the audio codec's clock rate was negotiated."""
        return self._dtmf is not None and self._dtmf.can_insert

    @property
    def muted(self) -> bool:
        """Send silence instead of the source (RTP keeps flowing)."""
        return self._source_track.muted

    @muted.setter
    def muted(self, value: bool) -> None:
        self._source_track.muted = bool(value)

    @property
    def source(self) -> AudioSource | None:
        """The current local audio source."""
        return self._source_track.source

    def replace_source(self, source: AudioSource | None) -> None:
        """Read local audio from ``source`` from the next frame on (no renegotiation)."""
        self._source_track.replace_source(source)

    def set_local_tap(self, tap: Callable[[Pcm], None] | None) -> None:
        """Call ``tap`` with each 20 ms block we send (silence while muted); None: stop."""
        self._source_track.on_pcm = tap

    def set_remote_sink(self, sink: AudioSink | None) -> None:
        """Write remote audio (48 kHz mono int16) to ``sink``; None discards it.

        Without a sink nothing is decoded (a gateway leg whose packets are
        forwarded costs no decoding).
        """
        self._sink = sink
        if self._playout is not None:
            if sink is None:
                self._playout.reset()
            self._playout.sink = sink or _NO_SINK

    def use_packet_track(self, track: PacketTrack | None) -> None:
        """Send the already-encoded packets of ``track`` instead of encoding the source.

        For RTP forwarding (:mod:`softphone.gateway.media_bridge`): each payload
        must be in a codec negotiated on this leg, with its payload type given
        when it is not :attr:`send_codec`'s. None goes back to the local
        source. The RTP timeline continues across the switch either way.
        """
        if self._transceiver is None:
            raise RuntimeError("no transceiver yet: call create_offer or create_answer first")
        if track is not None:
            hooks.forward_packets(self._transceiver.sender, track, self._codecs)
        self._send_track.use_packets(track)

    # ------------------------------------------------------------------ negotiation

    async def create_offer(self, source: AudioSource | None) -> str:
        """Create and apply a local offer; returns its SDP (candidates included)."""
        self._setup(source)
        offer = await self._pc.createOffer()
        sdp = self._munge_local(offer.sdp)
        await self._pc.setLocalDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self._check_gathering()
        return self._outgoing_sdp()

    async def apply_answer(self, sdp: str) -> None:
        """Apply the remote answer (codec-order munged) and start media handling."""
        munged = apply_codec_preferences(strip_stray_cr(sdp), self._codec_preferences)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=munged, type="answer"))
        self._remote_preferred = negotiated_codec(strip_stray_cr(sdp))
        self._negotiated(munged)

    async def create_answer(self, offer_sdp: str, source: AudioSource | None) -> str:
        """Apply a remote offer (codec-order munged) and return our applied answer's SDP."""
        self._setup(source)
        offer = apply_codec_preferences(strip_stray_cr(offer_sdp), self._codec_preferences)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        self._remote_preferred = negotiated_codec(strip_stray_cr(offer_sdp))
        answer = await self._pc.createAnswer()
        sdp = self._munge_local(answer.sdp)
        await self._pc.setLocalDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self._check_gathering()
        self._negotiated(offer)
        return self._outgoing_sdp()

    # ------------------------------------------------------------------ ICE restart

    async def restart_ice_offer(self) -> str:
        """ICE restart, offering side: a new offer with fresh ICE credentials.

        Send it as ``reinvite``; pass the answer to :meth:`apply_ice_restart_answer`.
        DTLS, SRTP and the audio are untouched (see ``aiortc_hooks.IceRestarter``).
        """
        restarter = hooks.ice_restarter(self._pc)
        await restarter.prepare()
        self._check_gathering()
        offer = await self._pc.createOffer()
        sdp = self._munge_local(offer.sdp)
        await self._pc.setLocalDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        return self._outgoing_sdp()

    async def apply_ice_restart_answer(self, sdp: str) -> None:
        """Apply the answer to our restart offer and connect the new path.

        An answer with another DTLS certificate than before (the peer started a new
        media session) also gets a new DTLS session, as a browser does.
        Raises ``ConnectionError`` when the new path does not come up.
        """
        munged = apply_codec_preferences(strip_stray_cr(sdp), self._codec_preferences)
        before = self.remote_sdp
        if self._pc.signalingState == "have-local-offer":
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=munged, type="answer"))
        restarter = hooks.ice_restarter(self._pc)
        if restarter.pending:
            await restarter.complete(munged)
        if new_dtls_session(before, munged):
            # the peer lost its DTLS state (e.g. another gateway took the call over)
            log.info("the peer answered with a new DTLS certificate: restarting DTLS")
            await hooks.restart_dtls(self._pc, munged)

    async def answer_ice_restart(self, offer_sdp: str) -> str:
        """Answering side (the gateway): answer a re-offer; restart ICE if its ufrag changed.

        Handles our SDK's ``reinvite`` and a browser's standard ICE-restart re-offer
        alike. The new path connects in the background after the answer is returned.
        """
        offer = apply_codec_preferences(strip_stray_cr(offer_sdp), self._codec_preferences)
        restarter = hooks.ice_restarter(self._pc)
        credentials = ice_credentials(offer)
        restart = credentials is not None and credentials[0] != restarter.remote_ufrag
        if restart:
            await restarter.prepare()
            self._check_gathering()
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        answer = await self._pc.createAnswer()
        sdp = self._munge_local(answer.sdp)
        await self._pc.setLocalDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        if restart:
            task = asyncio.ensure_future(restarter.complete(offer))
            task.add_done_callback(_log_restart_failure)
            self._restart_tasks.add(task)
            task.add_done_callback(self._restart_tasks.discard)
        return self._outgoing_sdp()

    def _check_gathering(self) -> None:
        """Report an SDP about to go out with no candidate at all (JS ``IceGatheringFailed``)."""
        report = hooks.gathering_report(self._pc)
        failure = report.failure if report is not None else None
        if failure is None:
            return
        assert report is not None
        log.warning(
            "ICE gathering failed (%s): no usable candidate (policy %s, TURN timed out: %s, "
            "failed: %s)",
            failure,
            self._rtc.ice_transport_policy,
            report.timed_out,
            report.failed,
        )
        if self.on_ice_gathering_failure is not None:
            try:
                self.on_ice_gathering_failure(failure)
            except Exception:
                logger.exception("on_ice_gathering_failure callback failed")

    def _munge_local(self, sdp: str) -> str:
        """Our bitrate cap and ``useinbandfec=1`` in the Opus fmtp of a local SDP."""
        capped = set_max_average_bitrate(sdp, self._max_average_bitrate)
        return add_opus_fmtp(capped, OPUS_RECEIVE_FMTP)

    def _capabilities(self) -> list[Any]:
        """aiortc's audio capabilities, stable-sorted by preference; telephone-event last."""
        caps = RTCRtpSender.getCapabilities("audio").codecs
        audio = [c for c in caps if c.name.lower() != _TELEPHONE_EVENT]
        if self._allowed is not None:
            audio = [c for c in audio if c.name.lower() in self._allowed]
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
        self._source_track.replace_source(source)
        transceiver = self._pc.addTransceiver(self._send_track, direction="sendrecv")
        hooks.configure_ice(
            self._pc,
            IceGatheringSettings(
                relay_only=self._rtc.relay_only,
                stun_server=self._rtc.stun_server,
                turn_servers=self._rtc.turn_servers,
                timeout=self._gathering_timeout,
                tls_context=self._turn_tls_context,
            ),
        )
        transceiver.setCodecPreferences(self._capabilities())
        self._shim = hooks.receive_shim(transceiver.receiver)
        self._shim.on_dtmf = self._dispatch_dtmf
        self._dtmf = hooks.dtmf_sender(transceiver.sender)
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
            self._dtmf.configure(event.pt, audio.clock_rate, codecs=self._codecs)
        else:
            self._dtmf.configure(None)
        remote = opus_fmtp(remote_sdp)
        caps = [self._max_average_bitrate, remote.max_average_bitrate if remote else None]
        bitrates = [b for b in caps if b is not None]
        self._opus_settings = OpusSettings(
            bitrate=min(bitrates) if bitrates else None,
            fec=bool(remote and remote.use_inband_fec),
            dtx=bool(remote and remote.use_dtx),
        )
        if audio is not None:
            self._send_track.configure(audio, self._opus_settings)
        if self._receive_path == "softphone":
            self._start_playout()
        else:
            track = transceiver.receiver.track
            if track is not None and self._pump is None:
                self._pump = asyncio.ensure_future(self._pump_remote(track))

    # ------------------------------------------------------------------ media

    def _start_playout(self) -> None:
        """Take every audio packet from aiortc into our own receive path (once)."""
        if self._playout is not None or self._shim is None:
            return
        audio = [c for c in self._codecs if c.name.lower() != _TELEPHONE_EVENT]
        self._playout = RemotePlayout(audio, self._sink or _NO_SINK)
        self._shim.add_tap(self._on_rtp, consume=True, audio_only=True)
        self._playout.start()

    def _on_rtp(self, packet: RtpTapPacket) -> None:
        playout = self._playout
        if playout is None or self._sink is None:
            return  # nobody listens: decode nothing
        playout.push(
            payload_type=packet.payload_type,
            sequence_number=packet.sequence_number,
            timestamp=packet.timestamp,
            ssrc=packet.ssrc,
            payload=packet.payload,
        )

    async def _pump_remote(self, track: Any) -> None:
        """aiortc's receive path: pull decoded frames, resample to 48 kHz mono s16, feed the sink.

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
        self,
        tap: Callable[[RtpTapPacket], None],
        *,
        consume: bool = False,
        audio_only: bool = False,
    ) -> Callable[[], None]:
        """Receive every incoming RTP packet (encoded payload, seq, timestamp) in ``tap``.

        For RTP forwarding. ``consume=True`` keeps packets from aiortc's
        decoder (only matters with ``receive_path="aiortc"``: ours always
        consumes). ``audio_only=True`` gives the audio stream with RFC 4733
        events replaced by codec silence. Available after :meth:`create_offer`
        / :meth:`create_answer`; returns a remover.
        """
        if self._shim is None:
            raise RuntimeError("no transceiver yet: call create_offer or create_answer first")
        return self._shim.add_tap(tap, consume=consume, audio_only=audio_only)

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

        Our receive path adds (samples at 48 kHz, times in seconds):
        ``totalSamplesReceived``, ``concealedSamples``,
        ``silentConcealedSamples``, ``concealmentEvents``, ``fecSamples``,
        ``insertedSamplesForDeceleration``, ``removedSamplesForAcceleration``,
        ``jitterBufferDelay`` and ``jitterBufferEmittedCount`` (WebRTC
        semantics: their ratio is the mean buffering delay),
        ``jitterBufferTargetDelay`` and ``bufferDelay`` (current),
        ``jitterBufferJitter`` (arrival jitter as the buffer saw it), and
        ``packetsDiscarded`` (late, duplicate or overflowing).
        """
        audio = self._audio_codec()
        clock = audio.clock_rate if audio else SAMPLE_RATE
        out: dict[str, Any] = {
            "timestamp": time.time() * 1000.0,
            "codecName": audio.name if audio else None,
            "packetsSent": 0,
            "bytesSent": 0,
            "packetsReceived": self._shim.packets_received if self._shim else 0,
            "bytesReceived": self._shim.bytes_received if self._shim else 0,
            "packetsLost": 0,
            "jitter": 0.0,
            "rtt": None,
            "remotePacketsLost": None,
            "remoteJitter": None,
            "fractionLost": None,
            "transport": None,
            "selectedCandidatePair": hooks.selected_candidate_pair(self._pc),
            **self._playout_stats(),
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
                # our tap consumes packets before aiortc counts them: take the larger
                tapped = self._shim.packets_received if self._shim else 0
                out["packetsReceived"] = max(stat.packetsReceived, tapped)
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

    def _playout_stats(self) -> dict[str, Any]:
        playout = self._playout
        if playout is None:
            return {}
        p = playout.stats()
        return {
            "totalSamplesReceived": p.total_samples_received,
            "concealedSamples": p.concealed_samples,
            "silentConcealedSamples": p.silent_concealed_samples,
            "concealmentEvents": p.concealment_events,
            "fecSamples": p.fec_samples,
            "insertedSamplesForDeceleration": p.inserted_samples_for_deceleration,
            "removedSamplesForAcceleration": p.removed_samples_for_acceleration,
            "jitterBufferDelay": p.jitter_buffer_delay,
            "jitterBufferEmittedCount": p.jitter_buffer_emitted_count,
            "jitterBufferTargetDelay": p.jitter_buffer_target_delay,
            "bufferDelay": p.buffer_delay,
            "jitterBufferJitter": p.jitter,
            "packetsDiscarded": p.packets_discarded,
        }

    # ------------------------------------------------------------------ teardown

    async def close(self) -> None:
        """Stop media and close the connection (sources and sinks stay open: caller owns them)."""
        if self._closed:
            return
        self._closed = True
        if self._dtmf is not None:
            self._dtmf.close()
        await hooks.close_peer_connection(self._pc)
        self._send_track.stop()
        if self._playout is not None:
            await self._playout.close()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

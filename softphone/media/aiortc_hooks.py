"""The one place that reaches into aiortc/aioice private internals.

aiortc 1.16.0 lacks things a telephony SDK needs (aiortc-probe.md §3, §6):
host candidates on loopback, DTMF, an encoder that honours the remote fmtp,
encoded-RTP access and the selected candidate pair. Each hook below patches
as little as possible, mostly per instance (one sender, receiver or
transport), and is pinned by ``tests/test_aiortc_hooks.py``, which asserts
that every private name used here still exists with the expected shape.
Importing this module fails unless the exact pinned versions are installed.

Private names used (keep in sync with the fence tests):

* ``aioice.ice.get_host_addresses`` (module function, replaced on request)
* ``aiortc.codecs.CODECS["audio"]`` (telephone-event appended)
* ``aiortc.rtcpeerconnection.filter_preferred_codecs`` (clock-rate bug fixed)
* ``RTCRtpSender._next_encoded_frame`` / ``_RTCRtpSender__encoder`` / ``_ssrc``
* ``RTCDtlsTransport._send_rtp`` (per instance, RFC 4733 send)
* ``RTCRtpReceiver._handle_rtp_packet`` (per instance, receive shim and RTP tap)
* ``RTCRtpTransceiver._codecs`` (negotiated codec list)
* ``RTCIceTransport._connection`` → ``aioice.Connection._nominated``
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aioice
import aioice.ice
import aiortc
import aiortc.codecs
import aiortc.rtcpeerconnection
import av
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from softphone.media.rfc4733 import (
    AudioTimeline,
    EventDetector,
    ToneScheduler,
    is_rtcp,
    rewrite_rtp,
    rtp_ssrc,
    silence_payload,
)
from softphone.media.sdp import CodecInfo

__all__ = [
    "AIOICE_VERSION",
    "AIORTC_VERSION",
    "TELEPHONE_EVENT_PTS",
    "DtmfSender",
    "ReceiveShim",
    "RtpTapPacket",
    "check_versions",
    "dtmf_sender",
    "receive_shim",
    "register_telephone_event",
    "selected_candidate_pair",
    "set_sender_opus_params",
    "transceiver_codecs",
    "use_host_addresses",
]

logger = logging.getLogger(__name__)

AIORTC_VERSION: Final = "1.16.0"
AIOICE_VERSION: Final = "0.13.0"


def check_versions(aiortc_version: str, aioice_version: str) -> None:
    """Raise RuntimeError unless both versions are exactly the pinned ones."""
    if aiortc_version != AIORTC_VERSION or aioice_version != AIOICE_VERSION:
        raise RuntimeError(
            "softphone.media.aiortc_hooks patches private internals of "
            f"aiortc=={AIORTC_VERSION} and aioice=={AIOICE_VERSION}, but found "
            f"aiortc=={aiortc_version} and aioice=={aioice_version}; install the pinned "
            "versions or re-validate the hooks (tests/test_aiortc_hooks.py) and update the pins"
        )


check_versions(aiortc.__version__, aioice.__version__)

# --------------------------------------------------------------------------- host addresses

_ORIGINAL_GET_HOST_ADDRESSES: Final = aioice.ice.get_host_addresses


def use_host_addresses(addresses: list[str] | None) -> None:
    """Make aioice gather host candidates on exactly ``addresses``; None restores it.

    aioice drops 127.0.0.1 (and ::1) from its interface scan, so on a
    loopback-only test host it gathers nothing and never connects. This is
    process-wide (aioice looks the function up at gathering time).
    """
    if addresses is None:
        aioice.ice.get_host_addresses = _ORIGINAL_GET_HOST_ADDRESSES
        return
    fixed = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return list(fixed)

    aioice.ice.get_host_addresses = get_host_addresses


# --------------------------------------------------------------------------- telephone-event

TELEPHONE_EVENT_PTS: Final[dict[int, int]] = {48000: 110, 8000: 126}
"""PT we offer telephone-event with, per clock rate (Chrome's numbers; free in aiortc's table)."""
_ORIGINAL_FILTER_PREFERRED: Final = aiortc.rtcpeerconnection.filter_preferred_codecs


def _is_telephone_event(codec: Any) -> bool:
    return str(codec.mimeType).lower() == "audio/telephone-event"


def _filter_preferred_codecs(codecs: list[Any], preferred: list[Any]) -> list[Any]:
    """aiortc's ``filter_preferred_codecs`` matching on clock rate too, never te first.

    The original matches mimeType and fmtp only, so with telephone-event at
    8000 and 48000 both preferred it emitted the first one twice ("96 110
    110"). A telephone-event must never be ``codecs[0]``: the sender encodes
    with the first codec.
    """
    if not preferred:
        result = list(codecs)
    else:
        rtx_codecs = [c for c in codecs if aiortc.codecs.is_rtx(c)]
        rtx_enabled = any(aiortc.codecs.is_rtx(p) for p in preferred)
        result = []
        for pref in preferred:
            if aiortc.codecs.is_rtx(pref):
                continue
            for codec in codecs:
                if (
                    codec.mimeType.lower() == pref.mimeType.lower()
                    and codec.clockRate == pref.clockRate
                    and codec.parameters == pref.parameters
                ):
                    result.append(codec)
                    if rtx_enabled:
                        for rtx in rtx_codecs:
                            if rtx.parameters["apt"] == codec.payloadType:
                                result.append(rtx)
                                break
                    break
    if result and _is_telephone_event(result[0]):
        result = [c for c in result if not _is_telephone_event(c)] + [
            c for c in result if _is_telephone_event(c)
        ]
        if _is_telephone_event(result[0]):
            return []  # nothing to carry audio: aiortc reports a negotiation failure
    return result


def register_telephone_event(clock_rates: Iterable[int] = (48000, 8000)) -> None:
    """Add ``audio/telephone-event`` at each clock rate to aiortc's codec table (idempotent).

    Process-wide: appended after every audio codec (never first) and the
    codec-preference filter is replaced by the clock-rate-aware one. A peer
    connection that negotiates telephone-event MUST install :func:`receive_shim`
    on its receiver, or aiortc's decoder thread dies on the first event packet.
    """
    table: list[RTCRtpCodecParameters] = aiortc.codecs.CODECS["audio"]
    for rate in clock_rates:
        if rate not in TELEPHONE_EVENT_PTS:
            raise ValueError(f"no telephone-event payload type for clock rate {rate}")
        if any(_is_telephone_event(c) and c.clockRate == rate for c in table):
            continue
        table.append(
            RTCRtpCodecParameters(
                mimeType="audio/telephone-event",
                clockRate=rate,
                payloadType=TELEPHONE_EVENT_PTS[rate],
                parameters={"0-15": None},
            )
        )
    aiortc.rtcpeerconnection.filter_preferred_codecs = _filter_preferred_codecs


def transceiver_codecs(transceiver: Any) -> list[CodecInfo]:
    """The negotiated codecs of ``transceiver`` in aiortc's order (the first is sent)."""
    out: list[CodecInfo] = []
    for codec in transceiver._codecs:
        params = {str(k): "" if v is None else str(v) for k, v in codec.parameters.items()}
        out.append(
            CodecInfo(
                pt=codec.payloadType,
                name=codec.name,
                clock_rate=codec.clockRate,
                channels=codec.channels or 1,
                fmtp=params,
            )
        )
    return out


# --------------------------------------------------------------------------- encoder

_ENCODER_ATTR: Final = "_RTCRtpSender__encoder"


@dataclass
class _OpusSettings:
    bitrate: int | None = None
    fec: bool = False
    dtx: bool = False


_opus_settings: weakref.WeakKeyDictionary[Any, _OpusSettings] = weakref.WeakKeyDictionary()


def _make_encoder(codec: Any, settings: _OpusSettings) -> Any:
    """aiortc's encoder for ``codec``, with Opus set to mono and ``settings`` applied."""
    encoder: Any = aiortc.codecs.get_encoder(codec)
    if codec.mimeType.lower() == "audio/opus":
        ctx = encoder.codec
        ctx.layout = "mono"
        if settings.bitrate is not None:
            ctx.bit_rate = settings.bitrate
        options = {"application": "voip"}
        if settings.fec:
            options.update({"fec": "1", "packet_loss": "10"})
        if settings.dtx:
            options["dtx"] = "1"
        ctx.options = options
        encoder.resampler = av.AudioResampler(
            format="s16", layout="mono", rate=48000, frame_size=960
        )
    return encoder


def set_sender_opus_params(sender: Any, *, bitrate: int | None, fec: bool, dtx: bool) -> bool:
    """Make ``sender``'s Opus encoder mono with this bitrate (bps), in-band FEC and DTX.

    aiortc builds a fixed 96 kbit/s stereo encoder and ignores the remote
    fmtp (measured 139 kbit/s on speech; 16.9 kbit/s with ``bit_rate=16000``).
    We wrap ``sender._next_encoded_frame`` so the encoder is created by our
    factory the first time a frame is encoded. Settings only reach an encoder
    not yet created: returns False when the sender already encodes (changing
    encoders mid-stream would restart the RTP timestamps). ``bitrate=None``
    keeps libopus' configured 96000. DTX is passed to libopus as asked; this
    FFmpeg build showed no effect. Non-Opus codecs get aiortc's encoder.
    """
    settings = _opus_settings.get(sender)
    if settings is None:
        settings = _opus_settings[sender] = _OpusSettings()
        original = sender._next_encoded_frame
        sender_ref = weakref.ref(sender)

        async def _next_encoded_frame(codec: Any) -> Any:
            owner = sender_ref()
            if owner is not None and getattr(owner, _ENCODER_ATTR) is None:
                current = _opus_settings.get(owner, _OpusSettings())
                setattr(owner, _ENCODER_ATTR, _make_encoder(codec, current))
            return await original(codec)

        sender._next_encoded_frame = _next_encoded_frame
    settings.bitrate, settings.fec, settings.dtx = bitrate, fec, dtx
    return getattr(sender, _ENCODER_ATTR) is None


# --------------------------------------------------------------------------- RFC 4733 send


class DtmfSender:
    """Sends RFC 4733 events for one ``RTCRtpSender`` by rewriting its RTP in place.

    Wraps ``sender.transport._send_rtp`` (plaintext RTP, before SRTP). While
    tones are queued, each outgoing audio packet of this sender's SSRC becomes
    a telephone-event packet (PT, M bit, timestamp and payload replaced;
    sequence number kept). Get one with :func:`dtmf_sender`.
    """

    def __init__(self, sender: Any) -> None:
        self._sender_ref = weakref.ref(sender)
        self._scheduler: ToneScheduler | None = None
        self._payload_type = 0
        self._hooked: weakref.ReferenceType[Any] | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def can_insert(self) -> bool:
        """True once :meth:`configure` gave a negotiated telephone-event."""
        return self._scheduler is not None

    @property
    def tone_buffer(self) -> str:
        """Tones queued but not yet started."""
        return self._scheduler.tone_buffer if self._scheduler else ""

    def configure(self, payload_type: int | None, clock_rate: int = 8000) -> None:
        """Use telephone-event ``payload_type`` at ``clock_rate`` (None disables sending)."""
        if payload_type is None:
            self._scheduler = None
            self._finish()
            return
        self._payload_type = payload_type
        if self._scheduler is None or self._scheduler.clock_rate != clock_rate:
            self._scheduler = ToneScheduler(clock_rate)
        self._hook()

    def insert(self, tones: str, duration_ms: int = 100, gap_ms: int = 70) -> asyncio.Future[None]:
        """Queue ``tones`` (replacing unstarted ones); the future resolves when all played.

        Raises RuntimeError when no telephone-event was negotiated and
        ValueError for characters outside ``0-9 * # A-D ,``.
        """
        if self._scheduler is None:
            raise RuntimeError("telephone-event was not negotiated")
        self._scheduler.insert(tones, duration_ms, gap_ms)
        self._hook()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if not self._scheduler.busy:
            self._finish()
        return waiter

    def close(self) -> None:
        """Stop rewriting and resolve pending waiters."""
        if self._scheduler is not None:
            self._scheduler.clear()
        self._scheduler = None
        self._finish()

    def _finish(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _hook(self) -> None:
        sender = self._sender_ref()
        if sender is None:
            return
        transport = sender.transport
        if self._hooked is not None and self._hooked() is transport:
            return
        original: Callable[[bytes], Awaitable[None]] = transport._send_rtp
        me = weakref.ref(self)

        async def _send_rtp(data: bytes) -> None:
            owner = me()
            if owner is not None:
                data = owner._rewrite(data)
            await original(data)

        transport._send_rtp = _send_rtp
        self._hooked = weakref.ref(transport)

    def _rewrite(self, data: bytes) -> bytes:
        scheduler = self._scheduler
        sender = self._sender_ref()
        if scheduler is None or sender is None or not scheduler.busy or is_rtcp(data):
            return data
        if rtp_ssrc(data) != sender._ssrc:
            return data
        plan = scheduler.next_packet(int.from_bytes(data[4:8], "big"))
        if not scheduler.busy:
            self._finish()
        if plan is None:
            return data
        return rewrite_rtp(
            data,
            payload_type=self._payload_type,
            marker=plan.marker,
            timestamp=plan.timestamp,
            payload=plan.payload,
        )


_dtmf_senders: weakref.WeakKeyDictionary[Any, DtmfSender] = weakref.WeakKeyDictionary()


def dtmf_sender(sender: Any) -> DtmfSender:
    """The (single) :class:`DtmfSender` of an ``RTCRtpSender``."""
    existing = _dtmf_senders.get(sender)
    if existing is None:
        existing = _dtmf_senders[sender] = DtmfSender(sender)
    return existing


# --------------------------------------------------------------------------- receive shim


@dataclass(frozen=True, slots=True)
class RtpTapPacket:
    """An incoming RTP packet as received (SRTP removed), before any substitution."""

    payload_type: int
    sequence_number: int
    timestamp: int
    marker: bool
    ssrc: int
    payload: bytes
    arrival_time_ms: int


RtpTap = Callable[[RtpTapPacket], None]


class ReceiveShim:
    """Stands in front of ``RTCRtpReceiver._handle_rtp_packet`` for one receiver.

    * Counts packets and payload bytes (aiortc's inbound stats have no bytes).
    * Hands every packet to the registered taps (RTP forwarding, our own
      jitter buffer later); a consuming tap keeps it from aiortc's decoder.
    * Decodes telephone-event packets into digits for :attr:`on_dtmf`, then
      replaces each with a silence packet of the audio codec at the timestamp
      the audio would have had. Mandatory when telephone-event is
      negotiated: aiortc's decoder thread dies on it and audio stops for good.

    Get one with :func:`receive_shim`; call :meth:`configure` with the
    negotiated codecs before media flows.
    """

    def __init__(self, receiver: Any) -> None:
        self._original: Callable[..., Awaitable[None]] = receiver._handle_rtp_packet
        self._audio: dict[int, CodecInfo] = {}
        self._events: dict[int, CodecInfo] = {}
        self._last_audio_pt: int | None = None
        self._detector = EventDetector()
        self._timeline = AudioTimeline()
        self._taps: list[tuple[RtpTap, bool]] = []
        self.on_dtmf: Callable[[str], None] | None = None
        self.packets_received = 0
        self.bytes_received = 0
        self.events_received = 0
        receiver._handle_rtp_packet = self._handle

    def configure(self, codecs: Sequence[CodecInfo]) -> None:
        """Tell the shim the negotiated codecs (PT → codec), telephone-event included."""
        self._audio = {c.pt: c for c in codecs if c.name.lower() != "telephone-event"}
        self._events = {c.pt: c for c in codecs if c.name.lower() == "telephone-event"}

    def add_tap(self, tap: RtpTap, *, consume: bool = False) -> Callable[[], None]:
        """Call ``tap`` for every packet; returns a function that removes it.

        With ``consume=True`` packets no longer reach aiortc's jitter buffer
        and decoder (the remote track goes quiet, inbound-rtp stats freeze).
        """
        entry = (tap, consume)
        self._taps.append(entry)

        def remove() -> None:
            if entry in self._taps:
                self._taps.remove(entry)

        return remove

    async def _handle(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.packets_received += 1
        self.bytes_received += len(packet.payload)
        consumed = False
        if self._taps:
            info = RtpTapPacket(
                payload_type=packet.payload_type,
                sequence_number=packet.sequence_number,
                timestamp=packet.timestamp,
                marker=bool(packet.marker),
                ssrc=packet.ssrc,
                payload=bytes(packet.payload),
                arrival_time_ms=arrival_time_ms,
            )
            for tap, consume in list(self._taps):
                consumed = consumed or consume
                try:
                    tap(info)
                except Exception:
                    logger.exception("RTP tap failed")
        if packet.payload_type in self._events:
            self._on_event(packet)
            substitute = self._silence_for(packet)
            if substitute is None or consumed:
                return
            packet = substitute
        elif packet.payload_type in self._audio:
            self._timeline.audio(packet.sequence_number, packet.timestamp)
            self._last_audio_pt = packet.payload_type
        if not consumed:
            await self._original(packet, arrival_time_ms=arrival_time_ms)

    def _on_event(self, packet: RtpPacket) -> None:
        self.events_received += 1
        digit = self._detector.feed(packet.ssrc, packet.timestamp, packet.payload)
        if digit is not None and self.on_dtmf is not None:
            try:
                self.on_dtmf(digit)
            except Exception:
                logger.exception("on_dtmf callback failed")

    def _silence_for(self, packet: RtpPacket) -> RtpPacket | None:
        audio = self._audio.get(self._last_audio_pt) if self._last_audio_pt is not None else None
        if audio is None:
            audio = next(iter(self._audio.values()), None)
        payload = silence_payload(audio.name) if audio else None
        if audio is None or payload is None:
            return None  # unknown codec: drop (a sequence gap, but the decoder lives)
        frame_units = audio.clock_rate * 20 // 1000
        timestamp = self._timeline.substitute_timestamp(
            packet.sequence_number, frame_units, packet.timestamp
        )
        # Anchor later substitutes here too (matters when a call starts with an event).
        self._timeline.audio(packet.sequence_number, timestamp)
        out = RtpPacket(
            payload_type=audio.pt,
            marker=0,
            sequence_number=packet.sequence_number,
            timestamp=timestamp,
            ssrc=packet.ssrc,
            payload=payload,
        )
        out.csrc = packet.csrc
        out.extensions = packet.extensions
        return out


_receive_shims: weakref.WeakKeyDictionary[Any, ReceiveShim] = weakref.WeakKeyDictionary()


def receive_shim(receiver: Any) -> ReceiveShim:
    """Install (once) and return the :class:`ReceiveShim` of an ``RTCRtpReceiver``."""
    existing = _receive_shims.get(receiver)
    if existing is None:
        existing = _receive_shims[receiver] = ReceiveShim(receiver)
    return existing


# --------------------------------------------------------------------------- ICE


def selected_candidate_pair(pc: Any) -> dict[str, Any] | None:
    """The nominated ICE pair of ``pc`` (aiortc has no candidate-pair stats), or None.

    Plain dict: ``localAddress``, ``localPort``, ``localCandidateType``,
    ``remoteAddress``, ``remotePort``, ``remoteCandidateType``, ``protocol``.
    """
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        nominated = getattr(connection, "_nominated", None) or {}
        pair = nominated.get(1) or next(iter(nominated.values()), None)
        if pair is None:
            continue
        local, remote = pair.local_candidate, pair.remote_candidate
        return {
            "localAddress": local.host,
            "localPort": local.port,
            "localCandidateType": local.type,
            "remoteAddress": remote.host,
            "remotePort": remote.port,
            "remoteCandidateType": remote.type,
            "protocol": str(local.transport).lower(),
        }
    return None

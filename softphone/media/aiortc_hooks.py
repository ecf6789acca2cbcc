"""The one place that reaches into aiortc/aioice private internals.

aiortc 1.16.0 lacks things a telephony SDK needs (aiortc-probe.md §3, §6):
host candidates on loopback, DTMF, an encoder that honours the remote fmtp,
encoded-RTP access (our own receive path, RTP forwarding), RTP timestamps
that stay continuous across ``replaceTrack``, and the selected candidate
pair. Each hook below patches as little as possible, mostly per instance
(one sender, receiver or transport), and is pinned by
``tests/test_aiortc_hooks.py``, which asserts that every private name used
here still exists with the expected shape. Importing this module fails
unless the exact pinned versions are installed.

Private names used (keep in sync with the fence tests):

* ``aioice.ice.get_host_addresses`` (module function, replaced on request)
* ``aiortc.codecs.CODECS["audio"]`` (telephone-event appended)
* ``aiortc.rtcpeerconnection.filter_preferred_codecs`` (clock-rate bug fixed)
* ``RTCRtpSender._next_encoded_frame`` / ``_RTCRtpSender__encoder`` / ``_ssrc``,
  and the sender's use of ``Encoder.pack`` for ``av.Packet`` tracks
* ``RTCDtlsTransport._send_rtp`` (per instance, RFC 4733 send)
* ``RTCRtpReceiver._handle_rtp_packet`` (per instance, receive shim and RTP tap)
* ``RTCRtpReceiver.__codecs`` / ``__remote_streams`` / ``__active_ssrc`` and
  ``aiortc.rtcrtpreceiver.StreamStatistics`` (RTCP statistics of tapped packets)
* ``RTCRtpTransceiver._codecs`` (negotiated codec list)
* ``RTCIceTransport._connection`` → ``aioice.Connection._nominated``
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aioice
import aioice.ice
import aiortc
import aiortc.codecs
import aiortc.codecs.base
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import av
from aiortc import clock as aiortc_clock
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from softphone.audio_backends.base import FRAME_SAMPLES, SAMPLE_RATE
from softphone.media.audio_codecs import AudioEncoder, make_encoder
from softphone.media.opus import OpusSettings
from softphone.media.rfc4733 import (
    PAUSE_MS,
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
    "SenderEncoder",
    "check_versions",
    "dtmf_sender",
    "receive_shim",
    "register_telephone_event",
    "selected_candidate_pair",
    "set_sender_opus_params",
    "stamp_track_payload_types",
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
    return [_codec_info(codec) for codec in transceiver._codecs]


def _codec_info(codec: Any) -> CodecInfo:
    """An aiortc ``RTCRtpCodecParameters`` as our :class:`CodecInfo`."""
    params = {str(k): "" if v is None else str(v) for k, v in codec.parameters.items()}
    return CodecInfo(
        pt=codec.payloadType,
        name=codec.name,
        clock_rate=codec.clockRate,
        channels=codec.channels or 1,
        fmtp=params,
    )


# --------------------------------------------------------------------------- sender

_ENCODER_ATTR: Final = "_RTCRtpSender__encoder"
_TS_MOD: Final = 1 << 32


class SenderEncoder(aiortc.codecs.base.Encoder):
    """An aiortc ``Encoder`` backed by our codecs (:mod:`softphone.media.audio_codecs`).

    Installed by :func:`set_sender_opus_params` in place of aiortc's encoder:

    * Opus: mono, with the bitrate, FEC and DTX the peer's fmtp asks for
      (aiortc's is a fixed 96 kbit/s stereo encoder that ignores the fmtp:
      139 kbit/s measured on speech);
    * G.711: our 2 ms FIR resampler instead of FFmpeg's, which holds a whole
      20 ms frame back (aiortc-probe.md §4);
    * ``pack`` (pre-encoded ``av.Packet`` from a :class:`PacketTrack`): the
      payload as is, its ``pts`` as the timestamp.

    Frames are expected as the :class:`SourceTrack` makes them (48 kHz mono
    s16, 960 samples); anything else goes through an FFmpeg resampler first.
    """

    def __init__(self, codec: Any, opus: OpusSettings) -> None:
        info = _codec_info(codec)
        self.encoder: AudioEncoder = make_encoder(info, opus)
        self.clock_rate = info.clock_rate
        self._time_base = fractions.Fraction(1, info.clock_rate)
        self._resampler: av.AudioResampler | None = None

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """Encode one audio frame; the timestamp is its pts in RTP clock units.

        Like aiortc's encoders, returns no payloads (and a meaningless
        timestamp) while a resampler is still filling its first frame.
        """
        frames = [frame]
        if not (
            frame.format.name == "s16"
            and frame.layout.name == "mono"
            and frame.sample_rate == SAMPLE_RATE
            and frame.samples == FRAME_SAMPLES
        ):
            if self._resampler is None:
                self._resampler = av.AudioResampler(
                    format="s16", layout="mono", rate=SAMPLE_RATE, frame_size=FRAME_SAMPLES
                )
            frames = self._resampler.resample(frame)
        payloads: list[bytes] = []
        timestamp: int | None = None
        for block in frames:
            if timestamp is None:
                base = block.time_base or fractions.Fraction(1, SAMPLE_RATE)
                timestamp = int((block.pts or 0) * base * self.clock_rate)
            payloads += self.encoder.encode(block.to_ndarray().reshape(-1))
        return payloads, timestamp or 0

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        """Send a pre-encoded payload; its pts (any time base) becomes the timestamp."""
        timestamp = int(packet.pts * packet.time_base / self._time_base)
        return [bytes(packet)], timestamp


@dataclass
class _SenderState:
    """Per-sender settings and the RTP timestamp continuity across track changes."""

    opus: OpusSettings = field(default_factory=OpusSettings)
    track: Any = None
    offset: int = 0
    last_timestamp: int | None = None

    def align(self, track: Any, frame: Any, frame_units: int) -> None:
        """Shift ``frame``'s timestamp so a new track continues where the old one ended.

        aiortc stamps each frame with ``origin + the track's own timeline``; a
        :class:`PacketTrack` (forwarded RTP) and a :class:`SourceTrack` have
        unrelated timelines, so a ``replaceTrack`` between them would make the
        far end see the RTP timestamp jump, possibly backwards.
        """
        if track is not self.track:
            if self.last_timestamp is not None:
                self.offset = (self.last_timestamp + frame_units - frame.timestamp) % _TS_MOD
            self.track = track
        frame.timestamp = (frame.timestamp + self.offset) % _TS_MOD
        self.last_timestamp = frame.timestamp


_sender_states: weakref.WeakKeyDictionary[Any, _SenderState] = weakref.WeakKeyDictionary()


def _sender_state(sender: Any) -> _SenderState:
    """The sender's state, wrapping ``sender._next_encoded_frame`` on first use."""
    state = _sender_states.get(sender)
    if state is not None:
        return state
    state = _sender_states[sender] = _SenderState()
    original = sender._next_encoded_frame
    sender_ref = weakref.ref(sender)

    async def _next_encoded_frame(codec: Any) -> Any:
        owner = sender_ref()
        if owner is None:
            return await original(codec)
        current = _sender_states.get(owner, state)
        if getattr(owner, _ENCODER_ATTR) is None:
            setattr(owner, _ENCODER_ATTR, SenderEncoder(codec, current.opus))
        track = owner.track  # the track this call reads from (aiortc reads it first thing)
        frame = await original(codec)
        if frame is not None:
            current.align(track, frame, codec.clockRate // 50)
        return frame

    sender._next_encoded_frame = _next_encoded_frame
    return state


def set_sender_opus_params(sender: Any, *, bitrate: int | None, fec: bool, dtx: bool) -> bool:
    """Give ``sender`` our encoder (:class:`SenderEncoder`) with these Opus settings.

    The encoder is created the first time a frame is encoded, so settings
    only reach an encoder not yet created: returns False when the sender
    already encodes (a new encoder mid-stream would restart the Opus state).
    ``bitrate=None``: 96 kbit/s, or 128 kbit/s with FEC (see :mod:`softphone.media.opus`).
    DTX is passed to libopus as asked.
    Also keeps the sender's RTP timestamps continuous across track changes
    (see :meth:`_SenderState.align`).
    """
    state = _sender_state(sender)
    state.opus = OpusSettings(bitrate=bitrate, fec=fec, dtx=dtx)
    return getattr(sender, _ENCODER_ATTR) is None


def stamp_track_payload_types(sender: Any) -> None:
    """Send each packet of ``sender`` with the payload type its track names (idempotent).

    aiortc stamps every packet with the first negotiated codec's PT. A
    :class:`PacketTrack` may forward payloads of another negotiated codec
    (the far leg sends PCMU while this one lists Opus first); its
    ``payload_type`` attribute names the PT of the packet being sent, and
    this wrapper of ``sender.transport._send_rtp`` (plaintext, before SRTP)
    writes it into the header. Packets of other tracks are left alone.
    """
    transport = sender.transport
    if getattr(transport, _PT_HOOK_ATTR, None) is sender:
        return
    original: Callable[[bytes], Awaitable[None]] = transport._send_rtp
    sender_ref = weakref.ref(sender)

    async def _send_rtp(data: bytes) -> None:
        owner = sender_ref()
        if owner is not None and not is_rtcp(data):
            payload_type = getattr(owner.track, "payload_type", None)
            if (
                payload_type is not None
                and (data[1] & 0x7F) != payload_type
                and rtp_ssrc(data) == owner._ssrc
            ):
                data = data[:1] + bytes([(data[1] & 0x80) | payload_type]) + data[2:]
        await original(data)

    transport._send_rtp = _send_rtp
    setattr(transport, _PT_HOOK_ATTR, sender)


_PT_HOOK_ATTR: Final = "_softphone_payload_type_hook"


# --------------------------------------------------------------------------- RFC 4733 send

DTMF_GRACE_S: Final = 1.0
"""How long past their planned end inserted tones may take before the waiter gives up."""


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
        self._audio_clocks: dict[int, int] = {}
        self._event_pts: dict[int, int] = {}
        self._timing = (100, 70)
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

    def configure(
        self,
        payload_type: int | None,
        clock_rate: int = 8000,
        *,
        codecs: Sequence[CodecInfo] = (),
    ) -> None:
        """Use telephone-event ``payload_type`` at ``clock_rate`` (None disables sending).

        ``codecs`` (all negotiated ones) lets events follow the outgoing audio
        when a packet of another audio codec is sent (RTP forwarding may send
        any negotiated codec): events then use the telephone-event negotiated
        at that codec's clock rate, if any.
        """
        if payload_type is None:
            self._scheduler = None
            self._finish()
            return
        self._payload_type = payload_type
        self._audio_clocks = {
            c.pt: c.clock_rate for c in codecs if c.name.lower() != "telephone-event"
        }
        self._event_pts = {
            c.clock_rate: c.pt for c in codecs if c.name.lower() == "telephone-event"
        }
        self._event_pts.setdefault(clock_rate, payload_type)
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
        self._timing = (duration_ms, gap_ms)
        self._hook()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if not self._scheduler.busy:
            self._finish()
        else:
            # Events ride on outgoing audio packets. If those stop (a forwarded
            # leg whose source hung up), give up once the tones should be over.
            expected = sum(
                PAUSE_MS if char == "," else max(duration_ms, 40) + max(gap_ms, 30)
                for char in tones
            )
            handle = loop.call_later(expected / 1000 + DTMF_GRACE_S, self._give_up, waiter)
            waiter.add_done_callback(lambda _: handle.cancel())
        return waiter

    def _give_up(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            logger.info("DTMF: no audio packets to carry the tones; giving up")
            if self._scheduler is not None:
                self._scheduler.clear()
            self._finish()

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

    def _follow_clock(self, data: bytes) -> ToneScheduler | None:
        """The scheduler for this packet's clock rate (moving unstarted tones to it)."""
        scheduler = self._scheduler
        clock = self._audio_clocks.get(data[1] & 0x7F)
        if scheduler is None or clock is None or clock == scheduler.clock_rate:
            return scheduler
        event_pt = self._event_pts.get(clock)
        if event_pt is None:
            return scheduler
        pending = scheduler.tone_buffer
        scheduler = self._scheduler = ToneScheduler(clock)
        self._payload_type = event_pt
        if pending:
            scheduler.insert(pending, *self._timing)
        return scheduler

    def _rewrite(self, data: bytes) -> bytes:
        scheduler = self._scheduler
        sender = self._sender_ref()
        if scheduler is None or sender is None or not scheduler.busy or is_rtcp(data):
            return data
        if rtp_ssrc(data) != sender._ssrc:
            return data
        scheduler = self._follow_clock(data)
        if scheduler is None or not scheduler.busy:
            self._finish()
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
    """An incoming RTP packet (SRTP removed) as a tap sees it."""

    payload_type: int
    sequence_number: int
    timestamp: int
    marker: bool
    ssrc: int
    payload: bytes
    arrival_time_ms: int


RtpTap = Callable[[RtpTapPacket], None]

_SHIM_ATTR: Final = "_softphone_receive_shim"


@dataclass(frozen=True, slots=True)
class _Tap:
    tap: RtpTap
    consume: bool
    audio_only: bool


class ReceiveShim:
    """Stands in front of ``RTCRtpReceiver._handle_rtp_packet`` for one receiver.

    * Counts packets and payload bytes (aiortc's inbound stats have no bytes).
    * Hands every packet to the registered taps: RTP forwarding, our own
      receive path. A *consuming* tap keeps packets from aiortc's jitter
      buffer and decoder thread; aiortc's RTCP statistics (``inbound-rtp``,
      the receiver reports the far end computes RTT and loss from) are still
      fed, directly.
    * Decodes telephone-event packets into digits for :attr:`on_dtmf`, then
      replaces each with a silence packet of the audio codec at the timestamp
      the audio would have had. Mandatory when telephone-event is negotiated:
      aiortc's decoder thread dies on it and audio stops for good. *Audio-only*
      taps get that substitute too, so their stream has no gap.

    Get one with :func:`receive_shim`; call :meth:`configure` with the
    negotiated codecs before media flows.
    """

    def __init__(self, receiver: Any) -> None:
        self._receiver_ref = weakref.ref(receiver)
        self._original: Callable[..., Awaitable[None]] = receiver._handle_rtp_packet
        self._audio: dict[int, CodecInfo] = {}
        self._events: dict[int, CodecInfo] = {}
        self._last_audio_pt: int | None = None
        self._detector = EventDetector()
        self._timeline = AudioTimeline()
        self._taps: list[_Tap] = []
        self.on_dtmf: Callable[[str], None] | None = None
        self.packets_received = 0
        self.bytes_received = 0
        self.events_received = 0
        receiver._handle_rtp_packet = self._handle

    def configure(self, codecs: Sequence[CodecInfo]) -> None:
        """Tell the shim the negotiated codecs (PT → codec), telephone-event included."""
        self._audio = {c.pt: c for c in codecs if c.name.lower() != "telephone-event"}
        self._events = {c.pt: c for c in codecs if c.name.lower() == "telephone-event"}

    def add_tap(
        self, tap: RtpTap, *, consume: bool = False, audio_only: bool = False
    ) -> Callable[[], None]:
        """Call ``tap`` for every packet; returns a function that removes it.

        ``consume=True``: packets no longer reach aiortc's jitter buffer and
        decoder (its remote track goes quiet). ``audio_only=True``: the tap
        sees the audio stream only, telephone-event packets replaced by
        silence of the audio codec and packets of unknown types left out.
        """
        entry = _Tap(tap, consume, audio_only)
        self._taps.append(entry)

        def remove() -> None:
            if entry in self._taps:
                self._taps.remove(entry)

        return remove

    async def _handle(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.packets_received += 1
        self.bytes_received += len(packet.payload)
        audio: RtpPacket | None = None
        if packet.payload_type in self._events:
            self._on_event(packet)
            audio = self._silence_for(packet)
        elif packet.payload_type in self._audio:
            self._timeline.audio(packet.sequence_number, packet.timestamp)
            self._last_audio_pt = packet.payload_type
            audio = packet
        consumed = False
        views: dict[bool, RtpTapPacket] = {}  # one view per kind, shared by the taps
        for entry in list(self._taps):
            consumed = consumed or entry.consume
            source = audio if entry.audio_only else packet
            if source is None:
                continue
            view = views.get(entry.audio_only)
            if view is None:
                view = views[entry.audio_only] = _tap_packet(source, arrival_time_ms)
            try:
                entry.tap(view)
            except Exception:
                logger.exception("RTP tap failed")
        if consumed:
            self._feed_rtcp_statistics(packet)
        elif audio is not None:
            await self._original(audio, arrival_time_ms=arrival_time_ms)

    def _feed_rtcp_statistics(self, packet: RtpPacket) -> None:
        """What aiortc's ``_handle_rtp_packet`` does before its jitter buffer, for stats.

        Keeps ``inbound-rtp`` (packetsReceived, packetsLost, jitter) and the
        RTCP receiver reports alive while a tap consumes the packets.
        """
        receiver = self._receiver_ref()
        if receiver is None:
            return
        codecs = getattr(receiver, "_RTCRtpReceiver__codecs", None)
        streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", None)
        active = getattr(receiver, "_RTCRtpReceiver__active_ssrc", None)
        if codecs is None or streams is None or active is None:
            return  # not an aiortc receiver (tests use stand-ins)
        active[packet.ssrc] = aiortc_clock.current_datetime()
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = streams.get(packet.ssrc)
        if stream is None:
            stream = streams[packet.ssrc] = aiortc.rtcrtpreceiver.StreamStatistics(codec.clockRate)
        stream.add(packet)

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


def _tap_packet(packet: RtpPacket, arrival_time_ms: int) -> RtpTapPacket:
    return RtpTapPacket(
        payload_type=packet.payload_type,
        sequence_number=packet.sequence_number,
        timestamp=packet.timestamp,
        marker=bool(packet.marker),
        ssrc=packet.ssrc,
        payload=bytes(packet.payload),
        arrival_time_ms=arrival_time_ms,
    )


def receive_shim(receiver: Any) -> ReceiveShim:
    """Install (once) and return the :class:`ReceiveShim` of an ``RTCRtpReceiver``.

    The shim lives on the receiver itself, so both go away together.
    """
    existing: ReceiveShim | None = getattr(receiver, _SHIM_ATTR, None)
    if existing is None:
        existing = ReceiveShim(receiver)
        setattr(receiver, _SHIM_ATTR, existing)
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


# --------------------------------------------------------------------------- ICE restart


class IceRestarter:
    """ICE restart for one aiortc ``RTCPeerConnection`` (aiortc has none).

    A fresh aioice ``Connection`` (new ufrag, password and sockets) is gathered,
    advertised by the next offer or answer, connected in the background, and then
    swapped in under the existing DTLS transport, so DTLS, SRTP, SSRCs and sequence
    numbers never change (probe §6: 24 ms, no frame lost). The ``RTCIceTransport``'s
    ``_recv``/``_send`` are pointed at whichever connection is active, and its
    consent monitor is restarted on the new one.

    Private names used: ``RTCIceTransport._connection``, ``._recv``, ``._send``,
    ``._monitor``, ``._RTCIceTransport__monitor_task``, ``RTCIceGatherer._connection``
    and aioice ``Connection``'s public API.
    """

    def __init__(self, pc: Any) -> None:
        transceivers = pc.getTransceivers()
        if not transceivers or transceivers[0].receiver.transport is None:
            raise RuntimeError("ICE restart needs an established transceiver")
        ice = transceivers[0].receiver.transport.transport
        self._ice = ice
        self._active: aioice.Connection = ice._connection
        self._pending: aioice.Connection | None = None
        ice._recv = self._recv
        ice._send = self._send

    async def _recv(self) -> bytes:
        while True:
            connection = self._active
            try:
                data: bytes = await connection.recv()
                return data
            except ConnectionError:
                if connection is self._active:
                    raise  # a real failure, not the old path being swapped out

    async def _send(self, data: bytes) -> None:
        await self._active.send(data)

    @property
    def remote_ufrag(self) -> str | None:
        """The remote ICE username fragment of the active connection."""
        ufrag: str | None = self._active.remote_username
        return ufrag

    @property
    def pending(self) -> bool:
        """True between :meth:`prepare` and :meth:`complete`."""
        return self._pending is not None

    async def prepare(self) -> None:
        """Gather a new connection and make the next SDP advertise it."""
        old = self._active
        new = aioice.Connection(
            ice_controlling=old.ice_controlling,
            components=1,
            stun_server=old.stun_server,
            turn_server=old.turn_server,
            turn_username=old.turn_username,
            turn_password=old.turn_password,
            turn_ssl=old.turn_ssl,
            turn_transport=old.turn_transport,
        )
        await new.gather_candidates()
        if self._pending is not None:
            await self._pending.close()
        self._pending = new
        self._ice.iceGatherer._connection = new

    async def complete(self, remote_sdp: str) -> None:
        """Connect the prepared connection to the peer's new credentials, then swap it in.

        Raises ``ConnectionError`` when the new path does not connect (the caller
        retries with another restart).
        """
        from aiortc.rtcicetransport import candidate_to_aioice
        from aiortc.sdp import SessionDescription

        new, self._pending = self._pending, None
        if new is None:
            raise RuntimeError("prepare() first")
        media = SessionDescription.parse(remote_sdp).media[0]
        if media.ice is None:
            await new.close()
            raise ConnectionError("the remote description has no ICE credentials")
        new.remote_username = media.ice.usernameFragment
        new.remote_password = media.ice.password
        for candidate in media.ice_candidates:
            await new.add_remote_candidate(candidate_to_aioice(candidate))
        await new.add_remote_candidate(None)
        try:
            await new.connect()
        except ConnectionError:
            await new.close()
            raise
        ice = self._ice
        old, self._active = self._active, new
        ice._connection = new
        monitor = ice._RTCIceTransport__monitor_task
        if monitor is not None:
            monitor.cancel()
        ice._RTCIceTransport__monitor_task = asyncio.ensure_future(ice._monitor())
        await old.close()


def ice_restarter(pc: Any) -> IceRestarter:
    """The one :class:`IceRestarter` of ``pc`` (installed on first use)."""
    existing = _RESTARTERS.get(pc)
    if existing is None:
        existing = IceRestarter(pc)
        _RESTARTERS[pc] = existing
    return existing


_RESTARTERS: weakref.WeakKeyDictionary[Any, IceRestarter] = weakref.WeakKeyDictionary()

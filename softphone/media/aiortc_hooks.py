"""The one place that reaches into aiortc/aioice private internals.

aiortc 1.16.0 lacks things a telephony SDK needs (aiortc-probe.md §3, §6):
host candidates on loopback, DTMF, encoded-RTP access (our own receive path,
RTP forwarding), a payload type per forwarded packet, and the selected
candidate pair. (Our own encoder needs no hook: ``SendTrack`` hands aiortc
packets it encoded itself, through aiortc's public route for pre-encoded
media.) Each hook below patches as little as possible, mostly per instance
(one sender, receiver or transport), and is pinned by
``tests/test_aiortc_hooks.py``, which asserts that every private name used
here still exists with the expected shape. Importing this module fails
unless the exact pinned versions are installed.

Private names used (keep in sync with the fence tests):

* ``aioice.ice.get_host_addresses`` (module function, replaced on request)
* ``aioice.ice.asyncio`` (module reference, swapped on request so that host
  candidates bind within an RTP port range: aioice binds them with
  ``asyncio.get_running_loop().create_datagram_endpoint(local_addr=(addr, 0))``)
* ``aiortc.codecs.CODECS["audio"]`` (telephone-event appended)
* ``aiortc.rtcpeerconnection.filter_preferred_codecs`` (clock-rate bug fixed)
* ``RTCRtpSender._ssrc`` and ``RTCDtlsTransport._send_rtp`` (per instance: RFC 4733
  send, the payload type of forwarded packets)
* ``RTCRtpReceiver._handle_rtp_packet`` (per instance, receive shim and RTP tap)
* ``RTCRtpReceiver.__codecs`` / ``__remote_streams`` / ``__active_ssrc`` and
  ``aiortc.rtcrtpreceiver.StreamStatistics`` (RTCP statistics of tapped packets)
* ``RtpRouter.route_rtp`` and ``StreamStatistics.add`` fed our ``RtpTapPacket``
  instead of an ``RtpPacket`` (they read only ``ssrc``, ``payload_type``,
  ``sequence_number`` and ``timestamp``): the inline receive path builds no
  aiortc packet
* the fused forwarding path (:class:`ForwardRoute`), per packet: ``RtpRouter.ssrc_table``
  / ``.payload_type_table``, ``StreamStatistics``' fields (``_count_received`` is its
  ``add``), ``RTCRtpSender.__started`` / ``__packet_count`` / ``__octet_count``,
  ``RTCDtlsTransport._state`` / ``_rx_srtp`` / ``_tx_srtp`` / ``__rx_*`` / ``__tx_*``
  counters, aioice's nominated pair, and pylibsrtp's ``Session._srtp`` / ``._cdata`` /
  ``._buffer`` with its cffi binding ``pylibsrtp._binding`` (libsrtp called in place; the
  fused path switches itself off when these moved, see ``_SRTP_DIRECT``)
* ``RTCRtpTransceiver._codecs`` (negotiated codec list)
* ``RTCIceTransport._connection`` → ``aioice.Connection._nominated``
* ICE gathering: ``aioice.Connection.get_component_candidates`` (per instance),
  ``._protocols``, ``.turn_server`` and ``aioice.ice.relayed_candidate`` /
  ``StunProtocol`` (every TURN server, a time bound)
* ``aioice.Connection.check_incoming`` (per instance), ``StunProtocol.transactions``
  and ``stun.Transaction.__addr`` / ``__request`` (an early resend of a check)
* ICE restart: ``RTCIceTransport._recv`` / ``._send`` / ``._monitor`` /
  ``__monitor_task`` / ``__setState``, ``RTCIceGatherer._connection`` and
  ``aioice.Connection._transport_policy`` (see :class:`IceRestarter`)
* closing: ``aioice.turn.TurnTransport.__close_task`` (a TURN allocation's
  deletion, abandoned after a second, :func:`close_peer_connection`)
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import ssl
import struct
import time
import types
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aioice
import aioice.ice
import aiortc
import aiortc.codecs
import aiortc.rtcdtlstransport
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import pylibsrtp
from aioice.candidate import candidate_foundation, candidate_priority
from aiortc import clock as aiortc_clock
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import HeaderExtensions, RtpPacket
from pylibsrtp._binding import ffi as _srtp_ffi  # type: ignore[import-not-found]  # cffi
from pylibsrtp._binding import lib as _srtp_lib

from softphone.media.ice_gathering import (
    GatheringReport,
    IceGatheringSettings,
    relay_local_preference,
)
from softphone.media.packet_track import PacketTrack
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
from softphone.media.rtc_configuration import RelayProtocol, TurnServer
from softphone.media.rtp_forwarder import NTP_UNIX_OFFSET_S, OutgoingRtp
from softphone.media.rtp_tap import RtpTap, RtpTapPacket
from softphone.media.sdp import CodecInfo

__all__ = [
    "AIOICE_VERSION",
    "AIORTC_VERSION",
    "TELEPHONE_EVENT_PTS",
    "DtmfSender",
    "IceRestarter",
    "ReceiveShim",
    "SendPath",
    "check_versions",
    "close_peer_connection",
    "configure_ice",
    "dtmf_sender",
    "forward_packets",
    "gathering_report",
    "ice_restarter",
    "install_gathering",
    "install_triggered_checks",
    "receive_shim",
    "register_telephone_event",
    "restart_dtls",
    "selected_candidate_pair",
    "send_path",
    "settings_of",
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

_DTLS_CONNECTED: Final = aiortc.rtcdtlstransport.State.CONNECTED

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


# --------------------------------------------------------------------------- RTP port range

_REAL_ASYNCIO: Final = asyncio


class _PortRangeLoop:
    """The running loop as aioice's host gathering sees it: free-port binds stay in range."""

    def __init__(self, loop: asyncio.AbstractEventLoop, low: int, high: int) -> None:
        self._loop = loop
        self._low = low
        self._high = high

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(
        self, protocol_factory: Any, local_addr: tuple[str, int] | None = None, **kwargs: Any
    ) -> Any:
        if local_addr is None or local_addr[1] != 0:
            return await self._loop.create_datagram_endpoint(
                protocol_factory, local_addr=local_addr, **kwargs
            )
        count = self._high - self._low + 1
        start = random.randrange(count)
        for step in range(count):
            port = self._low + (start + step) % count
            try:
                return await self._loop.create_datagram_endpoint(
                    protocol_factory, local_addr=(local_addr[0], port), **kwargs
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(
            errno.EADDRINUSE, f"no free UDP port in {self._low}-{self._high} on {local_addr[0]}"
        )


class _PortRangeAsyncio(types.ModuleType):
    """``asyncio`` for aioice.ice only: the same module but for ``get_running_loop``."""

    def __init__(self, low: int, high: int) -> None:
        super().__init__("asyncio")
        self._range = (low, high)

    def __getattr__(self, name: str) -> Any:
        return getattr(_REAL_ASYNCIO, name)

    def get_running_loop(self) -> Any:
        return _PortRangeLoop(_REAL_ASYNCIO.get_running_loop(), *self._range)


def use_port_range(port_range: tuple[int, int] | None) -> None:
    """Bind aioice's host candidates (the media sockets) within ``port_range``; None: any.

    aioice binds each host candidate to port 0. A gateway behind a firewall needs its
    media on a known range, so aioice's ``asyncio`` is swapped for one whose running
    loop picks a free port in the range instead (random start, then upwards). TURN
    and STUN client sockets (``aioice.turn``) are untouched. Process-wide, like
    :func:`use_host_addresses`.
    """
    if port_range is None:
        aioice.ice.asyncio = _REAL_ASYNCIO  # type: ignore[attr-defined]
        return
    low, high = port_range
    if not 0 < low <= high <= 65535:
        raise ValueError(f"bad port range {port_range}")
    aioice.ice.asyncio = _PortRangeAsyncio(low, high)  # type: ignore[attr-defined]


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


# --------------------------------------------------------------------------- send path

_AIORTC_LOOP: Final = object()
"""The producer aiortc's own sender loop is, for :class:`OutgoingRtp`."""
_SEND_PATH_ATTR: Final = "_softphone_send_path"
_RTCP_SR: Final = 200


class SendPath:
    """Every RTP packet one ``RTCRtpSender`` sends, whichever way it comes (one per sender).

    aiortc's own sender loop (the leg's own audio) reaches the network through
    ``sender.transport._send_rtp`` (plaintext, before SRTP), which this wraps
    once. Forwarded payloads take :meth:`forward` instead: the packet is built
    right here and protected and sent at once, on the event-loop step that
    received it, where aiortc would queue it for its sender task, re-parse and
    re-serialize it and await three coroutine layers down to the socket (about
    40 % of a forwarding gateway's CPU, measured). Both ways share:

    * one :class:`~softphone.media.rtp_forwarder.OutgoingRtp`: one sequence
      counter and timestamp line for the SSRC, and the NTP/RTP pair the
      sender reports (SR) carry, patched into aiortc's SR on its way out;
    * the payload type: a packet aiortc sends for a ``PacketTrack`` (queued
      before the leg connected) gets the one its track names (``payload_type``);
    * RFC 4733 events (:class:`DtmfSender` rewrites packets in place), so DTMF
      the gateway injects rides on forwarded audio too;
    * aiortc's counters: outbound ``packetsSent``/``bytesSent`` (and so the SR
      packet and octet counts) and the transport's, which :meth:`forward` keeps.

    Get one with :func:`send_path`. Private names used: ``RTCRtpSender``'s
    ``_ssrc``, ``__started``, ``__mid``, ``__rtp_header_extensions_map``,
    ``__packet_count``, ``__octet_count``, ``__lsr``; ``RTCDtlsTransport``'s
    ``_send_rtp``, ``_state``, ``_tx_srtp``, ``__tx_bytes``, ``__tx_packets``;
    the ICE path of :meth:`IceRestarter.send_now`.
    """

    def __init__(self, sender: Any) -> None:
        self._sender_ref = weakref.ref(sender)
        self.outgoing = OutgoingRtp(first_sequence=random.getrandbits(16) % 32768)
        self.dtmf: DtmfSender | None = None
        self._hooked: weakref.ReferenceType[Any] | None = None
        self._template: tuple[int, bytes] | None = None
        self.attach()

    def attach(self) -> None:
        """Wrap the sender's current transport (again after aiortc changed it)."""
        sender = self._sender_ref()
        if sender is None:
            return
        transport = sender.transport
        if self._hooked is not None and self._hooked() is transport:
            return
        original: Callable[[bytes], Awaitable[None]] = transport._send_rtp
        me = weakref.ref(self)

        async def _send_rtp(data: bytes) -> None:
            path = me()
            if path is not None:
                data = path._from_aiortc(data)
            await original(data)

        transport._send_rtp = _send_rtp
        self._hooked = weakref.ref(transport)
        self._template = None

    def _from_aiortc(self, data: bytes) -> bytes:
        sender = self._sender_ref()
        if sender is None or len(data) < 12:
            return data
        if is_rtcp(data):
            if data[1] != _RTCP_SR:
                return data
            data, ntp = self.outgoing.patch_sender_report(data, sender._ssrc)
            if ntp is not None:  # the far end echoes it: aiortc's RTT needs the same value
                sender._RTCRtpSender__lsr = (ntp >> 16) & 0xFFFFFFFF
            return data
        if rtp_ssrc(data) != sender._ssrc:
            return data
        payload_type = getattr(getattr(sender, "track", None), "payload_type", None)
        if payload_type is not None and (data[1] & 0x7F) != payload_type:
            data = data[:1] + bytes([(data[1] & 0x80) | payload_type]) + data[2:]
        data = self.outgoing.restamp(data, _AIORTC_LOOP, time.time())
        dtmf = self.dtmf
        return data if dtmf is None else dtmf._rewrite(data)

    def _header_template(self, sender: Any) -> tuple[int, bytes]:
        """(first header byte, header extension block) of this sender's packets."""
        template = self._template
        if template is None:
            packet = RtpPacket()
            packet.extensions.mid = sender._RTCRtpSender__mid
            raw = packet.serialize(sender._RTCRtpSender__rtp_header_extensions_map)
            template = self._template = (raw[0], bytes(raw[12:]))
        return template

    def forward(
        self, payload: bytes, timestamp: int, payload_type: int, marker: bool, producer: object
    ) -> bool:
        """Send one forwarded payload now; False (nothing sent) until the sender runs.

        ``timestamp`` is in the payload's clock, any origin (continuous per
        ``producer``). Before aiortc started the sender (DTLS not up yet) the
        caller keeps the payload for aiortc's own loop instead.
        """
        sender = self._sender_ref()
        if sender is None or not sender._RTCRtpSender__started:
            return False
        transport = sender.transport
        if transport._state is not _DTLS_CONNECTED or transport._tx_srtp is None:
            return False
        if self._hooked is None or self._hooked() is not transport:
            self.attach()
        first_byte, extension = self._header_template(sender)
        data = self.outgoing.build(
            first_byte=first_byte,
            extension=extension,
            ssrc=sender._ssrc,
            payload=payload,
            timestamp=timestamp,
            payload_type=payload_type,
            marker=marker,
            producer=producer,
            now=time.time(),
        )
        dtmf = self.dtmf
        if dtmf is not None:
            data = dtmf._rewrite(data)
        sender._RTCRtpSender__packet_count += 1
        sender._RTCRtpSender__octet_count += len(data) - 12 - len(extension)
        _send_srtp_now(transport, data)
        return True


def _send_srtp_now(transport: Any, data: bytes) -> None:
    """Protect plaintext RTP and hand it to ICE at once (what ``_send_rtp`` awaits)."""
    try:
        protected: bytes = transport._tx_srtp.protect(data)
    except pylibsrtp.Error as exc:
        logger.debug("SRTP protect failed: %s", exc)
        return
    ice = transport.transport
    restarter: IceRestarter | None = getattr(ice, _RESTARTER_ATTR, None)
    if restarter is None or not restarter.send_now(protected):
        task = asyncio.ensure_future(ice._send(protected))
        task.add_done_callback(_ignore_send_failure)
    transport._RTCDtlsTransport__tx_bytes += len(protected)
    transport._RTCDtlsTransport__tx_packets += 1


def _ignore_send_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("forwarded packet not sent: %r", task.exception())


def send_path(sender: Any) -> SendPath:
    """Install (once) and return the :class:`SendPath` of an ``RTCRtpSender``."""
    existing: SendPath | None = getattr(sender, _SEND_PATH_ATTR, None)
    if existing is None:
        existing = SendPath(sender)
        setattr(sender, _SEND_PATH_ATTR, existing)
    else:
        existing.attach()
    return existing


def forward_packets(sender: Any, track: PacketTrack, codecs: Sequence[CodecInfo]) -> None:
    """Send what is pushed into ``track`` straight through ``sender`` (RTP forwarding).

    ``codecs`` are the leg's negotiated ones: a payload pushed without a payload
    type takes the first audio codec's. Payloads pushed before the sender runs
    wait in the track for aiortc's own loop, as before.
    """
    path = send_path(sender)
    path.outgoing.configure({c.pt: c.clock_rate for c in codecs})
    audio = [c.pt for c in codecs if c.name.lower() != "telephone-event"]
    default_pt = audio[0] if audio else None
    forward = path.forward
    state = _TrackSink(sender)

    def sink(payload: bytes, timestamp: int, payload_type: int | None, marker: bool) -> bool:
        pt = default_pt if payload_type is None else payload_type
        sent = state.sending = pt is not None and forward(payload, timestamp, pt, marker, track)
        return sent

    track.use_sink(sink)
    _TRACK_SINKS[track] = state


class _TrackSink:
    """Whether a :class:`PacketTrack`'s sink sent the last payload pushed into it.

    A track calls its sink only while nothing is queued, and queues a payload
    the sink refused, so "the last call sent it" means "nothing is queued and the
    leg's sender runs": what the fused forwarding path needs to send in its place.
    """

    __slots__ = ("sender", "sending")

    def __init__(self, sender: Any) -> None:
        self.sender = weakref.ref(sender)  # the sender's track holds the track holding this
        self.sending = False


_TRACK_SINKS: weakref.WeakKeyDictionary[PacketTrack, _TrackSink] = weakref.WeakKeyDictionary()


# --------------------------------------------------------------------------- RFC 4733 send

DTMF_GRACE_S: Final = 1.0
"""How long past their planned end inserted tones may take before the waiter gives up."""


class DtmfSender:
    """Sends RFC 4733 events for one ``RTCRtpSender`` by rewriting its RTP in place.

    Rides on the sender's :class:`SendPath` (plaintext RTP, before SRTP), so
    aiortc's packets and forwarded ones alike: while tones are queued, each
    outgoing audio packet of this sender's SSRC becomes a telephone-event
    packet (PT, M bit, timestamp and payload replaced; sequence number kept).
    Get one with :func:`dtmf_sender`.
    """

    def __init__(self, sender: Any) -> None:
        self._sender_ref = weakref.ref(sender)
        self._scheduler: ToneScheduler | None = None
        self._payload_type = 0
        self._audio_clocks: dict[int, int] = {}
        self._event_pts: dict[int, int] = {}
        self._timing = (100, 70)
        self._waiters: list[asyncio.Future[None]] = []
        self.rewriting = False
        """True from :meth:`insert` until the tones are over (or given up): outgoing
        audio may be rewritten, so the fused forwarding path leaves it to :class:`SendPath`."""

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
        self.rewriting = True
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
        self.rewriting = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _hook(self) -> None:
        sender = self._sender_ref()
        if sender is not None:
            send_path(sender).dtmf = self

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


_SHIM_ATTR: Final = "_softphone_receive_shim"
_SOURCE_SEEN_MS: Final = 1000


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
      fed, directly. While a tap consumes and nobody reads aiortc's remote
      track (our receive path, a forwarding gateway), aiortc's decoder thread
      is stopped: it would only idle, two threads per bridged call. (Stopping
      it ends that track, so a receiver whose track is read keeps it.)
    * Decodes telephone-event packets into digits for :attr:`on_dtmf`, then
      replaces each with a silence packet of the audio codec at the timestamp
      the audio would have had. Mandatory when telephone-event is negotiated:
      aiortc's decoder thread dies on it and audio stops for good. *Audio-only*
      taps get that substitute too, so their stream has no gap.

    Packets come through aiortc's reader task (:meth:`_handle`) or, while a tap
    consumes, straight from the socket callback (:func:`_receive_srtp_now`,
    installed by :class:`IceRestarter`). Get one with :func:`receive_shim`;
    call :meth:`configure` with the negotiated codecs before media flows.

    Private names used: ``RTCRtpReceiver.receive``, ``__codecs``,
    ``__remote_streams``, ``__active_ssrc``, ``__decoder_thread``,
    ``__stop_decoder``, ``_track`` and ``aiortc.rtcrtpreceiver.StreamStatistics``.
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
        self._consuming = 0
        self._track_read = False
        self._watched: object = None
        self._statistics: tuple[dict[int, Any], dict[int, Any], dict[int, Any]] | None = None
        self._active_marked: dict[int, int] = {}
        self._route: ForwardRoute | None = None
        self.on_dtmf: Callable[[str], None] | None = None
        self.packets_received = 0
        self.bytes_received = 0
        self.events_received = 0
        receiver._handle_rtp_packet = self._handle
        if hasattr(receiver, "_RTCRtpReceiver__decoder_thread"):
            self._watch_decoder(receiver)

    def configure(self, codecs: Sequence[CodecInfo]) -> None:
        """Tell the shim the negotiated codecs (PT → codec), telephone-event included."""
        self._audio = {c.pt: c for c in codecs if c.name.lower() != "telephone-event"}
        self._events = {c.pt: c for c in codecs if c.name.lower() == "telephone-event"}
        self._watch_track()

    @property
    def consuming(self) -> bool:
        """True while a tap consumes the packets (aiortc's decoder gets none)."""
        return self._consuming > 0

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
        if consume:
            self._consuming += 1
            self._stop_decoder()
        self._route_taps_changed()

        def remove() -> None:
            if entry in self._taps:
                self._taps.remove(entry)
                if entry.consume:
                    self._consuming -= 1
                route = self._route
                if route is not None and not any(t.tap == route.tap for t in self._taps):
                    route.close()
                self._route_taps_changed()

        return remove

    def _route_taps_changed(self) -> None:
        """Tell the fused forwarding route, if any, which other taps it must feed."""
        route = self._route
        if route is not None:
            route.others = tuple(t.tap for t in self._taps if t.tap != route.tap)

    # ------------------------------------------------------------------ decoder thread

    def _watch_decoder(self, receiver: Any) -> None:
        """Stop the decoder thread ``receive`` starts if a tap consumes and nobody reads."""
        me = weakref.ref(self)
        original: Callable[[Any], Awaitable[None]] = receiver.receive

        async def receive(parameters: Any) -> None:
            await original(parameters)
            shim = me()
            if shim is not None and shim.consuming:
                shim._stop_decoder()

        receiver.receive = receive

    def _watch_track(self) -> None:
        """Note whether aiortc's remote track is ever read (once it exists).

        aiortc makes the track when the remote description is set, before
        :meth:`configure`; our receive path never reads it, aiortc's does from
        negotiation on, long before DTLS is up and ``receive`` starts the thread.
        """
        receiver = self._receiver_ref()
        track = getattr(receiver, "_track", None)
        if track is None or self._watched is track:
            return
        me = weakref.ref(self)
        read: Callable[[], Awaitable[Any]] = track.recv

        async def recv() -> Any:
            shim = me()
            if shim is not None:
                shim._track_read = True
            return await read()

        track.recv = recv
        self._watched = track

    def _stop_decoder(self) -> None:
        """End aiortc's decoder thread (and with it its remote track) unless it is read."""
        receiver = self._receiver_ref()
        if (
            receiver is not None
            and self._watched is not None
            and not self._track_read
            and getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None
        ):
            receiver._RTCRtpReceiver__stop_decoder()

    # ------------------------------------------------------------------ packets

    async def _handle(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        audio = self._deliver(packet, arrival_time_ms)
        if audio is not None:
            await self._original(audio, arrival_time_ms=arrival_time_ms)

    def _deliver(self, packet: RtpPacket, arrival_time_ms: int) -> RtpPacket | None:
        """Count and tap ``packet``; what aiortc's own path must still get (None: nothing)."""
        view = _tap_packet(packet, arrival_time_ms)
        audio = self.deliver_view(view)
        return None if audio is None else _for_aiortc(audio, view, packet)

    def deliver_view(self, view: RtpTapPacket) -> RtpTapPacket | None:
        """Count and tap one received packet; the audio aiortc must still get (None: nothing).

        The one way every packet takes, from aiortc's reader task (:meth:`_handle`)
        or straight from the socket callback (:func:`_receive_srtp_now`, which
        never builds an aiortc ``RtpPacket`` for it). While a tap consumes, the
        packet also feeds aiortc's RTCP statistics and None is returned.
        """
        self.packets_received += 1
        self.bytes_received += len(view.payload)
        payload_type = view.payload_type
        audio: RtpTapPacket | None = None
        if payload_type in self._audio:
            self._timeline.audio(view.sequence_number, view.timestamp)
            self._last_audio_pt = payload_type
            audio = view
        elif payload_type in self._events:
            self._on_event(view)
            audio = self._silence_for(view)
        taps = self._taps
        if len(taps) == 1 and taps[0].consume:  # the usual case: one consumer
            entry = taps[0]
            source = audio if entry.audio_only else view
            if source is not None:
                try:
                    entry.tap(source)
                except Exception:
                    logger.exception("RTP tap failed")
            self._feed_rtcp_statistics(view)
            return None
        consumed = False
        for entry in list(taps):
            consumed = consumed or entry.consume
            source = audio if entry.audio_only else view
            if source is not None:
                self._call(entry.tap, source)
        if consumed:
            self._feed_rtcp_statistics(view)
            return None
        return audio

    @staticmethod
    def _call(tap: RtpTap, view: RtpTapPacket) -> None:
        try:
            tap(view)
        except Exception:
            logger.exception("RTP tap failed")

    def _feed_rtcp_statistics(self, packet: RtpTapPacket) -> None:
        """What aiortc's ``_handle_rtp_packet`` does before its jitter buffer, for stats.

        Keeps ``inbound-rtp`` (packetsReceived, packetsLost, jitter) and the
        RTCP receiver reports alive while a tap consumes the packets. The
        receiver's "source seen" time (only read as "within the last 10 s")
        is refreshed once a second, not per packet. ``StreamStatistics.add``
        reads only ``sequence_number`` and ``timestamp``, which the tap's view
        has (fenced in the tests).
        """
        statistics = self._statistics
        if statistics is None:
            receiver = self._receiver_ref()
            if receiver is None:
                return
            codecs = getattr(receiver, "_RTCRtpReceiver__codecs", None)
            streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", None)
            active = getattr(receiver, "_RTCRtpReceiver__active_ssrc", None)
            if codecs is None or streams is None or active is None:
                return  # not an aiortc receiver (tests use stand-ins)
            statistics = self._statistics = (codecs, streams, active)
        codecs, streams, active = statistics
        ssrc = packet.ssrc
        arrival_time_ms = packet.arrival_time_ms
        if arrival_time_ms - self._active_marked.get(ssrc, -_SOURCE_SEEN_MS) >= _SOURCE_SEEN_MS:
            active[ssrc] = aiortc_clock.current_datetime()
            self._active_marked[ssrc] = arrival_time_ms
        stream = streams.get(ssrc)
        if stream is None:
            codec = codecs.get(packet.payload_type)
            if codec is None:
                return
            stream = streams[ssrc] = aiortc.rtcrtpreceiver.StreamStatistics(codec.clockRate)
        elif packet.payload_type not in codecs:
            return
        stream.add(packet)  # type: ignore[arg-type]  # reads what the view has (fenced)

    def _on_event(self, packet: RtpTapPacket) -> None:
        self.events_received += 1
        digit = self._detector.feed(packet.ssrc, packet.timestamp, packet.payload)
        if digit is not None and self.on_dtmf is not None:
            try:
                self.on_dtmf(digit)
            except Exception:
                logger.exception("on_dtmf callback failed")

    def _silence_for(self, packet: RtpTapPacket) -> RtpTapPacket | None:
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
        return packet._replace(
            payload_type=audio.pt, marker=False, timestamp=timestamp, payload=payload
        )


def _for_aiortc(audio: RtpTapPacket, view: RtpTapPacket, packet: RtpPacket) -> RtpPacket:
    """What aiortc's decoder gets for ``packet``: itself, or its ``audio`` substitute."""
    if audio is view:
        return packet
    out = RtpPacket(  # an event's silence substitute
        payload_type=audio.payload_type,
        marker=0,
        sequence_number=audio.sequence_number,
        timestamp=audio.timestamp,
        ssrc=audio.ssrc,
        payload=audio.payload,
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


_RTP_HEADER: Final = struct.Struct("!BBHII")
_NO_EXTENSIONS: Final = HeaderExtensions()
"""Shared by every packet :func:`_parse_rtp` makes; nothing on the receive path writes it."""


def _rtp_layout(data: bytes) -> tuple[int, int, int, int, int, int, int]:
    """(first byte, second byte, sequence, timestamp, SSRC, payload start, payload end).

    Validates what ``RtpPacket.parse`` validates (ValueError otherwise); the
    header extensions (MID, audio level: a third of aiortc's parsing cost,
    and nothing routing by SSRC and payload type needs) are skipped.
    """
    if len(data) < 12:
        raise ValueError("RTP packet length is less than 12 bytes")
    first, second, sequence_number, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError("RTP packet has invalid version")
    pos = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if len(data) < pos + 4:
            raise ValueError("RTP packet has a truncated extension profile / length")
        pos += 4 + 4 * int.from_bytes(data[pos + 2 : pos + 4], "big")
    end = len(data)
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or pos + padding > end:
            raise ValueError("RTP packet padding length is invalid")
        end -= padding
    if pos > end:
        raise ValueError("RTP packet is truncated")
    return first, second, sequence_number, timestamp, ssrc, pos, end


def _parse_rtp(data: bytes) -> RtpPacket:
    """``RtpPacket.parse`` without reading the header extensions (see :func:`_rtp_layout`).

    What aiortc's receiver, jitter buffer and statistics read (header fields,
    CSRCs, payload without padding) is all there.
    """
    first, second, sequence_number, timestamp, ssrc, pos, end = _rtp_layout(data)
    csrc_count = first & 0x0F
    packet: RtpPacket = RtpPacket.__new__(RtpPacket)
    packet.version = 2
    packet.marker = second >> 7
    packet.payload_type = second & 0x7F
    packet.sequence_number = sequence_number
    packet.timestamp = timestamp
    packet.ssrc = ssrc
    packet.csrc = (
        [int.from_bytes(data[i : i + 4], "big") for i in range(12, 12 + 4 * csrc_count, 4)]
        if csrc_count
        else []
    )
    packet.extensions = _NO_EXTENSIONS
    packet.padding_size = len(data) - end
    packet.payload = data[pos:end]
    return packet


def _parse_view(data: bytes, arrival_time_ms: int) -> RtpTapPacket:
    """A plaintext RTP packet straight into what taps see (validated as :func:`_parse_rtp`).

    The inline receive path's parser: one named tuple per packet, which
    aiortc's router and statistics read as they read an ``RtpPacket`` (only
    ``ssrc``, ``payload_type``, ``sequence_number``, ``timestamp``; fenced).
    """
    _, second, sequence_number, timestamp, ssrc, pos, end = _rtp_layout(data)
    return RtpTapPacket(
        second & 0x7F,
        sequence_number,
        timestamp,
        second > 127,
        ssrc,
        data[pos:end],
        arrival_time_ms,
    )


def _receive_srtp_now(dtls: Any, receiver: Any, shim: ReceiveShim, data: bytes) -> None:
    """What aiortc's DTLS reader does with one SRTP packet, without waiting for its task.

    Counts the datagram on the transport, removes SRTP, parses and routes the
    packet, and hands it to the shim (or, routed to another receiver, to that
    one's own handler). A packet that fails SRTP or parsing is dropped, as
    aiortc drops it. The arrival time is aiortc's (ms since the NTP epoch).
    Only a packet aiortc's own code must see becomes an aiortc ``RtpPacket``.
    Private names used: ``RTCDtlsTransport._rx_srtp``, ``__rx_bytes``,
    ``__rx_packets`` and ``_rtp_router``.
    """
    dtls._RTCDtlsTransport__rx_bytes += len(data)
    dtls._RTCDtlsTransport__rx_packets += 1
    try:
        plain = dtls._rx_srtp.unprotect(data)
    except pylibsrtp.Error as exc:
        logger.debug("incoming RTP dropped: %s", exc)
        return
    _receive_plain_now(dtls, receiver, shim, plain)


def _receive_plain_now(dtls: Any, receiver: Any, shim: ReceiveShim, plain: bytes) -> None:
    """The rest of :func:`_receive_srtp_now` once SRTP is off: parse, route, deliver."""
    try:
        view = _parse_view(plain, int((time.time() + NTP_UNIX_OFFSET_S) * 1000))
    except ValueError as exc:
        logger.debug("incoming RTP dropped: %s", exc)
        return
    routed = dtls._rtp_router.route_rtp(view)
    if routed is receiver:
        audio = shim.deliver_view(view)
        if audio is None:
            return
        # No tap consumes any more (one just removed itself): aiortc's own handler.
        packet = _for_aiortc(audio, view, _parse_rtp(plain))
        coroutine = shim._original(packet, arrival_time_ms=view.arrival_time_ms)
    elif routed is not None:
        coroutine = routed._handle_rtp_packet(
            _parse_rtp(plain), arrival_time_ms=view.arrival_time_ms
        )
    else:
        return
    task = asyncio.ensure_future(coroutine)
    task.add_done_callback(_log_failure)


# --------------------------------------------------------------------------- fused forwarding

_SRTP_BUFFER_LEN: Final = 1500
"""pylibsrtp's per-session buffer (``Session._cdata``)."""
_SRTP_TRAILER_LEN: Final = 144
"""pylibsrtp's room for the SRTP trailer (``SRTP_MAX_TRAILER_LEN``)."""
_SOURCE_SEEN_S: Final = _SOURCE_SEEN_MS / 1000


class _SrtpSession:
    """A pylibsrtp ``Session`` called through libsrtp directly, in place.

    ``Session.protect``/``unprotect`` copy the packet into the session's buffer,
    allocate a length cell, call libsrtp and copy the result out: two Python
    frames and an allocation per packet. The fused path writes the packet into
    the buffer itself (the forwarded payload straight from the receiving
    session's buffer) and reuses one length cell. Private names used:
    ``Session._srtp``, ``._cdata``, ``._buffer`` and ``pylibsrtp._binding``.
    """

    __slots__ = ("buffer", "cdata", "length", "session", "srtp", "view")

    def __init__(self, session: Any) -> None:
        self.session = session  # keeps the libsrtp context alive
        self.srtp: Any = session._srtp[0]
        self.cdata: Any = session._cdata
        self.buffer: Any = session._buffer
        self.view = memoryview(self.buffer)
        self.length: Any = _srtp_ffi.new("int *")
        if len(self.buffer) != _SRTP_BUFFER_LEN:
            raise RuntimeError("pylibsrtp's session buffer changed size")


class ForwardRoute:
    """The fused fast path of one bridge direction: source leg's receiver → target's sender.

    :func:`fuse_forwarding` installs it on the source leg's ICE path, where it
    sees each datagram before the general path (:func:`_receive_srtp_now` → the
    receive shim's taps → the bridge's tap → the packet track's sink →
    :meth:`SendPath.forward`). When the packet is plain forwarded audio it does
    all of that in one Python frame: header fields read once, SRTP removed in
    libsrtp's buffer, ``inbound-rtp`` statistics fed (:func:`_count_received`),
    the packet renumbered straight into the target session's buffer
    (:meth:`OutgoingRtp.header_into`), the payload copied next to it, protected
    and sent on the target's ICE path, every counter the general path keeps
    counted. Per leg everything is bound once; per packet only identity checks
    say that nothing changed.

    Anything else is left to the general path, unchanged: RTCP, telephone-event
    and unknown payload types, an SSRC aiortc's router has not learned yet, the
    target leg inserting DTMF (its packets are rewritten) or not sending yet
    (payloads queue until it does), a missing ICE path or one aioice does not
    send on directly, SRTP sessions not up (or replaced by a DTLS restart: the
    next packet takes the new ones), CSRC lists, padding and oversize packets.
    Other taps on the source leg (a recording, our receive path's playout) get
    the packet as the general path gives it to them. ``enabled`` switches the
    route off without removing it; ``forwarded`` counts the packets it sent.
    """

    def __init__(
        self,
        shim: ReceiveShim,
        restarter: IceRestarter,
        tap: RtpTap,
        sink: _TrackSink,
        sender: Any,
        track: PacketTrack,
        payload_types: Mapping[int, int],
    ) -> None:
        self.tap = tap
        self.enabled = True
        self.forwarded = 0
        self.others: tuple[RtpTap, ...] = ()
        self._shim = shim
        self._restarter = restarter
        self._fused = _fused_path(self, shim, restarter, sink, sender, track, dict(payload_types))
        restarter.fused = self._fused

    def close(self) -> None:
        """Leave every packet to the general path from now on (idempotent)."""
        if self._restarter.fused is self._fused:
            self._restarter.fused = None
        if self._shim._route is self:
            self._shim._route = None


def fuse_forwarding(
    source: Any, target: Any, tap: RtpTap, track: PacketTrack, payload_types: Mapping[int, int]
) -> ForwardRoute | None:
    """Forward ``source``'s audio to ``target`` on the fused path while it can (see
    :class:`ForwardRoute`); None when it cannot be installed (the general path alone).

    ``source`` and ``target`` are aiortc ``RTCPeerConnection`` s (the same one for an
    echo); ``tap`` is the consuming, audio-only tap the bridge added on ``source``'s
    receiver, pushing into ``track``, which :func:`forward_packets` gave ``target``'s
    sender; ``payload_types`` maps each source payload type forwarded as it is to
    the target's. The route goes away with ``tap``.
    """
    restarter = _RESTARTERS.get(source)
    sink = _TRACK_SINKS.get(track)
    if restarter is None or sink is None or restarter.fused is not None:
        return None
    receiver = restarter._receiver
    shim: ReceiveShim | None = getattr(receiver, _SHIM_ATTR, None)
    sender = sink.sender()
    if (
        shim is None
        or shim._route is not None
        or not any(t.tap == tap and t.consume and t.audio_only for t in shim._taps)
        or sender is None
        or sender not in target.getSenders()
        or not _SRTP_DIRECT
    ):
        return None
    route = ForwardRoute(shim, restarter, tap, sink, sender, track, payload_types)
    shim._route = route
    shim._route_taps_changed()
    return route


def _fused_path(
    route: ForwardRoute,
    shim: ReceiveShim,
    restarter: IceRestarter,
    sink: _TrackSink,
    sender: Any,
    track: PacketTrack,
    payload_types: dict[int, int],
) -> Callable[[bytes], bool]:
    """The function :class:`ForwardRoute` puts in front of the general receive path."""
    receiver = restarter._receiver
    path = send_path(sender)
    rx_dtls = restarter._dtls
    router = rx_dtls._rtp_router
    streams: dict[int, Any] = receiver._RTCRtpReceiver__remote_streams
    active: dict[int, Any] = receiver._RTCRtpReceiver__active_ssrc
    codecs: dict[int, Any] = receiver._RTCRtpReceiver__codecs
    forwarded_pt = payload_types.get
    timeline_audio = shim._timeline.audio
    outgoing = path.outgoing
    header_into = outgoing.header_into
    unprotect = _srtp_lib.srtp_unprotect
    protect = _srtp_lib.srtp_protect
    unpack_header = _RTP_HEADER.unpack_from
    clock = time.time
    connected = _DTLS_CONNECTED
    stun_send_data = _STUN_SEND_DATA
    tx_limit = _SRTP_BUFFER_LEN - _SRTP_TRAILER_LEN
    # what the last packet found, kept while it stays the same (identity checks)
    rx: _SrtpSession | None = None
    tx: _SrtpSession | None = None
    tx_dtls: Any = None
    tx_ice: Any = None
    first_byte = 0
    extension = b""
    header_len = 12
    ssrc_out = 0
    pair: Any = None
    sendto: Any = None
    addr: Any = None
    seen_ssrc = -1
    seen_until = 0.0

    def fused(data: bytes) -> bool:  # one frame per packet, on purpose
        nonlocal rx, tx, tx_dtls, tx_ice, first_byte, extension, header_len, ssrc_out
        nonlocal pair, sendto, addr, seen_ssrc, seen_until
        size = len(data)
        if size < 12 or size > _SRTP_BUFFER_LEN or not route.enabled:
            return False
        first, second, sequence, timestamp, ssrc = unpack_header(data)
        payload_type = second & 0x7F
        target_pt = forwarded_pt(payload_type)
        if (
            target_pt is None
            or not 127 < first < 192
            or 191 < second < 209  # RTCP
            or first & 0x2F  # CSRCs or padding: the general path
        ):
            return False
        # -- the source leg: SRTP up, SSRC routed to this receiver, statistics started
        if rx_dtls._state is not connected:
            return False
        session = rx_dtls._rx_srtp
        if rx is None or session is not rx.session:
            if session is None:
                return False
            rx = _SrtpSession(session)
        if (
            router.ssrc_table.get(ssrc) is not receiver
            or receiver not in router.payload_type_table.get(payload_type, ())
            or payload_type not in codecs
        ):
            return False
        stream = streams.get(ssrc)
        if stream is None:
            return False
        # -- the target leg: sending directly, no DTMF to insert, ICE path up
        if not sink.sending or track.detached or not sender._RTCRtpSender__started:
            return False
        dtmf = path.dtmf
        if dtmf is not None and dtmf.rewriting:
            return False
        transport = sender.transport
        if transport is not tx_dtls:
            hooked = path._hooked
            if hooked is None or hooked() is not transport:
                return False  # SendPath.forward re-attaches first
            tx_dtls = transport
            tx_ice = getattr(tx_dtls.transport, _RESTARTER_ATTR, None)
            tx = None
            pair = None
        if tx_dtls._state is not connected or tx_ice is None:
            return False
        session = tx_dtls._tx_srtp
        if tx is None or session is not tx.session:
            if session is None:
                return False
            tx = _SrtpSession(session)
            first_byte, extension = path._header_template(sender)
            header_len = 12 + len(extension)
            ssrc_out = sender._ssrc
        nominated = tx_ice._active._nominated.get(1)
        if nominated is not pair:
            if nominated is None:  # no path (a restart under way): the general path drops it
                return False
            protocol: Any = nominated.protocol
            if type(protocol).send_data is not stun_send_data or protocol.transport is None:
                return False
            pair = nominated
            sendto = protocol.transport.sendto
            addr = nominated.remote_addr
        # -- committed: from here on the general path never sees this datagram
        rx_dtls._RTCDtlsTransport__rx_bytes += size
        rx_dtls._RTCDtlsTransport__rx_packets += 1
        buffer = rx.buffer
        length = rx.length
        buffer[0:size] = data
        length[0] = size
        if unprotect(rx.srtp, rx.cdata, length):
            logger.debug("incoming RTP dropped: SRTP unprotect failed")
            return True
        end = length[0]
        start = 12
        if first & 0x10:
            start = 16 + 4 * ((data[14] << 8) | data[15]) if size >= 16 else end + 1
        if start > end or header_len + end - start > tx_limit:
            _receive_plain_now(rx_dtls, receiver, shim, bytes(buffer[0:end]))
            return True
        now = clock()
        size = end - start
        # what the receive shim counts, and aiortc's inbound-rtp statistics
        shim.packets_received += 1
        shim.bytes_received += size
        shim._last_audio_pt = payload_type
        timeline_audio(sequence, timestamp)
        if ssrc != seen_ssrc or now >= seen_until:
            active[ssrc] = aiortc_clock.current_datetime()
            shim._active_marked[ssrc] = int((now + NTP_UNIX_OFFSET_S) * 1000)
            seen_ssrc = ssrc
            seen_until = now + _SOURCE_SEEN_S
        _count_received(stream, sequence, timestamp, now)
        others = route.others
        if others:
            view = RtpTapPacket(
                payload_type,
                sequence,
                timestamp,
                second > 127,
                ssrc,
                buffer[start:end],
                int((now + NTP_UNIX_OFFSET_S) * 1000),
            )
            for other in others:
                try:
                    other(view)
                except Exception:
                    logger.exception("RTP tap failed")
        # the target's packet, numbered on its stream, protected and sent
        out = tx.buffer
        header_into(out, first_byte, target_pt | (second & 0x80), timestamp, ssrc_out, track, now)
        out[12:header_len] = extension
        out[header_len : header_len + size] = rx.view[start:end]
        length = tx.length
        length[0] = header_len + size
        sender._RTCRtpSender__packet_count += 1
        sender._RTCRtpSender__octet_count += size
        if protect(tx.srtp, tx.cdata, length):
            logger.debug("SRTP protect failed")
            return True
        protected = out[0 : length[0]]
        sendto(protected, addr)
        tx_dtls._RTCDtlsTransport__tx_bytes += len(protected)
        tx_dtls._RTCDtlsTransport__tx_packets += 1
        route.forwarded += 1
        return True

    return fused


def _count_received(stream: Any, sequence: int, timestamp: int, now: float) -> None:
    """aiortc's ``StreamStatistics.add`` for one packet received at Unix time ``now``.

    The same arithmetic on the same attributes (``base_seq``, ``max_seq``,
    ``cycles``, ``packets_received``, ``_clockrate``, ``_jitter_q4``,
    ``_last_arrival``, ``_last_timestamp``; fenced against the original), without
    a packet object or aiortc's helper calls.
    """
    max_seq = stream.max_seq
    received = stream.packets_received = stream.packets_received + 1
    if stream.base_seq is None:
        stream.base_seq = sequence
    if (
        max_seq is None
        or (sequence > max_seq and sequence - max_seq < 0x8000)
        or (sequence < max_seq and max_seq - sequence > 0x8000)
    ):
        arrival = int(now * stream._clockrate)
        if max_seq is not None and sequence < max_seq:
            stream.cycles += 1 << 16
        stream.max_seq = sequence
        last_timestamp = stream._last_timestamp
        if timestamp != last_timestamp and received > 1:
            diff = abs((arrival - stream._last_arrival) - (timestamp - last_timestamp))
            stream._jitter_q4 += diff - ((stream._jitter_q4 + 8) >> 4)
        stream._last_arrival = arrival
        stream._last_timestamp = timestamp


def _srtp_direct_available() -> bool:
    """True when pylibsrtp's internals are what :class:`_SrtpSession` expects."""
    try:
        policy = pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        _SrtpSession(pylibsrtp.Session(policy))
    except Exception:  # anything moved: the general path alone
        logger.warning("pylibsrtp internals changed: fused RTP forwarding disabled")
        return False
    return True


_SRTP_DIRECT: Final = _srtp_direct_available()


# --------------------------------------------------------------------------- ICE gathering

_GATHERINGS: weakref.WeakKeyDictionary[aioice.Connection, GatheringReport] = (
    weakref.WeakKeyDictionary()
)
_RELAY_PROTOCOLS: weakref.WeakKeyDictionary[Any, RelayProtocol] = weakref.WeakKeyDictionary()
"""aioice ``StunProtocol`` of a relay candidate → how we reach its TURN server."""


def install_gathering(
    connection: aioice.Connection, settings: IceGatheringSettings
) -> GatheringReport:
    """Make ``connection`` gather as ``settings`` say; returns the report it will fill.

    Wraps the instance's ``get_component_candidates`` (before gathering starts):

    * aioice's own code still gathers host and server-reflexive candidates
      (none with the relay policy), but waits for STUN at most ``timeout``;
    * every TURN server gives a relay candidate in parallel (aioice alone
      uses only the first, so ``turn:…?transport=udp`` shadowed the TCP and
      TLS fallbacks of the same list), ranked UDP > TCP > TLS, each remembered
      with its relay protocol for :func:`selected_candidate_pair`;
    * gathering ends when every server answered or ``timeout`` ran out; the
      servers still pending are cancelled (aioice closes their sockets).
    """
    report = GatheringReport()
    original = connection.get_component_candidates
    # Seen by gather_candidates, which otherwise logs "no TURN server" for the relay
    # policy; cleared below before aioice's own code could allocate on it.
    connection.turn_server = settings.turn_servers[0].address if settings.turn_servers else None

    async def get_component_candidates(
        component: int, addresses: list[str], timeout: int = 5
    ) -> list[aioice.Candidate]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        limit = settings.timeout if settings.timeout is not None else float(timeout)
        connection.turn_server = None  # every TURN server is gathered below, not by aioice
        relays = {
            asyncio.ensure_future(
                _relay_candidate(connection, settings, server, component, index)
            ): server
            for index, server in enumerate(settings.turn_servers)
        }
        try:
            candidates: list[aioice.Candidate] = await original(
                component=component,
                addresses=addresses,
                timeout=limit,  # type: ignore[arg-type]  # asyncio.wait takes a float
            )
            if relays:
                remaining = max(0.0, limit - (loop.time() - started))
                await asyncio.wait(relays, timeout=remaining)
        finally:
            late = [task for task in relays if not task.done()]
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)  # aioice closes their sockets on cancellation
        for task, server in relays.items():
            if task in late:
                report.timed_out.append(server.url)
                logger.warning(
                    "TURN server %s gave no relay candidate within %.1f s", server.url, limit
                )
            elif (error := task.exception()) is not None:
                report.failed[server.url] = str(error) or type(error).__name__
                logger.warning("TURN server %s failed: %s", server.url, report.failed[server.url])
            else:
                candidate, protocol = task.result()
                connection._protocols.append(protocol)
                candidates.append(candidate)
                report.relays[server.url] = server.relay_protocol
        for protocol in connection._protocols:
            _pass_media_through(protocol)
        report.candidate_types += [c.type for c in candidates]
        report.seconds = loop.time() - started
        report.done = True
        return candidates

    connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]
    _GATHERINGS[connection] = report
    return report


def _pass_media_through(protocol: Any) -> None:
    """Give RTP/RTCP datagrams of an aioice ``StunProtocol`` to its connection directly.

    aioice tries to parse every datagram as STUN and hands it on only when that
    fails (an exception per media packet). RFC 7983 tells them apart by the
    first byte: 128-191 is RTP/RTCP, which is never STUN (0-3). Private names
    used: ``StunProtocol.datagram_received``, ``.receiver``, ``.local_candidate``.
    """
    if not isinstance(protocol, aioice.ice.StunProtocol) or getattr(
        protocol, _MEDIA_PASS_ATTR, False
    ):
        return
    original = protocol.datagram_received

    def datagram_received(data: bytes | str, addr: tuple[Any, ...]) -> None:
        if isinstance(data, bytes) and data and 127 < data[0] < 192:
            protocol.receiver.data_received(data, protocol.local_candidate.component)
        else:
            original(data, addr)

    protocol.datagram_received = datagram_received  # type: ignore[method-assign]
    setattr(protocol, _MEDIA_PASS_ATTR, True)


_MEDIA_PASS_ATTR: Final = "_softphone_media_pass"


async def _relay_candidate(
    connection: aioice.Connection,
    settings: IceGatheringSettings,
    server: TurnServer,
    component: int,
    index: int,
) -> tuple[aioice.Candidate, Any]:
    """A relay candidate from ``server`` (aioice's own allocation code), ranked and tagged."""
    tls: bool | ssl.SSLContext = (settings.tls_context or True) if server.tls else False
    candidate, protocol = await aioice.ice.relayed_candidate(
        component=component,
        hide_related_address=settings.relay_only,
        protocol_factory=lambda: aioice.ice.StunProtocol(connection),
        turn_server=server.address,
        turn_username=server.username,
        turn_password=server.credential,
        # aioice hands it to loop.create_connection(ssl=...): an SSLContext works too.
        turn_ssl=tls,  # type: ignore[arg-type]
        turn_transport=server.transport,
    )
    # Distinct foundations per TURN transport: aioice unfreezes one pair per foundation.
    candidate.foundation = candidate_foundation("relay", server.relay_protocol, candidate.host)
    candidate.priority = candidate_priority(
        component, "relay", relay_local_preference(server.relay_protocol, index)
    )
    _RELAY_PROTOCOLS[protocol] = server.relay_protocol
    return candidate, protocol


def install_triggered_checks(connection: aioice.Connection) -> None:
    """Resend our check of a pair at once when the peer's check arrives on it.

    Through TURN, aioice's first check towards a peer's relay candidate is
    dropped by the TURN server until the peer's own first send installs the
    permission; the pair then only succeeds at aioice's first retransmission,
    500 ms later (measured: first audio 0.56 s after ``connect()`` through
    coturn, 0.08 s without TURN). The peer's check arriving is the sign that
    the way is open now (RFC 8445 §7.3.1.4 triggers a new check then; aioice
    leaves a pair already in progress alone), so each in-progress check
    towards that address is sent once more right away, as an early
    retransmission of the same transaction: nothing is cancelled.
    """
    original = connection.check_incoming
    resent: weakref.WeakSet[Any] = weakref.WeakSet()

    def check_incoming(message: Any, addr: tuple[str, int], protocol: Any) -> None:
        original(message, addr, protocol)
        for transaction in list(protocol.transactions.values()):
            if transaction not in resent and transaction._Transaction__addr == addr:
                resent.add(transaction)
                protocol.send_stun(transaction._Transaction__request, addr)

    connection.check_incoming = check_incoming  # type: ignore[method-assign]


def gathering_report(pc: Any) -> GatheringReport | None:
    """The report of the connection ``pc``'s next or last SDP advertises, if ours gathered it."""
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is not None:
            return _GATHERINGS.get(dtls.transport.iceGatherer._connection)
    return None


def settings_of(connection: aioice.Connection) -> IceGatheringSettings:
    """Settings that gather like an aioice ``Connection`` aiortc configured itself."""
    turn: tuple[TurnServer, ...] = ()
    if connection.turn_server is not None:
        host, port = connection.turn_server
        turn = (
            TurnServer(
                url=f"turn{'s' if connection.turn_ssl else ''}:{host}:{port}",
                host=host,
                port=port,
                transport="tcp" if connection.turn_transport == "tcp" else "udp",
                tls=bool(connection.turn_ssl),
                username=connection.turn_username or "",
                credential=connection.turn_password or "",
            ),
        )
    return IceGatheringSettings(
        relay_only=connection._transport_policy == aioice.TransportPolicy.RELAY,
        stun_server=connection.stun_server,
        turn_servers=turn,
        timeout=None,
    )


# --------------------------------------------------------------------------- ICE


def selected_candidate_pair(pc: Any) -> dict[str, Any] | None:
    """The nominated ICE pair of ``pc`` (aiortc has no candidate-pair stats), or None.

    Plain dict: ``localAddress``, ``localPort``, ``localCandidateType``,
    ``remoteAddress``, ``remotePort``, ``remoteCandidateType``, ``protocol``,
    and ``relayProtocol`` (``udp``/``tcp``/``tls``: how a local relay candidate
    reaches its TURN server; None for other candidates).
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
            "relayProtocol": _RELAY_PROTOCOLS.get(pair.protocol),
        }
    return None


# --------------------------------------------------------------------------- ICE restart


class IceRestarter:
    """ICE restart for one aiortc ``RTCPeerConnection`` (aiortc has none).

    Installed before the first connect (:func:`configure_ice`), it owns the
    ``RTCIceTransport``'s ``_recv``/``_send``, which always use the *active*
    aioice ``Connection``. A restart gathers a fresh ``Connection`` (new ufrag,
    password, sockets and TURN allocations, same policy and servers),
    advertises it in the next offer or answer, connects it, then swaps it in
    under the existing DTLS transport: DTLS, SRTP, SSRCs and sequence numbers
    never change (probe §6: 24 ms, no frame lost).

    A dead path never takes the call down with it: while the transport is not
    stopped, a connection that lost its path (its TURN allocation or TCP link
    gone, consent expired) makes ``_recv`` wait for the next swap and
    ``_send`` drop datagrams, where aiortc would close DTLS and with it the
    whole peer connection. The old connection is closed in the background
    after the swap (deleting a TURN allocation the server already lost can
    take aioice 63.5 s of retransmissions), and its errors are only logged. So
    a DTLS handshake that started before any path worked (nothing gathered at
    first) keeps retransmitting until a restart brings one, instead of failing.

    Private names used: ``RTCIceTransport._connection``, ``._recv``, ``._send``,
    ``._monitor``, ``._RTCIceTransport__monitor_task``,
    ``._RTCIceTransport__setState``, ``RTCIceGatherer._connection``, aioice
    ``Connection._transport_policy`` and aioice's public API.
    """

    def __init__(self, pc: Any, settings: IceGatheringSettings | None = None) -> None:
        transceivers = pc.getTransceivers()
        if not transceivers or transceivers[0].receiver.transport is None:
            raise RuntimeError("ICE restart needs an established transceiver")
        self._receiver = transceivers[0].receiver
        self._dtls = self._receiver.transport
        ice = self._dtls.transport
        self._ice = ice
        self._active: aioice.Connection = ice._connection
        self._pending: aioice.Connection | None = None
        self._closing: set[asyncio.Future[None]] = set()
        self._closing_connections: set[aioice.Connection] = set()
        self._changed = asyncio.Event()
        self.fused: Callable[[bytes], bool] | None = None
        """The fused forwarding path of a bridged receiver (:func:`fuse_forwarding`): tried
        first with every datagram; False leaves the datagram to the general path."""
        self.settings = settings if settings is not None else settings_of(self._active)
        ice._recv = self._recv
        ice._send = self._send
        ice.on("statechange", self._changed.set)
        setattr(ice, _RESTARTER_ATTR, self)  # for SendPath: an attribute, not a weak lookup
        self._receive_inline(self._active)

    def send_now(self, data: bytes) -> bool:
        """Send a datagram on the active path right away (what :meth:`_send` awaits).

        False when only the awaitable way can send it (a protocol other than
        aioice's own). With no path (a restart under way) the datagram is
        dropped, as :meth:`_send` drops it.
        """
        pair = self._active._nominated.get(1)
        if pair is None:
            return True
        protocol = pair.protocol
        if type(protocol).send_data is not _STUN_SEND_DATA:
            return False
        protocol.transport.sendto(data, pair.remote_addr)
        return True

    def _receive_inline(self, connection: aioice.Connection) -> None:
        """Hand ``connection``'s SRTP media to the receive shim on the step it arrives.

        aioice queues every datagram for the DTLS transport's reader task, which
        takes it on a later event-loop step. While the leg's receive shim
        consumes the audio (always with our receive path, and for forwarding),
        an RTP packet is decrypted, parsed, routed and tapped right in aioice's
        ``data_received`` instead; everything else (DTLS, RTCP, packets for
        aiortc's own decoder) still takes the queue.
        """
        original = connection.data_received
        me = weakref.ref(self)

        def data_received(data: bytes, component: int) -> None:
            restarter = me()
            if restarter is None:
                original(data, component)
                return
            fused = restarter.fused
            if fused is not None:
                try:
                    if fused(data):
                        return
                except Exception:
                    logger.exception("forwarding an RTP packet failed")
                    return
            if not restarter._receive_now(data):
                original(data, component)

        connection.data_received = data_received  # type: ignore[method-assign]

    def _receive_now(self, data: bytes) -> bool:
        # RTP, not RTCP (aiortc's is_rtcp: second byte 192-208), as aiortc's reader tells them
        if len(data) < 12 or not 127 < data[0] < 192 or 191 < data[1] < 209:
            return False
        shim: ReceiveShim | None = getattr(self._receiver, _SHIM_ATTR, None)
        dtls = self._dtls
        if (
            shim is None
            or not shim._consuming
            or dtls._state is not _DTLS_CONNECTED
            or dtls._rx_srtp is None
        ):
            return False
        try:
            _receive_srtp_now(dtls, self._receiver, shim, data)
        except Exception:
            logger.exception("receiving an RTP packet failed")
        return True

    def _stopped(self) -> bool:
        return bool(self._ice.state == "closed")

    async def _recv(self) -> bytes:
        while True:
            connection = self._active
            try:
                data: bytes = await connection.recv()
                return data
            except ConnectionError:
                if connection is not self._active:
                    continue  # the old path, swapped out under us
                if self._stopped():
                    raise  # the peer connection is closing: end DTLS's reader
                while connection is self._active and not self._stopped():
                    self._changed.clear()  # lost its path: wait for a restart's swap
                    await self._changed.wait()

    async def _send(self, data: bytes) -> None:
        try:
            await self._active.send(data)
        except ConnectionError:
            if self._stopped():
                raise
            # The path is down (like a lost datagram); a restart swaps in a new one.

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
        settings = self.settings
        new = aioice.Connection(
            ice_controlling=self._active.ice_controlling,
            components=1,
            stun_server=settings.stun_server,
            transport_policy=(
                aioice.TransportPolicy.RELAY if settings.relay_only else aioice.TransportPolicy.ALL
            ),
        )
        install_gathering(new, settings)
        install_triggered_checks(new)
        self._receive_inline(new)
        await new.gather_candidates()
        if self._pending is not None:
            self._close_later(self._pending)
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
            self._close_later(new)
            raise ConnectionError("the remote description has no ICE credentials")
        new.remote_username = media.ice.usernameFragment
        new.remote_password = media.ice.password
        for candidate in media.ice_candidates:
            await new.add_remote_candidate(candidate_to_aioice(candidate))
        await new.add_remote_candidate(None)
        try:
            await new.connect()
        except ConnectionError:
            self._close_later(new)
            raise
        if self._stopped():
            self._close_later(new)
            raise ConnectionError("the peer connection closed during the ICE restart")
        self._swap(new)

    def _swap(self, new: aioice.Connection) -> None:
        ice = self._ice
        old, self._active = self._active, new
        ice._connection = new
        monitor = ice._RTCIceTransport__monitor_task
        if monitor is not None:
            monitor.cancel()
        ice._RTCIceTransport__monitor_task = asyncio.ensure_future(ice._monitor())
        if ice.state in ("checking", "failed"):
            ice._RTCIceTransport__setState("completed")  # aiortc's "failed" is sticky
        self._changed.set()
        self._close_later(old)

    def _close_later(self, connection: aioice.Connection) -> None:
        """Close a connection we no longer use without waiting for it (nor failing on it)."""
        self._closing_connections.add(connection)
        task = asyncio.ensure_future(connection.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        task.add_done_callback(lambda _: self._closing_connections.discard(connection))
        task.add_done_callback(_log_failure)

    def leftovers(self) -> tuple[list[asyncio.Future[None]], list[aioice.Connection]]:
        """Close the prepared connection; every close still running, and their connections."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._close_later(pending)
        return list(self._closing), list(self._closing_connections)


_CLOSE_PATIENCE_S: Final = 1.0
"""How long closing waits for TURN allocations to be deleted (one round trip when the
server is alive) before it gives up on them."""


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.info("closing an unused ICE path failed: %r", task.exception())


def _abandon_turn_deletions(connections: Iterable[aioice.Connection]) -> None:
    """Cancel the TURN allocation deletions these connections are waiting for.

    aioice closes the TURN socket anyway (``delete``'s ``finally``), so the
    connection's close goes on; the server frees the allocation at the end
    of its lifetime.
    """
    for connection in connections:
        for protocol in list(connection._protocols):
            transport = getattr(protocol, "transport", None)
            task = getattr(transport, "_TurnTransport__close_task", None)
            if task is not None and not task.done():
                task.cancel()


async def close_peer_connection(pc: Any) -> None:
    """``pc.close()`` and its ICE restarter's leftovers, in bounded time.

    aioice deletes each TURN allocation with a Refresh it retransmits for
    63.5 s when the TURN server is gone (measured: closing a relay-only peer
    connection after coturn was killed took 63.5 s). After
    :data:`_CLOSE_PATIENCE_S` the deletions still waiting are abandoned.
    """
    connections = [
        t.receiver.transport.transport._connection
        for t in pc.getTransceivers()
        if t.receiver.transport is not None
    ]
    tasks: list[asyncio.Future[None]] = [asyncio.ensure_future(pc.close())]
    restarter = _RESTARTERS.get(pc)
    if restarter is not None:
        more_tasks, more_connections = restarter.leftovers()
        tasks += more_tasks
        connections += more_connections
    _, late = await asyncio.wait(tasks, timeout=_CLOSE_PATIENCE_S)
    for _ in range(50):  # a connection closes its TURN protocols one after the other
        if not late:
            break
        _abandon_turn_deletions(connections)
        _, late = await asyncio.wait(late, timeout=0.1)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    closed = tasks[0]
    error = None if closed.cancelled() else closed.exception()
    if error is not None:
        raise error


def configure_ice(pc: Any, settings: IceGatheringSettings) -> IceRestarter:
    """Set how ``pc`` gathers and install its :class:`IceRestarter` (once, before gathering).

    Call right after ``addTransceiver``: from then on the ICE transport reads
    and writes through the restarter, so no read is ever left pending on a
    connection a restart replaces.
    """
    if pc in _RESTARTERS:
        raise RuntimeError("ICE is already configured for this peer connection")
    restarter = IceRestarter(pc, settings)
    _RESTARTERS[pc] = restarter
    install_gathering(restarter._active, settings)
    install_triggered_checks(restarter._active)
    return restarter


def ice_restarter(pc: Any) -> IceRestarter:
    """The one :class:`IceRestarter` of ``pc`` (installed on first use if not configured)."""
    existing = _RESTARTERS.get(pc)
    if existing is None:
        existing = IceRestarter(pc)
        _RESTARTERS[pc] = existing
    return existing


_RESTARTERS: weakref.WeakKeyDictionary[Any, IceRestarter] = weakref.WeakKeyDictionary()
_RESTARTER_ATTR: Final = "_softphone_ice_restarter"
"""The attribute of an ``RTCIceTransport`` naming the restarter that owns its reads and
writes (for :class:`SendPath`)."""
_STUN_SEND_DATA: Final = aioice.ice.StunProtocol.send_data


# -- DTLS restart -------------------------------------------------------------------------
DTLS_RESTART_TIMEOUT_S: Final = 10.0
"""Longest a new DTLS handshake may take before the restart is given up."""


async def restart_dtls(pc: Any, remote_sdp: str, timeout_s: float = DTLS_RESTART_TIMEOUT_S) -> None:
    """A new DTLS session with a peer that answered an ICE restart with another certificate.

    A peer that lost its DTLS state (a gateway that took over the call of a gateway
    that died) answers with a new certificate; browsers then restart DTLS (a changed
    remote fingerprint), aiortc has no such thing. This runs a new handshake over the
    already restarted ICE path, through the DTLS transport's own receive pump (its
    ``_recv_next`` is swapped for the duration, so nothing else reads the socket), and
    once the peer's certificate matches ``remote_sdp``'s fingerprint the SRTP sessions
    are replaced. The transport never leaves ``connected``, so aiortc's RTP sender keeps
    running (its packets are protected with the old keys until the new ones are in).

    Raises ``ConnectionError`` when the handshake fails, times out, or the certificate
    does not match.
    """
    from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS, certificate_digest
    from aiortc.sdp import SessionDescription
    from OpenSSL import SSL

    media = SessionDescription.parse(remote_sdp).media[0]
    if media.dtls is None or not media.dtls.fingerprints:
        raise ConnectionError("the answer has no DTLS fingerprint")
    fingerprints = [
        f for f in media.dtls.fingerprints if f.algorithm.lower() in X509_DIGEST_ALGORITHMS
    ]
    dtls = pc.getTransceivers()[0].receiver.transport
    certificate = dtls._RTCDtlsTransport__local_certificate
    session = SSL.Connection(certificate._create_ssl_context(srtp_profiles=dtls._srtp_profiles))
    role = "client" if media.dtls.role == "server" else "server"  # the peer's opposite
    if role == "server":
        session.set_accept_state()
    else:
        session.set_connect_state()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def flush() -> None:
        while True:
            try:
                data = session.bio_read(1500)
            except SSL.Error:
                return
            if not data:
                return
            await dtls.transport._send(data)

    async def step() -> None:
        try:
            session.do_handshake()
        except SSL.WantReadError:
            await flush()
            return
        except SSL.Error as exc:
            if not done.done():
                done.set_exception(ConnectionError(f"DTLS handshake failed: {exc}"))
            return
        await flush()
        if done.done():
            return
        peer = session.get_peer_certificate(as_cryptography=True)
        if (
            peer is None
            or not fingerprints
            or not all(
                f.value.upper() == certificate_digest(peer, f.algorithm.lower())
                for f in fingerprints
            )
        ):
            done.set_exception(ConnectionError("DTLS fingerprint mismatch"))
            return
        dtls._ssl = session
        dtls._role = role
        dtls._setup_srtp()  # new SRTP sessions from the new keying material
        done.set_result(None)

    async def recv_next() -> None:
        """The pump's reader while the handshake runs: DTLS goes to the new session."""
        timeout = session.DTLSv1_get_timeout()
        try:
            if timeout is not None:
                data = await asyncio.wait_for(dtls.transport._recv(), timeout)
            else:
                data = await dtls.transport._recv()
        except TimeoutError:
            session.DTLSv1_handle_timeout()
            await flush()
            return
        if 19 < data[0] < 64:
            session.bio_write(data)
            await step()
        # SRTP under the old keys (nobody holds them any more) is dropped meanwhile

    dtls._recv_next = recv_next  # found before the class's method by the pump's self._recv_next
    try:
        if role == "client":
            await step()
        await asyncio.wait_for(asyncio.shield(done), timeout_s)
    except TimeoutError:
        raise ConnectionError("the new DTLS handshake timed out") from None
    finally:
        dtls.__dict__.pop("_recv_next", None)

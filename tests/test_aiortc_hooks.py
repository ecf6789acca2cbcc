"""Fence tests for ``softphone.media.aiortc_hooks`` plus the pure RFC 4733 logic.

The first half fails loudly when an aiortc/aioice upgrade moves or reshapes a
private name the hooks patch; the second half checks each hook's behaviour
without a network (fake transports and receivers).
"""

from __future__ import annotations

import asyncio
import fractions
import inspect
import re
import struct
import subprocess
import sys
import time
from typing import Any

import aioice
import aioice.candidate
import aioice.ice
import aioice.stun
import aioice.turn
import aiortc
import aiortc.clock
import aiortc.codecs
import aiortc.rtcdtlstransport
import aiortc.rtcicetransport
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtp
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from softphone.media import aiortc_hooks as hooks
from softphone.media.ice_gathering import IceGatheringSettings
from softphone.media.rfc4733 import (
    AudioTimeline,
    EventDetector,
    Rfc4733Event,
    ToneScheduler,
    is_rtcp,
    normalize_tones,
    rewrite_rtp,
    rtp_ssrc,
    silence_payload,
)
from softphone.media.sdp import CodecInfo
from softphone.media.source_track import SourceTrack

# ====================================================================== the fence


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def test_pinned_versions() -> None:
    assert aiortc.__version__ == hooks.AIORTC_VERSION == "1.16.0"
    assert aioice.__version__ == hooks.AIOICE_VERSION == "0.13.0"


def test_check_versions_rejects_anything_else() -> None:
    hooks.check_versions("1.16.0", "0.13.0")
    with pytest.raises(RuntimeError, match=r"aiortc==1\.16\.0"):
        hooks.check_versions("1.17.0", "0.13.0")
    with pytest.raises(RuntimeError, match=r"aioice==0\.14\.0"):
        hooks.check_versions("1.16.0", "0.14.0")


def test_import_fails_on_a_different_aiortc_version() -> None:
    code = "import aiortc; aiortc.__version__ = '9.9.9'; import softphone.media.aiortc_hooks"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "RuntimeError" in proc.stderr and "9.9.9" in proc.stderr


def test_fence_aioice_get_host_addresses() -> None:
    original = hooks._ORIGINAL_GET_HOST_ADDRESSES
    assert original.__module__ == "aioice.ice" and original.__name__ == "get_host_addresses"
    assert _params(original) == ["use_ipv4", "use_ipv6"]
    # aioice looks it up as a module global at gathering time.
    assert "get_host_addresses(" in inspect.getsource(aioice.ice.Connection.gather_candidates)


def test_fence_aioice_binds_host_candidates_through_its_asyncio_reference() -> None:
    """The RTP port range swaps ``aioice.ice.asyncio``: aioice must still bind host
    candidates with ``asyncio.get_running_loop().create_datagram_endpoint(..., (addr, 0))``."""
    assert aioice.ice.asyncio is asyncio
    source = inspect.getsource(aioice.ice.Connection.get_component_candidates)
    assert "asyncio.get_running_loop()" in source
    assert "local_addr=(address, 0)" in source


def test_fence_codec_table_and_preference_filter() -> None:
    audio = aiortc.codecs.CODECS["audio"]
    assert isinstance(audio, list) and all(isinstance(c, RTCRtpCodecParameters) for c in audio)
    assert audio[0].mimeType == "audio/opus"
    assert {c.mimeType for c in audio} >= {"audio/opus", "audio/PCMU", "audio/PCMA"}
    original = hooks._ORIGINAL_FILTER_PREFERRED
    assert original.__module__ == "aiortc.rtcpeerconnection"
    assert _params(original) == ["codecs", "preferred"]
    for method in (RTCPeerConnection.createOffer, RTCPeerConnection.setRemoteDescription):
        assert "filter_preferred_codecs(" in inspect.getsource(method)
    # Why the telephone-event receive shim is mandatory: no decoder for it.
    te = RTCRtpCodecParameters("audio/telephone-event", clockRate=8000, payloadType=126)
    with pytest.raises(ValueError):
        aiortc.codecs.get_decoder(te)


def test_fence_sender_send_path() -> None:
    """SendPath (payload type, numbering, DTMF) wraps the sender's ``transport._send_rtp``."""
    run_src = inspect.getsource(RTCRtpSender._run_rtp)
    assert "self.transport._send_rtp(packet_bytes)" in run_src
    assert "packet.ssrc = self._ssrc" in run_src
    assert _params(RTCDtlsTransport._send_rtp) == ["self", "data"]
    assert inspect.iscoroutinefunction(RTCDtlsTransport._send_rtp)


def test_fence_forwarding_sender_counters_and_reports() -> None:
    """SendPath.forward keeps the counters aiortc's loop keeps, and patches its SRs."""
    run_src = inspect.getsource(RTCRtpSender._run_rtp)
    assert "self.__octet_count += len(payload)" in run_src
    assert "self.__packet_count += 1" in run_src
    assert "packet.extensions.mid = self.__mid" in run_src
    assert "packet.serialize(self.__rtp_header_extensions_map)" in run_src
    stats_src = inspect.getsource(RTCRtpSender.getStats)
    assert "packetsSent=self.__packet_count" in stats_src
    assert "bytesSent=self.__octet_count" in stats_src
    send_src = inspect.getsource(RTCRtpSender.send)
    assert "self.__started = True" in send_src
    assert "self.__rtp_header_extensions_map.configure(parameters)" in send_src
    rtcp_src = inspect.getsource(RTCRtpSender._run_rtcp)
    # the SR aiortc builds goes through transport._send_rtp after __lsr is set, so the
    # NTP time SendPath writes into it must also become __lsr (RTT from the echo)
    assert rtcp_src.index("self.__lsr = ") < rtcp_src.index("await self._send_rtcp(packets)")
    assert "if self.__lsr == report.lsr and report.dlsr:" in inspect.getsource(
        RTCRtpSender._handle_rtcp_packet
    )
    assert "await self.transport._send_rtp(payload)" in inspect.getsource(RTCRtpSender._send_rtcp)
    # the offsets patch_sender_report writes: NTP at 8..16, RTP timestamp at 16..20
    sr = aiortc.rtp.RtcpSrPacket(
        ssrc=7,
        sender_info=aiortc.rtp.RtcpSenderInfo(
            ntp_timestamp=0x0102030405060708,
            rtp_timestamp=0x0A0B0C0D,
            packet_count=1,
            octet_count=2,
        ),
    )
    raw = bytes(sr)
    assert raw[1] == 200 and raw[4:8] == (7).to_bytes(4, "big")
    assert raw[8:16] == (0x0102030405060708).to_bytes(8, "big")
    assert raw[16:20] == (0x0A0B0C0D).to_bytes(4, "big")


def test_fence_dtls_transport_send_and_receive() -> None:
    """What SendPath.forward and the inline receive do in place of aiortc's coroutines."""
    send = inspect.getsource(RTCDtlsTransport._send_rtp)
    assert "data = self._tx_srtp.protect(data)" in send
    assert "await self.transport._send(data)" in send
    assert "self.__tx_bytes += len(data)" in send and "self.__tx_packets += 1" in send
    assert "if self._state != State.CONNECTED:" in send
    recv = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "self.__rx_bytes += len(data)" in recv and "self.__rx_packets += 1" in recv
    assert "first_byte > 127 and first_byte < 192 and self._rx_srtp" in recv
    assert "data = self._rx_srtp.unprotect(data)" in recv
    assert "arrival_time_ms = clock.current_ms()" in recv
    handle = inspect.getsource(RTCDtlsTransport._handle_rtp_data)
    assert "RtpPacket.parse(data, self._rtp_header_extensions_map)" in handle
    assert "receiver = self._rtp_router.route_rtp(packet)" in handle
    assert _params(aiortc.rtcdtlstransport.RtpRouter.route_rtp) == ["self", "packet"]
    assert hooks._DTLS_CONNECTED is aiortc.rtcdtlstransport.State.CONNECTED
    # aiortc's arrival clock, which _receive_srtp_now computes without datetimes
    assert abs(aiortc.clock.current_ms() - int((time.time() + 2_208_988_800) * 1000)) < 1000


def test_fence_aioice_data_path() -> None:
    """Sending without awaiting, and receiving without aioice's queue."""
    assert (
        inspect.getsource(aioice.ice.StunProtocol.send_data)
        .rstrip()
        .endswith("self.transport.sendto(data, addr)")
    )
    assert hooks._STUN_SEND_DATA is aioice.ice.StunProtocol.send_data
    sendto = inspect.getsource(aioice.Connection.sendto)
    assert "active_pair = self._nominated.get(component)" in sendto
    assert "await active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto
    assert (
        inspect.getsource(aioice.Connection.data_received)
        .rstrip()
        .endswith("self._queue.put_nowait((data, component))")
    )
    received = inspect.getsource(aioice.ice.StunProtocol.datagram_received)
    assert "message = stun.parse_message(data)" in received
    assert "self.receiver.data_received(data, self.local_candidate.component)" in received
    assert _params(aioice.ice.StunProtocol.datagram_received) == ["self", "data", "addr"]
    # a relay candidate's transport (TurnTransport) sends synchronously too
    assert not inspect.iscoroutinefunction(aioice.turn.TurnTransport.sendto)


def test_fence_receiver_decoder_thread() -> None:
    """ReceiveShim stops aiortc's decoder thread while a tap consumes, restarts it after."""
    receive = inspect.getsource(RTCRtpReceiver.receive)
    assert "self.__decoder_thread = threading.Thread(" in receive
    assert "target=decoder_worker" in receive
    assert "self._track._queue," in receive and "self.__decoder_error," in receive
    assert "self.__started = True" in receive
    assert _params(aiortc.rtcrtpreceiver.decoder_worker) == [
        "loop",
        "input_q",
        "output_q",
        "decode_error",
    ]
    stop = inspect.getsource(RTCRtpReceiver._RTCRtpReceiver__stop_decoder)
    assert "self.__decoder_queue.put(None)" in stop and "self.__decoder_thread = None" in stop
    handle = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "if encoded_frame is not None and self.__decoder_thread:" in handle


def test_fence_rtp_packet_attributes_of_the_fast_parser() -> None:
    """_parse_rtp sets exactly what RtpPacket.__init__ sets."""
    made = hooks._parse_rtp(_audio_packet(1, 2))
    assert set(vars(made)) == set(vars(RtpPacket()))


@pytest.mark.parametrize("name", ["opus", "PCMU", "PCMA", "G722"])
def test_fence_sender_sends_packets_as_they_are(name: str) -> None:
    """Not a private name but the public route SendTrack relies on: a track's ``av.Packet``
    goes out unchanged, its pts (in the codec's clock) as the RTP timestamp plus a
    constant origin."""
    codec = next(c for c in aiortc.codecs.CODECS["audio"] if c.mimeType == f"audio/{name}")
    packet = av.Packet(b"payload")
    packet.pts = 123_456
    packet.time_base = fractions.Fraction(1, codec.clockRate)
    assert aiortc.codecs.get_encoder(codec).pack(packet) == ([b"payload"], 123_456)
    next_src = inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert "if isinstance(data, Frame):" in next_src
    assert "payloads, timestamp = self.__encoder.pack(data)" in next_src
    run_src = inspect.getsource(RTCRtpSender._run_rtp)
    assert "timestamp = uint32_add(timestamp_origin, enc_frame.timestamp)" in run_src


def test_fence_receiver_statistics() -> None:
    """ReceiveShim feeds aiortc's RTCP statistics itself for consumed packets."""
    handle = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "self.__active_ssrc[packet.ssrc] = clock.current_datetime()" in handle
    assert "self.__remote_streams[packet.ssrc] = StreamStatistics(codec.clockRate)" in handle
    assert "self.__remote_streams[packet.ssrc].add(packet)" in handle
    assert "codec = self.__codecs.get(packet.payload_type)" in handle
    assert _params(aiortc.rtcrtpreceiver.StreamStatistics.__init__) == ["self", "clockrate"]
    assert _params(aiortc.rtcrtpreceiver.StreamStatistics.add) == ["self", "packet"]
    rtcp = inspect.getsource(RTCRtpReceiver._run_rtcp)
    assert "for ssrc, stream in self.__remote_streams.items():" in rtcp


def test_fence_statistics_and_router_read_only_what_a_tap_view_has() -> None:
    """The inline receive path feeds aiortc's router and ``StreamStatistics`` the tap's
    named tuple instead of an ``RtpPacket``: they must read nothing else (a missing
    attribute raises), and count exactly as for aiortc's own packets."""
    ours = aiortc.rtcrtpreceiver.StreamStatistics(48000)
    theirs = aiortc.rtcrtpreceiver.StreamStatistics(48000)
    for sequence in (65533, 65534, 65535, 2, 1, 3, 7):  # a wrap, a loss, a reorder
        data = _audio_packet(sequence, sequence * 960)
        ours.add(hooks._parse_view(data, 0))  # type: ignore[arg-type]
        theirs.add(RtpPacket.parse(data))
    assert (ours.packets_received, ours.packets_lost, ours.max_seq, ours.cycles) == (
        theirs.packets_received,
        theirs.packets_lost,
        theirs.max_seq,
        theirs.cycles,
    )
    assert ours.packets_lost == 4  # 0, 4, 5 and 6
    route = inspect.getsource(aiortc.rtcdtlstransport.RtpRouter.route_rtp)
    assert {"packet.ssrc", "packet.payload_type"} == set(re.findall(r"packet\.\w+", route))
    router = aiortc.rtcdtlstransport.RtpRouter()
    receiver = object()
    router.register_receiver(receiver, ssrcs=[], payload_types=[96])  # type: ignore[arg-type]
    assert router.route_rtp(hooks._parse_view(_audio_packet(1, 2), 0)) is receiver  # type: ignore[arg-type]
    assert router.ssrc_table[1234] is receiver


def test_fence_fused_path_counts_statistics_as_aiortc_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fused forwarding path feeds ``StreamStatistics`` through ``_count_received``:
    the same attributes, the same arithmetic as ``add`` (wraps, losses, reorders,
    repeated timestamps, jitter), or inbound-rtp and the receiver reports drift."""
    now = [1_700_000_000.0]
    monkeypatch.setattr(aiortc.rtcrtpreceiver.time, "time", lambda: now[0])
    ours = aiortc.rtcrtpreceiver.StreamStatistics(48000)
    theirs = aiortc.rtcrtpreceiver.StreamStatistics(48000)
    sequences = [65530 + i for i in range(6)] + [2, 1, 3, 3, 7, 40000, 8, 9]
    for i, sequence in enumerate(sequences):
        now[0] += 0.02 + (0.013 if i % 4 == 0 else 0.0)
        timestamp = (sequence * 960 + (480 if i % 5 == 0 else 0)) % 2**32
        hooks._count_received(ours, sequence, timestamp, now[0])
        theirs.add(RtpPacket(sequence_number=sequence, timestamp=timestamp))
        assert vars(ours) == vars(theirs), i
    assert theirs.jitter > 0 and theirs.packets_lost > 0 and theirs.cycles == 1 << 16
    init = inspect.getsource(aiortc.rtcrtpreceiver.StreamStatistics.__init__)
    fields = set(re.findall(r"self\.(\w+)(?::[^=\n]*)? =", init))
    assert fields == {
        "base_seq",
        "max_seq",
        "cycles",
        "packets_received",
        "_clockrate",
        "_jitter_q4",
        "_last_arrival",
        "_last_timestamp",
        "_expected_prior",
        "_received_prior",
    }


def test_fence_fused_path_calls_libsrtp_as_pylibsrtp_does() -> None:
    """``_SrtpSession`` (pylibsrtp's ``_srtp``, ``_cdata``, ``_buffer`` and its cffi
    binding) protects and unprotects exactly as ``Session.protect``/``unprotect``."""
    import pylibsrtp

    assert pylibsrtp.__version__ == "1.0.0"
    assert hooks._SRTP_DIRECT

    def session(direction: int) -> pylibsrtp.Session:
        return pylibsrtp.Session(pylibsrtp.Policy(key=bytes(range(30)), ssrc_type=direction))

    public_tx = session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    direct_tx = hooks._SrtpSession(session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    direct_rx = hooks._SrtpSession(session(pylibsrtp.Policy.SSRC_ANY_INBOUND))
    lib = hooks._srtp_lib
    for sequence in range(5):
        plain = _audio_packet(sequence, sequence * 960)
        direct_tx.buffer[0 : len(plain)] = plain
        direct_tx.length[0] = len(plain)
        assert lib.srtp_protect(direct_tx.srtp, direct_tx.cdata, direct_tx.length) == 0
        protected = direct_tx.buffer[0 : direct_tx.length[0]]
        assert protected == public_tx.protect(plain)
        direct_rx.buffer[0 : len(protected)] = protected
        direct_rx.length[0] = len(protected)
        assert lib.srtp_unprotect(direct_rx.srtp, direct_rx.cdata, direct_rx.length) == 0
        assert direct_rx.buffer[0 : direct_rx.length[0]] == plain
    direct_rx.length[0] = len(protected)  # a replay is refused, as pylibsrtp raises
    direct_rx.buffer[0 : len(protected)] = protected
    assert lib.srtp_unprotect(direct_rx.srtp, direct_rx.cdata, direct_rx.length) != 0


def test_fence_fused_path_names() -> None:
    """The private names the fused forwarding path reads per packet."""
    router = aiortc.rtcdtlstransport.RtpRouter()
    assert router.ssrc_table == {} and router.payload_type_table == {}
    assert "self._rtp_router = RtpRouter()" in inspect.getsource(RTCDtlsTransport.__init__)

    def assigned(cls: type, name: str) -> bool:
        source = inspect.getsource(cls.__init__)  # type: ignore[misc]
        return re.search(rf"self\.{name}(?::[^=\n]*)? = ", source) is not None

    for name in ("__started", "__packet_count", "__octet_count", "_ssrc"):
        assert assigned(RTCRtpSender, name), name
    for name in ("_rx_srtp", "_tx_srtp", "_state", "__rx_bytes", "__rx_packets", "__tx_bytes"):
        assert assigned(RTCDtlsTransport, name), name
    assert assigned(RTCDtlsTransport, "__tx_packets")
    assert "self.protocol = protocol" in inspect.getsource(aioice.ice.CandidatePair.__init__)
    assert "self.transport.sendto(data, addr)" in inspect.getsource(
        aioice.ice.StunProtocol.send_data
    )


def test_inline_rtcp_test_is_aiortcs() -> None:
    """IceRestarter._receive_now tells RTCP from RTP by the second byte as aiortc does."""
    for second in range(256):
        data = bytes([0x80, second]) + bytes(10)
        assert (191 < second < 209) == aiortc.rtp.is_rtcp(data), second


def test_fence_receiver_path() -> None:
    assert _params(RTCRtpReceiver._handle_rtp_packet) == ["self", "packet", "arrival_time_ms"]
    assert inspect.iscoroutinefunction(RTCRtpReceiver._handle_rtp_packet)
    src = inspect.getsource(RTCDtlsTransport._handle_rtp_data)
    assert "receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)" in src
    assert _params(RtpPacket.__init__) == [
        "self",
        "payload_type",
        "marker",
        "sequence_number",
        "timestamp",
        "ssrc",
        "payload",
    ]
    packet = RtpPacket()
    assert packet.csrc == [] and packet.extensions is not None


def test_fence_ice_nominated_pair() -> None:
    assert "self._connection = gatherer._connection" in inspect.getsource(RTCIceTransport.__init__)
    assert "self._nominated: dict[int, CandidatePair] = {}" in inspect.getsource(
        aioice.Connection.__init__
    )
    assert isinstance(aioice.ice.CandidatePair.local_candidate, property)
    assert "self.remote_candidate = remote_candidate" in inspect.getsource(
        aioice.ice.CandidatePair.__init__
    )
    assert {"host", "port", "type", "transport"} <= set(_params(aioice.Candidate.__init__))


async def test_fence_instance_attributes() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver(SourceTrack(None), direction="sendrecv")
        sender = transceiver.sender
        assert isinstance(sender._ssrc, int)
        assert isinstance(transceiver._codecs, list)
        receiver = transceiver.receiver
        assert isinstance(receiver._RTCRtpReceiver__codecs, dict)
        assert isinstance(receiver._RTCRtpReceiver__remote_streams, dict)
        assert isinstance(receiver._RTCRtpReceiver__active_ssrc, dict)
        ice = transceiver.receiver.transport.transport
        assert isinstance(ice._connection, aioice.Connection)
        assert ice._connection._nominated == {}
        # what IceRestarter takes over and swaps (before start: no monitor yet)
        assert ice._recv == ice._connection.recv and ice._send == ice._connection.send
        assert ice._RTCIceTransport__monitor_task is None
        assert ice.iceGatherer._connection is ice._connection
        assert isinstance(ice._connection._transport_policy, aioice.TransportPolicy)
    finally:
        await pc.close()


def test_fence_ice_gathering() -> None:
    """install_gathering wraps get_component_candidates and gathers TURN itself."""
    assert _params(aioice.Connection.get_component_candidates) == [
        "self",
        "component",
        "addresses",
        "timeout",
    ]
    gather = inspect.getsource(aioice.Connection.gather_candidates)
    assert "self.get_component_candidates(" in gather and "self.turn_server is None" in gather
    component = inspect.getsource(aioice.Connection.get_component_candidates)
    assert "if self.turn_server:" in component
    assert "asyncio.wait(tasks, timeout=timeout)" in component
    assert "self._protocols.append(relay_protocol)" in component
    init = inspect.getsource(aioice.Connection.__init__)
    assert "self._protocols: list[StunProtocol] = []" in init
    assert "self._transport_policy = transport_policy" in init
    assert set(_params(aioice.ice.relayed_candidate)) == {
        "component",
        "hide_related_address",
        "protocol_factory",
        "turn_server",
        "turn_username",
        "turn_password",
        "turn_ssl",
        "turn_transport",
    }
    assert "ssl=turn_ssl" in inspect.getsource(aioice.ice.relayed_candidate)
    ssl_param = inspect.signature(aioice.turn.create_turn_endpoint).parameters["ssl"]
    assert "SSLContext" in str(ssl_param.annotation)  # an SSLContext passes straight through
    assert _params(aioice.ice.StunProtocol.__init__) == ["self", "receiver"]
    assert _params(aioice.candidate.candidate_priority) == [
        "candidate_component",
        "candidate_type",
        "local_pref",
    ]


def test_fence_turn_close() -> None:
    """close_peer_connection cancels a TURN transport's pending deletion task."""
    assert "self.__close_task = asyncio.create_task(self._close())" in inspect.getsource(
        aioice.turn.TurnTransport.close
    )
    assert "await self.__inner_protocol.delete()" in inspect.getsource(
        aioice.turn.TurnTransport._close
    )
    delete = inspect.getsource(aioice.turn.TurnClientMixin.delete)
    assert delete.index("finally:") < delete.index("self.transport.close()")


def test_fence_triggered_checks() -> None:
    """install_triggered_checks wraps check_incoming and reads a Transaction's address."""
    assert _params(aioice.Connection.check_incoming) == ["self", "message", "addr", "protocol"]
    assert "self.check_incoming(message, addr, protocol)" in inspect.getsource(
        aioice.Connection.request_received
    )
    init = inspect.getsource(aioice.stun.Transaction.__init__)
    assert "self.__addr = addr" in init and "self.__request = request" in init
    assert "self.transactions[request.transaction_id] = transaction" in inspect.getsource(
        aioice.ice.StunProtocol.request
    )
    assert _params(aioice.ice.StunProtocol.send_stun) == ["self", "message", "addr"]


def test_fence_ice_restart() -> None:
    """IceRestarter owns the ICE transport's _recv/_send and swaps its connection."""
    init = inspect.getsource(RTCIceTransport.__init__)
    assert "self._recv = self._connection.recv" in init
    assert "self._send = self._connection.send" in init
    assert "self.__monitor_task" in init
    assert callable(RTCIceTransport._monitor)
    assert callable(RTCIceTransport._RTCIceTransport__setState)  # type: ignore[attr-defined]
    stop = inspect.getsource(RTCIceTransport.stop)
    assert stop.index('self.__setState("closed")') < stop.index("self._connection.close()")
    assert "self.transport._recv()" in inspect.getsource(RTCDtlsTransport._recv_next)
    assert "self.transport._send(data)" in inspect.getsource(RTCDtlsTransport._write_ssl)
    assert "self.transport._send(data)" in inspect.getsource(RTCDtlsTransport._send_rtp)
    assert "self._connection = Connection(" in inspect.getsource(
        aiortc.rtcicetransport.RTCIceGatherer.__init__
    )
    assert "ConnectionError" in inspect.getsource(RTCDtlsTransport._RTCDtlsTransport__run)  # type: ignore[attr-defined]


def test_fence_ice_restart_monitor_and_gatherer() -> None:
    """IceRestarter._swap restarts aiortc's monitor and re-points the gatherer.

    ``_monitor`` must read ``self._connection`` on each event (not a connection it
    captured), so a monitor started after the swap watches the new connection;
    ``stop`` closes ``self._connection`` and only then awaits ``__monitor_task`` (the
    restarted monitor ends with it); ``__setState`` takes the new state; and the next
    offer or answer reads the local ICE credentials and candidates from the gatherer's
    ``_connection``, which ``prepare`` replaces.
    """
    monitor = RTCIceTransport._monitor
    assert inspect.iscoroutinefunction(monitor) and _params(monitor) == ["self"]
    assert "await self._connection.get_event()" in inspect.getsource(monitor)
    assert _params(aioice.Connection.get_event) == ["self"]
    stop = inspect.getsource(RTCIceTransport.stop)
    assert stop.index("self._connection.close()") < stop.index("await self.__monitor_task")
    assert _params(RTCIceTransport._RTCIceTransport__setState) == ["self", "state"]  # type: ignore[attr-defined]
    assert isinstance(inspect.getattr_static(RTCIceTransport, "iceGatherer"), property)
    gatherer = aiortc.rtcicetransport.RTCIceGatherer
    params = inspect.getsource(gatherer.getLocalParameters)
    assert "self._connection.local_username" in params
    assert "self._connection.local_password" in params
    assert "self._connection.local_candidates" in inspect.getsource(gatherer.getLocalCandidates)
    assert inspect.iscoroutinefunction(aioice.Connection.recv)
    assert inspect.iscoroutinefunction(aioice.Connection.send)
    assert _params(aioice.Connection.recv) == ["self"]
    assert _params(aioice.Connection.send) == ["self", "data"]


async def test_restarter_is_in_place_before_the_first_connect() -> None:
    """A read left pending on the first connection would die with it (issue 17)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio")
        restarter = hooks.configure_ice(pc, IceGatheringSettings(relay_only=True))
        ice = pc.getTransceivers()[0].receiver.transport.transport
        assert ice._recv == restarter._recv and ice._send == restarter._send
        assert hooks.ice_restarter(pc) is restarter
        with pytest.raises(RuntimeError, match="already configured"):
            hooks.configure_ice(pc, IceGatheringSettings())
        assert restarter.settings.relay_only
    finally:
        await pc.close()


async def test_a_peer_check_resends_our_check_towards_it_once() -> None:
    """install_triggered_checks: the in-progress check to that address goes out again now."""
    connection = aioice.Connection(ice_controlling=False)
    connection.remote_username, connection.remote_password = "peer", "peer-password-1234567890"
    hooks.install_triggered_checks(connection)

    class Protocol:
        local_candidate = aioice.Candidate(
            foundation="f",
            component=1,
            transport="udp",
            priority=1,
            host="127.0.0.1",
            port=1,
            type="host",
        )

        def __init__(self) -> None:
            self.transactions: dict[bytes, aioice.stun.Transaction] = {}
            self.sent: list[tuple[aioice.stun.Message, tuple[str, int]]] = []

        def send_stun(self, message: aioice.stun.Message, addr: tuple[str, int]) -> None:
            self.sent.append((message, addr))

        async def request(self, *args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(3600)  # our own new checks stay in progress

    protocol = Protocol()
    peer, other = ("127.0.0.2", 5000), ("127.0.0.3", 5000)
    ours = aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST)
    unrelated = aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST)
    protocol.transactions[ours.transaction_id] = aioice.stun.Transaction(ours, peer, protocol)
    protocol.transactions[unrelated.transaction_id] = aioice.stun.Transaction(
        unrelated, other, protocol
    )
    check = aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST)
    check.attributes["PRIORITY"] = 1
    try:
        connection.check_incoming(check, peer, protocol)
        connection.check_incoming(check, peer, protocol)
        assert protocol.sent == [(ours, peer)]  # once, and only towards the checking peer
    finally:
        await connection.close()


# ====================================================================== hook behaviour


def test_use_host_addresses_patches_and_restores() -> None:
    try:
        hooks.use_host_addresses(["127.0.0.1", "127.0.0.2"])
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == [
            "127.0.0.1",
            "127.0.0.2",
        ]
    finally:
        hooks.use_host_addresses(None)
    assert aioice.ice.get_host_addresses is hooks._ORIGINAL_GET_HOST_ADDRESSES


async def test_port_range_binds_host_candidates_in_range_and_restores() -> None:
    hooks.use_host_addresses(["127.0.0.1"])
    hooks.use_port_range((40100, 40103))
    connections = [aioice.Connection(ice_controlling=True) for _ in range(5)]
    try:
        for connection in connections[:4]:
            await connection.gather_candidates()
        ports = sorted(c.port for conn in connections[:4] for c in conn.local_candidates)
        assert ports == [40100, 40101, 40102, 40103]  # every port once, none outside
        await connections[4].gather_candidates()  # the range is full: aioice logs and skips
        assert connections[4].local_candidates == []
    finally:
        hooks.use_port_range(None)
        hooks.use_host_addresses(None)
        for connection in connections:
            await connection.close()
    assert aioice.ice.asyncio is asyncio


def _is_te(codec: Any) -> bool:
    return bool(codec.mimeType.lower() == "audio/telephone-event")


async def test_telephone_event_registration_and_clock_rate_fix() -> None:
    hooks.register_telephone_event()
    hooks.register_telephone_event()  # idempotent
    table = aiortc.codecs.CODECS["audio"]
    events = [c for c in table if _is_te(c)]
    assert sorted((c.clockRate, c.payloadType) for c in events) == [(8000, 126), (48000, 110)]
    assert not _is_te(table[0])
    assert aiortc.rtcpeerconnection.filter_preferred_codecs is hooks._filter_preferred_codecs

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("audio", direction="sendrecv")
        caps = RTCRtpSender.getCapabilities("audio").codecs
        transceiver.setCodecPreferences(
            [c for c in caps if not _is_te(c)] + [c for c in caps if _is_te(c)]
        )
        offer = await pc.createOffer()
        m_line = next(line for line in offer.sdp.splitlines() if line.startswith("m=audio"))
        pts = m_line.split()[3:]
        assert len(pts) == len(set(pts)), m_line  # the original filter gave "110 110"
        assert pts[-2:] == ["110", "126"]
    finally:
        await pc.close()


def test_filter_never_puts_telephone_event_first() -> None:
    te = RTCRtpCodecParameters("audio/telephone-event", clockRate=8000, payloadType=126)
    pcmu = RTCRtpCodecParameters("audio/PCMU", clockRate=8000, payloadType=0)
    assert hooks._filter_preferred_codecs([te, pcmu], []) == [pcmu, te]
    assert hooks._filter_preferred_codecs([te], []) == []


def test_transceiver_codecs_converts_to_codec_info() -> None:
    class FakeTransceiver:
        _codecs = [
            RTCRtpCodecParameters("audio/opus", clockRate=48000, channels=2, payloadType=96),
            RTCRtpCodecParameters(
                "audio/telephone-event", clockRate=48000, payloadType=110, parameters={"0-15": None}
            ),
        ]

    assert hooks.transceiver_codecs(FakeTransceiver()) == [
        CodecInfo(96, "opus", 48000, 2, {}),
        CodecInfo(110, "telephone-event", 48000, 1, {"0-15": ""}),
    ]


async def test_selected_candidate_pair_is_none_before_connecting() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio")
        assert hooks.selected_candidate_pair(pc) is None
    finally:
        await pc.close()


# ---------------------------------------------------------------- DTMF send and receive shims


class FakeTransport:
    """Stands in for RTCDtlsTransport: records plaintext RTP/RTCP handed to _send_rtp."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.append(data)


class FakeSender:
    def __init__(self, ssrc: int) -> None:
        self.transport = FakeTransport()
        self._ssrc = ssrc


class FakeReceiver:
    def __init__(self) -> None:
        self.got: list[RtpPacket] = []

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.got.append(packet)


def _audio_packet(seq: int, ts: int, *, pt: int = 96, ssrc: int = 1234) -> bytes:
    packet = RtpPacket(payload_type=pt, marker=1, sequence_number=seq, timestamp=ts, ssrc=ssrc)
    packet.payload = b"\x01\x02\x03\x04\x05"
    return bytes(packet.serialize())


async def _run_sender(
    tones: str, *, packets: int, duration_ms: int = 100, gap_ms: int = 70
) -> tuple[FakeSender, list[RtpPacket], asyncio.Future[None]]:
    sender = FakeSender(ssrc=1234)
    dtmf = hooks.DtmfSender(sender)
    dtmf.configure(110, 48000)
    done = dtmf.insert(tones, duration_ms=duration_ms, gap_ms=gap_ms)
    for i in range(packets):
        await sender.transport._send_rtp(_audio_packet(1000 + i, 5000 + 960 * i))
    return sender, [RtpPacket.parse(d) for d in sender.transport.sent], done


async def test_dtmf_sender_rewrites_packets_in_place() -> None:
    _, sent, done = await _run_sender("1", packets=20)
    events = [p for p in sent if p.payload_type == 110]
    assert len(events) == 5 + 2  # 100 ms = 5 frames, plus 2 repeated end packets
    assert [p.sequence_number for p in sent] == list(range(1000, 1020))  # seq untouched
    assert {p.timestamp for p in events} == {5000}
    assert [p.marker for p in events] == [1, 0, 0, 0, 0, 0, 0]
    decoded = [Rfc4733Event.decode(p.payload) for p in events]
    assert all(e is not None and e.event == 1 for e in decoded)
    assert [e.end for e in decoded if e] == [False] * 4 + [True] * 3
    assert [e.duration for e in decoded if e] == [960, 1920, 2880, 3840, 4800, 4800, 4800]
    assert sent[7].payload_type == 96 and sent[7].timestamp == 5000 + 7 * 960
    assert done.done()


async def test_dtmf_sender_ignores_rtcp_and_other_ssrcs() -> None:
    sender = FakeSender(ssrc=1234)
    dtmf = hooks.DtmfSender(sender)
    dtmf.configure(126, 8000)
    dtmf.insert("5")
    rtcp = bytes([0x80, 200]) + bytes(26)
    other = _audio_packet(1, 160, ssrc=999)
    await sender.transport._send_rtp(rtcp)
    await sender.transport._send_rtp(other)
    assert sender.transport.sent == [rtcp, other]
    assert dtmf.tone_buffer == "5"


async def test_dtmf_sender_requires_negotiation() -> None:
    dtmf = hooks.DtmfSender(FakeSender(ssrc=1))
    assert not dtmf.can_insert
    with pytest.raises(RuntimeError):
        dtmf.insert("1")
    dtmf.configure(110, 48000)
    with pytest.raises(ValueError, match="'x'"):
        dtmf.insert("1x")


async def test_receive_shim_decodes_digits_and_substitutes_silence() -> None:
    _, sent, _ = await _run_sender("1234#*0", packets=7 * 11 + 5)
    receiver = FakeReceiver()
    shim = hooks.ReceiveShim(receiver)
    shim.configure([CodecInfo(96, "opus", 48000, 2), CodecInfo(110, "telephone-event", 48000, 1)])
    digits: list[str] = []
    shim.on_dtmf = digits.append
    tapped: list[hooks.RtpTapPacket] = []
    shim.add_tap(tapped.append)
    for packet in sent:
        await receiver._handle_rtp_packet(packet, 0)
    assert digits == list("1234#*0")
    assert len(tapped) == len(sent) and tapped[0].payload_type == 110
    # aiortc only ever sees the audio codec, at the timestamps audio would have had.
    assert {p.payload_type for p in receiver.got} == {96}
    assert [p.sequence_number for p in receiver.got] == [p.sequence_number for p in sent]
    assert [p.timestamp for p in receiver.got][1:] == [5000 + 960 * i for i in range(1, len(sent))]
    assert receiver.got[0].payload == silence_payload("opus")
    assert shim.packets_received == len(sent) and shim.events_received == 7 * 7


async def test_receive_shim_consuming_tap_keeps_packets_from_aiortc() -> None:
    receiver = FakeReceiver()
    shim = hooks.receive_shim(receiver)
    assert hooks.receive_shim(receiver) is shim
    shim.configure([CodecInfo(0, "PCMU", 8000)])
    tapped: list[hooks.RtpTapPacket] = []
    remove = shim.add_tap(tapped.append, consume=True)
    packet = RtpPacket(payload_type=0, sequence_number=7, timestamp=160, ssrc=5, payload=b"x")
    await receiver._handle_rtp_packet(packet, 42)
    assert receiver.got == [] and tapped[0].arrival_time_ms == 42 and tapped[0].payload == b"x"
    remove()
    await receiver._handle_rtp_packet(packet, 43)
    assert receiver.got == [packet] and len(tapped) == 1


# ====================================================================== pure RFC 4733


def test_event_payload_round_trip() -> None:
    event = Rfc4733Event(event=11, end=True, volume=10, duration=7680)
    assert event.encode() == struct.pack("!BBH", 11, 0x80 | 10, 7680)
    assert Rfc4733Event.decode(event.encode()) == event
    assert Rfc4733Event.decode(b"\x01") is None


def test_normalize_tones() -> None:
    assert normalize_tones("12a,#") == "12A,#"
    with pytest.raises(ValueError):
        normalize_tones("w")


def test_scheduler_gap_pause_and_tone_buffer() -> None:
    scheduler = ToneScheduler(8000)
    scheduler.insert("1,2", duration_ms=40, gap_ms=40)
    assert scheduler.tone_buffer == "1,2"
    plan = [scheduler.next_packet(160 * i) for i in range(2 + 2 + 2 + 100 + 4 + 2)]
    assert scheduler.tone_buffer == ""
    assert not scheduler.busy
    kinds = ["E" if p else "." for p in plan]
    assert "".join(kinds) == "EEEE.." + "." * 100 + "EEEE.."
    first = [p for p in plan[:4] if p]
    assert {p.timestamp for p in first} == {0}


def test_scheduler_insert_keeps_the_tone_on_the_wire() -> None:
    scheduler = ToneScheduler(48000)
    scheduler.insert("12", duration_ms=100)
    scheduler.next_packet(0)
    scheduler.insert("9")
    assert scheduler.tone_buffer == "9"
    packets = [scheduler.next_packet(960 * i) for i in range(1, 30)]
    events = [Rfc4733Event.decode(p.payload) for p in packets if p]
    assert [e.event for e in events if e] == [1] * 6 + [9] * 7


def test_scheduler_clamps_duration_to_the_16_bit_field() -> None:
    scheduler = ToneScheduler(48000)
    scheduler.insert("1", duration_ms=6000)
    packets = [scheduler.next_packet(0) for _ in range(80)]
    durations = [e.duration for p in packets if p if (e := Rfc4733Event.decode(p.payload))]
    assert max(durations) <= 0xFFFF and len(durations) == 68 + 2


def test_rewrite_rtp_keeps_csrc_and_extension() -> None:
    header = bytes([0x80 | 0x10 | 0x20 | 1, 0x80 | 96]) + struct.pack("!HLL", 7, 1000, 42)
    csrc = struct.pack("!L", 77)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x10\xaa\x00\x00"
    data = header + csrc + extension + b"audio" + b"\x00\x00\x03"
    out = rewrite_rtp(data, payload_type=110, marker=False, timestamp=500, payload=b"EVNT")
    assert out[0] == 0x80 | 0x10 | 1  # padding bit cleared
    assert out[1] == 110
    assert out[2:4] == data[2:4] and out[8:12] == data[8:12]
    assert int.from_bytes(out[4:8], "big") == 500
    assert out[12:24] == csrc + extension and out[24:] == b"EVNT"
    assert rtp_ssrc(out) == 42 and not is_rtcp(out) and is_rtcp(bytes([0x80, 201, 0, 1]))


def test_event_detector_reports_each_event_once() -> None:
    detector = EventDetector()
    one = Rfc4733Event(1, False, 10, 160).encode()
    assert detector.feed(1, 100, one) == "1"
    assert detector.feed(1, 100, one) is None
    assert detector.feed(1, 900, one) == "1"
    assert detector.feed(1, 1700, Rfc4733Event(16, False, 10, 160).encode()) is None


def test_audio_timeline_interpolates_across_wrap() -> None:
    timeline = AudioTimeline()
    assert timeline.substitute_timestamp(5, 160, fallback=99) == 99
    timeline.audio(65535, 0xFFFFFF00)
    assert timeline.substitute_timestamp(1, 0x100, fallback=0) == 0x100


async def test_receive_shim_audio_only_taps_get_codec_silence_for_events() -> None:
    _, sent, _ = await _run_sender("5", packets=12)
    receiver = FakeReceiver()
    shim = hooks.ReceiveShim(receiver)
    shim.configure([CodecInfo(96, "opus", 48000, 2), CodecInfo(110, "telephone-event", 48000, 1)])
    raw: list[hooks.RtpTapPacket] = []
    audio: list[hooks.RtpTapPacket] = []
    shim.add_tap(raw.append)
    shim.add_tap(audio.append, consume=True, audio_only=True)
    unknown = RtpPacket(payload_type=77, sequence_number=2000, timestamp=1, ssrc=1234, payload=b"?")
    for packet in [*sent, unknown]:
        await receiver._handle_rtp_packet(packet, 0)
    assert receiver.got == []  # consumed
    assert {p.payload_type for p in raw} == {96, 110, 77}
    assert {p.payload_type for p in audio} == {96}  # events as opus silence, unknown left out
    assert [p.timestamp for p in audio] == [5000 + 960 * i for i in range(len(sent))]
    assert audio[0].payload == silence_payload("opus")


async def test_payload_type_follows_the_packet_track() -> None:
    sender = FakeSender(ssrc=1234)
    track = type("Track", (), {"payload_type": 0})()
    sender.track = track  # type: ignore[attr-defined]
    path = hooks.send_path(sender)
    assert hooks.send_path(sender) is path  # idempotent: wrapped once
    rtcp = bytes([0x80, 200]) + bytes(26)
    await sender.transport._send_rtp(_audio_packet(1, 0))
    await sender.transport._send_rtp(_audio_packet(2, 0, ssrc=999))
    await sender.transport._send_rtp(rtcp)
    track.payload_type = None  # type: ignore[attr-defined]
    await sender.transport._send_rtp(_audio_packet(3, 0))
    first, other, control, plain = sender.transport.sent
    assert first[1] == 0x80 | 0  # marker kept, PT 96 -> 0
    assert other[1] == 0x80 | 96 and control == rtcp and plain[1] == 0x80 | 96


async def test_dtmf_follows_the_clock_of_the_forwarded_codec() -> None:
    sender = FakeSender(ssrc=1234)
    dtmf = hooks.DtmfSender(sender)
    codecs = [
        CodecInfo(96, "opus", 48000, 2),
        CodecInfo(0, "PCMU", 8000),
        CodecInfo(110, "telephone-event", 48000),
        CodecInfo(126, "telephone-event", 8000),
    ]
    dtmf.configure(110, 48000, codecs=codecs)
    done = dtmf.insert("1", duration_ms=100, gap_ms=40)
    for i in range(12):  # PCMU packets go out, not Opus
        await sender.transport._send_rtp(_audio_packet(10 + i, 160 * i, pt=0))
    events = [RtpPacket.parse(d) for d in sender.transport.sent if d[1] & 0x7F == 126]
    assert len(events) == 5 + 2
    decoded = [Rfc4733Event.decode(p.payload) for p in events]
    assert [e.duration for e in decoded if e][:5] == [160, 320, 480, 640, 800]  # 8 kHz units
    assert done.done()


async def test_dtmf_gives_up_when_no_packets_carry_the_tones() -> None:
    dtmf = hooks.DtmfSender(FakeSender(ssrc=1))
    dtmf.configure(126, 8000)
    loop = asyncio.get_running_loop()
    scheduled: list[float] = []
    original = loop.call_later

    def record(delay: float, *args: Any) -> Any:
        scheduled.append(delay)
        return original(0, *args)  # fire at once: no real waiting in the test

    loop.call_later = record  # type: ignore[method-assign]
    try:
        done = dtmf.insert("12", duration_ms=100, gap_ms=70)
        await asyncio.wait_for(done, 1)
    finally:
        loop.call_later = original  # type: ignore[method-assign]
    assert scheduled[0] == pytest.approx(0.34 + hooks.DTMF_GRACE_S)
    assert dtmf.tone_buffer == ""

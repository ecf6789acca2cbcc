"""Issue 17, SDK side: media through firewalls and NAT, against a real coturn.

Alice is the Device behind the firewall: ``iceTransportPolicy: "relay"`` and a
TURN server (``tests/fixtures_turn.py``: coturn on a loopback address of its
own, relaying to the gateway's host candidates on 127.0.0.1). Bob and the
gateway are on the open network. What is checked: only relay candidates are
offered and used, audio crosses coturn both ways (coturn's own counters say
so), TURN over TCP works when UDP to the server is dropped by iptables,
``turns:`` works, an ICE restart recovers after coturn lost every allocation,
the gathering wait is bounded and a gathering that found nothing is reported.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from typing import Any

import pytest
from calltools import Listener, open_call, recent
from fixtures_turn import Coturn
from recorders import EventLog, eventually

from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import detect_tone
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.core.errors import InvalidArgumentError
from softphone.media.ice_gathering import GatheringFailure, relay_local_preference
from softphone.media.peer_connection import PeerConnection
from softphone.media.rtc_configuration import parse_rtc_configuration, parse_server_url
from softphone.plugins.webrtc import AiortcPeerConnections

ALICE_HZ, BOB_HZ = 1000.0, 1500.0
DeviceFactory = Callable[..., Device]
CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ (\S+) \d+ (\S+) (\d+) typ (\S+)(.*)$", re.MULTILINE)


def candidates(sdp: str | None) -> list[tuple[str, str]]:
    """``(type, rest of line)`` of every ``a=candidate`` line."""
    return [(m.group(4), m.group(5)) for m in CANDIDATE.finditer(sdp or "")]


def relay_only(*servers: dict[str, Any]) -> dict[str, Any]:
    return {"iceServers": list(servers), "iceTransportPolicy": "relay"}


async def relay_call(
    make_device: DeviceFactory, rtc_configuration: dict[str, Any], **alice_options: Any
) -> tuple[Call, Call, MemorySink, Listener]:
    """Alice (relay-only, the options given) calls bob; both calls open."""
    alice = make_device(
        "alice",
        file_input_stream=ToneSource([ALICE_HZ]),
        rtc_configuration=rtc_configuration,
        **alice_options,
    )
    bob = make_device("bob", file_input_stream=ToneSource([BOB_HZ]))
    listener = Listener(bob)
    await bob.register()
    call, bob_call = await open_call(alice, listener)
    alice_heard = MemorySink()
    call.get_remote_stream().add_sink(alice_heard)
    return call, bob_call, alice_heard, listener


async def both_hear(alice_heard: MemorySink, listener: Listener) -> None:
    """Fresh audio both ways: bob hears alice's tone, alice hears bob's."""
    for sink, hz in ((listener.heard, ALICE_HZ), (alice_heard, BOB_HZ)):

        async def tone(sink: MemorySink = sink, hz: float = hz) -> bool:
            return detect_tone(await recent(sink, 0.5), hz)

        for _ in range(20):
            if await tone():
                break
        else:
            raise AssertionError(f"no {hz} Hz tone heard")


async def relayed_pair(call: Call) -> dict[str, Any]:
    assert call.peer_connection is not None
    pair = (await call.peer_connection.get_stats())["selectedCandidatePair"]
    assert pair is not None
    return dict(pair)


def unanswered_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nothing answers on (aioice ignores ICMP, so it waits as for a dead server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ====================================================================== rtcConfiguration


def test_server_urls_parse_like_rfc_7064_and_7065() -> None:
    turn = parse_server_url("turn:turn.example.com")
    assert (turn.scheme, turn.host, turn.port, turn.transport) == (
        "turn",
        "turn.example.com",
        3478,
        None,
    )
    turns = parse_server_url("turns:[::1]:443?transport=tcp")
    assert (turns.scheme, turns.host, turns.port, turns.transport) == ("turns", "::1", 443, "tcp")
    assert parse_server_url("stun:127.0.0.1:19302").port == 19302
    assert parse_server_url("turns:h").port == 5349


@pytest.mark.parametrize(
    "bad",
    [
        "http://turn.example.com",
        "turn:",
        "turn:host:99999",
        "turn:host?transport=sctp",
        "stun:host?transport=udp",
        "turn:host:port",
    ],
)
def test_malformed_server_urls_are_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        parse_server_url(bad)


def test_rtc_configuration_keeps_every_turn_server_with_its_transport() -> None:
    config = parse_rtc_configuration(
        {
            "iceServers": [
                {"urls": "stun:127.0.0.1:3478"},
                {
                    "urls": [
                        "turn:127.0.0.1:3478?transport=udp",
                        "turn:127.0.0.1:3478?transport=tcp",
                        "turns:127.0.0.1:5349",
                        "turns:127.0.0.1:5349?transport=udp",
                        "stuns:127.0.0.1:5349",
                    ],
                    "username": "u",
                    "credential": "p",
                },
            ],
            "iceTransportPolicy": "relay",
            "bundlePolicy": "max-bundle",  # accepted and ignored, as browsers do
        }
    )
    assert config.relay_only and config.stun_server == ("127.0.0.1", 3478)
    assert [(t.transport, t.tls, t.relay_protocol) for t in config.turn_servers] == [
        ("udp", False, "udp"),
        ("tcp", False, "tcp"),
        ("tcp", True, "tls"),
    ]
    assert config.skipped_urls == ("turns:127.0.0.1:5349?transport=udp", "stuns:127.0.0.1:5349")
    assert parse_rtc_configuration(None).ice_transport_policy == "all"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"iceTransportPolicy": "bogus"}, "iceTransportPolicy must be 'all' or 'relay'"),
        ({"iceServers": "turn:127.0.0.1"}, "iceServers must be a list"),
        ({"iceServers": ["turn:127.0.0.1"]}, "must be a dict"),
        ({"iceServers": [{"urls": []}]}, "needs urls"),
        ({"iceServers": [{"urls": "turn:127.0.0.1"}]}, "username and credential"),
        (
            {
                "iceServers": [
                    {"urls": "turn:h", "username": "u", "credential": "p", "credentialType": "x"}
                ]
            },
            "credentialType",
        ),
    ],
)
def test_invalid_rtc_configuration_is_a_clear_error(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_rtc_configuration(config)
    with pytest.raises(ValueError, match=re.escape(message)):
        AiortcPeerConnections().softphone_create_peer_connection(config, options=None)


def test_relay_candidates_rank_udp_over_tcp_over_tls() -> None:
    prefs = [relay_local_preference(p) for p in ("udp", "tcp", "tls")]
    assert prefs == sorted(prefs, reverse=True) and all(0 <= p <= 0xFFFF for p in prefs)
    assert relay_local_preference("udp", 0) > relay_local_preference("udp", 1)


async def test_an_unknown_policy_is_refused_before_anything_is_sent(
    make_device: DeviceFactory,
) -> None:
    with pytest.raises(InvalidArgumentError, match="iceTransportPolicy must be 'all' or 'relay'"):
        make_device("alice", rtc_configuration={"iceServers": [], "iceTransportPolicy": "bogus"})
    alice = make_device("alice", file_input_stream=ToneSource([ALICE_HZ]))
    bob = make_device("bob")
    listener = Listener(bob)
    await bob.register()
    with pytest.raises(InvalidArgumentError, match="bogus"):
        await alice.connect(
            params={"To": "client:bob"}, rtc_configuration={"iceTransportPolicy": "bogus"}
        )
    with pytest.raises(InvalidArgumentError, match="username"):  # TURN without credentials
        await alice.connect(rtc_configuration={"iceServers": [{"urls": "turn:127.0.0.1"}]})
    assert alice.active_call is None and listener.calls == []  # no invite went out


# ====================================================================== gathering


@pytest.mark.parametrize("policy", ["all", "relay"])
async def test_gathering_waits_only_so_long_for_an_unreachable_turn_server(
    loopback_media: None, policy: str
) -> None:
    url = f"turn:127.0.0.1:{unanswered_udp_port()}"
    failures: list[GatheringFailure] = []
    pc = PeerConnection(
        ice_servers=[{"urls": url, "username": "u", "credential": "p"}],
        ice_transport_policy=policy,
        ice_gathering_timeout=0.5,
    )
    pc.on_ice_gathering_failure = failures.append
    try:
        sdp = await pc.create_offer(ToneSource([ALICE_HZ]))
        report = pc.ice_gathering
        assert report is not None and report.timed_out == [url] and report.relays == {}
        if policy == "all":  # the host candidate goes out without the relay
            assert [t for t, _ in candidates(sdp)] == ["host"]
            assert report.failure is None and failures == []
        else:  # nothing usable: the JS SDK's IceGatheringFailed, reason "timeout"
            assert candidates(sdp) == []
            assert report.failure == "timeout" and failures == ["timeout"]
    finally:
        await pc.close()


async def test_static_user_credentials_and_a_refused_allocation(
    loopback_media: None, coturn_static_user: Coturn
) -> None:
    server = coturn_static_user.ice_server("udp")
    good = PeerConnection(ice_servers=[server], ice_transport_policy="relay")
    bad = PeerConnection(
        ice_servers=[{**server, "credential": "wrong"}], ice_transport_policy="relay"
    )
    failures: list[GatheringFailure] = []
    bad.on_ice_gathering_failure = failures.append
    try:
        assert [t for t, _ in candidates(await good.create_offer(None))] == ["relay"]
        assert candidates(await bad.create_offer(None)) == []
        report = bad.ice_gathering
        assert report is not None and "401" in report.failed[server["urls"][0]]
        assert report.failure == "none" and failures == ["none"]
    finally:
        await good.close()
        await bad.close()


async def test_turns_needs_a_trusted_certificate(loopback_media: None, coturn: Coturn) -> None:
    untrusted = PeerConnection(ice_servers=[coturn.ice_server("tls")], ice_transport_policy="relay")
    try:
        assert candidates(await untrusted.create_offer(None)) == []
        report = untrusted.ice_gathering
        assert report is not None
        assert "CERTIFICATE_VERIFY_FAILED" in report.failed[coturn.url("tls")]
    finally:
        await untrusted.close()


async def test_closing_after_the_turn_server_died_does_not_hang(
    loopback_media: None, coturn: Coturn
) -> None:
    """aioice retransmits the allocation's deletion for 63.5 s to a dead server; we give up."""
    a = PeerConnection(ice_servers=[coturn.ice_server("udp")], ice_transport_policy="relay")
    b = PeerConnection(ice_servers=[])
    heard: list[int] = []

    class Counter:
        def write(self, pcm: Any) -> None:
            heard.append(len(pcm))

        def close(self) -> None:
            pass

    a.set_remote_sink(Counter())
    try:
        offer = await a.create_offer(ToneSource([ALICE_HZ]))
        await a.apply_answer(await b.create_answer(offer, ToneSource([BOB_HZ])))
        await eventually(lambda: len(heard) > 25)  # media flows through the relay
        coturn.kill()
        async with asyncio.timeout(10):  # a hang guard: 1 s of patience, then give up
            await a.close()
        assert a.connection_state == "closed"
    finally:
        await a.close()
        await b.close()


# ====================================================================== calls through coturn


async def test_relay_only_device_offers_only_relay_candidates_and_talks_through_coturn(
    make_device: DeviceFactory, coturn: Coturn
) -> None:
    call, _, alice_heard, listener = await relay_call(
        make_device, relay_only(coturn.ice_server("udp"))
    )
    assert call.peer_connection is not None
    offered = candidates(call.peer_connection.local_sdp)
    assert offered and all(kind == "relay" for kind, _ in offered)
    assert all("raddr 0.0.0.0 rport 9" in rest for _, rest in offered)  # no host address leaks
    await both_hear(alice_heard, listener)
    pair = await relayed_pair(call)
    assert pair["localCandidateType"] == "relay" and pair["relayProtocol"] == "udp"
    assert pair["localAddress"] == coturn.host
    await recent(alice_heard, 2.0)  # two more seconds of audio through the relay
    call.disconnect()
    await eventually(lambda: coturn.peer_usage() != [], timeout=10)  # logged when it closes
    (usage,) = coturn.peer_usage()
    assert usage.packets_from_peer >= 100 and usage.packets_to_peer >= 100


async def test_turn_over_tcp_when_udp_to_the_client_is_blocked(
    make_device: DeviceFactory, coturn: Coturn
) -> None:
    coturn.block_udp()
    call, _, alice_heard, listener = await relay_call(
        make_device, relay_only(coturn.ice_server("udp", "tcp"))
    )
    await both_hear(alice_heard, listener)
    pair = await relayed_pair(call)
    assert pair["localCandidateType"] == "relay" and pair["relayProtocol"] == "tcp"
    assert call.peer_connection is not None
    report = call.peer_connection.ice_gathering
    assert report is not None
    assert report.timed_out == [coturn.url("udp")]
    assert report.relays == {coturn.url("tcp"): "tcp"}
    assert coturn.blocked_udp_packets() > 0  # TURN over UDP was tried, and dropped
    call.disconnect()


async def test_turn_over_tls(make_device: DeviceFactory, coturn: Coturn) -> None:
    call, _, alice_heard, listener = await relay_call(
        make_device,
        relay_only(coturn.ice_server("tls")),
        ssl_context=coturn.client_ssl_context(),  # the same option that verifies wss://
    )
    await both_hear(alice_heard, listener)
    pair = await relayed_pair(call)
    assert pair["localCandidateType"] == "relay" and pair["relayProtocol"] == "tls"
    call.disconnect()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_ice_restart_over_turn_recovers_after_coturn_lost_every_allocation(
    make_device: DeviceFactory, coturn: Coturn, transport: str
) -> None:
    call, bob_call, alice_heard, listener = await relay_call(
        make_device,
        relay_only(coturn.ice_server(transport)),  # type: ignore[arg-type]
    )
    await both_hear(alice_heard, listener)
    log = EventLog(call, "reconnecting", "reconnected", "disconnect", "error")
    bob_log = EventLog(bob_call, "reconnecting", "disconnect")
    first = await relayed_pair(call)
    await coturn.restart()  # SIGKILL: the allocation (and a TCP link) is gone for good
    (error,) = await log.wait_for("reconnecting", timeout=15)
    assert error.code == 53405
    await log.wait_for("reconnected", timeout=30)
    await both_hear(alice_heard, listener)
    assert call.status() == "open" and call.ice_restarts >= 1
    assert log.count("disconnect") == 0 and log.count("error") == 0
    assert bob_call.status() == "open" and bob_log.names() == []
    assert call.peer_connection is not None
    restart_offer = candidates(call.peer_connection.local_sdp)
    assert restart_offer and all(kind == "relay" for kind, _ in restart_offer)  # policy kept
    second = await relayed_pair(call)
    assert second["localCandidateType"] == "relay" and second["localPort"] != first["localPort"]
    call.disconnect()


async def test_relay_only_call_without_a_reachable_turn_server_warns_then_recovers(
    make_device: DeviceFactory, coturn: Coturn
) -> None:
    """Nothing gathered (UDP to the TURN server dropped): the JS SDK's gathering failure.

    The offer goes out without candidates once the gathering bound runs out, the
    Call warns ``ice-gathering-state`` (``timeout``), opens, finds no media and
    restarts ICE; when the network lets TURN through again, a restart gathers a
    relay and the call gets its audio, DTLS included (it never ran before).
    """
    coturn.block_udp()
    alice = make_device(
        "alice",
        file_input_stream=ToneSource([ALICE_HZ]),
        rtc_configuration=relay_only(coturn.ice_server("udp")),
    )
    bob = make_device("bob", file_input_stream=ToneSource([BOB_HZ]))
    listener = Listener(bob)
    await bob.register()
    call = await alice.connect(params={"To": "client:bob"})
    log = EventLog(call, "warning", "accept", "reconnecting", "reconnected", "error")
    await log.wait_for("warning", timeout=10)
    assert log.args("warning")[0] == ("ice-gathering-state", {"reason": "timeout"})
    await log.wait_for("accept", timeout=15)
    (error,) = await log.wait_for("reconnecting", timeout=15)
    assert error.code == 53405
    coturn.unblock_udp()
    await log.wait_for("reconnected", timeout=30)
    alice_heard = MemorySink()
    call.get_remote_stream().add_sink(alice_heard)
    await both_hear(alice_heard, listener)
    assert log.count("error") == 0
    call.disconnect()

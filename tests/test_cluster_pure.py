"""The cluster's pure parts: envelopes, the link's SDP, presence keys, the stand-in client."""

from __future__ import annotations

import pytest

from softphone.gateway.cluster import directory, envelope
from softphone.gateway.cluster.link_sdp import only_codec
from softphone.gateway.cluster.relayed_client import RelayedClient
from softphone.gateway.cluster.remote_client import RemoteClient
from softphone.gateway.presence import Presence
from softphone.media.sdp import parse_audio_codecs
from softphone.signaling.codes import DECLINE, TEMPORARILY_UNAVAILABLE
from softphone.signaling.messages import (
    S2C,
    Ack,
    Answer,
    CallMessage,
    Cancel,
    Hangup,
    Invite,
    Reject,
    Ringing,
    decode,
    encode,
)

pytestmark = pytest.mark.pure

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 96 0 101 126",
        "c=IN IP4 0.0.0.0",
        "a=rtpmap:96 opus/48000/2",
        "a=fmtp:96 useinbandfec=1",
        "a=rtcp-fb:96 transport-cc",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        "a=sendrecv",
        "",
    ]
)


# -- envelopes ---------------------------------------------------------------------------
def test_ring_and_events_round_trip() -> None:
    ring = envelope.Ring(
        link="LK1",
        sender="gw-a",
        account_sid="AC1",
        identity="bob",
        sdp=OFFER,
        parameters={"CallSid": "CA1", "From": "client:alice"},
    )
    assert envelope.decode(envelope.encode(ring)) == ring
    event = envelope.LegEvent(
        link="LK1", sender="gw-b", kind="hangup", error={"code": 31005, "message": "x"}
    )
    assert envelope.decode(envelope.encode(event).encode()) == event


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1]",
        '{"v":2,"type":"ring"}',
        '{"v":1,"type":"mystery"}',
        '{"v":1,"type":"event","link":"L","sender":"g","kind":"explode"}',
        '{"v":1,"type":"event","link":"L"}',
        '{"v":1,"type":"ring","link":"L","sender":"g","account_sid":"A","identity":"b",'
        '"sdp":"x","parameters":[]}',
        '{"v":1,"type":"ring","link":"L","sender":"g","account_sid":"A","identity":"b",'
        '"sdp":"x","parameters":{},"evil":1}',
        '{"v":1,"type":"attach","link":"L","sender":"g","callsid":"CA","token":7,'
        '"account_sid":"A","identity":"b","hold_s":3}',
        '{"v":1,"type":"attach","link":"L","sender":"g","callsid":"CA","token":"t",'
        '"account_sid":"A","identity":"b","hold_s":"long"}',
        '{"v":1,"type":"relay","link":"L","sender":"g","frame":{"type":"hangup"}}',
    ],
)
def test_foreign_frames_are_refused(text: str) -> None:
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode(text)


def test_router_frames_become_link_events() -> None:
    def kind(message: object) -> str | None:
        event = envelope.leg_event("LK", "gw", message)  # type: ignore[arg-type]
        return None if event is None else event.kind

    assert kind(Answer(callsid="CA", sdp="v=0")) == "answer"
    assert kind(Answer(callsid="CA", reconnect="RT")) is None  # a connected callee's answer
    assert kind(Cancel(callsid="CA")) == "hangup"
    assert kind(Hangup(callsid="CA")) == "hangup"
    assert kind(Hangup(callsid="CA", error={"code": DECLINE, "message": "no"})) == "reject"
    assert kind(Ringing(callsid="CA")) is None
    assert kind(Ack(acktype="message", callsid="CA", voiceeventsid="KX")) is None
    failed = envelope.leg_event(
        "LK", "gw", Hangup(error={"code": TEMPORARILY_UNAVAILABLE, "message": "No answer"})
    )
    assert failed is not None and failed.error == {
        "code": TEMPORARILY_UNAVAILABLE,
        "message": "No answer",
    }


def test_link_events_become_client_frames() -> None:
    def frame(kind: envelope.EventKind, **fields: object) -> object:
        event = envelope.LegEvent(link="LK", sender="gw", kind=kind, **fields)  # type: ignore[arg-type]
        return envelope.client_frame(event, "CA9")

    assert frame("answer", sdp="v=0") == Answer(callsid="CA9", sdp="v=0")
    assert frame("reject") == Reject(callsid="CA9")
    assert frame("hangup") == Hangup(callsid="CA9")
    message = CallMessage(
        callsid="CA1",
        content={"a": 1},
        contenttype="application/json",
        messagetype="user-defined-message",
        voiceeventsid="KX1",
    )
    event = envelope.leg_event("LK", "gw", message)
    assert event is not None
    assert envelope.client_frame(event, "CA9") == CallMessage(
        callsid="CA9",
        content={"a": 1},
        contenttype="application/json",
        messagetype="user-defined-message",
        voiceeventsid="KX1",
    )


def test_attach_and_relay_round_trip() -> None:
    attach = envelope.Attach(
        link="RL1",
        sender="gw-b",
        callsid="CA1",
        token="RTx",
        account_sid="AC1",
        identity="alice",
        hold_s=30.0,
    )
    assert envelope.decode(envelope.encode(attach)) == attach
    relay = envelope.Relay(link="RL1", sender="gw-a", frame=encode(Hangup(callsid="CA1")))
    assert envelope.decode(envelope.encode(relay)) == relay
    closed = envelope.Relay(link="RL1", sender="gw-b")  # the client's socket closed
    assert envelope.decode(envelope.encode(closed)) == closed


def test_leg_records_keep_a_digest_of_the_token_not_the_token() -> None:
    digest = directory.token_digest("RTsecret")
    assert len(digest) == 64 and "RTsecret" not in digest
    assert digest == directory.token_digest("RTsecret") != directory.token_digest("RTother")
    assert directory.leg_key("CA1") != directory.link_key("CA1", "gw-a")


# -- the stand-in clients ----------------------------------------------------------------
def test_relayed_client_sends_every_frame_to_the_gateway_it_is_on() -> None:
    sent: list[tuple[str, envelope.Envelope]] = []
    client = RelayedClient(
        link="RL1",
        own_gateway="gw-a",
        peer_gateway="gw-b",
        account_sid="AC1",
        identity="alice",
        publish=lambda gateway, item: sent.append((gateway, item)),
        reconnect_timeout_s=30.0,
    )
    assert client.id < 0 and client.token is None and client.reconnect_timeout_s == 30.0
    answer = Answer(callsid="CA1", reconnect="RTnew")
    assert client.send(answer)
    ((gateway, relay),) = sent
    assert gateway == "gw-b" and isinstance(relay, envelope.Relay) and relay.frame is not None
    assert decode(relay.frame, S2C) == answer  # verbatim, for the client's socket
    client.closed = True
    assert not client.send(Hangup(callsid="CA1")) and len(sent) == 1


def test_remote_client_rings_once_then_relays_until_final() -> None:
    sent: list[tuple[str, envelope.Envelope]] = []
    client = RemoteClient(
        link="LK1",
        own_gateway="gw-a",
        peer_gateway="gw-b",
        account_sid="AC1",
        identity="bob",
        publish=lambda gateway, item: sent.append((gateway, item)),
        codec="PCMU",
    )
    assert client.id < 0 and client.token is None and client.account_sid == "AC1"
    invite = Invite(callsid="CA7", sdp=OFFER, parameters={"CallSid": "CA7", "To": "client:bob"})
    assert client.send(invite) and client.callsid == "CA7"
    ((gateway, ring),) = sent
    assert gateway == "gw-b" and isinstance(ring, envelope.Ring)
    assert ring.identity == "bob" and ring.parameters["CallSid"] == "CA7"
    # the media offer carries only the caller's codec (and the DTMF events)
    assert [c.name for c in parse_audio_codecs(ring.sdp)] == [
        "PCMU",
        "telephone-event",
        "telephone-event",
    ]
    assert client.send(Ringing(callsid="CA7")) and len(sent) == 1  # nothing for the far side
    assert client.send(Hangup(callsid="CA7"))
    assert sent[-1][1] == envelope.LegEvent(link="LK1", sender="gw-a", kind="hangup")
    assert client.closed and not client.send(Hangup(callsid="CA7")) and len(sent) == 2


# -- the link's SDP ----------------------------------------------------------------------
def test_only_codec_keeps_that_codec_and_the_events() -> None:
    opus = only_codec(OFFER, "opus")
    assert [c.name for c in parse_audio_codecs(opus)] == [
        "opus",
        "telephone-event",
        "telephone-event",
    ]
    assert "m=audio 9 UDP/TLS/RTP/SAVPF 96 101 126\r\n" in opus
    assert "a=fmtp:96 useinbandfec=1" in opus and "a=rtcp-fb:96 transport-cc" in opus
    pcmu = only_codec(OFFER, "pcmu")
    assert "m=audio 9 UDP/TLS/RTP/SAVPF 0 101 126\r\n" in pcmu
    assert "opus" not in pcmu and "a=fmtp:96" not in pcmu and "a=rtcp-fb:96" not in pcmu
    assert pcmu.endswith("\r\n") and "a=sendrecv" in pcmu


def test_only_codec_leaves_an_offer_without_that_codec_alone() -> None:
    assert only_codec(OFFER, "g722") == OFFER


# -- presence ----------------------------------------------------------------------------
def test_live_gateways_skip_expired_and_own_entries() -> None:
    entries = [(b"gw-b", 110.0), (b"gw-a", 120.0), ("gw-c", 99.0), (b"gw-d", 100.5)]
    assert directory.live_gateways(entries, now=100.0, own="gw-a") == ["gw-b", "gw-d"]
    assert directory.presence_key("AC1", "bob") == "softphone:presence:AC1:bob"
    assert directory.channel("gw-a") == "softphone:gw:gw-a"
    assert directory.refresh_interval(30.0) == 10.0


def test_presence_reports_first_and_last_connection_of_an_address() -> None:
    presence = Presence()
    changes: list[tuple[tuple[str, str], bool]] = []
    presence.on_change = lambda address, present: changes.append((address, present))
    presence.register("AC1", "bob", "conn1")
    presence.register("AC1", "bob", "conn2")
    presence.register("AC1", "bob", "conn1")
    assert changes == [(("AC1", "bob"), True)]
    presence.unregister("AC1", "bob", "conn1")
    assert len(changes) == 1
    presence.unregister("AC1", "bob", "conn2")
    assert changes == [(("AC1", "bob"), True), (("AC1", "bob"), False)]
    assert not presence.unregister("AC1", "bob", "conn2") and len(changes) == 2


# -- the command line --------------------------------------------------------------------
def test_gateway_redis_option_reaches_the_config() -> None:
    from softphone.cli import build_parser
    from softphone.cli_gateway import _gateway_config

    args = build_parser().parse_args(
        ["gateway", "--no-tls", "--redis", "redis://127.0.0.1:6379/0", "--gateway-id", "gw-1"]
    )
    config = _gateway_config(args, None)
    assert config.redis_url == "redis://127.0.0.1:6379/0" and config.gateway_id == "gw-1"
    alone = _gateway_config(build_parser().parse_args(["gateway", "--no-tls"]), None)
    assert alone.redis_url is None


def test_gateway_refuses_a_redis_option_that_is_not_a_url() -> None:
    from softphone.cli import build_parser
    from softphone.cli_gateway import CliError, _gateway_config

    args = build_parser().parse_args(["gateway", "--no-tls", "--redis", "127.0.0.1:6379"])
    with pytest.raises(CliError, match="redis://"):
        _gateway_config(args, None)


def test_redis_option_without_the_redis_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from softphone.cli import build_parser
    from softphone.cli_gateway import CliError, _gateway_config

    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # import fails as if absent
    args = build_parser().parse_args(["gateway", "--no-tls", "--redis", "redis://127.0.0.1/0"])
    with pytest.raises(CliError, match=r"pip install 'softphone\[redis\]'"):
        _gateway_config(args, None)

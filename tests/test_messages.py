"""The wire codec: the official SDK's frames round-trip; garbage gives a typed error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softphone.signaling import messages as m
from softphone.signaling.messages import C2S, S2C, MalformedMessage, decode, encode

pytestmark = pytest.mark.pure

TRANSCRIPT = Path(__file__).resolve().parent / "data" / "jssdk-wire-transcript.jsonl"
"""Frames the official JS SDK 2.x sent and received against Twilio, recorded once."""


def _transcript() -> list[dict[str, object]]:
    return [json.loads(line) for line in TRANSCRIPT.read_text().splitlines() if line.strip()]


def test_every_client_frame_of_the_js_sdk_round_trips_byte_for_byte() -> None:
    frames = [r for r in _transcript() if r["dir"] == "c2s"]
    assert len(frames) > 30
    seen = set()
    for record in frames:
        raw = record["raw"]
        assert isinstance(raw, str)
        message = decode(raw, C2S)
        assert encode(message) == raw
        seen.add(record.get("type") or "heartbeat")
    assert seen >= {
        "listen",
        "register",
        "invite",
        "answer",
        "dtmf",
        "hangup",
        "reject",
        "heartbeat",
    }


def test_every_server_frame_of_the_transcript_round_trips() -> None:
    frames = [r for r in _transcript() if r["dir"] == "s2c" and not r.get("heartbeat")]
    for record in frames:
        message = decode(json.dumps(record["msg"]), S2C)
        assert json.loads(encode(message)) == record["msg"]
        assert not isinstance(message, m.Unknown)


ALL_MESSAGES = [
    (C2S, m.Listen(token="t", browserinfo={"p": "browser"}, reconnect_timeout=0)),
    (C2S, m.Register.presence(True)),
    (C2S, m.Invite(callsid="TJSx", sdp="v=0", twilio={"params": "To=bob"})),
    (C2S, m.Invite(callsid="CA1", sdp="v=0", reconnect="RT", twilio={})),
    (C2S, m.Answer(sdp="v=0", callsid="CA1")),
    (C2S, m.Dtmf(callsid="CA1", dtmf="12w#")),
    (C2S, m.Hangup(callsid="CA1", message="ice failed")),
    (C2S, m.Reject(callsid="CA1")),
    (C2S, m.Reinvite(callsid="CA1", sdp="v=0")),
    (
        C2S,
        m.CallMessage(
            callsid="CA1",
            content={"a": [1, 2]},
            contenttype="application/json",
            messagetype="user-defined-message",
            voiceeventsid="KX1",
        ),
    ),
    (S2C, m.Connected(edge="e", region="r", home="h", token={"identity": "a", "ttl": 10})),
    (S2C, m.Ready()),
    (S2C, m.Offline()),
    (S2C, m.Close()),
    (S2C, m.Invite(callsid="CA1", sdp="v=0", reconnect="RT", parameters={"From": "client:a"})),
    (S2C, m.Ringing(callsid="CA1", sdp="v=0")),
    (S2C, m.Answer(callsid="CA1", sdp="v=0", reconnect="RT")),
    (S2C, m.Hangup(callsid="CA1", error={"code": 31005, "message": "x"})),
    (S2C, m.Cancel(callsid="CA1")),
    (S2C, m.Error.of(31205, "expired", callsid="CA1")),
    (S2C, m.Ack(acktype="message", callsid="CA1", voiceeventsid="KX1")),
    (
        S2C,
        m.CallMessage(
            callsid="CA1",
            content="hi",
            contenttype="text/plain",
            messagetype="user-defined-message",
            voiceeventsid="KX2",
        ),
    ),
]


@pytest.mark.parametrize(
    ("direction", "message"),
    ALL_MESSAGES,
    ids=[f"{d.value}-{m.type_of(x)}" for d, x in ALL_MESSAGES],
)
def test_each_message_type_round_trips(direction: m.Direction, message: m.Message) -> None:
    frame = encode(message)
    envelope = json.loads(frame)
    assert list(envelope) == ["payload", "type", "version"]
    assert envelope["version"] == "1.6"
    assert decode(frame, direction) == message


def test_payload_keys_are_in_js_order_and_unknown_keys_survive() -> None:
    frame = (
        '{"payload":{"sdp":"v=0","callsid":"CA1","future":true},"type":"answer","version":"1.6"}'
    )
    message = decode(frame, C2S)
    assert isinstance(message, m.Answer)
    assert message.extra == {"future": True}
    assert encode(message) == frame


def test_heartbeat() -> None:
    assert decode("\n", S2C) is m.HEARTBEAT_FRAME
    assert encode(m.HEARTBEAT_FRAME) == "\n"


def test_unknown_type_is_kept_not_rejected() -> None:
    message = decode('{"type":"presence","payload":{"x":1}}', S2C)
    assert isinstance(message, m.Unknown) and message.type == "presence"
    assert json.loads(encode(message))["payload"] == {"x": 1}


def test_missing_payload_is_an_empty_object() -> None:
    assert decode('{"type":"ready","version":"1.6"}', S2C) == m.Ready()


@pytest.mark.parametrize(
    ("frame", "direction", "reason"),
    [
        ("{not json", S2C, "not JSON"),
        ("[1,2]", S2C, "not a JSON object"),
        ('{"payload":{}}', S2C, "no string 'type'"),
        ('{"type":"invite","payload":[]}', S2C, "payload is not an object"),
        ('{"type":"invite","payload":{"sdp":"v=0"}}', S2C, "needs 'callsid'"),
        ('{"type":"invite","payload":{"callsid":"CA","sdp":"v=0"}}', C2S, "needs 'twilio'"),
        ('{"type":"cancel","payload":{"callsid":5}}', S2C, "wrong type"),
        ('{"type":"listen","payload":{"token":"t"}}', S2C, "not sent s2c"),
        ('{"type":"ready","payload":{}}', C2S, "not sent c2s"),
        ('{"type":"connected","payload":{"region":true}}', S2C, "wrong type"),
        (b"\x00binary", S2C, "binary"),
        ("[" * 100_000, S2C, "not JSON"),
    ],
)
def test_malformed_frames_raise_a_typed_error(
    frame: str | bytes, direction: m.Direction, reason: str
) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        decode(frame, direction)


def test_accessors() -> None:
    connected = m.Connected(token={"identity": "alice", "ttl": 3598})
    assert connected.identity == "alice" and connected.ttl == 3598.0
    assert m.Connected(token={"ttl": True}).ttl is None
    error = m.Error(error={"code": 31902, "message": "x", "retryAfter": 3})
    assert error.code == 31902 and error.retry_after == 3.0
    assert m.Invite(callsid="x", sdp="y", twilio={}).params == ""
    assert m.Register.presence(False).audio is False

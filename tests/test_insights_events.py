"""The insights records are the JS SDK's, key for key (pure builders, no I/O).

Expected values come from the JS sources (``lib/twilio/eventpublisher.ts``,
``device.ts`` ``_createDefaultPayload``, ``call.ts``) and the behaviour checklist
items named in each test.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from aiortc import RTCIceCandidate

from softphone.core.errors import MediaConnectionError
from softphone.insights import endpoint, events
from softphone.insights.events import CallInfo, Level, MetricsBatcher, SessionInfo

pytestmark = pytest.mark.pure

SESSION = SessionInfo(sdk_version="1.2.3")
NOW = 1_700_000_000.123_9  # 2023-11-14T22:13:20.123Z


# -- envelope -----------------------------------------------------------------------------


def test_envelope_has_the_js_keys_in_the_js_order() -> None:
    body = events.envelope(
        Level.WARNING,
        "group",
        "name",
        {"abc": "xyz"},
        now=NOW,
        metadata={"app_name": "foo", "app_version": "1.2.3"},
    )
    assert body == {
        "group": "group",
        "level": "WARNING",
        "name": "name",
        "payload": {"abc": "xyz"},
        "payload_type": "application/json",
        "private": False,
        "publisher": "twilio-js-sdk",
        "timestamp": "2023-11-14T22:13:20.123Z",
        "publisher_metadata": {"app_name": "foo", "app_version": "1.2.3"},
    }
    assert list(body) == [
        "group",
        "level",
        "name",
        "payload",
        "payload_type",
        "private",
        "publisher",
        "timestamp",
        "publisher_metadata",
    ]


@pytest.mark.parametrize(
    ("level", "expected"),
    [("debug", "DEBUG"), ("info", "INFO"), ("warning", "WARNING"), ("error", "ERROR")],
)
def test_levels_are_upper_cased(level: str, expected: str) -> None:
    assert events.envelope(level, "g", "n", {}, now=0)["level"] == expected


def test_no_app_metadata_is_an_empty_object() -> None:
    """JS ``{app_name: undefined, app_version: undefined}`` stringifies to ``{}``."""
    body = events.envelope("info", "g", "n", {}, now=0, metadata={"app_name": None})
    assert body["publisher_metadata"] == {}
    assert events.envelope("info", "g", "n", {}, now=0)["publisher_metadata"] == {}


def test_metrics_envelopes_carry_a_list() -> None:
    body = events.envelope("info", "g", "n", [{"a": 1}, {"a": 2}], now=0)
    assert body["payload"] == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("seconds", "iso"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (NOW, "2023-11-14T22:13:20.123Z"),
        (1_700_000_000.999_99, "2023-11-14T22:13:20.999Z"),  # truncated, as JS Date holds ms
        (-0.001, "1969-12-31T23:59:59.999Z"),
    ],
)
def test_timestamps_are_js_iso_strings(seconds: float, iso: str) -> None:
    assert events.iso_timestamp(seconds) == iso


@pytest.mark.parametrize("bad", [math.nan, math.inf, 1e20])
def test_invalid_times_raise_like_js(bad: float) -> None:
    with pytest.raises(ValueError):
        events.iso_timestamp(bad)


def test_to_json_writes_what_json_stringify_writes() -> None:
    assert events.to_json({"a": math.nan, "b": [math.inf, 1.5], "c": None}) == (
        b'{"a":null,"b":[null,1.5],"c":null}'
    )

    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    assert events.to_json({"x": Opaque()}) == b'{"x":"opaque"}'  # never raises
    assert json.loads(events.to_json({"é": "ü"})) == {"é": "ü"}


# -- default payload (checklist 16; eventpublisher.js cases) -----------------------------------


def test_default_payload_without_a_call_is_the_checklist_16_default() -> None:
    assert events.default_payload(SESSION, None) == {
        "aggressive_nomination": False,
        "browser_extension": False,
        "dscp": True,
        "ice_restart_enabled": True,
        "platform": "WebRTC",
        "sdk_version": "1.2.3",
    }


def test_default_payload_follows_the_options() -> None:
    session = SessionInfo(sdk_version="9", aggressive_nomination=True, dscp=False)
    payload = events.default_payload(session, None)
    assert payload["aggressive_nomination"] is True and payload["dscp"] is False


@pytest.mark.parametrize(
    ("call_sid", "temp", "expected"),
    [
        (None, None, {}),
        (None, "TJ1234", {"temp_call_sid": "TJ1234"}),
        ("CA1234", None, {"call_sid": "CA1234"}),
        ("CA5678", "TJ5678", {"call_sid": "CA5678", "temp_call_sid": "TJ5678"}),
        ("TJ0001", "TJ0001", {"temp_call_sid": "TJ0001"}),  # a TJ CallSid is temporary
    ],
)
def test_call_ids_in_the_default_payload(
    call_sid: str | None, temp: str | None, expected: dict[str, str]
) -> None:
    session = SessionInfo(sdk_version="1", gateway="xyz", region="abc")
    call = CallInfo(call_sid=call_sid, temp_call_sid=temp, direction="OUTGOING")
    payload = events.default_payload(session, call)
    ids = {k: payload[k] for k in ("call_sid", "temp_call_sid") if k in payload}
    assert ids == expected
    assert payload["direction"] == "OUTGOING"
    assert (payload["gateway"], payload["region"]) == ("xyz", "abc")
    assert list(payload)[-2:] == ["gateway", "region"]


def test_codec_is_reported_once_known() -> None:
    call = CallInfo(call_sid="CA1", direction="INCOMING")
    assert "audio_codec" not in events.default_payload(SESSION, call)
    with_codec = CallInfo(call_sid="CA1", direction="INCOMING", codec="opus")
    assert events.default_payload(SESSION, with_codec)["audio_codec"] == "opus"


def test_a_call_without_any_id_is_not_publishable() -> None:
    assert not CallInfo(direction="OUTGOING").publishable
    assert CallInfo(temp_call_sid="TJx").publishable and CallInfo(call_sid="CAx").publishable


# -- call events ----------------------------------------------------------------------------


def _triple(event: events.InsightsEvent | None) -> tuple[str, str, str, Any]:
    assert event is not None
    return (event.level.value, event.group, event.name, event.payload)


@pytest.mark.parametrize(
    "name",
    [
        "incoming",  # checklist 110
        "ignored-by-local",  # 134
        "rejected-by-local",  # 139
        "disconnected-by-local",
        "disconnected-by-remote",  # 171
        "cancel",  # 169
        "reconnecting",  # 168
        "reconnected",
    ],
)
def test_payload_less_connection_events(name: str) -> None:
    assert _triple(events.connection_event(name)) == ("info", "connection", name, None)


def test_unknown_connection_event_names_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        events.connection_event("outgoing")  # has a payload: use events.outgoing


@pytest.mark.parametrize("reconnect", [False, True])
@pytest.mark.parametrize("preflight", [False, True])
def test_chk_111_outgoing(preflight: bool, reconnect: bool) -> None:
    assert _triple(events.outgoing(preflight=preflight, reconnect=reconnect)) == (
        "info",
        "connection",
        "outgoing",
        {"preflight": preflight, "reconnect": reconnect},
    )


def test_chk_122_127_accepted_and_codec() -> None:
    assert events.accepted("INCOMING").name == "accepted-by-local"
    assert events.accepted("OUTGOING").name == "accepted-by-remote"
    sdp = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n"
        "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;maxaveragebitrate=12000\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
    )
    assert _triple(events.codec_settings(sdp)) == (
        "info",
        "settings",
        "codec",
        {"codec_params": "minptime=10;maxaveragebitrate=12000", "selected_codec": "opus/48000/2"},
    )
    pcmu = "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    assert events.codec_settings(pcmu).payload == {
        "codec_params": "",
        "selected_codec": "PCMU/8000",
    }


def test_chk_138_muted_and_unmuted() -> None:
    assert _triple(events.muted(True))[:3] == ("info", "connection", "muted")
    assert _triple(events.muted(False))[:3] == ("info", "connection", "unmuted")


@pytest.mark.parametrize("early", [False, True])
def test_chk_176_outgoing_ringing(early: bool) -> None:
    assert _triple(events.outgoing_ringing(early)) == (
        "info",
        "connection",
        "outgoing-ringing",
        {"hasEarlyMedia": early},
    )


def test_call_error_and_media_reconnect_error() -> None:
    assert _triple(events.connection_error(31005, "ConnectionError (31005): x")) == (
        "error",
        "connection",
        "error",
        {"code": 31005, "message": "ConnectionError (31005): x"},
    )
    error = MediaConnectionError("Media connection failed.")
    level, group, name, payload = _triple(events.media_connection_error(error))
    assert (level, group, name) == ("warning", "connection", "error")
    assert payload["code"] == 53405
    assert payload["name"] == "ConnectionError"
    assert payload["message"] == "ConnectionError (53405): Media connection failed."
    assert set(payload) == {
        "causes",
        "code",
        "description",
        "explanation",
        "message",
        "name",
        "solutions",
    }
    assert payload["causes"] == error.causes and payload["solutions"] == error.solutions


@pytest.mark.parametrize("score", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(
    "issue",
    [
        "one-way-audio",
        "choppy-audio",
        "dropped-call",
        "audio-latency",
        "noisy-call",
        "echo",
        None,
    ],
)
def test_chk_143_feedback_received(score: int, issue: str | None) -> None:
    event = events.feedback(score, issue)
    expected = (
        {"quality_score": score}
        if issue is None
        else {
            "issue_name": issue,
            "quality_score": score,
        }
    )
    assert _triple(event) == ("info", "feedback", "received", expected)
    assert event.force  # posted even with publishEvents: false


def test_chk_142_feedback_declined() -> None:
    event = events.feedback()
    assert _triple(event) == ("info", "feedback", "received-none", None)
    assert event.force


def test_get_user_media_events() -> None:
    constraints = {"audio": True}
    assert _triple(events.get_user_media_succeeded(constraints)) == (
        "info",
        "get-user-media",
        "succeeded",
        {"data": {"audioConstraints": constraints}},
    )
    failure = {"code": 31208}
    assert _triple(events.get_user_media_failed(constraints, failure, denied=True)) == (
        "error",
        "get-user-media",
        "denied",
        {"data": {"audioConstraints": constraints, "error": failure}},
    )
    assert events.get_user_media_failed(constraints, None, denied=False).name == "failed"


def test_chk_181_183_185_call_messages() -> None:
    assert _triple(
        events.call_message("user-defined-message", "application/json", "KX1", sent=True)
    ) == (
        "info",
        "call-message",
        "user-defined-message",
        {"content_type": "application/json", "event_type": "sent", "voice_event_sid": "KX1"},
    )
    received = events.call_message("user-defined-message", None, "KX2", sent=False)
    assert received.payload == {"event_type": "received", "voice_event_sid": "KX2"}
    assert _triple(events.call_message_error(31210, "bad type", "KX3")) == (
        "error",
        "call-message",
        "error",
        {"code": 31210, "message": "bad type", "voice_event_sid": "KX3"},
    )


# -- Device events ---------------------------------------------------------------------------


def test_device_events() -> None:
    init = events.settings_init(
        media_stream=False, rtc_peer_connection=False, enumerate_devices=True, get_user_media=False
    )
    assert _triple(init) == (
        "info",
        "settings",
        "init",
        {
            "MediaStream": False,
            "RTCPeerConnection": False,
            "enumerateDevices": True,
            "getUserMedia": False,
        },
    )
    assert events.settings_edge("ashburn", None).payload == {"edge": "ashburn"}
    assert events.settings_edge(None, None).payload == {"edge": None}  # JS null || null
    assert events.settings_edge("sydney", "sydney").payload == {
        "edge": "sydney",
        "selected_edge": ["sydney"],
    }
    assert events.settings_edge("a", ("a", "b")).payload == {
        "edge": "a",
        "selected_edge": ["a", "b"],
    }
    # checklist 85, 97, 98
    assert _triple(events.audio_device_change(["mic1"])) == (
        "info",
        "audio",
        "device-change",
        {"lost_active_device_ids": ["mic1"]},
    )
    assert _triple(events.audio_devices_set("speaker", ["default"])) == (
        "info",
        "audio",
        "speaker-devices-set",
        {"audio_device_ids": ["default"]},
    )
    assert events.audio_devices_set("ringtone", []).name == "ringtone-devices-set"
    assert _triple(events.audio_devices_set_failed("speaker", ["x"], "nope")) == (
        "error",
        "audio",
        "speaker-devices-set-failed",
        {"audio_device_ids": ["x"], "message": "nope"},
    )


# -- peer connection states (checklist 157, 158, 196) ---------------------------------------


@pytest.mark.parametrize(
    ("state", "dtls", "level"),
    [
        ("new", None, "debug"),
        ("connecting", None, "debug"),
        ("connected", None, "debug"),
        ("disconnected", None, "debug"),
        ("closed", None, "debug"),
        ("failed", None, "warning"),
        ("failed", "connected", "warning"),
        ("failed", "failed", "error"),
    ],
)
def test_chk_158_pc_connection_state_levels(state: str, dtls: str | None, level: str) -> None:
    assert _triple(events.pc_connection_state(state, dtls)) == (
        level,
        "pc-connection-state",
        state,
        None,
    )


@pytest.mark.parametrize(
    ("state", "level"), [("new", "debug"), ("connected", "debug"), ("failed", "error")]
)
def test_chk_158_dtls_and_ice_connection_state_levels(state: str, level: str) -> None:
    assert _triple(events.dtls_transport_state(state)) == (
        level,
        "dtls-transport-state",
        state,
        None,
    )
    assert _triple(events.ice_connection_state(state)) == (
        level,
        "ice-connection-state",
        state,
        None,
    )


def test_chk_158_gathering_and_signaling_states_are_debug() -> None:
    assert _triple(events.ice_gathering_state("complete")) == (
        "debug",
        "ice-gathering-state",
        "complete",
        None,
    )
    assert _triple(events.signaling_state("stable")) == ("debug", "signaling-state", "stable", None)


@pytest.mark.parametrize("reason", ["none", "timeout"])
def test_chk_196_gathering_failures_are_warnings(reason: str) -> None:
    assert _triple(events.ice_gathering_failure(reason)) == (
        "warning",
        "ice-gathering-state",
        reason,
        None,
    )


def test_chk_159_160_ice_connectivity() -> None:
    assert _triple(events.ice_connectivity_lost("ICE liveliness check failed")) == (
        "warning",
        "network-quality-warning-raised",
        "ice-connectivity-lost",
        {"message": "ICE liveliness check failed"},
    )
    assert _triple(events.ice_connectivity_restored("back")) == (
        "info",
        "network-quality-warning-cleared",
        "ice-connectivity-lost",
        {"message": "back"},
    )


def test_chk_157_candidates_from_aiortc_objects() -> None:
    host = RTCIceCandidate(
        component=1,
        foundation="1",
        ip="127.0.0.1",
        port=5000,
        priority=2130706431,
        protocol="udp",
        type="host",
        sdpMid="0",
    )
    relay = RTCIceCandidate(
        component=1,
        foundation="2",
        ip="10.0.0.9",
        port=6000,
        priority=100,
        protocol="udp",
        type="relay",
        relatedAddress="192.0.2.1",
        relatedPort=5001,
    )
    assert _triple(events.ice_candidate(host)) == (
        "debug",
        "ice-candidate",
        "ice-candidate",
        {
            "candidate_type": "host",
            "deleted": False,
            "ip": "127.0.0.1",
            "is_remote": False,
            "port": 5000,
            "priority": 2130706431,
            "protocol": "udp",
            "related_address": None,
            "related_port": None,
            "tcp_type": None,
            "transport_id": "0",
        },
    )
    level, group, name, payload = _triple(events.selected_ice_candidate_pair(host, relay))
    assert (level, group, name) == ("debug", "ice-candidate", "selected-ice-candidate-pair")
    assert payload["local_candidate"]["is_remote"] is False
    assert payload["remote_candidate"]["is_remote"] is True
    assert payload["remote_candidate"]["related_address"] == "192.0.2.1"
    assert payload["remote_candidate"]["related_port"] == 5001


def test_browser_candidate_lines_give_network_cost() -> None:
    candidate = {
        "candidate": "candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host network-cost 50",
        "type": "host",
        "address": "10.0.0.1",
        "port": 5000,
    }
    payload = events.ice_candidate_payload(candidate)
    assert payload["network-cost"] == 50 and payload["ip"] == "10.0.0.1"
    del candidate["candidate"]
    assert "network-cost" not in events.ice_candidate_payload(candidate)


# -- stats warnings (checklist 189-194) ------------------------------------------------------


def test_chk_189_raised_network_warning() -> None:
    event = events.quality_warning("jitter", "high-jitter", 30, [31.234, 40.005, 12], cleared=False)
    assert _triple(event) == (
        "warning",
        "network-quality-warning-raised",
        "high-jitter",
        {"data": {"threshold": 30, "values": [31.23, 40.01, 12]}},
    )


def test_chk_194_cleared_warnings_are_info() -> None:
    event = events.quality_warning("rtt", "high-rtt", 400, [10, 20], cleared=True)
    assert _triple(event)[:3] == ("info", "network-quality-warning-cleared", "high-rtt")


def test_chk_192_audio_stats_use_the_audio_level_group() -> None:
    raised = events.quality_warning(
        "audioInputLevel", "constant-audio-input-level", 327.67, 12.5, cleared=False
    )
    assert _triple(raised) == (
        "warning",
        "audio-level-warning-raised",
        "constant-audio-input-level",
        {"data": {"threshold": 327.67, "value": 12.5}},
    )
    cleared = events.quality_warning(
        "audioInputLevel", "constant-audio-input-level", 327.67, 400, cleared=True
    )
    assert _triple(cleared)[:2] == ("info", "audio-level-warning-cleared")


def test_constant_output_level_is_always_info_and_input_level_silent_when_muted() -> None:
    output = events.quality_warning(
        "audioOutputLevel", "constant-audio-output-level", 327.67, 1.0, cleared=False
    )
    assert _triple(output)[:2] == ("info", "audio-level-warning-raised")
    assert (
        events.quality_warning(
            "audioInputLevel", "constant-audio-input-level", 327.67, 1.0, cleared=False, muted=True
        )
        is None
    )
    assert events.quality_warning("jitter", "high-jitter", 30, [40], cleared=False, muted=True)


def test_warning_values_follow_js_truthiness() -> None:
    zero = events.quality_warning("bytesReceived", "low-bytes-received", 1, 0, cleared=False)
    assert zero is not None and zero.payload == {"data": {"threshold": 1}}
    empty = events.quality_warning("mos", "low-mos", 3, [], cleared=False)
    assert empty is not None and empty.payload == {"data": {"threshold": 3, "values": []}}
    no_threshold = events.quality_warning(
        "packetsLostFraction", "high-packets-lost-fraction", None, [1.0], cleared=True
    )
    assert no_threshold is not None and no_threshold.payload == {"data": {"values": [1.0]}}
    # JS quirk kept: a non-number in the window is replaced by the whole window
    odd = events.quality_warning("rtt", "high-rtt", 400, [500, None], cleared=False)
    assert odd is not None and odd.payload == {
        "data": {"threshold": 400, "values": [500, [500, None]]}
    }


# -- metrics (checklist 186, 187) --------------------------------------------------------------


SAMPLE: dict[str, Any] = {
    "audioInputLevel": 1234,
    "audioOutputLevel": 2345,
    "bytesReceived": 8000,
    "bytesSent": 8100,
    "codecName": "opus",
    "jitter": 3,
    "mos": 4.2856,
    "packetsLost": 1,
    "packetsLostFraction": 1.9608,
    "packetsReceived": 50,
    "packetsSent": 51,
    "rtt": 15,
    "timestamp": 1_700_000_000_123.9,
    "totals": {
        "bytesReceived": 80000,
        "bytesSent": 81000,
        "packetsLost": 3,
        "packetsLostFraction": 0.6,
        "packetsReceived": 500,
        "packetsSent": 510,
    },
}


def test_chk_186_metric_record_is_format_metric() -> None:
    record = events.metric_record({**SAMPLE, "inputVolume": 0.5, "outputVolume": 0.25})
    assert record == {
        "audio_codec": "opus",
        "audio_level_in": 1234,
        "audio_level_out": 2345,
        "bytes_received": 8000,
        "bytes_sent": 8100,
        "call_volume_input": 0.5,
        "call_volume_output": 0.25,
        "jitter": 3,
        "mos": 4.29,
        "packets_lost": 1,
        "packets_lost_fraction": 1.96,
        "packets_received": 50,
        "rtt": 15,
        "timestamp": "2023-11-14T22:13:20.123Z",
        "total_bytes_received": 80000,
        "total_bytes_sent": 81000,
        "total_packets_lost": 3,
        "total_packets_received": 500,
        "total_packets_sent": 510,
    }
    assert list(record) == sorted(record)  # the JS literal happens to be alphabetical


def test_metric_record_keeps_null_and_falsy_values() -> None:
    sample = {**SAMPLE, "mos": None, "packetsLostFraction": 0, "rtt": None}
    record = events.metric_record({**sample, "inputVolume": 0, "outputVolume": 0})
    assert record["mos"] is None and record["packets_lost_fraction"] == 0 and record["rtt"] is None
    without_rtt = {k: v for k, v in SAMPLE.items() if k != "rtt"}
    assert "rtt" not in events.metric_record(without_rtt)  # JS undefined: left out


def test_metric_record_from_the_sample_object() -> None:
    """Whatever ``RTCSample.to_dict()`` gives (the JS keys) formats without loss."""
    rtc_sample = pytest.importorskip("softphone.core.rtc_sample")
    raw = rtc_sample.RawStats(
        timestamp=1_700_000_001_000,
        codec_name="PCMU",
        rtt=20,
        packets_received=50,
        bytes_received=8000,
    )
    sample = rtc_sample.create_sample(raw, None, [100.0], [200.0]).to_dict()
    record = events.metric_record({**sample, "inputVolume": 0.1, "outputVolume": 0.2})
    assert record["audio_codec"] == "PCMU" and record["packets_received"] == 50
    assert record["timestamp"] == "2023-11-14T22:13:21.000Z"
    assert record["total_bytes_received"] == 8000


def test_invalid_sample_timestamps_raise() -> None:
    with pytest.raises(ValueError):
        events.metric_record({**SAMPLE, "timestamp": math.nan})
    with pytest.raises(ValueError):
        events.metric_record({k: v for k, v in SAMPLE.items() if k != "totals"})


def test_metrics_fields_are_create_metric_payload() -> None:
    fields = events.metrics_fields(
        call_sid="CA1", dscp=True, sdk_version="1.2.3", direction="OUTGOING"
    )
    assert fields == {
        "call_sid": "CA1",
        "dscp": True,
        "sdk_version": "1.2.3",
        "direction": "OUTGOING",
    }
    assert list(events.metrics_fields(
        call_sid=None, dscp=False, sdk_version="1", direction="INCOMING", gateway="gw"
    )) == ["dscp", "sdk_version", "gateway", "direction"]  # fmt: skip


def test_chk_186_a_batch_every_ten_samples_and_the_rest_on_close() -> None:
    batcher = MetricsBatcher()
    batches = []
    for n in range(25):
        batch = batcher.add({**SAMPLE, "timestamp": n}, input_volume=n / 100, output_volume=0.5)
        if batch is not None:
            batches.append(batch)
    assert [len(b) for b in batches] == [10, 10] and len(batcher) == 5
    assert [s["timestamp"] for s in batches[1]] == list(range(10, 20))
    assert batches[0][3]["inputVolume"] == 0.03 and batches[0][3]["outputVolume"] == 0.5
    rest = batcher.drain()
    assert [s["timestamp"] for s in rest] == list(range(20, 25))
    assert batcher.drain() == [] and len(batcher) == 0


# -- where a Device publishes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "base"),
    [
        ("eventgw.twilio.com", "https://eventgw.twilio.com"),
        ("eventgw.twilio.com/", "https://eventgw.twilio.com"),
        ("127.0.0.1:9444", "https://127.0.0.1:9444"),
        ("http://127.0.0.1:9444", "http://127.0.0.1:9444"),
        ("HTTPS://gw.example:9444/prefix/", "https://gw.example:9444/prefix"),
        ("http://[::1]:9444", "http://[::1]:9444"),
        (None, None),
        ("", None),
        ("ftp://x", None),
        ("http://", None),
        ("http://x:99999", None),
        ("http://x/?q=1", None),
        ("http://a b", None),
    ],
)
def test_base_url(host: str | None, base: str | None) -> None:
    assert endpoint.base_url(host) == base
    if base is not None:
        assert endpoint.events_url(base) == base + "/v4/EndpointEvents"
        assert endpoint.metrics_url(base) == base + "/v4/EndpointMetrics"


@pytest.mark.parametrize(
    ("offered", "signaling", "believed"),
    [
        ("http://127.0.0.1:9444", "ws://127.0.0.1:9443/signal", True),
        ("https://127.0.0.1:9444", "wss://127.0.0.1:9443/signal", True),
        ("https://LOCALHOST:9444", "wss://localhost:9443/signal", True),
        ("http://127.0.0.1:9444", "wss://127.0.0.1:9443/signal", False),  # no TLS downgrade
        ("https://evil.example:443", "wss://127.0.0.1:9443/signal", False),  # another host
        ("127.0.0.1:9444", "ws://127.0.0.1:9443/signal", False),  # must be a URL
        (None, "ws://127.0.0.1:9443/signal", False),
        (42, "ws://127.0.0.1:9443/signal", False),
        ("http://127.0.0.1:9444", None, False),
    ],
)
def test_the_connected_field_is_believed_only_for_the_signaling_host(
    offered: object, signaling: str | None, believed: bool
) -> None:
    expected = endpoint.base_url(offered) if believed and isinstance(offered, str) else None
    assert endpoint.from_connected(offered, signaling) == expected


def test_never_twilio_unless_asked() -> None:
    """A real Twilio names no field: nothing is published. An explicit ``eventgw`` wins."""
    signaling = "wss://voice-js.roaming.twilio.com/signal"
    assert endpoint.select_base_url(None, None, signaling) is None
    assert endpoint.select_base_url("eventgw.twilio.com", None, signaling) == (
        "https://eventgw.twilio.com"
    )
    gateway = "ws://127.0.0.1:9443/signal"
    assert endpoint.select_base_url(None, "http://127.0.0.1:9444", gateway) == (
        "http://127.0.0.1:9444"
    )
    assert endpoint.select_base_url("http://127.0.0.1:7000", "http://127.0.0.1:9444", gateway) == (
        "http://127.0.0.1:7000"
    )

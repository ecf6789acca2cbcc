"""Vectors for the pure SDP helpers (media-behaviour.md §2, checklist 298-301)."""

from __future__ import annotations

import pytest

from softphone.media.sdp import (
    CodecInfo,
    OpusFmtp,
    advertise_address,
    apply_codec_preferences,
    candidate_types,
    dtls_fingerprints,
    has_telephone_event,
    ice_credentials,
    negotiated_codec,
    new_dtls_session,
    opus_fmtp,
    parse_audio_codecs,
    parse_fmtp,
    preferred_codec_info,
    remove_ice_lite,
    set_max_average_bitrate,
    strip_stray_cr,
)

pytestmark = pytest.mark.pure


def _audio_section(mid: str) -> list[str]:
    return [
        "m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101",
        "c=IN IP4 0.0.0.0",
        "b=AS:64",
        "b=TIAS:64000",
        f"a=mid:{mid}",
        "a=ice-ufrag:uFrA",
        "a=ice-pwd:passwordpasswordpassword",
        "a=rtpmap:109 opus/48000/2",
        "a=fmtp:109 minptime=10;useinbandfec=1",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 PCMA/16000",
        "a=sendrecv",
    ]


SESSION = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1"]
TWO_AUDIO = "\r\n".join([*SESSION, *_audio_section("0"), *_audio_section("1")]) + "\r\n"

BROWSER_OFFER = (
    "\r\n".join(
        [
            *SESSION[:4],
            "a=ice-lite",
            "m=audio 50000 UDP/TLS/RTP/SAVPF 111 0 8 110 126 13",
            "c=IN IP4 127.0.0.1",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10;useinbandfec=1;maxaveragebitrate=20000;usedtx=1",
            "a=rtpmap:110 telephone-event/48000",
            "a=fmtp:110 0-16",
            "a=rtpmap:126 telephone-event/8000",
            "a=rtpmap:13 CN/8000",
            "a=ice-ufrag:abcd",
            "a=ice-pwd:0123456789012345678901",
        ]
    )
    + "\r\n"
)


def _m_lines(sdp: str) -> list[str]:
    return [line for line in sdp.split("\r\n") if line.startswith("m=")]


# ---------------------------------------------------------------- codec order (2.1, item 299)


def test_codec_preferences_vector_reorders_every_audio_section() -> None:
    out = apply_codec_preferences(TWO_AUDIO, ["pcmu", "opus"])
    assert [m.split(" ", 3)[3] for m in _m_lines(out)] == ["0 109 9 8 101"] * 2


def test_codec_preferences_empty_keeps_order() -> None:
    out = apply_codec_preferences(TWO_AUDIO, [])
    assert [m.split(" ", 3)[3] for m in _m_lines(out)] == ["109 9 0 8 101"] * 2


def test_codec_preferences_drop_bandwidth_lines_when_g711_first() -> None:
    out = apply_codec_preferences(TWO_AUDIO, ["PCMU"])
    assert "b=AS:" not in out and "b=TIAS:" not in out
    kept = apply_codec_preferences(TWO_AUDIO, ["opus"])
    assert kept.count("b=AS:64") == 2 and kept.count("b=TIAS:64000") == 2


def test_codec_preferences_keep_everything_else_and_line_endings() -> None:
    out = apply_codec_preferences(TWO_AUDIO, ["opus", "pcmu"])
    assert out.endswith("\r\n") and "\n" not in out.replace("\r\n", "")
    assert out.split("\r\n")[1:] != [] and out.count("a=rtpmap:") == TWO_AUDIO.count("a=rtpmap:")
    assert _m_lines(out)[0] == "m=audio 9 UDP/TLS/RTP/SAVPF 109 0 9 8 101"


def test_codec_preferences_groups_all_pts_of_a_name_and_uses_static_names() -> None:
    sdp = "v=0\r\nm=audio 9 RTP/AVP 8 0 101\r\na=rtpmap:101 PCMA/16000\r\n"
    out = apply_codec_preferences(sdp, ["pcma"])
    assert _m_lines(out) == ["m=audio 9 RTP/AVP 8 101 0"]


def test_codec_preferences_leave_application_sections_alone() -> None:
    sdp = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n"
    assert apply_codec_preferences(sdp, ["pcmu"]) == sdp


# ---------------------------------------------------------------- maxaveragebitrate (2.2, item 300)


@pytest.mark.parametrize("bps", [6000, 12345, 510000])
def test_max_average_bitrate_default_pt_vector(bps: int) -> None:
    assert set_max_average_bitrate("a=fmtp:111", bps) == f"a=fmtp:111;maxaveragebitrate={bps}"


@pytest.mark.parametrize("bps", [5999, 510001, None])
def test_max_average_bitrate_out_of_range_is_ignored(bps: int | None) -> None:
    assert set_max_average_bitrate(TWO_AUDIO, bps) == TWO_AUDIO
    assert set_max_average_bitrate("a=fmtp:111", bps) == "a=fmtp:111"


def test_max_average_bitrate_ignores_bool() -> None:
    assert set_max_average_bitrate("a=fmtp:111", True) == "a=fmtp:111"


def test_max_average_bitrate_goes_before_the_cr_on_the_opus_line() -> None:
    out = set_max_average_bitrate(TWO_AUDIO, 16000)
    assert out.count("a=fmtp:109 minptime=10;useinbandfec=1;maxaveragebitrate=16000\r\n") == 2
    assert "\r;" not in out
    assert out.replace(";maxaveragebitrate=16000", "") == TWO_AUDIO


def test_max_average_bitrate_uses_first_opus_rtpmap_and_exact_pt() -> None:
    sdp = "a=rtpmap:96 opus/48000/2\na=fmtp:96 x=1\na=fmtp:960 y=1\na=fmtp:111 z=1\n"
    out = set_max_average_bitrate(sdp, 20000)
    assert out == "a=rtpmap:96 opus/48000/2\na=fmtp:96 x=1;maxaveragebitrate=20000\n" + (
        "a=fmtp:960 y=1\na=fmtp:111 z=1\n"
    )


def test_max_average_bitrate_inserts_fmtp_when_opus_has_none() -> None:
    sdp = "m=audio 9 RTP/AVP 96 0\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
    out = set_max_average_bitrate(sdp, 16000)
    assert out == (
        "m=audio 9 RTP/AVP 96 0\r\na=rtpmap:96 opus/48000/2\r\n"
        "a=fmtp:96 maxaveragebitrate=16000\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    assert opus_fmtp(out) == OpusFmtp(max_average_bitrate=16000)


def test_stray_cr_from_js_munging_is_tolerated() -> None:
    js_munged = "m=audio 9 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n" + (
        "a=fmtp:111 useinbandfec=1\r;maxaveragebitrate=12000\na=sendrecv\r\n"
    )
    assert opus_fmtp(js_munged) == OpusFmtp(max_average_bitrate=12000, use_inband_fec=True)
    fixed = strip_stray_cr(js_munged)
    assert "a=fmtp:111 useinbandfec=1;maxaveragebitrate=12000\n" in fixed
    assert fixed.count("\r") == fixed.count("\r\n")


# ---------------------------------------------------------------- ice-lite (2.3, item 298)


def test_remove_ice_lite_vectors() -> None:
    assert remove_ice_lite("bar\na=ice-lite\nfoo") == "bar\nfoo"
    full = "a=group\nfoo\na=ice-options:trickle-ice\n"
    assert remove_ice_lite(full) == full
    assert "a=ice-lite" not in remove_ice_lite(BROWSER_OFFER)
    assert remove_ice_lite(BROWSER_OFFER).endswith("\r\n")


# ---------------------------------------------------------------- preferred codec info (item 301)


def test_preferred_codec_info_vector() -> None:
    sdp = (
        "foo=a\na=rtpmap:1337 opus/48000/2\na=rtpmap:0 PCMU/8000\na=fmtp:0\n"
        "a=fmtp:1337 maxaveragebitrate=12000;usedtx=0\nbar=b"
    )
    assert preferred_codec_info(sdp) == ("opus/48000/2", "maxaveragebitrate=12000;usedtx=0")
    assert preferred_codec_info("v=0\n") == ("", "")


# ---------------------------------------------------------------- parsers


def test_parse_audio_codecs() -> None:
    codecs = parse_audio_codecs(BROWSER_OFFER)
    assert [(c.pt, c.name, c.clock_rate, c.channels) for c in codecs] == [
        (111, "opus", 48000, 2),
        (0, "PCMU", 8000, 1),
        (8, "PCMA", 8000, 1),
        (110, "telephone-event", 48000, 1),
        (126, "telephone-event", 8000, 1),
        (13, "CN", 8000, 1),
    ]
    assert codecs[0].fmtp == {
        "minptime": "10",
        "useinbandfec": "1",
        "maxaveragebitrate": "20000",
        "usedtx": "1",
    }
    assert codecs[3].fmtp == {"0-16": ""}
    assert parse_audio_codecs("v=0\r\n") == []


def test_negotiated_codec_skips_non_audio_codecs() -> None:
    sdp = "m=audio 9 RTP/AVP 126 13 0\r\na=rtpmap:126 telephone-event/8000\r\n"
    assert negotiated_codec(sdp) == CodecInfo(0, "PCMU", 8000)
    assert negotiated_codec(BROWSER_OFFER) == parse_audio_codecs(BROWSER_OFFER)[0]
    assert negotiated_codec("m=audio 9 RTP/AVP 13\r\n") is None


def test_has_telephone_event() -> None:
    assert has_telephone_event(BROWSER_OFFER) == 110
    assert has_telephone_event(BROWSER_OFFER, 8000) == 126
    assert has_telephone_event(BROWSER_OFFER, 16000) is None
    assert has_telephone_event(TWO_AUDIO) is None


def test_ice_credentials() -> None:
    assert ice_credentials(BROWSER_OFFER) == ("abcd", "0123456789012345678901")
    assert ice_credentials(TWO_AUDIO) == ("uFrA", "passwordpasswordpassword")
    session_level = "v=0\na=ice-ufrag:sess\na=ice-pwd:pw\nm=audio 9 RTP/AVP 0\n"
    assert ice_credentials(session_level) == ("sess", "pw")
    assert ice_credentials("v=0\nm=audio 9 RTP/AVP 0\n") is None


def test_opus_fmtp() -> None:
    assert opus_fmtp(BROWSER_OFFER) == OpusFmtp(
        max_average_bitrate=20000, use_inband_fec=True, use_dtx=True
    )
    assert opus_fmtp("m=audio 9 RTP/AVP 0\r\n") is None
    clamp = "m=audio 9 RTP/AVP 96\na=rtpmap:96 opus/48000/2\na=fmtp:96 maxaveragebitrate=1000\n"
    assert opus_fmtp(clamp) == OpusFmtp(max_average_bitrate=6000)


def test_parse_fmtp() -> None:
    assert parse_fmtp("a=1; b=2;;0-15") == {"a": "1", "b": "2", "0-15": ""}


NAT_SDP = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 0.0.0.0\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "m=audio 40000 UDP/TLS/RTP/SAVPF 111\r\n"
    "c=IN IP4 10.0.0.5\r\n"
    "a=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\n"
    "a=candidate:2 1 udp 1694498815 198.51.100.9 40001 typ srflx raddr 10.0.0.5 rport 40000\r\n"
    "a=candidate:3 1 udp 16777215 203.0.113.7 50000 typ relay raddr 10.0.0.5 rport 40000\r\n"
    "a=end-of-candidates\r\n"
)


def test_advertise_address_rewrites_host_candidates_and_c_line_only() -> None:
    out = advertise_address(NAT_SDP, "192.0.2.44")
    assert "a=candidate:1 1 udp 2130706431 192.0.2.44 40000 typ host\r\n" in out
    assert "c=IN IP4 192.0.2.44\r\n" in out
    assert "198.51.100.9 40001 typ srflx raddr 10.0.0.5" in out
    assert "203.0.113.7 50000 typ relay" in out
    assert "10.0.0.5 40000 typ host" not in out
    assert out.count("\r\n") == NAT_SDP.count("\r\n")


def test_candidate_types_in_order() -> None:
    assert candidate_types(NAT_SDP) == ["host", "srflx", "relay"]
    assert candidate_types("v=0\r\nm=audio 9 RTP/AVP 0\r\n") == []


FP_A = "a=fingerprint:sha-256 AA:BB:CC"
FP_B = "a=fingerprint:sha-256 DD:EE:FF"


def _with(*lines: str) -> str:
    return "\r\n".join(["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", *lines, ""])


def test_dtls_fingerprints_are_read_at_session_and_media_level() -> None:
    sdp = _with(FP_A, "m=audio 9 UDP/TLS/RTP/SAVPF 0", "a=fingerprint:SHA-256 dd:ee:ff")
    assert dtls_fingerprints(sdp) == {"sha-256 aa:bb:cc", "sha-256 dd:ee:ff"}
    assert dtls_fingerprints(_with("m=audio 9 RTP/AVP 0")) == frozenset()


def test_a_new_dtls_session_is_a_changed_fingerprint() -> None:
    audio = "m=audio 9 UDP/TLS/RTP/SAVPF 0"
    before = _with(audio, FP_A)
    assert new_dtls_session(before, _with(audio, FP_B))
    assert not new_dtls_session(before, _with(audio, FP_A.upper().replace("A=F", "a=f")))
    assert not new_dtls_session(None, _with(audio, FP_B))  # nothing to compare with
    assert not new_dtls_session(before, _with(audio))  # no fingerprint: plain ICE restart

"""What the gateway's media legs must do for Chrome, pinned without a browser.

``tests/test_browser_jssdk.py`` proves the whole path with the real JS SDK in Chromium, but
it is skipped where Chromium is missing. These tests pin the two properties it rests on,
with aiortc only (jssdk-wire-notes.md, "invite" and "Surprises"):

* Chrome's offer (captured from Chrome 156 + voice-sdk 2.18.5: PCMU first, red, CN,
  telephone-event at 48000/110 and 8000/126, extmaps, ``rtcp-rsize``, no candidates) gets
  a usable answer: our candidate on 127.0.0.1, Chrome's own payload types, DTMF at both
  clock rates, no codec we cannot carry.
* Chrome never signals a candidate (no ``a=candidate`` in its offers or answers, nothing
  trickled): the gateway leg must learn the browser's address from its STUN checks
  (peer-reflexive) both as the answerer (browser calls out) and as the controlling
  offerer (browser answers). The stand-in "browser" here is a PeerConnection whose SDP is
  stripped the way Chrome's is.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from recorders import eventually

from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.media.peer_connection import PeerConnection

pytestmark = pytest.mark.usefixtures("loopback_media")

CHROME_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 7226458831780814073 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS f1ccc6da-dbd8-46c9-8633-4c1b6d01caed",
        "m=audio 9 UDP/TLS/RTP/SAVPF 0 111 63 9 8 13 110 126",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:3b9f",
        "a=ice-pwd:n6IOWb/y5iDibkKkh5MmBciL",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 A8:ED:FB:A7:4D:44:00:83:55:7B:96:59:B9:7E:B3:8D:"
        "2D:70:08:A8:94:08:19:C4:73:5A:E7:14:9D:52:45:53",
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=sendrecv",
        "a=msid:f1ccc6da-dbd8-46c9-8633-4c1b6d01caed 174369c2-369a-4383-8574-35f19b89fb03",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtcp-xr:rcvr-rtt=all",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:13 CN/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        "a=ssrc:1219411809 cname:7biSKm02YriRSGvG",
        "a=ssrc:1219411809 msid:f1ccc6da-dbd8-46c9-8633-4c1b6d01caed "
        "174369c2-369a-4383-8574-35f19b89fb03",
        "",
    ]
)
"""The offer Chrome 156 sent in the captured real-media call (jssdk-wire-transcript.jsonl)."""

GATEWAY_HZ, BROWSER_HZ = 1500.0, 1000.0


def gateway_leg() -> PeerConnection:
    """A media leg configured as the gateway's ``CallRouter`` makes them."""
    return PeerConnection(ice_servers=[], codec_preferences=("opus", "pcmu"))


def like_chrome(sdp: str) -> str:
    """``sdp`` as Chrome signals it: no candidates, no end-of-candidates, port 9, 0.0.0.0."""
    lines = [
        line
        for line in sdp.split("\r\n")
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    ]
    lines = [re.sub(r"^(m=audio) \d+ ", r"\1 9 ", line) for line in lines]
    lines = [re.sub(r"^c=IN IP4 \S+", "c=IN IP4 0.0.0.0", line) for line in lines]
    return "\r\n".join(lines)


async def _hears(sink: MemorySink, hz: float) -> None:
    await eventually(lambda: len(sink.pcm()) > SAMPLE_RATE)
    tail: np.ndarray = sink.pcm()[-SAMPLE_RATE // 2 :]
    assert detect_tone(tail, hz)


async def test_gateway_answers_a_captured_chrome_offer() -> None:
    leg = gateway_leg()
    try:
        answer = await leg.create_answer(CHROME_OFFER, ToneSource([GATEWAY_HZ]))
    finally:
        await leg.close()
    lines = answer.splitlines()
    m_line = next(line for line in lines if line.startswith("m=audio"))
    payload_types = m_line.split()[3:]
    assert payload_types[0] == "111"  # Chrome's Opus PT, our preference first
    assert "0" in payload_types
    assert {"63", "13"}.isdisjoint(payload_types)  # red and CN are not answered
    assert {"a=rtpmap:110 telephone-event/48000", "a=rtpmap:126 telephone-event/8000"} <= set(lines)
    assert {"a=fmtp:110 0-15", "a=fmtp:126 0-15"} <= set(lines)
    assert "a=setup:active" in lines  # Chrome offered actpass; we take the DTLS client
    candidates = [line for line in lines if line.startswith("a=candidate:")]
    assert candidates and all(" 127.0.0.1 " in line for line in candidates)
    assert "a=end-of-candidates" in lines


@pytest.mark.parametrize("browser_role", ["caller", "callee"])
async def test_candidateless_browser_sdp_connects_peer_reflexive(browser_role: str) -> None:
    gateway, browser = gateway_leg(), PeerConnection(ice_servers=[])
    gateway_hears, browser_hears = MemorySink(), MemorySink()
    gateway.set_remote_sink(gateway_hears)
    browser.set_remote_sink(browser_hears)
    try:
        if browser_role == "caller":  # browser offers, gateway answers (ICE controlled)
            offer = like_chrome(await browser.create_offer(ToneSource([BROWSER_HZ])))
            await browser.apply_answer(await gateway.create_answer(offer, ToneSource([GATEWAY_HZ])))
        else:  # gateway offers (ICE controlling), browser answers without candidates
            offer = await gateway.create_offer(ToneSource([GATEWAY_HZ]))
            answer = await browser.create_answer(offer, ToneSource([BROWSER_HZ]))
            await gateway.apply_answer(like_chrome(answer))
        assert "a=candidate:" not in (offer if browser_role == "caller" else like_chrome(answer))
        await eventually(
            lambda: gateway.connection_state == browser.connection_state == "connected"
        )
        pair = (await gateway.get_stats())["selectedCandidatePair"]
        assert pair["remoteCandidateType"] == "prflx"
        assert pair["localAddress"] == pair["remoteAddress"] == "127.0.0.1"
        await _hears(gateway_hears, BROWSER_HZ)
        await _hears(browser_hears, GATEWAY_HZ)
    finally:
        await gateway.close()
        await browser.close()

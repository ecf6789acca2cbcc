"""PreflightTest report (checklist X 280-284, 290): stats summary, quality bands, timings,
ICE candidates and the JS-keyed object."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from softphone.core.preflight_report import (
    CallQuality,
    NetworkTiming,
    PreflightWarning,
    build_report,
    call_quality,
    summarize,
    to_precision,
)
from softphone.core.rtc_sample import RTCSample, RTCSampleTotals
from softphone.media.pc_diagnostics import IceCandidateStatsReport, candidate_stats_report

pytestmark = pytest.mark.pure

REPORT_KEYS = {
    "callSid",
    "callQuality",
    "edge",
    "selectedEdge",
    "iceCandidateStats",
    "selectedIceCandidatePairStats",
    "isTurnRequired",
    "networkTiming",
    "samples",
    "stats",
    "testTiming",
    "totals",
    "warnings",
}


def sample(
    jitter: float = 1.0, mos: float | None = 4.4, rtt: float | None = 1.0, n: int = 0
) -> RTCSample:
    return RTCSample(
        audio_input_level=0,
        audio_output_level=0,
        bytes_received=0,
        bytes_sent=0,
        codec_name="PCMU",
        jitter=jitter,
        mos=mos,
        packets_lost=0,
        packets_lost_fraction=0.0,
        packets_received=50,
        packets_sent=50,
        rtt=rtt,
        timestamp=1000.0 * n,
        totals=RTCSampleTotals(
            bytes_received=8000 * n,
            bytes_sent=8000 * n,
            packets_lost=0,
            packets_lost_fraction=0.0,
            packets_received=50 * n,
            packets_sent=50 * n,
        ),
    )


def candidate(ip: str, port: int, kind: str = "host", **extra: Any) -> SimpleNamespace:
    """What aiortc's ``RTCIceCandidate`` carries."""
    fields: dict[str, Any] = {
        "ip": ip,
        "port": port,
        "type": kind,
        "protocol": "udp",
        "priority": 1,
        "foundation": "f",
        "relatedAddress": None,
        "relatedPort": None,
    }
    return SimpleNamespace(**(fields | extra))


def pair(local_type: str = "host", remote_type: str = "host", **extra: Any) -> dict[str, Any]:
    return {
        "localAddress": "10.0.0.1",
        "localPort": 1000,
        "localCandidateType": local_type,
        "remoteAddress": "10.0.0.2",
        "remotePort": 2000,
        "remoteCandidateType": remote_type,
        "protocol": "udp",
        "relayProtocol": None,
    } | extra


def report(samples: list[RTCSample], candidates: IceCandidateStatsReport | None = None) -> Any:
    timing = NetworkTiming()
    timing.start_signaling(10.0)
    return build_report(
        call_sid="CA1",
        edge="ashburn",
        selected_edge="roaming",
        candidates=candidates,
        network_timing=timing,
        samples=samples,
        warnings=[PreflightWarning(name="high-rtt", description="d", rtc_warning={"name": "rtt"})],
        start_time=0.0,
        end_time=15025.0,
    )


# -- 290: the stats summary --------------------------------------------------------------------
def test_stats_skip_samples_until_the_first_numeric_mos_and_average_from_there() -> None:
    samples = [
        sample(jitter=100, mos=None, rtt=None),
        sample(jitter=100, mos=None, rtt=500),
        sample(jitter=1, mos=5, rtt=0.01),
        sample(jitter=2, mos=4, rtt=0.03),
        sample(jitter=3, mos=3, rtt=0.02),
    ]
    stats = summarize(samples)
    assert stats is not None
    assert stats.to_dict() == {
        "jitter": {"average": 2, "max": 3, "min": 1},
        "mos": {"average": 4, "max": 5, "min": 3},
        "rtt": {"average": 0.02, "max": 0.03, "min": 0.01},
    }


def test_a_zero_mos_does_not_start_the_window() -> None:
    stats = summarize([sample(jitter=50, mos=0.0), sample(jitter=2, mos=4.0)])
    assert stats is not None and stats.jitter.average == 2


def test_no_numeric_mos_means_no_stats() -> None:
    assert summarize([sample(mos=None), sample(mos=None)]) is None
    assert summarize([]) is None


def test_the_average_keeps_five_significant_digits() -> None:
    stats = summarize([sample(mos=4.4323214842106395), sample(mos=4.431665186482683)])
    assert stats is not None
    assert stats.mos.average == 4.4320  # (4.43232 + 4.43167) / 2 = 4.431993...
    assert stats.mos.max == 4.4323214842106395  # min and max are not rounded


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2 / 3, 0.66667),
        (123456.7, 123460.0),
        (0.000123456, 0.00012346),
        (0.019999999999999997, 0.02),
        (1.00005, 1.0001),  # 1.00005 is stored just above the tie
        (0.5, 0.5),
        (0.0, 0.0),
        (-2 / 3, -0.66667),
        (9.999996, 10.0),
    ],
)
def test_to_precision_matches_js_to_precision(value: float, expected: float) -> None:
    assert to_precision(value) == expected


def test_an_exact_tie_rounds_up_as_js_does() -> None:
    # 1.03125 is exact in binary: JS toPrecision(5) gives 1.0313, Python's round-half-even 1.0312
    assert f"{1.03125:.5g}" == "1.0312"
    assert to_precision(1.03125) == 1.0313


# -- 282: quality bands, closed intervals kept ----------------------------------------------
@pytest.mark.parametrize(
    ("mos", "band"),
    [
        (4.9, "excellent"),
        (4.3, "excellent"),
        (4.2000001, "excellent"),
        (4.2, "great"),
        (4.1, "great"),
        (4.0, "good"),
        (3.9, "good"),
        (3.8, "good"),
        (3.7, "good"),
        (3.6, "fair"),
        (3.5, "fair"),
        (3.2, "fair"),
        (3.1, "fair"),
        (3.0, "degraded"),
        (2.9, "degraded"),
        (4.05, "degraded"),  # the JS gaps between bands
        (3.65, "degraded"),
        (1.0, "degraded"),
    ],
)
def test_call_quality_bands(mos: float, band: str) -> None:
    assert call_quality(mos) == CallQuality(band)


def test_the_report_band_comes_from_the_rounded_average() -> None:
    result = report([sample(mos=None), sample(mos=4.3), sample(mos=4.5)])
    assert result.stats.mos.average == 4.4
    assert result.call_quality is CallQuality.EXCELLENT
    degraded = report([sample(mos=4.0), sample(mos=4.1)])  # average 4.05: in the gap
    assert degraded.call_quality is CallQuality.DEGRADED


# -- 281: no samples -------------------------------------------------------------------------
def test_without_samples_there_is_no_quality_no_stats_no_totals() -> None:
    result = report([])
    assert result.call_quality is None and result.stats is None and result.totals is None
    js = result.to_dict()
    assert "callQuality" not in js and "stats" not in js and "totals" not in js
    assert js["samples"] == []


# -- 280: the JS report ----------------------------------------------------------------------
def test_the_report_has_every_js_key() -> None:
    samples = [sample(mos=None, n=1), sample(mos=4.4, n=2), sample(mos=4.4, n=3)]
    local, remote = candidate("10.0.0.1", 1000), candidate("10.0.0.2", 2000)
    result = report(samples, candidate_stats_report([local], [remote], pair()))
    js = result.to_dict()
    assert set(js) == REPORT_KEYS
    assert js["callSid"] == "CA1" and js["edge"] == "ashburn" and js["selectedEdge"] == "roaming"
    assert js["callQuality"] == "excellent"
    assert js["isTurnRequired"] is False
    assert js["samples"] == [s.to_dict() for s in samples]
    assert js["totals"] == samples[-1].totals.to_dict()
    assert js["testTiming"] == {"start": 0.0, "end": 15025.0, "duration": 15025.0}
    assert js["networkTiming"] == {"signaling": {"start": 10.0}}
    assert js["warnings"] == [
        {"name": "high-rtt", "description": "d", "rtcWarning": {"name": "rtt"}}
    ]
    assert [c["type"] for c in js["iceCandidateStats"]] == ["local-candidate", "remote-candidate"]


def test_a_warning_without_data_has_no_rtc_warning_key() -> None:
    assert PreflightWarning(name="x", description="y").to_dict() == {
        "name": "x",
        "description": "y",
    }


def test_network_timing_follows_the_js_shims() -> None:
    timing = NetworkTiming()
    timing.start_signaling(0)
    timing.on_state("signaling", "have-local-offer", 5)
    for kind, start in (
        ("peerConnection", "connecting"),
        ("ice", "checking"),
        ("dtls", "connecting"),
    ):
        timing.on_state(kind, start, 15)
    for kind in ("peerConnection", "ice", "dtls"):
        timing.on_state(kind, "connected", 1015)
    timing.on_state("signaling", "stable", 1015)
    expected = {"start": 15, "end": 1015, "duration": 1000}
    assert timing.to_dict() == {
        "signaling": {"start": 0, "end": 1015, "duration": 1015},
        "peerConnection": expected,
        "ice": expected,
        "dtls": expected,
    }
    # the end is recorded once: a later reconnection changes nothing
    timing.on_state("ice", "checking", 5000)
    timing.on_state("ice", "connected", 6000)
    assert timing.to_dict()["ice"] == expected


def test_a_timing_that_never_connected_has_only_its_start() -> None:
    timing = NetworkTiming()
    timing.on_state("ice", "checking", 7)
    timing.on_state("ice", "failed", 9)
    timing.on_state("dtls", "connected", 9)  # never started: not measured
    timing.on_state("unknown", "connecting", 9)
    assert timing.to_dict() == {"ice": {"start": 7}}


def test_the_report_keeps_the_timing_it_was_built_with() -> None:
    timing = NetworkTiming()
    timing.on_state("ice", "checking", 1)
    built = build_report(
        call_sid=None,
        edge=None,
        selected_edge=None,
        candidates=None,
        network_timing=timing,
        samples=[],
        warnings=[],
        start_time=0,
        end_time=1,
    )
    timing.on_state("ice", "connected", 2)
    assert built.network_timing.to_dict() == {"ice": {"start": 1}}
    assert set(built.to_dict()) == {
        "iceCandidateStats",
        "networkTiming",
        "samples",
        "testTiming",
        "warnings",
    }


# -- 283, 284: ICE candidates and TURN ----------------------------------------------------
def test_without_a_selected_pair_there_is_no_pair_and_no_turn_flag() -> None:
    candidates = candidate_stats_report([candidate("10.0.0.1", 1000)], [], None)
    result = report([sample()], candidates)
    assert result.selected_ice_candidate_pair_stats is None and result.is_turn_required is None
    js = result.to_dict()
    assert "selectedIceCandidatePairStats" not in js and "isTurnRequired" not in js
    assert len(js["iceCandidateStats"]) == 1


def test_without_a_candidate_report_the_candidate_list_is_empty() -> None:
    js = report([sample()], None).to_dict()
    assert js["iceCandidateStats"] == []
    assert "selectedIceCandidatePairStats" not in js and "isTurnRequired" not in js


@pytest.mark.parametrize(
    ("local_type", "remote_type", "turn"),
    [
        ("host", "host", False),
        ("srflx", "host", False),
        ("relay", "host", True),
        ("host", "relay", True),
        ("relay", "relay", True),
    ],
)
def test_turn_is_required_when_either_selected_candidate_is_a_relay(
    local_type: str, remote_type: str, turn: bool
) -> None:
    local = candidate("10.0.0.1", 1000, local_type)
    remote = candidate("10.0.0.2", 2000, remote_type)
    candidates = candidate_stats_report([local], [remote], pair(local_type, remote_type))
    assert report([sample()], candidates).is_turn_required is turn


def test_candidate_stats_have_the_browser_fields_and_the_selected_pair_points_at_them() -> None:
    host = candidate("10.0.0.1", 1000)
    relay = candidate("192.0.2.9", 3478, "relay", relatedAddress="10.0.0.1", relatedPort=1000)
    remote = candidate("10.0.0.2", 2000)
    got = candidate_stats_report(
        [host, relay],
        [remote],
        pair("relay", localAddress="192.0.2.9", localPort=3478, relayProtocol="tcp"),
    )
    local_relay = got.ice_candidate_stats[1]
    assert local_relay == {
        "id": "L1",
        "type": "local-candidate",
        "transportId": "T01",
        "isRemote": False,
        "address": "192.0.2.9",
        "ip": "192.0.2.9",
        "port": 3478,
        "protocol": "udp",
        "candidateType": "relay",
        "priority": 1,
        "foundation": "f",
        "deleted": False,
        "relatedAddress": "10.0.0.1",
        "relatedPort": 1000,
        "relayProtocol": "tcp",
    }
    assert "relayProtocol" not in got.ice_candidate_stats[0]
    assert got.selected_ice_candidate_pair_stats == {
        "localCandidate": local_relay,
        "remoteCandidate": got.ice_candidate_stats[2],
    }


def test_a_selected_candidate_missing_from_the_lists_is_described_from_the_pair() -> None:
    got = candidate_stats_report([], [], pair("host", "prflx"))
    selected = got.selected_ice_candidate_pair_stats
    assert selected is not None
    assert selected["remoteCandidate"]["candidateType"] == "prflx"
    assert selected["remoteCandidate"]["address"] == "10.0.0.2"
    assert selected["localCandidate"]["port"] == 1000

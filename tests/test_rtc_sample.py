"""The per-second ``sample``: deltas, loss fractions, rtt carry-over, MOS rules, JS keys."""

from __future__ import annotations

import math

import attrs
import pytest

from softphone.core.mos import calculate_mos
from softphone.core.rtc_sample import RawStats, RTCSample, create_sample, js_round

pytestmark = pytest.mark.pure

JS_SAMPLE_KEYS = {
    "audioInputLevel",
    "audioOutputLevel",
    "bytesReceived",
    "bytesSent",
    "codecName",
    "jitter",
    "mos",
    "packetsLost",
    "packetsLostFraction",
    "packetsReceived",
    "packetsSent",
    "rtt",
    "timestamp",
    "totals",
}
JS_TOTALS_KEYS = {
    "bytesReceived",
    "bytesSent",
    "packetsLost",
    "packetsLostFraction",
    "packetsReceived",
    "packetsSent",
}

FIRST = RawStats(
    timestamp=1_000.0,
    codec_name="opus",
    rtt=30.0,
    jitter=3.0,
    packets_lost=5,
    packets_received=15,
    bytes_received=200,
    packets_sent=20,
    bytes_sent=300,
)
SECOND = RawStats(
    timestamp=2_000.0,
    codec_name="opus",
    rtt=50.0,
    jitter=7.5,
    packets_lost=6,
    packets_received=64,
    bytes_received=8_200,
    packets_sent=70,
    bytes_sent=8_300,
)


def test_first_sample_deltas_are_the_raw_counters_and_mos_is_none() -> None:
    sample = create_sample(FIRST, None)
    assert sample.bytes_received == 200
    assert sample.bytes_sent == 300
    assert sample.packets_lost == 5
    assert sample.packets_received == 15
    assert sample.packets_sent == 20
    assert sample.packets_lost_fraction == pytest.approx(5 / 20 * 100)
    assert sample.mos is None  # no previous sample: no interval loss for MOS
    assert sample.rtt == 30.0
    assert sample.jitter == 3.0
    assert sample.codec_name == "opus"
    assert sample.timestamp == 1_000.0


def test_second_sample_fields_are_interval_deltas() -> None:
    first = create_sample(FIRST, None)
    second = create_sample(SECOND, first)
    assert second.bytes_received == 8_000
    assert second.bytes_sent == 8_000
    assert second.packets_lost == 1
    assert second.packets_received == 49
    assert second.packets_sent == 50
    assert second.packets_lost_fraction == pytest.approx(1 / 50 * 100)
    assert second.jitter == 7.5  # jitter is the raw value, not a delta
    assert second.rtt == 50.0
    assert second.timestamp == 2_000.0
    assert second.mos == calculate_mos(50.0, 7.5, 1 / 50 * 100)
    assert second.mos is not None


def test_totals_are_the_raw_cumulative_values() -> None:
    second = create_sample(SECOND, create_sample(FIRST, None))
    totals = second.totals
    assert totals.bytes_received == 8_200
    assert totals.bytes_sent == 8_300
    assert totals.packets_lost == 6
    assert totals.packets_received == 64
    assert totals.packets_sent == 70
    assert totals.packets_lost_fraction == pytest.approx(6 / 70 * 100)


def test_totals_loss_fraction_is_100_before_any_inbound_packet() -> None:
    sample = create_sample(RawStats(timestamp=0.0), None)
    assert sample.totals.packets_lost_fraction == 100
    assert sample.packets_lost_fraction == 0  # the interval has no inbound packets


def test_interval_loss_fraction_is_0_when_no_inbound_packets_in_the_interval() -> None:
    first = create_sample(FIRST, None)
    idle = create_sample(attrs.evolve(FIRST, timestamp=2_000.0), first)
    assert idle.packets_received == 0 and idle.packets_lost == 0
    assert idle.packets_lost_fraction == 0
    assert idle.totals.packets_lost_fraction == pytest.approx(25.0)
    # The previous sample exists, so the 0 % loss is a real MOS input.
    assert idle.mos == calculate_mos(30.0, 3.0, 0)


def test_missing_rtt_carries_the_previous_sample_rtt() -> None:
    first = create_sample(FIRST, None)
    second = create_sample(attrs.evolve(SECOND, rtt=None), first)
    assert second.rtt == 30.0
    assert second.mos == calculate_mos(30.0, 7.5, 2.0)


def test_missing_rtt_on_the_first_sample_stays_missing_and_mos_is_none() -> None:
    first = create_sample(attrs.evolve(FIRST, rtt=None), None)
    assert first.rtt is None and first.mos is None
    second = create_sample(attrs.evolve(SECOND, rtt=None), first)
    assert second.rtt is None
    assert second.mos is None  # rtt still unknown


def test_audio_levels_are_the_rounded_mean_of_the_interval_levels() -> None:
    sample = create_sample(FIRST, None, [100, 200, 300], [150, 250, 350])
    assert (sample.audio_input_level, sample.audio_output_level) == (200, 250)
    none = create_sample(FIRST, None)
    assert (none.audio_input_level, none.audio_output_level) == (0, 0)
    # JS Math.round: halves go up (Python's round would give 200 and 2).
    halves = create_sample(FIRST, None, [200, 201], [2, 3])
    assert (halves.audio_input_level, halves.audio_output_level) == (201, 3)


def test_js_round_matches_math_round() -> None:
    assert [js_round(v) for v in (0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.6)] == [
        1,
        2,
        3,
        0,
        -1,
        -2,
        2,
        3,
    ]


def _all_values(sample: RTCSample) -> dict[str, object]:
    out = sample.to_dict()
    totals = out.pop("totals")
    assert isinstance(totals, dict)
    out.update({f"totals.{key}": value for key, value in totals.items()})
    return out


def test_to_dict_has_exactly_the_js_keys_with_the_sample_values() -> None:
    first = create_sample(FIRST, None, [123], [456])
    second = create_sample(SECOND, first, [100, 300], [50])
    out = second.to_dict()
    assert set(out) == JS_SAMPLE_KEYS
    assert set(out["totals"]) == JS_TOTALS_KEYS
    assert out == {
        "audioInputLevel": 200,
        "audioOutputLevel": 50,
        "bytesReceived": 8_000,
        "bytesSent": 8_000,
        "codecName": "opus",
        "jitter": 7.5,
        "mos": second.mos,
        "packetsLost": 1,
        "packetsLostFraction": pytest.approx(2.0),
        "packetsReceived": 49,
        "packetsSent": 50,
        "rtt": 50.0,
        "timestamp": 2_000.0,
        "totals": {
            "bytesReceived": 8_200,
            "bytesSent": 8_300,
            "packetsLost": 6,
            "packetsLostFraction": pytest.approx(6 / 70 * 100),
            "packetsReceived": 64,
            "packetsSent": 70,
        },
    }


def test_every_field_of_a_steady_sample_is_present_and_not_empty() -> None:
    """Checklist 258: every sample and totals field is set (second sample, rtt known)."""
    second = create_sample(SECOND, create_sample(FIRST, None, [123], [123]), [123], [123])
    for key, value in _all_values(second).items():
        assert value is not None, key
        assert value != "", key
        assert not (isinstance(value, float) and math.isnan(value)), key


def test_pre_ice_zero_stats_give_finite_numbers() -> None:
    """Checklist 267: reports without inbound/outbound entries still give finite numbers."""
    first = create_sample(RawStats(timestamp=5.0), None)
    second = create_sample(RawStats(timestamp=6.0), first)
    for sample in (first, second):
        for key, value in _all_values(sample).items():
            if key in {"rtt", "mos", "codecName"}:
                continue  # unknown before ICE, as in JS
            assert isinstance(value, int | float) and math.isfinite(value), key


def test_raw_stats_is_frozen_and_defaults_to_zero_counters() -> None:
    raw = RawStats(timestamp=1.0)
    assert (raw.packets_lost, raw.packets_received, raw.bytes_received) == (0, 0, 0)
    assert (raw.packets_sent, raw.bytes_sent, raw.jitter) == (0, 0, 0.0)
    assert raw.rtt is None and raw.codec_name is None
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        raw.jitter = 2.0  # type: ignore[misc]

"""The quality monitor, sans I/O: raw stats and fake time in, samples and warnings out.

Every test drives :class:`StatsMonitor` with synthetic cumulative stats, one
report per fake second, and checks what the JS SDK's StatsMonitor and Call
would emit (thresholds, windows, the 5 s clear delay, the warning payloads).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest

from softphone.core.mos import calculate_mos
from softphone.core.rtc_sample import RawStats, RTCSample
from softphone.core.rtc_warning import (
    LOW_BYTES_WARNING_NAMES,
    ThresholdData,
    is_emitted_to_app,
    warning_name,
)
from softphone.core.stats_monitor import (
    DEFAULT_THRESHOLDS,
    SAMPLE_INTERVAL_MS,
    VOLUME_INTERVAL_MS,
    WARNING_TIMEOUT_MS,
    WARNINGS_ENABLED_AFTER_MS,
    Output,
    Sample,
    StatsMonitor,
    ThresholdOption,
    Warning,
    WarningCleared,
    warnings_enabled_at,
)

pytestmark = pytest.mark.pure


@attrs.frozen
class Interval:
    """What happened during one second; the feed turns it into cumulative raw stats."""

    rtt: float | None = 50.0
    jitter: float = 5.0
    received: int = 50
    lost: int = 0
    sent: int = 50
    bytes_in: int = 8_000
    bytes_out: int = 8_000


HEALTHY = Interval()


class Feed:
    """Feeds a monitor one report per fake second (``now`` = 1.0, 2.0, ...)."""

    def __init__(self, monitor: StatsMonitor | None = None) -> None:
        self.monitor = monitor or StatsMonitor()
        self.now = 0.0
        self.raw = RawStats(timestamp=0.0, codec_name="PCMU")
        self.samples: list[RTCSample] = []

    def tick(self, interval: Interval = HEALTHY) -> list[Output]:
        self.now += 1.0
        self.raw = RawStats(
            timestamp=self.now * 1000,
            codec_name="PCMU",
            rtt=interval.rtt,
            jitter=interval.jitter,
            packets_lost=self.raw.packets_lost + interval.lost,
            packets_received=self.raw.packets_received + interval.received,
            bytes_received=self.raw.bytes_received + interval.bytes_in,
            packets_sent=self.raw.packets_sent + interval.sent,
            bytes_sent=self.raw.bytes_sent + interval.bytes_out,
        )
        outputs = self.monitor.process(self.raw, self.now)
        self.samples.append(sample_of(outputs))
        return outputs

    def run(self, count: int, interval: Interval = HEALTHY) -> list[list[Output]]:
        return [self.tick(interval) for _ in range(count)]


def events(outputs: Sequence[Output]) -> list[Warning | WarningCleared]:
    return [out for out in outputs if not isinstance(out, Sample)]


def names(outputs: Sequence[Output]) -> list[str]:
    return [
        f"{'+' if isinstance(out, Warning) else '-'}{out.name}"
        for out in outputs
        if not isinstance(out, Sample)
    ]


def raised(outputs: Sequence[Output]) -> list[Warning]:
    return [out for out in outputs if isinstance(out, Warning)]


def only_warning(outputs: Sequence[Output]) -> Warning:
    found = events(outputs)
    assert len(found) == 1 and isinstance(found[0], Warning), found
    return found[0]


def sample_of(outputs: Sequence[Output]) -> RTCSample:
    last = outputs[-1]
    assert isinstance(last, Sample)
    return last.sample


# --- samples ---------------------------------------------------------------------------


def test_each_report_gives_one_sample_last_and_healthy_calls_raise_nothing() -> None:
    feed = Feed()
    for second in range(1, 31):
        outputs = feed.tick()
        assert sum(isinstance(out, Sample) for out in outputs) == 1
        assert names(outputs) == [], second
        sample = sample_of(outputs)
        assert sample.timestamp == second * 1000
        assert sample.bytes_received == 8_000 and sample.packets_sent == 50
        assert sample.codec_name == "PCMU"
    assert feed.monitor.last_sample is not None
    assert feed.monitor.last_sample.totals.bytes_sent == 30 * 8_000


def test_first_sample_has_no_mos_and_later_ones_do() -> None:
    feed = Feed()
    assert sample_of(feed.tick()).mos is None
    assert sample_of(feed.tick()).mos == calculate_mos(50.0, 5.0, 0.0)


def test_rtt_missing_in_a_report_is_carried_from_the_previous_sample() -> None:
    feed = Feed()
    feed.tick(Interval(rtt=80.0))
    sample = sample_of(feed.tick(Interval(rtt=None)))
    assert sample.rtt == 80.0
    assert sample.mos == calculate_mos(80.0, 5.0, 0.0)


def test_volumes_are_averaged_per_interval_and_not_reused() -> None:
    """Checklist 259: (100,150),(200,250),(300,350) -> 200/250, then only new volumes."""
    feed = Feed()
    for levels in ((100, 150), (200, 250), (300, 350)):
        feed.monitor.add_volume(*levels)
    first = sample_of(feed.tick())
    assert (first.audio_input_level, first.audio_output_level) == (200, 250)
    for levels in ((400, 450), (500, 550), (600, 650)):
        feed.monitor.add_volume(*levels)
    second = sample_of(feed.tick())
    assert (second.audio_input_level, second.audio_output_level) == (500, 550)
    third = sample_of(feed.tick())
    assert (third.audio_input_level, third.audio_output_level) == (0, 0)


# --- count thresholds (max / min) ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "stat", "limit", "bad", "at_limit"),
    [
        ("high-rtt", "rtt", 400, Interval(rtt=401.0), Interval(rtt=400.0)),
        ("high-jitter", "jitter", 30, Interval(jitter=31.0), Interval(jitter=30.0)),
        (
            "high-packet-loss",
            "packetsLostFraction",
            1,
            Interval(received=98, lost=2),
            Interval(received=99, lost=1),
        ),
    ],
)
def test_max_raises_on_the_third_sample_above_and_never_at_the_limit(
    name: str, stat: str, limit: float, bad: Interval, at_limit: Interval
) -> None:
    """Checklist 262: 3 samples above raise once with the window; at the limit nothing."""
    feed = Feed()
    assert [names(out) for out in feed.run(2, bad)] == [[], []]
    outputs = feed.tick(bad)
    warning = only_warning(outputs)
    assert warning.name == name
    assert warning.data.name == stat
    assert warning.data.threshold == ThresholdData(name="max", value=limit)
    assert warning.data.samples == tuple(feed.samples)  # the three samples seen so far
    assert warning.data.values is not None and len(warning.data.values) == 3
    assert all(value > limit for value in warning.data.values)
    assert feed.monitor.has_active_warning(stat, "max")
    assert [names(out) for out in feed.run(5, bad)] == [[]] * 5  # not raised twice

    quiet = Feed()
    assert [names(out) for out in quiet.run(12, at_limit)] == [[]] * 12


def test_max_counts_crossings_anywhere_in_the_last_10_samples() -> None:
    feed = Feed()
    spikes = {1, 5, 9}
    raised_at = [
        second
        for second in range(1, 12)
        if names(feed.tick(Interval(rtt=500.0) if second in spikes else HEALTHY))
    ]
    assert raised_at == [9]

    spread = Feed()
    spread_spikes = {1, 6, 11}  # 1 has left the 10-sample window when 11 arrives
    found = [
        names(spread.tick(Interval(rtt=500.0) if second in spread_spikes else HEALTHY))
        for second in range(1, 13)
    ]
    assert found == [[]] * 12


def test_high_rtt_clears_when_the_window_is_clean_and_5_s_have_passed() -> None:
    feed = Feed()
    feed.run(3, Interval(rtt=450.0))  # raised at t = 3
    cleared = [(second, names(feed.tick())) for second in range(4, 16)]
    # Sample 3 leaves the 10-sample window at sample 13.
    assert [second for second, found in cleared if found] == [13]
    assert dict(cleared)[13] == ["-high-rtt"]
    assert not feed.monitor.has_active_warning("rtt", "max")


def test_high_jitter_and_high_packet_loss_clear_after_10_clean_samples() -> None:
    feed = Feed()
    bad = Interval(jitter=40.0, received=98, lost=2)  # 2 %: the 7-sample mean stays below 3
    raised = feed.run(3, bad)
    assert names(raised[2]) == ["+high-jitter", "+high-packet-loss"]
    cleared = [(second, names(feed.tick())) for second in range(4, 16)]
    assert [(second, found) for second, found in cleared if found] == [
        (13, ["-high-jitter", "-high-packet-loss"])
    ]


def test_low_mos_waits_for_the_null_first_sample_to_leave_the_window() -> None:
    # rtt 400, jitter 30 and 1 % loss sit exactly at their own limits, yet MOS < 3.
    poor = Interval(rtt=400.0, jitter=30.0, received=99, lost=1)
    assert (calculate_mos(400.0, 30.0, 1.0) or 99) < 3
    feed = Feed()
    found = [names(out) for out in feed.run(11, poor)]
    assert found == [[]] * 10 + [["+low-mos"]]
    assert names(feed.tick(poor)) == []  # not raised a second time


def test_low_mos_payload_and_clear() -> None:
    poor = Interval(rtt=400.0, jitter=30.0, received=99, lost=1)
    feed = Feed()
    outputs = feed.run(11, poor)[-1]
    warning = only_warning(outputs)
    assert warning.data.name == "mos"
    assert warning.data.threshold == ThresholdData(name="min", value=3)
    assert warning.data.values is not None and len(warning.data.values) == 10
    assert all(value < 3 for value in warning.data.values)
    cleared = [(second, names(feed.tick())) for second in range(12, 25)]
    assert [(second, found) for second, found in cleared if found] == [(21, ["-low-mos"])]


def test_mos_at_the_limit_does_not_count() -> None:
    monitor = StatsMonitor({"mos": ThresholdOption(min=calculate_mos(50.0, 5.0, 0.0))})
    feed = Feed(monitor)
    assert [names(out) for out in feed.run(15)] == [[]] * 15


@pytest.mark.parametrize(
    ("name", "stat", "silent"),
    [
        ("low-bytes-received", "bytesReceived", Interval(received=0, bytes_in=0)),
        ("low-bytes-sent", "bytesSent", Interval(sent=0, bytes_out=0)),
    ],
)
def test_low_bytes_raise_after_3_empty_seconds_and_clear_5_s_later(
    name: str, stat: str, silent: Interval
) -> None:
    assert name in LOW_BYTES_WARNING_NAMES
    feed = Feed()
    feed.run(5)
    assert [names(out) for out in feed.run(2, silent)] == [[], []]  # t = 6, 7
    warning = only_warning(feed.tick(silent))  # t = 8
    assert warning.name == name
    assert warning.data.name == stat
    assert warning.data.threshold == ThresholdData(name="min", value=1)
    assert warning.data.values == (0, 0, 0)
    # Bytes flow again at t = 9: a clear is due but held until t = 8 + 5.
    resumed = [(second, names(feed.tick())) for second in range(9, 16)]
    assert [(second, found) for second, found in resumed if found] == [(13, [f"-{name}"])]


def test_low_bytes_clear_with_any_bytes_in_the_last_3_samples() -> None:
    feed = Feed()
    silent = Interval(received=0, bytes_in=0)
    feed.run(8, silent)  # raised at t = 3, old enough to clear from t = 8
    outputs = feed.tick(Interval(received=1, bytes_in=1))  # t = 9: one of 3 has bytes
    assert names(outputs) == ["-low-bytes-received"]
    assert names(feed.tick(silent)) == []  # 2 of 3 below: neither raise nor clear
    assert names(feed.tick(silent)) == []
    assert names(feed.tick(silent)) == ["+low-bytes-received"]  # 3 of 3 again


# --- average threshold -----------------------------------------------------------------


def test_high_packets_lost_fraction_needs_7_samples_and_clears_at_1_percent() -> None:
    feed = Feed()
    lossy = Interval(received=95, lost=5)  # 5 %
    found = [names(out) for out in feed.run(7, lossy)]
    assert found == [[], [], ["+high-packet-loss"], [], [], [], ["+high-packets-lost-fraction"]]
    assert raised(feed.tick(lossy) + feed.tick(lossy)) == []  # active: not raised again

    fresh = Feed()
    outputs = fresh.run(7, lossy)[-1]
    (average,) = [w for w in raised(outputs) if w.name == "high-packets-lost-fraction"]
    assert average.data.threshold == ThresholdData(name="maxAverage", value=3)
    assert average.data.values == pytest.approx([5.0] * 7)
    assert average.data.samples is not None and len(average.data.samples) == 7

    # Clean seconds from t = 8: the 7-sample mean is 30/7, 25/7, ... 10/7 (no clear,
    # between 1 and 3), then 5/7 at t = 13.
    cleared = [(second, names(fresh.tick())) for second in range(8, 18)]
    assert [(second, found) for second, found in cleared if found] == [
        (13, ["-high-packets-lost-fraction"]),
        (17, ["-high-packet-loss"]),
    ]


def test_average_loss_of_exactly_3_percent_raises_no_average_warning() -> None:
    feed = Feed()
    found = [names(out) for out in feed.run(12, Interval(received=97, lost=3))]
    assert ["+high-packets-lost-fraction"] not in found
    assert found[2] == ["+high-packet-loss"]


def test_custom_max_average_raises_once_with_window_and_clears_once() -> None:
    """Checklist 264: jitter 0, 10, ... 60 raises maxAverage 3; back at 0 it clears once."""
    monitor = StatsMonitor(
        {"jitter": ThresholdOption(max_average=3, clear_value=1, sample_count=7)}
    )
    feed = Feed(monitor)
    outputs = [out for step in range(7) for out in feed.tick(Interval(jitter=step * 10.0))]
    (warning,) = raised(outputs)
    assert warning.data.threshold == ThresholdData(name="maxAverage", value=3)
    assert warning.data.values == (0, 10, 20, 30, 40, 50, 60)
    assert warning.data.samples == tuple(feed.samples)
    later = [out for _ in range(10) for out in feed.tick(Interval(jitter=0.0))]
    assert [out for out in later if isinstance(out, WarningCleared)] == [
        WarningCleared("high-jitter")
    ]
    assert raised(later) == []


def test_array_thresholds_raise_only_those_crossed() -> None:
    """Checklist 265: max 1 plus maxAverage 3 on one stat."""
    both = (ThresholdOption(max=1), ThresholdOption(clear_value=1, max_average=3, sample_count=7))
    feed = Feed(StatsMonitor({"jitter": both}))
    found = [w for out in feed.run(10, Interval(jitter=2.0)) for w in events(out)]
    assert [(w.name, w.data.to_dict()["threshold"], w.data.values) for w in raised(found)] == [
        ("high-jitter", {"name": "max", "value": 1}, (2.0, 2.0, 2.0))
    ]
    assert len(found) == 1
    feed = Feed(StatsMonitor({"jitter": both}))
    found = [w for out in feed.run(10, Interval(jitter=5.0)) for w in events(out)]
    assert [(w.data.threshold.name, w.data.values) for w in raised(found)] == [
        ("max", (5.0,) * 3),
        ("maxAverage", (5.0,) * 7),
    ]
    assert len(found) == 2


# --- custom count options and streaks --------------------------------------------------


def test_custom_raise_count_and_sample_count() -> None:
    """Checklist 263."""
    feed = Feed(StatsMonitor({"jitter": ThresholdOption(max=30, raise_count=2)}))
    assert [names(out) for out in feed.run(2, Interval(jitter=31.0))] == [[], ["+high-jitter"]]
    never = Feed(StatsMonitor({"jitter": ThresholdOption(max=30, sample_count=3, raise_count=4)}))
    assert [names(out) for out in never.run(6, Interval(jitter=31.0))] == [[]] * 6


def test_max_duration_raises_on_a_streak_with_its_length() -> None:
    """Checklist 260: maxDuration 2 raises after 3 identical samples with value 2."""
    feed = Feed(StatsMonitor({"jitter": ThresholdOption(max_duration=2)}))
    found = feed.run(3, Interval(jitter=30.0))
    assert [names(out) for out in found[:2]] == [[], []]
    warning = only_warning(found[2])
    assert warning.name == "constant-jitter"
    assert warning.data.value == 2
    assert warning.data.threshold == ThresholdData(name="maxDuration", value=2)

    changing = Feed(StatsMonitor({"jitter": ThresholdOption(max_duration=2)}))
    changed = [names(changing.tick(Interval(jitter=30.0 - step))) for step in range(6)]
    assert changed == [[]] * 6


def test_max_duration_on_audio_level_uses_constant_audio_name() -> None:
    """Checklist 261: constant levels raise constant-audio-input-level; varying ones do not."""
    option = ThresholdOption(max_duration=2, sample_count=2)
    feed = Feed(StatsMonitor({"audioInputLevel": option}))
    found: list[str] = []
    for _ in range(3):
        for _ in range(5):
            feed.monitor.add_volume(10, 10)
        found += names(feed.tick())
    assert found == ["+constant-audio-input-level"]

    varying = Feed(StatsMonitor({"audioInputLevel": option}))
    found = []
    for levels in ([10, 150, 300, 400, 500], [400, 10, 800, 900, 1000], [50, 100, 1000, 500, 10]):
        for level in levels:
            varying.monitor.add_volume(level, level)
        found += names(varying.tick())
    assert found == []


# --- constant audio (standard deviation) -----------------------------------------------


def _tick_with_levels(feed: Feed, inputs: Sequence[float], outputs: Sequence[float]) -> list[str]:
    for input_level, output_level in zip(inputs, outputs, strict=True):
        feed.monitor.add_volume(input_level, output_level)
    return names(feed.tick())


def test_constant_input_level_raises_after_10_sets_with_std_dev_value() -> None:
    feed = Feed()
    varied = [0, 5_000, 10_000, 5_000, 0]
    found = [_tick_with_levels(feed, [1_000] * 5, varied) for _ in range(10)]
    assert found[:9] == [[]] * 9
    assert found[9] == ["+constant-audio-input-level"]
    assert feed.monitor.has_active_warning("audioInputLevel", "minStandardDeviation")


def test_constant_level_payload_and_both_directions() -> None:
    feed = Feed()
    outputs: list[Output] = []
    for _ in range(10):
        for _ in range(20):  # 50 ms readings
            feed.monitor.add_volume(1_000, 2_000)
        outputs = feed.tick()
    warnings = raised(outputs)
    assert [w.name for w in warnings] == [
        "constant-audio-input-level",
        "constant-audio-output-level",
    ]
    assert len(events(outputs)) == 2
    assert warnings[0].data.to_dict() == {
        "value": 0.0,
        "name": "audioInputLevel",
        "threshold": {"name": "minStandardDeviation", "value": 327.67},
    }


@pytest.mark.parametrize(("spread", "raised"), [(327.0, True), (328.0, False)])
def test_std_dev_limit_is_327_67(spread: float, raised: bool) -> None:
    feed = Feed()
    levels = [10_000 - spread, 10_000 + spread] * 3  # population std dev == spread
    found = [_tick_with_levels(feed, levels, [0, 20_000] * 3) for _ in range(10)]
    assert found[9] == (["+constant-audio-input-level"] if raised else [])


def test_constant_level_is_judged_on_every_reading_of_the_last_10_intervals() -> None:
    feed = Feed()
    loud = [0, 20_000] * 2
    # One varied interval then 9 constant ones: the window holds the varied one.
    found = [_tick_with_levels(feed, loud, loud)]
    found += [_tick_with_levels(feed, [500] * 4, loud) for _ in range(9)]
    assert found == [[]] * 10
    # It leaves the window with the next interval.
    assert _tick_with_levels(feed, [500] * 4, loud) == ["+constant-audio-input-level"]


def test_constant_level_clears_when_levels_vary_5_s_after_raising() -> None:
    feed = Feed()
    loud = [0, 20_000] * 2
    for _ in range(10):
        _tick_with_levels(feed, [700] * 4, loud)  # raised at t = 10
    found = [(int(feed.now) + 1, _tick_with_levels(feed, loud, loud)) for _ in range(6)]
    assert [(second, f) for second, f in found if f] == [(15, ["-constant-audio-input-level"])]


def test_no_levels_at_all_raise_no_constant_audio_warning() -> None:
    feed = Feed()
    assert [names(out) for out in feed.run(15)] == [[]] * 15


# --- enabling, disabling ---------------------------------------------------------------


def test_disabled_warnings_raise_nothing_then_fire_once_when_enabled() -> None:
    """Checklist 257."""
    feed = Feed()
    feed.monitor.disable_warnings()
    assert not feed.monitor.warnings_enabled
    assert [names(out) for out in feed.run(5, Interval(rtt=900.0))] == [[]] * 5
    feed.monitor.enable_warnings()
    found = [names(out) for out in feed.run(4, Interval(rtt=900.0))]
    assert found == [["+high-rtt"], [], [], []]


def test_disabling_forgets_active_warnings_silently() -> None:
    feed = Feed()
    feed.run(3, Interval(rtt=900.0))
    assert feed.monitor.has_active_warning("rtt", "max")
    feed.monitor.disable_warnings()
    assert not feed.monitor.has_active_warning("rtt", "max")
    assert names(feed.tick(Interval(rtt=900.0))) == []  # no clear either
    feed.monitor.enable_warnings()
    assert names(feed.tick(Interval(rtt=900.0))) == ["+high-rtt"]  # raised afresh


def test_samples_keep_coming_while_warnings_are_disabled() -> None:
    feed = Feed()
    feed.monitor.disable_warnings()
    feed.monitor.add_volume(300, 600)
    outputs = feed.tick()
    assert outputs == [Sample(sample_of(outputs))]
    assert sample_of(outputs).audio_input_level == 300


def test_warnings_are_enabled_5000_ms_after_the_call_is_created() -> None:
    """Checklist 115: enabled at 5000 ms, not yet at 4990 ms."""
    assert WARNINGS_ENABLED_AFTER_MS == 5000
    created = 100.0
    assert warnings_enabled_at(created) == pytest.approx(105.0)
    assert created + 4.990 < warnings_enabled_at(created)


def test_outputs_put_warnings_before_their_sample() -> None:
    feed = Feed()
    outputs = feed.run(3, Interval(rtt=900.0))[-1]
    assert [type(out) for out in outputs] == [Warning, Sample]


def test_cadence_and_timeout_constants_are_the_js_values() -> None:
    assert (SAMPLE_INTERVAL_MS, VOLUME_INTERVAL_MS, WARNING_TIMEOUT_MS) == (1000, 50, 5000)
    assert DEFAULT_THRESHOLDS["rtt"] == ThresholdOption(max=400)
    assert DEFAULT_THRESHOLDS["jitter"] == ThresholdOption(max=30)
    assert DEFAULT_THRESHOLDS["mos"] == ThresholdOption(min=3)


def test_unknown_stat_is_rejected() -> None:
    with pytest.raises(ValueError, match="codec"):
        StatsMonitor({"codec": ThresholdOption(max=1)})


# --- names and app filtering -----------------------------------------------------------


@pytest.mark.parametrize(
    ("stat", "kind", "name"),
    [
        ("rtt", "max", "high-rtt"),
        ("jitter", "max", "high-jitter"),
        ("jitter", "maxAverage", "high-jitter"),
        ("mos", "min", "low-mos"),
        ("packetsLostFraction", "max", "high-packet-loss"),
        ("packetsLostFraction", "maxAverage", "high-packets-lost-fraction"),
        ("bytesReceived", "min", "low-bytes-received"),
        ("bytesSent", "min", "low-bytes-sent"),
        ("audioInputLevel", "minStandardDeviation", "constant-audio-input-level"),
        ("audioInputLevel", "maxDuration", "constant-audio-input-level"),
        ("audioOutputLevel", "minStandardDeviation", "constant-audio-output-level"),
    ],
)
def test_warning_names(stat: str, kind: str, name: str) -> None:
    assert warning_name(stat, kind) == name


def test_app_sees_neither_output_level_nor_muted_input_level_warnings() -> None:
    assert not is_emitted_to_app("constant-audio-output-level", muted=False)
    assert not is_emitted_to_app("constant-audio-input-level", muted=True)
    assert is_emitted_to_app("constant-audio-input-level", muted=False)
    assert is_emitted_to_app("high-rtt", muted=True)


def test_warning_data_to_dict_has_the_js_shape() -> None:
    feed = Feed()
    outputs = feed.run(3, Interval(rtt=500.0))[-1]
    warning = only_warning(outputs)
    data = warning.data.to_dict()
    assert set(data) == {"values", "samples", "name", "threshold"}
    assert data["name"] == "rtt"
    assert data["threshold"] == {"name": "max", "value": 400}
    assert data["values"] == [500.0, 500.0, 500.0]
    assert data["samples"] == [sample.to_dict() for sample in feed.samples]

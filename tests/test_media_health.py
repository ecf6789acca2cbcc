"""Media loss detection, sans I/O: packet counts and time in, events out."""

from __future__ import annotations

import pytest

from softphone.core.media_health import HealthEvent, MediaHealth

pytestmark = pytest.mark.pure


def test_steady_packets_raise_nothing() -> None:
    health = MediaHealth()
    assert [health.update(t * 0.5, t * 25) for t in range(20)] == [None] * 20


def test_silence_past_the_limit_is_lost_then_recovered() -> None:
    health = MediaHealth(lost_after_s=2.5)
    health.update(0.0, 100)
    assert health.update(2.4, 100) is None
    assert health.update(2.5, 100) is HealthEvent.LOST and health.is_lost
    assert health.update(3.0, 100) is None  # reported once
    assert health.update(3.5, 101) is HealthEvent.RECOVERED and not health.is_lost
    assert health.update(4.0, 150) is None


def test_gives_up_thirty_seconds_after_loss_and_then_stays_quiet() -> None:
    health = MediaHealth(lost_after_s=2.0, give_up_after_s=30.0)
    health.update(0.0, 10)
    assert health.update(2.0, 10) is HealthEvent.LOST
    assert health.update(31.9, 10) is None
    assert health.update(32.0, 10) is HealthEvent.GIVE_UP
    assert health.update(40.0, 99) is None


def test_first_update_only_sets_the_baseline() -> None:
    health = MediaHealth()
    assert health.update(100.0, 0) is None
    assert health.update(102.6, 0) is HealthEvent.LOST
    health.reset()
    assert health.update(103.0, 0) is None

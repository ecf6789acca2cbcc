"""EventEmitter, DeviceOptions and the logLevel mapping."""

from __future__ import annotations

import logging

import pytest

from softphone.core.errors import InvalidArgumentError
from softphone.core.events import EventEmitter
from softphone.core.log import SILENT, TRACE, apply_log_level, to_logging_level
from softphone.core.options import DeviceOptions

pytestmark = pytest.mark.pure


def test_emitter_order_once_prepend_off_and_counts() -> None:
    em = EventEmitter()
    calls: list[str] = []

    def first(x: int) -> None:
        calls.append(f"first{x}")

    em.on("e", first)
    em.once("e", lambda x: calls.append(f"once{x}"))
    em.prepend_listener("e", lambda x: calls.append(f"pre{x}"))
    assert em.listener_count("e") == 3
    assert em.emit("e", 1) is True
    em.emit("e", 2)
    assert calls == ["pre1", "first1", "once1", "pre2", "first2"]
    em.off("e", first)
    assert em.listener_count("e") == 1
    em.remove_all_listeners()
    assert em.emit("e", 3) is False and em.event_names() == []


def test_emitter_decorator_and_max_listeners(caplog: pytest.LogCaptureFixture) -> None:
    em = EventEmitter()
    assert EventEmitter.default_max_listeners == 10
    em.set_max_listeners(1)
    got = []

    @em.on("x")
    def handler() -> None:
        got.append(1)

    with caplog.at_level(logging.WARNING, logger="softphone.events"):
        em.on("x", lambda: None)
    assert "possible EventEmitter leak" in caplog.text
    em.emit("x")
    assert got == [1] and em.get_max_listeners() == 1


def test_error_without_listener_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="softphone.events"):
        assert EventEmitter().emit("error", RuntimeError("boom")) is False
    assert "boom" in caplog.text


def test_listener_exception_does_not_stop_others() -> None:
    em = EventEmitter()
    got = []
    em.on("e", lambda: 1 / 0)
    em.on("e", lambda: got.append("ok"))
    em.emit("e")
    assert got == ["ok"]


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (0, TRACE),
        (1, logging.DEBUG),
        (2, logging.INFO),
        (3, logging.WARNING),
        (4, logging.ERROR),
        (5, SILENT),
        ("TRACE", TRACE),
        ("Warn", logging.WARNING),
        ("silent", SILENT),
        ("nonsense", logging.ERROR),
        (9, logging.ERROR),
        (None, logging.ERROR),
    ],
)
def test_chk_015_log_level_mapping(value: object, level: int) -> None:
    assert to_logging_level(value) == level


def test_apply_log_level_sets_the_softphone_logger() -> None:
    apply_log_level("debug")
    assert logging.getLogger("softphone").level == logging.DEBUG
    apply_log_level("error")


def test_options_accept_camel_case_and_merge_additively() -> None:
    first = DeviceOptions.merged(None, {"logLevel": 1, "codecPreferences": ["opus", "pcmu"]})
    assert first.log_level == 1 and first.codec_preferences == ("opus", "pcmu")
    second = DeviceOptions.merged(first, {"edge": ["ashburn", "dublin"]})
    assert second.log_level == 1 and second.edge == ("ashburn", "dublin")  # chk 11
    assert DeviceOptions.merged(second, {"RTCPeerConnection": print}).rtc_peer_connection is print
    assert DeviceOptions().rtc_configuration == {"iceServers": []}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"edge": 5}, "edge"),
        ({"edge": {"a": 1}}, "edge"),
        ({"codecPreferences": ["g729"]}, "unsupported codecs"),
        ({"tokenRefreshMs": -1}, "token_refresh_ms"),
        ({"maxCallSignalingTimeoutMs": "10"}, "max_call_signaling_timeout_ms"),
        ({"sounds": {"ring": "x.wav"}}, "Unknown sound"),
        ({"logLevle": 1}, "Did you mean `log_level`"),
        ({"getUserMedia": 5}, "callable"),
    ],
)
def test_bad_options_raise_clear_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        DeviceOptions.merged(None, options)

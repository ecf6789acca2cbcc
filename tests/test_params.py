"""Tests for softphone.signaling.params: custom parameters, ids, reconnectTimeout."""

from __future__ import annotations

import math
import random
import re
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softphone.signaling.params import (
    MAX_PARAMS_BYTES,
    UNDEFINED,
    call_sid,
    decode_params,
    encode_params,
    encode_params_for_client,
    encode_uri_component,
    js_string,
    js_truthy,
    params_too_long,
    reconnect_timeout_seconds,
    reconnect_window_s,
    temp_call_sid,
    voice_event_sid,
)

pytestmark = pytest.mark.pure

# --- encodeURIComponent ------------------------------------------------------------


def test_unreserved_characters_are_kept() -> None:
    unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()"
    assert encode_uri_component(unreserved) == unreserved


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (" ", "%20"),
        ("+", "%2B"),
        ("&=?#/:;,@$%", "%26%3D%3F%23%2F%3A%3B%2C%40%24%25"),
        ('"<>[]{}|\\^`', "%22%3C%3E%5B%5D%7B%7D%7C%5C%5E%60"),
        ("é", "%C3%A9"),
        ("€", "%E2%82%AC"),
        ("😀", "%F0%9F%98%80"),
        ("\n", "%0A"),
        ("client:bob", "client%3Abob"),
    ],
)
def test_encode_uri_component_matches_js(raw: str, encoded: str) -> None:
    assert encode_uri_component(raw) == encoded


def test_encode_uri_component_lone_surrogate_raises() -> None:
    with pytest.raises(ValueError):
        encode_uri_component("\ud800")


# --- js_string / js_truthy ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (UNDEFINED, "undefined"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (123, "123"),
        (-7, "-7"),
        (1.5, "1.5"),
        (1.0, "1"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (123.456, "123.456"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1.5e300, "1.5e+300"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.25e-7, "1.25e-7"),
        (0.1 + 0.2, "0.30000000000000004"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        ("", ""),
        ("abc", "abc"),
        ([1, None, "a", UNDEFINED], "1,,a,"),
        ({"a": 1}, "[object Object]"),
    ],
)
def test_js_string(value: object, text: str) -> None:
    assert js_string(value) == text


@pytest.mark.parametrize("value", [None, UNDEFINED, False, 0, 0.0, -0.0, math.nan, ""])
def test_js_falsy(value: object) -> None:
    assert js_truthy(value) is False


@pytest.mark.parametrize("value", [True, 1, -1, 0.5, "0", " ", [], {}, (), object()])
def test_js_truthy(value: object) -> None:
    assert js_truthy(value) is True


def test_undefined_sentinel() -> None:
    assert repr(UNDEFINED) == "UNDEFINED"
    assert not UNDEFINED
    assert UNDEFINED is not None


# --- outgoing params (§5.1) ----------------------------------------------------------


def test_chk_123_params_test_vector() -> None:
    params: dict[str, object] = {
        "To": "foo",
        "a": UNDEFINED,
        "b": True,
        "c": False,
        "d": "",
        "e": 123,
        "f": "123",
        "g": None,
        "h": "undefined",
        "i": "null",
        "j": 0,
        "k": "0",
        "l": "a$b&c?d=e",
    }
    assert encode_params(params) == (
        "To=foo&a=undefined&b=true&c=false&d=&e=123&f=123&g=null"
        "&h=undefined&i=null&j=0&k=0&l=a%24b%26c%3Fd%3De"
    )


def test_transcript_extra_params_example() -> None:
    params = {"To": "client:bob", "Extra": "a b&c=d", "n": "1"}
    assert encode_params(params) == "To=client%3Abob&Extra=a%20b%26c%3Dd&n=1"


def test_encode_params_encodes_keys_and_keeps_order() -> None:
    assert encode_params({"z": 1, "a b": "x", "k=": "&"}) == "z=1&a%20b=x&k%3D=%26"


def test_encode_params_empty() -> None:
    assert encode_params({}) == ""


# --- incoming params (§5.2) --------------------------------------------------------------


def test_chk_074_simple_decode() -> None:
    assert decode_params("foo=bar") == {"foo": "bar"}


def test_decode_wire_example() -> None:
    assert decode_params("foo=bar&hello=world%20x") == {"foo": "bar", "hello": "world x"}


def test_decode_empty_string() -> None:
    assert decode_params("") == {}


def test_decode_plus_becomes_space_and_escapes_decode() -> None:
    assert decode_params("a=1+2%2B3&b=%E2%82%AC") == {"a": "1 2+3", "b": "€"}


def test_decode_keys_are_literal() -> None:
    assert decode_params("a%20b=1&c+d=2") == {"a%20b": "1", "c+d": "2"}


def test_decode_key_with_spaces_and_duplicates_last_wins() -> None:
    """Twilio's integration test: raw keys with spaces; a duplicate keeps the last value."""
    decoded = decode_params("custom + param=x&duplicate=1&other=y&duplicate=2")
    assert decoded == {"custom + param": "x", "duplicate": "2", "other": "y"}
    assert list(decoded) == ["custom + param", "duplicate", "other"]


def test_decode_missing_value_and_second_equals() -> None:
    assert decode_params("a&b=&c=1=2=3") == {"a": "", "b": "", "c": "1"}


def test_decode_skips_empty_keys() -> None:
    assert decode_params("=x&&a=1&=") == {"a": "1"}


def test_decode_integer_keys_come_first_like_a_js_object() -> None:
    decoded = decode_params("b=1&10=x&2=y&01=z&a=2")
    assert list(decoded) == ["2", "10", "b", "01", "a"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a=%", {"a": "%"}),
        ("a=%zz+1", {"a": "%zz 1"}),
        ("a=%C3", {"a": "%C3"}),
        ("a=%C3%28", {"a": "%C3%28"}),
        ("a=%ED%A0%80", {"a": "%ED%A0%80"}),  # UTF-8-encoded surrogate
        ("a=%E9&b=ok%20", {"a": "%E9", "b": "ok "}),
    ],
)
def test_decode_tolerates_malformed_escapes(raw: str, expected: dict[str, str]) -> None:
    """JS would throw URIError; we keep the value as sent (only + → space)."""
    assert decode_params(raw) == expected


# --- gateway encoding that round-trips --------------------------------------------------

TRICKY_VALUES = [
    "",
    " ",
    "+",
    "a+b",
    "a b",
    "&",
    "=",
    "%",
    "%20",
    "%zz",
    "a=b&c=d",
    "100%",
    "é€😀",
    "line\nbreak",
    "'!*()~",
    "?#/:;,@$",
    "undefined",
    "null",
]


def test_round_trip_hand_list() -> None:
    params = {f"k{i}": v for i, v in enumerate(TRICKY_VALUES)}
    params["custom + param"] = "x y"
    params["caf\u00e9 key"] = "v"
    encoded = encode_params_for_client(params)
    decoded = decode_params(encoded)
    assert decoded == params
    assert list(decoded) == list(params)


@given(
    st.dictionaries(
        st.text(min_size=1).filter(lambda k: not set(k) & set("&=%")),
        st.text(),  # hypothesis text never contains lone surrogates
        max_size=8,
    )
)
def test_round_trip_property(params: dict[str, str]) -> None:
    assert decode_params(encode_params_for_client(params)) == params


def test_encode_for_client_format() -> None:
    assert encode_params_for_client({"foo": "bar", "hello": "world x"}) == (
        "foo=bar&hello=world%20x"
    )
    assert encode_params_for_client({}) == ""


@pytest.mark.parametrize("key", ["", "a&b", "a=b", "100%", "%20"])
def test_encode_for_client_rejects_unsafe_keys(key: str) -> None:
    with pytest.raises(ValueError):
        encode_params_for_client({key: "v"})


# --- size limit ------------------------------------------------------------------------


def test_params_size_limit_counts_utf8_bytes() -> None:
    assert MAX_PARAMS_BYTES == 800
    assert params_too_long("a" * 800) is False
    assert params_too_long("a" * 801) is True
    assert params_too_long("é" * 400) is False  # 800 bytes
    assert params_too_long("é" * 401) is True


# --- reconnectTimeout (checklist 204) -------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "seconds"),
    [
        (30_000, 30),
        (10_000, 10),
        (0, 0),
        ("foo", 0),
        (None, 0),
        (UNDEFINED, 0),
        (-123, 0),
        (40_000, 30),
    ],
)
def test_chk_204_reconnect_timeout_table(ms: object, seconds: int) -> None:
    assert reconnect_timeout_seconds(ms) == seconds


@pytest.mark.parametrize(
    ("ms", "seconds"),
    [
        (1, 1),
        (999, 1),
        (1000, 1),
        (1001, 2),
        (29_001, 30),
        (1500.0, 2),
        (0.0, 0),
        (-0.5, 0),
        (math.nan, 0),
        (math.inf, 30),
        (10**30, 30),
        (True, 0),
        (False, 0),
        ("30000", 0),
    ],
)
def test_reconnect_timeout_edges(ms: object, seconds: int) -> None:
    result = reconnect_timeout_seconds(ms)
    assert result == seconds
    assert type(result) is int


# --- identifiers (§4, checklist 296) --------------------------------------------------------

TJS_RE = re.compile(r"TJS[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_temp_call_sid_format() -> None:
    sids = {temp_call_sid() for _ in range(50)}
    assert len(sids) == 50
    for sid in sids:
        assert len(sid) == 39
        assert TJS_RE.fullmatch(sid), sid


def test_temp_call_sid_with_rng_is_reproducible() -> None:
    a = temp_call_sid(random.Random(42))
    b = temp_call_sid(random.Random(42))
    assert a == b
    assert TJS_RE.fullmatch(a)
    assert temp_call_sid(random.Random(43)) != a


def test_chk_296_voice_event_sid_format() -> None:
    sids = {voice_event_sid() for _ in range(50)}
    assert len(sids) == 50
    for sid in sids:
        assert re.fullmatch(r"KX[0-9a-f]{32}", sid), sid


def test_chk_296_voice_event_sid_has_no_weak_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_source(n: int | None = None) -> bytes:
        raise NotImplementedError("no secure random source")

    monkeypatch.setattr(secrets, "token_bytes", no_source)
    with pytest.raises(NotImplementedError):
        voice_event_sid()


def test_call_sid_format() -> None:
    sids = {call_sid() for _ in range(50)}
    assert len(sids) == 50
    for sid in sids:
        assert re.fullmatch(r"CA[0-9a-f]{32}", sid), sid


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0), (2, 2), (30, 30), (31, 30), (10_000, 30), (-1, 0), (None, 0), (True, 0), ("5", 0)],
)
def test_the_gateway_reads_reconnect_timeout_as_seconds(value: object, seconds: int) -> None:
    # listen.reconnectTimeout is already whole seconds (the SDK converted the ms)
    assert reconnect_window_s(value) == seconds

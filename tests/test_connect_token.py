"""Connect tokens (softphone.signaling.connect_token): the JS SDK's ``connectToken`` format.

The vectors below were produced by the JS SDK's own expression,
``btoa(encodeURIComponent(JSON.stringify({customParameters, parameters,
signalingReconnectToken})))``, run in Node, so a token made by either SDK is taken by
the other.
"""

from __future__ import annotations

import base64
import json

import pytest

from softphone.core.device import parse_connect_token as device_parse_connect_token
from softphone.core.errors import InvalidArgumentError
from softphone.signaling.connect_token import (
    ConnectToken,
    ConnectTokenError,
    encode_connect_token,
    parse_connect_token,
)

pytestmark = pytest.mark.pure

JS_ASCII_TOKEN = (
    "JTdCJTIyY3VzdG9tUGFyYW1ldGVycyUyMiUzQSU3QiUyMnRvcGljJTIyJTNBJTIyYSUyMGIhKigpficlMjIlN0Ql"
    "MkMlMjJwYXJhbWV0ZXJzJTIyJTNBJTdCJTIyQ2FsbFNpZCUyMiUzQSUyMkNBMSUyMiU3RCUyQyUyMnNpZ25hbGlu"
    "Z1JlY29ubmVjdFRva2VuJTIyJTNBJTIyUlQxJTIyJTdE"
)
"""JS for ``{customParameters: {topic: "a b!*()~'"}, parameters: {CallSid: "CA1"},
signalingReconnectToken: "RT1"}``: the characters encodeURIComponent keeps are kept."""

JS_UNICODE_TOKEN = (
    "JTdCJTIyY3VzdG9tUGFyYW1ldGVycyUyMiUzQSU3QiUyMnRvcGljJTIyJTNBJTIyYmlsbGluZyUyMCUyNiUyMHNh"
    "bGVzJTJGJUMzJUJDJTIyJTdEJTJDJTIycGFyYW1ldGVycyUyMiUzQSU3QiUyMkNhbGxTaWQlMjIlM0ElMjJDQTEy"
    "MyUyMiUyQyUyMkZyb20lMjIlM0ElMjJjbGllbnQlM0FhbGljZSUyMiU3RCUyQyUyMnNpZ25hbGluZ1JlY29ubmVj"
    "dFRva2VuJTIyJTNBJTIyUlRhYmMlMkIlMkYlM0QlMjIlN0Q="
)
"""JS for ``{customParameters: {topic: "billing & sales/ü"}, parameters: {CallSid: "CA123",
From: "client:alice"}, signalingReconnectToken: "RTabc+/="}``."""


def _b64_json(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def test_encoding_is_byte_for_byte_the_js_sdks() -> None:
    token = encode_connect_token("RT1", {"CallSid": "CA1"}, {"topic": "a b!*()~'"})
    assert token == JS_ASCII_TOKEN


def test_a_js_token_with_unicode_and_reserved_characters_parses() -> None:
    parsed = parse_connect_token(JS_UNICODE_TOKEN)
    assert parsed == ConnectToken(
        reconnect_token="RTabc+/=",
        parameters={"CallSid": "CA123", "From": "client:alice"},
        custom_parameters={"topic": "billing & sales/ü"},
    )


def test_round_trip_keeps_every_part() -> None:
    parameters = {"CallSid": "CA9", "AccountSid": "AC1", "From": "client:alice"}
    custom = {"topic": "billing & sales/ü", "n": "100%"}
    token = encode_connect_token("RT+/=", parameters, custom)
    reconnect, parsed_parameters, parsed_custom = parse_connect_token(token)
    assert (reconnect, parsed_parameters, parsed_custom) == ("RT+/=", parameters, custom)


def test_missing_custom_parameters_are_an_empty_dict() -> None:
    token = _b64_json({"parameters": {"CallSid": "CA1"}, "signalingReconnectToken": "RT"})
    assert parse_connect_token(token).custom_parameters == {}


@pytest.mark.parametrize(
    "token",
    [
        "%%%not base64",
        base64.b64encode(b"\xff\xfe").decode(),  # not UTF-8
        base64.b64encode(b"{not json").decode(),
        _b64_json(["a", "list"]),
        base64.b64encode(b"[" * 100_000 + b"]" * 100_000).decode(),  # nests too deeply
    ],
)
def test_unreadable_tokens_cannot_be_parsed(token: str) -> None:
    with pytest.raises(ConnectTokenError, match=r"^Cannot parse connectToken$"):
        parse_connect_token(token)


@pytest.mark.parametrize(
    "data",
    [
        {"parameters": {}, "signalingReconnectToken": "RT"},
        {"parameters": {"CallSid": ""}, "signalingReconnectToken": "RT"},
        {"parameters": "CA1", "signalingReconnectToken": "RT"},
        {"parameters": {"CallSid": "CA1"}},
        {"parameters": {"CallSid": "CA1"}, "signalingReconnectToken": ""},
        {"parameters": {"CallSid": "CA1"}, "signalingReconnectToken": 7},
    ],
)
def test_tokens_missing_a_part_are_invalid(data: dict[str, object]) -> None:
    with pytest.raises(ConnectTokenError, match=r"^Invalid connectToken$"):
        parse_connect_token(_b64_json(data))


def test_the_device_function_raises_the_sdks_invalid_argument_error() -> None:
    assert device_parse_connect_token(JS_ASCII_TOKEN) == (
        "RT1",
        {"CallSid": "CA1"},
        {"topic": "a b!*()~'"},
    )
    with pytest.raises(InvalidArgumentError, match="Cannot parse connectToken"):
        device_parse_connect_token("%%%")
    with pytest.raises(InvalidArgumentError, match="Invalid connectToken"):
        device_parse_connect_token(_b64_json({"parameters": {}}))

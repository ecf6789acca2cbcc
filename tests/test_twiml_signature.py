"""Our webhook signatures pass the official helper's ``RequestValidator``.

An application protects its webhooks with ``twilio.request_validator``; every
request the gateway makes must validate there, for POST and GET, with and without a
port or a query string, and fail when anything signed is changed.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator

from softphone.gateway.twiml.params import status_callback_params, voice_request_params
from softphone.gateway.twiml.signature import (
    SIGNATURE_HEADER,
    compute_signature,
    signed_request,
)

pytestmark = pytest.mark.pure

TOKEN = "d2a6f8b0c4e1937a5b6c7d8e9f0a1b2c"
PARAMS = voice_request_params(
    account_sid="AC" + "1" * 32,
    call_sid="CA" + "2" * 32,
    from_="client:alice",
    to="support desk & sales",
    application_sid="AP" + "3" * 32,
    custom={"lang": "fr-FR", "note": "ünïcode ✓"},
)
URLS = [
    "https://app.example.com/voice",
    "http://127.0.0.1:8080/voice",
    "https://app.example.com:8443/twiml/voice?tenant=7&x=a%20b",
    "http://localhost/voice?flow=main",
]


@pytest.mark.parametrize("url", URLS)
def test_post_is_accepted_by_the_official_validator(url: str) -> None:
    request = signed_request(TOKEN, "POST", url, PARAMS)
    assert request.url == url
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.body is not None
    form = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
    assert form == PARAMS
    signature = request.headers[SIGNATURE_HEADER]
    assert RequestValidator(TOKEN).validate(url, form, signature)


@pytest.mark.parametrize("url", URLS)
def test_get_puts_the_params_in_the_signed_url(url: str) -> None:
    request = signed_request(TOKEN, "GET", url, PARAMS)
    assert request.body is None
    assert request.url.startswith(url + ("&" if "?" in url else "?"))
    query = dict(parse_qsl(request.url.split("?", 1)[1], keep_blank_values=True))
    assert query.items() >= PARAMS.items()
    assert RequestValidator(TOKEN).validate(request.url, {}, request.headers[SIGNATURE_HEADER])


def test_signature_matches_the_helpers_computation() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "To": "+18005551212"}
    assert compute_signature(TOKEN, url, params) == RequestValidator(TOKEN).compute_signature(
        url, params
    )
    assert compute_signature(TOKEN, url) == RequestValidator(TOKEN).compute_signature(url, {})


def test_changing_anything_signed_fails_validation() -> None:
    url = URLS[1]
    request = signed_request(TOKEN, "POST", url, PARAMS)
    signature = request.headers[SIGNATURE_HEADER]
    validator = RequestValidator(TOKEN)
    assert not RequestValidator("another-token").validate(url, PARAMS, signature)
    assert not validator.validate(url, {**PARAMS, "To": "client:mallory"}, signature)
    assert not validator.validate(url, {**PARAMS, "Extra": "1"}, signature)
    assert not validator.validate(url.replace("/voice", "/other"), PARAMS, signature)


class _MultiDict(dict[str, list[str]]):
    """What a web framework hands the validator for repeated form fields."""

    def getlist(self, name: str) -> list[str]:
        return self[name]


def test_repeated_values_are_signed_as_the_helper_validates_them() -> None:
    url = "https://app.example.com/voice"
    params = {"Tag": ["b", "a"], "CallSid": "CA1"}
    request = signed_request(TOKEN, "POST", url, params)
    assert request.body is not None
    assert parse_qsl(request.body.decode()) == [("Tag", "b"), ("Tag", "a"), ("CallSid", "CA1")]
    form = _MultiDict({"Tag": ["b", "a"], "CallSid": ["CA1"]})
    assert RequestValidator(TOKEN).validate(url, form, request.headers[SIGNATURE_HEADER])


def test_credentials_in_the_url_move_to_basic_auth_and_out_of_the_signature() -> None:
    request = signed_request(TOKEN, "POST", "https://app:s%3Acret@app.example.com:8443/v", PARAMS)
    assert request.url == "https://app.example.com:8443/v"
    assert request.headers["Authorization"] == "Basic YXBwOnM6Y3JldA=="  # app:s:cret
    assert RequestValidator(TOKEN).validate(request.url, PARAMS, request.headers[SIGNATURE_HEADER])


def test_twilios_names_win_over_custom_params() -> None:
    params = voice_request_params(
        account_sid="AC1",
        call_sid="CA1",
        from_="client:alice",
        to="bob",
        custom={"AccountSid": "ACmallory", "CallSid": "CAspoof", "color": "blue"},
    )
    assert params == {
        "AccountSid": "AC1",
        "CallSid": "CA1",
        "From": "client:alice",
        "Caller": "client:alice",
        "To": "bob",
        "Called": "bob",
        "Direction": "inbound",
        "CallStatus": "ringing",
        "ApiVersion": "2010-04-01",
        "color": "blue",
    }


def test_status_callback_params() -> None:
    params = status_callback_params(
        PARAMS, call_status="completed", sequence_number=3, timestamp=0.0, call_duration=42
    )
    assert params["CallStatus"] == "completed"
    assert params["SequenceNumber"] == "3"
    assert params["Timestamp"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert params["CallbackSource"] == "call-progress-events"
    assert params["CallDuration"] == "42"
    assert params["CallSid"] == PARAMS["CallSid"]
    ringing = status_callback_params(PARAMS, call_status="ringing", sequence_number=1, timestamp=0)
    assert "CallDuration" not in ringing

"""The Calls and Recordings resources' shapes, filters and paging, without a server."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import cast

import pytest
from twilio.base import deserialize

from softphone.gateway import rest_calls
from softphone.gateway.accounts import AccountStore
from softphone.gateway.call_store import CallRecord, CallStore, Page, Recording
from softphone.gateway.rest_calls import BadRequest, PageRequest

pytestmark = pytest.mark.pure

ACCOUNT = "AC" + "a" * 32
PARENT = "CA" + "b" * 32
MAY_2 = dt.datetime(2024, 5, 2, tzinfo=dt.UTC).timestamp()


def test_times_and_durations_read_back_through_the_helper() -> None:
    text = rest_calls.rfc2822(MAY_2 + 3723.9)
    assert text == "Thu, 02 May 2024 01:02:03 +0000"
    assert deserialize.rfc2822_datetime(text) == dt.datetime(2024, 5, 2, 1, 2, 3, tzinfo=dt.UTC)
    assert rest_calls.rfc2822(None) is None
    assert [rest_calls.whole_seconds(s) for s in (0.0, 59.4, 59.5, None)] == ["0", "59", "60", None]


def test_a_call_resource_has_twilios_fields() -> None:
    call = CallRecord(
        sid="CA" + "1" * 32,
        account_sid=ACCOUNT,
        from_="client:alice",
        to="client:bob",
        direction="outbound-dial",
        status="completed",
        start_time=MAY_2,
        parent_call_sid=PARENT,
        answer_time=MAY_2 + 2,
        end_time=MAY_2 + 12.6,
        duration=10.6,
    )
    body = rest_calls.call_resource(call)
    uri = f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{call.sid}"
    assert body["uri"] == f"{uri}.json"
    assert body["subresource_uris"] == {"recordings": f"{uri}/Recordings.json"}
    assert (body["from"], body["to"], body["from_formatted"]) == (
        "client:alice",
        "client:bob",
        "client:alice",
    )
    assert (body["duration"], body["status"], body["parent_call_sid"]) == (
        "11",
        "completed",
        PARENT,
    )
    assert body["start_time"] == "Thu, 02 May 2024 00:00:00 +0000"
    assert body["end_time"] == body["date_updated"] == "Thu, 02 May 2024 00:00:12 +0000"
    assert body["answered_by"] is None and body["api_version"] == "2010-04-01"


def test_a_recording_resource_points_at_its_media() -> None:
    recording = Recording(
        sid="RE" + "1" * 32,
        call_sid="CA" + "1" * 32,
        account_sid=ACCOUNT,
        path=Path("/nowhere/re.wav"),
        duration=4.2,
        created=MAY_2 + 10,
    )
    body = rest_calls.recording_resource(recording, "https://gw.example:9443")
    base = f"/2010-04-01/Accounts/{ACCOUNT}/Recordings/{recording.sid}"
    assert body["media_url"] == f"https://gw.example:9443{base}"
    assert body["uri"] == f"{base}.json"
    assert (body["duration"], body["channels"], body["status"]) == ("4", 1, "completed")
    assert body["start_time"] == "Thu, 02 May 2024 00:00:05 +0000"  # created - duration
    assert "nowhere" not in str(body)  # the file's place stays on the gateway


@pytest.mark.parametrize(
    ("query", "after", "before"),
    [
        ({"StartTime": "2024-05-02"}, MAY_2, MAY_2 + 86400),
        ({"StartTime": "2024-05-02T13:14:15Z"}, MAY_2, MAY_2 + 86400),  # its date
        ({"StartTime>": "2024-05-02"}, MAY_2, None),
        ({"StartTime>=": "2024-05-02T00:00:30Z"}, MAY_2 + 30, None),
        ({"StartTime<": "2024-05-02"}, None, MAY_2 + 1),  # on or before midnight
        ({"StartTime<=": "2024-05-02T00:00:30.9+00:00"}, None, MAY_2 + 31),
        ({"StartTime<": "2024-05-02T02:00:00+02:00"}, None, MAY_2 + 1),  # any zone, as UTC
        (
            {"StartTime": "2024-05-02", "StartTime>": "2024-05-02T06:00:00Z"},
            MAY_2 + 6 * 3600,
            MAY_2 + 86400,
        ),
    ],
)
def test_start_time_filters(
    query: dict[str, str], after: float | None, before: float | None
) -> None:
    found = rest_calls.call_filter(query)
    assert (found.start_after, found.start_before) == (after, before)


def test_the_other_call_filters() -> None:
    found = rest_calls.call_filter(
        {"To": "client:bob", "From": "client:alice", "Status": "busy", "ParentCallSid": PARENT}
    )
    assert (found.to, found.from_, found.status, found.parent_call_sid) == (
        "client:bob",
        "client:alice",
        "busy",
        PARENT,
    )
    assert rest_calls.call_filter({"Unknown": "x"}) == rest_calls.call_filter({})


@pytest.mark.parametrize(
    "query",
    [
        {"Status": "talking"},
        {"ParentCallSid": "CA123"},
        {"To": "x" * 257},
        {"StartTime": "yesterday"},
        {"StartTime>": "2024-13-01"},
        {"EndTime": "2024-05-01"},
        {"EndTime<": "2024-05-01"},
    ],
)
def test_refused_call_filters(query: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        rest_calls.call_filter(query)


def test_recording_filters() -> None:
    assert rest_calls.recording_call_sid({}) is None
    assert rest_calls.recording_call_sid({"CallSid": PARENT}) == PARENT
    for bad in ({"CallSid": "nope"}, {"DateCreated>": "2024-05-01"}):
        with pytest.raises(BadRequest):
            rest_calls.recording_call_sid(bad)


def test_page_requests() -> None:
    assert rest_calls.page_request({}, rest_calls.CALL_FILTERS) == PageRequest(50, 0, None, ())
    asked = rest_calls.page_request(
        {"To": "a", "PageSize": "2", "Page": "3", "PageToken": "tok", "Other": "x"},
        rest_calls.CALL_FILTERS,
    )
    assert asked == PageRequest(2, 3, "tok", (("To", "a"),))
    for bad in ({"PageSize": "0"}, {"PageSize": "1001"}, {"Page": "-1"}, {"Page": "x"}):
        with pytest.raises(BadRequest):
            rest_calls.page_request(bad, ())
    with pytest.raises(BadRequest):
        rest_calls.page_request({"PageToken": "t" * 513}, ())


def test_list_envelopes() -> None:
    path = f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    empty = rest_calls.list_body("calls", path, PageRequest(50, 0, None, ()), [], None)
    assert empty == {
        "calls": [],
        "end": 0,
        "first_page_uri": f"{path}?PageSize=50&Page=0",
        "next_page_uri": None,
        "page": 0,
        "page_size": 50,
        "previous_page_uri": None,
        "start": 0,
        "uri": f"{path}?PageSize=50&Page=0",
    }
    third = rest_calls.list_body(
        "calls", path, PageRequest(2, 2, "tok", (("StartTime>", "2024-05-01"),)), [{}, {}], "next"
    )
    assert (third["start"], third["end"], third["page"]) == (4, 5, 2)
    query = "StartTime%3E=2024-05-01&PageSize=2"
    assert third["uri"] == f"{path}?{query}&Page=2&PageToken=tok"
    assert third["next_page_uri"] == f"{path}?{query}&Page=3&PageToken=next"
    assert third["previous_page_uri"] == f"{path}?{query}&Page=1"
    assert third["first_page_uri"] == f"{path}?{query}&Page=0"


def test_a_page_number_without_a_token_is_found_from_the_start() -> None:
    rows = list(range(2500))
    asked: list[tuple[int, str | None]] = []

    def lister(store: CallStore, size: int, token: str | None) -> Page[int]:
        asked.append((size, token))
        start = int(token or 0)
        end = start + size
        return Page(tuple(rows[start:end]), str(end) if end < len(rows) else None)

    nobody = cast(CallStore, None)
    page = rest_calls.walk(nobody, lister, PageRequest(700, 3, None, ()))
    assert page.items == tuple(range(2100, 2500)) and page.next_page_token is None
    assert asked == [(1000, None), (1000, "1000"), (100, "2000"), (700, "2100")]
    asked.clear()
    assert rest_calls.walk(nobody, lister, PageRequest(500, 5, None, ())).items == ()
    assert rest_calls.walk(nobody, lister, PageRequest(10, 9, "5", ())).items == tuple(range(5, 15))


def test_an_accounts_auth_token_is_optional_and_never_shown() -> None:
    key = {"sid": "SK" + "a" * 32, "secret": "s"}
    store = AccountStore.from_dict(
        {"accounts": [{"sid": ACCOUNT, "keys": [key], "auth_token": "tok-123"}]}
    )
    account = store.account(ACCOUNT)
    assert account is not None and account.auth_token == "tok-123"
    assert "tok-123" not in repr(account)
    bare = AccountStore.from_dict({"accounts": [{"sid": ACCOUNT, "keys": [key]}]}).account(ACCOUNT)
    assert bare is not None and bare.auth_token is None
    for bad in ("", 42):
        with pytest.raises(ValueError, match=r"accounts\[0\]\.auth_token"):
            AccountStore.from_dict(
                {"accounts": [{"sid": ACCOUNT, "keys": [key], "auth_token": bad}]}
            )


def test_create_request_checks_every_field() -> None:
    form = {
        "To": "client:bob",
        "From": "+15005550006",
        "Url": "https://app.example/voice",
        "Method": "get",
        "StatusCallback": "https://app.example/status",
        "Timeout": "20",
    }
    made = rest_calls.create_request(form, ["initiated answered", "completed"], has_auth_token=True)
    assert (made.to, made.from_, made.twiml, made.timeout_s) == (
        "client:bob",
        "+15005550006",
        "",
        20.0,
    )
    app = made.application
    assert (app.voice_url, app.voice_method, app.status_callback) == (
        "https://app.example/voice",
        "GET",
        "https://app.example/status",
    )
    assert app.status_callback_events == ("initiated", "answered", "completed")
    inline = rest_calls.create_request(
        {"To": "client:bob", "From": "x", "Twiml": "<Response/>"}, [], has_auth_token=False
    )
    assert inline.twiml == "<Response/>" and inline.application.status_callback_events == (
        "completed",
    )


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"To": "+15551234567"}, "To must be client:NAME"),
        ({"To": "client:"}, "To must be client:NAME"),
        ({"From": ""}, "From is required"),
        ({"Twiml": "<Response/>"}, "exactly one of Url and Twiml"),
        ({"Url": ""}, "exactly one of Url and Twiml"),
        ({"Url": "file:///etc/passwd"}, "Url must be an absolute http(s) URL"),
        ({"Method": "PUT"}, "Method must be GET or POST"),
        ({"Timeout": "0"}, "Timeout must be between 1 and 600"),
        ({"Timeout": "ten"}, "Timeout must be a whole number"),
        ({"StatusCallback": "nope"}, "StatusCallback must be an absolute http(s) URL"),
        ({"ApplicationSid": "AP" + "1" * 32}, "ApplicationSid"),
        ({"Twiml": "x" * 4001, "Url": ""}, "at most 4000"),
    ],
)
def test_create_request_refusals(changes: dict[str, str], fragment: str) -> None:
    form = {"To": "client:bob", "From": "+15005550006", "Url": "https://app.example/voice"}
    form.update(changes)
    with pytest.raises(rest_calls.BadRequest, match=re.escape(fragment)):
        rest_calls.create_request(form, [], has_auth_token=True)


def test_create_request_needs_an_auth_token_to_sign_and_known_events() -> None:
    form = {"To": "client:bob", "From": "x", "Url": "https://app.example/voice"}
    with pytest.raises(rest_calls.BadRequest, match="no auth_token"):
        rest_calls.create_request(form, [], has_auth_token=False)
    with pytest.raises(rest_calls.BadRequest, match="StatusCallbackEvent"):
        rest_calls.create_request(form, ["progress"], has_auth_token=True)

"""The REST API's Calls and Recordings resources: Twilio's JSON, filters and paging.

Pure: what :mod:`softphone.gateway.rest_api` answers is built here from call store
records and the request's query, so the shapes are tested without a server.

Shapes follow ``api.twilio.com/2010-04-01`` as the official helper reads them
(``CallInstance``, ``RecordingInstance``, ``Page``): times in RFC 2822 UTC
(``Tue, 31 Aug 2010 20:36:29 +0000``), durations as strings of whole seconds, the
list envelope with ``first_page_uri``, ``next_page_uri``, ``previous_page_uri``,
``page``, ``page_size``, ``start``, ``end`` and ``uri``. Fields this gateway has no
value for (price, phone number sid, caller name …) are null, as Twilio leaves them.

Time filters, as Twilio's API description words them (curl's
``StartTime>=2024-05-01`` is the key ``StartTime>``; the helper always sends a
date-time, ``YYYY-MM-DDTHH:MM:SSZ``, midnight for a date): ``StartTime`` keeps the
calls that started on that UTC date (a date-time's time of day is ignored);
``StartTime>`` those that started on or after that moment (a date: its midnight);
``StartTime<`` those that started on or before it (a date: "on or before midnight
of this date"), to the second.

Paging: ``PageSize`` (1-1000, default 50), ``Page`` (the page number, for the
envelope) and ``PageToken`` (where the page starts, handed out in
``next_page_uri``). A ``Page`` above 0 without a token (``previous_page_uri``, or a
client counting pages) is found by walking the listing from its start.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

import attrs

from softphone.gateway.accounts import STATUS_EVENTS, Application, is_sid
from softphone.gateway.call_store import (
    CALL_STATUSES,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    MAX_TEXT_CHARS,
    CallFilter,
    CallRecord,
    CallStore,
    Page,
    Recording,
)

API_VERSION: Final = "2010-04-01"
CALL_FILTERS: Final = (
    "To",
    "From",
    "Status",
    "ParentCallSid",
    "StartTime",
    "StartTime>",
    "StartTime<",
)
"""The Calls list's query filters, as the helper names them."""
UNSUPPORTED_CALL_FILTERS: Final = ("EndTime", "EndTime>", "EndTime<")
"""Twilio filters the call store cannot apply: refused rather than ignored."""
RECORDING_FILTERS: Final = ("CallSid", "ConferenceSid", "IncludeSoftDeleted")
UNSUPPORTED_RECORDING_FILTERS: Final = ("DateCreated", "DateCreated>", "DateCreated<")
UPDATE_STATUSES: Final = ("canceled", "completed")
"""What ``Status`` a Call update may set."""
RECORDING_SOURCE: Final = "RecordVerb"
"""How the gateway's recordings are made (``<Record>``)."""
_ALIASES: Final = {"StartTime>=": "StartTime>", "StartTime<=": "StartTime<"}
"""The same filters with ``>=``/``<=`` in the key (a client that encoded the ``=``)."""
MAX_TOKEN_CHARS: Final = 512
MAX_TWIML_CHARS: Final = 4000
"""Twilio's limit on a ``Twiml`` parameter."""
MAX_RING_TIMEOUT_S: Final = 600
DEFAULT_RING_TIMEOUT_S: Final = 60

T = TypeVar("T")
Lister = Callable[[CallStore, int, str | None], Page[T]]
"""Reads one page: ``lister(store, page_size, page_token)``."""


class BadRequest(ValueError):
    """A query or form value Twilio would refuse (HTTP 400)."""


@attrs.frozen
class PageRequest:
    """Which page a list request asks for, and the filters it repeats in its URIs."""

    page_size: int = DEFAULT_PAGE_SIZE
    page: int = 0
    token: str | None = None
    filters: tuple[tuple[str, str], ...] = ()
    """The filter parameters as the request gave them (names normalised)."""


# -- common ---------------------------------------------------------------------------------
def rfc2822(seconds: float | None) -> str | None:
    """``seconds`` since the epoch as Twilio writes times (``Tue, 31 Aug 2010 20:36:29 +0000``)."""
    if seconds is None:
        return None
    return email.utils.format_datetime(dt.datetime.fromtimestamp(int(seconds), dt.UTC))


def whole_seconds(seconds: float | None) -> str | None:
    """A duration as Twilio gives it: a string of whole seconds (None stays None)."""
    return None if seconds is None else str(math.floor(seconds + 0.5))


def account_uri(account_sid: str) -> str:
    """The path of an account's resources."""
    return f"/{API_VERSION}/Accounts/{account_sid}"


def query_params(query: Mapping[str, str]) -> dict[str, str]:
    """The query with ``StartTime>=``-style keys under the helper's names."""
    return {_ALIASES.get(name, name): value for name, value in query.items()}


# -- resources ------------------------------------------------------------------------------
def call_resource(call: CallRecord) -> dict[str, Any]:
    """A stored call as Twilio's Call resource."""
    base = account_uri(call.account_sid)
    updated = call.end_time or call.answer_time or call.start_time
    return {
        "account_sid": call.account_sid,
        "annotation": None,
        "answered_by": None,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(call.start_time),
        "date_updated": rfc2822(updated),
        "direction": call.direction,
        "duration": whole_seconds(call.duration),
        "end_time": rfc2822(call.end_time),
        "forwarded_from": None,
        "from": call.from_,
        "from_formatted": call.from_,
        "group_sid": None,
        "parent_call_sid": call.parent_call_sid,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": call.sid,
        "start_time": rfc2822(call.start_time),
        "status": call.status,
        "subresource_uris": {"recordings": f"{base}/Calls/{call.sid}/Recordings.json"},
        "to": call.to,
        "to_formatted": call.to,
        "trunk_sid": None,
        "uri": f"{base}/Calls/{call.sid}.json",
    }


def recording_resource(recording: Recording, origin: str) -> dict[str, Any]:
    """A stored recording as Twilio's Recording resource; ``origin`` (``scheme://host:port``
    of the REST API) makes its absolute ``media_url``."""
    base = account_uri(recording.account_sid)
    return {
        "account_sid": recording.account_sid,
        "api_version": API_VERSION,
        "call_sid": recording.call_sid,
        "channels": 1,
        "conference_sid": None,
        "date_created": rfc2822(recording.created),
        "date_updated": rfc2822(recording.created),
        "duration": whole_seconds(recording.duration),
        "encryption_details": None,
        "error_code": None,
        "media_url": f"{origin}{base}/Recordings/{recording.sid}",
        "price": None,
        "price_unit": "USD",
        "sid": recording.sid,
        "source": RECORDING_SOURCE,
        "start_time": rfc2822(max(0.0, recording.created - recording.duration)),
        "status": "completed",
        "subresource_uris": {},
        "uri": f"{base}/Recordings/{recording.sid}.json",
    }


# -- filters ----------------------------------------------------------------------------------
def call_filter(query: Mapping[str, str]) -> CallFilter:
    """The Calls list's filters (:data:`CALL_FILTERS`); BadRequest for a value Twilio
    refuses or a filter this gateway cannot apply."""
    params = query_params(query)
    _refuse(params, UNSUPPORTED_CALL_FILTERS)
    status = params.get("Status")
    if status is not None and status not in CALL_STATUSES:
        raise BadRequest(f"Status must be one of {', '.join(CALL_STATUSES)}")
    for name in ("To", "From"):
        if len(params.get(name, "")) > MAX_TEXT_CHARS:
            raise BadRequest(f"{name} is longer than {MAX_TEXT_CHARS} characters")
    parent = params.get("ParentCallSid")
    if parent is not None and not is_sid(parent, "CA"):
        raise BadRequest("ParentCallSid must be a CallSid (CA and 32 hex digits)")
    after: list[float] = []
    before: list[float] = []
    if "StartTime" in params:
        day = _moment(params["StartTime"], "StartTime").date()
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
        after.append(midnight)
        before.append(midnight + 86400.0)
    if "StartTime>" in params:
        after.append(_moment(params["StartTime>"], "StartTime>").timestamp())
    if "StartTime<" in params:
        before.append(_moment(params["StartTime<"], "StartTime<").timestamp() + 1.0)
    return CallFilter(
        status=status,
        from_=params.get("From"),
        to=params.get("To"),
        parent_call_sid=parent,
        start_after=max(after) if after else None,
        start_before=min(before) if before else None,
    )


def recording_call_sid(query: Mapping[str, str]) -> str | None:
    """The Recordings list's ``CallSid`` filter; BadRequest for a malformed one or a
    filter this gateway cannot apply."""
    params = query_params(query)
    _refuse(params, UNSUPPORTED_RECORDING_FILTERS)
    call_sid = params.get("CallSid")
    if call_sid is not None and not is_sid(call_sid, "CA"):
        raise BadRequest("CallSid must be a CallSid (CA and 32 hex digits)")
    return call_sid


def _refuse(params: Mapping[str, str], unsupported: Iterable[str]) -> None:
    named = [name for name in unsupported if name in params]
    if named:
        raise BadRequest(f"This gateway cannot filter by {', '.join(named)}")


def _moment(value: str, name: str) -> dt.datetime:
    """The UTC moment, to the second, of a date (its midnight) or a date-time (no zone: UTC)."""
    try:
        if len(value) == len("YYYY-MM-DD"):
            day = dt.date.fromisoformat(value)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be a date (YYYY-MM-DD) or a UTC date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(microsecond=0)


# -- creating and redirecting calls ---------------------------------------------------------
@attrs.frozen(kw_only=True)
class TwimlTarget:
    """What a call is to run: inline ``twiml``, or the document at ``url``."""

    url: str = ""
    method: str = "POST"
    twiml: str = ""


@attrs.frozen(kw_only=True)
class CreateRequest:
    """A valid Calls create: whom to ring, as whom, and the application it runs."""

    to: str
    from_: str
    twiml: str
    timeout_s: float
    application: Application
    """Its ``voice_url`` is the create's ``Url`` (empty with ``Twiml``), its status
    callback the create's ``StatusCallback``."""


def twiml_target(form: Mapping[str, Any]) -> TwimlTarget:
    """``Url`` (+ ``Method``) or ``Twiml`` of a create or update; BadRequest if neither,
    both, or a malformed one."""
    url, twiml = str(form.get("Url", "")), str(form.get("Twiml", ""))
    if bool(url) == bool(twiml):
        raise BadRequest("Give exactly one of Url and Twiml")
    if len(twiml) > MAX_TWIML_CHARS:
        raise BadRequest(f"Twiml must be at most {MAX_TWIML_CHARS} characters")
    if url:
        _http_url(url, "Url")
    return TwimlTarget(url=url, method=_method(form, "Method"), twiml=twiml)


def create_request(
    form: Mapping[str, Any], events: Iterable[str], *, has_auth_token: bool
) -> CreateRequest:
    """Check a Calls create (``events``: its ``StatusCallbackEvent`` values)."""
    to, from_ = str(form.get("To", "")), str(form.get("From", ""))
    if not to.startswith("client:") or not 0 < len(to) - len("client:") <= 256:
        raise BadRequest("To must be client:NAME: this gateway calls registered Devices")
    if not from_ or len(from_) > 256:
        raise BadRequest("From is required (at most 256 characters)")
    if "ApplicationSid" in form:
        raise BadRequest("This gateway cannot create a call with ApplicationSid: give Url or Twiml")
    target = twiml_target(form)
    timeout = _integer({"Timeout": str(form.get("Timeout", DEFAULT_RING_TIMEOUT_S))}, "Timeout", 0)
    if not 1 <= timeout <= MAX_RING_TIMEOUT_S:
        raise BadRequest(f"Timeout must be between 1 and {MAX_RING_TIMEOUT_S} seconds")
    callback = str(form.get("StatusCallback", ""))
    fallback = str(form.get("FallbackUrl", ""))
    for value, name in ((callback, "StatusCallback"), (fallback, "FallbackUrl")):
        if value:
            _http_url(value, name)
    chosen = tuple(dict.fromkeys(" ".join(events).split())) or ("completed",)
    unknown = [event for event in chosen if event not in STATUS_EVENTS]
    if unknown:
        raise BadRequest(f"StatusCallbackEvent must be among {', '.join(STATUS_EVENTS)}")
    if (target.url or callback) and not has_auth_token:
        raise BadRequest("The account has no auth_token to sign webhooks with")
    application = Application(
        "",
        target.url or None,
        voice_method=target.method,
        voice_fallback_url=fallback or None,
        voice_fallback_method=_method(form, "FallbackMethod"),
        status_callback=callback or None,
        status_callback_method=_method(form, "StatusCallbackMethod"),
        status_callback_events=chosen,
    )
    return CreateRequest(
        to=to, from_=from_, twiml=target.twiml, timeout_s=float(timeout), application=application
    )


def _http_url(value: str, name: str) -> None:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest(f"{name} must be an absolute http(s) URL")


def _method(form: Mapping[str, Any], name: str) -> str:
    method = str(form.get(name, "POST")).upper()
    if method not in ("GET", "POST"):
        raise BadRequest(f"{name} must be GET or POST")
    return method


# -- paging ---------------------------------------------------------------------------------
def page_request(query: Mapping[str, str], filter_names: Iterable[str]) -> PageRequest:
    """``PageSize``, ``Page`` and ``PageToken`` of a list request, with the filters
    (among ``filter_names``) its page URIs repeat; BadRequest when out of range."""
    params = query_params(query)
    page_size = _integer(params, "PageSize", DEFAULT_PAGE_SIZE)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise BadRequest(f"PageSize must be between 1 and {MAX_PAGE_SIZE}")
    page = _integer(params, "Page", 0)
    if page < 0:
        raise BadRequest("Page must be 0 or more")
    token = params.get("PageToken") or None
    if token is not None and len(token) > MAX_TOKEN_CHARS:
        raise BadRequest("PageToken is not one this gateway handed out")
    names = set(filter_names)
    filters = tuple((name, value) for name, value in params.items() if name in names)
    return PageRequest(page_size, page, token, filters)


def _integer(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise BadRequest(f"{name} must be a whole number")
    return int(raw)


def walk(store: CallStore, lister: Lister[T], request: PageRequest) -> Page[T]:
    """The page ``request`` names (run in the store's thread).

    With a token, the page it starts; without one, page ``request.page`` counted from
    the first (read :data:`MAX_PAGE_SIZE` rows at a time to find where it starts;
    empty past the end). ValueError for a token the store did not hand out.
    """
    token = request.token
    if token is None:
        skip = request.page * request.page_size
        while skip > 0:
            chunk = min(skip, MAX_PAGE_SIZE)
            passed = lister(store, chunk, token)
            if passed.next_page_token is None:
                return Page((), None)
            token = passed.next_page_token
            skip -= chunk
    return lister(store, request.page_size, token)


def list_body(
    key: str,
    path: str,
    request: PageRequest,
    items: list[dict[str, Any]],
    next_token: str | None,
) -> dict[str, Any]:
    """Twilio's list envelope for one page of ``items`` read at ``path``."""
    start = request.page * request.page_size
    return {
        key: items,
        "end": start + max(len(items), 1) - 1,
        "first_page_uri": _page_uri(path, request, 0, None),
        "next_page_uri": (
            None if next_token is None else _page_uri(path, request, request.page + 1, next_token)
        ),
        "page": request.page,
        "page_size": request.page_size,
        "previous_page_uri": (
            None if request.page == 0 else _page_uri(path, request, request.page - 1, None)
        ),
        "start": start,
        "uri": _page_uri(path, request, request.page, request.token),
    }


def _page_uri(path: str, request: PageRequest, page: int, token: str | None) -> str:
    params = [*request.filters, ("PageSize", str(request.page_size)), ("Page", str(page))]
    if token is not None:
        params.append(("PageToken", token))
    return f"{path}?{urllib.parse.urlencode(params)}"


__all__ = [
    "API_VERSION",
    "CALL_FILTERS",
    "RECORDING_FILTERS",
    "UPDATE_STATUSES",
    "BadRequest",
    "CreateRequest",
    "PageRequest",
    "TwimlTarget",
    "account_uri",
    "call_filter",
    "call_resource",
    "create_request",
    "list_body",
    "page_request",
    "recording_call_sid",
    "recording_resource",
    "rfc2822",
    "twiml_target",
    "walk",
    "whole_seconds",
]

"""The gateway's REST API: the parts of ``api.twilio.com`` a voice app needs from us.

Served over HTTP(S) by aiohttp on its own port (Twilio too keeps its REST API on a
different host from signaling). Requests authenticate like Twilio's: HTTP Basic with
an API key (``SK…`` sid and secret) of the account named in the path, or with the
account's own sid and auth token when the accounts config gives it one. Anything
else is 401 with 20003. Errors have Twilio's JSON shape (``code``, ``message``,
``more_info``, ``status``) so the official helper library raises its usual
``TwilioRestException``.

Resources under ``/2010-04-01/Accounts/{AccountSid}``:

* ``POST …/Tokens.json`` (form field ``Ttl``): the Network Traversal Service, see
  :mod:`softphone.gateway.traversal`.

With the gateway's durable call store (:class:`~softphone.gateway.call_store.AsyncCallStore`;
without one these resources do not exist and answer 404), shaped and filtered as
:mod:`softphone.gateway.rest_calls` says:

* ``GET …/Calls.json``: the account's calls, newest first (filters ``To``, ``From``,
  ``Status``, ``ParentCallSid``, ``StartTime``/``StartTime>``/``StartTime<``; paging
  with ``PageSize``, ``Page``, ``PageToken``). Live calls are there too: the router
  writes each call to the store when it starts.
* ``GET …/Calls/{CallSid}.json``: one call; 404 when it is not the account's.
* ``POST …/Calls/{CallSid}.json`` with ``Status``: ``completed`` ends the call in any
  phase, ``canceled`` ends it only while it rings (an answered call is left as it
  is, as Twilio does); a call already over is 400 with 21220. ``Url``/``Twiml``
  redirects and the other update parameters are refused (400) for now.
* ``GET …/Recordings.json`` (filter ``CallSid``) and ``GET …/Calls/{CallSid}/Recordings.json``
  (empty for another account's call, as the filter is);
  ``GET …/Recordings/{RecordingSid}.json``; the audio at ``…/Recordings/{RecordingSid}.wav``
  (or without extension, as Twilio's ``media_url``), ``audio/x-wav``, Basic auth
  required like everything else.

Insights (when the gateway gives an :class:`~softphone.gateway.insights_store.InsightsStore`),
what ``eventgw.twilio.com`` and ``insights.twilio.com`` are for Twilio:

* ``POST /v4/EndpointEvents`` and ``POST /v4/EndpointMetrics``: what SDKs publish (the
  JS SDK's envelope, :mod:`softphone.insights.events`), authenticated by the access
  token in ``X-Twilio-Token`` (verified as ``listen`` verifies it; 401 with 20101, or
  20104 when expired). Answers ``{"call", "stored", "dropped"}``; 400 for a malformed
  body, 413 above the body limit, 403 for another account's call, 404 for a CallSid
  this gateway never had live.
* ``GET /v1/Voice/{CallSid}/Events``, ``…/Metrics`` and ``…/Feedback``: what the store
  holds for a call of the key's account (404 otherwise). Events and metrics have the
  shape of Twilio's Voice Insights resources (``timestamp``, ``call_sid``,
  ``account_sid``, ``edge: "sdk_edge"``, ``group``/``level``/``name`` or
  ``direction``, and the posted record under ``sdk_edge`` with the poster's
  ``identity``); feedback items are ``{call_sid, account_sid, quality_score,
  issue_name, timestamp, identity}`` (``quality_score`` null when declined). One page
  holds everything (the store is bounded), so the helper's ``list()`` works. The
  ``{CallSid}`` may also be a client's temporary ``TJS…`` id.

The official helper reaches it with ``client.api.base_url = "http://host:port"`` (and
``client.insights.base_url`` for the Insights resources). Every Basic-auth resource
takes an API key (``SK…`` sid and secret) of the account, or the account's auth token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from softphone.gateway import rest_calls
from softphone.gateway.accounts import AccountStore
from softphone.gateway.app.app_call import AppSettings
from softphone.gateway.call_store import AsyncCallStore, CallRecord, CallStore, Page, Recording
from softphone.gateway.calls import CallPhase, CallRouter
from softphone.gateway.insights_persist import load_entry
from softphone.gateway.insights_store import (
    CallInsights,
    InsightsRejected,
    InsightsStore,
    Poster,
    StoredItem,
)
from softphone.gateway.rest_calls import API_VERSION, BadRequest
from softphone.gateway.tokens import TokenError, verify_token
from softphone.gateway.traversal import TraversalConfig, check_ttl, token_resource
from softphone.insights import endpoint
from softphone.signaling.codes import (
    ACCESS_TOKEN_EXPIRED,
    ACCESS_TOKEN_INVALID,
    REST_AUTHENTICATE,
    REST_INVALID_CALL_STATE,
    REST_INVALID_PARAMETER,
    REST_NOT_FOUND,
    REST_SERVICE_UNAVAILABLE,
    TOKEN_EXPIRED,
)

log = logging.getLogger("softphone.gateway.rest")

INSIGHTS_API = "/v1/Voice/{call_sid}"
_INGEST = "ingest"
"""Route name prefix of the insights posts: authenticated by token, not Basic."""
_WILDCARDS = ("", "0.0.0.0", "::")
UNSUPPORTED_UPDATES = (
    "FallbackUrl",
    "FallbackMethod",
    "StatusCallback",
    "StatusCallbackMethod",
    "TimeLimit",
)
"""Call update parameters Twilio has and this gateway does not do yet: refused."""
WAV = "audio/x-wav"


def _error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
        headers=headers,
    )


class RestApi:
    """The HTTP side of one gateway: an aiohttp application and its runner."""

    def __init__(
        self,
        accounts: AccountStore,
        traversal: TraversalConfig,
        *,
        clock: Callable[[], float] = time.time,
        insights: InsightsStore | None = None,
        calls: CallRouter | None = None,
        call_store: AsyncCallStore | None = None,
    ) -> None:
        """``insights``: serve the insights resources backed by this store (else none).

        ``call_store``: serve Calls and Recordings from it (else none); ``calls``, the
        live calls, lets a Call update end one.
        """
        self.accounts = accounts
        self.traversal = traversal
        self.clock = clock
        self.insights = insights
        """What SDKs published, per call; None when insights are not served."""
        self.calls = calls
        self.call_store = call_store
        max_body = insights.limits.max_body_bytes if insights else 1024**2
        self.app = web.Application(middlewares=[self._authenticate], client_max_size=max_body)
        base = f"/{API_VERSION}/Accounts/{{account_sid}}"
        self.app.router.add_post(f"{base}/Tokens.json", self._create_token)
        if insights is not None:
            router = self.app.router
            router.add_post(endpoint.EVENTS_PATH, self._post_events, name=f"{_INGEST}-events")
            router.add_post(endpoint.METRICS_PATH, self._post_metrics, name=f"{_INGEST}-metrics")
            router.add_get(f"{INSIGHTS_API}/Events", self._get_events)
            router.add_get(f"{INSIGHTS_API}/Metrics", self._get_metrics)
            router.add_get(f"{INSIGHTS_API}/Feedback", self._get_feedback)
        if call_store is not None:
            router = self.app.router
            router.add_get(f"{base}/Calls.json", self._list_calls)
            router.add_post(f"{base}/Calls.json", self._create_call)
            router.add_get(f"{base}/Calls/{{call_sid}}.json", self._fetch_call)
            router.add_post(f"{base}/Calls/{{call_sid}}.json", self._update_call)
            router.add_get(f"{base}/Calls/{{call_sid}}/Recordings.json", self._list_call_recordings)
            router.add_get(f"{base}/Recordings.json", self._list_recordings)
            recording = f"{base}/Recordings/{{recording_sid:RE[0-9a-fA-F]{{32}}}}"
            router.add_get(f"{recording}.json", self._fetch_recording)
            router.add_get(f"{recording}.wav", self._recording_media)
            router.add_get(recording, self._recording_media)
        self._runner: web.AppRunner | None = None
        self._bound: tuple[str, int] | None = None
        self._scheme = "http"

    async def setup(self) -> None:
        """Get the request handler ready (before :attr:`http_protocol` or :meth:`start`)."""
        if self._runner is None:
            self._runner = web.AppRunner(self.app, access_log=None)
            await self._runner.setup()

    @property
    def http_protocol(self) -> Callable[[], asyncio.Protocol]:
        """Makes the protocol that serves one HTTP connection (for a shared port)."""
        if self._runner is None or self._runner.server is None:
            raise RuntimeError("REST API not set up")
        return self._runner.server

    def served_at(self, host: str, port: int, *, tls: bool) -> None:
        """The API is served on ``host:port`` (the gateway's own port, shared)."""
        if self._bound is None:
            self._bound = (host, port)
            self._scheme = "https" if tls else "http"

    async def start(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> RestApi:
        """Also listen on a port of its own, ``host:port`` (0 picks a free port); that
        becomes :attr:`url`."""
        await self.setup()
        assert self._runner is not None
        await web.TCPSite(self._runner, host, port, ssl_context=ssl_context).start()
        address = self._runner.addresses[-1]
        self._bound = (str(address[0]), int(address[1]))
        self._scheme = "https" if ssl_context is not None else "http"
        log.info("REST API listening on %s", self.url)
        return self

    async def stop(self) -> None:
        """Stop listening and finish open requests."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._bound = None

    def _where(self) -> tuple[str, int]:
        if self._bound is None:
            raise RuntimeError("REST API not started")
        return self._bound

    @property
    def port(self) -> int:
        """The TCP port it is served on."""
        return self._where()[1]

    @property
    def url(self) -> str:
        """Base URL for the official helper's ``client.api.base_url``."""
        host, port = self._where()
        return f"{self._scheme}://{_url_host(host)}:{port}"

    def origin(self, host_header: str | None) -> str:
        """``scheme://host:port`` of this API as a client reached it (its ``Host``
        header), else as bound: the base of absolute URLs such as ``media_url``."""
        bound, port = self._where()
        host = _hostname(host_header) or bound
        return f"{self._scheme}://{_url_host(host)}:{port}"

    def insights_url(self, host_header: str | None) -> str | None:
        """The insights base URL to name in ``connected``, or None when not served.

        Its host is the one the client used for signaling (the ``Host`` header of its
        WebSocket request), so a client behind a name or a NAT reaches it the same
        way; the bound address when that header is missing or unusable (and None if
        that address is a wildcard). Same scheme as :attr:`url`, the REST API's port.
        """
        if self.insights is None or self._bound is None:
            return None
        host = _hostname(host_header)
        if host is None:
            bound = self._bound[0]
            if bound in _WILDCARDS:
                return None
            host = bound
        return f"{self._scheme}://{_url_host(host)}:{self.port}"

    # -- middleware and handlers ---------------------------------------------------------
    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        """Basic auth for every resource but the insights posts (token in the handler)."""
        if request.match_info.http_exception is not None:
            return _error(
                404, REST_NOT_FOUND, f"The requested resource {request.path} was not found"
            )
        response: web.StreamResponse
        if (request.match_info.route.name or "").startswith(_INGEST):
            response = await handler(request)
            return response
        account_sid = self._credentials_account(request.headers.get("Authorization", ""))
        path_account = request.match_info.get("account_sid")
        if account_sid is None or path_account not in (None, account_sid):
            log.info("REST %s %s: authentication failed", request.method, request.path)
            challenge = {"WWW-Authenticate": 'Basic realm="softphone gateway"'}
            return _error(401, REST_AUTHENTICATE, "Authenticate", challenge)
        response = await handler(request)
        return response

    def _credentials_account(self, header: str) -> str | None:
        """The account an HTTP Basic header authenticates, or None.

        The user is an API key sid (its secret as password) or an account sid (its
        auth token as password, if it has one). Secrets compare in constant time.
        """
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        account = self.accounts.account(user)
        if account is not None:
            token = account.auth_token
            if token is None or not hmac.compare_digest(token.encode(), password.encode()):
                return None
            return account.sid
        key = self.accounts.key(user)
        if key is None or not hmac.compare_digest(key.secret.encode(), password.encode()):
            return None
        return key.account_sid

    async def _create_token(self, request: web.Request) -> web.Response:
        account_sid = request.match_info["account_sid"]  # authenticated by the middleware
        form = await request.post()
        try:
            ttl = check_ttl(form.get("Ttl"))
        except ValueError as exc:
            return _error(400, REST_INVALID_PARAMETER, str(exc))
        if not self.traversal.enabled:
            return _error(
                503,
                REST_SERVICE_UNAVAILABLE,
                "No STUN or TURN server is configured on this gateway",
            )
        body = token_resource(self.traversal, account_sid, ttl_s=ttl, now=self.clock())
        log.info("REST: ICE servers for %s (ttl %d s)", account_sid, ttl)
        return web.json_response(body, status=201)

    # -- calls and recordings --------------------------------------------------------------
    def _store(self) -> AsyncCallStore:
        assert self.call_store is not None  # the routes exist only with a store
        return self.call_store

    async def _list_calls(self, request: web.Request) -> web.Response:
        account_sid = request.match_info["account_sid"]
        try:
            paging = rest_calls.page_request(request.query, rest_calls.CALL_FILTERS)
            filters = rest_calls.call_filter(request.query)
        except BadRequest as exc:
            return _error(400, REST_INVALID_PARAMETER, str(exc))

        def lister(store: CallStore, size: int, token: str | None) -> Page[CallRecord]:
            return store.list_calls(account_sid, filters, page_size=size, page_token=token)

        try:
            page = await self._store().run(rest_calls.walk, lister, paging)
        except ValueError as exc:  # a page token this store did not hand out
            return _error(400, REST_INVALID_PARAMETER, str(exc))
        items = [rest_calls.call_resource(call) for call in page.items]
        body = rest_calls.list_body("calls", request.path, paging, items, page.next_page_token)
        return web.json_response(body)

    async def _fetch_call(self, request: web.Request) -> web.Response:
        account_sid = request.match_info["account_sid"]
        call = await self._store().run(
            CallStore.get_call, account_sid, request.match_info["call_sid"]
        )
        if call is None:
            return _not_found(request)
        return web.json_response(rest_calls.call_resource(call))

    async def _update_call(self, request: web.Request) -> web.Response:
        """``Status=completed|canceled`` on a live call, with Twilio's rules."""
        account_sid = request.match_info["account_sid"]
        sid = request.match_info["call_sid"]
        form = await request.post()
        store = self._store()
        call = await store.run(CallStore.get_call, account_sid, sid)
        if call is None:
            return _not_found(request)
        unsupported = [name for name in UNSUPPORTED_UPDATES if name in form]
        if unsupported:
            return _error(
                400,
                REST_INVALID_PARAMETER,
                f"This gateway cannot update a call's {', '.join(unsupported)} yet",
            )
        status = form.get("Status")
        url, twiml = str(form.get("Url", "")), str(form.get("Twiml", ""))
        if url or twiml:
            return await self._redirect_call(request, call, form)
        if status is None:
            return web.json_response(rest_calls.call_resource(call))
        if status not in rest_calls.UPDATE_STATUSES:
            return _error(400, REST_INVALID_PARAMETER, "Status must be canceled or completed")
        phase = None
        if not call.ended and self.calls is not None:
            phase = await self.calls.end_call(account_sid, sid, canceled=status == "canceled")
        if phase is None:  # over (or not this gateway's to end any more)
            return _error(400, REST_INVALID_CALL_STATE, "Call is not in-progress. Cannot redirect.")
        if phase is CallPhase.ANSWERED and status == "canceled":
            log.info("REST: call %s is answered: Status=canceled leaves it alone", sid)
        else:
            log.info("REST: call %s ended (Status=%s)", sid, status)
        updated = await store.run(CallStore.get_call, account_sid, sid)
        return web.json_response(rest_calls.call_resource(updated or call))

    async def _redirect_call(
        self, request: web.Request, call: CallRecord, form: Mapping[str, Any]
    ) -> web.Response:
        """``Url`` or ``Twiml`` on a call update: the live call runs that TwiML now."""
        try:
            target = rest_calls.twiml_target(form)
        except BadRequest as exc:
            return _error(400, REST_INVALID_PARAMETER, str(exc))
        phase = None
        if not call.ended and self.calls is not None:
            phase = await self.calls.redirect_call(
                call.account_sid, call.sid, url=target.url, method=target.method, twiml=target.twiml
            )
        if phase is not CallPhase.ANSWERED:
            return _error(400, REST_INVALID_CALL_STATE, "Call is not in-progress. Cannot redirect.")
        return web.json_response(rest_calls.call_resource(call))

    async def _create_call(self, request: web.Request) -> web.Response:
        """Ring a registered Device (``To=client:NAME``); it runs ``Url`` or ``Twiml``."""
        account_sid = request.match_info["account_sid"]
        form = await request.post()
        account = self.accounts.account(account_sid)
        if self.calls is None or account is None:
            return _not_found(request)
        try:
            request_ = rest_calls.create_request(
                form,
                [str(event) for event in form.getall("StatusCallbackEvent", [])],
                has_auth_token=bool(account.auth_token),
            )
        except BadRequest as exc:
            return _error(400, REST_INVALID_PARAMETER, str(exc))
        settings = AppSettings(
            account_sid=account_sid,
            auth_token=account.auth_token or "",
            application=request_.application,
        )
        call = await self.calls.create_call(
            account_sid,
            to=request_.to,
            from_=request_.from_,
            settings=settings,
            twiml=request_.twiml,
            timeout_s=request_.timeout_s,
        )
        store = self._store()
        await store.flush()
        record = await store.run(CallStore.get_call, account_sid, call.sid)
        if record is None:
            return _error(503, REST_SERVICE_UNAVAILABLE, "The call store did not keep the call")
        log.info("REST: call %s created to %s", call.sid, request_.to)
        return web.json_response(rest_calls.call_resource(record), status=201)

    async def _list_recordings(self, request: web.Request) -> web.Response:
        try:
            call_sid = rest_calls.recording_call_sid(request.query)
        except BadRequest as exc:
            return _error(400, REST_INVALID_PARAMETER, str(exc))
        none = "ConferenceSid" in request.query  # the gateway has no conferences
        return await self._recordings_page(request, call_sid, none=none)

    async def _list_call_recordings(self, request: web.Request) -> web.Response:
        """Like ``Recordings.json?CallSid=``: empty for a call that is not the account's."""
        call_sid = request.match_info["call_sid"]
        try:
            rest_calls.recording_call_sid(request.query)  # refuses the unsupported filters
        except BadRequest as exc:
            return _error(400, REST_INVALID_PARAMETER, str(exc))
        return await self._recordings_page(request, call_sid, none=False)

    async def _recordings_page(
        self, request: web.Request, call_sid: str | None, *, none: bool
    ) -> web.Response:
        """One page of the account's recordings (of ``call_sid`` if given; empty if ``none``)."""
        account_sid = request.match_info["account_sid"]
        try:
            paging = rest_calls.page_request(request.query, rest_calls.RECORDING_FILTERS)
        except BadRequest as exc:
            return _error(400, REST_INVALID_PARAMETER, str(exc))

        def lister(store: CallStore, size: int, token: str | None) -> Page[Recording]:
            if none:
                return Page((), None)
            return store.list_recordings(
                account_sid, call_sid=call_sid, page_size=size, page_token=token
            )

        try:
            page = await self._store().run(rest_calls.walk, lister, paging)
        except ValueError as exc:
            return _error(400, REST_INVALID_PARAMETER, str(exc))
        origin = self.origin(request.headers.get("Host"))
        items = [rest_calls.recording_resource(item, origin) for item in page.items]
        body = rest_calls.list_body("recordings", request.path, paging, items, page.next_page_token)
        return web.json_response(body)

    async def _recording(self, request: web.Request) -> Recording | None:
        return await self._store().run(
            CallStore.get_recording,
            request.match_info["account_sid"],
            request.match_info["recording_sid"],
        )

    async def _fetch_recording(self, request: web.Request) -> web.Response:
        recording = await self._recording(request)
        if recording is None:
            return _not_found(request)
        origin = self.origin(request.headers.get("Host"))
        return web.json_response(rest_calls.recording_resource(recording, origin))

    async def _recording_media(self, request: web.Request) -> web.StreamResponse:
        """The recording's audio file, if it is still under the recordings folder."""
        recording = await self._recording(request)
        if recording is None:
            return _not_found(request)
        folder = self._store().recordings_dir
        path = Path(recording.path).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            log.warning("REST: recording %s has no file under %s", recording.sid, folder)
            return _not_found(request)
        return web.FileResponse(path, headers={"Content-Type": WAV})

    # -- insights --------------------------------------------------------------------------
    async def _post_events(self, request: web.Request) -> web.Response:
        return await self._ingest(request, metrics=False)

    async def _post_metrics(self, request: web.Request) -> web.Response:
        return await self._ingest(request, metrics=True)

    async def _ingest(self, request: web.Request, *, metrics: bool) -> web.Response:
        """Verify the token, read the body, hand it to the store."""
        store = self.insights
        assert store is not None  # the route exists only with a store
        now = self.clock()
        try:
            token = verify_token(request.headers.get(endpoint.TOKEN_HEADER), self.accounts, now=now)
        except TokenError as exc:
            log.info("insights %s: token refused (%d %s)", request.path, exc.code, exc.message)
            code = ACCESS_TOKEN_EXPIRED if exc.code == TOKEN_EXPIRED else ACCESS_TOKEN_INVALID
            return _error(401, code, exc.message)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = store.limits.max_body_bytes
            return _error(413, REST_INVALID_PARAMETER, f"Body over {limit} bytes")
        poster = Poster(token.account_sid, token.identity)
        try:
            if metrics:
                result = store.add_metrics(poster, body, now=now)
            else:
                result = store.add_event(poster, body, now=now)
        except InsightsRejected as exc:
            log.info("insights %s from %s refused: %s", request.path, poster, exc.message)
            code = {403: REST_AUTHENTICATE, 404: REST_NOT_FOUND}.get(
                exc.status, REST_INVALID_PARAMETER
            )
            return _error(exc.status, code, exc.message)
        return web.json_response(
            {"call": result.key, "stored": result.stored, "dropped": result.dropped}
        )

    async def _entry(self, request: web.Request) -> CallInsights | None:
        """The call's entry if the key's account owns it (the middleware checked the key):
        from memory while there, else from the call store (after a restart)."""
        assert self.insights is not None
        account_sid = self._credentials_account(request.headers.get("Authorization", ""))
        if account_sid is None:
            return None
        sid = request.match_info["call_sid"]
        entry = self.insights.get(account_sid, sid)
        if entry is None and self.call_store is not None:
            entry = await load_entry(self.call_store, account_sid, sid)
        return entry

    async def _get_events(self, request: web.Request) -> web.Response:
        entry = await self._entry(request)
        if entry is None:
            return _not_found(request)
        events = [_event_resource(entry, item) for item in entry.events]
        return web.json_response(_page(request, "events", events))

    async def _get_metrics(self, request: web.Request) -> web.Response:
        entry = await self._entry(request)
        if entry is None:
            return _not_found(request)
        metrics = [_metric_resource(entry, item) for item in entry.samples]
        return web.json_response(_page(request, "metrics", metrics))

    async def _get_feedback(self, request: web.Request) -> web.Response:
        entry = await self._entry(request)
        if entry is None:
            return _not_found(request)
        feedback = [{**_ids(entry), **item.to_dict()} for item in entry.feedback]
        return web.json_response(_page(request, "feedback", feedback))


def _not_found(request: web.Request) -> web.Response:
    return _error(404, REST_NOT_FOUND, f"The requested resource {request.path} was not found")


def _ids(entry: CallInsights) -> dict[str, Any]:
    return {"call_sid": entry.call_sid or entry.key, "account_sid": entry.account_sid}


def _event_resource(entry: CallInsights, item: StoredItem) -> dict[str, Any]:
    """One stored event in the shape of a Voice Insights ``Event``."""
    event = item.to_dict()
    return {
        "timestamp": event["timestamp"],
        **_ids(entry),
        "edge": "sdk_edge",
        "group": event["group"],
        "level": event["level"],
        "name": event["name"],
        "carrier_edge": None,
        "sip_edge": None,
        "sdk_edge": {**event, "identity": item.identity},
        "client_edge": None,
    }


def _metric_resource(entry: CallInsights, item: StoredItem) -> dict[str, Any]:
    """One stored metrics record in the shape of a Voice Insights ``Metric``."""
    record = item.to_dict()
    return {
        "timestamp": record.get("timestamp"),
        **_ids(entry),
        "edge": "sdk_edge",
        "direction": "both",
        "carrier_edge": None,
        "sip_edge": None,
        "sdk_edge": {**record, "identity": item.identity},
        "client_edge": None,
    }


def _page(request: web.Request, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Twilio's list envelope: everything on one page."""
    url = str(request.url)
    return {
        key: items,
        "meta": {
            "page": 0,
            "page_size": len(items),
            "first_page_url": url,
            "previous_page_url": None,
            "url": url,
            "next_page_url": None,
            "key": key,
        },
    }


def _hostname(host_header: str | None) -> str | None:
    """The host name of a ``Host`` header (``[::1]:9443`` → ``::1``), None if unusable."""
    if not host_header:
        return None
    try:
        host = urllib.parse.urlsplit(f"//{host_header}").hostname
    except ValueError:
        return None
    if (
        not host
        or host in _WILDCARDS
        or not all(c.isascii() and (c.isalnum() or c in ".-:") for c in host)
    ):
        return None
    return host


def _url_host(host: str) -> str:
    """A host as it goes in a URL: IPv6 literals in brackets."""
    return f"[{host}]" if ":" in host else host

"""The gateway's REST API: the parts of ``api.twilio.com`` a voice app needs from us.

Served over HTTP(S) by aiohttp on its own port (Twilio too keeps its REST API on a
different host from signaling). Requests authenticate like Twilio's: HTTP Basic with
an API key (``SK…`` sid and secret) of the account named in the path. Errors have
Twilio's JSON shape (``code``, ``message``, ``more_info``, ``status``) so the official
helper library raises its usual ``TwilioRestException``.

Resources:

* ``POST /2010-04-01/Accounts/{AccountSid}/Tokens.json`` (form field ``Ttl``): the
  Network Traversal Service, see :mod:`softphone.gateway.traversal`.

The official helper reaches it with ``client.api.base_url = "http://host:port"``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from softphone.gateway.accounts import AccountStore
from softphone.gateway.traversal import TraversalConfig, check_ttl, token_resource
from softphone.signaling.codes import (
    REST_AUTHENTICATE,
    REST_INVALID_PARAMETER,
    REST_NOT_FOUND,
    REST_SERVICE_UNAVAILABLE,
)

log = logging.getLogger("softphone.gateway.rest")

API_VERSION = "2010-04-01"


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


class RestApi:
    """The HTTP side of one gateway: an aiohttp application and its runner."""

    def __init__(
        self,
        accounts: AccountStore,
        traversal: TraversalConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.accounts = accounts
        self.traversal = traversal
        self.clock = clock
        self.app = web.Application(middlewares=[self._authenticate])
        base = f"/{API_VERSION}/Accounts/{{account_sid}}"
        self.app.router.add_post(f"{base}/Tokens.json", self._create_token)
        self._runner: web.AppRunner | None = None
        self._scheme = "http"

    async def start(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> RestApi:
        """Listen on ``host:port`` (0 picks a free port, see :attr:`port`)."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=ssl_context).start()
        self._scheme = "https" if ssl_context is not None else "http"
        log.info("REST API listening on %s", self.url)
        return self

    async def stop(self) -> None:
        """Stop listening and finish open requests."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("REST API not started")
        return int(self._runner.addresses[0][1])

    @property
    def url(self) -> str:
        """Base URL for the official helper's ``client.api.base_url``."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("REST API not started")
        host = self._runner.addresses[0][0]
        return f"{self._scheme}://{host}:{self.port}"

    # -- middleware and handlers ---------------------------------------------------------
    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        account_sid = request.match_info.get("account_sid")
        if account_sid is None:
            return _error(
                404, REST_NOT_FOUND, f"The requested resource {request.path} was not found"
            )
        if not self._authorized(request.headers.get("Authorization", ""), account_sid):
            log.info("REST %s %s: authentication failed", request.method, request.path)
            return _error(401, REST_AUTHENTICATE, "Authenticate")
        response: web.StreamResponse = await handler(request)
        return response

    def _authorized(self, header: str, account_sid: str) -> bool:
        """HTTP Basic with an API key of ``account_sid`` (constant-time secret check)."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        key = self.accounts.key(user)
        if key is None or key.account_sid != account_sid:
            return False
        return hmac.compare_digest(key.secret.encode(), password.encode())

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

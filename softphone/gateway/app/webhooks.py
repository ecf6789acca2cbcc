"""Requests to an application's web server: TwiML fetches and status callbacks.

What: :class:`Webhooks` sends the gateway's requests with aiohttp's client, each
signed with ``X-Twilio-Signature`` by
:func:`~softphone.gateway.twiml.signature.signed_request` exactly as Twilio signs
(the official helper's ``RequestValidator`` accepts them). :meth:`Webhooks.fetch`
returns the TwiML an application answered with, or a :class:`WebhookFailed` carrying
Twilio's error code (11200 for refused, timed out or non-2xx, 11750 for a body over
64 kB); :meth:`Webhooks.notify` sends a status or recording callback in the
background and only logs a failure, as Twilio does.

Why one session per gateway: connections to the application are pooled across calls
(an IVR's every step is a request to the same host).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import aiohttp
import attrs

from softphone.gateway.twiml import errors
from softphone.gateway.twiml.model import Method
from softphone.gateway.twiml.signature import signed_request

log = logging.getLogger("softphone.gateway.webhooks")

TIMEOUT_S = 15.0
"""Twilio waits 15 s for an application's answer."""
MAX_BODY_BYTES = 64 * 1024
"""Twilio refuses a TwiML document over 64 kB (11750)."""
USER_AGENT = "TwilioProxy/1.1 (softphone gateway)"


@attrs.frozen(kw_only=True)
class WebhookReply:
    """A 2xx answer: its body and the URL that gave it (after HTTP redirects)."""

    body: bytes
    url: str
    content_type: str


@attrs.frozen(kw_only=True)
class WebhookFailed:
    """No usable answer: Twilio's error code and a message naming the URL."""

    code: int
    message: str


class Webhooks:
    """Signed requests to applications, on one pooled aiohttp session."""

    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"User-Agent": USER_AGENT}
            )
        return self._session

    async def fetch(
        self, auth_token: str, method: Method, url: str, params: Mapping[str, str]
    ) -> WebhookReply | WebhookFailed:
        """Request ``url`` with Twilio's signed ``params``; the reply or why there is none."""
        request = signed_request(auth_token, method, url, params)
        where = f"{method} {request.url.split('?', 1)[0]}"
        try:
            async with self._client().request(
                method, request.url, data=request.body, headers=dict(request.headers)
            ) as response:
                if not 200 <= response.status < 300:
                    return WebhookFailed(
                        code=errors.HTTP_RETRIEVAL_FAILURE,
                        message=f"{where} answered HTTP {response.status}",
                    )
                body = await response.content.read(MAX_BODY_BYTES + 1)
                if len(body) > MAX_BODY_BYTES:
                    return WebhookFailed(
                        code=errors.RESPONSE_TOO_LARGE,
                        message=f"{where} answered more than {MAX_BODY_BYTES} bytes",
                    )
                return WebhookReply(
                    body=body, url=str(response.url), content_type=response.content_type
                )
        except TimeoutError:
            return WebhookFailed(
                code=errors.HTTP_RETRIEVAL_FAILURE,
                message=f"{where}: no answer within {self._timeout.total:g} s",
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return WebhookFailed(
                code=errors.HTTP_RETRIEVAL_FAILURE, message=f"{where} failed: {exc or type(exc)}"
            )

    def notify(
        self, auth_token: str, method: Method, url: str, params: Mapping[str, str], what: str
    ) -> None:
        """Send a callback (``what`` names it in the log) without waiting for it."""

        async def send() -> None:
            result = await self.fetch(auth_token, method, url, params)
            if isinstance(result, WebhookFailed):
                log.warning("%s callback failed (%d): %s", what, result.code, result.message)

        task = asyncio.ensure_future(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for callbacks still in flight; used on shutdown and by tests."""
        pending = [t for t in self._background if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    async def close(self) -> None:
        """Finish what is in flight (bounded), then close the pooled connections."""
        await self.drain()
        for task in list(self._background):
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None


__all__ = ["WebhookFailed", "WebhookReply", "Webhooks"]

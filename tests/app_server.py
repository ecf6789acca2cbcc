"""A real local web application for TwiML tests: aiohttp on 127.0.0.1.

Routes map a path to a function of the request's parameters that returns TwiML
(built with the official helper's ``VoiceResponse``), a status code, or a raw body.
Every request is kept with its parameters, and its ``X-Twilio-Signature`` is checked
with the official helper's ``RequestValidator`` (``valid`` says whether it passed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import web
from twilio.request_validator import RequestValidator

Reply = str | int | tuple[int, str] | web.StreamResponse
Handler = Callable[[dict[str, str]], Reply | Awaitable[Reply]]


@attrs.define
class Hit:
    """One request the application received."""

    path: str
    method: str
    params: dict[str, str]
    valid: bool
    at: float


class AppServer:
    """The application: ``routes[path] = handler``; ``hits`` in arrival order."""

    def __init__(self, auth_token: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.routes: dict[str, Handler] = {}
        self.hits: list[Hit] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> AppServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            form = await request.post()
            params = {k: str(v) for k, v in form.items()}
            signed_params: dict[str, Any] = params
        else:
            params = dict(request.query)
            signed_params = {}
        signature = request.headers.get("X-Twilio-Signature", "")
        valid = bool(self.validator.validate(str(request.url), signed_params, signature))
        self.hits.append(Hit(request.path, request.method, params, valid, time.monotonic()))
        self._arrived.set()
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="no such route")
        reply = handler(params)
        if asyncio.iscoroutine(reply) or isinstance(reply, Awaitable):
            reply = await reply
        if isinstance(reply, web.StreamResponse):
            return reply
        if isinstance(reply, int):
            return web.Response(status=reply, text="")
        if isinstance(reply, tuple):
            return web.Response(status=reply[0], text=reply[1], content_type="text/xml")
        return web.Response(text=str(reply), content_type="text/xml")

    def at(self, path: str) -> list[Hit]:
        """The requests to ``path``."""
        return [hit for hit in self.hits if hit.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout: float = 20.0) -> Hit:
        """The ``count``-th request to ``path`` (waits for it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.at(path)) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [h.path for h in self.hits]
                raise AssertionError(f"no request #{count} to {path} within {timeout} s: {seen}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self.at(path)[count - 1]

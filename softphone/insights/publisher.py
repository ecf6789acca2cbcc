"""The insights publisher: the JS SDK's ``EventPublisher`` in asyncio.

What: ``publisher.info("connection", "outgoing", {...}, call)`` builds the JS
envelope at once (payload merged over the default payload, timestamp taken now),
puts it in a bounded queue and returns; one background task posts the queue in order
with aiohttp to ``<base>/v4/EndpointEvents`` (``post_metrics``: ``/v4/EndpointMetrics``)
with the access token in ``X-Twilio-Token``.

Why it is built this way: insights are telemetry. Publishing must never raise into a
call, never wait on the network and never grow without bound:

* every public method is synchronous, catches everything and answers whether the post
  was queued;
* the queue holds at most ``max_queue`` posts; when full the oldest is dropped (the
  newest events, feedback included, matter most);
* a post that cannot reach the endpoint (refused, DNS, TLS, timeout) is dropped with
  a log line, ``on_error`` is told (JS emits ``error``), and posts are dropped for
  ``unreachable_pause_s`` before the next try, so a dead endpoint costs one attempt
  per pause, not one per event;
* an HTTP error status counts as delivered, as in JS (``fetch`` resolves), and is
  logged;
* :meth:`EventPublisher.close` flushes what is queued for at most ``timeout_s``.

JS semantics kept: nothing is posted without a host, or for a call with neither a
CallSid nor a temporary id; a disabled publisher (``publishEvents: false``) posts only
forced events (feedback). Level names are the JS ones (``warn`` posts ``WARNING``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import attrs

from softphone.insights import endpoint
from softphone.insights.events import (
    PRODUCT_NAME,
    CallInfo,
    InsightsEvent,
    Level,
    SessionInfo,
    default_payload,
    envelope,
    metric_record,
    to_json,
)
from softphone.version import __version__

__all__ = ["EventPublisher"]

log = logging.getLogger("softphone.insights")

DEFAULT_MAX_QUEUE = 256
"""Posts waiting to be sent; a call makes a few dozen, plus one metrics post per 10 s."""
DEFAULT_MAX_BODY_BYTES = 64 * 1024
"""Largest post sent (the gateway refuses bigger ones); a metrics batch is about 6 KiB."""
LOG_INTERVAL_S = 10.0
"""At most one warning per kind of drop in this many seconds (the rest go to debug)."""

DefaultPayload = Callable[[CallInfo], Mapping[str, Any]]


@attrs.frozen
class _Post:
    """One request, ready to send: the URL and token are the ones current when queued."""

    url: str
    token: str
    body: bytes
    label: str
    """``group/name``, for log lines."""


class EventPublisher:
    """Posts insights events and metrics in the background (JS ``EventPublisher``).

    ``host`` is a host (``https://`` is assumed, as in JS) or an ``http(s)://`` base
    URL; None publishes nothing until :meth:`set_host`. ``default_payload(call)`` gives
    the fields every event payload starts from (default: that of
    :func:`softphone.insights.events.default_payload` for the default options and no
    signaling gateway/region; a Device passes its own). ``metadata`` is the envelope's
    ``publisher_metadata`` (``app_name``, ``app_version``). ``ssl_context`` verifies
    ``https`` endpoints (None: the system trust store, or ``SSL_CERT_FILE``, read when
    the first https post is made). ``clock`` gives the envelope timestamps.
    """

    def __init__(
        self,
        token: str,
        *,
        host: str | None = None,
        enabled: bool = True,
        default_payload: DefaultPayload | None = None,
        metadata: Mapping[str, str | None] | None = None,
        product_name: str = PRODUCT_NAME,
        ssl_context: ssl.SSLContext | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        request_timeout_s: float = 5.0,
        unreachable_pause_s: float = 5.0,
        on_error: Callable[[Exception], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_queue < 1 or max_body_bytes < 1 or request_timeout_s <= 0:
            raise ValueError("max_queue, max_body_bytes and request_timeout_s must be positive")
        self._token = token
        self._base_url = endpoint.base_url(host)
        self._enabled = enabled
        self._default_payload = default_payload or _plain_default_payload
        self.metadata: dict[str, str | None] = {
            "app_name": None,
            "app_version": None,
            **(metadata or {}),
        }
        """``publisher_metadata`` of every envelope (None values are left out)."""
        self.product_name = product_name
        self.on_error = on_error
        """Called with the exception of each post that could not reach the endpoint."""
        self.ssl_context = ssl_context
        """Trust for an ``https`` endpoint; None: the system store (and ``SSL_CERT_FILE``)."""
        self._default_context: ssl.SSLContext | None = None
        self._max_queue = max_queue
        self._max_body_bytes = max_body_bytes
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._pause_s = unreachable_pause_s
        self._clock = clock
        self._queue: collections.deque[_Post] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._in_flight = False
        self._paused_until = 0.0
        self._dropped_while_paused = 0
        self._last_warning: dict[str, float] = {}
        self.sent = 0
        """Posts the endpoint answered with a 2xx status."""
        self.refused = 0
        """Posts the endpoint answered with an error status (counted as delivered, as JS)."""
        self.dropped = 0
        """Posts given up: queue full, too big, endpoint unreachable, or left at close."""

    # -- JS properties and setters ---------------------------------------------------------
    @property
    def token(self) -> str:
        """The token sent with the next post."""
        return self._token

    @property
    def base_url(self) -> str | None:
        """Where posts go (``<base_url>/v4/…``); None: nowhere."""
        return self._base_url

    @property
    def is_enabled(self) -> bool:
        """False after :meth:`disable`: only forced posts (feedback) are made."""
        return self._enabled

    def set_token(self, token: str) -> None:
        """Use ``token`` for posts queued from now on (JS ``setToken``)."""
        self._token = token

    def set_host(self, host: str | None) -> None:
        """Publish to ``host`` (or a base URL) from now on; None publishes nothing.

        A different host ends any pause after an unreachable one.
        """
        base = endpoint.base_url(host)
        if base != self._base_url:
            self._paused_until = 0.0
        self._base_url = base

    def enable(self) -> None:
        """Publish every event again."""
        self._enabled = True

    def disable(self) -> None:
        """Publish only forced events (JS ``publishEvents: false``)."""
        self._enabled = False

    # -- publishing ----------------------------------------------------------------------
    def post(
        self,
        level: Level | str,
        group: str,
        name: str,
        payload: Mapping[str, Any] | None = None,
        call: CallInfo | None = None,
        force: bool = False,
    ) -> bool:
        """Queue an event at ``level``; True if queued. Never raises, never waits."""
        return self._post(endpoint.EVENTS_PATH, level, group, name, payload, call, force)

    def debug(
        self,
        group: str,
        name: str,
        payload: Mapping[str, Any] | None = None,
        call: CallInfo | None = None,
        force: bool = False,
    ) -> bool:
        """Queue a ``DEBUG`` event (see :meth:`post`)."""
        return self.post(Level.DEBUG, group, name, payload, call, force)

    def info(
        self,
        group: str,
        name: str,
        payload: Mapping[str, Any] | None = None,
        call: CallInfo | None = None,
        force: bool = False,
    ) -> bool:
        """Queue an ``INFO`` event (see :meth:`post`)."""
        return self.post(Level.INFO, group, name, payload, call, force)

    def warn(
        self,
        group: str,
        name: str,
        payload: Mapping[str, Any] | None = None,
        call: CallInfo | None = None,
        force: bool = False,
    ) -> bool:
        """Queue a ``WARNING`` event (see :meth:`post`)."""
        return self.post(Level.WARNING, group, name, payload, call, force)

    def error(
        self,
        group: str,
        name: str,
        payload: Mapping[str, Any] | None = None,
        call: CallInfo | None = None,
        force: bool = False,
    ) -> bool:
        """Queue an ``ERROR`` event (see :meth:`post`)."""
        return self.post(Level.ERROR, group, name, payload, call, force)

    def publish(self, event: InsightsEvent, call: CallInfo | None) -> bool:
        """Queue a built event (:mod:`softphone.insights.events`), forced if it says so."""
        return self.post(event.level, event.group, event.name, event.payload, call, event.force)

    def post_metrics(
        self,
        group: str,
        name: str,
        metrics: Sequence[Mapping[str, Any]],
        custom_fields: Mapping[str, Any] | None = None,
        call: CallInfo | None = None,
    ) -> bool:
        """Queue a metrics batch: one record per sample (JS ``formatMetric``) with
        ``custom_fields`` (:func:`~softphone.insights.events.metrics_fields`) added.

        ``metrics`` are JS sample dicts with ``inputVolume``/``outputVolume`` (see
        :class:`~softphone.insights.events.MetricsBatcher`). Never raises: a sample
        that cannot be formatted drops the batch with a log line, as JS rejects it.
        """
        try:
            records = [{**metric_record(sample), **(custom_fields or {})} for sample in metrics]
        except Exception as exc:
            self._drop("format", f"cannot format metrics for insights: {exc!r}")
            return False
        return self._post(endpoint.METRICS_PATH, Level.INFO, group, name, records, call, False)

    def _post(
        self,
        path: str,
        level: Level | str,
        group: str,
        name: str,
        payload: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
        call: CallInfo | None,
        force: bool,
    ) -> bool:
        try:
            if self._closed or (not self._enabled and not force) or self._base_url is None:
                log.debug("insights %s/%s not published (closed, disabled or no host)", group, name)
                return False
            if call is None or not call.publishable:
                log.debug("insights %s/%s not published: no call id", group, name)
                return False
            if isinstance(payload, Sequence):
                body_payload: Mapping[str, Any] | Sequence[Mapping[str, Any]] = payload
            else:
                body_payload = {**self._default_payload(call), **(payload or {})}
            body = to_json(
                envelope(
                    level,
                    group,
                    name,
                    body_payload,
                    now=self._clock(),
                    metadata=self.metadata,
                    publisher=self.product_name,
                )
            )
            if len(body) > self._max_body_bytes:
                self._drop("size", f"insights {group}/{name} dropped: {len(body)} bytes")
                return False
            self._enqueue(_Post(self._base_url + path, self._token, body, f"{group}/{name}"))
            return True
        except Exception as exc:  # telemetry never breaks a call
            self._drop("error", f"insights {group}/{name} not published: {exc!r}")
            return False

    # -- the queue and its sender --------------------------------------------------------
    def _enqueue(self, item: _Post) -> None:
        loop = asyncio.get_running_loop()  # RuntimeError outside a loop: caught by _post
        if self._sender is None:
            self._wakeup = asyncio.Event()
            self._idle = asyncio.Event()
            self._sender = loop.create_task(self._send_loop(), name="insights publisher")
            self._sender.add_done_callback(_log_sender_end)
        assert self._wakeup is not None and self._idle is not None
        if len(self._queue) >= self._max_queue:
            oldest = self._queue.popleft()
            self._drop("queue", f"insights queue full: dropped {oldest.label}")
        self._queue.append(item)
        self._idle.clear()
        self._wakeup.set()

    async def _send_loop(self) -> None:
        assert self._wakeup is not None and self._idle is not None
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            item = self._queue.popleft()
            self._in_flight = True
            try:
                await self._send(item)
            finally:
                self._in_flight = False
                if not self._queue:
                    self._idle.set()

    async def _send(self, item: _Post) -> None:
        now = asyncio.get_running_loop().time()
        if now < self._paused_until:
            self._dropped_while_paused += 1
            self.dropped += 1
            return
        if self._dropped_while_paused:
            log.info(
                "insights: %d posts dropped while the endpoint was unreachable",
                self._dropped_while_paused,
            )
            self._dropped_while_paused = 0
        headers = {"Content-Type": "application/json", endpoint.TOKEN_HEADER: item.token}
        try:
            session = self._open_session()
            async with session.post(
                item.url, data=item.body, headers=headers, ssl=self._ssl_for(item.url)
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
            self.dropped += 1
            self._paused_until = asyncio.get_running_loop().time() + self._pause_s
            self._warn(
                "unreachable",
                f"insights endpoint {item.url} unreachable ({exc!r}): {item.label} dropped, "
                f"dropping posts for {self._pause_s:g} s",
            )
            self._report_error(exc)
            return
        if 200 <= status < 300:
            self.sent += 1
        else:
            self.refused += 1
            self._warn(f"status {status}", f"insights {item.label} refused with HTTP {status}")

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        return self._session

    def _ssl_for(self, url: str) -> ssl.SSLContext | bool:
        if not url.startswith("https:"):
            return True
        if self.ssl_context is not None:
            return self.ssl_context
        if self._default_context is None:
            self._default_context = ssl.create_default_context()  # now: SSL_CERT_FILE counts
        return self._default_context

    def _report_error(self, exc: Exception) -> None:
        if self.on_error is None:
            return
        try:
            self.on_error(exc)
        except Exception:
            log.exception("insights on_error callback failed")

    def _drop(self, kind: str, message: str) -> None:
        self.dropped += 1
        self._warn(kind, message)

    def _warn(self, kind: str, message: str) -> None:
        """A warning, at most one per ``kind`` per :data:`LOG_INTERVAL_S` (else debug)."""
        now = time.monotonic()
        last = self._last_warning.get(kind)
        if last is None or now - last >= LOG_INTERVAL_S:
            self._last_warning[kind] = now
            log.warning(message)
        else:
            log.debug(message)

    # -- flush and close -----------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Posts queued and not yet handed to the network."""
        return len(self._queue)

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued post was sent or dropped; False after ``timeout_s``."""
        if self._idle is None or self._sender is None or self._sender.done():
            return not self._queue
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout_s: float = 2.0) -> None:
        """Stop accepting posts, send what is queued for at most ``timeout_s``, release
        the HTTP session. Posts still queued after that are dropped with a log line."""
        self._closed = True
        if not await self.flush(timeout_s):
            left = len(self._queue) + int(self._in_flight)
            self.dropped += left
            log.warning(
                "insights: %d posts dropped: not sent within %g s of close", left, timeout_s
            )
            self._queue.clear()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        if self._session is not None:
            await self._session.close()
            self._session = None


def _plain_default_payload(call: CallInfo) -> Mapping[str, Any]:
    return default_payload(SessionInfo(sdk_version=__version__), call)


def _log_sender_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("insights publisher stopped", exc_info=task.exception())

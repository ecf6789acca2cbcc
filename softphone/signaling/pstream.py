"""PStream: typed signaling on top of the transport (the JS ``PStream``).

Sends ``listen`` on every socket open, queues frames that could not be sent
and replays them after the next ``listen``, and re-emits every inbound message
under its wire ``type`` with the typed message object as the argument.

Events: ``transportOpen``, ``transportClose``, ``offline``, ``error(info)``
(``info`` = ``{"error": {"code", "message", ...}}``, plus ``"transport": True`` when
the failure is local (socket, send, a listener) rather than a server ``error`` frame),
one event per inbound message type (``connected``, ``ready``, ``invite``, ``answer``
…) and, Python only, ``malformed(msg_type, reason)`` for a frame that could not be
decoded (``msg_type`` is None when not even the envelope was readable).

A listener that raises never reaches the socket task: pyee turns it into an ``error``
event carrying the exception, which this class logs (code 31000) and re-emits in the
usual ``{"error": {"code": 31000, "message": ...}}`` shape.
"""

from __future__ import annotations

import enum
import logging
import platform
import ssl
from collections import deque
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from softphone.signaling.codes import TRANSPORT_ERROR, UNKNOWN_ERROR
from softphone.signaling.messages import (
    Answer,
    CallMessage,
    Close,
    Dtmf,
    Error,
    Hangup,
    Invite,
    Listen,
    MalformedMessage,
    Message,
    Register,
    Reinvite,
    Reject,
    encode,
    type_of,
)
from softphone.signaling.params import reconnect_timeout_seconds
from softphone.signaling.transport import WSTransport
from softphone.version import __version__

log = logging.getLogger("softphone.signaling.pstream")


def _internal_error(exc: BaseException, where: str) -> dict[str, Any]:
    """Log a listener's exception with its code and describe it as an ``error`` info."""
    log.error("a %s listener raised (%d UnknownError): %r", where, UNKNOWN_ERROR, exc, exc_info=exc)
    return {
        "error": {
            "code": UNKNOWN_ERROR,
            "message": f"internal error in a {where} listener: {exc!r}",
        },
        "transport": True,
    }


class StreamStatus(enum.Enum):
    """The PStream status values of the JS SDK."""

    DISCONNECTED = "disconnected"
    CONNECTED = "connected"
    READY = "ready"
    OFFLINE = "offline"


def browserinfo() -> dict[str, Any]:
    """The ``browserinfo`` block of ``listen``: who we are, shaped like the JS SDK's."""
    return {
        "browser": {
            "platform": f"{platform.system()} {platform.machine()}".strip() or "unknown",
            "userAgent": f"softphone/{__version__} Python/{platform.python_version()}",
        },
        "p": "browser",
        "plugin": "rtc",
        "v": __version__,
    }


class PStream(AsyncIOEventEmitter):
    """The signaling stream of one Device."""

    def __init__(
        self,
        token: str,
        uris: list[str],
        *,
        max_preferred_duration_ms: float = 0,
        backoff_max_ms: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        transport: WSTransport | None = None,
    ) -> None:
        super().__init__()
        self.token = token
        self.status = StreamStatus.DISCONNECTED
        self.gateway: str | None = None
        self.region: str | None = None
        self.max_preferred_duration_ms = max_preferred_duration_ms
        self.backoff_max_ms = backoff_max_ms
        self._queue: deque[tuple[Message, bool]] = deque()
        self.transport = transport or WSTransport(
            uris,
            max_preferred_duration_ms=max_preferred_duration_ms,
            ssl_context=ssl_context,
            backoff_max_ms=backoff_max_ms,
        )
        self.transport.on("open", self._on_transport_open)
        self.transport.on("close", self._on_transport_close)
        self.transport.on("error", self._on_transport_error)
        self.transport.on("message", self._on_transport_message)
        self.transport.on("malformed", self._on_transport_malformed)
        self.transport.open()

    @property
    def uri(self) -> str | None:
        """The URL of the current or last socket."""
        return self.transport.uri

    # -- transport events --------------------------------------------------------------
    def _on_transport_open(self) -> None:
        self.status = StreamStatus.CONNECTED
        self._send_listen()
        self.emit("transportOpen")
        self._flush()

    def _on_transport_close(self) -> None:
        self.emit("transportClose")
        if self.status is not StreamStatus.DISCONNECTED:
            if self.status is not StreamStatus.OFFLINE:
                self.emit("offline")
            self.status = StreamStatus.DISCONNECTED

    def emit(self, event: str, *args: Any, **kwargs: Any) -> bool:
        """pyee's ``emit``; an ``error`` carrying an exception (a listener raised) is
        logged and turned into a 31000 info first, so ``error`` listeners always get
        ``{"error": {...}}``, and an ``error`` nobody listens to (a destroyed stream) is
        logged instead of raised."""
        if event == "error" and args and isinstance(args[0], BaseException):
            args = (_internal_error(args[0], "signaling"), *args[1:])
        if event == "error" and not self.listeners("error"):
            log.info("signaling error with nobody listening: %s", args[0] if args else None)
            return False  # pyee would raise here, inside a socket callback
        return super().emit(event, *args, **kwargs)

    def _on_transport_error(self, info: dict[str, Any] | BaseException | None = None) -> None:
        if isinstance(info, BaseException):
            self.emit("error", _internal_error(info, "transport"))
            return
        if not info:
            info = {"code": UNKNOWN_ERROR, "message": "Websocket closed without a provided reason"}
        wrapped: dict[str, Any] = dict(info) if "error" in info else {"error": info}
        wrapped["transport"] = True  # a local socket failure, not a server `error` frame
        self.emit("error", wrapped)

    def _on_transport_malformed(self, exc: MalformedMessage) -> None:
        log.warning("dropping malformed signaling frame: %s", exc.reason)
        self.emit("malformed", exc.msg_type, exc.reason)

    def _on_transport_message(self, message: Message) -> None:
        """A frame the transport decoded: update the stream and re-emit it by type."""
        payload = message.payload()
        if payload.get("gateway"):
            self.gateway = payload["gateway"]
        if payload.get("region"):
            self.region = payload["region"]
        msg_type = type_of(message)
        log.debug("<- %s", msg_type)
        if isinstance(message, Close):
            self._on_close_frame()
        elif msg_type == "ready":
            self.status = StreamStatus.READY
        elif msg_type == "offline":
            self.status = StreamStatus.OFFLINE
        if isinstance(message, Error):
            # Same shape as transport errors: {"error": {code, message}, callsid?, ...}
            self.emit("error", payload)
            return
        self.emit(msg_type, message)

    def _on_close_frame(self) -> None:
        """The server said ``close``: stop for good (no reconnection)."""
        if self.status is not StreamStatus.OFFLINE:
            self.emit("offline")
        self.status = StreamStatus.OFFLINE
        self.transport.close()

    # -- sending -----------------------------------------------------------------------
    def publish(self, message: Message, *, retry: bool = True) -> bool:
        """Send ``message``; on failure emit ``error`` 31009 and queue it if ``retry``."""
        if self.transport.send(encode(message)):
            log.debug("-> %s", type_of(message))
            return True
        self.emit(
            "error",
            {
                "error": {
                    "code": TRANSPORT_ERROR,
                    "message": "Cannot send message: the signaling socket is not open",
                },
                "transport": True,
            },
        )
        if retry:
            self._queue.append((message, retry))
        return False

    def _flush(self) -> None:
        pending = list(self._queue)
        self._queue.clear()
        for message, retry in pending:
            if not self.transport.send(encode(message)) and retry:
                self._queue.append((message, retry))

    def _send_listen(self) -> None:
        listen = Listen(
            browserinfo=browserinfo(),
            reconnect_timeout=reconnect_timeout_seconds(self.max_preferred_duration_ms),
            token=self.token,
        )
        self.transport.send(encode(listen))

    def set_token(self, token: str) -> None:
        """Store a new token and send ``listen`` with it (not queued; resent on open)."""
        self.token = token
        self._send_listen()

    def register(self, audio: bool) -> None:
        """Send presence: ``register {media: {audio}}``."""
        self.publish(Register.presence(audio))

    def invite(self, sdp: str, callsid: str, params: str) -> None:
        """A new outgoing call offer."""
        twilio = {"params": params} if params else {}
        self.publish(Invite(callsid=callsid, sdp=sdp, twilio=twilio))

    def reconnect(self, sdp: str, callsid: str, reconnect: str) -> None:
        """A reconnect (or connect-token) invite for an existing CallSid."""
        self.publish(Invite(callsid=callsid, sdp=sdp, reconnect=reconnect, twilio={}))

    def answer(self, sdp: str, callsid: str) -> None:
        """Accept an incoming call with our SDP answer."""
        self.publish(Answer(sdp=sdp, callsid=callsid))

    def dtmf(self, callsid: str, digits: str) -> None:
        """Digits through signaling (no RFC 4733 sender)."""
        self.publish(Dtmf(callsid=callsid, dtmf=digits))

    def hangup(self, callsid: str, message: str | None = None) -> None:
        """End a call, optionally with a reason."""
        self.publish(Hangup(callsid=callsid, message=message))

    def reject(self, callsid: str) -> None:
        """Refuse a ringing incoming call."""
        self.publish(Reject(callsid=callsid))

    def reinvite(self, sdp: str, callsid: str) -> bool:
        """An ICE-restart offer; never queued (a later failure triggers another one)."""
        return self.publish(Reinvite(callsid=callsid, sdp=sdp), retry=False)

    def send_message(
        self,
        callsid: str,
        content: Any,
        content_type: str | None,
        message_type: str,
        voice_event_sid: str,
    ) -> None:
        """A user-defined call message; content type defaults to application/json."""
        self.publish(
            CallMessage(
                callsid=callsid,
                content=content,
                contenttype=content_type or "application/json",
                messagetype=message_type,
                voiceeventsid=voice_event_sid,
            )
        )

    def update_preferred_uri(self, uri: str | None) -> None:
        """Pin the edge of a live call for reconnection (None unpins)."""
        self.transport.update_preferred_uri(uri)

    def update_uris(self, uris: list[str]) -> None:
        """Replace the signaling URL list."""
        self.transport.update_uris(uris)

    def destroy(self) -> PStream:
        """Close the socket for good and forget queued frames."""
        self._queue.clear()
        self.transport.close()
        if self.status is not StreamStatus.DISCONNECTED:
            if self.status is not StreamStatus.OFFLINE:
                self.emit("offline")
            self.status = StreamStatus.DISCONNECTED
        return self

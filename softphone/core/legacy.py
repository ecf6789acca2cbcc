"""A thin Twilio Client 1.x facade over the 2.x API, for ported apps.

1.x apps call ``Device.setup(token, options)`` and then wait for ``ready``; calls
are ``Connection`` objects; the Device emits ``connect`` / ``disconnect`` for its
calls; handlers may be registered 1.x-style with ``device.ready(handler)``. This
module maps that onto :class:`~softphone.core.device.Device` and
:class:`~softphone.core.call.Call` and adds no behaviour of its own.

    from softphone.core.legacy import Device
    device = Device()
    device.incoming(lambda conn: conn.accept())
    await device.setup(token, {"chunderw": "wss://127.0.0.1:9443"})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from softphone.core.call import Call
from softphone.core.device import Device as DeviceV2
from softphone.core.errors import InvalidStateError
from softphone.core.events import EventEmitter

Handler = Callable[..., Any]


class Connection(EventEmitter):
    """The 1.x name for a call: a :class:`Call` with the 1.x method names."""

    def __init__(self, call: Call) -> None:
        super().__init__()
        self.call = call
        for event in (
            "accept",
            "cancel",
            "disconnect",
            "error",
            "mute",
            "reject",
            "ringing",
            "reconnecting",
            "reconnected",
            "warning",
        ):
            call.on(event, self._forwarder(event))

    def _forwarder(self, event: str) -> Handler:
        def forward(*args: Any) -> None:
            if event in ("accept", "disconnect"):
                args = (self,)  # 1.x passes the Connection, not the Call
            self.emit(event, *args)

        return forward

    @property
    def parameters(self) -> dict[str, Any]:
        """Call parameters (CallSid, From, To …) as in 1.x."""
        return self.call.parameters

    @property
    def custom_parameters(self) -> dict[str, str]:
        """Custom parameters of the call."""
        return self.call.custom_parameters

    def status(self) -> str:
        """``pending``, ``connecting``, ``ringing``, ``open``, ``reconnecting`` or ``closed``."""
        return str(self.call.status())

    def accept(self, handler: Handler | None = None) -> None:
        """Accept the call, or with a function, register an ``accept`` handler (1.x)."""
        if handler is not None:
            self.on("accept", handler)
            return
        self.call.accept()

    def reject(self, handler: Handler | None = None) -> None:
        """Reject the call, or register a ``reject`` handler."""
        if handler is not None:
            self.on("reject", handler)
            return
        self.call.reject()

    def ignore(self) -> None:
        """Stop ringing here without telling the caller."""
        self.call.ignore()

    def disconnect(self, handler: Handler | None = None) -> None:
        """Hang up, or register a ``disconnect`` handler."""
        if handler is not None:
            self.on("disconnect", handler)
            return
        self.call.disconnect()

    def mute(self, should_mute: bool = True) -> None:
        """Mute or unmute the microphone."""
        self.call.mute(should_mute)

    def is_muted(self) -> bool:
        """Whether the microphone is muted."""
        return self.call.is_muted()

    def send_digits(self, digits: str) -> None:
        """Send DTMF digits."""
        self.call.send_digits(digits)


class Device(EventEmitter):
    """The 1.x Device: ``setup``, ``ready``/``offline``, ``connect``/``disconnect`` events."""

    def __init__(self) -> None:
        super().__init__()
        self.device: DeviceV2 | None = None
        self._connections: dict[int, Connection] = {}

    async def setup(self, token: str, options: Mapping[str, Any] | None = None) -> Device:
        """Create (or re-create) the 2.x Device and register it; ``ready`` follows."""
        if self.device is not None:
            await self.device.destroy()
        device = DeviceV2(token, dict(options or {}))
        self.device = device
        device.on("registered", lambda: self.emit("ready", self))
        device.on("unregistered", lambda: self.emit("offline", self))
        device.on("error", lambda error, *_: self.emit("error", error))
        device.on("incoming", self._on_incoming)
        await device.register()
        return self

    def _wrap(self, call: Call) -> Connection:
        connection = self._connections.get(id(call))
        if connection is None:
            connection = Connection(call)
            self._connections[id(call)] = connection
            call.on("accept", lambda *_: self.emit("connect", connection))
            call.on("disconnect", lambda *_: self._ended(call, "disconnect"))
            call.on("cancel", lambda *_: self._ended(call, "cancel"))
            call.on("reject", lambda *_: self._ended(call, None))
        return connection

    def _ended(self, call: Call, event: str | None) -> None:
        connection = self._connections.pop(id(call), None)
        if connection is not None and event is not None:
            self.emit(event, connection)

    def _on_incoming(self, call: Call) -> None:
        self.emit("incoming", self._wrap(call))

    def _require(self) -> DeviceV2:
        if self.device is None:
            raise InvalidStateError("Call Device.setup(token) first")
        return self.device

    async def connect(self, params: Mapping[str, Any] | None = None) -> Connection:
        """Place a call; returns its Connection (``connect`` fires when it is answered)."""
        return self._wrap(await self._require().connect(params=params))

    def active_connection(self) -> Connection | None:
        """The call in progress, if any."""
        device = self._require()
        call = device.active_call
        return self._wrap(call) if call is not None else None

    def disconnect_all(self) -> None:
        """Hang up every call."""
        self._require().disconnect_all()

    def status(self) -> str:
        """``busy`` during a call, ``ready`` when registered, else ``offline``."""
        device = self.device
        if device is None:
            return "offline"
        if device.is_busy:
            return "busy"
        return "ready" if device.state == "registered" else "offline"

    async def destroy(self) -> None:
        """Tear the Device down."""
        if self.device is not None:
            await self.device.destroy()
            self.device = None

    # 1.x handler registration: device.ready(fn), device.incoming(fn) …
    def ready(self, handler: Handler) -> Device:
        """Register a ``ready`` handler."""
        self.on("ready", handler)
        return self

    def offline(self, handler: Handler) -> Device:
        """Register an ``offline`` handler."""
        self.on("offline", handler)
        return self

    def incoming(self, handler: Handler) -> Device:
        """Register an ``incoming`` handler (receives a Connection)."""
        self.on("incoming", handler)
        return self

    def connect_handler(self, handler: Handler) -> Device:
        """Register a ``connect`` handler (1.x ``Device.connect(fn)``)."""
        self.on("connect", handler)
        return self

    def disconnect(self, handler: Handler) -> Device:
        """Register a ``disconnect`` handler."""
        self.on("disconnect", handler)
        return self

    def cancel(self, handler: Handler) -> Device:
        """Register a ``cancel`` handler."""
        self.on("cancel", handler)
        return self

    def error(self, handler: Handler) -> Device:
        """Register an ``error`` handler."""
        self.on("error", handler)
        return self

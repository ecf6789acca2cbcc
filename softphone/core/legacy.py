"""A Twilio Client 1.x facade over the 2.x API, for ported apps.

1.x apps build ``Device(token, options)`` (or call ``setup(token, options)``) and wait
for ``ready``; calls are ``Connection`` objects; the Device emits ``connect`` /
``disconnect`` / ``cancel`` for its calls. As in 1.x, the methods that take a
handler do both jobs: given a function they register it, given anything else they
act (``conn.accept(fn)`` registers, ``conn.accept(constraints)`` answers). Methods
are snake_case as everywhere in the SDK; options accept their 1.x camelCase names.

Every documented 1.x option is accepted with its 1.x meaning (see
:func:`translate_options`); one that cannot apply off a browser is logged once as
a warning and never fails. docs/porting-from-1x.md lists every 1.x item.

    from softphone.core.legacy import Device
    device = Device()
    device.incoming(lambda conn: conn.accept())
    await device.setup(token, {"chunderw": "wss://127.0.0.1:9443"})
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import urllib.parse
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeGuard, overload

import aiohttp
import attrs

from softphone.audio_backends.base import AudioSource
from softphone.core.audio_helper import AudioHelper
from softphone.core.call import Call
from softphone.core.device import Device as DeviceV2
from softphone.core.errors import InvalidArgumentError, InvalidStateError, TwilioError
from softphone.core.events import EventEmitter
from softphone.core.remote_audio import RemoteAudio
from softphone.signaling.regions import REGION_SHORTCODES, REGION_TO_EDGE, Region

log = logging.getLogger("softphone.legacy")

Handler = Callable[..., Any]

LEGACY_REGION_NAMES: Mapping[str, Region] = {
    "asiapac-singapore": Region.SG1,
    "asiapac-sydney": Region.AU1,
    "asiapac-tokyo": Region.JP1,
    "europe-frankfurt": Region.DE1,
    "europe-ireland": Region.IE1,
    "south-america-sao-paulo": Region.BR1,
    "us-virginia": Region.US1,
    "us-oregon": Region.US2,
}
"""The pre-1.7 long region names 1.x still accepted, as region codes."""

BROWSER_ONLY: Mapping[str, str] = {
    "closeProtection": "there is no browser tab to protect from closing",
    "dscp": "aiortc cannot mark packets with DSCP",
    "disableAudioContextSounds": "sounds never use a browser AudioContext here",
    "fakeLocalDTMF": "local DTMF sounds are synthesised and never reach the call's input",
}
"""1.x options that cannot apply off a browser, and why (warned once, then ignored)."""

FORWARDED_CALL_EVENTS = (
    "accept",
    "audio",
    "cancel",
    "disconnect",
    "error",
    "mute",
    "reject",
    "ringing",
    "reconnecting",
    "reconnected",
    "sample",
    "volume",
    "warning",
    "warning-cleared",
)
"""Call events a Connection re-emits (``accept``/``disconnect``/``mute`` with itself)."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def region_to_edge(region: str) -> str:
    """The 2.x edge for a 1.x ``region`` (code, long name or legacy name), as the JS
    SDK's migration table maps it; ``InvalidArgumentError`` for an unknown region."""
    key = region.strip().lower()
    code: Region | None = None
    if key in {r.value for r in Region}:
        code = Region(key)
    elif key in LEGACY_REGION_NAMES:
        code = LEGACY_REGION_NAMES[key]
    elif key.upper().replace("-", "_") in REGION_SHORTCODES:
        code = REGION_SHORTCODES[key.upper().replace("-", "_")]
    if code is None:
        valid = sorted({r.value for r in Region} | set(LEGACY_REGION_NAMES))
        raise InvalidArgumentError(f"Unknown 1.x region {region!r}; valid: {valid}.")
    return str(REGION_TO_EDGE[code])


@attrs.frozen
class LegacyOptions:
    """1.x options translated: the 2.x options plus what the facade itself honours."""

    options: dict[str, Any]
    """Options for the 2.x :class:`~softphone.core.device.Device`."""
    region: str | None = None
    """The 1.x ``region`` given, if any (reported by :meth:`Device.region`)."""
    enable_ringing_state: bool = True
    """1.x ``enableRingingState``: without it an outgoing call goes connecting → open."""
    sound_urls: Mapping[str, str] = attrs.field(factory=dict)
    """``sounds`` given as http(s) URLs, fetched by :meth:`Device.setup`."""
    warnings: tuple[str, ...] = ()
    """What the 1.x options asked for that cannot apply here (logged once per setup)."""


def translate_options(options: Mapping[str, Any] | None) -> LegacyOptions:
    """Map 1.x Device options onto 2.x ones, warning once for those that cannot apply.

    ``debug`` and ``warnings`` set the log level (debug wins; ``warnings: False``
    hides warnings); ``region`` becomes ``edge`` unless an edge is given;
    ``audioConstraints`` becomes ``rtc_constraints["audio"]``; ``enableIceRestart``
    is always on here; ``enableRingingState`` is honoured by the facade; http(s)
    ``sounds`` are downloaded; browser-only options are accepted and ignored. Any
    other key goes to the 2.x Device as is (which rejects a typo with a hint).
    """
    given = {
        _camel(str(key)) if "_" in str(key) else str(key): value
        for key, value in (options or {}).items()
    }
    out: dict[str, Any] = {}
    notes: list[str] = []
    debug = given.pop("debug", None)
    warnings = given.pop("warnings", None)
    if debug or warnings is not None:
        out["log_level"] = "debug" if debug else ("warn" if warnings else "error")
    region = given.pop("region", None)
    if region is not None:
        if not isinstance(region, str):
            raise InvalidArgumentError("`region` must be a string such as 'us1' or 'ie1'.")
        if given.get("edge"):
            notes.append("1.x option `region` is ignored: `edge` is also given")
        else:
            out["edge"] = region_to_edge(region)
    constraints = given.pop("audioConstraints", None)
    if constraints is not None:
        out["rtc_constraints"] = {"audio": constraints}
    if given.pop("enableIceRestart", True) is False:
        notes.append(
            "1.x option `enableIceRestart: false` is ignored: calls always restart ICE "
            "when media is lost, as in 2.x",
        )
    ringing = given.pop("enableRingingState", True)
    for name, why in BROWSER_ONLY.items():
        if name in given:
            value = given.pop(name)
            notes.append(f"1.x option `{name}` has no effect here: {why}")
            if name in ("closeProtection", "dscp", "disableAudioContextSounds"):
                out[name] = value  # the 2.x Device accepts these too
    sounds = given.pop("sounds", None)
    sound_urls: dict[str, str] = {}
    if sounds is not None:
        if not isinstance(sounds, Mapping):
            raise InvalidArgumentError("`sounds` must map sound names to files or URLs.")
        local: dict[str, Any] = {}
        for name, where in sounds.items():
            scheme = urllib.parse.urlsplit(str(where)).scheme.lower()
            (sound_urls if scheme in ("http", "https") else local)[name] = where
        out["sounds"] = local
    out.update(given)
    return LegacyOptions(
        options=out,
        region=region if isinstance(region, str) else None,
        enable_ringing_state=bool(ringing),
        sound_urls=sound_urls,
        warnings=tuple(notes),
    )


async def fetch_sounds(urls: Mapping[str, str], folder: str) -> dict[str, str]:
    """Download each sound URL into ``folder``; name → local path."""
    paths: dict[str, str] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        for name, url in urls.items():
            suffix = os.path.splitext(urllib.parse.urlsplit(url).path)[1] or ".wav"
            path = os.path.join(folder, name + suffix)
            async with session.get(url) as response:
                if response.status != 200:
                    raise InvalidArgumentError(
                        f"Sound `{name}`: {url} answered HTTP {response.status}"
                    )
                data = await response.read()
            with open(path, "wb") as file:
                file.write(data)
            paths[name] = path
    return paths


def _is_handler(value: object) -> TypeGuard[Handler]:
    return callable(value) and not isinstance(value, Mapping)


class Connection(EventEmitter):
    """The 1.x name for a call: a :class:`Call` with the 1.x methods and events."""

    def __init__(self, call: Call, *, ringing_state: bool = True) -> None:
        super().__init__()
        self.call = call
        self._ringing_state = ringing_state
        self._hooks: list[tuple[str, Handler]] = []
        for event in FORWARDED_CALL_EVENTS:
            self._hook(event, self._forwarder(event))

    def _hook(self, event: str, handler: Handler) -> None:
        self.call.on(event, handler)
        self._hooks.append((event, handler))

    def detach(self) -> None:
        """Stop listening to the Call (the facade is going away)."""
        for event, handler in self._hooks:
            self.call.off(event, handler)
        self._hooks.clear()

    def _forwarder(self, event: str) -> Handler:
        def forward(*args: Any) -> None:
            if event in ("accept", "disconnect"):
                args = (self,)  # 1.x passes the Connection, not the Call
            elif event == "mute":
                args = (args[0] if args else self.call.is_muted(), self)
            elif event == "ringing" and not self._ringing_state:
                return
            self.emit(event, *args)

        return forward

    # -- properties --------------------------------------------------------------------
    @property
    def parameters(self) -> dict[str, Any]:
        """Call parameters (CallSid, From, To …) as in 1.x."""
        return self.call.parameters

    @property
    def custom_parameters(self) -> dict[str, str]:
        """Custom parameters of the call (1.x ``customParameters``)."""
        return self.call.custom_parameters

    @property
    def caller_info(self) -> dict[str, bool] | None:
        """``{"is_verified": ...}`` from the SHAKEN/STIR status, or None."""
        return self.call.caller_info

    def status(self) -> str:
        """``pending``, ``connecting``, ``ringing``, ``open``, ``reconnecting`` or ``closed``.

        With ``enableRingingState: false`` a ringing call still reads ``connecting``.
        """
        status = str(self.call.status())
        if status == "ringing" and not self._ringing_state:
            return "connecting"
        return status

    def get_local_stream(self) -> AudioSource | None:
        """The audio source feeding the call (1.x ``getLocalStream``)."""
        return self.call.get_local_stream()

    def get_remote_stream(self) -> RemoteAudio | None:
        """What we hear, as a fan-out to add sinks to (1.x ``getRemoteStream``)."""
        return self.call.get_remote_stream()

    # -- methods that register a handler or act ----------------------------------------
    def accept(self, handler_or_constraints: Handler | Mapping[str, Any] | None = None) -> None:
        """Answer (optionally with 1.x ``audioConstraints``), or register an ``accept`` handler."""
        if _is_handler(handler_or_constraints):
            self.on("accept", handler_or_constraints)
            return
        constraints = (
            {"audio": handler_or_constraints} if handler_or_constraints is not None else None
        )
        self.call.accept(rtc_constraints=constraints)

    def reject(self, handler: Handler | None = None) -> None:
        """Reject a pending call, or register a ``reject`` handler."""
        if handler is not None:
            self.on("reject", handler)
            return
        self.call.reject()

    def ignore(self, handler: Handler | None = None) -> None:
        """Stop ringing here without telling the caller; ``cancel`` fires (1.x).

        With a function, registers it as a ``cancel`` handler instead.
        """
        if handler is not None:
            self.on("cancel", handler)
            return
        if str(self.call.status()) != "pending":
            return
        self.call.ignore()
        self.emit("cancel")

    def cancel(self, handler: Handler) -> Connection:
        """Register a ``cancel`` handler (the caller hung up before an answer, or ignore())."""
        self.on("cancel", handler)
        return self

    def error(self, handler: Handler) -> Connection:
        """Register an ``error`` handler."""
        self.on("error", handler)
        return self

    def volume(self, handler: Handler) -> Connection:
        """Register a ``volume(input_volume, output_volume)`` handler."""
        self.on("volume", handler)
        return self

    def disconnect(self, handler: Handler | None = None) -> None:
        """Hang up, or register a ``disconnect`` handler."""
        if handler is not None:
            self.on("disconnect", handler)
            return
        self.call.disconnect()

    def mute(self, should_mute: bool | Handler = True) -> None:
        """Mute (or with ``False`` unmute) the microphone, or register a ``mute`` handler."""
        if _is_handler(should_mute):
            self.on("mute", should_mute)
            return
        self.call.mute(bool(should_mute))

    def unmute(self) -> None:
        """Unmute the microphone (1.x, deprecated there in favour of ``mute(False)``)."""
        self.call.mute(False)

    def is_muted(self) -> bool:
        """Whether the microphone is muted."""
        return self.call.is_muted()

    def send_digits(self, digits: str) -> None:
        """Send DTMF digits; ``w`` pauses 500 ms after the digits before it."""
        self.call.send_digits(digits)

    async def post_feedback(self, score: int | None = None, issue: str | None = None) -> None:
        """Record call-quality feedback (1.x ``postFeedback``)."""
        await self.call.post_feedback(score, issue)


class Device(EventEmitter):
    """The 1.x Device: ``setup``, ``ready``/``offline``, ``connect``/``disconnect`` events.

    ``Device(token, options)`` runs :meth:`setup` in the background as 1.x does (inside
    a running event loop; ``await device.setup_task`` to wait for it); ``Device()``
    waits for ``await device.setup(token, options)``.
    """

    def __init__(self, token: str | None = None, options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.device: DeviceV2 | None = None
        self._legacy = LegacyOptions(options={})
        self._connections: dict[int, Connection] = {}
        self._device_hooks: list[tuple[str, Handler]] = []
        self._sound_folder: tempfile.TemporaryDirectory[str] | None = None
        self._last_error: BaseException | None = None
        self.setup_task: asyncio.Task[Device] | None = None
        """The background setup started by ``Device(token, options)``, if any."""
        if token is not None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                raise InvalidStateError(
                    "Device(token) runs setup in the background: create it inside a running "
                    "event loop, or create Device() and await setup(token, options)"
                ) from None
            self._create(token, options)
            self.setup_task = asyncio.ensure_future(self._register_in_background())

    # -- setup -------------------------------------------------------------------------
    async def setup(self, token: str, options: Mapping[str, Any] | None = None) -> Device:
        """Create (or re-create) the 2.x Device and register it; ``ready`` follows."""
        if self.device is not None:
            await self._teardown()
        self._create(token, options)
        await self._register()
        return self

    def _create(self, token: str, options: Mapping[str, Any] | None) -> None:
        legacy = translate_options(options)
        device = DeviceV2(token, legacy.options)
        for warning in legacy.warnings:
            log.warning(warning)
        self._legacy = legacy
        self.device = device
        self._hook_device("registered", lambda *_: self.emit("ready", self))
        self._hook_device("unregistered", lambda *_: self.emit("offline", self))
        self._hook_device("error", self._on_device_error)
        self._hook_device("incoming", lambda call: self.emit("incoming", self._wrap(call)))

    async def _register(self) -> None:
        device = self._require()
        if self._legacy.sound_urls:
            self._sound_folder = tempfile.TemporaryDirectory(prefix="softphone-sounds-")
            fetched = await fetch_sounds(self._legacy.sound_urls, self._sound_folder.name)
            device.update_options({"sounds": {**device.options.sounds, **fetched}})
        await device.register()

    async def _register_in_background(self) -> Device:
        self._last_error = None
        try:
            await self._register()
        except TwilioError as error:
            if self._last_error is not error:  # not already reported by the 2.x Device
                self.emit("error", error)
            raise
        return self

    def _hook_device(self, event: str, handler: Handler) -> None:
        assert self.device is not None
        self.device.on(event, handler)
        self._device_hooks.append((event, handler))

    def _on_device_error(self, error: BaseException, call: Call | None = None) -> None:
        if call is not None:
            self._with_connection(error, self._wrap(call))
        self._emit_error(error)

    def _emit_error(self, error: BaseException) -> None:
        if error is self._last_error:
            return
        self._last_error = error
        self.emit("error", error)

    @staticmethod
    def _with_connection(error: BaseException, connection: Connection) -> None:
        error.connection = connection  # type: ignore[attr-defined]

    # -- connections -------------------------------------------------------------------
    def _wrap(self, call: Call) -> Connection:
        connection = self._connections.get(id(call))
        if connection is None:
            connection = Connection(call, ringing_state=self._legacy.enable_ringing_state)
            self._connections[id(call)] = connection
            connection.on("accept", lambda conn: self.emit("connect", conn))
            connection.on("disconnect", lambda conn: self._ended(call, "disconnect"))
            connection.on("cancel", lambda *_: self._ended(call, "cancel"))
            connection.on("reject", lambda *_: self._ended(call, None))
            connection.on("error", lambda error, *_: self._on_call_error(connection, error))
        return connection

    def _on_call_error(self, connection: Connection, error: BaseException) -> None:
        self._with_connection(error, connection)
        self._emit_error(error)

    def _ended(self, call: Call, event: str | None) -> None:
        connection = self._connections.pop(id(call), None)
        if connection is None:
            return
        if event is not None:
            self.emit(event, connection)
        # after the events the Call emits in the same step (an error after disconnect)
        asyncio.get_running_loop().call_soon(connection.detach)

    def _require(self) -> DeviceV2:
        if self.device is None:
            raise InvalidStateError("Call Device.setup(token) first")
        return self.device

    @overload
    def connect(self, params: Handler) -> Device: ...

    @overload
    def connect(
        self,
        params: Mapping[str, Any] | None = None,
        audio_constraints: Mapping[str, Any] | bool | None = None,
    ) -> Coroutine[Any, Any, Connection]: ...

    def connect(
        self,
        params: Handler | Mapping[str, Any] | None = None,
        audio_constraints: Mapping[str, Any] | bool | None = None,
    ) -> Device | Coroutine[Any, Any, Connection]:
        """1.x ``connect``: with a function, register a ``connect`` handler (returns the
        Device); else place a call, ``await device.connect(params, audio_constraints)``
        for its Connection (``connect`` fires when it is answered)."""
        if _is_handler(params):
            self.on("connect", params)
            return self
        device = self._require()  # fail now, not when awaited
        call_params = params if isinstance(params, Mapping) else None
        return self._place_call(device, call_params, audio_constraints)

    async def _place_call(
        self,
        device: DeviceV2,
        params: Mapping[str, Any] | None,
        audio_constraints: Mapping[str, Any] | bool | None,
    ) -> Connection:
        constraints = {"audio": audio_constraints} if audio_constraints is not None else None
        return self._wrap(await device.connect(params=params, rtc_constraints=constraints))

    def connect_handler(self, handler: Handler) -> Device:
        """Register a ``connect`` handler (same as ``connect(handler)``)."""
        self.on("connect", handler)
        return self

    def active_connection(self) -> Connection | None:
        """The call in progress, if any."""
        call = self._require().active_call
        return self._wrap(call) if call is not None else None

    def disconnect_all(self) -> None:
        """Hang up every call."""
        self._require().disconnect_all()

    # -- state -------------------------------------------------------------------------
    @property
    def audio(self) -> AudioHelper | None:
        """The 2.x ``AudioHelper`` (1.x ``Device.audio``); None before ``setup``."""
        return self.device.audio if self.device is not None else None

    @property
    def edge(self) -> str | None:
        """The edge of the signaling connection, once connected."""
        return self.device.edge if self.device is not None else None

    @property
    def is_initialized(self) -> bool:
        """Whether ``setup`` has been called (1.x ``isInitialized``)."""
        return self.device is not None

    def region(self) -> str:
        """The region the Device is connected to (1.x ``region()``, deprecated there).

        The gateway's reported region once connected, else the ``region`` option,
        else ``gll`` (global low latency) as in 1.x.
        """
        if self.device is not None and self.device.region:
            return self.device.region
        return self._legacy.region or "gll"

    def status(self) -> str:
        """``busy`` during a call, ``ready`` when registered, else ``offline``."""
        device = self.device
        if device is None:
            return "offline"
        if device.is_busy:
            return "busy"
        return "ready" if device.state == "registered" else "offline"

    async def destroy(self) -> None:
        """Hang up every call and go offline; the facade's own listeners are removed.

        Handlers the app registered on this object stay, so ``setup`` may run again.
        """
        if self.device is not None:
            await self._teardown()

    async def _teardown(self) -> None:
        device = self.device
        assert device is not None
        if self.setup_task is not None and not self.setup_task.done():
            self.setup_task.cancel()
        await device.destroy()  # emits offline through our hook, then drops listeners
        for event, handler in self._device_hooks:
            device.off(event, handler)
        self._device_hooks.clear()
        for connection in self._connections.values():
            connection.detach()
        self._connections.clear()
        if self._sound_folder is not None:
            self._sound_folder.cleanup()
            self._sound_folder = None
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

    def disconnect(self, handler: Handler) -> Device:
        """Register a ``disconnect`` handler."""
        self.on("disconnect", handler)
        return self

    def cancel(self, handler: Handler) -> Device:
        """Register a ``cancel`` handler."""
        self.on("cancel", handler)
        return self

    def error(self, handler: Handler) -> Device:
        """Register an ``error`` handler; call errors carry ``error.connection``."""
        self.on("error", handler)
        return self


__all__ = [
    "Connection",
    "Device",
    "LegacyOptions",
    "region_to_edge",
    "translate_options",
]

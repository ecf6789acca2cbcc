"""``PhoneController``: one Device driven for the phone, its events fed to the session.

The controller is the phone's only I/O with the SDK: it listens to the Device
(``registered``, ``incoming``, ``error``, ``tokenWillExpire``), to the call in
progress (``ringing``, ``accept``, ``volume``, ``warning``, ``mute``, ``dtmf``,
``disconnect`` …) and to ``device.audio`` (``deviceChange``), tells the pure
:class:`~softphone.phone.session.PhoneSession` what happened, and carries out the
session's commands (dial, accept, reject, hang up, mute, DTMF, device choices).
The Textual app and the scripted runner sit on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from softphone.audio_backends import portaudio
from softphone.cli_common import CliError
from softphone.core.call import Call, CallDirection, CallState
from softphone.core.device import Device
from softphone.core.errors import TwilioError
from softphone.phone.audio_setup import choices, set_output
from softphone.phone.session import (
    Accept,
    Command,
    Dial,
    Hangup,
    PhoneSession,
    Reject,
    SendDigits,
    ToggleMute,
)

__all__ = ["PhoneController"]

log = logging.getLogger("softphone.phone")

RESCAN_INTERVAL_S = 5.0
"""How often PortAudio is asked to look for sound cards plugged in or out (when idle)."""

Clock = Callable[[], float]
TokenSource = Callable[[str | None], str]


class PhoneController:
    """Drives ``device`` for a phone whose state is ``session``.

    ``renew_token(identity)`` returns a fresh token on ``tokenWillExpire`` (the local
    dev gateway mints one); without it the session is told the token will expire.
    ``on_change`` listeners run after every state change the view must show.
    """

    def __init__(
        self,
        device: Device,
        session: PhoneSession,
        *,
        clock: Clock = time.time,
        renew_token: TokenSource | None = None,
    ) -> None:
        self.device = device
        self.session = session
        self.clock = clock
        self.call: Call | None = None
        self._renew_token = renew_token
        self._listeners: list[Callable[[], None]] = []
        self._call_over = asyncio.Event()
        self._call_over.set()
        self._connected = asyncio.Event()
        self._incoming = asyncio.Event()
        self._was_connected = False
        self._closing = False
        self._placing = False
        self._rescan_task: asyncio.Task[None] | None = None
        device.on("registering", self._on_registering)
        device.on("registered", self._on_registered)
        device.on("unregistered", self._on_unregistered)
        device.on("error", self._on_device_error)
        device.on("incoming", self._on_incoming)
        device.on("tokenWillExpire", self._on_token_will_expire)

    # -- observers -------------------------------------------------------------------
    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change of the session a view shows."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # -- registration ----------------------------------------------------------------
    async def register(self) -> bool:
        """Register for incoming calls; False (and the reason in the session) if refused."""
        try:
            await self.device.register()
        except TwilioError as exc:
            self.session.registration_failed(exc.message, self.clock())
            self._changed()
            return False
        return True

    def _on_registering(self, *_: object) -> None:
        self.session.registering(self.clock())
        self._changed()

    def _on_registered(self, *_: object) -> None:
        self.session.registered(self.device.identity, self.clock())
        self._changed()

    def _on_unregistered(self, *_: object) -> None:
        if self._closing:
            return  # destroy() unregisters: nothing the user needs to be told
        self.session.unregistered(self.clock())
        self._changed()

    def _on_device_error(self, error: TwilioError, *_: object) -> None:
        log.info("device error: %s", error)
        if self._placing:
            return  # connect() rejects with it: the call's failure says it
        self.session.note(f"error: {error.message}", self.clock())
        self._changed()

    def _on_token_will_expire(self, *_: object) -> None:
        renewed = False
        if self._renew_token is not None:
            try:
                self.device.update_token(self._renew_token(self.device.identity))
                renewed = True
            except TwilioError as exc:
                log.warning("could not renew the token: %s", exc)
        self.session.token_expiring(renewed, self.clock())
        self._changed()

    # -- calls -----------------------------------------------------------------------
    async def dial(self, target: str) -> Call | None:
        """Call ``target`` (a ``To`` parameter); None if the call could not be placed."""
        if self.call is not None:
            raise RuntimeError("a call is in progress")
        self.session.dialing(target, self.clock())
        self._begin()
        self._changed()
        self._placing = True
        try:
            call = await self.device.connect(params={"To": target})
        except TwilioError as exc:
            self._fail_placing(exc.code, exc.message)
            return None
        finally:
            self._placing = False
        self._watch(call)
        return call

    def _fail_placing(self, code: int, message: str) -> None:
        now = self.clock()
        self.session.call_error(code, message, now)
        self.session.ended(now)
        self._call_over.set()
        self._connected.set()  # wake a waiter: this call will never connect
        self._changed()

    def _on_incoming(self, call: Call) -> None:
        if self.call is not None:
            call.ignore()  # one call at a time: let it ring elsewhere
            self.session.note(f"ignored a second call from {_peer(call)}", self.clock())
            self._changed()
            return
        self.session.incoming(_peer(call), self.clock())
        self._begin()
        self._watch(call)
        self._incoming.set()
        self._changed()

    def _begin(self) -> None:
        self._call_over.clear()
        self._connected.clear()
        self._was_connected = False

    def _watch(self, call: Call) -> None:
        self.call = call
        handlers: dict[str, Callable[..., None]] = {
            "ringing": lambda *_: self._update(self.session.far_end_ringing),
            "accept": lambda *_: self._on_accept(call),
            "reconnecting": lambda *_: self._update(self.session.reconnecting),
            "reconnected": lambda *_: self._update(self.session.reconnected),
            "mute": lambda muted, *_: self._update(
                lambda now: self.session.set_muted(bool(muted), now)
            ),
            "volume": self.session.levels,
            "warning": lambda name, *_: self._update(
                lambda now: self.session.warning(str(name), now)
            ),
            "warning-cleared": lambda name, *_: self._update(
                lambda now: self.session.warning_cleared(str(name), now)
            ),
            "dtmf": lambda digit, *_: self._update(
                lambda now: self.session.digit_received(str(digit), now)
            ),
            "error": lambda error, *_: self._update(
                lambda now: self.session.call_error(error.code, error.message, now)
            ),
        }
        for event, handler in handlers.items():
            call.on(event, handler)
        for event in ("disconnect", "cancel", "reject"):
            call.on(event, lambda *_: self._on_ended(call))

    def _update(self, change: Callable[[float], object]) -> None:
        change(self.clock())
        self._changed()

    def _on_accept(self, call: Call) -> None:
        self.session.connected(call.codec or None, self.clock())
        self._was_connected = True
        self._connected.set()
        self._changed()

    def _on_ended(self, call: Call) -> None:
        if call is not self.call:
            return
        self.call = None
        self.session.ended(self.clock())
        self._incoming.clear()
        self._call_over.set()
        self._connected.set()  # wake a waiter: the call will never connect now
        self._changed()

    def accept(self) -> None:
        """Answer the incoming call."""
        call = self.call
        if call is not None and call.direction is CallDirection.INCOMING:
            self.session.answering(self.clock())
            call.accept()
            self._changed()

    def reject(self) -> None:
        """Refuse the incoming call."""
        call = self.call
        if call is not None and call.direction is CallDirection.INCOMING:
            self.session.rejecting(self.clock())
            self._changed()
            call.reject()

    def hangup(self) -> None:
        """End the call, or give up on one still ringing."""
        call = self.call
        if call is None:
            return
        self.session.hangup_requested(self.clock())
        self._changed()
        if call.direction is CallDirection.INCOMING and call.status() is CallState.PENDING:
            call.reject()
        else:
            call.disconnect()

    def toggle_mute(self) -> None:
        """Mute or unmute the microphone (the call's ``mute`` event updates the session)."""
        if self.call is not None:
            self.call.mute(not self.call.is_muted())

    def send_digits(self, digits: str) -> None:
        """Send DTMF on the call."""
        call = self.call
        if call is None:
            return
        try:
            call.send_digits(digits)
        except TwilioError as exc:
            self.session.note(f"cannot send {digits!r}: {exc.message}", self.clock())
        else:
            self.session.digits_sent(digits, self.clock())
        self._changed()

    async def execute(self, command: Command) -> None:
        """Carry out a command of the session (a key press, the dial field)."""
        match command:
            case Dial(target):
                await self.dial(target)
            case Accept():
                self.accept()
            case Reject():
                self.reject()
            case Hangup():
                self.hangup()
            case ToggleMute():
                self.toggle_mute()
            case SendDigits(digits):
                self.send_digits(digits)

    # -- waiting (the scripted runner) -----------------------------------------------
    async def wait_incoming(self) -> None:
        """Until a call rings here."""
        await self._incoming.wait()

    async def wait_connected(self) -> bool:
        """Until the call connects (True) or ends without connecting (False)."""
        await self._connected.wait()
        return self._was_connected

    async def wait_ended(self) -> None:
        """Until there is no call."""
        await self._call_over.wait()

    # -- devices ---------------------------------------------------------------------
    def watch_devices(self, *, rescan_portaudio: bool = True) -> None:
        """Keep the session's device lists current: ``deviceChange`` (hot-plug, polled by
        the SDK) and, while idle with no sound card open, a PortAudio re-scan so cards
        plugged in after start-up appear."""
        audio = self.device.audio
        if audio is None:
            return
        audio.on("deviceChange", lambda *_: self.refresh_device_lists())
        self.refresh_device_lists()
        if rescan_portaudio and portaudio.is_available():
            self._rescan_task = asyncio.ensure_future(self._rescan_loop())

    async def _rescan_loop(self) -> None:
        audio = self.device.audio
        while audio is not None:
            await asyncio.sleep(RESCAN_INTERVAL_S)
            if self.call is not None:
                continue
            try:
                if portaudio.rescan():
                    await audio.refresh_devices()
            except Exception as exc:  # a sound system hiccup must not end the phone
                log.warning("PortAudio re-scan failed: %s", exc)

    def refresh_device_lists(self) -> None:
        """Copy the Device's inputs, outputs and selections into the session."""
        audio = self.device.audio
        if audio is None:
            return
        selected_input = audio.input_device
        speakers = sorted(info.device_id for info in audio.speaker_devices.get())
        self.session.set_devices(
            choices(audio.available_input_devices),
            choices(audio.available_output_devices),
            selected_input.device_id if selected_input is not None else "default",
            speakers[0] if speakers else "default",
            self.clock(),
        )
        self._changed()

    async def select_input(self, device_id: str) -> None:
        """Capture from ``device_id`` from now on (switches a call in progress in place)."""
        audio = self.device.audio
        if audio is None or device_id == self.session.input_id:
            return
        try:
            await audio.set_input_device(device_id)
        except TwilioError as exc:
            self.session.note(f"cannot use input {device_id}: {exc.message}", self.clock())
        self.refresh_device_lists()

    async def select_output(self, device_id: str) -> None:
        """Play calls and the ringtone on ``device_id`` from now on."""
        if self.device.audio is None or device_id == self.session.output_id:
            return
        try:
            await set_output(self.device, device_id)
        except CliError as exc:
            self.session.note(str(exc), self.clock())
        self.refresh_device_lists()

    # -- teardown --------------------------------------------------------------------
    async def close(self) -> None:
        """Hang up and destroy the Device."""
        self._closing = True
        if self._rescan_task is not None:
            self._rescan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rescan_task
        await self.device.destroy()


def _peer(call: Call) -> str:
    """Who an incoming call is from (its ``From`` parameter)."""
    value = call.parameters.get("From")
    return str(value) if value else "an unknown caller"

"""The phone's state, pure: registration, the call in progress, the call log, what keys do.

:class:`PhoneSession` is fed what happened (``registered``, ``incoming``,
``connected``, ``ended`` … each with ``now``, a wall-clock time in seconds) and
answers what to show (the phase, the levels, the active quality warnings, the
devices, the call log, a timeline of notes) and what a key press means in the
current phase (:meth:`PhoneSession.command_for_key`). It never touches a Device:
:class:`~softphone.phone.controller.PhoneController` feeds it and carries out its
commands, the Textual app and the scripted runner only read it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

from softphone.phone.targets import parse_target
from softphone.signaling.codes import DECLINE

__all__ = [
    "Accept",
    "CallRecord",
    "Command",
    "DeviceChoice",
    "Dial",
    "Direction",
    "Hangup",
    "Note",
    "Outcome",
    "Phase",
    "PhoneSession",
    "Registration",
    "Reject",
    "SendDigits",
    "ToggleMute",
]

DTMF_CHARACTERS = frozenset("0123456789*#")

WARNING_TEXT = {
    "high-rtt": "high round-trip time (delay)",
    "high-jitter": "high jitter (uneven packet timing)",
    "high-packet-loss": "packets are being lost",
    "high-packets-lost-fraction": "packets are being lost",
    "low-mos": "low call quality (MOS)",
    "low-bytes-received": "no audio is arriving",
    "low-bytes-sent": "no audio is being sent",
    "constant-audio-input-level": "the microphone gives a constant level (muted or broken?)",
    "constant-audio-output-level": "the far end sends a constant level",
    "ice-connectivity-lost": "the media path is lost",
    "ice-gathering-state": "no network path could be gathered",
}
"""Plain words for the call quality warnings a Call emits."""


class Registration(enum.StrEnum):
    """Whether the phone can receive calls."""

    OFFLINE = "offline"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


class Phase(enum.StrEnum):
    """Where the phone is with its (single) call."""

    IDLE = "idle"
    CALLING = "calling"
    """Outgoing, placed but not yet ringing at the far end."""
    RINGING = "ringing"
    """Outgoing, the far end is ringing."""
    INCOMING = "incoming"
    """An incoming call rings here, waiting for accept or reject."""
    ANSWERING = "answering"
    """Accepted here, media being set up."""
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


class Direction(enum.StrEnum):
    """Who placed a call."""

    OUTGOING = "outgoing"
    INCOMING = "incoming"


class Outcome(enum.StrEnum):
    """How a call in the log ended."""

    COMPLETED = "completed"
    """Connected, then hung up by either side without an error."""
    MISSED = "missed"
    """Incoming, the caller gave up before it was answered."""
    REJECTED = "rejected"
    """Incoming, rejected here."""
    DECLINED = "declined"
    """Outgoing, the far end rejected it."""
    CANCELLED = "cancelled"
    """Outgoing, hung up here before the far end answered."""
    FAILED = "failed"
    """An error ended it (the reason says which)."""


# -- commands: what a key press asks the controller to do --------------------------------
@attrs.frozen
class Dial:
    """Place a call to ``target`` (a ``To`` parameter)."""

    target: str


@attrs.frozen
class Accept:
    """Answer the incoming call."""


@attrs.frozen
class Reject:
    """Refuse the incoming call."""


@attrs.frozen
class Hangup:
    """End the call (or give up on one still ringing)."""


@attrs.frozen
class ToggleMute:
    """Mute or unmute the microphone."""


@attrs.frozen
class SendDigits:
    """Send DTMF ``digits`` on the call."""

    digits: str


Command = Dial | Accept | Reject | Hangup | ToggleMute | SendDigits


# -- records -------------------------------------------------------------------------------
@attrs.define
class CallRecord:
    """One call, as the call log keeps it."""

    direction: Direction
    peer: str
    started_at: float
    connected_at: float | None = None
    ended_at: float | None = None
    outcome: Outcome | None = None
    reason: str | None = None
    """The error that ended the call, if one did."""
    error_code: int | None = None
    ended_by: str | None = None
    """``"you"`` or ``"the far end"`` for a completed call."""
    codec: str | None = None
    digits_sent: str = ""
    digits_received: str = ""
    warnings: list[str] = attrs.field(factory=list)
    """Every quality warning raised during the call, in order, once each."""
    input_peak: float = 0.0
    """The loudest input (0..1) sent while connected."""
    output_peak: float = 0.0
    """The loudest output (0..1) heard while connected."""

    @property
    def duration_s(self) -> float | None:
        """Connected time, once the call has ended (None if it never connected)."""
        if self.connected_at is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.connected_at)

    @property
    def ok(self) -> bool:
        """Connected and ended without an error: what a scripted call must achieve."""
        return self.outcome is Outcome.COMPLETED

    def summary(self) -> str:
        """One line: who, how it ended and why."""
        arrow = "to" if self.direction is Direction.OUTGOING else "from"
        text = f"{self.direction} call {arrow} {self.peer}: {self.outcome or 'in progress'}"
        if self.duration_s is not None:
            text += f" after {self.duration_s:.1f} s"
        if self.ended_by and self.outcome is Outcome.COMPLETED:
            text += f", hung up by {self.ended_by}"
        if self.reason:
            text += f" ({self.reason})"
        return text


@attrs.frozen
class Note:
    """A timeline line: something that happened, at ``at`` (wall-clock seconds)."""

    at: float
    text: str


@attrs.frozen
class DeviceChoice:
    """An audio device a picker offers."""

    device_id: str
    label: str


Listener = Callable[[Note], None]


class PhoneSession:
    """The phone's state machine; every method that changes it takes ``now``."""

    def __init__(self, now: float, *, identity: str | None = None) -> None:
        self.started_at = now
        self.identity = identity
        self.registration = Registration.OFFLINE
        self.registration_error: str | None = None
        self.phase = Phase.IDLE
        self.current: CallRecord | None = None
        self.log: list[CallRecord] = []
        """Finished calls, oldest first."""
        self.muted = False
        self.input_level = 0.0
        self.output_level = 0.0
        self.warnings: dict[str, str] = {}
        """Quality warnings active now: name → plain words."""
        self.notes: list[Note] = []
        self.inputs: list[DeviceChoice] = []
        self.outputs: list[DeviceChoice] = []
        self.input_id: str | None = None
        self.output_id: str | None = None
        self.devices_version = 0
        """Bumped whenever the device lists or selections change (views redraw pickers)."""
        self._hangup_requested = False
        self._rejected_here = False
        self._listeners: list[Listener] = []

    # -- observers -------------------------------------------------------------------
    def on_note(self, listener: Listener) -> None:
        """Call ``listener`` with every new timeline note (the scripted transcript)."""
        self._listeners.append(listener)

    def note(self, text: str, now: float) -> None:
        """Add a line to the timeline."""
        entry = Note(now, text)
        self.notes.append(entry)
        for listener in list(self._listeners):
            listener(entry)

    # -- registration ----------------------------------------------------------------
    def registering(self, now: float) -> None:
        """``register()`` started."""
        self.registration = Registration.REGISTERING
        self.note(f"registering{self._as()}", now)

    def registered(self, identity: str | None, now: float) -> None:
        """The gateway confirmed the registration: calls to ``client:identity`` ring here."""
        self.identity = identity or self.identity
        self.registration = Registration.REGISTERED
        self.registration_error = None
        self.note(f"registered{self._as()}: calls to client:{self.identity} ring here", now)

    def registration_failed(self, reason: str, now: float) -> None:
        """``register()`` was refused or could not reach the gateway."""
        self.registration = Registration.FAILED
        self.registration_error = reason
        self.note(f"registration failed: {reason}", now)

    def unregistered(self, now: float) -> None:
        """No longer registered (signaling lost; the SDK re-registers when it is back)."""
        if self.registration is Registration.REGISTERED:
            self.registration = Registration.OFFLINE
            self.note("unregistered: incoming calls cannot reach this phone", now)

    def token_expiring(self, renewed: bool, now: float) -> None:
        """``tokenWillExpire``: renewed here (local gateway) or the user must restart."""
        if renewed:
            self.note("access token renewed", now)
        else:
            self.note("the access token expires soon: restart with a fresh --token", now)

    def _as(self) -> str:
        return f" as {self.identity}" if self.identity else ""

    # -- the call --------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a call (placed, ringing or connected) exists."""
        return self.current is not None

    def dialing(self, target: str, now: float) -> None:
        """An outgoing call to ``target`` is being placed."""
        self._start(CallRecord(Direction.OUTGOING, target, now), Phase.CALLING)
        self.note(f"calling {target}", now)

    def incoming(self, peer: str, now: float) -> None:
        """An incoming call from ``peer`` rings here."""
        self._start(CallRecord(Direction.INCOMING, peer, now), Phase.INCOMING)
        self.note(f"incoming call from {peer}", now)

    def _start(self, record: CallRecord, phase: Phase) -> None:
        self.current = record
        self.phase = phase
        self.muted = False
        self.warnings.clear()
        self.input_level = self.output_level = 0.0
        self._hangup_requested = False
        self._rejected_here = False

    def far_end_ringing(self, now: float) -> None:
        """The far end rings (outgoing)."""
        if self.phase is Phase.CALLING:
            self.phase = Phase.RINGING
            self.note("ringing", now)

    def answering(self, now: float) -> None:
        """The incoming call was accepted here; media is being set up."""
        if self.phase is Phase.INCOMING:
            self.phase = Phase.ANSWERING
            self.note("answering", now)

    def connected(self, codec: str | None, now: float) -> None:
        """Media flows both ways."""
        record = self.current
        if record is None or record.connected_at is not None:
            return
        record.connected_at = now
        record.codec = codec or None
        self.phase = Phase.CONNECTED
        detail = f" ({codec})" if codec else ""
        self.note(f"connected with {record.peer}{detail}", now)

    def reconnecting(self, now: float) -> None:
        """Media or signaling was lost; the SDK is reconnecting."""
        if self.current is not None and self.phase is Phase.CONNECTED:
            self.phase = Phase.RECONNECTING
            self.note("connection lost: reconnecting", now)

    def reconnected(self, now: float) -> None:
        """The call is back after :meth:`reconnecting`."""
        if self.phase is Phase.RECONNECTING:
            self.phase = Phase.CONNECTED
            self.note("reconnected", now)

    def set_muted(self, muted: bool, now: float) -> None:
        """The microphone was muted or unmuted."""
        if self.current is None or muted == self.muted:
            return
        self.muted = muted
        self.note("muted" if muted else "unmuted", now)

    def digits_sent(self, digits: str, now: float) -> None:
        """DTMF ``digits`` went out on the call."""
        if self.current is not None:
            self.current.digits_sent += digits
            self.note(f"sent DTMF {digits}", now)

    def digit_received(self, digit: str, now: float) -> None:
        """The far end pressed ``digit``."""
        if self.current is not None:
            self.current.digits_received += digit
            self.note(f"received DTMF {digit}", now)

    def levels(self, input_level: float, output_level: float) -> None:
        """The latest input/output volume (0..1, every 50 ms during a call)."""
        self.input_level = input_level
        self.output_level = output_level
        record = self.current
        if record is not None and record.connected_at is not None:
            record.input_peak = max(record.input_peak, input_level)
            record.output_peak = max(record.output_peak, output_level)

    def warning(self, name: str, now: float) -> None:
        """A call quality warning was raised."""
        if self.current is None or name in self.warnings:
            return
        text = WARNING_TEXT.get(name, name)
        self.warnings[name] = text
        if name not in self.current.warnings:
            self.current.warnings.append(name)
        self.note(f"quality warning: {name}: {text}", now)

    def warning_cleared(self, name: str, now: float) -> None:
        """A call quality warning is over."""
        if self.warnings.pop(name, None) is not None:
            self.note(f"quality warning cleared: {name}", now)

    def hangup_requested(self, now: float) -> None:
        """The user (or ``--hangup-after``) hangs up."""
        if self.current is not None and not self._hangup_requested:
            self._hangup_requested = True
            self.note("hanging up", now)

    def rejecting(self, now: float) -> None:
        """The user rejects the incoming call."""
        if self.phase is Phase.INCOMING:
            self._rejected_here = True
            self.note("rejecting", now)

    def call_error(self, code: int, message: str, now: float) -> None:
        """The call reported an error (it usually ends right after)."""
        record = self.current
        if record is None:
            return
        if record.reason is None:
            record.reason = message
            record.error_code = code
        self.note(f"call error: {message}", now)

    def ended(self, now: float) -> CallRecord | None:
        """The call is over (``disconnect``, ``cancel`` or ``reject``); returns its record."""
        record = self.current
        if record is None:
            return None
        record.ended_at = now
        record.outcome, record.ended_by, record.reason = self._outcome(record)
        self.log.append(record)
        self.current = None
        self.phase = Phase.IDLE
        self.muted = False
        self.warnings.clear()
        self.input_level = self.output_level = 0.0
        self.note(f"call ended: {record.summary()}", now)
        return record

    def _outcome(self, record: CallRecord) -> tuple[Outcome, str | None, str | None]:
        """(outcome, who hung up, why it failed) of the call ``record`` that just ended."""
        by = "you" if self._hangup_requested else "the far end"
        if record.reason is not None:
            if record.direction is Direction.OUTGOING and record.error_code == DECLINE:
                return Outcome.DECLINED, None, record.reason
            return Outcome.FAILED, None, record.reason
        if record.connected_at is not None:
            return Outcome.COMPLETED, by, None
        if record.direction is Direction.INCOMING:
            return (Outcome.REJECTED if self._rejected_here else Outcome.MISSED), None, None
        if self._hangup_requested:
            return Outcome.CANCELLED, None, None
        return Outcome.FAILED, None, "the call ended before it was answered"

    # -- devices ---------------------------------------------------------------------
    def set_devices(
        self,
        inputs: list[DeviceChoice],
        outputs: list[DeviceChoice],
        input_id: str | None,
        output_id: str | None,
        now: float,
    ) -> None:
        """The devices on offer and the ones in use; notes what appeared or went away."""
        if (inputs, outputs, input_id, output_id) == (
            self.inputs,
            self.outputs,
            self.input_id,
            self.output_id,
        ):
            return
        first = not self.inputs and not self.outputs
        if not first:
            self._note_changes("input", self.inputs, inputs, now)
            self._note_changes("output", self.outputs, outputs, now)
            for kind, old, new in (
                ("input", self.input_id, input_id),
                ("output", self.output_id, output_id),
            ):
                if old != new:
                    choices = inputs if kind == "input" else outputs
                    self.note(f"{kind} device: {_label(choices, new)}", now)
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.input_id, self.output_id = input_id, output_id
        self.devices_version += 1

    def _note_changes(
        self, kind: str, old: list[DeviceChoice], new: list[DeviceChoice], now: float
    ) -> None:
        before = {c.device_id for c in old}
        after = {c.device_id for c in new}
        for choice in new:
            if choice.device_id not in before:
                self.note(f"{kind} device added: {choice.label}", now)
        for choice in old:
            if choice.device_id not in after:
                self.note(f"{kind} device removed: {choice.label}", now)

    # -- what keys do ----------------------------------------------------------------
    def dial_command(self, text: str) -> Dial:
        """The command for the dial field's text; ``ValueError`` saying what to type."""
        if self.busy:
            raise ValueError("already in a call: hang up first")
        return Dial(parse_target(text))

    def command_for_key(self, key: str, character: str | None = None) -> Command | None:
        """What pressing ``key`` (Textual's key name; ``character`` if printable) means now.

        While idle the dial field takes the keys (Enter dials: :meth:`dial_command`).
        Incoming: ``a``/Enter accept, ``r``/Escape reject. In a call: 0-9 * # send
        DTMF, ``m`` mutes or unmutes, ``h``/Escape hang up.
        """
        phase = self.phase
        if phase is Phase.INCOMING:
            if key in ("a", "enter"):
                return Accept()
            if key in ("r", "escape"):
                return Reject()
            return None
        if phase in (Phase.CALLING, Phase.RINGING, Phase.ANSWERING):
            return Hangup() if key in ("h", "escape") else None
        if phase in (Phase.CONNECTED, Phase.RECONNECTING):
            if key in ("h", "escape"):
                return Hangup()
            if key == "m":
                return ToggleMute()
            if character is not None and character in DTMF_CHARACTERS:
                return SendDigits(character)
        return None

    def key_help(self) -> list[tuple[str, str]]:
        """(keys, what they do) for the current phase, for a help bar."""
        phase = self.phase
        if phase is Phase.IDLE:
            keys = [("Enter", "call what you typed")]
        elif phase is Phase.INCOMING:
            keys = [("a/Enter", "accept"), ("r/Esc", "reject")]
        elif phase in (Phase.CONNECTED, Phase.RECONNECTING):
            keys = [
                ("0-9 * #", "DTMF"),
                ("m", "unmute" if self.muted else "mute"),
                ("h/Esc", "hang up"),
            ]
        else:
            keys = [("h/Esc", "hang up")]
        return [*keys, ("F2/F3", "input/output device"), ("Ctrl+Q", "quit")]

    # -- reading ---------------------------------------------------------------------
    def headline(self, now: float) -> str:
        """The call panel's main line: what the phone is doing right now."""
        record = self.current
        if record is None:
            if self.registration is Registration.FAILED:
                return f"Not registered: {self.registration_error}"
            return "Ready: type a number or client:NAME and press Enter"
        if self.phase is Phase.INCOMING:
            return f"Incoming call from {record.peer}"
        if self.phase is Phase.CALLING:
            return f"Calling {record.peer}…"
        if self.phase is Phase.RINGING:
            return f"Ringing {record.peer}…"
        if self.phase is Phase.ANSWERING:
            return f"Answering {record.peer}…"
        elapsed = now - (record.connected_at or now)
        minutes, seconds = divmod(int(elapsed), 60)
        text = f"In call with {record.peer}  {minutes:02d}:{seconds:02d}"
        if record.codec:
            text += f"  ({record.codec})"
        if self.phase is Phase.RECONNECTING:
            text += "  RECONNECTING"
        if self.muted:
            text += "  MUTED"
        return text


def _label(choices: list[DeviceChoice], device_id: str | None) -> str:
    for choice in choices:
        if choice.device_id == device_id:
            return choice.label
    return device_id or "default"

"""The interactive phone: a Textual view of :class:`~softphone.phone.session.PhoneSession`.

Everything the screen shows is read from the session; every key press in a call is
turned into a command by :meth:`PhoneSession.command_for_key` and carried out by
the :class:`~softphone.phone.controller.PhoneController`. The view only lays out:
the call panel (what is happening, the dial field, Accept/Reject and Hang up
buttons, live input/output meters, quality warnings, digits), the device pickers,
the call log and the timeline, and a bar saying what the keys do right now.
"""

from __future__ import annotations

import time
from typing import ClassVar

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Button, DataTable, Header, Input, Label, Log, Select, Static

from softphone.phone.connection import open_phone
from softphone.phone.controller import PhoneController
from softphone.phone.session import (
    Accept,
    CallRecord,
    Command,
    DeviceChoice,
    Hangup,
    Phase,
    PhoneSession,
    Registration,
    Reject,
)
from softphone.phone.settings import PhoneSettings
from softphone.phone.targets import TARGET_HELP

__all__ = ["PhoneApp", "meter", "run_app"]

METER_WIDTH = 30
REFRESH_S = 0.1
"""How often the call timer and the level meters are redrawn."""
IN_CALL = (Phase.CONNECTED, Phase.RECONNECTING)


def meter(level: float, width: int = METER_WIDTH) -> str:
    """A level bar for ``level`` (0..1): ``████████░░░░``."""
    filled = round(max(0.0, min(1.0, level)) * width)
    return "█" * filled + "░" * (width - filled)


class PhoneApp(App[int]):
    """The ``softphone phone`` screen, driven by ``controller``."""

    TITLE = "softphone phone"
    CSS = """
    #main { height: auto; max-height: 70%; }
    #call { width: 2fr; height: auto; padding: 0 1; border: round $primary; }
    #side { width: 1fr; height: auto; padding: 0 1; border: round $secondary; }
    #headline { text-style: bold; height: 2; }
    #incoming-buttons, #call-buttons { height: auto; }
    #meters, #warnings, #digits { height: auto; margin-top: 1; }
    #warnings { color: $warning; }
    #call-log { height: 1fr; min-height: 3; border: round $secondary; }
    #timeline { height: 1fr; min-height: 3; border: round $secondary; }
    #keys { height: 1; background: $panel; }
    .hidden { display: none; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "pick('input-device')", "Input device", show=False),
        Binding("f3", "pick('output-device')", "Output device", show=False),
    ]

    def __init__(
        self,
        controller: PhoneController,
        *,
        register: bool = True,
        rescan_portaudio: bool = True,
    ) -> None:
        super().__init__()
        self.controller = controller
        self.session: PhoneSession = controller.session
        self._auto_register = register
        self._auto_rescan = rescan_portaudio
        self._shown_notes = 0
        self._shown_log = -1
        self._shown_devices = -1
        self._shown_phase: Phase | None = None

    # -- layout ----------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="call"):
                yield Static(id="headline")
                yield Input(placeholder=f"call: {TARGET_HELP}", id="dial")
                with Horizontal(id="incoming-buttons"):
                    yield Button("Accept", id="accept", variant="success")
                    yield Button("Reject", id="reject", variant="error")
                with Horizontal(id="call-buttons"):
                    yield Button("Hang up", id="hangup", variant="error")
                yield Static(id="meters")
                yield Static(id="warnings")
                yield Static(id="digits")
            with Vertical(id="side"):
                yield Label("Input device (F2)")
                yield Select[str]([], id="input-device", prompt="input", allow_blank=True)
                yield Label("Output device (F3)")
                yield Select[str]([], id="output-device", prompt="output", allow_blank=True)
        yield DataTable(id="call-log", show_cursor=False)
        yield Log(id="timeline")
        yield Static(id="keys")

    def on_mount(self) -> None:
        table = self.query_one("#call-log", DataTable)
        table.add_columns("time", "call", "with", "outcome", "length", "detail")
        for widget_id in ("#call-log", "#timeline", "#accept", "#reject", "#hangup"):
            self.query_one(widget_id).can_focus = False
        self.controller.on_change(self.refresh_view)
        self.controller.watch_devices(rescan_portaudio=self._auto_rescan)
        self.set_interval(REFRESH_S, self._tick)
        self.refresh_view()
        if self._auto_register:
            self.run_worker(self.controller.register(), exclusive=True, group="register")

    # -- drawing ---------------------------------------------------------------------
    def refresh_view(self) -> None:
        """Redraw everything from the session (cheap parts always, lists when changed)."""
        if not self.is_running:
            return
        try:
            self._draw()
        except NoMatches:  # the screen is being torn down
            return

    def _draw(self) -> None:
        session = self.session
        self.sub_title = self._registration_text()
        self._tick()
        self._draw_phase(session.phase)
        record = session.current
        warnings = [f"⚠ {name}: {text}" for name, text in session.warnings.items()]
        self.query_one("#warnings", Static).update("\n".join(warnings))
        digits = ""
        if record is not None and (record.digits_sent or record.digits_received):
            digits = (
                f"DTMF sent {record.digits_sent or '-'}  received {record.digits_received or '-'}"
            )
        self.query_one("#digits", Static).update(digits)
        keys = "  ".join(f"[b]{key}[/b] {what}" for key, what in session.key_help())
        self.query_one("#keys", Static).update(keys)
        self._draw_timeline()
        self._draw_log()
        self._draw_devices()

    def _registration_text(self) -> str:
        session = self.session
        who = session.identity or "?"
        if session.registration is Registration.REGISTERED:
            return f"{who}: registered"
        if session.registration is Registration.FAILED:
            return f"{who}: NOT registered"
        return f"{who}: {session.registration}"

    def _tick(self) -> None:
        """The parts that move by themselves: the call timer and the meters."""
        if not self.is_running:
            return
        session = self.session
        try:
            self.query_one("#headline", Static).update(session.headline(time.time()))
            meters = ""
            if session.phase in IN_CALL:
                meters = (
                    f"in  {meter(session.input_level)} {session.input_level:4.2f}"
                    f"{'  (muted)' if session.muted else ''}\n"
                    f"out {meter(session.output_level)} {session.output_level:4.2f}"
                )
            self.query_one("#meters", Static).update(meters)
        except NoMatches:
            return

    def _draw_phase(self, phase: Phase) -> None:
        """Show the controls of ``phase``; the dial field has the keys only while idle."""
        self.query_one("#incoming-buttons").set_class(phase is not Phase.INCOMING, "hidden")
        in_call = phase not in (Phase.IDLE, Phase.INCOMING)
        self.query_one("#call-buttons").set_class(not in_call, "hidden")
        if phase is self._shown_phase:
            return
        self._shown_phase = phase
        dial = self.query_one("#dial", Input)
        dial.disabled = phase is not Phase.IDLE
        if phase is Phase.IDLE:
            dial.focus()
        else:
            self.set_focus(None)  # keys go to the app: accept, reject, DTMF, mute, hang up

    def _draw_timeline(self) -> None:
        notes = self.session.notes
        if self._shown_notes >= len(notes):
            return
        timeline = self.query_one("#timeline", Log)
        for note in notes[self._shown_notes :]:
            stamp = time.strftime("%H:%M:%S", time.localtime(note.at))
            timeline.write_line(f"{stamp} {note.text}")
        self._shown_notes = len(notes)

    def _draw_log(self) -> None:
        log = self.session.log
        if self._shown_log == len(log):
            return
        self._shown_log = len(log)
        table = self.query_one("#call-log", DataTable)
        table.clear()
        for record in reversed(log):
            table.add_row(*_log_row(record))

    def _draw_devices(self) -> None:
        session = self.session
        if self._shown_devices == session.devices_version:
            return
        self._shown_devices = session.devices_version
        for widget_id, options, selected in (
            ("#input-device", session.inputs, session.input_id),
            ("#output-device", session.outputs, session.output_id),
        ):
            picker: Select[str] = self.query_one(widget_id, Select)
            picker.set_options(_options(options))
            if selected is not None and any(c.device_id == selected for c in options):
                picker.value = selected

    # -- input -----------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the dial field: call what was typed."""
        try:
            command = self.session.dial_command(event.value)
        except ValueError as exc:
            self.session.note(str(exc), time.time())
            self.refresh_view()
            return
        event.input.value = ""
        self._run(command)

    def on_key(self, event: events.Key) -> None:
        """Keys nobody else took: the session says what they mean in this phase."""
        command = self.session.command_for_key(event.key, event.character)
        if command is not None:
            event.stop()
            self._run(command)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """The Accept, Reject and Hang up buttons."""
        commands: dict[str | None, Command] = {
            "accept": Accept(),
            "reject": Reject(),
            "hangup": Hangup(),
        }
        command = commands.get(event.button.id)
        if command is not None:
            self._run(command)

    def on_select_changed(self, event: Select.Changed) -> None:
        """A device picked in one of the pickers."""
        value = event.value
        if not isinstance(value, str):
            return
        if event.select.id == "input-device":
            self.run_worker(self.controller.select_input(value), group="devices")
        elif event.select.id == "output-device":
            self.run_worker(self.controller.select_output(value), group="devices")

    def action_pick(self, widget_id: str) -> None:
        """F2/F3: go to a device picker."""
        self.query_one(f"#{widget_id}", Select).focus()

    def _run(self, command: Command) -> None:
        self.run_worker(self.controller.execute(command), group="calls")


def _options(choices: list[DeviceChoice]) -> list[tuple[str, str]]:
    return [(choice.label, choice.device_id) for choice in choices]


def _log_row(record: CallRecord) -> tuple[str, ...]:
    """A call log row: when, which way, with whom, how it ended, how long, why."""
    duration = record.duration_s
    detail = record.reason or (f"hung up by {record.ended_by}" if record.ended_by else "")
    return (
        time.strftime("%H:%M:%S", time.localtime(record.started_at)),
        "out" if record.direction == "outgoing" else "in",
        record.peer,
        str(record.outcome or ""),
        f"{duration:.0f} s" if duration is not None else "-",
        detail,
    )


async def run_app(settings: PhoneSettings) -> int:
    """Open the phone of ``settings`` and run the interactive UI until the user quits."""
    identity = settings.identity if settings.url is None else None
    session = PhoneSession(time.time(), identity=identity)
    async with open_phone(settings, session, time.time) as controller:
        result = await PhoneApp(controller).run_async()
    return result or 0

"""One call running a TwiML application: the I/O around the sans-I/O runner.

What: an :class:`AppCall` owns a :class:`~softphone.gateway.twiml.runner.TwimlRunner`
and carries out its actions on one call leg (the *app leg*: a Device's call to the
application, or the Device a REST-created call rang):

* ``Answer``: the router answers the leg, with a :class:`PromptPlayer` as its audio;
* ``Say`` / ``Play`` / ``PlayDigits``: espeak-ng speech, fetched or local audio, RFC
  4733 digits, queued on the player (``PromptDone`` when the caller has heard it);
* ``StartRecording`` / ``StopRecording``: a :class:`Recorder` on the leg's remote
  audio (beep first), the WAV kept under the recordings folder with a RecordingSid;
* ``Dial`` / ``StopDial``: the router rings the clients (:class:`AppRouter`), bridges
  the first to answer, and reports back here;
* ``Fetch`` / ``Callback``: signed webhooks; status callbacks for the call's events.

Every input (media, HTTP replies, the caller's frames, the runner's timer) is posted
to one queue and applied in order by one task, so the runner never sees two events
at once and nothing the caller does is lost while an action is carried out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import attrs
import numpy as np

from softphone.audio_backends.base import SAMPLE_RATE, Pcm
from softphone.gateway.accounts import Application
from softphone.gateway.app.play_audio import PlayError
from softphone.gateway.app.prompt_player import PromptPlayer
from softphone.gateway.app.recorder import Recorder, write_dial_recording
from softphone.gateway.app.services import AppServices, recording_sid
from softphone.gateway.app.speech import SpeechUnavailable
from softphone.gateway.app.webhooks import WebhookFailed
from softphone.gateway.call_store import Recording
from softphone.gateway.twiml import actions, events
from softphone.gateway.twiml.model import Client, Method
from softphone.gateway.twiml.params import status_callback_params
from softphone.gateway.twiml.runner import TwimlRunner
from softphone.signaling.codes import BUSY_HERE, DECLINE

log = logging.getLogger("softphone.gateway.app")

BEEP_HZ = 1000.0
BEEP_S = 0.25
_BEEP_REF = -1
"""The player ref of ``<Record>``'s beep (the runner's refs are positive)."""
DTMF_PAUSE_S = 0.5
MAX_DIAL_RECORDING_S = 4 * 3600
"""``<Dial record>`` keeps at most the dial's ``timeLimit`` (4 h by default)."""


class AppRouter(Protocol):
    """What an application call needs of the call router (which owns the legs)."""

    async def app_answer(self, app: AppCall) -> bool:
        """Answer the app leg with ``app.player`` as its audio; False if that failed
        (the router has then ended the call)."""

    async def app_dial(self, app: AppCall, clients: tuple[Client, ...], caller_id: str) -> None:
        """Ring ``clients``; report with :meth:`AppCall.dial_answered` and
        :meth:`AppCall.dial_over`."""

    async def app_stop_dial(self, app: AppCall) -> None:
        """Cancel ringing dial legs and hang up a bridged one; then ``dial_over``."""

    async def app_end(self, app: AppCall, reason: str, error: dict[str, Any] | None) -> None:
        """End the call (the application hung up, rejected it or failed)."""


@attrs.frozen(kw_only=True)
class AppSettings:
    """Who the application is and where its webhooks go."""

    account_sid: str
    auth_token: str
    application: Application


def beep() -> Pcm:
    """``<Record playBeep>``'s beep: a quarter second of 1 kHz."""
    t = np.arange(int(SAMPLE_RATE * BEEP_S)) / SAMPLE_RATE
    return (np.sin(2 * np.pi * BEEP_HZ * t) * 8000).astype(np.int16)


class AppCall:
    """Runs one call's TwiML; see the module docstring."""

    def __init__(
        self,
        runner: TwimlRunner,
        settings: AppSettings,
        call_params: dict[str, str],
        router: AppRouter,
        services: AppServices,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.call_params = call_params
        self.call_sid = call_params["CallSid"]
        self.router = router
        self.services = services
        self._loop = asyncio.get_running_loop()
        self._clock = clock or self._loop.time
        self.player = PromptPlayer(lambda ref: self.post(events.PromptDone(ref)))
        self.leg_pc: Any = None
        """The app leg's peer connection once answered (set by the router)."""
        self._queue: asyncio.Queue[events.Event] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._fetches: dict[int, asyncio.Task[None]] = {}
        self._digit_players: dict[int, asyncio.Task[None]] = {}
        self._recorder: Recorder | None = None
        self._recording_ref: int | None = None
        self._recording_trim = True
        self._dial_ref: int | None = None
        self._dial_record = "do-not-record"
        self._dial_legs: list[tuple[Recorder, int]] = []
        """``<Dial record>``: a recorder per leg and where its audio starts."""
        self._answered_at: float | None = None
        self._started_at = services.clock()
        self._sequence = 0
        self.caller_gone = False
        self.error: dict[str, Any] | None = None
        """The error the application ended the call with, if any (for the record)."""

    # -- lifecycle -----------------------------------------------------------------------
    def announce(self) -> None:
        """The call exists: status callbacks ``initiated`` and ``ringing``."""
        self.status_event("initiated", "queued")
        self.status_event("ringing", "ringing")

    def answered_elsewhere(self) -> None:
        """The app leg was answered before the runner started (a REST-created call)."""
        self._answered_at = self.services.clock()
        self.status_event("answered", "in-progress")

    def start(self) -> None:
        """Run the application."""
        self._worker = asyncio.ensure_future(self._work())
        self.post(events.Start())

    def post(self, event: events.Event) -> None:
        """Queue ``event`` for the runner (safe from any callback on the loop)."""
        self._queue.put_nowait(event)

    def caller_hung_up(self) -> None:
        """The caller (or the REST API) ended the call: the runner's final requests still go."""
        if not self.caller_gone:
            self.caller_gone = True
            self.post(events.Hangup())

    @property
    def finished(self) -> bool:
        """True once the runner has nothing more to do."""
        return self.runner.finished

    async def _work(self) -> None:
        try:
            while not self.runner.finished:
                event = await self._queue.get()
                await self._apply(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s: the application runner failed", self.call_sid)
            await self.router.app_end(self, "application runner failed", None)
        finally:
            self._teardown()

    async def _apply(self, event: events.Event) -> None:
        for action in self.runner.process(event, self._clock()):
            await self._do(action)
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.runner.next_deadline
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._timer = self._loop.call_later(delay, self.post, events.Tick())

    def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in [*self._fetches.values(), *self._digit_players.values()]:
            task.cancel()
        self._fetches.clear()
        self.player.close()
        if self._recorder is not None:
            self._recorder.close()

    async def close(self) -> None:
        """Stop at once (gateway shutdown)."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    # -- actions ---------------------------------------------------------------------------
    async def _do(self, action: actions.Action) -> None:
        if isinstance(action, actions.Answer):
            if await self.router.app_answer(self):
                self._answered_at = self.services.clock()
                self.status_event("answered", "in-progress")
        elif isinstance(action, actions.Say):
            await self._say(action)
        elif isinstance(action, actions.Play):
            await self._play(action)
        elif isinstance(action, actions.PlayDigits):
            self._digit_players[action.ref] = asyncio.ensure_future(self._play_digits(action))
        elif isinstance(action, actions.StopPrompt):
            self.player.stop(action.ref)
            task = self._digit_players.pop(action.ref, None)
            if task is not None:
                task.cancel()
        elif isinstance(action, actions.StartRecording):
            self._start_recording(action)
        elif isinstance(action, actions.StopRecording):
            await self._stop_recording(action.ref)
        elif isinstance(action, actions.Dial):
            self._dial_ref = action.ref
            self._dial_record = action.record
            if "ringing" in action.record:
                self._record_leg(self.leg_pc)
            await self.router.app_dial(self, action.clients, action.caller_id)
        elif isinstance(action, actions.StopDial):
            await self.router.app_stop_dial(self)
        elif isinstance(action, actions.Fetch):
            self._fetch(action)
        elif isinstance(action, actions.CancelFetch):
            task = self._fetches.pop(action.ref, None)
            if task is not None:
                task.cancel()
        elif isinstance(action, actions.Callback):
            self.services.webhooks.notify(
                self.settings.auth_token, action.method, action.url, action.params, "recording"
            )
        elif isinstance(action, actions.Hangup):
            await self.router.app_end(self, "hangup by application", None)
        elif isinstance(action, actions.Reject):
            code = BUSY_HERE if action.reason == "busy" else DECLINE
            error = {
                "code": code,
                "message": f"The application rejected the call ({action.reason})",
            }
            await self.router.app_end(self, f"rejected by application ({action.reason})", error)
        elif isinstance(action, actions.EndWithError):
            log.error(
                "call %s: application error %d: %s", self.call_sid, action.code, action.message
            )
            self.error = {"code": action.code, "message": action.message}
            await self.router.app_end(self, f"application error {action.code}", self.error)

    async def _say(self, action: actions.Say) -> None:
        try:
            pcm = await self.services.speech.say(action.text, action.voice, action.language)
        except (SpeechUnavailable, RuntimeError) as exc:
            log.error("call %s: <Say> skipped: %s", self.call_sid, exc)
            pcm = np.zeros(0, dtype=np.int16)
        self.player.play(action.ref, pcm)

    async def _play(self, action: actions.Play) -> None:
        try:
            pcm = await self.services.audio.load(action.url)
        except PlayError as exc:
            log.warning("call %s: <Play> skipped: %s", self.call_sid, exc)
            pcm = np.zeros(0, dtype=np.int16)
        self.player.play(action.ref, pcm)

    async def _play_digits(self, action: actions.PlayDigits) -> None:
        """Send the digits as RFC 4733 events (``w``: half a second), then ``PromptDone``."""
        try:
            for i, run in enumerate(action.digits.split("w")):
                if i:
                    await asyncio.sleep(DTMF_PAUSE_S)
                if run and self.leg_pc is not None and self.leg_pc.can_insert_dtmf:
                    await self.leg_pc.insert_dtmf(run)
        except (RuntimeError, ValueError) as exc:
            log.info("call %s: cannot play digits: %s", self.call_sid, exc)
        finally:
            self._digit_players.pop(action.ref, None)
        self.post(events.PromptDone(action.ref))

    # -- recording -----------------------------------------------------------------------
    def _start_recording(self, action: actions.StartRecording) -> None:
        self._recording_ref = action.ref
        self._recording_trim = action.trim == "trim-silence"
        recorder = Recorder(
            action.max_length, lambda speaking: self.post(events.VoiceActivity(speaking))
        )
        self._recorder = recorder
        if not action.play_beep:
            self._attach(recorder)
            return
        self.player.play(_BEEP_REF, beep())
        # The recording starts when the beep has been played (a PromptDone for the beep
        # reaches the runner, which ignores refs it did not issue).
        self._loop.call_later(BEEP_S, self._attach, recorder)

    def _attach(self, recorder: Recorder) -> None:
        if self._recorder is recorder and self.leg_pc is not None:
            self.leg_pc.set_remote_sink(recorder)

    async def _stop_recording(self, ref: int) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None or ref != self._recording_ref:
            return
        if self.leg_pc is not None:
            self.leg_pc.set_remote_sink(None)
        sid, path = self._new_recording()
        duration = await asyncio.to_thread(recorder.finish, path, trim=self._recording_trim)
        url = self._keep_recording(sid, path, duration)
        self.post(events.RecordingDone(ref=ref, url=url, sid=sid, duration=duration))

    def _new_recording(self) -> tuple[str, Path]:
        """A new RecordingSid and the file its audio goes to."""
        sid = recording_sid()
        return sid, self.services.recordings_folder() / self.settings.account_sid / f"{sid}.wav"

    def _keep_recording(self, sid: str, path: Path, duration: float) -> str:
        """List a written recording (nothing for an empty one); its ``RecordingUrl``."""
        if duration > 0:
            self.services.keep_recording(
                Recording(
                    sid=sid,
                    call_sid=self.call_sid,
                    account_sid=self.settings.account_sid,
                    path=path,
                    duration=duration,
                    created=self.services.clock(),
                )
            )
            log.info("call %s: recording %s (%.1f s) stored", self.call_sid, sid, duration)
        return self.services.recording_url(self.settings.account_sid, sid)

    # -- dial results (from the router) ------------------------------------------------------
    def dial_answered(self, call_sid: str, callee_pc: Any = None) -> None:
        """A dialled client answered and is bridged (``callee_pc``: its leg's media)."""
        if self._dial_ref is None:
            return
        if self._dial_record != "do-not-record":
            if not self._dial_legs:
                self._record_leg(self.leg_pc)
            self._record_leg(callee_pc)
        self.post(events.DialAnswered(ref=self._dial_ref, call_sid=call_sid))

    def _record_leg(self, pc: Any) -> None:
        """Start recording what ``pc``'s far end says, aligned with the first leg recorded."""
        if pc is None:
            return
        recorder = Recorder(MAX_DIAL_RECORDING_S, lambda speaking: None)
        offset = self._dial_legs[0][0].samples if self._dial_legs else 0
        self._dial_legs.append((recorder, offset))
        pc.set_remote_sink(recorder)

    def dial_over(self, status: str, call_sid: str = "") -> None:
        """Every leg the dial rang has ended; ``status`` is Twilio's ``DialCallStatus``."""
        ref, self._dial_ref = self._dial_ref, None
        if ref is None:
            return
        legs, self._dial_legs = self._dial_legs, []
        if self.leg_pc is not None and legs:
            self.leg_pc.set_remote_sink(None)
        if not legs:
            self.post(events.DialResult(ref=ref, status=status, call_sid=call_sid))
            return
        task = asyncio.ensure_future(self._store_dial_recording(ref, status, call_sid, legs))
        self._fetches[-ref] = task  # cancelled with the rest if the call's runner ends

    async def _store_dial_recording(
        self, ref: int, status: str, call_sid: str, legs: list[tuple[Recorder, int]]
    ) -> None:
        sid, path = self._new_recording()
        dual = self._dial_record.endswith("-dual")
        duration = await asyncio.to_thread(write_dial_recording, path, legs, dual=dual)
        self._fetches.pop(-ref, None)
        url = self._keep_recording(sid, path, duration)
        result = events.DialResult(ref=ref, status=status, call_sid=call_sid)
        if duration > 0:
            result = attrs.evolve(
                result, recording_url=url, recording_sid=sid, recording_duration=duration
            )
        self.post(result)

    @property
    def dialing(self) -> bool:
        """A ``<Dial>`` is ringing or bridged."""
        return self._dial_ref is not None

    # -- webhooks --------------------------------------------------------------------------
    def _fetch(self, action: actions.Fetch) -> None:
        token = self.settings.auth_token
        if action.final:
            self.services.webhooks.notify(token, action.method, action.url, action.params, "action")
            return
        self._fetches[action.ref] = asyncio.ensure_future(
            self._request(action.ref, action.method, action.url, action.params)
        )

    async def _request(self, ref: int, method: Method, url: str, params: Any) -> None:
        started = self._loop.time()
        result = await self.services.webhooks.fetch(self.settings.auth_token, method, url, params)
        self._fetches.pop(ref, None)
        elapsed_ms = (self._loop.time() - started) * 1000
        if isinstance(result, WebhookFailed):
            log.warning(
                "call %s: webhook failed (%d): %s", self.call_sid, result.code, result.message
            )
            self.post(events.FetchFailed(ref=ref, message=result.message, code=result.code))
            return
        log.debug("call %s: %s %s answered in %.1f ms", self.call_sid, method, url, elapsed_ms)
        self.post(events.FetchResult(ref=ref, body=result.body, url=result.url))

    def status_event(self, event: str, call_status: str) -> None:
        """Tell the application's ``status_callback`` of ``event``, if it asked for it."""
        app = self.settings.application
        if not app.status_callback or event not in app.status_callback_events:
            return
        self._sequence += 1
        duration = None
        if event == "completed":
            answered = self._answered_at
            duration = round(self.services.clock() - answered) if answered is not None else 0
        params = status_callback_params(
            self.call_params,
            call_status=call_status,
            sequence_number=self._sequence - 1,
            timestamp=self.services.clock(),
            call_duration=duration,
        )
        method: Method = "GET" if app.status_callback_method == "GET" else "POST"
        self.services.webhooks.notify(
            self.settings.auth_token, method, app.status_callback, params, f"status {event}"
        )

    def completed(self, status: str) -> None:
        """The call is over with Twilio's final ``status``: the ``completed`` status
        callback, and the runner hears of the hang-up."""
        self.status_event("completed", "failed" if self.error else status)
        self.caller_hung_up()


__all__ = ["AppCall", "AppRouter", "AppSettings", "beep"]

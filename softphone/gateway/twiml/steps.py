"""How each media verb runs: the per-verb part of the TwiML runner.

What: a :class:`Step` runs one ``<Say>``/``<Play>``/``<Pause>``, ``<Gather>``,
``<Record>`` or ``<Dial>``. It turns events into actions and, when its verb is over,
says what comes next (:class:`Next` verb, a :class:`Request` to an action URL, or a
:class:`Fail`). The document cursor, fetches, answering and the caller's hang-up
belong to :mod:`~softphone.gateway.twiml.runner`. Pure: time comes in as ``now``.

The rules are Twilio's: a digit stops ``<Gather>``'s prompts and starts the
inter-digit timeout; ``finishOnKey`` / ``numDigits`` / the timeout submit what was
entered, and nothing entered goes on to the next verb unless
``actionOnEmptyResult``; ``<Record>`` ends on a finish key, silence or
``maxLength`` and an empty recording skips its action; ``<Dial>`` rings until its
timeout (``no-answer``), ``*`` ends a bridged call when ``hangupOnStar``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from itertools import repeat
from urllib.parse import urljoin

import attrs

from softphone.gateway.twiml import actions, errors, events, model
from softphone.gateway.twiml.actions import Action

MAX_GATHER_DIGITS = 256
"""Digits one ``<Gather>`` keeps; more are ignored (Twilio sets no limit, we bound it)."""


@attrs.frozen
class Next:
    """The verb is over: go on with the next one."""


@attrs.frozen(kw_only=True)
class Request:
    """The verb is over: request ``url`` (None: the current document's URL) with ``params``."""

    url: str | None
    method: model.Method
    params: Mapping[str, str]


@attrs.frozen(kw_only=True)
class Fail:
    """The verb cannot run: end the call with Twilio's ``code``."""

    code: int
    message: str


Then = Next | Request | Fail | None
"""None: the verb is still running."""


@attrs.define
class Outcome:
    """What a step did with an event: actions to carry out, and whether it is over."""

    actions: list[Action] = attrs.Factory(list)
    then: Then = None


@attrs.frozen(kw_only=True)
class Context:
    """What steps need from the runner: fresh refs, the document URL, the call's params."""

    new_ref: Callable[[], int]
    base_url: str
    call_params: Mapping[str, str]

    def resolve(self, url: str) -> str:
        """``url`` made absolute against the document's URL (unchanged without one)."""
        return urljoin(self.base_url, url) if self.base_url else url


class Step:
    """One running verb. Subclasses override what their verb reacts to."""

    def start(self, now: float) -> Outcome:
        """Begin the verb."""
        raise NotImplementedError

    def handle(self, event: events.Event, now: float) -> Outcome:
        """An event for this verb (stale refs are ignored here)."""
        return Outcome()

    def tick(self, now: float) -> Outcome:
        """Time passed: act on a deadline reached."""
        return Outcome()

    @property
    def deadline(self) -> float | None:
        """When :meth:`tick` next has something to do."""
        return None

    def stop(self) -> list[Action]:
        """The call moves on without this verb (a REST redirect): stop its media."""
        return []

    def hangup(self, now: float) -> Outcome:
        """The caller hung up; by default the verb just stops."""
        return Outcome(self.stop(), Next())


class Prompts:
    """Plays ``<Say>``/``<Play>``/``<Pause>`` items in order, each ``loop`` times."""

    def __init__(self, prompts: tuple[model.Prompt, ...], ctx: Context) -> None:
        self._items: Iterator[model.Prompt] = (
            item for prompt in prompts for item in repeat(prompt, _loops(prompt))
        )
        self._ctx = ctx
        self.playing: int | None = None
        """The ref of the prompt playing now."""
        self.pause_until: float | None = None

    def advance(self, now: float) -> tuple[list[Action], bool]:
        """Start the next item; True once there is none left."""
        self.playing = self.pause_until = None
        for item in self._items:
            if isinstance(item, model.Pause):
                if item.length > 0:
                    self.pause_until = now + item.length
                    return [], False
                continue
            ref = self._ctx.new_ref()
            self.playing = ref
            return [self._action(item, ref)], False
        return [], True

    def _action(self, item: model.Say | model.Play, ref: int) -> Action:
        if isinstance(item, model.Say):
            return actions.Say(ref=ref, text=item.text, voice=item.voice, language=item.language)
        if item.digits:
            return actions.PlayDigits(ref=ref, digits=item.digits)
        return actions.Play(ref=ref, url=self._ctx.resolve(item.url))

    def done(self, ref: int, now: float) -> tuple[list[Action], bool] | None:
        """``PromptDone(ref)``: the next item, or None if ``ref`` is not playing."""
        if ref != self.playing:
            return None
        return self.advance(now)

    def tick(self, now: float) -> tuple[list[Action], bool] | None:
        """A pause that is over moves on; None while nothing is due."""
        if self.pause_until is None or now < self.pause_until:
            return None
        return self.advance(now)

    def stop(self) -> list[Action]:
        """Stop what is playing; the remaining items are dropped."""
        playing, self.playing, self.pause_until = self.playing, None, None
        self._items = iter(())
        return [actions.StopPrompt(playing)] if playing is not None else []


def _loops(prompt: model.Prompt) -> int:
    if isinstance(prompt, model.Pause):
        return 1
    return prompt.loop or model.MAX_LOOPS


class PromptStep(Step):
    """A top-level ``<Say>``, ``<Play>`` or ``<Pause>``; digits do not interrupt it."""

    def __init__(self, verb: model.Prompt, ctx: Context) -> None:
        self._prompts = Prompts((verb,), ctx)

    def start(self, now: float) -> Outcome:
        return self._outcome(self._prompts.advance(now))

    def handle(self, event: events.Event, now: float) -> Outcome:
        if isinstance(event, events.PromptDone):
            return self._outcome(self._prompts.done(event.ref, now))
        return Outcome()

    def tick(self, now: float) -> Outcome:
        return self._outcome(self._prompts.tick(now))

    @property
    def deadline(self) -> float | None:
        return self._prompts.pause_until

    def stop(self) -> list[Action]:
        return self._prompts.stop()

    @staticmethod
    def _outcome(step: tuple[list[Action], bool] | None) -> Outcome:
        if step is None:
            return Outcome()
        started, finished = step
        return Outcome(started, Next() if finished else None)


class GatherStep(Step):
    """``<Gather>`` for DTMF."""

    def __init__(self, verb: model.Gather, ctx: Context) -> None:
        self._verb = verb
        self._prompts = Prompts(verb.prompts, ctx)
        self._digits = ""
        self._wait_until: float | None = None
        """Set once the prompts are over (or interrupted): the digit timeout."""

    def start(self, now: float) -> Outcome:
        if "dtmf" not in self._verb.input:
            return Outcome(
                then=Fail(
                    code=errors.SCHEMA_VALIDATION,
                    message='<Gather input="speech"> is not supported: this gateway '
                    "gathers DTMF only",
                )
            )
        return self._prompted(self._prompts.advance(now), now)

    def handle(self, event: events.Event, now: float) -> Outcome:
        if isinstance(event, events.PromptDone) and self._wait_until is None:
            return self._prompted(self._prompts.done(event.ref, now), now)
        if isinstance(event, events.Digit):
            return self._digit(event.digit, now)
        return Outcome()

    def tick(self, now: float) -> Outcome:
        if self._wait_until is None:
            return self._prompted(self._prompts.tick(now), now)
        if now >= self._wait_until:
            return self._finish("")
        return Outcome()

    @property
    def deadline(self) -> float | None:
        return self._wait_until if self._wait_until is not None else self._prompts.pause_until

    def stop(self) -> list[Action]:
        return self._prompts.stop()

    def _prompted(self, step: tuple[list[Action], bool] | None, now: float) -> Outcome:
        if step is None:
            return Outcome()
        started, finished = step
        if finished:
            self._wait_until = now + self._verb.timeout
        return Outcome(started)

    def _digit(self, digit: str, now: float) -> Outcome:
        stopped = self._prompts.stop()
        if self._verb.finish_on_key and digit == self._verb.finish_on_key:
            return self._finish(digit, stopped)
        if len(self._digits) < MAX_GATHER_DIGITS:
            self._digits += digit
        num_digits = self._verb.num_digits
        if num_digits is not None and len(self._digits) >= num_digits:
            return self._finish("", stopped)
        self._wait_until = now + self._verb.timeout
        return Outcome(stopped)

    def _finish(self, key: str, done: list[Action] | None = None) -> Outcome:
        done = done or []
        if not self._digits and not self._verb.action_on_empty_result:
            return Outcome(done, Next())
        params = {"Digits": self._digits, "FinishedOnKey": key}
        return Outcome(
            done, Request(url=self._verb.action, method=self._verb.method, params=params)
        )


class RecordStep(Step):
    """``<Record>``: stopped by a finish key, silence, ``maxLength`` or the caller's hang-up."""

    def __init__(self, verb: model.Record, ctx: Context) -> None:
        self._verb = verb
        self._ctx = ctx
        self._ref = 0
        self._end_at = 0.0
        self._silence_until: float | None = None
        self._stopping = False
        self._digits = ""

    def start(self, now: float) -> Outcome:
        self._ref = self._ctx.new_ref()
        self._end_at = now + self._verb.max_length
        self._silence_until = now + self._verb.timeout if self._verb.timeout else None
        start = actions.StartRecording(
            ref=self._ref,
            play_beep=self._verb.play_beep,
            trim=self._verb.trim,
            max_length=self._verb.max_length,
        )
        return Outcome([start])

    def handle(self, event: events.Event, now: float) -> Outcome:
        if isinstance(event, events.RecordingDone) and event.ref == self._ref:
            return self._done(event)
        if self._stopping:
            return Outcome()
        if isinstance(event, events.VoiceActivity) and self._verb.timeout:
            self._silence_until = None if event.speaking else now + self._verb.timeout
        elif isinstance(event, events.Digit) and event.digit in self._verb.finish_on_key:
            return Outcome(self._stop(event.digit))
        return Outcome()

    def tick(self, now: float) -> Outcome:
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            return Outcome(self._stop(""))
        return Outcome()

    @property
    def deadline(self) -> float | None:
        if self._stopping:
            return None
        if self._silence_until is None:
            return self._end_at
        return min(self._end_at, self._silence_until)

    def stop(self) -> list[Action]:
        return self._stop("")

    def hangup(self, now: float) -> Outcome:
        """Twilio still sends the recording to ``action``, with ``Digits=hangup``."""
        stopped = self._stop("")
        self._digits = self._digits or "hangup"  # unless a finish key ended it first
        return Outcome(stopped)

    def _stop(self, digits: str) -> list[Action]:
        if self._stopping:
            return []
        self._stopping = True
        self._digits = digits
        return [actions.StopRecording(self._ref)]

    def _done(self, event: events.RecordingDone) -> Outcome:
        self._stopping = True
        if event.duration <= 0:
            return Outcome(then=Next())
        params = {
            "RecordingUrl": event.url,
            "RecordingDuration": str(round(event.duration)),
            "RecordingSid": event.sid,
        }
        if self._digits:
            params["Digits"] = self._digits
        done: list[Action] = []
        if self._verb.recording_status_callback:
            done.append(self._status_callback(event))
        return Outcome(
            done, Request(url=self._verb.action, method=self._verb.method, params=params)
        )

    def _status_callback(self, event: events.RecordingDone) -> Action:
        call = self._ctx.call_params
        assert self._verb.recording_status_callback is not None
        return actions.Callback(
            url=self._ctx.resolve(self._verb.recording_status_callback),
            method=self._verb.recording_status_callback_method,
            params={
                "AccountSid": call.get("AccountSid", ""),
                "CallSid": call.get("CallSid", ""),
                "RecordingSid": event.sid,
                "RecordingUrl": event.url,
                "RecordingStatus": "completed",
                "RecordingDuration": str(round(event.duration)),
                "RecordingChannels": "1",
                "RecordingSource": "RecordVerb",
            },
        )


class DialStep(Step):
    """``<Dial>`` of one or more ``<Client>`` s."""

    def __init__(self, verb: model.Dial, ctx: Context) -> None:
        self._verb = verb
        self._ctx = ctx
        self._ref = 0
        self._ring_until: float | None = None
        self._limit_until: float | None = None
        self._answered_at: float | None = None
        self._call_sid = ""
        self._decided: str | None = None
        """Set by ``StopDial``: the status the runner chose."""

    def start(self, now: float) -> Outcome:
        for target in self._verb.targets:
            if isinstance(target, model.UnsupportedNoun):
                shown = f"<{target.name}>{target.text}</{target.name}>"
                return Outcome(
                    then=Fail(
                        code=errors.SCHEMA_VALIDATION,
                        message=f"<Dial>{shown} is not supported: this gateway dials <Client> only",
                    )
                )
        self._ref = self._ctx.new_ref()
        self._ring_until = now + self._verb.timeout
        dial = actions.Dial(
            ref=self._ref,
            clients=tuple(t for t in self._verb.targets if isinstance(t, model.Client)),
            caller_id=self._verb.caller_id or self._ctx.call_params.get("From", ""),
            record=self._verb.record,
        )
        return Outcome([dial])

    def handle(self, event: events.Event, now: float) -> Outcome:
        if isinstance(event, events.DialResult) and event.ref == self._ref:
            return self._result(event, now)
        if self._decided is not None:
            return Outcome()
        if (
            isinstance(event, events.DialAnswered)
            and event.ref == self._ref
            and self._answered_at is None
        ):
            self._answered_at = now
            self._call_sid = event.call_sid
            self._ring_until = None
            self._limit_until = now + self._verb.time_limit
        elif (
            isinstance(event, events.Digit)
            and event.digit == "*"
            and self._verb.hangup_on_star
            and self._answered_at is not None
        ):
            return Outcome(self._stop("completed"))
        return Outcome()

    def tick(self, now: float) -> Outcome:
        if self._ring_until is not None and now >= self._ring_until:
            return Outcome(self._stop("no-answer"))
        if self._limit_until is not None and now >= self._limit_until:
            return Outcome(self._stop("completed"))
        return Outcome()

    @property
    def deadline(self) -> float | None:
        return self._ring_until if self._ring_until is not None else self._limit_until

    def stop(self) -> list[Action]:
        return self._stop("canceled")

    def hangup(self, now: float) -> Outcome:
        """Twilio still requests ``action`` (its reply is ignored) once the dial ends."""
        return Outcome(self._stop("completed" if self._answered_at is not None else "canceled"))

    def _stop(self, status: str) -> list[Action]:
        if self._decided is not None:
            return []
        self._decided = status
        self._ring_until = self._limit_until = None
        return [actions.StopDial(self._ref)]

    def _result(self, event: events.DialResult, now: float) -> Outcome:
        self._ring_until = self._limit_until = None
        if self._verb.action is None:
            return Outcome(then=Next())
        params = {"DialCallStatus": self._decided or event.status}
        call_sid = event.call_sid or self._call_sid
        if call_sid:
            params["DialCallSid"] = call_sid
        if self._answered_at is not None:
            params["DialCallDuration"] = str(round(now - self._answered_at))
        if event.recording_url:
            params["RecordingUrl"] = event.recording_url
            params["RecordingSid"] = event.recording_sid
            params["RecordingDuration"] = str(round(event.recording_duration))
        return Outcome(then=Request(url=self._verb.action, method=self._verb.method, params=params))


def make_step(
    verb: model.Say | model.Play | model.Pause | model.Gather | model.Record | model.Dial,
    ctx: Context,
) -> Step:
    """The step that runs ``verb``."""
    if isinstance(verb, model.Gather):
        return GatherStep(verb, ctx)
    if isinstance(verb, model.Record):
        return RecordStep(verb, ctx)
    if isinstance(verb, model.Dial):
        return DialStep(verb, ctx)
    return PromptStep(verb, ctx)

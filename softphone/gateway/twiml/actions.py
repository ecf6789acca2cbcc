"""What a :class:`~softphone.gateway.twiml.runner.TwimlRunner` asks the gateway to do.

``runner.process(event, now)`` returns a list of these, to carry out in order.
Actions that start something carry a ``ref``: the event that reports its end
(``PromptDone``, ``RecordingDone``, ``DialAnswered``/``DialResult``,
``FetchResult``/``FetchFailed``) must echo it. The runner never blocks and never
reads a clock: the gateway performs these, and wakes the runner with ``Tick`` at
``runner.next_deadline``.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from softphone.gateway.twiml.model import Client, DialRecord, Method, Trim


@attrs.frozen
class Answer:
    """Answer the caller's leg (the first verb that needs media is about to run)."""


@attrs.frozen(kw_only=True)
class Say:
    """Speak ``text`` to the caller; report ``PromptDone(ref)`` when it has been heard."""

    ref: int
    text: str
    voice: str
    language: str


@attrs.frozen(kw_only=True)
class Play:
    """Play the audio at ``url`` (absolute once resolved) to the caller; then ``PromptDone``."""

    ref: int
    url: str


@attrs.frozen(kw_only=True)
class PlayDigits:
    """Send ``digits`` as DTMF tones (``w``: wait half a second); then ``PromptDone``."""

    ref: int
    digits: str


@attrs.frozen
class StopPrompt:
    """Stop the prompt ``ref`` now (a digit interrupted it, or the call moved on).

    No ``PromptDone`` is needed for it.
    """

    ref: int


@attrs.frozen(kw_only=True)
class StartRecording:
    """Record the caller (after a beep if ``play_beep``); report ``RecordingDone(ref)``.

    The runner stops it (``StopRecording``) on the finish key, the silence timeout
    and ``max_length``; the gateway reports ``VoiceActivity`` edges so silence can
    be timed.
    """

    ref: int
    play_beep: bool
    trim: Trim
    max_length: int
    """Seconds; the runner stops the recording then, the recorder may use it as a cap."""


@attrs.frozen
class StopRecording:
    """Stop and store the recording ``ref``, then report ``RecordingDone(ref)``."""

    ref: int


@attrs.frozen(kw_only=True)
class Dial:
    """Ring every client at once; bridge the first that answers (``DialAnswered``),
    cancel the others, and report ``DialResult(ref)`` when the dial is over."""

    ref: int
    clients: tuple[Client, ...]
    caller_id: str
    """The ``From`` the callee sees."""
    record: DialRecord


@attrs.frozen
class StopDial:
    """End the dial ``ref`` (cancel ringing legs, hang up a bridged one); then
    report ``DialResult(ref)``."""

    ref: int


@attrs.frozen(kw_only=True)
class Fetch:
    """Request a webhook (signed, Twilio's parameters) and report ``FetchResult`` /
    ``FetchFailed`` with ``ref``.

    ``final``: the caller has already gone; Twilio still makes this request (a
    ``<Record>`` or ``<Dial>`` action) but ignores what it returns, so no report is
    needed.
    """

    ref: int
    url: str
    method: Method
    params: Mapping[str, str] = attrs.field(eq=True, hash=False)
    final: bool = False


@attrs.frozen
class CancelFetch:
    """Give up the request ``ref`` (timed out, or the call moved on)."""

    ref: int


@attrs.frozen(kw_only=True)
class Callback:
    """Fire-and-forget webhook (``recordingStatusCallback``): sign, send, ignore the reply."""

    url: str
    method: Method
    params: Mapping[str, str] = attrs.field(eq=True, hash=False)


@attrs.frozen
class Hangup:
    """Hang up the caller: the document asked for it or has run out of verbs."""


@attrs.frozen(kw_only=True)
class Reject:
    """Refuse the unanswered call (``busy`` or ``rejected``)."""

    reason: str


@attrs.frozen(kw_only=True)
class EndWithError:
    """End the call because the application failed, with Twilio's error code.

    The gateway logs ``message`` (it names the verb, attribute or URL at fault),
    records the code with the call and hangs up.
    """

    code: int
    message: str


Action = (
    Answer
    | Say
    | Play
    | PlayDigits
    | StopPrompt
    | StartRecording
    | StopRecording
    | Dial
    | StopDial
    | Fetch
    | CancelFetch
    | Callback
    | Hangup
    | Reject
    | EndWithError
)

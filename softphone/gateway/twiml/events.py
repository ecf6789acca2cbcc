"""What the gateway tells a :class:`~softphone.gateway.twiml.runner.TwimlRunner`.

Each event is fed with ``runner.process(event, now)``. Events that answer an action
carry that action's ``ref``; an event whose ``ref`` is not the one the runner waits
for (a prompt already stopped, a fetch given up on) is stale and ignored, so the I/O
layer never has to race the runner.
"""

from __future__ import annotations

import attrs

from softphone.gateway.twiml.errors import HTTP_RETRIEVAL_FAILURE
from softphone.gateway.twiml.model import Method


@attrs.frozen
class Start:
    """The call reached the application: run (or fetch) its document."""


@attrs.frozen
class Tick:
    """Only time passed: sent when ``runner.next_deadline`` is reached."""


@attrs.frozen
class PromptDone:
    """The ``Say``, ``Play`` or ``PlayDigits`` action ``ref`` finished playing."""

    ref: int


@attrs.frozen
class Digit:
    """The caller pressed a DTMF key (``0``-``9``, ``*``, ``#``)."""

    digit: str


@attrs.frozen
class VoiceActivity:
    """While recording: the caller started (True) or stopped (False) speaking.

    ``<Record timeout>`` counts silence from the last ``speaking=False`` (or from the
    start of the recording if the caller never spoke).
    """

    speaking: bool


@attrs.frozen(kw_only=True)
class RecordingDone:
    """The recording ``ref`` is stored (after ``StopRecording``, or ended by the gateway).

    A ``duration`` of 0 is an empty recording: Twilio then skips ``action`` and
    goes on with the next verb.
    """

    ref: int
    url: str
    sid: str
    duration: float
    """Seconds of audio kept."""


@attrs.frozen(kw_only=True)
class DialAnswered:
    """A dialed client answered and is bridged to the caller."""

    ref: int
    call_sid: str


@attrs.frozen(kw_only=True)
class DialResult:
    """The dial ``ref`` is over: every leg it rang has ended.

    Sent after ``StopDial`` too; the runner then keeps the status it decided
    (``no-answer`` on its ring timeout, ``completed`` for ``hangupOnStar`` or the
    time limit). ``status`` is Twilio's ``DialCallStatus``: ``completed``, ``busy``,
    ``no-answer``, ``failed`` or ``canceled``.
    """

    ref: int
    status: str
    call_sid: str = ""
    recording_url: str = ""
    recording_sid: str = ""
    recording_duration: float = 0.0


@attrs.frozen(kw_only=True)
class FetchResult:
    """The webhook of ``Fetch`` ``ref`` answered with a 2xx and this body."""

    ref: int
    body: str | bytes
    url: str = ""
    """The URL that answered, after HTTP redirects; relative URLs in the body are
    resolved against it. Empty: the requested URL."""


@attrs.frozen(kw_only=True)
class FetchFailed:
    """The webhook of ``Fetch`` ``ref`` failed (refused, non-2xx, wrong content type)."""

    ref: int
    message: str
    code: int = HTTP_RETRIEVAL_FAILURE


@attrs.frozen(kw_only=True)
class Redirected:
    """The REST API redirected the live call (``Url`` or ``Twiml`` of a Call update).

    Whatever runs is stopped, and the call goes on with ``twiml``, or with what
    ``url`` returns.
    """

    url: str = ""
    method: Method = "POST"
    twiml: str = ""


@attrs.frozen
class Hangup:
    """The caller hung up (or the REST API ended the call)."""


Event = (
    Start
    | Tick
    | PromptDone
    | Digit
    | VoiceActivity
    | RecordingDone
    | DialAnswered
    | DialResult
    | FetchResult
    | FetchFailed
    | Redirected
    | Hangup
)

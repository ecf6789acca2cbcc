"""The TwiML voice verbs this gateway runs, as typed values with Twilio's defaults.

What: one frozen class per verb (``<Say>``, ``<Play>``, ``<Pause>``, ``<Gather>``,
``<Record>``, ``<Dial>`` with ``<Client>``, ``<Hangup>``, ``<Reject>``,
``<Redirect>``) and :class:`Response`, the parsed document. A field left out of the
XML takes the default Twilio documents for it. Verbs and ``<Dial>`` nouns that TwiML
defines but this gateway does not implement (``<Conference>``, ``<Enqueue>``,
``<Number>``, ``<Sip>``, ``<Stream>``, ``<Connect>`` …) parse to
:class:`Unsupported` / :class:`UnsupportedNoun`, so the verbs before them still run
and the call then ends with an error naming the element, as the issue asks.

Why a model between the XML and the runner: the parser validates once (Twilio's codes
for bad values) and the runner works on values it can trust.
"""

from __future__ import annotations

from typing import Literal

import attrs

Method = Literal["GET", "POST"]
"""The HTTP method of an ``action`` or ``<Redirect>`` request."""

MAX_LOOPS = 1000
"""What ``loop="0"`` means: Twilio repeats "until the call ends", bounded at 1000."""


@attrs.frozen(kw_only=True)
class Say:
    """``<Say>``: speak ``text`` (SSML tags inside are flattened to their text)."""

    text: str
    voice: str = "man"
    language: str = "en-US"
    loop: int = 1
    """Times to speak; 0 stands for :data:`MAX_LOOPS`."""


@attrs.frozen(kw_only=True)
class Play:
    """``<Play>``: play the audio at ``url``, or send ``digits`` as DTMF tones.

    In ``digits`` a ``w`` is a half-second wait; when ``digits`` is set the URL is
    not played.
    """

    url: str = ""
    loop: int = 1
    """Times to play; 0 stands for :data:`MAX_LOOPS`."""
    digits: str = ""


@attrs.frozen(kw_only=True)
class Pause:
    """``<Pause>``: silence for ``length`` seconds (before the answer it delays it)."""

    length: int = 1


Prompt = Say | Play | Pause
"""What a ``<Gather>`` may nest."""


@attrs.frozen(kw_only=True)
class Gather:
    """``<Gather>``: collect DTMF digits while (and after) the nested prompts play."""

    prompts: tuple[Prompt, ...] = ()
    input: frozenset[str] = frozenset({"dtmf"})
    """``dtmf`` and/or ``speech``; only DTMF is gathered here."""
    num_digits: int | None = None
    """Submit once this many digits are in; None waits for the key or the timeout."""
    finish_on_key: str = "#"
    """The one key that submits (not part of ``Digits``); empty for none."""
    timeout: int = 5
    """Seconds to wait for the first digit after the prompts, and between digits."""
    action: str | None = None
    """Where to submit; None means the current document's URL."""
    method: Method = "POST"
    action_on_empty_result: bool = False
    """Request ``action`` even when nothing was entered (else: go on to the next verb)."""


Trim = Literal["trim-silence", "do-not-trim"]


@attrs.frozen(kw_only=True)
class Record:
    """``<Record>``: record the caller, then request ``action`` with the recording."""

    max_length: int = 3600
    """Longest recording, in seconds."""
    timeout: int = 5
    """Seconds of silence that end the recording; 0 turns silence detection off."""
    finish_on_key: str = "1234567890*#"
    """Any of these keys ends the recording; empty for none."""
    play_beep: bool = True
    action: str | None = None
    """Where to send the recording; None means the current document's URL."""
    method: Method = "POST"
    recording_status_callback: str | None = None
    recording_status_callback_method: Method = "POST"
    trim: Trim = "trim-silence"


@attrs.frozen(kw_only=True)
class Client:
    """``<Client>`` in a ``<Dial>``: ring the Devices registered as ``identity``."""

    identity: str
    parameters: tuple[tuple[str, str], ...] = ()
    """``<Parameter name value>`` pairs, in document order, given to the callee."""


@attrs.frozen(kw_only=True)
class UnsupportedNoun:
    """A ``<Dial>`` noun TwiML has but this gateway does not ring (``<Number>``,
    ``<Sip>``, ``<Conference>``, ``<Queue>`` …; bare text is a ``Number``)."""

    name: str
    text: str = ""


DialRecord = Literal[
    "do-not-record",
    "record-from-answer",
    "record-from-ringing",
    "record-from-answer-dual",
    "record-from-ringing-dual",
]


@attrs.frozen(kw_only=True)
class Dial:
    """``<Dial>``: ring every target at once; the first to answer is bridged."""

    targets: tuple[Client | UnsupportedNoun, ...]
    timeout: int = 30
    """Seconds to ring before the outcome is ``no-answer``."""
    action: str | None = None
    """Requested with ``DialCallStatus`` when the dial ends; None: go on to the next verb."""
    method: Method = "POST"
    caller_id: str | None = None
    """The ``From`` the callee sees; None keeps the caller's."""
    record: DialRecord = "do-not-record"
    hangup_on_star: bool = False
    """The caller's ``*`` ends the bridged call (and the document goes on)."""
    time_limit: int = 14400
    """Longest bridged call, in seconds."""


@attrs.frozen
class Hangup:
    """``<Hangup>``: end the call."""


RejectReason = Literal["rejected", "busy"]


@attrs.frozen(kw_only=True)
class Reject:
    """``<Reject>``: refuse the call unanswered (a hang-up once it was answered)."""

    reason: RejectReason = "rejected"


@attrs.frozen(kw_only=True)
class Redirect:
    """``<Redirect>``: continue with the TwiML at ``url``."""

    url: str
    method: Method = "POST"


@attrs.frozen(kw_only=True)
class Unsupported:
    """A TwiML verb this gateway does not implement; reaching it ends the call."""

    name: str


Verb = Say | Play | Pause | Gather | Record | Dial | Hangup | Reject | Redirect | Unsupported


@attrs.frozen
class Response:
    """A parsed ``<Response>``: its verbs in document order."""

    verbs: tuple[Verb, ...]

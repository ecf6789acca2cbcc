"""Parse a TwiML voice document into :mod:`~softphone.gateway.twiml.model` values.

What: :func:`parse_twiml` reads the bytes a webhook returned (or a ``Twiml`` string
given to the REST API) with ``defusedxml`` — no DTDs, entities or external
references, so a hostile app server cannot blow up or probe the gateway — checks the
root, each verb's attributes and nesting, and returns a :class:`~.model.Response`.
Anything Twilio would refuse raises :class:`~.errors.TwimlError` with Twilio's code
(12100 not XML, 12102 wrong root, 13xxx a verb's bad attribute, 12200 an element
TwiML does not have) and a message that names the verb and attribute.

Attributes TwiML has but this gateway ignores (``<Gather speechTimeout>``, ``<Client
url>`` …) are accepted and dropped, as Twilio drops what it does not know. Verbs and
``<Dial>`` nouns it does not implement parse to ``Unsupported``: the runner ends the
call when it reaches one, after the verbs before it have run.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from typing import TypeVar

import defusedxml
import defusedxml.ElementTree

from softphone.gateway.twiml import errors
from softphone.gateway.twiml.errors import TwimlError
from softphone.gateway.twiml.model import (
    Client,
    Dial,
    DialRecord,
    Gather,
    Hangup,
    Method,
    Pause,
    Play,
    Prompt,
    Record,
    Redirect,
    Reject,
    RejectReason,
    Response,
    Say,
    Trim,
    Unsupported,
    UnsupportedNoun,
    Verb,
)

MAX_DOCUMENT_BYTES = 64 * 1024
"""Twilio's limit on a TwiML response body (error 11750 above it)."""

UNSUPPORTED_VERBS = frozenset(
    {
        "Connect",
        "Echo",
        "Enqueue",
        "Leave",
        "Pay",
        "Prompt",
        "Refer",
        "Sms",
        "Message",
        "Start",
        "Stop",
        "Stream",
        "Siprec",
        "Transcription",
        # Dial nouns written as verbs: still TwiML names, still not implemented.
        "Conference",
        "Number",
        "Sip",
        "Sim",
        "Queue",
        "Application",
    }
)
"""TwiML voice verbs this gateway does not run; the call ends when one is reached."""

UNSUPPORTED_DIAL_NOUNS = frozenset(
    {"Number", "Sip", "Sim", "Conference", "Queue", "Application", "WhatsApp"}
)
"""``<Dial>`` nouns other than ``<Client>``; dialing one ends the call."""

DIGIT_KEYS = frozenset("0123456789*#")
_PLAY_DIGITS = frozenset("0123456789*#wW")
_DIAL_RECORD: dict[str, DialRecord] = {
    "do-not-record": "do-not-record",
    "record-from-answer": "record-from-answer",
    "record-from-ringing": "record-from-ringing",
    "record-from-answer-dual": "record-from-answer-dual",
    "record-from-ringing-dual": "record-from-ringing-dual",
    # The older boolean form.
    "true": "record-from-answer",
    "false": "do-not-record",
}
_GATHER_INPUTS = frozenset({"dtmf", "speech"})
_TRIMS: dict[str, Trim] = {"trim-silence": "trim-silence", "do-not-trim": "do-not-trim"}
_REJECT_REASONS: dict[str, RejectReason] = {"rejected": "rejected", "busy": "busy"}

T = TypeVar("T")


def parse_twiml(document: str | bytes) -> Response:
    """Parse and validate a TwiML voice document; raise :class:`TwimlError` if it cannot run."""
    size = len(document.encode() if isinstance(document, str) else document)
    if size > MAX_DOCUMENT_BYTES:
        raise TwimlError(
            errors.RESPONSE_TOO_LARGE,
            f"the TwiML document is {size} bytes, more than the {MAX_DOCUMENT_BYTES} allowed",
        )
    try:
        root = defusedxml.ElementTree.fromstring(document, forbid_dtd=True)
    except ET.ParseError as exc:
        raise TwimlError(errors.DOCUMENT_PARSE_FAILURE, f"the document is not XML: {exc}") from exc
    except defusedxml.DefusedXmlException as exc:
        raise TwimlError(
            errors.DOCUMENT_PARSE_FAILURE,
            f"the document uses XML that is refused for safety ({type(exc).__name__})",
        ) from exc
    if root.tag != "Response":
        raise TwimlError(
            errors.ROOT_NOT_RESPONSE, f"the root element must be <Response>, not <{root.tag}>"
        )
    _no_stray_text(root)
    return Response(tuple(_verb(child) for child in root))


def _verb(el: ET.Element) -> Verb:
    parser = _VERB_PARSERS.get(el.tag)
    if parser is not None:
        return parser(el)
    if el.tag in UNSUPPORTED_VERBS:
        return Unsupported(name=el.tag)
    raise TwimlError(errors.SCHEMA_VALIDATION, f"<{el.tag}> is not a TwiML voice verb")


def _say(el: ET.Element, *, in_gather: bool = False) -> Say:
    text = "".join(el.itertext()).strip()
    if not text:
        raise TwimlError(errors.SAY_INVALID_TEXT, "<Say> has no text to speak")
    voice = el.get("voice", "man").strip()
    if not voice:
        code = errors.GATHER_SAY_INVALID_VOICE if in_gather else errors.SAY_INVALID_VOICE
        raise TwimlError(code, "<Say voice> must not be empty")
    loop_code = errors.GATHER_SAY_INVALID_LOOP if in_gather else errors.SAY_INVALID_LOOP
    return Say(
        text=text,
        voice=voice,
        language=el.get("language", "en-US").strip() or "en-US",
        loop=_int(el, "loop", 1, loop_code, minimum=0),
    )


def _play(el: ET.Element) -> Play:
    url = (el.text or "").strip()
    digits = el.get("digits", "")
    if digits and not set(digits) <= _PLAY_DIGITS:
        raise TwimlError(
            errors.SCHEMA_VALIDATION,
            f"<Play digits> may hold only 0-9, *, # and w, not {digits!r}",
        )
    if not url and not digits:
        raise TwimlError(errors.INVALID_URL, "<Play> needs a URL or a digits attribute")
    return Play(
        url=url, digits=digits, loop=_int(el, "loop", 1, errors.PLAY_INVALID_LOOP, minimum=0)
    )


def _pause(el: ET.Element) -> Pause:
    return Pause(length=_int(el, "length", 1, errors.PAUSE_INVALID_LENGTH, minimum=0))


def _prompt(el: ET.Element) -> Prompt:
    if el.tag == "Say":
        return _say(el, in_gather=True)
    if el.tag == "Play":
        return _play(el)
    if el.tag == "Pause":
        return _pause(el)
    raise TwimlError(
        errors.GATHER_INVALID_NESTED_VERB,
        f"<Gather> may nest only <Say>, <Play> and <Pause>, not <{el.tag}>",
    )


def _gather(el: ET.Element) -> Gather:
    _no_stray_text(el)
    finish_on_key = el.get("finishOnKey", "#")
    if len(finish_on_key) > 1 or not set(finish_on_key) <= DIGIT_KEYS:
        raise TwimlError(
            errors.GATHER_INVALID_FINISH_ON_KEY,
            f"<Gather finishOnKey> must be one of 0-9, * and # (or empty), not {finish_on_key!r}",
        )
    inputs = frozenset(el.get("input", "dtmf").split())
    if not inputs or not inputs <= _GATHER_INPUTS:
        raise TwimlError(
            errors.SCHEMA_VALIDATION,
            f"<Gather input> must be 'dtmf', 'speech' or both, not {el.get('input')!r}",
        )
    num_digits = el.get("numDigits")
    return Gather(
        prompts=tuple(_prompt(child) for child in el),
        input=inputs,
        num_digits=(
            None
            if num_digits is None
            else _int(el, "numDigits", 1, errors.GATHER_INVALID_NUM_DIGITS, minimum=1)
        ),
        finish_on_key=finish_on_key,
        timeout=_int(el, "timeout", 5, errors.GATHER_INVALID_TIMEOUT, minimum=0),
        action=_url(el, "action"),
        method=_method(el, "method", errors.GATHER_INVALID_METHOD),
        action_on_empty_result=_bool(el, "actionOnEmptyResult", False, errors.SCHEMA_VALIDATION),
    )


def _record(el: ET.Element) -> Record:
    finish_on_key = el.get("finishOnKey", "1234567890*#")
    if not set(finish_on_key) <= DIGIT_KEYS:
        raise TwimlError(
            errors.RECORD_INVALID_FINISH_ON_KEY,
            f"<Record finishOnKey> may hold only 0-9, * and #, not {finish_on_key!r}",
        )
    return Record(
        max_length=_int(el, "maxLength", 3600, errors.RECORD_INVALID_MAX_LENGTH, minimum=1),
        timeout=_int(el, "timeout", 5, errors.RECORD_INVALID_TIMEOUT, minimum=0),
        finish_on_key=finish_on_key,
        play_beep=_bool(el, "playBeep", True, errors.RECORD_INVALID_PLAY_BEEP),
        action=_url(el, "action"),
        method=_method(el, "method", errors.RECORD_INVALID_METHOD),
        recording_status_callback=_url(el, "recordingStatusCallback"),
        recording_status_callback_method=_method(
            el, "recordingStatusCallbackMethod", errors.RECORD_INVALID_METHOD
        ),
        trim=_choice(el, "trim", _TRIMS, "trim-silence"),
    )


def _dial(el: ET.Element) -> Dial:
    targets: list[Client | UnsupportedNoun] = []
    number = (el.text or "").strip()
    if number:
        targets.append(UnsupportedNoun(name="Number", text=number))
    for child in el:
        if child.tag == "Client":
            targets.append(_client(child))
        elif child.tag in UNSUPPORTED_DIAL_NOUNS:
            targets.append(UnsupportedNoun(name=child.tag, text=(child.text or "").strip()))
        else:
            raise TwimlError(
                errors.DIAL_INVALID_NESTED_ELEMENT, f"<Dial> cannot nest <{child.tag}>"
            )
        if (child.tail or "").strip():
            targets.append(UnsupportedNoun(name="Number", text=(child.tail or "").strip()))
    if not targets:
        raise TwimlError(errors.DIAL_INVALID_NESTED_ELEMENT, "<Dial> has nothing to dial")
    caller_id = el.get("callerId")
    if caller_id is not None and not caller_id.strip():
        raise TwimlError(errors.DIAL_INVALID_CALLER_ID, "<Dial callerId> must not be empty")
    return Dial(
        targets=tuple(targets),
        timeout=_int(el, "timeout", 30, errors.DIAL_INVALID_TIMEOUT, minimum=1, maximum=600),
        action=_url(el, "action"),
        method=_method(el, "method", errors.DIAL_INVALID_METHOD),
        caller_id=caller_id.strip() if caller_id is not None else None,
        record=_choice(el, "record", _DIAL_RECORD, "do-not-record", errors.DIAL_INVALID_RECORD),
        hangup_on_star=_bool(el, "hangupOnStar", False, errors.DIAL_INVALID_HANGUP_ON_STAR),
        time_limit=_int(el, "timeLimit", 14400, errors.DIAL_INVALID_TIME_LIMIT, minimum=1),
    )


def _client(el: ET.Element) -> Client:
    identity = (el.text or "").strip()
    parameters: list[tuple[str, str]] = []
    for child in el:
        if child.tag == "Identity":
            identity = (child.text or "").strip()
        elif child.tag == "Parameter":
            name = child.get("name", "").strip()
            if not name:
                raise TwimlError(
                    errors.DIAL_INVALID_NESTED_ELEMENT, "<Client><Parameter> needs a name"
                )
            parameters.append((name, child.get("value", "")))
        else:
            raise TwimlError(
                errors.DIAL_INVALID_NESTED_ELEMENT, f"<Client> cannot nest <{child.tag}>"
            )
    if not identity:
        raise TwimlError(errors.DIAL_INVALID_NESTED_ELEMENT, "<Client> has no identity")
    return Client(identity=identity, parameters=tuple(parameters))


def _hangup(el: ET.Element) -> Hangup:
    return Hangup()


def _reject(el: ET.Element) -> Reject:
    return Reject(reason=_choice(el, "reason", _REJECT_REASONS, "rejected"))


def _redirect(el: ET.Element) -> Redirect:
    url = (el.text or "").strip()
    if not url:
        raise TwimlError(errors.INVALID_URL, "<Redirect> has no URL")
    return Redirect(url=url, method=_method(el, "method", errors.REDIRECT_INVALID_METHOD))


_VERB_PARSERS: dict[str, Callable[[ET.Element], Verb]] = {
    "Say": _say,
    "Play": _play,
    "Pause": _pause,
    "Gather": _gather,
    "Record": _record,
    "Dial": _dial,
    "Hangup": _hangup,
    "Reject": _reject,
    "Redirect": _redirect,
}


def _int(
    el: ET.Element, name: str, default: int, code: int, *, minimum: int, maximum: int | None = None
) -> int:
    raw = el.get(name)
    if raw is None:
        return default
    value = raw.strip()
    if (
        value.isdecimal()
        and len(value) <= 9
        and minimum <= int(value)
        and (maximum is None or int(value) <= maximum)
    ):
        return int(value)
    bound = f"{minimum}..{maximum}" if maximum is not None else f"at least {minimum}"
    raise TwimlError(code, f"<{el.tag} {name}> must be a whole number {bound}, not {raw!r}")


def _bool(el: ET.Element, name: str, default: bool, code: int) -> bool:
    raw = el.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise TwimlError(code, f"<{el.tag} {name}> must be true or false, not {raw!r}")
    return value == "true"


def _method(el: ET.Element, name: str, code: int) -> Method:
    raw = el.get(name)
    if raw is None:
        return "POST"
    value = raw.strip().upper()
    if value == "GET":
        return "GET"
    if value == "POST":
        return "POST"
    raise TwimlError(code, f"<{el.tag} {name}> must be GET or POST, not {raw!r}")


def _url(el: ET.Element, name: str) -> str | None:
    raw = el.get(name)
    if raw is None or not raw.strip():
        return None
    return raw.strip()


def _choice(
    el: ET.Element,
    name: str,
    allowed: Mapping[str, T],
    default: T,
    code: int = errors.SCHEMA_VALIDATION,
) -> T:
    raw = el.get(name)
    if raw is None:
        return default
    value = allowed.get(raw.strip())
    if value is None:
        choices = ", ".join(sorted(allowed))
        raise TwimlError(code, f"<{el.tag} {name}> must be one of {choices}, not {raw!r}")
    return value


def _no_stray_text(el: ET.Element) -> None:
    """Text between verbs is a mistake in the document (a verb written as text)."""
    stray = [(el.text or "").strip(), *((child.tail or "").strip() for child in el)]
    text = next((t for t in stray if t), None)
    if text is not None:
        raise TwimlError(errors.SCHEMA_VALIDATION, f"<{el.tag}> holds stray text {text[:40]!r}")

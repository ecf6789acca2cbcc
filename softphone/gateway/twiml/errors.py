"""Twilio's error codes for TwiML documents and webhooks, and the error that carries them.

What: :class:`TwimlError` is raised by :mod:`~softphone.gateway.twiml.parse` for a
document Twilio would refuse, and its code ends up in the runner's ``EndWithError``
action. The codes are Twilio's own (its error dictionary, 11xxx for fetching, 12xxx
for the document, 13xxx for a verb's attributes), so an application developer can
look them up where they already look for Twilio's.

Why not a ``TwilioError``: those carry the JS SDK's codes and reach a Device; these
describe the application's TwiML and belong in the gateway's log and call record.
"""

from __future__ import annotations

# Fetching the document (11xxx).
INVALID_URL = 11100
"""Invalid URL format: a ``<Play>`` or ``<Redirect>`` without a URL."""
HTTP_RETRIEVAL_FAILURE = 11200
"""The webhook could not be fetched: connection refused, timeout, a non-2xx status."""
RESPONSE_TOO_LARGE = 11750
"""TwiML response body too large (Twilio's limit is 64 kB)."""

# The document (12xxx).
DOCUMENT_PARSE_FAILURE = 12100
"""Document parse failure: not well-formed XML, or XML the safe parser refuses."""
ROOT_NOT_RESPONSE = 12102
"""The root element must be Response."""
SCHEMA_VALIDATION = 12200
"""Schema validation: an element or value TwiML does not define, or one this
gateway does not implement (the message names it)."""

# Verb attributes (13xxx).
DIAL_INVALID_METHOD = 13210
DIAL_INVALID_TIMEOUT = 13212
DIAL_INVALID_HANGUP_ON_STAR = 13213
DIAL_INVALID_CALLER_ID = 13214
DIAL_INVALID_NESTED_ELEMENT = 13215
DIAL_INVALID_TIME_LIMIT = 13216
DIAL_INVALID_RECORD = 13217
GATHER_INVALID_FINISH_ON_KEY = 13310
GATHER_INVALID_METHOD = 13312
GATHER_INVALID_TIMEOUT = 13313
GATHER_INVALID_NUM_DIGITS = 13314
GATHER_INVALID_NESTED_VERB = 13320
GATHER_SAY_INVALID_VOICE = 13321
GATHER_SAY_INVALID_LOOP = 13322
PLAY_INVALID_LOOP = 13410
SAY_INVALID_LOOP = 13510
SAY_INVALID_VOICE = 13511
SAY_INVALID_TEXT = 13520
RECORD_INVALID_METHOD = 13610
RECORD_INVALID_TIMEOUT = 13611
RECORD_INVALID_MAX_LENGTH = 13612
RECORD_INVALID_FINISH_ON_KEY = 13613
RECORD_INVALID_PLAY_BEEP = 13616
REDIRECT_INVALID_METHOD = 13710
PAUSE_INVALID_LENGTH = 13910


class TwimlError(Exception):
    """A TwiML document (or the fetch of one) that cannot run, with Twilio's code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"TwiML error {code}: {message}")
        self.code = code
        self.message = message

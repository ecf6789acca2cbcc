"""Custom call parameters and identifiers, encoded exactly as the JS SDK does.

Outgoing ``invite.twilio.params`` and incoming ``invite.parameters.Params``
are ``k=v&k=v`` strings whose quirks (JavaScript's default string conversion,
``encodeURIComponent``, a very naive decoder) must match the JS SDK byte for
byte so a Python client, a browser and the gateway agree
(signaling-protocol.md §5). The id generators and the ``listen``
``reconnectTimeout`` rule (§2.1, §4) live here too because they are the
same kind of small, pure wire detail.
"""

from __future__ import annotations

import enum
import math
import random
import re
import secrets
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Final, Literal
from urllib.parse import quote

__all__ = [
    "MAX_PARAMS_BYTES",
    "MAX_RECONNECT_TIMEOUT_S",
    "UNDEFINED",
    "UndefinedType",
    "call_sid",
    "decode_params",
    "encode_params",
    "encode_params_for_client",
    "encode_uri_component",
    "js_string",
    "js_truthy",
    "params_too_long",
    "reconnect_timeout_seconds",
    "reconnect_window_s",
    "temp_call_sid",
    "voice_event_sid",
]

MAX_PARAMS_BYTES: Final = 800
"""Twilio's limit on the encoded ``params`` string, in UTF-8 bytes (error 31103)."""

MAX_RECONNECT_TIMEOUT_S: Final = 30
"""Hard cap of ``listen.reconnectTimeout``, in seconds."""


class _Undefined(enum.Enum):
    """Type of :data:`UNDEFINED`; an enum so it is a typed singleton."""

    UNDEFINED = "undefined"

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = _Undefined.UNDEFINED
"""Stand-in for JavaScript's ``undefined``, distinct from ``None`` (``null``).

``device.connect({params: {a: undefined}})`` sends ``a=undefined``; use this
to reproduce that from Python.
"""

UndefinedType = Literal[_Undefined.UNDEFINED]
"""The type of :data:`UNDEFINED`, for annotations such as ``str | UndefinedType``."""

# Characters encodeURIComponent leaves alone besides ASCII letters and digits;
# urllib's quote() already keeps "_.-~", so only these need adding.
_URI_COMPONENT_SAFE = "!*'()"

_ESCAPE_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_MAX_ARRAY_INDEX = 2**32 - 2
_FORBIDDEN_KEY_CHARS = frozenset("&=%")


def encode_uri_component(s: str) -> str:
    """JavaScript's ``encodeURIComponent``.

    Everything except ``A-Z a-z 0-9 - _ . ! ~ * ' ( )`` becomes ``%XX`` of its
    UTF-8 bytes (upper-case hex; space is ``%20``, never ``+``). A lone
    surrogate raises :class:`ValueError` (``UnicodeEncodeError``) where JS
    throws ``URIError``.
    """
    return quote(s, safe=_URI_COMPONENT_SAFE)


def _js_decode_uri_component(s: str) -> str:
    """JavaScript's ``decodeURIComponent``; :class:`ValueError` where JS throws.

    Each run of ``%XX`` escapes must be valid UTF-8 (RFC 3629, so no overlong
    forms or surrogates, same as JS); a ``%`` not followed by two hex digits
    is an error.
    """
    out: list[str] = []
    pos = 0
    for match in _ESCAPE_RUN.finditer(s):
        literal = s[pos : match.start()]
        if "%" in literal:
            raise ValueError(f"malformed percent escape in {s!r}")
        out.append(literal)
        out.append(bytes.fromhex(match.group().replace("%", "")).decode("utf-8"))
        pos = match.end()
    tail = s[pos:]
    if "%" in tail:
        raise ValueError(f"malformed percent escape in {s!r}")
    out.append(tail)
    return "".join(out)


def _js_number(value: float) -> str:
    """``Number.prototype.toString()`` for a float (ECMAScript Number::toString).

    Python's ``repr`` already yields the shortest round-tripping digits, as JS
    does; only the layout differs (``1.0`` → ``1``, ``1e21`` → ``1e+21``,
    ``1e-7`` → ``1e-7``, ``0.000001`` → ``0.000001``).
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _js_number(-value)
    digits_tuple = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digits_tuple.digits)).lstrip("0")
    exponent = int(digits_tuple.exponent)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    k = len(digits)
    n = exponent + k  # value == 0.<digits> * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{mantissa}e{sign}{abs(e)}"


def js_string(value: object) -> str:
    """JavaScript's default string conversion (``String(value)``) for parameter values.

    ``None`` → ``"null"``, :data:`UNDEFINED` → ``"undefined"``, booleans →
    ``"true"``/``"false"``, numbers as JS prints them (``123``, ``1.5``,
    ``1.0`` → ``"1"``, NaN → ``"NaN"``), strings unchanged. Python ints are
    printed exactly (as a JS BigInt would be). Lists/tuples join their
    elements with ``,`` (``null``/``undefined`` elements become empty), like
    ``Array.prototype.toString``; other mappings give ``"[object Object]"``;
    anything else falls back to ``str()``.
    """
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, list | tuple):
        return ",".join("" if v is None or v is UNDEFINED else js_string(v) for v in value)
    if isinstance(value, Mapping):
        return "[object Object]"
    return str(value)


def js_truthy(value: object) -> bool:
    """JavaScript truthiness, which differs from Python's for containers and NaN.

    Falsy: ``None``, :data:`UNDEFINED`, ``False``, ``0``, ``0.0``, NaN, ``""``.
    Everything else is truthy, including empty lists and dicts (JS ``[]``/``{}``).
    """
    if value is None or value is UNDEFINED or value is False:
        return False
    if isinstance(value, int | float):
        return not (value == 0 or (isinstance(value, float) and math.isnan(value)))
    if isinstance(value, str):
        return value != ""
    return True


def encode_params(params: Mapping[str, object]) -> str:
    """Encode ``device.connect({params})`` for ``invite.twilio.params``.

    Keys and values go through :func:`js_string` then
    :func:`encode_uri_component`; pairs ``k=v`` are joined with ``&`` in
    insertion order. An empty mapping gives ``""`` (the caller then sends
    ``twilio: {}``).
    """
    return "&".join(
        f"{encode_uri_component(js_string(key))}={encode_uri_component(js_string(value))}"
        for key, value in params.items()
    )


def _is_array_index(key: str) -> bool:
    """Whether a JS object would treat ``key`` as an array index (listed first, ascending)."""
    return _ARRAY_INDEX.fullmatch(key) is not None and int(key) <= _MAX_ARRAY_INDEX


def decode_params(params_str: str) -> dict[str, str]:
    """Decode ``invite.parameters.Params`` exactly like the JS SDK's ``queryToJson``.

    Split on ``&``; split each piece on ``=``; the first part is the key,
    taken literally (no decoding); the second part (``""`` if absent) is the
    value, in which ``+`` becomes a space and then percent-escapes are
    decoded; anything after a second raw ``=`` is dropped; empty keys are
    skipped; a repeated key keeps its first position and its last value.
    Keys that are canonical integers (``"0"``, ``"42"``) come first in
    ascending order, as in the JS object the SDK builds.

    Malformed escapes: JS throws ``URIError`` (losing the whole invite). We
    never raise: such a value is kept as it arrived, with only ``+`` turned
    into a space, so nothing the server sent is lost.
    """
    decoded: dict[str, str] = {}
    if not params_str:
        return decoded
    for pair in params_str.split("&"):
        parts = pair.split("=")
        key = parts[0]
        raw_value = parts[1] if len(parts) > 1 else ""
        spaced = raw_value.replace("+", " ")
        try:
            value = _js_decode_uri_component(spaced)
        except ValueError:
            value = spaced
        if key:
            decoded[key] = value
    indices = sorted((k for k in decoded if _is_array_index(k)), key=int)
    if not indices:
        return decoded
    ordered = {k: decoded[k] for k in indices}
    ordered.update((k, v) for k, v in decoded.items() if k not in ordered)
    return ordered


def encode_params_for_client(params: Mapping[str, str]) -> str:
    """Encode ``invite.parameters.Params`` (gateway → client) so it round-trips.

    The JS decoder takes keys literally and percent-decodes values after
    turning ``+`` into spaces, so keys are sent raw and values through
    :func:`encode_uri_component` (which escapes ``+ & = %`` and space). Then
    ``decode_params(encode_params_for_client(p)) == p`` for every mapping this
    accepts (integer-like keys move to the front, as in JS; ``==`` ignores
    order). Raises :class:`ValueError` for a key that cannot survive the
    decoder: empty, or containing ``&``, ``=`` or ``%``.
    """
    pieces: list[str] = []
    for key, value in params.items():
        if not key or _FORBIDDEN_KEY_CHARS.intersection(key):
            raise ValueError(f"parameter key {key!r} must be non-empty without '&', '=' or '%'")
        pieces.append(f"{key}={encode_uri_component(value)}")
    return "&".join(pieces)


def params_too_long(encoded: str) -> bool:
    """Whether an encoded ``params`` string exceeds :data:`MAX_PARAMS_BYTES` UTF-8 bytes."""
    return len(encoded.encode("utf-8", "surrogatepass")) > MAX_PARAMS_BYTES


def reconnect_timeout_seconds(max_call_signaling_timeout_ms: object) -> int:
    """``listen.reconnectTimeout`` from the Device's ``maxCallSignalingTimeoutMs``.

    A number ≥ 0 gives ``min(ceil(ms / 1000), 30)``; anything else (``None``,
    :data:`UNDEFINED`, a string, a bool, a negative number, NaN) gives 0.
    Infinity gives the cap, 30.
    """
    ms = max_call_signaling_timeout_ms
    if isinstance(ms, bool) or not isinstance(ms, int | float):
        return 0
    if isinstance(ms, float) and (math.isnan(ms) or ms < 0):
        return 0
    if isinstance(ms, int) and ms < 0:
        return 0
    if isinstance(ms, float):
        if math.isinf(ms):
            return MAX_RECONNECT_TIMEOUT_S
        seconds = math.ceil(ms / 1000)
    else:
        seconds = -(-ms // 1000)
    return min(seconds, MAX_RECONNECT_TIMEOUT_S)


def reconnect_window_s(reconnect_timeout: object) -> int:
    """How long a gateway holds a client's calls after its socket drops, in seconds.

    The server's reading of ``listen.reconnectTimeout`` (already seconds, see
    :func:`reconnect_timeout_seconds`): a whole number of seconds ≥ 0, capped at 30;
    anything else counts as 0 (end the calls at once).
    """
    if isinstance(reconnect_timeout, bool) or not isinstance(reconnect_timeout, int):
        return 0
    return max(0, min(reconnect_timeout, MAX_RECONNECT_TIMEOUT_S))


def temp_call_sid(rng: random.Random | None = None) -> str:
    """A temporary client call id: ``TJS`` + a lowercase UUID v4 (39 characters).

    The JS SDK uses a non-crypto RNG; pass ``rng`` for reproducible ids,
    otherwise :func:`uuid.uuid4` is used.
    """
    if rng is None:
        return f"TJS{uuid.uuid4()}"
    return f"TJS{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def voice_event_sid() -> str:
    """A voice event sid for ``message``: ``KX`` + 32 lowercase hex from :mod:`secrets`.

    Like the JS SDK (which raises ``NotSupportedError`` without
    ``crypto.getRandomValues``), this never falls back to a weak RNG: if the
    OS has no secure random source the :class:`NotImplementedError` from
    :func:`os.urandom` propagates.
    """
    return "KX" + secrets.token_bytes(16).hex()


def call_sid() -> str:
    """A Twilio-shaped CallSid for the gateway: ``CA`` + 32 lowercase hex."""
    return "CA" + secrets.token_bytes(16).hex()

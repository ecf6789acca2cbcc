"""Connect tokens: the text ``call.connect_token`` gives and ``connect(connect_token=...)`` takes.

What: a connect token lets another Device take over a call (answer a ringing incoming
call elsewhere, or rejoin one). It is the JS SDK's ``connectToken``:
``btoa(encodeURIComponent(JSON.stringify({customParameters, parameters,
signalingReconnectToken})))``, i.e. base64 of the percent-encoded JSON of the call's
custom parameters, its parameters (``CallSid`` …) and the signaling reconnect token
the gateway issued for it.

Why here: encoding and parsing are two halves of one wire format, so they live
together, pure (no I/O, no Device), next to the other signaling formats. The SDK turns
:class:`ConnectTokenError` into its ``InvalidArgumentError``.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

ENCODE_URI_COMPONENT_SAFE = "-_.!~*'()"
"""Characters JS ``encodeURIComponent`` leaves as they are (besides letters and digits)."""


class ConnectTokenError(ValueError):
    """A connect token that cannot be used; the message is the JS SDK's text."""


class ConnectToken(NamedTuple):
    """What a connect token carries (a tuple: ``token, parameters, custom = ...``)."""

    reconnect_token: str
    """The signaling reconnect token, sent as ``reconnect`` in the takeover invite."""
    parameters: dict[str, Any]
    """The call's parameters; ``CallSid`` is always present and non-empty."""
    custom_parameters: dict[str, Any]
    """The call's custom parameters (empty when the token has none)."""


def encode_connect_token(
    reconnect_token: str, parameters: Mapping[str, Any], custom_parameters: Mapping[str, Any]
) -> str:
    """The connect token for a call, in the JS SDK's encoding (keys in its order)."""
    data = {
        "customParameters": dict(custom_parameters),
        "parameters": dict(parameters),
        "signalingReconnectToken": reconnect_token,
    }
    text = urllib.parse.quote(
        json.dumps(data, separators=(",", ":")), safe=ENCODE_URI_COMPONENT_SAFE
    )
    return base64.b64encode(text.encode()).decode()


def parse_connect_token(token: str) -> ConnectToken:
    """Decode a connect token made by us or by the JS SDK.

    Raises :class:`ConnectTokenError`: ``"Cannot parse connectToken"`` for text that is
    not base64 of percent-encoded JSON of an object, ``"Invalid connectToken"`` when
    ``parameters.CallSid`` or ``signalingReconnectToken`` is missing or empty.
    """
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
        data = json.loads(urllib.parse.unquote(decoded))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ConnectTokenError("Cannot parse connectToken") from exc
    if not isinstance(data, dict):
        raise ConnectTokenError("Cannot parse connectToken")
    parameters = data.get("parameters")
    reconnect = data.get("signalingReconnectToken")
    if (
        not isinstance(parameters, dict)
        or not parameters.get("CallSid")
        or not isinstance(reconnect, str)
        or not reconnect
    ):
        raise ConnectTokenError("Invalid connectToken")
    custom = data.get("customParameters")
    return ConnectToken(reconnect, parameters, dict(custom) if isinstance(custom, dict) else {})

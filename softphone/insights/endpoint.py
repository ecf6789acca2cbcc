"""Where insights go: the endpoint paths, the token header, and how a Device picks the base.

What: the JS SDK posts to ``https://<host>/v4/EndpointEvents`` and
``/v4/EndpointMetrics`` with the access token in ``X-Twilio-Token``, the host being
``eventgw.<home>.twilio.com`` from the ``connected`` frame.

Why our rule differs: a Device must never contact twilio.com unless asked to. Our
gateway names its own insights base URL in ``connected`` under :data:`CONNECTED_FIELD`
(an extra key the JS SDK ignores). :func:`select_base_url` takes, in order, the app's
explicit ``eventgw`` option, else that field, else nothing: with a real Twilio or an
unknown server (no such field) nothing is published.

The field is only believed when it points at the host the Device already talks to
(same hostname as the signaling URL) and keeps TLS when signaling uses it: a
gateway cannot make its clients post their token to a third party or in clear text.
Pure: no I/O.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

__all__ = [
    "CONNECTED_FIELD",
    "EVENTS_PATH",
    "METRICS_PATH",
    "TOKEN_HEADER",
    "base_url",
    "events_url",
    "from_connected",
    "metrics_url",
    "select_base_url",
]

EVENTS_PATH: Final = "/v4/EndpointEvents"
METRICS_PATH: Final = "/v4/EndpointMetrics"
TOKEN_HEADER: Final = "X-Twilio-Token"
"""The header carrying the Device's access token on every post."""
CONNECTED_FIELD: Final = "insights"
"""Key of ``connected`` under which our gateway names its insights base URL."""

_SCHEMES: Final = ("http", "https")
_HOST_RE: Final = re.compile(r"[A-Za-z0-9.\-\[\]:]+")


def base_url(host: str | None) -> str | None:
    """The base URL for a host (JS ``setHost``) or a full ``http(s)://`` base URL.

    A bare ``host[:port]`` gets ``https://`` as in JS (``eventgw.twilio.com`` →
    ``https://eventgw.twilio.com``); a URL keeps its scheme and path prefix. Trailing
    slashes are dropped. None, empty or malformed values give None (publish nowhere).
    """
    if not host or not isinstance(host, str):
        return None
    text = host.strip()
    if "://" not in text:
        text = f"https://{text}"
    text = text.rstrip("/")
    try:
        parts = urllib.parse.urlsplit(text)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        return None
    if (
        parts.scheme.lower() not in _SCHEMES
        or not parts.hostname
        or not _HOST_RE.fullmatch(parts.netloc)
        or parts.query
        or parts.fragment
    ):
        return None
    return urllib.parse.urlunsplit((parts.scheme.lower(), parts.netloc, parts.path, "", ""))


def events_url(base: str) -> str:
    """``<base>/v4/EndpointEvents``."""
    return base + EVENTS_PATH


def metrics_url(base: str) -> str:
    """``<base>/v4/EndpointMetrics``."""
    return base + METRICS_PATH


def from_connected(value: object, signaling_url: str | None) -> str | None:
    """The insights base URL a gateway named in ``connected``, if the Device may use it.

    Accepted only as an explicit ``http(s)://`` URL on the same hostname as
    ``signaling_url``, and ``https`` when signaling is ``wss``. Anything else (absent,
    another host, a downgrade to ``http``) gives None.
    """
    if not isinstance(value, str) or "://" not in value or not signaling_url:
        return None
    base = base_url(value)
    if base is None:
        return None
    try:
        signaling = urllib.parse.urlsplit(signaling_url)
    except ValueError:
        return None
    offered = urllib.parse.urlsplit(base)
    if (signaling.hostname or "").lower() != (offered.hostname or "").lower():
        return None
    if signaling.scheme.lower() == "wss" and offered.scheme != "https":
        return None
    return base


def select_base_url(
    eventgw: str | None, connected_value: object, signaling_url: str | None
) -> str | None:
    """Where a Device publishes after ``connected``: the explicit ``eventgw`` option, else
    the gateway's :data:`CONNECTED_FIELD` (see :func:`from_connected`), else None."""
    explicit = base_url(eventgw)
    if explicit is not None:
        return explicit
    return from_connected(connected_value, signaling_url)

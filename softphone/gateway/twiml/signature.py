"""Signing webhooks the way Twilio does (``X-Twilio-Signature``).

What: :func:`compute_signature` is Twilio's scheme: the base64 of the HMAC-SHA1,
keyed with the account's auth token, of the full URL followed by every POST
parameter's name and value, sorted by name (a GET request's parameters are already
in its URL). :func:`signed_request` builds the request the gateway sends: the URL
(with the parameters in its query for GET), the form body for POST, and the headers.

Why exactly Twilio's: an application guards its webhooks with the official helper's
``RequestValidator``; the gateway's requests must pass it unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import attrs

from softphone.gateway.twiml.model import Method

SIGNATURE_HEADER = "X-Twilio-Signature"

Params = Mapping[str, str | Iterable[str]]
"""Request parameters; a name may carry several values."""


def compute_signature(auth_token: str, url: str, params: Params | None = None) -> str:
    """Twilio's signature of a request to ``url`` with POST ``params``.

    Repeated values of one name are signed sorted and once each, as Twilio's
    helpers validate them.
    """
    payload = url
    for name in sorted(params or {}):
        for value in sorted(set(_values(params, name))):
            payload += name + value
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@attrs.frozen(kw_only=True)
class SignedRequest:
    """A webhook request ready to send."""

    method: Method
    url: str
    """Without user info; with the parameters in the query for GET."""
    headers: Mapping[str, str]
    body: bytes | None
    """The url-encoded form for POST; None for GET."""


def signed_request(auth_token: str, method: Method, url: str, params: Params) -> SignedRequest:
    """The request Twilio would send to ``url``, signed with ``auth_token``.

    Credentials in the URL (``https://user:pass@host/``) move to an
    ``Authorization: Basic`` header and are not part of the signed URL, since the
    application sees the URL without them.
    """
    parts = urlsplit(url)
    headers: dict[str, str] = {}
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        url = urlunsplit(parts._replace(netloc=netloc))
    pairs = [(name, value) for name in params for value in _values(params, name)]
    if method == "GET":
        if pairs:
            url += ("&" if urlsplit(url).query else "?") + urlencode(pairs)
        headers[SIGNATURE_HEADER] = compute_signature(auth_token, url)
        return SignedRequest(method=method, url=url, headers=headers, body=None)
    headers[SIGNATURE_HEADER] = compute_signature(auth_token, url, params)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return SignedRequest(method=method, url=url, headers=headers, body=urlencode(pairs).encode())


def _values(params: Params | None, name: str) -> list[str]:
    value = (params or {})[name]
    return [value] if isinstance(value, str) else list(value)

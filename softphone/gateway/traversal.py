"""The Network Traversal Service: short-lived TURN credentials, as Twilio hands them out.

Twilio's ``POST /2010-04-01/Accounts/{AccountSid}/Tokens.json`` returns a list of
``ice_servers`` with a temporary username and password that its TURN servers accept
for ``ttl`` seconds. We do the same for any TURN server that speaks the "TURN REST
API" shared-secret scheme (coturn's ``use-auth-secret`` + ``static-auth-secret``):

* username = ``"<expiry unix seconds>:<account sid>"``;
* password = base64(HMAC-SHA1(shared secret, username)).

The TURN server needs no database: it recomputes the password from the username
and refuses it once the expiry has passed. This module is pure (``now`` is passed in).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import attrs

DEFAULT_TTL_S = 86400
"""Twilio's default credential lifetime (24 h), also the longest we hand out."""
MIN_TTL_S = 1


@attrs.frozen
class TraversalConfig:
    """The STUN/TURN servers the gateway advertises and the secret it shares with TURN."""

    stun_urls: tuple[str, ...] = ()
    """``stun:host:port`` URLs, given out without credentials."""
    turn_urls: tuple[str, ...] = ()
    """``turn:`` / ``turns:`` URLs (``?transport=udp|tcp`` allowed) of the TURN servers."""
    shared_secret: str = attrs.field(default="", repr=False)
    """coturn's ``static-auth-secret``: needed as soon as there is a TURN URL."""

    def __attrs_post_init__(self) -> None:
        for url in self.stun_urls:
            if not url.startswith("stun:"):
                raise ValueError(f"STUN URL must start with 'stun:', got {url!r}")
        for url in self.turn_urls:
            if not url.startswith(("turn:", "turns:")):
                raise ValueError(f"TURN URL must start with 'turn:' or 'turns:', got {url!r}")
        if self.turn_urls and not self.shared_secret:
            raise ValueError("TURN URLs need the TURN server's shared secret (--turn-secret)")

    @property
    def enabled(self) -> bool:
        """Whether there is anything to hand out."""
        return bool(self.stun_urls or self.turn_urls)


@attrs.frozen
class TurnCredential:
    """One temporary username/password pair and when it stops working."""

    username: str
    password: str = attrs.field(repr=False)
    expires_at: int


def turn_credential(secret: str, user: str, *, ttl_s: int, now: float) -> TurnCredential:
    """The TURN REST API credential for ``user`` valid ``ttl_s`` seconds from ``now``."""
    if not secret:
        raise ValueError("a TURN shared secret is required")
    expires_at = int(now) + ttl_s
    username = f"{expires_at}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode("ascii"), expires_at)


def check_ttl(value: object) -> int:
    """Parse the ``Ttl`` form field: whole seconds from 1 to 86400 (default 86400)."""
    if value is None or value == "":
        return DEFAULT_TTL_S
    try:
        ttl = int(str(value))
    except ValueError:
        raise ValueError(f"Ttl must be a whole number of seconds, got {value!r}") from None
    if not MIN_TTL_S <= ttl <= DEFAULT_TTL_S:
        raise ValueError(f"Ttl must be between {MIN_TTL_S} and {DEFAULT_TTL_S} seconds")
    return ttl


def ice_servers(config: TraversalConfig, credential: TurnCredential | None) -> list[dict[str, str]]:
    """The ``ice_servers`` list in Twilio's shape (both ``url`` and ``urls`` keys).

    The result is what ``Device.connect(rtc_configuration={"iceServers": ...})`` and a
    browser's ``RTCPeerConnection`` take directly.
    """
    servers: list[dict[str, str]] = [{"url": url, "urls": url} for url in config.stun_urls]
    if credential is not None:
        servers += [
            {
                "url": url,
                "urls": url,
                "username": credential.username,
                "credential": credential.password,
            }
            for url in config.turn_urls
        ]
    return servers


def token_resource(
    config: TraversalConfig, account_sid: str, *, ttl_s: int, now: float
) -> dict[str, Any]:
    """The JSON body of a created Token resource, field for field as Twilio's."""
    credential = (
        turn_credential(config.shared_secret, account_sid, ttl_s=ttl_s, now=now)
        if config.turn_urls
        else None
    )
    date = email.utils.formatdate(now, usegmt=False).replace("-0000", "+0000")
    return {
        "account_sid": account_sid,
        "date_created": date,
        "date_updated": date,
        "ice_servers": ice_servers(config, credential),
        "password": credential.password if credential else "",
        "ttl": str(ttl_s),
        "username": credential.username if credential else "",
    }


def rtc_ice_servers(servers: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Drop Twilio's legacy ``url`` key: what an ``RTCConfiguration`` wants."""
    return [{k: v for k, v in server.items() if k != "url"} for server in servers]

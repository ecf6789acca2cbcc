"""Access tokens: minting (like twilio's ``AccessToken`` + ``VoiceGrant``) and verifying.

A token is an HS256 JWT with header ``{"typ":"JWT","alg":"HS256","cty":"twilio-fpa;v=1"}``
and claims ``jti``, ``iss`` (API key sid), ``sub`` (account sid), ``exp``, ``nbf`` and
``grants: {identity, voice: {incoming: {allow}, outgoing: {application_sid, params}}}``
(signaling-protocol.md §10). :func:`mint_token` produces the same bytes as the official
helper for the same inputs and clock.

:func:`verify_token` is what the gateway runs on ``listen``. Each failure raises a
:class:`TokenError` carrying the wire code for the ``error`` frame (errors.md §2, §5).
The checks run in a fixed order so that each defect maps to one code:

1. not a non-empty string -> 31102 (token missing);
2. header/payload unreadable (unverified parse), ``alg`` not HS256, or a required claim
   (``iss``, ``sub``, ``exp``, ``grants``) missing or of the wrong type (a time that is
   no finite number, such as ``exp: 10**400``, included) -> 31204;
3. ``iss`` is not a known API key -> 31203 (no valid account: we cannot even pick a key);
4. signature does not verify with that key's secret -> 31202;
5. ``sub`` is not the key's account -> 31203. Checked only *after* the signature, so a
   forged token is always reported as a signature failure;
6. ``exp <= now`` -> 31205 (no skew: the ``ttl`` we report in ``connected`` would be 0);
7. ``nbf`` (or ``iat``) more than :data:`CLOCK_SKEW_S` in the future -> 31204;
8. lifetime ``exp - (nbf or iat or now)`` over 24 h, or ``exp`` more than 24 h (+ skew)
   ahead of ``now`` -> 31207;
9. no ``grants.voice`` object, or malformed voice grant fields -> 31204;
10. identity missing, empty, > 121 chars or outside ``[A-Za-z0-9_]`` -> 31105.

Messages never contain the secret, nor echo the token.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

import attrs
import jwt

from softphone.gateway.accounts import AccountStore, ApiKey
from softphone.signaling.codes import (
    AUTHORIZATION_TOKEN_MISSING,
    INVALID_CLIENT_NAME,
    INVALID_JWT_TOKEN,
    NO_VALID_ACCOUNT,
    SIGNATURE_VALIDATION_FAILED,
    TOKEN_EXPIRATION_TOO_LONG,
    TOKEN_EXPIRED,
)

ALGORITHM = "HS256"
CONTENT_TYPE = "twilio-fpa;v=1"
"""The ``cty`` header twilio's helper libraries put on access tokens."""

MAX_LIFETIME_S = 86400
"""Longest accepted token lifetime (Twilio's 24 h limit)."""
CLOCK_SKEW_S = 60
"""Tolerated clock difference between the token minter and the gateway."""
MAX_IDENTITY_LENGTH = 121
_IDENTITY_RE = re.compile(r"[A-Za-z0-9_]+")


class TokenError(Exception):
    """A rejected token; ``code`` and ``message`` go into the gateway's ``error`` frame."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@attrs.frozen
class VerifiedToken:
    """What the gateway keeps from a token that passed :func:`verify_token`."""

    identity: str
    account_sid: str
    key_sid: str
    expires_at: float
    """The ``exp`` claim, unix seconds."""
    incoming_allow: bool
    outgoing_application_sid: str | None = None
    outgoing_params: dict[str, Any] | None = attrs.field(default=None, hash=False)

    def ttl(self, now: float) -> int:
        """Whole seconds of validity left at ``now`` (floored, never negative)."""
        return max(0, math.floor(self.expires_at - now))


def mint_token(
    key: ApiKey,
    identity: str,
    *,
    ttl: int = 3600,
    now: float | None = None,
    outgoing_application_sid: str | None = None,
    outgoing_params: dict[str, Any] | None = None,
    incoming_allow: bool = True,
) -> str:
    """Mint an access token with a voice grant, signed with ``key``.

    Claims, their order and omissions follow twilio's ``AccessToken``/``VoiceGrant``:
    ``incoming`` only when allowed, ``outgoing`` only with an application sid,
    ``identity`` only when non-empty. The identity is not validated here (the helper
    does not either), so tools and tests can mint tokens the gateway will reject.
    """
    issued = int(time.time() if now is None else now)
    voice: dict[str, Any] = {}
    if incoming_allow:
        voice["incoming"] = {"allow": True}
    if outgoing_application_sid:
        outgoing: dict[str, Any] = {"application_sid": outgoing_application_sid}
        if outgoing_params:
            outgoing["params"] = outgoing_params
        voice["outgoing"] = outgoing
    grants: dict[str, Any] = {"voice": voice}
    if identity:
        grants["identity"] = identity
    payload = {
        "jti": f"{key.sid}-{issued}",
        "grants": grants,
        "iss": key.sid,
        "exp": issued + ttl,
        "nbf": issued,
        "sub": key.account_sid,
    }
    return jwt.encode(payload, key.secret, algorithm=ALGORITHM, headers={"cty": CONTENT_TYPE})


def identity_problem(identity: object) -> str | None:
    """Why the gateway refuses ``identity`` as a client name, or None if it is fine.

    The one identity rule (Twilio's): 1 to :data:`MAX_IDENTITY_LENGTH` characters of
    ``A-Z a-z 0-9 _``. :func:`verify_token` applies it (31105) and ``softphone token``
    refuses to mint what would be refused.
    """
    if (
        isinstance(identity, str)
        and len(identity) <= MAX_IDENTITY_LENGTH
        and _IDENTITY_RE.fullmatch(identity) is not None
    ):
        return None
    return f"Identity must be 1-{MAX_IDENTITY_LENGTH} characters of A-Z, a-z, 0-9 and _"


def verify_token(token: object, store: AccountStore, *, now: float) -> VerifiedToken:
    """Check ``token`` against ``store`` at time ``now``; see the module doc for the codes."""
    if not isinstance(token, str) or not token:
        raise TokenError(AUTHORIZATION_TOKEN_MISSING, "Access token missing")
    claims = _unverified_claims(token)
    key = store.key(claims["iss"])
    if key is None:
        raise TokenError(NO_VALID_ACCOUNT, "Access token issuer is not a known API key")
    _check_signature(token, key)
    if claims["sub"] != key.account_sid:
        raise TokenError(NO_VALID_ACCOUNT, "Access token account does not own its API key")
    _check_times(claims, now)
    return _read_grants(claims, key)


def _invalid(message: str) -> TokenError:
    return TokenError(INVALID_JWT_TOKEN, message)


def _is_number(value: object) -> bool:
    """A finite JSON number a float can hold (bool is not one, though Python thinks so).

    JSON integers are unbounded: ``10**400`` is valid JSON but no time, and
    ``math.isfinite`` raises on it instead of answering.
    """
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _unverified_claims(token: str) -> dict[str, Any]:
    """Parse header and payload without the key; check algorithm and required claims."""
    try:
        header = jwt.get_unverified_header(token)
        raw = jwt.api_jws.decode_complete(token, options={"verify_signature": False})
        claims = json.loads(raw["payload"])
    except (jwt.InvalidTokenError, ValueError, UnicodeDecodeError) as exc:
        raise _invalid("Access token is not a valid JWT") from exc
    if header.get("alg") != ALGORITHM:
        raise _invalid(f"Access token must be signed with {ALGORITHM}")
    if not isinstance(claims, dict):
        raise _invalid("Access token payload is not a JSON object")
    missing = [name for name in ("iss", "sub", "exp", "grants") if name not in claims]
    if missing:
        raise _invalid(f"Access token is missing claim(s): {', '.join(missing)}")
    if not isinstance(claims["iss"], str) or not isinstance(claims["sub"], str):
        raise _invalid("Access token 'iss' and 'sub' must be strings")
    if not _is_number(claims["exp"]):
        raise _invalid("Access token 'exp' must be a number")
    for name in ("nbf", "iat"):
        if name in claims and not _is_number(claims[name]):
            raise _invalid(f"Access token '{name}' must be a number")
    if not isinstance(claims["grants"], dict):
        raise _invalid("Access token 'grants' must be an object")
    return claims


def _check_signature(token: str, key: ApiKey) -> None:
    """Verify the HS256 signature with the key's secret (and nothing else)."""
    try:
        jwt.api_jws.decode_complete(token, key.secret, algorithms=[ALGORITHM])
    except jwt.InvalidSignatureError as exc:
        raise TokenError(
            SIGNATURE_VALIDATION_FAILED, "Access token signature validation failed"
        ) from exc
    except jwt.InvalidTokenError as exc:
        raise _invalid("Access token is not a valid JWT") from exc


def _check_times(claims: dict[str, Any], now: float) -> None:
    """Expiry, not-before and maximum lifetime, with :data:`CLOCK_SKEW_S` of tolerance."""
    exp = float(claims["exp"])
    if exp <= now:
        raise TokenError(TOKEN_EXPIRED, "Access token expired")
    start = claims.get("nbf", claims.get("iat"))
    if start is not None and float(start) > now + CLOCK_SKEW_S:
        raise _invalid("Access token is not valid yet")
    lifetime = exp - (now if start is None else float(start))
    if lifetime > MAX_LIFETIME_S or exp - now > MAX_LIFETIME_S + CLOCK_SKEW_S:
        raise TokenError(
            TOKEN_EXPIRATION_TOO_LONG, f"Access token lifetime exceeds {MAX_LIFETIME_S} seconds"
        )


def _read_grants(claims: dict[str, Any], key: ApiKey) -> VerifiedToken:
    """Voice grant and identity of a signed, current token."""
    grants: dict[str, Any] = claims["grants"]
    voice = grants.get("voice")
    if not isinstance(voice, dict):
        raise _invalid("Access token has no voice grant")
    incoming = voice.get("incoming", {})
    outgoing = voice.get("outgoing", {})
    if not isinstance(incoming, dict) or not isinstance(outgoing, dict):
        raise _invalid("Access token voice grant is malformed")
    app_sid = outgoing.get("application_sid")
    params = outgoing.get("params")
    if app_sid is not None and not isinstance(app_sid, str):
        raise _invalid("Access token outgoing application_sid must be a string")
    if params is not None and not isinstance(params, dict):
        raise _invalid("Access token outgoing params must be an object")
    identity = grants.get("identity")
    problem = identity_problem(identity)
    if problem is not None:
        raise TokenError(INVALID_CLIENT_NAME, problem)
    assert isinstance(identity, str)
    return VerifiedToken(
        identity=identity,
        account_sid=key.account_sid,
        key_sid=key.sid,
        expires_at=float(claims["exp"]),
        incoming_allow=incoming.get("allow") is True,
        outgoing_application_sid=app_sid or None,
        outgoing_params=params,
    )

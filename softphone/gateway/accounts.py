"""The gateway's credential store: accounts, their API keys and TwiML applications.

Twilio signs access tokens with an API key secret (key sid ``SK…``, which is the
token's ``iss``) belonging to an account (``AC…``, the token's ``sub``). The gateway
plays Twilio, so it must know the same keys to verify tokens: this module holds them.

Where the keys come from (:func:`load`), in order of precedence:

1. a JSON file (``softphone gateway --accounts FILE``), see :meth:`AccountStore.from_file`;
2. the environment (``SOFTPHONE_ACCOUNT_SID``, ``SOFTPHONE_API_KEY_SID``,
   ``SOFTPHONE_API_KEY_SECRET``), see :meth:`AccountStore.from_env`;
3. a deterministic **development** account, see :meth:`AccountStore.dev`. Its secret is
   public (it is written below) unless ``SOFTPHONE_DEV_SECRET`` overrides it, so anyone
   can mint tokens for it: it is for local testing only, never for a reachable gateway.

Secrets never appear in ``repr`` output or in error messages.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

DEV_ACCOUNT_SID = "AC00000000000000000000000000000001"
"""Account sid of the development account built by :meth:`AccountStore.dev`."""
DEV_API_KEY_SID = "SK00000000000000000000000000000001"
"""API key sid (token ``iss``) of the development account."""
DEV_APPLICATION_SID = "AP00000000000000000000000000000001"
"""TwiML application sid of the development account."""
DEV_SECRET = "softphone-dev-secret-NOT-FOR-PRODUCTION-0001"
"""Fixed, publicly known development secret (used when ``SOFTPHONE_DEV_SECRET`` is unset).

It is in the source code, so a gateway running with it accepts tokens from anyone:
bind such a gateway to loopback only. It is longer than 32 bytes so HS256 does not
warn about a short key.
"""

ENV_DEV_SECRET = "SOFTPHONE_DEV_SECRET"
ENV_ACCOUNT_SID = "SOFTPHONE_ACCOUNT_SID"
ENV_API_KEY_SID = "SOFTPHONE_API_KEY_SID"
ENV_API_KEY_SECRET = "SOFTPHONE_API_KEY_SECRET"
ENV_APPLICATION_SID = "SOFTPHONE_APPLICATION_SID"
"""Optional: a TwiML application sid to register for the environment's account."""

_SID_RE = re.compile(r"[0-9a-fA-F]{32}")


def is_sid(value: object, prefix: str) -> bool:
    """Whether ``value`` looks like a Twilio sid: ``prefix`` then 32 hex digits."""
    return (
        isinstance(value, str)
        and value.startswith(prefix)
        and _SID_RE.fullmatch(value[len(prefix) :]) is not None
    )


@attrs.frozen
class ApiKey:
    """An API key: ``sid`` is the token's ``iss``, ``secret`` the HS256 signing key."""

    sid: str
    secret: str = attrs.field(repr=False)
    account_sid: str


StatusEvent = str
"""A ``status_callback`` event: ``initiated``, ``ringing``, ``answered`` or ``completed``."""
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
METHODS = ("GET", "POST")


@attrs.frozen
class Application:
    """A TwiML application, the target of a token's outgoing grant.

    Without ``voice_url`` the gateway's built-in app routes the call (``client:NAME``,
    ``echo``). With it, the call runs the TwiML that URL returns (signed requests,
    ``voice_fallback_url`` when it fails) and ``status_callback`` is told of the
    ``status_callback_events`` (Twilio's default: ``completed`` only).
    """

    sid: str
    voice_url: str | None = None
    voice_method: str = "POST"
    voice_fallback_url: str | None = None
    voice_fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: tuple[StatusEvent, ...] = ("completed",)


@attrs.frozen
class Account:
    """An account (``AC…``), the TwiML applications it owns and its auth token.

    ``auth_token`` is the account's own secret (Twilio's ``AuthToken``): with it the
    REST API accepts HTTP Basic ``AccountSid:AuthToken`` besides the API keys. None:
    only API keys authenticate.
    """

    sid: str
    applications: tuple[Application, ...] = ()
    auth_token: str | None = attrs.field(default=None, repr=False)

    def application(self, sid: str) -> Application | None:
        """The application ``sid`` of this account, or None."""
        return next((app for app in self.applications if app.sid == sid), None)


class AccountStore:
    """Accounts and API keys, looked up by sid when a token arrives."""

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._keys: dict[str, ApiKey] = {}

    # -- building ---------------------------------------------------------------

    def add_account(
        self,
        sid: str,
        applications: Iterable[Application] = (),
        *,
        auth_token: str | None = None,
    ) -> Account:
        """Add (or replace) the account ``sid`` with its applications and auth token."""
        account = Account(sid, tuple(applications), auth_token)
        self._accounts[sid] = account
        return account

    def add_key(self, key: ApiKey) -> None:
        """Add an API key; its account must already be in the store."""
        if key.account_sid not in self._accounts:
            raise ValueError(f"API key {key.sid} belongs to unknown account {key.account_sid}")
        if key.sid in self._keys:
            raise ValueError(f"duplicate API key sid {key.sid}")
        self._keys[key.sid] = key

    # -- lookups ----------------------------------------------------------------

    def key(self, sid: str) -> ApiKey | None:
        """The API key ``sid`` (a token's ``iss``), or None if unknown."""
        return self._keys.get(sid)

    def account(self, sid: str) -> Account | None:
        """The account ``sid`` (a token's ``sub``), or None if unknown."""
        return self._accounts.get(sid)

    def application(self, account_sid: str, app_sid: str) -> Application | None:
        """The application ``app_sid`` if account ``account_sid`` owns it, else None."""
        account = self._accounts.get(account_sid)
        return account.application(app_sid) if account else None

    @property
    def accounts(self) -> tuple[Account, ...]:
        """All accounts, in insertion order."""
        return tuple(self._accounts.values())

    @property
    def keys(self) -> tuple[ApiKey, ...]:
        """All API keys, in insertion order."""
        return tuple(self._keys.values())

    def public_keys(self) -> tuple[ApiKey, ...]:
        """Keys signed with the published :data:`DEV_SECRET`: anyone can mint their tokens.

        A gateway with such a key must only be reachable from this machine.
        """
        return tuple(key for key in self._keys.values() if key.secret == DEV_SECRET)

    def default_key(self) -> ApiKey:
        """The first API key: what a CLI uses to mint tokens when none is named."""
        if not self._keys:
            raise ValueError("the account store has no API keys")
        return next(iter(self._keys.values()))

    # -- sources ----------------------------------------------------------------

    @classmethod
    def dev(cls, environ: Mapping[str, str] | None = None) -> AccountStore:
        """The deterministic development account (see the module docstring).

        Sids are :data:`DEV_ACCOUNT_SID`, :data:`DEV_API_KEY_SID` and
        :data:`DEV_APPLICATION_SID`; the secret is ``$SOFTPHONE_DEV_SECRET`` if set and
        non-empty, else the public :data:`DEV_SECRET`. Local testing only.
        """
        env = os.environ if environ is None else environ
        secret = env.get(ENV_DEV_SECRET) or DEV_SECRET
        store = cls()
        store.add_account(DEV_ACCOUNT_SID, [Application(DEV_APPLICATION_SID)])
        store.add_key(ApiKey(DEV_API_KEY_SID, secret, DEV_ACCOUNT_SID))
        return store

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AccountStore | None:
        """One account and key from the environment, or None if none of it is set.

        Reads ``SOFTPHONE_ACCOUNT_SID``, ``SOFTPHONE_API_KEY_SID`` and
        ``SOFTPHONE_API_KEY_SECRET`` (all three required once any is set) and the
        optional ``SOFTPHONE_APPLICATION_SID``.
        """
        env = os.environ if environ is None else environ
        names = (ENV_ACCOUNT_SID, ENV_API_KEY_SID, ENV_API_KEY_SECRET)
        values = {name: env.get(name, "") for name in names}
        if not any(values.values()):
            return None
        missing = [name for name in names if not values[name]]
        if missing:
            raise ValueError(f"incomplete API key in the environment: {', '.join(missing)} unset")
        account_sid = _check_sid(values[ENV_ACCOUNT_SID], "AC", ENV_ACCOUNT_SID)
        key_sid = _check_sid(values[ENV_API_KEY_SID], "SK", ENV_API_KEY_SID)
        app_sid = env.get(ENV_APPLICATION_SID, "")
        apps = [Application(_check_sid(app_sid, "AP", ENV_APPLICATION_SID))] if app_sid else []
        store = cls()
        store.add_account(account_sid, apps)
        store.add_key(ApiKey(key_sid, values[ENV_API_KEY_SECRET], account_sid))
        return store

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> AccountStore:
        """Load accounts from a JSON file.

        Format::

            {"accounts": [{"sid": "AC…",
                           "auth_token": "…",
                           "keys": [{"sid": "SK…", "secret": "…"}],
                           "applications": [{"sid": "AP…", "voice_url": "…"}]}]}

        ``auth_token`` (the REST API's ``AccountSid:AuthToken`` credentials),
        ``applications`` and ``voice_url`` are optional. Raises ValueError naming the
        file and the offending field for anything malformed.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read accounts file {path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON: {exc}") from exc
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @classmethod
    def from_dict(cls, data: object) -> AccountStore:
        """Build a store from the parsed JSON of :meth:`from_file`."""
        root = _object(data, "top level", required={"accounts"})
        accounts = _list(root["accounts"], "accounts")
        if not accounts:
            raise ValueError("accounts must list at least one account")
        store = cls()
        for i, raw_account in enumerate(accounts):
            where = f"accounts[{i}]"
            entry = _object(
                raw_account,
                where,
                required={"sid", "keys"},
                optional={"applications", "auth_token"},
            )
            account_sid = _check_sid(entry["sid"], "AC", f"{where}.sid")
            auth_token = entry.get("auth_token")
            if auth_token is not None and (not isinstance(auth_token, str) or not auth_token):
                raise ValueError(f"{where}.auth_token must be a non-empty string")
            if store.account(account_sid) is not None:
                raise ValueError(f"{where}.sid: duplicate account {account_sid}")
            apps = []
            for j, raw_app in enumerate(
                _list(entry.get("applications", []), f"{where}.applications")
            ):
                app_where = f"{where}.applications[{j}]"
                app = _application(raw_app, app_where)
                if app.voice_url and auth_token is None:
                    raise ValueError(
                        f"{app_where}.voice_url needs {where}.auth_token: webhooks are "
                        "signed with the account's auth token"
                    )
                apps.append(app)
            store.add_account(account_sid, apps, auth_token=auth_token)
            for j, raw_key in enumerate(_list(entry["keys"], f"{where}.keys")):
                key_where = f"{where}.keys[{j}]"
                key = _object(raw_key, key_where, required={"sid", "secret"})
                key_sid = _check_sid(key["sid"], "SK", f"{key_where}.sid")
                secret = key["secret"]
                if not isinstance(secret, str) or not secret:
                    raise ValueError(f"{key_where}.secret must be a non-empty string")
                if store.key(key_sid) is not None:
                    raise ValueError(f"{key_where}.sid: duplicate API key {key_sid}")
                store.add_key(ApiKey(key_sid, secret, account_sid))
        return store


def load(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None
) -> AccountStore:
    """The gateway's store: the file if ``path`` is given, else the environment, else dev."""
    if path is not None:
        return AccountStore.from_file(path)
    return AccountStore.from_env(environ) or AccountStore.dev(environ)


_APP_FIELDS = {
    "voice_url",
    "voice_method",
    "voice_fallback_url",
    "voice_fallback_method",
    "status_callback",
    "status_callback_method",
    "status_callback_events",
}


def _application(raw: object, where: str) -> Application:
    """One ``applications`` entry, every field checked (ValueError naming it)."""
    app = _object(raw, where, required={"sid"}, optional=_APP_FIELDS)
    fields: dict[str, Any] = {}
    for name in ("voice_url", "voice_fallback_url", "status_callback"):
        value = app.get(name)
        if value is None:
            continue
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{where}.{name} must be an http(s) URL, got {value!r}")
        fields[name] = value
    for name in ("voice_method", "voice_fallback_method", "status_callback_method"):
        value = app.get(name, "POST")
        if not isinstance(value, str) or value.upper() not in METHODS:
            raise ValueError(f"{where}.{name} must be GET or POST, got {value!r}")
        fields[name] = value.upper()
    events = app.get("status_callback_events", ["completed"])
    if not isinstance(events, list) or not all(e in STATUS_EVENTS for e in events):
        raise ValueError(f"{where}.status_callback_events must list some of {STATUS_EVENTS}")
    fields["status_callback_events"] = tuple(events)
    return Application(sid=_check_sid(app["sid"], "AP", f"{where}.sid"), **fields)


def _check_sid(value: object, prefix: str, where: str) -> str:
    """Return ``value`` if it is a ``prefix`` sid, else raise a ValueError about ``where``."""
    if not is_sid(value, prefix):
        raise ValueError(f"{where} must be '{prefix}' followed by 32 hex digits, got {value!r}")
    assert isinstance(value, str)
    return value


def _object(
    value: object,
    where: str,
    *,
    required: set[str],
    optional: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    """Check ``value`` is a JSON object with exactly the allowed fields (typos are errors)."""
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a JSON object")
    missing = sorted(required - value.keys())
    if missing:
        raise ValueError(f"{where} is missing {', '.join(missing)}")
    unknown = sorted(set(value) - required - set(optional))
    if unknown:
        allowed = ", ".join(sorted(required | set(optional)))
        raise ValueError(f"{where} has unknown field(s) {', '.join(unknown)} (allowed: {allowed})")
    return value


def _list(value: object, where: str) -> list[Any]:
    """Check ``value`` is a JSON array."""
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a JSON array")
    return value

"""Access-token minting and verification, including tokens from the official helper."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

from softphone.gateway.accounts import AccountStore, ApiKey, Application
from softphone.gateway.tokens import (
    TokenError,
    VerifiedToken,
    identity_problem,
    mint_token,
    verify_token,
)

pytestmark = pytest.mark.pure

NOW = 1_700_000_000.0
ACCOUNT = "AC" + "a" * 32
OTHER_ACCOUNT = "AC" + "b" * 32
KEY_SID = "SK" + "c" * 32
OTHER_KEY_SID = "SK" + "d" * 32
APP = "AP" + "e" * 32
SECRET = "s3cr3t-for-tests-0123456789abcdef"
WRONG_SECRET = "not-the-secret-0123456789abcdef!!"
KEY = ApiKey(KEY_SID, SECRET, ACCOUNT)


@pytest.fixture
def store() -> AccountStore:
    s = AccountStore()
    s.add_account(ACCOUNT, [Application(APP)])
    s.add_account(OTHER_ACCOUNT)
    s.add_key(KEY)
    return s


@pytest.fixture
def frozen_twilio_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the twilio helper read NOW (it calls ``time.time()`` internally)."""

    class FixedTime:
        @staticmethod
        def time() -> float:
            return NOW

    monkeypatch.setattr("twilio.jwt.time", FixedTime)
    monkeypatch.setattr("twilio.jwt.access_token.time", FixedTime)


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid claim set at NOW; ``key=None`` in overrides deletes the claim."""
    base: dict[str, Any] = {
        "jti": f"{KEY_SID}-{int(NOW)}",
        "grants": {"identity": "alice", "voice": {"incoming": {"allow": True}}},
        "iss": KEY_SID,
        "exp": int(NOW) + 3600,
        "nbf": int(NOW),
        "sub": ACCOUNT,
    }
    for name, value in overrides.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def craft(payload: dict[str, Any], secret: str = SECRET, alg: str = "HS256") -> str:
    """Sign arbitrary claims (bypassing pyjwt's claim type checks on encode)."""
    body = json.dumps(payload).encode()
    return jwt.api_jws.encode(body, secret, algorithm=alg, headers={"cty": "twilio-fpa;v=1"})


def code_of(token: object, store: AccountStore, now: float = NOW) -> int:
    with pytest.raises(TokenError) as info:
        verify_token(token, store, now=now)
    return info.value.code


# -- round trip -----------------------------------------------------------------


def test_mint_verify_round_trip(store: AccountStore) -> None:
    token = mint_token(
        KEY,
        "alice_01",
        ttl=600,
        now=NOW,
        outgoing_application_sid=APP,
        outgoing_params={"To": "bob"},
    )
    verified = verify_token(token, store, now=NOW + 100.5)
    assert verified == VerifiedToken(
        identity="alice_01",
        account_sid=ACCOUNT,
        key_sid=KEY_SID,
        expires_at=NOW + 600,
        incoming_allow=True,
        outgoing_application_sid=APP,
        outgoing_params={"To": "bob"},
    )
    assert verified.ttl(NOW + 100.5) == 499  # floored
    assert verified.ttl(NOW) == 600
    assert verified.ttl(NOW + 10_000) == 0
    hash(verified)  # usable as a key despite the params dict


def test_minted_claims_and_header() -> None:
    token = mint_token(KEY, "alice", now=NOW + 0.9, incoming_allow=False)
    assert jwt.get_unverified_header(token) == {
        "typ": "JWT",
        "alg": "HS256",
        "cty": "twilio-fpa;v=1",
    }
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload == {
        "jti": f"{KEY_SID}-{int(NOW)}",
        "iss": KEY_SID,
        "sub": ACCOUNT,
        "exp": int(NOW) + 3600,
        "nbf": int(NOW),
        "grants": {"identity": "alice", "voice": {}},
    }


def test_incoming_disallowed_and_no_outgoing(store: AccountStore) -> None:
    verified = verify_token(mint_token(KEY, "bob", now=NOW, incoming_allow=False), store, now=NOW)
    assert verified.incoming_allow is False
    assert verified.outgoing_application_sid is None
    assert verified.outgoing_params is None


# -- compatibility with the official twilio helper ------------------------------


def test_header_cty_matches_twilio(frozen_twilio_clock: None) -> None:
    theirs = AccessToken(ACCOUNT, KEY_SID, SECRET, identity="alice").to_jwt()
    ours = mint_token(KEY, "alice", now=NOW)
    assert jwt.get_unverified_header(ours) == jwt.get_unverified_header(theirs)
    assert jwt.get_unverified_header(ours)["cty"] == "twilio-fpa;v=1"


def test_minted_token_is_byte_identical_to_twilio(frozen_twilio_clock: None) -> None:
    grant = VoiceGrant(
        incoming_allow=True,
        outgoing_application_sid=APP,
        outgoing_application_params={"To": "bob", "n": "1"},
    )
    theirs = AccessToken(ACCOUNT, KEY_SID, SECRET, identity="alice", grants=[grant], ttl=1800)
    ours = mint_token(
        KEY,
        "alice",
        ttl=1800,
        now=NOW,
        outgoing_application_sid=APP,
        outgoing_params={"To": "bob", "n": "1"},
    )
    assert ours == theirs.to_jwt()


def test_twilio_helper_token_verifies(store: AccountStore, frozen_twilio_clock: None) -> None:
    grant = VoiceGrant(
        incoming_allow=True,
        outgoing_application_sid=APP,
        outgoing_application_params={"agent": "x"},
    )
    token = AccessToken(ACCOUNT, KEY_SID, SECRET, identity="carol_9", grants=[grant]).to_jwt()
    verified = verify_token(token, store, now=NOW + 1)
    assert verified.identity == "carol_9"
    assert verified.outgoing_application_sid == APP
    assert verified.outgoing_params == {"agent": "x"}
    assert verified.incoming_allow is True
    assert verified.account_sid == ACCOUNT
    assert verified.key_sid == KEY_SID
    assert verified.ttl(NOW + 1) == 3599


def test_twilio_helper_region_header_is_accepted(
    store: AccountStore, frozen_twilio_clock: None
) -> None:
    grant = VoiceGrant(incoming_allow=True)
    token = AccessToken(
        ACCOUNT, KEY_SID, SECRET, identity="dave", grants=[grant], region="ie1"
    ).to_jwt()
    assert verify_token(token, store, now=NOW).identity == "dave"


def test_twilio_helper_token_with_other_secret(
    store: AccountStore, frozen_twilio_clock: None
) -> None:
    grant = VoiceGrant(incoming_allow=True)
    token = AccessToken(ACCOUNT, KEY_SID, WRONG_SECRET, identity="alice", grants=[grant])
    assert code_of(token.to_jwt(), store) == 31202


# -- each failure code ----------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", 42, b"abc.def.ghi", ["x"]])
def test_missing_token_31102(store: AccountStore, token: object) -> None:
    assert code_of(token, store) == 31102


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "a.b", "....", "eyJhbGciOiJIUzI1NiJ9.x.y"])
def test_undecodable_31204(store: AccountStore, token: str) -> None:
    assert code_of(token, store) == 31204


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_wrong_algorithm_31204(store: AccountStore) -> None:
    assert code_of(craft(claims(), alg="HS512"), store) == 31204


def test_alg_none_31204(store: AccountStore) -> None:
    def b64(data: dict[str, Any]) -> str:
        raw = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
        return raw.rstrip("=")

    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    assert code_of(token, store) == 31204


@pytest.mark.parametrize("claim", ["iss", "sub", "exp", "grants"])
def test_missing_required_claim_31204(store: AccountStore, claim: str) -> None:
    assert code_of(craft(claims(**{claim: None})), store) == 31204


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": "tomorrow"},
        {"exp": True},
        {"exp": 10**400},  # valid JSON, no float: must not raise OverflowError
        {"exp": -(10**400)},
        {"nbf": 10**400},
        {"iat": 10**400},
        {"nbf": "now"},
        {"iss": 7},
        {"grants": "all"},
    ],
)
def test_malformed_claims_31204(store: AccountStore, overrides: dict[str, Any]) -> None:
    assert code_of(craft(claims(**overrides)), store) == 31204


def test_payload_not_an_object_31204(store: AccountStore) -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    body = base64.urlsafe_b64encode(b"[1,2]").decode().rstrip("=")
    assert code_of(f"{header}.{body}.c2ln", store) == 31204


def test_no_voice_grant_31204(store: AccountStore) -> None:
    assert code_of(craft(claims(grants={"identity": "alice"})), store) == 31204
    assert code_of(craft(claims(grants={"identity": "alice", "voice": 1})), store) == 31204


def test_malformed_voice_grant_31204(store: AccountStore) -> None:
    bad = {"identity": "alice", "voice": {"outgoing": {"application_sid": APP, "params": [1]}}}
    assert code_of(craft(claims(grants=bad)), store) == 31204


def test_unknown_key_31203(store: AccountStore) -> None:
    assert code_of(craft(claims(iss=OTHER_KEY_SID)), store) == 31203


def test_account_not_owning_key_31203(store: AccountStore) -> None:
    assert code_of(craft(claims(sub=OTHER_ACCOUNT)), store) == 31203


def test_forged_token_with_wrong_account_is_a_signature_failure(store: AccountStore) -> None:
    """The signature is checked before ``sub``, so forgeries never learn about accounts."""
    assert code_of(craft(claims(sub=OTHER_ACCOUNT), secret=WRONG_SECRET), store) == 31202


def test_bad_signature_31202(store: AccountStore) -> None:
    assert code_of(craft(claims(), secret=WRONG_SECRET), store) == 31202


def test_tampered_payload_31202(store: AccountStore) -> None:
    header, _, signature = mint_token(KEY, "alice", now=NOW).split(".")
    forged = craft(claims(grants={"identity": "mallory", "voice": {}})).split(".")[1]
    assert code_of(f"{header}.{forged}.{signature}", store) == 31202


def test_expired_31205(store: AccountStore) -> None:
    token = mint_token(KEY, "alice", ttl=3600, now=NOW - 3600)
    assert code_of(token, store) == 31205  # exp == now
    assert code_of(token, store, now=NOW + 1) == 31205
    assert verify_token(token, store, now=NOW - 0.5).ttl(NOW - 0.5) == 0


def test_not_yet_valid_31204(store: AccountStore) -> None:
    token = craft(claims(nbf=int(NOW) + 61, exp=int(NOW) + 3600))
    assert code_of(token, store) == 31204
    token = craft(claims(nbf=None, iat=int(NOW) + 120, exp=int(NOW) + 3600))
    assert code_of(token, store) == 31204


def test_clock_skew_is_tolerated(store: AccountStore) -> None:
    """A minter 60 s ahead of us: nbf and a full 24 h lifetime both pass."""
    ahead = NOW + 60
    token = mint_token(KEY, "alice", ttl=86400, now=ahead)
    assert verify_token(token, store, now=NOW).ttl(NOW) == 86460


def test_lifetime_too_long_31207(store: AccountStore) -> None:
    assert code_of(mint_token(KEY, "alice", ttl=86401, now=NOW), store) == 31207
    # the lifetime counts from nbf, even when little of it is left
    old = craft(claims(nbf=int(NOW) - 86400, exp=int(NOW) + 10))
    assert code_of(old, store) == 31207
    # without nbf/iat, the lifetime counts from now
    assert code_of(craft(claims(nbf=None, exp=int(NOW) + 86401)), store) == 31207
    # with iat instead of nbf
    assert code_of(craft(claims(nbf=None, iat=int(NOW) - 10, exp=int(NOW) + 86391)), store) == 31207


def test_lifetime_of_exactly_24h_is_accepted(store: AccountStore) -> None:
    token = mint_token(KEY, "alice", ttl=86400, now=NOW)
    assert verify_token(token, store, now=NOW).ttl(NOW) == 86400


@pytest.mark.parametrize(
    "identity",
    [None, "", "a" * 122, "alice@example.com", "bob smith", "ålice", "alice\n", "a-b", 17],
)
def test_invalid_identity_31105(store: AccountStore, identity: object) -> None:
    grants: dict[str, Any] = {"voice": {"incoming": {"allow": True}}}
    if identity is not None:
        grants["identity"] = identity
    assert code_of(craft(claims(grants=grants)), store) == 31105


@pytest.mark.parametrize(
    "identity",
    [None, "", "a" * 122, "alice@example.com", "bob smith", "alice\n", "a-b", 17, "A_9", "a" * 121],
)
def test_identity_rule_is_the_one_verify_applies(store: AccountStore, identity: object) -> None:
    """``identity_problem`` (used by ``softphone token``) refuses exactly what the gateway does."""
    grants: dict[str, Any] = {"voice": {}, "identity": identity}
    token = craft(claims(grants=grants))
    if identity_problem(identity) is None:
        assert verify_token(token, store, now=NOW).identity == identity
    else:
        assert code_of(token, store) == 31105


def test_identity_of_121_chars_is_accepted(store: AccountStore) -> None:
    identity = "A_9" * 40 + "z"
    assert len(identity) == 121
    assert verify_token(mint_token(KEY, identity, now=NOW), store, now=NOW).identity == identity


def test_empty_identity_is_omitted_when_minting(store: AccountStore) -> None:
    token = mint_token(KEY, "", now=NOW)
    assert "identity" not in jwt.decode(token, options={"verify_signature": False})["grants"]
    assert code_of(token, store) == 31105


def test_secrets_never_leak(store: AccountStore) -> None:
    assert SECRET not in repr(KEY)
    for token in (
        craft(claims(), secret=WRONG_SECRET),
        craft(claims(sub=OTHER_ACCOUNT)),
        mint_token(KEY, "alice", ttl=1, now=NOW - 10),
    ):
        with pytest.raises(TokenError) as info:
            verify_token(token, store, now=NOW)
        text = f"{info.value} {info.value.message} {info.value!r}"
        assert SECRET not in text
        assert WRONG_SECRET not in text
        assert token not in text

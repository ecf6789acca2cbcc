"""The gateway credential store: dev account, environment and JSON file loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from softphone.gateway.accounts import (
    DEV_ACCOUNT_SID,
    DEV_API_KEY_SID,
    DEV_APPLICATION_SID,
    DEV_SECRET,
    AccountStore,
    ApiKey,
    Application,
    is_sid,
    load,
)
from softphone.gateway.tokens import mint_token, verify_token

pytestmark = pytest.mark.pure

AC = "AC" + "1" * 32
AC2 = "AC" + "2" * 32
SK = "SK" + "3" * 32
SK2 = "SK" + "4" * 32
AP = "AP" + "5" * 32
FILE_SECRET = "file-secret-0123456789abcdef0123456"
ENV_SECRET = "env-secret-0123456789abcdef01234567"
NOW = 1_700_000_000.0


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "accounts.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def valid_config() -> dict[str, Any]:
    return {
        "accounts": [
            {
                "sid": AC,
                "keys": [{"sid": SK, "secret": FILE_SECRET}],
                "auth_token": "account-token",
                "applications": [{"sid": AP, "voice_url": "http://127.0.0.1/twiml"}],
            },
            {"sid": AC2, "keys": [{"sid": SK2, "secret": FILE_SECRET + "x"}]},
        ]
    }


def test_dev_account_is_deterministic() -> None:
    store = AccountStore.dev(environ={})
    assert DEV_ACCOUNT_SID == "AC00000000000000000000000000000001"
    assert DEV_API_KEY_SID == "SK00000000000000000000000000000001"
    assert DEV_APPLICATION_SID == "AP00000000000000000000000000000001"
    for sid, prefix in (
        (DEV_ACCOUNT_SID, "AC"),
        (DEV_API_KEY_SID, "SK"),
        (DEV_APPLICATION_SID, "AP"),
    ):
        assert is_sid(sid, prefix)
    key = store.key(DEV_API_KEY_SID)
    assert key == ApiKey(DEV_API_KEY_SID, DEV_SECRET, DEV_ACCOUNT_SID)
    assert store.default_key() == key
    assert len(DEV_SECRET.encode()) >= 32
    assert store.application(DEV_ACCOUNT_SID, DEV_APPLICATION_SID) == Application(
        DEV_APPLICATION_SID
    )


def test_dev_secret_from_environment() -> None:
    store = AccountStore.dev(environ={"SOFTPHONE_DEV_SECRET": ENV_SECRET})
    key = store.default_key()
    assert key.secret == ENV_SECRET
    assert key.sid == DEV_API_KEY_SID
    assert AccountStore.dev(environ={"SOFTPHONE_DEV_SECRET": ""}).default_key().secret == DEV_SECRET


def test_dev_round_trip() -> None:
    store = AccountStore.dev(environ={})
    token = mint_token(store.default_key(), "alice", now=NOW)
    assert verify_token(token, store, now=NOW).account_sid == DEV_ACCOUNT_SID


def test_secret_not_in_repr() -> None:
    assert DEV_SECRET not in repr(AccountStore.dev(environ={}).default_key())


def test_from_file(tmp_path: Path) -> None:
    store = AccountStore.from_file(write(tmp_path, valid_config()))
    assert [a.sid for a in store.accounts] == [AC, AC2]
    assert [k.sid for k in store.keys] == [SK, SK2]
    assert store.key(SK) == ApiKey(SK, FILE_SECRET, AC)
    other = store.key(SK2)
    assert other is not None
    assert other.account_sid == AC2
    assert store.application(AC, AP) == Application(AP, "http://127.0.0.1/twiml")
    assert store.application(AC2, AP) is None
    assert store.account(AC2) is not None
    assert store.key("SK" + "9" * 32) is None


def test_application_webhook_fields(tmp_path: Path) -> None:
    config = valid_config()
    config["accounts"][0]["applications"] = [
        {
            "sid": AP,
            "voice_url": "https://app.example/voice",
            "voice_method": "get",
            "voice_fallback_url": "https://app.example/fallback",
            "status_callback": "https://app.example/status",
            "status_callback_events": ["initiated", "answered", "completed"],
        }
    ]
    app = AccountStore.from_file(write(tmp_path, config)).application(AC, AP)
    assert app == Application(
        AP,
        "https://app.example/voice",
        voice_method="GET",
        voice_fallback_url="https://app.example/fallback",
        status_callback="https://app.example/status",
        status_callback_events=("initiated", "answered", "completed"),
    )


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("{not json", "invalid JSON"),
        ([], "top level must be a JSON object"),
        ({}, "top level is missing accounts"),
        ({"accounts": {}}, "accounts must be a JSON array"),
        ({"accounts": []}, "at least one account"),
        ({"accounts": [1]}, "accounts[0] must be a JSON object"),
        ({"accounts": [{"sid": AC}]}, "accounts[0] is missing keys"),
        ({"accounts": [{"sid": "ACnope", "keys": []}]}, "accounts[0].sid must be 'AC'"),
        ({"accounts": [{"sid": SK, "keys": []}]}, "accounts[0].sid must be 'AC'"),
        (
            {"accounts": [{"sid": AC, "keys": [], "apps": []}]},
            "accounts[0] has unknown field(s) apps",
        ),
        (
            {"accounts": [{"sid": AC, "keys": [{"sid": SK}]}]},
            "accounts[0].keys[0] is missing secret",
        ),
        (
            {"accounts": [{"sid": AC, "keys": [{"sid": SK, "secret": ""}]}]},
            "accounts[0].keys[0].secret must be a non-empty string",
        ),
        (
            {"accounts": [{"sid": AC, "keys": [{"sid": SK, "secret": 5}]}]},
            "accounts[0].keys[0].secret must be a non-empty string",
        ),
        (
            {"accounts": [{"sid": AC, "keys": [{"sid": AC, "secret": "x"}]}]},
            "accounts[0].keys[0].sid must be 'SK'",
        ),
        (
            {"accounts": [{"sid": AC, "keys": [{"sid": SK, "secret": "x", "secert": "y"}]}]},
            "unknown field(s) secert",
        ),
        (
            {"accounts": [{"sid": AC, "keys": [], "applications": [{"sid": SK}]}]},
            "accounts[0].applications[0].sid must be 'AP'",
        ),
        (
            {"accounts": [{"sid": AC, "keys": [], "applications": [{"sid": AP, "voice_url": 1}]}]},
            "accounts[0].applications[0].voice_url must be an http(s) URL",
        ),
        (
            {"accounts": [{"sid": AC, "keys": [], "applications": [{"sid": AP, "voice_url": ""}]}]},
            "accounts[0].applications[0].voice_url must be an http(s) URL",
        ),
        (
            {
                "accounts": [
                    {"sid": AC, "keys": [], "applications": [{"sid": AP, "voice_url": "http://a/"}]}
                ]
            },
            "voice_url needs accounts[0].auth_token",
        ),
        (
            {
                "accounts": [
                    {
                        "sid": AC,
                        "keys": [],
                        "auth_token": "t",
                        "applications": [{"sid": AP, "voice_method": "PUT"}],
                    }
                ]
            },
            "voice_method must be GET or POST",
        ),
        (
            {
                "accounts": [
                    {
                        "sid": AC,
                        "keys": [],
                        "applications": [{"sid": AP, "status_callback_events": ["done"]}],
                    }
                ]
            },
            "status_callback_events must list some of",
        ),
        (
            {"accounts": [{"sid": AC, "keys": []}, {"sid": AC, "keys": []}]},
            "accounts[1].sid: duplicate account",
        ),
        (
            {
                "accounts": [
                    {"sid": AC, "keys": [{"sid": SK, "secret": "x"}]},
                    {"sid": AC2, "keys": [{"sid": SK, "secret": "y"}]},
                ]
            },
            "accounts[1].keys[0].sid: duplicate API key",
        ),
    ],
)
def test_malformed_file(tmp_path: Path, data: Any, fragment: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ValueError) as info:
        AccountStore.from_file(path)
    message = str(info.value)
    assert fragment in message
    assert str(path) in message


def test_malformed_file_never_shows_secret(tmp_path: Path) -> None:
    config = {"accounts": [{"sid": AC, "keys": [{"sid": "SKbad", "secret": FILE_SECRET}]}]}
    with pytest.raises(ValueError) as info:
        AccountStore.from_file(write(tmp_path, config))
    assert FILE_SECRET not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read accounts file"):
        AccountStore.from_file(tmp_path / "absent.json")


def test_from_env() -> None:
    environ = {
        "SOFTPHONE_ACCOUNT_SID": AC,
        "SOFTPHONE_API_KEY_SID": SK,
        "SOFTPHONE_API_KEY_SECRET": ENV_SECRET,
    }
    store = AccountStore.from_env(environ)
    assert store is not None
    assert store.keys == (ApiKey(SK, ENV_SECRET, AC),)
    assert store.application(AC, AP) is None
    with_app = AccountStore.from_env({**environ, "SOFTPHONE_APPLICATION_SID": AP})
    assert with_app is not None and with_app.application(AC, AP) == Application(AP)


def test_from_env_unset_is_none() -> None:
    assert AccountStore.from_env({}) is None
    assert AccountStore.from_env({"SOFTPHONE_DEV_SECRET": ENV_SECRET}) is None


def test_from_env_incomplete_or_malformed() -> None:
    with pytest.raises(ValueError, match="SOFTPHONE_API_KEY_SECRET unset"):
        AccountStore.from_env({"SOFTPHONE_ACCOUNT_SID": AC, "SOFTPHONE_API_KEY_SID": SK})
    with pytest.raises(ValueError) as info:
        AccountStore.from_env({"SOFTPHONE_API_KEY_SECRET": ENV_SECRET})
    assert "SOFTPHONE_ACCOUNT_SID" in str(info.value)
    assert ENV_SECRET not in str(info.value)
    with pytest.raises(ValueError, match="SOFTPHONE_API_KEY_SID must be 'SK'"):
        AccountStore.from_env(
            {
                "SOFTPHONE_ACCOUNT_SID": AC,
                "SOFTPHONE_API_KEY_SID": "key",
                "SOFTPHONE_API_KEY_SECRET": ENV_SECRET,
            }
        )


def test_load_precedence(tmp_path: Path) -> None:
    environ = {
        "SOFTPHONE_ACCOUNT_SID": AC2,
        "SOFTPHONE_API_KEY_SID": SK2,
        "SOFTPHONE_API_KEY_SECRET": ENV_SECRET,
    }
    path = write(tmp_path, valid_config())
    assert load(str(path), environ).default_key().sid == SK  # file wins
    assert load(None, environ).default_key() == ApiKey(SK2, ENV_SECRET, AC2)  # then env
    assert load(None, {}).default_key().sid == DEV_API_KEY_SID  # then dev
    dev = load(None, {"SOFTPHONE_DEV_SECRET": ENV_SECRET})
    assert dev.default_key().secret == ENV_SECRET


def test_store_building_errors() -> None:
    store = AccountStore()
    with pytest.raises(ValueError, match="no API keys"):
        store.default_key()
    with pytest.raises(ValueError, match="unknown account"):
        store.add_key(ApiKey(SK, FILE_SECRET, AC))
    store.add_account(AC)
    store.add_key(ApiKey(SK, FILE_SECRET, AC))
    with pytest.raises(ValueError, match="duplicate API key"):
        store.add_key(ApiKey(SK, FILE_SECRET, AC))

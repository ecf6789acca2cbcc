"""Tests for softphone.core.errors: the catalogue, TwilioError and the wire mappings.

Expected values are written out from errors.md (§1-§3) and checklist items 86-94,
172-174, 183 and 291-295 rather than derived from the module, so a change to the
module's tables shows up here.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from softphone.core import errors
from softphone.core.errors import (
    ERRORS_BY_CODE,
    PRECISE_SIGNALING_ERROR_CODES,
    AuthorizationErrors,
    ClientErrors,
    GeneralErrors,
    InvalidArgumentError,
    InvalidStateError,
    MalformedRequestErrors,
    MediaErrors,
    NotSupportedError,
    SignalingErrors,
    SignatureValidationErrors,
    SIPServerErrors,
    TwilioError,
    UserMediaErrors,
    call_error_from_hangup,
    call_error_from_message_error,
    device_error_from_signaling,
    get_error_by_code,
    get_precise_signaling_error_by_code,
    has_error_by_code,
)

pytestmark = pytest.mark.pure

# (code, namespace, class name) - errors.md §2, all 39 rows.
CATALOGUE: list[tuple[int, type, str]] = [
    (20101, AuthorizationErrors, "AccessTokenInvalid"),
    (20104, AuthorizationErrors, "AccessTokenExpired"),
    (20151, AuthorizationErrors, "AuthenticationFailed"),
    (31000, GeneralErrors, "UnknownError"),
    (31001, GeneralErrors, "ApplicationNotFoundError"),
    (31002, GeneralErrors, "ConnectionDeclinedError"),
    (31003, GeneralErrors, "ConnectionTimeoutError"),
    (31005, GeneralErrors, "ConnectionError"),
    (31008, GeneralErrors, "CallCancelledError"),
    (31009, GeneralErrors, "TransportError"),
    (31100, MalformedRequestErrors, "MalformedRequestError"),
    (31101, MalformedRequestErrors, "MissingParameterArrayError"),
    (31102, MalformedRequestErrors, "AuthorizationTokenMissingError"),
    (31103, MalformedRequestErrors, "MaxParameterLengthExceededError"),
    (31104, MalformedRequestErrors, "InvalidBridgeTokenError"),
    (31105, MalformedRequestErrors, "InvalidClientNameError"),
    (31107, MalformedRequestErrors, "ReconnectParameterInvalidError"),
    (31201, AuthorizationErrors, "AuthorizationError"),
    (31202, SignatureValidationErrors, "AccessTokenSignatureValidationFailed"),
    (31203, AuthorizationErrors, "NoValidAccountError"),
    (31204, AuthorizationErrors, "InvalidJWTTokenError"),
    (31205, AuthorizationErrors, "JWTTokenExpiredError"),
    (31206, AuthorizationErrors, "RateExceededError"),
    (31207, AuthorizationErrors, "JWTTokenExpirationTooLongError"),
    (31209, AuthorizationErrors, "ReconnectAttemptError"),
    (31210, AuthorizationErrors, "CallMessageEventTypeInvalidError"),
    (31212, AuthorizationErrors, "PayloadSizeExceededError"),
    (31400, ClientErrors, "BadRequest"),
    (31401, UserMediaErrors, "PermissionDeniedError"),
    (31402, UserMediaErrors, "AcquisitionFailedError"),
    (31404, ClientErrors, "NotFound"),
    (31480, ClientErrors, "TemporarilyUnavailable"),
    (31486, ClientErrors, "BusyHere"),
    (31603, SIPServerErrors, "Decline"),
    (53000, SignalingErrors, "ConnectionError"),
    (53001, SignalingErrors, "ConnectionDisconnected"),
    (53400, MediaErrors, "ClientLocalDescFailed"),
    (53402, MediaErrors, "ClientRemoteDescFailed"),
    (53405, MediaErrors, "ConnectionError"),
]
ALL_CODES = [code for code, _, _ in CATALOGUE]

EMPTY_EXPLANATION_CODES = {31001, 31002, 31101, 31102, 31104, 31107, 31203, 31204, 31205}
EMPTY_EXPLANATION_CODES |= {31207, 31209}

# errors.md §3 precise set.
PRECISE = {31001, 31002, 31003, 31101, 31102, 31103, 31104, 31105, 31107, 31201}
PRECISE |= {31202, 31203, 31204, 31205, 31207, 31404, 31480, 31486, 31603}

# errors.md §3 table, row "other precise code X".
OTHER_PRECISE = sorted(PRECISE - {31201, 31204, 31205})
# errors.md §3 table, row "known non-precise code Y".
KNOWN_NON_PRECISE = [31000, 31005, 31008, 31009, 31100, 31206, 31209, 31210, 31212, 31400]
KNOWN_NON_PRECISE += [31401, 31402, 53000, 53001, 53400, 53402, 53405, 20101, 20104, 20151]
UNKNOWN_CODES: list[Any] = [123, 31902, 99999, 0, -1]

FLAGS = [False, True]


def _cls(code: int) -> type[TwilioError]:
    return ERRORS_BY_CODE[code]


def _explanation(code: int) -> str:
    return _cls(code).explanation


# --------------------------------------------------------------------------------------
# Catalogue (checklist 293, 294)
# --------------------------------------------------------------------------------------


def test_catalogue_reference_is_complete() -> None:
    assert len(CATALOGUE) == 39
    assert len(set(ALL_CODES)) == 39
    assert sorted(PRECISE) == sorted(set(OTHER_PRECISE) | {31201, 31204, 31205})
    assert len(PRECISE) == 19
    assert set(KNOWN_NON_PRECISE) | PRECISE == set(ALL_CODES)
    assert not set(KNOWN_NON_PRECISE) & PRECISE


@pytest.mark.parametrize(("code", "namespace", "name"), CATALOGUE)
def test_chk_294_every_class_exists_in_its_namespace(code: int, namespace: type, name: str) -> None:
    cls = getattr(namespace, name)
    assert isinstance(cls, type)
    assert issubclass(cls, TwilioError)
    assert cls.code == code
    assert cls.name == name
    assert ERRORS_BY_CODE[code] is cls
    assert get_error_by_code(code) is cls
    assert has_error_by_code(code)
    err = cls()
    assert err.code == code
    assert err.name == name
    assert isinstance(err.description, str) and err.description
    assert isinstance(err.explanation, str)
    assert isinstance(err.causes, list) and all(isinstance(c, str) for c in err.causes)
    assert isinstance(err.solutions, list) and all(isinstance(s, str) for s in err.solutions)


def test_errors_by_code_holds_exactly_the_catalogue() -> None:
    assert sorted(ERRORS_BY_CODE) == sorted(ALL_CODES)
    assert len(set(ERRORS_BY_CODE.values())) == 39


@pytest.mark.parametrize("code", ALL_CODES)
def test_explanation_empty_exactly_where_errors_md_says(code: int) -> None:
    if code in EMPTY_EXPLANATION_CODES:
        assert _explanation(code) == ""
        assert _cls(code)().message == f"{_cls(code).name} ({code}): "
    else:
        assert _explanation(code).strip()


def test_three_distinct_connection_error_classes() -> None:
    classes = [GeneralErrors.ConnectionError, SignalingErrors.ConnectionError]
    classes.append(MediaErrors.ConnectionError)
    assert len(set(classes)) == 3
    assert [c.name for c in classes] == ["ConnectionError"] * 3
    assert [c.code for c in classes] == [31005, 53000, 53405]
    assert not issubclass(GeneralErrors.ConnectionError, MediaErrors.ConnectionError)
    assert not issubclass(MediaErrors.ConnectionError, SignalingErrors.ConnectionError)


def test_builtin_connection_error_not_shadowed() -> None:
    assert not hasattr(errors, "ConnectionError")
    for name in errors.__all__:
        assert getattr(errors, name) is not ConnectionError


def test_all_exports_resolve() -> None:
    for name in errors.__all__:
        assert hasattr(errors, name), name


def test_chk_293_lookup_unknown_code_raises() -> None:
    with pytest.raises(InvalidArgumentError, match=r"^Error code 12345 not found$"):
        get_error_by_code(12345)
    assert not has_error_by_code(12345)
    assert not has_error_by_code("31005")
    assert not has_error_by_code(None)
    assert not has_error_by_code(True)


def test_chk_293_lookup_53405_is_media_connection_error() -> None:
    assert get_error_by_code(53405) is MediaErrors.ConnectionError


# --------------------------------------------------------------------------------------
# TwilioError object (checklist 291, 292)
# --------------------------------------------------------------------------------------


def test_chk_291_tested_vector_media_connection_error() -> None:
    err = MediaErrors.ConnectionError("foobar")
    assert err.code == 53405
    assert err.name == "ConnectionError"
    assert err.message == "ConnectionError (53405): foobar"
    assert str(err) == err.message
    assert err.original_error is None


def test_chk_291_from_message() -> None:
    err = GeneralErrors.UnknownError("boom")
    assert err.message == "UnknownError (31000): boom"
    assert err.original_error is None


def test_chk_291_from_original_error_object() -> None:
    cause = RuntimeError("underlying")
    err = GeneralErrors.ConnectionError(cause)
    assert err.message == f"ConnectionError (31005): {GeneralErrors.ConnectionError.explanation}"
    assert err.original_error is cause


def test_chk_291_from_non_exception_object() -> None:
    raw = {"code": 31005, "message": "x"}
    err = SignalingErrors.ConnectionDisconnected(raw)
    assert err.original_error is raw
    assert err.message.endswith(SignalingErrors.ConnectionDisconnected.explanation)


def test_chk_291_from_message_and_original_error() -> None:
    cause = OSError("socket")
    err = ClientErrors.BusyHere("line busy", cause)
    assert err.message == "BusyHere (31486): line busy"
    assert err.original_error is cause


def test_chk_291_from_nothing() -> None:
    err = ClientErrors.TemporarilyUnavailable()
    expected = f"TemporarilyUnavailable (31480): {ClientErrors.TemporarilyUnavailable.explanation}"
    assert err.message == expected
    assert str(err) == expected
    assert err.original_error is None


def test_empty_string_message_is_kept() -> None:
    err = GeneralErrors.TransportError("")
    assert err.message == "TransportError (31009): "


def test_chk_292_isinstance_relations() -> None:
    err = UserMediaErrors.PermissionDeniedError()
    assert isinstance(err, Exception)
    assert isinstance(err, TwilioError)
    assert isinstance(err, UserMediaErrors.PermissionDeniedError)
    assert not isinstance(err, UserMediaErrors.AcquisitionFailedError)
    assert not isinstance(err, ConnectionError)
    with pytest.raises(TwilioError):
        raise err


def test_causes_and_solutions_are_per_instance() -> None:
    a = GeneralErrors.ConnectionError()
    b = GeneralErrors.ConnectionError()
    a.causes.append("mutated")
    a.solutions.append("mutated")
    assert "mutated" not in b.causes
    assert "mutated" not in b.solutions


def test_pickle_and_copy_round_trip() -> None:
    err = GeneralErrors.ConnectionError("msg", {"code": 1})
    for clone in (pickle.loads(pickle.dumps(err)), copy.copy(err), copy.deepcopy(err)):
        assert type(clone) is GeneralErrors.ConnectionError
        assert clone.message == "ConnectionError (31005): msg"
        assert clone.original_error == {"code": 1}
    plain = pickle.loads(pickle.dumps(MediaErrors.ClientLocalDescFailed()))
    assert plain.message == MediaErrors.ClientLocalDescFailed().message


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (InvalidArgumentError, ValueError),
        (InvalidStateError, RuntimeError),
        (NotSupportedError, RuntimeError),
    ],
)
def test_plain_sdk_exceptions(cls: type[Exception], base: type[Exception]) -> None:
    err = cls("bad thing")
    assert isinstance(err, base)
    assert not isinstance(err, TwilioError)
    assert getattr(err, "name") == cls.__name__  # noqa: B009
    assert getattr(err, "message") == "bad thing"  # noqa: B009
    assert str(err) == "bad thing"
    assert not hasattr(err, "code")


# --------------------------------------------------------------------------------------
# Precise lookup (errors.md §3, checklist 295)
# --------------------------------------------------------------------------------------


def test_precise_code_set_matches_errors_md() -> None:
    assert isinstance(PRECISE_SIGNALING_ERROR_CODES, frozenset)
    assert set(PRECISE_SIGNALING_ERROR_CODES) == PRECISE


def test_chk_295_precise_lookup_31480_flag_on() -> None:
    cls = get_precise_signaling_error_by_code(True, 31480)
    assert cls is not None
    assert cls.name == "TemporarilyUnavailable"
    assert cls is ClientErrors.TemporarilyUnavailable


def test_chk_295_precise_lookup_31480_flag_off() -> None:
    assert get_precise_signaling_error_by_code(False, 31480) is None


@pytest.mark.parametrize("flag", FLAGS)
def test_chk_295_precise_lookup_31009_either_flag(flag: bool) -> None:
    assert get_precise_signaling_error_by_code(flag, 31009) is GeneralErrors.TransportError


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("code", ALL_CODES)
def test_precise_lookup_every_catalogued_code(code: int, flag: bool) -> None:
    result = get_precise_signaling_error_by_code(flag, code)
    if code in PRECISE and not flag:
        assert result is None
    else:
        assert result is _cls(code)


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("code", [*UNKNOWN_CODES, None, "31480", "31009", True, 31480.5, [31009]])
def test_precise_lookup_non_number_or_unknown_is_none(code: Any, flag: bool) -> None:
    assert get_precise_signaling_error_by_code(flag, code) is None


# --------------------------------------------------------------------------------------
# Device error from a server `error` frame (errors.md §3, checklist 91-93)
# --------------------------------------------------------------------------------------

DEVICE_AUTH_ROWS = [(31201, 20151, "AuthenticationFailed")]
DEVICE_AUTH_ROWS += [(31204, 20101, "AccessTokenInvalid"), (31205, 20104, "AccessTokenExpired")]


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize(("wire", "code", "name"), DEVICE_AUTH_ROWS)
def test_device_auth_codes_rewritten_regardless_of_flag(
    wire: int, code: int, name: str, flag: bool
) -> None:
    raw = {"code": wire, "message": "server text"}
    err = device_error_from_signaling(raw, flag)
    assert type(err) is getattr(AuthorizationErrors, name)
    assert err.code == code
    assert err.message.startswith(f"{name} ({code}): {_explanation(code)}")  # the JS text
    assert err.cause == f"server text (code {wire})"  # then the server's, naming its code
    assert err.original_error is raw


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("wire", OTHER_PRECISE)
def test_device_other_precise_code(wire: int, flag: bool) -> None:
    raw = {"code": wire, "message": "server text"}
    err = device_error_from_signaling(raw, flag)
    expected = wire if flag else 53000
    assert err.code == expected
    assert type(err) is _cls(expected)
    assert err.message.startswith(f"{_cls(expected).name} ({expected}): {_explanation(expected)}")
    assert err.cause == ("server text" if flag else f"server text (code {wire})")
    assert err.original_error is raw


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("wire", KNOWN_NON_PRECISE)
def test_device_known_non_precise_code(wire: int, flag: bool) -> None:
    raw = {"code": wire, "message": "server text", "retryAfter": 3}
    err = device_error_from_signaling(raw, flag)
    assert type(err) is _cls(wire)
    assert err.code == wire
    assert err.message.startswith(f"{_cls(wire).name} ({wire}): {_explanation(wire)}")
    assert err.message.endswith("server text")
    assert err.original_error is raw


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("wire", UNKNOWN_CODES)
def test_device_unknown_code_is_signaling_connection_error(wire: int, flag: bool) -> None:
    raw = {"code": wire, "message": "overloaded", "retryAfter": 3}
    err = device_error_from_signaling(raw, flag)
    assert type(err) is SignalingErrors.ConnectionError
    assert err.code == 53000
    assert err.message == (
        f"ConnectionError (53000): {_explanation(53000)} Cause: overloaded (code {wire})"
    )
    assert err.original_error is raw


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize(
    "raw",
    [{}, {"message": "no code"}, {"code": None}, {"code": "31005"}, {"code": True}, None, "x", 7],
)
def test_device_malformed_error_object_is_53000(raw: Any, flag: bool) -> None:
    err = device_error_from_signaling(raw, flag)
    assert err.code == 53000
    assert err.original_error is raw


def test_chk_091_device_31480_precise_with_flag_on() -> None:
    err = device_error_from_signaling({"code": 31480, "message": "foobar"}, True)
    assert err.name == "TemporarilyUnavailable"
    assert err.code == 31480


def test_chk_091_device_31480_not_transformed_with_flag_off() -> None:
    err = device_error_from_signaling({"code": 31480, "message": "foobar"}, False)
    assert err.code == 53000
    assert err.name == "ConnectionError"


def test_chk_092_device_31005_yields_31005() -> None:
    err = device_error_from_signaling({"code": 31005}, False)
    assert err.code == 31005
    assert type(err) is GeneralErrors.ConnectionError


def test_chk_093_device_message_is_the_explanation_then_the_server_text_as_cause() -> None:
    """JS prints only the explanation; we keep that prefix and append the server's text."""
    raw = {"code": 31005, "message": "foobar"}
    err = device_error_from_signaling(raw, False)
    explanation = GeneralErrors.ConnectionError.explanation
    assert err.message == f"ConnectionError (31005): {explanation} Cause: foobar"
    assert err.cause == "foobar"
    assert err.original_error is raw


@pytest.mark.parametrize(
    ("raw", "flag", "message"),
    [
        (
            {"code": 31202, "message": "Access token signature validation failed"},
            False,
            "ConnectionError (53000): The signaling connection to the voice service reported "
            "a failure. Cause: Access token signature validation failed (code 31202)",
        ),
        (
            {"code": 31202, "message": "Access token signature validation failed"},
            True,
            "AccessTokenSignatureValidationFailed (31202): The signature on the access token "
            "could not be verified. Cause: Access token signature validation failed",
        ),
        (
            {"code": 31204},
            False,
            "AccessTokenInvalid (20101): The access token was rejected "
            "because it could not be validated. Cause: server error code 31204",
        ),
        (
            {"code": 31204, "message": "x"},
            True,
            "AccessTokenInvalid (20101): The access token "
            "was rejected because it could not be validated. Cause: x (code 31204)",
        ),
        (
            {"code": 31005, "message": "  "},
            False,
            f"ConnectionError (31005): {GeneralErrors.ConnectionError.explanation}",
        ),
    ],
)
def test_device_error_names_the_precise_cause_whatever_the_flag(
    raw: dict[str, Any], flag: bool, message: str
) -> None:
    assert device_error_from_signaling(raw, flag).message == message


def test_server_cause_is_bounded() -> None:
    err = device_error_from_signaling({"code": 31005, "message": "x" * 100_000}, False)
    assert err.cause is not None and len(err.cause) == 500


def test_cause_formatting_and_round_trip() -> None:
    err = GeneralErrors.ConnectionError("no stop", cause="why")
    assert err.message == "ConnectionError (31005): no stop. Cause: why"
    assert GeneralErrors.UnknownError(cause="why").message.endswith(
        "failed in a way no more specific error describes. Cause: why"
    )
    assert AuthorizationErrors.InvalidJWTTokenError(cause="why").message == (
        "InvalidJWTTokenError (31204): why"
    )
    for clone in (pickle.loads(pickle.dumps(err)), copy.copy(err)):
        assert clone.message == err.message
        assert clone.cause == "why"


def test_device_integral_float_code_accepted() -> None:
    assert device_error_from_signaling({"code": 31005.0}, False).code == 31005


# --------------------------------------------------------------------------------------
# Call error from `hangup.error` (errors.md §3, checklist 172-174)
# --------------------------------------------------------------------------------------


def _assert_hangup_wrapper(err: TwilioError, raw: object) -> None:
    assert type(err) is GeneralErrors.ConnectionError
    assert err.code == 31005
    assert err.message == "ConnectionError (31005): Error sent from gateway in HANGUP"
    assert err.original_error is raw


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("wire", sorted(PRECISE))
def test_hangup_precise_code(wire: int, flag: bool) -> None:
    raw = {"code": wire, "message": "foobar"}
    err = call_error_from_hangup(raw, flag)
    if flag:
        assert type(err) is _cls(wire)
        assert err.code == wire
        assert err.message == f"{_cls(wire).name} ({wire}): foobar"
        assert err.original_error is None
    else:
        _assert_hangup_wrapper(err, raw)


HANGUP_AUTH_ROWS = [(31201, "AuthorizationError"), (31204, "InvalidJWTTokenError")]
HANGUP_AUTH_ROWS += [(31205, "JWTTokenExpiredError")]


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize(("wire", "name"), HANGUP_AUTH_ROWS)
def test_hangup_auth_codes_not_rewritten_like_device(wire: int, name: str, flag: bool) -> None:
    raw = {"code": wire}
    err = call_error_from_hangup(raw, flag)
    if flag:
        assert (err.code, err.name) == (wire, name)
        assert type(err) is getattr(AuthorizationErrors, name)
    else:
        _assert_hangup_wrapper(err, raw)


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("wire", KNOWN_NON_PRECISE)
def test_hangup_known_non_precise_code(wire: int, flag: bool) -> None:
    raw = {"code": wire, "message": "from server"}
    err = call_error_from_hangup(raw, flag)
    assert type(err) is _cls(wire)
    assert err.code == wire
    assert err.message == f"{_cls(wire).name} ({wire}): from server"


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("wire", UNKNOWN_CODES)
def test_hangup_unknown_code_is_31005_wrapper(wire: int, flag: bool) -> None:
    raw = {"code": wire, "message": "whatever"}
    _assert_hangup_wrapper(call_error_from_hangup(raw, flag), raw)


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("raw", [{}, {"message": "m"}, {"code": "31480"}, {"code": None}, None])
def test_hangup_malformed_is_31005_wrapper(raw: Any, flag: bool) -> None:
    _assert_hangup_wrapper(call_error_from_hangup(raw, flag), raw)


def test_chk_172_hangup_unknown_code_123() -> None:
    raw = {"code": 123, "message": "x"}
    err = call_error_from_hangup(raw, False)
    assert err.code == 31005
    assert err.original_error is raw


def test_chk_173_hangup_31480_flag_on_with_message() -> None:
    err = call_error_from_hangup({"code": 31480, "message": "foobar"}, True)
    assert err.code == 31480
    assert err.message == "TemporarilyUnavailable (31480): foobar"


@pytest.mark.parametrize("raw", [{"code": 31480}, {"code": 31480, "message": 42}])
def test_chk_173_hangup_31480_flag_on_without_string_message(raw: dict[str, Any]) -> None:
    err = call_error_from_hangup(raw, True)
    assert err.code == 31480
    expected = f"TemporarilyUnavailable (31480): {ClientErrors.TemporarilyUnavailable.explanation}"
    assert err.message == expected


def test_chk_174_hangup_31480_flag_off() -> None:
    raw = {"code": 31480, "message": "foobar"}
    err = call_error_from_hangup(raw, False)
    assert err.code == 31005
    assert err.message == "ConnectionError (31005): Error sent from gateway in HANGUP"
    assert err.original_error is raw


# --------------------------------------------------------------------------------------
# Call error from a message-scoped `error` (checklist 183)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("wire", KNOWN_NON_PRECISE)
def test_message_error_known_code_gives_its_class(wire: int) -> None:
    raw = {"code": wire, "message": "server says"}
    err = call_error_from_message_error(raw)
    assert type(err) is _cls(wire)
    assert err.message == f"{_cls(wire).name} ({wire}): {_explanation(wire)}"
    assert err.original_error is raw


def test_chk_183_message_error_31210() -> None:
    raw = {"code": 31210, "message": "bad type"}
    err = call_error_from_message_error(raw)
    assert err.code == 31210
    assert type(err) is AuthorizationErrors.CallMessageEventTypeInvalidError


def test_chk_183_message_error_unknown_code_111_is_unknown_error() -> None:
    raw = {"code": 111, "message": "mystery"}
    err = call_error_from_message_error(raw)
    assert type(err) is GeneralErrors.UnknownError
    assert err.code == 31000
    assert err.message == "UnknownError (31000): mystery"
    assert err.original_error is raw


@pytest.mark.parametrize("raw", [{"code": 111}, {"code": 111, "message": 5}, {}, None])
def test_message_error_unknown_without_string_message(raw: Any) -> None:
    err = call_error_from_message_error(raw)
    assert err.code == 31000
    assert err.message == f"UnknownError (31000): {_explanation(31000)}"
    assert err.original_error is raw


@pytest.mark.parametrize("wire", sorted(PRECISE))
def test_message_error_precise_code_gated_like_js(wire: int) -> None:
    raw = {"code": wire, "message": "m"}
    off = call_error_from_message_error(raw)
    assert off.code == 31000
    assert off.message == "UnknownError (31000): m"
    on = call_error_from_message_error(raw, enable_precision=True)
    assert type(on) is _cls(wire)
    assert on.original_error is raw

"""The SDK's error catalogue: ``TwilioError``, its 39 coded classes and the wire mappings.

What: a port of the JS SDK 2.x ``lib/twilio/errors`` module. Every error an application
can observe through a Device or Call ``error`` event (or a ``reconnecting`` argument) is
an instance of one of the coded classes here, grouped in the same namespaces the JS SDK
uses (``GeneralErrors.ConnectionError``, ``MediaErrors.ConnectionError`` …). The plain,
code-less exceptions raised on API misuse (``InvalidArgumentError``, ``InvalidStateError``,
``NotSupportedError``) live here too.

Why: applications written against the JS SDK switch on ``error.code`` and ``error.name``
and print ``error.message``; keeping codes, names and the ``"<name> (<code>): <text>"``
message format identical lets them port unchanged. The description/explanation texts are
our own paraphrases, not Twilio's.

The module also holds the pure functions that turn a raw server error object (the
``error`` member of an ``error`` or ``hangup`` frame) into a ``TwilioError``, so that the
Device and the Call share one definition of the mapping rules, including the
``enableImprovedSignalingErrorPrecision`` gating (``PRECISE_SIGNALING_ERROR_CODES``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from softphone.signaling import codes

__all__ = [
    "ERRORS_BY_CODE",
    "HANGUP_ERROR_MESSAGE",
    "PRECISE_SIGNALING_ERROR_CODES",
    "AccessTokenExpired",
    "AccessTokenInvalid",
    "AccessTokenSignatureValidationFailed",
    "AcquisitionFailedError",
    "ApplicationNotFoundError",
    "AuthenticationFailed",
    "AuthorizationError",
    "AuthorizationErrors",
    "AuthorizationTokenMissingError",
    "BadRequest",
    "BusyHere",
    "CallCancelledError",
    "CallMessageEventTypeInvalidError",
    "ClientErrors",
    "ClientLocalDescFailed",
    "ClientRemoteDescFailed",
    "ConnectionDeclinedError",
    "ConnectionDisconnected",
    "ConnectionTimeoutError",
    "Decline",
    "GeneralConnectionError",
    "GeneralErrors",
    "InvalidArgumentError",
    "InvalidBridgeTokenError",
    "InvalidClientNameError",
    "InvalidJWTTokenError",
    "InvalidStateError",
    "JWTTokenExpirationTooLongError",
    "JWTTokenExpiredError",
    "MalformedRequestError",
    "MalformedRequestErrors",
    "MaxParameterLengthExceededError",
    "MediaConnectionError",
    "MediaErrors",
    "MissingParameterArrayError",
    "NoValidAccountError",
    "NotFound",
    "NotSupportedError",
    "PayloadSizeExceededError",
    "PermissionDeniedError",
    "RateExceededError",
    "ReconnectAttemptError",
    "ReconnectParameterInvalidError",
    "SIPServerErrors",
    "SignalingConnectionError",
    "SignalingErrors",
    "SignatureValidationErrors",
    "TemporarilyUnavailable",
    "TransportError",
    "TwilioError",
    "UnknownError",
    "UserMediaErrors",
    "call_error_from_hangup",
    "call_error_from_message_error",
    "device_error_from_signaling",
    "get_error_by_code",
    "get_precise_signaling_error_by_code",
    "has_error_by_code",
]


# --------------------------------------------------------------------------------------
# Plain (code-less) SDK exceptions
# --------------------------------------------------------------------------------------


class _NamedError(Exception):
    """Mixin giving the plain SDK exceptions the JS ``name`` and ``message`` fields.

    The JS versions are bare ``Error`` subclasses; apps read ``err.name`` and
    ``err.message``, so both are available here as well.
    """

    name: ClassVar[str] = "Error"

    @property
    def message(self) -> str:
        """The text the exception was raised with (empty when none)."""
        return str(self.args[0]) if self.args else ""


class InvalidArgumentError(_NamedError, ValueError):
    """An API was called with an argument of the wrong type or value.

    A ``ValueError`` so that generic Python code catching bad arguments also catches it.
    """

    name: ClassVar[str] = "InvalidArgumentError"


class InvalidStateError(_NamedError, RuntimeError):
    """An API was called while the object was in a state that does not allow it.

    Example: ``Device.connect()`` after ``destroy()``, or while a call is already active.
    """

    name: ClassVar[str] = "InvalidStateError"


class NotSupportedError(_NamedError, RuntimeError):
    """The requested feature is unavailable in this environment or configuration."""

    name: ClassVar[str] = "NotSupportedError"


# --------------------------------------------------------------------------------------
# TwilioError base
# --------------------------------------------------------------------------------------


class TwilioError(Exception):
    """Base of every coded SDK error (the JS ``TwilioError``).

    Each subclass fixes ``code``, ``name``, ``description``, ``explanation``, and the
    default ``causes``/``solutions``. Instances add ``message`` and ``original_error``.

    Construction forms (as in JS):

    * ``Cls()`` - message text is the class explanation;
    * ``Cls("text")`` - message text is ``"text"``;
    * ``Cls(obj)`` with any non-``str`` object - ``obj`` becomes ``original_error`` and
      the text falls back to the explanation;
    * ``Cls("text", obj)`` - both.

    ``message`` (and ``str(err)``) is ``"<name> (<code>): <text>"``. A ``cause`` (Python
    only, keyword or third argument) says in plain words what actually went wrong (the
    server's own text, a refused port, a failed certificate check) and is appended:
    ``"<name> (<code>): <text> Cause: <cause>"``, so whoever prints the error sees it,
    not only whoever digs into ``original_error``.
    """

    code: int = 0
    """The numeric error code."""
    name: str = "TwilioError"
    """The JS class name without namespace, e.g. ``"ConnectionError"``."""
    description: str = ""
    """A short title for the error."""
    explanation: str = ""
    """A one-sentence explanation; the message text when none is given."""

    _causes: ClassVar[tuple[str, ...]] = ()
    _solutions: ClassVar[tuple[str, ...]] = ()

    causes: list[str]
    """Possible causes (a fresh list per instance)."""
    solutions: list[str]
    """Possible fixes (a fresh list per instance)."""
    message: str
    """``"<name> (<code>): <text>"``, plus ``" Cause: <cause>"`` when there is one."""
    original_error: object | None
    """The underlying error or raw server object, if one was given."""
    cause: str | None
    """What actually went wrong, in plain words (None when nothing more is known)."""

    def __init__(
        self,
        message_or_error: object | None = None,
        original_error: object | None = None,
        cause: str | None = None,
    ) -> None:
        if isinstance(message_or_error, str):
            text = message_or_error
            self._given_message: str | None = message_or_error
        else:
            text = self.explanation
            self._given_message = None
            if message_or_error is not None:
                original_error = message_or_error
        self.causes = list(self._causes)
        self.solutions = list(self._solutions)
        self.cause = cause or None
        self.message = f"{self.name} ({self.code}): {_with_cause(text, self.cause)}"
        self.original_error = original_error
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the constructor arguments so pickling/copying does not re-prefix
        # the already formatted message.
        return (type(self), (self._given_message, self.original_error, self.cause))


def _with_cause(text: str, cause: str | None) -> str:
    """``text`` followed by ``Cause: cause`` (a full stop in between if ``text`` lacks one)."""
    if not cause:
        return text
    if not text:
        return cause
    stop = "" if text.rstrip().endswith((".", "!", "?")) else "."
    return f"{text.rstrip()}{stop} Cause: {cause}"


# --------------------------------------------------------------------------------------
# AuthorizationErrors
# --------------------------------------------------------------------------------------


class AccessTokenInvalid(TwilioError):
    """20101: the access token could not be validated (Device maps wire 31204 here)."""

    code = codes.ACCESS_TOKEN_INVALID
    name = "AccessTokenInvalid"
    description = "Invalid access token"
    explanation = "The access token was rejected because it could not be validated."
    _causes = ("The token is malformed or was signed with the wrong secret.",)
    _solutions = ("Mint a fresh token with valid credentials and call update_token().",)


class AccessTokenExpired(TwilioError):
    """20104: the token has expired (Device maps wire 31205 here; refresh stops)."""

    code = codes.ACCESS_TOKEN_EXPIRED
    name = "AccessTokenExpired"
    description = "Access token expired"
    explanation = "The access token is past its expiry time or its expiry is not usable."
    _causes = ("The token lifetime elapsed before it was refreshed.",)
    _solutions = ("Refresh the token before it expires (see the tokenWillExpire event).",)


class AuthenticationFailed(TwilioError):
    """20151: authentication with the token failed (Device maps wire 31201 here)."""

    code = codes.AUTHENTICATION_FAILED
    name = "AuthenticationFailed"
    description = "Authentication failed"
    explanation = "The service refused to authenticate the client with the given token."


class AuthorizationError(TwilioError):
    """31201 (precise): the request needed an authorization that was refused."""

    code = codes.AUTHORIZATION_ERROR
    name = "AuthorizationError"
    description = "Authorization refused"
    explanation = "The request needed an authorization that the service did not grant."


class NoValidAccountError(TwilioError):
    """31203 (precise): the token does not belong to a usable account."""

    code = codes.NO_VALID_ACCOUNT
    name = "NoValidAccountError"
    description = "No usable account"
    explanation = ""


class InvalidJWTTokenError(TwilioError):
    """31204 (precise): the JWT is invalid."""

    code = codes.INVALID_JWT_TOKEN
    name = "InvalidJWTTokenError"
    description = "Invalid JWT"
    explanation = ""


class JWTTokenExpiredError(TwilioError):
    """31205 (precise): the JWT has expired."""

    code = codes.TOKEN_EXPIRED
    name = "JWTTokenExpiredError"
    description = "JWT expired"
    explanation = ""


class RateExceededError(TwilioError):
    """31206: requests arrived faster than allowed."""

    code = codes.RATE_EXCEEDED
    name = "RateExceededError"
    description = "Request rate too high"
    explanation = "More requests were made than the service allows in this time window."


class JWTTokenExpirationTooLongError(TwilioError):
    """31207 (precise): the token's lifetime is longer than the permitted maximum."""

    code = codes.TOKEN_EXPIRATION_TOO_LONG
    name = "JWTTokenExpirationTooLongError"
    description = "Token lifetime too long"
    explanation = ""


class ReconnectAttemptError(TwilioError):
    """31209: the server refused this call-reconnect attempt."""

    code = codes.RECONNECT_ATTEMPT_ERROR
    name = "ReconnectAttemptError"
    description = "Reconnect refused"
    explanation = ""


class CallMessageEventTypeInvalidError(TwilioError):
    """31210: ``send_message`` used a message type the service does not accept."""

    code = codes.CALL_MESSAGE_EVENT_TYPE_INVALID
    name = "CallMessageEventTypeInvalidError"
    description = "Unsupported call message type"
    explanation = "The message type passed to send_message is not one the service supports."


class PayloadSizeExceededError(TwilioError):
    """31212: the call message payload is too large."""

    code = codes.PAYLOAD_SIZE_EXCEEDED
    name = "PayloadSizeExceededError"
    description = "Call message too large"
    explanation = "The call message content exceeds the size the service accepts."


# --------------------------------------------------------------------------------------
# GeneralErrors
# --------------------------------------------------------------------------------------


class UnknownError(TwilioError):
    """31000: a failure with no more specific class (socket errors, unknown codes …)."""

    code = codes.UNKNOWN_ERROR
    name = "UnknownError"
    description = "Unknown error"
    explanation = "Something failed in a way no more specific error describes."


class ApplicationNotFoundError(TwilioError):
    """31001 (precise): the TwiML application does not exist."""

    code = codes.APPLICATION_NOT_FOUND
    name = "ApplicationNotFoundError"
    description = "Application not found"
    explanation = ""


class ConnectionDeclinedError(TwilioError):
    """31002 (precise): the call was declined."""

    code = codes.CONNECTION_DECLINED
    name = "ConnectionDeclinedError"
    description = "Call declined"
    explanation = ""


class ConnectionTimeoutError(TwilioError):
    """31003 (precise): the server did not respond in time."""

    code = codes.CONNECTION_TIMEOUT
    name = "ConnectionTimeoutError"
    description = "Connection timed out"
    explanation = "The service did not respond within the allowed time."


class GeneralConnectionError(TwilioError):
    """31005 (``GeneralErrors.ConnectionError``): the call's or socket's connection failed.

    Also the wrapper for every ``hangup.error`` with no precise class.
    """

    code = codes.CONNECTION_ERROR
    name = "ConnectionError"
    description = "Connection failure"
    explanation = "The connection to the voice service failed or was lost."
    _causes = ("The network dropped or the service closed the connection abnormally.",)
    _solutions = ("Check network connectivity and retry.",)


class CallCancelledError(TwilioError):
    """31008: the call (or preflight test) was stopped before it completed."""

    code = codes.CALL_CANCELLED
    name = "CallCancelledError"
    description = "Call cancelled"
    explanation = "The call or test was stopped before it could complete."


class TransportError(TwilioError):
    """31009: a signaling message could not be sent because no socket was open."""

    code = codes.TRANSPORT_ERROR
    name = "TransportError"
    description = "Signaling transport unavailable"
    explanation = "No open signaling connection was available to send the message."


# --------------------------------------------------------------------------------------
# MalformedRequestErrors
# --------------------------------------------------------------------------------------


class MalformedRequestError(TwilioError):
    """31100: the request could not be parsed by the server."""

    code = codes.MALFORMED_REQUEST
    name = "MalformedRequestError"
    description = "Malformed request"
    explanation = "The service could not make sense of the request it received."


class MissingParameterArrayError(TwilioError):
    """31101 (precise): the required parameter list was absent."""

    code = codes.MISSING_PARAMETER_ARRAY
    name = "MissingParameterArrayError"
    description = "Parameter list missing"
    explanation = ""


class AuthorizationTokenMissingError(TwilioError):
    """31102 (precise): the request carried no token."""

    code = codes.AUTHORIZATION_TOKEN_MISSING
    name = "AuthorizationTokenMissingError"
    description = "Token missing"
    explanation = ""


class MaxParameterLengthExceededError(TwilioError):
    """31103 (precise): the custom call parameters are too long."""

    code = codes.MAX_PARAMETER_LENGTH_EXCEEDED
    name = "MaxParameterLengthExceededError"
    description = "Parameters too long"
    explanation = "The custom call parameters are larger than the service permits."


class InvalidBridgeTokenError(TwilioError):
    """31104 (precise): the bridge token was invalid."""

    code = codes.INVALID_BRIDGE_TOKEN
    name = "InvalidBridgeTokenError"
    description = "Invalid bridge token"
    explanation = ""


class InvalidClientNameError(TwilioError):
    """31105 (precise): the client identity is malformed or too long."""

    code = codes.INVALID_CLIENT_NAME
    name = "InvalidClientNameError"
    description = "Invalid client identity"
    explanation = "The client identity contains disallowed characters or is too long."


class ReconnectParameterInvalidError(TwilioError):
    """31107 (precise): the reconnect token sent with a reconnect invite was invalid."""

    code = codes.RECONNECT_PARAMETER_INVALID
    name = "ReconnectParameterInvalidError"
    description = "Invalid reconnect token"
    explanation = ""


# --------------------------------------------------------------------------------------
# SignatureValidationErrors
# --------------------------------------------------------------------------------------


class AccessTokenSignatureValidationFailed(TwilioError):
    """31202 (precise): the token's signature did not verify."""

    code = codes.SIGNATURE_VALIDATION_FAILED
    name = "AccessTokenSignatureValidationFailed"
    description = "Token signature invalid"
    explanation = "The signature on the access token could not be verified."


# --------------------------------------------------------------------------------------
# ClientErrors
# --------------------------------------------------------------------------------------


class BadRequest(TwilioError):
    """31400: a malformed request (client-side: an invite lacking callsid or sdp)."""

    code = codes.BAD_REQUEST
    name = "BadRequest"
    description = "Bad request"
    explanation = "The request was malformed and could not be handled."


class NotFound(TwilioError):
    """31404 (precise): the call target was not found."""

    code = codes.NOT_FOUND
    name = "NotFound"
    description = "Not found"
    explanation = "The requested call target could not be found."


class TemporarilyUnavailable(TwilioError):
    """31480 (precise): the callee cannot be reached right now."""

    code = codes.TEMPORARILY_UNAVAILABLE
    name = "TemporarilyUnavailable"
    description = "Temporarily unavailable"
    explanation = "The called party cannot be reached at the moment."


class BusyHere(TwilioError):
    """31486 (precise): the callee is busy."""

    code = codes.BUSY_HERE
    name = "BusyHere"
    description = "Busy"
    explanation = "The called party is busy."


# --------------------------------------------------------------------------------------
# UserMediaErrors
# --------------------------------------------------------------------------------------


class PermissionDeniedError(TwilioError):
    """31401: microphone access was refused."""

    code = codes.PERMISSION_DENIED
    name = "PermissionDeniedError"
    description = "Microphone access refused"
    explanation = "Permission to use the microphone was refused."
    _solutions = ("Grant the application access to the audio input device.",)


class AcquisitionFailedError(TwilioError):
    """31402: microphone access was allowed but the device could not be opened."""

    code = codes.ACQUISITION_FAILED
    name = "AcquisitionFailedError"
    description = "Microphone could not be opened"
    explanation = "Microphone access was allowed but the input device could not be opened."
    _causes = ("The device is in use elsewhere, missing, or failed to start.",)


# --------------------------------------------------------------------------------------
# SIPServerErrors
# --------------------------------------------------------------------------------------


class Decline(TwilioError):
    """31603 (precise): the callee declined the call."""

    code = codes.DECLINE
    name = "Decline"
    description = "Declined"
    explanation = "The called party declined the call."


# --------------------------------------------------------------------------------------
# SignalingErrors
# --------------------------------------------------------------------------------------


class SignalingConnectionError(TwilioError):
    """53000 (``SignalingErrors.ConnectionError``): generic signaling failure.

    The default class for every server ``error`` frame whose code has no class of its
    own (or is a precise code while the precision flag is off).
    """

    code = codes.SIGNALING_CONNECTION_ERROR
    name = "ConnectionError"
    description = "Signaling failure"
    explanation = "The signaling connection to the voice service reported a failure."


class ConnectionDisconnected(TwilioError):
    """53001: the signaling socket dropped."""

    code = codes.SIGNALING_CONNECTION_DISCONNECTED
    name = "ConnectionDisconnected"
    description = "Signaling disconnected"
    explanation = "The signaling connection was lost."


# --------------------------------------------------------------------------------------
# MediaErrors
# --------------------------------------------------------------------------------------


class ClientLocalDescFailed(TwilioError):
    """53400: the local SDP could not be created or applied."""

    code = codes.CLIENT_LOCAL_DESC_FAILED
    name = "ClientLocalDescFailed"
    description = "Local description failed"
    explanation = "The local session description could not be created or applied."


class ClientRemoteDescFailed(TwilioError):
    """53402: the remote SDP could not be applied."""

    code = codes.CLIENT_REMOTE_DESC_FAILED
    name = "ClientRemoteDescFailed"
    description = "Remote description failed"
    explanation = "The remote session description could not be applied."


class MediaConnectionError(TwilioError):
    """53405 (``MediaErrors.ConnectionError``): the ICE/DTLS media path failed."""

    code = codes.MEDIA_CONNECTION_FAILED
    name = "ConnectionError"
    description = "Media connection failure"
    explanation = "The media connection could not be established or was lost."
    _causes = ("No usable network path between the peers, or it broke mid-call.",)


# --------------------------------------------------------------------------------------
# Namespaces (the JS grouping; plain holders of the classes above)
# --------------------------------------------------------------------------------------


class AuthorizationErrors:
    """Token and authorization failures (2xxxx codes and most of 312xx)."""

    AccessTokenInvalid = AccessTokenInvalid
    AccessTokenExpired = AccessTokenExpired
    AuthenticationFailed = AuthenticationFailed
    AuthorizationError = AuthorizationError
    NoValidAccountError = NoValidAccountError
    InvalidJWTTokenError = InvalidJWTTokenError
    JWTTokenExpiredError = JWTTokenExpiredError
    RateExceededError = RateExceededError
    JWTTokenExpirationTooLongError = JWTTokenExpirationTooLongError
    ReconnectAttemptError = ReconnectAttemptError
    CallMessageEventTypeInvalidError = CallMessageEventTypeInvalidError
    PayloadSizeExceededError = PayloadSizeExceededError


class GeneralErrors:
    """General call and connection failures (310xx codes)."""

    UnknownError = UnknownError
    ApplicationNotFoundError = ApplicationNotFoundError
    ConnectionDeclinedError = ConnectionDeclinedError
    ConnectionTimeoutError = ConnectionTimeoutError
    ConnectionError = GeneralConnectionError
    CallCancelledError = CallCancelledError
    TransportError = TransportError


class MalformedRequestErrors:
    """Requests the server could not accept as formed (311xx codes)."""

    MalformedRequestError = MalformedRequestError
    MissingParameterArrayError = MissingParameterArrayError
    AuthorizationTokenMissingError = AuthorizationTokenMissingError
    MaxParameterLengthExceededError = MaxParameterLengthExceededError
    InvalidBridgeTokenError = InvalidBridgeTokenError
    InvalidClientNameError = InvalidClientNameError
    ReconnectParameterInvalidError = ReconnectParameterInvalidError


class SignatureValidationErrors:
    """Token signature failures (31202)."""

    AccessTokenSignatureValidationFailed = AccessTokenSignatureValidationFailed


class ClientErrors:
    """SIP-4xx-style outcomes of a call attempt (314xx codes)."""

    BadRequest = BadRequest
    NotFound = NotFound
    TemporarilyUnavailable = TemporarilyUnavailable
    BusyHere = BusyHere


class UserMediaErrors:
    """Microphone acquisition failures (31401, 31402)."""

    PermissionDeniedError = PermissionDeniedError
    AcquisitionFailedError = AcquisitionFailedError


class SIPServerErrors:
    """SIP-6xx-style outcomes (31603)."""

    Decline = Decline


class SignalingErrors:
    """Signaling-channel failures (530xx codes)."""

    ConnectionError = SignalingConnectionError
    ConnectionDisconnected = ConnectionDisconnected


class MediaErrors:
    """Media (SDP/ICE/DTLS) failures (534xx codes)."""

    ClientLocalDescFailed = ClientLocalDescFailed
    ClientRemoteDescFailed = ClientRemoteDescFailed
    ConnectionError = MediaConnectionError


# --------------------------------------------------------------------------------------
# Lookups
# --------------------------------------------------------------------------------------

_ALL_CLASSES: tuple[type[TwilioError], ...] = (
    AccessTokenInvalid,
    AccessTokenExpired,
    AuthenticationFailed,
    UnknownError,
    ApplicationNotFoundError,
    ConnectionDeclinedError,
    ConnectionTimeoutError,
    GeneralConnectionError,
    CallCancelledError,
    TransportError,
    MalformedRequestError,
    MissingParameterArrayError,
    AuthorizationTokenMissingError,
    MaxParameterLengthExceededError,
    InvalidBridgeTokenError,
    InvalidClientNameError,
    ReconnectParameterInvalidError,
    AuthorizationError,
    AccessTokenSignatureValidationFailed,
    NoValidAccountError,
    InvalidJWTTokenError,
    JWTTokenExpiredError,
    RateExceededError,
    JWTTokenExpirationTooLongError,
    ReconnectAttemptError,
    CallMessageEventTypeInvalidError,
    PayloadSizeExceededError,
    BadRequest,
    PermissionDeniedError,
    AcquisitionFailedError,
    NotFound,
    TemporarilyUnavailable,
    BusyHere,
    Decline,
    SignalingConnectionError,
    ConnectionDisconnected,
    ClientLocalDescFailed,
    ClientRemoteDescFailed,
    MediaConnectionError,
)

ERRORS_BY_CODE: dict[int, type[TwilioError]] = {cls.code: cls for cls in _ALL_CLASSES}
"""Every coded class, keyed by its code (the JS ``errorsByCode``)."""

if len(ERRORS_BY_CODE) != len(_ALL_CLASSES):  # pragma: no cover - catalogue sanity
    raise RuntimeError("duplicate error code in the catalogue")

PRECISE_SIGNALING_ERROR_CODES: frozenset[int] = frozenset(
    {
        codes.APPLICATION_NOT_FOUND,
        codes.CONNECTION_DECLINED,
        codes.CONNECTION_TIMEOUT,
        codes.MISSING_PARAMETER_ARRAY,
        codes.AUTHORIZATION_TOKEN_MISSING,
        codes.MAX_PARAMETER_LENGTH_EXCEEDED,
        codes.INVALID_BRIDGE_TOKEN,
        codes.INVALID_CLIENT_NAME,
        codes.RECONNECT_PARAMETER_INVALID,
        codes.AUTHORIZATION_ERROR,
        codes.SIGNATURE_VALIDATION_FAILED,
        codes.NO_VALID_ACCOUNT,
        codes.INVALID_JWT_TOKEN,
        codes.TOKEN_EXPIRED,
        codes.TOKEN_EXPIRATION_TOO_LONG,
        codes.NOT_FOUND,
        codes.TEMPORARILY_UNAVAILABLE,
        codes.BUSY_HERE,
        codes.DECLINE,
    }
)
"""Codes surfaced as their own class only when improved precision is enabled."""


def _as_code(value: object) -> int | None:
    """Return ``value`` as an integer error code, or None if it is not a number.

    Mirrors JS ``typeof code === 'number'``: booleans and strings are not codes; an
    integral float (``31005.0``) is accepted since JSON does not distinguish them.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def has_error_by_code(code: object) -> bool:
    """Whether ``code`` is one of the 39 catalogued codes."""
    as_int = _as_code(code)
    return as_int is not None and as_int in ERRORS_BY_CODE


def get_error_by_code(code: object) -> type[TwilioError]:
    """Return the class for ``code``.

    Raises:
        InvalidArgumentError: ``"Error code <code> not found"`` for an unknown code.
    """
    as_int = _as_code(code)
    if as_int is None or as_int not in ERRORS_BY_CODE:
        raise InvalidArgumentError(f"Error code {code} not found")
    return ERRORS_BY_CODE[as_int]


def get_precise_signaling_error_by_code(
    enable_precision: bool, code: object
) -> type[TwilioError] | None:
    """The class a server-sent ``code`` may surface as, or None.

    None when ``code`` is not a number or not catalogued, or when it is in
    ``PRECISE_SIGNALING_ERROR_CODES`` and ``enable_precision`` is false.
    """
    as_int = _as_code(code)
    if as_int is None or as_int not in ERRORS_BY_CODE:
        return None
    if not enable_precision and as_int in PRECISE_SIGNALING_ERROR_CODES:
        return None
    return ERRORS_BY_CODE[as_int]


# --------------------------------------------------------------------------------------
# Wire mappings shared by Device and Call
# --------------------------------------------------------------------------------------

_DEVICE_AUTH_OVERRIDES: dict[int, type[TwilioError]] = {
    codes.AUTHORIZATION_ERROR: AuthenticationFailed,
    codes.INVALID_JWT_TOKEN: AccessTokenInvalid,
    codes.TOKEN_EXPIRED: AccessTokenExpired,
}
"""Wire codes the Device always rewrites, whatever the precision flag says."""

_MAX_CAUSE_CHARS = 500
"""Longest server text kept as a cause (a hostile server could send megabytes)."""

HANGUP_ERROR_MESSAGE = "Error sent from gateway in HANGUP"
"""Message text of the 31005 wrapper built for a ``hangup.error`` with no precise class."""


def _field(error_obj: object, key: str) -> object:
    """``error_obj[key]`` if ``error_obj`` is a mapping holding it, else None."""
    if isinstance(error_obj, Mapping):
        value: object = error_obj.get(key)
        return value
    return None


def device_error_from_signaling(error_obj: object, enable_precision: bool) -> TwilioError:
    """The Device ``error`` for a server ``error`` frame's ``error`` object.

    31201/31204/31205 become ``AuthenticationFailed`` (20151) / ``AccessTokenInvalid``
    (20101) / ``AccessTokenExpired`` (20104) regardless of the flag; otherwise the
    precise lookup decides, falling back to ``SignalingErrors.ConnectionError`` (53000).
    The message text is the class explanation, as in JS, followed by the server's own
    ``message`` as the :attr:`~TwilioError.cause` (and the server's code when the class
    hides it), so a 53000 still names the precise failure with the precision flag off.
    ``original_error`` is ``error_obj``. Stopping the registration refresh on 31205 is
    the caller's job.
    """
    code = _as_code(_field(error_obj, "code"))
    cls: type[TwilioError] | None = None
    if code is not None:
        cls = _DEVICE_AUTH_OVERRIDES.get(code)
    if cls is None:
        cls = get_precise_signaling_error_by_code(enable_precision, code)
    if cls is None:
        cls = SignalingConnectionError
    return cls(None, error_obj, _server_cause(error_obj, code, cls.code))


def _server_cause(error_obj: object, code: int | None, shown_code: int) -> str | None:
    """The server's ``message`` (bounded in length), tagged with its code if not shown."""
    message = _field(error_obj, "message")
    text = message.strip()[:_MAX_CAUSE_CHARS] if isinstance(message, str) else ""
    if code is None or code == shown_code:
        return text or None
    return f"{text} (code {code})" if text else f"server error code {code}"


def call_error_from_hangup(error_obj: object, enable_precision: bool) -> TwilioError:
    """The Call ``error`` for the ``error`` object of a server ``hangup`` frame.

    If the precise lookup yields a class, it is built with the server's ``message``
    when that is a string (else the explanation) and no ``original_error``. Otherwise a
    ``GeneralErrors.ConnectionError`` (31005) with text ``"Error sent from gateway in
    HANGUP"`` wrapping ``error_obj`` as ``original_error``.
    """
    cls = get_precise_signaling_error_by_code(enable_precision, _field(error_obj, "code"))
    if cls is not None:
        message = _field(error_obj, "message")
        return cls(message if isinstance(message, str) else None)
    return GeneralConnectionError(HANGUP_ERROR_MESSAGE, error_obj)


def call_error_from_message_error(
    error_obj: object, *, enable_precision: bool = False
) -> TwilioError:
    """The Call ``error`` for a message-scoped server ``error`` (one with ``voiceeventsid``).

    A code the precise lookup accepts gives its class, with the explanation as text and
    ``error_obj`` as ``original_error``; anything else gives ``GeneralErrors.UnknownError``
    (31000) carrying the server's ``message`` (if a string) and ``error_obj``. The JS SDK
    gates this lookup with the precision flag too; the codes actually sent here (31209,
    31210, 31212) are not precise, so the flag only matters for odd servers.
    """
    cls = get_precise_signaling_error_by_code(enable_precision, _field(error_obj, "code"))
    if cls is not None:
        return cls(None, error_obj)
    message = _field(error_obj, "message")
    return UnknownError(message if isinstance(message, str) else None, error_obj)

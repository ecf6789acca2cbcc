"""Every numeric error code of the protocol, in one place for the SDK and the gateway.

What: the codes of the JS SDK 2.x error catalogue (``TwilioError.code``) and the REST
API codes the gateway answers with, as named constants. The names follow the JS class
names (``APPLICATION_NOT_FOUND`` is ``ApplicationNotFoundError``, 31001), shortened
where the class name only repeats "Error".

Why: the gateway puts these numbers in ``error`` and ``hangup`` frames, the client
reads them back and maps them to ``TwilioError`` classes (:mod:`softphone.core.errors`),
the transport and stream report local failures with them. One definition means the two
sides cannot drift apart and each number is spelled once.

Where each code travels:

* signaling codes a server sends in ``error.code`` of an ``error`` or ``hangup`` frame
  (310xx-316xx, and 53405 for a call whose media never connected);
* codes the SDK raises itself and never reads from the wire (20101, 20104, 20151,
  31008, 31401, 31402, 53000-53402); the transport and the stream also report their
  local failures (31000, 31005, 31009) in the ``{"code", "message"}`` shape of a frame;
* REST API codes (2xxxx) in the JSON body of the gateway's HTTP error responses.
"""

from __future__ import annotations

from typing import Final

# -- SDK-side codes for token failures (the Device's rewrite of 31201/31204/31205) ------

ACCESS_TOKEN_INVALID: Final = 20101
"""AccessTokenInvalid: the token could not be validated (the Device's form of 31204)."""
ACCESS_TOKEN_EXPIRED: Final = 20104
"""AccessTokenExpired: the token has expired (the Device's form of 31205)."""
AUTHENTICATION_FAILED: Final = 20151
"""AuthenticationFailed: authenticating with the token failed (the Device's form of 31201)."""

# -- General (310xx) -------------------------------------------------------------------

UNKNOWN_ERROR: Final = 31000
"""UnknownError: a failure no other code describes (socket errors, internal bugs)."""
APPLICATION_NOT_FOUND: Final = 31001
"""ApplicationNotFoundError: the token's TwiML application does not exist."""
CONNECTION_DECLINED: Final = 31002
"""ConnectionDeclinedError: the call was declined."""
CONNECTION_TIMEOUT: Final = 31003
"""ConnectionTimeoutError: the server did not answer in time (also the legacy media code)."""
CONNECTION_ERROR: Final = 31005
"""GeneralErrors.ConnectionError: the signaling socket or the call's connection failed."""
CALL_CANCELLED: Final = 31008
"""CallCancelledError: the call or preflight test was stopped before it completed."""
TRANSPORT_ERROR: Final = 31009
"""TransportError: a message could not be sent because no socket was open."""

# -- Malformed requests (311xx) --------------------------------------------------------

MALFORMED_REQUEST: Final = 31100
"""MalformedRequestError: the server could not parse the request."""
MISSING_PARAMETER_ARRAY: Final = 31101
"""MissingParameterArrayError: the required parameter list was absent."""
AUTHORIZATION_TOKEN_MISSING: Final = 31102
"""AuthorizationTokenMissingError: the request carried no access token."""
MAX_PARAMETER_LENGTH_EXCEEDED: Final = 31103
"""MaxParameterLengthExceededError: the custom call parameters exceed 800 bytes."""
INVALID_BRIDGE_TOKEN: Final = 31104
"""InvalidBridgeTokenError: the bridge token was invalid."""
INVALID_CLIENT_NAME: Final = 31105
"""InvalidClientNameError: the identity is empty, too long or has forbidden characters."""
RECONNECT_PARAMETER_INVALID: Final = 31107
"""ReconnectParameterInvalidError: the reconnect token of a reconnect invite is invalid."""

# -- Authorization (312xx) -------------------------------------------------------------

AUTHORIZATION_ERROR: Final = 31201
"""AuthorizationError: the request needs an authorization the token does not give."""
SIGNATURE_VALIDATION_FAILED: Final = 31202
"""AccessTokenSignatureValidationFailed: the token's signature did not verify."""
NO_VALID_ACCOUNT: Final = 31203
"""NoValidAccountError: the token names no usable account or API key."""
INVALID_JWT_TOKEN: Final = 31204
"""InvalidJWTTokenError: the token is not a valid JWT access token."""
TOKEN_EXPIRED: Final = 31205
"""JWTTokenExpiredError: the token has expired."""
RATE_EXCEEDED: Final = 31206
"""RateExceededError: the client went over a rate or size limit."""
TOKEN_EXPIRATION_TOO_LONG: Final = 31207
"""JWTTokenExpirationTooLongError: the token's lifetime is longer than 24 hours."""
RECONNECT_ATTEMPT_ERROR: Final = 31209
"""ReconnectAttemptError: this call-reconnect attempt is not allowed."""
CALL_MESSAGE_EVENT_TYPE_INVALID: Final = 31210
"""CallMessageEventTypeInvalidError: a call message of a type the server does not take."""
PAYLOAD_SIZE_EXCEEDED: Final = 31212
"""PayloadSizeExceededError: a call message's content is too large."""

# -- Client outcomes and user media (314xx) --------------------------------------------

BAD_REQUEST: Final = 31400
"""BadRequest: a malformed request (client-side: an invite lacking callsid or sdp)."""
PERMISSION_DENIED: Final = 31401
"""PermissionDeniedError: microphone access was refused."""
ACQUISITION_FAILED: Final = 31402
"""AcquisitionFailedError: microphone access was allowed but it could not be opened."""
NOT_FOUND: Final = 31404
"""NotFound: the call's destination does not exist."""
TEMPORARILY_UNAVAILABLE: Final = 31480
"""TemporarilyUnavailable: the callee cannot be reached (no device, no answer)."""
BUSY_HERE: Final = 31486
"""BusyHere: the callee is busy."""

# -- SIP server outcomes (316xx) -------------------------------------------------------

DECLINE: Final = 31603
"""Decline: the callee declined the call."""

# -- Signaling and media (53xxx) -------------------------------------------------------

SIGNALING_CONNECTION_ERROR: Final = 53000
"""SignalingErrors.ConnectionError: a signaling failure no precise class describes."""
SIGNALING_CONNECTION_DISCONNECTED: Final = 53001
"""ConnectionDisconnected: the signaling socket dropped."""
CLIENT_LOCAL_DESC_FAILED: Final = 53400
"""ClientLocalDescFailed: the local SDP could not be created or applied."""
CLIENT_REMOTE_DESC_FAILED: Final = 53402
"""ClientRemoteDescFailed: the remote SDP could not be applied."""
MEDIA_CONNECTION_FAILED: Final = 53405
"""MediaErrors.ConnectionError: the call's media (ICE/DTLS) failed or never connected."""

# -- REST API (HTTP error bodies of the gateway's Twilio-style API) --------------------

REST_AUTHENTICATE: Final = 20003
"""Twilio REST 'Authenticate': missing or wrong credentials (HTTP 401)."""
REST_SERVICE_UNAVAILABLE: Final = 20005
"""Twilio REST 'Service unavailable': the resource has nothing to serve (HTTP 503)."""
REST_NOT_FOUND: Final = 20404
"""Twilio REST 'Not found': no such resource (HTTP 404)."""
REST_INVALID_CALL_STATE: Final = 21220
"""Twilio REST 'Invalid call state': the call is over, it cannot be changed (HTTP 400)."""
REST_INVALID_PARAMETER: Final = 21609
"""Twilio REST 'Invalid parameter': a parameter has a value out of range (HTTP 400)."""

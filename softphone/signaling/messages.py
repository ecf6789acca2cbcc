"""The PStream 1.6 wire codec, shared by the SDK and the gateway.

Pure code: text frames in, typed messages out, and back. Nothing here opens a
socket or reads a clock, so both ends agree by construction and every rule is
testable without I/O.

Every frame except the heartbeat is a JSON object ``{"payload", "type",
"version"}``. One class per wire ``type`` describes its payload; where a type
travels both ways with different required fields (``invite``, ``answer``,
``hangup``), the same class serves both and :func:`decode` checks the fields
required for the direction the frame travelled. Payload keys we do not model
are kept in ``extra`` so a decode/encode round trip loses nothing, and fields
are emitted in the order the JS SDK writes them, so our client's frames are
byte-identical to the official SDK's.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from typing import Any, ClassVar, TypeAlias

import attrs

PROTOCOL_VERSION = "1.6"
"""The version string the JS SDK puts on every frame."""

HEARTBEAT = "\n"
"""The heartbeat frame: one newline, echoed by the client, never JSON."""


class Direction(enum.Enum):
    """Which way a frame travels; decides which payload fields are required."""

    CLIENT_TO_SERVER = "c2s"
    SERVER_TO_CLIENT = "s2c"


C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
BOTH = frozenset({C2S, S2C})


class MalformedMessage(ValueError):
    """A frame that is not a valid PStream message: bad JSON, bad envelope or bad payload.

    Raised by :func:`decode` instead of any lower-level exception, so a peer sending
    garbage costs the receiver one log line, never a crash. ``msg_type`` is the
    envelope's ``type`` when it was readable, so a receiver can still answer a broken
    frame of a known type (the SDK reports an ``invite`` without ``sdp`` as 31400).
    """

    def __init__(self, reason: str, frame: str | None = None, msg_type: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.frame = frame
        self.msg_type = msg_type


@attrs.frozen
class Field:
    """How one payload key maps to an attribute: wire name, JSON type, where required."""

    attr: str
    key: str
    types: tuple[type, ...]
    required: frozenset[Direction] = frozenset()


def _f(attr: str, key: str | None, *types: type, required: frozenset[Direction] = BOTH) -> Field:
    return Field(attr, key or attr, types, required)


def _opt(attr: str, key: str | None, *types: type) -> Field:
    return Field(attr, key or attr, types, frozenset())


JsonObject: TypeAlias = dict[str, Any]


@attrs.frozen(kw_only=True)
class Message:
    """Base of every message; ``extra`` holds payload keys this codec does not model."""

    TYPE: ClassVar[str] = ""
    DIRECTIONS: ClassVar[frozenset[Direction]] = BOTH
    FIELDS: ClassVar[tuple[Field, ...]] = ()

    extra: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    def payload(self) -> JsonObject:
        """The payload object, keys in the JS SDK's order, then any extra keys."""
        out: JsonObject = {}
        for field in self.FIELDS:
            value = getattr(self, field.attr)
            if value is not None:
                out[field.key] = value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


# --- client -> server ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Listen(Message):
    """First frame on every socket and on every token update: who the client is."""

    TYPE = "listen"
    DIRECTIONS = frozenset({C2S})
    FIELDS = (
        _opt("browserinfo", None, dict),
        _opt("reconnect_timeout", "reconnectTimeout", int),
        _f("token", None, str),
    )
    token: str
    browserinfo: JsonObject | None = None
    reconnect_timeout: int | None = None


@attrs.frozen(kw_only=True)
class Register(Message):
    """Presence: ``audio=True`` registers for incoming calls, ``False`` unregisters."""

    TYPE = "register"
    DIRECTIONS = frozenset({C2S})
    FIELDS = (_f("media", None, dict),)
    media: JsonObject

    @property
    def audio(self) -> bool:
        """Whether this is a registration (True) or an unregistration (False)."""
        return bool(self.media.get("audio"))

    @classmethod
    def presence(cls, audio: bool) -> Register:
        """The frame ``device.register()`` / ``unregister()`` sends."""
        return cls(media={"audio": audio})


@attrs.frozen(kw_only=True)
class Dtmf(Message):
    """Digits sent through signaling when RFC 4733 is not available."""

    TYPE = "dtmf"
    DIRECTIONS = frozenset({C2S})
    FIELDS = (_f("callsid", None, str), _f("dtmf", None, str))
    callsid: str
    dtmf: str


@attrs.frozen(kw_only=True)
class Reject(Message):
    """The callee refuses a ringing incoming call."""

    TYPE = "reject"
    DIRECTIONS = frozenset({C2S})
    FIELDS = (_f("callsid", None, str),)
    callsid: str


@attrs.frozen(kw_only=True)
class Reinvite(Message):
    """An ICE-restart offer for an established call."""

    TYPE = "reinvite"
    DIRECTIONS = frozenset({C2S})
    FIELDS = (_f("callsid", None, str), _f("sdp", None, str))
    callsid: str
    sdp: str


# --- both directions ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Invite(Message):
    """A call offer.

    Client to server: a new outgoing call (``twilio.params`` holds the URL-encoded
    custom parameters; ``callsid`` is the temporary ``TJS…`` id) or, with
    ``reconnect``, a signaling reconnect / connect-token answer. Server to client:
    an incoming call with ``parameters`` (CallSid, From, To, Params…).
    """

    TYPE = "invite"
    FIELDS = (
        _f("callsid", None, str),
        _f("sdp", None, str),
        _opt("reconnect", None, str),
        Field("twilio", "twilio", (dict,), frozenset({C2S})),
        _opt("parameters", None, dict),
    )
    callsid: str
    sdp: str
    reconnect: str | None = None
    twilio: JsonObject | None = None
    parameters: JsonObject | None = None

    @property
    def params(self) -> str:
        """The URL-encoded custom parameters of an outgoing invite ("" when none)."""
        value = (self.twilio or {}).get("params", "")
        return value if isinstance(value, str) else ""


@attrs.frozen(kw_only=True)
class Answer(Message):
    """Call answered: client to server carries the callee's SDP; server to client may
    carry the SDP answer and always should carry a fresh reconnect token."""

    TYPE = "answer"
    FIELDS = (
        Field("sdp", "sdp", (str,), frozenset({C2S})),
        Field("callsid", "callsid", (str,), frozenset({C2S})),
        _opt("reconnect", None, str),
    )
    callsid: str | None = None
    sdp: str | None = None
    reconnect: str | None = None


@attrs.frozen(kw_only=True)
class Hangup(Message):
    """End of an accepted call, optionally with a reason (client) or an error (server)."""

    TYPE = "hangup"
    FIELDS = (
        Field("callsid", "callsid", (str,), frozenset({C2S})),
        _opt("message", None, str),
        _opt("error", None, dict),
    )
    callsid: str | None = None
    message: str | None = None
    error: JsonObject | None = None


@attrs.frozen(kw_only=True)
class CallMessage(Message):
    """A user-defined call message (``call.send_message`` / ``messageReceived``)."""

    TYPE = "message"
    FIELDS = (
        _f("callsid", None, str),
        _f("content", None, object),
        _opt("contenttype", None, str),
        _f("messagetype", None, str),
        _f("voiceeventsid", None, str),
    )
    callsid: str
    content: Any
    messagetype: str
    voiceeventsid: str
    contenttype: str | None = None


# --- server -> client ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Connected(Message):
    """Reply to every ``listen``: where the client landed and who its token says it is."""

    TYPE = "connected"
    DIRECTIONS = frozenset({S2C})
    FIELDS = (
        _opt("edge", None, str, list),
        _opt("region", None, str),
        _opt("home", None, str),
        _opt("token", None, dict),
        _opt("gateway", None, str),
    )
    edge: str | list[str] | None = None
    region: str | None = None
    home: str | None = None
    token: JsonObject | None = None
    gateway: str | None = None

    @property
    def identity(self) -> str | None:
        """``token.identity`` when present and a string."""
        value = (self.token or {}).get("identity")
        return value if isinstance(value, str) else None

    @property
    def ttl(self) -> float | None:
        """``token.ttl`` in seconds when present and numeric."""
        value = (self.token or {}).get("ttl")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)


@attrs.frozen(kw_only=True)
class Ready(Message):
    """Registration accepted (reply to ``register {audio: true}``)."""

    TYPE = "ready"
    DIRECTIONS = frozenset({S2C})


@attrs.frozen(kw_only=True)
class Offline(Message):
    """Unregistered (reply to ``register {audio: false}``)."""

    TYPE = "offline"
    DIRECTIONS = frozenset({S2C})


@attrs.frozen(kw_only=True)
class Close(Message):
    """Tear the stream down for good: the client must not reconnect."""

    TYPE = "close"
    DIRECTIONS = frozenset({S2C})


@attrs.frozen(kw_only=True)
class Ringing(Message):
    """The callee's devices are ringing; an ``sdp`` here is early media."""

    TYPE = "ringing"
    DIRECTIONS = frozenset({S2C})
    FIELDS = (_opt("callsid", None, str), _opt("sdp", None, str))
    callsid: str | None = None
    sdp: str | None = None


@attrs.frozen(kw_only=True)
class Cancel(Message):
    """An unanswered incoming call is withdrawn (caller gave up, answered elsewhere)."""

    TYPE = "cancel"
    DIRECTIONS = frozenset({S2C})
    FIELDS = (_f("callsid", None, str),)
    callsid: str


@attrs.frozen(kw_only=True)
class Error(Message):
    """A server error: socket-level, call-level (``callsid``) or message-level
    (``voiceeventsid``). ``error`` is ``{code, message, retryAfter?}``."""

    TYPE = "error"
    DIRECTIONS = frozenset({S2C})
    FIELDS = (
        _opt("error", None, dict),
        _opt("callsid", None, str),
        _opt("voiceeventsid", None, str),
    )
    error: JsonObject | None = None
    callsid: str | None = None
    voiceeventsid: str | None = None

    @classmethod
    def of(cls, code: int, message: str, **kwargs: Any) -> Error:
        """Shorthand for an error frame with ``{code, message}``."""
        return cls(error={"code": code, "message": message}, **kwargs)

    @property
    def code(self) -> int | None:
        """The numeric error code, if the server sent one."""
        value = (self.error or {}).get("code")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def retry_after(self) -> float | None:
        """``error.retryAfter`` in seconds, if present and numeric (not clamped: NaN and
        infinities pass through; an integer beyond float range becomes an infinity)."""
        value = (self.error or {}).get("retryAfter")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        try:
            return float(value)
        except OverflowError:  # e.g. 10**400: JSON integers have no size limit
            return math.inf if value > 0 else -math.inf


@attrs.frozen(kw_only=True)
class Ack(Message):
    """The server accepted a call message (``messageSent``)."""

    TYPE = "ack"
    DIRECTIONS = frozenset({S2C})
    FIELDS = (
        _opt("acktype", None, str),
        _opt("callsid", None, str),
        _opt("voiceeventsid", None, str),
    )
    acktype: str | None = None
    callsid: str | None = None
    voiceeventsid: str | None = None


@attrs.frozen(kw_only=True)
class Unknown(Message):
    """A well-formed frame of a type this codec does not know (the JS SDK ignores them)."""

    FIELDS = ()
    type: str
    payload_object: JsonObject = attrs.field(factory=dict)

    def payload(self) -> JsonObject:
        """The payload exactly as received."""
        return dict(self.payload_object)


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Listen,
        Register,
        Dtmf,
        Reject,
        Reinvite,
        Invite,
        Answer,
        Hangup,
        CallMessage,
        Connected,
        Ready,
        Offline,
        Close,
        Ringing,
        Cancel,
        Error,
        Ack,
    )
}
"""Every known wire type and its class."""


class Heartbeat:
    """The ``"\\n"`` keep-alive frame (a singleton: :data:`HEARTBEAT_FRAME`)."""

    def __repr__(self) -> str:
        return "Heartbeat()"


HEARTBEAT_FRAME = Heartbeat()


def type_of(message: Message) -> str:
    """The wire ``type`` of a message (``Unknown`` keeps the type it arrived with)."""
    return message.type if isinstance(message, Unknown) else message.TYPE


def encode(message: Message | Heartbeat) -> str:
    """Serialise a message to one text frame, exactly as the JS SDK would."""
    if isinstance(message, Heartbeat):
        return HEARTBEAT
    envelope = {"payload": message.payload(), "type": type_of(message), "version": PROTOCOL_VERSION}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


def _payload_from_frame(frame: str | bytes) -> tuple[str, JsonObject]:
    if isinstance(frame, bytes):
        raise MalformedMessage("binary frames are not part of the protocol")
    try:
        envelope = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise MalformedMessage(f"not JSON: {exc}", frame) from None
    if not isinstance(envelope, dict):
        raise MalformedMessage("envelope is not a JSON object", frame)
    msg_type = envelope.get("type")
    if not isinstance(msg_type, str) or not msg_type:
        raise MalformedMessage("envelope has no string 'type'", frame)
    payload = envelope.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise MalformedMessage(f"'{msg_type}' payload is not an object", frame, msg_type)
    return msg_type, payload


def _check(value: Any, field: Field) -> bool:
    if object in field.types:
        return True
    if isinstance(value, bool) and bool not in field.types:
        return False
    return isinstance(value, field.types)


def from_payload(msg_type: str, payload: Mapping[str, Any], direction: Direction) -> Message:
    """Build the typed message for ``msg_type`` from a payload object.

    Raises :class:`MalformedMessage` when a field required in ``direction`` is missing
    or a known field has the wrong JSON type, or when the type never travels that way.
    """
    cls = MESSAGE_TYPES.get(msg_type)
    if cls is None:
        return Unknown(type=msg_type, payload_object=dict(payload))
    if direction not in cls.DIRECTIONS:
        raise MalformedMessage(f"'{msg_type}' is not sent {direction.value}", msg_type=msg_type)
    kwargs: dict[str, Any] = {}
    for field in cls.FIELDS:
        value = payload.get(field.key)
        if value is None:
            if direction in field.required:
                raise MalformedMessage(f"'{msg_type}' needs '{field.key}'", msg_type=msg_type)
            continue
        if not _check(value, field):
            raise MalformedMessage(
                f"'{msg_type}.{field.key}' has the wrong type", msg_type=msg_type
            )
        kwargs[field.attr] = value
    known = {field.key for field in cls.FIELDS}
    extra = {key: value for key, value in payload.items() if key not in known}
    try:
        return cls(extra=extra, **kwargs)
    except TypeError as exc:  # a field required by the class but optional on the wire
        raise MalformedMessage(f"'{msg_type}': {exc}", msg_type=msg_type) from None


def decode(frame: str | bytes, direction: Direction) -> Message | Heartbeat:
    """Parse one text frame that travelled in ``direction``.

    Returns :data:`HEARTBEAT_FRAME` for ``"\\n"``, an :class:`Unknown` for unknown
    types, and raises :class:`MalformedMessage` for anything that is not a valid frame.
    """
    if frame == HEARTBEAT:
        return HEARTBEAT_FRAME
    msg_type, payload = _payload_from_frame(frame)
    return from_payload(msg_type, payload, direction)

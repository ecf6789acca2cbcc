"""``DeviceOptions``: every JS Device option, in snake_case, validated.

Ported code may pass the JS spelling (``{"logLevel": 1, "codecPreferences": [...]}``);
:meth:`DeviceOptions.merged` accepts both spellings and rejects unknown keys with a
suggestion, because a silently ignored typo in a voice app shows up only as a call
that behaves oddly in production. Options merge additively, as in the JS
``updateOptions``: a later call that omits a key keeps the earlier value.
"""

from __future__ import annotations

import difflib
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import attrs

from softphone.core.errors import InvalidArgumentError
from softphone.media.rtc_configuration import parse_rtc_configuration

CODECS = ("opus", "pcmu")
SOUND_NAMES = (
    "incoming",
    "outgoing",
    "disconnect",
    *(f"dtmf{d}" for d in range(10)),
    "dtmfs",
    "dtmfh",
)


def _is_str_or_str_list(value: object) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def _tuple_unless_str(value: Any) -> Any:
    """Lists become tuples (options are frozen); strings and None pass through."""
    return tuple(value) if isinstance(value, list | tuple) else value


def _validate_edge(_: Any, __: attrs.Attribute[Any], value: object) -> None:
    if value and not _is_str_or_str_list(value):
        raise InvalidArgumentError(
            "If `edge` is provided, it must be of type `string` or an array of strings."
        )


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def _validate_chunderw(_: Any, __: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not _is_str_or_str_list(value):
        raise InvalidArgumentError("`chunderw` must be a host string or a list of them.")
    hosts: Sequence[str] = [value] if isinstance(value, str) else cast(Sequence[str], value or ())
    for host in hosts:
        match = _SCHEME.match(host)
        if match and match.group(1).lower() not in ("ws", "wss"):
            raise InvalidArgumentError(
                f"`chunderw` {host!r} uses {match.group(1)}://, which cannot carry signaling; "
                "give wss://host:port (ws:// for a plain local gateway) or a bare host:port."
            )


def _validate_ssl_context(_: Any, __: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, ssl.SSLContext):
        raise InvalidArgumentError(
            f"`ssl_context` must be an ssl.SSLContext or None, got {type(value).__name__}."
        )


def _validate_positive(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        raise InvalidArgumentError(
            f"`{attribute.name}` must be a finite number > 0 (ms), got {value!r}."
        )


def _validate_codecs(_: Any, __: attrs.Attribute[Any], value: Sequence[str]) -> None:
    if isinstance(value, str) or not all(isinstance(c, str) for c in value):
        raise InvalidArgumentError("`codec_preferences` must be a list of codec names.")
    unknown = [c for c in value if c.lower() not in CODECS]
    if unknown:
        raise InvalidArgumentError(
            f"`codec_preferences` has unsupported codecs {unknown}; use {list(CODECS)}."
        )


def _validate_non_negative(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidArgumentError(f"`{attribute.name}` must be a number >= 0, got {value!r}.")


def _validate_rtc_configuration(_: Any, __: attrs.Attribute[Any], value: object) -> None:
    check_rtc_configuration(value)


def check_rtc_configuration(value: object) -> None:
    """``InvalidArgumentError`` for an ``rtcConfiguration`` a browser would refuse
    (unknown ``iceTransportPolicy``, malformed server URL, TURN without credentials)."""
    try:
        parse_rtc_configuration(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from exc


def _validate_bitrate(_: Any, __: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(f"`max_average_bitrate` must be a number, got {value!r}.")


def _validate_sounds(_: Any, __: attrs.Attribute[Any], value: Mapping[str, object]) -> None:
    unknown = [name for name in value if name not in SOUND_NAMES]
    if unknown:
        raise InvalidArgumentError(f"Unknown sound names {unknown}; valid: {list(SOUND_NAMES)}.")


def _validate_callable(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise InvalidArgumentError(f"`{attribute.name}` must be callable.")


@attrs.frozen(kw_only=True)
class DeviceOptions:
    """The options of a :class:`~softphone.core.device.Device`.

    Documented JS options keep their meaning. Browser-only ones (``close_protection``,
    ``disable_audio_context_sounds``) are accepted for ported code and have no effect.
    Python-only additions are marked as such.

    Frozen: build one with keywords (``DeviceOptions(chunderw=url, log_level="info")``)
    or pass a mapping to the Device, whose :meth:`merged` also takes the JS camelCase
    keys. ``help(Device)`` describes every option; each attribute below says the same.
    """

    allow_incoming_while_busy: bool = False
    """Invites during a call become pending calls (no ringtone) instead of being dropped."""
    app_name: str | None = None
    """Sent with the insights events only."""
    app_version: str | None = None
    """Sent with the insights events only."""
    close_protection: bool | str = False
    """Browser-only (a "leave page?" prompt): accepted, no effect."""
    codec_preferences: tuple[str, ...] = attrs.field(
        default=("pcmu", "opus"),
        converter=_tuple_unless_str,
        validator=_validate_codecs,
    )
    """Codec order offered and accepted: ``"opus"``, ``"pcmu"`` (``Call.Codec``)."""
    disable_audio_context_sounds: bool = False
    """Browser-only: accepted, no effect."""
    dscp: bool = True
    """Reported to insights as in JS; aiortc cannot mark packets with DSCP."""
    edge: str | tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_tuple_unless_str,
        validator=_validate_edge,
    )
    """Twilio edge name(s) mapped to signaling hosts; None means ``roaming``."""
    enable_improved_signaling_error_precision: bool = False
    """Surface the precise class of a gateway error code instead of 53000 / 31005."""
    enumerate_devices: Callable[..., Any] | None = attrs.field(
        default=None, validator=_validate_callable
    )
    """``fn() -> list[MediaDeviceInfo]`` replacing the device list (JS ``enumerateDevices``)."""
    force_aggressive_ice_nomination: bool = False
    """Reported to insights as in JS; no other effect with aiortc."""
    get_user_media: Callable[..., Any] | None = attrs.field(
        default=None, validator=_validate_callable
    )
    """``fn(constraints) -> AudioSource`` (sync or async) answering every input
    acquisition (JS ``getUserMedia``)."""
    log_level: int | str = "error"
    """Level of the ``softphone`` logger: ``trace``/``debug``/``info``/``warn``/``error``/
    ``silent`` or 0-5. The library adds no handler; configure :mod:`logging` to see it."""
    max_average_bitrate: int | None = attrs.field(default=None, validator=_validate_bitrate)
    """Opus bitrate cap in bit/s, used when within 6000..510000."""
    max_call_signaling_timeout_ms: int = attrs.field(default=0, validator=_validate_non_negative)
    """How long a call may wait for signaling to return to the same edge (0: no wait)."""
    media_stream: Any = None
    """JS ``MediaStream`` override: accepted for ported code, reported to insights only."""
    rtc_peer_connection: Callable[..., Any] | None = attrs.field(
        default=None, validator=_validate_callable
    )
    """``fn(configuration) -> PeerConnectionLike`` building each call's media adapter."""
    sounds: Mapping[str, str] = attrs.field(factory=dict, validator=_validate_sounds)
    """Sound name (``incoming``, ``outgoing``, ``disconnect``, ``dtmf0``...) to an audio
    file played instead of the built-in sound."""
    token_refresh_ms: int = attrs.field(default=10_000, validator=_validate_non_negative)
    """How long before the token expires ``tokenWillExpire`` is emitted."""

    # Accepted but undocumented in the JS SDK (internal/test hooks, still honoured).
    backoff_max_ms: int | None = None
    """Upper bound of the signaling reconnection backoff."""
    chunderw: str | tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_tuple_unless_str,
        validator=_validate_chunderw,
    )
    """The gateway's signaling URL(s): ``wss://host:port`` (``ws://`` for a plain local
    gateway), a bare ``host:port``, or a list tried in order. Overrides ``edge``."""
    eventgw: str | None = None
    """Insights host used before (or instead of) the one the gateway names."""
    file_input_stream: Any = None
    """An ``AudioSource`` every call sends instead of the selected input (never closed
    by the Device)."""
    ignore_browser_support: bool = False
    """Browser-only: accepted, no effect."""
    preflight: bool = False
    """Marks the calls as preflight calls in insights (PreflightTest sets it)."""
    publish_events: bool = True
    """Publish insights events and metrics (feedback is published regardless, as in JS)."""
    rtc_constraints: Mapping[str, Any] = attrs.field(factory=lambda: {"audio": True})
    """Default constraints for acquiring the input."""
    voice_event_sid_generator: Callable[[], str] | None = attrs.field(
        default=None, validator=_validate_callable
    )
    """``fn() -> str`` making the ``KX...`` ids of ``call.send_message``."""

    # Python-only.
    real_devices: bool | None = None
    """Whether the ``default`` input and output are the machine's default microphone and
    speaker (through PortAudio, as a browser's ``getUserMedia`` would) when nothing else
    is chosen. None: yes, unless the environment says ``SOFTPHONE_REAL_DEVICES=0``.
    Without PortAudio (or with False) calls send silence and their audio is discarded."""
    speaker: Any = None
    """An AudioSink for remote call audio and sounds (default: the speaker when
    ``real_devices``, else discard)."""
    ringer: Any = None
    """An AudioSink for the ringtone (default: the speaker)."""
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, validator=_validate_ssl_context)
    """TLS settings for ``wss://`` gateways (e.g. one trusting a self-signed cert). None
    verifies the server against the system trust store, or against the file named by the
    ``SSL_CERT_FILE`` environment variable when it is set (``ssl.create_default_context``)."""
    signaling_connect_timeout_ms: float = attrs.field(default=15_000, validator=_validate_positive)
    """Longest ``register()`` / ``connect()`` wait for the signaling connection (and, for
    ``register()``, for the gateway's ``ready``) before rejecting with a ``TwilioError``
    (53000, the cause in its message). They reject sooner when every signaling URL has
    failed once (refused, DNS, TLS, HTTP error, or no socket within the 5 s connect
    timeout), or at once on a token error."""
    rtc_configuration: Mapping[str, Any] = attrs.field(
        factory=lambda: {"iceServers": []}, validator=_validate_rtc_configuration
    )
    """Default peer-connection configuration (``iceServers``, ``iceTransportPolicy``),
    validated as a browser would. Unlike aiortc's default (a public STUN server, 5 s per
    unreachable server), no ICE servers unless you give some."""

    @classmethod
    def merged(
        cls, previous: DeviceOptions | None, updates: Mapping[str, Any] | DeviceOptions | None
    ) -> DeviceOptions:
        """``previous`` with ``updates`` applied on top (JS ``updateOptions`` semantics)."""
        base = previous or cls()
        if updates is None:
            return base
        if isinstance(updates, DeviceOptions):
            return updates
        normalised = normalise_keys(updates)
        try:
            return attrs.evolve(base, **normalised)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InvalidArgumentError):
                raise
            raise InvalidArgumentError(str(exc)) from exc


_FIELD_NAMES = frozenset(field.name for field in attrs.fields(DeviceOptions))
_SPECIAL = {
    "RTCPeerConnection": "rtc_peer_connection",
    "MediaStream": "media_stream",
    "enableImprovedSignalingErrorPrecision": "enable_improved_signaling_error_precision",
}


def snake_case(name: str) -> str:
    """``maxCallSignalingTimeoutMs`` → ``max_call_signaling_timeout_ms``."""
    if name in _SPECIAL:
        return _SPECIAL[name]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def normalise_keys(options: Mapping[str, Any]) -> dict[str, Any]:
    """Map JS camelCase keys to snake_case and reject unknown ones with a suggestion."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        name = key if key in _FIELD_NAMES else snake_case(key)
        if name not in _FIELD_NAMES:
            hint = difflib.get_close_matches(name, _FIELD_NAMES, n=1)
            suggestion = f" Did you mean `{hint[0]}`?" if hint else ""
            raise InvalidArgumentError(f"Unknown Device option `{key}`.{suggestion}")
        out[name] = value
    return out

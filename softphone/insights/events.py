"""Insights records exactly as the JS SDK 2.x builds them: envelopes, payloads, metrics.

What: pure builders (no I/O, time passed in) for what the JS SDK's ``EventPublisher``
posts to ``/v4/EndpointEvents`` and ``/v4/EndpointMetrics``:

* the envelope (:func:`envelope`): ``group``, ``level`` (upper case), ``name``,
  ``payload``, ``payload_type``, ``private``, ``publisher``, ``timestamp``,
  ``publisher_metadata``;
* the default payload every call event carries (:func:`default_payload`, JS
  ``Device._createDefaultPayload``);
* one :class:`InsightsEvent` builder per event the JS ``Call`` and ``Device`` publish,
  with the JS level, group, name and payload keys;
* metrics: one record per sample (:func:`metric_record`, JS ``formatMetric``), the
  fields added to each record (:func:`metrics_fields`, JS ``Call._createMetricPayload``)
  and the every-10-samples batching (:class:`MetricsBatcher`).

Why: a gateway or dashboard written for Twilio's Insights reads these records by
their JS field names; keeping them byte-for-byte lets one store serve both SDKs.

JS ``undefined`` and ``null`` differ on the wire (``JSON.stringify`` drops the first
and writes the second). Here a key whose JS value would be ``undefined`` is left out
and ``None`` is written as ``null``; :func:`to_json` writes NaN and infinities as
``null`` as ``JSON.stringify`` does.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from softphone.media.sdp import preferred_codec_info

__all__ = [
    "FEEDBACK_GROUP",
    "METRICS_BATCH_SIZE",
    "METRICS_GROUP",
    "METRICS_NAME",
    "PAYLOAD_TYPE",
    "PRODUCT_NAME",
    "CallInfo",
    "InsightsEvent",
    "Level",
    "MetricsBatcher",
    "SessionInfo",
    "accepted",
    "audio_device_change",
    "audio_devices_set",
    "audio_devices_set_failed",
    "call_message",
    "call_message_error",
    "codec_settings",
    "connection_error",
    "connection_event",
    "default_payload",
    "dtls_transport_state",
    "envelope",
    "feedback",
    "get_user_media_failed",
    "get_user_media_succeeded",
    "ice_candidate",
    "ice_candidate_payload",
    "ice_connection_state",
    "ice_connectivity_lost",
    "ice_connectivity_restored",
    "ice_gathering_failure",
    "ice_gathering_state",
    "iso_timestamp",
    "media_connection_error",
    "metric_record",
    "metrics_fields",
    "muted",
    "outgoing",
    "outgoing_ringing",
    "pc_connection_state",
    "quality_warning",
    "selected_ice_candidate_pair",
    "settings_edge",
    "settings_init",
    "signaling_state",
    "to_json",
]

PRODUCT_NAME: Final = "twilio-js-sdk"
"""The envelope's ``publisher`` (JS ``PUBLISHER_PRODUCT_NAME``)."""
PAYLOAD_TYPE: Final = "application/json"
METRICS_BATCH_SIZE: Final = 10
"""Samples per metrics post while the call lasts (the rest is posted when media closes)."""
METRICS_GROUP: Final = "quality-metrics-samples"
METRICS_NAME: Final = "metrics-sample"
FEEDBACK_GROUP: Final = "feedback"


class Level(enum.StrEnum):
    """Event levels as the publisher methods name them; the envelope upper-cases them."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@attrs.frozen(kw_only=True)
class CallInfo:
    """What the default payload reads from a call, taken when the event is published.

    JS passes the ``Call`` object itself; a snapshot keeps this module free of it.
    ``direction`` is ``"INCOMING"`` or ``"OUTGOING"``; ``codec`` is the last sample's
    ``codecName`` (``""``/None before the first sample).
    """

    call_sid: str | None = None
    temp_call_sid: str | None = None
    """The call's ``TJS…`` id (JS ``outboundConnectionId``; every call has one)."""
    direction: str | None = None
    codec: str | None = None

    @property
    def publishable(self) -> bool:
        """JS publishes nothing for a call with neither a CallSid nor a temporary id."""
        return bool(self.call_sid or self.temp_call_sid)


@attrs.frozen(kw_only=True)
class SessionInfo:
    """The Device-level part of the default payload (options and signaling state)."""

    sdk_version: str
    aggressive_nomination: bool = False
    """The ``forceAggressiveIceNomination`` option."""
    dscp: bool = True
    """The ``dscp`` option."""
    gateway: str | None = None
    """The last ``gateway`` the signaling server named (any inbound payload)."""
    region: str | None = None
    """The last ``region`` the signaling server named."""
    platform: str = "WebRTC"
    browser_extension: bool = False
    ice_restart_enabled: bool = True


@attrs.frozen(kw_only=True)
class InsightsEvent:
    """One event to publish: ``payload`` is merged over the default payload.

    ``force`` posts it even when publishing is disabled (JS does so for feedback).
    """

    level: Level
    group: str
    name: str
    payload: Mapping[str, Any] | None = None
    force: bool = False


# -- envelope ---------------------------------------------------------------------------


def iso_timestamp(seconds: float) -> str:
    """JS ``Date#toISOString`` of a unix time in seconds: ``2024-01-02T03:04:05.678Z``.

    Milliseconds are truncated, as a JS ``Date`` holds whole milliseconds. Raises
    :class:`ValueError` for times JS calls invalid (NaN, out of range).
    """
    if not math.isfinite(seconds):
        raise ValueError(f"invalid time value: {seconds!r}")
    millis = math.floor(seconds * 1000)
    try:
        moment = datetime.datetime.fromtimestamp(millis / 1000, datetime.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"invalid time value: {seconds!r}") from exc
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def default_payload(session: SessionInfo, call: CallInfo | None) -> dict[str, Any]:
    """JS ``Device._createDefaultPayload(call)``: the fields every event payload starts from.

    A CallSid starting with ``TJ`` is a temporary id and is not reported as
    ``call_sid``; empty values are left out.
    """
    payload: dict[str, Any] = {
        "aggressive_nomination": session.aggressive_nomination,
        "browser_extension": session.browser_extension,
        "dscp": session.dscp,
        "ice_restart_enabled": session.ice_restart_enabled,
        "platform": session.platform,
        "sdk_version": session.sdk_version,
    }
    if call is not None:
        if call.call_sid and not call.call_sid.startswith("TJ"):
            payload["call_sid"] = call.call_sid
        if call.temp_call_sid:
            payload["temp_call_sid"] = call.temp_call_sid
        if call.codec:
            payload["audio_codec"] = call.codec
        payload["direction"] = call.direction
    if session.gateway:
        payload["gateway"] = session.gateway
    if session.region:
        payload["region"] = session.region
    return payload


def envelope(
    level: Level | str,
    group: str,
    name: str,
    payload: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    now: float,
    metadata: Mapping[str, Any] | None = None,
    publisher: str = PRODUCT_NAME,
) -> dict[str, Any]:
    """The body of one post, keys in the JS order.

    ``payload`` is an object for events and a list of records for metrics. ``metadata``
    is ``publisher_metadata`` (``app_name``, ``app_version``); its None values are left
    out, as JS ``undefined`` ones are, so no app name gives ``{}``.
    """
    body: dict[str, Any] = {
        "group": group,
        "level": str(level).upper(),
        "name": name,
        "payload": dict(payload) if isinstance(payload, Mapping) else list(payload),
        "payload_type": PAYLOAD_TYPE,
        "private": False,
        "publisher": publisher,
        "timestamp": iso_timestamp(now),
    }
    body["publisher_metadata"] = {
        key: value for key, value in (metadata or {}).items() if value is not None
    }
    return body


def to_json(body: object) -> bytes:
    """UTF-8 JSON of ``body`` as ``JSON.stringify`` writes it (NaN and infinities → null).

    Objects JSON does not know are written as their ``str`` rather than failing.
    """
    try:
        text = json.dumps(body, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        text = json.dumps(_finite(body), separators=(",", ":"), default=str)
    return text.encode()


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _round2(value: object) -> object:
    """JS ``x && Math.round(x * 100) / 100``: falsy values pass through unchanged."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value:
        return value
    if not math.isfinite(value):
        return value
    return math.floor(value * 100 + 0.5) / 100


# -- connection ----------------------------------------------------------------------

_CONNECTION_NAMES: Final = frozenset(
    {
        "incoming",
        "accepted-by-local",
        "accepted-by-remote",
        "ignored-by-local",
        "rejected-by-local",
        "disconnected-by-local",
        "disconnected-by-remote",
        "cancel",
        "muted",
        "unmuted",
        "reconnecting",
        "reconnected",
    }
)


def connection_event(name: str) -> InsightsEvent:
    """``info connection/<name>`` without payload (incoming, cancel, reconnecting, …)."""
    if name not in _CONNECTION_NAMES:
        raise ValueError(f"not a payload-less connection event: {name!r}")
    return InsightsEvent(level=Level.INFO, group="connection", name=name)


def outgoing(*, preflight: bool, reconnect: bool) -> InsightsEvent:
    """``connection/outgoing`` at construction of an outgoing call (checklist 111)."""
    payload = {"preflight": preflight, "reconnect": reconnect}
    return InsightsEvent(level=Level.INFO, group="connection", name="outgoing", payload=payload)


def accepted(direction: str) -> InsightsEvent:
    """``connection/accepted-by-local`` (incoming) or ``accepted-by-remote`` on answer."""
    name = "accepted-by-local" if direction == "INCOMING" else "accepted-by-remote"
    return connection_event(name)


def muted(is_muted: bool) -> InsightsEvent:
    """``connection/muted`` or ``connection/unmuted`` (only when the state changed)."""
    return connection_event("muted" if is_muted else "unmuted")


def outgoing_ringing(has_early_media: bool) -> InsightsEvent:
    """``connection/outgoing-ringing {hasEarlyMedia}`` (checklist 176)."""
    return InsightsEvent(
        level=Level.INFO,
        group="connection",
        name="outgoing-ringing",
        payload={"hasEarlyMedia": has_early_media},
    )


def connection_error(code: int, message: str) -> InsightsEvent:
    """``error connection/error {code, message}``: every Call ``error`` event."""
    return InsightsEvent(
        level=Level.ERROR,
        group="connection",
        name="error",
        payload={"code": code, "message": message},
    )


def media_connection_error(error: Any) -> InsightsEvent:
    """``warning connection/error`` with the fields of the 53405 error, at media reconnect.

    JS merges the error object itself into the payload: its ``causes``, ``code``,
    ``description``, ``explanation``, ``message``, ``name`` and ``solutions``.
    ``error`` is a :class:`~softphone.core.errors.TwilioError` (read by attribute).
    """
    payload = {
        "causes": list(error.causes),
        "code": error.code,
        "description": error.description,
        "explanation": error.explanation,
        "message": error.message,
        "name": error.name,
        "solutions": list(error.solutions),
    }
    return InsightsEvent(level=Level.WARNING, group="connection", name="error", payload=payload)


# -- settings, media acquisition, feedback, messages ---------------------------------


def codec_settings(local_sdp: str) -> InsightsEvent:
    """``settings/codec {codec_params, selected_codec}`` from the local SDP (checklist 122).

    The first ``a=rtpmap`` gives ``selected_codec`` (``opus/48000/2``) and its ``a=fmtp``
    the ``codec_params`` (``""`` when there is none).
    """
    codec, params = preferred_codec_info(local_sdp)
    return InsightsEvent(
        level=Level.INFO,
        group="settings",
        name="codec",
        payload={"codec_params": params, "selected_codec": codec},
    )


def settings_init(
    *, media_stream: bool, rtc_peer_connection: bool, enumerate_devices: bool, get_user_media: bool
) -> InsightsEvent:
    """``settings/init`` after the Device made a call: which overrides the app gave."""
    payload = {
        "MediaStream": media_stream,
        "RTCPeerConnection": rtc_peer_connection,
        "enumerateDevices": enumerate_devices,
        "getUserMedia": get_user_media,
    }
    return InsightsEvent(level=Level.INFO, group="settings", name="init", payload=payload)


def settings_edge(edge: str | None, selected_edge: str | Sequence[str] | None) -> InsightsEvent:
    """``settings/edge {edge, selected_edge?}`` when a call is accepted.

    ``edge`` is the Device's edge, else its region (None: ``null``, as JS writes
    ``null || null``); ``selected_edge`` the ``edge`` option, always as a list, left out
    when the option is not set.
    """
    payload: dict[str, Any] = {"edge": edge}
    if selected_edge:
        payload["selected_edge"] = (
            [selected_edge] if isinstance(selected_edge, str) else list(selected_edge)
        )
    return InsightsEvent(level=Level.INFO, group="settings", name="edge", payload=payload)


def get_user_media_succeeded(audio_constraints: Any) -> InsightsEvent:
    """``get-user-media/succeeded {data: {audioConstraints}}`` (checklist 120)."""
    return InsightsEvent(
        level=Level.INFO,
        group="get-user-media",
        name="succeeded",
        payload={"data": {"audioConstraints": audio_constraints}},
    )


def get_user_media_failed(audio_constraints: Any, error: Any, *, denied: bool) -> InsightsEvent:
    """``error get-user-media/denied`` (permission, 31208) or ``/failed`` (checklist 119, 129).

    ``error`` goes into the payload as given (a mapping, or anything :func:`to_json`
    writes as its ``str``).
    """
    return InsightsEvent(
        level=Level.ERROR,
        group="get-user-media",
        name="denied" if denied else "failed",
        payload={"data": {"audioConstraints": audio_constraints, "error": error}},
    )


def feedback(score: int | None = None, issue: str | None = None) -> InsightsEvent:
    """``feedback/received {issue_name, quality_score}``, or ``received-none`` without score.

    Always forced: JS posts feedback even when publishing is disabled. Validation of
    ``score`` and ``issue`` is the Call's (``InvalidArgumentError``); no issue leaves
    ``issue_name`` out.
    """
    if score is None:
        return InsightsEvent(
            level=Level.INFO, group=FEEDBACK_GROUP, name="received-none", force=True
        )
    payload: dict[str, Any] = {"quality_score": score}
    if issue is not None:
        payload = {"issue_name": issue, **payload}
    return InsightsEvent(
        level=Level.INFO, group=FEEDBACK_GROUP, name="received", payload=payload, force=True
    )


def call_message(
    message_type: str, content_type: str | None, voice_event_sid: str, *, sent: bool
) -> InsightsEvent:
    """``call-message/<messageType> {content_type, event_type, voice_event_sid}``.

    ``event_type`` is ``sent`` on the server's ``ack`` and ``received`` on a ``message``.
    """
    payload: dict[str, Any] = {}
    if content_type is not None:
        payload["content_type"] = content_type
    payload["event_type"] = "sent" if sent else "received"
    payload["voice_event_sid"] = voice_event_sid
    return InsightsEvent(level=Level.INFO, group="call-message", name=message_type, payload=payload)


def call_message_error(code: int, message: str, voice_event_sid: str) -> InsightsEvent:
    """``error call-message/error {code, message, voice_event_sid}`` (checklist 183)."""
    return InsightsEvent(
        level=Level.ERROR,
        group="call-message",
        name="error",
        payload={"code": code, "message": message, "voice_event_sid": voice_event_sid},
    )


# -- audio devices (Device) -------------------------------------------------------------


def audio_device_change(lost_active_device_ids: Iterable[str]) -> InsightsEvent:
    """``audio/device-change {lost_active_device_ids}`` (checklist 85)."""
    return InsightsEvent(
        level=Level.INFO,
        group="audio",
        name="device-change",
        payload={"lost_active_device_ids": list(lost_active_device_ids)},
    )


def audio_devices_set(kind: str, device_ids: Iterable[str]) -> InsightsEvent:
    """``audio/<kind>-devices-set {audio_device_ids}``; ``kind`` is speaker or ringtone."""
    return InsightsEvent(
        level=Level.INFO,
        group="audio",
        name=f"{kind}-devices-set",
        payload={"audio_device_ids": list(device_ids)},
    )


def audio_devices_set_failed(kind: str, device_ids: Iterable[str], message: str) -> InsightsEvent:
    """``error audio/<kind>-devices-set-failed {audio_device_ids, message}`` (checklist 97)."""
    return InsightsEvent(
        level=Level.ERROR,
        group="audio",
        name=f"{kind}-devices-set-failed",
        payload={"audio_device_ids": list(device_ids), "message": message},
    )


# -- peer connection states and ICE (checklist 157-160, 196) ----------------------------


def _state(group: str, state: str, level: Level) -> InsightsEvent:
    """JS ``post(level, group, state, null)``: the state is the event's name."""
    return InsightsEvent(level=level, group=group, name=state)


def pc_connection_state(state: str, dtls_state: str | None = None) -> InsightsEvent:
    """``pc-connection-state/<state>``: ``failed`` is ``error`` when the DTLS transport
    failed too, else ``warning``; every other state ``debug``."""
    level = Level.DEBUG
    if state == "failed":
        level = Level.ERROR if dtls_state == "failed" else Level.WARNING
    return _state("pc-connection-state", state, level)


def dtls_transport_state(state: str) -> InsightsEvent:
    """``dtls-transport-state/<state>``: ``error`` when failed, else ``debug``."""
    return _state("dtls-transport-state", state, Level.ERROR if state == "failed" else Level.DEBUG)


def ice_connection_state(state: str) -> InsightsEvent:
    """``ice-connection-state/<state>``: ``error`` when failed, else ``debug``."""
    return _state("ice-connection-state", state, Level.ERROR if state == "failed" else Level.DEBUG)


def ice_gathering_state(state: str) -> InsightsEvent:
    """``debug ice-gathering-state/<state>``."""
    return _state("ice-gathering-state", state, Level.DEBUG)


def ice_gathering_failure(reason: str) -> InsightsEvent:
    """``warning ice-gathering-state/<reason>`` (``none`` or ``timeout``)."""
    return _state("ice-gathering-state", reason, Level.WARNING)


def signaling_state(state: str) -> InsightsEvent:
    """``debug signaling-state/<state>``."""
    return _state("signaling-state", state, Level.DEBUG)


def ice_connectivity_lost(message: str) -> InsightsEvent:
    """``warning network-quality-warning-raised/ice-connectivity-lost {message}``."""
    return InsightsEvent(
        level=Level.WARNING,
        group="network-quality-warning-raised",
        name="ice-connectivity-lost",
        payload={"message": message},
    )


def ice_connectivity_restored(message: str) -> InsightsEvent:
    """``info network-quality-warning-cleared/ice-connectivity-lost {message}``."""
    return InsightsEvent(
        level=Level.INFO,
        group="network-quality-warning-cleared",
        name="ice-connectivity-lost",
        payload={"message": message},
    )


def ice_candidate_payload(candidate: Any, *, is_remote: bool = False) -> dict[str, Any]:
    """JS ``IceCandidate#toPayload`` of a candidate (an aiortc ``RTCIceCandidate`` or a
    mapping with the browser's attribute names).

    Read: ``type``, ``ip`` (or ``address``), ``port``, ``priority``, ``protocol``,
    ``relatedAddress``, ``relatedPort``, ``tcpType``, ``sdpMid`` and, when the candidate
    line is available as ``candidate``, its ``network-cost``. Missing values are
    ``null``; ``network-cost`` is left out when the line has none.
    """

    def read(name: str) -> Any:
        if isinstance(candidate, Mapping):
            return candidate.get(name)
        return getattr(candidate, name, None)

    payload: dict[str, Any] = {
        "candidate_type": read("type"),
        "deleted": False,
        "ip": read("ip") or read("address"),
        "is_remote": is_remote,
    }
    line = read("candidate")
    if isinstance(line, str) and "network-cost " in line:
        digits = line.split("network-cost ", 1)[1].split(" ", 1)[0]
        if digits.isdigit():
            payload["network-cost"] = int(digits)
    payload.update(
        {
            "port": read("port"),
            "priority": read("priority"),
            "protocol": read("protocol"),
            "related_address": read("relatedAddress"),
            "related_port": read("relatedPort"),
            "tcp_type": read("tcpType"),
            "transport_id": read("sdpMid"),
        }
    )
    return payload


def ice_candidate(candidate: Any) -> InsightsEvent:
    """``debug ice-candidate/ice-candidate`` for each local candidate gathered."""
    return InsightsEvent(
        level=Level.DEBUG,
        group="ice-candidate",
        name="ice-candidate",
        payload=ice_candidate_payload(candidate),
    )


def selected_ice_candidate_pair(local: Any, remote: Any) -> InsightsEvent:
    """``debug ice-candidate/selected-ice-candidate-pair {local_candidate, remote_candidate}``."""
    return InsightsEvent(
        level=Level.DEBUG,
        group="ice-candidate",
        name="selected-ice-candidate-pair",
        payload={
            "local_candidate": ice_candidate_payload(local),
            "remote_candidate": ice_candidate_payload(remote, is_remote=True),
        },
    )


# -- quality warnings (checklist 189-194) --------------------------------------------


def quality_warning(
    stat: str,
    warning_name: str,
    threshold: float | None,
    value: float | Sequence[Any] | None,
    *,
    cleared: bool,
    muted: bool = False,
) -> InsightsEvent | None:
    """A stats-monitor warning raised or cleared, as JS ``Call._emitWarning`` posts it.

    ``stat`` is the monitor's stat name (``jitter``, ``audioInputLevel``…) and
    ``warning_name`` the app-facing name (``high-jitter``); ``threshold`` is the
    threshold value; ``value`` the monitor's ``values`` window or single ``value``.

    Group ``audio-level-warning-raised``/``-cleared`` for ``audio*`` stats, else
    ``network-quality-warning-…``; level ``warning`` when raised, ``info`` when cleared
    and always ``info`` for ``constant-audio-output-level``. Payload
    ``{data: {threshold, value | values}}`` with numbers in ``values`` rounded to 2
    decimals (a non-number element is replaced by the whole window, as JS does); a
    falsy ``value`` (0, None) is left out. None for ``constant-audio-input-level``
    while muted: JS publishes nothing then.
    """
    if warning_name == "constant-audio-input-level" and muted:
        return None
    prefix = "audio-level-" if stat.startswith("audio") else "network-quality-"
    group = f"{prefix}warning{'-cleared' if cleared else '-raised'}"
    level = (
        Level.INFO if cleared or warning_name == "constant-audio-output-level" else (Level.WARNING)
    )
    data: dict[str, Any] = {}
    if threshold is not None:
        data["threshold"] = threshold
    if isinstance(value, Sequence) and not isinstance(value, str):
        data["values"] = [
            _round2(item)
            if isinstance(item, int | float) and not isinstance(item, bool)
            else list(value)
            for item in value
        ]
    elif value:
        data["value"] = value
    return InsightsEvent(level=level, group=group, name=warning_name, payload={"data": data})


# -- metrics --------------------------------------------------------------------------

_SAMPLE_KEYS: Final = (
    ("audio_codec", "codecName"),
    ("audio_level_in", "audioInputLevel"),
    ("audio_level_out", "audioOutputLevel"),
    ("bytes_received", "bytesReceived"),
    ("bytes_sent", "bytesSent"),
    ("call_volume_input", "inputVolume"),
    ("call_volume_output", "outputVolume"),
    ("jitter", "jitter"),
    ("mos", "mos"),
    ("packets_lost", "packetsLost"),
    ("packets_lost_fraction", "packetsLostFraction"),
    ("packets_received", "packetsReceived"),
    ("rtt", "rtt"),
    ("timestamp", "timestamp"),
)
_TOTALS_KEYS: Final = (
    ("total_bytes_received", "bytesReceived"),
    ("total_bytes_sent", "bytesSent"),
    ("total_packets_lost", "packetsLost"),
    ("total_packets_received", "packetsReceived"),
    ("total_packets_sent", "packetsSent"),
)


def metric_record(call_metrics: Mapping[str, Any]) -> dict[str, Any]:
    """JS ``formatMetric``: one metrics record from a sample with the call's volumes.

    ``call_metrics`` is the JS sample object (``RTCSample.to_dict()``: camelCase keys,
    ``timestamp`` in ms, nested ``totals``) plus ``inputVolume`` and ``outputVolume``
    (the latest 0..1 volumes). ``mos`` and ``packets_lost_fraction`` are rounded to 2
    decimals; a key the sample lacks is left out (JS ``undefined``), None is null.
    Raises :class:`ValueError` for an invalid ``timestamp``, as JS ``toISOString`` throws.
    """
    record: dict[str, Any] = {}
    for out_key, in_key in _SAMPLE_KEYS:
        if in_key not in call_metrics:
            continue
        value = call_metrics[in_key]
        if in_key in ("mos", "packetsLostFraction"):
            value = _round2(value)
        elif in_key == "timestamp":
            value = iso_timestamp(float(value) / 1000)
        record[out_key] = value
    totals = call_metrics.get("totals")
    if not isinstance(totals, Mapping):
        raise ValueError("sample has no totals")
    for out_key, in_key in _TOTALS_KEYS:
        if in_key in totals:
            record[out_key] = totals[in_key]
    return record


def metrics_fields(
    *,
    call_sid: str | None,
    dscp: bool,
    sdk_version: str,
    direction: str,
    gateway: str | None = None,
) -> dict[str, Any]:
    """JS ``Call._createMetricPayload``: fields added to every record of a batch."""
    fields: dict[str, Any] = {}
    if call_sid is not None:
        fields["call_sid"] = call_sid
    fields["dscp"] = dscp
    fields["sdk_version"] = sdk_version
    if gateway:
        fields["gateway"] = gateway
    fields["direction"] = direction
    return fields


class MetricsBatcher:
    """The Call's metrics buffer: a batch every :data:`METRICS_BATCH_SIZE` samples.

    :meth:`add` keeps each sample with the latest volumes (JS ``CallMetrics``) and
    returns the batch once it holds 10; :meth:`drain` returns what is left when media
    closes (empty: nothing to post).
    """

    def __init__(self, size: int = METRICS_BATCH_SIZE) -> None:
        self.size = size
        self._samples: list[dict[str, Any]] = []

    def add(
        self, sample: Mapping[str, Any], input_volume: float, output_volume: float
    ) -> list[dict[str, Any]] | None:
        """Buffer one sample; the full batch (oldest first) when it reaches the size."""
        self._samples.append({**sample, "inputVolume": input_volume, "outputVolume": output_volume})
        if len(self._samples) >= self.size:
            return self.drain()
        return None

    def drain(self) -> list[dict[str, Any]]:
        """Everything buffered, emptying the buffer."""
        batch, self._samples = self._samples, []
        return batch

    def __len__(self) -> int:
        return len(self._samples)

"""``Call``: one call's signaling state machine and media, as in the JS SDK.

Status: pending → connecting → ringing → open → (reconnecting ↔ open) → closed,
with the transitions of media-behaviour.md §6. A Call listens to the Device's
signaling stream itself and reacts only to frames for its own CallSid (or its
temporary ``TJS…`` id before the gateway assigned a CallSid).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from softphone.audio_backends.base import AudioSink, AudioSource
from softphone.core.errors import (
    GeneralErrors,
    InvalidArgumentError,
    InvalidStateError,
    MediaErrors,
    SignalingErrors,
    TwilioError,
    UserMediaErrors,
    call_error_from_hangup,
    call_error_from_message_error,
)
from softphone.core.events import EventEmitter
from softphone.core.media_health import GIVE_UP_AFTER_S, LOST_AFTER_S, HealthEvent, MediaHealth
from softphone.core.remote_audio import RemoteAudio
from softphone.media.peer_connection import PeerConnection
from softphone.signaling import codes
from softphone.signaling.connect_token import encode_connect_token
from softphone.signaling.messages import (
    Ack,
    Answer,
    CallMessage,
    Cancel,
    Hangup,
    Invite,
    Ringing,
)
from softphone.signaling.params import (
    decode_params,
    encode_params,
    js_string,
    temp_call_sid,
    voice_event_sid,
)
from softphone.signaling.pstream import PStream, StreamStatus

if TYPE_CHECKING:
    from softphone.core.device import Device

log = logging.getLogger("softphone.call")

DTMF_PAUSE_MS = 500
DTMF_TONE_MS = 160
DTMF_GAP_MS = 70
DTMF_SOUND_SPACING_MS = 200
HEALTH_INTERVAL_S = 0.5
MEDIA_LOST_AFTER_S = LOST_AFTER_S
MEDIA_GIVE_UP_S = GIVE_UP_AFTER_S
RESTART_RETRY_S = 1.0
RESTART_RETRY_MAX_S = 4.0
MEDIA_FAILED_MESSAGE = "Call disconnected: the media connection was interrupted and did not recover"
VALID_DIGITS = re.compile(r"^[0-9*#w]*$")
DTMF_PARTS = re.compile(r"w|[^w]+")
"""A digit string's parts in order: runs of tones, and each ``w`` on its own."""
FEEDBACK_ISSUES = (
    "one-way-audio",
    "choppy-audio",
    "dropped-call",
    "audio-latency",
    "noisy-call",
    "echo",
)
FEEDBACK_SCORES = (1, 2, 3, 4, 5)


class CallState(enum.StrEnum):
    """``Call.State`` of the JS SDK."""

    PENDING = "pending"
    CONNECTING = "connecting"
    RINGING = "ringing"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class CallDirection(enum.StrEnum):
    """``Call.CallDirection`` of the JS SDK."""

    INCOMING = "INCOMING"
    OUTGOING = "OUTGOING"


CallDirectionType = CallDirection


class Codec(enum.StrEnum):
    """``Call.Codec`` of the JS SDK."""

    OPUS = "opus"
    PCMU = "pcmu"


class Call(EventEmitter):
    """A call: created by ``device.connect()`` (outgoing) or an ``incoming`` event."""

    State = CallState
    CallDirection = CallDirection
    Codec = Codec

    def __init__(
        self,
        device: Device,
        stream: PStream,
        *,
        direction: CallDirectionType,
        parameters: Mapping[str, Any] | None = None,
        custom_parameters: Mapping[str, str] | None = None,
        offer_sdp: str | None = None,
        reconnect_token: str | None = None,
        is_connect_token_call: bool = False,
    ) -> None:
        super().__init__()
        self._device = device
        self._stream: PStream | None = None
        self._status = CallState.PENDING
        self.direction = direction
        self.parameters: dict[str, Any] = dict(parameters or {})
        self.custom_parameters: dict[str, str] = dict(custom_parameters or {})
        self.outbound_connection_id = temp_call_sid()
        self.reconnect_token = reconnect_token
        self.is_connect_token_call = is_connect_token_call
        self.codec = ""
        self._offer_sdp = offer_sdp
        self._pc: PeerConnection | None = None
        self._source: AudioSource | None = None
        self._remote = RemoteAudio()
        self._speaker: AudioSink | None = None
        self._is_answered = False
        self._was_connected = False
        self._media_open = False
        self._remote_sdp_applied = False
        self._muted = False
        self._cancelled_or_rejected = False
        self._signaling_reconnecting = False
        self._media_reconnecting = False
        self._restart_offer_pending = False
        self._health = MediaHealth(lost_after_s=MEDIA_LOST_AFTER_S, give_up_after_s=MEDIA_GIVE_UP_S)
        self._restart_task: asyncio.Task[None] | None = None
        self.ice_restarts = 0
        """How many ICE restarts this call attempted (diagnostics)."""
        self._pending_messages: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dtmf_lock = asyncio.Lock()
        self.feedback: list[dict[str, Any]] = []
        self.attach_stream(stream)

    # -- construction helpers ----------------------------------------------------------
    @classmethod
    def incoming(cls, device: Device, stream: PStream, invite: Invite) -> Call:
        """The pending Call for a server ``invite``."""
        parameters = dict(invite.parameters or {})
        parameters.setdefault("CallSid", invite.callsid)
        params_text = parameters.get("Params")
        custom = decode_params(params_text) if isinstance(params_text, str) else {}
        return cls(
            device,
            stream,
            direction=CallDirection.INCOMING,
            parameters=parameters,
            custom_parameters=custom,
            offer_sdp=invite.sdp,
            reconnect_token=invite.reconnect,
        )

    @classmethod
    def outgoing(
        cls,
        device: Device,
        stream: PStream,
        params: Mapping[str, Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        reconnect_token: str | None = None,
    ) -> Call:
        """An outgoing Call (or a connect-token call when ``reconnect_token`` is given)."""
        custom = {str(key): js_string(value) for key, value in params.items()}
        return cls(
            device,
            stream,
            direction=CallDirection.OUTGOING,
            parameters=parameters,
            custom_parameters=custom,
            reconnect_token=reconnect_token,
            is_connect_token_call=reconnect_token is not None,
        )

    def _stream_handlers(self) -> list[tuple[str, Callable[..., None]]]:
        """The signaling events a Call listens to, and its handler for each."""
        return [
            ("ringing", self._on_ringing),
            ("answer", self._on_answer),
            ("hangup", self._on_hangup),
            ("cancel", self._on_cancel),
            ("ack", self._on_ack),
            ("message", self._on_message),
            ("error", self._on_signaling_error),
            ("transportClose", self._on_transport_close),
        ]

    def attach_stream(self, stream: PStream) -> None:
        """Listen to ``stream`` (called again when the Device rebuilds its stream)."""
        if self._stream is not None:
            self._detach_stream()
        self._stream = stream
        for event, handler in self._stream_handlers():
            stream.on(event, handler)

    def _detach_stream(self) -> None:
        stream = self._stream
        if stream is None:
            return
        for event, handler in self._stream_handlers():
            stream.remove_listener(event, handler)
        self._stream = None

    # -- properties --------------------------------------------------------------------
    def status(self) -> CallState:
        """The current ``Call.State``."""
        return self._status

    @property
    def call_sid(self) -> str | None:
        """The gateway's CallSid, once known."""
        value = self.parameters.get("CallSid")
        return value if isinstance(value, str) else None

    @property
    def caller_info(self) -> dict[str, bool] | None:
        """``{"is_verified": ...}`` from ``StirStatus``, or None when absent."""
        stir = self.parameters.get("StirStatus")
        if not stir:
            return None
        return {"is_verified": stir == "TN-Validation-Passed-A"}

    @property
    def connect_token(self) -> str | None:
        """A token another Device can pass to ``connect(connect_token=...)`` to take the call."""
        if not self.call_sid or not self.reconnect_token:
            return None
        return encode_connect_token(self.reconnect_token, self.parameters, self.custom_parameters)

    @property
    def peer_connection(self) -> PeerConnection | None:
        """The media adapter, once media setup has started."""
        return self._pc

    def get_local_stream(self) -> AudioSource | None:
        """The audio source feeding this call (what the far end hears)."""
        return self._source

    def get_remote_stream(self) -> RemoteAudio | None:
        """The remote audio fan-out: ``add_sink()`` to record or redirect what we hear."""
        return self._remote if self._pc is not None else None

    def is_muted(self) -> bool:
        """Whether the local audio is muted."""
        return self._muted

    # -- actions -----------------------------------------------------------------------
    def accept(
        self,
        rtc_configuration: Mapping[str, Any] | None = None,
        rtc_constraints: Mapping[str, Any] | None = None,
    ) -> None:
        """Start media and answer (incoming) or send the invite (outgoing).

        A no-op unless the call is ``pending``. Media setup runs in the background;
        ``accept`` is emitted when the call is open.
        """
        if self._status is not CallState.PENDING:
            return
        self._status = CallState.CONNECTING
        if self.direction is CallDirection.INCOMING:
            self._is_answered = True
        self._spawn(self._start_media(rtc_configuration, rtc_constraints))

    def reject(self) -> None:
        """Refuse a pending incoming call (``reject`` to the gateway, event ``reject``)."""
        if self._status is not CallState.PENDING:
            return
        callsid = self.call_sid
        if self._stream is not None and callsid:
            self._stream.reject(callsid)
        self._cancelled_or_rejected = True
        self._status = CallState.CLOSED
        self._close_media()
        self.emit("reject")
        self._detach_stream()

    def ignore(self) -> None:
        """Stop ringing locally; nothing is sent and other devices keep ringing."""
        if self._status is not CallState.PENDING:
            return
        self._status = CallState.CLOSED
        self._device.sounds.stop_ringing_for(self)

    def disconnect(self) -> None:
        """Hang up. A no-op while ``pending`` or ``closed``."""
        if self._status in (CallState.PENDING, CallState.CLOSED):
            return
        self._hangup_and_close(message=None)

    def mute(self, should_mute: bool = True) -> None:
        """Send silence instead of the input (RTP keeps flowing); event ``mute`` on change."""
        should_mute = bool(should_mute)
        changed = should_mute != self._muted
        self._muted = should_mute
        if self._pc is not None:
            self._pc.muted = should_mute
        if changed:
            self.emit("mute", should_mute, self)

    def send_digits(self, digits: str) -> None:
        """Send DTMF: RFC 4733 when negotiated, else the signaling ``dtmf`` frame.

        ``w`` is a 500 ms pause after the digits before it; successive calls play
        in order. Over signaling the whole string (with its ``w``) goes in one
        frame and the gateway paces it. Raises ``InvalidArgumentError`` for any character
        outside ``0-9 * # w`` before anything is played or sent.
        """
        if not isinstance(digits, str) or not VALID_DIGITS.match(digits):
            raise InvalidArgumentError(
                "Illegal character passed into send_digits: use only 0-9, *, # and w"
            )
        self._spawn(self._play_dtmf_sounds(digits))
        pc = self._pc
        if pc is not None and pc.can_insert_dtmf:
            self._spawn(self._insert_dtmf_in_order(pc, digits))
            return
        stream = self._stream
        if stream is not None and stream.status is not StreamStatus.DISCONNECTED:
            stream.dtmf(self.call_sid or self.outbound_connection_id, digits)
        else:
            self.emit("error", GeneralErrors.ConnectionError("Could not send DTMF: signaling down"))

    async def _insert_dtmf_in_order(self, pc: PeerConnection, digits: str) -> None:
        """Play ``digits`` as RFC 4733: each run to its end, then 500 ms per ``w``.

        The per-call lock is FIFO, so the strings of successive ``send_digits``
        calls play one after the other and never cut each other's tones.
        """
        async with self._dtmf_lock:
            for part in DTMF_PARTS.findall(digits):
                if self._status is CallState.CLOSED or self._pc is not pc:
                    return
                if part == "w":
                    await asyncio.sleep(DTMF_PAUSE_MS / 1000)
                    continue
                try:
                    await pc.insert_dtmf(part, duration_ms=DTMF_TONE_MS, gap_ms=DTMF_GAP_MS)
                except (RuntimeError, ValueError) as exc:  # media closed or renegotiated
                    log.info("call %s: DTMF stopped: %s", self.call_sid, exc)
                    return

    async def _play_dtmf_sounds(self, digits: str) -> None:
        for char in digits:
            if char != "w":
                name = {"*": "dtmfs", "#": "dtmfh"}.get(char, f"dtmf{char}")
                self._device.sounds.play(name)
            await asyncio.sleep(DTMF_SOUND_SPACING_MS / 1000)

    def send_message(
        self,
        message: Mapping[str, Any] | None = None,
        *,
        content: Any = None,
        content_type: str | None = None,
        message_type: str | None = None,
    ) -> str:
        """Send a user-defined message on this call; returns its ``KX…`` voice event sid."""
        if message is not None:
            content = message.get("content", content)
            content_type = message.get("content_type", message.get("contentType", content_type))
            message_type = message.get("message_type", message.get("messageType", message_type))
        if content is None:
            raise InvalidArgumentError("`content` is empty")
        if not isinstance(message_type, str):
            raise InvalidArgumentError("`message_type` must be a string")
        if not message_type:
            raise InvalidArgumentError("`message_type` must be a non-empty string")
        if self._stream is None:
            raise InvalidStateError("Could not send CallMessage; Signaling channel is disconnected")
        callsid = self.call_sid
        if not callsid:
            raise InvalidStateError("Could not send CallMessage; Call has no CallSid")
        generator = self._device.options.voice_event_sid_generator
        sid = generator() if generator else voice_event_sid()
        self._pending_messages[sid] = {
            "content": content,
            "contentType": content_type,
            "messageType": message_type,
            "voiceEventSid": sid,
        }
        self._stream.send_message(callsid, content, content_type, message_type, sid)
        return sid

    async def post_feedback(self, score: int | None = None, issue: str | None = None) -> None:
        """Record call-quality feedback (1-5 and an optional issue name).

        There is no insights service here: the feedback is kept on ``call.feedback``
        and logged at INFO so an app's log pipeline can collect it.
        """
        if score is None:
            entry: dict[str, Any] = {"score": None, "issue": None, "declined": True}
        else:
            if isinstance(score, bool) or score not in FEEDBACK_SCORES:
                raise InvalidArgumentError(f"Feedback score must be one of {FEEDBACK_SCORES}")
            if issue is not None and issue not in FEEDBACK_ISSUES:
                raise InvalidArgumentError(f"Feedback issue must be one of {FEEDBACK_ISSUES}")
            entry = {"score": score, "issue": issue, "declined": False}
        entry["callsid"] = self.call_sid
        self.feedback.append(entry)
        log.info("call feedback %s", entry)

    # -- media -------------------------------------------------------------------------
    async def _start_media(
        self,
        rtc_configuration: Mapping[str, Any] | None,
        rtc_constraints: Mapping[str, Any] | None,
    ) -> None:
        stream = self._stream
        if stream is None or stream.status is StreamStatus.DISCONNECTED:
            self.emit("error", SignalingErrors.ConnectionDisconnected())
            self._close(emit_disconnect=True)
            return
        try:
            source = await self._device.audio_input(rtc_constraints)
        except TwilioError as error:
            self._fail_user_media(error)
            return
        except Exception as exc:  # a get_user_media hook failing in its own way
            self._fail_user_media(UserMediaErrors.AcquisitionFailedError(str(exc), exc))
            return
        if self._status is CallState.CLOSED:
            source.close()
            return
        self._source = source
        options = self._device.options
        config = dict(options.rtc_configuration)
        config.update(rtc_configuration or {})
        try:
            pc = self._device.create_peer_connection(config)
        except Exception as exc:  # e.g. ValueError: an invalid rtcConfiguration
            log.warning("creating the peer connection failed: %s", exc)
            self.emit("error", MediaErrors.ClientLocalDescFailed(str(exc), exc))
            if self.direction is CallDirection.INCOMING:
                self._hangup_and_close(message="Failed to answer: " + str(exc))
            else:
                self._close(emit_disconnect=True)
            return
        self._pc = pc
        pc.muted = self._muted
        pc.set_remote_sink(self._remote)
        pc.on_dtmf = self._on_dtmf_received
        pc.on_ice_gathering_failure = self._on_ice_gathering_failure
        if self.direction is CallDirection.INCOMING:
            await self._answer_incoming(pc, source)
        else:
            await self._offer_outgoing(pc, source)

    def _on_dtmf_received(self, digit: str) -> None:
        """A digit arrived as RFC 4733 from the far end (Python-only event ``dtmf``)."""
        self.emit("dtmf", digit)

    def _on_ice_gathering_failure(self, reason: str) -> None:
        """An offer or answer went out with no ICE candidate (JS ``IceGatheringFailed``).

        Event ``warning("ice-gathering-state", {"reason": "none"|"timeout"})``: the
        name and reasons the JS SDK reports this with. No media can flow, so once
        the call is open the media watcher reconnects (53405) and every ICE
        restart gathers again.
        """
        log.warning(
            "call %s: ICE gathering failed (%s)",
            self.call_sid or self.outbound_connection_id,
            reason,
        )
        self.emit("warning", "ice-gathering-state", {"reason": reason})

    async def _offer_outgoing(self, pc: PeerConnection, source: AudioSource) -> None:
        try:
            sdp = await pc.create_offer(source)
        except Exception as exc:
            log.warning("creating the offer failed: %s", exc)
            self.emit("error", MediaErrors.ClientLocalDescFailed(str(exc), exc))
            self._close(emit_disconnect=True)
            return
        if self._status is CallState.CLOSED or self._stream is None:
            await pc.close()
            return
        if self.reconnect_token and self.call_sid:
            self._stream.reconnect(sdp, self.call_sid, self.reconnect_token)
        else:
            self._stream.invite(
                sdp, self.outbound_connection_id, encode_params(self.custom_parameters)
            )

    async def _answer_incoming(self, pc: PeerConnection, source: AudioSource) -> None:
        assert self._offer_sdp is not None
        try:
            sdp = await pc.create_answer(self._offer_sdp, source)
        except Exception as exc:
            log.warning("answering the offer failed: %s", exc)
            self.emit("error", MediaErrors.ClientRemoteDescFailed(str(exc), exc))
            self._hangup_and_close(message="Failed to answer: " + str(exc))
            return
        if self._status is CallState.CLOSED:
            await pc.close()
            return
        callsid = self.call_sid
        if self._stream is not None and callsid:
            self._stream.answer(sdp, callsid)
        self._remote_sdp_applied = True
        self._on_media_open()

    async def _apply_remote_answer(self, sdp: str) -> None:
        if self._remote_sdp_applied or self._pc is None:
            return
        self._remote_sdp_applied = True
        try:
            await self._pc.apply_answer(sdp)
        except Exception as exc:
            log.warning("applying the answer failed: %s", exc)
            self.emit("error", MediaErrors.ClientRemoteDescFailed(str(exc), exc))
            self._hangup_and_close(message="Failed to apply answer: " + str(exc))
            return
        self._on_media_open()

    def _on_media_open(self) -> None:
        if self._status in (CallState.PENDING, CallState.CLOSED):
            self._close_media()
            return
        self._media_open = True
        if self._pc is not None:
            self._pc.muted = self._muted
            self.codec = self._pc.codec or ""
        self._maybe_open()

    def _maybe_open(self) -> None:
        if (
            self._is_answered
            and self._media_open
            and self._status in (CallState.CONNECTING, CallState.RINGING)
        ):
            self._status = CallState.OPEN
            if not self._was_connected:
                self._was_connected = True
                audio = self._device.audio
                self._speaker = audio.call_output(self) if audio is not None else None
                if self._speaker is not None:
                    self._remote.add_sink(self._speaker)
                self._spawn(self._watch_media())
                self.emit("accept", self)
                if self._pc is not None:
                    self.emit("audio", self._remote)

    # -- media reconnection (ICE restart) -----------------------------------------------
    async def _watch_media(self) -> None:
        """Feed inbound RTP progress to :class:`MediaHealth` and act on what it says."""
        loop = asyncio.get_running_loop()
        while not self._media_gone():
            assert self._pc is not None
            try:
                stats = await self._pc.get_stats()
            except Exception as exc:
                if self._media_gone():
                    return  # closed under us
                log.warning("media stats failed: %r", exc)
                stats = {}
            event = self._health.update(loop.time(), _inbound_packets(stats))
            if event is HealthEvent.LOST:
                self._on_media_lost()
            elif event is HealthEvent.RECOVERED:
                self._on_media_recovered()
            elif event is HealthEvent.GIVE_UP:
                self._on_media_fatal()
                return
            await asyncio.sleep(HEALTH_INTERVAL_S)

    def _media_gone(self) -> bool:
        """True once the call closed or its media was torn down."""
        return self._pc is None or self._status is CallState.CLOSED

    def _on_media_lost(self) -> None:
        if self._status is CallState.CLOSED or self._media_reconnecting:
            return
        log.info("call %s: no inbound media; restarting ICE", self.call_sid)
        self._media_reconnecting = True
        self._status = CallState.RECONNECTING
        self.emit("warning", "ice-connectivity-lost", {})
        self.emit("reconnecting", MediaErrors.ConnectionError("Media connection failed."))
        self._restart_task = asyncio.ensure_future(self._restart_loop())
        self._restart_task.add_done_callback(self._task_done)

    async def _restart_loop(self) -> None:
        """ICE restarts until media flows again (or the 30 s give-up ends the call)."""
        attempt = 0
        while self._media_reconnecting and self._status is not CallState.CLOSED:
            pc, stream, callsid = self._pc, self._stream, self.call_sid
            if pc is None or callsid is None:
                return
            if stream is not None and stream.status is not StreamStatus.DISCONNECTED:
                try:
                    offer = await pc.restart_ice_offer()
                except Exception as exc:
                    log.warning("ICE restart offer failed: %s", exc)
                else:
                    self.ice_restarts += 1
                    self._restart_offer_pending = True
                    stream.reinvite(offer, callsid)
            attempt += 1
            await asyncio.sleep(min(RESTART_RETRY_S * attempt, RESTART_RETRY_MAX_S))

    async def _apply_restart_answer(self, sdp: str) -> None:
        pc = self._pc
        if pc is None:
            return
        try:
            await pc.apply_ice_restart_answer(sdp)
        except Exception as exc:  # the next loop iteration tries again
            log.info("ICE restart did not connect: %s", exc)

    def _on_media_recovered(self) -> None:
        if not self._media_reconnecting:
            return
        log.info("call %s: media is back", self.call_sid)
        self._media_reconnecting = False
        self._restart_offer_pending = False
        if self._restart_task is not None:
            self._restart_task.cancel()
            self._restart_task = None
        self.emit("warning-cleared", "ice-connectivity-lost")
        self._maybe_reconnected()

    def _on_media_fatal(self) -> None:
        """30 s without media: hang up with a reason, then ``error`` 53405 (legacy 31003)."""
        if self._status is CallState.CLOSED:
            return
        self._media_reconnecting = False
        if self._restart_task is not None:
            self._restart_task.cancel()
        self._hangup_and_close(message=MEDIA_FAILED_MESSAGE)
        self.emit(
            "error",
            MediaErrors.ConnectionError(
                MEDIA_FAILED_MESSAGE, {"code": codes.CONNECTION_TIMEOUT, "message": "ICE failed"}
            ),
        )

    def _fail_user_media(self, error: TwilioError) -> None:
        self._hangup_and_close(message=None)
        self.emit("error", error)

    # -- signaling handlers ------------------------------------------------------------
    def _is_mine(self, callsid: str | None) -> bool:
        return callsid is not None and callsid in (self.call_sid, self.outbound_connection_id)

    def _on_ringing(self, message: Ringing) -> None:
        if self.direction is not CallDirection.OUTGOING or self._status not in (
            CallState.CONNECTING,
            CallState.RINGING,
        ):
            return
        if message.callsid:
            self.parameters["CallSid"] = message.callsid
        self._status = CallState.RINGING
        self.emit("ringing", bool(message.sdp))
        if message.sdp:
            self._spawn(self._apply_remote_answer(message.sdp))

    def _on_answer(self, message: Answer) -> None:
        if message.callsid and self.call_sid and message.callsid != self.call_sid:
            return
        incoming = self.direction is CallDirection.INCOMING and not self.is_connect_token_call
        if incoming and not self._is_mine(message.callsid):
            return
        if self._status in (CallState.CLOSED, CallState.PENDING):
            return
        if message.reconnect:
            self.reconnect_token = message.reconnect
        if message.callsid and not incoming:
            self.parameters["CallSid"] = message.callsid
        if self._restart_offer_pending and message.sdp:
            self._restart_offer_pending = False
            self._spawn(self._apply_restart_answer(message.sdp))
        if self._signaling_reconnecting:
            self._signaling_reconnecting = False
            self._maybe_reconnected()
            return
        if incoming or self._is_answered:
            return
        self._is_answered = True
        if message.sdp:
            self._spawn(self._apply_remote_answer(message.sdp))
        else:
            self._maybe_open()

    def _maybe_reconnected(self) -> None:
        """Back to ``open`` once neither signaling nor media is reconnecting."""
        if (
            self._status is CallState.RECONNECTING
            and not self._signaling_reconnecting
            and not self._media_reconnecting
        ):
            self._status = CallState.OPEN
            self.emit("reconnected")

    def _on_hangup(self, message: Hangup) -> None:
        if message.callsid is not None and not self._is_mine(message.callsid):
            return
        if self._status in (CallState.PENDING, CallState.CLOSED):
            return
        if message.error is not None:
            error = call_error_from_hangup(
                dict(message.error),
                self._device.options.enable_improved_signaling_error_precision,
            )
            self.emit("error", error)
        self._close(emit_disconnect=True)

    def _on_cancel(self, message: Cancel) -> None:
        if message.callsid != self.call_sid:
            return
        if self._status is not CallState.PENDING and not (
            self._status is CallState.CLOSED and not self._was_connected and self._pc is None
        ):
            return
        already_closed = self._status is CallState.CLOSED
        self._cancelled_or_rejected = True
        self._status = CallState.CLOSED
        self._close_media()
        self.emit("cancel")
        if not already_closed:
            self._device.sounds.stop_ringing_for(self)
        self._detach_stream()

    def _on_ack(self, message: Ack) -> None:
        if message.acktype != "message" or not self._is_mine(message.callsid):
            return
        sid = message.voiceeventsid
        if sid is None or sid not in self._pending_messages:
            return
        self.emit("messageSent", self._pending_messages.pop(sid))

    def _on_message(self, message: CallMessage) -> None:
        if not self._is_mine(message.callsid):
            return
        self.emit(
            "messageReceived",
            {
                "content": message.content,
                "contentType": message.contenttype,
                "messageType": message.messagetype,
                "voiceEventSid": message.voiceeventsid,
            },
        )

    def _on_signaling_error(self, info: Mapping[str, Any]) -> None:
        sid = info.get("voiceeventsid") if isinstance(info, Mapping) else None
        raw = info.get("error") if isinstance(info, Mapping) else None
        if not isinstance(sid, str) or not isinstance(raw, Mapping):
            return
        if not self._is_mine(info.get("callsid")) or sid not in self._pending_messages:
            return
        del self._pending_messages[sid]
        self.emit("error", call_error_from_message_error(dict(raw)))

    def _on_transport_close(self) -> None:
        self.emit("transportClose")
        if self._status is CallState.CLOSED:
            return
        if self.reconnect_token is None:
            if self._status is not CallState.PENDING:
                self._status = CallState.CLOSED
            return
        if self._status is not CallState.PENDING:
            self._status = CallState.RECONNECTING
            self._signaling_reconnecting = True
            self.emit("reconnecting", SignalingErrors.ConnectionDisconnected())

    def on_signaling_connected(self) -> None:
        """After a (re)``connected``: re-invite with our reconnect token if we have media."""
        stream = self._stream
        if (
            stream is None
            or self._status is CallState.CLOSED
            or not self.reconnect_token
            or not self.call_sid
            or self._pc is None
            or not self._media_open
        ):
            return
        sdp = self._pc.local_sdp
        if sdp:
            stream.reconnect(sdp, self.call_sid, self.reconnect_token)

    # -- teardown ----------------------------------------------------------------------
    def _hangup_and_close(self, message: str | None) -> None:
        stream = self._stream
        if stream is not None and stream.status is not StreamStatus.DISCONNECTED:
            stream.hangup(self.call_sid or self.outbound_connection_id, message)
        self._close(emit_disconnect=True)

    def _close(self, *, emit_disconnect: bool) -> None:
        if self._status is CallState.CLOSED and not emit_disconnect:
            return
        was_closed = self._status is CallState.CLOSED
        self._status = CallState.CLOSED
        self._close_media()
        if emit_disconnect and not was_closed and not self._cancelled_or_rejected:
            self._device.sounds.play("disconnect")
            self.emit("disconnect", self)
        self._detach_stream()

    def _close_media(self) -> None:
        if self._restart_task is not None:
            self._restart_task.cancel()
            self._restart_task = None
        pc, self._pc = self._pc, None
        source, self._source = self._source, None
        if pc is not None:
            self._spawn(pc.close(), keep=True)
        if source is not None and source is not self._device.options.file_input_stream:
            source.close()  # ours (from a path or get_user_media); the app's own stays open
        if self._speaker is not None:
            self._speaker.close()
            self._speaker = None
        self._remote.close()

    def _spawn(self, coro: Any, keep: bool = False) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed (31000 UnknownError)", exc_info=task.exception())

    def __repr__(self) -> str:
        return (
            f"<Call {self.direction} {self.call_sid or self.outbound_connection_id} {self._status}>"
        )


def _inbound_packets(stats: Mapping[str, Any]) -> int:
    """Packets that reached us over the media path: SRTP and SRTCP alike.

    RTCP counts too: while the far party is silent or its own path is down, the
    gateway still sends receiver reports on ours, so only a dead path reads as lost.
    """
    transport = stats.get("transport")
    if isinstance(transport, Mapping) and transport.get("packetsReceived") is not None:
        return int(transport["packetsReceived"])
    return int(stats.get("packetsReceived") or 0)


__all__ = ["Call", "CallDirection", "CallState", "Codec"]

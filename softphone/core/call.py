"""``Call``: one call's media, tasks and events around its pure lifecycle machine.

Status: pending → connecting → ringing → open → (reconnecting ↔ open) → closed. Every
rule about which event moves the call where lives in
:mod:`softphone.core.call_machine`; this module feeds it (app calls, signaling
frames, media results, inbound-packet readings) and carries out the actions it
returns. A Call listens to the Device's signaling stream itself; the machine keeps
only frames for its own CallSid (or its temporary ``TJS…`` id before the gateway
assigned a CallSid).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from softphone.audio_backends.base import AudioSink, AudioSource
from softphone.core import call_machine as cm
from softphone.core.call_host import CallHost
from softphone.core.call_machine import CallDirection, CallMachine, CallState
from softphone.core.call_quality import (
    CallQuality,
    EmitSample,
    EmitWarning,
    EmitWarningCleared,
    LowBytes,
    PublishWarning,
    QualityOutput,
)
from softphone.core.call_volume import VOLUME_INTERVAL_S, CallVolume, OutputTap
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
from softphone.core.media_health import GIVE_UP_AFTER_S, LOST_AFTER_S
from softphone.core.remote_audio import RemoteAudio
from softphone.insights import events as insights
from softphone.insights.call_reporter import CallReporter
from softphone.insights.events import CallInfo
from softphone.media.pc_diagnostics import StateWatch, candidates
from softphone.media.peer_connection import PeerConnection
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
from softphone.version import __version__

log = logging.getLogger("softphone.call")

DTMF_PAUSE_MS = 500
DTMF_TONE_MS = 160
DTMF_GAP_MS = 70
DTMF_SOUND_SPACING_MS = 200
HEALTH_INTERVAL_S = 0.5
SAMPLE_EVERY_POLLS = 2
"""A ``sample`` every second poll of the media: once a second, as in the JS SDK."""
MEDIA_LOST_AFTER_S = LOST_AFTER_S
MEDIA_GIVE_UP_S = GIVE_UP_AFTER_S
RESTART_RETRY_S = 1.0
RESTART_RETRY_MAX_S = 4.0
MEDIA_FAILED_MESSAGE = cm.MEDIA_FAILED_MESSAGE
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

CallDirectionType = CallDirection


class Codec(enum.StrEnum):
    """``Call.Codec`` of the JS SDK."""

    OPUS = "opus"
    PCMU = "pcmu"


class Call(EventEmitter):
    """A call: created by ``device.connect()`` (outgoing) or an ``incoming`` event.

    Never construct one yourself. :meth:`status` moves pending -> connecting ->
    ringing -> open -> (reconnecting <-> open) -> closed.

    **Events** (``call.on(name, listener)``), exactly the JS SDK's names:

    ``ringing`` ``(has_early_media)``
        The far end is ringing (outgoing calls); True when its audio already flows.
    ``accept`` ``(call)``
        The call opened (first time only): media flows both ways.
    ``audio`` ``(remote)``
        The remote audio output exists: a :class:`~softphone.core.remote_audio.RemoteAudio`
        (``remote.add_sink(sink)`` records or redirects what the far end says).
    ``volume`` ``(input_volume, output_volume)``
        Every 50 ms while open: the levels sent and heard, 0..1 (JS scale).
    ``sample`` ``(sample)``
        Once a second while open: an :class:`~softphone.core.rtc_sample.RTCSample`
        (packets, loss, jitter, rtt, MOS; ``sample.to_dict()`` has the JS keys).
    ``warning`` ``(name, data)`` and ``warning-cleared`` ``(name)``
        A call-quality warning (``high-rtt``, ``high-jitter``, ``high-packet-loss``,
        ``low-mos``, ``low-bytes-received``, ``ice-gathering-state``...) raised or
        cleared; ``ice-connectivity-lost`` comes with its name only, as in JS.
    ``mute`` ``(is_muted, call)``
        :meth:`mute` changed the mute state.
    ``dtmf`` ``(digit)``
        Python only: a digit the far end sent as RFC 4733 (e.g. ``send_digits``).
    ``messageSent`` ``(message)`` and ``messageReceived`` ``(message)``
        A user-defined message (:meth:`send_message`) was acknowledged by the gateway,
        or arrived; ``message`` has ``content``, ``contentType``, ``messageType`` and
        ``voiceEventSid``.
    ``reconnecting`` ``(error)`` and ``reconnected`` ``()``
        Media (53405) or signaling (53001) was lost and is being restored; it was.
    ``disconnect`` ``(call)``
        The call ended (hung up by either side or after an error), except by cancel or
        reject.
    ``cancel`` ``()``
        The caller gave up before this (incoming) call was answered.
    ``reject`` ``()``
        :meth:`reject` refused this incoming call.
    ``error`` ``(error)``
        A :class:`~softphone.core.errors.TwilioError`: the far end or the gateway ended
        the call with an error (31005, or the precise class), the input could not be
        acquired (31401, 31402), SDP failed (53400, 53402), media could not be restored
        (53405), a message was refused (31210, 31212)...
    ``transportClose`` ``()``
        The signaling connection under the call closed (the call may reconnect).

    **Attributes**:

    ``direction``
        ``Call.CallDirection.INCOMING`` or ``OUTGOING``.
    ``parameters``
        What the gateway says about the call: ``CallSid``, ``From``, ``To``,
        ``AccountSid``... (incoming: from the invite; outgoing: ``CallSid`` once known).
    ``custom_parameters``
        The ``params`` given to ``device.connect()`` (outgoing) or sent by the caller
        (incoming), as strings.
    ``codec``
        The negotiated codec in ``Call.Codec`` spelling (``"opus"``, ``"pcmu"``);
        ``""`` until the call opens.
    ``outbound_connection_id``
        The temporary ``TJS...`` id used before the gateway assigns a CallSid.
    ``ice_restarts``
        How many ICE restarts the call attempted (diagnostics).
    ``feedback``
        The entries recorded by :meth:`post_feedback`.
    ``State``, ``CallDirection``, ``Codec``
        The JS enums :class:`CallState`, :class:`CallDirection`, :class:`Codec`.
    """

    State = CallState
    CallDirection = CallDirection
    Codec = Codec

    def __init__(
        self,
        device: CallHost,
        stream: PStream,
        *,
        direction: CallDirectionType,
        parameters: Mapping[str, Any] | None = None,
        custom_parameters: Mapping[str, str] | None = None,
        offer_sdp: str | None = None,
        reconnect_token: str | None = None,
        is_connect_token_call: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._device = device
        self._clock = clock
        self._stream: PStream | None = None
        self.direction = direction
        self.parameters: dict[str, Any] = dict(parameters or {})
        self.custom_parameters: dict[str, str] = dict(custom_parameters or {})
        self.outbound_connection_id = temp_call_sid()
        callsid = self.parameters.get("CallSid")
        self._machine = CallMachine(
            direction,
            self.outbound_connection_id,
            now=clock(),
            callsid=callsid if isinstance(callsid, str) else None,
            reconnect_token=reconnect_token,
            is_connect_token_call=is_connect_token_call,
            lost_after_s=MEDIA_LOST_AFTER_S,
            give_up_after_s=MEDIA_GIVE_UP_S,
        )
        self.codec = ""
        self._quality = CallQuality(self._machine.created_at)
        self._volume = CallVolume()
        self._offer_sdp = offer_sdp
        self._media_args: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None)
        self._pc: PeerConnection | None = None
        self._state_watch: StateWatch | None = None
        self._selected_pair: Mapping[str, Any] | None = None
        self._dtls_state: str | None = None
        self._source: AudioSource | None = None
        self._remote = RemoteAudio()
        self._speaker: AudioSink | None = None
        self._muted = False
        self._restart_task: asyncio.Task[None] | None = None
        self.ice_restarts = 0
        """How many ICE restarts this call attempted (diagnostics)."""
        self._pending_messages: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dtmf_lock = asyncio.Lock()
        self.feedback: list[dict[str, Any]] = []
        self._insights = CallReporter(
            device.publisher,
            self.insights_info,
            sdk_version=__version__,
            dscp=bool(device.options.dscp),
        )
        self.attach_stream(stream)
        if direction is CallDirection.INCOMING:
            self._insights.publish(insights.connection_event("incoming"))
        else:
            self._insights.publish(
                insights.outgoing(
                    preflight=bool(device.options.preflight), reconnect=is_connect_token_call
                )
            )

    def insights_info(self) -> CallInfo:
        """The call's ids for an insights event, as they are when it is published."""
        return CallInfo(
            call_sid=self.call_sid,
            temp_call_sid=self.outbound_connection_id,
            direction=self.direction.value,
            codec=self.codec or None,
        )

    # -- construction helpers ----------------------------------------------------------
    @classmethod
    def incoming(cls, device: CallHost, stream: PStream, invite: Invite) -> Call:
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
        device: CallHost,
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
        return self._machine.state

    @property
    def machine(self) -> CallMachine:
        """The pure lifecycle machine (its state, flags and timeline), read-only use."""
        return self._machine

    @property
    def reconnect_token(self) -> str | None:
        """The signaling reconnect token the gateway gave this call, if any."""
        return self._machine.reconnect_token

    @property
    def is_connect_token_call(self) -> bool:
        """True for a call taken over with ``connect(connect_token=...)``."""
        return self._machine.is_connect_token_call

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
        self._media_args = (rtc_configuration, rtc_constraints)
        self._process(cm.Accept())

    def reject(self) -> None:
        """Refuse a pending incoming call (``reject`` to the gateway, event ``reject``)."""
        self._process(cm.Reject())

    def ignore(self) -> None:
        """Stop ringing locally; nothing is sent and other devices keep ringing."""
        self._process(cm.Ignore())

    def disconnect(self) -> None:
        """Hang up. A no-op while ``pending`` or ``closed``."""
        self._process(cm.Disconnect())

    def mute(self, should_mute: bool = True) -> None:
        """Send silence instead of the input (RTP keeps flowing); event
        ``mute(is_muted, call)`` on change."""
        should_mute = bool(should_mute)
        changed = should_mute != self._muted
        self._muted = should_mute
        if self._pc is not None:
            self._pc.muted = should_mute
        if changed:
            self._insights.publish(insights.muted(should_mute))
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
            self._emit_error(GeneralErrors.ConnectionError("Could not send DTMF: signaling down"))

    async def _insert_dtmf_in_order(self, pc: PeerConnection, digits: str) -> None:
        """Play ``digits`` as RFC 4733: each run to its end, then 500 ms per ``w``.

        The per-call lock is FIFO, so the strings of successive ``send_digits``
        calls play one after the other and never cut each other's tones.
        """
        async with self._dtmf_lock:
            for part in DTMF_PARTS.findall(digits):
                if self.status() is CallState.CLOSED or self._pc is not pc:
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

        Published to insights as ``feedback/received`` (or ``received-none``), even with
        ``publish_events`` off as in the JS SDK; also kept on ``call.feedback`` and
        logged at INFO.
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
        self._insights.publish(insights.feedback(score, issue))
        log.info("call feedback %s", entry)

    # -- the machine -------------------------------------------------------------------
    def _process(self, event: cm.CallEvent) -> None:
        """Feed ``event`` to the machine and carry out its actions in order."""
        for action in self._machine.process(event, self._clock()):
            self._execute(action)

    def _execute(self, action: cm.CallAction) -> None:
        """Carry out one action of the machine: the only place a Call does I/O."""
        stream = self._stream
        stream_up = stream is not None and stream.status is not StreamStatus.DISCONNECTED
        match action:
            case cm.Emit("error", (TwilioError() as error,)):
                self._emit_error(error)
            case cm.Emit(name, args):
                # The lifecycle events the machine decides: ringing, accept, reconnecting,
                # reconnected, disconnect, cancel, reject, warning, warning-cleared,
                # transportClose (arguments in the class docstring).
                self.emit(name, *cm.replace_call(args, self))
            case cm.Publish(event):
                self._insights.publish(event)
            case cm.StartMedia():
                self._spawn(self._start_media(*self._media_args))
            case cm.SendInvite(sdp, temp_sid):
                if stream is not None:
                    stream.invite(sdp, temp_sid, encode_params(self.custom_parameters))
            case cm.SendReconnect(sdp, callsid, token):
                if stream is not None:
                    stream.reconnect(sdp, callsid, token)
            case cm.SendAnswer(sdp, callsid):
                if stream is not None:
                    stream.answer(sdp, callsid)
            case cm.SendReject(callsid):
                if stream is not None:
                    stream.reject(callsid)
            case cm.SendHangup(callsid, message):
                if stream is not None and stream_up:
                    stream.hangup(callsid, message)
            case cm.ApplyRemoteAnswer(sdp):
                self._spawn(self._apply_remote_answer(sdp))
            case cm.ApplyRestartAnswer(sdp):
                self._spawn(self._apply_restart_answer(sdp))
            case cm.MediaOpened():
                if self._pc is not None:
                    self._pc.muted = self._muted
                    self.codec = (self._pc.codec or "").lower()  # JS Call.Codec spelling
            case cm.CallConnected():
                self._on_connected()
            case cm.EmitAudio():
                if self._pc is not None:
                    self.emit("audio", self._remote)  # event audio(remote)
            case cm.CloseMedia():
                self._close_media()
            case cm.StopRinging():
                self._device.sounds.stop_ringing_for(self)
            case cm.PlaySound(name):
                self._device.sounds.play(name)
            case cm.DetachStream():
                self._detach_stream()
            case cm.StartIceRestart():
                self._restart_task = asyncio.ensure_future(self._restart_loop())
                self._restart_task.add_done_callback(self._task_done)
            case cm.StopIceRestart():
                if self._restart_task is not None:
                    self._restart_task.cancel()
                    self._restart_task = None
            case cm.LearnCallSid(callsid):
                self.parameters["CallSid"] = callsid

    def _emit_error(self, error: TwilioError) -> None:
        """Event ``error(error)``, also published (JS: every Call error is published)."""
        self._insights.publish(insights.connection_error(error.code, error.message))
        self.emit("error", error)

    def _on_connected(self) -> None:
        """First open: codec settings to insights, remote audio to the speaker, the watch."""
        if self._pc is not None and self._pc.local_sdp:
            self._insights.publish(insights.codec_settings(self._pc.local_sdp))
        self._speaker = self._device.call_output(self)
        if self._speaker is not None:
            self._remote.add_sink(self._speaker)
        if self._pc is not None:
            self._pc.set_local_tap(self._volume.push_input)
        self._remote.add_sink(OutputTap(self._volume))
        self._spawn(self._watch_media())
        self._spawn(self._meter_volume())

    # -- media -------------------------------------------------------------------------
    async def _start_media(
        self,
        rtc_configuration: Mapping[str, Any] | None,
        rtc_constraints: Mapping[str, Any] | None,
    ) -> None:
        stream = self._stream
        if stream is None or stream.status is StreamStatus.DISCONNECTED:
            self._process(cm.SetupFailed(SignalingErrors.ConnectionDisconnected()))
            return
        try:
            source = await self._device.audio_input(rtc_constraints)
        except TwilioError as exc:
            denied = exc.code == 31208
            failure_info = {"code": exc.code, "message": exc.message}
            self._insights.publish(
                insights.get_user_media_failed(rtc_constraints or {}, failure_info, denied=denied)
            )
            self._process(cm.SetupFailed(exc, hangup=True, error_first=False))
            return
        except Exception as exc:  # a get_user_media hook failing in its own way
            failure = UserMediaErrors.AcquisitionFailedError(str(exc), exc)
            self._process(cm.SetupFailed(failure, hangup=True, error_first=False))
            return
        self._insights.publish(insights.get_user_media_succeeded(rtc_constraints or {}))
        if self.status() is CallState.CLOSED:
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
            incoming = self.direction is CallDirection.INCOMING
            self._process(
                cm.SetupFailed(
                    MediaErrors.ClientLocalDescFailed(str(exc), exc),
                    hangup=incoming,
                    message="Failed to answer: " + str(exc) if incoming else None,
                )
            )
            return
        self._pc = pc
        pc.muted = self._muted
        pc.set_remote_sink(self._remote)
        pc.on_dtmf = self._on_dtmf_received
        pc.on_ice_gathering_failure = self._on_ice_gathering_failure
        pc.on_connection_state_change = self._on_connection_state
        self._state_watch = StateWatch(pc, self._publish_pc_state)
        if self.direction is CallDirection.INCOMING:
            await self._answer_incoming(pc, source)
        else:
            await self._offer_outgoing(pc, source)

    def _on_connection_state(self, state: str) -> None:
        """ICE/DTLS ``failed`` starts a media reconnection; ``connected`` ends one.

        aiortc has no ``disconnected``: its ``failed`` comes after about 30 s of
        failed consent checks, so the silence watch usually acts first.
        """
        if state in ("failed", "connected") and self.status() is not CallState.PENDING:
            self._process(cm.IceConnectionState(state))

    def _publish_local_candidates(self, pc: PeerConnection) -> None:
        """``ice-candidate`` for each local candidate gathered (JS: one per candidate)."""
        found = candidates(pc)
        for candidate in found[0] if found is not None else []:
            self._insights.publish(insights.ice_candidate(candidate))

    def _publish_selected_pair(self, pair: object) -> None:
        """``selected-ice-candidate-pair`` when the media path is chosen or changes."""
        if not isinstance(pair, Mapping) or pair == self._selected_pair:
            return
        self._selected_pair = pair
        local = {
            "type": pair.get("localCandidateType"),
            "ip": pair.get("localAddress"),
            "port": pair.get("localPort"),
            "protocol": pair.get("protocol"),
        }
        remote = {
            "type": pair.get("remoteCandidateType"),
            "ip": pair.get("remoteAddress"),
            "port": pair.get("remotePort"),
            "protocol": pair.get("protocol"),
        }
        self._insights.publish(insights.selected_ice_candidate_pair(local, remote))

    def _publish_pc_state(self, kind: str, state: str) -> None:
        """Each peer-connection, ICE, DTLS and signaling state to insights (JS levels)."""
        if kind == "dtls":
            self._dtls_state = state
            event = insights.dtls_transport_state(state)
        elif kind == "ice":
            event = insights.ice_connection_state(state)
        elif kind == "signaling":
            event = insights.signaling_state(state)
        else:
            event = insights.pc_connection_state(state, self._dtls_state)
        self._insights.publish(event)

    def _on_dtmf_received(self, digit: str) -> None:
        """A digit arrived as RFC 4733 from the far end: Python-only event ``dtmf(digit)``."""
        self.emit("dtmf", digit)

    def _on_ice_gathering_failure(self, reason: str) -> None:
        """An offer or answer went out with no ICE candidate (JS ``IceGatheringFailed``).

        Event ``warning("ice-gathering-state", {"reason": "none"|"timeout"})``: the
        name and reasons the JS SDK reports this with. During a call this also
        starts a media reconnection (53405); every ICE restart gathers again.
        """
        log.warning("call %s: ICE gathering failed (%s)", self._machine.call_id, reason)
        self._process(cm.IceGatheringFailed(reason))

    async def _offer_outgoing(self, pc: PeerConnection, source: AudioSource) -> None:
        try:
            sdp = await pc.create_offer(source)
        except Exception as exc:
            log.warning("creating the offer failed: %s", exc)
            self._process(cm.SetupFailed(MediaErrors.ClientLocalDescFailed(str(exc), exc)))
            return
        if self.status() is CallState.CLOSED:
            await pc.close()
            return
        self._publish_local_candidates(pc)
        self._process(cm.LocalOffer(sdp))

    async def _answer_incoming(self, pc: PeerConnection, source: AudioSource) -> None:
        assert self._offer_sdp is not None
        try:
            sdp = await pc.create_answer(self._offer_sdp, source)
        except Exception as exc:
            log.warning("answering the offer failed: %s", exc)
            error = MediaErrors.ClientRemoteDescFailed(str(exc), exc)
            message = "Failed to answer: " + str(exc)
            self._process(cm.SetupFailed(error, hangup=True, message=message))
            return
        if self.status() is CallState.CLOSED:
            await pc.close()
            return
        self._publish_local_candidates(pc)
        self._process(cm.LocalAnswer(sdp))

    async def _apply_remote_answer(self, sdp: str) -> None:
        pc = self._pc
        if pc is None:
            return
        try:
            await pc.apply_answer(sdp)
        except Exception as exc:
            log.warning("applying the answer failed: %s", exc)
            error = MediaErrors.ClientRemoteDescFailed(str(exc), exc)
            message = "Failed to apply answer: " + str(exc)
            self._process(cm.SetupFailed(error, hangup=True, message=message))
            return
        self._process(cm.RemoteAnswerApplied())

    # -- media reconnection (ICE restart) -----------------------------------------------
    async def _watch_media(self) -> None:
        """Poll the media twice a second: packet counts for the machine, a sample a second.

        The machine decides lost / back / give up from the packet counts; every
        second poll feeds :class:`CallQuality`, which yields ``sample`` and the
        quality warnings (the low-bytes ones also go to the machine).
        """
        polls = 0
        while not self._media_gone():
            assert self._pc is not None
            try:
                stats = await self._pc.get_stats()
            except Exception as exc:
                if self._media_gone():
                    return  # closed under us
                log.warning("media stats failed: %r", exc)
                stats = {}
            if self._media_gone():
                return
            self._process(cm.InboundPackets(_inbound_packets(stats)))
            self._publish_selected_pair(stats.get("selectedCandidatePair"))
            polls += 1
            if stats and polls % SAMPLE_EVERY_POLLS == 0 and not self._media_gone():
                now = self._clock()
                for output in self._quality.process(stats, now, muted=self._muted):
                    self._on_quality(output)
            await asyncio.sleep(HEALTH_INTERVAL_S)

    async def _meter_volume(self) -> None:
        """Every 50 ms: event ``volume(input, output)`` (0..1) and the levels for the next
        sample."""
        while not self._media_gone():
            reading = self._volume.read()
            self._quality.add_volume(reading.input_level, reading.output_level)
            self.emit("volume", reading.input_volume, reading.output_volume)
            await asyncio.sleep(VOLUME_INTERVAL_S)

    def _on_quality(self, output: QualityOutput) -> None:
        """Carry out one output of the quality monitor: events ``sample``, ``warning``,
        ``warning-cleared``, insights, and low-bytes readings for the machine."""
        match output:
            case EmitSample(sample, codec):
                self.codec = codec or self.codec
                latest = self._volume.latest
                self._insights.sample(sample.to_dict(), latest.input_volume, latest.output_volume)
                self.emit("sample", sample)  # event sample(RTCSample), once a second
            case EmitWarning(name, data):
                self.emit("warning", name, data)  # event warning(name, data)
            case PublishWarning(stat, name, threshold, value, cleared):
                event = insights.quality_warning(
                    stat, name, threshold, value, cleared=cleared, muted=self._muted
                )
                self._insights.publish(event)
            case EmitWarningCleared(name):
                self.emit("warning-cleared", name)  # event warning-cleared(name)
            case LowBytes(name, active):
                if self.status() is not CallState.CLOSED:
                    self._process(cm.LowBytesWarning(name, active))

    def _media_gone(self) -> bool:
        """True once the call closed or its media was torn down."""
        return self._pc is None or self.status() is CallState.CLOSED

    async def _restart_loop(self) -> None:
        """ICE restarts until media flows again (or the 30 s give-up ends the call)."""
        log.info("call %s: no inbound media; restarting ICE", self.call_sid)
        attempt = 0
        while self._machine.media_reconnecting and self.status() is not CallState.CLOSED:
            pc, stream, callsid = self._pc, self._stream, self.call_sid
            if pc is None or callsid is None:
                return
            if stream is not None and stream.status is not StreamStatus.DISCONNECTED:
                try:
                    offer = await pc.restart_ice_offer()
                except Exception as exc:
                    log.warning("ICE restart offer failed: %s", exc)
                else:
                    if self.status() is CallState.CLOSED:
                        return
                    self.ice_restarts += 1
                    self._process(cm.RestartOfferSent())
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

    # -- signaling handlers ------------------------------------------------------------
    def _is_mine(self, callsid: str | None) -> bool:
        return self._machine.is_mine(callsid)

    def _on_ringing(self, message: Ringing) -> None:
        self._process(cm.RingingFrame(message.callsid, message.sdp))

    def _on_answer(self, message: Answer) -> None:
        self._process(cm.AnswerFrame(message.callsid, message.sdp, message.reconnect))

    def _on_hangup(self, message: Hangup) -> None:
        error = None
        if message.error is not None:
            error = call_error_from_hangup(
                dict(message.error),
                self._device.options.enable_improved_signaling_error_precision,
            )
        self._process(cm.HangupFrame(message.callsid, error))

    def _on_cancel(self, message: Cancel) -> None:
        self._process(cm.CancelFrame(message.callsid))

    def _on_ack(self, message: Ack) -> None:
        """The gateway acknowledged one of our messages: event ``messageSent(message)``."""
        if message.acktype != "message" or not self._is_mine(message.callsid):
            return
        sid = message.voiceeventsid
        if sid is None or sid not in self._pending_messages:
            return
        sent = self._pending_messages.pop(sid)
        self._insights.publish(
            insights.call_message(sent["messageType"], sent["contentType"], sid, sent=True)
        )
        self.emit("messageSent", sent)

    def _on_message(self, message: CallMessage) -> None:
        """A user-defined message for this call: event ``messageReceived(message)``."""
        if not self._is_mine(message.callsid):
            return
        if message.messagetype and message.voiceeventsid:
            self._insights.publish(
                insights.call_message(
                    message.messagetype, message.contenttype, message.voiceeventsid, sent=False
                )
            )
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
        """The gateway refused one of our messages: event ``error`` (31210, 31212...)."""
        sid = info.get("voiceeventsid") if isinstance(info, Mapping) else None
        raw = info.get("error") if isinstance(info, Mapping) else None
        if not isinstance(sid, str) or not isinstance(raw, Mapping):
            return
        if not self._is_mine(info.get("callsid")) or sid not in self._pending_messages:
            return
        del self._pending_messages[sid]
        error = call_error_from_message_error(dict(raw))
        self._insights.publish(insights.call_message_error(error.code, error.message, sid))
        self._emit_error(error)

    def _on_transport_close(self) -> None:
        self._process(cm.TransportClosed())

    def on_signaling_connected(self) -> None:
        """After a (re)``connected``: re-invite with our reconnect token if we have media."""
        pc = self._pc
        self._process(cm.SignalingConnected(pc.local_sdp if pc is not None else None))

    # -- teardown ----------------------------------------------------------------------
    def _close_media(self) -> None:
        self._insights.media_closed()
        if self._state_watch is not None:
            self._state_watch.close()
            self._state_watch = None
        if self._restart_task is not None:
            self._restart_task.cancel()
            self._restart_task = None
        pc, self._pc = self._pc, None
        source, self._source = self._source, None
        if pc is not None:
            self._spawn(pc.close())
        if source is not None:
            source.close()  # an app's own file_input_stream is wrapped and stays open
        if self._speaker is not None:
            self._speaker.close()
            self._speaker = None
        self._remote.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed (31000 UnknownError)", exc_info=task.exception())

    def __repr__(self) -> str:
        return f"<Call {self.direction} {self._machine.call_id} {self.status()}>"


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

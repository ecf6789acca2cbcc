"""The Call lifecycle as a transition table: pure, fed events and ``now``.

A :class:`CallMachine` holds everything that decides what a call does next (its
``Call.State``, whether it was answered, whether its media is open, whether
signaling or media is reconnecting, its CallSid and reconnect token, the media
health watch) and nothing that does I/O. :meth:`CallMachine.process` takes one
event (a user action, a signaling frame, a media result, a media-health
reading) and returns the actions the :class:`~softphone.core.call.Call` carries
out in order: send a frame, emit an event, close media, start the ICE-restart
loop. The Call keeps the tasks, aiortc and pyee; every rule lives here, where a
test can drive it with a fake clock and read the actions back.

The table :data:`TRANSITIONS` names, for each event, the states it is handled in
and the states it is deliberately ignored in (the JS SDK's no-ops, such as
``accept()`` on a call that is not pending, or a ``hangup`` frame for a closed
call). Any other (state, event) pair is a bug in the caller and raises
:class:`IllegalTransition` instead of being dropped silently. Events that come
from the far end (frames) are listed in every state, because a server can send
anything at any time and must never make the SDK raise.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from softphone.core.errors import MediaErrors, SignalingErrors, TwilioError
from softphone.core.media_health import GIVE_UP_AFTER_S, LOST_AFTER_S, HealthEvent, MediaHealth
from softphone.insights import events as insights
from softphone.insights.events import InsightsEvent
from softphone.signaling import codes

MEDIA_FAILED_MESSAGE: Final = (
    "Call disconnected: the media connection was interrupted and did not recover"
)

ICE_LOST_MESSAGE: Final = "ICE liveliness check failed. May be having trouble connecting to Twilio"
ICE_RESTORED_MESSAGE: Final = "ICE liveliness check succeeded. Connection with Twilio restored"


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


class IllegalTransition(RuntimeError):
    """An event arrived in a state where it cannot happen: a bug in the caller."""


S = CallState
ALL_STATES: Final = frozenset(CallState)


# -- events (inputs) -------------------------------------------------------------------
@attrs.frozen
class Accept:
    """The app called ``accept()`` (or ``Device.connect()`` placed the call)."""


@attrs.frozen
class Reject:
    """The app called ``reject()``."""


@attrs.frozen
class Ignore:
    """The app called ``ignore()``."""


@attrs.frozen
class Disconnect:
    """The app called ``disconnect()``."""


@attrs.frozen
class LocalOffer:
    """Our offer (outgoing call) is ready to send."""

    sdp: str


@attrs.frozen
class LocalAnswer:
    """Our answer to the incoming offer is ready; media is set up on our side."""

    sdp: str


@attrs.frozen
class RemoteAnswerApplied:
    """The far end's answer was applied to the peer connection (outgoing call)."""


@attrs.frozen
class SetupFailed:
    """Media setup failed: getUserMedia, the peer connection, an offer or an answer.

    ``hangup``: tell the gateway (with ``message`` as the reason) instead of only
    closing locally. ``error_first``: emit the error before the call closes (the
    order the JS SDK uses for SDP failures; getUserMedia failures close first).
    """

    error: TwilioError
    hangup: bool = False
    message: str | None = None
    error_first: bool = True


@attrs.frozen
class RingingFrame:
    """A ``ringing`` frame (an ``sdp`` in it is early media: the answer)."""

    callsid: str | None
    sdp: str | None = None


@attrs.frozen
class AnswerFrame:
    """An ``answer`` frame: the far end answered, or a (re)connect/ICE restart was accepted."""

    callsid: str | None
    sdp: str | None = None
    reconnect: str | None = None


@attrs.frozen
class HangupFrame:
    """A ``hangup`` frame; ``error`` is the error it carried, already as a TwilioError."""

    callsid: str | None
    error: TwilioError | None = None


@attrs.frozen
class CancelFrame:
    """A ``cancel`` frame: the caller gave up, or another device answered."""

    callsid: str | None


@attrs.frozen
class TransportClosed:
    """The signaling transport closed."""


@attrs.frozen
class SignalingConnected:
    """Signaling is (re)connected; ``local_sdp`` is our current local description."""

    local_sdp: str | None


@attrs.frozen
class InboundPackets:
    """A media-health reading: packets received on the media path so far."""

    count: int


@attrs.frozen
class RestartOfferSent:
    """An ICE-restart offer went out; the next ``answer`` with an SDP answers it."""


@attrs.frozen
class IceConnectionState:
    """The peer connection's ICE connection state changed (``iceConnectionState``).

    aiortc reports ``checking``, ``completed`` and ``failed`` (after about 30 s of
    failed consent checks); the silence watch stands in for ``disconnected``.
    """

    state: str


@attrs.frozen
class IceGatheringFailed:
    """An offer or answer went out without a single ICE candidate (``none``/``timeout``)."""

    reason: str


@attrs.frozen
class LowBytesWarning:
    """The quality monitor raised (``active``) or cleared a ``low-bytes-*`` warning."""

    name: str
    active: bool


CallEvent = (
    Accept
    | Reject
    | Ignore
    | Disconnect
    | LocalOffer
    | LocalAnswer
    | RemoteAnswerApplied
    | SetupFailed
    | RingingFrame
    | AnswerFrame
    | HangupFrame
    | CancelFrame
    | TransportClosed
    | SignalingConnected
    | InboundPackets
    | RestartOfferSent
    | IceConnectionState
    | IceGatheringFailed
    | LowBytesWarning
)


# -- actions (outputs) -----------------------------------------------------------------
class _CallRef:
    """Placeholder in :class:`Emit` arguments for the Call object itself."""

    def __repr__(self) -> str:
        return "CALL"


CALL: Final = _CallRef()


@attrs.frozen
class Emit:
    """Emit ``name`` on the Call with ``args`` (:data:`CALL` stands for the Call)."""

    name: str
    args: tuple[Any, ...] = ()


@attrs.frozen
class StartMedia:
    """Acquire the input and build the peer connection (then offer or answer)."""


@attrs.frozen
class SendInvite:
    """Send ``invite`` with our offer under the temporary call id."""

    sdp: str
    temp_sid: str


@attrs.frozen
class SendReconnect:
    """Send an ``invite`` with the reconnect token (signaling reconnect or connect token)."""

    sdp: str
    callsid: str
    token: str


@attrs.frozen
class SendAnswer:
    """Send ``answer`` with our SDP for an incoming call."""

    sdp: str
    callsid: str


@attrs.frozen
class SendReject:
    """Send ``reject`` for an incoming call."""

    callsid: str


@attrs.frozen
class SendHangup:
    """Send ``hangup`` (when signaling is up), with an optional reason."""

    callsid: str
    message: str | None


@attrs.frozen
class ApplyRemoteAnswer:
    """Apply the far end's answer to the peer connection; report back with an event."""

    sdp: str


@attrs.frozen
class ApplyRestartAnswer:
    """Apply the answer to our ICE-restart offer."""

    sdp: str


@attrs.frozen
class MediaOpened:
    """Media is set up: sync mute into the peer connection and read the codec."""


@attrs.frozen
class CallConnected:
    """First time open: attach the speaker and start the media-health watch."""


@attrs.frozen
class EmitAudio:
    """Emit ``audio`` with the remote audio (the Python-only event after ``accept``)."""


@attrs.frozen
class CloseMedia:
    """Tear down the peer connection, our input, the speaker and the restart loop."""


@attrs.frozen
class StopRinging:
    """Stop the incoming ringtone for this call."""


@attrs.frozen
class PlaySound:
    """Play one of the Device's sounds (``disconnect``)."""

    name: str


@attrs.frozen
class DetachStream:
    """Stop listening to the signaling stream: the call is over."""


@attrs.frozen
class StartIceRestart:
    """Start the ICE-restart loop (it runs until media is back or the call ends)."""


@attrs.frozen
class StopIceRestart:
    """Stop the ICE-restart loop."""


@attrs.frozen
class Publish:
    """Publish an insights event (the JS SDK's event at this point of the call)."""

    event: InsightsEvent


@attrs.frozen
class LearnCallSid:
    """The gateway told us our CallSid."""

    callsid: str


CallAction = (
    Emit
    | StartMedia
    | SendInvite
    | SendReconnect
    | SendAnswer
    | SendReject
    | SendHangup
    | ApplyRemoteAnswer
    | ApplyRestartAnswer
    | MediaOpened
    | CallConnected
    | EmitAudio
    | CloseMedia
    | StopRinging
    | PlaySound
    | DetachStream
    | StartIceRestart
    | StopIceRestart
    | Publish
    | LearnCallSid
)


# -- the table -------------------------------------------------------------------------
Handler = Callable[["CallMachine", Any], None]
IGNORED: Final = None
"""A table entry for an event that is deliberately a no-op in that state."""


def _only(handler: Handler, *states: CallState) -> dict[CallState, Handler | None]:
    """``handler`` in ``states``, ignored in every other state."""
    return {state: (handler if state in states else IGNORED) for state in CallState}


class CallMachine:
    """One call's lifecycle: feed events with :meth:`process`, carry out the actions."""

    def __init__(
        self,
        direction: CallDirection,
        temp_sid: str,
        *,
        now: float,
        callsid: str | None = None,
        reconnect_token: str | None = None,
        is_connect_token_call: bool = False,
        lost_after_s: float = LOST_AFTER_S,
        give_up_after_s: float = GIVE_UP_AFTER_S,
    ) -> None:
        self.direction = direction
        self.temp_sid = temp_sid
        self.callsid = callsid
        self.reconnect_token = reconnect_token
        self.is_connect_token_call = is_connect_token_call
        self.state = CallState.PENDING
        self.created_at = now
        self.now = now
        self.history: list[tuple[float, CallState]] = [(now, CallState.PENDING)]
        """Every state entered, with when: diagnostics and the call's timeline."""
        self.is_answered = False
        self.was_connected = False
        self.media_open = False
        self.remote_sdp_applied = False
        self.ignored = False
        self.cancelled_or_rejected = False
        self.signaling_reconnecting = False
        self.media_reconnecting = False
        self.restart_offer_pending = False
        self.give_up_after_s = give_up_after_s
        self.health = MediaHealth(lost_after_s=lost_after_s, give_up_after_s=math.inf)
        self.ice_state = "new"
        self.ice_warning = False
        """``ice-connectivity-lost`` is raised (ICE disconnected or the path went silent)."""
        self.low_bytes: set[str] = set()
        """Active ``low-bytes-received`` / ``low-bytes-sent`` warnings."""
        self.media_failed_at: float | None = None
        self.packets_at_failure = 0
        self.packets = 0
        self._out: list[CallAction] = []

    # -- the entry point ---------------------------------------------------------------
    def process(self, event: CallEvent, now: float) -> list[CallAction]:
        """Apply ``event`` at time ``now``; returns what the Call must do, in order.

        Raises :class:`IllegalTransition` for an event that cannot happen in the
        current state (see :data:`TRANSITIONS`).
        """
        rules = TRANSITIONS[type(event)]
        if self.state not in rules:
            raise IllegalTransition(f"{type(event).__name__} in state {self.state}")
        self.now = max(self.now, now)
        handler = rules[self.state]
        self._out = []
        if handler is not None:
            handler(self, event)
        out, self._out = self._out, []
        return out

    @property
    def call_id(self) -> str:
        """The id frames about this call use: the CallSid, or the temporary id before it."""
        return self.callsid or self.temp_sid

    def is_mine(self, callsid: str | None) -> bool:
        """True for a frame about this call (its CallSid or temporary id)."""
        return callsid is not None and callsid in (self.callsid, self.temp_sid)

    # -- helpers -----------------------------------------------------------------------
    def _do(self, *actions: CallAction) -> None:
        self._out.extend(actions)

    def _enter(self, state: CallState) -> None:
        if state is not self.state:
            self.state = state
            self.history.append((self.now, state))

    def _learn_callsid(self, callsid: str | None) -> None:
        if callsid and callsid != self.callsid:
            self.callsid = callsid
            self._do(LearnCallSid(callsid))

    def _close(self) -> None:
        """Closed: media down, ``disconnect`` unless it ended by cancel/reject."""
        was_closed = self.state is CallState.CLOSED
        self._enter(CallState.CLOSED)
        self._do(CloseMedia())
        if not was_closed and not self.cancelled_or_rejected:
            self._do(PlaySound("disconnect"), Emit("disconnect", (CALL,)))
        self._do(DetachStream())

    def _hangup_and_close(self, message: str | None) -> None:
        self._do(SendHangup(self.call_id, message))
        self._do(Publish(insights.connection_event("disconnected-by-local")))
        self._close()

    def _maybe_open(self) -> None:
        if (
            self.is_answered
            and self.media_open
            and self.state in (CallState.CONNECTING, CallState.RINGING)
        ):
            self._enter(CallState.OPEN)
            if not self.was_connected:
                self.was_connected = True
                self.health.reset()
                self._do(
                    Publish(insights.accepted(self.direction.value)),
                    CallConnected(),
                    Emit("accept", (CALL,)),
                    EmitAudio(),
                )

    def _media_is_open(self) -> None:
        self.media_open = True
        self._do(MediaOpened())
        self._maybe_open()

    def _remote_answer(self, sdp: str) -> None:
        if not self.remote_sdp_applied:
            self.remote_sdp_applied = True
            self._do(ApplyRemoteAnswer(sdp))

    def _maybe_reconnected(self) -> None:
        if (
            self.state is CallState.RECONNECTING
            and not self.signaling_reconnecting
            and not self.media_reconnecting
        ):
            self._enter(CallState.OPEN)
            self._do(Publish(insights.connection_event("reconnected")), Emit("reconnected"))

    # -- handlers: the app -------------------------------------------------------------
    def _on_accept(self, _: Accept) -> None:
        self._enter(CallState.CONNECTING)
        if self.direction is CallDirection.INCOMING:
            self.is_answered = True
        self._do(StartMedia())

    def _on_reject(self, _: Reject) -> None:
        if self.callsid:
            self._do(SendReject(self.callsid))
        self.cancelled_or_rejected = True
        self._enter(CallState.CLOSED)
        self._do(
            CloseMedia(),
            Emit("reject"),
            Publish(insights.connection_event("rejected-by-local")),
            DetachStream(),
        )

    def _on_ignore(self, _: Ignore) -> None:
        self.ignored = True
        self._enter(CallState.CLOSED)
        self._do(StopRinging(), Publish(insights.connection_event("ignored-by-local")))

    def _on_disconnect(self, _: Disconnect) -> None:
        self._hangup_and_close(None)

    # -- handlers: media setup ---------------------------------------------------------
    def _on_local_offer(self, event: LocalOffer) -> None:
        if self.reconnect_token and self.callsid:
            self._do(SendReconnect(event.sdp, self.callsid, self.reconnect_token))
        else:
            self._do(SendInvite(event.sdp, self.temp_sid))

    def _on_local_answer(self, event: LocalAnswer) -> None:
        if self.callsid:
            self._do(SendAnswer(event.sdp, self.callsid))
        self.remote_sdp_applied = True
        self._media_is_open()

    def _on_remote_answer_applied(self, _: RemoteAnswerApplied) -> None:
        self._media_is_open()

    def _on_setup_failed(self, event: SetupFailed) -> None:
        if event.error_first:
            self._do(Emit("error", (event.error,)))
        if event.hangup:
            self._hangup_and_close(event.message)
        else:
            self._close()
        if not event.error_first:
            self._do(Emit("error", (event.error,)))

    # -- handlers: frames --------------------------------------------------------------
    def _on_ringing(self, event: RingingFrame) -> None:
        if self.direction is not CallDirection.OUTGOING:
            return
        self._learn_callsid(event.callsid)
        self._enter(CallState.RINGING)
        self._do(
            Publish(insights.outgoing_ringing(bool(event.sdp))),
            Emit("ringing", (bool(event.sdp),)),
        )
        if event.sdp:
            self._remote_answer(event.sdp)

    def _on_answer(self, event: AnswerFrame) -> None:
        if event.callsid and self.callsid and event.callsid != self.callsid:
            return
        incoming = self.direction is CallDirection.INCOMING and not self.is_connect_token_call
        if incoming and not self.is_mine(event.callsid):
            return
        if event.reconnect:
            self.reconnect_token = event.reconnect
        if not incoming:
            self._learn_callsid(event.callsid)
        if self.restart_offer_pending and event.sdp:
            self.restart_offer_pending = False
            self._do(ApplyRestartAnswer(event.sdp))
        if self.signaling_reconnecting:
            self.signaling_reconnecting = False
            self._maybe_reconnected()
            return
        if incoming or self.is_answered:
            return
        self.is_answered = True
        if event.sdp and not self.remote_sdp_applied:
            self._remote_answer(event.sdp)
        else:
            self._maybe_open()  # early media (or no SDP): the answer only opens the call

    def _on_hangup(self, event: HangupFrame) -> None:
        if event.callsid is not None and not self.is_mine(event.callsid):
            return
        self._do(Publish(insights.connection_event("disconnected-by-remote")))
        if event.error is not None:
            self._do(Emit("error", (event.error,)))
        self._close()

    def _on_cancel(self, event: CancelFrame) -> None:
        if event.callsid is None or event.callsid != self.callsid:
            return
        self.cancelled_or_rejected = True
        self._enter(CallState.CLOSED)
        self._do(
            CloseMedia(),
            Emit("cancel"),
            StopRinging(),
            Publish(insights.connection_event("cancel")),
            DetachStream(),
        )

    def _on_cancel_after_ignore(self, event: CancelFrame) -> None:
        """An ignored call is closed locally; the caller's ``cancel`` still ends it."""
        if not self.ignored or self.cancelled_or_rejected:
            return
        if event.callsid is None or event.callsid != self.callsid:
            return
        self.cancelled_or_rejected = True
        self._do(CloseMedia(), Emit("cancel"), DetachStream())

    def _on_transport_closed(self, _: TransportClosed) -> None:
        self._do(Emit("transportClose"))
        if self.state is CallState.CLOSED or self.state is CallState.PENDING:
            return
        if self.reconnect_token is None:
            self._enter(CallState.CLOSED)
            return
        self._enter(CallState.RECONNECTING)
        self.signaling_reconnecting = True
        self._do(
            Publish(insights.connection_event("reconnecting")),
            Emit("reconnecting", (SignalingErrors.ConnectionDisconnected(),)),
        )

    def _on_signaling_connected(self, event: SignalingConnected) -> None:
        if not (self.reconnect_token and self.callsid and self.media_open and event.local_sdp):
            return
        self._do(SendReconnect(event.local_sdp, self.callsid, self.reconnect_token))

    # -- handlers: media health and ICE (checklist R) -------------------------------------
    def _on_inbound_packets(self, event: InboundPackets) -> None:
        """A reading of the silence watch: the path stays "connected" but carries nothing."""
        self.packets = event.count
        change = self.health.update(self.now, event.count)
        if change is HealthEvent.LOST:
            self._ice_disconnected()
            self._media_failed()
        elif self.media_reconnecting and event.count > self.packets_at_failure:
            self._ice_connected()
        elif self._past_give_up():
            self._media_gave_up()

    def _on_ice_connection_state(self, event: IceConnectionState) -> None:
        self.ice_state = event.state
        if event.state == "disconnected":
            self._ice_disconnected()
            if self.low_bytes:
                self._media_failed()
        elif event.state == "failed":
            self._media_failed()
        elif event.state in ("connected", "completed"):
            self._ice_connected()

    def _on_ice_gathering_failed(self, event: IceGatheringFailed) -> None:
        """No candidate: a warning, and once the call is up a media reconnection (53405)."""
        self._do(
            Publish(insights.ice_gathering_failure(event.reason)),
            Emit("warning", ("ice-gathering-state", {"reason": event.reason})),
        )
        if self.state in (CallState.OPEN, CallState.RECONNECTING):
            self._media_failed()

    def _on_low_bytes(self, event: LowBytesWarning) -> None:
        """A low-bytes warning restarts ICE only while ICE is ``disconnected`` (JS rule)."""
        if not event.active:
            self.low_bytes.discard(event.name)
            return
        self.low_bytes.add(event.name)
        if self.ice_state == "disconnected":
            self._media_failed()

    def _ice_disconnected(self) -> None:
        if not self.ice_warning:
            self.ice_warning = True
            self._do(
                Publish(insights.ice_connectivity_lost(ICE_LOST_MESSAGE)),
                Emit("warning", ("ice-connectivity-lost",)),
            )

    def _ice_connected(self) -> None:
        """ICE is back (or packets flow again): clear the warning, end a media reconnection."""
        if self.media_reconnecting:
            self.media_reconnecting = False
            self.restart_offer_pending = False
            self.media_failed_at = None
            self._do(StopIceRestart())
        if self.ice_warning:
            self.ice_warning = False
            self._do(
                Publish(insights.ice_connectivity_restored(ICE_RESTORED_MESSAGE)),
                Emit("warning-cleared", ("ice-connectivity-lost",)),
            )
        self._maybe_reconnected()

    def _media_failed(self) -> None:
        """Start a media reconnection (once: later failures are part of the same one)."""
        if self.media_reconnecting:
            return
        self.media_reconnecting = True
        self.media_failed_at = self.now
        self.packets_at_failure = self.packets
        self._enter(CallState.RECONNECTING)
        error = MediaErrors.ConnectionError("Media connection failed.")
        self._do(
            Publish(insights.media_connection_error(error)),
            Publish(insights.connection_event("reconnecting")),
            Emit("reconnecting", (error,)),
            StartIceRestart(),
        )

    def _past_give_up(self) -> bool:
        return (
            self.media_failed_at is not None
            and self.now - self.media_failed_at >= self.give_up_after_s
        )

    def _media_gave_up(self) -> None:
        """30 s without media: hang up with a reason, then ``error`` 53405 (legacy 31003)."""
        self.media_reconnecting = False
        self.media_failed_at = None
        self._do(StopIceRestart())
        self._hangup_and_close(MEDIA_FAILED_MESSAGE)
        error = MediaErrors.ConnectionError(
            MEDIA_FAILED_MESSAGE, {"code": codes.CONNECTION_TIMEOUT, "message": "ICE failed"}
        )
        self._do(Emit("error", (error,)))

    def _on_restart_offer_sent(self, _: RestartOfferSent) -> None:
        self.restart_offer_pending = True


_LIVE = (S.CONNECTING, S.RINGING, S.OPEN, S.RECONNECTING)
"""States of a call that was accepted and is not over."""
_MEDIA = (S.OPEN, S.RECONNECTING)
"""States in which the media-health watch runs."""
_CLOSED_ONLY = {S.CLOSED: IGNORED}

TRANSITIONS: Final[Mapping[type[Any], Mapping[CallState, Handler | None]]] = {
    # The app's calls: no-ops where the JS SDK makes them no-ops.
    Accept: _only(CallMachine._on_accept, S.PENDING),
    Reject: _only(CallMachine._on_reject, S.PENDING),
    Ignore: _only(CallMachine._on_ignore, S.PENDING),
    Disconnect: _only(CallMachine._on_disconnect, *_LIVE),
    # Media setup runs only after accept; a result (or a failure) arriving after
    # the call closed is dropped: its peer connection was closed with the call.
    LocalOffer: {**dict.fromkeys(_LIVE, CallMachine._on_local_offer), **_CLOSED_ONLY},
    LocalAnswer: {**dict.fromkeys(_LIVE, CallMachine._on_local_answer), **_CLOSED_ONLY},
    RemoteAnswerApplied: {
        **dict.fromkeys(_LIVE, CallMachine._on_remote_answer_applied),
        **_CLOSED_ONLY,
    },
    SetupFailed: {**dict.fromkeys(_LIVE, CallMachine._on_setup_failed), **_CLOSED_ONLY},
    # Frames: legal in every state (a server may send anything at any time).
    RingingFrame: _only(CallMachine._on_ringing, S.CONNECTING, S.RINGING),
    AnswerFrame: _only(CallMachine._on_answer, *_LIVE),
    HangupFrame: _only(CallMachine._on_hangup, *_LIVE),
    CancelFrame: {
        **_only(CallMachine._on_cancel, S.PENDING),
        S.CLOSED: CallMachine._on_cancel_after_ignore,
    },
    TransportClosed: dict.fromkeys(CallState, CallMachine._on_transport_closed),
    SignalingConnected: _only(CallMachine._on_signaling_connected, *_LIVE),
    # The media-health watch starts when the call first opens and stops at close.
    InboundPackets: {
        **dict.fromkeys(_MEDIA, CallMachine._on_inbound_packets),
        **_CLOSED_ONLY,
    },
    RestartOfferSent: {**dict.fromkeys(_MEDIA, CallMachine._on_restart_offer_sent), **_CLOSED_ONLY},
    # ICE reports exist once media setup started; quality warnings once media flows.
    IceConnectionState: _only(CallMachine._on_ice_connection_state, *_MEDIA),
    IceGatheringFailed: {
        **dict.fromkeys(_LIVE, CallMachine._on_ice_gathering_failed),
        **_CLOSED_ONLY,
    },
    LowBytesWarning: {
        **dict.fromkeys(_MEDIA, CallMachine._on_low_bytes),
        **_CLOSED_ONLY,
    },
}
"""For each event: the handler in each state where it applies, ``None`` where it is a
deliberate no-op. A state missing from an event's row is an illegal transition."""


def replace_call(args: tuple[Any, ...], call: object) -> tuple[Any, ...]:
    """``args`` of an :class:`Emit` with :data:`CALL` replaced by ``call``."""
    return tuple(call if arg is CALL else arg for arg in args)


__all__ = [
    "CALL",
    "MEDIA_FAILED_MESSAGE",
    "TRANSITIONS",
    "CallAction",
    "CallDirection",
    "CallEvent",
    "CallMachine",
    "CallState",
    "IllegalTransition",
    "replace_call",
]

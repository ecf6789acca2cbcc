"""Call routing and media bridging: the gateway's built-in voice application.

Until TwiML applications exist, every outgoing ``invite`` runs one built-in app:

* ``To=client:NAME`` rings every device registered as NAME (``invite`` to each),
  sends ``ringing`` to the caller, and on the first ``answer`` cancels the other
  devices, answers the caller and bridges the two legs' audio;
* ``To=echo``, or no ``To`` at all (what PreflightTest sends), answers at once and
  plays the caller's audio back to it.

Either side's ``hangup`` ends both legs; a caller that gives up while the callee
rings makes the callee devices get ``cancel``; a callee ``reject`` cancels the
identity's other devices and ends the call for the caller. DTMF (RFC 4733 or the
``dtmf`` frame) and user-defined messages travel to the other leg.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
from typing import TYPE_CHECKING, Any

import attrs

from softphone.gateway import media_bridge
from softphone.gateway.connection import ClientConnection
from softphone.media.peer_connection import PeerConnection
from softphone.signaling.messages import (
    Answer,
    CallMessage,
    Cancel,
    Dtmf,
    Error,
    Hangup,
    Invite,
    Message,
    Reinvite,
    Reject,
    Ringing,
    type_of,
)
from softphone.signaling.params import (
    call_sid,
    decode_params,
    encode_params_for_client,
    params_too_long,
)

if TYPE_CHECKING:
    from softphone.gateway.server import Gateway

log = logging.getLogger("softphone.gateway.calls")

RING_TIMEOUT_S = 60.0
MAX_MESSAGE_BYTES = 4096
USER_DEFINED_MESSAGE = "user-defined-message"

APPLICATION_NOT_FOUND = 31001
CONNECTION_DECLINED = 31002
MALFORMED_REQUEST = 31100
MAX_PARAMETER_LENGTH = 31103
RECONNECT_PARAMETER_INVALID = 31107
MESSAGE_TYPE_INVALID = 31210
PAYLOAD_TOO_LARGE = 31212
NOT_FOUND = 31404
TEMPORARILY_UNAVAILABLE = 31480
DECLINE = 31603


class CallPhase(enum.Enum):
    """Where a bridged call is in its life."""

    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


@attrs.define(eq=False)
class Leg:
    """One side of a call as one client connection sees it."""

    conn: ClientConnection
    callsid: str
    role: str
    """``caller`` or ``callee``."""
    reconnect_token: str = attrs.field(factory=lambda: "RT" + secrets.token_urlsafe(24))
    pc: PeerConnection | None = None
    temp_sid: str | None = None
    """The caller's ``TJS…`` id, accepted in its frames until it learns the CallSid."""
    detach_timer: asyncio.TimerHandle | None = None
    """Set while the leg's socket is gone and we wait for a reconnect ``invite``."""


@attrs.define(eq=False)
class BridgedCall:
    """One call: a caller leg and the callee legs ringing or connected."""

    sid: str
    caller: Leg
    to: str
    custom_params: dict[str, str]
    account_sid: str
    offer_sdp: str
    callees: list[Leg] = attrs.field(factory=list)
    connected: Leg | None = None
    phase: CallPhase = CallPhase.RINGING
    ring_timer: asyncio.TimerHandle | None = None
    digits: list[str] = attrs.field(factory=list)
    """Every DTMF digit seen on this call (either direction), for call records."""
    bridge: media_bridge.Bridge | None = None
    """The media between the legs once answered (RTP forwarding or transcoding)."""

    def other(self, leg: Leg) -> Leg | None:
        """The leg on the far side of ``leg`` (the caller itself for echo calls)."""
        if leg is self.caller:
            return self.connected
        return self.caller


class CallRouter:
    """Every live call of one gateway, indexed by every sid and token a client may use."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._by_sid: dict[str, tuple[BridgedCall, Leg]] = {}
        self.calls: list[BridgedCall] = []
        self.records: list[dict[str, Any]] = []
        """One entry per ended call: sid, from, to, phase reached, digits, reason."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ring_timeout_s = RING_TIMEOUT_S

    # -- dispatch ----------------------------------------------------------------------
    async def on_message(self, conn: ClientConnection, message: Message) -> None:
        """Handle a call-related frame from ``conn``."""
        handler = {
            Invite: self._on_invite,
            Answer: self._on_answer,
            Reject: self._on_reject,
            Hangup: self._on_hangup,
            Dtmf: self._on_dtmf,
            CallMessage: self._on_call_message,
            Reinvite: self._on_reinvite,
        }.get(type(message))
        if handler is None:
            log.info("conn %d: ignoring '%s'", conn.id, type_of(message))
            return
        await handler(conn, message)  # type: ignore[operator]

    async def on_listen(self, conn: ClientConnection) -> None:
        """A (re)``listen`` on ``conn``; nothing to do until reconnection support needs it."""

    async def on_connection_closed(self, conn: ClientConnection) -> None:
        """The socket went away: hold its calls for the client's reconnect window.

        A client that announced ``reconnectTimeout`` > 0 in ``listen`` may come back on
        a new socket with a reconnect ``invite`` within that many seconds; media keeps
        flowing meanwhile. With 0 (the JS default) its calls end at once.
        """
        for call in list(self.calls):
            for leg in [call.caller, *call.callees]:
                if leg.conn is not conn or call.phase is CallPhase.ENDED:
                    continue
                if leg is not call.caller and leg is not call.connected:
                    await self._drop_callee(call, leg)
                elif conn.reconnect_timeout_s > 0:
                    log.info(
                        "call %s: %s leg detached; holding it %d s",
                        call.sid,
                        leg.role,
                        conn.reconnect_timeout_s,
                    )
                    leg.detach_timer = asyncio.get_running_loop().call_later(
                        conn.reconnect_timeout_s, self._hold_expired, call, leg
                    )
                else:
                    await self._end(call, reason="socket closed", notify=leg)

    def _hold_expired(self, call: BridgedCall, leg: Leg) -> None:
        self._spawn(self._reconnect_window_over(call, leg))

    async def _reconnect_window_over(self, call: BridgedCall, leg: Leg) -> None:
        leg.detach_timer = None
        await self._end(call, reason=f"{leg.role} did not reconnect in time", notify=leg)

    async def shutdown(self) -> None:
        """End every call (gateway stop)."""
        for call in list(self.calls):
            await self._end(call, reason="gateway stopping")
        for task in list(self._tasks):
            task.cancel()

    def _lookup(
        self, conn: ClientConnection, callsid: str | None
    ) -> tuple[BridgedCall, Leg] | None:
        if callsid is None:
            return None
        found = self._by_sid.get(f"{conn.id}:{callsid}")
        return found

    def _index(self, call: BridgedCall, leg: Leg, *sids: str | None) -> None:
        for sid in sids:
            if sid:
                self._by_sid[f"{leg.conn.id}:{sid}"] = (call, leg)

    # -- outgoing invite ---------------------------------------------------------------
    async def _on_invite(self, conn: ClientConnection, invite: Invite) -> None:
        if invite.reconnect:
            await self._on_reconnect_invite(conn, invite)
            return
        token = conn.token
        assert token is not None
        temp_sid = invite.callsid
        if params_too_long(invite.params):
            await conn.send(
                Hangup(
                    callsid=temp_sid,
                    error={
                        "code": MAX_PARAMETER_LENGTH,
                        "message": "Custom parameters exceed 800 bytes",
                    },
                )
            )
            return
        app_sid = token.outgoing_application_sid
        if app_sid and self.gateway.accounts.application(token.account_sid, app_sid) is None:
            await conn.send(
                Hangup(
                    callsid=temp_sid,
                    error={
                        "code": APPLICATION_NOT_FOUND,
                        "message": f"Application {app_sid} not found",
                    },
                )
            )
            return
        params = decode_params(invite.params) if invite.params else {}
        to = params.pop("To", "")
        caller = Leg(conn=conn, callsid=call_sid(), role="caller", temp_sid=temp_sid)
        call = BridgedCall(
            sid=caller.callsid,
            caller=caller,
            to=to,
            custom_params=params,
            account_sid=token.account_sid,
            offer_sdp=invite.sdp,
        )
        self.calls.append(call)
        self._index(call, caller, temp_sid, caller.callsid)
        log.info("call %s from %s to %r", call.sid, conn.identity, to or "(echo)")
        if to in ("", "echo"):
            await self._answer_echo(call)
        elif to.startswith("client:"):
            await self._dial_client(call, to.removeprefix("client:"))
        else:
            await self._end(
                call,
                reason="unknown destination",
                error={"code": NOT_FOUND, "message": f"Unknown destination {to!r}"},
            )

    def _new_pc(self) -> PeerConnection:
        return PeerConnection(ice_servers=[], codec_preferences=("opus", "pcmu"))

    async def _answer_caller(self, call: BridgedCall) -> None:
        """Create the caller leg's media and send ``answer`` with a reconnect token."""
        caller = call.caller
        pc = self._new_pc()
        caller.pc = pc
        try:
            sdp = await pc.create_answer(call.offer_sdp, None)
        except Exception as exc:
            log.warning("call %s: cannot answer caller: %s", call.sid, exc)
            await self._end(
                call,
                reason="bad offer",
                error={"code": MALFORMED_REQUEST, "message": f"Bad SDP offer: {exc}"},
            )
            return
        pc.on_dtmf = lambda digit: self._on_rfc4733(call, caller, digit)
        await caller.conn.send(
            Answer(callsid=caller.callsid, sdp=sdp, reconnect=caller.reconnect_token)
        )

    async def _answer_echo(self, call: BridgedCall) -> None:
        call.phase = CallPhase.ANSWERED
        call.connected = call.caller
        await self._answer_caller(call)
        if call.caller.pc is not None:
            call.bridge = media_bridge.echo(call.caller.pc)

    async def _dial_client(self, call: BridgedCall, identity: str) -> None:
        targets = [
            c
            for c in self.gateway.presence.connections(identity)
            if isinstance(c, ClientConnection) and c is not call.caller.conn
        ]
        if not targets:
            await self._end(
                call,
                reason="callee unavailable",
                error={
                    "code": TEMPORARILY_UNAVAILABLE,
                    "message": f"client:{identity} is not registered",
                },
            )
            return
        child_sid = call_sid()
        caller_identity = call.caller.conn.identity or ""
        parameters = {
            "AccountSid": call.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": child_sid,
            "From": f"client:{caller_identity}",
            "To": f"client:{identity}",
        }
        if call.custom_params:
            parameters["Params"] = encode_params_for_client(call.custom_params)
        for conn in targets:
            leg = Leg(conn=conn, callsid=child_sid, role="callee")
            pc = self._new_pc()
            leg.pc = pc
            try:
                sdp = await pc.create_offer(None)
            except Exception as exc:
                log.warning("call %s: cannot offer to %s: %s", call.sid, conn, exc)
                await pc.close()
                continue
            if call.phase is not CallPhase.RINGING:
                await pc.close()
                return
            call.callees.append(leg)
            self._index(call, leg, child_sid)
            await conn.send(
                Invite(
                    callsid=child_sid,
                    sdp=sdp,
                    reconnect=leg.reconnect_token,
                    parameters=dict(parameters),
                )
            )
        if not call.callees:
            await self._end(
                call,
                reason="no callee leg",
                error={"code": TEMPORARILY_UNAVAILABLE, "message": "No device"},
            )
            return
        await call.caller.conn.send(Ringing(callsid=call.sid))
        call.ring_timer = asyncio.get_running_loop().call_later(
            self.ring_timeout_s, lambda: self._spawn(self._ring_timeout(call))
        )

    async def _ring_timeout(self, call: BridgedCall) -> None:
        if call.phase is CallPhase.RINGING:
            await self._end(
                call,
                reason="no answer",
                error={"code": TEMPORARILY_UNAVAILABLE, "message": "No answer"},
            )

    # -- callee answers / rejects ------------------------------------------------------
    async def _on_answer(self, conn: ClientConnection, answer: Answer) -> None:
        found = self._lookup(conn, answer.callsid)
        if found is None:
            log.info("conn %d: answer for unknown call %s", conn.id, answer.callsid)
            return
        call, leg = found
        if leg.role != "callee" or call.phase is not CallPhase.RINGING or leg.pc is None:
            return
        assert answer.sdp is not None
        try:
            await leg.pc.apply_answer(answer.sdp)
        except Exception as exc:
            log.warning("call %s: bad answer from %s: %s", call.sid, conn, exc)
            await conn.send(
                Hangup(callsid=leg.callsid, error={"code": MALFORMED_REQUEST, "message": str(exc)})
            )
            await self._drop_callee(call, leg)
            return
        await self._connect_callee(call, leg)

    async def _connect_callee(
        self, call: BridgedCall, leg: Leg, answer_sdp: str | None = None
    ) -> None:
        """``leg`` answered: stop the others ringing, answer the caller, bridge media.

        ``answer_sdp`` is our SDP answer when the callee sent the offer (connect token).
        """
        call.phase = CallPhase.ANSWERED
        call.connected = leg
        if call.ring_timer:
            call.ring_timer.cancel()
        for other in list(call.callees):
            if other is not leg:
                await self._drop_callee(call, other, notify=True)
        assert leg.pc is not None
        leg.pc.on_dtmf = lambda digit: self._on_rfc4733(call, leg, digit)
        await leg.conn.send(
            Answer(callsid=leg.callsid, sdp=answer_sdp, reconnect=leg.reconnect_token)
        )
        await self._answer_caller(call)
        if call.caller.pc is not None and leg.pc is not None:
            call.bridge = media_bridge.bridge(call.caller.pc, leg.pc)
        log.info("call %s answered by %s", call.sid, leg.conn)

    async def _on_reject(self, conn: ClientConnection, reject: Reject) -> None:
        found = self._lookup(conn, reject.callsid)
        if found is None:
            return
        call, leg = found
        if leg.role != "callee" or call.phase is not CallPhase.RINGING:
            return
        log.info("call %s rejected by %s", call.sid, conn)
        await self._end(
            call,
            reason="rejected",
            error={"code": DECLINE, "message": "The callee declined the call"},
            skip=leg,
        )

    async def _drop_callee(self, call: BridgedCall, leg: Leg, *, notify: bool = False) -> None:
        if leg in call.callees:
            call.callees.remove(leg)
        self._by_sid.pop(f"{leg.conn.id}:{leg.callsid}", None)
        if notify:
            await leg.conn.send(Cancel(callsid=leg.callsid))
        await _close_pc(leg)
        if call.phase is CallPhase.RINGING and not call.callees:
            await self._end(
                call,
                reason="no callee left",
                error={"code": TEMPORARILY_UNAVAILABLE, "message": "No answer"},
            )

    # -- hangup and the end of a call --------------------------------------------------
    async def _on_hangup(self, conn: ClientConnection, hangup: Hangup) -> None:
        found = self._lookup(conn, hangup.callsid)
        if found is None:
            return
        call, leg = found
        if leg.role == "callee" and call.phase is CallPhase.RINGING:
            await self._drop_callee(call, leg)
            return
        await self._end(call, reason=f"hangup by {leg.role}", skip=leg)

    async def _end(
        self,
        call: BridgedCall,
        *,
        reason: str,
        error: dict[str, Any] | None = None,
        skip: Leg | None = None,
        notify: Leg | None = None,
    ) -> None:
        """End ``call`` once: cancel ringing callees, hang up the others, free media.

        ``skip`` is the leg that ended it (it gets nothing); ``notify`` is a leg whose
        socket is gone (it gets nothing either).
        """
        if call.phase is CallPhase.ENDED:
            return
        phase = call.phase
        call.phase = CallPhase.ENDED
        if call.ring_timer:
            call.ring_timer.cancel()
        quiet = {skip, notify}
        caller = call.caller
        self.records.append(
            {
                "sid": call.sid,
                "from": caller.conn.identity,
                "to": call.to,
                "answered": phase is CallPhase.ANSWERED,
                "reason": reason,
                "error": error,
                "digits": "".join(call.digits),
            }
        )
        if caller not in quiet:
            sid = (
                caller.callsid
                if phase is CallPhase.ANSWERED or error is None
                else (caller.temp_sid or caller.callsid)
            )
            await caller.conn.send(Hangup(callsid=sid, error=error))
        for leg in call.callees:
            if leg in quiet:
                continue
            if leg is call.connected:
                await leg.conn.send(Hangup(callsid=leg.callsid))
            else:
                await leg.conn.send(Cancel(callsid=leg.callsid))
        if call.bridge is not None:
            call.bridge.close()
        for leg in [caller, *call.callees]:
            if leg.detach_timer is not None:
                leg.detach_timer.cancel()
                leg.detach_timer = None
            await _close_pc(leg)
        self._by_sid = {k: v for k, v in self._by_sid.items() if v[0] is not call}
        if call in self.calls:
            self.calls.remove(call)
        log.info("call %s ended: %s", call.sid, reason)

    # -- in-call features --------------------------------------------------------------
    async def _on_dtmf(self, conn: ClientConnection, dtmf: Dtmf) -> None:
        found = self._lookup(conn, dtmf.callsid)
        if found is None:
            return
        call, leg = found
        digits = dtmf.dtmf.replace("w", "")
        call.digits.extend(digits)
        self._spawn(self._relay_digits(call, leg, dtmf.dtmf))  # frames keep flowing meanwhile

    def _on_rfc4733(self, call: BridgedCall, leg: Leg, digit: str) -> None:
        call.digits.append(digit)
        self._spawn(self._relay_digits(call, leg, digit))

    async def _relay_digits(self, call: BridgedCall, leg: Leg, digits: str) -> None:
        other = call.other(leg)
        if other is None or other is leg or other.pc is None:
            return
        if other.pc.can_insert_dtmf:
            for index, segment in enumerate(digits.split("w")):
                if index:
                    await asyncio.sleep(0.5)
                if segment:
                    await other.pc.insert_dtmf(segment)

    async def _on_call_message(self, conn: ClientConnection, message: CallMessage) -> None:
        found = self._lookup(conn, message.callsid)
        sid = message.voiceeventsid
        if found is None:
            await conn.send(
                Error(
                    callsid=message.callsid,
                    voiceeventsid=sid,
                    error={"code": NOT_FOUND, "message": "Unknown call"},
                )
            )
            return
        call, leg = found
        if message.messagetype != USER_DEFINED_MESSAGE:
            await conn.send(
                Error(
                    callsid=message.callsid,
                    voiceeventsid=sid,
                    error={
                        "code": MESSAGE_TYPE_INVALID,
                        "message": "Only user-defined-message is supported",
                    },
                )
            )
            return
        size = len(str(message.content).encode())
        if size > MAX_MESSAGE_BYTES:
            await conn.send(
                Error(
                    callsid=message.callsid,
                    voiceeventsid=sid,
                    error={
                        "code": PAYLOAD_TOO_LARGE,
                        "message": f"Message over {MAX_MESSAGE_BYTES} bytes",
                    },
                )
            )
            return
        await conn.send(_ack(message.callsid, sid))
        other = call.other(leg)
        if other is not None and other is not leg:
            await other.conn.send(
                CallMessage(
                    callsid=other.callsid,
                    content=message.content,
                    contenttype=message.contenttype,
                    messagetype=message.messagetype,
                    voiceeventsid=sid,
                )
            )

    async def _on_reinvite(self, conn: ClientConnection, reinvite: Reinvite) -> None:
        """An ICE restart offer from either side: answer it on that leg, media untouched.

        Works for our SDK and for a browser's standard re-offer with a new ufrag; the
        other leg of the call never notices.
        """
        found = self._lookup(conn, reinvite.callsid)
        if found is None or found[1].pc is None:
            await conn.send(
                Hangup(
                    callsid=reinvite.callsid, error={"code": NOT_FOUND, "message": "Unknown call"}
                )
            )
            return
        call, leg = found
        assert leg.pc is not None
        try:
            sdp = await leg.pc.answer_ice_restart(reinvite.sdp)
        except Exception as exc:
            log.warning("call %s: ICE restart from %s failed: %s", call.sid, leg.role, exc)
            await conn.send(
                Error(
                    callsid=reinvite.callsid, error={"code": MALFORMED_REQUEST, "message": str(exc)}
                )
            )
            return
        log.info("call %s: ICE restart answered for the %s leg", call.sid, leg.role)
        await conn.send(Answer(callsid=leg.callsid, sdp=sdp))

    async def _on_reconnect_invite(self, conn: ClientConnection, invite: Invite) -> None:
        """A reconnect ``invite``: signaling came back, or a connect token is used.

        For a live leg (same CallSid and token) the leg moves to this connection and
        keeps its media: the reply is ``answer`` with a fresh token and no SDP. For a
        ringing callee leg taken over with ``connect_token`` it is an answer from a
        new device. Anything else gets ``hangup`` with 31107.
        """
        found = self._find_by_token(invite.callsid, invite.reconnect)
        if found is None:
            await conn.send(
                Hangup(
                    callsid=invite.callsid,
                    error={
                        "code": RECONNECT_PARAMETER_INVALID,
                        "message": "Unknown call or reconnect token",
                    },
                )
            )
            return
        call, leg = found
        if leg.role == "callee" and call.phase is CallPhase.RINGING:
            await self._take_over_ringing(call, leg, conn, invite)
            return
        if leg.detach_timer is not None:
            leg.detach_timer.cancel()
            leg.detach_timer = None
        if leg.conn is not conn:
            self._by_sid = {k: v for k, v in self._by_sid.items() if v[1] is not leg}
            leg.conn = conn
            self._index(call, leg, leg.callsid, leg.temp_sid)
        leg.reconnect_token = "RT" + secrets.token_urlsafe(24)
        log.info("call %s: %s leg re-attached on conn %d", call.sid, leg.role, conn.id)
        await conn.send(Answer(callsid=leg.callsid, reconnect=leg.reconnect_token))

    def _find_by_token(self, callsid: str, token: str | None) -> tuple[BridgedCall, Leg] | None:
        for call in self.calls:
            for leg in [call.caller, *call.callees]:
                if token and leg.reconnect_token == token and leg.callsid == callsid:
                    return call, leg
        return None

    async def _take_over_ringing(
        self, call: BridgedCall, leg: Leg, conn: ClientConnection, invite: Invite
    ) -> None:
        """``connect(connect_token=...)`` on a ringing incoming call: answer it here."""
        taker = Leg(conn=conn, callsid=leg.callsid, role="callee")
        pc = self._new_pc()
        taker.pc = pc
        try:
            sdp = await pc.create_answer(invite.sdp, None)
        except Exception as exc:
            await _close_pc(taker)
            await conn.send(
                Hangup(
                    callsid=invite.callsid, error={"code": MALFORMED_REQUEST, "message": str(exc)}
                )
            )
            return
        call.callees.append(taker)
        self._index(call, taker, taker.callsid)
        for other in list(call.callees):
            if other is not taker:
                await self._drop_callee(call, other, notify=True)
        await self._connect_callee(call, taker, answer_sdp=sdp)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _ack(callsid: str, voiceeventsid: str) -> Message:
    from softphone.signaling.messages import Ack

    return Ack(acktype="message", callsid=callsid, voiceeventsid=voiceeventsid)


async def _close_pc(leg: Leg) -> None:
    pc, leg.pc = leg.pc, None
    if pc is not None:
        with contextlib.suppress(Exception):
            await pc.close()


__all__ = ["BridgedCall", "CallPhase", "CallRouter", "Cancel", "Error", "Leg"]

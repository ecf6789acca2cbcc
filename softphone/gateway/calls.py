"""Call routing and media bridging: the gateway's built-in voice application.

Until TwiML applications exist, every outgoing ``invite`` runs one built-in app:

* ``To=client:NAME`` rings every device registered as NAME in the caller's own
  account (``invite`` to each), sends ``ringing`` to the caller, and on the first
  ``answer`` cancels the other devices, answers the caller and bridges the two legs'
  audio;
* ``To=echo``, or no ``To`` at all (what PreflightTest sends), answers at once and
  plays the caller's audio back to it.

Either side's ``hangup`` ends both legs; a caller that gives up while the callee
rings makes the callee devices get ``cancel``; a callee ``reject`` cancels the
identity's other devices and ends the call for the caller. DTMF (RFC 4733 or the
``dtmf`` frame) and user-defined messages travel to the other leg.

What a client may ask is bounded (:class:`~softphone.gateway.limits.Limits`): a
token needs an outgoing grant to place calls (31201); calls per connection and per
account are capped (31206); an answered call whose media does not connect within
``media_timeout_s`` is hung up (53405); digits, records and ids are bounded.
Reconnect tokens only work for the identity and account they were issued to.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

import attrs

from softphone.audio_backends.base import AudioSource
from softphone.gateway import media_bridge
from softphone.gateway.accounts import AccountStore, Application
from softphone.gateway.app.app_call import AppCall, AppSettings
from softphone.gateway.app.services import AppServices
from softphone.gateway.call_history import API_END_REASON, CallHistoryLike, final_status
from softphone.gateway.leg_media import LegMedia
from softphone.gateway.limits import Limits
from softphone.gateway.presence import Presence
from softphone.gateway.tokens import VerifiedToken
from softphone.gateway.twiml import events as twiml_events
from softphone.gateway.twiml.model import Client, Method
from softphone.gateway.twiml.params import voice_request_params
from softphone.gateway.twiml.runner import TwimlRunner
from softphone.media.peer_connection import PeerConnection
from softphone.media.sdp import new_dtls_session
from softphone.signaling.codes import (
    APPLICATION_NOT_FOUND,
    AUTHORIZATION_ERROR,
    CALL_MESSAGE_EVENT_TYPE_INVALID,
    DECLINE,
    MALFORMED_REQUEST,
    MAX_PARAMETER_LENGTH_EXCEEDED,
    MEDIA_CONNECTION_FAILED,
    NOT_FOUND,
    PAYLOAD_SIZE_EXCEEDED,
    RATE_EXCEEDED,
    RECONNECT_PARAMETER_INVALID,
    TEMPORARILY_UNAVAILABLE,
)
from softphone.signaling.messages import (
    Ack,
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

log = logging.getLogger("softphone.gateway.calls")

RING_TIMEOUT_S = 60.0
MAX_MESSAGE_BYTES = 4096
USER_DEFINED_MESSAGE = "user-defined-message"
DTMF_CHARACTERS = frozenset("0123456789*#ABCDw")
"""What a ``dtmf`` frame may carry: the JS SDK's ``0-9 * # w`` plus RFC 4733's A-D."""
DTMF_PAUSE_S = 0.5
"""A ``w`` in a digit string."""


class CallPhase(enum.Enum):
    """Where a bridged call is in its life."""

    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class CallClient(Protocol):
    """What the router needs of a client connection (the gateway's ``ClientConnection``).

    The router only reads who the client is and queues frames for it, so it can be
    driven without a socket (tests give it a connection that records the frames).
    """

    @property
    def id(self) -> int:
        """Unique per connection: the router keys a client's call ids by it."""

    @property
    def token(self) -> VerifiedToken | None:
        """The token of the last valid ``listen`` (its grants decide what may be placed)."""

    @property
    def identity(self) -> str | None:
        """The token's identity, or None before a valid ``listen``."""

    @property
    def account_sid(self) -> str | None:
        """The token's account, or None before a valid ``listen``."""

    @property
    def reconnect_timeout_s(self) -> float:
        """How long this client's calls are held after its socket goes (``listen``)."""

    def send(self, message: Message) -> bool:
        """Queue one frame for the client without waiting; False if it is gone."""


BridgeFactory = Callable[[PeerConnection, PeerConnection], media_bridge.Bridge]
"""Joins the media of two answered legs (:func:`~softphone.gateway.media_bridge.bridge`)."""
EchoFactory = Callable[[PeerConnection], media_bridge.Bridge]
"""Plays a leg's audio back to it (:func:`~softphone.gateway.media_bridge.echo`)."""
AdoptRemote = Callable[["CallClient", Invite], Awaitable["CallClient | bool"]]
"""(the reconnecting client, its reconnect ``invite`` for a leg this gateway does not
hold) -> the stand-in of a dead gateway whose leg the client takes over here, True when
the reconnect was passed to the live gateway that holds the leg (its frames are
relayed there from now on), False when the cluster knows no such leg (a clustered
gateway's :meth:`~softphone.gateway.cluster.node.ClusterNode.adopt`)."""
RemoteTargets = Callable[[str, str, str], Awaitable[list[CallClient]]]
"""(account, identity, the caller's SDP offer) -> stand-ins for that identity's
registrations on other gateways of a cluster (:mod:`softphone.gateway.cluster`), rung
like local devices (the offer tells them which codec the caller's leg will carry)."""


@attrs.define(eq=False)
class Leg:
    """One side of a call as one client connection sees it."""

    conn: CallClient
    callsid: str
    role: str
    """``caller`` or ``callee``."""
    account_sid: str
    identity: str
    """Whose leg this is: only this identity of this account may reconnect to it."""
    reconnect_token: str = attrs.field(factory=lambda: "RT" + secrets.token_urlsafe(24))
    pc: PeerConnection | None = None
    temp_sid: str | None = None
    """The caller's ``TJS…`` id, accepted in its frames until it learns the CallSid."""
    sid_told: bool = False
    """The client was told ``callsid`` (in ``ringing`` or ``answer``); until then our
    frames to it must carry ``temp_sid``, the only id it knows."""
    detach_timer: asyncio.TimerHandle | None = None
    """Set while the leg's socket is gone and we wait for a reconnect ``invite``."""
    media_up: bool = False
    """Its media (ICE + DTLS) connected at least once."""
    digit_backlog: str = ""
    """Digits waiting to be played to this leg (bounded by ``max_dtmf_digits``)."""
    digit_player: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, conn: CallClient, callsid: str, role: str, **kwargs: Any) -> Leg:
        """A leg for ``conn``, bound to the account and identity of its current token."""
        assert conn.account_sid is not None and conn.identity is not None
        return cls(conn, callsid, role, conn.account_sid, conn.identity, **kwargs)


_api_origin_ids = itertools.count(1)


@attrs.define(eq=False)
class ApiOrigin:
    """The caller of a call the REST API created: no socket, so frames to it go nowhere.

    It stands in the call's caller leg until a rung Device answers; that Device's leg
    then becomes the caller leg, the one the call's TwiML runs on.
    """

    account_sid: str
    id: int = attrs.field(factory=lambda: -next(_api_origin_ids))
    token: VerifiedToken | None = None
    identity: str = "api"
    reconnect_timeout_s: float = 0.0

    def send(self, message: Message) -> bool:
        """Nobody listens: dropped."""
        return False


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
    media_timer: asyncio.TimerHandle | None = None
    digits: str = ""
    """DTMF digits seen on this call (either direction), for its record; bounded."""
    digits_dropped: int = 0
    """Digits seen beyond what :attr:`digits` keeps."""
    bridge: media_bridge.Bridge | None = None
    """The media between the legs once answered (RTP forwarding or transcoding)."""
    child_sid: str | None = None
    """The CallSid of the dialled legs (one per ``<Dial>``), for the call history."""
    app: AppCall | None = None
    """The TwiML application running this call (None: the built-in app)."""

    def other(self, leg: Leg) -> Leg | None:
        """The leg on the far side of ``leg`` (the caller itself for echo calls)."""
        if leg is self.caller:
            return self.connected
        return self.caller

    def media_legs(self) -> list[Leg]:
        """The legs whose media must be up once answered (one for an echo call)."""
        legs = [self.caller]
        if self.connected is not None and self.connected is not self.caller:
            legs.append(self.connected)
        return legs


class CallRouter:
    """Every live call of one gateway, indexed by every sid and token a client may use."""

    def __init__(
        self,
        accounts: AccountStore,
        presence: Presence,
        limits: Limits,
        leg_media: Callable[[], PeerConnection] | None = None,
        *,
        bridge: BridgeFactory | None = None,
        echo: EchoFactory | None = None,
        apps: AppServices | None = None,
    ) -> None:
        """Everything the router touches beyond its own state is given to it here.

        ``leg_media`` makes each leg's peer connection (default :class:`LegMedia`);
        ``bridge`` and ``echo`` make the media between answered legs (default
        :mod:`~softphone.gateway.media_bridge`'s, looked up when the router is built);
        ``apps``: what TwiML application calls use (webhooks, speech, recordings).
        """
        self.accounts = accounts
        self.presence = presence
        self.limits = limits
        self.leg_media = leg_media or LegMedia()
        """Makes each leg's peer connection (bind/advertised address, TURN)."""
        self.bridge = bridge or media_bridge.bridge
        self.echo = echo or media_bridge.echo
        self._by_sid: dict[str, tuple[BridgedCall, Leg]] = {}
        self.calls: list[BridgedCall] = []
        self.records: list[dict[str, Any]] = []
        """One entry per ended call, the newest ``max_call_records``: sid, from, to,
        whether it was answered, reason, error, digits (and how many more were dropped)."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ring_timeout_s = RING_TIMEOUT_S
        self.history: CallHistoryLike | None = None
        """Where calls are recorded durably (the gateway's call store), if anywhere."""
        self.apps = apps or AppServices()
        """Shared by the calls that run a TwiML application."""
        self.remote_targets: RemoteTargets | None = None
        """Set by a clustered gateway: ``client:NAME`` also rings NAME's other gateways."""
        self.adopt_remote: AdoptRemote | None = None
        """Set by a clustered gateway: a reconnect ``invite`` for a leg this gateway does
        not hold may be for a leg of a gateway that died (see :meth:`_adopt_leg`)."""
        self.leg_token_told: Callable[[BridgedCall, Leg], None] | None = None
        """Called when a client is told a (new) reconnect token for its leg."""
        self.call_ended: Callable[[BridgedCall], None] | None = None
        """Called once when a call ends."""
        self.relay_frame: Callable[[CallClient, Message], bool] | None = None
        """Set by a clustered gateway: True when the frame is for a leg another gateway
        holds (it was passed there), so this router must not handle it."""
        self.client_gone: Callable[[CallClient], None] | None = None
        """Called when a client's socket closed (a clustered gateway stops relaying it)."""

    # -- dispatch ----------------------------------------------------------------------
    async def on_message(self, conn: CallClient, message: Message) -> None:
        """Handle a call-related frame from ``conn``."""
        if self.relay_frame is not None and self.relay_frame(conn, message):
            return
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
            log.info("conn %d: ignoring '%.64s'", conn.id, type_of(message))
            return
        await handler(conn, message)  # type: ignore[operator]

    async def on_listen(self, conn: CallClient) -> None:
        """A (re)``listen`` on ``conn``; nothing to do until reconnection support needs it."""

    async def on_connection_closed(self, conn: CallClient) -> None:
        """The socket went away: hold its calls for the client's reconnect window.

        A client that announced ``reconnectTimeout`` > 0 in ``listen`` may come back on
        a new socket with a reconnect ``invite`` within that many seconds; media keeps
        flowing meanwhile. With 0 (the JS default) its calls end at once.
        """
        if self.client_gone is not None:
            self.client_gone(conn)
        for call in list(self.calls):
            for leg in [call.caller, *call.callees]:
                if leg.conn is not conn or call.phase is CallPhase.ENDED:
                    continue
                if leg is not call.caller and leg is not call.connected:
                    await self._drop_callee(call, leg)
                elif leg.role == "dialed" and conn.reconnect_timeout_s <= 0:
                    await self._end_dial(call, "completed", skip=leg)
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
            if call.app is not None:
                await call.app.close()
        for task in list(self._tasks):
            task.cancel()
        await self.apps.close()

    def _lookup(self, conn: CallClient, callsid: str | None) -> tuple[BridgedCall, Leg] | None:
        if callsid is None:
            return None
        found = self._by_sid.get(f"{conn.id}:{callsid}")
        return found

    def _index(self, call: BridgedCall, leg: Leg, *sids: str | None) -> None:
        for sid in sids:
            if sid:
                self._by_sid[f"{leg.conn.id}:{sid}"] = (call, leg)

    # -- outgoing invite ---------------------------------------------------------------
    async def _on_invite(self, conn: CallClient, invite: Invite) -> None:
        if invite.reconnect:
            await self._on_reconnect_invite(conn, invite)
            return
        token = conn.token
        assert token is not None
        temp_sid = invite.callsid
        refusal = self._refusal(conn, invite)
        if refusal is not None:
            code, message = refusal
            log.info("conn %d: invite refused (%d %s)", conn.id, code, message)
            conn.send(Hangup(callsid=temp_sid, error={"code": code, "message": message}))
            return
        params = decode_params(invite.params) if invite.params else {}
        to = params.pop("To", "")
        caller = Leg.of(conn, call_sid(), "caller", temp_sid=temp_sid)
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
        if self.history is not None:
            self.history.started(
                call.sid,
                account_sid=call.account_sid,
                from_=f"client:{conn.identity}",
                to=to,
                direction="inbound",
                application_sid=token.outgoing_application_sid,
                detail={"params": params} if params else None,
            )
        app = self.accounts.application(call.account_sid, token.outgoing_application_sid or "")
        if app is not None and app.voice_url:
            self._start_app(call, app, f"client:{conn.identity}")
        elif to in ("", "echo"):
            await self._answer_echo(call)
        elif to.startswith("client:"):
            await self._dial_client(call, to.removeprefix("client:"))
        else:
            await self._end(
                call,
                reason="unknown destination",
                error={"code": NOT_FOUND, "message": f"Unknown destination {to!r}"},
            )

    def _refusal(self, conn: CallClient, invite: Invite) -> tuple[int, str] | None:
        """Why a new call from ``conn`` must not be placed, as (code, message), or None."""
        token = conn.token
        assert token is not None
        app_sid = token.outgoing_application_sid
        if app_sid is None:
            return AUTHORIZATION_ERROR, "Access token has no outgoing grant: it cannot place calls"
        if self.accounts.application(token.account_sid, app_sid) is None:
            return APPLICATION_NOT_FOUND, f"Application {app_sid} not found"
        if params_too_long(invite.params):
            return MAX_PARAMETER_LENGTH_EXCEEDED, "Custom parameters exceed 800 bytes"
        limits = self.limits
        if sum(call.caller.conn is conn for call in self.calls) >= limits.max_calls_per_connection:
            return RATE_EXCEEDED, (
                f"Too many calls on this connection (at most {limits.max_calls_per_connection})"
            )
        placed = sum(call.account_sid == token.account_sid for call in self.calls)
        if placed >= limits.max_calls_per_account:
            return RATE_EXCEEDED, (
                f"Too many calls for this account (at most {limits.max_calls_per_account})"
            )
        return None

    def _leg_pc(self, leg: Leg) -> PeerConnection:
        """A new peer connection for ``leg`` that marks the leg once its media is up."""
        pc = self.leg_media()
        leg.pc = pc

        def on_state(state: str) -> None:
            if state == "connected":
                leg.media_up = True

        pc.on_connection_state_change = on_state
        return pc

    async def _answer_caller(self, call: BridgedCall, source: AudioSource | None = None) -> None:
        """Create the caller leg's media (sending ``source``) and send ``answer`` with a
        reconnect token."""
        caller = call.caller
        pc = self._leg_pc(caller)
        try:
            sdp = await pc.create_answer(call.offer_sdp, source)
        except Exception as exc:
            log.warning("call %s: cannot answer caller: %s", call.sid, exc)
            await self._end(
                call,
                reason="bad offer",
                error={"code": MALFORMED_REQUEST, "message": f"Bad SDP offer: {exc}"},
            )
            return
        if _gathered_nothing(pc):
            await self._end_without_candidates(call)
            return
        call.offer_sdp = ""  # answered: no need to keep the client's text
        pc.on_dtmf = lambda digit: self._on_rfc4733(call, caller, digit)
        caller.conn.send(Answer(callsid=caller.callsid, sdp=sdp, reconnect=caller.reconnect_token))
        caller.sid_told = True
        self._token_told(call, caller)
        self._arm_media_timer(call)

    async def _end_without_candidates(self, call: BridgedCall) -> None:
        """Our own leg gathered no ICE candidate: media can never flow, so say so now."""
        log.error(
            "call %s: the gateway gathered no ICE candidate (is the media bind address "
            "one of this machine's, and is the RTP port range free?)",
            call.sid,
        )
        await self._end(
            call,
            reason="no media candidates",
            error={
                "code": MEDIA_CONNECTION_FAILED,
                "message": "The gateway could not open a media port for this call",
            },
        )

    async def _answer_echo(self, call: BridgedCall) -> None:
        call.phase = CallPhase.ANSWERED
        if self.history is not None:
            self.history.answered(call.sid)
        call.connected = call.caller
        await self._answer_caller(call)
        if call.caller.pc is not None and call.phase is CallPhase.ANSWERED:
            call.bridge = self.echo(call.caller.pc)

    async def _dial_client(
        self,
        call: BridgedCall,
        identity: str,
        *,
        parameters: dict[str, str] | None = None,
        remote: bool = True,
    ) -> None:
        """Ring ``identity``'s devices: this gateway's and (``remote``) the cluster's.

        ``parameters``: the callee ``invite`` parameters decided by another gateway
        (a relayed call keeps its CallSid, From and custom parameters).
        """
        # presence holds the connections the gateway registered: clients of this router
        registered = cast(list[CallClient], self.presence.connections(call.account_sid, identity))
        if remote and self.remote_targets is not None:
            registered += await self.remote_targets(call.account_sid, identity, call.offer_sdp)
        targets = [c for c in registered if c is not call.caller.conn]
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
        if parameters is None:
            parameters = {
                "AccountSid": call.account_sid,
                "ApiVersion": "2010-04-01",
                "CallSid": call_sid(),
                "From": f"client:{call.caller.identity}",
                "To": f"client:{identity}",
            }
            if call.custom_params:
                parameters["Params"] = encode_params_for_client(call.custom_params)
        child_sid = parameters["CallSid"]
        for conn in targets:
            if conn.account_sid is None:  # its token was refused since it registered
                continue
            leg = Leg.of(conn, child_sid, "callee")
            pc = self._leg_pc(leg)
            try:
                sdp = await pc.create_offer(None)
            except Exception as exc:
                log.warning("call %s: cannot offer to %s: %s", call.sid, conn, exc)
                await pc.close()
                continue
            if _gathered_nothing(pc):
                await pc.close()
                await self._end_without_candidates(call)
                return
            if call.phase is not CallPhase.RINGING:
                await pc.close()
                return
            call.callees.append(leg)
            self._index(call, leg, child_sid)
            conn.send(
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
        call.caller.conn.send(Ringing(callsid=call.sid))
        call.caller.sid_told = True
        call.child_sid = child_sid
        if self.history is not None:
            self.history.started(
                child_sid,
                account_sid=call.account_sid,
                from_=f"client:{call.caller.identity}",
                to=f"client:{identity}",
                direction="outbound-dial",
                parent_call_sid=call.sid,
            )
        call.ring_timer = asyncio.get_running_loop().call_later(
            self.ring_timeout_s, lambda: self._spawn(self._ring_timeout(call))
        )

    async def ring_relayed(
        self,
        caller: CallClient,
        *,
        link: str,
        identity: str,
        offer_sdp: str,
        parameters: dict[str, str],
    ) -> None:
        """Another gateway's caller (``caller``, its stand-in) rings ``identity`` here.

        The call runs as if ``caller`` had sent an ``invite`` for ``client:NAME``, but
        only this gateway's devices ring (no loop through the cluster) and they get the
        ``parameters`` the caller's gateway chose. ``offer_sdp`` is that gateway's offer
        for the media leg between the two; ``link`` is the id its frames carry here.
        """
        leg = Leg.of(caller, call_sid(), "caller", temp_sid=link)
        call = BridgedCall(
            sid=leg.callsid,
            caller=leg,
            to=f"client:{identity}",
            custom_params={},
            account_sid=leg.account_sid,
            offer_sdp=offer_sdp,
        )
        self.calls.append(call)
        self._index(call, leg, link, leg.callsid)
        log.info("call %s relayed from %s to client:%s", call.sid, caller, identity)
        await self._dial_client(call, identity, parameters=parameters, remote=False)

    async def _ring_timeout(self, call: BridgedCall) -> None:
        if call.phase is CallPhase.RINGING:
            await self._end(
                call,
                reason="no answer",
                error={"code": TEMPORARILY_UNAVAILABLE, "message": "No answer"},
            )

    # -- TwiML applications --------------------------------------------------------------
    def _start_app(self, call: BridgedCall, app: Application, from_: str) -> None:
        """Run ``app``'s TwiML for ``call`` (its ``voice_url``, else its fallback)."""
        account = self.accounts.account(call.account_sid)
        assert account is not None and account.auth_token is not None and app.voice_url
        params = voice_request_params(
            account_sid=call.account_sid,
            call_sid=call.sid,
            from_=from_,
            to=call.to,
            application_sid=app.sid,
            custom=call.custom_params,
        )
        runner = TwimlRunner.fetching(
            app.voice_url,
            "GET" if app.voice_method == "GET" else "POST",
            params,
            fallback_url=app.voice_fallback_url or "",
            fallback_method="GET" if app.voice_fallback_method == "GET" else "POST",
        )
        settings = AppSettings(
            account_sid=call.account_sid, auth_token=account.auth_token, application=app
        )
        call.app = AppCall(runner, settings, params, self, self.apps)
        call.caller.conn.send(Ringing(callsid=call.sid))
        call.caller.sid_told = True
        log.info("call %s runs application %s (%s)", call.sid, app.sid, app.voice_url)
        call.app.announce()
        call.app.start()

    def _app_call(self, app: AppCall) -> BridgedCall | None:
        return next((c for c in self.calls if c.app is app), None)

    async def app_answer(self, app: AppCall) -> bool:
        """Answer the app leg with the application's prompt player as its audio."""
        call = self._app_call(app)
        if call is None or call.phase is not CallPhase.RINGING:
            return call is not None and call.caller.pc is not None
        call.phase = CallPhase.ANSWERED
        if self.history is not None:
            self.history.answered(call.sid)
        await self._answer_caller(call, source=app.player)
        app.leg_pc = call.caller.pc
        return call.phase is CallPhase.ANSWERED and call.caller.pc is not None

    async def app_dial(self, app: AppCall, clients: tuple[Client, ...], caller_id: str) -> None:
        """``<Dial>``: ring every device of every client at once (one child CallSid)."""
        call = self._app_call(app)
        if call is None:
            app.dial_over("failed")
            return
        child_sid = call_sid()
        call.child_sid = child_sid
        for client in clients:
            registered = cast(
                list[CallClient], self.presence.connections(call.account_sid, client.identity)
            )
            parameters = {
                "AccountSid": call.account_sid,
                "ApiVersion": "2010-04-01",
                "CallSid": child_sid,
                "From": caller_id,
                "To": f"client:{client.identity}",
            }
            if client.parameters:
                parameters["Params"] = encode_params_for_client(dict(client.parameters))
            targets = [c for c in registered if c is not call.caller.conn and c.token is not None]
            targets += await self._remote_targets(call, client.identity)
            for conn in targets:
                await self._offer_leg(call, Leg.of(conn, child_sid, "dialed"), parameters)
        if not call.callees:
            log.info("call %s: <Dial> found no registered device", call.sid)
            app.dial_over("no-answer")
            return
        if self.history is not None:
            self.history.started(
                child_sid,
                account_sid=call.account_sid,
                from_=caller_id,
                to=",".join(f"client:{c.identity}" for c in clients),
                direction="outbound-dial",
                parent_call_sid=call.sid,
            )

    async def _remote_targets(self, call: BridgedCall, identity: str) -> list[CallClient]:
        """``identity``'s registrations on the cluster's other gateways, for a call this
        gateway's application places (``<Dial>``, the REST API): their media leg is
        offered in the codec the caller's leg carries, if it has one yet."""
        if self.remote_targets is None:
            return []
        pc = call.caller.pc
        carried = pc.local_sdp if pc is not None else None
        return await self.remote_targets(call.account_sid, identity, carried or "")

    async def _offer_leg(self, call: BridgedCall, leg: Leg, parameters: dict[str, str]) -> None:
        """Send ``invite`` to ``leg``'s device (a ringing callee of ``call``)."""
        pc = self._leg_pc(leg)
        try:
            sdp = await pc.create_offer(None)
        except Exception as exc:
            log.warning("call %s: cannot offer to %s: %s", call.sid, leg.conn, exc)
            await _close_pc(leg)
            return
        if _gathered_nothing(pc) or call.phase is CallPhase.ENDED:
            await _close_pc(leg)
            return
        call.callees.append(leg)
        self._index(call, leg, leg.callsid)
        leg.conn.send(
            Invite(
                callsid=leg.callsid,
                sdp=sdp,
                reconnect=leg.reconnect_token,
                parameters=dict(parameters),
            )
        )

    async def _dialed_answered(self, call: BridgedCall, leg: Leg) -> None:
        """A dialled device answered: stop the others ringing and bridge it to the caller."""
        assert call.app is not None and leg.pc is not None
        for other in list(call.callees):
            if other is not leg:
                await self._drop_callee(call, other, notify=True)
        call.connected = leg
        leg.conn.send(Answer(callsid=leg.callsid, reconnect=leg.reconnect_token))
        leg.pc.on_dtmf = lambda digit: self._on_rfc4733(call, leg, digit)
        if self.history is not None:
            self.history.answered(leg.callsid)
        if call.caller.pc is not None:
            call.bridge = self.bridge(call.caller.pc, leg.pc)
        log.info("call %s: <Dial> answered by %s", call.sid, leg.conn)
        call.app.dial_answered(leg.callsid, leg.pc)

    async def _end_dial(self, call: BridgedCall, status: str, *, skip: Leg | None = None) -> None:
        """The ``<Dial>`` is over: unbridge, end every dialled leg, tell the app ``status``."""
        if call.bridge is not None:
            call.bridge.close()
            call.bridge = None
        connected, call.connected = call.connected, None
        child = call.child_sid or ""
        for leg in list(call.callees):
            call.callees.remove(leg)
            self._by_sid.pop(f"{leg.conn.id}:{leg.callsid}", None)
            if leg is not skip:
                message = Hangup if leg is connected else Cancel
                leg.conn.send(message(callsid=leg.callsid))
            await _close_pc(leg)
        if connected is not None and self.history is not None:
            self.history.ended(
                child, answered=True, reason=f"dial {status}", detail={"status": status}
            )
        if call.app is not None:
            call.app.dial_over(status, child)

    async def app_stop_dial(self, app: AppCall) -> None:
        """The runner ended the ``<Dial>`` (timeout, ``*``, time limit, hang-up, redirect)."""
        call = self._app_call(app)
        if call is None:
            app.dial_over("completed")
            return
        await self._end_dial(call, "completed" if call.connected is not None else "no-answer")

    async def app_end(self, app: AppCall, reason: str, error: dict[str, Any] | None) -> None:
        """The application ended the call."""
        call = self._app_call(app)
        if call is not None:
            await self._end(call, reason=reason, error=error)

    async def _on_dialed_frame(self, call: BridgedCall, leg: Leg, message: Message) -> None:
        """``answer``, ``reject`` or ``hangup`` from a device a ``<Dial>`` rang."""
        if isinstance(message, Answer):
            if leg.pc is None or call.connected is not None:
                return
            assert message.sdp is not None
            try:
                await leg.pc.apply_answer(message.sdp)
            except Exception as exc:
                log.warning("call %s: bad answer from %s: %s", call.sid, leg.conn, exc)
                leg.conn.send(
                    Hangup(
                        callsid=leg.callsid, error={"code": MALFORMED_REQUEST, "message": str(exc)}
                    )
                )
                await self._drop_callee(call, leg)
                return
            await self._dialed_answered(call, leg)
        elif leg is call.connected:
            await self._end_dial(call, "completed", skip=leg)
        else:  # reject, or hangup while ringing
            rejected = isinstance(message, Reject)
            await self._drop_callee(call, leg, status="busy" if rejected else "no-answer")

    # -- media must come up ------------------------------------------------------------
    def _arm_media_timer(self, call: BridgedCall) -> None:
        """From the answer on, the call's media has ``media_timeout_s`` to connect."""
        if call.media_timer is not None:
            call.media_timer.cancel()
        call.media_timer = asyncio.get_running_loop().call_later(
            self.limits.media_timeout_s, lambda: self._spawn(self._media_deadline(call))
        )

    async def _media_deadline(self, call: BridgedCall) -> None:
        call.media_timer = None
        if call.phase is not CallPhase.ANSWERED:
            return
        down = [
            leg
            for leg in call.media_legs()
            if not (leg.media_up or (leg.pc is not None and leg.pc.connection_state == "connected"))
        ]
        if not down:
            return
        seconds = self.limits.media_timeout_s
        log.info("call %s: media of the %s leg never connected", call.sid, down[0].role)
        await self._end(
            call,
            reason="media did not connect",
            error={
                "code": MEDIA_CONNECTION_FAILED,
                "message": f"Media did not connect within {seconds:g} s",
            },
        )

    # -- callee answers / rejects ------------------------------------------------------
    async def _on_answer(self, conn: CallClient, answer: Answer) -> None:
        found = self._lookup(conn, answer.callsid)
        if found is None:
            log.info("conn %d: answer for unknown call %.64s", conn.id, answer.callsid)
            return
        call, leg = found
        if leg.role == "dialed":
            await self._on_dialed_frame(call, leg, answer)
            return
        if leg.role != "callee" or call.phase is not CallPhase.RINGING or leg.pc is None:
            return
        assert answer.sdp is not None
        try:
            await leg.pc.apply_answer(answer.sdp)
        except Exception as exc:
            log.warning("call %s: bad answer from %s: %s", call.sid, conn, exc)
            conn.send(
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
        if isinstance(call.caller.conn, ApiOrigin):
            await self._api_call_answered(call, leg, answer_sdp)
            return
        call.phase = CallPhase.ANSWERED
        call.connected = leg
        if self.history is not None:
            for sid in (call.sid, call.child_sid):
                if sid is not None:
                    self.history.answered(sid)
        if call.ring_timer:
            call.ring_timer.cancel()
        for other in list(call.callees):
            if other is not leg:
                await self._drop_callee(call, other, notify=True)
        assert leg.pc is not None
        leg.pc.on_dtmf = lambda digit: self._on_rfc4733(call, leg, digit)
        leg.conn.send(Answer(callsid=leg.callsid, sdp=answer_sdp, reconnect=leg.reconnect_token))
        self._token_told(call, leg)
        await self._answer_caller(call)
        if call.phase is CallPhase.ANSWERED and call.caller.pc is not None and leg.pc is not None:
            call.bridge = self.bridge(call.caller.pc, leg.pc)
        log.info("call %s answered by %s", call.sid, leg.conn)

    async def _on_reject(self, conn: CallClient, reject: Reject) -> None:
        found = self._lookup(conn, reject.callsid)
        if found is None:
            return
        call, leg = found
        if leg.role == "dialed":
            await self._on_dialed_frame(call, leg, reject)
            return
        if leg.role != "callee" or call.phase is not CallPhase.RINGING:
            return
        log.info("call %s rejected by %s", call.sid, conn)
        await self._end(
            call,
            reason="rejected",
            error={"code": DECLINE, "message": "The callee declined the call"},
            skip=leg,
        )

    async def _drop_callee(
        self, call: BridgedCall, leg: Leg, *, notify: bool = False, status: str = "no-answer"
    ) -> None:
        """Stop ringing ``leg`` (``notify``: send it ``cancel``). The last one gone ends
        a ringing call, or a ``<Dial>`` with ``status``."""
        if leg in call.callees:
            call.callees.remove(leg)
        self._by_sid.pop(f"{leg.conn.id}:{leg.callsid}", None)
        if notify:
            leg.conn.send(Cancel(callsid=leg.callsid))
        await _close_pc(leg)
        if leg.role == "dialed":
            if not call.callees and call.connected is None and call.app is not None:
                call.app.dial_over(status, leg.callsid)
            return
        if call.phase is CallPhase.RINGING and not call.callees:
            await self._end(
                call,
                reason="no callee left",
                error={"code": TEMPORARILY_UNAVAILABLE, "message": "No answer"},
            )

    # -- hangup and the end of a call --------------------------------------------------
    async def _on_hangup(self, conn: CallClient, hangup: Hangup) -> None:
        found = self._lookup(conn, hangup.callsid)
        if found is None:
            return
        call, leg = found
        if leg.role == "dialed":
            await self._on_dialed_frame(call, leg, hangup)
            return
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
        for timer in (call.ring_timer, call.media_timer):
            if timer is not None:
                timer.cancel()
        quiet = {skip, notify}
        caller = call.caller
        self._record(call, phase, reason, error)
        if caller not in quiet:
            sid = caller.callsid if caller.sid_told else (caller.temp_sid or caller.callsid)
            caller.conn.send(Hangup(callsid=sid, error=error))
        for leg in call.callees:
            if leg in quiet:
                continue
            if leg is call.connected:
                leg.conn.send(Hangup(callsid=leg.callsid))
            else:
                leg.conn.send(Cancel(callsid=leg.callsid))
        if call.bridge is not None:
            call.bridge.close()
        for leg in [caller, *call.callees]:
            if leg.detach_timer is not None:
                leg.detach_timer.cancel()
                leg.detach_timer = None
            if leg.digit_player is not None:
                leg.digit_player.cancel()
            leg.digit_backlog = ""
            await _close_pc(leg)
        self._by_sid = {k: v for k, v in self._by_sid.items() if v[0] is not call}
        if call in self.calls:
            self.calls.remove(call)
        log.info("call %s ended: %s", call.sid, reason)
        if self.call_ended is not None:
            self.call_ended(call)
        if call.app is not None:
            call.app.leg_pc = None
            final = final_status(phase is CallPhase.ANSWERED, reason)
            call.app.completed(final)  # the runner hears of it before the dial's end
            if call.app.dialing:
                dialed = call.connected is not None and call.connected is not caller
                call.app.dial_over("completed" if dialed else "canceled", call.child_sid or "")

    def _record(
        self, call: BridgedCall, phase: CallPhase, reason: str, error: dict[str, Any] | None
    ) -> None:
        """Keep the call's record; only the newest ``max_call_records`` are kept."""
        self.records.append(
            {
                "sid": call.sid,
                "from": call.caller.identity,
                "to": call.to,
                "answered": phase is CallPhase.ANSWERED,
                "reason": reason,
                "error": error,
                "digits": call.digits,
                "digits_dropped": call.digits_dropped,
            }
        )
        excess = len(self.records) - self.limits.max_call_records
        if excess > 0:
            del self.records[:excess]
        if self.history is not None:
            answered = phase is CallPhase.ANSWERED
            detail = {
                "reason": reason,
                "error": error,
                "digits": call.digits,
                "digits_dropped": call.digits_dropped,
            }
            for sid in (call.sid, call.child_sid):
                if sid is not None:
                    self.history.ended(sid, answered=answered, reason=reason, detail=detail)

    # -- in-call features --------------------------------------------------------------
    async def _on_dtmf(self, conn: CallClient, dtmf: Dtmf) -> None:
        found = self._lookup(conn, dtmf.callsid)
        if found is None:
            return
        call, leg = found
        limit = self.limits.max_dtmf_digits
        if len(dtmf.dtmf) > limit or not set(dtmf.dtmf) <= DTMF_CHARACTERS:
            conn.send(
                Error.of(
                    MALFORMED_REQUEST,
                    f"DTMF must be at most {limit} of 0-9, *, #, A-D and w",
                    callsid=dtmf.callsid,
                )
            )
            return
        self._note_digits(call, dtmf.dtmf.replace("w", ""))
        self._digits_to_app(call, leg, dtmf.dtmf)
        if not self._relay_digits(call, leg, dtmf.dtmf):
            conn.send(
                Error.of(
                    RATE_EXCEEDED,
                    f"More than {limit} digits waiting to be played: send them slower",
                    callsid=dtmf.callsid,
                )
            )

    def _on_rfc4733(self, call: BridgedCall, leg: Leg, digit: str) -> None:
        self._note_digits(call, digit)
        self._digits_to_app(call, leg, digit)
        self._relay_digits(call, leg, digit)

    @staticmethod
    def _digits_to_app(call: BridgedCall, leg: Leg, digits: str) -> None:
        """The app leg's digits go to its TwiML (``<Gather>``, ``<Record>``, ``hangupOnStar``)."""
        if call.app is not None and leg is call.caller:
            for digit in digits.replace("w", ""):
                call.app.post(twiml_events.Digit(digit))

    def _note_digits(self, call: BridgedCall, digits: str) -> None:
        room = max(0, self.limits.max_recorded_digits - len(call.digits))
        call.digits += digits[:room]
        call.digits_dropped += max(0, len(digits) - room)

    def _relay_digits(self, call: BridgedCall, leg: Leg, digits: str) -> bool:
        """Queue ``digits`` for the far leg, played one after the other; False if full.

        Never blocks the sender's frames: a single player task per leg plays them.
        """
        other = call.other(leg)
        if other is None or other is leg or other.pc is None:
            return True
        if len(other.digit_backlog) + len(digits) > self.limits.max_dtmf_digits:
            return False
        other.digit_backlog += digits
        if other.digit_player is None or other.digit_player.done():
            other.digit_player = asyncio.ensure_future(self._play_digits(other))
        return True

    async def _play_digits(self, leg: Leg) -> None:
        """Play ``leg``'s digit backlog as RFC 4733 events; ``w`` pauses half a second."""
        while leg.digit_backlog and leg.pc is not None:
            if leg.digit_backlog[0] == "w":
                leg.digit_backlog = leg.digit_backlog[1:]
                await asyncio.sleep(DTMF_PAUSE_S)
                continue
            run, pause, rest = leg.digit_backlog.partition("w")
            leg.digit_backlog = pause + rest
            if not leg.pc.can_insert_dtmf:
                continue
            try:
                await leg.pc.insert_dtmf(run)
            except (RuntimeError, ValueError) as exc:  # media gone or renegotiated meanwhile
                log.info("cannot play digits to the %s leg: %s", leg.role, exc)

    async def _on_call_message(self, conn: CallClient, message: CallMessage) -> None:
        found = self._lookup(conn, message.callsid)
        sid = message.voiceeventsid
        if found is None:
            conn.send(
                Error(
                    callsid=message.callsid,
                    voiceeventsid=sid,
                    error={"code": NOT_FOUND, "message": "Unknown call"},
                )
            )
            return
        call, leg = found
        if message.messagetype != USER_DEFINED_MESSAGE:
            conn.send(
                Error(
                    callsid=message.callsid,
                    voiceeventsid=sid,
                    error={
                        "code": CALL_MESSAGE_EVENT_TYPE_INVALID,
                        "message": "Only user-defined-message is supported",
                    },
                )
            )
            return
        size = len(str(message.content).encode())
        if size > MAX_MESSAGE_BYTES:
            conn.send(
                Error(
                    callsid=message.callsid,
                    voiceeventsid=sid,
                    error={
                        "code": PAYLOAD_SIZE_EXCEEDED,
                        "message": f"Message over {MAX_MESSAGE_BYTES} bytes",
                    },
                )
            )
            return
        conn.send(Ack(acktype="message", callsid=message.callsid, voiceeventsid=sid))
        other = call.other(leg)
        if other is not None and other is not leg:
            other.conn.send(
                CallMessage(
                    callsid=other.callsid,
                    content=message.content,
                    contenttype=message.contenttype,
                    messagetype=message.messagetype,
                    voiceeventsid=sid,
                )
            )

    async def _on_reinvite(self, conn: CallClient, reinvite: Reinvite) -> None:
        """An ICE restart offer from either side: answer it on that leg, media untouched.

        Works for our SDK and for a browser's standard re-offer with a new ufrag; the
        other leg of the call never notices.
        """
        found = self._lookup(conn, reinvite.callsid)
        if found is not None and _two_party(found[0]):
            call, leg = found
            if leg.pc is None or new_dtls_session(leg.pc.remote_sdp, reinvite.sdp):
                answer = await self._reanchor_media(call, leg, reinvite.sdp)
                if answer is not None:
                    conn.send(Answer(callsid=leg.callsid, sdp=answer))
                    return
        if found is None or found[1].pc is None:
            conn.send(
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
            conn.send(
                Error(
                    callsid=reinvite.callsid, error={"code": MALFORMED_REQUEST, "message": str(exc)}
                )
            )
            return
        log.info("call %s: ICE restart answered for the %s leg", call.sid, leg.role)
        conn.send(Answer(callsid=leg.callsid, sdp=sdp))

    async def _on_reconnect_invite(self, conn: CallClient, invite: Invite) -> None:
        """A reconnect ``invite``: signaling came back, or a connect token is used.

        For a live leg (same CallSid and token, and the identity and account the token
        was issued to) the leg moves to this connection and keeps its media: the reply
        is ``answer`` with a fresh token and no SDP. For a ringing callee leg taken over
        with ``connect_token`` it is an answer from a new device of the same identity.
        Anything else gets ``hangup`` with 31107.
        """
        found = self._find_by_token(conn, invite.callsid, invite.reconnect)
        if found is None and self.adopt_remote is not None:
            outcome = await self.adopt_remote(conn, invite)
            if outcome is True:
                return  # relayed to the gateway that holds the leg: it answers
            adopted = self._leg_of(outcome) if not isinstance(outcome, bool) else None
            if adopted is not None and adopted[0].phase is CallPhase.ANSWERED:
                await self._adopt_leg(*adopted, conn, invite.callsid)
                return
        if found is None:
            conn.send(
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
        conn.send(Answer(callsid=leg.callsid, reconnect=leg.reconnect_token))
        self._token_told(call, leg)

    def _token_told(self, call: BridgedCall, leg: Leg) -> None:
        if self.leg_token_told is not None:
            self.leg_token_told(call, leg)

    async def _adopt_leg(self, call: BridgedCall, leg: Leg, conn: CallClient, callsid: str) -> None:
        """A client whose gateway died reconnected here, where its call's other side is.

        ``leg`` is this gateway's end of the link to the dead gateway: it becomes the
        client's own leg (the CallSid it knows, a fresh reconnect token). The link's
        media died with that gateway, so the leg has no media until the client offers
        anew (a ``reinvite``, which :meth:`_on_reinvite` answers with a fresh peer
        connection); until then the other side hears silence, and the media timeout
        ends the call if no offer comes.
        """
        if leg.detach_timer is not None:
            leg.detach_timer.cancel()
            leg.detach_timer = None
        self._by_sid = {k: v for k, v in self._by_sid.items() if v[1] is not leg}
        if call.bridge is not None:
            call.bridge.close()
            call.bridge = None
        await _close_pc(leg)
        leg.conn = conn
        leg.callsid = callsid
        leg.temp_sid = None
        leg.sid_told = True
        leg.media_up = False
        leg.reconnect_token = "RT" + secrets.token_urlsafe(24)
        self._index(call, leg, callsid)
        log.info(
            "call %s: client:%s took over its %s leg here after its gateway went away",
            call.sid,
            leg.identity,
            leg.role,
        )
        conn.send(Answer(callsid=callsid, reconnect=leg.reconnect_token))
        self._token_told(call, leg)
        self._arm_media_timer(call)

    async def _reanchor_media(self, call: BridgedCall, leg: Leg, offer_sdp: str) -> str | None:
        """Answer ``offer_sdp`` with a new peer connection for ``leg`` and bridge it anew.

        For a leg with no media (taken over from a dead gateway) or whose client
        started a new DTLS session (its offer's fingerprint changed). None if the
        offer cannot be answered.
        """
        if call.bridge is not None:
            call.bridge.close()
            call.bridge = None
        await _close_pc(leg)
        pc = self._leg_pc(leg)
        try:
            sdp = await pc.create_answer(offer_sdp, None)
        except Exception as exc:
            log.warning(
                "call %s: cannot answer the %s leg's new offer: %s", call.sid, leg.role, exc
            )
            await _close_pc(leg)
            return None
        pc.on_dtmf = lambda digit: self._on_rfc4733(call, leg, digit)
        caller_pc, callee_pc = call.caller.pc, call.connected.pc if call.connected else None
        if caller_pc is not None and callee_pc is not None:
            call.bridge = self.bridge(caller_pc, callee_pc)
        log.info("call %s: new media session for the %s leg", call.sid, leg.role)
        return sdp

    def _leg_of(self, conn: CallClient) -> tuple[BridgedCall, Leg] | None:
        """The live call leg ``conn`` holds (a cluster link holds one at most)."""
        for call in self.calls:
            for leg in [call.caller, *call.callees]:
                if leg.conn is conn and call.phase is not CallPhase.ENDED:
                    return call, leg
        return None

    def _find_by_token(
        self, conn: CallClient, callsid: str, token: str | None
    ) -> tuple[BridgedCall, Leg] | None:
        """The leg ``token`` was issued for, if ``conn`` speaks for the same identity."""
        if not token:
            return None
        presented = token.encode()
        for call in self.calls:
            for leg in [call.caller, *call.callees]:
                if (
                    leg.callsid == callsid
                    and leg.account_sid == conn.account_sid
                    and leg.identity == conn.identity
                    and secrets.compare_digest(leg.reconnect_token.encode(), presented)
                ):
                    return call, leg
        return None

    async def _take_over_ringing(
        self, call: BridgedCall, leg: Leg, conn: CallClient, invite: Invite
    ) -> None:
        """``connect(connect_token=...)`` on a ringing incoming call: answer it here."""
        taker = Leg.of(conn, leg.callsid, "callee")
        pc = self._leg_pc(taker)
        try:
            sdp = await pc.create_answer(invite.sdp, None)
        except Exception as exc:
            await _close_pc(taker)
            conn.send(
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

    # -- calls the REST API creates and redirects ----------------------------------------
    async def create_call(
        self,
        account_sid: str,
        *,
        to: str,
        from_: str,
        settings: AppSettings,
        twiml: str = "",
        timeout_s: float = RING_TIMEOUT_S,
    ) -> BridgedCall:
        """Ring the Devices of ``to`` (``client:NAME``); the first to answer runs
        ``twiml``, or what ``settings.application.voice_url`` returns.

        The call exists (and is recorded) at once, ringing; nobody registered ends it
        as ``no-answer``, a reject as ``busy``, ``timeout_s`` of ringing as ``no-answer``.
        """
        sid = call_sid()
        app = settings.application
        params = voice_request_params(
            account_sid=account_sid,
            call_sid=sid,
            from_=from_,
            to=to,
            direction="outbound-api",
            application_sid=app.sid,
        )
        runner = (
            TwimlRunner(twiml, params, answered=True)
            if twiml
            else TwimlRunner.fetching(
                app.voice_url or "",
                "GET" if app.voice_method == "GET" else "POST",
                params,
                fallback_url=app.voice_fallback_url or "",
                fallback_method="GET" if app.voice_fallback_method == "GET" else "POST",
                answered=True,
            )
        )
        origin = Leg(ApiOrigin(account_sid), sid, "caller", account_sid, "api")
        call = BridgedCall(
            sid=sid, caller=origin, to=to, custom_params={}, account_sid=account_sid, offer_sdp=""
        )
        call.caller.sid_told = True
        call.app = AppCall(runner, settings, params, self, self.apps)
        self.calls.append(call)
        if self.history is not None:
            self.history.started(
                sid,
                account_sid=account_sid,
                from_=from_,
                to=to,
                direction="outbound-api",
                application_sid=settings.application.sid or None,
            )
        call.app.announce()
        identity = to.removeprefix("client:")
        parameters = {
            "AccountSid": account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": sid,
            "From": from_,
            "To": to,
        }
        targets = [
            c
            for c in cast(list[CallClient], self.presence.connections(account_sid, identity))
            if c.token is not None
        ]
        targets += await self._remote_targets(call, identity)
        for conn in targets:
            await self._offer_leg(call, Leg.of(conn, sid, "callee"), parameters)
        if not call.callees:
            await self._end(call, reason="no answer")
            return call
        log.info("call %s created by the REST API: ringing %s", sid, to)
        call.ring_timer = asyncio.get_running_loop().call_later(
            timeout_s, lambda: self._spawn(self._ring_timeout(call))
        )
        return call

    async def _api_call_answered(self, call: BridgedCall, leg: Leg, answer_sdp: str | None) -> None:
        """A Device answered a REST-created call: its leg becomes the caller leg and the
        call's TwiML starts on it."""
        app = call.app
        assert app is not None and leg.pc is not None
        call.phase = CallPhase.ANSWERED
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        for other in list(call.callees):
            if other is not leg:
                await self._drop_callee(call, other, notify=True)
        call.callees.remove(leg)
        leg.role = "caller"
        leg.sid_told = True
        call.caller = leg
        if self.history is not None:
            self.history.answered(call.sid)
        leg.conn.send(Answer(callsid=leg.callsid, sdp=answer_sdp, reconnect=leg.reconnect_token))
        leg.pc.replace_source(app.player)
        leg.pc.on_dtmf = lambda digit: self._on_rfc4733(call, leg, digit)
        app.leg_pc = leg.pc
        self._arm_media_timer(call)
        log.info("call %s answered by %s: its TwiML starts", call.sid, leg.conn)
        app.answered_elsewhere()
        app.start()

    async def redirect_call(
        self, account_sid: str, sid: str, *, url: str = "", method: str = "POST", twiml: str = ""
    ) -> CallPhase | None:
        """Run new TwiML (``twiml``, or what ``url`` returns) on a live answered call.

        What the call was doing stops (a ``<Dial>``'s legs hang up); a call of the
        built-in app is taken over by a TwiML runner on its caller leg, the callee hung
        up. The phase the call was in (only ``answered`` calls are redirected); None
        when ``account_sid`` has no live call ``sid``.
        """
        call = next(
            (c for c in self.calls if c.account_sid == account_sid and sid in (c.sid, c.child_sid)),
            None,
        )
        if call is None or call.phase is not CallPhase.ANSWERED:
            return None if call is None else call.phase
        verb: Method = "GET" if method.upper() == "GET" else "POST"
        if call.app is None:
            await self._adopt(call, url=url, method=verb, twiml=twiml)
        else:
            call.app.post(twiml_events.Redirected(url=url, method=verb, twiml=twiml))
        log.info("call %s redirected by the REST API", call.sid)
        return CallPhase.ANSWERED

    async def _adopt(self, call: BridgedCall, *, url: str, method: Method, twiml: str) -> None:
        """Move a built-in call onto a TwiML runner (its first REST redirect)."""
        caller = call.caller
        account = self.accounts.account(call.account_sid)
        token = caller.conn.token
        app_sid = token.outgoing_application_sid if token is not None else None
        params = voice_request_params(
            account_sid=call.account_sid,
            call_sid=call.sid,
            from_=f"client:{caller.identity}",
            to=call.to,
            call_status="in-progress",
            application_sid=app_sid or "",
            custom=call.custom_params,
        )
        runner = (
            TwimlRunner(twiml, params, answered=True)
            if twiml
            else TwimlRunner.fetching(url, method, params, answered=True)
        )
        settings = AppSettings(
            account_sid=call.account_sid,
            auth_token=(account.auth_token if account is not None else None) or "",
            application=Application(app_sid or ""),
        )
        if call.bridge is not None:
            call.bridge.close()
            call.bridge = None
        connected, call.connected = call.connected, None
        for leg in list(call.callees):
            call.callees.remove(leg)
            self._by_sid.pop(f"{leg.conn.id}:{leg.callsid}", None)
            leg.conn.send((Hangup if leg is connected else Cancel)(callsid=leg.callsid))
            await _close_pc(leg)
        if connected is not None and connected is not caller and self.history is not None:
            self.history.ended(connected.callsid, answered=True, reason="redirected", detail={})
        app = AppCall(runner, settings, params, self, self.apps)
        call.app = app
        if caller.pc is not None:
            caller.pc.replace_source(app.player)
        app.leg_pc = caller.pc
        app.start()

    async def end_call(self, account_sid: str, sid: str, *, canceled: bool) -> CallPhase | None:
        """End a live call as the REST API's ``Status`` update asks; the phase it was in.

        ``sid`` is the call's CallSid or its dialled leg's (the built-in app has nothing
        to do after a ``<Dial>``, so ending either leg ends both). ``canceled``
        (``Status=canceled``) ends only a call still ringing, as Twilio's does: an
        answered call is left alone. Otherwise (``Status=completed``) the call ends in
        any phase. The caller gets ``hangup``, a ringing callee ``cancel``, a connected
        one ``hangup``; the call history records it as ``completed`` if answered, else
        ``canceled``. None when ``account_sid`` has no live call ``sid``.
        """
        call = next(
            (c for c in self.calls if c.account_sid == account_sid and sid in (c.sid, c.child_sid)),
            None,
        )
        if call is None:
            return None
        phase = call.phase
        if phase is CallPhase.RINGING or not canceled:
            log.info("call %s: ending it for the REST API (%s)", call.sid, phase.value)
            await self._end(call, reason=API_END_REASON)
        return phase


def _gathered_nothing(pc: PeerConnection) -> bool:
    """Our own leg's gathering ended without a single candidate (media can never flow)."""
    report = pc.ice_gathering
    return report is not None and report.failure is not None


def _two_party(call: BridgedCall) -> bool:
    """An answered call between two clients' legs (no echo, no TwiML app)."""
    return (
        call.phase is CallPhase.ANSWERED
        and call.app is None
        and call.connected is not None
        and call.connected is not call.caller
    )


async def _close_pc(leg: Leg) -> None:
    pc, leg.pc = leg.pc, None
    if pc is not None:
        with contextlib.suppress(Exception):
            await pc.close()


__all__ = [
    "BridgeFactory",
    "BridgedCall",
    "CallClient",
    "CallPhase",
    "CallRouter",
    "Cancel",
    "EchoFactory",
    "Error",
    "Leg",
    "RemoteTargets",
]

"""The gateway's call rules, driven without sockets or media.

Each test feeds typed messages to a :class:`~softphone.gateway.calls.CallRouter`
built with its accounts, presence, limits, a fake leg-media factory and fake
bridges, and checks the frames each fake client connection was sent. Timers are
the event loop's: the tests shorten the timeouts instead of waiting for them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

from softphone.gateway import calls
from softphone.gateway.accounts import AccountStore, Application
from softphone.gateway.calls import CallRouter
from softphone.gateway.limits import Limits
from softphone.gateway.presence import Presence
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
)
from softphone.signaling.params import encode_params, temp_call_sid
from tests.gateway_fakes import (
    FakeBridges,
    FakeConnection,
    FakeLegMedia,
    FakePeerConnection,
    canned_sdp,
    token,
)

pytestmark = pytest.mark.pure

ACCOUNT = "AC" + "a" * 32
OTHER_ACCOUNT = "AC" + "b" * 32
APP = "AP" + "a" * 32
OTHER_APP = "AP" + "b" * 32
SHORT_S = 0.05
"""Timeouts the tests shorten to (the router's timers are real loop timers)."""


def code(message: Message) -> int | None:
    """The error code of a ``hangup`` or ``error`` frame."""
    error = getattr(message, "error", None) or {}
    value = error.get("code")
    return value if isinstance(value, int) else None


@attrs.define
class Rig:
    """A router and everything it is given."""

    limits: Limits = attrs.field(factory=Limits)
    accounts: AccountStore = attrs.field(factory=AccountStore)
    presence: Presence = attrs.field(factory=Presence)
    media: FakeLegMedia = attrs.field(factory=FakeLegMedia)
    bridges: FakeBridges = attrs.field(factory=FakeBridges)
    router: CallRouter = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.accounts.add_account(ACCOUNT, [Application(APP)])
        self.accounts.add_account(OTHER_ACCOUNT, [Application(OTHER_APP)])
        self.router = CallRouter(
            self.accounts,
            self.presence,
            self.limits,
            self.media,  # type: ignore[arg-type]
            bridge=self.bridges.bridge,  # type: ignore[arg-type]
            echo=self.bridges.echo,  # type: ignore[arg-type]
        )

    def client(
        self,
        identity: str,
        *,
        account: str = ACCOUNT,
        register: bool = True,
        outgoing: bool = True,
        reconnect_timeout_s: float = 0,
    ) -> FakeConnection:
        app = (APP if account == ACCOUNT else OTHER_APP) if outgoing else None
        conn = FakeConnection(
            token(identity, account, application_sid=app), reconnect_timeout_s=reconnect_timeout_s
        )
        if register:
            self.presence.register(account, identity, conn)
        return conn

    async def send(self, conn: FakeConnection, message: Message) -> None:
        await self.router.on_message(conn, message)  # type: ignore[arg-type]

    async def dial(
        self, caller: FakeConnection, to: str | None, **params: str
    ) -> tuple[str, Invite]:
        """Place a call; returns the caller's temporary id and the invite sent."""
        temp = temp_call_sid()
        fields = ({"To": to} if to is not None else {}) | params
        invite = Invite(
            callsid=temp,
            sdp=canned_sdp("client-offer"),
            twilio={"accountSid": caller.account_sid, "params": encode_params(fields)},
        )
        await self.send(caller, invite)
        return temp, invite

    async def closed(self, conn: FakeConnection) -> None:
        conn.closed = True
        await self.router.on_connection_closed(conn)  # type: ignore[arg-type]


@attrs.define
class Ring:
    """A ``client:`` call in progress: the caller and the invites its callees got."""

    rig: Rig
    caller: FakeConnection
    temp: str
    callees: list[FakeConnection]

    @property
    def sid(self) -> str:
        """The CallSid the caller learned from ``ringing``."""
        ringing = self.caller.only(Ringing)
        assert ringing.callsid is not None
        return ringing.callsid

    def invite(self, callee: FakeConnection) -> Invite:
        return callee.only(Invite)

    def child(self, callee: FakeConnection) -> str:
        return self.invite(callee).callsid

    async def answer(self, callee: FakeConnection) -> None:
        await self.rig.send(callee, Answer(callsid=self.child(callee), sdp=canned_sdp("callee")))


async def ring(rig: Rig, *callee_devices: FakeConnection, **params: str) -> Ring:
    caller = rig.client("alice", register=False)
    temp, _ = await rig.dial(caller, "client:bob", **params)
    return Ring(rig, caller, temp, list(callee_devices))


async def answered_call(rig: Rig) -> tuple[Ring, FakeConnection]:
    bob = rig.client("bob")
    call = await ring(rig, bob)
    await call.answer(bob)
    return call, bob


def leg_pcs(rig: Rig) -> tuple[FakePeerConnection, FakePeerConnection]:
    """(caller leg, callee leg) media of the one answered call."""
    (call,) = rig.router.calls
    assert call.connected is not None
    caller_pc, callee_pc = call.caller.pc, call.connected.pc
    assert isinstance(caller_pc, FakePeerConnection)
    assert isinstance(callee_pc, FakePeerConnection)
    return caller_pc, callee_pc


async def settle() -> None:
    """Let tasks the router spawned (digit players, timer callbacks) run."""
    for _ in range(5):
        await asyncio.sleep(0)


# -- ringing ---------------------------------------------------------------------------------


async def test_client_call_rings_every_device_of_the_identity_and_tells_the_caller() -> None:
    rig = Rig()
    bob1, bob2 = rig.client("bob"), rig.client("bob")
    carol = rig.client("carol")
    call = await ring(rig, bob1, bob2, Topic="hello world")

    first, second = call.invite(bob1), call.invite(bob2)
    assert first.callsid == second.callsid and first.callsid.startswith("CA")
    assert first.callsid != call.sid  # the callee leg is a child call
    assert first.reconnect and second.reconnect and first.reconnect != second.reconnect
    assert first.sdp == rig.media.made[0].local_sdp and "typ host" in first.sdp
    assert first.parameters == {
        "AccountSid": ACCOUNT,
        "ApiVersion": "2010-04-01",
        "CallSid": first.callsid,
        "From": "client:alice",
        "To": "client:bob",
        "Params": "Topic=hello%20world",
    }
    assert call.caller.types() == ["ringing"] and call.sid.startswith("CA")
    assert carol.sent == []
    assert rig.media.made[0].method_names() == ["create_offer"]


async def test_the_callers_own_connection_is_not_rung() -> None:
    rig = Rig()
    alice = rig.client("alice")
    other_alice = rig.client("alice")
    await rig.dial(alice, "client:alice")
    assert alice.types() == ["ringing"]
    assert other_alice.types() == ["invite"]


async def test_first_answer_wins_and_the_other_devices_get_cancel() -> None:
    rig = Rig()
    bob1, bob2 = rig.client("bob"), rig.client("bob")
    call = await ring(rig, bob1, bob2)
    child = call.child(bob1)

    await call.answer(bob2)

    assert bob1.types() == ["invite", "cancel"] and bob1.only(Cancel).callsid == child
    to_bob2 = bob2.only(Answer)
    assert to_bob2.callsid == child and to_bob2.sdp is None and to_bob2.reconnect
    to_alice = call.caller.only(Answer)
    assert to_alice.callsid == call.sid and to_alice.reconnect
    assert to_alice.sdp is not None and "typ host" in to_alice.sdp
    caller_pc, callee_pc = leg_pcs(rig)
    assert caller_pc.calls[0] == ("create_answer", to_alice_offer(rig))
    assert ("apply_answer", callee_pc.remote_sdp) in callee_pc.calls
    assert rig.media.made[0].closed  # bob1's leg media is freed
    (bridge,) = rig.bridges.made
    assert bridge.legs == (caller_pc, callee_pc)

    await call.answer(bob1)  # too late: that leg is gone
    assert bob1.types() == ["invite", "cancel"]
    assert len(rig.router.calls) == 1 and len(rig.bridges.made) == 1


def to_alice_offer(rig: Rig) -> str:
    """The offer the caller sent, as the router handed it to the caller leg's media."""
    caller_pc = rig.router.calls[0].caller.pc
    assert isinstance(caller_pc, FakePeerConnection) and caller_pc.remote_sdp is not None
    return caller_pc.remote_sdp


async def test_reject_ends_the_call_with_31603_and_cancels_the_other_devices() -> None:
    rig = Rig()
    bob1, bob2 = rig.client("bob"), rig.client("bob")
    call = await ring(rig, bob1, bob2)
    sid = call.sid

    await rig.send(bob1, Reject(callsid=call.child(bob1)))

    hangup = call.caller.sent[-1]
    assert isinstance(hangup, Hangup) and hangup.callsid == sid and code(hangup) == 31603
    assert bob1.types() == ["invite"]  # the rejecting device is told nothing
    assert bob2.types() == ["invite", "cancel"]
    assert rig.router.calls == [] and all(pc.closed for pc in rig.media.made)
    assert rig.router.records[-1]["reason"] == "rejected"
    assert rig.router.records[-1]["answered"] is False


async def test_reject_after_the_answer_changes_nothing() -> None:
    rig = Rig()
    call, bob = await answered_call(rig)
    await rig.send(bob, Reject(callsid=call.child(bob)))
    assert len(rig.router.calls) == 1 and call.caller.types() == ["ringing", "answer"]


async def test_caller_hangup_while_ringing_cancels_every_callee() -> None:
    rig = Rig()
    bob1, bob2 = rig.client("bob"), rig.client("bob")
    call = await ring(rig, bob1, bob2)

    await rig.send(call.caller, Hangup(callsid=call.sid))

    assert bob1.types() == bob2.types() == ["invite", "cancel"]
    assert call.caller.types() == ["ringing"]
    assert rig.router.calls == []
    assert rig.router.records[-1]["reason"] == "hangup by caller"


async def test_caller_hangup_by_temporary_id_is_understood_too() -> None:
    rig = Rig()
    bob = rig.client("bob")
    call = await ring(rig, bob)
    await rig.send(call.caller, Hangup(callsid=call.temp))
    assert bob.types() == ["invite", "cancel"] and rig.router.calls == []


async def test_a_ringing_device_that_hangs_up_only_drops_itself_until_none_is_left() -> None:
    rig = Rig()
    bob1, bob2 = rig.client("bob"), rig.client("bob")
    call = await ring(rig, bob1, bob2)

    await rig.send(bob1, Hangup(callsid=call.child(bob1)))
    assert call.caller.types() == ["ringing"] and bob2.types() == ["invite"]
    assert len(rig.router.calls) == 1

    await rig.send(bob2, Hangup(callsid=call.child(bob2)))
    assert code(call.caller.sent[-1]) == 31480
    assert rig.router.calls == []


async def test_nobody_answering_ends_the_call_with_31480_and_cancels() -> None:
    rig = Rig()
    rig.router.ring_timeout_s = SHORT_S
    bob = rig.client("bob")
    call = await ring(rig, bob)
    await asyncio.sleep(SHORT_S * 3)
    assert code(call.caller.sent[-1]) == 31480
    assert bob.types() == ["invite", "cancel"]
    assert rig.router.records[-1]["reason"] == "no answer"


async def test_an_answer_stops_the_ring_timer() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    rig.router.ring_timeout_s = SHORT_S
    call, _bob = await answered_call(rig)
    await asyncio.sleep(SHORT_S * 3)
    assert call.caller.types() == ["ringing", "answer"] and len(rig.router.calls) == 1


# -- who can be reached ----------------------------------------------------------------------


async def test_an_unregistered_callee_is_31480_under_the_temporary_id() -> None:
    rig = Rig()
    rig.client("bob", register=False)
    alice = rig.client("alice", register=False)
    temp, _ = await rig.dial(alice, "client:bob")
    (hangup,) = alice.sent
    assert isinstance(hangup, Hangup) and hangup.callsid == temp and code(hangup) == 31480
    assert rig.media.made == [] and rig.router.calls == []


async def test_the_same_identity_in_another_account_is_unreachable() -> None:
    rig = Rig()
    stranger_bob = rig.client("bob", account=OTHER_ACCOUNT)
    alice = rig.client("alice", register=False)
    await rig.dial(alice, "client:bob")
    assert code(alice.only(Hangup)) == 31480
    assert stranger_bob.sent == []


async def test_an_unregistered_device_stops_being_rung() -> None:
    rig = Rig()
    bob = rig.client("bob")
    rig.presence.unregister(ACCOUNT, "bob", bob)
    alice = rig.client("alice", register=False)
    await rig.dial(alice, "client:bob")
    assert code(alice.only(Hangup)) == 31480 and bob.sent == []


async def test_an_unknown_destination_is_31404() -> None:
    rig = Rig()
    alice = rig.client("alice", register=False)
    await rig.dial(alice, "+15551234567")
    assert code(alice.only(Hangup)) == 31404 and rig.router.calls == []


# -- refusals --------------------------------------------------------------------------------


async def test_params_over_800_bytes_are_refused_with_31103() -> None:
    rig = Rig()
    rig.client("bob")
    alice = rig.client("alice", register=False)
    temp, _ = await rig.dial(alice, "client:bob", Blob="x" * 800)
    hangup = alice.only(Hangup)
    assert hangup.callsid == temp and code(hangup) == 31103
    assert rig.media.made == []


async def test_params_of_exactly_800_bytes_are_accepted() -> None:
    rig = Rig()
    alice = rig.client("alice", register=False)
    fixed = len(encode_params({"To": "echo", "B": ""}))
    await rig.dial(alice, "echo", B="x" * (800 - fixed))
    assert alice.types() == ["answer"]


async def test_a_token_without_outgoing_grant_is_refused_with_31201() -> None:
    rig = Rig()
    rig.client("bob")
    alice = rig.client("alice", register=False, outgoing=False)
    await rig.dial(alice, "client:bob")
    assert code(alice.only(Hangup)) == 31201 and rig.router.calls == []


async def test_an_application_of_another_account_is_not_found_31001() -> None:
    rig = Rig()
    alice = FakeConnection(token("alice", ACCOUNT, application_sid=OTHER_APP))
    await rig.dial(alice, "echo")
    assert code(alice.only(Hangup)) == 31001


async def test_calls_per_connection_are_capped_with_31206() -> None:
    rig = Rig(limits=Limits(max_calls_per_connection=2, media_timeout_s=60))
    alice = rig.client("alice", register=False)
    for _ in range(2):
        await rig.dial(alice, "echo")
    temp, _ = await rig.dial(alice, "echo")
    hangup = alice.sent[-1]
    assert isinstance(hangup, Hangup) and hangup.callsid == temp and code(hangup) == 31206
    assert len(rig.router.calls) == 2

    other = rig.client("alice", register=False)  # another connection still may
    await rig.dial(other, "echo")
    assert other.types() == ["answer"]

    await rig.send(alice, Hangup(callsid=rig.router.calls[0].sid))  # one ends: room again
    await rig.dial(alice, "echo")
    assert alice.types()[-1] == "answer"


async def test_calls_per_account_are_capped_with_31206_across_connections() -> None:
    rig = Rig(limits=Limits(max_calls_per_account=3, media_timeout_s=60))
    first, second = rig.client("a1", register=False), rig.client("a2", register=False)
    for conn in (first, first, second):
        await rig.dial(conn, "echo")
    await rig.dial(second, "echo")
    assert code(second.sent[-1]) == 31206
    stranger = rig.client("s", account=OTHER_ACCOUNT, register=False)
    await rig.dial(stranger, "echo")  # another account has its own budget
    assert stranger.types() == ["answer"]


# -- echo --------------------------------------------------------------------------------------


@pytest.mark.parametrize("to", ["echo", None])
async def test_echo_answers_at_once_and_plays_the_caller_back(to: str | None) -> None:
    rig = Rig()
    alice = rig.client("alice", register=False)
    _, invite = await rig.dial(alice, to)
    (answer,) = alice.sent
    assert isinstance(answer, Answer) and answer.callsid == rig.router.calls[0].sid
    assert answer.sdp is not None and answer.reconnect
    (pc,) = rig.media.made
    assert pc.calls == [("create_answer", invite.sdp)]
    (bridge,) = rig.bridges.made
    assert bridge.legs == (pc,)


async def test_a_bad_offer_ends_the_call_with_31100() -> None:
    rig = Rig()
    rig.media.fail = frozenset({"create_answer"})
    alice = rig.client("alice", register=False)
    temp, _ = await rig.dial(alice, "echo")
    hangup = alice.only(Hangup)
    assert hangup.callsid == temp and code(hangup) == 31100
    assert rig.bridges.made == [] and rig.router.calls == []


async def test_a_leg_without_candidates_ends_the_call_with_53405_at_once() -> None:
    rig = Rig()
    rig.media.gathers_nothing = True
    bob = rig.client("bob")
    alice = rig.client("alice", register=False)
    await rig.dial(alice, "client:bob")
    assert code(alice.only(Hangup)) == 53405 and bob.sent == []
    assert all(pc.closed for pc in rig.media.made)


# -- media must connect ----------------------------------------------------------------------


async def test_media_that_never_connects_ends_the_call_with_53405() -> None:
    rig = Rig(limits=Limits(media_timeout_s=SHORT_S))
    call, bob = await answered_call(rig)
    await asyncio.sleep(SHORT_S * 3)
    assert code(call.caller.sent[-1]) == 53405
    assert bob.sent[-1] == Hangup(callsid=call.child(bob))
    assert rig.router.records[-1]["reason"] == "media did not connect"
    assert rig.bridges.made[0].closed


async def test_one_leg_connected_is_not_enough() -> None:
    rig = Rig(limits=Limits(media_timeout_s=SHORT_S))
    call, _ = await answered_call(rig)
    caller_pc, _ = leg_pcs(rig)
    caller_pc.connect()
    await asyncio.sleep(SHORT_S * 3)
    assert code(call.caller.sent[-1]) == 53405


async def test_connected_media_keeps_the_call() -> None:
    rig = Rig(limits=Limits(media_timeout_s=SHORT_S))
    call, bob = await answered_call(rig)
    rig.media.connect_all()
    await asyncio.sleep(SHORT_S * 3)
    assert call.caller.types() == ["ringing", "answer"] and bob.types() == ["invite", "answer"]
    assert len(rig.router.calls) == 1


async def test_an_echo_call_whose_media_never_connects_is_hung_up() -> None:
    rig = Rig(limits=Limits(media_timeout_s=SHORT_S))
    alice = rig.client("alice", register=False)
    await rig.dial(alice, "echo")
    await asyncio.sleep(SHORT_S * 3)
    assert alice.types() == ["answer", "hangup"] and code(alice.sent[-1]) == 53405


# -- hangup after the answer -----------------------------------------------------------------


@pytest.mark.parametrize("who", ["caller", "callee"])
async def test_either_side_hanging_up_ends_both_legs(who: str) -> None:
    rig = Rig()
    call, bob = await answered_call(rig)
    sid, child = call.sid, call.child(bob)
    if who == "caller":
        await rig.send(call.caller, Hangup(callsid=sid))
        assert bob.sent[-1] == Hangup(callsid=child)
        assert call.caller.types() == ["ringing", "answer"]
    else:
        await rig.send(bob, Hangup(callsid=child))
        assert call.caller.sent[-1] == Hangup(callsid=sid)
        assert bob.types() == ["invite", "answer"]
    assert rig.router.calls == [] and all(pc.closed for pc in rig.media.made)
    assert rig.bridges.made[0].closed
    assert rig.router.records[-1]["reason"] == f"hangup by {who}"
    assert rig.router.records[-1]["answered"] is True


async def test_frames_for_unknown_calls_are_ignored_or_refused() -> None:
    rig = Rig()
    mallory = rig.client("mallory", register=False)
    await rig.send(mallory, Hangup(callsid="CA" + "0" * 32))
    await rig.send(mallory, Answer(callsid="CA" + "0" * 32, sdp="v=0"))
    await rig.send(mallory, Reject(callsid="CA" + "0" * 32))
    await rig.send(mallory, Dtmf(callsid="CA" + "0" * 32, dtmf="1"))
    assert mallory.sent == []


async def test_call_ids_of_another_connection_are_not_honoured() -> None:
    rig = Rig()
    call, bob = await answered_call(rig)
    mallory = rig.client("bob")  # even the same identity, on another socket
    await rig.send(mallory, Hangup(callsid=call.child(bob)))
    await rig.send(mallory, Hangup(callsid=call.sid))
    assert len(rig.router.calls) == 1 and mallory.sent == []


async def test_shutdown_ends_every_call() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, bob = await answered_call(rig)
    await rig.router.shutdown()
    assert rig.router.calls == [] and call.caller.types()[-1] == "hangup"
    assert bob.types()[-1] == "hangup"


async def test_call_records_are_bounded() -> None:
    rig = Rig(limits=Limits(max_call_records=2, media_timeout_s=60))
    alice = rig.client("alice", register=False)
    for _ in range(3):
        await rig.dial(alice, "echo")
        await rig.send(alice, Hangup(callsid=rig.router.calls[0].sid))
    assert len(rig.router.records) == 2


# -- reconnection ----------------------------------------------------------------------------


async def test_an_unknown_reconnect_token_is_31107() -> None:
    rig = Rig()
    call, _ = await answered_call(rig)
    await rig.send(
        call.caller, Invite(callsid=call.sid, sdp=canned_sdp("x"), reconnect="RTnot-a-token")
    )
    hangup = call.caller.sent[-1]
    assert isinstance(hangup, Hangup) and hangup.callsid == call.sid and code(hangup) == 31107


async def test_a_reconnect_moves_the_leg_to_the_new_socket_with_a_fresh_token() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, bob = await answered_call(rig)
    old_token = call.caller.only(Answer).reconnect
    fresh = rig.client("alice", register=False)

    await rig.send(fresh, Invite(callsid=call.sid, sdp="", reconnect=old_token))

    reply = fresh.only(Answer)
    assert reply.callsid == call.sid and reply.sdp is None
    assert reply.reconnect and reply.reconnect != old_token
    again = rig.client("alice", register=False)  # the used token is spent
    await rig.send(again, Invite(callsid=call.sid, sdp="", reconnect=old_token))
    assert code(again.only(Hangup)) == 31107
    await rig.send(fresh, Hangup(callsid=call.sid))  # the new socket now speaks for the leg
    assert bob.sent[-1] == Hangup(callsid=call.child(bob))


@pytest.mark.parametrize(
    ("identity", "account"),
    [("mallory", ACCOUNT), ("alice", OTHER_ACCOUNT)],
    ids=["another-identity", "another-account"],
)
async def test_a_reconnect_token_only_works_for_its_identity_and_account(
    identity: str, account: str
) -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, bob = await answered_call(rig)
    stolen = call.caller.only(Answer).reconnect
    thief = rig.client(identity, account=account, register=False)
    await rig.send(thief, Invite(callsid=call.sid, sdp="", reconnect=stolen))
    assert code(thief.only(Hangup)) == 31107
    await rig.send(thief, Hangup(callsid=call.sid))
    assert len(rig.router.calls) == 1 and bob.types() == ["invite", "answer"]


async def test_a_token_for_another_call_sid_is_31107() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, bob = await answered_call(rig)
    token_of_bob_leg = bob.only(Answer).reconnect
    await rig.send(bob, Invite(callsid=call.sid, sdp="", reconnect=token_of_bob_leg))
    assert code(bob.sent[-1]) == 31107


async def test_the_reconnect_window_holds_the_call_and_a_reconnect_keeps_it() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    bob = rig.client("bob")
    alice = rig.client("alice", register=False, reconnect_timeout_s=SHORT_S * 2)
    await rig.dial(alice, "client:bob")
    await rig.send(bob, Answer(callsid=bob.only(Invite).callsid, sdp=canned_sdp("callee")))
    sid = alice.only(Ringing).callsid

    await rig.closed(alice)
    assert bob.types() == ["invite", "answer"] and len(rig.router.calls) == 1  # held

    back = rig.client("alice", register=False)
    await rig.send(back, Invite(callsid=sid or "", sdp="", reconnect=alice.only(Answer).reconnect))
    assert back.types() == ["answer"]
    await asyncio.sleep(SHORT_S * 4)  # well past the window: the timer was disarmed
    assert len(rig.router.calls) == 1 and bob.types() == ["invite", "answer"]


async def test_a_caller_missing_its_window_ends_the_call() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    bob = rig.client("bob")
    alice = rig.client("alice", register=False, reconnect_timeout_s=SHORT_S)
    await rig.dial(alice, "client:bob")
    child = bob.only(Invite).callsid
    await rig.send(bob, Answer(callsid=child, sdp=canned_sdp("callee")))
    token_before = alice.only(Answer).reconnect

    await rig.closed(alice)
    await asyncio.sleep(SHORT_S * 3)

    assert bob.sent[-1] == Hangup(callsid=child)
    assert rig.router.records[-1]["reason"] == "caller did not reconnect in time"
    late = rig.client("alice", register=False)
    await rig.send(late, Invite(callsid=child, sdp="", reconnect=token_before))
    assert code(late.only(Hangup)) == 31107


async def test_a_callee_missing_its_window_ends_the_call_for_the_caller() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    bob = rig.client("bob", reconnect_timeout_s=SHORT_S)
    call = await ring(rig, bob)
    await call.answer(bob)
    await rig.closed(bob)
    assert call.caller.types() == ["ringing", "answer"]
    await asyncio.sleep(SHORT_S * 3)
    assert call.caller.sent[-1] == Hangup(callsid=call.sid)
    assert rig.router.records[-1]["reason"] == "callee did not reconnect in time"


async def test_without_a_window_a_closed_socket_ends_its_calls_at_once() -> None:
    rig = Rig()
    call, bob = await answered_call(rig)
    await rig.closed(call.caller)
    assert bob.sent[-1] == Hangup(callsid=call.child(bob)) and rig.router.calls == []
    assert rig.router.records[-1]["reason"] == "socket closed"


async def test_a_ringing_device_whose_socket_closes_is_dropped() -> None:
    rig = Rig()
    bob1, bob2 = rig.client("bob", reconnect_timeout_s=5), rig.client("bob")
    call = await ring(rig, bob1, bob2)
    await rig.closed(bob1)
    assert call.caller.types() == ["ringing"] and len(rig.router.calls) == 1
    await rig.closed(bob2)
    assert code(call.caller.sent[-1]) == 31480


async def test_on_listen_changes_nothing() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    _call, bob = await answered_call(rig)
    await rig.router.on_listen(bob)  # type: ignore[arg-type]
    assert bob.types() == ["invite", "answer"] and len(rig.router.calls) == 1


async def test_a_connect_token_takes_over_a_ringing_call_on_a_new_device() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    bob1, bob2 = rig.client("bob"), rig.client("bob")
    call = await ring(rig, bob1, bob2)
    invite = call.invite(bob1)
    taker = rig.client("bob", register=False)

    await rig.send(
        taker, Invite(callsid=invite.callsid, sdp=canned_sdp("taker"), reconnect=invite.reconnect)
    )

    reply = taker.only(Answer)
    assert reply.callsid == invite.callsid and reply.sdp is not None and reply.reconnect
    assert bob1.types() == bob2.types() == ["invite", "cancel"]
    assert call.caller.types() == ["ringing", "answer"]
    _, callee_pc = leg_pcs(rig)
    assert callee_pc.method_names()[0] == "create_answer"
    assert rig.bridges.made[0].legs[1] is callee_pc


async def test_a_connect_token_with_a_bad_offer_is_refused_and_the_call_keeps_ringing() -> None:
    rig = Rig()
    bob = rig.client("bob")
    call = await ring(rig, bob)
    invite = call.invite(bob)
    rig.media.fail = frozenset({"create_answer"})
    taker = rig.client("bob", register=False)
    await rig.send(taker, Invite(callsid=invite.callsid, sdp="junk", reconnect=invite.reconnect))
    assert code(taker.only(Hangup)) == 31100
    assert bob.types() == ["invite"] and call.caller.types() == ["ringing"]


# -- DTMF --------------------------------------------------------------------------------------


async def test_dtmf_frames_reach_the_other_leg_in_order_and_are_recorded() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, _bob = await answered_call(rig)
    caller_pc, callee_pc = leg_pcs(rig)
    for digits in ("123", "#", "*9"):
        await rig.send(call.caller, Dtmf(callsid=call.sid, dtmf=digits))
    await settle()
    assert "".join(callee_pc.played) == "123#*9"
    callee_pc.receive_dtmf("7")  # RFC 4733 from bob travels to alice
    callee_pc.receive_dtmf("8")
    await settle()
    assert "".join(caller_pc.played) == "78"
    await rig.send(call.caller, Hangup(callsid=call.sid))
    assert rig.router.records[-1]["digits"] == "123#*978"
    assert call.caller.of(Error) == []


async def test_a_w_in_dtmf_splits_the_digits_around_a_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(calls, "DTMF_PAUSE_S", 0.01)  # the real half second, shortened
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, _ = await answered_call(rig)
    _, callee_pc = leg_pcs(rig)
    await rig.send(call.caller, Dtmf(callsid=call.sid, dtmf="12w34"))
    await asyncio.sleep(0.05)
    assert callee_pc.played == ["12", "34"]


@pytest.mark.parametrize("digits", ["12x", "9" * 257, "1;2"])
async def test_invalid_dtmf_is_refused_with_31100(digits: str) -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, _ = await answered_call(rig)
    _, callee_pc = leg_pcs(rig)
    await rig.send(call.caller, Dtmf(callsid=call.sid, dtmf=digits))
    error = call.caller.sent[-1]
    assert isinstance(error, Error) and error.code == 31100 and error.callsid == call.sid
    await settle()
    assert callee_pc.played == []


async def test_a_dtmf_backlog_over_the_limit_is_refused_with_31206() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60, max_dtmf_digits=4))
    call, _ = await answered_call(rig)
    _, callee_pc = leg_pcs(rig)
    await rig.send(call.caller, Dtmf(callsid=call.sid, dtmf="1234"))
    await rig.send(call.caller, Dtmf(callsid=call.sid, dtmf="5"))  # before any was played
    error = call.caller.sent[-1]
    assert isinstance(error, Error) and error.code == 31206
    await settle()
    assert callee_pc.played == ["1234"]


async def test_recorded_digits_are_bounded_and_the_rest_counted() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60, max_recorded_digits=3))
    call, _ = await answered_call(rig)
    await rig.send(call.caller, Dtmf(callsid=call.sid, dtmf="12345"))
    await rig.send(call.caller, Hangup(callsid=call.sid))
    assert rig.router.records[-1]["digits"] == "123"
    assert rig.router.records[-1]["digits_dropped"] == 2


async def test_digits_are_not_played_where_telephone_event_was_not_negotiated() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, _ = await answered_call(rig)
    _, callee_pc = leg_pcs(rig)
    callee_pc.can_insert_dtmf = False
    await rig.send(call.caller, Dtmf(callsid=call.sid, dtmf="55"))
    await settle()
    assert callee_pc.played == [] and rig.router.calls[0].digits == "55"


# -- user-defined messages -------------------------------------------------------------------


def message(callsid: str, content: Any, kind: str = "user-defined-message") -> CallMessage:
    return CallMessage(
        callsid=callsid,
        content=content,
        contenttype="application/json",
        messagetype=kind,
        voiceeventsid="KX" + "1" * 32,
    )


async def test_a_user_message_is_acked_and_delivered_under_the_other_legs_sid() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, bob = await answered_call(rig)
    await rig.send(call.caller, message(call.sid, {"hello": "bob"}))
    assert call.caller.sent[-1] == Ack(
        acktype="message", callsid=call.sid, voiceeventsid="KX" + "1" * 32
    )
    delivered = bob.sent[-1]
    assert isinstance(delivered, CallMessage)
    assert delivered.callsid == call.child(bob) and delivered.content == {"hello": "bob"}
    assert delivered.contenttype == "application/json"
    assert delivered.voiceeventsid == "KX" + "1" * 32

    await rig.send(bob, message(call.child(bob), "hi alice"))
    assert call.caller.sent[-1] == message(call.sid, "hi alice")


async def test_an_oversized_user_message_is_refused_with_31212() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, bob = await answered_call(rig)
    await rig.send(call.caller, message(call.sid, "x" * 4097))
    error = call.caller.sent[-1]
    assert isinstance(error, Error) and error.code == 31212
    assert error.voiceeventsid == "KX" + "1" * 32
    assert bob.types() == ["invite", "answer"]
    await rig.send(call.caller, message(call.sid, "x" * 4096))  # the limit itself is fine
    assert isinstance(call.caller.sent[-1], Ack)


async def test_a_message_of_another_type_is_31210_and_an_unknown_call_31404() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, bob = await answered_call(rig)
    await rig.send(call.caller, message(call.sid, "x", kind="system-message"))
    assert code(call.caller.sent[-1]) == 31210
    await rig.send(call.caller, message("CA" + "f" * 32, "x"))
    assert code(call.caller.sent[-1]) == 31404
    assert bob.types() == ["invite", "answer"]


# -- ICE restart -----------------------------------------------------------------------------


async def test_a_reinvite_is_answered_on_that_leg_only() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, bob = await answered_call(rig)
    _, callee_pc = leg_pcs(rig)
    offer = canned_sdp("restart-offer")
    await rig.send(bob, Reinvite(callsid=call.child(bob), sdp=offer))
    reply = bob.sent[-1]
    assert isinstance(reply, Answer) and reply.callsid == call.child(bob)
    assert reply.sdp == callee_pc.local_sdp and ("answer_ice_restart", offer) in callee_pc.calls
    assert call.caller.types() == ["ringing", "answer"]


async def test_a_reinvite_for_an_unknown_call_is_31404_and_a_bad_one_31100() -> None:
    rig = Rig(limits=Limits(media_timeout_s=60))
    call, _ = await answered_call(rig)
    await rig.send(call.caller, Reinvite(callsid="CA" + "e" * 32, sdp="v=0"))
    assert code(call.caller.sent[-1]) == 31404
    caller_pc, _ = leg_pcs(rig)
    caller_pc.fail = frozenset({"answer_ice_restart"})
    await rig.send(call.caller, Reinvite(callsid=call.sid, sdp="v=0"))
    error = call.caller.sent[-1]
    assert isinstance(error, Error) and error.code == 31100
    assert len(rig.router.calls) == 1  # the call itself survives a failed restart

"""The Call lifecycle machine, driven with events and a fake clock (no sockets, no aiortc)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.core import call_machine as cm
from softphone.core.call_machine import (
    CALL,
    TRANSITIONS,
    CallDirection,
    CallMachine,
    CallState,
    IllegalTransition,
)
from softphone.core.errors import GeneralErrors, MediaErrors, SignalingErrors

pytestmark = pytest.mark.pure

TEMP = "TJSabc"
SID = "CA123"


class Machine(CallMachine):
    """The machine with its insights ``Publish`` actions set aside in ``published``
    (group/name), so the lifecycle assertions read the I/O actions alone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.published: list[str] = []

    def process(self, event: cm.CallEvent, now: float) -> list[cm.CallAction]:
        out = []
        for action in super().process(event, now):
            if isinstance(action, cm.Publish):
                self.published.append(f"{action.event.group}/{action.event.name}")
            else:
                out.append(action)
        return out


def outgoing(**kwargs: Any) -> Machine:
    return Machine(CallDirection.OUTGOING, TEMP, now=0.0, **kwargs)


def incoming(**kwargs: Any) -> Machine:
    kwargs.setdefault("callsid", SID)
    return Machine(CallDirection.INCOMING, TEMP, now=0.0, **kwargs)


def emitted(actions: list[cm.CallAction]) -> list[str]:
    return [a.name for a in actions if isinstance(a, cm.Emit)]


def open_outgoing(token: str | None = "RT1") -> Machine:
    m = outgoing()
    m.process(cm.Accept(), 0.0)
    m.process(cm.LocalOffer("offer"), 0.1)
    m.process(cm.AnswerFrame(SID, "answer", token), 0.2)
    m.process(cm.RemoteAnswerApplied(), 0.3)
    assert m.state is CallState.OPEN
    return m


def open_incoming() -> Machine:
    m = incoming(reconnect_token="RT1")
    m.process(cm.Accept(), 0.0)
    m.process(cm.LocalAnswer("answer"), 0.1)
    assert m.state is CallState.OPEN
    return m


# -- the table ----------------------------------------------------------------------------
def test_every_event_has_a_row_and_every_row_names_real_states() -> None:
    events = set(cm.CallEvent.__args__)  # type: ignore[attr-defined]
    assert set(TRANSITIONS) == events
    for row in TRANSITIONS.values():
        assert set(row) <= set(CallState)


FRAMES = (
    cm.RingingFrame,
    cm.AnswerFrame,
    cm.HangupFrame,
    cm.CancelFrame,
    cm.TransportClosed,
)


@pytest.mark.parametrize("event", FRAMES)
def test_frames_from_the_far_end_are_legal_in_every_state(event: type) -> None:
    """A server can send anything at any time: it must never make the SDK raise."""
    assert set(TRANSITIONS[event]) == set(CallState)


@pytest.mark.parametrize(
    ("event", "state"),
    [
        (cm.InboundPackets(3), CallState.PENDING),
        (cm.InboundPackets(3), CallState.CONNECTING),
        (cm.LocalOffer("sdp"), CallState.PENDING),
        (cm.LocalAnswer("sdp"), CallState.PENDING),
        (cm.RemoteAnswerApplied(), CallState.PENDING),
        (cm.SetupFailed(GeneralErrors.UnknownError()), CallState.PENDING),
        (cm.RestartOfferSent(), CallState.RINGING),
    ],
)
def test_an_impossible_event_raises_instead_of_being_dropped(
    event: cm.CallEvent, state: CallState
) -> None:
    m = outgoing()
    m.state = state
    with pytest.raises(IllegalTransition, match=type(event).__name__):
        m.process(event, 1.0)


def test_app_calls_are_no_ops_outside_pending_as_in_the_js_sdk() -> None:
    m = open_outgoing()
    for event in (cm.Accept(), cm.Reject(), cm.Ignore()):
        assert m.process(event, 1.0) == []
    assert m.state is CallState.OPEN
    m.process(cm.Disconnect(), 2.0)
    assert m.process(cm.Disconnect(), 3.0) == []


# -- outgoing -----------------------------------------------------------------------------
def test_outgoing_call_from_accept_to_open() -> None:
    m = outgoing()
    assert m.process(cm.Accept(), 0.0) == [cm.StartMedia()]
    assert m.state is CallState.CONNECTING
    assert m.process(cm.LocalOffer("offer"), 0.1) == [cm.SendInvite("offer", TEMP)]
    assert m.process(cm.RingingFrame(SID), 0.2) == [
        cm.LearnCallSid(SID),
        cm.Emit("ringing", (False,)),
    ]
    assert m.state is CallState.RINGING
    assert m.process(cm.AnswerFrame(SID, "answer", "RT1"), 0.5) == [cm.ApplyRemoteAnswer("answer")]
    assert m.reconnect_token == "RT1"
    assert m.state is CallState.RINGING  # answered, media not yet open
    assert m.process(cm.RemoteAnswerApplied(), 0.6) == [
        cm.MediaOpened(),
        cm.CallConnected(),
        cm.Emit("accept", (CALL,)),
        cm.EmitAudio(),
    ]
    assert m.state is CallState.OPEN
    assert [state for _, state in m.history] == [
        CallState.PENDING,
        CallState.CONNECTING,
        CallState.RINGING,
        CallState.OPEN,
    ]
    assert m.history[-1] == (0.6, CallState.OPEN)


def test_early_media_then_answer_opens_the_call() -> None:
    """Ringing with an SDP applies the answer early; the ``answer`` frame then opens."""
    m = outgoing()
    m.process(cm.Accept(), 0.0)
    m.process(cm.LocalOffer("offer"), 0.1)
    assert m.process(cm.RingingFrame(SID, "early"), 0.2) == [
        cm.LearnCallSid(SID),
        cm.Emit("ringing", (True,)),
        cm.ApplyRemoteAnswer("early"),
    ]
    assert emitted(m.process(cm.RemoteAnswerApplied(), 0.3)) == []
    assert m.state is CallState.RINGING
    actions = m.process(cm.AnswerFrame(SID, "early", None), 1.0)
    assert cm.ApplyRemoteAnswer("early") not in actions
    assert emitted(actions) == ["accept"]
    assert m.state is CallState.OPEN


def test_a_ringing_frame_for_an_incoming_call_changes_nothing() -> None:
    m = incoming()
    m.process(cm.Accept(), 0.0)
    assert m.process(cm.RingingFrame(SID), 0.1) == []
    assert m.state is CallState.CONNECTING


def test_connect_token_call_reconnects_with_its_token_instead_of_inviting() -> None:
    m = outgoing(callsid=SID, reconnect_token="RT9", is_connect_token_call=True)
    m.process(cm.Accept(), 0.0)
    assert m.process(cm.LocalOffer("offer"), 0.1) == [cm.SendReconnect("offer", SID, "RT9")]


def test_an_answer_for_another_call_is_ignored() -> None:
    m = outgoing()
    m.process(cm.Accept(), 0.0)
    m.process(cm.RingingFrame(SID), 0.1)
    assert m.process(cm.AnswerFrame("CAother", "sdp"), 0.2) == []
    assert not m.is_answered


# -- incoming -----------------------------------------------------------------------------
def test_incoming_call_accept_answers_and_opens() -> None:
    m = incoming()
    assert m.process(cm.Accept(), 0.0) == [cm.StartMedia()]
    assert m.is_answered
    assert m.process(cm.LocalAnswer("answer"), 0.1) == [
        cm.SendAnswer("answer", SID),
        cm.MediaOpened(),
        cm.CallConnected(),
        cm.Emit("accept", (CALL,)),
        cm.EmitAudio(),
    ]
    assert m.state is CallState.OPEN


def test_reject_sends_reject_and_closes_without_disconnect() -> None:
    m = incoming()
    assert m.process(cm.Reject(), 0.0) == [
        cm.SendReject(SID),
        cm.CloseMedia(),
        cm.Emit("reject"),
        cm.DetachStream(),
    ]
    assert m.state is CallState.CLOSED
    assert m.process(cm.CancelFrame(SID), 0.1) == []  # already over: no cancel event


def test_cancel_of_a_pending_call() -> None:
    m = incoming()
    assert m.process(cm.CancelFrame("CAother"), 0.0) == []
    assert m.process(cm.CancelFrame(SID), 0.1) == [
        cm.CloseMedia(),
        cm.Emit("cancel"),
        cm.StopRinging(),
        cm.DetachStream(),
    ]
    assert m.state is CallState.CLOSED


def test_an_ignored_call_still_takes_the_callers_cancel_once() -> None:
    m = incoming()
    assert m.process(cm.Ignore(), 0.0) == [cm.StopRinging()]
    assert m.state is CallState.CLOSED
    assert m.process(cm.CancelFrame(SID), 1.0) == [
        cm.CloseMedia(),
        cm.Emit("cancel"),
        cm.DetachStream(),
    ]
    assert m.process(cm.CancelFrame(SID), 2.0) == []


def test_a_cancel_after_the_call_opened_is_ignored() -> None:
    m = open_incoming()
    assert m.process(cm.CancelFrame(SID), 1.0) == []
    assert m.state is CallState.OPEN


# -- hangup ---------------------------------------------------------------------------------
def test_disconnect_hangs_up_plays_the_sound_and_emits_disconnect_once() -> None:
    m = open_outgoing()
    assert m.process(cm.Disconnect(), 5.0) == [
        cm.SendHangup(SID, None),
        cm.CloseMedia(),
        cm.PlaySound("disconnect"),
        cm.Emit("disconnect", (CALL,)),
        cm.DetachStream(),
    ]
    assert m.process(cm.HangupFrame(SID), 5.1) == []


def test_disconnect_before_the_callsid_uses_the_temporary_id() -> None:
    m = outgoing()
    m.process(cm.Accept(), 0.0)
    assert m.process(cm.Disconnect(), 0.1)[0] == cm.SendHangup(TEMP, None)


def test_hangup_frame_with_an_error_emits_it_before_disconnect() -> None:
    m = open_outgoing()
    error = GeneralErrors.UnknownError("far end failed")
    assert emitted(m.process(cm.HangupFrame(SID, error), 1.0)) == ["error", "disconnect"]
    assert m.state is CallState.CLOSED


def test_hangup_frames_for_other_calls_or_pending_calls_are_ignored() -> None:
    m = open_outgoing()
    assert m.process(cm.HangupFrame("CAother"), 1.0) == []
    pending = incoming()
    assert pending.process(cm.HangupFrame(SID), 1.0) == []
    assert pending.state is CallState.PENDING


def test_a_hangup_without_callsid_ends_the_call() -> None:
    m = open_outgoing()
    assert "disconnect" in emitted(m.process(cm.HangupFrame(None), 1.0))


# -- media setup failures ------------------------------------------------------------------
def test_sdp_failures_emit_the_error_then_hang_up_with_the_reason() -> None:
    m = incoming()
    m.process(cm.Accept(), 0.0)
    error = MediaErrors.ClientRemoteDescFailed("bad sdp")
    actions = m.process(cm.SetupFailed(error, hangup=True, message="Failed to answer: x"), 0.1)
    assert actions[:2] == [cm.Emit("error", (error,)), cm.SendHangup(SID, "Failed to answer: x")]
    assert emitted(actions) == ["error", "disconnect"]


def test_microphone_failure_closes_first_then_emits_the_error() -> None:
    m = outgoing()
    m.process(cm.Accept(), 0.0)
    error = GeneralErrors.UnknownError("no mic")
    actions = m.process(cm.SetupFailed(error, hangup=True, error_first=False), 0.1)
    assert actions[0] == cm.SendHangup(TEMP, None)
    assert emitted(actions) == ["disconnect", "error"]


def test_a_setup_result_after_the_call_closed_is_dropped() -> None:
    m = outgoing()
    m.process(cm.Accept(), 0.0)
    m.process(cm.Disconnect(), 0.1)
    assert m.process(cm.LocalOffer("late"), 0.2) == []
    assert m.process(cm.SetupFailed(GeneralErrors.UnknownError()), 0.3) == []
    assert m.process(cm.RemoteAnswerApplied(), 0.4) == []


# -- signaling reconnection ---------------------------------------------------------------
def test_transport_close_with_a_token_reconnects_and_answer_restores() -> None:
    m = open_outgoing()
    actions = m.process(cm.TransportClosed(), 10.0)
    assert emitted(actions) == ["transportClose", "reconnecting"]
    reason = actions[1]
    assert isinstance(reason, cm.Emit)
    assert isinstance(reason.args[0], SignalingErrors.ConnectionDisconnected)
    assert m.state is CallState.RECONNECTING
    assert m.process(cm.SignalingConnected("local"), 11.0) == [
        cm.SendReconnect("local", SID, "RT1")
    ]
    assert emitted(m.process(cm.AnswerFrame(SID, None, "RT2"), 11.5)) == ["reconnected"]
    assert m.state is CallState.OPEN
    assert m.reconnect_token == "RT2"


def test_transport_close_without_a_token_closes_silently() -> None:
    m = open_outgoing(token=None)
    assert emitted(m.process(cm.TransportClosed(), 1.0)) == ["transportClose"]
    assert m.state is CallState.CLOSED


def test_transport_close_leaves_a_pending_call_pending() -> None:
    m = incoming(reconnect_token="RT1")
    assert emitted(m.process(cm.TransportClosed(), 1.0)) == ["transportClose"]
    assert m.state is CallState.PENDING


def test_signaling_connected_before_media_sends_nothing() -> None:
    m = outgoing(reconnect_token="RT1", callsid=SID)
    m.process(cm.Accept(), 0.0)
    assert m.process(cm.SignalingConnected("local"), 0.1) == []


# -- media health and ICE restart (fake clock) ---------------------------------------------
def feed(m: Machine, start: float, stop: float, count: int) -> list[cm.CallAction]:
    """Readings every 0.5 s from ``start`` to ``stop`` with the same packet count."""
    out: list[cm.CallAction] = []
    t = start
    while t <= stop + 1e-9:
        out += m.process(cm.InboundPackets(count), t)
        t += 0.5
    return out


def test_media_lost_restarts_ice_and_recovery_reconnects() -> None:
    m = open_outgoing()
    assert feed(m, 1.0, 3.0, 100) == []  # progress once, then 2.0 s of silence
    lost = m.process(cm.InboundPackets(100), 3.5)  # 2.5 s without a packet
    assert lost == [
        cm.Emit("warning", ("ice-connectivity-lost",)),
        cm.Emit("reconnecting", (lost[1].args[0],)),  # type: ignore[union-attr]
        cm.StartIceRestart(),
    ]
    assert isinstance(lost[1].args[0], MediaErrors.ConnectionError)  # type: ignore[union-attr]
    assert m.state is CallState.RECONNECTING
    m.process(cm.RestartOfferSent(), 3.6)
    assert m.process(cm.AnswerFrame(SID, "restart-answer"), 3.8) == [
        cm.ApplyRestartAnswer("restart-answer")
    ]
    assert m.process(cm.InboundPackets(100), 4.0) == []
    back = m.process(cm.InboundPackets(140), 4.5)
    assert back == [
        cm.StopIceRestart(),
        cm.Emit("warning-cleared", ("ice-connectivity-lost",)),
        cm.Emit("reconnected"),
    ]
    assert m.state is CallState.OPEN


def test_reconnected_waits_for_both_signaling_and_media() -> None:
    m = open_outgoing()
    m.process(cm.InboundPackets(10), 1.0)
    m.process(cm.InboundPackets(10), 3.5)  # media lost
    m.process(cm.TransportClosed(), 4.0)  # and signaling too
    assert emitted(m.process(cm.AnswerFrame(SID, None, "RT2"), 5.0)) == []
    assert m.state is CallState.RECONNECTING
    assert emitted(m.process(cm.InboundPackets(11), 5.5)) == ["warning-cleared", "reconnected"]
    assert m.state is CallState.OPEN


def test_thirty_seconds_without_media_hangs_up_with_53405() -> None:
    m = open_outgoing()
    m.process(cm.InboundPackets(10), 1.0)
    m.process(cm.InboundPackets(10), 3.5)  # lost at 3.5
    assert feed(m, 4.0, 33.0, 10) == []
    actions = m.process(cm.InboundPackets(10), 33.5)
    assert actions[:2] == [cm.StopIceRestart(), cm.SendHangup(SID, cm.MEDIA_FAILED_MESSAGE)]
    assert emitted(actions) == ["disconnect", "error"]
    error = actions[-1].args[0]  # type: ignore[union-attr]
    assert isinstance(error, MediaErrors.ConnectionError)
    assert error.code == 53405
    assert m.state is CallState.CLOSED
    assert m.process(cm.InboundPackets(10), 40.0) == []


def test_a_clock_going_backwards_does_not_rewind_the_machine() -> None:
    m = open_outgoing()
    m.process(cm.InboundPackets(10), 5.0)
    m.process(cm.InboundPackets(10), 1.0)
    assert m.now == 5.0


# -- properties over any sequence ----------------------------------------------------------
ANY_EVENT = st.sampled_from(
    [
        cm.Accept(),
        cm.Reject(),
        cm.Ignore(),
        cm.Disconnect(),
        cm.RingingFrame(SID),
        cm.RingingFrame(SID, "early"),
        cm.AnswerFrame(SID, "sdp", "RT"),
        cm.AnswerFrame(SID, None, None),
        cm.AnswerFrame("CAother", "sdp"),
        cm.HangupFrame(SID),
        cm.HangupFrame("CAother"),
        cm.CancelFrame(SID),
        cm.TransportClosed(),
        cm.SignalingConnected("local"),
        cm.LocalOffer("offer"),
        cm.LocalAnswer("answer"),
        cm.RemoteAnswerApplied(),
        cm.InboundPackets(1),
        cm.InboundPackets(2),
        cm.RestartOfferSent(),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    direction=st.sampled_from(list(CallDirection)),
    events=st.lists(ANY_EVENT, max_size=25),
)
def test_any_legal_sequence_keeps_the_invariants(
    direction: CallDirection, events: list[cm.CallEvent]
) -> None:
    """Closed is final, ``accept`` once at most, one ending at most, frames never raise."""
    m = Machine(direction, TEMP, now=0.0, callsid=SID if direction == "INCOMING" else None)
    names: list[str] = []
    closed = False
    for i, event in enumerate(events):
        try:
            actions = m.process(event, float(i))
        except IllegalTransition:
            assert not isinstance(event, FRAMES)
            continue
        names += emitted(actions)
        if closed:
            assert m.state is CallState.CLOSED
        closed = m.state is CallState.CLOSED
    assert names.count("accept") <= 1
    endings = [name for name in names if name in ("disconnect", "cancel", "reject")]
    assert len(endings) <= 1, endings


# -- ICE-aware recovery (JS checklist section R) ------------------------------------------
def reconnecting_count(actions: list[cm.CallAction]) -> int:
    return emitted(actions).count("reconnecting")


def test_ice_gathering_failure_during_the_call_reconnects_once_with_53405() -> None:
    m = open_outgoing()
    actions = m.process(cm.IceGatheringFailed("timeout"), 1.0)
    assert actions[0] == cm.Emit("warning", ("ice-gathering-state", {"reason": "timeout"}))
    reason = actions[1]
    assert isinstance(reason, cm.Emit) and reason.name == "reconnecting"
    assert reason.args[0].code == 53405
    assert reason.args[0].message.endswith("Media connection failed.")
    assert cm.StartIceRestart() in actions
    again = m.process(cm.IceGatheringFailed("none"), 2.0)
    assert emitted(again) == ["warning"]  # the same reconnection: no second `reconnecting`
    assert emitted(m.process(cm.IceConnectionState("completed"), 3.0)) == ["reconnected"]
    assert emitted(m.process(cm.IceConnectionState("completed"), 4.0)) == []


def test_ice_gathering_failure_before_the_call_opens_only_warns() -> None:
    m = outgoing()
    m.process(cm.Accept(), 0.0)
    assert emitted(m.process(cm.IceGatheringFailed("none"), 0.1)) == ["warning"]
    assert m.state is CallState.CONNECTING


def test_ice_disconnected_alone_warns_without_restarting() -> None:
    m = open_outgoing()
    assert m.process(cm.IceConnectionState("disconnected"), 1.0) == [
        cm.Emit("warning", ("ice-connectivity-lost",))
    ]
    assert m.state is CallState.OPEN
    assert m.process(cm.IceConnectionState("connected"), 2.0) == [
        cm.Emit("warning-cleared", ("ice-connectivity-lost",))
    ]


def test_ice_disconnected_with_a_low_bytes_warning_restarts() -> None:
    m = open_outgoing()
    assert m.process(cm.LowBytesWarning("low-bytes-received", True), 1.0) == []
    actions = m.process(cm.IceConnectionState("disconnected"), 2.0)
    assert emitted(actions) == ["warning", "reconnecting"]
    assert cm.StartIceRestart() in actions


def test_a_low_bytes_warning_restarts_only_while_ice_is_disconnected() -> None:
    m = open_outgoing()
    m.process(cm.IceConnectionState("disconnected"), 1.0)
    assert reconnecting_count(m.process(cm.LowBytesWarning("low-bytes-sent", True), 2.0)) == 1
    other = open_outgoing()
    assert other.process(cm.LowBytesWarning("low-bytes-sent", True), 2.0) == []
    other.process(cm.LowBytesWarning("low-bytes-sent", False), 3.0)
    assert other.process(cm.IceConnectionState("disconnected"), 4.0) == [
        cm.Emit("warning", ("ice-connectivity-lost",))
    ]


def test_ice_failed_restarts_and_disconnected_then_failed_reconnects_once() -> None:
    m = open_outgoing()
    m.process(cm.LowBytesWarning("low-bytes-received", True), 0.5)
    total = reconnecting_count(m.process(cm.IceConnectionState("disconnected"), 1.0))
    total += reconnecting_count(m.process(cm.IceConnectionState("failed"), 2.0))
    assert total == 1
    plain = open_outgoing()
    assert reconnecting_count(plain.process(cm.IceConnectionState("failed"), 1.0)) == 1


def test_after_an_ice_failure_reconnected_waits_for_signaling() -> None:
    m = open_outgoing()
    m.process(cm.IceConnectionState("failed"), 1.0)
    m.process(cm.TransportClosed(), 1.5)
    assert emitted(m.process(cm.IceConnectionState("completed"), 2.0)) == []
    assert m.state is CallState.RECONNECTING
    assert emitted(m.process(cm.AnswerFrame(SID, None, "RT2"), 3.0)) == ["reconnected"]


def test_packets_after_an_ice_failure_end_the_reconnection() -> None:
    m = open_outgoing()
    m.process(cm.InboundPackets(50), 0.5)
    m.process(cm.IceConnectionState("failed"), 1.0)
    assert m.process(cm.InboundPackets(50), 1.5) == []
    assert emitted(m.process(cm.InboundPackets(60), 2.0)) == ["reconnected"]


def test_an_ice_failure_that_never_recovers_gives_up_after_thirty_seconds() -> None:
    m = open_outgoing()
    m.process(cm.InboundPackets(5), 0.5)
    m.process(cm.IceConnectionState("failed"), 1.0)
    # the silence watch adds its warning at 3.0 s, but it is the same reconnection
    assert emitted(feed(m, 1.5, 30.5, 5)) == ["warning"]
    assert "error" in emitted(m.process(cm.InboundPackets(5), 31.0))
    assert m.state is CallState.CLOSED


# -- insights: the JS SDK's events at the JS sites ----------------------------------------
def test_lifecycle_sites_publish_the_js_insights_events() -> None:
    m = outgoing()
    m.process(cm.Accept(), 0.0)
    m.process(cm.LocalOffer("offer"), 0.1)
    m.process(cm.RingingFrame(SID, None), 0.2)
    m.process(cm.AnswerFrame(SID, "answer", "RT1"), 0.3)
    m.process(cm.RemoteAnswerApplied(), 0.4)
    m.process(cm.TransportClosed(), 1.0)
    m.process(cm.AnswerFrame(SID, None, "RT2"), 2.0)
    m.process(cm.HangupFrame(SID), 3.0)
    assert m.published == [
        "connection/outgoing-ringing",
        "connection/accepted-by-remote",
        "connection/reconnecting",
        "connection/reconnected",
        "connection/disconnected-by-remote",
    ]


def test_local_endings_publish_who_ended_the_call() -> None:
    rejected, ignored, cancelled = incoming(), incoming(), incoming()
    rejected.process(cm.Reject(), 0.0)
    ignored.process(cm.Ignore(), 0.0)
    cancelled.process(cm.CancelFrame(SID), 0.0)
    hung_up = open_incoming()
    hung_up.process(cm.Disconnect(), 1.0)
    assert rejected.published == ["connection/rejected-by-local"]
    assert ignored.published == ["connection/ignored-by-local"]
    assert cancelled.published == ["connection/cancel"]
    assert hung_up.published == ["connection/accepted-by-local", "connection/disconnected-by-local"]
    assert incoming().process(cm.Reject(), 0.0) and open_incoming().published == [
        "connection/accepted-by-local"
    ]


def test_media_reconnection_publishes_the_warning_error_and_restore() -> None:
    m = open_outgoing()
    m.published.clear()
    m.process(cm.InboundPackets(10), 1.0)
    m.process(cm.InboundPackets(10), 3.5)
    m.process(cm.InboundPackets(11), 4.0)
    assert m.published == [
        "network-quality-warning-raised/ice-connectivity-lost",
        "connection/error",
        "connection/reconnecting",
        "network-quality-warning-cleared/ice-connectivity-lost",
        "connection/reconnected",
    ]

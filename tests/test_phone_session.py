"""The phone's pure parts: dial targets, --input/--output, the session model and its keys."""

from __future__ import annotations

import pytest

from softphone.phone.audio_specs import InputSpec, OutputSpec, parse_input, parse_output
from softphone.phone.session import (
    Accept,
    DeviceChoice,
    Dial,
    Hangup,
    Outcome,
    Phase,
    PhoneSession,
    Registration,
    Reject,
    SendDigits,
    ToggleMute,
)
from softphone.phone.targets import parse_target

pytestmark = pytest.mark.pure


def _phase(session: PhoneSession) -> Phase:
    return session.phase  # read afresh: mypy keeps attribute narrowing across calls


def _registration(session: PhoneSession) -> Registration:
    return session.registration


# -- dial targets ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "to"),
    [
        ("client:bob", "client:bob"),
        ("  bob ", "client:bob"),
        ("Echo", "echo"),
        ("+1 (555) 010-0199", "+15550100199"),
        ("5550100", "5550100"),
        ("sip:alice@example.com", "sip:alice@example.com"),
    ],
)
def test_targets_people_type(typed: str, to: str) -> None:
    assert parse_target(typed) == to


@pytest.mark.parametrize(
    ("typed", "complaint"),
    [
        ("", "nothing to call"),
        ("client:", "a client name"),
        ("client:bo b", "a client name"),
        ("12", "too short"),
        ("two words", "cannot call"),
        ("sip:", "SIP address"),
    ],
)
def test_targets_that_cannot_be_called_say_why(typed: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_target(typed)


# -- audio specs -------------------------------------------------------------------------
def test_input_and_output_specs() -> None:
    assert parse_input("tone:440") == InputSpec("tone", frequencies=(440.0,))
    assert parse_input("tone:350+440").frequencies == (350.0, 440.0)
    assert parse_input("file:/tmp/a b.wav") == InputSpec("file", path="/tmp/a b.wav")
    assert parse_input("portaudio") == InputSpec("portaudio", device_id="portaudio:default")
    assert parse_input("portaudio:ALSA:pulse").device_id == "portaudio:ALSA:pulse"
    assert parse_input("null") == InputSpec("null")
    assert parse_output("file:out.wav") == OutputSpec("file", path="out.wav")
    assert parse_output("portaudio:3").device_id == "portaudio:3"
    assert parse_output("null").describe() == "nowhere (discarded)"
    assert parse_input("tone:440").describe() == "tone 440 Hz"


@pytest.mark.parametrize(
    "text", ["tone:", "tone:abc", "tone:0", "tone:30000", "file:", "mic", "null:x"]
)
def test_bad_inputs_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="--input"):
        parse_input(text)


@pytest.mark.parametrize("text", ["tone:440", "file:", "speaker"])
def test_bad_outputs_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="--output"):
        parse_output(text)


# -- the session -------------------------------------------------------------------------
def test_registration_is_noted_and_failure_kept() -> None:
    session = PhoneSession(100.0, identity="alice")
    session.registering(100.0)
    session.registered("alice", 100.5)
    assert session.registration is Registration.REGISTERED
    assert session.notes[-1].text == "registered as alice: calls to client:alice ring here"
    session.unregistered(101.0)
    assert _registration(session) is Registration.OFFLINE
    session.registration_failed("AccessTokenInvalid (20101): bad", 102.0)
    assert _registration(session) is Registration.FAILED
    assert "bad" in session.headline(102.0)


def test_an_outgoing_call_from_dial_to_log() -> None:
    session = PhoneSession(0.0)
    assert session.dial_command("bob") == Dial("client:bob")
    session.dialing("client:bob", 1.0)
    assert session.phase is Phase.CALLING and session.busy
    with pytest.raises(ValueError, match="hang up first"):
        session.dial_command("echo")
    session.far_end_ringing(1.2)
    assert session.headline(1.2) == "Ringing client:bob…"
    session.connected("opus", 2.0)
    session.levels(0.4, 0.3)
    session.levels(0.2, 0.5)
    session.set_muted(True, 3.0)
    session.digits_sent("12", 3.5)
    session.digit_received("9", 3.6)
    assert session.headline(65.0) == "In call with client:bob  01:03  (opus)  MUTED"
    session.hangup_requested(10.0)
    record = session.ended(10.5)
    assert record is not None and record.ok
    assert _phase(session) is Phase.IDLE and not session.busy and not session.muted
    assert (record.outcome, record.ended_by, record.duration_s) == (Outcome.COMPLETED, "you", 8.5)
    assert (record.digits_sent, record.digits_received) == ("12", "9")
    assert (record.input_peak, record.output_peak) == (0.4, 0.5)
    assert session.log == [record]
    texts = [n.text for n in session.notes]
    assert texts == [
        "calling client:bob",
        "ringing",
        "connected with client:bob (opus)",
        "muted",
        "sent DTMF 12",
        "received DTMF 9",
        "hanging up",
        "call ended: outgoing call to client:bob: completed after 8.5 s, hung up by you",
    ]


@pytest.mark.parametrize(
    ("steps", "outcome", "reason"),
    [
        (["connect"], Outcome.COMPLETED, None),
        (["hangup"], Outcome.CANCELLED, None),
        ([], Outcome.FAILED, "the call ended before it was answered"),
        (["error:31480:client:bob is not registered"], Outcome.FAILED, "client:bob is not"),
        (["error:31603:Decline"], Outcome.DECLINED, "Decline"),
        (["connect", "error:31003:media lost"], Outcome.FAILED, "media lost"),
    ],
)
def test_how_outgoing_calls_end(steps: list[str], outcome: Outcome, reason: str | None) -> None:
    session = PhoneSession(0.0)
    session.dialing("client:bob", 0.0)
    for step in steps:
        if step == "connect":
            session.connected(None, 1.0)
        elif step == "hangup":
            session.hangup_requested(1.0)
        else:
            _, code, message = step.split(":", 2)
            session.call_error(int(code), message, 1.0)
    record = session.ended(2.0)
    assert record is not None
    assert record.outcome is outcome
    assert record.ok is (outcome is Outcome.COMPLETED)
    if reason is None:
        assert record.reason is None
    else:
        assert record.reason is not None and record.reason.startswith(reason)


def test_incoming_calls_ring_and_are_missed_rejected_or_answered() -> None:
    session = PhoneSession(0.0)
    session.incoming("client:alice", 1.0)
    assert session.phase is Phase.INCOMING
    assert session.headline(1.0) == "Incoming call from client:alice"
    missed = session.ended(2.0)
    assert missed is not None and missed.outcome is Outcome.MISSED

    session.incoming("client:alice", 3.0)
    session.rejecting(3.5)
    rejected = session.ended(3.6)
    assert rejected is not None and rejected.outcome is Outcome.REJECTED

    session.incoming("client:alice", 4.0)
    session.answering(4.1)
    assert _phase(session) is Phase.ANSWERING
    session.connected("pcmu", 4.2)
    answered = session.ended(9.2)
    assert answered is not None
    assert (answered.outcome, answered.ended_by) == (Outcome.COMPLETED, "the far end")
    assert [r.outcome for r in session.log] == [
        Outcome.MISSED,
        Outcome.REJECTED,
        Outcome.COMPLETED,
    ]


def test_what_keys_do_in_each_phase() -> None:
    session = PhoneSession(0.0)
    assert session.command_for_key("a", "a") is None  # idle: the dial field has the keys
    session.incoming("client:alice", 0.0)
    assert session.command_for_key("a", "a") == Accept()
    assert session.command_for_key("enter") == Accept()
    assert session.command_for_key("r", "r") == Reject()
    assert session.command_for_key("escape") == Reject()
    assert session.command_for_key("1", "1") is None  # no DTMF before answering
    session.answering(0.1)
    assert session.command_for_key("h", "h") == Hangup()
    assert session.command_for_key("m", "m") is None
    session.connected("opus", 0.2)
    assert session.command_for_key("5", "5") == SendDigits("5")
    assert session.command_for_key("asterisk", "*") == SendDigits("*")
    assert session.command_for_key("number_sign", "#") == SendDigits("#")
    assert session.command_for_key("m", "m") == ToggleMute()
    assert session.command_for_key("escape") == Hangup()
    assert session.command_for_key("x", "x") is None
    assert ("m", "mute") in session.key_help()
    session.set_muted(True, 0.3)
    assert ("m", "unmute") in session.key_help()


def test_quality_warnings_are_shown_while_active_and_kept_in_the_record() -> None:
    session = PhoneSession(0.0)
    session.dialing("echo", 0.0)
    session.connected("opus", 0.1)
    session.warning("high-rtt", 1.0)
    session.warning("high-rtt", 1.5)  # repeated: shown once
    assert session.warnings == {"high-rtt": "high round-trip time (delay)"}
    session.warning_cleared("high-rtt", 2.0)
    assert session.warnings == {}
    session.warning("high-rtt", 3.0)
    record = session.ended(4.0)
    assert record is not None and record.warnings == ["high-rtt"]
    texts = [n.text for n in session.notes]
    assert texts.count("quality warning: high-rtt: high round-trip time (delay)") == 2
    assert "quality warning cleared: high-rtt" in texts


def test_device_changes_are_noted_after_the_first_listing() -> None:
    session = PhoneSession(0.0)
    mic = DeviceChoice("portaudio:default", "Default (USB mic)")
    silence = DeviceChoice("null:silence", "Silence")
    out = DeviceChoice("file:output", "out.wav (file:output)")
    session.set_devices([silence], [out], "null:silence", "file:output", 0.0)
    assert session.notes == []  # the first listing is no news
    version = session.devices_version
    session.set_devices([silence, mic], [out], "portaudio:default", "file:output", 1.0)
    assert session.devices_version == version + 1
    session.set_devices([silence, mic], [out], "portaudio:default", "file:output", 1.5)
    assert session.devices_version == version + 1  # nothing changed
    session.set_devices([silence], [out], "default", "file:output", 2.0)
    assert [n.text for n in session.notes] == [
        "input device added: Default (USB mic)",
        "input device: Default (USB mic)",
        "input device removed: Default (USB mic)",
        "input device: default",
    ]


def test_notes_reach_listeners_in_order() -> None:
    session = PhoneSession(0.0)
    heard: list[str] = []
    session.on_note(lambda note: heard.append(f"{note.at:g} {note.text}"))
    session.dialing("echo", 1.0)
    session.connected(None, 2.0)
    assert heard == ["1 calling echo", "2 connected with echo"]

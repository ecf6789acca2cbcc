"""The TwiML runner follows Twilio's verb semantics, driven by scripted events and fake time.

Each test plays the gateway: it feeds events to a :class:`TwimlRunner` at chosen
times and checks the actions it asks for. Nothing sleeps; ``next_deadline`` says
when the gateway would send ``Tick``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from twilio.twiml.voice_response import Gather, VoiceResponse

from softphone.gateway.twiml import actions as act
from softphone.gateway.twiml.events import (
    DialAnswered,
    DialResult,
    Digit,
    Event,
    FetchFailed,
    FetchResult,
    Hangup,
    PromptDone,
    RecordingDone,
    Redirected,
    Start,
    Tick,
    VoiceActivity,
)
from softphone.gateway.twiml.model import Client
from softphone.gateway.twiml.params import voice_request_params
from softphone.gateway.twiml.runner import FETCH_TIMEOUT_S, HANGUP_GRACE_S, TwimlRunner

pytestmark = pytest.mark.pure

APP = "https://app.example.com/voice"
CALL = voice_request_params(
    account_sid="AC" + "a" * 32,
    call_sid="CA" + "b" * 32,
    from_="client:alice",
    to="support",
    application_sid="AP" + "c" * 32,
    custom={"ticket": "42"},
)


class Call:
    """The gateway's side of one call: sends events at chosen times."""

    def __init__(self, runner: TwimlRunner) -> None:
        self.runner = runner
        self.now = 0.0

    def send(self, event: Event, at: float | None = None) -> list[act.Action]:
        if at is not None:
            assert at >= self.now
            self.now = at
        return self.runner.process(event, self.now)

    def tick(self, at: float) -> list[act.Action]:
        return self.send(Tick(), at)


def start(
    document: str, *, url: str = APP, answered: bool = False
) -> tuple[Call, list[act.Action]]:
    call = Call(TwimlRunner(document, CALL, url=url, answered=answered))
    return call, call.send(Start())


def doc(body: str) -> str:
    return f"<Response>{body}</Response>"


def only(actions: Sequence[act.Action], kind: type[act.Action]) -> act.Action:
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, actions
    return found[0]


def ref_of(action: act.Action) -> int:
    assert isinstance(action, act.Say | act.Play | act.PlayDigits), action
    return action.ref


def fetch_of(actions: Sequence[act.Action]) -> act.Fetch:
    found = only(actions, act.Fetch)
    assert isinstance(found, act.Fetch)
    return found


# -- Say, Play, Pause, the end of the document --------------------------------------


def test_say_then_end_of_document_hangs_up() -> None:
    call, first = start(doc('<Say voice="alice" language="en-GB">Hello</Say>'))
    assert first == [act.Answer(), act.Say(ref=1, text="Hello", voice="alice", language="en-GB")]
    assert call.runner.next_deadline is None
    assert call.send(PromptDone(1), at=2.0) == [act.Hangup()]
    assert call.runner.finished
    assert call.send(Digit("1")) == []


def test_say_loop_repeats_and_loop_zero_is_bounded() -> None:
    call, first = start(doc('<Say loop="3">Hi</Say><Hangup/>'))
    says = [first[-1]]
    for _ in range(2):
        says += call.send(PromptDone(ref_of(says[-1])))
    assert [type(a) for a in says] == [act.Say] * 3
    assert call.send(PromptDone(ref_of(says[-1]))) == [act.Hangup()]

    call, first = start(doc('<Play loop="0">https://media.example.com/m.wav</Play>'))
    plays = 1
    last = first[-1]
    while True:
        out = call.send(PromptDone(ref_of(last)))
        if out == [act.Hangup()]:
            break
        (last,) = out
        plays += 1
    assert plays == 1000


def test_play_url_is_resolved_against_the_document_and_digits_are_sent() -> None:
    call, first = start(doc('<Play>sounds/hello.wav</Play><Play digits="ww1#"/>'))
    assert first == [act.Answer(), act.Play(ref=1, url="https://app.example.com/sounds/hello.wav")]
    assert call.send(PromptDone(1)) == [act.PlayDigits(ref=2, digits="ww1#")]


def test_digits_do_not_interrupt_a_top_level_say() -> None:
    call, _ = start(doc("<Say>Hi</Say>"))
    assert call.send(Digit("5")) == []
    assert call.send(PromptDone(99)) == []  # stale ref
    assert call.send(PromptDone(1)) == [act.Hangup()]


def test_a_leading_pause_delays_the_answer() -> None:
    call, first = start(doc('<Pause length="2"/><Say>Hi</Say>'))
    assert first == []
    assert call.runner.next_deadline == 2.0
    assert call.tick(1.9) == []
    assert call.tick(2.0) == [
        act.Answer(),
        act.Say(ref=1, text="Hi", voice="man", language="en-US"),
    ]


def test_a_pause_after_the_answer_is_silence() -> None:
    call, _ = start(doc('<Say>a</Say><Pause length="3"/><Say>b</Say>'))
    assert call.send(PromptDone(1), at=1.0) == []
    assert call.runner.next_deadline == 4.0
    assert [type(a) for a in call.tick(4.5)] == [act.Say]


def test_many_instant_verbs_do_not_exhaust_the_stack() -> None:
    _, first = start(doc('<Pause length="0"/>' * 3000 + "<Say>end</Say>"))
    assert first == [act.Answer(), act.Say(ref=1, text="end", voice="man", language="en-US")]


def test_an_already_answered_call_is_not_answered_again() -> None:
    _, first = start(doc("<Say>Hi</Say>"), answered=True)
    assert first == [act.Say(ref=1, text="Hi", voice="man", language="en-US")]


# -- Gather ---------------------------------------------------------------------------


def test_gather_with_no_input_falls_through_after_its_timeout() -> None:
    call, first = start(doc('<Gather timeout="4"><Say>Menu</Say></Gather><Say>Bye</Say>'))
    assert first == [act.Answer(), act.Say(ref=1, text="Menu", voice="man", language="en-US")]
    assert call.send(PromptDone(1), at=10.0) == []
    assert call.runner.next_deadline == 14.0  # the timeout starts when the prompt ends
    assert call.tick(13.9) == []
    assert call.tick(14.0) == [act.Say(ref=2, text="Bye", voice="man", language="en-US")]


def test_gather_submits_on_finish_on_key_without_the_key() -> None:
    call, _ = start(doc('<Gather action="/menu"><Say>Menu</Say></Gather>'))
    assert call.send(Digit("1"), at=1.0) == [act.StopPrompt(1)]
    assert call.send(Digit("2"), at=2.0) == []
    out = call.send(Digit("#"), at=3.0)
    fetch = fetch_of(out)
    assert fetch.url == "https://app.example.com/menu"
    assert fetch.method == "POST"
    assert fetch.params["Digits"] == "12"
    assert fetch.params["FinishedOnKey"] == "#"
    assert fetch.params["CallStatus"] == "in-progress"
    assert fetch.params["CallSid"] == CALL["CallSid"]
    assert fetch.params["ticket"] == "42"
    assert call.runner.next_deadline == 3.0 + FETCH_TIMEOUT_S


def test_gather_timeout_restarts_with_each_digit_and_submits_what_it_has() -> None:
    call, _ = start(doc('<Gather action="/m" method="GET" timeout="5"/>'))
    assert call.runner.next_deadline == 5.0
    call.send(Digit("4"), at=3.0)
    assert call.runner.next_deadline == 8.0
    assert call.tick(7.9) == []
    call.send(Digit("2"), at=7.9)
    assert call.tick(12.8) == []
    fetch = fetch_of(call.tick(12.9))
    assert (fetch.method, fetch.params["Digits"], fetch.params["FinishedOnKey"]) == (
        "GET",
        "42",
        "",
    )


def test_gather_num_digits_submits_at_the_count() -> None:
    call, _ = start(doc('<Gather numDigits="2" action="/m"><Say>x</Say></Gather>'))
    assert call.send(Digit("7")) == [act.StopPrompt(1)]
    assert fetch_of(call.send(Digit("3"))).params["Digits"] == "73"


def test_a_digit_during_a_nested_prompt_stops_the_rest_of_the_prompts() -> None:
    call, first = start(
        doc('<Gather action="/m"><Play>a.wav</Play><Pause length="2"/><Say>b</Say></Gather>')
    )
    assert first[-1] == act.Play(ref=1, url="https://app.example.com/a.wav")
    assert call.send(PromptDone(1), at=1.0) == []  # into the nested pause
    assert call.runner.next_deadline == 3.0
    assert call.send(Digit("9"), at=2.0) == []  # the pause is cut short
    assert call.runner.next_deadline == 7.0  # and the digit timeout runs
    assert call.send(PromptDone(1)) == []
    assert fetch_of(call.send(Digit("#"), at=3.0)).params["Digits"] == "9"


def test_a_stale_prompt_done_after_an_interruption_is_ignored() -> None:
    call, _ = start(doc('<Gather action="/m"><Say>a</Say><Say>b</Say></Gather>'))
    assert call.send(Digit("1")) == [act.StopPrompt(1)]
    assert call.send(PromptDone(1)) == []  # no <Say>b</Say> after the interruption


def test_gather_with_timeout_zero_and_no_prompt_goes_on_at_once() -> None:
    _, first = start(doc('<Gather timeout="0"/><Say>next</Say>'))
    assert first == [act.Answer(), act.Say(ref=1, text="next", voice="man", language="en-US")]


def test_gather_with_action_on_empty_result_submits_nothing() -> None:
    call, _ = start(doc('<Gather action="/m" actionOnEmptyResult="true" timeout="1"/>'))
    fetch = fetch_of(call.tick(1.0))
    assert fetch.params["Digits"] == ""


def test_finish_on_key_alone_is_an_empty_result() -> None:
    call, _ = start(doc('<Gather action="/m"/><Say>none</Say>'))
    assert [type(a) for a in call.send(Digit("#"))] == [act.Say]


def test_gather_without_action_submits_to_the_current_document() -> None:
    call, _ = start(doc("<Gather numDigits='1'/>"), url="https://app.example.com/ivr?step=1")
    assert fetch_of(call.send(Digit("5"))).url == "https://app.example.com/ivr?step=1"


def test_gather_in_inline_twiml_without_action_goes_on() -> None:
    call, _ = start(doc("<Gather numDigits='1'/><Say>next</Say>"), url="")
    assert [type(a) for a in call.send(Digit("5"))] == [act.Say]


def test_speech_only_gather_ends_the_call_with_a_clear_error() -> None:
    _, first = start(doc('<Gather input="speech"/>'))
    error = only(first, act.EndWithError)
    assert isinstance(error, act.EndWithError)
    assert error.code == 12200
    assert "speech" in error.message


# -- Record ---------------------------------------------------------------------------


def test_record_on_finish_key_then_action_and_status_callback() -> None:
    call, first = start(
        doc(
            '<Record action="/vm" maxLength="60" recordingStatusCallback="/rs" '
            'recordingStatusCallbackMethod="GET" playBeep="false" trim="do-not-trim"/>'
        )
    )
    assert first == [
        act.Answer(),
        act.StartRecording(ref=1, play_beep=False, trim="do-not-trim", max_length=60),
    ]
    call.send(VoiceActivity(speaking=True), at=0.5)
    assert call.send(Digit("#"), at=6.0) == [act.StopRecording(1)]
    assert call.send(Digit("1"), at=6.1) == []  # already stopping
    out = call.send(RecordingDone(ref=1, url="https://gw/rec/RE1", sid="RE1", duration=5.4))
    callback = only(out, act.Callback)
    assert isinstance(callback, act.Callback)
    assert callback.url == "https://app.example.com/rs"
    assert callback.method == "GET"
    assert callback.params["RecordingStatus"] == "completed"
    assert callback.params["RecordingSid"] == "RE1"
    assert callback.params["CallSid"] == CALL["CallSid"]
    fetch = fetch_of(out)
    assert fetch.url == "https://app.example.com/vm"
    assert {k: fetch.params[k] for k in ("RecordingUrl", "RecordingDuration", "RecordingSid")} == {
        "RecordingUrl": "https://gw/rec/RE1",
        "RecordingDuration": "5",
        "RecordingSid": "RE1",
    }
    assert fetch.params["Digits"] == "#"


def test_record_ends_after_timeout_seconds_of_silence() -> None:
    call, _ = start(doc('<Record timeout="4" action="/vm"/>'))
    assert call.runner.next_deadline == 4.0  # silence from the start counts too
    call.send(VoiceActivity(speaking=True), at=1.0)
    assert call.runner.next_deadline == 3600.0
    call.send(VoiceActivity(speaking=False), at=10.0)
    assert call.tick(13.9) == []
    assert call.tick(14.0) == [act.StopRecording(1)]
    fetch = fetch_of(call.send(RecordingDone(ref=1, url="u", sid="RE2", duration=13.0)))
    assert "Digits" not in fetch.params


def test_record_ends_at_max_length_even_while_the_caller_speaks() -> None:
    call, _ = start(doc('<Record maxLength="20" finishOnKey="" action="/vm"/>'))
    call.send(VoiceActivity(speaking=True), at=0.2)
    assert call.send(Digit("#"), at=5.0) == []  # no finish key
    assert call.tick(20.0) == [act.StopRecording(1)]


def test_record_timeout_zero_never_ends_on_silence() -> None:
    call, _ = start(doc('<Record timeout="0" maxLength="30"/>'))
    assert call.runner.next_deadline == 30.0


def test_an_empty_recording_skips_the_action_and_goes_on() -> None:
    call, _ = start(doc('<Record action="/vm"/><Say>Nothing recorded</Say>'))
    call.tick(5.0)
    out = call.send(RecordingDone(ref=1, url="u", sid="RE3", duration=0.0))
    assert [type(a) for a in out] == [act.Say]


def test_record_without_action_posts_to_the_current_document() -> None:
    call, _ = start(doc("<Record/>"))
    call.send(Digit("*"))
    assert fetch_of(call.send(RecordingDone(ref=1, url="u", sid="R", duration=2))).url == APP


def test_hanging_up_during_record_still_sends_the_recording() -> None:
    call, _ = start(doc('<Record action="/vm"/><Say>never</Say>'))
    call.send(VoiceActivity(speaking=True), at=1.0)
    assert call.send(Hangup(), at=8.0) == [act.StopRecording(1)]
    assert not call.runner.finished
    out = call.send(RecordingDone(ref=1, url="u", sid="RE4", duration=7.0))
    fetch = fetch_of(out)
    assert fetch.final
    assert fetch.params["Digits"] == "hangup"
    assert fetch.params["CallStatus"] == "completed"
    assert call.runner.finished


def test_a_rest_redirect_after_the_caller_hung_up_is_ignored() -> None:
    call, _ = start(doc('<Record action="/vm"/>'))
    call.send(Hangup(), at=2.0)
    assert call.send(Redirected(twiml=doc("<Say>x</Say>"))) == []
    assert fetch_of(call.send(RecordingDone(ref=1, url="u", sid="R", duration=1.5))).final


def test_a_missing_result_after_hang_up_does_not_keep_the_runner_alive() -> None:
    call, _ = start(doc("<Record/>"))
    call.send(Hangup(), at=3.0)
    assert call.runner.next_deadline == 3.0 + HANGUP_GRACE_S
    assert call.tick(3.0 + HANGUP_GRACE_S) == []
    assert call.runner.finished


# -- Dial ----------------------------------------------------------------------------


DIAL = (
    '<Dial action="/dialed" timeout="20" callerId="client:desk">'
    "<Client><Identity>bob</Identity><Parameter name='ticket' value='42'/></Client>"
    "<Client>carol</Client></Dial>"
)


def test_dial_rings_every_client_and_reports_no_answer_on_timeout() -> None:
    call, first = start(doc(DIAL))
    assert first == [
        act.Answer(),
        act.Dial(
            ref=1,
            clients=(
                Client(identity="bob", parameters=(("ticket", "42"),)),
                Client(identity="carol"),
            ),
            caller_id="client:desk",
            record="do-not-record",
        ),
    ]
    assert call.runner.next_deadline == 20.0
    assert call.tick(19.9) == []
    assert call.tick(20.0) == [act.StopDial(1)]
    fetch = fetch_of(call.send(DialResult(ref=1, status="canceled", call_sid="CA1"), at=20.1))
    assert fetch.url == "https://app.example.com/dialed"
    assert fetch.params["DialCallStatus"] == "no-answer"
    assert fetch.params["DialCallSid"] == "CA1"
    assert "DialCallDuration" not in fetch.params


def test_dial_answered_then_completed_reports_the_duration() -> None:
    call, _ = start(doc(DIAL))
    assert call.send(DialAnswered(ref=1, call_sid="CAchild"), at=4.0) == []
    assert call.runner.next_deadline == 4.0 + 14400  # the time limit replaces the ring timeout
    assert call.tick(30.0) == []
    fetch = fetch_of(call.send(DialResult(ref=1, status="completed"), at=64.4))
    assert fetch.params["DialCallStatus"] == "completed"
    assert fetch.params["DialCallSid"] == "CAchild"
    assert fetch.params["DialCallDuration"] == "60"


def test_dial_busy_is_reported_as_the_gateway_found_it() -> None:
    call, _ = start(doc(DIAL))
    fetch = fetch_of(call.send(DialResult(ref=1, status="busy", call_sid="CA9"), at=2.0))
    assert fetch.params["DialCallStatus"] == "busy"


def test_dial_without_action_continues_with_the_next_verb() -> None:
    call, first = start(doc("<Dial><Client>bob</Client></Dial><Say>after</Say>"))
    dial = only(first, act.Dial)
    assert isinstance(dial, act.Dial)
    assert dial.caller_id == "client:alice"  # no callerId: the caller's own
    out = call.send(DialResult(ref=1, status="no-answer"), at=5.0)
    assert [type(a) for a in out] == [act.Say]


def test_hangup_on_star_ends_only_a_bridged_dial() -> None:
    call, _ = start(doc('<Dial hangupOnStar="true" action="/d"><Client>bob</Client></Dial>'))
    assert call.send(Digit("*"), at=1.0) == []  # still ringing: no effect
    call.send(DialAnswered(ref=1, call_sid="CA2"), at=2.0)
    assert call.send(Digit("1"), at=3.0) == []
    assert call.send(Digit("*"), at=12.0) == [act.StopDial(1)]
    fetch = fetch_of(call.send(DialResult(ref=1, status="canceled"), at=12.1))
    assert fetch.params["DialCallStatus"] == "completed"
    assert fetch.params["DialCallDuration"] == "10"


def test_dial_time_limit_ends_the_bridged_call() -> None:
    call, _ = start(doc('<Dial timeLimit="60" action="/d"><Client>bob</Client></Dial>'))
    call.send(DialAnswered(ref=1, call_sid="CA3"), at=5.0)
    assert call.tick(65.0) == [act.StopDial(1)]


def test_a_late_answer_after_the_timeout_is_ignored() -> None:
    call, _ = start(doc('<Dial timeout="5" action="/d"><Client>bob</Client></Dial>'))
    call.tick(5.0)
    assert call.send(DialAnswered(ref=1, call_sid="CA4"), at=5.1) == []
    assert fetch_of(call.send(DialResult(ref=1, status="completed"))).params["DialCallStatus"] == (
        "no-answer"
    )


def test_hanging_up_while_the_dial_rings_still_requests_the_action() -> None:
    call, _ = start(doc(DIAL))
    assert call.send(Hangup(), at=3.0) == [act.StopDial(1)]
    fetch = fetch_of(call.send(DialResult(ref=1, status="canceled"), at=3.1))
    assert fetch.final
    assert fetch.params["DialCallStatus"] == "canceled"
    assert fetch.params["CallStatus"] == "completed"
    assert call.runner.finished


def test_dialing_a_number_ends_the_call_naming_the_noun() -> None:
    call, _ = start(doc("<Say>hold on</Say><Dial>+14155550100</Dial>"))
    out = call.send(PromptDone(1))
    error = only(out, act.EndWithError)
    assert isinstance(error, act.EndWithError)
    assert error.code == 12200
    assert "<Number>+14155550100</Number>" in error.message
    assert call.runner.finished


# -- Hangup, Reject, Redirect, unsupported verbs ---------------------------------------


def test_reject_refuses_an_unanswered_call() -> None:
    call, first = start(doc('<Reject reason="busy"/><Say>never</Say>'))
    assert first == [act.Reject(reason="busy")]
    assert call.runner.finished


def test_reject_after_the_answer_is_a_hangup() -> None:
    call, _ = start(doc("<Say>hi</Say><Reject/>"))
    assert call.send(PromptDone(1)) == [act.Hangup()]


def test_hangup_verb_ends_the_document_early() -> None:
    call, _ = start(doc("<Say>hi</Say><Hangup/><Say>never</Say>"))
    assert call.send(PromptDone(1)) == [act.Hangup()]


def test_unsupported_verb_runs_what_comes_before_then_names_the_verb() -> None:
    call, first = start(doc("<Say>joining</Say><Conference>room</Conference>"))
    assert [type(a) for a in first] == [act.Answer, act.Say]
    error = only(call.send(PromptDone(1)), act.EndWithError)
    assert isinstance(error, act.EndWithError)
    assert error.code == 12200
    assert "<Conference>" in error.message


def test_redirect_fetches_the_next_document_and_runs_it_with_its_own_base() -> None:
    call, first = start(doc('<Redirect method="GET">../flows/next</Redirect>'), url=APP)
    fetch = fetch_of(first)
    assert fetch == act.Fetch(
        ref=1, url="https://app.example.com/flows/next", method="GET", params=fetch.params
    )
    assert fetch.params["CallStatus"] == "ringing"  # nothing answered the call yet
    out = call.send(
        FetchResult(ref=1, body=doc("<Play>a.wav</Play>").encode()),
        at=0.2,
    )
    assert out == [act.Answer(), act.Play(ref=2, url="https://app.example.com/flows/a.wav")]


def test_a_fetch_that_redirected_resolves_against_the_final_url() -> None:
    call, _ = start(doc("<Redirect>/a</Redirect>"))
    out = call.send(
        FetchResult(ref=1, body=doc("<Play>x.wav</Play>"), url="https://cdn.example.net/b/")
    )
    assert out[-1] == act.Play(ref=2, url="https://cdn.example.net/b/x.wav")


def test_a_stale_fetch_result_is_ignored() -> None:
    call, _ = start(doc("<Redirect>/a</Redirect>"))
    assert call.send(FetchResult(ref=7, body=doc("<Hangup/>"))) == []
    assert not call.runner.finished


def test_a_relative_url_in_inline_twiml_is_an_error() -> None:
    _, first = start(doc("<Redirect>/next</Redirect>"), url="")
    error = only(first, act.EndWithError)
    assert isinstance(error, act.EndWithError)
    assert (error.code, "/next" in error.message) == (11100, True)


# -- Fetching, failures and the fallback URL -------------------------------------------


def test_the_first_document_is_fetched_with_the_call_params() -> None:
    runner = TwimlRunner.fetching(APP, "POST", CALL)
    call = Call(runner)
    fetch = fetch_of(call.send(Start()))
    assert fetch.url == APP
    assert fetch.params == {**CALL, "CallStatus": "ringing"}
    assert call.send(FetchResult(ref=fetch.ref, body=doc("<Hangup/>"))) == [act.Hangup()]


def test_a_failed_first_fetch_tries_the_fallback_once() -> None:
    fallback = "https://backup.example.com/voice"
    call = Call(TwimlRunner.fetching(APP, "POST", CALL, fallback_url=fallback))
    first = fetch_of(call.send(Start()))
    retry = fetch_of(call.send(FetchFailed(ref=first.ref, message="HTTP 500"), at=0.3))
    assert retry.url == fallback
    assert retry.params["ErrorCode"] == "11200"
    assert retry.params["ErrorUrl"] == APP
    out = call.send(FetchFailed(ref=retry.ref, message="connection refused"), at=0.4)
    error = only(out, act.EndWithError)
    assert isinstance(error, act.EndWithError)
    assert error.code == 11200
    assert fallback in error.message and "connection refused" in error.message


def test_an_unparsable_first_document_goes_to_the_fallback() -> None:
    call = Call(TwimlRunner.fetching(APP, "GET", CALL, fallback_url="https://b.example.com/"))
    first = fetch_of(call.send(Start()))
    retry = fetch_of(call.send(FetchResult(ref=first.ref, body="<Response><Say>")))
    assert retry.params["ErrorCode"] == "12100"
    assert call.send(FetchResult(ref=retry.ref, body=doc("<Say>sorry</Say>")))[-1] == act.Say(
        ref=retry.ref + 1, text="sorry", voice="man", language="en-US"
    )


def test_an_unparsable_action_document_ends_the_call_with_the_parse_error() -> None:
    call, _ = start(doc('<Gather action="/m" numDigits="1"/>'))
    fetch = fetch_of(call.send(Digit("1")))
    error = only(call.send(FetchResult(ref=fetch.ref, body="<Reply/>")), act.EndWithError)
    assert isinstance(error, act.EndWithError)
    assert error.code == 12102


def test_a_webhook_that_never_answers_times_out() -> None:
    call, first = start(doc("<Redirect>/slow</Redirect>"))
    fetch = fetch_of(first)
    assert call.runner.next_deadline == FETCH_TIMEOUT_S
    out = call.tick(FETCH_TIMEOUT_S)
    assert out[0] == act.CancelFetch(fetch.ref)
    error = only(out, act.EndWithError)
    assert isinstance(error, act.EndWithError)
    assert error.code == 11200
    assert "15 s" in error.message
    assert call.send(FetchResult(ref=fetch.ref, body=doc("<Say>late</Say>"))) == []


def test_a_malformed_initial_inline_document_ends_the_call() -> None:
    _, first = start("<Response><Say>oops</Response>")
    error = only(first, act.EndWithError)
    assert isinstance(error, act.EndWithError)
    assert error.code == 12100


# -- The caller hanging up, and the REST API redirecting -------------------------------


def test_hanging_up_during_a_prompt_stops_it_and_ends_the_runner() -> None:
    call, _ = start(doc("<Say>Hi</Say><Say>more</Say>"))
    assert call.send(Hangup(), at=1.0) == [act.StopPrompt(1)]
    assert call.runner.finished
    assert call.runner.next_deadline is None


def test_hanging_up_while_a_webhook_is_pending_ignores_its_reply() -> None:
    call, first = start(doc("<Redirect>/next</Redirect>"))
    assert call.send(Hangup()) == []
    assert call.runner.finished
    assert call.send(FetchResult(ref=fetch_of(first).ref, body=doc("<Say>x</Say>"))) == []


def test_a_rest_redirect_stops_the_gather_and_fetches_the_new_url() -> None:
    call, _ = start(doc('<Gather action="/m"><Say>Menu</Say></Gather>'))
    out = call.send(Redirected(url="https://other.example.com/flow", method="GET"), at=2.0)
    assert out[0] == act.StopPrompt(1)
    fetch = fetch_of(out)
    assert (fetch.url, fetch.method, fetch.params["CallStatus"]) == (
        "https://other.example.com/flow",
        "GET",
        "in-progress",
    )
    assert call.send(Digit("1")) == []  # the gather is gone


def test_a_rest_redirect_with_twiml_replaces_a_pending_fetch() -> None:
    call, first = start(doc("<Redirect>/slow</Redirect>"))
    out = call.send(Redirected(twiml=doc("<Say>now</Say>")))
    assert out == [
        act.CancelFetch(fetch_of(first).ref),
        act.Answer(),
        act.Say(ref=2, text="now", voice="man", language="en-US"),
    ]


def test_a_rest_redirect_during_a_dial_stops_it() -> None:
    call, _ = start(doc(DIAL))
    out = call.send(Redirected(twiml=doc("<Hangup/>")))
    assert out == [act.StopDial(1), act.Hangup()]


# -- The scenarios the issue names ----------------------------------------------------


def test_say_gather_action_say_hangup_built_with_voice_response() -> None:
    menu = VoiceResponse()
    menu.say("Welcome to support.")
    gather = Gather(num_digits=1, action="/choice", timeout=5)
    gather.say("Press 1 for sales, 2 for billing.")
    menu.append(gather)
    menu.say("We did not get your choice. Goodbye.")
    runner = TwimlRunner.fetching(APP, "POST", CALL)
    call = Call(runner)

    voice = fetch_of(call.send(Start()))
    out = call.send(FetchResult(ref=voice.ref, body=str(menu)), at=0.1)
    assert out == [
        act.Answer(),
        act.Say(ref=2, text="Welcome to support.", voice="man", language="en-US"),
    ]
    prompt = call.send(PromptDone(2), at=2.0)
    assert prompt == [
        act.Say(ref=3, text="Press 1 for sales, 2 for billing.", voice="man", language="en-US")
    ]
    out = call.send(Digit("2"), at=3.0)  # interrupts the prompt and, numDigits=1, submits
    assert out[0] == act.StopPrompt(3)
    choice = fetch_of(out)
    assert (choice.url, choice.params["Digits"]) == ("https://app.example.com/choice", "2")

    reply = VoiceResponse()
    reply.say("Connecting you to billing.")
    reply.hangup()
    out = call.send(FetchResult(ref=choice.ref, body=str(reply)), at=3.2)
    assert out == [act.Say(ref=5, text="Connecting you to billing.", voice="man", language="en-US")]
    assert call.send(PromptDone(5), at=5.0) == [act.Hangup()]
    assert call.runner.finished


def test_dial_no_answer_then_voicemail_then_action() -> None:
    call, first = start(doc('<Dial timeout="10" action="/after-dial"><Client>bob</Client></Dial>'))
    assert [type(a) for a in first] == [act.Answer, act.Dial]
    assert call.tick(10.0) == [act.StopDial(1)]
    after_dial = fetch_of(call.send(DialResult(ref=1, status="canceled"), at=10.05))
    assert after_dial.params["DialCallStatus"] == "no-answer"
    assert after_dial.url == "https://app.example.com/after-dial"

    voicemail = VoiceResponse()
    voicemail.say("Bob is not available. Leave a message after the beep.")
    voicemail.record(max_length=120, action="/voicemail-done", finish_on_key="#")
    out = call.send(FetchResult(ref=after_dial.ref, body=str(voicemail)), at=10.2)
    say = only(out, act.Say)
    assert act.Answer() not in out  # answered already
    out = call.send(PromptDone(ref_of(say)), at=14.0)
    assert out == [act.StartRecording(ref=4, play_beep=True, trim="trim-silence", max_length=120)]
    call.send(VoiceActivity(speaking=True), at=15.0)
    call.send(VoiceActivity(speaking=False), at=22.0)
    assert call.send(Digit("#"), at=23.0) == [act.StopRecording(4)]
    done = fetch_of(
        call.send(RecordingDone(ref=4, url="https://gw/Recordings/RE5", sid="RE5", duration=8.2))
    )
    assert done.url == "https://app.example.com/voicemail-done"
    assert done.params["RecordingSid"] == "RE5"
    assert done.params["RecordingDuration"] == "8"
    assert done.params["Digits"] == "#"
    assert done.params["CallStatus"] == "in-progress"

"""TwiML documents parse to typed verbs with Twilio's defaults, or fail with its codes."""

from __future__ import annotations

import pytest
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from softphone.gateway.twiml import model
from softphone.gateway.twiml.errors import TwimlError
from softphone.gateway.twiml.model import (
    Client,
    Hangup,
    Pause,
    Play,
    Record,
    Redirect,
    Reject,
    Response,
    Say,
    Unsupported,
    UnsupportedNoun,
)
from softphone.gateway.twiml.parse import MAX_DOCUMENT_BYTES, parse_twiml

pytestmark = pytest.mark.pure


def verbs(body: str) -> tuple[object, ...]:
    return parse_twiml(f"<Response>{body}</Response>").verbs


def test_defaults_are_twilios() -> None:
    assert verbs(
        "<Say>Hi</Say><Play>a.wav</Play><Pause/><Gather/><Record/>"
        "<Dial><Client>alice</Client></Dial><Hangup/><Reject/><Redirect>/next</Redirect>"
    ) == (
        Say(text="Hi", voice="man", language="en-US", loop=1),
        Play(url="a.wav", loop=1, digits=""),
        Pause(length=1),
        model.Gather(
            prompts=(),
            input=frozenset({"dtmf"}),
            num_digits=None,
            finish_on_key="#",
            timeout=5,
            action=None,
            method="POST",
            action_on_empty_result=False,
        ),
        Record(
            max_length=3600,
            timeout=5,
            finish_on_key="1234567890*#",
            play_beep=True,
            action=None,
            method="POST",
            recording_status_callback=None,
            recording_status_callback_method="POST",
            trim="trim-silence",
        ),
        model.Dial(
            targets=(Client(identity="alice"),),
            timeout=30,
            action=None,
            method="POST",
            caller_id=None,
            record="do-not-record",
            hangup_on_star=False,
            time_limit=14400,
        ),
        Hangup(),
        Reject(reason="rejected"),
        Redirect(url="/next", method="POST"),
    )


def test_the_official_voice_response_parses() -> None:
    response = VoiceResponse()
    gather = Gather(
        num_digits=1,
        action="/menu",
        method="GET",
        finish_on_key="",
        timeout=3,
        action_on_empty_result=True,
        input="dtmf",
    )
    gather.say("Press 1", voice="alice", language="en-GB", loop=2)
    gather.play("http://media.example.com/a.wav")
    gather.pause(length=2)
    response.append(gather)
    dial = Dial(
        timeout=10,
        action="/dial",
        caller_id="client:bob",
        record="record-from-answer",
        hangup_on_star=True,
        time_limit=600,
    )
    client = dial.client()
    client.identity("alice")
    client.parameter(name="ticket", value="42")
    dial.client("carol")
    response.append(dial)
    response.record(
        max_length=30,
        timeout=3,
        finish_on_key="#",
        play_beep=False,
        trim="do-not-trim",
        action="/voicemail",
        recording_status_callback="/rs",
        recording_status_callback_method="GET",
    )
    response.play(digits="ww12#")
    response.reject(reason="busy")
    response.redirect("/next", method="GET")
    response.hangup()

    assert parse_twiml(str(response)) == Response(
        (
            model.Gather(
                prompts=(
                    Say(text="Press 1", voice="alice", language="en-GB", loop=2),
                    Play(url="http://media.example.com/a.wav"),
                    Pause(length=2),
                ),
                num_digits=1,
                finish_on_key="",
                timeout=3,
                action="/menu",
                method="GET",
                action_on_empty_result=True,
            ),
            model.Dial(
                targets=(
                    Client(identity="alice", parameters=(("ticket", "42"),)),
                    Client(identity="carol"),
                ),
                timeout=10,
                action="/dial",
                caller_id="client:bob",
                record="record-from-answer",
                hangup_on_star=True,
                time_limit=600,
            ),
            Record(
                max_length=30,
                timeout=3,
                finish_on_key="#",
                play_beep=False,
                action="/voicemail",
                recording_status_callback="/rs",
                recording_status_callback_method="GET",
                trim="do-not-trim",
            ),
            Play(digits="ww12#"),
            Reject(reason="busy"),
            Redirect(url="/next", method="GET"),
            Hangup(),
        )
    )


def test_bytes_with_an_encoding_declaration() -> None:
    doc = '<?xml version="1.0" encoding="ISO-8859-1"?><Response><Say>Café</Say></Response>'
    assert parse_twiml(doc.encode("latin-1")).verbs == (Say(text="Café"),)


def test_say_flattens_ssml_and_keeps_its_text() -> None:
    doc = '<Say voice="Polly.Joanna">Hello <break time="1s"/><emphasis>there</emphasis>!</Say>'
    assert verbs(doc) == (Say(text="Hello there!", voice="Polly.Joanna"),)


def test_dial_keeps_several_clients_and_their_parameters() -> None:
    (dial,) = verbs(
        "<Dial><Client><Identity>alice</Identity><Parameter name='a' value='1'/>"
        "<Parameter name='b' value=''/></Client><Client> bob </Client></Dial>"
    )
    assert isinstance(dial, model.Dial)
    assert dial.targets == (
        Client(identity="alice", parameters=(("a", "1"), ("b", ""))),
        Client(identity="bob"),
    )


def test_legacy_boolean_record_on_dial() -> None:
    (dial,) = verbs('<Dial record="true"><Client>a</Client></Dial>')
    assert isinstance(dial, model.Dial)
    assert dial.record == "record-from-answer"


@pytest.mark.parametrize("name", ["Conference", "Enqueue", "Number", "Sip", "Stream", "Connect"])
def test_unsupported_verbs_are_representable(name: str) -> None:
    assert verbs(f"<Say>first</Say><{name}>x</{name}>") == (
        Say(text="first"),
        Unsupported(name=name),
    )


def test_unsupported_dial_nouns_and_numbers_are_representable() -> None:
    (dial,) = verbs(
        "<Dial>+14155550100<Client>a</Client><Sip>sip:x@y</Sip><Conference>room</Conference></Dial>"
    )
    assert isinstance(dial, model.Dial)
    assert dial.targets == (
        UnsupportedNoun(name="Number", text="+14155550100"),
        Client(identity="a"),
        UnsupportedNoun(name="Sip", text="sip:x@y"),
        UnsupportedNoun(name="Conference", text="room"),
    )


@pytest.mark.parametrize(
    ("document", "code", "named"),
    [
        ("<Response><Say>unclosed</Response>", 12100, "not XML"),
        ("", 12100, "not XML"),
        (" <?xml version='1.0'?><Response/>", 12100, "not XML"),
        ("<Reply><Say>x</Say></Reply>", 12102, "<Reply>"),
        ("<Response><Speak>x</Speak></Response>", 12200, "<Speak>"),
        ("<Response>Say hello</Response>", 12200, "stray text"),
        ("<Response><Gather finishOnKey='##'/></Response>", 13310, "finishOnKey"),
        ("<Response><Gather finishOnKey='a'/></Response>", 13310, "finishOnKey"),
        ("<Response><Gather method='PUT'/></Response>", 13312, "method"),
        ("<Response><Gather timeout='-1'/></Response>", 13313, "timeout"),
        ("<Response><Gather timeout='soon'/></Response>", 13313, "timeout"),
        ("<Response><Gather numDigits='0'/></Response>", 13314, "numDigits"),
        ("<Response><Gather><Dial/></Gather></Response>", 13320, "<Dial>"),
        ("<Response><Gather><Say loop='x'>a</Say></Gather></Response>", 13322, "loop"),
        ("<Response><Gather><Say voice=''>a</Say></Gather></Response>", 13321, "voice"),
        ("<Response><Gather input='touch'/></Response>", 12200, "input"),
        ("<Response><Gather actionOnEmptyResult='yes'/></Response>", 12200, "actionOnEmpty"),
        ("<Response><Say loop='-2'>a</Say></Response>", 13510, "loop"),
        ("<Response><Say voice=' '>a</Say></Response>", 13511, "voice"),
        ("<Response><Say>  </Say></Response>", 13520, "no text"),
        ("<Response><Play loop='1.5'>a.wav</Play></Response>", 13410, "loop"),
        ("<Response><Play/></Response>", 11100, "<Play>"),
        ("<Response><Play digits='12x'/></Response>", 12200, "digits"),
        ("<Response><Pause length='two'/></Response>", 13910, "length"),
        ("<Response><Record method='DELETE'/></Response>", 13610, "method"),
        ("<Response><Record timeout='-5'/></Response>", 13611, "timeout"),
        ("<Response><Record maxLength='0'/></Response>", 13612, "maxLength"),
        ("<Response><Record finishOnKey='1a'/></Response>", 13613, "finishOnKey"),
        ("<Response><Record playBeep='maybe'/></Response>", 13616, "playBeep"),
        ("<Response><Record trim='some'/></Response>", 12200, "trim"),
        ("<Response><Dial method='X'><Client>a</Client></Dial></Response>", 13210, "method"),
        ("<Response><Dial timeout='0'><Client>a</Client></Dial></Response>", 13212, "timeout"),
        ("<Response><Dial timeout='601'><Client>a</Client></Dial></Response>", 13212, "timeout"),
        (
            "<Response><Dial hangupOnStar='1'><Client>a</Client></Dial></Response>",
            13213,
            "hangupOnStar",
        ),
        ("<Response><Dial callerId=''><Client>a</Client></Dial></Response>", 13214, "callerId"),
        ("<Response><Dial><Say>a</Say></Dial></Response>", 13215, "<Say>"),
        ("<Response><Dial/></Response>", 13215, "nothing to dial"),
        ("<Response><Dial><Client/></Dial></Response>", 13215, "identity"),
        (
            "<Response><Dial><Client>a<Parameter value='1'/></Client></Dial></Response>",
            13215,
            "name",
        ),
        ("<Response><Dial timeLimit='0'><Client>a</Client></Dial></Response>", 13216, "timeLimit"),
        ("<Response><Dial record='always'><Client>a</Client></Dial></Response>", 13217, "record"),
        ("<Response><Redirect method='PATCH'>/x</Redirect></Response>", 13710, "method"),
        ("<Response><Redirect/></Response>", 11100, "<Redirect>"),
        ("<Response><Reject reason='nope'/></Response>", 12200, "reason"),
    ],
)
def test_invalid_documents_fail_with_twilios_code(document: str, code: int, named: str) -> None:
    with pytest.raises(TwimlError) as caught:
        parse_twiml(document)
    assert caught.value.code == code
    assert named in caught.value.message


def test_huge_numbers_are_invalid_not_a_crash() -> None:
    with pytest.raises(TwimlError) as caught:
        parse_twiml(f"<Response><Pause length='{'9' * 5000}'/></Response>")
    assert caught.value.code == 13910


def test_entity_expansion_is_refused() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Response><Say>&b;</Say></Response>'
    )
    with pytest.raises(TwimlError) as caught:
        parse_twiml(bomb)
    assert caught.value.code == 12100
    assert "refused for safety" in caught.value.message


def test_external_entities_are_refused() -> None:
    doc = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<Response><Say>&x;</Say></Response>"
    )
    with pytest.raises(TwimlError) as caught:
        parse_twiml(doc)
    assert caught.value.code == 12100


def test_a_document_over_twilios_size_limit_is_refused() -> None:
    say = "<Say>" + "x" * 1000 + "</Say>"
    doc = "<Response>" + say * (MAX_DOCUMENT_BYTES // len(say) + 1) + "</Response>"
    with pytest.raises(TwimlError) as caught:
        parse_twiml(doc)
    assert caught.value.code == 11750

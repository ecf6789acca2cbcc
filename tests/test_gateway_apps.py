"""TwiML applications on the gateway, end to end: a real web app, real Devices, real media.

The application is an aiohttp server on 127.0.0.1 (``app_server.AppServer``) whose
TwiML is built with the official helper's ``VoiceResponse`` and whose every request
is checked with its ``RequestValidator``. Devices of the dev account call it through
a real gateway; what they hear is real espeak-ng speech over real aiortc media.
"""

from __future__ import annotations

import asyncio
import base64
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from app_server import AppServer
from calltools import Listener, recent
from recorders import eventually
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import dominant_frequency, rms_dbfs
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.gateway.accounts import (
    DEV_ACCOUNT_SID,
    DEV_API_KEY_SID,
    DEV_APPLICATION_SID,
    DEV_SECRET,
    AccountStore,
    ApiKey,
    Application,
)
from softphone.gateway.server import Gateway, GatewayConfig

AUTH_TOKEN = "apps-test-auth-token-0123456789abcdef"
BUILTIN_APP = "AP" + "c" * 32
"""An application without a voice URL: the built-in client/echo routing."""
SPEECH_DBFS = -40.0


@pytest.fixture
async def app_server() -> AsyncIterator[AppServer]:
    server = await AppServer(AUTH_TOKEN).start()
    yield server
    await server.stop()


@pytest.fixture
def accounts(app_server: AppServer) -> AccountStore:
    """The dev account: its application's voice URL is the test's web app."""
    store = AccountStore()
    app = Application(
        DEV_APPLICATION_SID,
        f"{app_server.url}/voice",
        voice_fallback_url=f"{app_server.url}/fallback",
        status_callback=f"{app_server.url}/status",
        status_callback_events=("initiated", "ringing", "answered", "completed"),
    )
    store.add_account(DEV_ACCOUNT_SID, [app, Application(BUILTIN_APP)], auth_token=AUTH_TOKEN)
    store.add_key(ApiKey(DEV_API_KEY_SID, DEV_SECRET, DEV_ACCOUNT_SID))
    return store


@pytest.fixture
async def gateway(
    accounts: AccountStore, tmp_path: Path, loopback_media: None
) -> AsyncIterator[Gateway]:
    config = GatewayConfig(
        port=0,
        db_path=tmp_path / "calls.sqlite3",
        media_dir=tmp_path / "media",
        heartbeat_interval_s=1.0,
    )
    gw = await Gateway(accounts, config).start()
    yield gw
    await gw.stop()


def hear(call: Call) -> MemorySink:
    """Record what the caller hears from the moment the call is accepted."""
    heard = MemorySink()
    call.on("accept", lambda c: c.get_remote_stream().add_sink(heard))
    return heard


async def speech_starts(heard: MemorySink, after: int = 0, timeout: float = 15.0) -> None:
    """Wait until ``heard`` holds speech (20 ms blocks above -40 dBFS) past sample ``after``."""

    def spoken() -> bool:
        pcm = heard.pcm()[after:]
        blocks = len(pcm) // 960
        return any(rms_dbfs(pcm[i * 960 : (i + 1) * 960]) > SPEECH_DBFS for i in range(blocks))

    await eventually(spoken, timeout=timeout)


def dial_bob(**attributes: object) -> str:
    """TwiML that dials ``client:bob`` with these ``<Dial>`` attributes."""
    response = VoiceResponse()
    dial = Dial(**attributes)
    dial.client("bob")
    response.append(dial)
    return str(response)


def hangup_after(text: str = "") -> str:
    """TwiML that says ``text`` (if any) and hangs up."""
    response = VoiceResponse()
    if text:
        response.say(text)
    response.hangup()
    return str(response)


def loud_seconds(pcm: np.ndarray) -> float:
    blocks = len(pcm) // 960
    return sum(rms_dbfs(pcm[i * 960 : (i + 1) * 960]) > SPEECH_DBFS for i in range(blocks)) * 0.02


async def test_say_gather_action_say_hangup(
    app_server: AppServer, make_device: Callable[..., Device], caplog: pytest.LogCaptureFixture
) -> None:
    def voice(params: dict[str, str]) -> str:
        response = VoiceResponse()
        gather = Gather(num_digits=1, action="/menu", timeout=10)
        gather.say("Welcome to the softphone test line. Press one for sales.")
        response.append(gather)
        response.say("We did not get your choice.")
        return str(response)

    def menu(params: dict[str, str]) -> str:
        response = VoiceResponse()
        response.say(f"You pressed {params['Digits']}. Goodbye.")
        response.hangup()
        return str(response)

    app_server.routes["/voice"] = voice
    app_server.routes["/menu"] = menu
    app_server.routes["/status"] = lambda params: 204

    alice = make_device("alice")
    call = await alice.connect(params={"To": "support", "Topic": "billing"})
    heard = hear(call)
    await call.wait_for("accept", timeout=15)
    await speech_starts(heard)
    call.send_digits("1")
    menu_hit = await app_server.wait_for("/menu")
    assert menu_hit.params["Digits"] == "1"
    before = heard.samples_written
    await eventually(lambda: call.status() == "closed", timeout=30)
    after_digit = heard.pcm()[before:]
    assert loud_seconds(after_digit) > 0.5, "the action's <Say> was not heard"

    first = app_server.at("/voice")[0]
    assert first.method == "POST"
    assert first.params["From"] == "client:alice"
    assert first.params["To"] == "support"
    assert first.params["Topic"] == "billing"
    assert first.params["AccountSid"] == DEV_ACCOUNT_SID
    assert first.params["ApplicationSid"] == DEV_APPLICATION_SID
    assert first.params["Direction"] == "inbound"
    assert first.params["CallSid"] == call.parameters["CallSid"]
    assert menu_hit.params["CallStatus"] == "in-progress"
    await eventually(lambda: len(app_server.at("/status")) == 4)
    statuses = [hit.params["CallStatus"] for hit in app_server.at("/status")]
    assert statuses == ["queued", "ringing", "in-progress", "completed"]
    assert int(app_server.at("/status")[-1].params["CallDuration"]) >= 1
    assert all(hit.valid for hit in app_server.hits), [h.path for h in app_server.hits]
    assert "application error" not in caplog.text


async def test_dial_client_answered_then_hangup_reports_completed(
    app_server: AppServer, make_device: Callable[..., Device], caplog: pytest.LogCaptureFixture
) -> None:
    app_server.routes["/voice"] = lambda params: dial_bob(action="/dialed", timeout=10)
    app_server.routes["/dialed"] = lambda params: hangup_after("Thanks. Bye.")
    app_server.routes["/status"] = lambda params: 204

    bob = Listener(make_device("bob", file_input_stream=ToneSource([660.0])))
    await bob.device.register()
    alice = make_device("alice", file_input_stream=ToneSource([440.0]))
    call = await alice.connect(params={"To": "bob"})
    heard = hear(call)
    bobs = await bob.wait_call()
    await eventually(lambda: bobs.status() == "open", timeout=15)
    assert bobs.parameters["From"] == "client:alice"
    assert (await recent(heard, 0.5)).std() > 100, "alice does not hear bob"
    assert (await bob.recent(0.5)).std() > 100, "bob does not hear alice"
    bobs.disconnect()
    hit = await app_server.wait_for("/dialed")
    assert hit.params["DialCallStatus"] == "completed"
    assert hit.params["DialCallSid"].startswith("CA")
    assert hit.params["DialCallSid"] != call.parameters["CallSid"]
    assert call.status() == "open", "the caller's call goes on after the dialled leg ends"
    await eventually(lambda: call.status() == "closed", timeout=20)
    assert hit.valid
    assert "application error" not in caplog.text


@pytest.mark.parametrize(("bob_does", "expected"), [("reject", "busy"), ("nothing", "no-answer")])
async def test_dial_client_busy_and_no_answer(
    app_server: AppServer, make_device: Callable[..., Device], bob_does: str, expected: str
) -> None:
    app_server.routes["/voice"] = lambda params: dial_bob(action="/dialed", timeout=2)
    app_server.routes["/dialed"] = lambda params: hangup_after()
    app_server.routes["/status"] = lambda params: 204

    bob = Listener(make_device("bob"), accept=False)
    await bob.device.register()
    alice = make_device("alice")
    call = await alice.connect(params={"To": "bob"})
    bobs = await bob.wait_call()
    if bob_does == "reject":
        bobs.reject()
    hit = await app_server.wait_for("/dialed")
    assert hit.params["DialCallStatus"] == expected
    await eventually(lambda: call.status() == "closed", timeout=15)
    if bob_does == "nothing":
        await eventually(lambda: bobs.status() == "closed")


async def test_unsupported_verb_ends_call_with_error_naming_it(
    app_server: AppServer, make_device: Callable[..., Device], caplog: pytest.LogCaptureFixture
) -> None:
    app_server.routes["/voice"] = lambda params: (
        "<Response><Say>One moment.</Say><Enqueue>support</Enqueue></Response>"
    )
    app_server.routes["/status"] = lambda params: 204
    alice = make_device("alice")
    call = await alice.connect(params={"To": "x"})
    errors: list[object] = []
    call.on("error", errors.append)
    await eventually(lambda: call.status() == "closed", timeout=20)
    assert "<Enqueue> is not supported" in caplog.text
    assert "12200" in caplog.text


async def test_broken_voice_url_uses_fallback_and_malformed_twiml_ends_the_call(
    app_server: AppServer, make_device: Callable[..., Device], caplog: pytest.LogCaptureFixture
) -> None:
    app_server.routes["/voice"] = lambda params: 500
    app_server.routes["/fallback"] = lambda params: "<Response><Say>Oops</Say><Hangup/>"
    app_server.routes["/status"] = lambda params: 204
    alice = make_device("alice")
    call = await alice.connect(params={"To": "x"})
    await eventually(lambda: call.status() == "closed", timeout=20)
    fallback = await app_server.wait_for("/fallback")
    assert fallback.params["ErrorCode"] == "11200"
    assert fallback.params["ErrorUrl"].endswith("/voice")
    assert "12100" in caplog.text  # the fallback's TwiML is not well-formed
    assert all(hit.valid for hit in app_server.hits)


async def test_voicemail_after_no_answer_is_a_playable_recording_over_rest(
    app_server: AppServer,
    gateway: Gateway,
    make_device: Callable[..., Device],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def voice(params: dict[str, str]) -> str:
        response = VoiceResponse()
        dial = Dial(action="/dialed", timeout=2)
        dial.client("bob")
        response.append(dial)
        return str(response)

    def dialed(params: dict[str, str]) -> str:
        response = VoiceResponse()
        if params["DialCallStatus"] != "completed":
            response.say("Bob is away. Leave a message after the beep.")
            response.record(max_length=3, play_beep=True, action="/recorded", timeout=5)
        return str(response)

    app_server.routes["/voice"] = voice
    app_server.routes["/dialed"] = dialed
    app_server.routes["/recorded"] = lambda params: hangup_after()
    app_server.routes["/status"] = lambda params: 204

    bob = Listener(make_device("bob"), accept=False)
    await bob.device.register()
    alice = make_device("alice", file_input_stream=ToneSource([440.0]))
    call = await alice.connect(params={"To": "bob"})
    assert (await app_server.wait_for("/dialed")).params["DialCallStatus"] == "no-answer"
    recorded = await app_server.wait_for("/recorded", timeout=30)
    await eventually(lambda: call.status() == "closed", timeout=15)
    sid = recorded.params["RecordingSid"]
    assert sid.startswith("RE")
    assert 2 <= int(recorded.params["RecordingDuration"]) <= 3
    assert recorded.params["RecordingUrl"].endswith(f"/Recordings/{sid}")
    assert recorded.valid

    assert gateway.rest_api is not None and gateway.call_store is not None
    await gateway.call_store.flush()
    client = Client(DEV_API_KEY_SID, DEV_SECRET, DEV_ACCOUNT_SID)
    client.api.base_url = gateway.rest_api.url
    fetched = await asyncio.to_thread(client.recordings(sid).fetch)
    assert fetched.call_sid == call.parameters["CallSid"]
    basic = base64.b64encode(f"{DEV_API_KEY_SID}:{DEV_SECRET}".encode()).decode()
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Basic {basic}"}) as session,
        session.get(recorded.params["RecordingUrl"] + ".wav") as response,
    ):
        assert response.status == 200
        assert response.content_type == "audio/x-wav"
        path = tmp_path / "voicemail.wav"
        path.write_bytes(await response.read())
    with wave.open(str(path)) as wav:
        assert (wav.getframerate(), wav.getnchannels()) == (8000, 1)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
    assert 2.0 <= len(pcm) / 8000 <= 3.1
    assert abs(dominant_frequency(pcm, 8000) - 440.0) < 15, "the recording is not alice's tone"
    assert "application error" not in caplog.text


def rest_client(gateway: Gateway) -> Client:
    assert gateway.rest_api is not None
    client = Client(DEV_API_KEY_SID, DEV_SECRET, DEV_ACCOUNT_SID)
    client.api.base_url = gateway.rest_api.url
    return client


async def test_rest_creates_a_call_that_rings_a_device_and_redirects_it(
    app_server: AppServer, gateway: Gateway, make_device: Callable[..., Device]
) -> None:
    def voice(params: dict[str, str]) -> str:
        response = VoiceResponse()
        response.say("This is an automated call from the softphone test.")
        response.pause(length=30)
        return str(response)

    app_server.routes["/outbound"] = voice
    app_server.routes["/status"] = lambda params: 204
    bob = Listener(make_device("bob"))
    await bob.device.register()
    client = rest_client(gateway)
    created = await asyncio.to_thread(
        client.calls.create,
        to="client:bob",
        from_="+15005550006",
        url=f"{app_server.url}/outbound",
        status_callback=f"{app_server.url}/status",
        status_callback_event=["initiated", "answered", "completed"],
    )
    assert created.sid.startswith("CA") and created.direction == "outbound-api"
    bobs = await bob.wait_call()
    assert bobs.parameters["From"] == "+15005550006"
    assert bobs.parameters["CallSid"] == created.sid
    first = await app_server.wait_for("/outbound")
    assert first.params["Direction"] == "outbound-api"
    assert first.params["CallStatus"] == "in-progress"
    assert first.valid
    await speech_starts(bob.heard)

    listed = await asyncio.to_thread(client.calls.list, status="in-progress")
    assert [c.sid for c in listed] == [created.sid]
    before = bob.heard.samples_written
    await asyncio.to_thread(
        client.calls(created.sid).update,
        twiml="<Response><Say>Goodbye from the redirect.</Say><Hangup/></Response>",
    )
    await eventually(lambda: bobs.status() == "closed", timeout=20)
    assert loud_seconds(bob.heard.pcm()[before:]) > 0.5, "the redirected <Say> was not heard"
    await eventually(lambda: len(app_server.at("/status")) == 3)
    statuses = [hit.params["CallStatus"] for hit in app_server.at("/status")]
    assert statuses == ["queued", "in-progress", "completed"]
    ended = await asyncio.to_thread(client.calls(created.sid).fetch)
    assert ended.status == "completed"


async def test_rest_redirect_brings_another_client_into_a_builtin_call(
    gateway: Gateway, make_device: Callable[..., Device], make_token: Callable[..., str]
) -> None:
    alice = make_device(
        "alice",
        make_token("alice", outgoing_application_sid=BUILTIN_APP),
        file_input_stream=ToneSource([440.0]),
    )
    bob = Listener(make_device("bob"))
    carol = Listener(make_device("carol", file_input_stream=ToneSource([880.0])))
    await bob.device.register()
    await carol.device.register()
    call = await alice.connect(params={"To": "client:bob"})
    heard = hear(call)
    bobs = await bob.wait_call()
    await eventually(lambda: call.status() == "open", timeout=15)
    client = rest_client(gateway)
    await asyncio.to_thread(
        client.calls(call.parameters["CallSid"]).update,
        twiml="<Response><Dial><Client>carol</Client></Dial></Response>",
    )
    await eventually(lambda: bobs.status() == "closed", timeout=15)
    carols = await carol.wait_call()
    await eventually(lambda: carols.status() == "open", timeout=15)
    tone = await recent(heard, 0.5)
    assert abs(dominant_frequency(tone) - 880.0) < 20, "alice does not hear carol"
    assert call.status() == "open"


async def test_rest_create_refuses_bad_requests_and_rings_nobody_unregistered(
    gateway: Gateway,
) -> None:
    client = rest_client(gateway)
    for kwargs, fragment in (
        ({"to": "+15551234567", "twiml": "<Response/>"}, "To must be client:NAME"),
        ({"to": "client:bob"}, "exactly one of Url and Twiml"),
        ({"to": "client:bob", "twiml": "<Response/>", "url": "http://a/"}, "exactly one"),
        ({"to": "client:bob", "twiml": "<Response/>", "timeout": 0}, "Timeout"),
    ):
        with pytest.raises(TwilioRestException) as raised:
            await asyncio.to_thread(client.calls.create, from_="+15005550006", **kwargs)
        assert raised.value.status == 400 and fragment in str(raised.value.msg), kwargs
    created = await asyncio.to_thread(
        client.calls.create, to="client:nobody", from_="+15005550006", twiml="<Response/>"
    )
    fetched = await asyncio.to_thread(client.calls(created.sid).fetch)
    assert fetched.status == "no-answer"
    other = Client(DEV_API_KEY_SID, DEV_SECRET, "AC" + "d" * 32)
    assert gateway.rest_api is not None
    other.api.base_url = gateway.rest_api.url
    with pytest.raises(TwilioRestException) as raised:
        await asyncio.to_thread(
            other.calls.create, to="client:bob", from_="+15005550006", twiml="<Response/>"
        )
    assert raised.value.status in (401, 404)


def tone_wav(path: Path, hz: float, seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A WAV of a pure tone (what a ``<Play>`` URL or media file holds)."""
    t = np.arange(int(rate * seconds)) / rate
    pcm = (np.sin(2 * np.pi * hz * t) * 12000).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    return path.read_bytes()


async def test_play_urls_media_files_and_digits(
    app_server: AppServer, make_device: Callable[..., Device], tmp_path: Path
) -> None:
    served = tone_wav(tmp_path / "served.wav", 600.0)
    tone_wav(tmp_path / "media" / "local.wav", 900.0)
    app_server.routes["/tone.wav"] = lambda params: web.Response(
        body=served, content_type="audio/wav"
    )
    app_server.routes["/voice"] = lambda params: (
        "<Response><Play>/tone.wav</Play><Play>file:local.wav</Play>"
        '<Play digits="12w3"/><Pause length="1"/><Hangup/></Response>'
    )
    app_server.routes["/status"] = lambda params: 204
    alice = make_device("alice")
    call = await alice.connect(params={"To": "x"})
    heard = hear(call)
    digits: list[str] = []
    call.on("dtmf", digits.append)
    await eventually(lambda: call.status() == "closed", timeout=20)
    pcm = heard.pcm()
    blocks = [pcm[i : i + 4800] for i in range(0, len(pcm) - 4800, 4800)]
    tones = [round(dominant_frequency(b)) for b in blocks if rms_dbfs(b) > -30]
    near = [t for t in tones if abs(t - 600) < 15], [t for t in tones if abs(t - 900) < 15]
    assert len(near[0]) >= 7 and len(near[1]) >= 7, tones  # about a second of each
    first_900 = next(i for i, t in enumerate(tones) if abs(t - 900) < 15)
    assert all(abs(t - 600) < 15 for t in tones[: first_900 - 1]), "played out of order"
    assert "".join(digits) == "123"


async def test_dial_record_keeps_both_sides_of_the_bridged_call(
    app_server: AppServer, gateway: Gateway, make_device: Callable[..., Device], tmp_path: Path
) -> None:
    app_server.routes["/voice"] = lambda params: dial_bob(
        action="/dialed", record="record-from-answer-dual"
    )
    app_server.routes["/dialed"] = lambda params: hangup_after()
    app_server.routes["/status"] = lambda params: 204
    bob = Listener(make_device("bob", file_input_stream=ToneSource([660.0])))
    await bob.device.register()
    alice = make_device("alice", file_input_stream=ToneSource([440.0]))
    await alice.connect(params={"To": "bob"})
    bobs = await bob.wait_call()
    await eventually(lambda: bobs.status() == "open", timeout=15)
    await bob.recent(2.0)  # two seconds of the bridged call
    bobs.disconnect()
    hit = await app_server.wait_for("/dialed")
    assert hit.params["DialCallStatus"] == "completed"
    assert 1 <= int(hit.params["RecordingDuration"]) <= 5
    assert gateway.call_store is not None
    await gateway.call_store.flush()
    client = Client(DEV_API_KEY_SID, DEV_SECRET, DEV_ACCOUNT_SID)
    assert gateway.rest_api is not None
    client.api.base_url = gateway.rest_api.url
    recording = await asyncio.to_thread(client.recordings(hit.params["RecordingSid"]).fetch)
    path = gateway.call_store.recordings_dir / DEV_ACCOUNT_SID / f"{recording.sid}.wav"
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 2
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    middle = slice(len(frames) // 2 - 4000, len(frames) // 2 + 4000)  # a second mid-call
    caller, callee = frames[middle, 0].copy(), frames[middle, 1].copy()
    assert abs(dominant_frequency(caller, 8000) - 440.0) < 15, "channel 1 is not alice"
    assert abs(dominant_frequency(callee, 8000) - 660.0) < 15, "channel 2 is not bob"


async def test_an_oversized_document_is_refused_with_11750_and_the_fallback_runs(
    app_server: AppServer, make_device: Callable[..., Device]
) -> None:
    huge = "<Response>" + "<Pause length='1'/>" * 4000 + "</Response>"  # about 80 kB
    app_server.routes["/voice"] = lambda params: huge
    app_server.routes["/fallback"] = lambda params: hangup_after("Sorry.")
    app_server.routes["/status"] = lambda params: 204
    alice = make_device("alice")
    call = await alice.connect(params={"To": "x"})
    fallback = await app_server.wait_for("/fallback")
    assert fallback.params["ErrorCode"] == "11750"
    await eventually(lambda: call.status() == "closed", timeout=20)


async def test_dial_rings_several_clients_with_caller_id_and_parameters(
    app_server: AppServer, make_device: Callable[..., Device]
) -> None:
    def voice(params: dict[str, str]) -> str:
        response = VoiceResponse()
        dial = Dial(action="/dialed", timeout=10, caller_id="+15005550006")
        client = dial.client("bob")
        client.parameter(name="ticket", value="T-42")
        dial.client("carol")
        response.append(dial)
        return str(response)

    app_server.routes["/voice"] = voice
    app_server.routes["/dialed"] = lambda params: hangup_after()
    app_server.routes["/status"] = lambda params: 204
    bob = Listener(make_device("bob"), accept=False)
    carol = Listener(make_device("carol"), accept=False)
    await bob.device.register()
    await carol.device.register()
    alice = make_device("alice")
    call = await alice.connect(params={"To": "support"})
    bobs, carols = await bob.wait_call(), await carol.wait_call()
    assert bobs.parameters["From"] == carols.parameters["From"] == "+15005550006"
    assert bobs.parameters["CallSid"] == carols.parameters["CallSid"]
    assert bobs.custom_parameters == {"ticket": "T-42"}
    carols.accept()
    await eventually(lambda: bobs.status() == "closed")  # bob's ringing stopped
    await eventually(lambda: carols.status() == "open", timeout=15)
    carols.disconnect()
    hit = await app_server.wait_for("/dialed")
    assert hit.params["DialCallStatus"] == "completed"
    assert hit.params["DialCallSid"] == carols.parameters["CallSid"]
    await eventually(lambda: call.status() == "closed", timeout=15)

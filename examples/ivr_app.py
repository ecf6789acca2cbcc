"""IVR through a TwiML application: a phone menu, a transfer to sales, voicemail.

The example is a whole voice app on one machine. A web application (aiohttp, with
its TwiML built by Twilio's helper library, ``pip install twilio``) answers the
gateway's signed webhooks: ``/voice`` greets the caller with a ``<Gather>``; pressing
1 ``<Dial>``s the ``sales`` client (a Device the example registers, which answers with
a 660 Hz tone), pressing 2 ``<Record>``s a voicemail. The gateway runs in this process
with an accounts store whose application's ``voice_url`` is that web app. A caller
Device goes through the menu twice: once to sales (it must hear the 660 Hz tone),
once to voicemail (it speaks a 440 Hz tone). The voicemail is then found through the
gateway's REST API with ``twilio.rest.Client``, and its audio fetched and checked for
the tone. Every
webhook's signature is checked with the helper's ``RequestValidator``.

    python examples/ivr_app.py
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import logging
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from softphone import Call, Device, MemorySink, Pcm, ToneSource
from softphone.audio_backends.analysis import dominant_frequency, rms_dbfs
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
from softphone.gateway.tokens import mint_token
from softphone.media.aiortc_hooks import use_host_addresses

AUTH_TOKEN = "ivr-example-auth-token-0123456789"
SALES_HZ, CALLER_HZ = 660.0, 440.0


class IvrApp:
    """The web application: TwiML for each step, every request's signature checked."""

    def __init__(self) -> None:
        self.validator = RequestValidator(AUTH_TOKEN)
        self.unsigned = 0
        self.voicemails: list[str] = []
        self.url = ""

    def routes(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/voice", self.voice)
        app.router.add_post("/menu", self.menu)
        app.router.add_post("/voicemail", self.voicemail)
        return app

    async def _params(self, request: web.Request) -> dict[str, str]:
        params = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not self.validator.validate(str(request.url), params, signature):
            self.unsigned += 1
        return params

    @staticmethod
    def _twiml(response: VoiceResponse) -> web.Response:
        return web.Response(text=str(response), content_type="text/xml")

    async def voice(self, request: web.Request) -> web.Response:
        await self._params(request)
        response = VoiceResponse()
        gather = Gather(num_digits=1, action="/menu", timeout=10)
        gather.say("Thanks for calling. Press one for sales, or two to leave a message.")
        response.append(gather)
        response.say("Goodbye.")
        return self._twiml(response)

    async def menu(self, request: web.Request) -> web.Response:
        digits = (await self._params(request)).get("Digits")
        response = VoiceResponse()
        if digits == "1":
            dial = Dial(timeout=15)
            dial.client("sales")
            response.append(dial)
        else:
            response.say("Leave your message after the beep.")
            response.record(max_length=3, action="/voicemail", play_beep=True)
        return self._twiml(response)

    async def voicemail(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        self.voicemails.append(params["RecordingSid"])
        response = VoiceResponse()
        response.say("Thank you. Goodbye.")
        response.hangup()
        return self._twiml(response)


def spoke(sink: MemorySink) -> bool:
    tail = sink.pcm()[-4800:]
    return len(tail) == 4800 and rms_dbfs(tail) > -40


async def until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the call did not get there in time")
        await asyncio.sleep(0.05)


async def fetch_audio(url: str) -> Pcm:
    """A recording's WAV from the REST API (Basic auth with the API key), as PCM."""
    auth = "Basic " + base64.b64encode(f"{DEV_API_KEY_SID}:{DEV_SECRET}".encode()).decode()
    async with (
        aiohttp.ClientSession(headers={"Authorization": auth}) as session,
        session.get(url) as response,
    ):
        response.raise_for_status()
        data = await response.read()
    with wave.open(io.BytesIO(data)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)


async def call_menu(caller: Device, key: str) -> tuple[Call, MemorySink]:
    """Call the IVR, wait for the greeting, press ``key``; return the call and its audio."""
    call = await caller.connect(params={"To": "ivr"})
    heard = MemorySink()
    call.on("accept", lambda c: c.get_remote_stream().add_sink(heard))
    await call.wait_for("accept", timeout=15)
    await until(lambda: spoke(heard))
    print(f"caller  hears the greeting on {call.parameters['CallSid']}; presses {key}")
    call.send_digits(key)
    return call, heard


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    use_host_addresses(["127.0.0.1"])  # media on loopback only
    app = IvrApp()
    runner = web.AppRunner(app.routes(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    app.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    accounts = AccountStore()
    accounts.add_account(
        DEV_ACCOUNT_SID,
        [Application(DEV_APPLICATION_SID, f"{app.url}/voice")],
        auth_token=AUTH_TOKEN,
    )
    key = ApiKey(DEV_API_KEY_SID, DEV_SECRET, DEV_ACCOUNT_SID)
    accounts.add_key(key)
    state = tempfile.TemporaryDirectory(prefix="ivr-example-")
    # a call store (in a temporary folder) keeps the calls and lists the recordings
    config = GatewayConfig(port=0, db_path=Path(state.name) / "calls.sqlite3")
    gateway = await Gateway(accounts, config).start()
    print(f"gateway {gateway.url}; application {app.url}/voice")

    def device(identity: str, hz: float) -> Device:
        token = mint_token(key, identity, outgoing_application_sid=DEV_APPLICATION_SID)
        return Device(
            token,
            chunderw=gateway.url,
            file_input_stream=ToneSource([hz]),
            rtc_configuration={"iceServers": []},
        )

    sales, caller = device("sales", SALES_HZ), device("alice", CALLER_HZ)
    sales.on("incoming", lambda call: call.accept())
    ok = True
    try:
        await sales.register()
        call, heard = await call_menu(caller, "1")
        await until(lambda: abs(dominant_frequency(heard.pcm()[-4800:]) - SALES_HZ) < 15)
        print(f"caller  transferred: hears sales at {SALES_HZ:.0f} Hz")
        call.disconnect()

        call, heard = await call_menu(caller, "2")
        await until(lambda: bool(app.voicemails), timeout=30)
        await until(lambda: call.status() == "closed")
        client = Client(DEV_API_KEY_SID, DEV_SECRET, DEV_ACCOUNT_SID)
        assert gateway.rest_api is not None
        client.api.base_url = gateway.rest_api.url
        sid = app.voicemails[0]
        recording = await asyncio.to_thread(client.recordings(sid).fetch)
        print(f"voicemail {sid}: {recording.duration} s, listed for call {recording.call_sid}")
        audio = await fetch_audio(
            f"{gateway.rest_api.url}{recording.uri.removesuffix('.json')}.wav"
        )
        hz = dominant_frequency(audio, 8000)
        print(
            f"voicemail audio: {len(audio) / 8000:.1f} s at {hz:.0f} Hz "
            f"(the caller said {CALLER_HZ:.0f})"
        )
        ok = recording.call_sid == call.parameters["CallSid"] and abs(hz - CALLER_HZ) < 15
    except (TimeoutError, AssertionError, TwilioRestException) as exc:
        print(f"failed: {exc}")
        ok = False
    finally:
        await caller.destroy()
        await sales.destroy()
        await gateway.stop()
        await runner.cleanup()
        state.cleanup()
    ok = ok and app.unsigned == 0
    print(f"webhooks with a valid signature: {'all' if app.unsigned == 0 else 'NOT all'}")
    print(f"result  {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""TwiML applications: how long the gateway takes to run one, as a caller meets it.

A gateway (in this process, on 127.0.0.1), a web application (aiohttp, TwiML built
with the official helper's ``VoiceResponse``) and real Devices:

* **webhook round trip**: the gateway sending a signed request to the application
  until it has the TwiML back (timed inside the gateway's webhook client);
* **Say start latency**: the caller's ``connect()`` until it hears the first speech
  of a ``<Say>`` (signaling, the webhook, espeak-ng, media setup), and the ``accept``
  event until then;
* **Dial ring latency**: the application answering ``<Dial><Client>bob`` until bob's
  Device gets ``incoming``;
* espeak-ng synthesis of a prompt, first time and from the cache.

``python -m benchmarks.apps [--calls N]``; :func:`run` returns the report lines.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from aiohttp import web
from twilio.twiml.voice_response import Dial, VoiceResponse

from benchmarks.harness import token
from softphone.audio_backends import MemorySink
from softphone.audio_backends.analysis import rms_dbfs
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
from softphone.gateway.app.speech import Speech
from softphone.gateway.app.webhooks import WebhookFailed, WebhookReply, Webhooks
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.twiml.model import Method
from softphone.media.aiortc_hooks import use_host_addresses

HOST = "127.0.0.1"
AUTH_TOKEN = "benchmark-auth-token-0123456789abcdef"
PROMPT = "Thank you for calling. Please hold while we connect you."


class TimedWebhooks(Webhooks):
    """The gateway's webhook client, timing each fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    async def fetch(
        self, auth_token: str, method: Method, url: str, params: Mapping[str, str]
    ) -> WebhookReply | WebhookFailed:
        started = time.perf_counter()
        result = await super().fetch(auth_token, method, url, params)
        self.seconds.append(time.perf_counter() - started)
        return result


class App:
    """The application: ``/say`` speaks, ``/dial`` rings bob; answers are timestamped."""

    def __init__(self) -> None:
        self.answered: list[float] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/say", self._say)
        app.router.add_post("/dial", self._dial)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    async def _say(self, request: web.Request) -> web.Response:
        response = VoiceResponse()
        response.say(PROMPT)
        response.pause(length=5)
        return web.Response(text=str(response), content_type="text/xml")

    async def _dial(self, request: web.Request) -> web.Response:
        response = VoiceResponse()
        dial = Dial(timeout=10)
        dial.client("bob")
        response.append(dial)
        self.answered.append(time.perf_counter())
        return web.Response(text=str(response), content_type="text/xml")


def _accounts(app_port: int, path: str) -> AccountStore:
    store = AccountStore()
    url = f"http://{HOST}:{app_port}/{path}"
    store.add_account(
        DEV_ACCOUNT_SID, [Application(DEV_APPLICATION_SID, url)], auth_token=AUTH_TOKEN
    )
    store.add_key(ApiKey(DEV_API_KEY_SID, DEV_SECRET, DEV_ACCOUNT_SID))
    return store


def _spoken(sink: MemorySink) -> bool:
    pcm = sink.pcm()
    tail = pcm[-960 * 5 :]
    return len(tail) >= 960 and rms_dbfs(tail) > -40


async def _until(predicate: Any, timeout: float = 20.0) -> float:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("the benchmark call did not get there")
        await asyncio.sleep(0.002)
    return time.perf_counter()


async def _say_calls(app: App, calls: int) -> tuple[list[float], list[float], list[float]]:
    gateway = await Gateway(
        _accounts(app.port, "say"), GatewayConfig(host=HOST, rest=False)
    ).start()
    webhooks = TimedWebhooks()
    gateway.calls.apps.webhooks = webhooks
    to_speech, accept_to_speech = [], []
    try:
        for _ in range(calls):
            device = Device(token("alice"), chunderw=gateway.url)
            heard = MemorySink()
            started = time.perf_counter()
            call = await device.connect(params={"To": "ivr"})
            accepted: list[float] = []

            def on_accept(
                c: Any, accepted: list[float] = accepted, heard: MemorySink = heard
            ) -> None:
                accepted.append(time.perf_counter())
                c.get_remote_stream().add_sink(heard)

            call.on("accept", on_accept)
            spoke = await _until(lambda heard=heard: _spoken(heard))
            to_speech.append(spoke - started)
            accept_to_speech.append(spoke - accepted[0])
            call.disconnect()
            await device.destroy()
    finally:
        await gateway.stop()
    return webhooks.seconds, to_speech, accept_to_speech


async def _dial_calls(app: App, calls: int) -> list[float]:
    gateway = await Gateway(
        _accounts(app.port, "dial"), GatewayConfig(host=HOST, rest=False)
    ).start()
    ring: list[float] = []
    try:
        bob = Device(token("bob"), chunderw=gateway.url)
        incoming: list[Any] = []
        arrived: list[float] = []

        def on_incoming(call: Any) -> None:
            arrived.append(time.perf_counter())
            incoming.append(call)

        bob.on("incoming", on_incoming)
        await bob.register()
        for n in range(calls):
            alice = Device(token("alice"), chunderw=gateway.url)
            call = await alice.connect(params={"To": "bob"})
            await _until(lambda n=n: len(arrived) > n)
            ring.append(arrived[n] - app.answered[-1])
            incoming[n].reject()
            call.disconnect()
            await alice.destroy()
        await bob.destroy()
    finally:
        await gateway.stop()
    return ring


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    median = statistics.median(values) * 1000
    return f"median {median:.1f} ms, p90 {p90 * 1000:.1f} ms (n={len(values)})"


async def run(calls: int = 10) -> list[str]:
    """Measure; one report line per figure."""
    use_host_addresses([HOST])
    speech = Speech()
    started = time.perf_counter()
    pcm = await speech.say(PROMPT, "alice", "en-US")
    cold = time.perf_counter() - started
    started = time.perf_counter()
    await speech.say(PROMPT, "alice", "en-US")
    cached = time.perf_counter() - started
    app = App()
    await app.start()
    try:
        webhook, to_speech, accept_to_speech = await _say_calls(app, calls)
        ring = await _dial_calls(app, calls)
    finally:
        assert app.runner is not None
        await app.runner.cleanup()
    seconds = len(pcm) / 48000
    loud = [i for i in range(0, len(pcm) - 960, 960) if rms_dbfs(pcm[i : i + 960]) > -40]
    lead_ms = loud[0] / 48 if loud else 0.0
    return [
        f"webhook round trip (gateway -> app -> TwiML back): {_ms(webhook)}",
        f"Say start latency, connect() -> first speech heard: {_ms(to_speech)}",
        f"Say start latency, accept -> first speech heard: {_ms(accept_to_speech)}",
        f"Dial ring latency, app answered <Dial> -> callee 'incoming': {_ms(ring)}",
        f"espeak-ng <Say> of {seconds:.1f} s of speech: {cold * 1000:.0f} ms first, "
        f"{cached * 1000:.2f} ms cached; its first {lead_ms:.0f} ms are espeak-ng's own "
        "leading silence (part of the Say start latency)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10, help="calls per figure (default 10)")
    args = parser.parse_args()
    for line in asyncio.run(run(args.calls)):
        print(line, flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

"""``softphone demo``: one real call on this machine, end to end, with a report.

An embedded gateway on 127.0.0.1, two Devices (alice and bob), real aiortc media
both ways. Alice speaks from a file, bob records what he hears, alice sends DTMF,
alice hangs up. The report says whether bob really heard alice (level and
cross-correlation against what was sent) and which digits arrived.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from softphone.audio_backends.analysis import align_offset, rms_dbfs
from softphone.audio_backends.base import SAMPLE_RATE, Pcm
from softphone.audio_backends.file import FileSink, FileSource
from softphone.audio_backends.memory import MemorySink
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.gateway.accounts import DEV_APPLICATION_SID, AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tokens import mint_token
from softphone.media.aiortc_hooks import use_host_addresses

DEMO_TEXT = (
    "Hello Bob, this is Alice calling through the softphone gateway. "
    "If you can hear me, the call works in both directions."
)


@attrs.define
class DemoSettings:
    """What ``softphone demo`` does."""

    input_path: str | None = None
    output_path: str = "demo-bob-heard.wav"
    codec: str = "opus"
    seconds: float = 6.0
    digits: str = "1234#"


class _Clock:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def say(self, who: str, what: str) -> None:
        print(f"[{time.monotonic() - self.start:6.2f}s] {who:<7} {what}", flush=True)


def speech_file(directory: Path) -> Path | None:
    """Synthesise the demo sentence with espeak-ng; None when espeak-ng is missing."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return None
    path = directory / "alice.wav"
    subprocess.run(
        [espeak, "-v", "en-us", "-s", "150", "-w", str(path), DEMO_TEXT],
        check=True,
        capture_output=True,
    )
    return path


def _read_all(path: Path) -> Pcm:
    source = FileSource(path)
    blocks = []
    while not source.finished:
        blocks.append(source.read(SAMPLE_RATE))
    source.close()
    return np.concatenate(blocks) if blocks else np.zeros(0, np.int16)


async def run_demo(settings: DemoSettings) -> int:
    """Run the demo call; returns the process exit code (0 when audio and digits arrived)."""
    clock = _Clock()
    use_host_addresses(["127.0.0.1"])
    workdir = Path(tempfile.mkdtemp(prefix="softphone-demo-"))
    input_path = Path(settings.input_path) if settings.input_path else speech_file(workdir)
    if input_path is None:
        print(
            "espeak-ng not found: alice will play a tone sequence instead of speech "
            "(apt-get install espeak-ng for speech)"
        )
        input_path = _tone_file(workdir)
    sent = _read_all(input_path)

    accounts = AccountStore.dev()
    key = accounts.default_key()
    gateway = await Gateway(accounts, GatewayConfig(port=0)).start()
    clock.say("gateway", f"listening on {gateway.url}")
    prefs = [settings.codec, "pcmu" if settings.codec == "opus" else "opus"]

    def token(identity: str) -> str:
        return mint_token(key, identity, ttl=3600, outgoing_application_sid=DEV_APPLICATION_SID)

    recording = FileSink(settings.output_path)
    heard = MemorySink()
    digits: list[str] = []
    alice = Device(
        token("alice"),
        chunderw=gateway.url,
        codec_preferences=prefs,
        file_input_stream=FileSource(input_path),
    )
    bob = Device(token("bob"), chunderw=gateway.url, codec_preferences=prefs)
    bob_call_done = asyncio.get_running_loop().create_future()
    for name, device in (("alice", alice), ("bob", bob)):
        for event in ("registering", "registered", "unregistered", "error"):
            device.on(event, _printer(clock, name, event))

    def on_incoming(call: Call) -> None:
        clock.say("bob", f"incoming call from {call.parameters.get('From')}")
        for event in ("accept", "disconnect", "cancel", "error"):
            call.on(event, _printer(clock, "bob", f"call {event}"))
        call.on("dtmf", lambda d: digits.append(d))

        def on_accept(*_: Any) -> None:
            remote = call.get_remote_stream()
            if remote is not None:
                remote.add_sink(recording)
                remote.add_sink(heard)

        call.on("accept", on_accept)

        def on_disconnect(*_: Any) -> None:
            if not bob_call_done.done():
                bob_call_done.set_result(None)

        call.on("disconnect", on_disconnect)
        call.accept()

    bob.on("incoming", on_incoming)
    exit_code = 1
    try:
        await asyncio.wait_for(bob.register(), 10)
        started = time.monotonic()
        call = await alice.connect(params={"To": "client:bob"})
        for event in ("ringing", "accept", "disconnect", "error"):
            call.on(event, _printer(clock, "alice", f"call {event}"))
        await asyncio.wait_for(call.wait_for("accept"), 15)
        setup_ms = (time.monotonic() - started) * 1000
        await asyncio.sleep(1.0)
        clock.say("alice", f"send_digits({settings.digits!r})")
        call.send_digits(settings.digits)
        await asyncio.sleep(max(0.5, settings.seconds - 1.0))
        call.disconnect()
        await asyncio.wait_for(bob_call_done, 5)
        exit_code = _report(settings, call, setup_ms, sent, heard.pcm(), digits, gateway)
    except TimeoutError:
        print("demo: the call did not complete in time (see the log above)")
    finally:
        recording.close()
        await alice.destroy()
        await bob.destroy()
        await gateway.stop()
    return exit_code


def _report(
    settings: DemoSettings,
    call: Call,
    setup_ms: float,
    sent: Pcm,
    heard: Pcm,
    digits: list[str],
    gateway: Gateway,
) -> int:
    level = rms_dbfs(heard) if len(heard) else float("-inf")
    window = sent[: min(len(sent), SAMPLE_RATE * 4)]
    lag_ms = float("nan")
    correlation = 0.0
    if len(heard) > len(window) // 2 and np.any(window):
        lag = align_offset(window, heard, SAMPLE_RATE, max_lag_s=1.5)
        segment = heard[max(0, lag) : max(0, lag) + len(window)].astype(np.float64)
        ref = window[: len(segment)].astype(np.float64)
        if len(segment) and np.std(segment) and np.std(ref):
            correlation = float(np.corrcoef(ref, segment)[0, 1])
        lag_ms = lag * 1000 / SAMPLE_RATE
    record = gateway.calls.records[-1] if gateway.calls.records else {}
    got_digits = "".join(digits)
    heard_ok = level > -45 and correlation > 0.5
    print("\n--- report ---")
    print(f"codec                 {call.codec or '?'}")
    print(f"call setup            {setup_ms:.0f} ms (connect() to accept)")
    print(
        f"bob heard             {len(heard) / SAMPLE_RATE:.1f} s at {level:.1f} dBFS "
        f"-> {settings.output_path}"
    )
    print(f"match with alice      correlation {correlation:.2f} at {lag_ms:.0f} ms delay")
    print(f"digits                sent {settings.digits!r}, bob got {got_digits!r}")
    print(
        f"gateway call record   {record.get('sid')} answered={record.get('answered')} "
        f"reason={record.get('reason')!r}"
    )
    ok = heard_ok and got_digits == settings.digits.replace("w", "")
    print(
        "result                "
        + ("OK: bob heard alice and got the digits" if ok else "FAILED: see the figures above")
    )
    return 0 if ok else 1


def _printer(clock: _Clock, who: str, event: str) -> Any:
    def handler(*args: Any) -> None:
        detail = ""
        if args and event.endswith("error"):
            detail = f": {args[0]}"
        clock.say(who, event + detail)

    return handler


def _tone_file(directory: Path) -> Path:
    """A 4-note tone melody, used as alice's voice when espeak-ng is missing."""
    rate = SAMPLE_RATE
    notes = []
    for freq in (523.25, 659.25, 783.99, 1046.5) * 2:
        t = np.arange(int(rate * 0.4)) / rate
        notes.append(np.sin(2 * np.pi * freq * t) * 0.3 * 32767)
        notes.append(np.zeros(int(rate * 0.1)))
    pcm = np.concatenate(notes).astype(np.int16)
    path = directory / "alice-tones.wav"
    sink = FileSink(path)
    sink.write(pcm)
    sink.close()
    return path

"""``softphone gateway --loop uvloop``: the same gateway on uvloop, media forwarded.

A real ``softphone gateway`` process on uvloop (the optional extra); two devices
in this process register, call each other and hear each other's tone through
its forwarding bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from recorders import EventLog, eventually

from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.core.call import Call
from softphone.core.device import Device

pytest.importorskip("uvloop", reason="the uvloop extra (pip install softphone[uvloop])")

ALICE_HZ, BOB_HZ = 1000.0, 1500.0


@contextlib.asynccontextmanager
async def _gateway(tmp_path: Path, *args: str) -> AsyncIterator[str]:
    """A ``softphone gateway`` process; yields its signaling URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "softphone.cli",
        "gateway",
        "--no-tls",
        "--port",
        "0",
        "--no-db",
        *args,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "SOFTPHONE_HOME": str(tmp_path)},
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            while not (found := re.search(rb"(ws://\S+/signal)", await proc.stdout.readline())):
                assert proc.returncode is None
        yield found.group(1).decode()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()


async def _recent(sink: MemorySink, seconds: float = 0.6) -> object:
    target = len(sink.pcm()) + int(SAMPLE_RATE * seconds)
    await eventually(lambda: len(sink.pcm()) >= target)
    return sink.pcm()[-int(SAMPLE_RATE * seconds) :]


async def test_a_gateway_on_uvloop_bridges_a_call(
    tmp_path: Path, make_token: Callable[..., str], loopback_media: None
) -> None:
    async with _gateway(tmp_path, "--loop", "uvloop") as url:
        alice = Device(
            make_token("alice"), {"chunderw": url, "file_input_stream": ToneSource([ALICE_HZ])}
        )
        bob = Device(
            make_token("bob"), {"chunderw": url, "file_input_stream": ToneSource([BOB_HZ])}
        )
        bob_hears, alice_hears = MemorySink(), MemorySink()

        def on_incoming(incoming: Call) -> None:
            incoming.on("accept", lambda c: c.get_remote_stream().add_sink(bob_hears))
            incoming.accept()

        try:
            bob.on("incoming", on_incoming)
            await bob.register()
            call = await alice.connect(params={"To": "client:bob"})
            log = EventLog(call, "accept", "disconnect")
            await log.wait_for("accept", timeout=15)
            call.get_remote_stream().add_sink(alice_hears)
            assert detect_tone(await _recent(bob_hears), ALICE_HZ)  # type: ignore[arg-type]
            assert detect_tone(await _recent(alice_hears), BOB_HZ)  # type: ignore[arg-type]
            call.disconnect()
            await log.wait_for("disconnect")
        finally:
            await alice.destroy()
            await bob.destroy()

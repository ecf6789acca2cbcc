"""Media agent: VDI-style redirection, where the app keeps signaling and media runs elsewhere.

On a virtual desktop (VDI) the app runs in the data centre but the headset is on the
user's thin client. The app (this process) keeps the Device and its signaling; the
media agent (``softphone media-agent``, another process, on a VDI deployment the thin
client) owns the peer connection and the audio devices. The app reaches the agent
through ``MediaAgentPlugin``, after which the agent's devices appear in
``device.audio`` as ``agent:...`` ids and ``set_input_device`` switches them mid-call.
Here alice's media runs in an agent started as a subprocess, whose "microphone" is a
700 Hz tone switched mid-call to 1300 Hz and whose "speaker" records to a WAV file;
bob, on the same embedded gateway, reports what he hears.

    python examples/media_agent.py                  # starts a local agent itself
    python examples/media_agent.py --agent ws://thin-client:9555 --secret s3cret

With ``--agent`` the agent is yours (``softphone media-agent --tone a=700 ...``);
pick its devices with ``--input`` (e.g. ``agent:portaudio:default``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from _common import add_gateway_arguments, gateway_setup

from softphone import (
    SAMPLE_RATE,
    Call,
    Device,
    FileSource,
    MediaAgentPlugin,
    MemorySink,
    ToneSource,
)
from softphone.audio_backends.analysis import dominant_frequency

A_HZ, B_HZ = 700.0, 1300.0
"""The agent's two "microphones" (``tone:a``, ``tone:b``)."""
BOB_HZ = 1900.0
"""What bob says."""


@contextlib.asynccontextmanager
async def local_agent(recording: Path, secret: str) -> AsyncIterator[str]:
    """Run ``softphone media-agent`` as a subprocess on 127.0.0.1; yield its URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "softphone.cli", "media-agent",
        "--port", "0", "--media-address", "127.0.0.1", "--secret", secret,
        "--tone", f"a={A_HZ:g}", "--tone", f"b={B_HZ:g}", "--input", "tone:a",
        "--file-output", f"speaker={recording}", "--output", "file:speaker",
        "--log-level", "warn", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()
    print(f"agent   {line}")
    try:
        yield line.rsplit(" ", 1)[-1]
    finally:
        process.terminate()
        await process.wait()


async def heard_hz(sink: MemorySink, seconds: float = 1.0) -> float:
    """The main frequency of the last ``seconds`` in ``sink`` (after fresh audio arrives)."""
    start = sink.samples_written
    while sink.samples_written - start < SAMPLE_RATE * seconds:
        await asyncio.sleep(0.05)
    return dominant_frequency(sink.pcm()[-int(SAMPLE_RATE * seconds) :])


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="softphone-agent-"))
    recording = workdir / "agent-speaker.wav"
    heard = MemorySink()
    async with gateway_setup(args) as setup, contextlib.AsyncExitStack() as stack:
        agent_url = args.agent or await stack.enter_async_context(
            local_agent(recording, args.secret)
        )
        bob = Device(
            setup.token("bob"), setup.device_options(file_input_stream=ToneSource([BOB_HZ]))
        )
        await stack.enter_async_context(bob)

        def on_incoming(call: Call) -> None:
            call.on("accept", lambda c: c.get_remote_stream().add_sink(heard))
            call.accept()

        bob.on("incoming", on_incoming)
        await bob.register()

        alice = await stack.enter_async_context(
            Device(setup.token("alice"), setup.device_options())
        )
        alice.plugins.register(MediaAgentPlugin(agent_url, secret=args.secret), name="media-agent")
        assert alice.audio is not None
        await alice.audio.refresh_devices()
        print("alice   agent inputs:", sorted(i for i in alice.audio.available_input_devices
                                            if i.startswith("agent:")))  # fmt: skip
        call = await alice.connect(params={"To": "client:bob"})
        await call.wait_for("accept", timeout=15)
        print(f"alice   call open ({call.codec}); media runs in the agent")
        before = await heard_hz(heard)
        print(f"bob     hears {before:7.1f} Hz (the agent's input)")
        await alice.audio.set_input_device(args.input)
        await asyncio.sleep(0.5)
        after = await heard_hz(heard)
        print(f"bob     hears {after:7.1f} Hz after set_input_device({args.input!r})")
        call.send_digits("42")
        await asyncio.sleep(1.0)
        call.disconnect()
        await asyncio.sleep(0.5)
    if args.agent:  # someone else's agent: its devices are unknown here
        return 0
    agent_heard = recorded_hz(recording)
    print(f"agent   recorded bob at {recording}: {agent_heard:.1f} Hz")
    ok = abs(before - A_HZ) < 5 and abs(after - B_HZ) < 5 and abs(agent_heard - BOB_HZ) < 5
    print("result  " + ("OK" if ok else "FAILED: audio did not go where it should"))
    return 0 if ok else 1


def recorded_hz(path: Path) -> float:
    """The main frequency of the WAV the agent's speaker wrote (0 if it is missing)."""
    if not path.exists():
        return 0.0
    with FileSource(path) as source:
        return dominant_frequency(source.read(SAMPLE_RATE))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", help="URL of a running media agent (default: start one)")
    parser.add_argument("--secret", default="example-secret", help="the agent's shared secret")
    parser.add_argument("--input", default="agent:tone:b", help="input to switch to mid-call")
    add_gateway_arguments(parser, external=False)  # bob and alice both need this gateway
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())

"""VDI-style media redirection, end to end on this machine.

The app (this process) keeps signaling: it runs a Device for alice that calls
bob through an embedded gateway. Alice's media runs in a media agent, another
process (on a VDI deployment: the user's thin client, next to the headset):
the agent owns the peer connection, captures from its input device and plays
bob on its output device. Here the agent's "microphone" is a 700 Hz tone,
switched mid-call to 1300 Hz, and its "speaker" records to a WAV file.

    python examples/media_agent_call.py                  # starts a local agent itself
    python examples/media_agent_call.py --agent ws://thin-client:9555 --secret s3cret

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

from softphone.agent import MediaAgentPlugin
from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import dominant_frequency
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.gateway.accounts import DEV_APPLICATION_SID, AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tokens import mint_token
from softphone.media.aiortc_hooks import use_host_addresses


@contextlib.asynccontextmanager
async def local_agent(recording: Path, secret: str) -> AsyncIterator[str]:
    """Run ``softphone media-agent`` as a subprocess on 127.0.0.1; yield its URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "softphone.cli", "media-agent",
        "--port", "0", "--media-address", "127.0.0.1", "--secret", secret,
        "--tone", "a=700", "--tone", "b=1300", "--input", "tone:a",
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


async def run(agent_url: str | None, secret: str, switch_to: str) -> int:
    use_host_addresses(["127.0.0.1"])  # this demo stays on loopback
    workdir = Path(tempfile.mkdtemp(prefix="softphone-agent-"))
    accounts = AccountStore.dev()
    gateway = await Gateway(accounts, GatewayConfig(port=0)).start()

    def token(identity: str) -> str:
        key = accounts.default_key()
        return mint_token(key, identity, outgoing_application_sid=DEV_APPLICATION_SID)

    async with contextlib.AsyncExitStack() as stack:
        if agent_url is None:
            agent_url = await stack.enter_async_context(
                local_agent(workdir / "agent-speaker.wav", secret)
            )
        bob = Device(token("bob"), chunderw=gateway.url, file_input_stream=ToneSource([1900]))
        heard = MemorySink()

        def on_incoming(call: Call) -> None:
            call.on("accept", lambda c: c.get_remote_stream().add_sink(heard))
            call.accept()

        bob.on("incoming", on_incoming)
        await bob.register()

        alice = Device(token("alice"), chunderw=gateway.url)
        alice.plugins.register(MediaAgentPlugin(agent_url, secret=secret), name="media-agent")
        assert alice.audio is not None
        await alice.audio.refresh_devices()
        print("alice   agent inputs:", sorted(i for i in alice.audio.available_input_devices
                                            if i.startswith("agent:")))  # fmt: skip
        call = await alice.connect(params={"To": "client:bob"})
        await call.wait_for("accept", timeout=15)
        print(f"alice   call open ({call.codec}); media runs in the agent")
        print(f"bob     hears {await heard_hz(heard):7.1f} Hz (the agent's input)")
        await alice.audio.set_input_device(switch_to)
        await asyncio.sleep(0.5)
        print(
            f"bob     hears {await heard_hz(heard):7.1f} Hz after set_input_device({switch_to!r})"
        )
        call.send_digits("42")
        await asyncio.sleep(1.0)
        call.disconnect()
        await asyncio.sleep(0.5)
        await alice.destroy()
        await bob.destroy()
    await gateway.stop()
    if (workdir / "agent-speaker.wav").exists():
        print(f"agent   recorded bob at {workdir / 'agent-speaker.wav'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", help="URL of a running media agent (default: start one)")
    parser.add_argument("--secret", default="example-secret", help="the agent's shared secret")
    parser.add_argument("--input", default="agent:tone:b", help="input to switch to mid-call")
    args = parser.parse_args()
    return asyncio.run(run(args.agent, args.secret, args.input))


if __name__ == "__main__":
    raise SystemExit(main())

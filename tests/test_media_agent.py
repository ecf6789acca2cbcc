"""VDI-style redirection: signaling in the app, media in a ``softphone media-agent`` process.

The agent runs as a real subprocess on 127.0.0.1 with virtual devices (tones
in, a WAV file out); alice's Device drives it through ``MediaAgentPlugin`` and
calls bob on the real gateway. Everything bob hears came from the agent.
"""

from __future__ import annotations

import asyncio
import os
import sys
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from calltools import Listener, open_call, silent
from recorders import EventLog, eventually

from softphone.agent import AgentClient, AgentError, AgentSource, MediaAgentPlugin
from softphone.agent.protocol import Event, ProtocolError, Request, Response, decode, encode
from softphone.agent.runner import AgentSettings, build_agent, parse_declaration
from softphone.audio_backends import ToneSource
from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.core.device import Device

DeviceFactory = Callable[..., Device]
A_HZ, B_HZ, BOB_HZ = 700.0, 1300.0, 1900.0
SECRET = "correct horse"


class AgentProcess:
    """A ``softphone media-agent`` subprocess; stopped by its PID."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, recording: Path) -> None:
        self.process = process
        self.url = url
        self.recording = recording


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[AgentProcess]:
    recording = tmp_path / "agent-speaker.wav"
    env = {**os.environ, "SOFTPHONE_AGENT_SECRET": SECRET}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "softphone.cli", "media-agent",
        "--port", "0", "--media-address", "127.0.0.1", "--log-level", "warn",
        "--tone", f"a={A_HZ:g}", "--tone", f"b={B_HZ:g}", "--input", "tone:a",
        "--file-output", f"speaker={recording}", "--output", "file:speaker",
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert "softphone media-agent" in line, line
        yield AgentProcess(process, line.rsplit(" ", 1)[-1].strip(), recording)
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 10)


async def test_a_call_with_media_in_the_agent(
    agent: AgentProcess, make_device: DeviceFactory
) -> None:
    bob = Listener(make_device("bob", file_input_stream=ToneSource([BOB_HZ])))
    await bob.device.register()
    alice = make_device("alice")
    alice.plugins.register(MediaAgentPlugin(agent.url, secret=SECRET), name="agent")
    assert alice.audio is not None
    await alice.audio.refresh_devices()
    assert {"agent:tone:a", "agent:tone:b"} <= set(alice.audio.available_input_devices)
    assert "agent:file:speaker" in alice.audio.available_output_devices

    call, bob_call = await open_call(alice, bob)
    assert isinstance(call.get_local_stream(), AgentSource)  # no audio in the app process
    heard = await bob.recent()
    assert detect_tone(heard, A_HZ) and not detect_tone(heard, B_HZ)
    assert call.codec

    await alice.audio.set_input_device("agent:tone:b")  # switched inside the agent
    await asyncio.sleep(0.3)
    heard = await bob.recent()
    assert detect_tone(heard, B_HZ) and not detect_tone(heard, A_HZ)

    call.mute()
    await asyncio.sleep(0.3)
    assert silent(await bob.recent())
    call.mute(False)
    await asyncio.sleep(0.3)
    assert detect_tone(await bob.recent(), B_HZ)

    received = EventLog(bob_call, "dtmf")
    call.send_digits("42#")  # RFC 4733 from the agent's peer connection
    await received.wait_for("dtmf", count=3)
    assert "".join(a[0] for a in received.args("dtmf")) == "42#"
    alice_digits = EventLog(call, "dtmf")
    bob_call.send_digits("7")  # and the agent reports digits it receives
    (digit,) = await alice_digits.wait_for("dtmf")
    assert digit == "7"
    assert call.peer_connection is not None
    stats = await call.peer_connection.get_stats()
    assert stats["packetsSent"] > 0 and stats["packetsReceived"] > 0

    await asyncio.sleep(0.5)  # half a second more of bob's tone: the recording's tail
    call.disconnect()
    await eventually(lambda: alice.active_call is None)

    def recorded() -> np.ndarray:
        with wave.open(str(agent.recording)) as wav:
            return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)

    # The agent closed its speaker (the WAV) when the call ended; it holds bob's voice.
    await eventually(lambda: len(recorded()) > SAMPLE_RATE)
    assert detect_tone(recorded()[-SAMPLE_RATE // 2 :], BOB_HZ)


async def test_agent_refuses_a_wrong_secret_and_bad_devices(agent: AgentProcess) -> None:
    client = AgentClient(agent.url, secret="wrong")
    with pytest.raises(AgentError, match="secret") as info:
        await client.connect()
    assert info.value.type == "PermissionError"
    good = AgentClient(agent.url, secret=SECRET)
    pc = (await good.request("create_pc", configuration={"iceServers": []}))["pc"]
    with pytest.raises(AgentError, match="no plugin provides the audio input 'nope'"):
        await good.request("create_offer", pc=pc, source="nope")
    with pytest.raises(AgentError, match="no peer connection"):
        await good.request("mute", pc="pc99", muted=True)
    await good.request("close", pc=pc)
    await good.close()
    unreachable = AgentClient("ws://127.0.0.1:9", timeout_s=2)
    with pytest.raises(ConnectionError):
        await unreachable.connect()


async def test_in_process_agent_and_declarations(loopback_media: None) -> None:
    agent = build_agent(AgentSettings(port=0, tones=("x=440+880",), default_input="tone:x"))
    await agent.start()
    try:
        client = AgentClient(agent.url)
        devices = await client.request("enumerate_devices")
        tone = next(d for d in devices if d["deviceId"] == "tone:x")
        assert tone == {"deviceId": "tone:x", "kind": "audioinput", "label": "440 Hz + 880 Hz",
                        "groupId": "tone"}  # fmt: skip
        await client.close()
        await eventually(lambda: not agent.sessions)  # the app left: its media is closed
    finally:
        await agent.stop()
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_declaration("oops")
    with pytest.raises(ValueError, match="bad tone"):
        build_agent(AgentSettings(tones=("x=loud",)))


def test_protocol_round_trips_and_rejects_malformed_messages() -> None:
    for message in (
        Request(1, "create_offer", {"pc": "pc1", "source": None}),
        Response(1, result={"sdp": "v=0"}),
        Response(2, error={"type": "KeyError", "message": "no pc"}),
        Event("dtmf", {"pc": "pc1", "digit": "5"}),
    ):
        assert decode(encode(message)) == message
    for bad in (
        "{",
        "[]",
        '{"id": 1, "method": "format_disk"}',
        '{"id": "1", "method": "hello"}',
        '{"id": 1}',
        '{"event": "nope"}',
        '{"id": 1, "method": "hello", "params": []}',
        '{"id": 1, "error": "boom"}',
    ):
        with pytest.raises(ProtocolError):
            decode(bad)

"""``softphone phone --call/--answer``: one scripted call, for automation and CI.

Real calls through a real gateway on 127.0.0.1: two phones (one of them a child
process, as a user or a CI job runs it), a phone and a fixture Device, a phone on
its own local dev gateway calling echo. The far end must really hear the tone
(checked in the recording) and get the digits; exit codes say how the call went.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from calltools import Listener, recent
from recorders import eventually

from softphone.audio_backends.analysis import detect_tone, dominant_frequency
from softphone.audio_backends.base import SAMPLE_RATE, Pcm
from softphone.audio_backends.file import FileSink, FileSource
from softphone.audio_backends.tone import ToneSource
from softphone.cli import build_parser, main
from softphone.core.device import Device
from softphone.gateway.server import Gateway
from softphone.phone.cli import settings_from_args
from softphone.phone.scripted import run_scripted

TokenFactory = Callable[..., str]
DeviceFactory = Callable[..., Device]
PHONE = [sys.executable, "-m", "softphone.cli", "phone"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


class InProcessPhone:
    """``softphone phone ARGS`` run in this event loop, its stdout/stderr kept."""

    def __init__(self, *args: str) -> None:
        parsed = build_parser().parse_args(["phone", *args])
        self.settings = settings_from_args(parsed)
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.task = asyncio.ensure_future(run_scripted(self.settings, self.out, self.err))

    async def shows(self, text: str, timeout: float = 15) -> None:
        await eventually(lambda: text in self.out.getvalue() or self.task.done(), timeout)
        assert text in self.out.getvalue(), self.out.getvalue() + self.err.getvalue()

    async def exit_code(self, timeout: float = 30) -> int:
        return await asyncio.wait_for(self.task, timeout)


def gateway_args(gateway: Gateway, token: str) -> list[str]:
    return ["--url", gateway.url, "--token", token, "--media-address", "127.0.0.1"]


def read_wav(path: Path) -> Pcm:
    with FileSource(path) as source:
        blocks = []
        while not source.finished:
            blocks.append(source.read(SAMPLE_RATE))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.int16)


def assert_tone(pcm: Pcm, hz: float) -> None:
    """At least a second of ``hz`` after the first 200 ms (codec start-up)."""
    body = pcm[SAMPLE_RATE // 5 :]
    assert len(body) >= SAMPLE_RATE, f"only {len(pcm) / SAMPLE_RATE:.2f} s recorded"
    assert detect_tone(body, hz), f"dominant {dominant_frequency(body):.0f} Hz"
    assert abs(dominant_frequency(body) - hz) < 5


async def test_two_phones_one_calls_with_a_tone_the_other_answers_and_records_it(
    gateway: Gateway, make_token: TokenFactory, tmp_path: Path
) -> None:
    heard = tmp_path / "bob-heard.wav"
    bob = InProcessPhone(
        *gateway_args(gateway, make_token("bob")), "--answer", "--output", f"file:{heard}"
    )
    await bob.shows("registered as bob")
    alice = await asyncio.create_subprocess_exec(
        *PHONE, *gateway_args(gateway, make_token("alice")),
        "--call", "client:bob", "--input", "tone:440", "--hangup-after", "2",
        "--digits", "12#",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )  # fmt: skip
    out, err = await asyncio.wait_for(alice.communicate(), 60)
    alice_out = out.decode()
    assert alice.returncode == 0, alice_out + err.decode()
    assert await bob.exit_code() == 0, bob.out.getvalue() + bob.err.getvalue()

    assert "ringing" in alice_out and "connected with client:bob (opus)" in alice_out
    assert "sent DTMF 12#" in alice_out
    assert "result: OK: outgoing call to client:bob: completed after 2." in alice_out
    assert "hung up by you" in alice_out
    bob_out = bob.out.getvalue()
    assert "incoming call from client:alice" in bob_out
    for digit in "12#":
        assert f"received DTMF {digit}" in bob_out
    assert "result: OK: incoming call from client:alice: completed" in bob_out
    assert "hung up by the far end" in bob_out and "received DTMF 12#" in bob_out
    assert_tone(read_wav(heard), 440)


async def test_a_phone_calls_a_device_that_hears_its_tone_and_digits(
    gateway: Gateway, make_token: TokenFactory, make_device: DeviceFactory
) -> None:
    bob = Listener(make_device("bob"))
    digits: list[str] = []
    bob.device.on("incoming", lambda call: call.on("dtmf", digits.append))
    await bob.device.register()
    alice = InProcessPhone(
        *gateway_args(gateway, make_token("alice")),
        "--call", "bob", "--input", "tone:697+1209", "--digits", "1234#",
    )  # fmt: skip
    await alice.shows("connected with client:bob")
    tone = await recent(bob.heard, 1.0)
    assert detect_tone(tone, 697, threshold=0.3) and detect_tone(tone, 1209, threshold=0.3)
    await eventually(lambda: "".join(digits) == "1234#")
    (await bob.wait_call()).disconnect()  # the far end hangs up: a clean end for alice
    assert await alice.exit_code() == 0, alice.out.getvalue() + alice.err.getvalue()
    assert "hung up by the far end" in alice.out.getvalue()


async def test_a_phone_plays_a_file_to_the_far_end(
    gateway: Gateway, make_token: TokenFactory, make_device: DeviceFactory, tmp_path: Path
) -> None:
    played = tmp_path / "say.wav"
    with FileSink(played) as sink:
        sink.write(ToneSource([700.0]).read(SAMPLE_RATE * 10))
    bob = Listener(make_device("bob"))
    await bob.device.register()
    alice = InProcessPhone(
        *gateway_args(gateway, make_token("alice")),
        "--call", "client:bob", "--input", f"file:{played}", "--hangup-after", "3",
    )  # fmt: skip
    await alice.shows("connected with client:bob")
    assert detect_tone(await recent(bob.heard, 1.0), 700)
    assert await alice.exit_code() == 0, alice.out.getvalue() + alice.err.getvalue()
    assert f"input: file {played}; output: nowhere (discarded)" in alice.out.getvalue()


def test_a_phone_on_its_own_local_gateway_calls_echo(tmp_path: Path) -> None:
    heard = tmp_path / "echo.wav"
    result = subprocess.run(
        [*PHONE, "--call", "echo", "--input", "tone:600", "--output", f"file:{heard}",
         "--hangup-after", "2"],
        capture_output=True, text=True, timeout=60, env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "local dev gateway listening on ws://127.0.0.1:" in lines[0]
    assert "softphone token --identity NAME" in lines[0]
    assert "input: tone 600 Hz; output: file " in lines[1]
    assert lines[-1].startswith("result: OK: outgoing call to echo: completed after 2.")
    assert_tone(read_wav(heard), 600)


async def test_calling_a_client_that_is_not_registered_fails_with_the_reason(
    gateway: Gateway, make_token: TokenFactory
) -> None:
    phone = InProcessPhone(*gateway_args(gateway, make_token("alice")), "--call", "nobody")
    assert await phone.exit_code() == 1
    reason = "TemporarilyUnavailable (31480): client:nobody is not registered"
    assert phone.err.getvalue() == f"softphone phone: {reason}\n"
    assert f"result: FAILED: outgoing call to client:nobody: failed ({reason})" in (
        phone.out.getvalue()
    )


@pytest.mark.parametrize("mode", [["--call", "echo"], ["--answer"]], ids=["call", "answer"])
async def test_a_bad_token_fails_with_the_reason(gateway: Gateway, mode: list[str]) -> None:
    phone = InProcessPhone(*gateway_args(gateway, "not-a-token"), *mode)
    assert await phone.exit_code() == 1
    err = phone.err.getvalue()
    assert err.startswith("softphone phone: ") and "AccessTokenInvalid (20101)" in err, err
    if mode == ["--answer"]:
        assert "registration failed" in err


async def test_answer_gives_up_when_no_call_comes_in(
    gateway: Gateway, make_token: TokenFactory
) -> None:
    phone = InProcessPhone(*gateway_args(gateway, make_token("bob")), "--answer", "--timeout", "1")
    assert await phone.exit_code() == 1
    assert phone.err.getvalue() == "softphone phone: no call came in within 1 s\n"


async def test_ctrl_c_hangs_up_a_connected_call_cleanly() -> None:
    child = await asyncio.create_subprocess_exec(
        *PHONE, "--call", "echo", "--input", "tone:440",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )  # fmt: skip
    assert child.stdout is not None
    seen: list[str] = []
    while not any("connected with echo" in line for line in seen):
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line, "".join(seen)
        seen.append(line.decode())
    child.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == 0, "".join(seen) + out.decode() + err.decode()
    assert "result: OK: outgoing call to echo: completed" in out.decode()
    assert "hung up by you" in out.decode()


async def test_ctrl_c_while_waiting_for_a_call_exits_130() -> None:
    child = await asyncio.create_subprocess_exec(
        *PHONE, "--answer", stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    )
    assert child.stdout is not None
    while b"registered as phone" not in await asyncio.wait_for(child.stdout.readline(), 30):
        pass
    child.send_signal(signal.SIGINT)  # just as the registration completes: must still stop
    _, err = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == 130
    assert err.decode().strip().endswith("softphone phone: interrupted before a call connected")


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        ("raise ImportError('No module named sounddevice')", "sounddevice is not installed"),
        ("raise OSError('PortAudio library not found')", "PortAudio library not found"),
    ],
    ids=["no-sounddevice", "no-libportaudio"],
)
@pytest.mark.parametrize("flag", ["--input", "--output"])
def test_portaudio_without_its_library_says_what_to_install(
    tmp_path: Path, failure: str, says: str, flag: str
) -> None:
    (tmp_path / "sounddevice.py").write_text(failure + "\n")  # shadows the real package
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    result = subprocess.run(
        [*PHONE, "--call", "echo", flag, "portaudio"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""  # refused before any gateway started
    err = result.stderr.strip()
    assert err.startswith("softphone phone: PortAudio is not usable here: ") and says in err
    assert "pip install 'softphone[portaudio]'" in err and "libportaudio2" in err
    assert "Traceback" not in result.stderr


def test_list_devices_prints_the_portaudio_ids_or_why_there_are_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["phone", "--list-devices"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(("inputs (--input ID):", "PortAudio found no sound devices")), out
    (tmp_path / "sounddevice.py").write_text("raise ImportError('no sounddevice')\n")
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    result = subprocess.run(
        [*PHONE, "--list-devices"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0
    assert result.stdout.startswith("PortAudio is not usable here: sounddevice is not installed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ws://127.0.0.1:9/signal"], "give both --url and --token, or neither"),
        (["--url", "ws://x/signal", "--token", "t", "--identity", "a"], "--identity is for"),
        (["--identity", "bad name"], "--identity: Identity must be"),
        (["--digits", "12"], "--digits goes with --call or --answer"),
        (["--call", "echo", "--digits", "12x"], "--digits '12x': use 0-9, *, # and w"),
        (["--call", "echo", "--hangup-after", "0"], "--hangup-after must be > 0"),
        (["--answer", "--timeout", "-1"], "--timeout must be > 0"),
        (["--call", "two words"], "cannot call 'two words'"),
        (["--call", "echo", "--input", "mic"], "--input 'mic': use tone:HZ"),
        (["--call", "echo", "--output", "tone:1"], "--output 'tone:1': use file:PATH"),
        (["--url", "ftp://x", "--token", "t", "--call", "echo"], "which cannot carry signaling"),
    ],
)
def test_settings_that_cannot_work_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["phone", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("softphone phone: ") and message in err, err
    assert err.count("\n") == 1


def test_files_that_cannot_be_used_are_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.wav"
    assert main(["phone", "--call", "echo", "--input", f"file:{missing}"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"softphone phone: --input file:{missing}: no such file\n"
    assert captured.out == ""  # no local gateway was started
    nowhere = tmp_path / "no-such-folder" / "out.wav"
    assert main(["phone", "--call", "echo", "--output", f"file:{nowhere}"]) == 2
    err = capsys.readouterr().err
    assert err == f"softphone phone: --output file:{nowhere}: its folder does not exist\n"

"""Every example in ``examples/`` runs as a user runs it, and does what its header says.

Each one is started as ``python examples/NAME.py`` in a fresh working directory, with
no arguments beyond where to write files: it starts the development gateway on
127.0.0.1 by itself and uses tone or file audio. The test checks the exit status and
the figures the example prints (and, for the recording bot and click-to-call, the
WAV files they wrote), so an example that runs but does the wrong thing fails too.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from softphone.audio_backends import FileSource
from softphone.audio_backends.analysis import dominant_frequency

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TESTED = {
    "answer_bot",
    "click_to_call",
    "device_switcher",
    "dtmf_menu_client",
    "ivr_app",
    "media_agent",
    "recording_bot",
}


def run_example(name: str, cwd: Path, *args: str) -> str:
    """Run ``examples/<name>.py``; return its output after checking it exited with 0."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "result  OK" in result.stdout, output
    return result.stdout


def read_wav(path: Path) -> np.ndarray:
    with FileSource(path) as source:
        blocks = []
        while not source.finished:
            blocks.append(source.read(4800))
    return np.concatenate(blocks)


def numbers(pattern: str, text: str) -> list[float]:
    return [float(match) for match in re.findall(pattern, text)]


def test_every_example_has_a_header_and_a_test() -> None:
    found = {path.stem for path in EXAMPLES.glob("*.py") if not path.stem.startswith("_")}
    assert found == TESTED, "add the new example to TESTED and give it a test here"
    assert len(found) >= 6
    for name in found:
        doc = ast.get_docstring(ast.parse((EXAMPLES / f"{name}.py").read_text()))
        assert doc, f"{name}.py has no header"
        first_paragraph = doc.split("\n\n")[0]
        body = doc.split("\n\n")[1] if "\n\n" in doc else ""
        assert len(first_paragraph) > 30 and len(body.split()) > 40, f"{name}.py header"


def test_answer_bot_greets_the_caller(tmp_path: Path) -> None:
    out = run_example("answer_bot", tmp_path)
    assert "bot     answered CA" in out
    assert re.search(r"caller  heard \d+\.\d s of greeting: 660 Hz yes, 880 Hz yes", out), out


def test_click_to_call_hears_its_echo_and_records_it(tmp_path: Path) -> None:
    out = run_example("click_to_call", tmp_path, "--record", "heard.wav", "--seconds", "2")
    assert re.search(r"call    answered: CA\w+, codec (pcmu|opus)\n", out), out
    (echo_hz,) = numbers(r"echo    heard ([\d.]+) Hz back", out)
    assert abs(echo_hz - 440) < 5
    pcm = read_wav(tmp_path / "heard.wav")
    assert len(pcm) > 48_000
    assert abs(dominant_frequency(pcm[-48_000:]) - 440) < 5


def test_dtmf_menu_client_reaches_every_page(tmp_path: Path) -> None:
    out = run_example("dtmf_menu_client", tmp_path)
    pages = re.findall(r"client  pressed (\d); hearing +[\d.]+ Hz \((\w+)\)", out)
    assert pages == [("1", "sales"), ("2", "support"), ("0", "main")], out
    assert "menu    # pressed: goodbye" in out and "the menu hung up" in out


def test_recording_bot_writes_what_the_caller_said(tmp_path: Path) -> None:
    out = run_example("recording_bot", tmp_path, "--out-dir", "recordings", "--seconds", "2")
    (recording,) = (tmp_path / "recordings").glob("CA*.wav")
    assert recording.name in out
    pcm = read_wav(recording)
    assert 1.5 * 48_000 < len(pcm) < 4 * 48_000
    assert abs(dominant_frequency(pcm) - 1000) < 5


def test_device_switcher_moves_audio_between_devices(tmp_path: Path) -> None:
    out = run_example("device_switcher", tmp_path)
    assert out.count("(ok)") == 4 and "WRONG" not in out, out
    heard = numbers(r"check   [^:]+: +([\d.]+) Hz", out)
    assert [round(hz) for hz in heard] == [500, 1500, 1500, 0], out
    assert "deviceChange lost ['memory:speakers']; speaker devices now ['default']" in out


def test_media_agent_runs_the_media_in_another_process(tmp_path: Path) -> None:
    out = run_example("media_agent", tmp_path)
    assert re.search(r"agent   softphone media-agent [\d.]+: ws://127\.0\.0\.1:\d+", out), out
    bob_hears = numbers(r"bob     hears +([\d.]+) Hz", out)
    assert [round(hz) for hz in bob_hears] == [700, 1300], out
    (agent_heard,) = numbers(r"agent   recorded bob at \S+: ([\d.]+) Hz", out)
    assert abs(agent_heard - 1900) < 5


def test_ivr_app_transfers_to_sales_and_keeps_a_voicemail(tmp_path: Path) -> None:
    out = run_example("ivr_app", tmp_path)
    assert "caller  transferred: hears sales at 660 Hz" in out
    hz = numbers(r"voicemail audio: [0-9.]+ s at ([0-9]+) Hz", out)
    assert len(hz) == 1 and abs(hz[0] - 440) < 15, out
    assert "webhooks with a valid signature: all" in out

"""The pieces an application call is made of: prompt player, recorder, voice names."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from softphone.audio_backends import ToneSource
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.gateway.app.prompt_player import PromptPlayer
from softphone.gateway.app.recorder import RECORDING_RATE, Recorder, write_dial_recording
from softphone.gateway.app.speech import espeak_voice

pytestmark = pytest.mark.pure


def test_prompts_play_in_order_and_report_done_when_fully_read() -> None:
    done: list[int] = []
    player = PromptPlayer(done.append)
    player.play(1, np.full(1500, 7, dtype=np.int16))
    player.play(2, np.full(500, 9, dtype=np.int16))
    first = player.read(960)
    assert (first == 7).all() and done == []
    second = player.read(960)
    assert (second[:540] == 7).all() and (second[540:] == 9).all()
    assert done == [1]
    third = player.read(960)
    assert (third[:80] == 9).all() and (third[80:] == 0).all()
    assert done == [1, 2]
    assert player.playing is None


def test_a_stopped_prompt_is_cut_and_never_reported() -> None:
    done: list[int] = []
    player = PromptPlayer(done.append)
    player.play(1, np.full(5000, 7, dtype=np.int16))
    player.play(2, np.full(100, 9, dtype=np.int16))
    player.read(960)
    player.stop(1)
    out = player.read(960)
    assert (out[:100] == 9).all() and (out[100:] == 0).all()
    assert done == [2]


def test_an_empty_prompt_is_done_at_the_next_read() -> None:
    done: list[int] = []
    player = PromptPlayer(done.append)
    player.play(4, np.zeros(0, dtype=np.int16))
    assert (player.read(960) == 0).all()
    assert done == [4]


def speech_then_silence(seconds_on: float, seconds_off: float) -> np.ndarray:
    tone = ToneSource([440.0], amplitude=0.3).read(int(SAMPLE_RATE * seconds_on))
    return np.concatenate([tone, np.zeros(int(SAMPLE_RATE * seconds_off), dtype=np.int16)])


def test_recorder_reports_voice_edges_and_trims_silence(tmp_path: Path) -> None:
    edges: list[bool] = []
    recorder = Recorder(60, edges.append)
    quiet = np.zeros(SAMPLE_RATE, dtype=np.int16)
    audio = np.concatenate([quiet, speech_then_silence(1.0, 1.0)])
    for start in range(0, len(audio), 960):
        recorder.write(audio[start : start + 960])
    assert edges == [True, False]
    seconds = recorder.finish(tmp_path / "r.wav", trim=True)
    assert 1.0 <= seconds <= 1.3  # the tone plus 100 ms either side
    with wave.open(str(tmp_path / "r.wav")) as wav:
        assert wav.getframerate() == RECORDING_RATE
        assert wav.getnframes() == round(seconds * RECORDING_RATE)


def test_recorder_stops_at_max_length_and_keeps_nothing_of_silence(tmp_path: Path) -> None:
    recorder = Recorder(1, lambda speaking: None)
    tone = ToneSource([440.0], amplitude=0.3).read(SAMPLE_RATE * 3)
    for start in range(0, len(tone), 960):
        recorder.write(tone[start : start + 960])
    assert recorder.seconds == 1.0
    silent = Recorder(5, lambda speaking: None)
    silent.write(np.zeros(SAMPLE_RATE, dtype=np.int16))
    assert silent.finish(tmp_path / "none.wav", trim=True) == 0.0
    assert not (tmp_path / "none.wav").exists()


@pytest.mark.parametrize(
    ("voice", "language", "expected"),
    [
        ("man", "en-US", "en-us"),
        ("woman", "en-GB", "en-gb+f3"),
        ("alice", "fr-FR", "fr-fr+f3"),
        ("Polly.Joanna", "en-US", "en-us+f3"),
        ("Polly.Matthew", "en-US", "en-us"),
        ("Google.en-US-Standard-F", "en-US", "en-us+f3"),
    ],
)
def test_twiml_voices_map_to_espeak_voices(voice: str, language: str, expected: str) -> None:
    assert espeak_voice(voice, language) == expected


def test_dial_recording_mixes_or_keeps_legs_apart_with_their_offsets(tmp_path: Path) -> None:
    caller, callee = Recorder(60, lambda s: None), Recorder(60, lambda s: None)
    caller.write(np.full(SAMPLE_RATE, 1000, dtype=np.int16))
    callee.write(np.full(SAMPLE_RATE // 2, 3000, dtype=np.int16))
    legs = [(caller, 0), (callee, RECORDING_RATE // 2)]
    seconds = write_dial_recording(tmp_path / "dual.wav", legs, dual=True)
    assert seconds == 1.0
    with wave.open(str(tmp_path / "dual.wav")) as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    assert frames[100, 1] == 0 and frames[-100, 1] > 2000  # bob only from his answer on
    mono = write_dial_recording(tmp_path / "mono.wav", legs, dual=False)
    with wave.open(str(tmp_path / "mono.wav")) as wav:
        assert wav.getnchannels() == 1 and mono == 1.0
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert 3500 < pcm[-100] < 4500  # both voices in the mix

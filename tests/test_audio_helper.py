"""``device.audio`` on real calls: device lists, input switching, outputs, processors, meters.

Every call goes through the real gateway on 127.0.0.1 with real aiortc media;
what the far end hears is measured with ``detect_tone``.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from calltools import Listener, open_call, recent, silent
from recorders import EventLog, eventually

from softphone.audio_backends import FileSink, MemorySink, MemorySource, ToneSource
from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.base import SAMPLE_RATE, AudioSource, Pcm
from softphone.audio_backends.devices import MediaDeviceInfo
from softphone.audio_backends.null import NullSink
from softphone.audio_backends.volume import VolumeAnalyser
from softphone.core.device import Device
from softphone.core.errors import (
    InvalidArgumentError,
    InvalidStateError,
    NotSupportedError,
)

DeviceFactory = Callable[..., Device]
A_HZ, B_HZ, BOB_HZ = 700.0, 1300.0, 1900.0


async def _bob(make_device: DeviceFactory, **options: Any) -> Listener:
    bob = Listener(make_device("bob", file_input_stream=ToneSource([BOB_HZ]), **options))
    await bob.device.register()
    return bob


def _helper(device: Device) -> Any:
    assert device.audio is not None
    return device.audio


# -- device lists ------------------------------------------------------------------------
async def test_virtual_backends_are_listed_with_media_device_info(
    make_device: DeviceFactory,
) -> None:
    alice = make_device("alice")
    alice.plugins.tone.add_tone("a", [A_HZ])
    alice.plugins.memory.add_output("spk")
    audio = _helper(alice)
    inputs, outputs = audio.available_input_devices, audio.available_output_devices
    assert inputs["tone:a"] == MediaDeviceInfo("tone:a", "audioinput", "700 Hz", "tone")
    assert {"default", "null:silence", "tone:a"} <= set(inputs)
    assert {"default", "null:discard", "memory:spk"} <= set(outputs)
    assert inputs["default"].label == "Default"
    assert audio.input_device is None and audio.is_output_selection_supported
    assert audio.speaker_devices.get() == {outputs["default"]}


async def test_device_change_reports_lost_active_devices(make_device: DeviceFactory) -> None:
    alice = make_device("alice")
    audio = _helper(alice)
    alice.plugins.tone.add_tone("a", [A_HZ])
    alice.plugins.memory.add_output("spk")
    await audio.set_input_device("tone:a")
    await audio.speaker_devices.set(["memory:spk"])
    log = EventLog(audio, "deviceChange")
    alice.plugins.tone.add_tone("b", [B_HZ])  # a backend notification: no polling needed
    assert await log.wait_for("deviceChange") == ([],)
    assert "tone:b" in audio.available_input_devices
    alice.plugins.tone.remove("tone:a")
    (lost,) = await log.wait_for("deviceChange", count=2)
    assert [d.device_id for d in lost] == ["tone:a"]
    assert audio.input_device is not None and audio.input_device.device_id == "default"
    alice.plugins.memory.remove("memory:spk")
    (lost,) = await log.wait_for("deviceChange", count=3)
    assert [d.device_id for d in lost] == ["memory:spk"]
    assert [d.device_id for d in audio.speaker_devices.get()] == ["default"]


async def test_device_change_is_found_by_polling(make_device: DeviceFactory) -> None:
    from softphone.plugins import hookimpl

    class Hotplug:
        """A backend that never notifies: only polling can see its changes."""

        devices: list[MediaDeviceInfo] = []

        @hookimpl
        def softphone_enumerate_devices(self) -> list[MediaDeviceInfo]:
            return list(self.devices)

    alice = make_device("alice")
    alice.plugins.register(Hotplug())
    audio = _helper(alice)
    audio.device_poll_interval_s = 0.05
    log = EventLog(audio, "deviceChange")
    assert "usb" not in audio.available_input_devices
    Hotplug.devices = [MediaDeviceInfo("usb", "audioinput", "", "usb")]
    await log.wait_for("deviceChange")
    assert audio.available_input_devices["usb"].label == "Unknown Audio Input Device 1"


# -- input selection ---------------------------------------------------------------------
async def test_switching_input_mid_call_changes_what_the_far_end_hears(
    make_device: DeviceFactory,
) -> None:
    bob = await _bob(make_device)
    alice = make_device("alice")
    alice.plugins.tone.add_tone("a", [A_HZ])
    alice.plugins.tone.add_tone("b", [B_HZ])
    audio = _helper(alice)
    await audio.set_input_device("tone:a")
    call, _ = await open_call(alice, bob)
    heard = await bob.recent()
    assert detect_tone(heard, A_HZ) and not detect_tone(heard, B_HZ)

    await audio.set_input_device("tone:b")
    assert audio.input_device.device_id == "tone:b"
    await asyncio.sleep(0.3)  # let audio captured before the switch drain through
    heard = await bob.recent()
    assert detect_tone(heard, B_HZ) and not detect_tone(heard, A_HZ)

    with pytest.raises(InvalidStateError, match="while a call is in progress"):
        await audio.unset_input_device()
    call.disconnect()
    await eventually(lambda: alice.active_call is None)
    await audio.unset_input_device()
    assert audio.input_device is None and audio.input_stream is None


async def test_selected_input_survives_calls_and_errors_are_js_shaped(
    make_device: DeviceFactory,
) -> None:
    bob = await _bob(make_device)
    alice = make_device("alice")
    mic = alice.plugins.memory.add_input("mic", MemorySource(loop=True))
    assert isinstance(mic, MemorySource)
    t = np.arange(SAMPLE_RATE // 10) / SAMPLE_RATE
    mic.feed((np.sin(2 * np.pi * A_HZ * t) * 9000).astype(np.int16))
    audio = _helper(alice)
    with pytest.raises(InvalidArgumentError, match="Must specify the device to set"):
        await audio.set_input_device(None)
    with pytest.raises(InvalidArgumentError, match="Device not found: nope"):
        await audio.set_input_device("nope")
    await audio.set_input_device("memory:mic")
    for _ in range(2):  # the app's pipe is borrowed: the first call does not close it
        call, _ = await open_call(alice, bob)
        assert detect_tone(await bob.recent(), A_HZ)
        call.disconnect()
        await eventually(lambda: alice.active_call is None and not bob.device.is_busy)
    assert not mic.closed


async def test_audio_constraints_reach_get_user_media(make_device: DeviceFactory) -> None:
    from softphone.plugins import hookimpl

    seen: list[dict[str, Any]] = []

    class Recorder:
        @hookimpl(tryfirst=True)
        def softphone_get_user_media(self, constraints: dict[str, Any]) -> None:
            seen.append(constraints)

    alice = make_device("alice")
    alice.plugins.register(Recorder())
    alice.plugins.tone.add_tone("a", [A_HZ])
    audio = _helper(alice)
    await audio.set_input_device("tone:a")
    await audio.set_audio_constraints({"echoCancellation": False, "deviceId": "ignored"})
    assert audio.audio_constraints == {"echoCancellation": False}
    assert seen[-1] == {"audio": {"echoCancellation": False, "deviceId": {"exact": "tone:a"}}}
    await audio.unset_audio_constraints()
    assert audio.audio_constraints is None
    assert seen[-1] == {"audio": {"deviceId": {"exact": "tone:a"}}}


async def test_input_volume_uses_the_js_scale(make_device: DeviceFactory) -> None:
    alice = make_device("alice")
    alice.plugins.tone.add_tone("loud", [A_HZ], amplitude=0.5)
    audio = _helper(alice)
    await audio.set_input_device("tone:loud")
    volumes: list[float] = []
    audio.on("inputVolume", volumes.append)
    await eventually(lambda: len(volumes) >= 10)
    assert 0.1 < volumes[-1] <= 1.0
    await audio.set_input_device("null:silence")
    count = len(volumes)
    await eventually(lambda: len(volumes) >= count + 10)
    assert volumes[-1] == 0.0
    audio.off("inputVolume", volumes.append)


def test_volume_analyser_matches_the_analyser_node_scale() -> None:
    analyser = VolumeAnalyser()
    assert analyser.volume() == 0.0
    rng = np.random.default_rng(1)
    analyser.push((rng.uniform(-1, 1, 960) * 32767).astype(np.int16))
    loud = [analyser.volume() for _ in range(10)][-1]
    assert loud > 0.9  # white noise at full scale: every bin far above -30 dB
    readings = []
    for peak in (3, 100, 3000):  # about -86, -56 and -26 dBFS: louder reads higher
        analyser.reset()
        analyser.push((rng.uniform(-1, 1, 960) * peak).astype(np.int16))
        readings.append([analyser.volume() for _ in range(10)][-1])
    assert readings[0] == 0.0 < readings[1] < readings[2] < loud
    with pytest.raises(ValueError):
        VolumeAnalyser(fft_size=48)


# -- outputs -----------------------------------------------------------------------------
async def test_speaker_devices_carry_the_call_and_sounds(
    make_device: DeviceFactory, tmp_path: Path
) -> None:
    bob = await _bob(make_device)
    default_speaker = MemorySink()
    alice = make_device("alice", speaker=default_speaker)
    spk = alice.plugins.memory.add_output("spk")
    assert isinstance(spk, MemorySink)
    alice.plugins.file.add_output("rec", tmp_path / "alice-hears.wav")
    audio = _helper(alice)
    with pytest.raises(InvalidArgumentError, match="at least one device"):
        await audio.speaker_devices.set([])
    with pytest.raises(InvalidArgumentError, match="Devices not found: x, y"):
        await audio.speaker_devices.set(["x", "memory:spk", "y"])
    await audio.speaker_devices.set(["memory:spk", "file:rec"])
    call, _ = await open_call(alice, bob)
    assert detect_tone(await recent(spk), BOB_HZ)  # the call moved to the selected device
    assert "outgoing" in alice.sounds.played

    before = default_speaker.samples_written
    await audio.speaker_devices.set("default")  # mid-call: the call follows
    assert detect_tone(await recent(default_speaker), BOB_HZ)
    assert default_speaker.samples_written > before
    call.disconnect()
    with wave.open(str(tmp_path / "alice-hears.wav")) as wav:  # closed when deselected
        recorded = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    assert detect_tone(recorded[-SAMPLE_RATE // 2 :], BOB_HZ)


async def test_output_collection_test_delete_and_ringtone(make_device: DeviceFactory) -> None:
    alice = make_device("alice")
    bob_ringer = MemorySink()
    bob = Listener(make_device("bob"), accept=False)
    ring = bob.device.plugins.memory.add_output("ring", bob_ringer)
    spk = alice.plugins.memory.add_output("spk")
    audio = _helper(alice)
    await audio.speaker_devices.set(["memory:spk"])
    await audio.speaker_devices.test()  # the outgoing sound, in real time
    assert isinstance(spk, MemorySink) and detect_tone(spk.pcm(), 1320, threshold=0.3)
    info = audio.available_output_devices["memory:spk"]
    assert audio.speaker_devices.delete(info) is True
    assert audio.speaker_devices.delete(info) is False
    assert [d.device_id for d in audio.speaker_devices.get()] == ["default"]

    await _helper(bob.device).ringtone_devices.set(["memory:ring"])
    await bob.device.register()
    call = await alice.connect(params={"To": "client:bob"})
    await bob.wait_call()
    await eventually(lambda: ring is bob_ringer and bob_ringer.samples_written > SAMPLE_RATE // 2)
    head = bob_ringer.pcm()[: SAMPLE_RATE // 2]
    assert detect_tone(head, 440, threshold=0.3) and detect_tone(head, 480, threshold=0.3)
    call.disconnect()


async def test_output_test_without_devices_is_invalid_state(make_device: DeviceFactory) -> None:
    audio = _helper(make_device("alice"))
    audio.speaker_devices._active.clear()  # what losing every device mid-test would leave
    with pytest.raises(InvalidStateError, match="No active output devices to test"):
        await audio.speaker_devices.test()


class ClockedSink(MemorySink):
    """A speaker that also notes which task (which mixer clock) wrote each frame."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: list[asyncio.Task[Any] | None] = []

    def write(self, pcm: Pcm) -> None:
        self.writers.append(asyncio.current_task())
        super().write(pcm)


def _frame_phasors(pcm: Pcm, freq: float) -> np.ndarray:
    """Per 20 ms frame, the amplitude and phase of ``freq``, phase measured against
    the absolute sample index: a contiguous tone keeps one phase in every frame."""
    frames = pcm[: len(pcm) // 960 * 960].reshape(-1, 960).astype(np.float64)
    n = np.arange(frames.size).reshape(frames.shape)
    result: np.ndarray = 2 / 960 * np.sum(frames * np.exp(-2j * np.pi * freq * n / SAMPLE_RATE), 1)
    return result


def _assert_plays_whole_and_in_order(pcm: Pcm, freq: float, frames: int, amplitude: float) -> None:
    phasors = _frame_phasors(pcm, freq)
    loud = [i for i, c in enumerate(phasors) if abs(c) > amplitude / 2]
    assert loud, f"{freq} Hz never played"
    assert loud == list(range(loud[0], loud[0] + frames)), (freq, loud)  # whole, no gaps
    drift = np.angle(phasors[loud] / phasors[loud[0]])
    assert np.max(np.abs(drift)) < 0.3, (freq, drift)  # each frame where it belongs


async def test_overlapping_sounds_and_the_call_are_mixed_not_interleaved(
    make_device: DeviceFactory, tmp_path: Path
) -> None:
    """Regression: all sounds shared one speaker route, hence one mixer input (a FIFO).

    A disconnect sound starting while the outgoing sound still played alternated
    with it frame by frame at half speed, with a phase jump at every boundary.
    Each playback now has its own input and the sink's single mixer clock sums
    them with the call: every sound comes out whole, contiguous and in order.
    """
    beep_hz, beep_frames, beep_amplitude = 2510.0, 10, 9000  # 50.2 cycles a frame
    t = np.arange(beep_frames * 960) / SAMPLE_RATE
    with FileSink(tmp_path / "beep.wav") as file:
        file.write((np.sin(2 * np.pi * beep_hz * t) * beep_amplitude).astype(np.int16))
    bob = await _bob(make_device)
    speaker = ClockedSink()
    alice = make_device("alice", speaker=speaker, sounds={"disconnect": str(tmp_path / "beep.wav")})
    call, _ = await open_call(alice, bob)
    await recent(speaker, 0.2)  # the call's remote audio flows through the speaker's mixer
    start = speaker.samples_written
    alice.sounds.play("outgoing")
    alice.sounds.play("disconnect")  # overlaps the outgoing sound, both over the call
    await eventually(lambda: speaker.samples_written - start >= SAMPLE_RATE // 2)
    heard = speaker.pcm()[start:]
    assert detect_tone(heard, BOB_HZ, threshold=0.05)  # the call kept playing under the sounds
    _assert_plays_whole_and_in_order(heard, beep_hz, beep_frames, beep_amplitude)
    _assert_plays_whole_and_in_order(heard, 1320.0, 8, 0.2 * 32767)  # outgoing's 2nd tone
    # one clock for the sink: a clock that stopped never writes again after another one
    runs = [w for i, w in enumerate(speaker.writers) if i == 0 or w is not speaker.writers[i - 1]]
    assert len(runs) == len(set(map(id, runs))), "two mixer clocks wrote to one sink"
    call.disconnect()


async def test_mixer_inputs_finish_after_their_audio_and_stale_inputs_stay_quiet() -> None:
    from softphone.core.output_mixer import OutputMixer

    sink = ClockedSink()
    mixer = OutputMixer(sink)
    sound, call = mixer.input(), mixer.input()
    sound.write(np.full(3 * 960, 100, np.int16))
    call.write(np.full(960, 7, np.int16))
    sound.finish()  # ended, three frames still queued: they play, then it detaches
    sound.write(np.full(960, 1000, np.int16))  # ignored once finished
    await eventually(lambda: sink.samples_written >= 3 * 960)
    assert [int(f[0]) for f in sink.pcm().reshape(-1, 960)] == [107, 100, 100]
    await eventually(lambda: not mixer.running, timeout=2)
    mixer.close()
    call.write(np.full(960, 7, np.int16))  # a stale input cannot restart a closed mixer
    assert not mixer.running and mixer.input().closed
    assert sink.samples_written == 3 * 960 and len(set(map(id, sink.writers))) == 1


# -- processors --------------------------------------------------------------------------
class ToneProcessor:
    """Replaces the stream with a tone while reading (draining) the original."""

    def __init__(self, freq: float) -> None:
        self.freq = freq
        self.created: list[AudioSource] = []
        self.destroyed: list[AudioSource] = []

    def create_processed_stream(self, stream: AudioSource) -> AudioSource:
        tone = ToneSource([self.freq])

        class Processed:
            def read(self, samples: int) -> Pcm:
                stream.read(samples)
                return tone.read(samples)

            def close(self) -> None:
                tone.close()

        processed = Processed()
        self.created.append(processed)
        return processed

    async def destroy_processed_stream(self, stream: AudioSource) -> None:
        self.destroyed.append(stream)


async def test_local_and_remote_processors(make_device: DeviceFactory) -> None:
    bob = await _bob(make_device)
    speaker = MemorySink()
    alice = make_device("alice", speaker=speaker)
    alice.plugins.tone.add_tone("a", [A_HZ])
    audio = _helper(alice)
    local, remote = ToneProcessor(2500.0), ToneProcessor(3100.0)
    with pytest.raises(InvalidArgumentError):
        await audio.add_processor(object())
    await audio.set_input_device("tone:a")
    call, _ = await open_call(alice, bob)
    assert detect_tone(await bob.recent(), A_HZ)

    await audio.add_processor(local)  # restarts the input in use through it
    with pytest.raises(NotSupportedError):
        await audio.add_processor(ToneProcessor(1.0))
    await asyncio.sleep(0.3)
    assert detect_tone(await bob.recent(), 2500.0)
    assert audio.local_processed_stream is local.created[-1]

    await audio.add_processor(remote, is_remote=True)
    assert detect_tone(await recent(speaker), 3100.0)
    assert audio.remote_processed_stream is remote.created[-1]

    with pytest.raises(InvalidArgumentError, match="not been previously added"):
        await audio.remove_processor(remote)  # installed on the other side
    await audio.remove_processor(local)
    await audio.remove_processor(remote, is_remote=True)
    await asyncio.sleep(0.3)
    assert detect_tone(await bob.recent(), A_HZ)
    assert detect_tone(await recent(speaker), BOB_HZ)
    assert local.destroyed == local.created[:1] and remote.destroyed
    call.disconnect()


# -- each built-in backend in a real call -------------------------------------------------
@pytest.mark.parametrize("backend", ["tone", "memory", "file", "null"])
async def test_each_virtual_backend_in_a_real_call(
    make_device: DeviceFactory, backend: str, tmp_path: Path
) -> None:
    bob = await _bob(make_device)
    alice = make_device("alice")
    plugins = alice.plugins
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (np.sin(2 * np.pi * A_HZ * t) * 9000).astype(np.int16)
    out_sink: Any
    if backend == "tone":
        plugins.tone.add_tone("in", [A_HZ])
        out_sink = plugins.memory.add_output("out")
        out_id = "memory:out"
    elif backend == "memory":
        plugins.memory.add_input("in", MemorySource(tone, loop=True))
        out_sink = plugins.memory.add_output("out")
        out_id = "memory:out"
    elif backend == "file":
        with FileSink(tmp_path / "in.wav") as sink:
            sink.write(tone)
        plugins.file.add_input("in", tmp_path / "in.wav", loop=True)
        plugins.file.add_output("out", tmp_path / "out.wav")
        out_sink, out_id = None, "file:out"
    else:
        out_sink, out_id = None, "null:discard"
    audio = _helper(alice)
    await audio.set_input_device("null:silence" if backend == "null" else f"{backend}:in")
    await audio.speaker_devices.set([out_id])
    call, _ = await open_call(alice, bob)
    heard = await bob.recent()
    if backend == "null":
        assert silent(heard)
        discard = audio._open_outputs["null:discard"][0]
        assert isinstance(discard, NullSink)
        await eventually(lambda: discard.samples_written > SAMPLE_RATE // 2)
    else:
        assert detect_tone(heard, A_HZ)
    if out_sink is not None:
        assert detect_tone(await recent(out_sink), BOB_HZ)
    call.disconnect()
    await eventually(lambda: alice.active_call is None)
    if backend == "file":
        await audio.speaker_devices.set("default")  # closes the WAV
        with wave.open(str(tmp_path / "out.wav")) as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        assert detect_tone(pcm[-SAMPLE_RATE // 2 :], BOB_HZ)

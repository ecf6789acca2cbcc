"""Tests for the audio backends: memory pipes, tones, null devices and files.

Everything runs on real signals and real files: WAVs written with the stdlib
``wave`` module and compressed files encoded by FFmpeg through PyAV, read back
through ``FileSource`` and measured with ``softphone.audio_backends.analysis``.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from softphone.audio_backends import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioSink,
    AudioSource,
    FileSink,
    FileSource,
    MemorySink,
    MemorySource,
    NullSink,
    NullSource,
    Pcm,
    PcmFifo,
    SilenceSource,
    ToneSource,
    as_pcm,
    dominant_frequency,
    goertzel_power,
    rms_dbfs,
)


def ramp(n: int, start: int = 0) -> Pcm:
    """Distinct, easily checked samples: ``start, start+1, ...`` wrapped into int16."""
    return ((np.arange(n) + start) % 30000).astype(np.int16)


def sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> Pcm:
    """A sine of ``freq`` Hz at ``rate``, as int16."""
    t = np.arange(round(seconds * rate)) / rate
    return np.round(np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16)


def read_all(source: FileSource, limit_s: float = 30.0) -> Pcm:
    """Read 20 ms frames until the source reports it has finished."""
    frames: list[Pcm] = []
    while not source.finished:
        frames.append(source.read(FRAME_SAMPLES))
        assert len(frames) * FRAME_SAMPLES < limit_s * SAMPLE_RATE, "source never finished"
    return np.concatenate(frames)


def last_sound(pcm: Pcm, floor: int = 50) -> int:
    """Index just past the last sample louder than ``floor``: the audible length."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > floor)
    return int(loud[-1]) + 1 if loud.size else 0


def write_wav(path: Path, pcm: Pcm, rate: int, channels: int = 1) -> None:
    """Write ``pcm`` (interleaved when ``channels`` > 1) as a 16-bit WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def encode_with_av(path: Path, codec: str, pcm: Pcm, rate: int) -> None:
    """Encode mono ``pcm`` at ``rate`` into ``path`` with an FFmpeg encoder."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        block = 1000  # deliberately not the codec's frame size: PyAV re-chunks
        for start in range(0, pcm.size, block):
            frame = av.AudioFrame.from_ndarray(
                pcm[start : start + block].reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# --- protocol conformance ------------------------------------------------------------


def test_backends_satisfy_the_contract(tmp_path: Path) -> None:
    wav = tmp_path / "x.wav"
    write_wav(wav, sine(440, 0.1, SAMPLE_RATE), SAMPLE_RATE)
    sources = [MemorySource(), ToneSource(), NullSource(), FileSource(wav)]
    sinks = [MemorySink(), NullSink(), FileSink(tmp_path / "out.wav")]
    for source in sources:
        assert isinstance(source, AudioSource)
        block = source.read(FRAME_SAMPLES)
        assert block.dtype == np.int16 and block.shape == (FRAME_SAMPLES,)
        source.close()
    for sink in sinks:
        assert isinstance(sink, AudioSink)
        sink.write(np.zeros(FRAME_SAMPLES, dtype=np.int16))
        sink.close()


# --- as_pcm / PcmFifo ----------------------------------------------------------------


def test_as_pcm_checks_shape_and_dtype() -> None:
    pcm = ramp(10)
    assert as_pcm(pcm) is pcm
    copied = as_pcm(pcm, copy=True)
    assert copied is not pcm and np.array_equal(copied, pcm)
    widened = as_pcm(np.array([40000, -40000, 5], dtype=np.int32))
    assert widened.dtype == np.int16 and widened.tolist() == [32767, -32768, 5]
    with pytest.raises(ValueError, match="1-D"):
        as_pcm(np.zeros((2, 10), dtype=np.int16))
    with pytest.raises(TypeError, match="int16"):
        as_pcm(np.zeros(10, dtype=np.float32))


def test_pcm_fifo_reads_across_chunks_and_pads() -> None:
    fifo = PcmFifo()
    fifo.push(ramp(5))
    fifo.push(ramp(0))
    fifo.push(ramp(7, start=5))
    assert len(fifo) == 12
    assert fifo.pop(3).tolist() == [0, 1, 2]
    assert fifo.pop(6).tolist() == [3, 4, 5, 6, 7, 8]
    assert fifo.pop(5).tolist() == [9, 10, 11, 0, 0]
    assert len(fifo) == 0


# --- memory ---------------------------------------------------------------------------


def test_memory_source_round_trip_then_pads_with_silence() -> None:
    audio = ramp(2500)
    source = MemorySource(audio)
    assert source.available == 2500
    out = np.concatenate([source.read(FRAME_SAMPLES) for _ in range(3)])
    assert out.size == 3 * FRAME_SAMPLES
    assert np.array_equal(out[:2500], audio)
    assert not out[2500:].any()
    assert source.available == 0
    assert not source.read(FRAME_SAMPLES).any()


def test_memory_source_copies_fed_audio_and_feeds_later() -> None:
    source = MemorySource()
    assert not source.read(100).any()
    buffer = ramp(100)
    source.feed(buffer)
    buffer[:] = 0  # the producer reusing its buffer must not change what is played
    assert np.array_equal(source.read(100), ramp(100))


def test_memory_source_fed_from_another_thread() -> None:
    chunks, chunk_size = 50, 137
    expected = ramp(chunks * chunk_size)

    def producer() -> None:
        for i in range(chunks):
            source.feed(expected[i * chunk_size : (i + 1) * chunk_size])
            time.sleep(0.001)

    source = MemorySource()
    thread = threading.Thread(target=producer)
    thread.start()
    received: list[Pcm] = []
    got = 0
    deadline = time.monotonic() + 10
    while got < expected.size and time.monotonic() < deadline:
        ready = min(source.available, expected.size - got)
        if ready:
            received.append(source.read(ready))
            got += ready
        else:
            time.sleep(0.0005)
    thread.join()
    assert np.array_equal(np.concatenate(received), expected)


def test_memory_source_loops_everything_fed() -> None:
    source = MemorySource(ramp(5), loop=True)
    assert source.read(12).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    source.feed(ramp(2, start=100))
    assert source.read(10).tolist() == [2, 3, 4, 100, 101, 0, 1, 2, 3, 4]


def test_memory_source_close_silences_and_ignores_feeds() -> None:
    source = MemorySource(ramp(100, start=1))
    source.close()
    assert source.closed
    source.feed(ramp(100, start=1))
    assert not source.read(200).any()
    with pytest.raises(ValueError):
        source.read(-1)


def test_memory_sink_collects_clears_and_counts() -> None:
    sink = MemorySink()
    assert sink.pcm().size == 0
    block = ramp(300)
    sink.write(block)
    block[:] = 0  # the sink must have kept a copy
    sink.write(ramp(200, start=300))
    assert sink.samples_written == 500
    assert np.array_equal(sink.pcm(), ramp(500))
    sink.clear()
    assert sink.samples_written == 0 and sink.pcm().size == 0
    sink.write(ramp(10))
    sink.close()
    sink.write(ramp(10))
    assert sink.closed and sink.samples_written == 10


def test_memory_sink_max_seconds_keeps_the_latest_audio() -> None:
    sink = MemorySink(max_seconds=0.05)  # 2400 samples
    audio = ramp(10_000)
    for start in range(0, audio.size, 700):
        sink.write(audio[start : start + 700])
    assert sink.samples_written == 10_000
    assert np.array_equal(sink.pcm(), audio[-2400:])
    with pytest.raises(ValueError):
        MemorySink(max_seconds=0)


# --- tone -----------------------------------------------------------------------------


@pytest.mark.parametrize("freq", [300.0, 440.0, 1000.0, 3400.0])
def test_tone_has_the_requested_frequency_and_level(freq: float) -> None:
    pcm = ToneSource((freq,), amplitude=0.5).read(SAMPLE_RATE)
    assert dominant_frequency(pcm) == pytest.approx(freq, abs=0.5)
    assert int(np.abs(pcm.astype(np.int32)).max()) == pytest.approx(0.5 * 32767, abs=2)
    assert rms_dbfs(pcm) == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.05)


def test_dual_tone_carries_both_frequencies_without_clipping() -> None:
    pcm = ToneSource((697.0, 1209.0), amplitude=1.0).read(SAMPLE_RATE // 10)
    assert goertzel_power(pcm, 697.0) == pytest.approx(0.5, abs=0.02)
    assert goertzel_power(pcm, 1209.0) == pytest.approx(0.5, abs=0.02)
    assert goertzel_power(pcm, 941.0) < 0.01
    assert int(np.abs(pcm.astype(np.int32)).max()) <= 32767


def test_tone_is_phase_continuous_across_reads() -> None:
    freqs, amplitude = (697.0, 1477.0), 0.8
    sizes = [1, 959, 7, 480, 3, 960, 1000, 17, 2000]
    source = ToneSource(freqs, amplitude)
    pieces = np.concatenate([source.read(n) for n in sizes]).astype(np.int32)
    whole = ToneSource(freqs, amplitude).read(sum(sizes)).astype(np.int32)
    assert int(np.abs(pieces - whole).max()) <= 1
    # No click anywhere: a step never exceeds the steepest slope of the mix (+ rounding).
    per_tone = amplitude * 32767 / len(freqs)
    max_slope = sum(per_tone * 2 * math.pi * f / SAMPLE_RATE for f in freqs)
    assert int(np.abs(np.diff(pieces)).max()) <= max_slope + 2


def test_timed_tone_fades_out_then_is_silent() -> None:
    source = ToneSource((1000.0,), amplitude=0.5, duration_s=0.1)
    out = np.concatenate([source.read(FRAME_SAMPLES) for _ in range(8)])
    assert source.finished
    assert last_sound(out, floor=0) == pytest.approx(4800, abs=2)
    assert rms_dbfs(out[:4000]) > -12
    steps = np.abs(np.diff(out[4000:4900].astype(np.int32)))
    assert int(steps.max()) <= 0.5 * 32767 * 2 * math.pi * 1000 / SAMPLE_RATE + 2


def test_tone_validation_and_close() -> None:
    with pytest.raises(ValueError):
        ToneSource(())
    with pytest.raises(ValueError):
        ToneSource((30_000.0,))
    with pytest.raises(ValueError):
        ToneSource(amplitude=1.5)
    with pytest.raises(ValueError):
        ToneSource(duration_s=-1)
    source = ToneSource()
    assert source.frequencies == (440.0,) and not source.finished
    source.close()
    assert source.finished and not source.read(FRAME_SAMPLES).any()


# --- null -----------------------------------------------------------------------------


def test_null_source_and_sink() -> None:
    source = NullSource()
    assert SilenceSource is NullSource
    assert not source.read(FRAME_SAMPLES).any()
    assert source.read(0).size == 0
    assert source.samples_read == FRAME_SAMPLES
    sink = NullSink()
    sink.write(ramp(FRAME_SAMPLES))
    sink.write(ramp(10))
    assert sink.samples_written == FRAME_SAMPLES + 10
    sink.close()
    source.close()


# --- file source ----------------------------------------------------------------------


def test_file_source_reads_8khz_mono_wav(tmp_path: Path) -> None:
    path = tmp_path / "tone8k.wav"
    write_wav(path, sine(1000, 0.5, 8000), 8000)
    source = FileSource(path)
    assert source.duration_s == pytest.approx(0.5, abs=0.01)
    out = read_all(source)
    assert last_sound(out) == pytest.approx(SAMPLE_RATE // 2, abs=FRAME_SAMPLES)
    assert dominant_frequency(out[: SAMPLE_RATE // 2]) == pytest.approx(1000, abs=1)
    assert rms_dbfs(out[2000:20000]) == pytest.approx(rms_dbfs(sine(1000, 0.5, 8000)), abs=0.5)
    assert not source.read(FRAME_SAMPLES).any()  # padded with zeros past the end


def test_file_source_downmixes_44k1_stereo_wav(tmp_path: Path) -> None:
    mono = sine(1000, 0.75, 44_100)
    stereo = np.stack([mono, mono], axis=1).reshape(-1)
    path = tmp_path / "tone44k.wav"
    write_wav(path, stereo, 44_100, channels=2)
    out = read_all(FileSource(path))
    assert last_sound(out) == pytest.approx(36_000, abs=FRAME_SAMPLES)
    assert dominant_frequency(out[:36_000]) == pytest.approx(1000, abs=1)
    # Identical channels downmix to the same level, not louder and not clipped.
    assert rms_dbfs(out[2000:30000]) == pytest.approx(rms_dbfs(mono), abs=0.5)


@pytest.mark.parametrize(
    ("name", "codec", "rate"),
    [
        ("tone.flac", "flac", 44_100),
        ("tone.mp3", "libmp3lame", 44_100),
        ("tone.ogg", "libopus", 48_000),
    ],
)
def test_file_source_decodes_compressed_formats(
    tmp_path: Path, name: str, codec: str, rate: int
) -> None:
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    path = tmp_path / name
    encode_with_av(path, codec, sine(1000, 1.0, rate), rate)
    out = read_all(FileSource(path))
    assert last_sound(out) == pytest.approx(SAMPLE_RATE, abs=FRAME_SAMPLES)
    assert dominant_frequency(out[:SAMPLE_RATE]) == pytest.approx(1000, abs=1)
    assert goertzel_power(out[4800:43200], 1000) > 0.95


def test_file_source_loops(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    write_wav(path, sine(1000, 0.1, 8000), 8000)  # 4800 samples at 48 kHz
    source = FileSource(path, loop=True)
    out = np.concatenate([source.read(FRAME_SAMPLES) for _ in range(20)])  # four passes
    assert not source.finished
    # Every 20 ms of the looped output is tone: no silent gaps at the seams.
    for frame in out.reshape(-1, FRAME_SAMPLES):
        assert rms_dbfs(frame) > -15
    assert dominant_frequency(out) == pytest.approx(1000, abs=1)
    source.close()
    source.close()
    assert source.finished and not source.read(FRAME_SAMPLES).any()


def test_file_source_round_trips_48k_audio_exactly(tmp_path: Path) -> None:
    audio = np.random.default_rng(1).integers(-20000, 20000, 10_000).astype(np.int16)
    path = tmp_path / "exact.wav"
    write_wav(path, audio, SAMPLE_RATE)
    with FileSource(path) as source:
        out = source.read(12_000)
    assert np.array_equal(out[:10_000], audio)
    assert not out[10_000:].any()


def test_file_source_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="audio file not found"):
        FileSource(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all\n" * 40)
    with pytest.raises(ValueError, match="not a readable media file"):
        FileSource(junk)
    video = tmp_path / "video.mkv"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        image = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="rgb24")
        for packet in stream.encode(image.reformat(format="yuv420p")):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(ValueError, match="no audio stream"):
        FileSource(video)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not on PATH")
def test_file_source_reads_synthesized_speech(tmp_path: Path) -> None:
    path = tmp_path / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(path), "hello, this is a softphone test"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    with wave.open(str(path), "rb") as w:
        seconds = w.getnframes() / w.getframerate()
    out = read_all(FileSource(path))
    assert out.size == pytest.approx(seconds * SAMPLE_RATE, abs=FRAME_SAMPLES)
    assert rms_dbfs(out) > -40
    assert 80 < dominant_frequency(out) < 4000


# --- file sink ------------------------------------------------------------------------


def test_file_sink_writes_a_wav_that_reads_back_identically(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    audio = rng.integers(-32768, 32767, 30_000, endpoint=True).astype(np.int16)
    path = tmp_path / "rec.wav"
    sink = FileSink(path)
    for start in range(0, audio.size, 777):
        sink.write(audio[start : start + 777])
    assert sink.samples_written == audio.size and not sink.closed
    sink.close()
    sink.close()  # idempotent
    sink.write(audio)  # dropped after close
    assert sink.closed
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
        assert w.getnframes() == audio.size
        back = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert np.array_equal(back, audio)
    with FileSource(path) as source:
        assert np.array_equal(source.read(audio.size), audio)


def test_file_sink_context_manager_finalises(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    with FileSink(path) as sink:
        sink.write(ToneSource((1000.0,)).read(SAMPLE_RATE // 4))
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == SAMPLE_RATE // 4
    assert dominant_frequency(read_all(FileSource(path))) == pytest.approx(1000, abs=1)

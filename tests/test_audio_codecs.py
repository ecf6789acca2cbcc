"""The codec layer under our receive path and the gateway's transcoder, without a network."""

from __future__ import annotations

import fractions
from typing import Any

import av
import numpy as np
import pytest

from softphone.audio_backends.analysis import align_offset, dominant_frequency, rms_dbfs
from softphone.audio_backends.base import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from softphone.media import g711
from softphone.media.audio_codecs import codec_key, make_decoder, make_encoder
from softphone.media.opus import (
    DEFAULT_FEC_BITRATE,
    OpusDecoder,
    OpusEncoder,
    OpusSettings,
    encoder_options,
    libopus_version,
    packet_samples,
)
from softphone.media.resample import Resampler
from softphone.media.sdp import CodecInfo
from softphone.media.transcoder import Transcoder

pytestmark = pytest.mark.pure

OPUS = CodecInfo(111, "opus", 48000, 2)
PCMU = CodecInfo(0, "PCMU", 8000)
PCMA = CodecInfo(8, "PCMA", 8000)
G722 = CodecInfo(9, "G722", 8000)


def tone(freq: float, seconds: float, amplitude: int = 8000, rate: int = SAMPLE_RATE) -> Pcm:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)


def frames(pcm: Pcm, size: int = FRAME_SAMPLES) -> list[Pcm]:
    return [pcm[i : i + size] for i in range(0, len(pcm) - size + 1, size)]


# ================================================================ G.711


@pytest.mark.parametrize(
    ("name", "encode", "decode"),
    [
        ("pcm_mulaw", g711.ulaw_encode, g711.ulaw_decode),
        ("pcm_alaw", g711.alaw_encode, g711.alaw_decode),
    ],
)
def test_g711_matches_ffmpeg(name: str, encode: Any, decode: Any) -> None:
    codes = bytes(range(256))
    context: Any = av.CodecContext.create(name, "r")
    context.format, context.layout, context.sample_rate = "s16", "mono", 8000
    reference = np.concatenate(
        [f.to_ndarray().reshape(-1) for f in context.decode(av.Packet(codes))]
    )
    assert np.array_equal(decode(codes), reference)  # decoding is bit-exact
    values = np.arange(-32768, 32768, dtype=np.int16)
    ours = decode(encode(values)).astype(np.int64)
    encoder: Any = av.CodecContext.create(name, "w")
    encoder.format, encoder.layout, encoder.sample_rate = "s16", "mono", 8000
    encoder.time_base = fractions.Fraction(1, 8000)
    frame = av.AudioFrame.from_ndarray(values.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts = 8000, 0
    theirs = decode(b"".join(bytes(p) for p in encoder.encode(frame))).astype(np.int64)
    # Nearest-level encoding: never worse than FFmpeg's (which truncates first).
    assert np.all(np.abs(ours - values) <= np.abs(theirs - values))
    assert g711.ulaw_encode(np.zeros(4, np.int16)) == bytes([g711.ULAW_SILENCE]) * 4


def test_g711_concealment_repeats_the_pitch_then_fades_and_joins_smoothly() -> None:
    concealer = g711.G711Concealer()
    voice = tone(200.0, 0.2, rate=8000)  # a 5 ms pitch period
    for block in frames(voice, 160):
        concealer.good(block)
    synthetic = np.concatenate([concealer.conceal(160) for _ in range(4)])
    assert concealer.concealing
    assert dominant_frequency(synthetic[:160], 8000) == pytest.approx(200.0, abs=15)
    assert rms_dbfs(synthetic[:80]) == pytest.approx(rms_dbfs(voice), abs=1.0)  # full level
    assert rms_dbfs(synthetic[-160:]) < rms_dbfs(voice) - 6  # fading out
    assert not np.any(np.concatenate([concealer.conceal(160) for _ in range(2)])[-80:])
    back = concealer.good(voice[:160])
    assert not concealer.concealing and len(back) == 160


# ================================================================ resampling


@pytest.mark.parametrize("rate", [8000, 16000])
def test_resampler_round_trip_keeps_the_voice_band_and_blocks_join(rate: int) -> None:
    signal = tone(1000.0, 1.0) + tone(3000.0, 1.0, 4000)
    down, up = Resampler(SAMPLE_RATE, rate), Resampler(rate, SAMPLE_RATE)
    low = np.concatenate([down.process(b) for b in frames(signal)])
    assert len(low) == len(signal) * rate // SAMPLE_RATE
    back = np.concatenate([up.process(b) for b in frames(low, rate // 50)])
    delay = align_offset(signal, back, max_lag_s=0.01)
    assert 0 < delay < SAMPLE_RATE * 0.005  # under 5 ms for the round trip
    error = back[delay + 4800 :].astype(float) - signal[4800 : len(back) - delay].astype(float)
    assert rms_dbfs(np.clip(error, -32768, 32767).astype(np.int16)) < rms_dbfs(signal) - 30
    with pytest.raises(ValueError):
        Resampler(48000, 44100)


def test_downsampling_rejects_what_would_alias() -> None:
    down = Resampler(SAMPLE_RATE, 8000)
    aliased = np.concatenate([down.process(b) for b in frames(tone(6000.0, 0.5))])
    assert rms_dbfs(aliased[800:]) < rms_dbfs(tone(6000.0, 0.5)) - 50


# ================================================================ Opus


def test_opus_decoder_conceals_and_recovers_from_fec() -> None:
    assert libopus_version().startswith("libopus")
    encoder = OpusEncoder(OpusSettings(fec=True))
    # Noise codes in SILK/hybrid mode, the one with FEC (a pure tone is CELT-only).
    noise = (np.random.default_rng(1).standard_normal(SAMPLE_RATE) * 3000).astype(np.int16)
    packets = [p for block in frames(noise) for p in encoder.encode(block)]
    assert len(packets) == 50 and packet_samples(packets[10]) == FRAME_SAMPLES
    assert OpusDecoder.has_fec(packets[21])
    decoder = OpusDecoder()
    for packet in packets[:20]:
        decoder.decode(packet)
    recovered = decoder.recover(packets[21], FRAME_SAMPLES)  # packet 20 "lost"
    assert len(recovered) == FRAME_SAMPLES and rms_dbfs(recovered) > -30
    concealed = decoder.conceal(FRAME_SAMPLES)
    assert len(concealed) == FRAME_SAMPLES
    assert encoder_options(OpusSettings(fec=True, dtx=True))["fec"] == "1"
    assert OpusEncoder(OpusSettings(fec=True))._context.bit_rate == DEFAULT_FEC_BITRATE


@pytest.mark.parametrize("codec", [OPUS, PCMU, PCMA, G722])
def test_every_codec_round_trips_a_tone_at_48khz(codec: CodecInfo) -> None:
    encoder, decoder = make_encoder(codec), make_decoder(codec)
    out = []
    for block in frames(tone(700.0, 0.6)):
        for payload in encoder.encode(block):
            assert decoder.duration(payload) == codec.clock_rate // 50
            out.append(decoder.decode(payload))
    audio = np.concatenate(out)
    assert dominant_frequency(audio[4800:]) == pytest.approx(700.0, abs=10)
    assert len(decoder.conceal(codec.clock_rate // 50)) == FRAME_SAMPLES
    assert codec_key(codec) == (codec.name.lower(), codec.clock_rate)
    with pytest.raises(ValueError):
        make_decoder(CodecInfo(18, "G729", 8000))


# ================================================================ transcoding


def test_transcoder_maps_timestamps_and_keeps_gaps() -> None:
    source = make_encoder(OPUS, OpusSettings(fec=True))
    noise = (np.random.default_rng(2).standard_normal(SAMPLE_RATE) * 2000).astype(np.int16)
    signal = tone(500.0, 0.4, 12000) + noise[: int(0.4 * SAMPLE_RATE)]
    payloads = [p for block in frames(signal) for p in source.encode(block)]
    transcoder = Transcoder(OPUS, PCMU)
    out: list[tuple[int, bytes]] = []
    base = 0xFFFFFF00  # wraps inside the stream
    for index, payload in enumerate(payloads):
        if index in (5, 9, 10):
            continue  # lost upstream
        out += transcoder.feed((base + index * 960) % (1 << 32), payload)
    stamps = [ts for ts, _ in out]
    # One PCMU packet per Opus packet, 8 kHz timestamps; the single loss (5) came back
    # from FEC, the double loss (9, 10) stays a gap for the far end to conceal.
    assert transcoder.frames_recovered == 1
    assert stamps == [i * 160 for i in range(20) if i not in (9, 10)]
    assert all(len(payload) == 160 for _, payload in out)
    pcm = np.concatenate([g711.ulaw_decode(p) for _, p in out])
    assert dominant_frequency(pcm[800:], 8000) == pytest.approx(500.0, abs=15)


def test_transcoder_pcmu_to_opus() -> None:
    source = make_encoder(PCMU)
    transcoder = Transcoder(PCMU, OPUS)
    out = [
        pair
        for index, block in enumerate(frames(tone(400.0, 0.3)))
        for payload in source.encode(block)
        for pair in transcoder.feed(1000 + index * 160, payload)
    ]
    assert [ts for ts, _ in out] == [i * 960 for i in range(15)]
    assert transcoder.packets_in == transcoder.packets_out == 15

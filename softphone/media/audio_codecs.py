"""Audio codecs behind one 48 kHz interface: decode, conceal, recover, encode.

The receive path, the gateway's transcoder and the sender's encoder factory all
work on the backend contract (48 kHz mono int16, 20 ms frames) and on RTP
payloads; this module hides each codec's rate, framing and concealment:

=========  ==========  ================================  =====================
codec      RTP clock   decode / encode                   concealment
=========  ==========  ================================  =====================
opus       48000       libopus (ctypes) / FFmpeg libopus  libopus PLC, in-band FEC
PCMU/PCMA  8000        numpy tables + 8 kHz resampler     pitch repetition
G722       8000 (*)    FFmpeg g722 + 16 kHz resampler     pitch repetition
=========  ==========  ================================  =====================

(*) G.722 samples at 16 kHz but its RTP clock runs at 8000 (RFC 3551 §4.5.2).
"""

from __future__ import annotations

import fractions
from typing import Any, Protocol

import av
import numpy as np

from softphone.audio_backends.base import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from softphone.media import g711
from softphone.media.opus import OpusDecoder, OpusEncoder, OpusSettings, packet_samples
from softphone.media.resample import Resampler
from softphone.media.sdp import CodecInfo

__all__ = [
    "SUPPORTED_CODECS",
    "AudioDecoder",
    "AudioEncoder",
    "codec_key",
    "make_decoder",
    "make_encoder",
]

SUPPORTED_CODECS = ("opus", "pcmu", "pcma", "g722")
"""Lower-case encoding names :func:`make_decoder` and :func:`make_encoder` accept."""


def codec_key(codec: CodecInfo) -> tuple[str, int]:
    """``(lower-case name, clock rate)``: two legs with equal keys can exchange payloads."""
    return codec.name.lower(), codec.clock_rate


class AudioDecoder(Protocol):
    """Turns one stream's RTP payloads into 48 kHz mono int16 PCM."""

    clock_rate: int
    """RTP clock rate of the codec."""

    def duration(self, payload: bytes) -> int | None:
        """How many RTP units ``payload`` covers; None when it cannot tell."""
        ...

    def decode(self, payload: bytes) -> Pcm:
        """Decode one payload."""
        ...

    def conceal(self, units: int) -> Pcm:
        """Synthesize audio for ``units`` RTP units of a missing payload."""
        ...

    def recover(self, next_payload: bytes, units: int) -> Pcm | None:
        """Rebuild the ``units`` before ``next_payload`` from its FEC; None without FEC."""
        ...

    def reset(self) -> None:
        """Start a new stream (forget decoder state)."""
        ...


class AudioEncoder(Protocol):
    """Turns 20 ms blocks of 48 kHz mono int16 PCM into RTP payloads."""

    clock_rate: int
    frame_units: int
    """RTP units of one 20 ms frame."""

    def encode(self, pcm: Pcm) -> list[bytes]:
        """Encode 960 samples; returns the payloads produced (normally one)."""
        ...


# --------------------------------------------------------------------------- Opus


class _OpusAudioDecoder:
    clock_rate = SAMPLE_RATE

    def __init__(self) -> None:
        self._decoder = OpusDecoder()

    def duration(self, payload: bytes) -> int | None:
        return packet_samples(payload)

    def decode(self, payload: bytes) -> Pcm:
        return self._decoder.decode(payload)

    def conceal(self, units: int) -> Pcm:
        return self._decoder.conceal(units)

    def recover(self, next_payload: bytes, units: int) -> Pcm | None:
        if not OpusDecoder.has_fec(next_payload):
            return None
        return self._decoder.recover(next_payload, units)

    def reset(self) -> None:
        self._decoder.close()
        self._decoder = OpusDecoder()


class _OpusAudioEncoder:
    clock_rate = SAMPLE_RATE
    frame_units = FRAME_SAMPLES

    def __init__(self, settings: OpusSettings) -> None:
        self._encoder = OpusEncoder(settings)

    def encode(self, pcm: Pcm) -> list[bytes]:
        return self._encoder.encode(pcm)


# --------------------------------------------------------------------------- narrowband


class _NarrowbandDecoder:
    """Shared by G.711 and G.722: decode at the codec rate, conceal there, upsample."""

    clock_rate = 8000

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._concealer = g711.G711Concealer(rate)
        self._upsampler = Resampler(rate, SAMPLE_RATE)

    def duration(self, payload: bytes) -> int | None:
        return len(payload) or None

    def _decode_native(self, payload: bytes) -> Pcm:
        raise NotImplementedError

    def decode(self, payload: bytes) -> Pcm:
        return self._upsampler.process(self._concealer.good(self._decode_native(payload)))

    def conceal(self, units: int) -> Pcm:
        samples = units * self._rate // self.clock_rate
        return self._upsampler.process(self._concealer.conceal(samples))

    def recover(self, next_payload: bytes, units: int) -> Pcm | None:
        return None

    def reset(self) -> None:
        self._concealer.reset()
        self._upsampler.reset()


class _G711Decoder(_NarrowbandDecoder):
    def __init__(self, alaw: bool) -> None:
        super().__init__(8000)
        self._table = g711.alaw_decode if alaw else g711.ulaw_decode

    def _decode_native(self, payload: bytes) -> Pcm:
        return self._table(payload)


class _G722Decoder(_NarrowbandDecoder):
    def __init__(self) -> None:
        super().__init__(16000)
        self._context = self._open()

    @staticmethod
    def _open() -> Any:
        context: Any = av.CodecContext.create("g722", "r")
        context.format = "s16"
        context.layout = "mono"
        context.sample_rate = 16000
        return context

    def _decode_native(self, payload: bytes) -> Pcm:
        frames = self._context.decode(av.Packet(payload))
        if not frames:
            return np.zeros(len(payload) * 2, dtype=np.int16)
        pcm: Pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)
        return pcm

    def reset(self) -> None:
        super().reset()
        self._context = self._open()


class _G711Encoder:
    clock_rate = 8000
    frame_units = 160

    def __init__(self, alaw: bool) -> None:
        self._downsampler = Resampler(SAMPLE_RATE, 8000)
        self._table = g711.alaw_encode if alaw else g711.ulaw_encode

    def encode(self, pcm: Pcm) -> list[bytes]:
        return [self._table(self._downsampler.process(pcm))]


class _G722Encoder:
    clock_rate = 8000
    frame_units = 160

    def __init__(self) -> None:
        self._downsampler = Resampler(SAMPLE_RATE, 16000)
        context: Any = av.CodecContext.create("g722", "w")
        context.format = "s16"
        context.layout = "mono"
        context.sample_rate = 16000
        context.time_base = fractions.Fraction(1, 16000)
        self._context = context
        self._pts = 0

    def encode(self, pcm: Pcm) -> list[bytes]:
        wide = self._downsampler.process(pcm)
        frame = av.AudioFrame.from_ndarray(wide.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 16000
        frame.pts = self._pts
        self._pts += len(wide)
        return [bytes(packet) for packet in self._context.encode(frame)]


# --------------------------------------------------------------------------- factories


def make_decoder(codec: CodecInfo) -> AudioDecoder:
    """A decoder for ``codec``; ValueError for codecs outside :data:`SUPPORTED_CODECS`."""
    name = codec.name.lower()
    if name == "opus":
        return _OpusAudioDecoder()
    if name in ("pcmu", "pcma"):
        return _G711Decoder(alaw=name == "pcma")
    if name == "g722":
        return _G722Decoder()
    raise ValueError(f"no decoder for {codec.name}/{codec.clock_rate}")


def make_encoder(codec: CodecInfo, opus: OpusSettings | None = None) -> AudioEncoder:
    """An encoder for ``codec`` (``opus`` settings apply to Opus only)."""
    name = codec.name.lower()
    if name == "opus":
        return _OpusAudioEncoder(opus or OpusSettings())
    if name in ("pcmu", "pcma"):
        return _G711Encoder(alaw=name == "pcma")
    if name == "g722":
        return _G722Encoder()
    raise ValueError(f"no encoder for {codec.name}/{codec.clock_rate}")

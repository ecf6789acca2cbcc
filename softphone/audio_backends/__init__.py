"""softphone.audio_backends layer: where call audio comes from and goes to.

Every backend speaks the contract in :mod:`~softphone.audio_backends.base`
(48 kHz mono int16 PCM; sources are pulled with ``read``, sinks pushed with
``write``). The backends here:

- ``memory``: ``MemorySource`` / ``MemorySink``, in-process pipes for apps and tests.
- ``tone``: ``ToneSource``, phase-continuous sines (single or DTMF-style dual tones).
- ``null``: ``NullSource`` (alias ``SilenceSource``) and ``NullSink``.
- ``file``: ``FileSource`` plays any format FFmpeg reads; ``FileSink`` records WAV.
- ``portaudio``: ``PortAudioSource`` / ``PortAudioSink``, real sound cards (optional
  extra ``portaudio``; imported on use, so a missing library never breaks import).
- ``devices``: ``MediaDeviceInfo``, what device enumeration reports.
- ``volume``: ``VolumeAnalyser``, the JS SDK's 0..1 volume meter.
- ``analysis``: pure measurements (level, frequency, tones, DTMF, resampling, delay).
"""

from softphone.audio_backends.analysis import (
    align_offset,
    detect_dtmf_digits,
    detect_tone,
    dominant_frequency,
    goertzel_power,
    resample,
    rms_dbfs,
)
from softphone.audio_backends.base import (
    FRAME_MS,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioSink,
    AudioSource,
    Pcm,
    silence,
)
from softphone.audio_backends.devices import AudioDeviceError, MediaDeviceInfo
from softphone.audio_backends.file import FileSink, FileSource
from softphone.audio_backends.memory import MemorySink, MemorySource, PcmFifo, as_pcm
from softphone.audio_backends.null import NullSink, NullSource, SilenceSource
from softphone.audio_backends.tone import ToneSource
from softphone.audio_backends.views import BorrowedSink, BorrowedSource
from softphone.audio_backends.volume import VolumeAnalyser

__all__ = [
    "FRAME_MS",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "AudioDeviceError",
    "AudioSink",
    "AudioSource",
    "BorrowedSink",
    "BorrowedSource",
    "FileSink",
    "FileSource",
    "MediaDeviceInfo",
    "MemorySink",
    "MemorySource",
    "NullSink",
    "NullSource",
    "Pcm",
    "PcmFifo",
    "SilenceSource",
    "ToneSource",
    "VolumeAnalyser",
    "align_offset",
    "as_pcm",
    "detect_dtmf_digits",
    "detect_tone",
    "dominant_frequency",
    "goertzel_power",
    "resample",
    "rms_dbfs",
    "silence",
]

"""WebRTC's audio processing module (AEC3, noise suppression, gain control) as a VoiceEngine.

The binding is livekit's (``livekit.rtc.AudioProcessingModule``, the ``voice``
extra: ``pip install 'softphone[voice]'``), a build of the same module
browsers run on ``getUserMedia`` streams. It works on 10 ms frames and
modifies them in place. Its first use starts livekit's native runtime (a few
threads, no network).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np

from softphone.audio_backends.base import SAMPLE_RATE, Pcm
from softphone.media.voice_processing import APM_FRAME_SAMPLES, EchoAwareGain, VoiceSettings

__all__ = ["INSTALL_HINT", "VoiceUnavailableError", "WebRtcApm", "load_rtc"]

INSTALL_HINT = "pip install 'softphone[voice]'"
"""What to run to get voice processing (the livekit binding of WebRTC's APM)."""

_FRAME_BYTES = APM_FRAME_SAMPLES * 2
_lock = threading.Lock()


class VoiceUnavailableError(RuntimeError):
    """The binding of WebRTC's audio processing is not installed (or does not load here)."""


def load_rtc() -> Any:
    """``livekit.rtc``, or :class:`VoiceUnavailableError` naming what to install."""
    try:
        from livekit import rtc
    except ImportError as exc:
        raise VoiceUnavailableError(
            f"WebRTC audio processing is not installed ({exc}): {INSTALL_HINT}"
        ) from exc
    except OSError as exc:  # the native library is there but does not load
        raise VoiceUnavailableError(
            f"WebRTC audio processing does not load here ({exc}): {INSTALL_HINT}"
        ) from exc
    return rtc


class WebRtcApm:
    """A :class:`~softphone.media.voice_processing.VoiceEngine` over livekit's APM.

    ``settings`` picks the parts (fixed for the module's life: a change of
    settings builds a new engine). Raises :class:`VoiceUnavailableError`
    without the binding.

    With echo cancellation *and* gain control, the gain control runs in a
    second module behind an :class:`~softphone.media.voice_processing.EchoAwareGain`
    gate: it adapts only while the far end is quiet, and its last gain is
    applied while the far end plays. Inside one module it would raise the
    residual echo of far-end single talk towards speech level (on a real
    PulseAudio loop, one run: 48 dB of echo attenuation with the canceller
    alone, 21 dB with the ungated gain control added).
    """

    def __init__(self, settings: VoiceSettings) -> None:
        rtc = load_rtc()
        self.settings = settings
        self._rtc = rtc
        gated = settings.echo_cancellation and settings.auto_gain_control
        with _lock:  # livekit creates its native client lazily, once per process
            self._apm: Any = rtc.AudioProcessingModule(
                echo_cancellation=settings.echo_cancellation,
                noise_suppression=settings.noise_suppression,
                high_pass_filter=settings.high_pass_filter,
                auto_gain_control=settings.auto_gain_control and not gated,
            )
            self._agc: Any = rtc.AudioProcessingModule(auto_gain_control=True) if gated else None
        self.gate = EchoAwareGain() if gated else None

    def process(self, near: Pcm, far: Pcm, delay_ms: int) -> Pcm:
        """Feed ``far`` as the reverse stream, then process ``near`` (10 ms each)."""
        apm = self._apm
        if apm is None:
            return near
        if self.settings.echo_cancellation:
            apm.process_reverse_stream(self._frame(far))
            # Before every capture frame, as APM asks; AEC3 finds the delay itself and
            # only takes this as a hint, so a value it refuses is no reason to stop.
            with contextlib.suppress(RuntimeError):
                apm.set_stream_delay_ms(delay_ms)
        out = self._run(apm, near)
        gate, agc = self.gate, self._agc
        if gate is None or agc is None:
            return out
        if gate.far_active(far):
            return gate.apply(out)
        adjusted = self._run(agc, out)
        gate.learn(out, adjusted)
        return adjusted

    def _run(self, apm: Any, pcm: Pcm) -> Pcm:
        frame = self._frame(pcm)
        apm.process_stream(frame)
        out: Pcm = np.frombuffer(frame.data, dtype=np.int16).copy()
        return out

    def _frame(self, pcm: Pcm) -> Any:
        data = bytearray(np.ascontiguousarray(pcm, dtype=np.int16).tobytes())
        if len(data) != _FRAME_BYTES:
            raise ValueError(f"WebRTC APM frames are {APM_FRAME_SAMPLES} samples, got {len(pcm)}")
        return self._rtc.AudioFrame(data, SAMPLE_RATE, 1, APM_FRAME_SAMPLES)

    def close(self) -> None:
        """Release the native modules (their handles are dropped with the last reference)."""
        self._apm = self._agc = None

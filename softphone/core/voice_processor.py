"""The built-in local audio processor: WebRTC voice processing on the microphone.

Browsers run WebRTC's audio processing on every ``getUserMedia`` stream; the
JS SDK's users switch its parts with the ``echoCancellation``,
``noiseSuppression`` and ``autoGainControl`` constraints. :class:`VoiceProcessing`
does the same for ``device.audio``:

* it is a plugin (registered by the AudioHelper as
  :data:`VOICE_PROCESSING_PLUGIN`, ``trylast``) answering
  ``softphone_audio_processor(is_remote=False)``, first in the local chain,
  right after the microphone. An app's own processor plugin chains after it
  (and gets the processed microphone), or replaces it:
  ``device.plugins.set_blocked(VOICE_PROCESSING_PLUGIN)`` before the call;
* the far end is what the Device's output mixers actually play (the call and
  the sounds), through a tap on every mixer (:meth:`output_tap`);
* the settings of each input come from the constraints it was acquired with
  (real devices on by default, virtual inputs off) and change in place with
  ``device.audio.set_audio_constraints`` (:meth:`reconfigure`), mid-call too.

The engine is WebRTC's audio processing module through the ``voice`` extra.
Without it, an input that asks for processing (every real microphone by
default) logs one warning saying what to install, and is sent unprocessed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from softphone.audio_backends.base import AudioSource, Pcm
from softphone.core.output_mixer import PlayTap
from softphone.media.voice_processing import (
    CaptureProcessor,
    FarEnd,
    VoiceEngine,
    VoiceSettings,
    position,
    voice_settings,
)
from softphone.media.webrtc_apm import INSTALL_HINT, VoiceUnavailableError, WebRtcApm
from softphone.plugins.markers import hookimpl
from softphone.plugins.types import AudioProcessor, CaptureTiming, capture_delay_s

__all__ = ["VOICE_PROCESSING_PLUGIN", "VoiceProcessedStream", "VoiceProcessing"]

log = logging.getLogger("softphone.audio.voice")

VOICE_PROCESSING_PLUGIN = "softphone.voice_processing"
"""The plugin name of the built-in processor: block it to replace it with your own."""

EngineFactory = Callable[[VoiceSettings], VoiceEngine]
AudioConstraints = Mapping[str, Any] | bool | None

_warned_unavailable = False


class VoiceProcessingWarning(UserWarning):
    """Voice processing was asked for and cannot run (the message says what to install)."""


def _loop_time() -> float:
    """The event loop's clock (the output mixers' clock), or the same monotonic clock."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


def _warn_unavailable(error: VoiceUnavailableError, settings: VoiceSettings) -> None:
    """One warning per process: processing was asked for and cannot run."""
    global _warned_unavailable
    if _warned_unavailable:
        log.debug("voice processing unavailable: %s", error)
        return
    _warned_unavailable = True
    parts = [
        name
        for name, on in (
            ("echo cancellation", settings.echo_cancellation),
            ("noise suppression", settings.noise_suppression),
            ("automatic gain control", settings.auto_gain_control),
        )
        if on
    ]
    message = (
        f"{', '.join(parts).capitalize()} requested for the microphone, but WebRTC audio "
        f"processing is not available ({error.__cause__ or error}). Install it with: "
        f"{INSTALL_HINT}. Until then the microphone is sent unprocessed, and the far end "
        "may hear its own voice back from your speakers."
    )
    log.warning(message)
    # Also a Python warning: shown whatever the logging setup, whose default level (as
    # JS logLevel "error") hides the log line.
    warnings.warn(message, VoiceProcessingWarning, stacklevel=2)


class VoiceProcessedStream:
    """One input through WebRTC voice processing (an ``AudioSource``).

    Reads ``source``, places the block at the time it was captured and runs it
    with the far-end reference through the engine for ``settings``; with
    every part off it passes through. :meth:`apply` switches settings between
    two reads (a new engine: the canceller re-converges within about a second).
    """

    def __init__(self, owner: VoiceProcessing, source: AudioSource) -> None:
        self._owner = owner
        self.source = source
        self.real_device = isinstance(source, CaptureTiming)
        """Whether ``source`` is capture hardware (processing on by default)."""
        self.settings = VoiceSettings()
        """The settings asked for (``active`` says whether they actually run)."""
        self._processor = CaptureProcessor(owner.far_end)
        self._closed = False

    @property
    def active(self) -> bool:
        """Whether an engine is processing this input now."""
        return self._processor.engine is not None

    @property
    def frames_processed(self) -> int:
        """10 ms frames the engine has processed."""
        return self._processor.frames_processed

    @property
    def lead_ms(self) -> int:
        """How far the reference leads the capture it is paired with (see voice_processing)."""
        return self._processor.lead_ms

    def apply(self, settings: VoiceSettings) -> None:
        """Process with ``settings`` from the next read on."""
        if settings == self.settings and self.active == settings.enabled:
            return
        self.settings = settings
        wanted = settings.enabled and not self._closed
        self._processor.set_engine(self._owner.make_engine(settings) if wanted else None)

    def read(self, samples: int) -> Pcm:
        """The next ``samples`` of the input, processed."""
        delay = capture_delay_s(self.source)
        now = self._owner.clock()
        pcm = np.asarray(self.source.read(samples), dtype=np.int16)
        try:
            return self._processor.process(pcm, position(now - delay))
        except Exception:
            log.exception("voice processing failed; the microphone is sent unprocessed from now")
            self._processor.set_engine(None)
            return pcm

    def close(self) -> None:
        """Release the engine (the input itself belongs to whoever acquired it)."""
        self._closed = True
        self._processor.close()


class VoiceProcessing:
    """The built-in local ``AudioProcessor`` and plugin: see the module doc.

    ``engine_factory`` builds an engine for some settings (WebRTC's APM by
    default; raises :class:`VoiceUnavailableError` without the binding);
    ``clock`` is the loop time the output mixers use.
    """

    def __init__(
        self,
        *,
        engine_factory: EngineFactory | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.far_end = FarEnd()
        """What the outputs play, by the time it is heard: the echo reference. A
        replacement processor can read it too."""
        self.clock = clock or _loop_time
        self._engine_factory: EngineFactory = engine_factory or WebRtcApm
        self._constraints: weakref.WeakKeyDictionary[Any, AudioConstraints] = (
            weakref.WeakKeyDictionary()
        )
        self._streams: weakref.WeakSet[VoiceProcessedStream] = weakref.WeakSet()

    # -- the plugin ----------------------------------------------------------------------
    @hookimpl(trylast=True)
    def softphone_audio_processor(self, is_remote: bool) -> AudioProcessor | None:
        """The microphone's processor (never the remote audio's)."""
        return None if is_remote else self

    # -- the AudioProcessor --------------------------------------------------------------
    def create_processed_stream(self, stream: AudioSource) -> VoiceProcessedStream:
        """``stream`` through voice processing, with the settings of its constraints."""
        processed = VoiceProcessedStream(self, stream)
        processed.apply(self.settings_for(stream))
        self._streams.add(processed)
        return processed

    def destroy_processed_stream(self, stream: AudioSource) -> None:
        """Release what :meth:`create_processed_stream` made for ``stream``."""
        if isinstance(stream, VoiceProcessedStream):
            stream.close()
            self._streams.discard(stream)

    # -- settings ------------------------------------------------------------------------
    def bind(self, source: AudioSource, audio: AudioConstraints) -> None:
        """``source`` was acquired with the JS audio constraints ``audio``."""
        try:
            self._constraints[source] = audio
        except TypeError:  # not weak-referenceable: settings from its kind alone
            log.debug("cannot remember the constraints of %r", source)

    def settings_for(self, source: AudioSource) -> VoiceSettings:
        """The settings for ``source``: its constraints, else the default of its kind."""
        try:
            audio = self._constraints.get(source)
        except TypeError:
            audio = None
        return voice_settings(audio, real_device=isinstance(source, CaptureTiming))

    def reconfigure(self, audio: AudioConstraints) -> None:
        """Apply the audio constraints ``audio`` to every input in use now (mid-call too)."""
        for stream in list(self._streams):
            self.bind(stream.source, audio)
            stream.apply(voice_settings(audio, real_device=stream.real_device))

    @property
    def streams(self) -> list[VoiceProcessedStream]:
        """The inputs being processed now."""
        return list(self._streams)

    def make_engine(self, settings: VoiceSettings) -> VoiceEngine | None:
        """An engine for ``settings``, or None (one warning) without the binding."""
        try:
            return self._engine_factory(settings)
        except VoiceUnavailableError as error:
            _warn_unavailable(error, settings)
            return None

    # -- the far end ---------------------------------------------------------------------
    def output_tap(self) -> PlayTap:
        """A tap for one output mixer: what it plays joins the far-end reference.

        The tap holds its track; the track leaves the reference with the mixer.
        """
        track = self.far_end.track()

        def tap(frame: Pcm, heard_at: float) -> None:
            track.push(frame, position(heard_at), position(self.clock()))

        return tap

    def close(self) -> None:
        """Release every engine (the Device is going away)."""
        for stream in list(self._streams):
            stream.close()
        self._streams.clear()

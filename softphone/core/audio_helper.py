"""``device.audio``: the AudioHelper — sound flags, input selection and output sinks.

This is the core of the JS AudioHelper that calls need: which sounds play, where
sounds and remote audio go (``speaker`` and ``ringer`` sinks from the Device
options), and what a new call captures (``file_input_stream``, a
``get_user_media`` override, or silence when nothing is configured).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from softphone.audio_backends.base import AudioSink, AudioSource
from softphone.audio_backends.null import NullSink, NullSource
from softphone.core.errors import UserMediaErrors
from softphone.core.events import EventEmitter
from softphone.core.output_mixer import MixerInput, OutputMixer

if TYPE_CHECKING:
    from softphone.core.device import Device

log = logging.getLogger("softphone.audio")


class AudioHelper(EventEmitter):
    """Sound flags, the input used by new calls, and the output sinks."""

    def __init__(self, device: Device) -> None:
        super().__init__()
        self._device = device
        self._flags = {"incoming": True, "outgoing": True, "disconnect": True}
        self._input_change: asyncio.Future[None] | None = None
        self._null_sink = NullSink()
        self._mixers: dict[int, OutputMixer] = {}
        self._sound_inputs: dict[int, AudioSink] = {}

    # -- sound flags -------------------------------------------------------------------
    def _flag(self, name: str, enable: bool | None) -> bool:
        if enable is not None:
            self._flags[name] = bool(enable)
        return self._flags[name]

    def incoming(self, enable: bool | None = None) -> bool:
        """Get, or set with ``enable``, whether the ringtone plays."""
        return self._flag("incoming", enable)

    def outgoing(self, enable: bool | None = None) -> bool:
        """Get, or set with ``enable``, whether the outgoing sound plays on accept."""
        return self._flag("outgoing", enable)

    def disconnect(self, enable: bool | None = None) -> bool:
        """Get, or set with ``enable``, whether the disconnect sound plays."""
        return self._flag("disconnect", enable)

    # -- outputs -----------------------------------------------------------------------
    def _mixer(self, sink: AudioSink) -> OutputMixer:
        mixer = self._mixers.get(id(sink))
        if mixer is None or mixer.sink is not sink:
            mixer = OutputMixer(sink)
            self._mixers[id(sink)] = mixer
            self._sound_inputs[id(sink)] = mixer.input()
        return mixer

    def _sounds_input(self, sink: AudioSink | None) -> AudioSink:
        if sink is None:
            return self._null_sink
        self._mixer(sink)
        return self._sound_inputs[id(sink)]

    def speaker_sink(self) -> AudioSink:
        """Where sounds other than the ringtone go: the ``speaker`` option's mixer."""
        return self._sounds_input(self._device.options.speaker)

    def ringtone_sink(self) -> AudioSink:
        """Where the ringtone goes: the ``ringer`` option, else the speaker."""
        ringer = self._device.options.ringer
        return self._sounds_input(ringer) if ringer is not None else self.speaker_sink()

    def call_output(self) -> MixerInput | None:
        """A new speaker input for a call's remote audio (None without a speaker)."""
        speaker = self._device.options.speaker
        return self._mixer(speaker).input() if speaker is not None else None

    # -- input -------------------------------------------------------------------------
    async def wait_for_input_change(self) -> None:
        """Wait for an input-device change in flight (``connect()`` does this first)."""
        if self._input_change is not None:
            await self._input_change

    async def input_source(self, constraints: Mapping[str, Any] | None = None) -> AudioSource:
        """The source a new call captures from (JS getUserMedia step).

        Order: the ``file_input_stream`` option (a source or a path), the
        ``get_user_media`` override (sync or async, called with the constraints),
        else silence. Failures become ``AcquisitionFailedError`` (31402), or
        ``PermissionDeniedError`` (31401) for a ``PermissionError``.
        """
        options = self._device.options
        constraints = dict(constraints or options.rtc_constraints)
        if options.file_input_stream is not None:
            stream = options.file_input_stream
            if isinstance(stream, str):
                from softphone.audio_backends.file import FileSource

                return FileSource(stream)
            if isinstance(stream, AudioSource):
                return stream
            raise UserMediaErrors.AcquisitionFailedError("file_input_stream is not an AudioSource")
        if options.get_user_media is not None:
            try:
                result = options.get_user_media(constraints)
                if inspect.isawaitable(result):
                    result = await result
            except PermissionError as exc:
                raise UserMediaErrors.PermissionDeniedError(str(exc), exc) from exc
            except Exception as exc:
                raise UserMediaErrors.AcquisitionFailedError(str(exc), exc) from exc
            if not isinstance(result, AudioSource):
                raise UserMediaErrors.AcquisitionFailedError(
                    "get_user_media did not return an AudioSource"
                )
            return result
        log.info("no audio input configured: the call sends silence")
        return NullSource()

    def destroy(self) -> None:
        """Stop the output mixers and drop listeners (``device.destroy()``)."""
        for mixer in self._mixers.values():
            mixer.close()
        self._mixers.clear()
        self.remove_all_listeners()

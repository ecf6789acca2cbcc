"""The audio backends as plugins: PortAudio's sound cards and the virtual devices.

Each backend enumerates its devices and opens them by id through the hooks.
The virtual backends (file, tone, memory, null) hold devices the app (or a
test) declares, so they can be selected by id exactly like sound cards::

    device.plugins.tone.add_tone("beep", [1000.0])        # id "tone:beep"
    await device.audio.set_input_device("tone:beep")

Adding or removing a virtual device notifies the manager at once, so
``deviceChange`` fires without polling.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from softphone.audio_backends.base import AudioSink, AudioSource
from softphone.audio_backends.devices import (
    AUDIO_INPUT,
    AUDIO_OUTPUT,
    DeviceKind,
    MediaDeviceInfo,
)
from softphone.audio_backends.memory import MemorySink, MemorySource
from softphone.audio_backends.null import NullSink, NullSource
from softphone.audio_backends.views import BorrowedSink, BorrowedSource
from softphone.plugins.markers import hookimpl

__all__ = [
    "FileBackend",
    "MemoryBackend",
    "NullBackend",
    "PortAudioBackend",
    "ToneBackend",
    "VirtualBackend",
]

log = logging.getLogger("softphone.plugins.backends")

InputOpener = Callable[[Mapping[str, Any]], AudioSource]
OutputOpener = Callable[[], AudioSink]


@attrs.define
class _Entry:
    info: MediaDeviceInfo
    open_input: InputOpener | None = None
    open_output: OutputOpener | None = None


class VirtualBackend:
    """Devices declared at run time, each with a function that opens it.

    Ids are ``<backend>:<name>``; the group id is the backend name.
    ``on_change`` is called after every addition or removal.
    """

    def __init__(self, name: str, on_change: Callable[[], None] | None = None) -> None:
        self.name = name
        self.on_change = on_change
        self._devices: dict[tuple[DeviceKind, str], _Entry] = {}

    def device_id(self, name: str) -> str:
        """The id a device called ``name`` gets in this backend."""
        return f"{self.name}:{name}"

    def add_input_device(
        self, name: str, opener: InputOpener, label: str | None = None
    ) -> MediaDeviceInfo:
        """Declare input ``name``; ``opener(constraints)`` returns a new source per acquisition."""
        info = MediaDeviceInfo(self.device_id(name), AUDIO_INPUT, label or name, self.name)
        self._devices[(AUDIO_INPUT, info.device_id)] = _Entry(info, open_input=opener)
        self._changed()
        return info

    def add_output_device(
        self, name: str, opener: OutputOpener, label: str | None = None
    ) -> MediaDeviceInfo:
        """Declare output ``name``; ``opener()`` returns a new sink per acquisition."""
        info = MediaDeviceInfo(self.device_id(name), AUDIO_OUTPUT, label or name, self.name)
        self._devices[(AUDIO_OUTPUT, info.device_id)] = _Entry(info, open_output=opener)
        self._changed()
        return info

    def remove(self, device_id: str, kind: DeviceKind | None = None) -> bool:
        """Forget the device(s) with ``device_id`` (of ``kind``, or both); True if any was there."""
        kinds = (kind,) if kind else (AUDIO_INPUT, AUDIO_OUTPUT)
        removed = [self._devices.pop((k, device_id), None) for k in kinds]
        if any(removed):
            self._changed()
            return True
        return False

    def devices(self) -> list[MediaDeviceInfo]:
        """The declared devices, in declaration order."""
        return [entry.info for entry in self._devices.values()]

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    @hookimpl
    def softphone_enumerate_devices(self) -> list[MediaDeviceInfo]:
        """Declared devices."""
        return self.devices()

    @hookimpl
    def softphone_get_user_media(
        self, constraints: Mapping[str, Any], device_id: str | None
    ) -> AudioSource | None:
        """Open a declared input."""
        entry = self._devices.get((AUDIO_INPUT, device_id)) if device_id else None
        if entry is None or entry.open_input is None:
            return None
        return entry.open_input(constraints)

    @hookimpl
    def softphone_get_output_sink(self, device_id: str) -> AudioSink | None:
        """Open a declared output."""
        entry = self._devices.get((AUDIO_OUTPUT, device_id))
        if entry is None or entry.open_output is None:
            return None
        return entry.open_output()


class ToneBackend(VirtualBackend):
    """Inputs that play tones (``ToneSource``): known, measurable audio."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        super().__init__("tone", on_change)

    def add_tone(
        self,
        name: str,
        frequencies: Sequence[float],
        amplitude: float = 0.3,
        label: str | None = None,
    ) -> MediaDeviceInfo:
        """Declare input ``tone:<name>`` playing the sum of ``frequencies`` until closed."""
        from softphone.audio_backends.tone import ToneSource

        freqs = [float(f) for f in frequencies]
        ToneSource(freqs, amplitude)  # validate now, not at the first call
        text = label or " + ".join(f"{f:g} Hz" for f in freqs)
        return self.add_input_device(name, lambda _c: ToneSource(freqs, amplitude), text)


class MemoryBackend(VirtualBackend):
    """Inputs and outputs backed by in-process pipes the app feeds and reads."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        super().__init__("memory", on_change)

    def add_input(
        self, name: str, source: AudioSource | None = None, label: str | None = None
    ) -> AudioSource:
        """Declare input ``memory:<name>`` reading from ``source`` (a new ``MemorySource``
        by default); returns it. Acquisitions borrow it: calls never close it."""
        pipe: AudioSource = source if source is not None else MemorySource()
        self.add_input_device(name, lambda _c: BorrowedSource(pipe), label)
        return pipe

    def add_output(
        self, name: str, sink: AudioSink | None = None, label: str | None = None
    ) -> AudioSink:
        """Declare output ``memory:<name>`` writing to ``sink`` (a new ``MemorySink`` by
        default); returns it. Acquisitions borrow it."""
        target: AudioSink = sink if sink is not None else MemorySink()
        self.add_output_device(name, lambda: BorrowedSink(target), label)
        return target


class FileBackend(VirtualBackend):
    """Inputs that play audio files (any format av reads) and outputs that record WAV."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        super().__init__("file", on_change)

    def add_input(
        self, name: str, path: str | Path, label: str | None = None, loop: bool = False
    ) -> MediaDeviceInfo:
        """Declare input ``file:<name>``: each acquisition plays ``path`` from the start
        (over and over with ``loop``)."""
        from softphone.audio_backends.file import FileSource

        target = str(path)
        return self.add_input_device(
            name, lambda _c: FileSource(target, loop=loop), label or Path(target).name
        )

    def add_output(self, name: str, path: str | Path, label: str | None = None) -> MediaDeviceInfo:
        """Declare output ``file:<name>``: each acquisition (re)writes ``path`` as WAV."""
        from softphone.audio_backends.file import FileSink

        target = str(path)
        return self.add_output_device(name, lambda: FileSink(target), label or Path(target).name)


class NullBackend(VirtualBackend):
    """``null``: an input of silence and an output that discards (both always present)."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        super().__init__("null", on_change)
        self.add_input_device("silence", lambda _c: NullSource(), "Silence")
        self.add_output_device("discard", NullSink, "Discard")


class PortAudioBackend:
    """Sound cards through PortAudio (``sounddevice``), ids ``portaudio:...``.

    Enumerates nothing when the library or the devices are missing; opening
    then fails with ``AudioDeviceError`` naming what is missing.
    """

    @hookimpl
    def softphone_enumerate_devices(self) -> list[MediaDeviceInfo]:
        """PortAudio's devices (see :func:`softphone.audio_backends.portaudio.list_devices`)."""
        from softphone.audio_backends import portaudio

        return portaudio.list_devices()

    @hookimpl
    def softphone_get_user_media(self, device_id: str | None) -> AudioSource | None:
        """Open a PortAudio input."""
        from softphone.audio_backends import portaudio

        if not device_id or not device_id.startswith(portaudio.PREFIX):
            return None
        return portaudio.PortAudioSource(device_id)

    @hookimpl
    def softphone_get_output_sink(self, device_id: str) -> AudioSink | None:
        """Open a PortAudio output (with its playout buffer)."""
        from softphone.audio_backends import portaudio

        if not device_id.startswith(portaudio.PREFIX):
            return None
        return portaudio.PortAudioSink(device_id)

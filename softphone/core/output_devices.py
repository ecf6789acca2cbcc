"""``OutputDeviceCollection``: ``device.audio.speaker_devices`` and ``ringtone_devices``.

A set of selected output devices (JS ``OutputDeviceCollection``). The speaker
collection carries every sound except the ringtone and the active call's
audio; the ringtone collection carries the ringtone. Selecting devices opens
them through the plugins (``softphone_get_output_sink``); the ``default``
device is the Device's ``speaker`` option (for the ringtone: ``ringer``, else
``speaker``), owned by the app and never closed here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from softphone.audio_backends.base import FRAME_SAMPLES, AudioSink, Pcm
from softphone.audio_backends.devices import AUDIO_OUTPUT, MediaDeviceInfo
from softphone.core.errors import InvalidArgumentError, InvalidStateError, NotSupportedError
from softphone.plugins.default_devices import why_unlisted

if TYPE_CHECKING:
    from softphone.core.audio_streams import OutputRoute

__all__ = ["DEFAULT_OUTPUT", "OutputDeviceCollection", "OutputHost"]

DEFAULT_OUTPUT = MediaDeviceInfo("default", AUDIO_OUTPUT, "Default", "default")


class OutputHost(Protocol):
    """What a collection needs from ``device.audio``: devices, sinks, routes, sounds."""

    @property
    def is_output_selection_supported(self) -> bool:
        """Whether output devices can be chosen at all."""

    @property
    def available_output_devices(self) -> dict[str, MediaDeviceInfo]:
        """The output devices known now, by id."""

    async def refresh_devices(self) -> dict[str, MediaDeviceInfo]:
        """Enumerate again; the output devices by id."""

    async def open_output(self, device_id: str) -> AudioSink:
        """Open (or share) the sink of ``device_id``."""

    def release_output(self, device_id: str, sink: AudioSink) -> None:
        """Give back a sink from :meth:`open_output`."""

    def route(self, collection: OutputDeviceCollection) -> OutputRoute:
        """A route that follows ``collection``'s devices."""

    def sound_pcm(self, sound_url: str | None) -> Pcm:
        """Samples of a sound file, or of the outgoing sound when None."""


class OutputDeviceCollection:
    """The active devices of one output role; sinks are opened and closed as it changes."""

    def __init__(
        self, name: str, helper: OutputHost, default_sink: Callable[[], AudioSink | None]
    ) -> None:
        self.name = name
        self._helper = helper
        self._default_sink = default_sink
        self._active: dict[str, MediaDeviceInfo] = {"default": DEFAULT_OUTPUT}
        self._sinks: dict[str, AudioSink] = {}
        self.on_set: Callable[[str, list[str], Exception | None], None] | None = None
        """Told of each :meth:`set` (collection name, ids, the failure or None): the
        Device publishes ``audio/<name>-devices-set`` (or ``-set-failed``) to insights."""

    # -- JS API ------------------------------------------------------------------------
    def get(self) -> set[MediaDeviceInfo]:
        """The active devices."""
        return set(self._active.values())

    async def set(self, device_ids: str | Iterable[str]) -> None:
        """Make exactly ``device_ids`` active (a string or several).

        Rejects with ``NotSupportedError`` when output selection is unsupported,
        ``InvalidArgumentError`` for an empty list or unknown ids. Devices are
        opened before the switch, so a failure leaves the old selection in place.
        """
        ids = [device_ids] if isinstance(device_ids, str) else list(device_ids)
        try:
            await self._set(ids)
        except Exception as exc:
            self._tell(ids, exc)
            raise
        self._tell(ids, None)

    def _tell(self, ids: list[str], error: Exception | None) -> None:
        if self.on_set is not None:
            self.on_set(self.name, ids, error)

    async def _set(self, ids: list[str]) -> None:
        if not self._helper.is_output_selection_supported:
            raise NotSupportedError("This Browser does not support audio output selection")
        if not ids:
            raise InvalidArgumentError("Must specify at least one device to set")
        available = await self._helper.refresh_devices()
        missing = [i for i in ids if i not in available and i != "default"]
        if missing:
            reasons = "".join(dict.fromkeys(why_unlisted(i) for i in missing))
            raise InvalidArgumentError(f"Devices not found: {', '.join(missing)}{reasons}")
        opened: dict[str, AudioSink] = {}
        try:
            for device_id in ids:
                if device_id != "default" and device_id not in self._sinks:
                    opened[device_id] = await self._helper.open_output(device_id)
        except BaseException:
            for sink in opened.values():
                sink.close()
            raise
        self._sinks.update(opened)
        self._active = {i: available.get(i, DEFAULT_OUTPUT) for i in ids}
        self._close_unused()

    def delete(self, device: MediaDeviceInfo | str) -> bool:
        """Deactivate ``device``; True if it was active. An empty set falls back to
        ``default`` (or the first available output), as in JS."""
        device_id = device if isinstance(device, str) else device.device_id
        if device_id not in self._active:
            return False
        del self._active[device_id]
        if not self._active:
            self._fall_back()
        self._close_unused()
        return True

    async def test(self, sound_url: str | None = None) -> None:
        """Play ``sound_url`` (a file; default: the outgoing sound) on every active device.

        Rejects with ``InvalidStateError`` when no device is active. Resolves when
        the sound has played.
        """
        if not self._helper.is_output_selection_supported:
            raise NotSupportedError("This Browser does not support audio output selection")
        if not self._active:
            raise InvalidStateError("No active output devices to test")
        pcm = self._helper.sound_pcm(sound_url)
        route = self._helper.route(self)
        try:
            await _play_realtime(route.write, pcm)
        finally:
            route.close()

    # -- plumbing for the helper -------------------------------------------------------
    def sinks(self) -> list[AudioSink]:
        """The sink of each active device that has somewhere to play.

        The helper keeps one mixer per sink (not per device id or collection),
        so a sink reached by both collections still has a single clock.
        """
        out: list[AudioSink] = []
        for device_id in self._active:
            if device_id == "default":
                sink = self._default_sink()
                if sink is not None:
                    out.append(sink)
            elif device_id in self._sinks:
                out.append(self._sinks[device_id])
        return out

    def handle_lost(self, available: dict[str, MediaDeviceInfo]) -> list[MediaDeviceInfo]:
        """Drop active devices that disappeared; returns them (``lostActiveDevices``)."""
        lost = [
            info
            for device_id, info in self._active.items()
            if device_id != "default" and device_id not in available
        ]
        for info in lost:
            self.delete(info)
        return lost

    def _fall_back(self) -> None:
        available = self._helper.available_output_devices
        if "default" in available or not available:
            self._active = {"default": available.get("default", DEFAULT_OUTPUT)}
            return
        first = next(iter(available.values()))
        self._active = {first.device_id: first}
        try:
            task = asyncio.get_running_loop().create_task(self._open_fallback(first.device_id))
        except RuntimeError:  # no loop: the device opens with the next set()
            return
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _open_fallback(self, device_id: str) -> None:
        if device_id not in self._sinks:
            self._sinks[device_id] = await self._helper.open_output(device_id)

    def _close_unused(self) -> None:
        for device_id in [i for i in self._sinks if i not in self._active]:
            self._helper.release_output(device_id, self._sinks.pop(device_id))

    def close(self) -> None:
        """Close every opened sink (``device.destroy()``)."""
        for device_id, sink in list(self._sinks.items()):
            self._helper.release_output(device_id, sink)
        self._sinks.clear()


async def _play_realtime(write: Callable[[Pcm], None], pcm: Pcm) -> None:
    """Write ``pcm`` 20 ms at a time on the loop's clock, as a person would hear it."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, offset in enumerate(range(0, len(pcm), FRAME_SAMPLES)):
        chunk = pcm[offset : offset + FRAME_SAMPLES]
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), np.int16)])
        write(chunk)
        await asyncio.sleep(max(0.0, start + (index + 1) * 0.02 - loop.time()))

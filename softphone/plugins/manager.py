"""``SoftphonePluginManager``: one per Device, assembling every source of behaviour.

In call order (first asked first):

1. the DeviceOptions overrides (``get_user_media``, ``enumerate_devices``,
   ``rtc_peer_connection``), wrapped as plugins (:mod:`softphone.plugins.overrides`);
2. plugins the app registers with ``device.plugins.register(obj)``, latest first;
3. plugins from the ``softphone`` entry-point group (a module, an instance, or a
   class, which is instantiated per manager, with the manager as argument if
   its constructor takes one); ``SOFTPHONE_DISABLE_PLUGIN_AUTOLOAD=1`` skips them;
4. the built-ins: the audio backends (``null``, ``tone``, ``memory``, ``file``,
   ``portaudio``), the ``default`` devices and aiortc peer connections.

The manager also turns hook results into what the SDK needs: it awaits
awaitable answers, merges device lists, and raises a clear error when nobody
answers.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pluggy

from softphone.audio_backends.base import AudioSink, AudioSource
from softphone.audio_backends.devices import (
    AUDIO_INPUT,
    AUDIO_OUTPUT,
    AudioDeviceError,
    MediaDeviceInfo,
)
from softphone.plugins import hookspecs
from softphone.plugins.backends import (
    FileBackend,
    MemoryBackend,
    NullBackend,
    PortAudioBackend,
    ToneBackend,
)
from softphone.plugins.default_devices import DefaultDevices
from softphone.plugins.markers import ENTRY_POINT_GROUP, PROJECT_NAME
from softphone.plugins.overrides import (
    EnumerateDevicesOverride,
    GetUserMediaOverride,
    RtcPeerConnectionOverride,
)
from softphone.plugins.types import AudioProcessor, PeerConnectionLike

__all__ = ["AUTOLOAD_ENV", "SoftphonePluginManager", "device_id_from_constraints"]

log = logging.getLogger("softphone.plugins")

AUTOLOAD_ENV = "SOFTPHONE_DISABLE_PLUGIN_AUTOLOAD"
"""Set to a non-empty value to skip entry-point plugins (e.g. to bisect a broken one)."""


def device_id_from_constraints(constraints: Mapping[str, Any] | None) -> str | None:
    """The device id in JS getUserMedia constraints, None for "any/default".

    Accepts ``{"audio": {"deviceId": "x"}}``, ``{"deviceId": {"exact": "x"}}``,
    ``{"ideal": "x"}`` and lists (first entry), as browsers do.
    """
    audio = (constraints or {}).get("audio")
    if not isinstance(audio, Mapping):
        return None
    value = audio.get("deviceId", audio.get("device_id"))
    if isinstance(value, Mapping):
        value = value.get("exact", value.get("ideal"))
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def _as_device(item: object) -> MediaDeviceInfo | None:
    if isinstance(item, MediaDeviceInfo):
        return item
    if isinstance(item, Mapping) and item.get("kind") in (AUDIO_INPUT, AUDIO_OUTPUT):
        try:
            return MediaDeviceInfo.from_json(item)
        except ValueError:
            log.warning("ignoring malformed device %r", item)
    return None


def _merge(lists: Iterable[Iterable[Any]]) -> list[MediaDeviceInfo]:
    """Flatten, normalise and de-duplicate per (kind, id): the earliest answer wins."""
    seen: set[tuple[str, str]] = set()
    out: list[MediaDeviceInfo] = []
    for items in lists:
        for item in items or ():
            info = _as_device(item)
            if info is None or (info.kind, info.device_id) in seen:
                continue
            seen.add((info.kind, info.device_id))
            out.append(info)
    return out


async def _await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class SoftphonePluginManager(pluggy.PluginManager):
    """A pluggy manager with the softphone hook specs, built-ins and typed helpers.

    ``options`` returns the owner's current ``DeviceOptions`` (read at every
    hook call, so option updates apply at once); without it the overrides are
    inert. ``builtins=False`` gives an empty manager (tests, embedding).
    """

    def __init__(
        self,
        options: Callable[[], Any] | None = None,
        *,
        builtins: bool = True,
        entry_points: bool | None = None,
    ) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self._options_provider = options or (lambda: None)
        self._change_listeners: list[Callable[[], None]] = []
        notify = self.notify_device_change
        self.null = NullBackend(notify)
        self.tone = ToneBackend(notify)
        self.memory = MemoryBackend(notify)
        self.file = FileBackend(notify)
        self.portaudio = PortAudioBackend()
        if builtins:
            from softphone.plugins.webrtc import AiortcPeerConnections

            self.register(DefaultDevices(self._options_provider), name="softphone.default")
            self.register(AiortcPeerConnections(), name="softphone.aiortc")
            self.register(self.portaudio, name="softphone.portaudio")
            for backend in (self.null, self.file, self.memory, self.tone):
                self.register(backend, name=f"softphone.{backend.name}")
        if entry_points is None:
            entry_points = not os.environ.get(AUTOLOAD_ENV)
        if entry_points:
            self.load_entry_points()
        provider = self._options_provider
        self.register(GetUserMediaOverride(provider), name="softphone.override.get_user_media")
        self.register(
            EnumerateDevicesOverride(provider), name="softphone.override.enumerate_devices"
        )
        self.register(
            RtcPeerConnectionOverride(provider), name="softphone.override.rtc_peer_connection"
        )

    @property
    def options(self) -> Any:
        """The owner's current options (``DeviceOptions`` for a Device)."""
        return self._options_provider()

    # -- loading -----------------------------------------------------------------------
    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register every plugin advertised in entry-point ``group``; returns their names.

        A plugin that fails to import or register is logged and skipped: one
        broken package must not take every Device down with it.
        """
        loaded: list[str] = []
        for entry in importlib.metadata.entry_points(group=group):
            if self.has_plugin(entry.name) or self.is_blocked(entry.name):
                continue
            try:
                plugin: Any = entry.load()
                if inspect.isclass(plugin):
                    factory: Any = plugin
                    takes_manager = bool(inspect.signature(factory).parameters)
                    plugin = factory(self) if takes_manager else factory()
                self.register(plugin, name=entry.name)
            except Exception:
                log.exception("softphone plugin %r (%s) failed to load", entry.name, entry.value)
                continue
            log.info("loaded softphone plugin %r from %s", entry.name, entry.value)
            loaded.append(entry.name)
        return loaded

    # -- device lists ------------------------------------------------------------------
    async def enumerate_devices(self) -> list[MediaDeviceInfo]:
        """Every plugin's devices, merged (awaiting plugins that enumerate asynchronously)."""
        results = self.hook.softphone_enumerate_devices()
        return _merge([await _await(r) for r in results])

    def enumerate_devices_now(self) -> list[MediaDeviceInfo]:
        """The devices of plugins that answer synchronously (async answers are skipped)."""
        lists: list[Any] = []
        for result in self.hook.softphone_enumerate_devices():
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close is not None:
                    close()  # never awaited: say so to the coroutine, not to the log
                continue
            lists.append(result)
        return _merge(lists)

    def add_device_change_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` whenever a plugin reports a device change; returns a remover."""
        self._change_listeners.append(listener)

        def remove() -> None:
            if listener in self._change_listeners:
                self._change_listeners.remove(listener)

        return remove

    def notify_device_change(self) -> None:
        """For plugins: the device list changed (listeners re-enumerate)."""
        for listener in list(self._change_listeners):
            try:
                listener()
            except Exception:
                log.exception("device change listener failed")

    # -- media -------------------------------------------------------------------------
    async def get_user_media(
        self, constraints: Mapping[str, Any] | None = None, device_id: str | None = None
    ) -> AudioSource:
        """Open an input through the first plugin that answers.

        ``device_id`` defaults to the one in ``constraints``. Raises
        ``AudioDeviceError`` when no plugin provides that device, TypeError when
        the answer is not an ``AudioSource``, or whatever the plugin raised.
        """
        constraints = dict(constraints or {"audio": True})
        if device_id is None:
            device_id = device_id_from_constraints(constraints)
        result = await _await(
            self.hook.softphone_get_user_media(constraints=constraints, device_id=device_id)
        )
        if result is None:
            raise AudioDeviceError(f"no plugin provides the audio input {device_id!r}")
        if not isinstance(result, AudioSource):
            raise TypeError(f"get_user_media returned {type(result).__name__}, not an AudioSource")
        return result

    async def get_output_sink(self, device_id: str) -> AudioSink:
        """Open an output through the first plugin that answers (errors as above)."""
        result = await _await(self.hook.softphone_get_output_sink(device_id=device_id))
        if result is None:
            raise AudioDeviceError(f"no plugin provides the audio output {device_id!r}")
        if not isinstance(result, AudioSink):
            raise TypeError(f"get_output_sink returned {type(result).__name__}, not an AudioSink")
        return result

    def create_peer_connection(
        self, configuration: Mapping[str, Any], options: Any = None
    ) -> PeerConnectionLike:
        """A media adapter from the first plugin that answers (aiortc by default).

        ``options`` (codec preferences, bitrate) default to the owner's options.
        """
        result = self.hook.softphone_create_peer_connection(
            configuration=dict(configuration),
            options=self.options if options is None else options,
        )
        if result is None:
            raise RuntimeError("no plugin creates peer connections (built-ins not registered?)")
        return result  # type: ignore[no-any-return]

    def remote_audio_sinks(self, call: Any, remote: Any) -> list[AudioSink]:
        """The sinks plugins want a call's remote audio in (``softphone_remote_audio``)."""
        return [
            s for s in self.hook.softphone_remote_audio(call=call, remote=remote) if s is not None
        ]

    def audio_processors(self, is_remote: bool) -> list[AudioProcessor]:
        """Processors for one side, in chain order (``softphone_audio_processor``)."""
        found = self.hook.softphone_audio_processor(is_remote=is_remote)
        return list(reversed([p for p in found if p is not None]))

    async def aclose(self) -> None:
        """Run every ``softphone_close`` (each one, even if another fails)."""
        for impl in self.hook.softphone_close.get_hookimpls():
            try:
                await _await(impl.function())
            except Exception:
                log.exception("plugin %r failed to close", impl.plugin_name)

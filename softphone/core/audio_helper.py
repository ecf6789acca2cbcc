"""``device.audio``: the AudioHelper — devices, input selection, outputs, processors, meters.

The JS AudioHelper (device-and-call-api.md §3-4) over the plugin manager:

* device lists (``available_input_devices`` / ``available_output_devices``) come
  from every plugin's ``softphone_enumerate_devices`` and are refreshed on
  plugin notifications and by polling while someone listens to ``deviceChange``;
* the input of new calls is, in order: the ``file_input_stream`` option, the
  device selected with :meth:`set_input_device`, else ``softphone_get_user_media``
  for the default input (the ``get_user_media`` option is one such plugin);
  switching the device mid-call swaps the active call's source in place;
* outputs: ``speaker_devices`` and ``ringtone_devices`` collections; the call's
  remote audio and the sounds are mixed per device;
* processors (``add_processor``) and the ``inputVolume`` meter (JS scale);
* voice processing (:mod:`softphone.core.voice_processor`): WebRTC's echo
  cancellation, noise suppression and gain control on the microphone, first in
  the local chain, switched by the ``echoCancellation``, ``noiseSuppression``
  and ``autoGainControl`` constraints, with what the output mixers play as
  the echo reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from softphone.audio_backends.base import AudioSink, AudioSource, Pcm
from softphone.audio_backends.devices import AUDIO_INPUT, MediaDeviceInfo
from softphone.audio_backends.volume import VolumeAnalyser
from softphone.core.audio_streams import CallOutput, OutputRoute, ProcessedInput
from softphone.core.errors import (
    InvalidArgumentError,
    InvalidStateError,
    NotSupportedError,
    TwilioError,
    UserMediaErrors,
)
from softphone.core.events import EventEmitter, Listener
from softphone.core.output_devices import OutputDeviceCollection
from softphone.core.output_mixer import OutputMixer
from softphone.core.voice_processor import VOICE_PROCESSING_PLUGIN, VoiceProcessing
from softphone.plugins.default_devices import default_speaker, wants_real_devices, why_unlisted
from softphone.plugins.markers import hookimpl
from softphone.plugins.types import AudioProcessor, is_remote_source

if TYPE_CHECKING:
    from softphone.core.options import DeviceOptions
    from softphone.core.remote_audio import RemoteAudio
    from softphone.media.peer_connection import PeerConnection
    from softphone.plugins.manager import SoftphonePluginManager


class HelperCall(Protocol):
    """A call as ``device.audio`` sees it: its media, local input and remote audio."""

    @property
    def peer_connection(self) -> PeerConnection | None:
        """The call's media adapter, once media setup started."""

    def get_local_stream(self) -> AudioSource | None:
        """The source feeding the call."""

    def get_remote_stream(self) -> RemoteAudio | None:
        """The call's remote-audio fan-out."""


class HelperSounds(Protocol):
    """The Device's sounds, for the samples of the outgoing sound (speaker tests)."""

    def pcm(self, name: str) -> Pcm:
        """The samples of sound ``name``."""


class AudioHost(Protocol):
    """What ``device.audio`` needs from its Device."""

    @property
    def plugins(self) -> SoftphonePluginManager:
        """The Device's plugin manager (inputs, outputs, processors)."""

    @property
    def options(self) -> DeviceOptions:
        """The Device options in force."""

    @property
    def active_call(self) -> HelperCall | None:
        """The call in progress, if any."""

    @property
    def sounds(self) -> HelperSounds:
        """The Device's sounds."""


log = logging.getLogger("softphone.audio")

DEVICE_POLL_INTERVAL_S = 1.0
"""How often device lists are re-enumerated while ``deviceChange`` has listeners."""
VOLUME_POLL_INTERVAL_S = 0.02
"""Cadence of ``inputVolume`` when no call reads the selected input (one frame)."""
_READER_GRACE_S = 0.1


class _AppProcessor:
    """The processor the app added with ``add_processor``, as a plugin like any other."""

    def __init__(self, processor: AudioProcessor, is_remote: bool) -> None:
        self.processor = processor
        self.is_remote = is_remote

    @hookimpl(trylast=True)
    def softphone_audio_processor(self, is_remote: bool) -> AudioProcessor | None:
        return self.processor if is_remote == self.is_remote else None


def _check_processor(processor: object) -> AudioProcessor:
    if processor is None:
        raise InvalidArgumentError("Missing AudioProcessor argument.")
    if not callable(getattr(processor, "create_processed_stream", None)):
        raise InvalidArgumentError("Missing create_processed_stream() method.")
    if not callable(getattr(processor, "destroy_processed_stream", None)):
        raise InvalidArgumentError("Missing destroy_processed_stream() method.")
    return processor  # type: ignore[return-value]


class AudioHelper(EventEmitter):
    """``device.audio``. Events: ``deviceChange(lost_active_devices)``, ``inputVolume(volume)``."""

    device_poll_interval_s = DEVICE_POLL_INTERVAL_S

    def __init__(self, device: AudioHost) -> None:
        super().__init__()
        self._device = device
        self._flags = {"incoming": True, "outgoing": True, "disconnect": True}
        self._input_change: asyncio.Future[None] | None = None
        self._inputs: dict[str, MediaDeviceInfo] = {}
        self._outputs: dict[str, MediaDeviceInfo] = {}
        self._devices_known = False
        self._input_device: MediaDeviceInfo | None = None
        self._selected: ProcessedInput | None = None
        self._selected_remote: AudioSource | None = None
        self._call_inputs: weakref.WeakSet[ProcessedInput] = weakref.WeakSet()
        self._audio_constraints: dict[str, Any] | None = None
        self._app_processors: dict[bool, _AppProcessor] = {}
        self._remote_version = 0
        self._call_outputs: set[CallOutput] = set()
        self._mixers: dict[int, OutputMixer] = {}
        """One mixer (one clock) per sink, by ``id(sink)``; the mixer holds the sink."""
        self._routes: weakref.WeakSet[OutputRoute] = weakref.WeakSet()
        self._open_outputs: dict[str, tuple[AudioSink, int]] = {}
        self._analyser = VolumeAnalyser()
        self._volume_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._refresh_task: asyncio.Task[Any] | None = None
        self._destroyed = False
        self._card_speaker: AudioSink | None = None
        self._card_checked = False
        self.on_device_change: Callable[[list[MediaDeviceInfo]], None] | None = None
        """Told of each device-list change with the lost active devices (the Device
        publishes ``audio/device-change``); unlike a listener it starts no polling."""
        self.speaker_devices = OutputDeviceCollection("speaker", self, self._default_speaker)
        self.ringtone_devices = OutputDeviceCollection("ringtone", self, self._default_ringer)
        self._remove_plugin_listener = self._plugins.add_device_change_listener(
            self._on_plugin_device_change
        )
        self._voice = VoiceProcessing()
        self._plugins.register(self._voice, name=VOICE_PROCESSING_PLUGIN)

    @property
    def _plugins(self) -> SoftphonePluginManager:
        return self._device.plugins

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

    # -- properties --------------------------------------------------------------------
    @property
    def is_output_selection_supported(self) -> bool:
        """Output devices can always be chosen here (JS: needs ``setSinkId``)."""
        return True

    @property
    def is_volume_supported(self) -> bool:
        """``inputVolume`` is always available here (JS: needs an AudioContext)."""
        return True

    @property
    def available_input_devices(self) -> dict[str, MediaDeviceInfo]:
        """Inputs by id, as last enumerated (see :meth:`refresh_devices`)."""
        self._ensure_devices()
        return dict(self._inputs)

    @property
    def available_output_devices(self) -> dict[str, MediaDeviceInfo]:
        """Outputs by id, as last enumerated (see :meth:`refresh_devices`)."""
        self._ensure_devices()
        return dict(self._outputs)

    @property
    def input_device(self) -> MediaDeviceInfo | None:
        """The input selected with :meth:`set_input_device`, None for the default."""
        return self._input_device

    @property
    def input_stream(self) -> AudioSource | None:
        """The selected input as calls read it (processed if a processor is set)."""
        if self._selected is not None:
            return self._selected
        return self._selected_remote

    @property
    def local_processed_stream(self) -> AudioSource | None:
        """The selected input after the local processors, None without processors.

        The built-in voice processing alone does not count (a browser's
        ``processedStream`` is null without an ``AudioProcessor`` too).
        """
        processed = self._selected.processed if self._selected is not None else None
        return None if processed is not None and self._is_voice_stream(processed) else processed

    def _is_voice_stream(self, stream: AudioSource) -> bool:
        return any(stream is s for s in self._voice.streams)

    @property
    def voice_processing(self) -> VoiceProcessing:
        """The built-in voice processing: its far-end reference and the inputs it
        processes (``streams``, each with its ``settings`` and ``active``)."""
        return self._voice

    processed_stream = local_processed_stream

    @property
    def remote_processed_stream(self) -> AudioSource | None:
        """The active call's remote audio after the remote processors, if any."""
        for output in self._call_outputs:
            stream = output.chain.output
            if stream is not None:
                return stream
        return None

    @property
    def audio_constraints(self) -> dict[str, Any] | None:
        """The last :meth:`set_audio_constraints` value (without ``deviceId``), or None."""
        return dict(self._audio_constraints) if self._audio_constraints is not None else None

    # -- device lists ------------------------------------------------------------------
    def _ensure_devices(self) -> None:
        if not self._devices_known:
            self._store_devices(self._plugins.enumerate_devices_now())
            self._devices_known = True

    def _store_devices(self, devices: list[MediaDeviceInfo]) -> None:
        inputs: dict[str, MediaDeviceInfo] = {}
        outputs: dict[str, MediaDeviceInfo] = {}
        for info in devices:
            target = inputs if info.kind == AUDIO_INPUT else outputs
            if not info.label:
                kind = "Input" if info.kind == AUDIO_INPUT else "Output"
                label = (
                    "Default"
                    if info.device_id == "default"
                    else f"Unknown Audio {kind} Device {len(target) + 1}"
                )
                info = MediaDeviceInfo(info.device_id, info.kind, label, info.group_id)
            target[info.device_id] = info
        self._inputs, self._outputs = inputs, outputs

    async def refresh_devices(self) -> dict[str, MediaDeviceInfo]:
        """Re-enumerate now; emits ``deviceChange`` if the lists changed. Returns the outputs.

        An active device that disappeared is handled as in JS: a lost selected
        input falls back to ``default`` (or the first input), lost outputs leave
        their collections (which fall back to ``default`` when emptied).
        """
        devices = await self._plugins.enumerate_devices()
        if self._destroyed:
            return {}
        before = (set(self._inputs.items()), set(self._outputs.items()))
        known = self._devices_known
        self._store_devices(devices)
        self._devices_known = True
        after = (set(self._inputs.items()), set(self._outputs.items()))
        if known and before != after:
            lost = await self._handle_lost_devices()
            if self.on_device_change is not None:
                self.on_device_change(lost)
            self.emit("deviceChange", lost)
        return dict(self._outputs)

    async def _handle_lost_devices(self) -> list[MediaDeviceInfo]:
        lost: list[MediaDeviceInfo] = []
        selected = self._input_device
        if selected is not None and selected.device_id not in self._inputs:
            lost.append(selected)
            fallback = self._inputs.get("default") or next(iter(self._inputs.values()), None)
            self._release_selected()
            self._input_device = None
            if fallback is not None:
                try:
                    await self.set_input_device(fallback.device_id)
                except TwilioError as error:
                    log.warning("could not fall back to input %s: %s", fallback.device_id, error)
        for collection in (self.speaker_devices, self.ringtone_devices):
            lost.extend(i for i in collection.handle_lost(self._outputs) if i not in lost)
        return lost

    def _on_plugin_device_change(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._devices_known = False  # re-enumerate at the next access
            return
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = loop.create_task(self.refresh_devices())
            self._refresh_task.add_done_callback(_log_task_failure)

    # -- listeners drive polling -------------------------------------------------------
    def on(self, event: str, listener: Listener | None = None) -> Any:
        """``EventEmitter.on``; listening to ``deviceChange`` / ``inputVolume`` starts polling."""
        if listener is None:
            return lambda fn: (self.on(event, fn), fn)[1]
        result = super().on(event, listener)
        self._listeners_changed()
        return result

    add_listener = on

    def once(self, event: str, listener: Listener | None = None) -> Any:
        """``EventEmitter.once``, with the same polling rule as :meth:`on`."""
        if listener is None:
            return lambda fn: (self.once(event, fn), fn)[1]
        result = super().once(event, listener)
        self._listeners_changed()
        return result

    def off(self, event: str, listener: Listener) -> EventEmitter:
        """``EventEmitter.off``; polling stops with the last listener."""
        result = super().off(event, listener)
        self._listeners_changed()
        return result

    remove_listener = off

    def remove_all_listeners(self, event: str | None = None) -> EventEmitter:
        """``EventEmitter.remove_all_listeners``; polling stops."""
        result = super().remove_all_listeners(event)
        with contextlib.suppress(AttributeError):  # during EventEmitter.__init__
            self._listeners_changed()
        return result

    def _listeners_changed(self) -> None:
        if self._destroyed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self.listener_count("deviceChange") and (
            self._poll_task is None or self._poll_task.done()
        ):
            self._ensure_devices()
            self._poll_task = loop.create_task(self._poll_devices())
        if self.listener_count("inputVolume") and (
            self._volume_task is None or self._volume_task.done()
        ):
            self._volume_task = loop.create_task(self._poll_volume())

    async def _poll_devices(self) -> None:
        while self.listener_count("deviceChange") and not self._destroyed:
            await asyncio.sleep(self.device_poll_interval_s)
            try:
                await self.refresh_devices()
            except Exception:
                log.exception("device enumeration failed")

    async def _poll_volume(self) -> None:
        """Meter the selected input while nobody else reads it (JS polls it per frame)."""
        loop = asyncio.get_running_loop()
        while self.listener_count("inputVolume") and not self._destroyed:
            await asyncio.sleep(VOLUME_POLL_INTERVAL_S)
            selected = self._selected
            if selected is None or selected.closed:
                continue
            last = selected.last_read
            if last is None or loop.time() - last > _READER_GRACE_S:
                selected.poll(int(48_000 * VOLUME_POLL_INTERVAL_S))

    def _meter(self, pcm: Pcm) -> None:
        if not self.listener_count("inputVolume"):
            return
        self._analyser.push(pcm)
        self.emit("inputVolume", self._analyser.volume())

    # -- input -------------------------------------------------------------------------
    async def wait_for_input_change(self) -> None:
        """Wait for an input-device change in flight (``connect()`` does this first)."""
        if self._input_change is not None:
            await asyncio.shield(self._input_change)

    async def _acquire(self, constraints: Mapping[str, Any], device_id: str | None) -> AudioSource:
        """``softphone_get_user_media`` with JS error mapping (31401 / 31402)."""
        try:
            return await self._plugins.get_user_media(constraints, device_id)
        except TwilioError:
            raise
        except PermissionError as exc:
            raise UserMediaErrors.PermissionDeniedError(str(exc), exc) from exc
        except Exception as exc:
            raise UserMediaErrors.AcquisitionFailedError(str(exc), exc) from exc

    async def _process(
        self, raw: AudioSource, owns_raw: bool, constraints: Mapping[str, Any]
    ) -> ProcessedInput:
        stream = ProcessedInput(raw, owns_raw=owns_raw, on_read=self._meter)
        audio = constraints.get("audio")
        self._voice.bind(raw, audio if isinstance(audio, Mapping) else None)
        processors = self._local_processors()
        if processors:
            try:
                await stream.set_processors(processors)
            except BaseException:
                stream.close()
                raise
        return stream

    def _constraints(self, device_id: str | None) -> dict[str, Any]:
        audio: dict[str, Any] = dict(self._audio_constraints or {})
        if device_id is not None:
            audio["deviceId"] = {"exact": device_id}
        return {"audio": audio or True}

    async def input_source(self, constraints: Mapping[str, Any] | None = None) -> AudioSource:
        """The source a new call captures from (JS getUserMedia step); the call closes it.

        Order: the ``file_input_stream`` option (a source or a path, used as is),
        the device selected with :meth:`set_input_device` (the call borrows it),
        else ``softphone_get_user_media`` for the default input. Failures become
        ``AcquisitionFailedError`` (31402), or ``PermissionDeniedError`` (31401)
        for a ``PermissionError``.
        """
        self._listeners_changed()
        options = self._device.options
        if options.file_input_stream is not None:
            stream = options.file_input_stream
            # Metered like a microphone (``inputVolume``), without processors (as in JS);
            # a stream the app passed stays open when the call closes its input.
            if isinstance(stream, str):
                from softphone.audio_backends.file import FileSource

                return ProcessedInput(FileSource(stream), owns_raw=True, on_read=self._meter)
            if isinstance(stream, AudioSource):
                return ProcessedInput(stream, owns_raw=False, on_read=self._meter)
            raise UserMediaErrors.AcquisitionFailedError("file_input_stream is not an AudioSource")
        if self._selected_remote is not None:
            return self._selected_remote
        if self._selected is not None:
            return ProcessedInput(self._selected, owns_raw=False)
        requested = dict(constraints or options.rtc_constraints)
        if self._audio_constraints and requested.get("audio") is True:
            requested = self._constraints(None)
        raw = await self._acquire(requested, None)
        if is_remote_source(raw):
            return raw
        stream = await self._process(raw, owns_raw=True, constraints=requested)
        self._call_inputs.add(stream)
        return stream

    async def set_input_device(self, device_id: str, *, force: bool = False) -> None:
        """Capture from ``device_id`` from now on, switching the active call in place.

        Rejects with ``InvalidArgumentError`` for a non-string or unknown id, or
        the acquisition error. Selecting the current device again does nothing
        unless ``force``. ``connect()`` waits for a switch in flight.
        """
        if not isinstance(device_id, str) or not device_id:
            raise InvalidArgumentError("Must specify the device to set")
        if self._destroyed:
            raise InvalidStateError("Device has been destroyed.")
        await self.refresh_devices()
        info = self._inputs.get(device_id)
        if info is None:
            raise InvalidArgumentError(f"Device not found: {device_id}{why_unlisted(device_id)}")
        if not force and self._input_device == info and self.input_stream is not None:
            return
        previous = self._input_change
        if previous is not None:
            await asyncio.shield(previous)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._input_change = done
        try:
            constraints = self._constraints(device_id)
            raw = await self._acquire(constraints, device_id)
            if is_remote_source(raw):
                new_remote: AudioSource | None = raw
                new_local: ProcessedInput | None = None
            else:
                new_remote, new_local = None, await self._process(raw, True, constraints)
            self._release_selected()
            self._selected, self._selected_remote = new_local, new_remote
            self._input_device = info
            self._switch_active_call()
        finally:
            done.set_result(None)
            if self._input_change is done:
                self._input_change = None
        self._listeners_changed()

    def _switch_active_call(self) -> None:
        """Point the active call's peer connection at the current input (no renegotiation)."""
        call = self._device.active_call
        pc = call.peer_connection if call is not None else None
        if pc is None:
            return
        if self._selected_remote is not None:
            source: AudioSource = self._selected_remote
        elif self._selected is not None:
            source = ProcessedInput(self._selected, owns_raw=False)
        else:
            return
        pc.replace_source(source)
        own = call.get_local_stream() if call is not None else None
        if isinstance(own, ProcessedInput) and own in self._call_inputs:
            own.close()  # the call's own default input is unused now: release the device

    def _release_selected(self) -> None:
        if self._selected is not None:
            self._selected.close()
        if self._selected_remote is not None:
            self._selected_remote.close()
        self._selected = self._selected_remote = None
        self._analyser.reset()

    async def unset_input_device(self) -> None:
        """Stop the selected input; later calls use the default input again.

        Rejects with ``InvalidStateError`` during an active call.
        """
        if self._device.active_call is not None:
            raise InvalidStateError("Cannot unset input device while a call is in progress.")
        self._release_selected()
        self._input_device = None

    async def set_audio_constraints(self, constraints: Mapping[str, Any]) -> None:
        """Use ``constraints`` (JS ``MediaTrackConstraints``, ``deviceId`` ignored) for
        every acquisition, and for the inputs in use now.

        The voice processing switches (``echoCancellation``, ``noiseSuppression``,
        ``autoGainControl``, camelCase or snake_case) apply at once to every input
        in use, during a call too, without touching the call. As in JS, the
        selected input is then re-acquired with the new constraints (the active
        call switches to it in place).
        """
        await self._change_constraints(
            {k: v for k, v in dict(constraints).items() if k not in ("deviceId", "device_id")}
        )

    async def unset_audio_constraints(self) -> None:
        """Forget the constraints: inputs in use go back to their defaults (voice
        processing on for real microphones, off for virtual inputs); the selected
        input is re-acquired without them."""
        await self._change_constraints(None)

    async def _change_constraints(self, constraints: dict[str, Any] | None) -> None:
        self._audio_constraints = constraints
        self._voice.reconfigure(constraints)
        if self._input_device is not None:
            await self.set_input_device(self._input_device.device_id, force=True)

    # -- processors --------------------------------------------------------------------
    async def add_processor(self, processor: AudioProcessor, is_remote: bool = False) -> None:
        """Install the app's processor for the local input or (``is_remote``) remote audio.

        Raises ``NotSupportedError`` if that side has one already and
        ``InvalidArgumentError`` for an object without the two methods. Local:
        inputs in use are restarted through it; remote: playback switches to it.
        """
        checked = _check_processor(processor)
        if is_remote in self._app_processors:
            raise NotSupportedError(
                "Adding multiple AudioProcessors is not supported at this time."
            )
        plugin = _AppProcessor(checked, is_remote)
        self._plugins.register(plugin, name=f"softphone.app_processor.{int(is_remote)}")
        self._app_processors[is_remote] = plugin
        await self._processors_changed(is_remote)

    async def remove_processor(self, processor: AudioProcessor, is_remote: bool = False) -> None:
        """Remove the app's processor; raises ``InvalidArgumentError`` if it is not installed."""
        if processor is None:
            raise InvalidArgumentError("Missing AudioProcessor argument.")
        plugin = self._app_processors.get(is_remote)
        if plugin is None or plugin.processor is not processor:
            raise InvalidArgumentError(
                "Cannot remove an AudioProcessor that has not been previously added."
            )
        self._plugins.unregister(plugin)
        del self._app_processors[is_remote]
        await self._processors_changed(is_remote)

    async def _processors_changed(self, is_remote: bool) -> None:
        if is_remote:
            self._remote_version += 1
            return
        processors = self._local_processors()
        for stream in [self._selected, *self._call_inputs]:
            if stream is not None and not stream.closed:
                await stream.set_processors(processors)

    def _local_processors(self) -> list[AudioProcessor]:
        """The local chain, microphone first: the built-in voice processing (unless
        blocked), the plugins' processors, then the app's ``add_processor`` one."""
        found = self._plugins.audio_processors(is_remote=False)
        app = self._app_processors.get(False)
        first = [p for p in found if p is self._voice]
        last = [p for p in found if app is not None and p is app.processor]
        middle = [p for p in found if not any(p is q for q in (*first, *last))]
        return [*first, *middle, *last]

    def _remote_processors(self) -> tuple[int, list[AudioProcessor]]:
        return self._remote_version, self._plugins.audio_processors(is_remote=True)

    # -- outputs -----------------------------------------------------------------------
    def _default_speaker(self) -> AudioSink | None:
        """The ``speaker`` option, else the sound card's speaker (``real_devices``)."""
        sink: AudioSink | None = self._device.options.speaker
        return sink if sink is not None else self._sound_card_speaker()

    def _default_ringer(self) -> AudioSink | None:
        sink: AudioSink | None = self._device.options.ringer
        return sink if sink is not None else self._default_speaker()

    def _sound_card_speaker(self) -> AudioSink | None:
        """The default speaker through PortAudio, opened on first use and kept (the
        speaker and ringtone share it: one clock)."""
        if self._card_speaker is None and not self._card_checked and not self._destroyed:
            self._card_checked = True
            if wants_real_devices(self._device.options):
                self._card_speaker = default_speaker()
        return self._card_speaker

    def _mixer(self, sink: AudioSink) -> OutputMixer:
        """The mixer of ``sink``, shared by every route and collection that plays there.

        Keyed by the sink itself, not by the device or collection that reached
        it, so a sink never gets two mixers, i.e. two clocks writing into it.
        """
        mixer = self._mixers.get(id(sink))
        if mixer is None or mixer.sink is not sink or mixer.closed:
            mixer = OutputMixer(sink)
            mixer.taps.append(self._voice.output_tap())  # what is played: the echo reference
            self._mixers[id(sink)] = mixer
        return mixer

    def route(self, collection: OutputDeviceCollection) -> OutputRoute:
        """A new path for ONE producer to ``collection``'s devices (close it when done).

        Every producer needs its own route: the mixer sums routes, while two
        producers writing into one route would interleave their frames.
        """
        route = OutputRoute(lambda: [self._mixer(sink) for sink in collection.sinks()])
        if self._destroyed:
            route.close()
        else:
            self._routes.add(route)
        return route

    async def open_output(self, device_id: str) -> AudioSink:
        """Open (or share) output ``device_id`` via the plugins; see :meth:`release_output`."""
        entry = self._open_outputs.get(device_id)
        if entry is not None:
            self._open_outputs[device_id] = (entry[0], entry[1] + 1)
            return entry[0]
        sink = await self._plugins.get_output_sink(device_id)
        entry = self._open_outputs.get(device_id)  # opened meanwhile by someone else?
        if entry is not None:
            sink.close()
            self._open_outputs[device_id] = (entry[0], entry[1] + 1)
            return entry[0]
        self._open_outputs[device_id] = (sink, 1)
        return sink

    def release_output(self, device_id: str, sink: AudioSink) -> None:
        """Drop one use of an output from :meth:`open_output`; the last one closes it."""
        entry = self._open_outputs.get(device_id)
        if entry is None or entry[0] is not sink:
            sink.close()
            return
        if entry[1] > 1:
            self._open_outputs[device_id] = (sink, entry[1] - 1)
            return
        del self._open_outputs[device_id]
        mixer = self._mixers.get(id(sink))
        if mixer is not None and mixer.sink is sink:
            del self._mixers[id(sink)]
            mixer.close()
        sink.close()

    def speaker_sink(self) -> OutputRoute:
        """A new route to the speaker devices for one playback of a sound other than
        the ringtone; the player closes it when the sound ends.

        One route per playback, never a shared one: sounds that overlap (the
        outgoing sound still playing when the disconnect sound starts, DTMF
        feedback) and the call are then summed by the sink's mixer instead of
        alternating frame by frame in one shared input.
        """
        return self.route(self.speaker_devices)

    def ringtone_sink(self) -> OutputRoute:
        """A new route to the ringtone devices for one playback of the ringtone.

        When the ringtone and the speaker reach the same sink (both ``default``
        without a ``ringer``), they share that sink's mixer and are mixed.
        """
        return self.route(self.ringtone_devices)

    def sound_pcm(self, sound_url: str | None) -> Pcm:
        """Samples of ``sound_url`` (a file), or of the outgoing sound when None."""
        if sound_url is None:
            return self._device.sounds.pcm("outgoing")
        from softphone.core.sounds import _read_file

        return _read_file(sound_url)

    def call_output(self, call: HelperCall) -> CallOutput:
        """A call's remote-audio destination, created when the call opens (JS ``'audio'``).

        Remote processors, then the speaker devices and the sinks that plugins
        return from ``softphone_remote_audio``.
        """
        remote = call.get_remote_stream()
        sinks = self._plugins.remote_audio_sinks(call=call, remote=remote)
        output = CallOutput(
            self.route(self.speaker_devices),
            sinks,
            self._remote_processors,
            on_close=self._call_outputs.discard,
        )
        self._call_outputs.add(output)
        return output

    def destroy(self) -> None:
        """Release inputs, outputs and mixers and drop listeners (``device.destroy()``)."""
        self._destroyed = True
        self._remove_plugin_listener()
        self._voice.close()
        for task in (self._poll_task, self._volume_task, self._refresh_task):
            if task is not None:
                task.cancel()
        self._release_selected()
        for stream in list(self._call_inputs):
            stream.close()
        for output in list(self._call_outputs):
            output.close()
        for route in list(self._routes):
            route.close()
        self.speaker_devices.close()
        self.ringtone_devices.close()
        for mixer in self._mixers.values():
            mixer.close()
        self._mixers.clear()
        for sink, _ in self._open_outputs.values():
            sink.close()
        self._open_outputs.clear()
        if self._card_speaker is not None:
            self._card_speaker.close()
            self._card_speaker = None
        self.remove_all_listeners()


def _log_task_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("device refresh failed: %s", task.exception())


__all__ = ["AudioHelper"]

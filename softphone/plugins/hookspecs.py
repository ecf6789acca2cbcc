"""The hook specifications: every way a plugin can change where audio and media go.

A plugin is any object (module, class instance) with functions named after
these hooks and marked with :data:`softphone.plugins.hookimpl`. It implements
only the hooks it cares about, and each implementation may declare only the
arguments it needs (pluggy passes them by name).

Order: for ``firstresult`` hooks the first non-None answer wins. The
DeviceOptions overrides (``get_user_media``, ``enumerate_devices``,
``rtc_peer_connection``) run first (``tryfirst``), then plugins registered by
the app and from entry points (latest first), then the built-ins (``trylast``):
the audio backends and our aiortc peer connection.

Hooks that do I/O may return an awaitable instead of the value; the manager
awaits it. A ``firstresult`` hook must decide *synchronously* whether it
answers: return None to pass, or the value or an awaitable of it to answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

from softphone.audio_backends.base import AudioSink, AudioSource
from softphone.audio_backends.devices import MediaDeviceInfo
from softphone.plugins.markers import hookspec
from softphone.plugins.types import AudioProcessor, PeerConnectionLike

DeviceList = Iterable[MediaDeviceInfo | Mapping[str, Any]]


@hookspec
def softphone_enumerate_devices() -> DeviceList | Awaitable[DeviceList] | None:
    """The audio devices this plugin provides (JS ``enumerateDevices``).

    Return ``MediaDeviceInfo`` objects (or JS-style dicts with ``deviceId``,
    ``kind``, ``label``, ``groupId``); kinds other than ``audioinput`` and
    ``audiooutput`` are ignored. Results of all plugins are merged; for one
    ``(kind, device_id)`` the earliest answer wins. Called whenever the
    AudioHelper refreshes its device lists; keep it cheap or cache.
    """


@hookspec(firstresult=True)
def softphone_get_user_media(
    constraints: Mapping[str, Any], device_id: str | None
) -> AudioSource | Awaitable[AudioSource] | None:
    """Open the input ``device_id`` (JS ``getUserMedia``); None lets another plugin answer.

    ``constraints`` are JS-shaped (``{"audio": True}`` or ``{"audio": {"deviceId":
    {"exact": id}, ...}}``); ``device_id`` is the id extracted from them, None
    (or ``"default"``) for the default input. Raise ``PermissionError`` for a
    refusal (31401), anything else for a failure (31402). The caller owns and
    closes the returned source.
    """


@hookspec(firstresult=True)
def softphone_get_output_sink(device_id: str) -> AudioSink | Awaitable[AudioSink] | None:
    """Open the output ``device_id`` for playback; None lets another plugin answer.

    Used when the app selects speaker or ringtone devices
    (``device.audio.speaker_devices.set([...])``). The caller closes the sink.
    """


@hookspec(firstresult=True)
def softphone_create_peer_connection(
    configuration: Mapping[str, Any], options: Any
) -> PeerConnectionLike | None:
    """A media adapter for a new call (JS ``RTCPeerConnection`` option).

    ``configuration`` is the JS ``rtcConfiguration`` (``iceServers``, ...);
    ``options`` are the Device's ``DeviceOptions`` (codec preferences, bitrate).
    Must return synchronously; do slow set-up in ``create_offer`` /
    ``create_answer``. The built-in answer is aiortc in this process.
    """


@hookspec
def softphone_remote_audio(call: Any, remote: Any) -> AudioSink | None:
    """A call's remote audio exists (the JS ``call.on('audio')`` moment): where should it go?

    ``remote`` is the call's ``RemoteAudio`` fan-out; ``call`` the Call. Return
    a sink to receive everything the far end says from now on (it is closed when
    the call ends), or add sinks to ``remote`` yourself and return None.
    """


@hookspec
def softphone_audio_processor(is_remote: bool) -> AudioProcessor | None:
    """A processor for the local input (``is_remote=False``) or the remote audio.

    Like the JS ``audio.addProcessor(processor, isRemote)``, but contributed by
    a plugin. The local chain runs from the microphone: first the built-in
    voice processing (WebRTC echo cancellation, noise suppression and gain
    control, plugin name ``softphone.voice_processing``, ``trylast``), then
    the plugins' processors, then the one the app added with
    ``device.audio.add_processor``. A plugin's processor thus gets the
    echo-cancelled microphone; to replace the built-in instead, block it
    before the call: ``device.plugins.set_blocked("softphone.voice_processing")``
    (its far-end reference stays available as
    ``device.audio.voice_processing.far_end``).
    """


@hookspec
def softphone_close() -> Awaitable[None] | None:
    """The Device (or media agent) is going away: release devices and connections.

    Every implementation runs, even when another one fails; may be a coroutine.
    """

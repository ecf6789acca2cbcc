"""softphone.plugins layer: hook specs, the per-Device plugin manager and built-in plugins.

Everything that decides where audio comes from, where it goes and which
WebRTC stack carries it is a pluggy hook (see :mod:`softphone.plugins.hookspecs`):

- ``softphone_enumerate_devices``: the devices a plugin provides;
- ``softphone_get_user_media`` (firstresult): open an input;
- ``softphone_get_output_sink`` (firstresult): open an output;
- ``softphone_create_peer_connection`` (firstresult): the media adapter of a call;
- ``softphone_remote_audio``: where a call's remote audio goes (JS ``call.on('audio')``);
- ``softphone_audio_processor``: local and remote processors (JS ``addProcessor``);
- ``softphone_close``: release resources.

A third-party package ships a plugin by naming it in the ``softphone``
entry-point group; an app registers one with ``device.plugins.register(obj)``.
"""

from softphone.plugins.backends import (
    FileBackend,
    MemoryBackend,
    NullBackend,
    PortAudioBackend,
    ToneBackend,
    VirtualBackend,
)
from softphone.plugins.default_devices import DefaultDevices
from softphone.plugins.manager import (
    AUTOLOAD_ENV,
    SoftphonePluginManager,
    device_id_from_constraints,
)
from softphone.plugins.markers import ENTRY_POINT_GROUP, PROJECT_NAME, hookimpl, hookspec
from softphone.plugins.types import (
    AudioProcessor,
    PeerConnectionLike,
    RemoteSource,
    is_remote_source,
)

__all__ = [
    "AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "PROJECT_NAME",
    "AudioProcessor",
    "DefaultDevices",
    "FileBackend",
    "MemoryBackend",
    "NullBackend",
    "PeerConnectionLike",
    "PortAudioBackend",
    "RemoteSource",
    "SoftphonePluginManager",
    "ToneBackend",
    "VirtualBackend",
    "device_id_from_constraints",
    "hookimpl",
    "hookspec",
    "is_remote_source",
]

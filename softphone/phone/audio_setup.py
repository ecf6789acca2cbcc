"""Put ``--input`` / ``--output`` into a Device, and list the devices the pickers offer.

Every choice becomes a device of the Device's own audio plugins (``tone:…``,
``file:…``, ``null:…``, ``portaudio:…``) selected with
``device.audio.set_input_device`` and ``speaker_devices.set``, so the scripted
mode, the interactive pickers and hot-plug all go through the one path the SDK
offers apps. A choice that cannot work fails here, before any call, with a
message that says what to do (for PortAudio: what to install).
"""

from __future__ import annotations

from softphone.audio_backends import portaudio
from softphone.audio_backends.devices import MediaDeviceInfo
from softphone.cli_common import CliError
from softphone.core.device import Device
from softphone.core.errors import TwilioError
from softphone.phone.audio_specs import InputSpec, OutputSpec
from softphone.phone.session import DeviceChoice

__all__ = [
    "FILE_INPUT_NAME",
    "FILE_OUTPUT_NAME",
    "choices",
    "list_devices_text",
    "require_portaudio",
    "set_output",
    "use_input",
    "use_output",
]

FILE_INPUT_NAME = "input"
"""``file:input``: the ``--input file:PATH`` device."""
FILE_OUTPUT_NAME = "output"
"""``file:output``: the ``--output file:PATH`` device."""


def require_portaudio() -> None:
    """``CliError`` naming what to install when sounddevice or PortAudio is missing."""
    try:
        portaudio.load_sounddevice()
    except portaudio.PortAudioUnavailableError as exc:
        raise CliError(f"PortAudio is not usable here: {exc}") from exc


def _known(devices: dict[str, MediaDeviceInfo], device_id: str, kind: str) -> None:
    if device_id in devices:
        return
    cards = [d for d in devices if d.startswith(portaudio.PREFIX)]
    listed = ", ".join(cards) if cards else "none"
    raise CliError(
        f"no PortAudio {kind} device {device_id!r} (PortAudio {kind}s here: {listed}; "
        "`softphone phone --list-devices` lists them)"
    )


async def use_input(device: Device, spec: InputSpec) -> str:
    """Declare and select the input ``spec`` names; returns its device id."""
    audio = device.audio
    assert audio is not None, "a destroyed Device has no audio"
    if spec.kind == "tone":
        name = "+".join(f"{f:g}" for f in spec.frequencies)
        device_id = device.plugins.tone.add_tone(name, spec.frequencies).device_id
    elif spec.kind == "file":
        assert spec.path is not None
        device_id = device.plugins.file.add_input(FILE_INPUT_NAME, spec.path).device_id
    elif spec.kind == "portaudio":
        require_portaudio()
        assert spec.device_id is not None
        device_id = spec.device_id
        await audio.refresh_devices()
        _known(audio.available_input_devices, device_id, "input")
    else:
        device_id = device.plugins.null.device_id("silence")
    try:
        await audio.set_input_device(device_id)
    except TwilioError as exc:
        raise CliError(f"cannot use input {spec.describe()}: {exc.message}") from exc
    return device_id


async def use_output(device: Device, spec: OutputSpec) -> str:
    """Declare and select the output ``spec`` names (calls and ringtone); returns its id."""
    audio = device.audio
    assert audio is not None, "a destroyed Device has no audio"
    if spec.kind == "file":
        assert spec.path is not None
        device_id = device.plugins.file.add_output(FILE_OUTPUT_NAME, spec.path).device_id
    elif spec.kind == "portaudio":
        require_portaudio()
        assert spec.device_id is not None
        device_id = spec.device_id
        await audio.refresh_devices()
        _known(audio.available_output_devices, device_id, "output")
    else:
        device_id = device.plugins.null.device_id("discard")
    await set_output(device, device_id, spec.describe())
    return device_id


async def set_output(device: Device, device_id: str, what: str | None = None) -> None:
    """Play calls and the ringtone on ``device_id``; ``CliError`` if it cannot be opened."""
    audio = device.audio
    assert audio is not None, "a destroyed Device has no audio"
    try:
        await audio.speaker_devices.set(device_id)
        await audio.ringtone_devices.set(device_id)
    except (TwilioError, OSError, portaudio.AudioDeviceError) as exc:
        message = exc.message if isinstance(exc, TwilioError) else str(exc)
        raise CliError(f"cannot use output {what or device_id}: {message}") from exc


def choices(devices: dict[str, MediaDeviceInfo]) -> list[DeviceChoice]:
    """The pickers' entries for ``devices`` (label with the id when they differ)."""
    out = []
    for device_id, info in devices.items():
        label = info.label if info.label == device_id else f"{info.label} ({device_id})"
        out.append(DeviceChoice(device_id, label))
    return out


def list_devices_text() -> str:
    """``--list-devices``: the PortAudio inputs and outputs, or why there are none."""
    try:
        portaudio.load_sounddevice()
    except portaudio.PortAudioUnavailableError as exc:
        return f"PortAudio is not usable here: {exc}"
    devices = portaudio.list_devices()
    if not devices:
        return "PortAudio found no sound devices (no sound card, or no sound server running)"
    lines = []
    for kind, title in (("audioinput", "inputs"), ("audiooutput", "outputs")):
        lines.append(f"{title} (--{title[:-1]} ID):")
        lines += [f"  {d.device_id}    {d.label}" for d in devices if d.kind == kind]
    return "\n".join(lines)

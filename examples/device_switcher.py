"""Device switcher: list audio devices, pick them, and switch them in the middle of a call.

``device.audio`` (the AudioHelper) lists inputs and outputs, selects the input with
``set_input_device`` and the outputs with ``speaker_devices.set``, and does both
during a call without renegotiating it; ``deviceChange`` reports devices that come
and go. To run anywhere, the example declares virtual devices where a desktop app
would find sound cards: two "microphones" playing tones (``tone:headset-mic``,
500 Hz, and ``tone:laptop-mic``, 1500 Hz) and two "speakers" recording in memory
(``memory:headset``, ``memory:speakers``). It calls the gateway's echo service,
switches microphone, then speakers, then unplugs the active speakers, and checks
each time that the right sound reached the right output. Real sound cards appear
in the same lists as ``portaudio:...`` ids when the ``portaudio`` extra is installed.

    python examples/device_switcher.py
    python examples/device_switcher.py --gateway wss://127.0.0.1:9443 \\
        --token "$(softphone token --identity alice)" --cert ~/.softphone/gateway-cert.pem
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from _common import add_gateway_arguments, gateway_setup

from softphone import AudioHelper, Device, MediaDeviceInfo, MemorySink
from softphone.audio_backends.analysis import dominant_frequency

MICS = {"headset-mic": 500.0, "laptop-mic": 1500.0}


async def hears(sink: MemorySink, seconds: float = 0.5) -> float:
    """The main frequency of the next ``seconds`` that reach ``sink`` (0 if none do)."""
    start = sink.samples_written
    for _ in range(int(seconds / 0.05) * 4):
        if sink.samples_written - start >= int(48_000 * seconds):
            return dominant_frequency(sink.pcm()[-int(48_000 * seconds) :])
        await asyncio.sleep(0.05)
    return 0.0


def show_devices(audio: AudioHelper) -> None:
    for kind, devices in (
        ("inputs ", audio.available_input_devices),
        ("outputs", audio.available_output_devices),
    ):
        listed = ", ".join(f"{info.device_id} ({info.label})" for info in devices.values())
        print(f"devices {kind}: {listed}", flush=True)


async def run(args: argparse.Namespace) -> int:
    checks: list[bool] = []

    def check(what: str, heard_hz: float, expected_hz: float) -> None:
        ok = abs(heard_hz - expected_hz) < 10
        checks.append(ok)
        print(f"check   {what}: {heard_hz:7.1f} Hz ({'ok' if ok else 'WRONG'})", flush=True)

    async with (
        gateway_setup(args) as setup,
        Device(setup.token("alice"), setup.device_options()) as device,
    ):
        audio = device.audio
        assert audio is not None
        for name, hz in MICS.items():
            device.plugins.tone.add_tone(
                name, [hz], label=f"{name.replace('-', ' ')}, {hz:g} Hz tone"
            )
        headset = device.plugins.memory.add_output("headset", MemorySink(), "Headset")
        speakers = device.plugins.memory.add_output("speakers", MemorySink(), "Speakers")
        assert isinstance(headset, MemorySink) and isinstance(speakers, MemorySink)
        lost: list[list[MediaDeviceInfo]] = []
        audio.on("deviceChange", lost.append)
        for sound in (audio.incoming, audio.outgoing, audio.disconnect):
            sound(False)  # no call sounds: the outputs carry only the call
        await audio.refresh_devices()
        show_devices(audio)

        await audio.set_input_device("tone:headset-mic")
        await audio.speaker_devices.set("memory:headset")
        call = await device.connect(params={"To": args.to})
        await call.wait_for("accept", timeout=20)
        print(f"call    open ({call.codec}) to {args.to}", flush=True)
        check("headset hears the headset mic", await hears(headset), MICS["headset-mic"])

        await audio.set_input_device("tone:laptop-mic")
        print("switch  input -> tone:laptop-mic", flush=True)
        await asyncio.sleep(0.3)
        check("headset hears the laptop mic", await hears(headset), MICS["laptop-mic"])

        await audio.speaker_devices.set("memory:speakers")
        print("switch  speakers -> memory:speakers", flush=True)
        await asyncio.sleep(0.3)
        check("speakers hear the laptop mic", await hears(speakers), MICS["laptop-mic"])
        check("headset hears nothing now", await hears(headset, 0.3), 0.0)

        device.plugins.memory.remove("memory:speakers")  # unplugged
        for _ in range(40):
            if lost:
                break
            await asyncio.sleep(0.05)
        gone = [info.device_id for batch in lost for info in batch]
        active = sorted(info.device_id for info in audio.speaker_devices.get())
        print(f"unplug  deviceChange lost {gone}; speaker devices now {active}", flush=True)
        checks.append(gone == ["memory:speakers"] and active == ["default"])
        call.disconnect()
    ok = all(checks)
    print("result  " + ("OK" if ok else "FAILED: see the checks above"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", default="echo", help="whom to call (default: the echo service)")
    add_gateway_arguments(parser)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

"""Real devices by default: a Device with no audio options uses the sound card.

Through a private PulseAudio daemon (``benchmarks.pulse_loop``: the default speaker
is a null sink whose monitor is the default microphone, a true speaker-to-microphone
loop), a Device given nothing but a token sends what its speaker plays: the far end
hears itself. Without PortAudio one WARNING says what to install, and the call sends
silence; ``real_devices=False`` and ``SOFTPHONE_REAL_DEVICES=0`` keep the card shut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from calltools import Listener, open_call
from recorders import eventually

from benchmarks.pulse_loop import PulseUnavailableError, pulse_loop
from softphone.audio_backends import ToneSource, portaudio
from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.core.device import Device
from softphone.core.errors import InvalidArgumentError
from softphone.plugins import default_devices

DeviceFactory = Callable[..., Device]
BOB_HZ = 660.0
NO_PROCESSING = {
    "audio": {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False}
}


@pytest.fixture
def pulse(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(default_devices.REAL_DEVICES_ENV, raising=False)
    try:
        with pulse_loop(monkeypatch.setenv):
            yield
    except PulseUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def no_portaudio(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """PortAudio missing, as on a machine without the extra; counts the attempts."""
    attempts: list[int] = []

    def missing() -> None:
        attempts.append(1)
        raise portaudio.PortAudioUnavailableError(
            "sounddevice is not installed: install the 'portaudio' extra "
            "(pip install 'softphone[portaudio]') and the PortAudio library "
            "(apt-get install libportaudio2)"
        )

    monkeypatch.setattr(portaudio, "load_sounddevice", missing)
    monkeypatch.setattr(default_devices, "_warned", set())
    monkeypatch.delenv(default_devices.REAL_DEVICES_ENV, raising=False)
    return attempts


async def test_a_device_with_no_audio_options_uses_the_sound_card(
    pulse: None, make_device: DeviceFactory
) -> None:
    alice = make_device("alice", rtc_constraints=NO_PROCESSING)  # nothing about audio
    bob = Listener(make_device("bob", file_input_stream=ToneSource([BOB_HZ])))
    await bob.device.register()
    await open_call(alice, bob)
    # bob's tone -> alice's default speaker (the null sink) -> its monitor, alice's
    # default microphone -> back to bob: he hears himself only if both are the card
    for _ in range(50):
        if detect_tone(await bob.recent(0.5), BOB_HZ):
            break
    else:
        pytest.fail("bob never heard his tone come back through alice's sound card")


async def test_without_portaudio_one_warning_says_what_to_install(
    no_portaudio: list[int], make_device: DeviceFactory
) -> None:
    alice = make_device("alice")
    bob = Listener(make_device("bob", file_input_stream=ToneSource([BOB_HZ])))
    await bob.device.register()
    with pytest.warns(default_devices.SoundCardWarning) as caught:
        first, _ = await open_call(alice, bob)
        first.disconnect()
        second, _ = await open_call(alice, bob)
        heard = await bob.recent(0.5)
    assert not detect_tone(heard, BOB_HZ) and float(abs(heard).max()) < 200  # silence
    about = [str(w.message) for w in caught if "softphone[portaudio]" in str(w.message)]
    assert len(about) == 1, [str(w.message) for w in caught]  # once, not per call
    assert "libportaudio2" in about[0] and "silence" in about[0]
    assert no_portaudio, "the default devices never looked for PortAudio"
    with pytest.raises(InvalidArgumentError) as raised:
        await alice.audio.set_input_device("portaudio:default")
    assert "softphone[portaudio]" in raised.value.message
    with pytest.raises(InvalidArgumentError) as raised:
        await alice.audio.speaker_devices.set(["portaudio:default"])
    assert "libportaudio2" in raised.value.message
    second.disconnect()


@pytest.mark.parametrize("how", ["option", "environment"])
async def test_real_devices_can_be_turned_off(
    no_portaudio: list[int],  # a warning would come if the card were looked for
    make_device: DeviceFactory,
    monkeypatch: pytest.MonkeyPatch,
    recwarn: pytest.WarningsRecorder,
    how: str,
) -> None:
    opened: list[str] = []
    sound_card = default_devices._sound_card
    monkeypatch.setattr(
        default_devices, "_sound_card", lambda kind: opened.append(kind) or sound_card(kind)
    )
    if how == "option":
        alice = make_device("alice", real_devices=False)
        bob = Listener(make_device("bob", real_devices=False))
    else:
        monkeypatch.setenv(default_devices.REAL_DEVICES_ENV, "0")
        alice = make_device("alice")
        bob = Listener(make_device("bob"))
    await bob.device.register()
    call, _ = await open_call(alice, bob)
    await eventually(lambda: bob.heard.samples_written > SAMPLE_RATE // 2)
    assert opened == [], "the sound card was looked for though it was turned off"
    assert not [w for w in recwarn if w.category is default_devices.SoundCardWarning]
    call.disconnect()

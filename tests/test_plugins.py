"""The plugin system: hook specs, the per-Device manager, entry points and overrides.

Overrides and plugins are exercised in real calls on the gateway; the
third-party plugin is a real package built and installed by pip.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest
from calltools import Listener, open_call, recent
from recorders import EventLog, eventually

from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import detect_tone
from softphone.audio_backends.base import AudioSink, AudioSource, Pcm
from softphone.audio_backends.devices import AudioDeviceError, MediaDeviceInfo
from softphone.core.device import Device
from softphone.media.peer_connection import PeerConnection
from softphone.plugins import (
    AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    PROJECT_NAME,
    SoftphonePluginManager,
    device_id_from_constraints,
    hookimpl,
    hookspecs,
)

DeviceFactory = Callable[..., Device]
BOB_HZ, ALICE_HZ, PLUGIN_HZ = 1900.0, 700.0, 2300.0


async def _bob(make_device: DeviceFactory) -> Listener:
    bob = Listener(make_device("bob", file_input_stream=ToneSource([BOB_HZ])))
    await bob.device.register()
    return bob


# -- specs and manager -------------------------------------------------------------------
def test_every_hook_is_specified_and_documented() -> None:
    names = sorted(n for n in dir(hookspecs) if n.startswith("softphone_"))
    assert names == [
        "softphone_audio_processor",
        "softphone_close",
        "softphone_create_peer_connection",
        "softphone_enumerate_devices",
        "softphone_get_output_sink",
        "softphone_get_user_media",
        "softphone_remote_audio",
    ]
    firstresult = {
        "softphone_get_user_media",
        "softphone_get_output_sink",
        "softphone_create_peer_connection",
    }
    for name in names:
        fn = getattr(hookspecs, name)
        assert len(inspect.getdoc(fn) or "") > 80, name
        opts = getattr(fn, f"{PROJECT_NAME}_spec")
        assert opts["firstresult"] is (name in firstresult), name
    assert PROJECT_NAME == ENTRY_POINT_GROUP == "softphone"


@pytest.mark.parametrize(
    ("constraints", "expected"),
    [
        ({"audio": True}, None),
        (None, None),
        ({"audio": {"deviceId": "a"}}, "a"),
        ({"audio": {"deviceId": {"exact": "b"}}}, "b"),
        ({"audio": {"deviceId": {"ideal": "c"}}}, "c"),
        ({"audio": {"deviceId": ["d", "e"]}}, "d"),
        ({"audio": {"echoCancellation": True}}, None),
    ],
)
def test_device_id_from_constraints(constraints: Any, expected: str | None) -> None:
    assert device_id_from_constraints(constraints) == expected


async def test_manager_merges_devices_and_opens_them() -> None:
    class Async:
        @hookimpl
        async def softphone_enumerate_devices(self) -> list[Any]:
            return [
                {"deviceId": "x", "kind": "audioinput", "label": "X", "groupId": "g"},
                {"deviceId": "cam", "kind": "videoinput"},  # ignored: not audio
                MediaDeviceInfo("null:silence", "audioinput", "shadowed", "a"),
            ]

    pm = SoftphonePluginManager(entry_points=False)
    pm.register(Async())
    pm.tone.add_tone("t", [440.0])
    devices = await pm.enumerate_devices()
    ids = [(d.kind, d.device_id) for d in devices]
    assert ("audioinput", "x") in ids and ("audioinput", "tone:t") in ids
    assert len(ids) == len(set(ids))
    assert next(d for d in devices if d.device_id == "null:silence").label == "shadowed"
    assert ("audioinput", "x") not in [(d.kind, d.device_id) for d in pm.enumerate_devices_now()]
    source = await pm.get_user_media({"audio": {"deviceId": {"exact": "tone:t"}}})
    assert isinstance(source, ToneSource) and source.frequencies == (440.0,)
    with pytest.raises(AudioDeviceError, match="no plugin provides the audio input 'nope'"):
        await pm.get_user_media(device_id="nope")
    assert isinstance(await pm.get_output_sink("null:discard"), AudioSink)
    assert isinstance(pm.create_peer_connection({"iceServers": []}), PeerConnection)
    await pm.aclose()


async def test_plugin_close_runs_for_every_plugin(caplog: pytest.LogCaptureFixture) -> None:
    closed: list[str] = []

    class Broken:
        @hookimpl
        def softphone_close(self) -> None:
            raise RuntimeError("boom")

    class Fine:
        @hookimpl
        async def softphone_close(self) -> None:
            closed.append("fine")

    pm = SoftphonePluginManager(builtins=False, entry_points=False)
    pm.register(Fine())
    pm.register(Broken())
    with caplog.at_level(logging.ERROR):
        await pm.aclose()
    assert closed == ["fine"] and "failed to close" in caplog.text


# -- third-party plugin as an installed package ---------------------------------------------
PLUGIN_SOURCE = '''
"""A third-party softphone plugin: a test-tone microphone and a remote-audio tap."""

import pluggy

from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.devices import MediaDeviceInfo

hookimpl = pluggy.HookimplMarker("softphone")
TAPS = []


class ToneMic:
    def __init__(self, manager):
        self.manager = manager

    @hookimpl
    def softphone_enumerate_devices(self):
        return [MediaDeviceInfo("acme:mic", "audioinput", "ACME test mic", "acme")]

    @hookimpl
    def softphone_get_user_media(self, device_id):
        if device_id == "acme:mic":
            return ToneSource([{hz}])
        return None

    @hookimpl
    def softphone_remote_audio(self, call, remote):
        tap = MemorySink()
        TAPS.append((call, tap))
        return tap
'''

SETUP_CFG = """
[metadata]
name = acme-softphone-plugin
version = 1.0

[options]
py_modules = acme_softphone

[options.entry_points]
softphone =
    acme = acme_softphone:ToneMic
    broken = acme_softphone_missing:Plugin
"""


def _install_plugin_package(tmp_path: Path) -> Path:
    """Build the package with pip into a private target dir; a dist-info by hand if pip can't."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "acme_softphone.py").write_text(textwrap.dedent(PLUGIN_SOURCE.format(hz=PLUGIN_HZ)))
    (src / "setup.cfg").write_text(SETUP_CFG)
    (src / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--disable-pip-version-check", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if result.returncode != 0:  # offline pip without setuptools: install the same files by hand
        target.mkdir(exist_ok=True)
        (target / "acme_softphone.py").write_text((src / "acme_softphone.py").read_text())
        dist = target / "acme_softphone_plugin-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-softphone-plugin\n")
        entry_points = SETUP_CFG.split("[options.entry_points]")[1].replace("softphone =", "")
        (dist / "entry_points.txt").write_text(
            f"[{ENTRY_POINT_GROUP}]\n{textwrap.dedent(entry_points)}"
        )
    assert any(target.glob("acme_softphone_plugin-*.dist-info/entry_points.txt"))
    return target


@pytest.fixture
def acme_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The third-party package, importable and discoverable for this test only."""
    monkeypatch.syspath_prepend(str(_install_plugin_package(tmp_path)))
    importlib.invalidate_caches()
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    yield importlib.import_module("acme_softphone")
    sys.modules.pop("acme_softphone", None)


async def test_installed_entry_point_plugin_is_picked_up_and_used_in_a_call(
    acme_plugin: Any, make_device: DeviceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bob = await _bob(make_device)
    with caplog.at_level(logging.ERROR, logger="softphone.plugins"):
        alice = make_device("alice")
    assert "'broken'" in caplog.text  # a broken plugin is reported, not fatal
    plugin = alice.plugins.get_plugin("acme")
    assert isinstance(plugin, acme_plugin.ToneMic) and plugin.manager is alice.plugins
    assert alice.plugins.get_plugin("broken") is None
    assert alice.audio is not None
    assert alice.audio.available_input_devices["acme:mic"].label == "ACME test mic"
    await alice.audio.set_input_device("acme:mic")
    call, _ = await open_call(alice, bob)
    assert detect_tone(await bob.recent(), PLUGIN_HZ)
    # softphone_remote_audio got each call (bob's device loaded the plugin too) and its audio
    taps = {id(c): t for c, t in acme_plugin.TAPS}
    assert set(taps) == {id(call), id(bob.calls[0])}
    tap = taps[id(call)]
    assert detect_tone(await recent(tap), BOB_HZ)
    call.disconnect()
    assert tap.closed

    other = SoftphonePluginManager()  # each manager gets its own instance
    assert other.get_plugin("acme") is not plugin
    monkeypatch_env = pytest.MonkeyPatch()
    monkeypatch_env.setenv(AUTOLOAD_ENV, "1")
    try:
        assert SoftphonePluginManager().get_plugin("acme") is None
    finally:
        monkeypatch_env.undo()


# -- DeviceOptions overrides, as plugins, in real calls ----------------------------------------
async def test_get_user_media_override_feeds_the_call(make_device: DeviceFactory) -> None:
    bob = await _bob(make_device)
    seen: list[dict[str, Any]] = []

    async def get_user_media(constraints: dict[str, Any]) -> AudioSource:
        seen.append(constraints)
        return ToneSource([ALICE_HZ])

    alice = make_device("alice", getUserMedia=get_user_media)
    call, _ = await open_call(alice, bob)
    assert detect_tone(await bob.recent(), ALICE_HZ)
    assert seen == [{"audio": True}]
    call.disconnect()
    await eventually(lambda: alice.active_call is None and not bob.device.is_busy)

    def refuse(constraints: dict[str, Any]) -> AudioSource:
        raise PermissionError("the user said no")

    alice.update_options({"get_user_media": refuse})  # read at call time
    call = await alice.connect(params={"To": "client:bob"})
    log = EventLog(call, "error", "disconnect")
    (error,) = await log.wait_for("error")
    assert error.code == 31401 and "the user said no" in error.message


async def test_enumerate_devices_override_replaces_the_device_list(
    make_device: DeviceFactory,
) -> None:
    bob = await _bob(make_device)
    opened: list[str | None] = []

    async def enumerate_devices() -> list[dict[str, str]]:
        return [
            {"deviceId": "js-mic", "kind": "audioinput", "label": "", "groupId": "js"},
            {"deviceId": "js-cam", "kind": "videoinput", "label": "Cam", "groupId": "js"},
        ]

    def get_user_media(constraints: dict[str, Any]) -> AudioSource:
        opened.append(device_id_from_constraints(constraints))
        return ToneSource([ALICE_HZ])

    alice = make_device("alice", enumerateDevices=enumerate_devices, getUserMedia=get_user_media)
    assert alice.audio is not None
    outputs = await alice.audio.refresh_devices()
    assert outputs == {}  # the override replaces every backend's devices
    assert list(alice.audio.available_input_devices) == ["js-mic"]
    assert alice.audio.available_input_devices["js-mic"].label == "Unknown Audio Input Device 1"
    await alice.audio.set_input_device("js-mic")
    assert opened == ["js-mic"]
    call, _ = await open_call(alice, bob)
    assert detect_tone(await bob.recent(), ALICE_HZ)
    call.disconnect()


async def test_rtc_peer_connection_override_and_a_plugin_build_the_media(
    make_device: DeviceFactory,
) -> None:
    bob = await _bob(make_device)
    made: list[str] = []

    class Wrapping:
        @hookimpl
        def softphone_create_peer_connection(self, configuration: dict[str, Any]) -> Any:
            made.append("plugin")
            return PeerConnection(ice_servers=configuration.get("iceServers"))

    def factory(configuration: dict[str, Any]) -> PeerConnection:
        made.append("override")
        return PeerConnection(ice_servers=configuration.get("iceServers"), dtmf=False)

    alice = make_device("alice", file_input_stream=ToneSource([ALICE_HZ]))
    alice.plugins.register(Wrapping())
    call, _ = await open_call(alice, bob)
    assert made == ["plugin"] and call.peer_connection is not None
    assert detect_tone(await bob.recent(), ALICE_HZ)
    call.disconnect()
    await eventually(lambda: alice.active_call is None and not bob.device.is_busy)

    alice.update_options({"RTCPeerConnection": factory})  # the JS option wins over plugins
    call, _ = await open_call(alice, bob)
    assert made == ["plugin", "override"]
    assert call.peer_connection is not None and not call.peer_connection.can_insert_dtmf
    assert detect_tone(await bob.recent(), ALICE_HZ)
    call.disconnect()


async def test_processor_and_remote_audio_hooks_from_a_plugin(make_device: DeviceFactory) -> None:
    bob = await _bob(make_device)
    taps: list[MemorySink] = []

    class Scrambler:
        """A plugin that processes the microphone (replaces it with a tone)."""

        def create_processed_stream(self, stream: AudioSource) -> AudioSource:
            tone = ToneSource([PLUGIN_HZ])

            class Out:
                def read(self, samples: int) -> Pcm:
                    stream.read(samples)
                    return tone.read(samples)

                def close(self) -> None:
                    pass

            return Out()

        def destroy_processed_stream(self, stream: AudioSource) -> None:
            pass

        @hookimpl
        def softphone_audio_processor(self, is_remote: bool) -> Any:
            return None if is_remote else self

        @hookimpl
        def softphone_remote_audio(self) -> AudioSink:
            taps.append(MemorySink())
            return taps[-1]

    alice = make_device("alice", getUserMedia=lambda c: ToneSource([ALICE_HZ]))
    alice.plugins.register(Scrambler())
    call, _ = await open_call(alice, bob)
    heard = await bob.recent()
    assert detect_tone(heard, PLUGIN_HZ) and not detect_tone(heard, ALICE_HZ)
    assert len(taps) == 1 and detect_tone(await recent(taps[0]), BOB_HZ)
    call.disconnect()


def test_manager_is_a_pluggy_manager_per_device(make_device: DeviceFactory) -> None:
    alice, bob = make_device("alice"), make_device("bob")
    assert isinstance(alice.plugins, pluggy.PluginManager)
    assert alice.plugins is not bob.plugins
    names = {name for name, _ in alice.plugins.list_name_plugin()}
    assert {
        "softphone.default",
        "softphone.aiortc",
        "softphone.portaudio",
        "softphone.null",
        "softphone.tone",
        "softphone.memory",
        "softphone.file",
        "softphone.override.get_user_media",
        "softphone.override.enumerate_devices",
        "softphone.override.rtc_peer_connection",
    } <= names

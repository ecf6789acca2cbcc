"""The public API as a user meets it: ``from softphone import ...``, typed, documented.

* every name in ``softphone.__all__`` resolves, and importing the package alone stays
  cheap (the names load on first use);
* a wheel built from the repository carries ``py.typed``, and a user script importing
  from ``softphone`` passes ``mypy --strict`` against that wheel, while a script that
  misuses the API is reported (so the types are really seen, not ``Any``);
* ``help(Device)`` and ``help(Call)`` show every public property, option and event;
* ``call.codec`` takes the values of JS ``Call.Codec`` from the moment the call opens.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pydoc
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

import softphone
from softphone import Call, Codec, Device, DeviceOptions, ToneSource

ROOT = Path(__file__).resolve().parent.parent

USER_SCRIPT = '''
"""A user's script: every import comes from the top-level package."""

import asyncio

from softphone import (
    Call,
    CallState,
    Codec,
    Device,
    DeviceOptions,
    FileSink,
    GeneralErrors,
    InvalidStateError,
    MemorySink,
    PreflightTest,
    RTCSample,
    ToneSource,
    TwilioError,
    client_ssl_context,
)


async def place_call(token: str, url: str) -> str:
    options = DeviceOptions(chunderw=url, codec_preferences=("opus", "pcmu"))
    device = Device(token, options, file_input_stream=ToneSource([440.0]))
    heard = MemorySink()

    def on_accept(call: Call) -> None:
        remote = call.get_remote_stream()
        if remote is not None:
            remote.add_sink(heard)
            remote.add_sink(FileSink("heard.wav"))

    def on_sample(sample: RTCSample) -> None:
        print(sample.mos)

    try:
        call = await device.connect(params={"To": "echo"})
    except TwilioError as error:
        return f"{error.code} {error.message}"
    except InvalidStateError:
        return "busy"
    call.on("accept", on_accept)
    call.on("sample", on_sample)
    await call.wait_for("accept", timeout=10)
    codec: str = call.codec
    if codec == Codec.OPUS and call.status() is CallState.OPEN:
        call.send_digits("123#")
    call.disconnect()
    await device.destroy()
    return codec


def preflight(token: str) -> PreflightTest:
    return Device.run_preflight(token, {"chunderw": "ws://127.0.0.1:1/signal"})


context = client_ssl_context(None)
error: TwilioError = GeneralErrors.ConnectionError("down")
print(asyncio.run(place_call("token", "ws://127.0.0.1:9/signal")), error.code, context)
'''

MISUSE_SCRIPT = """
from softphone import Device


async def main() -> None:
    device = Device("token")
    call = await device.connect(params=5)
    call.send_digits(1234)
    name: int = device.state
"""


def _has(tool: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {tool}"]).returncode == 0


# -- the names ---------------------------------------------------------------------------
def test_every_public_name_resolves_and_is_listed() -> None:
    for name in softphone.__all__:
        assert getattr(softphone, name) is not None, name
    assert "Device" in dir(softphone)
    with pytest.raises(AttributeError):
        _ = softphone.Devise  # type: ignore[attr-defined]


def test_public_names_are_the_objects_of_their_home_modules() -> None:
    import softphone.core.call as call_module
    import softphone.core.device as device_module
    import softphone.core.errors as errors_module

    assert softphone.Device is device_module.Device
    assert softphone.Call is call_module.Call
    assert softphone.TwilioError is errors_module.TwilioError
    assert softphone.Codec is call_module.Codec is Call.Codec


def test_importing_the_package_does_not_load_the_media_stack() -> None:
    code = (
        "import sys, softphone, softphone.signaling.codes\n"
        "assert 'aiortc' not in sys.modules, 'aiortc loaded by import softphone'\n"
        "from softphone import Device\n"
        "assert 'aiortc' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# -- the wheel and the types -------------------------------------------------------------
@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the repository's package files (no build/ left behind)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    if (ROOT / "LICENSE").exists():
        shutil.copy(ROOT / "LICENSE", source / "LICENSE")
    shutil.copytree(
        ROOT / "softphone", source / "softphone", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("softphone-*.whl")
    return built


def test_the_wheel_contains_py_typed(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "softphone/py.typed" in names
    assert "softphone/__init__.py" in names and "softphone/core/device.py" in names


@pytest.fixture(scope="module")
def installed_wheel(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel unpacked into its own directory, as pip installs it for a user."""
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def _mypy_strict(script: str, site: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` on ``script`` with ``site`` (the installed wheel) on the path.

    mypy finds ``softphone`` there as an installed package, so PEP 561 applies: without
    ``py.typed`` it would refuse to analyse it."""
    path = workdir / "user_script.py"
    path.write_text(textwrap.dedent(script))
    env = {**os.environ, "PYTHONPATH": str(site)}
    cache = ["--cache-dir", str(workdir / ".mypy_cache")]
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *cache, str(path)],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        timeout=600,
    )


@pytest.mark.skipif(not _has("mypy"), reason="mypy is not installed (the test extra has it)")
def test_a_user_script_type_checks_with_mypy_strict(installed_wheel: Path, tmp_path: Path) -> None:
    assert (installed_wheel / "softphone" / "py.typed").exists()
    result = _mypy_strict(USER_SCRIPT, installed_wheel, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


@pytest.mark.skipif(not _has("mypy"), reason="mypy is not installed (the test extra has it)")
def test_mypy_reports_misuse_of_the_api(installed_wheel: Path, tmp_path: Path) -> None:
    result = _mypy_strict(MISUSE_SCRIPT, installed_wheel, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert 'Argument "params" to "connect" of "Device" has incompatible type "int"' in out, out
    assert 'Argument 1 to "send_digits" of "Call" has incompatible type "int"' in out, out
    assert "Incompatible types in assignment" in out, out
    assert "py.typed" not in out, out


# -- help() --------------------------------------------------------------------------------
def _assert_members_documented(cls: type, text: str) -> None:
    """Every public property and method of ``cls`` has a docstring that ``text`` shows."""
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or not (callable(member) or isinstance(member, property)):
            continue
        if inspect.isclass(member):
            continue
        doc = inspect.getdoc(member)
        assert doc, f"{cls.__name__}.{name} has no docstring"
        first_words = " ".join(doc.split()[:6])
        assert first_words in " ".join(text.split()), f"help() lacks {cls.__name__}.{name}"


DEVICE_EVENTS = (
    "error",
    "incoming",
    "destroyed",
    "unregistered",
    "registering",
    "registered",
    "tokenWillExpire",
)
CALL_EVENTS = (
    "accept",
    "audio",
    "cancel",
    "disconnect",
    "dtmf",
    "error",
    "messageReceived",
    "messageSent",
    "mute",
    "reconnected",
    "reconnecting",
    "reject",
    "ringing",
    "sample",
    "transportClose",
    "volume",
    "warning",
    "warning-cleared",
)
DEVICE_INSTANCE_ATTRIBUTES = ("audio", "plugins", "publisher", "sounds")
CALL_INSTANCE_ATTRIBUTES = (
    "codec",
    "custom_parameters",
    "direction",
    "feedback",
    "ice_restarts",
    "outbound_connection_id",
    "parameters",
)


def test_help_device_shows_every_property_option_and_event() -> None:
    text = pydoc.render_doc(Device, renderer=pydoc.plaintext)
    _assert_members_documented(Device, text)
    for field in attrs.fields(DeviceOptions):
        assert f"``{field.name}``" in (Device.__doc__ or ""), f"option {field.name}"
        assert field.name in text
    for event in DEVICE_EVENTS:
        assert f"``{event}``" in (Device.__doc__ or ""), f"event {event}"
    for attribute in DEVICE_INSTANCE_ATTRIBUTES:
        assert f"``{attribute}``" in (Device.__doc__ or ""), attribute


def test_help_call_shows_every_property_and_event() -> None:
    text = pydoc.render_doc(Call, renderer=pydoc.plaintext)
    _assert_members_documented(Call, text)
    for event in CALL_EVENTS:
        assert f"``{event}``" in (Call.__doc__ or ""), f"event {event}"
    for attribute in CALL_INSTANCE_ATTRIBUTES:
        assert f"``{attribute}``" in (Call.__doc__ or ""), attribute


def test_every_public_method_and_property_has_a_docstring() -> None:
    from softphone import AudioHelper, DeviceOptions, PreflightTest, TwilioError

    missing = []
    for cls in (Device, Call, AudioHelper, PreflightTest, DeviceOptions, TwilioError):
        assert cls.__doc__, cls
        for name, member in inspect.getmembers(cls):
            if name.startswith("_") or inspect.isclass(member):
                continue
            is_api = callable(member) or isinstance(member, property)
            if is_api and not inspect.getdoc(member):
                missing.append(f"{cls.__name__}.{name}")
    assert not missing, missing


# -- call.codec ----------------------------------------------------------------------------
@pytest.mark.parametrize("prefs", [("pcmu", "opus"), ("opus", "pcmu")])
async def test_call_codec_is_a_js_call_codec_value_from_accept_on(
    make_device: Callable[..., Device], prefs: tuple[str, str]
) -> None:
    """JS ``Call.Codec`` is ``opus`` / ``pcmu``: ``call.codec`` uses those spellings at
    ``accept`` already, not only after the first ``sample``."""
    device = make_device("alice", codec_preferences=prefs, file_input_stream=ToneSource([500]))
    call = await device.connect(params={"To": "echo"})
    codecs_at_accept: list[str] = []
    call.on("accept", lambda c: codecs_at_accept.append(c.codec))
    await call.wait_for("accept", timeout=15)
    assert codecs_at_accept == [prefs[0]]
    assert Codec(call.codec) is Codec(prefs[0])
    await call.wait_for("sample", timeout=5)
    assert call.codec == prefs[0]
    call.disconnect()
    await asyncio.sleep(0)


# -- logging -------------------------------------------------------------------------------
def test_the_library_never_configures_logging() -> None:
    """Importing every module and running a Device adds no handler anywhere: logging is
    the application's to configure (the ``softphone`` command does, in its own code)."""
    code = """
import asyncio, importlib, logging, pkgutil
import softphone

for info in pkgutil.walk_packages(softphone.__path__, "softphone."):
    importlib.import_module(info.name)

async def main():
    from softphone import Device
    device = Device("not-a-token", chunderw="ws://127.0.0.1:9/signal", log_level="debug")
    await device.destroy()

asyncio.run(main())
handlers = {name: logging.getLogger(name).handlers for name in ("", "softphone")}
assert handlers == {"": [], "softphone": []}, handlers
assert logging.getLogger("softphone").level == logging.DEBUG  # log_level sets the level only
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

"""Test helpers for driving the official JS SDK in Chromium (``tests/browser/runner.mjs``).

* :func:`private_loopback_netns` moves the calling thread (the test's event loop) into a
  fresh network namespace with only ``lo`` up, so the gateway, our Python device and the
  browser all live on a loopback that has nothing behind it: Chrome's ICE (which otherwise
  gathers every interface) and its mDNS/DNS chatter cannot reach any other address.
* :class:`BrowserRunner` starts the Node runner and calls ``window.harness`` functions in
  the page over its JSON-lines stdin/stdout protocol.
* :func:`browser_unavailable` says why the browser tests cannot run here (or None).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import itertools
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BROWSER_DIR = Path(__file__).parent / "browser"
SDK_BUNDLE = BROWSER_DIR / "node_modules" / "@twilio" / "voice-sdk" / "dist" / "twilio.min.js"
PLAYWRIGHT = BROWSER_DIR / "node_modules" / "playwright-core" / "package.json"
CHROMIUM = os.environ.get("SOFTPHONE_CHROMIUM", "/usr/bin/chromium")

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def browser_unavailable() -> str | None:
    """Why the real-browser tests cannot run on this machine, or None when they can."""
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    if shutil.which("node") is None:
        return "node not found (apt-get install nodejs npm)"
    if not SDK_BUNDLE.exists() or not PLAYWRIGHT.exists():
        return "JS harness not installed: run `npm ci --prefix tests/browser`"
    if not _can_unshare_net():
        return (
            "cannot create a private network namespace (needs root or CAP_SYS_ADMIN); "
            "without one Chrome's ICE would use non-loopback interfaces"
        )
    return None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _can_unshare_net() -> bool:
    """Probe with util-linux ``unshare`` in a child, so this process stays untouched."""
    tool = shutil.which("unshare")
    if tool is None:
        return False
    probe = subprocess.run([tool, "--net", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def _bring_loopback_up() -> None:
    """``ip link set lo up`` in the current network namespace, via ioctl."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


@contextlib.contextmanager
def private_loopback_netns() -> Iterator[None]:
    """Run the body with the calling thread in a new network namespace (only ``lo``, up).

    Network namespaces are per thread: sockets the thread opens and processes it starts
    (the browser, the runner) live in the new namespace; other threads are unaffected.
    On exit the thread returns to its original namespace (sockets opened inside stay
    inside and die with their owners).
    """
    libc = _libc()
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(_CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"unshare(CLONE_NEWNET): {os.strerror(code)}")
        try:
            _bring_loopback_up()
            yield
        finally:
            if libc.setns(original, _CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"setns back to the original netns: {os.strerror(code)}")
    finally:
        os.close(original)


def non_loopback_interfaces() -> list[str]:
    """Names of the interfaces that are up and are not ``lo`` (empty inside our netns)."""
    names = []
    for _, name in socket.if_nameindex():
        if name == "lo":
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                raw = fcntl.ioctl(sock, _SIOCGIFFLAGS, struct.pack("16sH14x", name.encode(), 0))
            except OSError as exc:
                if exc.errno == errno.ENODEV:
                    continue
                raise
        if struct.unpack("16sH14x", raw)[1] & _IFF_UP:
            names.append(name)
    return names


def write_tone_wav(path: Path, hz: float, seconds: float = 2.0, rate: int = 48000) -> Path:
    """A mono 16-bit PCM WAV of a continuous ``hz`` sine at -6 dBFS (Chrome loops it).

    The length is a whole number of periods so the loop point makes no click.
    """
    periods = max(1, round(hz * seconds))
    frames = round(periods * rate / hz)
    amplitude = 0.5 * 32767
    samples = (int(amplitude * math.sin(2 * math.pi * hz * n / rate)) for n in range(frames))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


class BrowserError(RuntimeError):
    """A harness call failed in the page (the message is the page's error)."""


class BrowserRunner:
    """One Chromium with the JS SDK page, driven over the runner's JSON lines.

    ``await runner.call("register")`` runs ``window.harness.register()`` in the page and
    returns its result. Calls may overlap (each has an id). ``stderr`` lines (page
    console, runner errors) are kept in :attr:`log` for failure messages.
    """

    def __init__(self, *, fake_audio: Path | None = None) -> None:
        self.fake_audio = fake_audio
        self.process: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self.ready: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._ready_future: asyncio.Future[dict[str, Any]] | None = None

    async def start(self, timeout: float = 60.0) -> BrowserRunner:
        """Launch node + Chromium and wait for the page to have loaded the SDK."""
        args = [str(BROWSER_DIR / "runner.mjs"), "--chromium", CHROMIUM]
        if self.fake_audio is not None:
            args += ["--fake-audio", str(self.fake_audio)]
        node = shutil.which("node") or "node"
        self.process = await asyncio.create_subprocess_exec(
            node,
            *args,
            cwd=BROWSER_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=2**22,
        )
        self._ready_future = asyncio.get_running_loop().create_future()
        self._readers = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]
        try:
            self.ready = await asyncio.wait_for(asyncio.shield(self._ready_future), timeout)
        except (TimeoutError, BrowserError):
            await self.close()
            raise
        return self

    async def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                self.log.append(f"[stdout] {line}")
                continue
            if message.get("ready") and self._ready_future and not self._ready_future.done():
                self._ready_future.set_result(message)
                continue
            future = self._pending.pop(message.get("id"), None)
            if future is None or future.done():
                continue
            if message.get("ok"):
                future.set_result(message.get("result"))
            else:
                future.set_exception(BrowserError(message.get("error", "unknown error")))
        gone = BrowserError("runner exited:\n" + self.tail())
        if self._ready_future and not self._ready_future.done():
            self._ready_future.set_exception(gone)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(gone)
        self._pending.clear()

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            self.log.append(raw.decode(errors="replace").rstrip())

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` of the runner's stderr (page console included)."""
        return "\n".join(self.log[-lines:])

    async def call(self, fn: str, *args: Any, timeout: float = 20.0) -> Any:
        """Run ``window.harness[fn](*args)`` in the page and return its (JSON) result."""
        if self.process is None or self.process.stdin is None:
            raise BrowserError("runner not started")
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        line = json.dumps({"id": call_id, "fn": fn, "args": list(args)}) + "\n"
        self.process.stdin.write(line.encode())
        await self.process.stdin.drain()
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._pending.pop(call_id, None)
            raise BrowserError(f"{fn}{args} timed out after {timeout} s\n{self.tail()}") from None

    async def wait_event(
        self,
        name: str,
        *,
        source: str | None = None,
        call: int | None = None,
        count: int = 1,
        timeout: float = 20.0,
    ) -> dict[str, Any]:
        """Wait in the page for the ``count``-th Device/Call event called ``name``."""
        want: dict[str, Any] = {"name": name}
        if source is not None:
            want["source"] = source
        if call is not None:
            want["call"] = call
        result: dict[str, Any] = await self.call(
            "waitEvent", want, count, int(timeout * 1000), timeout=timeout + 5
        )
        return result

    async def events(self) -> list[dict[str, Any]]:
        """Every Device/Call event the page recorded so far, in order."""
        result: list[dict[str, Any]] = await self.call("events")
        return result

    async def close(self) -> None:
        """Ask the runner to close Chromium, then make sure the process is gone."""
        process = self.process
        if process is None:
            return
        if process.returncode is None and process.stdin is not None:
            with contextlib.suppress(BrowserError, TimeoutError, ConnectionError):
                await self.call("close", timeout=10)
            with contextlib.suppress(ConnectionError):
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        for task in self._readers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.process = None

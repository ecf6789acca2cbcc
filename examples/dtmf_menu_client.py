"""DTMF menu client: find your way through a phone menu by pressing keys.

The client calls a menu (``--to``), listens to what it says, presses the keys of
``--keys`` one at a time with ``call.send_digits`` (RFC 4733 events, as a phone's
keypad sends them; ``w`` waits half a second) and reports what it hears after each
key. Run alone, the example also starts the menu it calls: a second Device
registered as ``menu`` that answers with a tone per menu page (440 Hz: main menu,
660 Hz: sales, 880 Hz: support), hears the keys as ``dtmf`` events, switches page
on ``1``, ``2`` and ``0`` (back) and hangs up on ``#``; the client then checks it
reached every page it asked for. With ``--gateway`` the client calls any menu, for
example a TwiML ``<Gather>`` application, and prints the main frequency it hears.

    python examples/dtmf_menu_client.py
    python examples/dtmf_menu_client.py --gateway wss://127.0.0.1:9443 \\
        --token "$(softphone token --identity alice)" --to client:menu --keys 12#
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from _common import Setup, add_gateway_arguments, gateway_setup

from softphone import Call, Device, MemorySink, Pcm, ToneSource
from softphone.audio_backends.analysis import dominant_frequency

PAGES = {"main": 440.0, "sales": 660.0, "support": 880.0}
"""What each menu page sounds like."""
KEYS = {"1": "sales", "2": "support", "0": "main"}
"""Which page each key opens (``#`` hangs up)."""


class MenuVoice:
    """An ``AudioSource`` whose tone follows the page the caller is on."""

    def __init__(self) -> None:
        self.page = "main"
        self._tone = ToneSource([PAGES["main"]])

    def show(self, page: str) -> None:
        """Switch to ``page`` from the next 20 ms frame on."""
        self.page = page
        self._tone = ToneSource([PAGES[page]])

    def read(self, samples: int) -> Pcm:
        """The next ``samples`` of the current page's tone."""
        return self._tone.read(samples)

    def close(self) -> None:
        """Nothing to release."""
        self._tone.close()


class Menu:
    """The demo menu: answers each call on ``device`` with a :class:`MenuVoice` that the
    caller's keys drive (one call at a time)."""

    def __init__(self, device: Device) -> None:
        self.voice: MenuVoice | None = None
        device.update_options({"get_user_media": self.new_voice})
        device.on("incoming", self.on_incoming)

    def new_voice(self, constraints: dict[str, Any]) -> MenuVoice:
        """The ``get_user_media`` option: each answered call gets its own voice."""
        self.voice = MenuVoice()
        return self.voice

    def on_incoming(self, call: Call) -> None:
        call.on("dtmf", lambda digit: self.on_key(call, digit))
        call.accept()

    def on_key(self, call: Call, digit: str) -> None:
        """A key the caller pressed, received as an RFC 4733 event (``dtmf``)."""
        if digit == "#":
            print("menu    # pressed: goodbye", flush=True)
            call.disconnect()
        elif digit in KEYS and self.voice is not None:
            self.voice.show(KEYS[digit])
            print(f"menu    {digit} pressed: page {self.voice.page}", flush=True)


async def listen(heard: MemorySink, seconds: float = 0.5) -> float:
    """The main frequency of the next ``seconds`` of audio heard."""
    start = heard.samples_written
    while heard.samples_written - start < int(48_000 * seconds):
        await asyncio.sleep(0.05)
    return dominant_frequency(heard.pcm()[-int(48_000 * seconds) :])


def page_of(hz: float) -> str | None:
    """The menu page whose tone is ``hz``, if any."""
    return next((page for page, tone in PAGES.items() if abs(tone - hz) < 10), None)


async def use_menu(setup: Setup, to: str, keys: str) -> bool:
    """Call the menu, press ``keys``; True when every page heard is the one expected."""
    heard = MemorySink()
    ok = True
    async with Device(setup.token("alice"), setup.device_options()) as client:
        call = await client.connect(params={"To": to})
        call.on("accept", lambda c: c.get_remote_stream().add_sink(heard))
        await call.wait_for("accept", timeout=20)
        await asyncio.sleep(0.5)  # the first packets carry the start of the greeting
        hz = await listen(heard)
        print(f"client  call answered; hearing {hz:6.1f} Hz ({page_of(hz)})", flush=True)
        ok = page_of(hz) == "main" or not setup.embedded
        for key in keys:
            if call.status() == "closed":
                break
            if key == "#":
                call.send_digits(key)
                await call.wait_for("disconnect", timeout=10)
                print("client  pressed # and the menu hung up", flush=True)
                break
            call.send_digits(key)
            if key == "w":
                continue
            await asyncio.sleep(0.4)  # the key's tone, then the menu's answer on its way
            hz = await listen(heard)
            page = page_of(hz)
            print(f"client  pressed {key}; hearing {hz:6.1f} Hz ({page})", flush=True)
            if setup.embedded and page != KEYS.get(key):
                ok = False
        else:
            call.disconnect()
    return ok and call.status() == "closed"


async def run(args: argparse.Namespace) -> int:
    async with gateway_setup(args) as setup:
        if not setup.embedded:
            await use_menu(setup, args.to, args.keys)
            return 0
        async with Device(setup.token("menu"), setup.device_options()) as menu:
            Menu(menu)
            await menu.register()
            ok = await use_menu(setup, args.to, args.keys)
    print("result  " + ("OK" if ok else "FAILED: a key did not lead where it should"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", default="client:menu", help="the menu to call")
    parser.add_argument("--keys", default="120#", help="keys to press in order (w: pause)")
    add_gateway_arguments(parser)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

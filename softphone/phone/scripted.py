"""``softphone phone --call …`` / ``--answer``: one call, no UI, for automation and CI.

The runner places (or waits for and answers) one call, sends ``--digits`` once it
connects, hangs up after ``--hangup-after`` seconds (or when the far end does),
prints a timestamped transcript on stdout and returns the exit status: 0 when the
call connected and ended cleanly, 1 with the reason on stderr otherwise (not
registered, not answered, refused, an error during the call), 2 for settings that
cannot work (bad audio choice, PortAudio missing), 130 when interrupted before a
call connected. Ctrl-C or SIGTERM during a connected call hangs it up cleanly.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

from softphone.cli_common import CliError
from softphone.phone.connection import open_phone
from softphone.phone.controller import PhoneController
from softphone.phone.session import CallRecord, Note, PhoneSession
from softphone.phone.settings import PhoneSettings

__all__ = ["run_scripted"]

ENDING_TIMEOUT_S = 10.0
"""Longest wait for a call to close after hanging it up."""
CANCEL_RETRY_S = 0.1
"""How soon an interruption is delivered again if the script did not take it."""
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Failure(Exception):
    """The scripted call failed; the message says why (exit status 1)."""


async def run_scripted(
    settings: PhoneSettings,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run the scripted call of ``settings``; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    identity = settings.identity if settings.url is None else None
    session = PhoneSession(clock(), identity=identity)
    session.on_note(lambda note: _print_note(out, session, note))
    try:
        async with open_phone(settings, session, clock) as controller:
            session.note(
                f"input: {settings.input.describe()}; output: {settings.output.describe()}",
                clock(),
            )
            record = await _interruptible(controller, _script(controller, settings))
    except CliError as exc:
        print(f"softphone phone: {exc}", file=err, flush=True)
        return EXIT_USAGE
    except _Failure as exc:
        print(f"result: FAILED: {exc}", file=out, flush=True)
        print(f"softphone phone: {exc}", file=err, flush=True)
        return EXIT_FAILED
    except asyncio.CancelledError:
        print("result: FAILED: interrupted", file=out, flush=True)
        print("softphone phone: interrupted before a call connected", file=err, flush=True)
        return EXIT_INTERRUPTED
    print(f"result: {'OK' if record.ok else 'FAILED'}: {_result(record)}", file=out, flush=True)
    if not record.ok:
        print(f"softphone phone: {_why(record)}", file=err, flush=True)
        return EXIT_FAILED
    return EXIT_OK


async def _interruptible(
    controller: PhoneController, script: Coroutine[Any, Any, CallRecord]
) -> CallRecord:
    """Run ``script``; SIGINT/SIGTERM hang up a connected call, or cancel the wait.

    The cancellation is repeated until it takes: Python 3.11's ``asyncio.wait_for``
    drops one that arrives just as the awaited step completes (a registration that
    has just been confirmed, say), and an interrupted phone must never wait on.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(script)
    interrupted = asyncio.Event()

    def on_signal() -> None:
        record = controller.session.current
        if record is not None and record.connected_at is not None:
            controller.hangup()
        else:
            interrupted.set()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    stop = asyncio.ensure_future(interrupted.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_RETRY_S)
        return task.result()
    finally:
        stop.cancel()
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _script(controller: PhoneController, settings: PhoneSettings) -> CallRecord:
    session = controller.session
    timeout = settings.timeout
    if settings.answer:
        if not await controller.register():
            raise _Failure(f"registration failed: {session.registration_error}")
        try:
            await asyncio.wait_for(controller.wait_incoming(), timeout)
        except TimeoutError:
            raise _Failure(f"no call came in within {timeout:g} s") from None
        controller.accept()
    else:
        assert settings.call is not None
        await controller.dial(settings.call)
    try:
        connected = await asyncio.wait_for(controller.wait_connected(), timeout)
    except TimeoutError:
        controller.hangup()
        await _ended(controller)
        raise _Failure(f"the call did not connect within {timeout:g} s") from None
    if connected:
        if settings.digits:
            controller.send_digits(settings.digits)
        if settings.hangup_after is not None:
            try:
                await asyncio.wait_for(controller.wait_ended(), settings.hangup_after)
            except TimeoutError:
                controller.hangup()
    await _ended(controller)
    return session.log[-1]


async def _ended(controller: PhoneController) -> None:
    try:
        await asyncio.wait_for(controller.wait_ended(), ENDING_TIMEOUT_S)
    except TimeoutError:
        raise _Failure(f"the call did not end within {ENDING_TIMEOUT_S:g} s") from None


def _print_note(out: TextIO, session: PhoneSession, note: Note) -> None:
    print(f"[{note.at - session.started_at:6.2f}s] {note.text}", file=out, flush=True)


def _result(record: CallRecord) -> str:
    """The result line: the call's summary plus what travelled."""
    parts = [record.summary()]
    if record.digits_sent:
        parts.append(f"sent DTMF {record.digits_sent}")
    if record.digits_received:
        parts.append(f"received DTMF {record.digits_received}")
    if record.connected_at is not None:
        parts.append(f"peak levels sent {record.input_peak:.2f}, heard {record.output_peak:.2f}")
    if record.warnings:
        parts.append("quality warnings: " + ", ".join(record.warnings))
    return "; ".join(parts)


def _why(record: CallRecord) -> str:
    """Why a scripted call failed, in one line."""
    if record.reason:
        return record.reason
    return f"the call was {record.outcome}"

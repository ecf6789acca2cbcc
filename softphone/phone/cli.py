"""``softphone phone``: the argument parser and what each mode runs.

Interactive (the default) opens the Textual UI; ``--call`` or ``--answer`` runs one
scripted call without UI (see :mod:`softphone.phone.scripted`). Settings that
cannot work are refused here in one line with exit status 2, before any gateway
or Device is started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
from pathlib import Path

from softphone.cli_common import STATE_DIR, CliError, add_log_level, configure_logging
from softphone.phone.audio_specs import (
    INPUT_HELP,
    OUTPUT_HELP,
    InputSpec,
    OutputSpec,
    parse_input,
    parse_output,
)
from softphone.phone.settings import DEFAULT_IDENTITY, PhoneSettings
from softphone.phone.targets import TARGET_HELP, parse_target

__all__ = ["add_phone_parser", "settings_from_args"]

PROG = "softphone phone"
TEXTUAL_HINT = "the interactive phone needs Textual: pip install 'softphone[phone]'"


def add_phone_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``softphone phone`` on the ``softphone`` command's sub-parsers."""
    p = sub.add_parser(
        "phone",
        help="a terminal softphone: register, call, answer, DTMF, devices, call log",
        description=(
            "A softphone in the terminal on real devices (PortAudio): register, dial "
            "client:NAME, echo or numbers, answer or reject incoming calls, mute, DTMF from "
            "the keyboard, input/output pickers, live levels, quality warnings, a call log. "
            "With --call or --answer it runs one call without UI for automation and exits 0 "
            "when the call connected and ended cleanly. Without --url/--token it starts a "
            "local dev gateway on 127.0.0.1."
        ),
    )
    where = p.add_argument_group("gateway")
    where.add_argument("--url", help="signaling URL of the gateway (with --token)")
    where.add_argument("--token", help="access token for --url (see `softphone token`)")
    where.add_argument(
        "--identity",
        help=f"client name on the local dev gateway (default {DEFAULT_IDENTITY}; with --url "
        "the token names it)",
    )
    where.add_argument(
        "--gateway-port",
        type=int,
        default=0,
        help="port of the local dev gateway (default: a free one)",
    )
    where.add_argument("--ca-file", help="trust this certificate (PEM) for wss:// and turns://")
    where.add_argument(
        "--ice-servers",
        metavar="JSON",
        help="iceServers as JSON, or @FILE: a list, or the Tokens.json response of the REST API",
    )
    where.add_argument(
        "--media-address",
        help="gather ICE candidates on this address only (e.g. 127.0.0.1 for a local gateway)",
    )
    script = p.add_argument_group("scripted call (no UI)")
    mode = script.add_mutually_exclusive_group()
    mode.add_argument("--call", metavar="TARGET", help=f"call TARGET: {TARGET_HELP}")
    mode.add_argument("--answer", action="store_true", help="wait for one incoming call, answer")
    script.add_argument("--digits", metavar="D", help="DTMF to send once connected (0-9 * # w)")
    script.add_argument(
        "--hangup-after",
        type=float,
        metavar="SECONDS",
        help="hang up this long after connecting (default: when the far end does)",
    )
    script.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="longest wait for the call to come in and connect (default 60)",
    )
    audio = p.add_argument_group("audio")
    audio.add_argument(
        "--input",
        help=f"what to send: {INPUT_HELP} (default: null when scripted, else the default "
        "sound card if there is one)",
    )
    audio.add_argument(
        "--output",
        help=f"where what you hear goes: {OUTPUT_HELP} (default: null when scripted, else "
        "the default sound card if there is one)",
    )
    audio.add_argument(
        "--list-devices", action="store_true", help="print the PortAudio devices and exit"
    )
    add_log_level(p, default="warn")
    p.add_argument(
        "--log-file",
        default=str(STATE_DIR / "phone.log"),
        help="where the interactive phone logs (default $SOFTPHONE_HOME/phone.log; scripted "
        "calls log to stderr)",
    )
    p.set_defaults(func=run_phone)


def run_phone(args: argparse.Namespace) -> int:
    """Run ``softphone phone`` with parsed ``args``; returns the exit status."""
    if args.list_devices:
        from softphone.phone.audio_setup import list_devices_text

        print(list_devices_text())
        return 0
    try:
        settings = settings_from_args(args)
    except CliError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if settings.scripted:
        from softphone.phone.scripted import run_scripted

        configure_logging(args.log_level)
        return asyncio.run(run_scripted(settings))
    return _run_interactive(settings, args.log_file)


def _run_interactive(settings: PhoneSettings, log_file: str) -> int:
    try:
        from softphone.phone.app import run_app
    except ImportError as exc:
        print(f"{PROG}: {TEXTUAL_HINT} ({exc})", file=sys.stderr)
        return 2
    from softphone.core.log import to_logging_level

    try:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(
            level=to_logging_level(settings.log_level),
            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
            filename=log_file,
        )
    except OSError as exc:
        print(f"{PROG}: cannot log to {log_file}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_app(settings))
    except CliError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2


def settings_from_args(args: argparse.Namespace) -> PhoneSettings:
    """Check the arguments and turn them into settings; ``CliError`` says what is wrong."""
    from softphone.core.call import VALID_DIGITS
    from softphone.gateway.tokens import identity_problem
    from softphone.preflight import load_ice_servers

    if bool(args.url) != bool(args.token):
        raise CliError("give both --url and --token, or neither (a local dev gateway)")
    if args.url and args.identity:
        raise CliError("--identity is for the local dev gateway: with --url the token names it")
    identity = args.identity or DEFAULT_IDENTITY
    problem = identity_problem(identity)
    if problem is not None:
        raise CliError(f"--identity: {problem} (got {identity!r})")
    scripted = bool(args.call) or args.answer
    for flag, value in (("--digits", args.digits), ("--hangup-after", args.hangup_after)):
        if value is not None and not scripted:
            raise CliError(f"{flag} goes with --call or --answer")
    if args.digits is not None and (not args.digits or not VALID_DIGITS.match(args.digits)):
        raise CliError(f"--digits {args.digits!r}: use 0-9, *, # and w (a pause)")
    if args.hangup_after is not None and not args.hangup_after > 0:
        raise CliError("--hangup-after must be > 0 seconds")
    if not args.timeout > 0:
        raise CliError("--timeout must be > 0 seconds")
    try:
        target = parse_target(args.call) if args.call else None
        source = parse_input(args.input) if args.input else _default_input(scripted)
        sink = parse_output(args.output) if args.output else _default_output(scripted)
        ice_servers = load_ice_servers(args.ice_servers) if args.ice_servers else []
        context = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    _check_files(source, sink)
    if "portaudio" in (source.kind, sink.kind):
        from softphone.phone.audio_setup import require_portaudio

        require_portaudio()  # fail before any gateway or Device starts
    return PhoneSettings(
        url=args.url,
        token=args.token,
        identity=identity,
        gateway_port=args.gateway_port,
        ssl_context=context,
        ice_servers=ice_servers,
        media_address=args.media_address,
        input=source,
        output=sink,
        sounds=not scripted,
        log_level=args.log_level,
        call=target,
        answer=args.answer,
        digits=args.digits,
        hangup_after=args.hangup_after,
        timeout=args.timeout,
    )


def _check_files(source: InputSpec, sink: OutputSpec) -> None:
    """A file to play must exist, a recording's folder too: say so before anything starts."""
    if source.path is not None and not Path(source.path).is_file():
        raise CliError(f"--input file:{source.path}: no such file")
    if sink.path is not None and not Path(sink.path).absolute().parent.is_dir():
        raise CliError(f"--output file:{sink.path}: its folder does not exist")


def _has_default_card(kind: str) -> bool:
    from softphone.audio_backends import portaudio

    return any(
        d.device_id == portaudio.DEFAULT_DEVICE_ID and d.kind == kind
        for d in portaudio.list_devices()
    )


def _default_input(scripted: bool) -> InputSpec:
    """Scripted: silence. Interactive: the default sound card if there is one."""
    if not scripted and _has_default_card("audioinput"):
        return InputSpec("portaudio", device_id="portaudio:default")
    return InputSpec("null")


def _default_output(scripted: bool) -> OutputSpec:
    """Scripted: discard. Interactive: the default sound card if there is one."""
    if not scripted and _has_default_card("audiooutput"):
        return OutputSpec("portaudio", device_id="portaudio:default")
    return OutputSpec("null")

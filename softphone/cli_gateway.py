"""``softphone gateway``: serve /signal, the REST API and media legs from one process.

Every mistake on the command line is a one-line error with exit status 2; on start
the command prints where the certificate is and how clients trust it, where media
binds and which ports it uses, and where the REST API is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from softphone.cli_common import STATE_DIR, CliError, add_log_level, configure_logging
from softphone.version import __version__

DEFAULT_PORT = 9443
SUGGESTED_API_PORT = 9444


def add_gateway_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gateway",
        help="serve the signaling endpoint /signal (the role Twilio plays)",
        description=(
            "Serve the Twilio-compatible signaling protocol on /signal. Our SDK and the "
            "official JS SDK (with the `chunderw` option pointing here) can register and "
            "call each other through it. Calls run the TwiML application their token names "
            "(an application with a voice_url in --config gets signed webhooks), else the "
            "built-in routing (client:NAME, echo). The REST API (Calls, Recordings, Tokens) "
            "is served on the same port. TLS is on by default with a self-signed "
            "certificate made on first use; browsers must trust it or ignore errors."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--no-tls", action="store_true", help="serve plain ws:// (SDK tests only)")
    p.add_argument(
        "--cert",
        help="TLS certificate (PEM); with --key. Both absent: a self-signed pair is "
        f"generated at these paths (default {STATE_DIR}/gateway-cert.pem)",
    )
    p.add_argument("--key", help="TLS private key (PEM) of --cert; generated with it when absent")
    p.add_argument("--edge", default="loopback", help="edge name reported in `connected`")
    p.add_argument("--region", default="LOOPBACK", help="region reported in `connected`")
    p.add_argument("--home", default="loopback", help="home reported in `connected`")
    p.add_argument(
        "--config",
        help="accounts JSON file: accounts, API keys, auth tokens and TwiML applications "
        "(voice_url, voice_fallback_url, status_callback...) (else SOFTPHONE_API_KEY_* env, "
        "else the dev account)",
    )
    p.add_argument(
        "--allow-public-dev-account",
        action="store_true",
        help=(
            "serve on a non-loopback --host even though the development account's secret "
            "is public (anyone who reaches the gateway can then place calls)"
        ),
    )
    p.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop: uvloop (the optional extra softphone[uvloop]) forwards media "
        "with less CPU per call (benchmarks/README.md)",
    )
    _add_api_options(p)
    _add_media_options(p)
    _add_limit_options(p)
    _add_store_options(p)
    _add_cluster_options(p)
    add_log_level(p)
    p.set_defaults(func=_run_gateway)


def _add_api_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("REST API (what api.twilio.com is for Twilio's helper libraries)")
    group.add_argument(
        "--api-port",
        type=int,
        metavar="PORT",
        help="the REST API is served on the gateway's own port beside /signal (same TLS); "
        f"this also serves it on a port of its own (e.g. {SUGGESTED_API_PORT}). It takes the "
        "insights our SDK publishes (named to clients in `connected`) and serves them per call",
    )
    group.add_argument(
        "--no-rest",
        action="store_true",
        help="serve no REST API at all (and take no insights)",
    )
    group.add_argument(
        "--media-dir",
        type=Path,
        metavar="DIR",
        help="folder of audio files TwiML <Play> may name as file:NAME",
    )
    group.add_argument(
        "--stun",
        action="append",
        default=[],
        metavar="URL",
        help="a stun: URL the Tokens resource hands out (repeatable)",
    )
    group.add_argument(
        "--turn",
        action="append",
        default=[],
        metavar="URL",
        help="a turn:/turns: URL (?transport=udp|tcp) of a TURN server using the REST-API "
        "shared secret scheme, e.g. coturn with use-auth-secret (repeatable)",
    )
    group.add_argument(
        "--turn-secret",
        default=os.environ.get("SOFTPHONE_TURN_SECRET"),
        metavar="SECRET",
        help="the TURN server's static-auth-secret (default $SOFTPHONE_TURN_SECRET)",
    )


def _add_media_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("media (the gateway's own call legs)")
    group.add_argument(
        "--media-bind",
        metavar="ADDR",
        help="local address media sockets bind (default: --host, or 127.0.0.1 when --host "
        "is a wildcard)",
    )
    group.add_argument(
        "--media-advertise",
        metavar="ADDR",
        help="address put in SDP instead of --media-bind, for 1:1 NAT (a cloud VM's public IP)",
    )
    group.add_argument(
        "--rtp-ports",
        metavar="LOW-HIGH",
        help="UDP port range of media sockets, for firewall rules (e.g. 10000-20000)",
    )
    group.add_argument(
        "--media-relay",
        action="store_true",
        help="gateway legs also gather relay candidates on the --turn servers (a gateway "
        "behind a NAT it cannot map)",
    )


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("cluster (several gateways sharing presence and calls)")
    group.add_argument(
        "--redis",
        metavar="URL",
        help="join the gateways sharing this Redis (redis://host:6379/0): a device "
        "registered on any of them can be called from all (needs softphone[redis])",
    )
    group.add_argument(
        "--gateway-id",
        metavar="ID",
        help="this gateway's id in the cluster (default: EDGE-<random>; with --workers, "
        "worker i is ID-w<i>, ID defaulting to EDGE)",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N gateway processes sharing --port (SO_REUSEPORT: the kernel spreads "
        "connections among them) and --redis, so one machine uses all its cores; needs "
        "--redis and a fixed --port, not --api-port. Each worker keeps its own call store, "
        "calls-w<i>.sqlite3 beside --db (SQLite wants one writer), or none with --no-db "
        "(default %(default)s)",
    )
    p.set_defaults(reuse_port=False)  # set for the workers of --workers N only


def _cluster_check(args: argparse.Namespace) -> None:
    """``--redis`` without the ``redis`` package fails before anything binds."""
    if args.redis is None:
        return
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        raise CliError("--redis needs the redis package: pip install 'softphone[redis]'") from None
    if not args.redis.startswith(("redis://", "rediss://", "unix://")):
        raise CliError(f"--redis must be a redis://, rediss:// or unix:// URL, got {args.redis!r}")


def _add_store_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("call store (the call history, kept across restarts)")
    group.add_argument(
        "--db",
        metavar="PATH",
        help="the SQLite file of the call history (default: $SOFTPHONE_HOME/calls.sqlite3, "
        "else ~/.local/state/softphone/calls.sqlite3); read it with `softphone calls list`",
    )
    group.add_argument(
        "--no-db", action="store_true", help="keep no call history on disk (memory only)"
    )
    group.add_argument(
        "--keep-calls",
        type=int,
        default=10_000,
        metavar="N",
        help="keep at most N ended calls; the oldest go first (default %(default)s)",
    )
    group.add_argument(
        "--keep-days",
        type=float,
        default=30.0,
        metavar="D",
        help="forget calls that ended more than D days ago (default %(default)s)",
    )


def _store_config(args: argparse.Namespace) -> tuple[Path | None, Any]:
    """The call store's path (None: no store) and retention from the options."""
    from softphone.gateway.call_store import Retention, default_db_path

    if args.db and args.no_db:
        raise CliError("--db and --no-db contradict each other")
    try:
        retention = Retention(max_calls=args.keep_calls, max_age_s=args.keep_days * 86_400)
    except ValueError as exc:
        raise CliError(f"--keep-calls/--keep-days: {exc}") from exc
    if args.no_db:
        return None, retention
    return Path(args.db).expanduser() if args.db else default_db_path(), retention


def _add_limit_options(p: argparse.ArgumentParser) -> None:
    from softphone.gateway.limits import Limits

    defaults = Limits()
    group = p.add_argument_group("limits (what one client may ask of the gateway)")
    group.add_argument(
        "--heartbeat-interval",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between heartbeats (JS clients drop a socket silent for 15 s; default 5)",
    )
    group.add_argument(
        "--idle-timeout",
        type=float,
        default=45.0,
        metavar="S",
        help="close a socket silent for this long (default 45)",
    )
    group.add_argument(
        "--max-frame-rate",
        type=float,
        default=defaults.max_frame_rate,
        metavar="N",
        help=f"frames/s one socket may send before it is closed (0: no limit; "
        f"default {defaults.max_frame_rate:g}, bursts of {defaults.frame_burst})",
    )
    group.add_argument(
        "--media-timeout",
        type=float,
        default=defaults.media_timeout_s,
        metavar="S",
        help=f"hang up answered calls whose media has not connected after this long "
        f"(default {defaults.media_timeout_s:g})",
    )
    group.add_argument(
        "--max-calls-per-connection",
        type=int,
        default=defaults.max_calls_per_connection,
        metavar="N",
        help=f"calls one client may have in progress (default {defaults.max_calls_per_connection})",
    )
    group.add_argument(
        "--max-calls-per-account",
        type=int,
        default=defaults.max_calls_per_account,
        metavar="N",
        help=f"calls an account may have in progress (default {defaults.max_calls_per_account})",
    )


def _tls_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The certificate and key to serve: given, generated where given, or in the state dir."""
    from softphone.gateway.tls import generate_self_signed

    if bool(args.cert) != bool(args.key):
        raise CliError("give both --cert and --key, or neither")
    if args.cert:
        cert, key = Path(args.cert), Path(args.key)
    else:
        cert, key = STATE_DIR / "gateway-cert.pem", STATE_DIR / "gateway-key.pem"
    present = [path for path in (cert, key) if path.exists()]
    if len(present) == 2:
        return cert, key
    if present:
        missing = key if present[0] == cert else cert
        raise CliError(
            f"{present[0]} exists but {missing} does not: give both files, or two new "
            "paths to have a self-signed pair generated there"
        )
    hosts = list(dict.fromkeys(("localhost", "127.0.0.1", args.host)))
    print(f"generating a self-signed certificate for {', '.join(hosts)}: {cert}", file=sys.stderr)
    try:
        for path in (cert, key):
            path.parent.mkdir(parents=True, exist_ok=True)
        generate_self_signed(cert, key, hosts=hosts)
    except OSError as exc:
        raise CliError(f"cannot write the certificate: {exc}") from exc
    return cert, key


def _server_context(cert: Path, key: Path) -> Any:
    from softphone.gateway.tls import server_ssl_context

    try:
        return server_ssl_context(cert, key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise CliError(f"cannot use {cert} / {key}: {exc}") from exc


def _trust_help(cert: Path | None, url: str) -> list[str]:
    """How SDK users and browsers come to trust this gateway (printed on every start)."""
    if cert is None:
        return ["TLS is off (--no-tls): fine for our SDK here; browsers and the JS SDK need wss"]
    path = cert.resolve()
    https = url.replace("wss://", "https://", 1).removesuffix("/signal") + "/"
    return [
        f"certificate: {path} (self-signed unless you gave your own)",
        f"  SDK: pass ssl_context=client_ssl_context({str(path)!r}) to Device "
        "(softphone.gateway.tls), or set SSL_CERT_FILE=" + str(path) + " (this file then "
        "replaces the system CAs for that process)",
        f"  browsers: open {https} once and accept the certificate, or import {path} as a "
        "trusted authority (Chrome: Settings > Privacy and security > Security > Manage "
        "certificates; Firefox: Settings > Certificates > Authorities)",
    ]


def _media_configs(args: argparse.Namespace) -> tuple[Any, Any]:
    """The leg-media and traversal settings of the command line (CliError when bad)."""
    from softphone.gateway.leg_media import LegMediaConfig, parse_port_range
    from softphone.gateway.traversal import TraversalConfig

    wildcard = args.host in ("0.0.0.0", "::", "")
    try:
        traversal = TraversalConfig(
            stun_urls=tuple(args.stun),
            turn_urls=tuple(args.turn),
            shared_secret=args.turn_secret or "",
        )
        media = LegMediaConfig(
            bind_address=args.media_bind or ("127.0.0.1" if wildcard else args.host),
            advertised_address=args.media_advertise,
            port_range=parse_port_range(args.rtp_ports) if args.rtp_ports else None,
            relay=args.media_relay,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if media.relay and not traversal.turn_urls:
        raise CliError("--media-relay needs --turn and --turn-secret")
    return media, traversal


def _gateway_config(args: argparse.Namespace, ssl_context: Any) -> Any:
    from softphone.gateway.limits import Limits
    from softphone.gateway.server import GatewayConfig

    try:
        limits = Limits(
            max_frame_rate=args.max_frame_rate,
            media_timeout_s=args.media_timeout,
            max_calls_per_connection=args.max_calls_per_connection,
            max_calls_per_account=args.max_calls_per_account,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if args.heartbeat_interval <= 0 or args.idle_timeout <= 0:
        raise CliError("--heartbeat-interval and --idle-timeout must be positive")
    media, traversal = _media_configs(args)
    db_path, retention = _store_config(args)
    _cluster_check(args)
    return GatewayConfig(
        host=args.host,
        port=args.port,
        ssl_context=ssl_context,
        edge=args.edge,
        region=args.region,
        home=args.home,
        media=media,
        traversal=traversal,
        api_port=args.api_port,
        rest=not args.no_rest,
        media_dir=args.media_dir,
        heartbeat_interval_s=args.heartbeat_interval,
        idle_timeout_s=args.idle_timeout,
        limits=limits,
        allow_public_dev_account=args.allow_public_dev_account,
        db_path=db_path,
        retention=retention,
        redis_url=args.redis,
        gateway_id=args.gateway_id,
        reuse_port=args.reuse_port,
    )


def check_workers(args: argparse.Namespace) -> None:
    """What ``--workers N`` (N > 1) needs, checked before anything starts."""
    if args.workers < 1:
        raise CliError(f"--workers must be at least 1, got {args.workers}")
    if args.workers == 1:
        return
    if args.redis is None:
        raise CliError(
            "--workers needs --redis: the workers share presence and calls through Redis "
            "(a device on one worker is called from another)"
        )
    if args.port == 0:
        raise CliError("--workers needs a fixed --port (0 would give each worker its own port)")
    if args.api_port is not None:
        raise CliError("--workers cannot serve --api-port (the REST API is on --port already)")


def worker_namespace(
    args: argparse.Namespace, plan: Any, tls: tuple[Path, Path] | None
) -> argparse.Namespace:
    """The command line of one worker of ``--workers N``: a single gateway process with
    the worker's id and call store, the certificate the supervisor settled on (made once,
    not by N racing processes), listening with SO_REUSEPORT."""
    worker = argparse.Namespace(**vars(args))
    worker.workers = 1
    worker.gateway_id = plan.gateway_id
    worker.db = None if plan.db_path is None else str(plan.db_path)
    worker.no_db = plan.db_path is None
    worker.reuse_port = True
    if tls is not None:
        worker.cert, worker.key = (str(path) for path in tls)
    return worker


def _worker_main(args: argparse.Namespace) -> None:
    """A worker process of ``--workers N`` (spawned: a fresh interpreter)."""
    from softphone.gateway.workers import detach_from_terminal_signals

    detach_from_terminal_signals()
    raise SystemExit(_run_gateway(args))


def _run_workers(args: argparse.Namespace, config: Any, tls: tuple[Path, Path] | None) -> int:
    """Run ``--workers N`` gateway processes until they all stop; 1 when one failed."""
    import multiprocessing

    from softphone.gateway.cluster.node import redacted
    from softphone.gateway.workers import plan, supervise

    plans = plan(args.workers, args.gateway_id or args.edge, config.db_path)
    spawn = multiprocessing.get_context("spawn")
    scheme = "wss" if config.ssl_context is not None else "ws"
    print(
        f"softphone gateway {__version__}: {args.workers} workers on "
        f"{scheme}://{args.host}:{args.port}/signal (SO_REUSEPORT), sharing Redis "
        f"{redacted(args.redis)}; stop with Ctrl-C",
        flush=True,
    )

    def make(worker_plan: Any) -> Any:
        worker = worker_namespace(args, worker_plan, tls)
        return spawn.Process(
            target=_worker_main, args=(worker,), name=f"gateway-w{worker_plan.index}"
        )

    return supervise(plans, make, lambda line: print(line, flush=True))


def _run_gateway(args: argparse.Namespace) -> int:
    from softphone.gateway import exposure
    from softphone.gateway.accounts import load
    from softphone.gateway.call_store import CallStoreError
    from softphone.gateway.leg_media import LegMedia
    from softphone.gateway.server import Gateway

    configure_logging(args.log_level)
    cert: Path | None = None
    key: Path | None = None
    try:
        accounts = load(args.config)
        exposed = exposure.check(
            args.host, accounts, allow_public_secret=args.allow_public_dev_account
        )
        ssl_context = None
        if not args.no_tls:
            cert, key = _tls_paths(args)
            ssl_context = _server_context(cert, key)
        check_workers(args)
        config = _gateway_config(args, ssl_context)
    except (ValueError, CliError) as exc:
        print(f"softphone gateway: {exc}", file=sys.stderr)
        return 2
    if exposed:
        print(
            "softphone gateway: WARNING: INSECURE: serving the development account, whose "
            f"secret is published, on {args.host}: anyone who can reach it can mint tokens "
            "and place calls",
            file=sys.stderr,
        )
    if args.workers > 1:
        return _run_workers(args, config, (cert, key) if cert and key else None)

    async def serve() -> None:
        leg_media = LegMedia(config.media, config.traversal)
        leg_media.apply_process_hooks()
        gateway = Gateway(accounts, config, leg_media=leg_media)
        await gateway.start()
        print(f"softphone gateway {__version__}: {gateway.url} (edge {args.edge})", flush=True)
        chunderw = gateway.host_port if ssl_context else gateway.url  # bare host:port = wss
        print(f"clients use chunderw={chunderw!r}; stop with Ctrl-C", flush=True)
        for line in _trust_help(cert, gateway.url):
            print(line, flush=True)
        for line in _media_summary(gateway):
            print(line, flush=True)
        if config.db_path is not None:
            print(
                f"call store: {config.db_path} (softphone calls list --db {config.db_path})",
                flush=True,
            )
        try:
            await asyncio.Event().wait()
        finally:
            await gateway.stop()

    try:
        if args.loop == "uvloop":
            try:
                import uvloop
            except ImportError:
                print(
                    "softphone gateway: --loop uvloop needs uvloop (pip install softphone[uvloop])",
                    file=sys.stderr,
                )
                return 2
            uvloop.run(serve())
        else:
            asyncio.run(serve())
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a server is stopped
    except CallStoreError as exc:
        print(f"softphone gateway: call store {config.db_path}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"softphone gateway: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    return 0


def _media_summary(gateway: Any) -> list[str]:
    """Where media and the REST API are, printed on start (what firewall rules need)."""
    media = gateway.config.media
    ports = "{}-{}".format(*media.port_range) if media.port_range else "any free port"
    lines = [f"media: binds {media.bind_address} (UDP {ports})"]
    if media.advertised_address:
        lines[0] += f", advertised as {media.advertised_address}"
    if media.relay:
        lines[0] += ", relay candidates on the TURN servers too"
    if gateway.rest_api is not None:
        lines.append(
            f"REST API: {gateway.rest_api.url} (official helper: "
            f"client.api.base_url = {gateway.rest_api.url!r})"
        )
        if gateway.rest_api.insights is not None:
            base = gateway.rest_api.url
            lines.append(
                f"  insights: SDKs post to {base}/v4/EndpointEvents and /v4/EndpointMetrics; "
                f"read them at {base}/v1/Voice/<CallSid>/Events, /Metrics, /Feedback"
            )
        traversal = gateway.config.traversal
        if traversal.enabled:
            servers = ", ".join((*traversal.stun_urls, *traversal.turn_urls))
            lines.append(f"  Tokens.json hands out: {servers}")
    return lines

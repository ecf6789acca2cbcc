"""Why a signaling socket could not be used, in words a user can act on.

The transport calls these for every failed dial and every socket that closed; the
text travels in the ``error`` events (31000/31005) and in the error that rejects
``Device.register()`` / ``connect()`` when signaling cannot be established. A user
reading "certificate verify failed: self-signed certificate for 127.0.0.1:9443; pass
ssl_context=… or set SSL_CERT_FILE" knows what to do; one reading "[SSL:
CERTIFICATE_VERIFY_FAILED]" inside an ``original_error`` often does not. Pure
functions of the URL and the exception.
"""

from __future__ import annotations

import socket
import ssl
import urllib.parse

from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI

_DEFAULT_PORTS = {"ws": 80, "wss": 443}


def target_of(uri: str) -> str:
    """``host:port`` of a signaling URL (the scheme's default port when none is given)."""
    parts = urllib.parse.urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or uri
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme.lower())
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}" if port is not None else host


def connect_failure(uri: str, exc: BaseException) -> str:
    """Why dialling ``uri`` raised ``exc``, with the fix when there is an obvious one."""
    target = target_of(uri)
    if isinstance(exc, ssl.SSLCertVerificationError):
        what = exc.verify_message or exc.reason or str(exc)
        return (
            f"certificate verify failed: {what} for {target}; "
            "pass ssl_context=… (one that trusts this server) or set SSL_CERT_FILE"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS handshake with {target} failed ({exc.reason or exc}); "
            "if the server speaks plain ws, use a ws:// URL"
        )
    if isinstance(exc, socket.gaierror):
        host = urllib.parse.urlsplit(uri).hostname or uri
        return f"cannot resolve host {host!r}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | EOFError):
        if uri.lower().startswith("wss:"):
            return (
                f"{target} dropped the connection during the TLS handshake; "
                "if the server speaks plain ws, use a ws:// URL"
            )
        return f"{target} dropped the connection during the WebSocket handshake"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {target}: nothing listens there (is the gateway running?)"
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return (
            f"{uri} answered HTTP {response.status_code} {response.reason_phrase} instead of "
            "accepting a WebSocket (is this the signaling URL? its path is /signal)"
        )
    if isinstance(exc, InvalidMessage):
        hint = "; if it speaks TLS, use a wss:// URL" if uri.lower().startswith("ws:") else ""
        return f"{target} sent no valid HTTP response to the WebSocket handshake{hint}"
    if isinstance(exc, InvalidHandshake):
        return f"WebSocket handshake with {uri} failed: {exc}"
    if isinstance(exc, InvalidURI):
        return f"invalid signaling URL {uri!r}: {exc}"
    if isinstance(exc, OSError):
        return f"cannot connect to {target}: {exc.strerror or exc or type(exc).__name__}"
    return f"cannot connect to {target}: {type(exc).__name__}: {exc}"


def connect_timeout(uri: str, timeout_ms: float) -> str:
    """The cause text for a socket that did not open within the connect timeout."""
    return f"no WebSocket connection to {target_of(uri)} within {timeout_ms / 1000:g} s"


def socket_closed(uri: str, code: int, reason: str) -> str:
    """The cause text for a socket that closed (abnormally or not) with ``code``."""
    if code in (1006, 1015):
        return f"the connection to {target_of(uri)} was lost (close code {code})"
    detail = f": {reason[:200]}" if reason else ""
    return f"{target_of(uri)} closed the WebSocket (code {code}{detail})"


def silent_server(uri: str, timeout_ms: float) -> str:
    """The cause text for a socket dropped after ``timeout_ms`` without any frame."""
    return f"{target_of(uri)} sent nothing (not even a heartbeat) for {timeout_ms / 1000:g} s"


__all__ = ["connect_failure", "connect_timeout", "silent_server", "socket_closed", "target_of"]

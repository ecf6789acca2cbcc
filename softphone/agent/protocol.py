"""The media-agent wire protocol: JSON messages over one WebSocket, sans I/O.

The app (signaling side) sends requests; the agent (media side) answers each
one and pushes events about its peer connections::

    {"id": 7, "method": "create_offer", "params": {"pc": "pc1", "source": "tone:a"}}
    {"id": 7, "result": {"sdp": "v=0..."}}
    {"id": 8, "error": {"type": "AudioDeviceError", "message": "no such device"}}
    {"event": "dtmf", "params": {"pc": "pc1", "digit": "5"}}

The first request must be ``hello`` (protocol version, and the shared secret
when the agent requires one). Everything here is pure: parse, validate, build.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "EVENTS",
    "METHODS",
    "PROTOCOL_VERSION",
    "AgentError",
    "Event",
    "ProtocolError",
    "Request",
    "Response",
    "decode",
    "encode",
    "error_response",
]

PROTOCOL_VERSION = 1

METHODS = frozenset(
    {
        "hello",
        "enumerate_devices",
        "create_pc",
        "create_offer",
        "apply_answer",
        "create_answer",
        "mute",
        "replace_source",
        "insert_dtmf",
        "get_stats",
        "close",
    }
)
"""Every request the agent understands."""

EVENTS = frozenset({"connectionstatechange", "dtmf", "closed", "devicechange"})
"""Every event the agent may push."""


class ProtocolError(ValueError):
    """A message that is not valid JSON or not a valid request, response or event."""


class AgentError(RuntimeError):
    """The agent answered a request with an error (``type`` names the agent-side class)."""

    def __init__(self, message: str, type_: str = "Error") -> None:
        super().__init__(message)
        self.type = type_


@attrs.frozen
class Request:
    """App → agent."""

    id: int
    method: str
    params: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Response:
    """Agent → app: ``result`` or ``error`` (``{"type", "message"}``) for request ``id``."""

    id: int
    result: Any = None
    error: Mapping[str, str] | None = None


@attrs.frozen
class Event:
    """Agent → app, unsolicited."""

    event: str
    params: Mapping[str, Any] = attrs.field(factory=dict)


Message = Request | Response | Event


def encode(message: Message) -> str:
    """The JSON text of ``message``."""
    if isinstance(message, Request):
        data: dict[str, Any] = {"id": message.id, "method": message.method}
        data["params"] = dict(message.params)
    elif isinstance(message, Response):
        data = {"id": message.id}
        if message.error is not None:
            data["error"] = dict(message.error)
        else:
            data["result"] = message.result
    else:
        data = {"event": message.event, "params": dict(message.params)}
    return json.dumps(data, separators=(",", ":"))


def error_response(request_id: int, exc: BaseException) -> Response:
    """A ``Response`` reporting ``exc`` (its class name and text)."""
    return Response(request_id, error={"type": type(exc).__name__, "message": str(exc)})


def decode(text: str | bytes) -> Message:
    """Parse one message; raises :class:`ProtocolError` for anything malformed."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a JSON object")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ProtocolError("params must be an object")
    if "event" in data:
        if data["event"] not in EVENTS:
            raise ProtocolError(f"unknown event {data['event']!r}")
        return Event(data["event"], params)
    request_id = data.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise ProtocolError("id must be an integer")
    if "method" in data:
        if data["method"] not in METHODS:
            raise ProtocolError(f"unknown method {data['method']!r}")
        return Request(request_id, data["method"], params)
    error = data.get("error")
    if error is not None:
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            raise ProtocolError("error must be an object with a message")
        return Response(request_id, error={k: str(v) for k, v in error.items()})
    if "result" not in data:
        raise ProtocolError("a response needs result or error")
    return Response(request_id, result=data["result"])

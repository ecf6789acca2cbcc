"""The request parameters Twilio sends to a voice application's webhooks.

What: :func:`voice_request_params` builds the parameters of the first request for a
call (the ``voice_url``), which the runner then sends with every later request too
(keeping ``CallStatus`` current); :func:`status_callback_params` adds what a
``status_callback`` request carries. Names and values are Twilio's, so an app written
against Twilio (``request.form["CallSid"]``, ``From == "client:alice"``) runs unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import formatdate

API_VERSION = "2010-04-01"


def voice_request_params(
    *,
    account_sid: str,
    call_sid: str,
    from_: str,
    to: str,
    direction: str = "inbound",
    call_status: str = "ringing",
    application_sid: str = "",
    custom: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Twilio's voice webhook parameters for one call.

    ``from_`` is ``client:NAME`` for a Device's call; ``direction`` is ``inbound``
    for a call a Device places to the application, ``outbound-api`` for one made
    with the REST API. ``custom`` are the call's own parameters (a Device's
    ``connect`` params); Twilio's names win over a custom parameter of the same name,
    so a caller cannot pose as another account or call.
    """
    params = dict(custom or {})
    params.update(
        {
            "AccountSid": account_sid,
            "CallSid": call_sid,
            "From": from_,
            "Caller": from_,
            "To": to,
            "Called": to,
            "Direction": direction,
            "CallStatus": call_status,
            "ApiVersion": API_VERSION,
        }
    )
    if application_sid:
        params["ApplicationSid"] = application_sid
    return params


def status_callback_params(
    call_params: Mapping[str, str],
    *,
    call_status: str,
    sequence_number: int,
    timestamp: float,
    call_duration: int | None = None,
) -> dict[str, str]:
    """A ``status_callback`` request's parameters (event ``call_status`` at ``timestamp``,
    a Unix time), on top of the call's own; ``call_duration`` (seconds) for ``completed``."""
    params = {
        **call_params,
        "CallStatus": call_status,
        "SequenceNumber": str(sequence_number),
        "Timestamp": formatdate(timestamp, usegmt=True),
        "CallbackSource": "call-progress-events",
    }
    if call_duration is not None:
        params["CallDuration"] = str(call_duration)
    return params

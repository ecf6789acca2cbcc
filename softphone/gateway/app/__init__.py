"""TwiML applications on the gateway: the I/O around the sans-I/O runner in ``twiml``.

Webhooks (signed, with status callbacks), ``<Say>`` speech, ``<Play>`` audio,
``<Record>`` files and the per-call :class:`~softphone.gateway.app.app_call.AppCall`.
"""

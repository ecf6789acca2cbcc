"""TwiML applications, without I/O: parse documents, run them per call, sign webhooks.

* :mod:`.model` — the verbs as typed values; :mod:`.parse` — safe parsing with
  Twilio's error codes (:mod:`.errors`);
* :mod:`.runner` — :class:`~.runner.TwimlRunner`, one call's interpreter, fed
  :mod:`.events` and answering with :mod:`.actions` (:mod:`.steps` holds each verb's
  rules);
* :mod:`.params` — Twilio's webhook parameters; :mod:`.signature` — ``X-Twilio-Signature``.

The gateway's I/O layer (HTTP client, media, signaling) performs the actions.
"""

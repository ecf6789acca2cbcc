"""A sans-I/O TwiML interpreter for one call.

What: :class:`TwimlRunner` runs an application's TwiML for one call. The gateway
feeds it :mod:`~softphone.gateway.twiml.events` with ``process(event, now)`` and
carries out the :mod:`~softphone.gateway.twiml.actions` it returns: speak, play,
record, dial, request a webhook, answer, hang up. It never blocks, reads no clock and
does no I/O; when it needs waking it says so in :attr:`TwimlRunner.next_deadline`
(the gateway then sends ``Tick``). That keeps every rule of Twilio's verbs testable
with scripted events and fake time, and the gateway's own code thin.

Usage::

    runner = TwimlRunner.fetching(voice_url, "POST", call_params,
                                  fallback_url=app.voice_fallback_url)
    do(runner.process(Start(), now))
    ...  # on each media/HTTP/signaling event, and at runner.next_deadline:
    do(runner.process(event, now))
    if runner.finished: ...

The call-level rules live here: verbs run in document order; the call is answered
before the first verb that needs media (a leading ``<Pause>`` delays it, ``<Reject>``
refuses it unanswered); ``action`` / ``<Redirect>`` URLs are resolved against the
document's URL and requested with the call's parameters (``CallStatus`` kept
current) plus the verb's own; a failed or unparsable first document tries the
fallback URL once (with ``ErrorCode`` and ``ErrorUrl``); other failures and
unsupported verbs end the call with Twilio's error code (``EndWithError``); running
out of verbs hangs up. When the caller hangs up during ``<Record>`` or ``<Dial>``
their action is still requested (``final``), as Twilio does.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

import attrs

from softphone.gateway.twiml import actions, errors, events, model
from softphone.gateway.twiml.actions import Action
from softphone.gateway.twiml.errors import TwimlError
from softphone.gateway.twiml.parse import parse_twiml
from softphone.gateway.twiml.steps import Context, Fail, Next, Request, Step, Then, make_step

FETCH_TIMEOUT_S = 15.0
"""Twilio waits 15 s for a webhook; after that the request failed (11200)."""
HANGUP_GRACE_S = 10.0
"""After the caller hung up, how long the runner waits for the recording or dial
result it needs for a final ``action`` request before it gives up."""


@attrs.frozen(kw_only=True)
class _FirstFetch:
    """The first document comes from the application's voice URL."""

    url: str
    method: model.Method
    fallback: tuple[str, model.Method] | None


@attrs.frozen(kw_only=True)
class _PendingFetch:
    ref: int
    url: str
    method: model.Method
    params: Mapping[str, str]
    deadline: float
    fallback: tuple[str, model.Method] | None
    """Where to go if this fetch fails (only the first document has one)."""


class TwimlRunner:
    """Runs one call's TwiML; see the module docstring for the contract."""

    def __init__(
        self,
        document: model.Response | str | bytes,
        call_params: Mapping[str, str],
        *,
        url: str = "",
        answered: bool = False,
        fetch_timeout: float = FETCH_TIMEOUT_S,
    ) -> None:
        """Run ``document`` (parsed on ``Start``), whose own URL is ``url`` if it has one.

        ``call_params`` are sent with every request (see
        :func:`~softphone.gateway.twiml.params.voice_request_params`);
        ``answered``: the call is already up (a REST-created call the callee answered).
        """
        self._source: model.Response | str | bytes | _FirstFetch = document
        self._call_params = dict(call_params)
        self._fetch_timeout = fetch_timeout
        self._verbs: tuple[model.Verb, ...] = ()
        self._index = 0
        self._base_url = url
        self._step: Step | None = None
        self._fetch: _PendingFetch | None = None
        self._last_ref = 0
        self._started = False
        self._answered = answered
        self._caller_gone_at: float | None = None
        self._finished = False

    @classmethod
    def fetching(
        cls,
        url: str,
        method: model.Method,
        call_params: Mapping[str, str],
        *,
        fallback_url: str = "",
        fallback_method: model.Method = "POST",
        answered: bool = False,
        fetch_timeout: float = FETCH_TIMEOUT_S,
    ) -> TwimlRunner:
        """A runner whose first document is fetched from ``url`` (an application's
        ``voice_url``) on ``Start``; ``fallback_url`` is tried once if that fails."""
        runner = cls(
            model.Response(()), call_params, answered=answered, fetch_timeout=fetch_timeout
        )
        fallback = (fallback_url, fallback_method) if fallback_url else None
        runner._source = _FirstFetch(url=url, method=method, fallback=fallback)
        return runner

    @property
    def finished(self) -> bool:
        """True once the runner has nothing more to do for this call."""
        return self._finished

    @property
    def next_deadline(self) -> float | None:
        """When to send ``Tick`` (None: no timer is running)."""
        if self._finished:
            return None
        deadlines = [
            self._fetch.deadline if self._fetch is not None else None,
            self._step.deadline if self._step is not None else None,
            self._caller_gone_at + HANGUP_GRACE_S if self._caller_gone_at is not None else None,
        ]
        return min((d for d in deadlines if d is not None), default=None)

    def process(self, event: events.Event, now: float) -> list[Action]:
        """Apply ``event`` at time ``now``; return what the gateway must do, in order."""
        if self._finished:
            return []
        if not self._started:
            if not isinstance(event, events.Start):
                return self._early(event)
            return self._start(now) + self._expire(now)
        out = self._expire(now)
        if self._finished:
            return out
        if isinstance(event, events.Hangup):
            out += self._hangup(now)
        elif isinstance(event, events.Redirected):
            out += self._redirected(event, now)
        elif isinstance(event, events.FetchResult | events.FetchFailed):
            out += self._fetched(event, now)
        elif self._step is not None:
            outcome = self._step.handle(event, now)
            out += outcome.actions + self._then(outcome.then, now)
        return out + self._expire(now)

    # -- starting and time -------------------------------------------------------

    def _start(self, now: float) -> list[Action]:
        self._started = True
        source = self._source
        if isinstance(source, _FirstFetch):
            return self._request(source.url, source.method, {}, now, fallback=source.fallback)
        return self._load(source, self._base_url, now)

    def _early(self, event: events.Event) -> list[Action]:
        """Before ``Start`` only a hang-up matters: there is nothing to run any more."""
        if isinstance(event, events.Hangup):
            self._finished = True
        return []

    def _expire(self, now: float) -> list[Action]:
        """Act on every deadline reached by ``now``."""
        out: list[Action] = []
        while not self._finished:
            if self._caller_gone_at is not None and now >= self._caller_gone_at + HANGUP_GRACE_S:
                self._finished = True
            elif self._fetch is not None and now >= self._fetch.deadline:
                fetch = self._fetch
                timeout = f"no answer within {self._fetch_timeout:g} s"
                out += [
                    actions.CancelFetch(fetch.ref),
                    *self._fetch_failed(errors.HTTP_RETRIEVAL_FAILURE, timeout, now),
                ]
            elif self._step is not None and (deadline := self._step.deadline) is not None:
                if now < deadline:
                    break
                step = self._step
                outcome = step.tick(now)
                out += outcome.actions + self._then(outcome.then, now)
                if self._step is step and step.deadline == deadline:
                    break  # a step must move its deadline on; never spin on one that did not
            else:
                break
        return out

    # -- running verbs -------------------------------------------------------------

    def _then(self, then: Then, now: float) -> list[Action]:
        """Carry out what a finished verb asked for, running the verbs that follow
        (in a loop, so a long document of instant verbs cannot exhaust the stack)."""
        out: list[Action] = []
        while then is not None and not self._finished:
            self._step = None
            if isinstance(then, Fail):
                return out + self._end(actions.EndWithError(code=then.code, message=then.message))
            if isinstance(then, Request):
                url = then.url if then.url is not None else self._base_url
                if url:
                    return out + self._request(url, then.method, then.params, now)
                # Inline TwiML has no URL to submit to: go on as without an action.
            if self._caller_gone_at is not None:
                self._finished = True
                return out
            started, then = self._next_verb(now)
            out += started
        return out

    def _next_verb(self, now: float) -> tuple[list[Action], Then]:
        """Start the next verb; return its first actions and, if it is already over,
        what comes next."""
        if self._index >= len(self._verbs):
            return self._end(actions.Hangup()), None
        verb = self._verbs[self._index]
        self._index += 1
        if isinstance(verb, model.Hangup):
            return self._end(actions.Hangup()), None
        if isinstance(verb, model.Reject):
            if self._answered:
                return self._end(actions.Hangup()), None
            return self._end(actions.Reject(reason=verb.reason)), None
        if isinstance(verb, model.Redirect):
            return [], Request(url=verb.url, method=verb.method, params={})
        if isinstance(verb, model.Unsupported):
            message = f"<{verb.name}> is not supported by the softphone gateway"
            return [], Fail(code=errors.SCHEMA_VALIDATION, message=message)
        out: list[Action] = []
        if not self._answered and not isinstance(verb, model.Pause):
            self._answered = True
            out.append(actions.Answer())
        step = make_step(verb, self._context())
        outcome = step.start(now)
        if outcome.then is None:
            self._step = step
        return out + outcome.actions, outcome.then

    def _context(self) -> Context:
        return Context(
            new_ref=self._new_ref, base_url=self._base_url, call_params=self._call_params
        )

    def _new_ref(self) -> int:
        self._last_ref += 1
        return self._last_ref

    def _load(self, document: model.Response | str | bytes, url: str, now: float) -> list[Action]:
        """Run a new document from its first verb."""
        try:
            response = document if isinstance(document, model.Response) else parse_twiml(document)
        except TwimlError as exc:
            return self._end(actions.EndWithError(code=exc.code, message=exc.message))
        self._verbs, self._index, self._base_url = response.verbs, 0, url
        return self._then(Next(), now)

    def _end(self, action: Action) -> list[Action]:
        self._finished = True
        self._step = None
        return [action]

    # -- webhooks ------------------------------------------------------------------

    def _request(
        self,
        url: str,
        method: model.Method,
        params: Mapping[str, str],
        now: float,
        *,
        fallback: tuple[str, model.Method] | None = None,
    ) -> list[Action]:
        absolute = urljoin(self._base_url, url) if self._base_url else url
        if urlsplit(absolute).scheme not in ("http", "https") or not urlsplit(absolute).netloc:
            message = f"cannot request {url!r}: not an absolute http(s) URL"
            return self._end(actions.EndWithError(code=errors.INVALID_URL, message=message))
        status = (
            "completed"
            if self._caller_gone_at is not None
            else "in-progress"
            if self._answered
            else "ringing"
        )
        sent = {**self._call_params, "CallStatus": status, **params}
        ref = self._new_ref()
        if self._caller_gone_at is not None:
            self._finished = True
            return [actions.Fetch(ref=ref, url=absolute, method=method, params=sent, final=True)]
        self._fetch = _PendingFetch(
            ref=ref,
            url=absolute,
            method=method,
            params=sent,
            deadline=now + self._fetch_timeout,
            fallback=fallback,
        )
        return [actions.Fetch(ref=ref, url=absolute, method=method, params=sent)]

    def _fetched(self, event: events.FetchResult | events.FetchFailed, now: float) -> list[Action]:
        if self._fetch is None or event.ref != self._fetch.ref:
            return []
        if isinstance(event, events.FetchFailed):
            return self._fetch_failed(event.code, event.message, now)
        url = event.url or self._fetch.url
        try:
            response = parse_twiml(event.body)
        except TwimlError as exc:
            return self._fetch_failed(exc.code, exc.message, now)
        self._fetch = None
        return self._load(response, url, now)

    def _fetch_failed(self, code: int, message: str, now: float) -> list[Action]:
        fetch = self._fetch
        assert fetch is not None
        self._fetch = None
        if fetch.fallback is not None:
            url, method = fetch.fallback
            params = {**fetch.params, "ErrorCode": str(code), "ErrorUrl": fetch.url}
            return self._request(url, method, params, now)
        detail = f"{message} ({fetch.method} {fetch.url})"
        return self._end(actions.EndWithError(code=code, message=detail))

    # -- the caller and the REST API -----------------------------------------------

    def _hangup(self, now: float) -> list[Action]:
        self._caller_gone_at = now
        if self._step is None:
            # Nothing runs, or a webhook is in flight: its reply no longer matters.
            self._finished = True
            return []
        outcome = self._step.hangup(now)
        return outcome.actions + self._then(outcome.then, now)

    def _redirected(self, event: events.Redirected, now: float) -> list[Action]:
        if self._caller_gone_at is not None:
            return []  # only a final action request is left to make
        out: list[Action] = []
        if self._step is not None:
            out += self._step.stop()
            self._step = None
        if self._fetch is not None:
            out.append(actions.CancelFetch(self._fetch.ref))
            self._fetch = None
        if event.twiml:
            return out + self._load(event.twiml, "", now)
        self._base_url = ""
        return out + self._request(event.url, event.method, {}, now)

"""``PreflightTest``: the JS SDK's connectivity and call-quality test, in asyncio.

A PreflightTest owns a Device of its own: it registers, places one call without
parameters (the gateway answers a parameter-less call with its echo application),
re-emits the call's samples and warnings, ends the call after ``call_duration_ms``
and reports what it measured (:class:`~softphone.core.preflight_report.PreflightTestReport`)::

    test = PreflightTest(token, {"chunderw": url, "fake_mic_input": True,
                                 "rtc_configuration": {"iceServers": []}})
    test.on("sample", lambda sample: print(sample.mos))
    report, = await test.wait_for("completed")   # or "failed" (error)
    print(report.call_quality, report.to_dict())

Status: ``connecting`` → ``connected`` (the call is up) → ``completed`` (report
ready) or ``failed``: registration refused (the token's error) or impossible
(53000 naming the cause), no registration within ``signaling_timeout_ms`` (53000),
a Device error once registered, ``stop()`` (31008). Events: ``connected()``,
``sample(RTCSample)``, ``warning(PreflightWarning)``, ``completed(report)``,
``failed(error)``; after either of the last two the Device is destroyed and every
listener on it and on the call is gone. A call that ends with an error still
completes, with the report of what it measured (as in JS).

Differences from the JS SDK:

* there is no Twilio echo application here to end the call, so the test hangs up
  itself after ``call_duration_ms`` (default 20 s, the JS fake-microphone
  duration) whether or not ``fake_mic_input`` is set;
* before registration, Device ``error`` events (socket failures the Device retries
  by itself) do not end the test: ``register()``'s rejection does, with the precise
  reason, or the signaling timer;
* ``fake_mic_input`` sends a tone instead of the JS cowbell recording;
* the constructor needs a running event loop (the Device registers at once).
"""

from __future__ import annotations

import asyncio
import difflib
import enum
import logging
import time
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from typing import Any

import attrs

from softphone.audio_backends.base import AudioSource
from softphone.audio_backends.tone import ToneSource
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.core.errors import GeneralErrors, InvalidArgumentError, SignalingErrors
from softphone.core.events import EventEmitter
from softphone.core.options import snake_case
from softphone.core.preflight_report import (
    RTC_WARNING_DESCRIPTION,
    CallQuality,
    NetworkTiming,
    PreflightTestReport,
    PreflightWarning,
    build_report,
)
from softphone.core.rtc_sample import RTCSample
from softphone.media.pc_diagnostics import (
    IceCandidateStatsReport,
    StateWatch,
    ice_candidate_stats_report,
)
from softphone.plugins.markers import hookimpl

__all__ = [
    "CALL_DURATION_MS",
    "FAKE_MIC_TONE_HZ",
    "PreflightEvent",
    "PreflightOptions",
    "PreflightStatus",
    "PreflightTest",
    "run_preflight",
]

log = logging.getLogger("softphone.preflight_test")

CALL_DURATION_MS = 20_000
"""How long the test call lasts (JS ``ECHO_TEST_DURATION``)."""
FAKE_MIC_TONE_HZ = (1000.0,)
"""What ``fake_mic_input`` sends: a 1 kHz tone (easy to find in the echo)."""
COMPLETION_DELAY_S = 0.01
"""JS waits 10 ms after ``unregistered`` so that a fatal error just after it still wins."""


class PreflightStatus(enum.StrEnum):
    """``PreflightTest.Status``."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    COMPLETED = "completed"
    FAILED = "failed"


class PreflightEvent(enum.StrEnum):
    """``PreflightTest.Events``."""

    COMPLETED = "completed"
    CONNECTED = "connected"
    FAILED = "failed"
    SAMPLE = "sample"
    WARNING = "warning"


def _positive_ms(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        raise InvalidArgumentError(f"`{attribute.name}` must be a number > 0 (ms), got {value!r}.")


def _optional_callable(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise InvalidArgumentError(f"`{attribute.name}` must be callable.")


@attrs.frozen(kw_only=True)
class PreflightOptions:
    """``PreflightTest.Options`` (snake_case; the JS camelCase keys are accepted too).

    The Device-facing values (codecs, edge, URLs) are checked by the Device: a bad
    one makes the test fail with the Device's error, as in JS.
    """

    codec_preferences: Sequence[str] = ("pcmu", "opus")
    edge: str | Sequence[str] | None = "roaming"
    fake_mic_input: bool = False
    """Send a tone instead of the microphone, silence the Device's sounds and the
    echo (``file_input_stream`` replaces the tone)."""
    ice_servers: Sequence[Mapping[str, Any]] | None = None
    """Accepted and ignored, as in the JS SDK: give ``rtc_configuration["iceServers"]``."""
    log_level: int | str = "error"
    signaling_timeout_ms: float = attrs.field(default=10_000, validator=_positive_ms)
    """Fail with 53000 unless the Device registered by then."""

    # JS internal options
    chunderw: str | Sequence[str] | None = None
    eventgw: str | None = None
    file_input_stream: AudioSource | str | None = None
    rtc_configuration: Mapping[str, Any] | None = None
    """Passed to ``device.connect()`` (ICE servers, transport policy)."""
    device_factory: Callable[[str, Mapping[str, Any]], Device] | None = attrs.field(
        default=None, validator=_optional_callable
    )
    """Builds the Device from ``(token, options)`` (JS ``deviceFactory``)."""

    # Python-only
    ssl_context: Any = None
    """TLS trust for a ``wss://`` gateway (the Device's ``ssl_context``)."""
    call_duration_ms: float = attrs.field(default=CALL_DURATION_MS, validator=_positive_ms)
    """The test hangs up this long after placing the call."""

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> PreflightOptions:
        """Options from snake_case or JS camelCase keys; unknown keys raise
        ``InvalidArgumentError`` with a suggestion."""
        names = {field.name for field in attrs.fields(cls)}
        normalised: dict[str, Any] = {}
        for key, value in options.items():
            name = key if key in names else snake_case(key)
            if name not in names:
                hint = difflib.get_close_matches(name, names, n=1)
                suggestion = f" Did you mean `{hint[0]}`?" if hint else ""
                raise InvalidArgumentError(f"Unknown PreflightTest option `{key}`.{suggestion}")
            normalised[name] = value
        return cls(**normalised)


class _PeerConnectionWatch:
    """A plugin on the test's own Device: hands over each peer connection it creates."""

    def __init__(self, on_created: Callable[[Any], None]) -> None:
        self._on_created = on_created

    @hookimpl(wrapper=True)
    def softphone_create_peer_connection(self) -> Generator[None, Any, Any]:
        """Pass the created adapter to the test, unchanged."""
        pc = yield
        try:
            self._on_created(pc)
        except Exception:
            log.exception("preflight: watching the peer connection failed")
        return pc


def _now_ms() -> float:
    return time.time() * 1000.0


class PreflightTest(EventEmitter):
    """One preflight test; it starts as soon as it is constructed (needs a running loop).

    ``PreflightTest(token, options=None, **kwargs)`` or ``Device.run_preflight(token,
    options)``; the options are :class:`PreflightOptions` (snake_case or JS camelCase).

    **Events** (``test.on(name, listener)``):

    ``connected`` ``()``
        The test call is up (status ``connected``).
    ``sample`` ``(sample)``
        Once a second during the call: the call's :class:`~softphone.core.rtc_sample.RTCSample`.
    ``warning`` ``(warning)``
        A :class:`~softphone.core.preflight_report.PreflightWarning` (``name``,
        ``description``, ``rtc_warning``): a call-quality warning of the test call, or
        ``insights-connection-error`` once when insights could not be posted.
    ``completed`` ``(report)``
        The test call ended: the
        :class:`~softphone.core.preflight_report.PreflightTestReport` (call quality band,
        timings, MOS/jitter/rtt statistics, ICE candidates, samples, warnings).
    ``failed`` ``(error)``
        A ``TwilioError``: the token was refused, signaling failed or timed out (53000),
        the Device reported an error once registered, or :meth:`stop` (31008).

    ``Status``, ``Events``, ``CallQuality`` and ``Report`` are the JS enums and the
    report class.
    """

    Status = PreflightStatus
    Events = PreflightEvent
    CallQuality = CallQuality
    Report = PreflightTestReport

    def __init__(self, token: str, options: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__()
        self._options = PreflightOptions.from_mapping({**(options or {}), **kwargs})
        self._loop = asyncio.get_running_loop()
        self._status = PreflightStatus.CONNECTING
        self._start_time = _now_ms()
        self._end_time: float | None = None
        self._samples: list[RTCSample] = []
        self._warnings: list[PreflightWarning] = []
        self._latest_sample: RTCSample | None = None
        self._report: PreflightTestReport | None = None
        self._call_sid: str | None = None
        self._edge: str | None = None
        self._device: Device | None = None
        self._test_call: Call | None = None
        self._pc: Any = None
        self._insights_errored = False
        self._state_watch: StateWatch | None = None
        self._timing = NetworkTiming()
        self._candidates: IceCandidateStatsReport | None = None
        self._candidates_task: asyncio.Task[None] | None = None
        self._signaling_timer: asyncio.TimerHandle | None = None
        self._echo_timer: asyncio.TimerHandle | None = None
        self._registered = False
        self._error: BaseException | None = None
        self._ending: asyncio.Task[None] | None = None
        self._own_source: ToneSource | None = None
        self._background: set[asyncio.Task[Any]] = set()
        if self._options.ice_servers is not None:
            log.warning(
                "PreflightTest: `ice_servers` is not applied (as in the JS SDK); "
                "give rtc_configuration={'iceServers': [...]}"
            )
        self._init_device(token)

    # -- properties ----------------------------------------------------------------------
    @property
    def status(self) -> PreflightStatus:
        """``connecting``, ``connected``, ``completed`` or ``failed``."""
        return self._status

    @property
    def call_sid(self) -> str | None:
        """The test call's CallSid, once it is connected."""
        return self._call_sid

    @property
    def start_time(self) -> float:
        """When the test started, in milliseconds since the epoch."""
        return self._start_time

    @property
    def end_time(self) -> float | None:
        """When it completed or failed (ms since the epoch)."""
        return self._end_time

    @property
    def latest_sample(self) -> RTCSample | None:
        """The last ``sample`` of the test call."""
        return self._latest_sample

    @property
    def report(self) -> PreflightTestReport | None:
        """The report, once ``completed``."""
        return self._report

    @property
    def options(self) -> PreflightOptions:
        """The options in force."""
        return self._options

    @property
    def call(self) -> Call | None:
        """The test call once placed (Python-only: to listen to what it hears)."""
        return self._test_call

    @property
    def peer_connection(self) -> Any:
        """The test call's media adapter once created, kept after the call for diagnostics
        such as its ICE gathering report (Python-only)."""
        return self._pc

    # -- control ---------------------------------------------------------------------------
    def stop(self) -> None:
        """End the test now: ``failed`` with ``CallCancelledError`` (31008) once the Device
        is destroyed. No-op once completed or failed."""
        self._end(GeneralErrors.CallCancelledError())

    # -- the flow --------------------------------------------------------------------------
    def _init_device(self, token: str) -> None:
        options = self._options
        try:
            source = options.file_input_stream
            if options.fake_mic_input and source is None:
                source = self._own_source = ToneSource(FAKE_MIC_TONE_HZ)
            device_options: dict[str, Any] = {
                "chunderw": options.chunderw,
                "codec_preferences": options.codec_preferences,
                "edge": options.edge,
                "eventgw": options.eventgw,
                "file_input_stream": source,
                "log_level": options.log_level,
                "preflight": True,
                # the test's own timer decides; the Device must not give up first
                "signaling_connect_timeout_ms": options.signaling_timeout_ms + 1000,
            }
            if options.ssl_context is not None:
                device_options["ssl_context"] = options.ssl_context
            factory = options.device_factory or Device
            device = factory(token, device_options)
            device.plugins.register(_PeerConnectionWatch(self._on_peer_connection))
        except Exception as exc:
            self._end(exc)  # delivered from a task: listeners added after this still hear it
            return
        self._device = device
        device.once("registered", self._on_device_registered)
        device.on("error", self._on_device_error)
        self._spawn(self._register(device))
        self._signaling_timer = self._loop.call_later(
            options.signaling_timeout_ms / 1000, self._on_signaling_timeout
        )

    async def _register(self, device: Device) -> None:
        try:
            await device.register()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # refused token, no signaling: the first reason wins
            self._end(exc)

    def _on_signaling_timeout(self) -> None:
        self._signaling_timer = None
        self._end(SignalingErrors.ConnectionError("WebSocket Connection Timeout"))

    def _on_device_error(self, error: BaseException, *_: object) -> None:
        """The first Device error after registration fails the test. Before it, the
        Device retries socket failures itself and ``register()`` rejects with the
        precise reason (the token's error, or 53000 naming the cause), so its outcome
        and the signaling timer decide."""
        if not self._registered:
            log.debug("preflight: Device error before registration: %s", error)
            return
        self._end(error)

    def _on_device_registered(self) -> None:
        self._registered = True
        self._cancel_timers()
        self._spawn(self._place_call())

    async def _place_call(self) -> None:
        device = self._device
        if device is None or self._ending is not None:
            return
        if self._options.fake_mic_input and device.audio is not None:
            device.audio.outgoing(False)
            device.audio.disconnect(False)
        try:
            call = await device.connect(rtc_configuration=self._options.rtc_configuration)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._end(exc)
            return
        if self._ending is not None:  # stopped or failed while the call was being placed
            call.disconnect()
            return
        self._timing.start_signaling(_now_ms())
        self._test_call = call
        self._edge = device.edge
        device.publisher.on_error = self._on_insights_error
        self._setup_call_handlers(call)
        self._echo_timer = self._loop.call_later(
            self._options.call_duration_ms / 1000, device.disconnect_all
        )
        call.once("disconnect", lambda *_: self._end(None))

    def _setup_call_handlers(self, call: Call) -> None:
        call.on("warning", self._on_call_warning)
        call.once("accept", self._on_call_accept)
        call.on("sample", self._on_call_sample)

    def _on_call_warning(self, name: str, data: Any = None, *_: object) -> None:
        self._emit_warning(name, RTC_WARNING_DESCRIPTION, data)

    def _on_call_accept(self, *_: object) -> None:
        call = self._test_call
        if call is None:
            return
        self._call_sid = call.call_sid
        remote = call.get_remote_stream()
        if self._options.fake_mic_input and remote is not None:
            for sink in remote.sinks:  # JS mutes the echo's audio outputs
                remote.remove_sink(sink)
        self._status = PreflightStatus.CONNECTED
        self.emit(PreflightEvent.CONNECTED)  # event connected()

    def _on_call_sample(self, sample: RTCSample, *_: object) -> None:
        if self._latest_sample is None and self._pc is not None:
            self._candidates_task = self._spawn(self._fetch_candidates(self._pc))
        self._latest_sample = sample
        self._samples.append(sample)
        self.emit(PreflightEvent.SAMPLE, sample)  # event sample(RTCSample)

    async def _fetch_candidates(self, pc: Any) -> None:
        try:
            self._candidates = await ice_candidate_stats_report(pc)
        except Exception:
            log.exception("preflight: reading the ICE candidates failed")

    def _on_peer_connection(self, pc: Any) -> None:
        if self._state_watch is not None:
            self._state_watch.close()
        self._pc = pc
        self._state_watch = StateWatch(pc, self._on_pc_state)

    def _on_pc_state(self, kind: str, state: str) -> None:
        self._timing.on_state(kind, state, _now_ms())

    def _on_insights_error(self, _: Exception) -> None:
        """The first failed insights post is a warning (JS ``insights-connection-error``)."""
        if not self._insights_errored:
            self._insights_errored = True
            self._emit_warning(
                "insights-connection-error",
                "Received an error when attempting to connect to Insights gateway",
            )

    def _emit_warning(self, name: str, description: str, rtc_warning: Any = None) -> None:
        warning = PreflightWarning(name=name, description=description, rtc_warning=rtc_warning)
        self._warnings.append(warning)
        self.emit(PreflightEvent.WARNING, warning)  # event warning(PreflightWarning)

    # -- the end ---------------------------------------------------------------------------
    def _end(self, error: BaseException | None) -> None:
        """Finish once: ``error`` None completes, else fails; the first error wins, and an
        error arriving while a completion is being wrapped up turns it into a failure."""
        if self._status in (PreflightStatus.COMPLETED, PreflightStatus.FAILED):
            return
        if error is not None and self._error is None:
            self._error = error
        if self._ending is None:
            self._ending = self._spawn(self._teardown())

    async def _teardown(self) -> None:
        self._cancel_timers()
        if self._device is not None:
            try:
                await self._device.destroy()
            except Exception:
                log.exception("preflight: destroying the Device failed")
        if self._error is None:
            await asyncio.sleep(COMPLETION_DELAY_S)
        if self._candidates_task is not None and self._error is None:
            await asyncio.gather(self._candidates_task, return_exceptions=True)
        self._release()
        self._end_time = _now_ms()
        if self._error is not None:
            self._status = PreflightStatus.FAILED
            self.emit(PreflightEvent.FAILED, self._error)  # event failed(error)
            return
        self._status = PreflightStatus.COMPLETED
        self._report = build_report(
            call_sid=self._call_sid,
            edge=self._edge,
            selected_edge=self._options.edge,
            candidates=self._candidates,
            network_timing=self._timing,
            samples=self._samples,
            warnings=self._warnings,
            start_time=self._start_time,
            end_time=self._end_time,
        )
        self.emit(PreflightEvent.COMPLETED, self._report)  # event completed(report)

    def _cancel_timers(self) -> None:
        for timer in (self._signaling_timer, self._echo_timer):
            if timer is not None:
                timer.cancel()
        self._signaling_timer = self._echo_timer = None

    def _release(self) -> None:
        """Drop every listener on the Device and the call, stop watching the media."""
        for emitter in (self._device, self._test_call):
            if emitter is not None:
                emitter.remove_all_listeners()
        if self._state_watch is not None:
            self._state_watch.close()
        if self._own_source is not None:
            self._own_source.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("preflight task failed", exc_info=task.exception())


def run_preflight(
    token: str, options: Mapping[str, Any] | None = None, **kwargs: Any
) -> PreflightTest:
    """Start a preflight test (JS ``Device.runPreflight(token, options)``)."""
    return PreflightTest(token, options, **kwargs)

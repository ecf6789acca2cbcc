"""``Device``: the JS SDK's Device in asyncio Python.

A Device owns one signaling stream (created lazily by the first ``register()``
or ``connect()``), the registration state machine
(unregistered → registering → registered, and destroyed), the token lifecycle
(``tokenWillExpire``), and the bookkeeping of calls: pending incoming calls in
:attr:`Device.calls`, at most one active call.

Safe by default: ``wss://`` gateways are verified against the system trust store (or
``SSL_CERT_FILE``) unless an ``ssl_context`` is given, and ``register()`` /
``connect()`` never wait forever for signaling: they reject with a ``TwilioError``
whose message names the cause (see :meth:`Device.register`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from softphone.audio_backends.base import AudioSink, AudioSource
from softphone.audio_backends.devices import MediaDeviceInfo
from softphone.core.audio_helper import AudioHelper, HelperCall
from softphone.core.call import Call, CallDirection, CallState
from softphone.core.errors import (
    ClientErrors,
    InvalidArgumentError,
    InvalidStateError,
    SignalingErrors,
    TwilioError,
    device_error_from_signaling,
)
from softphone.core.events import EventEmitter
from softphone.core.log import apply_log_level
from softphone.core.options import DeviceOptions, check_rtc_configuration
from softphone.core.sounds import SoundBoard
from softphone.insights import endpoint as insights_endpoint
from softphone.insights import events as insights
from softphone.insights.events import CallInfo, SessionInfo, default_payload
from softphone.insights.publisher import EventPublisher
from softphone.media.peer_connection import PeerConnection
from softphone.plugins.manager import SoftphonePluginManager
from softphone.signaling import codes
from softphone.signaling.connect_token import ConnectToken, ConnectTokenError
from softphone.signaling.connect_token import parse_connect_token as _parse_connect_token
from softphone.signaling.edge_walk import SocketState
from softphone.signaling.failures import target_of
from softphone.signaling.messages import Connected, Invite
from softphone.signaling.pstream import PStream
from softphone.signaling.regions import (
    edge_from_connected,
    preferred_signaling_url,
    region_code_from_long_name,
    signaling_hosts,
    signaling_urls,
)
from softphone.version import PACKAGE_NAME, __version__

if TYPE_CHECKING:
    from softphone.core.preflight_test import PreflightTest

log = logging.getLogger("softphone.device")

REGISTRATION_REFRESH_S = 30.0


class DeviceState(enum.StrEnum):
    """``Device.State`` of the JS SDK."""

    DESTROYED = "destroyed"
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"


class DeviceEventName(enum.StrEnum):
    """``Device.EventName`` of the JS SDK."""

    ERROR = "error"
    INCOMING = "incoming"
    DESTROYED = "destroyed"
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    TOKEN_WILL_EXPIRE = "tokenWillExpire"


def _is_supported() -> bool:
    try:
        import aiortc  # noqa: F401
    except ImportError:
        return False
    return True


class Device(EventEmitter):
    """A softphone endpoint: registers for incoming calls and places outgoing ones.

    ``Device(token, options=None, **kwargs)`` takes an access token and the options
    listed below, as a mapping, a :class:`~softphone.core.options.DeviceOptions`, keyword
    arguments, or a mix (keywords win). JS camelCase keys (``codecPreferences``) are
    accepted too; an unknown key raises ``InvalidArgumentError`` with a suggestion.
    Nothing touches the network before :meth:`register` or :meth:`connect`. Use it as
    ``async with Device(...) as device:`` to have :meth:`destroy` run at the end.

    **Events** (``device.on(name, listener)``; a listener may be a coroutine function):

    ``registering``, ``registered``, ``unregistered``, ``destroyed``
        No arguments. :attr:`state` changed to that value. After a lost signaling
        connection the Device goes ``unregistered`` and registers again by itself
        once signaling is back.
    ``incoming`` ``(call)``
        A call rings this Device: a pending :class:`~softphone.core.call.Call` to
        ``accept()``, ``reject()`` or ``ignore()``. It is listed in :attr:`calls` until
        it is answered or ends. While busy, new invites are dropped unless
        ``allow_incoming_while_busy`` is set.
    ``error`` ``(error)`` or ``(error, call)``
        A :class:`~softphone.core.errors.TwilioError`: the gateway refused the token
        (20101, 20104, 20151, or 53000 with the precise cause), a signaling socket
        failed (31000, 31005, 31009), an invite was malformed (31400), or any other
        error frame of the gateway. ``call`` is passed when the error names a call.
    ``tokenWillExpire`` ``(device)``
        ``token_refresh_ms`` before the token expires: fetch a new token and call
        :meth:`update_token`.

    **Attributes** (besides the properties below):

    ``audio``
        The :class:`~softphone.core.audio_helper.AudioHelper` (None after
        :meth:`destroy`): device lists, input selection, speaker and ringtone outputs,
        processors, the ``inputVolume`` meter.
    ``plugins``
        This Device's plugin manager: ``plugins.register(obj)`` adds a plugin;
        ``plugins.tone``, ``plugins.file``, ``plugins.memory`` declare virtual devices
        (``plugins.tone.add_tone("beep", [1000])`` makes input ``tone:beep``).
    ``sounds``
        The ringtone and call sounds (``incoming``, ``outgoing``, ``disconnect``,
        ``dtmf0`` to ``dtmfh``), played on the AudioHelper's outputs.
    ``publisher``
        The insights publisher: the JS SDK's call events and metrics, posted to the
        gateway that names an insights endpoint (``publish_events=False`` stops it).
    ``State``, ``EventName``
        The JS enums :class:`DeviceState` and :class:`DeviceEventName`.
    ``version``, ``package_name``, ``is_supported``
        This package's version and name (sent to the gateway), and whether the media
        stack (aiortc) can be imported.

    **Options** (:class:`~softphone.core.options.DeviceOptions`, default in brackets):

    ``allow_incoming_while_busy`` [False]
        Invites arriving during a call become pending calls (no ringtone; accepting one
        hangs up the current call) instead of being dropped.
    ``app_name``, ``app_version`` [None]
        Sent with the insights events only.
    ``chunderw`` [None]
        The gateway's signaling URL(s): ``wss://host:port`` (``ws://`` for a plain local
        gateway), a bare ``host:port``, or a list tried in order. Overrides ``edge``.
    ``codec_preferences`` [("pcmu", "opus")]
        Codec order offered and accepted (``opus``, ``pcmu``; see ``Call.Codec``).
    ``edge`` [None, i.e. roaming]
        Twilio edge name(s) mapped to signaling hosts, as in the JS SDK.
    ``enable_improved_signaling_error_precision`` [False]
        Surface the precise error class of a gateway error (31480 ``TemporarilyUnavailable``,
        31486 ``BusyHere``...) instead of the generic 53000 / 31005.
    ``file_input_stream`` [None]
        An ``AudioSource`` (``FileSource``, ``ToneSource``, ``MemorySource``...) every call
        sends instead of the selected input. The Device never closes it.
    ``log_level`` ["error"]
        Level of the ``softphone`` logger: ``trace``, ``debug``, ``info``, ``warn``,
        ``error``, ``silent`` or 0-5. The library adds no handler: configure
        :mod:`logging` (e.g. ``logging.basicConfig()``) to see the messages.
    ``max_average_bitrate`` [None]
        Opus bitrate cap in bit/s (used when 6000..510000).
    ``max_call_signaling_timeout_ms`` [0]
        How long a call may wait for signaling to come back on the same edge; non-zero
        lets calls survive a signaling drop (reconnect with the call's token).
    ``token_refresh_ms`` [10000]
        How long before the token expires ``tokenWillExpire`` is emitted.
    ``sounds`` [{}]
        Sound name (``incoming``, ``outgoing``, ``disconnect``, ``dtmf0``...) to the path
        of an audio file to play instead of the built-in sound.
    ``rtc_configuration`` [{"iceServers": []}]
        Peer-connection settings: ``iceServers`` (STUN/TURN), ``iceTransportPolicy``
        (``"relay"`` forces TURN). Checked as a browser would. No ICE servers unless given.
    ``rtc_constraints`` [{"audio": True}]
        Default constraints for acquiring the input (``get_user_media``).
    ``ssl_context`` [None]
        An ``ssl.SSLContext`` for ``wss://`` gateways and ``turns:`` servers, e.g.
        ``client_ssl_context(cert_path)`` to trust a self-signed gateway certificate.
        None verifies against the system trust store (or ``SSL_CERT_FILE``).
    ``signaling_connect_timeout_ms`` [15000]
        Longest :meth:`register` / :meth:`connect` wait for signaling before they reject
        with a ``TwilioError`` (53000, the cause in its message).
    ``speaker`` [None]
        An ``AudioSink`` for call audio and sounds when no speaker device is selected
        (default: the sound card's speaker, see ``real_devices``, else discard).
    ``real_devices`` [None]
        The ``default`` input and output are the machine's default microphone and
        speaker through PortAudio (as a browser's); False: silence and discard. None:
        on, unless the environment says ``SOFTPHONE_REAL_DEVICES=0``.
    ``ringer`` [None]
        An ``AudioSink`` for the ringtone (default: ``speaker``).
    ``get_user_media`` [None]
        ``fn(constraints) -> AudioSource`` (sync or async) replacing every input
        acquisition (JS ``getUserMedia``).
    ``enumerate_devices`` [None]
        ``fn() -> list[MediaDeviceInfo]`` replacing the device list (JS ``enumerateDevices``).
    ``rtc_peer_connection`` [None]
        ``fn(configuration) -> PeerConnectionLike`` building each call's media adapter
        (JS ``RTCPeerConnection``).
    ``media_stream`` [None]
        Accepted for ported code (JS ``MediaStream``); reported to insights only.
    ``publish_events`` [True]
        Publish insights events and metrics (feedback is always published, as in JS).
    ``eventgw`` [None]
        Insights host to use before (or instead of) the one the gateway names.
    ``preflight`` [False]
        Marks the Device's calls as preflight calls in insights (PreflightTest sets it).
    ``voice_event_sid_generator`` [None]
        ``fn() -> str`` making the ``KX...`` ids of :meth:`~softphone.core.call.Call.send_message`.
    ``backoff_max_ms`` [None]
        Upper bound of the signaling reconnection backoff.
    ``dscp`` [True], ``force_aggressive_ice_nomination`` [False]
        Reported to insights as in JS; aiortc can neither mark DSCP nor nominate
        aggressively, so they change nothing else.
    ``close_protection``, ``disable_audio_context_sounds``, ``ignore_browser_support`` [False]
        Browser-only JS options, accepted for ported code and without effect.
    """

    State = DeviceState
    EventName = DeviceEventName
    version = __version__
    package_name = PACKAGE_NAME
    is_supported = _is_supported()

    def __init__(
        self, token: str, options: Mapping[str, Any] | DeviceOptions | None = None, **kwargs: Any
    ) -> None:
        super().__init__()
        if not isinstance(token, str):
            raise InvalidArgumentError('Parameter "token" must be of type "string".')
        self._token = token
        self._options = DeviceOptions()
        self._state = DeviceState.UNREGISTERED
        self._stream: PStream | None = None
        self._stream_connected: asyncio.Future[None] | None = None
        self._connect_waiters = 0
        self._server_error: TwilioError | None = None
        """The last error a server ``error`` frame raised on this stream (for rejections)."""
        self._destroying = False
        self._edge: str | None = None
        self._home: str | None = None
        self._region: str | None = None
        self._identity: str | None = None
        self._preferred_uri: str | None = None
        self._should_reregister = False
        self._refresh_task: asyncio.Task[None] | None = None
        self._token_timer: asyncio.TimerHandle | None = None
        self._active_call: Call | None = None
        self._calls: list[Call] = []
        self._connect_in_progress = False
        self.plugins = SoftphonePluginManager(lambda: self._options)
        """This Device's plugins: backends, overrides, entry points (``register()`` more)."""
        self.audio: AudioHelper | None = AudioHelper(self)
        self.sounds = SoundBoard(lambda: self.audio, lambda: self._calls)
        if isinstance(options, DeviceOptions):
            self._options = options
            options = None
        self.publisher = EventPublisher(token, default_payload=self._insights_payload)
        """Insights: the JS SDK's events and metrics, to the gateway that names an endpoint
        in ``connected`` (or to ``eventgw``); nowhere otherwise."""
        self.audio.speaker_devices.on_set = self._publish_devices_set
        self.audio.on_device_change = self._publish_device_change
        self.audio.ringtone_devices.on_set = self._publish_devices_set
        self.update_options({**(dict(options) if options else {}), **kwargs})

    # -- properties --------------------------------------------------------------------
    @property
    def state(self) -> DeviceState:
        """``unregistered``, ``registering``, ``registered`` or ``destroyed``."""
        return self._state

    @property
    def token(self) -> str:
        """The current access token."""
        return self._token

    @property
    def identity(self) -> str | None:
        """The identity the gateway read from the token (``connected.token.identity``)."""
        return self._identity

    @property
    def edge(self) -> str | None:
        """The edge of the last ``connected``; None before it and after going offline."""
        return self._edge

    @property
    def home(self) -> str | None:
        """``connected.home`` (kept after going offline)."""
        return self._home

    @property
    def region(self) -> str | None:
        """Region code (or raw region name) of the last ``connected``."""
        return self._region

    @property
    def options(self) -> DeviceOptions:
        """The options in force."""
        return self._options

    @property
    def is_busy(self) -> bool:
        """True while there is an active call."""
        return self._active_call is not None

    @property
    def calls(self) -> list[Call]:
        """Pending incoming calls (accepted and outgoing calls are not listed)."""
        return list(self._calls)

    @property
    def active_call(self) -> Call | None:
        """The outgoing call or accepted incoming call in progress, if any."""
        return self._active_call

    @property
    def stream(self) -> PStream | None:
        """The signaling stream, once created by ``register()`` or ``connect()``."""
        return self._stream

    def __str__(self) -> str:
        return "[Twilio.Device instance]"

    # -- options and token -------------------------------------------------------------
    def update_options(self, options: Mapping[str, Any] | DeviceOptions | None = None) -> None:
        """Merge ``options`` over the current ones (JS ``updateOptions``).

        Raises ``InvalidStateError`` after ``destroy()`` or when the signaling URLs
        would change during a call, ``InvalidArgumentError`` for bad values.
        """
        if self._state is DeviceState.DESTROYED:
            raise InvalidStateError("Device has been destroyed.")
        new = DeviceOptions.merged(self._options, options)
        old_urls = self._signaling_urls(self._options)
        new_urls = self._signaling_urls(new)
        if self._stream is not None and old_urls != new_urls and self.is_busy:
            raise InvalidStateError("Cannot change Edge while on an active Call")
        self._options = new
        apply_log_level(new.log_level)
        self.sounds.configure(new.sounds)
        self._configure_publisher()
        if self._stream is not None and old_urls != new_urls:
            log.info("signaling URLs changed: rebuilding the stream")
            self._rebuild_stream()

    def _configure_publisher(self) -> None:
        """Apply ``publish_events``, ``eventgw`` and the app metadata to the publisher."""
        options = self._options
        publisher = self.publisher
        if options.publish_events:
            publisher.enable()
        else:
            publisher.disable()
        if options.eventgw:
            publisher.set_host(options.eventgw)
        publisher.metadata.update(app_name=options.app_name, app_version=options.app_version)
        publisher.ssl_context = options.ssl_context

    def _insights_payload(self, call: CallInfo | None) -> dict[str, Any]:
        """JS ``_createDefaultPayload``: the Device's settings and the call's ids."""
        options = self._options
        session = SessionInfo(
            sdk_version=__version__,
            aggressive_nomination=options.force_aggressive_ice_nomination,
            dscp=bool(options.dscp),
            gateway=self._stream.gateway if self._stream is not None else None,
            region=self._region,
        )
        return default_payload(session, call)

    @staticmethod
    def _signaling_urls(options: DeviceOptions) -> list[str]:
        chunderw = (
            list(options.chunderw) if isinstance(options.chunderw, tuple) else options.chunderw
        )
        edge = list(options.edge) if isinstance(options.edge, tuple) else options.edge
        try:
            urls = signaling_urls(signaling_hosts(edge=edge, chunderw=chunderw))
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from exc
        for url in urls:
            try:
                parse_uri(url)
                if not urllib.parse.urlsplit(url).hostname:
                    raise InvalidURI(url, "no host")
            except (InvalidURI, ValueError) as exc:
                raise InvalidArgumentError(f"Bad signaling URL {url!r}: {exc}") from exc
        return urls

    def update_token(self, token: str) -> None:
        """Use ``token`` from now on; sends ``listen`` at once if a stream exists."""
        if self._state is DeviceState.DESTROYED:
            raise InvalidStateError("Device has been destroyed.")
        if not isinstance(token, str):
            raise InvalidArgumentError('Parameter "token" must be of type "string".')
        self._token = token
        if self._stream is not None:
            self._stream.set_token(token)
        self.publisher.set_token(token)

    # -- registration ------------------------------------------------------------------
    async def register(self) -> None:
        """Register for incoming calls; resolves once the gateway says ``ready``.

        Never waits forever. Rejects with a ``TwilioError`` (and leaves the Device
        ``unregistered``):

        * the token's own error when the gateway refuses the token: 20101, 20104, 20151,
          or 53000 naming the precise cause (e.g. 31202 "Access token signature
          validation failed") unless ``enable_improved_signaling_error_precision``
          surfaces the precise class;
        * ``SignalingErrors.ConnectionError`` (53000) with the cause in its message when
          signaling cannot be established: as soon as every signaling URL has failed once
          (refused, unresolvable host, certificate or TLS failure, an HTTP answer instead
          of a WebSocket, no socket within the 5 s connect timeout), and at the latest
          ``signaling_connect_timeout_ms`` (default 15 s) after the call without
          ``connected`` and ``ready``.

        The JS SDK's per-socket ``error`` events (31000, 31005) are emitted as well.
        """
        if self._state is DeviceState.DESTROYED:
            raise InvalidStateError("Device has been destroyed.")
        if self._state is not DeviceState.UNREGISTERED:
            raise InvalidStateError(
                f'Attempt to register when device is in state "{self._state}". '
                f'Must be "{DeviceState.UNREGISTERED}".'
            )
        loop = asyncio.get_running_loop()
        deadline = self._signaling_deadline()
        self._should_reregister = False
        self._server_error = None
        self._set_state(DeviceState.REGISTERING)
        outcome = self._state_outcome(
            DeviceState.REGISTERED, DeviceState.UNREGISTERED, self._registration_failure
        )
        try:
            stream = await self._ensure_stream_connected(deadline)
        except BaseException:
            outcome.cancel()
            self._end_registering()
            raise
        self._send_presence(True)
        self._start_refresh()
        try:
            await asyncio.wait_for(asyncio.shield(outcome), max(0.0, deadline - loop.time()))
        except TimeoutError:
            outcome.cancel()
            self._stop_refresh()
            self._should_reregister = False
            self._send_presence(False)  # the app was told it failed: no late registration
            self._end_registering()
            raise self._server_error or SignalingErrors.ConnectionError(
                cause=f"{_target(stream)} did not confirm the registration (no `ready`) "
                f"within {self._signaling_limit_s():g} s"
            ) from None
        except BaseException:
            outcome.cancel()
            self._should_reregister = False  # rejected: stays unregistered until asked again
            raise

    async def unregister(self) -> None:
        """Stop receiving calls; resolves once the gateway says ``offline``."""
        if self._state is DeviceState.DESTROYED:
            raise InvalidStateError("Device has been destroyed.")
        if self._state is not DeviceState.REGISTERED:
            raise InvalidStateError(
                f'Attempt to unregister when device is in state "{self._state}". '
                f'Must be "{DeviceState.REGISTERED}".'
            )
        stream = self._stream
        assert stream is not None
        self._stop_refresh()
        offline: asyncio.Future[tuple[Any, ...]] = asyncio.ensure_future(
            _wait_event(stream, "offline")
        )
        self._send_presence(False)
        await offline

    def _end_registering(self) -> None:
        """Back to ``unregistered`` after a failed register() (not after destroy())."""
        if self._state is DeviceState.REGISTERING:
            self._set_state(DeviceState.UNREGISTERED)

    def _registration_failure(self) -> BaseException:
        """Why a registration in progress ended ``unregistered`` instead of ``registered``."""
        if self._destroying:
            return InvalidStateError("Device has been destroyed.")
        if self._server_error is not None:
            return self._server_error
        last = self._stream.transport.last_failure if self._stream is not None else None
        return SignalingErrors.ConnectionError(
            cause="signaling went offline before the gateway confirmed the registration"
            + (f" ({last})" if last else "")
        )

    def _state_outcome(
        self, success: DeviceState, failure: DeviceState, error: Callable[[], BaseException]
    ) -> asyncio.Future[None]:
        """A future resolved when the state becomes ``success``, failed with ``error()``
        when it becomes ``failure``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume_exception)

        def on_success() -> None:
            cleanup()
            if not future.done():
                future.set_result(None)

        def on_failure() -> None:
            cleanup()
            if not future.done():
                future.set_exception(error())

        def cleanup() -> None:
            self.off(str(success), on_success)
            self.off(str(failure), on_failure)

        self.once(str(success), on_success)
        self.once(str(failure), on_failure)
        future.add_done_callback(lambda f: cleanup() if f.cancelled() else None)
        return future

    def _send_presence(self, audio: bool) -> None:
        if self._stream is not None:
            self._stream.register(audio)

    def _start_refresh(self) -> None:
        self._stop_refresh()
        self._refresh_task = asyncio.create_task(self._refresh_loop())
        self._refresh_task.add_done_callback(_log_failure("registration refresh"))

    def _stop_refresh(self) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            self._refresh_task = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REGISTRATION_REFRESH_S)
            self._send_presence(True)

    def _set_state(self, state: DeviceState) -> None:
        """Move to ``state``; emits the event of that name (``registering``, ``registered``,
        ``unregistered``, ``destroyed``, no arguments) on an actual change only."""
        if state is self._state:
            return
        self._state = state
        self.emit(str(state))

    # -- signaling stream --------------------------------------------------------------
    def _signaling_limit_s(self) -> float:
        return float(self._options.signaling_connect_timeout_ms) / 1000

    def _signaling_deadline(self) -> float:
        return asyncio.get_running_loop().time() + self._signaling_limit_s()

    async def _ensure_stream_connected(self, deadline: float) -> PStream:
        """The stream once it has said ``connected`` (created if needed), or a rejection.

        Gives up (and destroys the never-connected stream, so the next call starts a
        fresh edge walk) when every URL has failed once, when ``deadline`` (loop time)
        passes, or when the gateway sends ``close``; see :meth:`register`.
        """
        if self._stream is None:
            self._create_stream()
        stream, connected = self._stream, self._stream_connected
        assert stream is not None and connected is not None
        if not connected.done():
            self._connect_waiters += 1
            try:
                remaining = max(0.0, deadline - asyncio.get_running_loop().time())
                await asyncio.wait_for(asyncio.shield(connected), remaining)
            except TimeoutError:
                self._fail_stream(stream, self._server_error or self._timeout_error(stream))
            finally:
                self._connect_waiters -= 1
        await connected
        return stream

    def _timeout_error(self, stream: PStream) -> TwilioError:
        transport, limit = stream.transport, self._signaling_limit_s()
        if transport.state is SocketState.OPEN:
            cause = f"{_target(stream)} accepted the WebSocket but sent no `connected` within"
            cause += f" {limit:g} s"
        elif transport.last_failure:
            cause = f"no signaling connection within {limit:g} s; last: {transport.last_failure}"
        else:
            cause = f"no signaling connection to {_target(stream)} within {limit:g} s"
        return SignalingErrors.ConnectionError(cause=cause)

    def _on_stream_transport_close(self) -> None:
        """A socket failed or closed: give up once every URL has failed while someone waits."""
        stream, connected = self._stream, self._stream_connected
        if stream is None or connected is None or connected.done() or not self._connect_waiters:
            return
        transport = stream.transport
        if transport.failures < len(transport.uris):
            return
        cause = transport.last_failure or "the signaling socket closed"
        if len(transport.uris) > 1:
            cause = f"all {len(transport.uris)} signaling URLs failed; the last: {cause}"
        self._fail_stream(stream, SignalingErrors.ConnectionError(cause=cause))

    def _fail_stream(self, stream: PStream, error: BaseException) -> None:
        """Reject everyone waiting for ``stream`` to connect, and drop the stream."""
        if self._stream is stream:
            log.warning("signaling could not be established: %s", error)
            self._destroy_stream(error)

    def _create_stream(self) -> None:
        options = self._options
        stream = PStream(
            self._token,
            self._signaling_urls(options),
            max_preferred_duration_ms=options.max_call_signaling_timeout_ms,
            backoff_max_ms=options.backoff_max_ms,
            ssl_context=options.ssl_context,
        )
        self._stream = stream
        self._server_error = None
        self._stream_connected = asyncio.get_running_loop().create_future()
        self._stream_connected.add_done_callback(_consume_exception)
        stream.on("transportClose", self._on_stream_transport_close)
        stream.on("malformed", self._on_signaling_malformed)
        stream.on("connected", self._on_signaling_connected)
        stream.on("ready", self._on_signaling_ready)
        stream.on("offline", self._on_signaling_offline)
        stream.on("close", self._on_signaling_close)
        stream.on("error", self._on_signaling_error)
        stream.on("invite", self._on_signaling_invite)
        for call in self._all_calls():
            call.attach_stream(stream)

    def _destroy_stream(self, reason: BaseException | None = None) -> None:
        """Close the stream for good; whoever waits for it to connect gets ``reason``."""
        stream = self._stream
        if stream is None:
            return
        self._stream = None
        if self._stream_connected is not None and not self._stream_connected.done():
            self._stream_connected.set_exception(
                reason or InvalidStateError("The signaling stream was closed before it connected")
            )
        stream.destroy()
        stream.remove_all_listeners()
        self._edge = None
        self._region = None

    def _rebuild_stream(self) -> None:
        was_registered = self._state in (DeviceState.REGISTERED, DeviceState.REGISTERING)
        self._destroy_stream()
        self._set_state(DeviceState.UNREGISTERED)
        self._create_stream()
        self._should_reregister = was_registered

    def _on_signaling_connected(self, message: Connected) -> None:
        code = region_code_from_long_name(message.region or "")
        self._region = code or message.region
        self._edge = edge_from_connected(message.edge, message.region)
        self._home = message.home
        if message.identity is not None:
            self._identity = message.identity
        self.publisher.set_host(
            insights_endpoint.select_base_url(
                self._options.eventgw,
                message.extra.get(insights_endpoint.CONNECTED_FIELD),
                self._stream.uri if self._stream is not None else None,
            )
        )
        chunderw = self._options.chunderw
        self._preferred_uri = preferred_signaling_url(
            list(chunderw) if isinstance(chunderw, tuple) else chunderw,
            self._edge,
            scheme=_scheme_of(self._stream.uri if self._stream else None),
        )
        ttl = message.ttl
        if self._token_timer is not None:
            self._token_timer.cancel()
            self._token_timer = None
        if ttl is not None and math.isfinite(ttl):
            delay_s = max(0.0, ttl - self._options.token_refresh_ms / 1000)
            self._token_timer = asyncio.get_running_loop().call_later(
                delay_s, self._on_token_will_expire
            )
        if self._stream_connected is not None and not self._stream_connected.done():
            self._stream_connected.set_result(None)
        if self._should_reregister:
            self._should_reregister = False
            if self._state is DeviceState.UNREGISTERED:
                task = asyncio.ensure_future(self.register())
                task.add_done_callback(_log_failure("re-register"))
        for call in self._all_calls():
            call.on_signaling_connected()

    def _on_token_will_expire(self) -> None:
        """Event ``tokenWillExpire(device)``: ``token_refresh_ms`` before the token's ttl."""
        self._token_timer = None
        self.emit("tokenWillExpire", self)

    def _on_signaling_ready(self, _: object) -> None:
        self._set_state(DeviceState.REGISTERED)

    def _on_signaling_offline(self, _: object = None) -> None:
        self._edge = None
        self._region = None
        if self._state is not DeviceState.UNREGISTERED:
            self._should_reregister = self._state in (
                DeviceState.REGISTERED,
                DeviceState.REGISTERING,
            )
        if self._state is not DeviceState.DESTROYED:
            self._set_state(DeviceState.UNREGISTERED)

    def _on_signaling_close(self, _: object) -> None:
        """The gateway said ``close``: forget the stream; the next register() opens a new one.

        A register()/connect() still waiting rejects with the error the gateway sent
        just before (a token error, typically)."""
        self._should_reregister = False
        self._stop_refresh()
        self._destroy_stream(
            self._server_error
            or SignalingErrors.ConnectionError(
                cause="the gateway closed the signaling stream (`close`) without an error"
            )
        )

    def _on_signaling_error(self, info: Mapping[str, Any]) -> None:
        """A server ``error`` frame or a socket failure: event ``error(error[, call])``.

        A frame without an ``error`` object is reported as 53000 (a rogue server's
        frame is still an error the app should hear about)."""
        if not isinstance(info, Mapping):
            log.error("signaling error event without details (31000): %r", info)
            return
        raw = info.get("error")
        if isinstance(raw, Mapping) and isinstance(info.get("voiceeventsid"), str):
            return  # message-scoped: the Call reports it
        if isinstance(raw, Mapping):
            if raw.get("code") == codes.TOKEN_EXPIRED:
                self._stop_refresh()
            error = device_error_from_signaling(
                dict(raw), self._options.enable_improved_signaling_error_precision
            )
        else:
            error = SignalingErrors.ConnectionError(
                None, dict(info), cause="the server sent an `error` frame without error details"
            )
        if not info.get("transport"):
            self._server_error = error
        callsid = info.get("callsid")
        call = self._find_call(callsid) if isinstance(callsid, str) else None
        if call is not None:
            self.emit("error", error, call)
        else:
            self.emit("error", error)

    def _on_signaling_malformed(self, msg_type: str | None, reason: str) -> None:
        """An undecodable frame (already logged by the stream); an invite is event
        ``error(BadRequest)`` (31400)."""
        if msg_type != "invite":
            return
        if self.is_busy and not self._options.allow_incoming_while_busy:
            log.info("busy: dropping a malformed incoming invite (%s)", reason)
            return
        self.emit("error", ClientErrors.BadRequest("Malformed invite from gateway", cause=reason))

    def _on_signaling_invite(self, message: Invite) -> None:
        """A server ``invite``: event ``incoming(call)`` with a new pending Call (or
        ``error(BadRequest)``, 31400, when it has no callsid or sdp)."""
        if self.is_busy and not self._options.allow_incoming_while_busy:
            log.info("busy: dropping incoming invite %s", message.callsid)
            return
        if not message.callsid or not message.sdp:
            missing = "callsid" if not message.callsid else "sdp"
            self.emit(
                "error",
                ClientErrors.BadRequest("Malformed invite from gateway", cause=f"empty {missing}"),
            )
            return
        assert self._stream is not None
        call = Call.incoming(self, self._stream, message)
        self._calls.append(call)
        self._wire_call(call)
        if not self.is_busy:
            self.sounds.start_ringing()
        self.emit("incoming", call)

    # -- calls -------------------------------------------------------------------------
    async def connect(
        self,
        params: Mapping[str, Any] | None = None,
        rtc_configuration: Mapping[str, Any] | None = None,
        rtc_constraints: Mapping[str, Any] | None = None,
        connect_token: str | None = None,
    ) -> Call:
        """Place an outgoing call; resolves with the Call (status ``connecting``).

        Opens signaling first if needed and never waits forever for it: rejects with a
        ``TwilioError`` (53000 naming the cause, or the token's error) under the same
        rules and bound as :meth:`register` (every URL failed once, or no ``connected``
        within ``signaling_connect_timeout_ms``, default 15 s).
        """
        if self._state is DeviceState.DESTROYED:
            raise InvalidStateError("Device has been destroyed.")
        if self._active_call is not None or self._connect_in_progress:
            raise InvalidStateError("A Call is already active")
        if rtc_configuration is not None:
            check_rtc_configuration({**self._options.rtc_configuration, **rtc_configuration})
        reconnect: ConnectToken | None = None
        if connect_token is not None:
            reconnect = parse_connect_token(connect_token)
        self._connect_in_progress = True
        try:
            if self.audio is not None:
                await self.audio.wait_for_input_change()
            stream = await self._ensure_stream_connected(self._signaling_deadline())
            if reconnect is not None:
                token, parameters, custom = reconnect
                call = Call.outgoing(
                    self, stream, custom, parameters=parameters, reconnect_token=token
                )
            else:
                call = Call.outgoing(self, stream, dict(params or {}))
            self._active_call = call
            self._wire_call(call)
            for pending in list(self._calls):
                pending.ignore()
            self._calls.clear()
            self.sounds.stop_ringing()
            call.accept(rtc_configuration=rtc_configuration, rtc_constraints=rtc_constraints)
            return call
        finally:
            self._connect_in_progress = False

    def _publish_device_change(self, lost: list[MediaDeviceInfo]) -> None:
        """``audio/device-change {lost_active_device_ids}`` for the active call (JS)."""
        if self._active_call is not None:
            event = insights.audio_device_change(d.device_id for d in lost)
            self.publisher.publish(event, self._active_call.insights_info())

    def _publish_devices_set(self, kind: str, ids: list[str], error: Exception | None) -> None:
        """``audio/<kind>-devices-set`` or ``-set-failed`` for the active call (JS)."""
        call = self._active_call
        if call is None:
            return  # JS publishes device changes with the call they affect
        if error is None:
            event = insights.audio_devices_set(kind, ids)
        else:
            event = insights.audio_devices_set_failed(kind, ids, str(error))
        self.publisher.publish(event, call.insights_info())

    def _publish_settings(self, call: Call) -> None:
        """``settings/init`` for a new call: which overrides the app configured (JS)."""
        options = self._options
        event = insights.settings_init(
            media_stream=options.media_stream is not None,
            rtc_peer_connection=options.rtc_peer_connection is not None,
            enumerate_devices=options.enumerate_devices is not None,
            get_user_media=options.get_user_media is not None,
        )
        self.publisher.publish(event, call.insights_info())

    def _wire_call(self, call: Call) -> None:
        self._publish_settings(call)
        call.on("accept", lambda *_: self._on_call_accept(call))
        call.on("disconnect", lambda *_: self._on_call_ended(call))
        call.on("cancel", lambda *_: self._on_call_ended(call))
        call.on("reject", lambda *_: self._on_call_ended(call))
        call.on("error", lambda *_: self._on_call_error(call))
        call.on("transportClose", lambda *_: self._on_call_transport_close(call))

    def _on_call_accept(self, call: Call) -> None:
        edge = self._edge or self._region
        self.publisher.publish(
            insights.settings_edge(edge, self._options.edge), call.insights_info()
        )
        if call.direction is CallDirection.INCOMING:
            if self._active_call is not None and self._active_call is not call:
                self._active_call.disconnect()
            if call in self._calls:
                self._calls.remove(call)
            self._active_call = call
        if self._stream is not None:
            self._stream.update_preferred_uri(self._preferred_uri)
        if not self._calls:
            self.sounds.stop_ringing()
        if call.direction is CallDirection.OUTGOING and not call.is_connect_token_call:
            self.sounds.play("outgoing")

    def _on_call_ended(self, call: Call) -> None:
        if call in self._calls:
            self._calls.remove(call)
        if self._active_call is call:
            self._active_call = None
        if not self._calls:
            self.sounds.stop_ringing()
        if self._active_call is None and not self._calls and self._stream is not None:
            self._stream.update_preferred_uri(None)

    def _on_call_error(self, call: Call) -> None:
        if call.status() is CallState.CLOSED:
            self._on_call_ended(call)

    def _on_call_transport_close(self, call: Call) -> None:
        if call.status() is CallState.PENDING or (
            call in self._calls and call.status() is not CallState.OPEN
        ):
            if call in self._calls:
                self._calls.remove(call)
            if not self._calls:
                self.sounds.stop_ringing()

    def _find_call(self, callsid: str) -> Call | None:
        for call in self._all_calls():
            if callsid in (call.parameters.get("CallSid"), call.outbound_connection_id):
                return call
        return None

    def _all_calls(self) -> list[Call]:
        calls = list(self._calls)
        if self._active_call is not None:
            calls.append(self._active_call)
        return calls

    def disconnect_all(self) -> None:
        """End every call: pending ones are dropped locally, the active one hung up."""
        calls = list(self._calls)
        self._calls.clear()
        for call in calls:
            call.disconnect()
        if self._active_call is not None:
            self._active_call.disconnect()

    async def destroy(self) -> None:
        """Reject pending calls, hang up, close the stream for good; state ``destroyed``."""
        if self._state is DeviceState.DESTROYED:
            return
        self._destroying = True
        for call in list(self._calls):
            call.reject()
        self.disconnect_all()
        self._stop_refresh()
        if self._token_timer is not None:
            self._token_timer.cancel()
            self._token_timer = None
        if self._stream is not None:  # the hangup/reject frames queued above go out first
            await self._stream.transport.flush(timeout=0.5)
        self._destroy_stream(InvalidStateError("Device has been destroyed."))
        self.sounds.stop_all()
        if self.audio is not None:
            self.audio.destroy()
            self.audio = None
        await self.publisher.close()
        await self.plugins.aclose()
        self._should_reregister = False
        if self._state is not DeviceState.UNREGISTERED:
            self._set_state(DeviceState.UNREGISTERED)
        self._set_state(DeviceState.DESTROYED)
        self.remove_all_listeners()

    async def __aenter__(self) -> Device:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.destroy()

    async def audio_input(self, constraints: Mapping[str, Any] | None = None) -> AudioSource:
        """The audio source for a new call: ``file_input_stream``, the selected input, else
        the plugins' ``softphone_get_user_media`` (see :meth:`AudioHelper.input_source`)."""
        if self.audio is None:
            raise InvalidStateError("Device has been destroyed.")
        return await self.audio.input_source(constraints)

    def create_peer_connection(self, configuration: Mapping[str, Any]) -> PeerConnection:
        """A media adapter for a new call from ``softphone_create_peer_connection``.

        The ``rtc_peer_connection`` option answers first, then registered and
        entry-point plugins, then our aiortc adapter (ICE servers only from
        ``configuration["iceServers"]``, never aiortc's public STUN default).
        The result has ``PeerConnection``'s API (``PeerConnectionLike``).
        """
        return cast(PeerConnection, self.plugins.create_peer_connection(configuration))

    def call_output(self, call: HelperCall) -> AudioSink | None:
        """Where ``call``'s remote audio goes once it opens (JS: the speaker devices)."""
        return self.audio.call_output(call) if self.audio is not None else None

    @staticmethod
    def run_preflight(token: str, options: Mapping[str, Any] | None = None) -> PreflightTest:
        """Start a :class:`~softphone.core.preflight_test.PreflightTest` (JS ``runPreflight``)."""
        from softphone.core.preflight_test import PreflightTest

        return PreflightTest(token, options)


def parse_connect_token(token: str) -> ConnectToken:
    """Decode a ``call.connect_token`` into (reconnect token, parameters, custom params).

    :func:`softphone.signaling.connect_token.parse_connect_token` with the SDK's error:
    ``InvalidArgumentError("Cannot parse connectToken")`` for text that is not base64 of
    percent-encoded JSON, ``"Invalid connectToken"`` when a part is missing.
    """
    try:
        return _parse_connect_token(token)
    except ConnectTokenError as exc:
        raise InvalidArgumentError(str(exc)) from exc


def _target(stream: PStream) -> str:
    """``host:port`` of the stream's current or last URL, for messages."""
    return target_of(stream.uri) if stream.uri else "the gateway"


def _scheme_of(uri: str | None) -> str:
    if uri and uri.startswith("ws://"):
        return "ws"
    return "wss"


async def _wait_event(emitter: Any, event: str) -> tuple[Any, ...]:
    future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

    def resolve(*args: Any) -> None:
        if not future.done():
            future.set_result(args)

    emitter.once(event, resolve)
    return await future


def _consume_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _log_failure(what: str) -> Callable[[asyncio.Future[Any]], None]:
    """A done-callback logging a task's failure with its code (31000 if it has none)."""

    def callback(task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, TwilioError):
            log.warning("%s failed: %s", what, exc)
        elif exc is not None:
            log.error("%s failed (31000 UnknownError): %r", what, exc, exc_info=exc)

    return callback


__all__ = ["Device", "DeviceEventName", "DeviceState", "parse_connect_token"]

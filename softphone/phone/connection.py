"""Open a phone: the gateway (given, or a local dev one), its Device, its audio.

:func:`open_phone` is shared by the scripted runner and the interactive app: it
starts the local dev gateway when no ``--url`` is given (and notes where it
listens and how another phone joins it), builds the Device with the phone's
options, puts ``--input``/``--output`` in place, and hands back a
:class:`~softphone.phone.controller.PhoneController`; leaving the block hangs up,
destroys the Device and stops the local gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from softphone.cli_common import CliError
from softphone.core.device import Device
from softphone.core.errors import InvalidArgumentError
from softphone.media.aiortc_hooks import use_host_addresses
from softphone.phone.audio_setup import use_input, use_output
from softphone.phone.controller import PhoneController
from softphone.phone.local_gateway import local_gateway
from softphone.phone.session import PhoneSession
from softphone.phone.settings import PhoneSettings

__all__ = ["open_phone"]


@asynccontextmanager
async def open_phone(
    settings: PhoneSettings, session: PhoneSession, clock: Callable[[], float]
) -> AsyncIterator[PhoneController]:
    """A controller for a ready Device (audio in place, not yet registered).

    Raises :class:`~softphone.cli_common.CliError` for a gateway URL, ICE servers or
    audio that cannot be used.
    """
    async with AsyncExitStack() as stack:
        renew: Callable[[str | None], str] | None = None
        if settings.url is None:
            gateway = await stack.enter_async_context(local_gateway(settings.gateway_port))
            url, token = gateway.url, gateway.mint(settings.identity)

            def renew(identity: str | None) -> str:
                return gateway.mint(identity or settings.identity)

            session.note(
                f"local dev gateway listening on {url} (other phones: softphone phone --url "
                f"{url} --token $(softphone token --identity NAME))",
                clock(),
            )
        else:
            url, token = settings.url, settings.token or ""
        if settings.media_address:
            use_host_addresses([settings.media_address])
        try:
            device = Device(
                token,
                chunderw=url,
                ssl_context=settings.ssl_context,
                rtc_configuration={"iceServers": settings.ice_servers},
                codec_preferences=["opus", "pcmu"],
                enable_improved_signaling_error_precision=True,
                log_level=settings.log_level,
            )
        except InvalidArgumentError as exc:  # a URL or ICE server a Device cannot use
            raise CliError(str(exc)) from exc
        controller = PhoneController(device, session, clock=clock, renew_token=renew)
        stack.push_async_callback(controller.close)
        audio = device.audio
        assert audio is not None
        if not settings.sounds:
            audio.incoming(False)
            audio.outgoing(False)
            audio.disconnect(False)
        await use_input(device, settings.input)
        await use_output(device, settings.output)
        yield controller

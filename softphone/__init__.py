"""softphone: the Twilio Voice JS SDK 2.x API in asyncio Python, and its gateway."""

from softphone.version import PACKAGE_NAME, __version__

__all__ = ["PACKAGE_NAME", "__version__"]

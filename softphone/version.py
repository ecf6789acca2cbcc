"""Package identity, sent as ``browserinfo.v`` in ``listen`` and exposed as ``Device.version``."""

__version__ = "0.1.0"
PACKAGE_NAME = "softphone"

"""The pluggy markers of the ``softphone`` project, and the entry-point group name.

Third-party plugins decorate their hook functions with :data:`hookimpl` (or
their own ``pluggy.HookimplMarker("softphone")``, which is the same thing) and
advertise themselves in the ``softphone`` entry-point group::

    [project.entry-points.softphone]
    my_plugin = "my_package.softphone_plugin"
"""

from __future__ import annotations

import pluggy

__all__ = ["ENTRY_POINT_GROUP", "PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "softphone"
"""pluggy project name: markers of other names are ignored by our managers."""

ENTRY_POINT_GROUP = "softphone"
"""Entry-point group scanned for third-party plugins."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

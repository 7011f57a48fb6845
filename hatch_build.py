"""Build hook: make editable (development) installs look like real ones to discovery tools.

A regular wheel lists ``chaos_dynamo/*.py`` in its RECORD, which is how
``importlib.metadata.packages_distributions()`` (and so ``chaos discover chaos-dynamo``)
maps the distribution to its import name. An editable wheel lists only ``.pth`` files,
so it also ships one marker module under ``chaos_dynamo/``: a namespace portion in
site-packages that the real package on the source path always takes precedence over.
"""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):  # type: ignore[misc]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "editable":
            build_data["force_include_editable"] = {
                "chaos_dynamo/_shim_boot/chaos_dynamo_shim.pth": "chaos_dynamo_shim.pth",
                "chaos_dynamo/_shim_boot/editable_marker.py": "chaos_dynamo/_editable_marker.py",
            }

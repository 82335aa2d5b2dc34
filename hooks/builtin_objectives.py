"""ES2's built-in separation objectives, registered like any outside plugin's (lazily: no torch import here)."""

from __future__ import annotations

from es2_plugin import hookimpl
from es2_plugin.plugins import lazy


@hookimpl
def es2_register_objectives(register) -> None:  # noqa: ANN001
    """``centroid-margin`` (default) and ``sample-margin``; formulas in :mod:`es2_plugin.objectives`."""
    register("centroid-margin", lazy("es2_plugin.objectives:centroid_margin"))
    register("sample-margin", lazy("es2_plugin.objectives:sample_margin"))

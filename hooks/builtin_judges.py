"""ES2's built-in judges: ``keyword`` (GCG/AdvBench refusal strings) and ``degeneration`` (repetition loops)."""

from __future__ import annotations

from es2_plugin import hookimpl
from es2_plugin.plugins import lazy


@hookimpl
def es2_register_judges(register):
    register("keyword", lazy("es2_plugin.judges:keyword_judge"))
    register("degeneration", lazy("es2_plugin.judges:degeneration_judge"))

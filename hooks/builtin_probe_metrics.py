"""ES2's built-in representation-probe metric ``probe``: per-layer held-out probe accuracy and separation."""

from __future__ import annotations

from es2_plugin import hookimpl
from es2_plugin.plugins import lazy


@hookimpl
def es2_register_probe_metrics(register):
    register("probe", lazy("es2_plugin.probe:probe_metric"))

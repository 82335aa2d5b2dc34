"""ES2's hook specifications (:mod:`es2_plugin.hooks.specs`) and its own built-in plugins.

The built-ins are registered exactly like outside plugins: each ``builtin_*`` module is a plugin whose
``es2_register_*`` hooks register names. Importing this package stays cheap (no torch).
"""

from __future__ import annotations

#: Modules under ``es2_plugin.hooks`` that are ES2's own plugins, registered under the name in the value.
BUILTIN_PLUGINS: dict[str, str] = {
    "es2.objectives": "es2_plugin.hooks.builtin_objectives",
    "es2.judges": "es2_plugin.hooks.builtin_judges",
    "es2.attacks": "es2_plugin.hooks.builtin_attacks",
    "es2.tasks": "es2_plugin.hooks.builtin_tasks",
    "es2.probe_metrics": "es2_plugin.hooks.builtin_probe_metrics",
    "es2.training_callbacks": "es2_plugin.hooks.builtin_callbacks",
    "es2.datasets": "es2_plugin.hooks.builtin_datasets",
    "es2.layers": "es2_plugin.hooks.builtin_layers",
}

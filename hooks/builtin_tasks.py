"""ES2's built-in lm-eval tasks: the ``es2_plugin.tasks`` directory (es2_safety, es2_safety_mini, es2_probe)."""

from __future__ import annotations

from es2_plugin.tasks import TASKS_DIR

from es2_plugin import hookimpl


@hookimpl
def es2_register_tasks(register):
    register(TASKS_DIR)

"""ES2's built-in training callback (metrics history + rich display), registered lazily."""

from __future__ import annotations

from es2_plugin import hookimpl
from es2_plugin.plugins import lazy


@hookimpl
def es2_register_training_callbacks(register) -> None:  # noqa: ANN001
    """A factory: each ES2 trainer gets its own :class:`es2_plugin.callbacks.ES2MetricsCallback`."""
    register(lazy("es2_plugin.callbacks:ES2MetricsCallback"))

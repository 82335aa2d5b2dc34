"""es2-plugin: Embedding Space Separation (ES2) safety fine-tuning and refusal benchmarks.

Importing this package is deliberately cheap (no torch, transformers, peft, lm_eval, not even pluggy): the
lm-eval autoload shim and `es2 --version` import it at interpreter start-up.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]


def __getattr__(name: str) -> Any:
    # ``hookimpl`` (the marker plugins decorate their hooks with) is built on first use, so that start-up
    # paths that only need the version never import pluggy.
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker("es2")
        globals()["hookimpl"] = marker
        return marker
    raise AttributeError(f"module 'es2_plugin' has no attribute {name!r}")

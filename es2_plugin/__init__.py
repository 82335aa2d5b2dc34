"""es2-plugin: Embedding Space Separation (ES2) safety fine-tuning and refusal benchmarks.

Importing this package is deliberately cheap (no torch, transformers, peft or lm_eval): the lm-eval autoload
shim and `es2 --version` import it at start-up.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker for plugin implementations: ``@es2_plugin.hookimpl def es2_register_judges(register): ...``
hookimpl = pluggy.HookimplMarker("es2")

__all__ = ["__version__", "hookimpl"]

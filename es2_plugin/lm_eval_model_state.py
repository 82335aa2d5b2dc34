"""What the running ``es2-hf`` model shares with ES2's lm-eval tasks, without importing lm-eval's HF model.

lm-eval hands a task only the model's *text* output. The probe task needs hidden states, so ``es2-hf`` keeps
them here and answers the probe request with a short key (``es2-states:<n>``) that the task looks up.
"""

from __future__ import annotations

import itertools
from typing import Any

from es2_plugin.errors import ES2UsageError, one_line

STATE_PREFIX = "es2-states:"



class ES2LMEvalError(ES2UsageError, SystemExit):
    """A user error inside an lm-eval run: ``except Exception`` catches it in Python code, while the plain
    ``lm_eval`` command exits on it with exactly this one line (exit code 1) instead of a traceback."""

    def __init__(self, message: str) -> None:
        message = one_line(message)
        super().__init__(message)
        self.code = f"es2: error: {message}"


_active: list[Any] = []
_states: dict[str, dict[int, Any]] = {}
_counter = itertools.count()


def set_active(model: Any) -> None:
    """Called by ``ES2HFLM.__init__``: the model tasks of this run talk to."""
    _active[:] = [model]


def reset() -> None:
    """Forget the active model and stored states (between runs in one process, e.g. ``es2 eval``)."""
    _active.clear()
    _states.clear()


def active_model() -> Any | None:
    return _active[0] if _active else None


def active_tokenizer() -> Any | None:
    model = active_model()
    return getattr(model, "tokenizer", None) if model is not None else None


def store_states(states: dict[int, Any]) -> str:
    """Keep one prompt's ``{layer: [d]}`` states; returns the key the model answers with."""
    key = f"{STATE_PREFIX}{next(_counter)}"
    _states[key] = states
    return key


def lookup_states(key: str) -> dict[int, Any] | None:
    return _states.get(key.strip()) if isinstance(key, str) else None

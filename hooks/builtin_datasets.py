"""ES2's authored prompt sets as named datasets: ``es2:authored-harmful``, ``-harmless``, ``-borderline``."""

from __future__ import annotations

from functools import partial

from es2_plugin import hookimpl


def _authored(kind: str, split: str = "all") -> list[dict]:
    from es2_plugin.prompts import load_prompts

    return [{"prompt": r["prompt"], "response": r.get("response")} for r in load_prompts(kind, split)]


@hookimpl
def es2_register_datasets(register) -> None:  # noqa: ANN001
    """Each loader takes ``split`` = ``train`` | ``test`` | ``all``; rows carry the authored response."""
    for kind in ("harmful", "harmless", "borderline"):
        register(f"authored-{kind}", partial(_authored, kind))

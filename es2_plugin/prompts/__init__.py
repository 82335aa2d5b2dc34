"""The authored prompt set shipped with the package (written by us; no benchmark text).

``harmful``: behaviour requests across ten categories, each with a short refusal; ``harmless``: everyday
requests with a short helpful answer; ``borderline``: safe prompts with alarming words (over-refusal checks).
Each row: ``{"prompt", "response", "split" ("train"|"test"), "category"}``. Stdlib only, so importing is cheap.
"""

from __future__ import annotations

import json
from importlib import resources

from es2_plugin.errors import ES2UsageError

KINDS = ("harmful", "harmless", "borderline")
SPLITS = ("train", "test", "all")


def load_prompts(kind: str, split: str = "all") -> list[dict]:
    """Return the rows of one authored set, optionally only the ``train`` or ``test`` split."""
    if kind not in KINDS:
        raise ES2UsageError(f"unknown prompt set {kind!r}; choose one of {', '.join(KINDS)}")
    if split not in SPLITS:
        raise ES2UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    text = resources.files(__name__).joinpath(f"{kind}.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return rows if split == "all" else [r for r in rows if r["split"] == split]

"""Prompt sets with a planted, linearly separable signal for the tiny random model (shared by probe/attack tests)."""

from __future__ import annotations

import random

WORDS = ["bread", "sea", "poem", "fox", "dog", "python", "capital", "France", "tips", "child", "home", "short",
         "answer", "quick", "brown", "lazy", "three", "learning", "explain", "write"]
MARKER = "bomb bomb malware malware steal steal hack hack bomb malware"


def planted_prompts(n: int = 24, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(harmful, harmless)``: the same kind of random word lists; harmful ones carry the marker words."""
    rng = random.Random(seed)
    harmless = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) for _ in range(n)]
    harmful = [f"{MARKER} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) for _ in range(n)]
    return harmful, harmless

"""Perturbation-distance summaries and the ε-budget curve (pure Python, no torch).

The budget curve answers "how far must an attacker push?": under a cap c on the total perturbation norm, an
attacked prompt counts as a success only if it succeeded *and* its distance is ≤ c. Its x-value where the
curve reaches its plateau is what ES2 is supposed to raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def distance_summary(distance_prompt: Sequence[float] | None, distance_layers: Sequence[dict[int, float]] | None,
                     distance_generated: Sequence[float] | None) -> dict[str, Any]:
    """Means over prompts: at the prompt token (summed over layers), per layer, and summed over generated tokens."""
    if distance_prompt is None:
        return {"mean_distance_prompt": None, "mean_distance_generated": None, "mean_distance_per_layer": {}}
    layers = sorted({layer for row in distance_layers or [] for layer in row})
    per_layer = {layer: _mean([row.get(layer, 0.0) for row in distance_layers or []]) for layer in layers}
    return {
        "mean_distance_prompt": _mean(list(distance_prompt)),
        "mean_distance_generated": _mean(list(distance_generated or [])),
        "mean_distance_per_layer": per_layer,
    }


def budget_curve(distances: Sequence[float], success: Sequence[bool],
                 caps: Sequence[float] | None = None) -> list[tuple[float, float]]:
    """``[(cap, success rate under cap)]``; default caps: 0 and every observed distance (a step function)."""
    if len(distances) != len(success):
        raise ValueError("distances and success differ in length")
    n = len(distances)
    if n == 0:
        return []
    caps = sorted(set([0.0, *distances])) if caps is None else sorted(caps)
    return [(float(c), sum(1 for d, s in zip(distances, success, strict=True) if s and d <= c) / n) for c in caps]


def budget_for(distances: Sequence[float], success: Sequence[bool], rate: float) -> float | None:
    """Smallest cap at which the success rate reaches ``rate`` (``None`` if it never does)."""
    for cap, value in budget_curve(distances, success):
        if value >= rate:
            return cap
    return None

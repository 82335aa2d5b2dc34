"""ES2's built-in layer selection: ``auto``, ``all``, explicit lists and ranges."""

from __future__ import annotations

from typing import Any

from es2_plugin import hookimpl
from es2_plugin.errors import ES2UsageError

DEFAULT_P1 = 0.9


def num_layers(model_config: Any) -> int:
    config = getattr(model_config, "text_config", None) or model_config
    n = getattr(config, "num_hidden_layers", None)
    if n is None:
        raise ES2UsageError("the model config has no num_hidden_layers; pass explicit --layers")
    return int(n)


def parse_layers(requested: Any, n_layers: int) -> list[int] | None:
    """Turn ``"all"``, ``"4-12"``, ``"3,5,7"``, ``[3, 5]`` or ``7`` into sorted layer indices 1..n_layers.

    Returns ``None`` for ``"auto"`` (decided by probes).
    """
    if requested is None or (isinstance(requested, str) and requested.strip().lower() == "auto"):
        return None
    if isinstance(requested, str):
        text = requested.strip().lower()
        if text == "all":
            return list(range(1, n_layers + 1))
        layers: list[int] = []
        for part in text.split(","):
            part = part.strip()
            try:
                if "-" in part:
                    lo, hi = (int(x) for x in part.split("-", 1))
                    layers.extend(range(lo, hi + 1))
                else:
                    layers.append(int(part))
            except ValueError:
                raise ES2UsageError(
                    f"cannot read layers {requested!r}; use 'auto', 'all', a list like 3,5,7 or a range like 4-12"
                ) from None
    elif isinstance(requested, int):
        layers = [requested]
    else:
        layers = [int(x) for x in requested]
    if not layers:
        raise ES2UsageError("layers is empty; use 'auto', 'all', a list like 3,5,7 or a range like 4-12")
    bad = [layer for layer in layers if not 1 <= layer <= n_layers]
    if bad:
        raise ES2UsageError(f"layers {bad} are out of range: this model has layers 1..{n_layers} "
                            f"(hidden_states index; 0 is the embedding output)")
    return sorted(set(layers))


@hookimpl(trylast=True)
def es2_select_layers(model_config: Any, probe_report: Any, requested: Any) -> list[int] | None:
    """``auto``: every layer whose base-model probe reaches P1 held-out accuracy (the layers SCAV attacks).

    ``probe_report`` is ``{"accuracy": {layer: acc}, "p1": 0.9}``. If no layer reaches P1 the single most
    accurate layer is used, so training never silently separates nothing.
    """
    n_layers = num_layers(model_config)
    layers = parse_layers(requested, n_layers)
    if layers is not None:
        return layers
    if not probe_report or not probe_report.get("accuracy"):
        raise ES2UsageError("layers=auto needs a probe on the base model; pass harmful and harmless prompts, "
                            "or set explicit layers such as 'all' or '4-12'")
    p1 = float(probe_report.get("p1", DEFAULT_P1))
    accuracy = {int(k): float(v) for k, v in probe_report["accuracy"].items()}
    chosen = sorted(layer for layer, acc in accuracy.items() if acc >= p1 and 1 <= layer <= n_layers)
    if not chosen:
        chosen = [max(accuracy, key=lambda layer: accuracy[layer])]
    return chosen

"""SCAV (Xu et al., NeurIPS 2024): push the last-position hidden state across each probe's boundary.

At every attacked layer l (probe accuracy ≥ P1), on every forward pass, for the last position's state e:
if σ(wᵀe + b) > P0, replace e by e + ε·w/‖w‖ with ε = (logit(P0) − b − wᵀe)/‖w‖, so the probe reads exactly
P0 afterwards. The hook sits on the module whose output *is* ``hidden_states[l]`` (decoder layer l−1, or the
final norm for l = L; see :func:`es2_plugin.modeling.hidden_state_modules`), layers are pushed in forward
order so each later layer sees the already-pushed stream, and decoding is greedy. |ε| is the distance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from es2_plugin.attacks.base import Attack, AttackContext, AttackOutput, PushLedger, StepState, generate
from es2_plugin.errors import ES2UsageError


def resolve_layers(ctx: AttackContext, requested: Any, p1: float, attack: str) -> list[int]:
    """``auto`` = probed layers with held-out accuracy ≥ P1; or an explicit list/range of probed layers."""
    from es2_plugin.hooks.builtin_layers import parse_layers
    from es2_plugin.representations import num_layers

    probes = ctx.probes
    if probes is None:
        raise ES2UsageError(f"attack {attack!r} needs probes: pass --probes DIR (from es2 probe) or --harmless FILE "
                            f"to fit them")
    probes.check_compatible(ctx.model, ctx.tokenizer)
    explicit = parse_layers(requested, num_layers(ctx.model))
    if explicit is None:
        return probes.layers_above(p1)
    missing = [layer for layer in explicit if layer not in probes.layers]
    if missing:
        raise ES2UsageError(f"layers {missing} have no probe; probed layers: {probes.layers}")
    return explicit


class SCAV(Attack):
    """Options: ``p0`` target harmful probability (0, 1); ``p1`` probe-accuracy threshold (0, 1];
    ``layers`` ``"auto"`` (accuracy ≥ p1) or a list/range such as ``"2-4"``."""

    name = "scav"
    needs_probes = True
    options: ClassVar[dict[str, Any]] = {"p0": 0.01, "p1": 0.9, "layers": "auto"}

    def validate(self) -> None:
        p0, p1 = self.opts["p0"], self.opts["p1"]
        if not isinstance(p0, (int, float)) or not 0 < float(p0) < 1:
            raise ES2UsageError(f"scav p0 must be in (0, 1) (a target harmful probability such as 0.01), got {p0!r}")
        if not isinstance(p1, (int, float)) or not 0 < float(p1) <= 1:
            raise ES2UsageError(f"scav p1 must be in (0, 1] (a probe accuracy threshold such as 0.9), got {p1!r}")

    def __call__(self, ctx: AttackContext, prompts: Sequence[str]) -> AttackOutput:
        p0, p1 = float(self.opts["p0"]), float(self.opts["p1"])
        layers = resolve_layers(ctx, self.opts["layers"], p1, self.name)
        state = StepState()
        ledger = PushLedger(layers)

        assert ctx.probes is not None
        handles = install_scav_hooks(ctx.model, ctx.probes, layers, p0, state, ledger.record)
        try:
            completions = generate(ctx, prompts, state=state, before_batch=ledger.start, after_batch=ledger.finish)
        finally:
            for handle in handles:
                handle.remove()
        return AttackOutput(
            prompts=list(prompts), completions=completions, **ledger.distances(),
            info={"attack": self.name, "p0": p0, "p1": p1, "layers": layers,
                  "probe_accuracy": {layer: ctx.probes.accuracy[layer] for layer in layers}},
        )


def scav_push(e: Any, w: Any, b: float, p0: float, active: Any = None) -> tuple[Any, Any]:
    """SCAV's closed form on states ``e`` ``[n, d]``: ``(e + ε·w/‖w‖, ε)``, ε = (logit(P0) − b − wᵀe)/‖w‖ on rows
    where σ(wᵀe + b) > P0 (and ``active``), else 0. Pure: pushed rows read exactly P0 on the probe."""
    import torch

    target = math.log(p0 / (1 - p0))
    w_norm = w.norm()
    logit = e @ w + b
    push = logit > target if active is None else (logit > target) & active
    eps = torch.where(push, (target - logit) / w_norm, torch.zeros_like(logit))
    return e + eps[:, None] * (w / w_norm), eps


def install_scav_hooks(model: Any, probes: Any, layers: Sequence[int], p0: float, state: StepState,
                       record: Callable[[int, int, list[float]], None] | None = None) -> list[Any]:
    """Register the SCAV push on the modules producing ``hidden_states[l]``; returns the hook handles.

    Hooks act only while ``state.step >= 0`` and only on rows in ``state.active``; ``record(layer, step, |ε|
    per row)`` receives the distances.
    """
    import torch

    from es2_plugin.modeling import hidden_state_modules

    modules = hidden_state_modules(model)
    device = next(model.parameters()).device

    def make_hook(layer: int):
        w = probes.weight(layer).to(device=device, dtype=torch.float32)
        b = probes.bias(layer)

        def hook(_module: Any, _inputs: Any, output: Any) -> Any:
            if state.step < 0:
                return None
            hidden = output[0] if isinstance(output, tuple) else output
            pushed, eps = scav_push(hidden[:, -1, :].float(), w, b, p0, state.active)
            hidden = hidden.clone()
            hidden[:, -1, :] = pushed.to(hidden.dtype)
            if record is not None:
                record(layer, state.step, eps.abs().tolist())
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    return [modules[layer].register_forward_hook(make_hook(layer)) for layer in sorted(layers)]
